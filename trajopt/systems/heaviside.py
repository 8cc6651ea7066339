"""Heaviside: the d-dimensional "all coordinates non-negative" step (Suh et al. 2022, Ex. 3.3, Fig. 2).

Decision ``theta: [d]`` (d = ``dimension``); the problem is F(theta) = E c(theta + w), with

    c(theta) = 1   if theta_i >= 0 for every i   else 0        (H(0) = 1)

**Discontinuous** and piecewise constant: the exact gradient is 0 wherever it exists, so the FoBG is
identically 0 (biased, with zero variance) while the ZoBG tracks grad F. For d = 1 and w ~ N(0, sigma^2),
F(theta) = Phi(theta / sigma). Written as a comparison inside ``jnp.where``, never softened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
from jax import Array

from trajopt import checks


@dataclass(frozen=True)
class Heaviside:
    dimension: int = 1

    one_step = True
    state_size = 0
    dt = math.nan

    def __post_init__(self):
        checks.at_least("dimension", self.dimension, 1)

    state_names = ()

    @property
    def control_size(self) -> int:
        return self.dimension

    @property
    def control_names(self) -> tuple[str, ...]:
        """("theta",) in one dimension, else ("theta0", ..., "theta{d-1}")."""
        return ("theta",) if self.dimension == 1 else tuple(f"theta{i}" for i in range(self.dimension))

    def cost(self, theta: Array) -> Array:
        """c(theta) for theta: [d]; a scalar."""
        return jnp.where(jnp.all(theta >= 0), 1.0, 0.0)

    def stable_dt(self) -> float:
        return math.inf
