"""Pushing: two blocks on a line, the first pushes the second through a penalty spring.

The paper's "pushing" example (authors' code: ``examples/curling``, ``CurlingDynamics``).

State ``x = [x1, x2, v1, v2]`` (m, m, m/s, m/s): pusher position, object position and their velocities.
Control ``u = [F]`` (N): a force on the pusher.

Contact is a unilateral penalty spring, active while the gap is strictly negative:

    g  = x2 - x1 - l                      (l = rest_length; x0 = [0, 1, 0, 0] starts exactly touching)
    fc = k * g   if g < 0   else 0        (continuous in the state, kink at g = 0)
    f1 = fc + F ,  f2 = -fc

Semi-implicit Euler with a multiplicative velocity factor d (``damping``, per step, as in the reference):

    v' = d * v + (h / m) * f ,   x' = x + h * v'

The law is continuous (a kink, not a jump), so the first-order gradient is unbiased; what hurts it at
large k is variance (Suh et al. 2022, §3.3 and Fig. 5).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
from jax import Array

from trajopt import checks
from trajopt.systems.base import spring_stable_dt


@dataclass(frozen=True)
class Pushing:
    stiffness: float = 1000.0
    damping: float = 0.99
    mass: float = 0.1
    dt: float = 0.005
    rest_length: float = 1.0

    state_size = 4
    control_size = 1
    state_names = ("pusher x", "object x", "pusher v", "object v")
    control_names = ("force",)

    def __post_init__(self):
        checks.non_negative("stiffness", self.stiffness)
        checks.fraction("damping", self.damping)
        checks.positive("mass", self.mass)
        checks.positive("dt", self.dt)
        checks.non_negative("rest_length", self.rest_length)

    def step(self, x: Array, u: Array) -> Array:
        """One step: x [4], u [1] -> x' [4]."""
        pos, vel = x[:2], x[2:]
        gap = pos[1] - pos[0] - self.rest_length
        contact = jnp.where(gap < 0, self.stiffness * gap, 0.0)
        force = jnp.stack([contact + u[0], -contact])
        vel = self.damping * vel + (self.dt / self.mass) * force
        pos = pos + self.dt * vel
        return jnp.concatenate([pos, vel])

    def stable_dt(self) -> float:
        return spring_stable_dt(self.stiffness, self.mass)
