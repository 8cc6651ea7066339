"""Pendulum-block: a pendulum (a revolute pusher) swings into a free block on a line and pushes it.

The stiffness member of trajopt's pendulum-with-contact family (not in the paper; docs/problems.md): the
pushing mechanism of ``pushing.py`` with the pusher on a revolute joint, so that contact carries the task.

Geometry. A point bob of mass m_p on a massless rod of length l hangs from a pivot at the origin; theta = 0
is hanging down, and the bob's horizontal position is ``l sin(theta)``. The block (mass m_b) slides without
friction on a horizontal line through the bob's reach; its face toward the pendulum is a vertical plane
(the block is tall compared with the bob's swing), so contact depends on horizontal positions only.
``contact_offset`` r is the bob radius plus the block's half-width, and p the block's centre:

    g  = p - l sin(theta) - r                 (x0 = [0, r, 0, 0] starts exactly touching)
    F  = -k g   if g < 0   else 0             (>= 0, pushes the block in +p)

State ``x = [theta, p, omega, v]`` (rad, m, rad/s, m/s). Control ``u = [tau]`` (N m): a joint torque.
Equations (I = m_p l^2; the contact torque -F l cos(theta) is the reaction on the bob, minus the gradient
of the contact energy k g^2 / 2 with respect to theta):

    I omega_dot = -m_p g_0 l sin(theta) + tau - F l cos(theta)
    m_b v_dot   = F

Semi-implicit Euler with a multiplicative velocity factor d (``damping``, per step, on both velocities,
as in pushing): ``[omega, v]' = d [omega, v] + h [omega_dot, v_dot]``, ``[theta, p]' = [theta, p] + h [omega, v]'``.

The contact law is continuous (a kink at g = 0), as in pushing: the FoBG is unbiased and what hurts it at
large k is variance. The bob can reach p - r <= l only; a block pushed beyond is out of reach for good.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
from jax import Array

from trajopt import checks
from trajopt.systems.base import spring_stable_dt


@dataclass(frozen=True)
class PendulumBlock:
    stiffness: float = 1000.0
    damping: float = 0.99
    pendulum_mass: float = 1.0
    block_mass: float = 1.0
    length: float = 1.0
    gravity: float = 1.0
    contact_offset: float = 0.1
    dt: float = 0.02

    state_size = 4
    control_size = 1
    state_names = ("theta", "block p", "omega", "block v")
    control_names = ("torque",)

    def __post_init__(self):
        checks.non_negative("stiffness", self.stiffness)
        checks.fraction("damping", self.damping)
        checks.positive("pendulum_mass", self.pendulum_mass)
        checks.positive("block_mass", self.block_mass)
        checks.positive("length", self.length)
        checks.finite("gravity", self.gravity)
        checks.non_negative("contact_offset", self.contact_offset)
        checks.positive("dt", self.dt)

    def step(self, x: Array, u: Array) -> Array:
        """One step: x [4], u [1] -> x' [4]."""
        theta, p = x[0], x[1]
        l, inertia = self.length, self.pendulum_mass * self.length**2
        gap = p - l * jnp.sin(theta) - self.contact_offset
        push = jnp.where(gap < 0, -self.stiffness * gap, 0.0)
        torque = -self.pendulum_mass * self.gravity * l * jnp.sin(theta) + u[0] - push * l * jnp.cos(theta)
        accel = jnp.stack([torque / inertia, push / self.block_mass])
        vel = self.damping * x[2:] + self.dt * accel
        pos = x[:2] + self.dt * vel
        return jnp.concatenate([pos, vel])

    def stable_dt(self) -> float:
        """The bob's effective mass along the line is I / (l cos(theta))^2 >= m_p, so the contact frequency
        is at most sqrt(k (1/m_p + 1/m_b)) <= 2 sqrt(k / min(m_p, m_b)): the conservative chain rule
        sqrt(m / k) with the smaller mass (base.spring_stable_dt)."""
        return spring_stable_dt(self.stiffness, min(self.pendulum_mass, self.block_mass))
