"""`gradient`: the paper's loop, a gradient oracle driving an optax optimiser.

    g_k = oracle.estimate(key_k, problem, U_k)        (any oracle: exact, fobg, zobg, aobg, ...)
    U_{k+1} = U_k + optimizer.update(g_k)            (sgd: U_k - step * g_k, the paper's §5.1; adam; ...)

The oracle's diagnostics (α, the batch variances, the bias gap, the radius, the simulator calls it spent)
become the method's info, with the norm of the estimate and whether the update was skipped. A non-finite
estimate stops the seed, unless ``skip_non_finite`` is set: then the update is skipped
(``optax.apply_if_finite``) and the seed goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import Array

from trajopt.optim import SGD
from trajopt.oracles.base import OracleInfo

# apply_if_finite gives up after this many consecutive non-finite gradients; large enough never to happen.
_NEVER = 2**31 - 2


class GradientState(NamedTuple):
    """U: [T, m] the current decision; opt_state: the optimiser's state."""

    U: Array
    opt_state: Any


class GradientInfo(NamedTuple):
    """The oracle's `OracleInfo` fields, then ``grad_norm`` (‖g_k‖) and ``skipped`` (a skipped update)."""

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


assert GradientInfo._fields[: len(OracleInfo._fields)] == OracleInfo._fields


def _all_finite(tree) -> Array:
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


@dataclass(frozen=True)
class GradientMethod:
    """oracle: a gradient oracle (``estimate(key, problem, U) -> (grad, info)``, see `trajopt.oracles`);
    optimizer: an optimiser config from `trajopt.optim` (``SGD(step=1e-3)``, ``Adam(...)``) or any optax
    ``GradientTransformation``; skip_non_finite: skip an update whose estimate is not finite instead of
    stopping the seed."""

    oracle: Any
    optimizer: Any = field(default_factory=SGD)
    skip_non_finite: bool = False
    name: ClassVar[str] = "gradient"

    def __post_init__(self):
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

    def init(self, key: Array, problem, U0: Array) -> GradientState:
        del key, problem
        return GradientState(U=U0, opt_state=self.transform().init(U0))

    def step(self, key: Array, problem, state: GradientState) -> tuple[GradientState, GradientInfo]:
        grad, info = self.oracle.estimate(key, problem, state.U)
        updates, opt_state = self.transform().update(grad, state.opt_state, state.U)
        U_next = optax.apply_updates(state.U, updates)
        grad_finite = _all_finite(grad)
        if not self.skip_non_finite:  # a non-finite estimate stops the seed (solve sees a non-finite iterate)
            U_next = jnp.where(grad_finite, U_next, jnp.nan)
        return GradientState(U=U_next, opt_state=opt_state), GradientInfo(
            **info._asdict(), grad_norm=jnp.linalg.norm(grad), skipped=~grad_finite)
