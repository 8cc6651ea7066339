"""Spring wall: one mass between two stiff penalty walls, a 1-D "ball in a box".

The authors' code (github.com/hjsuh94/alpha_gradient, ``examples/spring_wall``; not in the paper's text): the
same stiffness argument as pushing.

State ``x = [x, v]`` (m, m/s). Control ``u = [F]`` (N): a force on the mass, **always applied**, in and
out of contact. (The reference's batch path, used for every sample, always adds u; its scalar path
dropped u in contact. We keep the batch convention; it reproduces the reference's initial costs,
tests/test_systems.py's goldens.)

Walls at ``x = +-a`` (a = ``wall_position``). Penalty contact with viscous damping ``c`` that acts only
while penetrating (strict inequalities):

    g_hi = a - x ,  g_lo = x + a                     (gaps; contact while < 0)
    f_w  = [k g_hi - c v if g_hi < 0] + [-k g_lo - c v if g_lo < 0]
         = -k (x - sign(x) a) - c v                  for |x| > a, else 0
    v' = v + (h / m) (f_w + F) ,   x' = x + h v'

The spring part is continuous (a kink at |x| = a); the damping term switches on at first contact, so
with c > 0 the law is **discontinuous** in the state (a jump of size c|v| at the wall).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
from jax import Array

from trajopt import checks
from trajopt.systems.base import spring_stable_dt


@dataclass(frozen=True)
class SpringWall:
    stiffness: float = 100.0
    contact_damping: float = 1.0
    mass: float = 0.1
    dt: float = 0.001
    wall_position: float = 1.0

    state_size = 2
    control_size = 1
    state_names = ("x", "v")
    control_names = ("force",)

    def __post_init__(self):
        checks.non_negative("stiffness", self.stiffness)
        checks.non_negative("contact_damping", self.contact_damping)
        checks.positive("mass", self.mass)
        checks.positive("dt", self.dt)
        checks.positive("wall_position", self.wall_position)

    def step(self, x: Array, u: Array) -> Array:
        """One step: x [2], u [1] -> x' [2]."""
        pos, vel = x[0], x[1]
        k, c, a = self.stiffness, self.contact_damping, self.wall_position
        g_hi, g_lo = a - pos, pos + a
        wall = jnp.where(g_hi < 0, k * g_hi - c * vel, 0.0) + jnp.where(g_lo < 0, -k * g_lo - c * vel, 0.0)
        vel = vel + (self.dt / self.mass) * (wall + u[0])
        pos = pos + self.dt * vel
        return jnp.stack([pos, vel])

    def stable_dt(self) -> float:
        """The conservative chain rule sqrt(m / k) (base.spring_stable_dt). For one mass on a fixed wall
        the undamped bound is 2 sqrt(m / k); the damped one, k h^2 + 2 c h < 4 m, is above sqrt(m / k)
        whenever c < 1.5 sqrt(k m), which covers every reference setting."""
        return spring_stable_dt(self.stiffness, self.mass)
