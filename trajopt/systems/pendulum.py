"""Pendulum: the reference torque-driven pendulum, optionally with joint-limit walls.

The authors' code ``examples/pendulum`` (github.com/hjsuh94/alpha_gradient; smooth, no contact); the walls are
trajopt's own extension (not in the paper: the pendulum-with-walls problems of docs/problems.md).

State ``x = [theta, omega]`` (rad, rad/s), theta = 0 hanging down. Control ``u = [tau]`` (N m): a joint
torque. Unit mass, length and gravity (inertia I = 1):

    theta'' = -sin(theta) + tau + tau_w(theta, omega)
    omega'  = omega + h * theta''(theta, omega) ,   theta' = theta + h * omega'     (semi-implicit Euler)

Joint-limit walls at theta = +-theta_w (``wall_angle``; ``inf``, the default, means no walls and the
reference pendulum exactly). With penetration p = theta - theta_w > 0 at the upper wall (and
p = -theta - theta_w > 0, rate -omega, at the lower wall, with the torque's sign flipped), ``wall_law``:

* ``"spring_damper"`` (the ``spring_wall`` law of the authors' code):
  tau_w = -k p - c omega while p > 0 (strict), else 0; c = ``wall_damping``, NaN meaning 0.01 k.
  **Discontinuous**: the damping torque c*omega switches on at first contact (docs/problems.md), so the FoBG
  is biased at large k.
* ``"spring"``: tau_w = -k p while p > 0. Continuous (a kink).
* ``"hunt_crossley"``: tau_w = -max(0, k p (1 + b p_rate)) while p > 0, with b = ``hunt_crossley_b``
  (s/rad). Continuous: the force starts at 0 whatever the impact speed and never pulls. For b * v_in << 1
  the coefficient of restitution is about 1 - (2/3) b v_in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
from jax import Array

from trajopt import checks
from trajopt.systems.base import spring_stable_dt

WALL_LAWS = ("spring_damper", "spring", "hunt_crossley")


@dataclass(frozen=True)
class Pendulum:
    dt: float = 0.02
    wall_angle: float = math.inf
    wall_law: str = "spring_damper"
    wall_stiffness: float = 100.0
    wall_damping: float = math.nan
    hunt_crossley_b: float = 0.2

    state_size = 2
    control_size = 1
    state_names = ("theta", "omega")
    control_names = ("torque",)

    def __post_init__(self):
        checks.positive("dt", self.dt)
        checks.positive("wall_angle", self.wall_angle, allow_inf=True)
        checks.non_negative("wall_stiffness", self.wall_stiffness)
        checks.non_negative("hunt_crossley_b", self.hunt_crossley_b)
        checks.one_of("wall_law", self.wall_law, WALL_LAWS)

    @property
    def has_walls(self) -> bool:
        return math.isfinite(self.wall_angle)

    @property
    def damping_coefficient(self) -> float:
        """c of the spring_damper law: ``wall_damping``, or 0.01 k when it is NaN."""
        return 0.01 * self.wall_stiffness if math.isnan(self.wall_damping) else self.wall_damping

    def _wall_torque(self, pen: Array, rate: Array) -> Array:
        """Restoring torque magnitude (>= 0 pushes out of the wall) for penetration ``pen``, rate ``rate``."""
        k = self.wall_stiffness
        if self.wall_law == "spring_damper":
            magnitude = k * pen + self.damping_coefficient * rate
        elif self.wall_law == "spring":
            magnitude = k * pen
        else:
            hc = k * pen * (1.0 + self.hunt_crossley_b * rate)
            magnitude = jnp.where(hc > 0, hc, 0.0)
        return jnp.where(pen > 0, magnitude, 0.0)

    def step(self, x: Array, u: Array) -> Array:
        """One step: x [2], u [1] -> x' [2]."""
        theta, omega = x[0], x[1]
        accel = -jnp.sin(theta) + u[0]
        if self.has_walls:
            upper = self._wall_torque(theta - self.wall_angle, omega)
            lower = self._wall_torque(-theta - self.wall_angle, -omega)
            accel = accel - upper + lower
        omega = omega + self.dt * accel
        theta = theta + self.dt * omega
        return jnp.stack([theta, omega])

    def stable_dt(self) -> float:
        """inf without walls. With walls, the conservative rule sqrt(I / k) (base.spring_stable_dt, I = 1).
        The undamped bound for one wall is 2 sqrt(I / k); with the damping c the exact linear bound is
        k h^2 + 2 c h < 4 I, which the conservative rule satisfies for c < 1.5 sqrt(k I) (so for the
        reference c = 0.01 k up to k = 2.25e4). Gravity adds at most 1 to k and is neglected."""
        if not self.has_walls:
            return math.inf
        return spring_stable_dt(self.wall_stiffness, 1.0)
