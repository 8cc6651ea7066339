"""The plant of a closed-loop run: the system the realised trajectory is stepped by, which need not be the model.

    x_0 = x0 + d_0,    x_{t+1} = plant.step(x_t, u_t) + d_{t+1}        (t = 0 .. N-1, N = the episode)
    the planner sees  y_t = x_t + s ⊙ ε_t,   ε_t ~ N(0, I)  at each replanning step t

``system`` is the plant's one-step map (by default the planner's own model: no mismatch); ``overrides`` records
which parameters differ from the model's (what a run folder states). ``state_noise`` s is the standard deviation of
the measurement noise on each state coordinate (one number for all, or n numbers): it changes what the planner
sees, never the plant's state. ``disturbances`` add a state increment d_t at step t (a push on the block): the
realised X[t] already contains it, and the planner first sees it at the first replanning step at or after t.

``draws`` make the plant differ from seed to seed (the MPC papers' friction factor drawn per seed from [0.5, 2]):
each `Draw` multiplies one physical parameter of an MJX plant (``geom_friction``, ``dof_damping``: the system's
``PHYSICS_PER_SEED``) by a factor drawn for seed s as

    f_j(s) = low_j + (high_j - low_j) * uniform(fold_in(fold_in(fold_in(key, s), PLANT_TAG), j))

(key the run's root key, j the draw's index): reproducible from the seed alone, the same whatever the batch, the same
for every method run on that seed (a paired comparison). The episode steps seed s's plant with its factors
(``system.physics_step``), and `trajopt.closedloop.MPCResult` records them (``plant_factors``).

Nothing reaches the planner from the plant except through the measured state: the planner always plans with
the model (`trajopt.closedloop.episode`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from trajopt.checks import FieldError

PLANT_TAG = 0x706C6E74  # "plnt": the per-seed draws' keys


@dataclass(frozen=True)
class Disturbance:
    """A state increment ``dx`` ([n]) added to the plant's state at step ``at`` (0 <= at <= episode)."""

    at: int
    dx: tuple[float, ...]


@dataclass(frozen=True)
class Draw:
    """A factor drawn per seed, uniformly from [low, high], on ``parameter`` (one of the plant system's
    ``PHYSICS_PER_SEED``) of the element ``name`` (None: every element)."""

    parameter: str
    name: Optional[str]
    low: float
    high: float

    @property
    def label(self) -> str:
        """How a run records it: "geom_friction" or "geom_friction.NAME"."""
        return self.parameter if self.name is None else f"{self.parameter}.{self.name}"


