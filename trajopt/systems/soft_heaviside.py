"""Soft Heaviside: the linear-ramp relaxation of a sign-like step, i.e. of Coulomb friction.

Suh et al. 2022, Ex. 3.6 and Fig. 4; the authors' class ``SoftHeaviside(nu)``. Decision
``theta = [t]``; the problem is F(theta) = E c(theta + w), with ramp width nu (``width``, the slip
tolerance):

    c(t) = -1        for t <= -nu/2
         = 2 t / nu  for -nu/2 < t < nu/2
         = +1        for t >= nu/2

This is the code's sign-like version (the paper's printed H-bar is not continuous at -nu/2). The law is
**continuous** (two kinks) but stiff: its slope 2/nu is nonzero only on a band of width nu, so the FoBG
has empirical bias and variance ~ 1/nu as nu -> 0; nu = 0 is the sign function (Coulomb friction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
from jax import Array

from trajopt import checks


@dataclass(frozen=True)
class SoftHeaviside:
    width: float = 0.005

    one_step = True
    state_size = 0
    control_size = 1
    state_names = ()
    control_names = ("theta",)
    dt = math.nan

    def __post_init__(self):
        checks.positive("width", self.width)

    def cost(self, theta: Array) -> Array:
        """c(theta) for theta: [1]; a scalar."""
        t, half = theta[0], 0.5 * self.width
        return jnp.where(t <= -half, -1.0, jnp.where(t >= half, 1.0, 2.0 * t / self.width))

    def stable_dt(self) -> float:
        return math.inf
