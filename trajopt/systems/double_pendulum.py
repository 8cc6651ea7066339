"""Double pendulum: the textbook equal-mass, equal-length double pendulum with two joint torques.

Suh et al. 2022, §3.3 and Fig. 6 (the chaos-versus-horizon study; authors' code ``examples/double_pendulum``,
github.com/hjsuh94/alpha_gradient). The reference's equations are wrong and its
angle wrap makes the cost discontinuous; this is the textbook model, with **no angle wrapping**, so the
dynamics are smooth (no contact) and the difficulty is chaos only.

Two point masses m on massless rods of length l. State ``x = [q1, q2, w1, w2]`` (rad, rad/s): absolute
angles from the downward vertical (q = [pi, pi] is upright) and their rates. Control ``u = [tau1, tau2]``
(N m): tau1 at the shoulder (ground - link 1), tau2 at the elbow (link 1 - link 2); with absolute angles
the generalised forces are Q = [tau1 - tau2, tau2]. With D = q1 - q2, the Euler-Lagrange equations are

    m l^2 [[2, cos D], [cos D, 1]] [w1_dot, w2_dot]
        = Q - m l^2 sin D [w2^2, -w1^2] - m g l [2 sin q1, sin q2]

solved in closed form (det = m^2 l^4 (2 - cos^2 D) > 0). Energy (conserved for u = 0):

    E = m l^2 (w1^2 + w2^2 / 2 + w1 w2 cos D) - m g l (2 cos q1 + cos q2)

Semi-implicit Euler: ``w' = w + h w_dot(q, w, u)``, ``q' = q + h w'``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
from jax import Array

from trajopt import checks


@dataclass(frozen=True)
class DoublePendulum:
    mass: float = 0.1
    length: float = 1.0
    gravity: float = 9.81
    dt: float = 0.001

    state_size = 4
    control_size = 2
    state_names = ("q1", "q2", "w1", "w2")
    control_names = ("tau1", "tau2")

    def __post_init__(self):
        checks.positive("mass", self.mass)
        checks.positive("length", self.length)
        checks.finite("gravity", self.gravity)
        checks.positive("dt", self.dt)

    def acceleration(self, x: Array, u: Array) -> Array:
        """[w1_dot, w2_dot] for x: [4], u: [2]."""
        q1, q2, w1, w2 = x[0], x[1], x[2], x[3]
        ml2, mgl = self.mass * self.length**2, self.mass * self.gravity * self.length
        s, c = jnp.sin(q1 - q2), jnp.cos(q1 - q2)
        b1 = (u[0] - u[1]) - ml2 * s * w2**2 - 2.0 * mgl * jnp.sin(q1)
        b2 = u[1] + ml2 * s * w1**2 - mgl * jnp.sin(q2)
        det = ml2 * (2.0 - c**2)
        return jnp.stack([(b1 - c * b2) / det, (2.0 * b2 - c * b1) / det])

    def energy(self, x: Array) -> Array:
        """Total mechanical energy E(x) (J), for x: [4]."""
        q1, q2, w1, w2 = x[0], x[1], x[2], x[3]
        ml2, mgl = self.mass * self.length**2, self.mass * self.gravity * self.length
        kinetic = ml2 * (w1**2 + 0.5 * w2**2 + w1 * w2 * jnp.cos(q1 - q2))
        return kinetic - mgl * (2.0 * jnp.cos(q1) + jnp.cos(q2))

    def step(self, x: Array, u: Array) -> Array:
        """One step: x [4], u [2] -> x' [4]."""
        vel = x[2:] + self.dt * self.acceleration(x, u)
        pos = x[:2] + self.dt * vel
        return jnp.concatenate([pos, vel])

    def stable_dt(self) -> float:
        return math.inf