@dataclass(frozen=True, eq=False)
class Plant:
    """system: the plant's system (None: the planner's model); state_noise: the measurement noise's standard
    deviation, one number or one per state coordinate (>= 0); disturbances: `Disturbance` s; overrides: the
    parameters in which ``system`` differs from the model ({name: value}, for the record; `with_overrides`
    fills it); draws: `Draw` s, factors drawn per seed (``system`` then an MJX system: its ``physics_step``)."""

    system: Any = None
    state_noise: Any = 0.0
    disturbances: tuple = ()
    overrides: Mapping = field(default_factory=dict)
    draws: tuple = ()

    def check(self, n: int, episode: int) -> None:
        """FieldError unless the noise and disturbances fit a state of size n and an episode of N steps."""
        noise = np.asarray(self.state_noise, float)
        if noise.ndim > 1 or (noise.ndim == 1 and noise.shape != (n,)):
            raise FieldError("state_noise", self.state_noise, f"a number or a list of {n} numbers (one per state coordinate)")
        if not np.all(np.isfinite(noise)) or np.any(noise < 0):
            raise FieldError("state_noise", self.state_noise, "standard deviations >= 0 (finite)")
        if self.system is not None:
            if int(self.system.state_size) != n:
                raise FieldError("system", type(self.system).__name__,
                                 f"a plant with the model's state size {n} (found {self.system.state_size})")
        for i, d in enumerate(self.draws):
            per_seed = tuple(getattr(self.system, "PHYSICS_PER_SEED", ()))
            if d.parameter not in per_seed:
                raise FieldError(f"draws[{i}].parameter", d.parameter,
                                 f"a parameter drawn per seed: {', '.join(per_seed) or 'none for this system'}")
            if not (math.isfinite(d.low) and math.isfinite(d.high) and 0 <= d.low <= d.high):
                raise FieldError(f"draws[{i}]", [d.low, d.high], "[low, high] with 0 <= low <= high (finite)")
        for i, d in enumerate(self.disturbances):
            if isinstance(d.at, bool) or not isinstance(d.at, (int, np.integer)) or not 0 <= d.at <= episode:
                raise FieldError(f"disturbance[{i}].at", d.at, f"a step in 0..{episode} (the episode's states)")
            dx = np.asarray(d.dx, float)
            if dx.shape != (n,) or not np.all(np.isfinite(dx)):
                raise FieldError(f"disturbance[{i}].dx", list(np.ravel(d.dx)), f"a list of {n} finite numbers (a state increment)")

    def increments(self, n: int, episode: int, dtype) -> jnp.ndarray:
        """D: [N+1, n], D[t] the sum of the disturbances at step t (zeros elsewhere)."""
        D = np.zeros((episode + 1, n))
        for d in self.disturbances:
            D[d.at] += np.asarray(d.dx, float)
        return jnp.asarray(D, dtype)

    def noise_scale(self, n: int, dtype) -> jnp.ndarray:
        """s: [n], the measurement noise's standard deviation per state coordinate."""
        return jnp.broadcast_to(jnp.asarray(self.state_noise, dtype), (n,))

    @property
    def noisy(self) -> bool:
        return bool(np.any(np.asarray(self.state_noise, float) > 0))

    def factors(self, seed_key) -> jnp.ndarray:
        """[len(draws)]: seed's factors f_j = low_j + (high_j - low_j) u_j, u_j ~ U[0, 1) from
        fold_in(fold_in(seed_key, PLANT_TAG), j) (the module doc); seed_key = fold_in(key, s). Empty without draws."""
        if not self.draws:
            return jnp.zeros((0,))
        base = jax.random.fold_in(seed_key, PLANT_TAG)
        u = jnp.stack([jax.random.uniform(jax.random.fold_in(base, j)) for j in range(len(self.draws))])
        low = jnp.asarray([d.low for d in self.draws], u.dtype)
        high = jnp.asarray([d.high for d in self.draws], u.dtype)
        return low + (high - low) * u

    def step_fn(self, model_step):
        """``step(x, u, factors) -> x'``: the plant's one-step map with seed's factors (`factors`); ``model_step``
        when the plant is the model."""
        if self.draws:
            drawn = self.system.physics_step([(d.parameter, d.name) for d in self.draws])
            return drawn
        step = self.system.step if self.system is not None else model_step
        return lambda x, u, factors: step(x, u)

    def describe(self, factors: Optional[Mapping] = None) -> dict:
        """What the plant changes, for result.json: overrides, state_noise, disturbances, and with draws ``per_seed``:
        {label: {"range": [low, high], "factors": the seeds' factors}} (``factors``: {label: [S]}, an
        `MPCResult`'s ``plant_factors``; the run's seeds in order)."""
        noise = np.asarray(self.state_noise, float)
        out = {"overrides": dict(self.overrides),
               "state_noise": float(noise) if noise.ndim == 0 else noise.tolist(),
               "disturbances": [{"at": int(d.at), "dx": [float(v) for v in d.dx]} for d in self.disturbances]}
        if self.draws:
            out["per_seed"] = {d.label: {"range": [float(d.low), float(d.high)],
                                         **({"factors": [float(v) for v in np.ravel(factors[d.label])]}
                                            if factors is not None and d.label in factors else {})}
                               for d in self.draws}
        return out


