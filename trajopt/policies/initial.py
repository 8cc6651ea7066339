"""Initial-state distributions rho (Suh et al. 2022, Eq. 1: F(theta) = E_{x_1 ~ rho} E_w V_1(x_1, w, theta)).

Each is a frozen dataclass (its fields are the keys of an ``[initial_state]`` table) with

* ``state_size``: n;
* ``sample(key, count) -> [count, n]``: pure JAX, explicit key; the same key gives the same states.

Noise is drawn in float32 and cast to the working dtype (as the oracles' perturbations are), so a key
gives the same states in float32 and float64 runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax import Array

from trajopt import checks


def _normal(key: Array, shape) -> Array:
    return jax.random.normal(key, shape, dtype=jnp.float32).astype(jnp.result_type(float))


def _uniform(key: Array, shape) -> Array:
    return jax.random.uniform(key, shape, dtype=jnp.float32).astype(jnp.result_type(float))


def _as_tuple(name: str, values) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except TypeError:
        raise checks.FieldError(name, values, "a list of numbers") from None
    if not out:
        raise checks.FieldError(name, values, "a non-empty list of numbers")
    for v in out:
        checks.finite(name, v)
    return out


@dataclass(frozen=True)
class Point:
    """A Dirac at ``x0`` (the main text's deterministic x_1): every sample starts at x0."""

    x0: tuple[float, ...] = (0.0,)
    name: ClassVar[str] = "point"

    def __post_init__(self):
        object.__setattr__(self, "x0", _as_tuple("x0", self.x0))

    @property
    def state_size(self) -> int:
        return len(self.x0)

    def sample(self, key: Array, count: int) -> Array:
        del key
        return jnp.broadcast_to(jnp.asarray(self.x0, dtype=jnp.result_type(float)), (count, self.state_size))


@dataclass(frozen=True)
class Uniform:
    """x_i ~ U[low_i, high_i] independently per coordinate (low_i == high_i pins a coordinate)."""

    low: tuple[float, ...] = (0.0,)
    high: tuple[float, ...] = (1.0,)
    name: ClassVar[str] = "uniform"

    def __post_init__(self):
        object.__setattr__(self, "low", _as_tuple("low", self.low))
        object.__setattr__(self, "high", _as_tuple("high", self.high))
        if len(self.low) != len(self.high):
            raise checks.FieldError("high", list(self.high), f"a list of {len(self.low)} numbers (as many as low)")
        if any(h < lo for lo, h in zip(self.low, self.high)):
            raise checks.FieldError("high", list(self.high), "numbers >= low, coordinate by coordinate")

    @property
    def state_size(self) -> int:
        return len(self.low)

    def sample(self, key: Array, count: int) -> Array:
        lo, hi = jnp.asarray(self.low), jnp.asarray(self.high)
        return lo + (hi - lo) * _uniform(key, (count, self.state_size))


@dataclass(frozen=True)
class Gaussian:
    """x_i ~ N(mean_i, std_i^2) independently per coordinate (std_i = 0 pins a coordinate)."""

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    name: ClassVar[str] = "gaussian"

    def __post_init__(self):
        object.__setattr__(self, "mean", _as_tuple("mean", self.mean))
        object.__setattr__(self, "std", _as_tuple("std", self.std))
        if len(self.mean) != len(self.std):
            raise checks.FieldError("std", list(self.std), f"a list of {len(self.mean)} numbers (as many as mean)")
        for s in self.std:
            checks.non_negative("std", s)

    @property
    def state_size(self) -> int:
        return len(self.mean)

    def sample(self, key: Array, count: int) -> Array:
        return jnp.asarray(self.mean) + jnp.asarray(self.std) * _normal(key, (count, self.state_size))


@dataclass(frozen=True)
class TennisInitial:
    """The tennis distribution of the authors' code (hjsuh94/alpha_gradient, ``examples/breakout``), state
    (ball x, y, v_x, v_y, paddle x, y, psi):

        ball x ~ U[-ball_x_half_range, +ball_x_half_range],   ball y ~ ball_y_mean + N(0, ball_y_std^2)
        ball v = velocity_gain * (ball x, ball y) + N(0, velocity_std^2 I)     (the velocity depends on the position)
        paddle x ~ N(0, paddle_x_std^2),  paddle y ~ N(0, paddle_y_std^2),  paddle psi ~ N(0, paddle_angle_std^2)

    With the defaults the ball heads back towards the origin, where the paddle waits.
    """

    ball_x_half_range: float = 2.0
    ball_y_mean: float = 2.0
    ball_y_std: float = 0.2
    velocity_gain: float = -0.2
    velocity_std: float = 0.03
    paddle_x_std: float = 0.5
    paddle_y_std: float = 0.05
    paddle_angle_std: float = 0.05
    name: ClassVar[str] = "tennis"
    state_size: ClassVar[int] = 7

    def __post_init__(self):
        for f in ("ball_x_half_range", "ball_y_std", "velocity_std", "paddle_x_std", "paddle_y_std", "paddle_angle_std"):
            checks.non_negative(f, getattr(self, f))
        checks.finite("ball_y_mean", self.ball_y_mean)
        checks.finite("velocity_gain", self.velocity_gain)

    def sample(self, key: Array, count: int) -> Array:
        k_x, k_rest = jax.random.split(key)
        bx = self.ball_x_half_range * (2.0 * _uniform(k_x, (count,)) - 1.0)
        z = _normal(k_rest, (count, 6))
        by = self.ball_y_mean + self.ball_y_std * z[:, 0]
        vx = self.velocity_gain * bx + self.velocity_std * z[:, 1]
        vy = self.velocity_gain * by + self.velocity_std * z[:, 2]
        px = self.paddle_x_std * z[:, 3]
        py = self.paddle_y_std * z[:, 4]
        psi = self.paddle_angle_std * z[:, 5]
        return jnp.stack([bx, by, vx, vy, px, py, psi], axis=1)

