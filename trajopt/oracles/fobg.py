"""`fobg`: the first-order batched gradient (Suh et al. 2022, §2.2: the reparameterisation gradient).

    FoBG(U) = (1/N) sum_i grad_U f(U + w_i),   w_i ~ N(0, sigma^2 I)

Unbiased for the smoothed objective F(U) = E f(U + w) when the dynamics are locally Lipschitz; biased
under discontinuities (on a flat branch every sample is 0), and high-variance under stiffness and chaos.
N rollouts and N backward passes per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from trajopt import checks
from trajopt.oracles._samples import first_order_samples
from trajopt.oracles.base import OpenLoop, make_info
from trajopt.stats import sample_mean_and_trace_variance


@dataclass(frozen=True)
class FoBG(OpenLoop):
    """samples: N; sigma: perturbation standard deviation on U."""

    samples: int = 10
    sigma: float = 0.1
    name: ClassVar[str] = "fobg"
    colour: ClassVar[str] = "#d62728"  # its colour in every figure
    chooses_alpha: ClassVar[bool] = False  # mixes FoBG and ZoBG with an α of its own rule

    def __post_init__(self):
        checks.at_least("samples", self.samples, 2)
        checks.positive("sigma", self.sigma)

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per estimate: N of each."""
        return self.samples, self.samples

    def estimate(self, key, problem, U):
        g1 = first_order_samples(key, problem, U, self.samples, self.sigma)
        grad, var_first = sample_mean_and_trace_variance(g1)
        rollouts, gradients = self.calls(problem)
        info = make_info(problem.objective(U), var_first=var_first, rollouts=rollouts, gradients=gradients)
        return grad, info
