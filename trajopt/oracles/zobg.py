"""`zobg`: the zeroth-order batched gradient with the zero-noise baseline (Suh et al. 2022, §2.2: REINFORCE).

    ZoBG(U) = (1/N) sum_i (f(U + w_i) - f(U)) * w_i / sigma^2,   w_i ~ N(0, sigma^2 I)

Unbiased for grad F even when f is discontinuous (the derivative falls on the Gaussian density). The
baseline f(U) is deterministic, so it does not bias the estimate. N + 1 rollouts, no backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from trajopt import checks
from trajopt.oracles._samples import zeroth_order_samples
from trajopt.oracles.base import make_info
from trajopt.stats import sample_mean_and_trace_variance


@dataclass(frozen=True)
class ZoBG:
    """samples: N; sigma: perturbation standard deviation on U."""

    samples: int = 10
    sigma: float = 0.1
    name: ClassVar[str] = "zobg"

    def __post_init__(self):
        checks.at_least("samples", self.samples, 2)
        checks.positive("sigma", self.sigma)

    def estimate(self, key, problem, U):
        baseline = problem.objective(U)
        g0 = zeroth_order_samples(key, problem, U, self.samples, self.sigma, baseline)
        grad, var_zero = sample_mean_and_trace_variance(g0)
        return grad, make_info(baseline, var_zero=var_zero, rollouts=self.samples + 1)
