"""A straightforward NumPy implementation of the paper's loop on pushing: what a user would write without trajopt.

The rollout is a Python loop over time, vectorised over the N samples of a batch (``[N, 4]`` states). FoBG
needs the gradient of f at every sample: it is the hand-written adjoint (reverse-mode) of the pushing step and
the quadratic cost, also vectorised over samples, no autodiff and no finite differences. The estimators and
SGD are those of `benchmarks/sol.py` (and trajopt's), with NumPy's own generator for the noise, so a run's
numbers are not trajopt's; `check_against_jax` checks f, its gradient and one estimate of each oracle against
JAX for the same perturbations (to 1e-10).

    from benchmarks import numpy_ref, sol
    p = sol.PushingSpec.from_toml("problems/pushing_stiff.toml")
    U, cost = numpy_ref.run(p, "aobg", iterations=50, seed=0)
"""

from __future__ import annotations

import math

import numpy as np

ORACLES = ("exact", "fobg", "zobg", "aobg")


class Pushing:
    """f(U) and its adjoint gradient for a batch of control sequences U: [N, T] (m = 1)."""

    def __init__(self, p):
        self.p = p
        self.x0, self.goal = np.asarray(p.x0, float), np.asarray(p.goal, float)
        self.Q, self.Qf = np.asarray(p.Q, float), np.asarray(p.Qf, float)

    def rollout(self, U):
        """X: [N, T + 1, 4] and the contact indicators [N, T] (gap < 0 at step t)."""
        p = self.p
        h, k, d, m = p.dt, p.stiffness, p.damping, p.mass
        N, T = U.shape
        X = np.empty((N, T + 1, 4))
        X[:, 0] = self.x0
        active = np.empty((N, T), bool)
        x = X[:, 0]
        for t in range(T):
            gap = x[:, 1] - x[:, 0] - p.rest_length
            active[:, t] = gap < 0
            c = np.where(active[:, t], k * gap, 0.0)
            v1 = d * x[:, 2] + (h / m) * (c + U[:, t])
            v2 = d * x[:, 3] - (h / m) * c
            x = np.stack([x[:, 0] + h * v1, x[:, 1] + h * v2, v1, v2], axis=1)
            X[:, t + 1] = x
        return X, active

    def cost(self, U, X):
        E = X - self.goal
        return (E[:, :-1] ** 2 * self.Q).sum(axis=(1, 2)) + self.p.R * (U**2).sum(axis=1) + (E[:, -1] ** 2 * self.Qf).sum(axis=1)

    def value(self, U):
        """f(U) for U: [N, T] -> [N]."""
        return self.cost(U, self.rollout(U)[0])

    def value_and_grad(self, U):
        """f(U) [N] and grad f(U) [N, T]: one forward rollout and one backward (adjoint) pass.

        With a = dJ/d(position), b = dJ/d(velocity) of x_{t+1} and kk = k [gap_t < 0]:
            dJ/du_t  = 2 R u_t + (h/m) (h a_1 + b_1)
            dJ/dp_t  = 2 Q_p e_t + a + M (h a + b),   M = (h/m) kk [[-1, 1], [1, -1]]
            dJ/dv_t  = 2 Q_v e_t + d (h a + b)
        """
        p = self.p
        h, k, d, m = p.dt, p.stiffness, p.damping, p.mass
        X, active = self.rollout(U)
        E = X - self.goal
        N, T = U.shape
        G = np.empty((N, T))
        lam = 2.0 * self.Qf * E[:, -1]  # dJ/dx_T
        for t in range(T - 1, -1, -1):
            a, b = lam[:, :2], lam[:, 2:]
            z = h * a + b
            G[:, t] = 2.0 * p.R * U[:, t] + (h / m) * z[:, 0]
            kk = np.where(active[:, t], k, 0.0) * (h / m)
            diff = kk * (z[:, 1] - z[:, 0])  # M z = (h/m) kk [z2 - z1, z1 - z2]
            lam = 2.0 * self.Q * E[:, t] + np.concatenate([a + np.stack([diff, -diff], axis=1), d * z], axis=1)
        return self.cost(U, X), G


