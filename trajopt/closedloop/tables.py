"""The closed-loop tables of a problem file: ``[mpc]``, ``[plant]`` and (for time-stepped problems) ``[success]``.

    [mpc]                   # receding-horizon MPC (`trajopt mpc`), every key optional but episode and horizon
    episode = 200           # N plant steps
    horizon = 50            # H planning steps per replan
    replan_every = 1        # r plant steps between replans (1 <= r <= H)
    iterations = 5          # K method steps per replan
    warm_start = "hold"     # the shifted plan's tail: hold | zero | initial (the file's u_init)
    seeds = 5               # a count or a list of seed numbers (default: solve.seeds)
    variants = ["fobg"]     # what `trajopt mpc` runs by default (default: solve.variants)

    [plant]                 # the simulated plant: the model with some parameters changed (default: the model)
    stiffness = 1000.0      # any [system] parameter, replaced (not dt: the control period is the model's)
    state_noise = 0.005     # measurement noise std on the state the planner sees: a number or one per coordinate
    [plant.scale]           # factors on the model's parameters
    mass = 1.5
    # an mjx system's physics (the plant's model only; `trajopt.systems.mjx.MJX.with_physics`):
    # body_mass = 1.5                  every body's mass and inertia x1.5, or { payload = 1.5 } a named body's
    # dof_damping = 0.1                every joint's damping x0.1, or { joint0 = 0.1 }
    # geom_friction = [0.5, 2.0]       every geom's friction x a factor drawn per seed from [0.5, 2] (uniform;
    #                                  dof_damping too), or 2.0, or { tip = [0.5, 2.0] }
    [[plant.disturbance]]   # a push: this state increment is added at plant step `at`
    at = 100
    dx = [0.0, 0.0, 0.5, 0.0]

    [success]               # the episode succeeded when its final `hold` states are within `radius` of the goal
    radius = 0.1
    positions = [0, 1]      # the state coordinates compared (default: all)
    hold = 1

Each table is validated by the functions here (the closed-loop code owns its tables); errors are
`trajopt.tomlio.SpecError` naming the file, the key path, what was found and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from trajopt.checks import FieldError
from trajopt.closedloop.episode import FILL_RULES, MPCSettings
from trajopt.closedloop.plant import Disturbance, Plant, physics_record, physics_scale, with_overrides
from trajopt.closedloop.success import Success
from trajopt.tables import describe
from trajopt.tomlio import SpecError

MPC_KEYS = ("episode", "horizon", "replan_every", "iterations", "warm_start", "seeds", "variants")
PLANT_KEYS = ("state_noise", "scale", "disturbance")  # besides the system's own parameters
DISTURBANCE_KEYS = ("at", "dx")
SUCCESS_KEYS = ("radius", "positions", "hold")
MAX_EPISODE = 10**6
MAX_HORIZON = 10**5
PLANT_REFUSED = {"dt": "the plant steps at the model's control period (a plant with its own dt is not supported)",
                 "name": "the plant is the model's system with parameters changed, not another system",
                 "model": "the plant simulates the model's own MJCF file (change its parameters instead)"}


def _int(table: Mapping, key: str, source: str, prefix: str, low: int, high: int, default=None) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(source, prefix + key, f"found {describe(value) if value is not None else 'nothing'}, "
                        f"allowed: an integer in {low}..{high}")
    return value


def _unknown(table: Mapping, allowed, source: str, prefix: str) -> None:
    import difflib

    for k in table:
        if k not in allowed:
            close = difflib.get_close_matches(k, list(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpecError(source, prefix + k, f"unknown key{hint}; allowed: {', '.join(allowed)}")


@dataclass(frozen=True)
class MPCSpec:
    """A validated ``[mpc]`` table: the settings, and the seeds and variants `trajopt mpc` runs by default (None:
    the file's solve.seeds / solve.variants)."""

    settings: MPCSettings
    seeds: Optional[tuple] = None
    variants: Optional[tuple] = None

    def resolved(self) -> dict:
        s = self.settings
        out = {"episode": s.episode, "horizon": s.horizon, "replan_every": s.replan_every,
               "iterations": s.iterations, "warm_start": s.warm_start}
        if self.seeds is not None:
            out["seeds"] = list(self.seeds)
        if self.variants is not None:
            out["variants"] = list(self.variants)
        return out


def build_mpc(table: Any, source: str, max_seed: int = 2**32 - 1) -> MPCSpec:
    """The ``[mpc]`` table (episode and horizon required)."""
    if not isinstance(table, dict):
        raise SpecError(source, "mpc", f"found {describe(table)}, allowed: a table")
    _unknown(table, MPC_KEYS, source, "mpc.")
    for key in ("episode", "horizon"):
        if key not in table:
            raise SpecError(source, f"mpc.{key}", "missing; allowed: an integer >= 1 (plant steps of the episode; "
                            "planning steps of each replan)" if key == "episode" else
                            "missing; allowed: an integer >= 1 (the planning steps of each replan)")
    episode = _int(table, "episode", source, "mpc.", 1, MAX_EPISODE)
    horizon = _int(table, "horizon", source, "mpc.", 1, MAX_HORIZON)
    replan_every = _int(table, "replan_every", source, "mpc.", 1, min(horizon, episode), default=1)
    iterations = _int(table, "iterations", source, "mpc.", 1, 10**6, default=1)
    warm = table.get("warm_start", "hold")
    if warm not in FILL_RULES:
        raise SpecError(source, "mpc.warm_start", f"found {describe(warm)}, allowed: {', '.join(FILL_RULES)} (the "
                        "shifted plan's tail: the last control held, zeros, or the file's u_init)")
    seeds = None
    if "seeds" in table:
        raw = table["seeds"]
        if isinstance(raw, list):
            if not raw or len(raw) > 100_000 or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= max_seed
                                                    for s in raw) or len(set(raw)) != len(raw):
                raise SpecError(source, "mpc.seeds", f"found {describe(raw)}, allowed: a count in 1..100000 or a list "
                                f"of distinct seed numbers in 0..{max_seed}")
            seeds = tuple(raw)
        else:
            seeds = tuple(range(_int(table, "seeds", source, "mpc.", 1, 100_000)))
    variants = None
    if "variants" in table:
        raw = table["variants"]
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not raw or not all(isinstance(v, str) and v for v in raw) \
                or len(set(raw)) != len(raw):
            raise SpecError(source, "mpc.variants", f"found {describe(raw)}, allowed: a non-empty list of distinct "
                            "variant, oracle or method names")
        variants = tuple(raw)
    return MPCSpec(settings=MPCSettings(episode=episode, horizon=horizon, replan_every=replan_every,
                                        iterations=iterations, warm_start=warm), seeds=seeds, variants=variants)


