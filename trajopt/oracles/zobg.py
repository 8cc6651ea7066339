"""`zobg`: the zeroth-order batched gradient with the zero-noise baseline (Suh et al. 2022, §2.2: REINFORCE).

    ZoBG(U) = (1/N) sum_i (f(U + w_i) - f(U)) * w_i / sigma^2,   w_i ~ N(0, sigma^2 I)

Unbiased for grad F even when f is discontinuous (the derivative falls on the Gaussian density). The
baseline f(U) is deterministic, so it does not bias the estimate. N + 1 rollouts, no backward pass.
This default (``estimator = "one_sided"``, ``antithetic = false``) is exactly the paper's estimator.

Variants (each unbiased for grad F, since E[w] = 0 and w, -w have the same law):

* ``estimator = "two_sided"``: g_i = (f(U + w_i) - f(U - w_i)) * w_i / (2 sigma^2), N directions, 2N rollouts.
  The difference cancels the even part of f around U (the constant and the curvature terms), which a
  one-sided sample carries as noise.
* ``antithetic = true``: N/2 directions w_j, each used as +w_j and -w_j (N rollouts, N even and >= 4). The
  pair average is (f(U + w_j) - f(U - w_j)) w_j / (2 sigma^2) for *either* estimator (the baseline cancels
  inside a pair), so with ``antithetic`` the two settings of ``estimator`` coincide: the two-sided estimator
  at the one-sided estimator's budget. No baseline rollout is needed.

Variance reporting: the N/2 antithetic pairs are the independent units; ``var_zero`` is their trace
variance times (N / units), i.e. normalised per sample in every variant, so that var_zero / N estimates the
variance of the ZoBG mean (the quantity inverse-variance weighting compares). ``rollouts`` counts every
perturbed rollout (N + 1, 2N or N); f(U) for monitoring is not counted unless the estimate uses it (the
one-sided baseline: ``value_in_calls``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from trajopt import checks
from trajopt.oracles._samples import ZOBG_ESTIMATORS, zeroth_order_cost, zeroth_order_units
from trajopt.oracles.base import OpenLoop, make_info
from trajopt.stats import sample_mean_and_trace_variance


@dataclass(frozen=True)
class ZoBG(OpenLoop):
    """samples: N; sigma: perturbation standard deviation on U; estimator: "one_sided" (the paper's, with the
    zero-noise baseline) or "two_sided"; antithetic: pair each w with -w (N/2 directions, N even >= 4)."""

    samples: int = 10
    sigma: float = 0.1
    estimator: str = "one_sided"
    antithetic: bool = False
    name: ClassVar[str] = "zobg"
    colour: ClassVar[str] = "#1f77b4"  # its colour in every figure
    chooses_alpha: ClassVar[bool] = False  # mixes FoBG and ZoBG with an α of its own rule

    def __post_init__(self):
        checks.at_least("samples", self.samples, 2)
        checks.positive("sigma", self.sigma)
        checks.one_of("estimator", self.estimator, ZOBG_ESTIMATORS)
        if self.antithetic and (self.samples % 2 or self.samples < 4):
            raise checks.FieldError("samples", self.samples, "an even integer >= 4 with antithetic = true (N/2 pairs +-w)")

    @property
    def value_in_calls(self) -> bool:
        """Whether its counted rollouts include f(U), the value it reports: the one-sided plain estimator's
        baseline (N + 1); the two-sided and antithetic estimators use no baseline and count none."""
        return self.estimator == "one_sided" and not self.antithetic

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per estimate: N + 1 (two-sided 2N, antithetic N), none backward."""
        return zeroth_order_cost(self.samples, self.estimator, self.antithetic)[1], 0

    def estimate(self, key, problem, U):
        baseline = problem.objective(U)
        units = zeroth_order_units(key, problem, U, self.samples, self.sigma, baseline, estimator=self.estimator,
                                   antithetic=self.antithetic)
        grad, var_units = sample_mean_and_trace_variance(units)
        n_units, rollouts = zeroth_order_cost(self.samples, self.estimator, self.antithetic)
        var_zero = var_units * (self.samples / n_units)
        return grad, make_info(baseline, var_zero=var_zero, rollouts=rollouts)
