"""`fd`: central finite differences of the noise-free objective, coordinate by coordinate.

    grad_j = (f(U + h_j e_j) - f(U - h_j e_j)) / (2 h_j),   h_j = step * max(1, |U_j|)

No smoothing (like `exact`, it estimates grad f, not grad F) and no autodiff: a reference for small decision
vectors and for checks. The step is *relative* for entries larger than 1 in magnitude and *absolute* (= step)
otherwise, the usual guard that keeps U_j + h_j representable without making h_j vanish near 0. The default
1e-6 balances the O(h^2) truncation error against the O(eps |f| / h) rounding error in float64 (about
1e-10 relative for a well-scaled f); use a larger step in float32. On a discontinuity within h_j of U the
quotient is the jump over 2 h_j; on a kink it is the average of the two one-sided slopes.

2d rollouts (d = T * m) per call, no backward pass; all 2d perturbed rollouts run as one ``vmap``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp

from trajopt import checks
from trajopt.oracles.base import OpenLoop, make_info


@dataclass(frozen=True)
class FD(OpenLoop):
    """step: the finite-difference step h (relative to |U_j| where that exceeds 1, absolute otherwise)."""

    step: float = 1e-6
    name: ClassVar[str] = "fd"
    colour: ClassVar[str] = "#17becf"  # its colour in every figure
    chooses_alpha: ClassVar[bool] = False  # mixes FoBG and ZoBG with an α of its own rule
    deterministic: ClassVar[bool] = True  # the same U gives the same estimate, whatever the key

    def __post_init__(self):
        checks.positive("step", self.step)

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per estimate: two per coordinate, no backward pass."""
        return 2 * problem.dimension, 0

    def estimate(self, key, problem, U):
        del key
        d = U.size
        u = U.reshape(-1)
        h = self.step * jnp.maximum(1.0, jnp.abs(u))
        plus, minus = u + h, u - h
        eye = jnp.eye(d, dtype=bool)
        # Perturb coordinate j to the representable u_j +- h_j and divide by the step actually taken.
        perturbed = jnp.concatenate([jnp.where(eye, plus[None], u[None]), jnp.where(eye, minus[None], u[None])])
        values = jax.vmap(problem.objective)(perturbed.reshape((2 * d, *U.shape)))
        grad = ((values[:d] - values[d:]) / (plus - minus)).reshape(U.shape)
        return grad, make_info(problem.objective(U), rollouts=self.calls(problem)[0])
