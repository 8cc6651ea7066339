"""`fixed_alpha`: a fixed convex combination of independent FoBG and ZoBG batches.

    grad = alpha * FoBG(U) + (1 - alpha) * ZoBG(U)        (alpha a constant in [0, 1])

A control for `aobg`: the same samples and cost (2N + 1 rollouts, N backward passes) without the
adaptive weight. alpha = 1 is a FoBG and alpha = 0 a ZoBG, each on its own independent batch.
``split`` chooses the batches as for `aobg` ("independent", "halves" or "shared").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


from trajopt import checks
from trajopt.oracles._mixing import mixed_calls, mixed_estimate
from trajopt.oracles._samples import check_split
from trajopt.oracles.base import OpenLoop


@dataclass(frozen=True)
class FixedAlpha(OpenLoop):
    samples: int = 10
    sigma: float = 0.1
    alpha: float = 0.5
    split: str = "independent"
    name: ClassVar[str] = "fixed_alpha"
    colour: ClassVar[str] = "#8c564b"  # its colour in every figure
    chooses_alpha: ClassVar[bool] = False  # mixes FoBG and ZoBG with an α of its own rule
    value_in_calls: ClassVar[bool] = True  # the zero-noise baseline f(U), its value, is one of its counted rollouts

    def __post_init__(self):
        checks.at_least("samples", self.samples, 2)
        checks.positive("sigma", self.sigma)
        checks.in_interval("alpha", self.alpha, 0.0, 1.0)
        check_split(self.split, self.samples)

    needs_values: ClassVar[bool] = False

    def alpha_rule(self, s, problem):
        """The configured alpha, whatever the batches say."""
        return self.alpha, {}

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per estimate: the split's (2N + 1, N independent)."""
        return mixed_calls(self)

    def estimate(self, key, problem, U):
        return mixed_estimate(self, key, problem, U)
