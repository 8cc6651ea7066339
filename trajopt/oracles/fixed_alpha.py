"""`fixed_alpha`: a fixed convex combination of independent FoBG and ZoBG batches.

    grad = alpha * FoBG(U) + (1 - alpha) * ZoBG(U)        (alpha a constant in [0, 1])

A control for `aobg`: the same samples and cost (2N + 1 rollouts, N backward passes) without the
adaptive weight. alpha = 1 is a FoBG and alpha = 0 a ZoBG, each on its own independent batch.
``split`` chooses the batches as for `aobg` ("independent", "halves" or "shared").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax.numpy as jnp

from trajopt import checks
from trajopt.oracles._samples import check_split, split_sizes
from trajopt.oracles.aobg import split_estimates
from trajopt.oracles.base import make_info


@dataclass(frozen=True)
class FixedAlpha:
    samples: int = 10
    sigma: float = 0.1
    alpha: float = 0.5
    split: str = "independent"
    name: ClassVar[str] = "fixed_alpha"
    colour: ClassVar[str] = "#8c564b"  # its colour in every figure
    chooses_alpha: ClassVar[bool] = False  # mixes FoBG and ZoBG with an α of its own rule

    def __post_init__(self):
        checks.at_least("samples", self.samples, 2)
        checks.positive("sigma", self.sigma)
        checks.in_interval("alpha", self.alpha, 0.0, 1.0)
        check_split(self.split, self.samples)

    def estimate(self, key, problem, U):
        value, g1, s1, g0, s0 = split_estimates(key, problem, U, self.samples, self.sigma, self.split)
        _, _, rollouts, gradients = split_sizes(self.samples, self.split)
        grad = self.alpha * g1 + (1.0 - self.alpha) * g0
        info = make_info(
            value, alpha=self.alpha, var_first=s1, var_zero=s0, bias_gap=jnp.linalg.norm(g1 - g0),
            rollouts=rollouts, gradients=gradients,
        )
        return grad, info