def _mean_var(g):
    mean = g.mean(axis=0)
    return mean, ((g - mean) ** 2).sum() / (len(g) - 1)


def estimate(model: Pushing, oracle: str, U, w1=None, w0=None):
    """One estimate at U: [T] with perturbations w1 (FoBG batch) and w0 (ZoBG batch), [N, T] each: (g, f(U))."""
    p = model.p
    if oracle == "exact":
        value, grad = model.value_and_grad(U[None])
        return grad[0], value[0]
    value = model.value(U[None])[0]
    if oracle == "fobg":
        return model.value_and_grad(U + w1)[1].mean(axis=0), value
    if oracle == "zobg":
        return ((model.value(U + w0) - value)[:, None] * w0 / p.sigma**2).mean(axis=0), value
    if oracle == "aobg":
        N = len(w0)
        g1, s1 = _mean_var(model.value_and_grad(U + w1)[1])
        g0, s0 = _mean_var((model.value(U + w0) - value)[:, None] * w0 / p.sigma**2)
        log_term = math.log((p.horizon + 1) / p.delta)
        radius = math.sqrt(2.0 * s0 * log_term / N) + (2.0 * p.L / (3.0 * N)) * log_term
        gap = float(np.linalg.norm(g1 - g0))
        a_inf = s0 / (s1 + s0 + p.regulariser)
        slack = p.gamma - radius
        if radius > p.gamma:
            alpha = 0.0
        elif a_inf * gap <= slack:
            alpha = a_inf
        else:
            alpha = slack / gap if gap > 0 else slack
        alpha = min(max(alpha, 0.0), 1.0)
        return alpha * g1 + (1.0 - alpha) * g0, value
    raise ValueError(f"unknown oracle {oracle!r}")


def run(p, oracle: str, iterations: int, seed: int = 0):
    """K SGD steps from U0 with NumPy noise: (U_K [T], cost [K + 1])."""
    model = Pushing(p)
    rng = np.random.default_rng(seed)
    U = np.full(p.horizon, p.u_init)
    costs = []
    for _ in range(iterations):
        w1 = p.sigma * rng.standard_normal((p.samples, p.horizon), dtype=np.float32).astype(float)
        w0 = p.sigma * rng.standard_normal((p.samples, p.horizon), dtype=np.float32).astype(float) if oracle == "aobg" else w1
        g, value = estimate(model, oracle, U, w1, w0)
        costs.append(value)
        U = U - p.step * g
    costs.append(model.value(U[None])[0])
    return U, np.asarray(costs)


def check_against_jax(p, tol: float = 1e-10) -> dict[str, float]:
    """Largest relative difference from the JAX reference (`benchmarks.sol`) of f, grad f and one estimate of
    each oracle, for the same U and perturbations. Raises AssertionError above ``tol``."""
    import jax
    import jax.numpy as jnp

    from benchmarks import sol

    model = Pushing(p)
    rng = np.random.default_rng(1)
    U = p.u_init + 0.3 * rng.standard_normal(p.horizon)
    f = sol.make_objective(p)
    rel = lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(np.max(np.abs(np.asarray(b))), 1e-300))  # noqa: E731
    value, grad = model.value_and_grad(U[None])
    jv, jg = jax.value_and_grad(f)(jnp.asarray(U)[:, None])
    out = {"f": rel(value[0], jv), "grad f": rel(grad[0], jg[:, 0])}
    key = jax.random.PRNGKey(3)
    k1, k0 = jax.random.split(key)
    noise = lambda k: np.asarray(p.sigma * jax.random.normal(k, (p.samples, p.horizon, 1), jnp.float32).astype(jnp.float64))[..., 0]  # noqa: E731
    for oracle in ORACLES:
        w1, w0 = (noise(k1), noise(k0)) if oracle == "aobg" else (noise(key), noise(key))
        g, _ = estimate(model, oracle, U, w1, w0)
        jg, _ = sol.make_estimator(p, oracle)(key, jnp.asarray(U)[:, None])
        out[oracle] = rel(g, np.asarray(jg)[:, 0])
    bad = {k: v for k, v in out.items() if not v <= tol}
    assert not bad, f"NumPy reference differs from JAX: {bad}"
    return out
