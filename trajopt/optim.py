"""Optimisers, built on optax. Each is a frozen dataclass whose fields are the keys allowed in a problem
file's ``[solve.optimizer]`` table (and a variant's ``optimizer`` table), with
``build() -> optax.GradientTransformation``.

* ``sgd``: gradient descent, U <- U - step_k * g (with a constant step: the paper's method, §5.1).
* ``adam``: Adam with learning rate step_k.

The step schedule (optax's schedules, never written by hand here), by ``schedule``:

| schedule        | step_k                                                                   | optax |
|-----------------|--------------------------------------------------------------------------|-------|
| "constant"      | step                                                                     | —     |
| "cosine"        | step·(final_scale + (1 − final_scale)·½(1 + cos(π·min(k, D)/D)))          | cosine_decay_schedule |
| "exponential"   | step·decay_rate^(k/D)                                                    | exponential_decay |
| "warmup_cosine" | linear 0 → step over warmup_steps, then cosine to step·final_scale at D   | warmup_cosine_decay_schedule |
| "piecewise"     | step·∏ scales[i] over the boundaries[i] <= k                              | piecewise_constant_schedule |
| "power"         | step·(k + 1)^(−power)  (the tennis code's 1e-6·k^−0.1, k counted from 1)    | — (optax has none: one line here) |

D = ``decay_steps`` (0: the run's iterations, filled in by `build_optimizer`, which checks the table). A scheduled
optimiser is wrapped in ``optax.inject_hyperparams`` so that the step actually used at each iteration can be read
from its state (`current_step`) and recorded. ``clip_norm``: clip the gradient to this global norm before the
update (``inf`` = no clipping, the paper's setting), via ``optax.clip_by_global_norm``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar, Mapping, Union

import jax.numpy as jnp
import optax

from trajopt import checks
from trajopt.registry import Registry, UnknownName
from trajopt.tables import build_config, describe
from trajopt.tomlio import SpecError

SCHEDULES = ("constant", "cosine", "exponential", "warmup_cosine", "piecewise", "power")


def _with_clipping(clip_norm: float, inner: optax.GradientTransformation) -> optax.GradientTransformation:
    if math.isinf(clip_norm):
        return inner
    return optax.chain(optax.clip_by_global_norm(clip_norm), inner)


@dataclass(frozen=True)
class _Scheduled:
    """The step, its schedule and clipping, shared by every optimiser."""

    step: float = 1e-3
    schedule: str = "constant"
    decay_steps: int = 0
    final_scale: float = 0.0
    decay_rate: float = 0.1
    warmup_steps: int = 0
    boundaries: tuple[int, ...] = ()
    scales: tuple[float, ...] = ()
    power: float = 0.1
    clip_norm: float = math.inf

    def _check_schedule(self) -> None:
        checks.positive("step", self.step)
        checks.one_of("schedule", self.schedule, SCHEDULES)
        checks.at_least("decay_steps", self.decay_steps, 0)
        checks.in_interval("final_scale", self.final_scale, 0.0, 1.0)
        checks.positive("decay_rate", self.decay_rate)
        checks.non_negative("power", self.power)
        checks.at_least("warmup_steps", self.warmup_steps, 0)
        checks.positive("clip_norm", self.clip_norm, allow_inf=True)
        if len(self.boundaries) != len(self.scales):
            raise checks.FieldError("scales", list(self.scales), f"one scale per boundary ({len(self.boundaries)})")
        if any(b <= 0 for b in self.boundaries) or list(self.boundaries) != sorted(set(self.boundaries)):
            raise checks.FieldError("boundaries", list(self.boundaries), "increasing iteration numbers > 0")
        if any(not (s > 0 and math.isfinite(s)) for s in self.scales):
            raise checks.FieldError("scales", list(self.scales), "finite numbers > 0")
        if self.schedule == "piecewise" and not self.boundaries:
            raise checks.FieldError("boundaries", [], "at least one boundary for schedule = 'piecewise'")
        if self.schedule == "warmup_cosine" and self.decay_steps and self.warmup_steps >= self.decay_steps:
            raise checks.FieldError("warmup_steps", self.warmup_steps, f"fewer than decay_steps ({self.decay_steps})")

    def learning_rate(self) -> Union[float, optax.Schedule]:
        """The step: a float (constant) or an optax schedule k -> step_k."""
        d = max(self.decay_steps, 1)
        if self.schedule == "constant":
            return self.step
        if self.schedule == "cosine":
            return optax.cosine_decay_schedule(self.step, d, alpha=self.final_scale)
        if self.schedule == "exponential":
            return optax.exponential_decay(self.step, transition_steps=d, decay_rate=self.decay_rate)
        if self.schedule == "warmup_cosine":
            return optax.warmup_cosine_decay_schedule(0.0, self.step, self.warmup_steps, d,
                                                      end_value=self.step * self.final_scale)
        if self.schedule == "power":
            step, power = self.step, self.power
            return lambda count: step * (count + 1.0) ** (-power)
        return optax.piecewise_constant_schedule(self.step, dict(zip(self.boundaries, self.scales)))

    def _build(self, factory) -> optax.GradientTransformation:
        if self.schedule == "constant":
            return _with_clipping(self.clip_norm, factory(self.step))
        return _with_clipping(self.clip_norm, optax.inject_hyperparams(factory)(learning_rate=self.learning_rate()))


@dataclass(frozen=True)
class SGD(_Scheduled):
    """U <- U - step_k * g."""

    step: float = 1e-3
    name: ClassVar[str] = "sgd"

    def __post_init__(self):
        self._check_schedule()

    def build(self) -> optax.GradientTransformation:
        return self._build(optax.sgd)


@dataclass(frozen=True)
class Adam(_Scheduled):
    """Adam (Kingma & Ba) with learning rate ``step`` (or its schedule) and moment decays b1, b2."""

    step: float = 1e-2
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    name: ClassVar[str] = "adam"

    def __post_init__(self):
        self._check_schedule()
        checks.in_interval("b1", self.b1, 0.0, 1.0)
        checks.in_interval("b2", self.b2, 0.0, 1.0)
        checks.positive("eps", self.eps)

    def build(self) -> optax.GradientTransformation:
        def adam(learning_rate):
            return optax.adam(learning_rate, b1=self.b1, b2=self.b2, eps=self.eps)

        return self._build(adam)


def current_step(optimizer, opt_state):
    """The step the last update used: the constant step, or the injected learning rate read from the state
    (NaN for an optax transformation that does not expose one)."""
    if isinstance(optimizer, _Scheduled) and optimizer.schedule == "constant":
        return jnp.asarray(optimizer.step, dtype=jnp.result_type(float))
    try:
        lr = optax.tree_utils.tree_get(opt_state, "hyperparams", {}).get("learning_rate")
    except (KeyError, ValueError, AttributeError):
        lr = None
    return jnp.asarray(jnp.nan if lr is None else lr, dtype=jnp.result_type(float))


OPTIMIZERS: Registry[type] = Registry("optimizer")
OPTIMIZERS.register("sgd", SGD)
OPTIMIZERS.register("adam", Adam)

DEFAULT_OPTIMIZER = {"name": "sgd"}  # a file without [solve.optimizer]


def build_optimizer(table: Mapping, source: str, key: str, iterations: int):
    """An optimiser config from a ``{name = ..., step = ...}`` table (``[solve.optimizer]``, or a variant's
    ``optimizer``, at ``key``; name defaults to sgd); a schedule's ``decay_steps = 0`` becomes the run's
    ``iterations``. A bad key is a `SpecError` at its path (``solve.optimizer.step``)."""
    opt_name = table.get("name", "sgd")
    if not isinstance(opt_name, str):
        raise SpecError(source, f"{key}.name", f"found {describe(opt_name)}, allowed: {', '.join(OPTIMIZERS.names())}")
    try:
        opt_cls = OPTIMIZERS.get(opt_name)
    except UnknownName as e:
        raise SpecError(source, f"{key}.name", str(e)) from None
    opt = build_config(opt_cls, table, source, f"{key}.", ignore=("name",))
    if getattr(opt, "schedule", "constant") != "constant" and getattr(opt, "decay_steps", 1) == 0:
        try:
            opt = dataclasses.replace(opt, decay_steps=iterations)
        except checks.FieldError as e:
            raise SpecError(source, f"{key}.{e.field}", f"found {e.found!r}, allowed: {e.allowed}") from None
    return opt
