"""Pivot ("angular momentum transfer"): a one-step toy with a cliff (Suh et al. 2022, Fig. 1C, 7).

Decision ``theta = [angle]`` (rad); the problem is F(theta) = E c(theta + w), with

    c(theta) = -sin(theta)^2   if |theta| <= theta_max   else 0      (theta_max = ``max_angle``, pi/4)

The ball hits the pivoting bar while |theta| <= theta_max and misses it otherwise. **Discontinuous**: the
unsmoothed optimum sits on the cliff edge theta = theta_max (c = -1/2 there, 0 just beyond), so following
the exact gradient walks off the cliff; the smoothed optimum lies inside the safe region.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
from jax import Array

from trajopt import checks


@dataclass(frozen=True)
class Pivot:
    max_angle: float = math.pi / 4

    one_step = True
    state_size = 0
    control_size = 1
    state_names = ()
    control_names = ("theta",)
    dt = math.nan

    def __post_init__(self):
        checks.positive("max_angle", self.max_angle)

    def cost(self, theta: Array) -> Array:
        """c(theta) for theta: [1]; a scalar."""
        a = theta[0]
        return jnp.where(jnp.abs(a) <= self.max_angle, -jnp.sin(a) ** 2, 0.0)

    def stable_dt(self) -> float:
        return math.inf
