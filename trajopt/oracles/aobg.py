"""`aobg`: the alpha-order batched gradient with the bias-constrained alpha (Suh et al. 2022, §4).

    AoBG(U) = alpha * FoBG(U) + (1 - alpha) * ZoBG(U)

FoBG and ZoBG are computed from *independent* batches of N samples each (sample splitting, App. C.1 of the paper), so
Var[AoBG] = alpha^2 Var[FoBG] + (1 - alpha)^2 Var[ZoBG]. alpha is one scalar per call, the solution of

    min_alpha  alpha^2 s1 + (1 - alpha)^2 s0   s.t.  eps + alpha * B <= gamma           (Eq. 4)

in closed form (Eq. 5, `trajopt.stats.bias_constrained_alpha`), with s1, s0 the empirical trace variances,
B = ||FoBG - ZoBG|| and eps the Bernstein radius on the ZoBG:

    eps = sqrt(2 s0 log((d+1)/p) / N) + (2 L / (3 N)) log((d+1)/p),   d = U.size

where p is the failure probability given by ``delta`` and ``delta_convention`` (see
`trajopt.stats.failure_log_term`; "reference" = the authors' code, p = delta = 0.95). ``gamma = inf``
disables the constraint: alpha = alpha_inf = s0 / (s1 + s0 + regulariser), inverse-variance weighting
(also available on its own as the `ivw` oracle). 2N + 1 rollouts and N backward passes per call.

``split`` (see `trajopt.oracles._samples.SPLITS`) chooses the batches: ``"independent"`` (the default, the
paper's), ``"halves"`` (N/2 + N/2 samples: N + 1 rollouts and N/2 backward passes, the budget of one
N-sample FoBG or ZoBG) or ``"shared"`` (one batch feeds both: N + 1 rollouts, N backward passes). The
radius uses the ZoBG batch's own size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import jax.numpy as jnp

from trajopt import checks
from trajopt.oracles._mixing import mixed_calls, mixed_estimate
from trajopt.oracles._samples import check_split, split_samples
from trajopt.oracles.base import OpenLoop
from trajopt.stats import (
    bernstein_radius,
    bias_constrained_alpha,
    failure_log_term,
    inverse_variance_alpha,
    sample_mean_and_trace_variance,
)


def split_estimates(key, problem, U, samples: int, sigma: float, split: str = "independent"):
    """FoBG and ZoBG means and variances from the batches of a sample split (default: independent), and f(U).

    Returns (value, g1, s1, g0, s0) with g1, g0: U.shape and s1, s0, value: scalars. The batches are
    `trajopt.oracles._samples.split_samples`; their cost is `split_sizes(samples, split)`.
    """
    batches = split_samples(key, problem, U, samples, sigma, split)
    g1, s1 = sample_mean_and_trace_variance(batches.g1)
    g0, s0 = sample_mean_and_trace_variance(batches.g0)
    return batches.value, g1, s1, g0, s0


@dataclass(frozen=True)
class AoBG(OpenLoop):
    """samples: N per batch (2N in all); sigma: perturbation std; gamma: accuracy target (inf = IVW);
    L: the a.s. bound R of the Bernstein radius; delta, delta_convention: see `failure_log_term`;
    regulariser: added to the denominator of alpha_inf (the reference code's 1e-5); split: the sample split
    ("independent", "halves" or "shared")."""

    samples: int = 10
    sigma: float = 0.1
    gamma: float = math.inf
    L: float = 100.0
    delta: float = 0.95
    delta_convention: str = "reference"
    regulariser: float = 1e-5
    split: str = "independent"
    name: ClassVar[str] = "aobg"
    colour: ClassVar[str] = "#2ca02c"  # its colour in every figure
    chooses_alpha: ClassVar[bool] = True  # mixes FoBG and ZoBG with an α of its own rule
    value_in_calls: ClassVar[bool] = True  # the zero-noise baseline f(U), its value, is one of its counted rollouts

    def __post_init__(self):
        checks.at_least("samples", self.samples, 2)
        checks.positive("sigma", self.sigma)
        checks.non_negative("gamma", self.gamma, allow_inf=True)
        checks.non_negative("L", self.L)
        checks.in_interval("delta", self.delta, 0.0, 1.0, closed=False)
        checks.one_of("delta_convention", self.delta_convention, ("reference", "confidence"))
        checks.non_negative("regulariser", self.regulariser)
        check_split(self.split, self.samples)

    needs_values: ClassVar[bool] = False

    def alpha_rule(self, s, problem):
        """Eq. 5: alpha_inf = s0 / (s1 + s0 + regulariser), then the bias constraint with the Bernstein radius
        of the ZoBG batch; details: ``radius``."""
        log_term = failure_log_term(problem.dimension, self.delta, self.delta_convention)
        radius = bernstein_radius(s.s0, s.n0, log_term, self.L)
        gap = jnp.linalg.norm(s.g1 - s.g0)
        alpha = bias_constrained_alpha(inverse_variance_alpha(s.s1, s.s0, self.regulariser), gap, radius, self.gamma)
        return alpha, {"radius": radius}

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per estimate: the split's (2N + 1, N independent)."""
        return mixed_calls(self)

    def estimate(self, key, problem, U):
        return mixed_estimate(self, key, problem, U)
