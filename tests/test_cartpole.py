"""The cart-pole (trajopt.systems.cartpole): physics invariants that catch a sign or a term, independently of the
equations as written: energy is conserved without friction or force, horizontal momentum without cart friction or
force, friction only removes energy, and the upright point is an equilibrium."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from trajopt.systems import SYSTEMS
from trajopt.systems.cartpole import CartPole


def _energy(sys: CartPole, x):
    p, th, dp, dth = x
    mc, mp, l, g = sys.cart_mass, sys.pole_mass, sys.pole_length, sys.gravity
    return (0.5 * (mc + mp) * dp**2 + mp * dp * dth * l * jnp.cos(th) + 0.5 * mp * l**2 * dth**2
            - mp * g * l * jnp.cos(th))


def _run(sys: CartPole, x0, steps: int, u: float = 0.0):
    def body(x, _):
        x = sys.step(x, jnp.array([u]))
        return x, x

    return jax.lax.scan(body, jnp.asarray(x0), None, length=steps)[1]


def test_registered():
    assert SYSTEMS.get("cartpole") is CartPole


def test_energy_and_momentum_are_conserved_without_friction_or_force():
    sys = CartPole(cart_damping=0.0, pole_damping=0.0, dt=1e-3)
    x0 = jnp.array([0.0, 2.0, 0.3, -1.0])
    X = _run(sys, x0, 2000)
    E = jax.vmap(lambda x: _energy(sys, x))(X)
    momentum = (sys.cart_mass + sys.pole_mass) * X[:, 2] + sys.pole_mass * sys.pole_length * X[:, 3] * jnp.cos(X[:, 1])
    np.testing.assert_allclose(E, _energy(sys, x0), rtol=0, atol=1e-8)
    np.testing.assert_allclose(momentum, momentum[0], rtol=0, atol=1e-9)
    assert float(jnp.ptp(X[:, 1])) > 1.0  # it really swung


def test_power_balance_the_force_adds_and_each_friction_removes_exactly_its_share():
    """dE/dt = (f - b_c dp) dp - b_p dtheta^2 at any state and force: pins the force and both damping terms."""
    sys = CartPole(cart_damping=0.5, pole_damping=0.05)
    states = jax.random.normal(jax.random.PRNGKey(0), (20, 4)) * jnp.array([1.0, 3.0, 2.0, 4.0])
    forces = jax.random.normal(jax.random.PRNGKey(1), (20, 1)) * 3.0
    for x, u in zip(states, forces):
        xdot = sys.dynamics(x, u)
        dE = jnp.dot(jax.grad(lambda y: _energy(sys, y))(x), xdot)
        expected = (u[0] - sys.cart_damping * x[2]) * x[2] - sys.pole_damping * x[3] ** 2
        np.testing.assert_allclose(dE, expected, rtol=1e-10, atol=1e-10)


def test_upright_is_an_equilibrium_and_a_push_accelerates_the_cart_forward():
    sys = CartPole()
    up = jnp.array([0.0, math.pi, 0.0, 0.0])
    np.testing.assert_allclose(sys.dynamics(up, jnp.array([0.0])), 0.0, atol=1e-12)
    d = sys.dynamics(jnp.zeros(4), jnp.array([1.0]))
    np.testing.assert_allclose(d[2], 1.0 / sys.cart_mass, rtol=1e-12)  # hanging still: f / m_c
    assert d[3] < 0  # the pole lags behind the cart


def test_the_force_limit_clips():
    sys = CartPole(force_limit=2.0)
    np.testing.assert_array_equal(sys.dynamics(jnp.zeros(4), jnp.array([50.0])),
                                  sys.dynamics(jnp.zeros(4), jnp.array([2.0])))
