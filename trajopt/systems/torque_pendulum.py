"""Torque pendulum: trajax's pendulum (its tests and README swing-up), continuous dynamics + an integrator.

State ``x = [theta, theta_dot]`` (rad, rad/s), theta = 0 hanging down; control ``u = [tau]`` (N m):

    theta_ddot = (tau - m g l sin theta) / (m l^2)

integrated with ``integrator`` ("rk4", trajax's choice, or "euler"), u held over the step h = ``dt``.
Defaults are trajax's: m = l = 1, g = 9.81, h = 0.01, RK4. No contact: the dynamics are smooth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
from jax import Array

from trajopt import checks
from trajopt.systems.integrators import INTEGRATORS, integrate


@dataclass(frozen=True)
class TorquePendulum:
    m: float = 1.0
    l: float = 1.0  # noqa: E741  (trajax's name)
    g: float = 9.81
    dt: float = 0.01
    integrator: str = "rk4"

    state_size = 2
    control_size = 1
    state_names = ("theta", "theta_dot")
    control_names = ("torque",)

    def __post_init__(self):
        checks.positive("m", self.m)
        checks.positive("l", self.l)
        checks.finite("g", self.g)
        checks.positive("dt", self.dt)
        checks.one_of("integrator", self.integrator, INTEGRATORS)

    def dynamics(self, x: Array, u: Array) -> Array:
        """xdot = [theta_dot, theta_ddot] for x: [2], u: [1]."""
        theta, theta_dot = x[0], x[1]
        accel = (u[0] - self.m * self.g * self.l * jnp.sin(theta)) / (self.m * self.l**2)
        return jnp.stack([theta_dot, accel])

    def step(self, x: Array, u: Array) -> Array:
        """One step: x [2], u [1] -> x' [2]."""
        return integrate(self.integrator, self.dynamics, x, u, self.dt)

    def stable_dt(self) -> float:
        return math.inf
