"""Integrators: a one-step map from continuous dynamics ``xdot = dynamics(x, u)``, u held over the step.

trajax's conventions (``trajax.integrators``), time-invariant:

    euler:  x' = x + h f(x, u)
    rk4:    k1 = f(x, u),  k2 = f(x + h/2 k1, u),  k3 = f(x + h/2 k2, u),  k4 = f(x + h k3, u)
            x' = x + h/6 (k1 + 2 k2 + 2 k3 + k4)

(the classic fourth-order Runge–Kutta with a zero-order hold on u). Shapes: x [n], u [m] -> x' [n].
"""

from __future__ import annotations

from typing import Callable

from jax import Array

Dynamics = Callable[[Array, Array], Array]

INTEGRATORS = ("rk4", "euler")


def euler(dynamics: Dynamics, x: Array, u: Array, dt: float) -> Array:
    """Explicit Euler: x + dt * f(x, u)."""
    return x + dt * dynamics(x, u)


def rk4(dynamics: Dynamics, x: Array, u: Array, dt: float) -> Array:
    """Classic RK4 with u held over the step (trajax.integrators.rk4)."""
    half = dt / 2.0
    k1 = dynamics(x, u)
    k2 = dynamics(x + half * k1, u)
    k3 = dynamics(x + half * k2, u)
    k4 = dynamics(x + dt * k3, u)
    return x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def integrate(name: str, dynamics: Dynamics, x: Array, u: Array, dt: float) -> Array:
    """One step of the integrator ``name`` ("rk4" or "euler")."""
    if name == "rk4":
        return rk4(dynamics, x, u, dt)
    if name == "euler":
        return euler(dynamics, x, u, dt)
    raise ValueError(f"integrator: found {name!r}, allowed: one of {', '.join(repr(i) for i in INTEGRATORS)}")
