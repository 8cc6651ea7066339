"""A user-defined system: a cart-pole, loaded from a problem file by its import path.

    [system]
    name = "examples.user_system.cart:CartPole"   # "package.module:Class"
    pole_length = 0.5                             # any dataclass field below is a [system] key

trajopt looks ``name`` up in its system registry; a name with a colon is imported instead
(``importlib.import_module("examples.user_system.cart").CartPole``). From the repository root this module
is importable because ``examples/`` and ``examples/user_system/`` are packages (they have an
``__init__.py``) and the current directory is searched for the module, as ``python -m`` does. Elsewhere,
put your module on ``PYTHONPATH`` or install it.

What a system must provide (the same contract as trajopt's own systems, trajopt/systems/base.py):

* a **frozen dataclass**; its annotated fields are the keys allowed in ``[system]`` (float fields accept
  integers; unknown keys and wrong types are refused with the key path before anything compiles);
* ``state_size`` n and ``control_size`` m (class attributes, or properties);
* ``step(x: [n], u: [m]) -> [n]``: a pure, jit-able JAX function (no Python control flow on values; use
  ``jnp.where`` for branches);
* optionally ``dt`` and ``stable_dt()``: if present, a ``dt >= stable_dt()`` is refused unless the file
  sets ``allow_unstable = true``. A smooth system like this one returns ``inf``;
* optionally ``state_names`` and ``control_names``: a tuple of n (and m) short names, the labels of the
  figures' state and control axes (without them: "x0".."x{n-1}" and "u0".."u{m-1}").

Parameter checks in ``__post_init__`` raise ``trajopt.checks.FieldError``, which the loader reports as
``FILE: system.<field>: found ..., allowed: ...``.

The model: a cart of mass m_c on a frictionless rail, pushed by a force u, carries a pole (point mass m_p
at distance l from a frictionless hinge). State ``x = [p, theta, v, omega]`` (m, rad, m/s, rad/s), with
theta = 0 hanging down and theta = pi upright. With s = sin(theta), c = cos(theta) and
D = m_c + m_p s^2 (the standard equations, e.g. Tedrake, Underactuated Robotics, ch. 3):

    p_dd     = (u + m_p s (l omega^2 + g c)) / D
    theta_dd = (-u c - m_p l omega^2 c s - (m_c + m_p) g s) / (l D)

Semi-implicit Euler: ``[v, omega]' = [v, omega] + h [p_dd, theta_dd]``, ``[p, theta]' = [p, theta] + h [v, omega]'``.
Smooth (no contact): the first-order gradient is unbiased here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
from jax import Array

from trajopt import checks


@dataclass(frozen=True)
class CartPole:
    cart_mass: float = 1.0
    pole_mass: float = 0.1
    pole_length: float = 0.5
    gravity: float = 9.81
    dt: float = 0.02

    state_size = 4
    control_size = 1
    state_names = ("cart p", "pole theta", "cart v", "pole omega")
    control_names = ("force",)

    def __post_init__(self):
        checks.positive("cart_mass", self.cart_mass)
        checks.positive("pole_mass", self.pole_mass)
        checks.positive("pole_length", self.pole_length)
        checks.finite("gravity", self.gravity)
        checks.positive("dt", self.dt)

    def step(self, x: Array, u: Array) -> Array:
        """One step: x [4], u [1] -> x' [4]."""
        theta, v, omega = x[1], x[2], x[3]
        mc, mp, l, g = self.cart_mass, self.pole_mass, self.pole_length, self.gravity
        s, c = jnp.sin(theta), jnp.cos(theta)
        d = mc + mp * s**2
        p_dd = (u[0] + mp * s * (l * omega**2 + g * c)) / d
        theta_dd = (-u[0] * c - mp * l * omega**2 * c * s - (mc + mp) * g * s) / (l * d)
        vel = jnp.stack([v, omega]) + self.dt * jnp.stack([p_dd, theta_dd])
        pos = x[:2] + self.dt * vel
        return jnp.concatenate([pos, vel])

    def stable_dt(self) -> float:
        return math.inf