def with_overrides(model: Any, values: Optional[Mapping[str, Any]] = None, scale: Optional[Mapping[str, float]] = None) -> Any:
    """The model's system with some parameters replaced (``values``: name -> value) or multiplied (``scale``:
    name -> factor), through the system's own dataclass (its checks run again). FieldError names an unknown or
    non-numeric parameter."""
    values, scale = dict(values or {}), dict(scale or {})
    if not dataclasses.is_dataclass(model):
        if values or scale:
            raise FieldError("plant", type(model).__name__, "a system dataclass (its fields are what a plant overrides)")
        return model
    fields = {f.name for f in dataclasses.fields(model) if f.init}
    changes = {}
    for name, v in values.items():
        if name not in fields:
            raise FieldError(name, v, f"a parameter of {type(model).__name__}: {', '.join(sorted(fields))}")
        changes[name] = v
    for name, factor in scale.items():
        if name not in fields:
            raise FieldError(f"scale.{name}", factor, f"a parameter of {type(model).__name__}: {', '.join(sorted(fields))}")
        base = changes.get(name, getattr(model, name))
        if isinstance(base, bool) or not isinstance(base, (int, float)):
            raise FieldError(f"scale.{name}", factor, f"a factor of a numeric parameter ({name} is {base!r})")
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor):
            raise FieldError(f"scale.{name}", factor, "a finite number")
        changes[name] = type(base)(base * factor) if isinstance(base, float) else base * factor
    if not changes:
        return model
    return dataclasses.replace(model, **changes)


def physics_scale(model: Any, scale: Mapping) -> tuple[list, list]:
    """The scale factors on an mjx system's physics (keys of its ``PHYSICS``: body_mass, dof_damping, geom_friction):
    (fixed, draws), fixed the (parameter, name or None, factor) triples for ``model.with_physics``, draws the `Draw` s.
    A value is a factor (>= 0; > 0 for body_mass), [low, high] (a factor drawn per seed, for the system's
    ``PHYSICS_PER_SEED``), or a mapping {NAME: either} naming bodies / joints / geoms of the model. FieldError at
    ``scale.PARAMETER`` or ``scale.PARAMETER.NAME`` otherwise (a key the system lacks included)."""
    physics = dict(getattr(model, "PHYSICS", {}))
    per_seed = tuple(getattr(model, "PHYSICS_PER_SEED", ()))
    fixed, draws = [], []
    for parameter, raw in scale.items():
        if parameter not in physics:
            raise FieldError(f"scale.{parameter}", raw, f"a physics parameter of {type(model).__name__}: "
                             + (", ".join(physics) or "none"))
        kind = physics[parameter]
        kinds = {"body": "bodies"}.get(kind, kind + "s")
        positive = parameter == "body_mass"  # a mass factor must be > 0
        drawn = parameter in per_seed
        one = f"a finite factor {'> 0' if positive else '>= 0'}" + (
            ", or [low, high] (0 <= low <= high: a factor drawn per seed, uniformly)" if drawn else
            " (a range drawn per seed applies to " + " and ".join(per_seed) + " only: a body's mass sets constants "
            "MuJoCo derives when it loads the model)")
        whole = f", or a table {{ {kind.upper()} = factor }} naming {kinds} of the model"
        items = [(None, raw, f"scale.{parameter}")]
        if isinstance(raw, Mapping):
            if not raw:
                raise FieldError(f"scale.{parameter}", dict(raw), one + whole)
            names = model.physics_names(parameter)
            items = []
            for name, v in raw.items():
                if name not in names:
                    raise FieldError(f"scale.{parameter}.{name}", name, f"a named {kind} of the model: "
                                     + (", ".join(names) or "none"))
                items.append((name, v, f"scale.{parameter}.{name}"))
        for name, v, key in items:
            number = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
            if number and (v > 0 or (v == 0 and not positive)):
                fixed.append((parameter, name, float(v)))
                continue
            pair = isinstance(v, (list, tuple)) and len(v) == 2 and all(
                not isinstance(b, bool) and isinstance(b, (int, float)) and math.isfinite(b) for b in v)
            if drawn and pair and 0 <= v[0] <= v[1]:
                draws.append(Draw(parameter=parameter, name=name, low=float(v[0]), high=float(v[1])))
                continue
            raise FieldError(key, v, one + (whole if name is None else ""))
    return fixed, draws


