"""`stepwise`: per-coordinate inverse-variance weighting, the open-loop analogue of IVW-H (Onoda et al. 2026).

For every coordinate (t, a) of U: [T, m] (time step t, control dimension a):

    v1[t, a] = Var_i[ g1_i[t, a] ],   v0[t, a] = Var_i[ g0_i[t, a] ]          (1/(N-1), across samples)
    alpha[t, a] = v0[t, a] / (v0[t, a] + v1[t, a] + regulariser)
    grad[t, a]  = alpha[t, a] * FoBG[t, a] + (1 - alpha[t, a]) * ZoBG[t, a]

with FoBG, ZoBG and the per-sample g1_i, g0_i from the same batches as `aobg` (`split`, default
independent: 2N + 1 rollouts, N backward passes): no simulator calls beyond AoBG's. In the follow-up's
IVW-H the weights are per (time step, action dimension) of a policy's action-space gradient; in open-loop
trajectory optimisation the decision *is* the action sequence, so the action-space gradient is the gradient
itself and no policy VJP is needed. As in IVW-H there is no bias constraint, no EMA and no clipping; the
regulariser (the reference code's 1e-5) is applied per coordinate, so for T * m = 1 the oracle is exactly
`ivw`.

Each coordinate is independent under sample splitting, so the per-coordinate weight minimises that
coordinate's variance alpha^2 v1 + (1 - alpha)^2 v0: a stiff contact that makes a few time steps' FoBG noisy
no longer drags the weight of the smooth steps to zero. The per-coordinate variances rest on N samples each
(N - 1 degrees of freedom), so the weights are noisy at small N.

``info.alpha`` is the mean of alpha[t, a] over the T * m coordinates (a summary for logs and plots; the
estimate uses every alpha[t, a]). ``var_first`` and ``var_zero`` are the usual trace variances (the sums of
v1 and v0), ``bias_gap`` = ||FoBG - ZoBG||.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax.numpy as jnp

from trajopt import checks
from trajopt.oracles._mixing import mixed_calls, mixed_estimate
from trajopt.oracles._samples import check_split
from trajopt.oracles.base import OpenLoop
from trajopt.stats import inverse_variance_alpha, per_coordinate_variance


def stepwise_alpha(g1, g0, regulariser: float):
    """Per-coordinate weights from per-sample batches g1: [N1, *shape], g0: [N0, *shape] -> alpha: shape."""
    return inverse_variance_alpha(per_coordinate_variance(g1), per_coordinate_variance(g0), regulariser)


@dataclass(frozen=True)
class Stepwise(OpenLoop):
    """samples: N per batch; sigma: perturbation std; regulariser: added to each coordinate's denominator;
    split: the sample split ("independent", "halves" or "shared")."""

    samples: int = 10
    sigma: float = 0.1
    regulariser: float = 1e-5
    split: str = "independent"
    name: ClassVar[str] = "stepwise"
    colour: ClassVar[str] = "#9467bd"  # its colour in every figure
    chooses_alpha: ClassVar[bool] = True  # mixes FoBG and ZoBG with an α of its own rule
    value_in_calls: ClassVar[bool] = True  # the zero-noise baseline f(U), its value, is one of its counted rollouts

    def __post_init__(self):
        checks.at_least("samples", self.samples, 2)
        checks.positive("sigma", self.sigma)
        checks.non_negative("regulariser", self.regulariser)
        check_split(self.split, self.samples)

    needs_values: ClassVar[bool] = False

    def alpha_rule(self, s, problem):
        """alpha[t, a] = v0[t, a] / (v1[t, a] + v0[t, a] + regulariser) per coordinate; details: the trace
        variances as the sums of the per-coordinate ones."""
        v1, v0 = s.per_coordinate()
        return inverse_variance_alpha(v1, v0, self.regulariser), {"var_first": jnp.sum(v1), "var_zero": jnp.sum(v0)}

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per estimate: the split's (2N + 1, N independent)."""
        return mixed_calls(self)

    def estimate(self, key, problem, U):
        return mixed_estimate(self, key, problem, U)
