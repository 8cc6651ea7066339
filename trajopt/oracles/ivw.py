"""`ivw`: inverse-variance weighting of independent FoBG and ZoBG batches, without the bias constraint.

    IVW(U) = alpha * FoBG(U) + (1 - alpha) * ZoBG(U),   alpha = s0 / (s0 + s1 + regulariser)

with s1, s0 the empirical trace variances of the two batches (Suh et al. 2022, alpha_inf of Eq. 5; the 2026
follow-up's "IVW", §4.2). It minimises the variance proxy alpha^2 s1 + (1 - alpha)^2 s0 of Eq. 4 with no
accuracy constraint, so it is `aobg` with gamma = inf, stated as its own oracle: it is what the follow-up
shows failing under empirical bias (a biased FoBG looks low-variance and gets the weight). The batches are
`aobg` (same samples, same keys): 2N + 1 rollouts and N backward passes with the default
``split = "independent"``; see `trajopt.oracles._samples.SPLITS` for "halves" and "shared".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


from trajopt import checks
from trajopt.oracles._mixing import mixed_calls, mixed_estimate
from trajopt.oracles._samples import check_split
from trajopt.oracles.base import OpenLoop
from trajopt.stats import inverse_variance_alpha


@dataclass(frozen=True)
class IVW(OpenLoop):
    """samples: N per batch; sigma: perturbation std; regulariser: added to the denominator of alpha (the
    reference code's 1e-5); split: the sample split ("independent", "halves" or "shared")."""

    samples: int = 10
    sigma: float = 0.1
    regulariser: float = 1e-5
    split: str = "independent"
    name: ClassVar[str] = "ivw"
    colour: ClassVar[str] = "#ff7f0e"  # its colour in every figure
    chooses_alpha: ClassVar[bool] = True  # mixes FoBG and ZoBG with an α of its own rule
    value_in_calls: ClassVar[bool] = True  # the zero-noise baseline f(U), its value, is one of its counted rollouts

    def __post_init__(self):
        checks.at_least("samples", self.samples, 2)
        checks.positive("sigma", self.sigma)
        checks.non_negative("regulariser", self.regulariser)
        check_split(self.split, self.samples)

    needs_values: ClassVar[bool] = False

    def alpha_rule(self, s, problem):
        """alpha = s0 / (s1 + s0 + regulariser): inverse-variance weighting."""
        return inverse_variance_alpha(s.s1, s.s0, self.regulariser), {}

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per estimate: the split's (2N + 1, N independent)."""
        return mixed_calls(self)

    def estimate(self, key, problem, U):
        return mixed_estimate(self, key, problem, U)