@dataclass(frozen=True, eq=False)
class PlantSpec:
    """A validated ``[plant]`` table: the plant (`trajopt.closedloop.Plant`, its system built like the model's) and
    the table as resolved (for config.toml)."""

    plant: Plant
    table: dict


def build_plant(table: Any, source: str, model: Any, system_table: Mapping,
                build_system: Callable[[Mapping, str], Any], episode: Optional[int]) -> PlantSpec:
    """The ``[plant]`` table against the model's system: the overrides replace the model's ``[system]`` values and
    the plant is built from the merged table by ``build_system`` (the same validation as the model: an unstable time
    step, a bad value); ``scale`` factors multiply the built model's parameters."""
    if not isinstance(table, dict):
        raise SpecError(source, "plant", f"found {describe(table)}, allowed: a table")
    n = int(model.state_size)
    params = [f.name for f in dataclasses.fields(model) if f.init] if dataclasses.is_dataclass(model) else []
    physics = tuple(getattr(model, "PHYSICS", {}))  # an mjx system's physics, scaled in [plant.scale] only
    allowed = [p for p in params if p not in PLANT_REFUSED] + list(PLANT_KEYS)
    for k in table:
        if k in PLANT_REFUSED:
            raise SpecError(source, f"plant.{k}", f"not allowed: {PLANT_REFUSED[k]}")
    _unknown(table, allowed, source, "plant.")
    values = {k: v for k, v in table.items() if k not in PLANT_KEYS}
    scale = table.get("scale", {})
    if not isinstance(scale, dict):
        raise SpecError(source, "plant.scale", f"found {describe(scale)}, allowed: a table of factors, e.g. "
                        "{ mass = 1.5 }")
    try:
        fixed, draws = physics_scale(model, {k: v for k, v in scale.items() if k in physics})
    except FieldError as e:
        raise SpecError(source, f"plant.{e.field}", f"found {e.found!r}, allowed: {e.allowed}") from None
    for k, v in scale.items():
        if k in physics:
            continue
        if k not in params or k in PLANT_REFUSED:
            _unknown({k: v}, [p for p in params if p not in PLANT_REFUSED] + list(physics), source, "plant.scale.")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise SpecError(source, f"plant.scale.{k}", f"found {describe(v)}, allowed: a finite factor >= 0")
    try:
        system = build_system({**system_table, **values}, source) if values else model
    except SpecError as e:  # the plant's own value refused: named as the [plant] key that set it, not the model's
        key = e.key.split(".", 1)[1] if e.key.startswith("system.") else None
        if key is None or key not in values:
            raise
        raise SpecError(source, f"plant.{key}", e.message + " (the plant's system: [system] with [plant]'s values)") \
            from None
    fields_scale = {k: v for k, v in scale.items() if k not in physics}
    try:
        system = with_overrides(system, scale=fields_scale)
    except FieldError as e:
        raise SpecError(source, f"plant.{e.field}", f"found {e.found!r}, allowed: {e.allowed}") from None
    if fixed:
        system = system.with_physics(fixed)
    noise = table.get("state_noise", 0.0)
    if not (isinstance(noise, (int, float)) and not isinstance(noise, bool)) and not (
            isinstance(noise, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in noise)):
        raise SpecError(source, "plant.state_noise", f"found {describe(noise)}, allowed: a number or a list of {n} "
                        "numbers (standard deviations >= 0)")
    raw_dist = table.get("disturbance", [])
    if not isinstance(raw_dist, list) or not all(isinstance(d, dict) for d in raw_dist):
        raise SpecError(source, "plant.disturbance", f"found {describe(raw_dist)}, allowed: [[plant.disturbance]] "
                        "tables with at and dx")
    disturbances = []
    for i, d in enumerate(raw_dist):
        _unknown(d, DISTURBANCE_KEYS, source, f"plant.disturbance[{i}].")
        for k in DISTURBANCE_KEYS:
            if k not in d:
                raise SpecError(source, f"plant.disturbance[{i}].{k}", "missing; allowed: " +
                                ("the plant step it happens at (an integer)" if k == "at" else
                                 f"the state increment (a list of {n} numbers)"))
        at, dx = d["at"], d["dx"]
        if isinstance(at, bool) or not isinstance(at, int):
            raise SpecError(source, f"plant.disturbance[{i}].at", f"found {describe(at)}, allowed: an integer step")
        if not isinstance(dx, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in dx):
            raise SpecError(source, f"plant.disturbance[{i}].dx", f"found {describe(dx)}, allowed: a list of {n} numbers")
        disturbances.append(Disturbance(at=at, dx=tuple(float(v) for v in dx)))
    overrides = dict(values)
    for k, v in fields_scale.items():
        overrides[f"{k} (x{v:g})"] = getattr(system, k)
    overrides.update(physics_record(model, fixed, draws))
    plant = Plant(system=system if (values or scale) else None, state_noise=noise, disturbances=tuple(disturbances),
                  overrides=overrides, draws=tuple(draws))
    try:
        plant.check(n, episode if episode is not None else MAX_EPISODE)
    except FieldError as e:
        raise SpecError(source, f"plant.{e.field}", f"found {e.found!r}, allowed: {e.allowed}") from None
    return PlantSpec(plant=plant, table=dict(table))


