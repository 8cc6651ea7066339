"""Friction: two stacked blocks on a line coupled by a saturated-linear (regularised Coulomb) friction law.

The paper's "Friction" example (Suh et al. 2022, Fig. 8; the authors' code: ``examples/friction``,
github.com/hjsuh94/alpha_gradient).

State ``x = [x1, x2, v1, v2]`` (m, m, m/s, m/s): bottom block (actuated) and top block, then their
velocities. Control ``u = [F]`` (N): a force on the bottom block.

The blocks touch while they overlap, ``|x2 - x1| < width`` (strict). Friction is viscous with slope
``mu`` up to the saturation ``mu * slip_velocity``:

    fr = -clip(mu * (v2 - v1), -mu * v_s, +mu * v_s)   if |x2 - x1| < width   else 0
    f1 = -fr + F ,   f2 = fr

Semi-implicit Euler, no damping: ``v' = v + (h / m) * f``, ``x' = x + h * v'``.

The law is **discontinuous**: when the top block slides off (|x2 - x1| reaches ``width`` with a nonzero
relative velocity) the friction force drops to 0 at once, so the FoBG is blind to losing the contact.
Inside the contact region the law is continuous (the clip is a kink, not a jump).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
from jax import Array

from trajopt import checks


@dataclass(frozen=True)
class Friction:
    mu: float = 1.8
    slip_velocity: float = 0.1
    mass: float = 0.1
    width: float = 0.1
    dt: float = 0.005

    state_size = 4
    control_size = 1
    state_names = ("bottom x", "top x", "bottom v", "top v")
    control_names = ("force",)

    def __post_init__(self):
        checks.non_negative("mu", self.mu)
        checks.positive("slip_velocity", self.slip_velocity)
        checks.positive("mass", self.mass)
        checks.positive("width", self.width)
        checks.positive("dt", self.dt)

    def step(self, x: Array, u: Array) -> Array:
        """One step: x [4], u [1] -> x' [4]."""
        pos, vel = x[:2], x[2:]
        cap = self.mu * self.slip_velocity
        sliding = jnp.clip(self.mu * (vel[1] - vel[0]), -cap, cap)
        fr = jnp.where(jnp.abs(pos[1] - pos[0]) < self.width, -sliding, 0.0)
        force = jnp.stack([-fr + u[0], fr])
        vel = vel + (self.dt / self.mass) * force
        pos = pos + self.dt * vel
        return jnp.concatenate([pos, vel])

    def stable_dt(self) -> float:
        """No spring; the viscous part is explicit. The relative velocity obeys
        dv' = (1 - 2 h mu / m) dv, stable (|.| <= 1) for h <= m / mu; without friction (mu = 0, allowed) every h."""
        return self.mass / self.mu if self.mu > 0 else math.inf
