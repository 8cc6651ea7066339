"""Feedback policies u = pi(theta, x): frozen dataclasses whose fields are the keys of a ``[policy]`` table.

Every policy provides

* ``param_size(n, m) -> p``: the size of the flat parameter vector theta for state size n, control size m;
* ``init_params(n, m) -> theta0: [p]``: a deterministic initial theta (a fixed PRNG key where randomness
  is wanted, never a global RNG);
* ``__call__(theta: [p], x: [n]) -> u: [m]``: pure JAX, jit-, grad- and vmap-able; the control size m is
  recovered from the static sizes of theta and x.

The paper's tennis policy is `Linear` without bias (u = K x, K: [m, n], d = m n = 21; Suh et al. 2022, Fig. 8) with
theta0 = 0. A user policy is any class with these three methods, named ``package.module:Class`` in a
problem file (the `POLICIES` registry imports it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax import Array

from trajopt import checks


@dataclass(frozen=True)
class Linear:
    """u = K x (+ b with ``bias``); theta = [vec(K) row-major, b], p = m n (+ m).

    init_scale, init_seed: theta0 = init_scale * N(0, I) drawn from ``PRNGKey(init_seed)``; the default
    init_scale = 0 gives theta0 = 0 (the paper's tennis start).
    """

    bias: bool = False
    init_scale: float = 0.0
    init_seed: int = 0
    name: ClassVar[str] = "linear"

    def __post_init__(self):
        checks.non_negative("init_scale", self.init_scale)

    def param_size(self, n: int, m: int) -> int:
        return m * n + (m if self.bias else 0)

    def init_params(self, n: int, m: int) -> Array:
        p = self.param_size(n, m)
        if self.init_scale == 0.0:
            return jnp.zeros(p)
        draw = jax.random.normal(jax.random.PRNGKey(self.init_seed), (p,), dtype=jnp.float32)
        return self.init_scale * draw.astype(jnp.result_type(float))

    def control_size(self, theta: Array, x: Array) -> int:
        n = x.shape[-1]
        m, rest = divmod(theta.shape[-1], n + 1 if self.bias else n)
        if rest or m < 1:
            raise ValueError(f"linear policy: theta of size {theta.shape[-1]} does not fit a state of size {n}")
        return m

    def gain(self, theta: Array, n: int, m: int) -> Array:
        """K: [m, n] from theta."""
        return theta[: m * n].reshape(m, n)

    def __call__(self, theta: Array, x: Array) -> Array:
        """theta: [p], x: [n] -> u: [m] = K x (+ b)."""
        n = x.shape[-1]
        m = self.control_size(theta, x)
        u = self.gain(theta, n, m) @ x
        if self.bias:
            u = u + theta[m * n:]
        return u


@dataclass(frozen=True)
class MLP:
    """A small tanh multilayer perceptron u = W_L tanh(... tanh(W_1 x + b_1) ...) + b_L.

    hidden: width of each hidden layer; layers: number of hidden layers (>= 1); init_seed: the fixed PRNG key
    of the initial weights (hidden layers ~ N(0, 1/fan_in), biases 0); output_scale: scale of the output
    layer's initial weights relative to N(0, 1/fan_in) (0, the default, starts from u = 0 like the linear
    policy's theta0 = 0). theta packs (W_1, b_1, ..., W_L, b_L), each W: [out, in] row-major.
    """

    hidden: int = 16
    layers: int = 1
    init_seed: int = 0
    output_scale: float = 0.0
    name: ClassVar[str] = "mlp"

    def __post_init__(self):
        checks.at_least("hidden", self.hidden, 1)
        checks.at_least("layers", self.layers, 1)
        checks.non_negative("output_scale", self.output_scale)

    def _sizes(self, n: int, m: int) -> list[tuple[int, int]]:
        dims = [n] + [self.hidden] * self.layers + [m]
        return [(dims[i + 1], dims[i]) for i in range(len(dims) - 1)]  # (out, in) per layer

    def param_size(self, n: int, m: int) -> int:
        return sum(o * i + o for o, i in self._sizes(n, m))

    def init_params(self, n: int, m: int) -> Array:
        sizes = self._sizes(n, m)
        keys = jax.random.split(jax.random.PRNGKey(self.init_seed), len(sizes))
        parts = []
        for j, ((o, i), k) in enumerate(zip(sizes, keys)):
            scale = (self.output_scale if j == len(sizes) - 1 else 1.0) / math.sqrt(i)
            W = scale * jax.random.normal(k, (o, i), dtype=jnp.float32)
            parts += [W.reshape(-1), jnp.zeros(o, jnp.float32)]
        return jnp.concatenate(parts).astype(jnp.result_type(float))

    def control_size(self, theta: Array, x: Array) -> int:
        n, p = x.shape[-1], theta.shape[-1]
        h, L = self.hidden, self.layers
        fixed = h * n + h + (L - 1) * (h * h + h)  # everything but the output layer, which is m (h + 1)
        m, rest = divmod(p - fixed, h + 1)
        if rest or m < 1:
            raise ValueError(f"mlp policy: theta of size {p} does not fit a state of size {n}")
        return m

    def __call__(self, theta: Array, x: Array) -> Array:
        """theta: [p], x: [n] -> u: [m]."""
        n = x.shape[-1]
        m = self.control_size(theta, x)
        sizes = self._sizes(n, m)
        h, at = x, 0
        for j, (o, i) in enumerate(sizes):
            W = theta[at: at + o * i].reshape(o, i)
            b = theta[at + o * i: at + o * i + o]
            at += o * i + o
            h = W @ h + b
            if j < len(sizes) - 1:
                h = jnp.tanh(h)
        return h