def build_success(table: Any, source: str, n: int, episode: Optional[int]) -> Success:
    """The ``[success]`` table of a time-stepped problem."""
    if not isinstance(table, dict):
        raise SpecError(source, "success", f"found {describe(table)}, allowed: a table")
    _unknown(table, SUCCESS_KEYS, source, "success.")
    if "radius" not in table:
        raise SpecError(source, "success.radius", "missing; allowed: a number > 0 (the distance to the goal)")
    radius = table["radius"]
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not math.isfinite(radius) or radius <= 0:
        raise SpecError(source, "success.radius", f"found {describe(radius)}, allowed: a finite number > 0")
    positions = table.get("positions", [])
    if not isinstance(positions, list) or any(isinstance(i, bool) or not isinstance(i, int) for i in positions):
        raise SpecError(source, "success.positions", f"found {describe(positions)}, allowed: a list of state indices "
                        f"in 0..{n - 1}")
    hold = _int(table, "hold", source, "success.", 1, (episode or MAX_EPISODE) + 1, default=1)
    try:
        s = Success(radius=float(radius), positions=tuple(positions), hold=hold)
        s.check(n, episode if episode is not None else MAX_EPISODE)
    except FieldError as e:
        raise SpecError(source, f"success.{e.field}", f"found {e.found!r}, allowed: {e.allowed}") from None
    return s


@dataclass(frozen=True, eq=False)
class ClosedLoopSpec:
    """The closed-loop tables of a time-stepped problem file: ``mpc`` (`MPCSpec` or None), ``plant`` (`PlantSpec` or
    None: the model itself) and ``success`` (`trajopt.closedloop.Success` or None)."""

    mpc: Optional[MPCSpec] = None
    plant: Optional[PlantSpec] = None
    success: Optional[Success] = None

    def resolved(self) -> dict:
        """The tables with every default filled in (for config.toml)."""
        out = {}
        if self.mpc is not None:
            out["mpc"] = self.mpc.resolved()
        if self.plant is not None:
            out["plant"] = self.plant.table
        if self.success is not None:
            s = self.success
            out["success"] = {"radius": s.radius, "positions": list(s.positions), "hold": s.hold}
        return out


def build_closed_loop(raw: Mapping, source: str, system: Any, system_table: Mapping,
                      build_system: Callable[[Mapping, str], Any]) -> ClosedLoopSpec:
    """The ``[mpc]``, ``[plant]`` and ``[success]`` tables of a time-stepped problem file (each optional)."""
    mpc = build_mpc(raw["mpc"], source) if "mpc" in raw else None
    episode = mpc.settings.episode if mpc is not None else None
    plant = build_plant(raw["plant"], source, system, system_table, build_system, episode) if "plant" in raw else None
    success = build_success(raw["success"], source, int(system.state_size), episode) if "success" in raw else None
    return ClosedLoopSpec(mpc=mpc, plant=plant, success=success)
