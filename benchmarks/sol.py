"""Speed of light: a minimal, hand-written fused JAX loop for the paper's estimators on the pushing problem.

This is what one would write for exactly one problem and one estimator, with no generality: the pushing
dynamics and the diagonal quadratic cost written out, one ``lax.scan`` over the K iterations (one dispatch),
``vmap`` over seeds, plain SGD, and the noise-free cost f(U_k) of every iterate recorded (the cost curve that
trajopt reports too). No finiteness checks, no info fields, no optimiser state, no chunking.

It draws the same noise as trajopt (iteration k of seed s from ``fold_in(fold_in(PRNGKey(key), s), k)``, drawn in
float32 and cast; AoBG's FoBG batch from ``split(key_k)[0]`` and its ZoBG batch from ``split(key_k)[1]``), so
its iterates agree with ``trajopt.solve`` to rounding; `benchmarks/run.py` (and tests/test_performance.py) check
that to 1e-10 on a short run, both programs compiled with the same XLA options (`trajopt.compiler.compile_lowered`):
programs compiled with different options may sum in another order, and stiff pushing amplifies a last-bit
difference about 50x per iteration.

    from benchmarks import sol
    p = sol.PushingSpec.from_toml("problems/pushing_stiff.toml")
    run = sol.make_run(p, "aobg", iterations=500)      # jitted: run(key, seeds) -> (U [S, T, 1], cost [S, K + 1])
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import jax
import jax.numpy as jnp

ORACLES = ("exact", "fobg", "zobg", "aobg")


@dataclass(frozen=True)
class PushingSpec:
    """The pushing problem and the paper's SGD settings, as plain numbers (read straight from a TOML file)."""

    stiffness: float
    damping: float
    mass: float
    dt: float
    rest_length: float
    horizon: int
    x0: tuple
    goal: tuple
    Q: tuple
    R: float
    Qf: tuple
    u_init: float
    step: float
    samples: int
    sigma: float
    gamma: float
    L: float
    delta: float
    regulariser: float = 1e-5

    @classmethod
    def from_toml(cls, path, horizon=None, samples=None) -> "PushingSpec":
        raw = tomllib.loads(Path(path).read_text())
        system, task, solve, oracle = raw["system"], raw["task"], raw["solve"], raw.get("oracle", {})
        aobg = oracle.get("aobg", {})
        assert system["name"] == "pushing" and solve["optimizer"]["name"] == "sgd"
        assert aobg.get("delta_convention", "reference") == "reference"
        return cls(
            stiffness=float(system.get("stiffness", 1000.0)), damping=float(system.get("damping", 0.99)),
            mass=float(system.get("mass", 0.1)), dt=float(system.get("dt", 0.005)),
            rest_length=float(system.get("rest_length", 1.0)), horizon=int(horizon or task["horizon"]),
            x0=tuple(task["x0"]), goal=tuple(task["goal"]), Q=tuple(task["Q"]), R=float(task["R"][0]),
            Qf=tuple(task["Qf"]), u_init=float(task.get("u_init", 0.0)), step=float(solve["optimizer"]["step"]),
            samples=int(samples or oracle.get("samples", 10)), sigma=float(oracle.get("sigma", 0.1)),
            gamma=float(aobg.get("gamma", math.inf)), L=float(aobg.get("L", 100.0)),
            delta=float(aobg.get("delta", 0.95)))

    def U0(self):
        return jnp.full((self.horizon, 1), self.u_init, jnp.float64)


