"""Cart-pole: a pole hinged on a cart that a horizontal force pushes along a rail (the swing-up classic every MPC
tool ships).

State ``x = [p, theta, dp, dtheta]``: the cart's position p (m), the pole's angle theta from hanging straight down
(theta = pi is upright), and their rates. Control ``u = [f]``: the horizontal force on the cart (N), clipped to
``force_limit`` (inf: no limit). With cart mass m_c, pole mass m_p (a point mass at the pole's end), pole length l,
gravity g, viscous friction b_c on the cart and b_p at the hinge (Tedrake, *Underactuated Robotics*, ch. 3, with
damping added):

    D = m_c + m_p sin²theta
    ddp     = [f - b_c dp + m_p sin theta (l dtheta² + g cos theta) + (b_p dtheta / l) cos theta] / D
    ddtheta = [-(f - b_c dp) cos theta - m_p l dtheta² cos theta sin theta - (m_c + m_p) g sin theta
               - (m_c + m_p) b_p dtheta / (m_p l)] / (l D)

(with b_c = b_p = 0, exactly Tedrake's eq. 3.18-3.19), integrated with ``integrator`` ("rk4" or "euler") over
h = ``dt``, u held over the step. Smooth, no contact; the force limit is a real clip (no gradient beyond it).
Defaults: m_c = 1 kg, m_p = 0.1 kg, l = 0.5 m (gym's CartPole), g = 9.81, b_c = 0.1 N s/m, b_p = 0.01 N m s,
dt = 0.02 s (a 50 Hz control period, hydrax's cart-pole).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
from jax import Array

from trajopt import checks
from trajopt.systems.integrators import INTEGRATORS, integrate


@dataclass(frozen=True)
class CartPole:
    cart_mass: float = 1.0
    pole_mass: float = 0.1
    pole_length: float = 0.5
    gravity: float = 9.81
    cart_damping: float = 0.1
    pole_damping: float = 0.01
    force_limit: float = math.inf
    dt: float = 0.02
    integrator: str = "rk4"

    state_size = 4
    control_size = 1
    state_names = ("cart position", "pole angle", "cart velocity", "pole rate")
    control_names = ("force",)

    def __post_init__(self):
        for name in ("cart_mass", "pole_mass", "pole_length", "dt"):
            checks.positive(name, getattr(self, name))
        checks.finite("gravity", self.gravity)
        checks.non_negative("cart_damping", self.cart_damping)
        checks.non_negative("pole_damping", self.pole_damping)
        checks.positive("force_limit", self.force_limit, allow_inf=True)
        checks.one_of("integrator", self.integrator, INTEGRATORS)

    def dynamics(self, x: Array, u: Array) -> Array:
        """xdot = [dp, dtheta, ddp, ddtheta] for x: [4], u: [1] (the module docstring's equations)."""
        mc, mp, l, g = self.cart_mass, self.pole_mass, self.pole_length, self.gravity
        theta, dp, dtheta = x[1], x[2], x[3]
        f = jnp.clip(u[0], -self.force_limit, self.force_limit) - self.cart_damping * dp
        s, c = jnp.sin(theta), jnp.cos(theta)
        D = mc + mp * s**2
        hinge = self.pole_damping * dtheta
        ddp = (f + mp * s * (l * dtheta**2 + g * c) + hinge * c / l) / D
        ddtheta = (-f * c - mp * l * dtheta**2 * c * s - (mc + mp) * g * s - (mc + mp) * hinge / (mp * l)) / (l * D)
        return jnp.stack([dp, dtheta, ddp, ddtheta])

    def step(self, x: Array, u: Array) -> Array:
        """One step: x [4], u [1] -> x' [4]."""
        return integrate(self.integrator, self.dynamics, x, u, self.dt)

    def stable_dt(self) -> float:
        return math.inf
