"""Acrobot: the Sutton–Barto acrobot of trajax's tests (after OpenAI gym's Acrobot, "book" dynamics).

State ``x = [theta1, theta2, dtheta1, dtheta2]``: theta1 the shoulder angle from hanging down, theta2 the
elbow angle relative to link 1 (x = [pi, 0, 0, 0] is upright). Control ``u = [tau]``: a torque on joint 2
only. With masses m1, m2, link length l1, centres of mass lc1, lc2, inertias I1, I2 and gravity g:

    d1   = m1 lc1^2 + m2 (l1^2 + lc2^2 + 2 l1 lc2 cos theta2) + I1 + I2
    d2   = m2 (lc2^2 + l1 lc2 cos theta2) + I2
    phi2 = m2 lc2 g cos(theta1 + theta2 - pi/2)
    phi1 = -m2 l1 lc2 dtheta2^2 sin theta2 - 2 m2 l1 lc2 dtheta2 dtheta1 sin theta2
           + (m1 lc1 + m2 l1) g cos(theta1 - pi/2) + phi2
    ddtheta2 = (tau + d2/d1 phi1 - m2 l1 lc2 dtheta1^2 sin theta2 - phi2) / (m2 lc2^2 + I2 - d2^2/d1)
    ddtheta1 = -(d2 ddtheta2 + phi1) / d1

exactly as trajax's ``tests/optimizers_test.py::acrobot`` (params m1 = m2 = 1, l1 = 1, lc1 = lc2 = 0.5,
I1 = I2 = 1, g = 9.8), integrated with ``integrator`` ("euler", as in trajax's acrobot solve test, or
"rk4") over h = ``dt`` = 0.1, u held over the step. Smooth, no contact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
from jax import Array

from trajopt import checks
from trajopt.systems.integrators import INTEGRATORS, integrate


@dataclass(frozen=True)
class Acrobot:
    m1: float = 1.0
    m2: float = 1.0
    l1: float = 1.0
    lc1: float = 0.5
    lc2: float = 0.5
    I1: float = 1.0
    I2: float = 1.0
    g: float = 9.8
    dt: float = 0.1
    integrator: str = "euler"

    state_size = 4
    control_size = 1
    state_names = ("theta1", "theta2", "dtheta1", "dtheta2")
    control_names = ("elbow torque",)

    def __post_init__(self):
        for name in ("m1", "m2", "l1", "lc1", "lc2", "I1", "I2", "dt"):
            checks.positive(name, getattr(self, name))
        checks.finite("g", self.g)
        checks.one_of("integrator", self.integrator, INTEGRATORS)

    def dynamics(self, x: Array, u: Array) -> Array:
        """xdot = [dtheta1, dtheta2, ddtheta1, ddtheta2] for x: [4], u: [1]."""
        m1, m2, l1, lc1, lc2, I1, I2, g = self.m1, self.m2, self.l1, self.lc1, self.lc2, self.I1, self.I2, self.g
        theta1, theta2, dtheta1, dtheta2 = x[0], x[1], x[2], x[3]
        d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * jnp.cos(theta2)) + I1 + I2
        d2 = m2 * (lc2**2 + l1 * lc2 * jnp.cos(theta2)) + I2
        phi2 = m2 * lc2 * g * jnp.cos(theta1 + theta2 - jnp.pi / 2.0)
        phi1 = (-m2 * l1 * lc2 * dtheta2**2 * jnp.sin(theta2)
                - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * jnp.sin(theta2)
                + (m1 * lc1 + m2 * l1) * g * jnp.cos(theta1 - jnp.pi / 2) + phi2)
        ddtheta2 = ((u[0] + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * jnp.sin(theta2) - phi2)
                    / (m2 * lc2**2 + I2 - d2**2 / d1))
        ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return jnp.stack([dtheta1, dtheta2, ddtheta1, ddtheta2])

    def step(self, x: Array, u: Array) -> Array:
        """One step: x [4], u [1] -> x' [4]."""
        return integrate(self.integrator, self.dynamics, x, u, self.dt)

    def stable_dt(self) -> float:
        return math.inf
