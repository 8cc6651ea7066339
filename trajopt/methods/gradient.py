"""`gradient`: the paper's loop, a gradient oracle driving an optax optimiser.

    g_k = oracle.estimate(key_k, problem, U_k)        (any oracle: exact, fobg, zobg, aobg, ...)
    U_{k+1} = U_k + optimizer.update(g_k)            (sgd: U_k - step * g_k, the paper's §5.1; adam; ...)

The oracle's diagnostics (α, the batch variances, the bias gap, the radius, the simulator calls it spent)
become the method's info, with the norm of the estimate, whether the update was skipped, the step the
optimiser used (its schedule's value, `trajopt.optim`) and the σ the oracle smoothed with. A non-finite
estimate stops the seed, unless ``skip_non_finite`` is set: then the update is skipped
(``optax.apply_if_finite``) and the seed goes on.

**σ schedules** (for oracles that smooth: every one with a ``sigma``). Iteration k uses

    constant:   sigma_k = sigma_0
    geometric:  sigma_k = sigma_0 (sigma_1 / sigma_0)^(min(k, S - 1) / (S - 1))
    linear:     sigma_k = sigma_0 + (sigma_1 - sigma_0) min(k, S - 1) / (S - 1)

with sigma_0 the oracle's ``sigma``, sigma_1 = ``sigma_final`` and S = ``sigma_steps`` (the run's iterations
when loaded from a file; S = 1 keeps sigma_0, as ``np.linspace(sigma_0, sigma_1, 1)`` does). The estimator at each iteration is the paper's with sigma_k: the oracle is evaluated
as a copy whose ``sigma`` is sigma_k, inside the fused loop (nothing recompiles per iteration). A schedule
with sigma_1 = sigma_0 is constant and runs exactly as one (a σ that is a runtime value rather than a compile-time
constant can change the last bit of an estimate, as XLA then fuses the arithmetic differently).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import copy
import math

import jax.numpy as jnp
import optax
from jax import Array

from trajopt import checks
from trajopt.optim import SGD, current_step
from trajopt.methods._batching import per_element
from trajopt.methods.base import all_finite, check_applicable
from trajopt.oracles.base import OracleInfo

SIGMA_SCHEDULES = ("constant", "geometric", "linear")

# apply_if_finite gives up after this many consecutive non-finite gradients; large enough never to happen.
_NEVER = 2**31 - 2


class GradientState(NamedTuple):
    """U: [T, m] the current decision; opt_state: the optimiser's state; k: the iteration (int32)."""

    U: Array
    opt_state: Any
    k: Array


class GradientInfo(NamedTuple):
    """The oracle's `OracleInfo` fields, then ``grad_norm`` (‖g_k‖), ``skipped`` (a skipped update),
    ``step_size`` (the optimiser's step at k) and ``sigma`` (the oracle's σ at k; NaN if it does not smooth)."""

    value: Array
    alpha: Array
    var_first: Array
    var_zero: Array
    bias_gap: Array
    radius: Array
    rollouts: Array
    gradients: Array
    grad_norm: Array
    skipped: Array
    step_size: Array
    sigma: Array


assert GradientInfo._fields[: len(OracleInfo._fields)] == OracleInfo._fields


