"""Chain: N point masses on a line, body 0 pushes the rest through neighbour contacts.

The N-body generalisation of pushing (trajopt's own "stiff chain" benchmark, not in the paper; docs/problems.md);
N = 2 with ``contact = "penalty"``
is ``pushing.Pushing`` exactly (the same floating-point operations).

State ``x = [x_0 .. x_{N-1}, v_0 .. v_{N-1}]`` (m, m/s), n = 2N. Control ``u = [F]`` (N): a force on
body 0, the pusher. Each neighbour pair (i, i+1) has the gap ``g_i = x_{i+1} - x_i - l`` (l =
``rest_length``; x_i(0) = i l starts every pair exactly touching) and a contact term c_i (<= 0 in contact)
that acts as +c_i on body i and -c_i on body i+1 (so body i+1 is pushed forward):

* ``"penalty"``:   c_i = k g_i if g_i < 0 else 0 (strict; continuous, kink at g = 0; pushing's law).
* ``"softplus"``:  c_i = -(k / kappa) log(1 + exp(-kappa g_i)), in the stable form
  ``-(k/kappa) logaddexp(0, -kappa g_i)``. Smooth, a force at a distance; kappa -> inf gives penalty.
* ``"bilateral"``: c_i = k g_i everywhere (a linear spring chain: the smooth, linear control case).

    f_i = c_i - c_{i-1} (+ F for i = 0) ,   v' = d v + (h / m) f ,   x' = x + h v'

with d the multiplicative velocity factor (``damping``, per step, as in pushing).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
from jax import Array

from trajopt import checks
from trajopt.systems.base import spring_stable_dt

CONTACT_LAWS = ("penalty", "softplus", "bilateral")


@dataclass(frozen=True)
class Chain:
    bodies: int = 3
    stiffness: float = 1000.0
    damping: float = 0.99
    mass: float = 0.1
    dt: float = 0.005
    rest_length: float = 1.0
    contact: str = "penalty"
    kappa: float = 1000.0

    control_size = 1
    control_names = ("force",)

    def __post_init__(self):
        checks.non_negative("stiffness", self.stiffness)
        checks.fraction("damping", self.damping)
        checks.positive("mass", self.mass)
        checks.positive("dt", self.dt)
        checks.non_negative("rest_length", self.rest_length)
        checks.positive("kappa", self.kappa)
        checks.at_least("bodies", self.bodies, 2)
        checks.one_of("contact", self.contact, CONTACT_LAWS)

    @property
    def state_size(self) -> int:
        return 2 * self.bodies

    @property
    def state_names(self) -> tuple[str, ...]:
        """("x_0", ..., "x_{N-1}", "v_0", ..., "v_{N-1}"): block positions, then velocities."""
        return tuple(f"x_{i}" for i in range(self.bodies)) + tuple(f"v_{i}" for i in range(self.bodies))

    def _contact(self, gap: Array) -> Array:
        """c_i for gaps g: [N-1] (<= 0 when pushing apart)."""
        k = self.stiffness
        if self.contact == "penalty":
            return jnp.where(gap < 0, k * gap, 0.0)
        if self.contact == "softplus":
            return -(k / self.kappa) * jnp.logaddexp(0.0, -self.kappa * gap)
        return k * gap

    def step(self, x: Array, u: Array) -> Array:
        """One step: x [2N], u [1] -> x' [2N]."""
        n = self.bodies
        pos, vel = x[:n], x[n:]
        c = self._contact(pos[1:] - pos[:-1] - self.rest_length)
        zero = jnp.zeros((1,), x.dtype)
        force = jnp.concatenate([c, zero]) - jnp.concatenate([zero, c])
        force = force.at[0].add(u[0])
        vel = self.damping * vel + (self.dt / self.mass) * force
        pos = pos + self.dt * vel
        return jnp.concatenate([pos, vel])

    def stable_dt(self) -> float:
        """The conservative chain rule sqrt(m / k): interior masses reach w ~ 2 sqrt(k / m) (`base.spring_stable_dt`).
        For softplus the stiffness is at most k, so the same bound applies."""
        return spring_stable_dt(self.stiffness, self.mass)
