"""Ball with wall: a one-step, discontinuous projectile problem (Suh et al. 2022, Fig. 1B, 3, 7).

Decision ``theta = [angle]`` (rad): the launch angle; the problem is F(theta) = E c(theta + w). Closed-form
ballistics with launch speed v0 and gravity g; a wall of height h_w stands at distance d_w:

    x_t  = 2 v0^2 sin(theta) cos(theta) / g                        (free landing distance)
    y_w  = -g d_w^2 / (2 v0^2 cos(theta)^2) + d_w tan(theta)       (ball height at the wall)
    x_f  = d_w   if x_t > d_w and y_w <= h_w   (hits the wall, inelastic impact, stops there)
         = x_t   otherwise
    c    = -x_f^2

**Discontinuous**: the cost jumps where the ball starts or stops clearing the wall (theta ~ 0.6932 and
1.1993 for the defaults) and is flat (-d_w^2) on the wall-hitting bands, where autodiff returns 0. The
unsmoothed optimum is theta = pi/4, c = -(v0^2 / g)^2 = -0.0103911.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
from jax import Array

from trajopt import checks


@dataclass(frozen=True)
class BallWithWall:
    speed: float = 1.0
    gravity: float = 9.81
    wall_distance: float = 0.06
    wall_height: float = 0.02

    one_step = True
    state_size = 0
    control_size = 1
    state_names = ()
    control_names = ("launch angle",)
    dt = math.nan

    def __post_init__(self):
        checks.positive("speed", self.speed)
        checks.positive("gravity", self.gravity)
        checks.positive("wall_distance", self.wall_distance)
        checks.finite("wall_height", self.wall_height)

    def landing(self, theta: Array) -> Array:
        """x_f for theta: [1]; a scalar."""
        a, v2, g, d = theta[0], self.speed**2, self.gravity, self.wall_distance
        free = 2.0 * v2 * jnp.sin(a) * jnp.cos(a) / g
        height = -g * d**2 / (2.0 * v2 * jnp.cos(a) ** 2) + d * jnp.tan(a)
        hits = (free > d) & (height <= self.wall_height)
        return jnp.where(hits, d, free)

    def cost(self, theta: Array) -> Array:
        """c(theta) = -x_f^2 for theta: [1]; a scalar."""
        return -self.landing(theta) ** 2

    def stable_dt(self) -> float:
        return math.inf