@dataclass(frozen=True)
class GradientMethod:
    """oracle: a gradient oracle (``estimate(key, problem, U) -> (grad, info)``, see `trajopt.oracles`);
    optimizer: an optimiser config from `trajopt.optim` (``SGD(step=1e-3)``, ``Adam(...)``) or any optax
    ``GradientTransformation``; skip_non_finite: skip an update whose estimate is not finite instead of
    stopping the seed; sigma_schedule, sigma_final, sigma_steps: the σ schedule (see the module docstring)."""

    oracle: Any
    optimizer: Any = field(default_factory=SGD)
    skip_non_finite: bool = False
    sigma_schedule: str = "constant"
    sigma_final: float = 0.0  # unused (0) unless sigma_schedule is not constant
    sigma_steps: int = 0
    name: ClassVar[str] = "gradient"

    def __post_init__(self):
        checks.one_of("sigma_schedule", self.sigma_schedule, SIGMA_SCHEDULES)
        if self.sigma_schedule != "constant":
            if not isinstance(getattr(self.oracle, "sigma", None), (int, float)):
                raise checks.FieldError("sigma_schedule", self.sigma_schedule,
                                        f"'constant' for oracle {getattr(self.oracle, 'name', '?')!r}, which does not smooth "
                                        "(a σ schedule needs an oracle with sigma)")
            if not math.isfinite(self.oracle.sigma):
                raise checks.FieldError("sigma_schedule", self.sigma_schedule,
                                        "'constant' unless the oracle's own sigma is set (a policy oracle's NaN sigma "
                                        "means the problem's: give the oracle a sigma to schedule it)")
            checks.positive("sigma_final", self.sigma_final)
            checks.at_least("sigma_steps", self.sigma_steps, 1)
        if not callable(getattr(self.oracle, "estimate", None)):
            raise TypeError(f"GradientMethod: oracle must have estimate(key, problem, U); got {type(self.oracle).__name__}")
        if not (callable(getattr(self.optimizer, "build", None)) or isinstance(self.optimizer, optax.GradientTransformation)):
            raise TypeError("GradientMethod: optimizer must be a trajopt optimiser config (trajopt.optim.SGD, Adam) "
                            f"or an optax GradientTransformation; got {type(self.optimizer).__name__}")

    def transform(self) -> optax.GradientTransformation:
        """The optax transformation this method applies (with the non-finite guard in skip mode)."""
        opt = self.optimizer.build() if hasattr(self.optimizer, "build") else self.optimizer
        if self.skip_non_finite:
            opt = optax.apply_if_finite(opt, max_consecutive_errors=_NEVER)
        return opt

    @property
    def scheduled_sigma(self) -> bool:
        """Whether σ changes along the run (a schedule with sigma_final != sigma)."""
        return self.sigma_schedule != "constant" and self.sigma_final != float(self.oracle.sigma)

    def sigma_at(self, k) -> Array:
        """sigma_k of the σ schedule (k: an int or an int32 scalar)."""
        s0 = float(self.oracle.sigma)
        if not self.scheduled_sigma:
            return jnp.asarray(s0, jnp.result_type(float))
        last = max(self.sigma_steps - 1, 1)  # a one-iteration run keeps sigma_0, as np.linspace(s0, s1, 1) does
        t = jnp.minimum(k, self.sigma_steps - 1).astype(jnp.result_type(float)) / last  # in float64
        if self.sigma_schedule == "geometric":
            return s0 * (self.sigma_final / s0) ** t
        return s0 + (self.sigma_final - s0) * t

    def oracle_at(self, k):
        """The oracle iteration k evaluates: itself, or for a σ schedule a copy whose sigma is sigma_k (the copy
        skips the dataclass checks, which cannot run on a traced value)."""
        if not self.scheduled_sigma:
            return self.oracle
        oracle = copy.copy(self.oracle)
        object.__setattr__(oracle, "sigma", self.sigma_at(k))
        return oracle

    @property
    def deterministic(self) -> bool:
        """Whether its steps ignore the key: its oracle's flag (exact, fd)."""
        return bool(getattr(self.oracle, "deterministic", False))

    @property
    def value_in_calls(self) -> bool:
        """Whether the counted rollouts of a step include f(U), the value it reports: its oracle's flag (exact, the
        one-sided ZoBG, the mixing oracles)."""
        return bool(getattr(self.oracle, "value_in_calls", False))

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per step: the oracle's per estimate (for equal-budget comparisons)."""
        return self.oracle.calls(problem)

    def check(self, problem) -> None:
        """Raise ValueError when its oracle cannot estimate on the problem (the oracle's own ``check``: an
        open-loop oracle on a policy problem, a policy oracle on an open-loop one)."""
        check_applicable(self.oracle, problem)

    def init(self, key: Array, problem, U0: Array) -> GradientState:
        del key
        self.check(problem)
        return GradientState(U=U0, opt_state=self.transform().init(U0), k=jnp.asarray(0, jnp.int32))

    def step(self, key: Array, problem, state: GradientState) -> tuple[GradientState, GradientInfo]:
        if self.deterministic:  # one seed at a time under vmap: the same iterates alone and in a batch
            return per_element(lambda key, state: self._step(key, problem, state), vectorise_ok=True)(key, state)
        return self._step(key, problem, state)

    def _step(self, key: Array, problem, state: GradientState) -> tuple[GradientState, GradientInfo]:
        oracle = self.oracle_at(state.k)
        grad, info = oracle.estimate(key, problem, state.U)
        updates, opt_state = self.transform().update(grad, state.opt_state, state.U)
        U_next = optax.apply_updates(state.U, updates)
        grad_finite = all_finite(grad)
        if not self.skip_non_finite:  # a non-finite estimate stops the seed (solve sees a non-finite iterate)
            U_next = jnp.where(grad_finite, U_next, jnp.nan)
        sigma = getattr(oracle, "sigma", math.nan)
        return GradientState(U=U_next, opt_state=opt_state, k=state.k + 1), GradientInfo(
            **info._asdict(), grad_norm=jnp.linalg.norm(grad), skipped=~grad_finite,
            step_size=current_step(self.optimizer, opt_state),
            sigma=jnp.asarray(sigma, jnp.result_type(float)))