def make_objective(p: PushingSpec):
    """f(U: [T, 1]) -> scalar: the pushing rollout and the quadratic cost, written out."""
    x0, goal = jnp.asarray(p.x0, jnp.float64), jnp.asarray(p.goal, jnp.float64)
    Q, Qf = jnp.diag(jnp.asarray(p.Q, jnp.float64)), jnp.diag(jnp.asarray(p.Qf, jnp.float64))
    R = jnp.asarray([[p.R]], jnp.float64)
    h, k, d, m, l = p.dt, p.stiffness, p.damping, p.mass, p.rest_length

    def step(x, u):
        gap = x[1] - x[0] - l
        c = jnp.where(gap < 0, k * gap, 0.0)
        vel = d * x[2:] + (h / m) * jnp.stack([c + u[0], -c])
        x = jnp.concatenate([x[:2] + h * vel, vel])
        return x, x

    def f(U):
        _, xs = jax.lax.scan(step, x0, U)
        E = jnp.concatenate([x0[None], xs]) - goal
        # the same arithmetic as trajopt's QuadraticCost (a diagonal form rounds differently, and the stiff
        # problem amplifies a last-bit difference by about 50x per iteration)
        running = jnp.einsum("ti,ij,tj->", E[:-1], Q, E[:-1]) + jnp.einsum("ti,ij,tj->", U, R, U)
        return running + E[-1] @ Qf @ E[-1]

    return f


def _mean_var(g):
    mean = g.mean(axis=0)
    return mean, jnp.sum((g - mean) ** 2) / (g.shape[0] - 1)


def make_estimator(p: PushingSpec, oracle: str):
    """grad(key, U) -> (g, f(U)) for one oracle."""
    f = make_objective(p)
    N, sigma = p.samples, p.sigma

    def noise(key):
        return sigma * jax.random.normal(key, (N, p.horizon, 1), jnp.float32).astype(jnp.float64)

    def fobg(key, U):
        return jax.vmap(jax.grad(f))(U + noise(key)).mean(axis=0)

    def zobg(key, U, value):
        w = noise(key)
        return ((jax.vmap(f)(U + w) - value)[:, None, None] * w / sigma**2)

    if oracle == "exact":
        return lambda key, U: jax.value_and_grad(f)(U)[::-1]
    if oracle == "fobg":
        return lambda key, U: (fobg(key, U), f(U))
    if oracle == "zobg":
        def est(key, U):
            value = f(U)
            return zobg(key, U, value).mean(axis=0), value
        return est
    if oracle == "aobg":
        log_term = math.log((p.horizon + 1) / p.delta)

        def est(key, U):
            k1, k0 = jax.random.split(key)
            value = f(U)
            g1, s1 = _mean_var(jax.vmap(jax.grad(f))(U + noise(k1)))
            g0, s0 = _mean_var(zobg(k0, U, value))
            radius = jnp.sqrt(2.0 * s0 * log_term / N) + (2.0 * p.L / (3.0 * N)) * log_term
            gap = jnp.linalg.norm(g1 - g0)
            a_inf = s0 / (s1 + s0 + p.regulariser)
            slack = p.gamma - radius
            alpha = jnp.where(radius > p.gamma, 0.0,
                              jnp.where(a_inf * gap <= slack, a_inf, slack / jnp.where(gap > 0, gap, 1.0)))
            alpha = jnp.clip(alpha, 0.0, 1.0)
            return alpha * g1 + (1.0 - alpha) * g0, value
        return est
    raise ValueError(f"unknown oracle {oracle!r}; one of {ORACLES}")


def make_run(p: PushingSpec, oracle: str, iterations: int):
    """A jitted run(key: PRNGKey, seeds: int32[S]) -> (U_K: [S, T, 1], cost: [S, K + 1]): K SGD steps per seed."""
    est = make_estimator(p, oracle)
    f = make_objective(p)
    U0 = p.U0()

    def one_seed(key, s):
        seed_key = jax.random.fold_in(key, s)

        def body(U, k):
            g, value = est(jax.random.fold_in(seed_key, k), U)
            return U - p.step * g, value

        U, values = jax.lax.scan(body, U0, jnp.arange(iterations, dtype=jnp.int32))
        return U, jnp.concatenate([values, f(U)[None]])

    return jax.jit(jax.vmap(one_seed, in_axes=(None, 0)))