def physics_record(model: Any, fixed: Sequence, draws: Sequence) -> dict:
    """The plant's overrides record of `physics_scale`'s (fixed, draws): {"body_mass.NAME (x1.5)": "the body NAME",
    "dof_damping (x0.1)": "every joint", "geom_friction (x U[0.5, 2] per seed)": "drawn per seed ..."}."""
    out = {}
    for parameter, name, f in fixed:
        kind = model.PHYSICS[parameter]
        out[f"{parameter if name is None else parameter + '.' + name} (x{f:g})"] = \
            f"every {kind}" if name is None else f"the {kind} {name}"
    for d in draws:
        out[f"{d.label} (x U[{d.low:g}, {d.high:g}] per seed)"] = "drawn per seed (result.json: plant.per_seed)"
    return out


def plant_of(model: Any, plant: Any) -> Plant:
    """A `Plant` from what `trajopt.mpc` accepts: None (the model itself), a `Plant`, a system object, or a mapping of
    parameter overrides ({"stiffness": 1000.0}; a ``"scale"`` entry maps names to factors, and for an mjx system its
    physics as `physics_scale` reads it: {"scale": {"geom_friction": (0.5, 2.0)}})."""
    if plant is None:
        return Plant()
    if isinstance(plant, Plant):
        return plant
    if isinstance(plant, Mapping):
        values = {k: v for k, v in plant.items() if k != "scale"}
        physics = getattr(model, "PHYSICS", {})
        scale = {k: v for k, v in plant.get("scale", {}).items() if k not in physics}
        fixed, draws = physics_scale(model, {k: v for k, v in plant.get("scale", {}).items() if k in physics})
        system = with_overrides(model, values, scale)
        if fixed:
            system = system.with_physics(fixed)
        record = {**values, **{f"{k} (x{v:g})": getattr(system, k) for k, v in scale.items()},
                  **physics_record(model, fixed, draws)}
        return Plant(system=system, overrides=record, draws=tuple(draws))
    if callable(getattr(plant, "step", None)):
        return Plant(system=plant, overrides=_differences(model, plant))
    raise TypeError(f"plant: found {type(plant).__name__}, allowed: None, a trajopt.closedloop.Plant, a system, or a "
                    "mapping of parameter overrides")


def _differences(model: Any, system: Any) -> dict:
    """{field: plant value} where two systems of the same dataclass differ (empty otherwise)."""
    if type(model) is not type(system) or not dataclasses.is_dataclass(model):
        return {"system": type(system).__name__}
    out = {}
    for f in dataclasses.fields(model):
        a, b = getattr(model, f.name), getattr(system, f.name)
        try:
            same = bool(np.all(np.asarray(a) == np.asarray(b)))
        except Exception:  # noqa: BLE001 - an odd field type: compare by identity
            same = a is b
        if not same:
            out[f.name] = b if isinstance(b, (int, float, str, bool)) else repr(b)
    return out


def disturbances_of(items: Sequence[Any]) -> tuple:
    """`Disturbance` s from (at, dx) pairs, mappings {at, dx} or Disturbances."""
    out = []
    for d in items:
        if isinstance(d, Disturbance):
            out.append(d)
        elif isinstance(d, Mapping):
            out.append(Disturbance(at=d["at"], dx=tuple(float(v) for v in np.ravel(d["dx"]))))
        else:
            at, dx = d
            out.append(Disturbance(at=at, dx=tuple(float(v) for v in np.ravel(dx))))
    return tuple(out)
