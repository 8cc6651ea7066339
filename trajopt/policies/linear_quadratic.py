"""The smooth sanity case with a known answer: the authors' finite-horizon static-gain linear system.

    x_{h+1} = x_h + u_h,   u_h = K x_h + w_h,   w_h ~ N(0, sigma^2 I_n),   K: [n, n] (a linear policy, no bias)
    V_1 = sum_{h<H} (x_h^T Q x_h + u_h^T R u_h) + x_H^T Q_f x_H         (goal 0)

(an example of the authors' code, github.com/hjsuh94/alpha_gradient, not in the paper: "a finite-horizon
static-policy LQR"). Everything is Gaussian-linear, so F(K) (Suh et al. 2022, Eq. 1) has a
closed form through the second moments M_h = E[x_h x_h^T] (x_1 ~ rho with mean mu and covariance S):

    M_1 = S + mu mu^T,   M_{h+1} = A M_h A^T + sigma^2 I,   A = I + K
    F(K) = sum_{h<H} [ tr(Q M_h) + tr(K^T R K M_h) + sigma^2 tr(R) ] + tr(Q_f M_H)

(u_h = K x_h + w_h with w_h independent of x_h). `expected_cost` is that formula, differentiable in K, so
its autodiff gradient is the exact grad F that the policy oracles estimate (all of them are unbiased here:
the dynamics and cost are smooth and of polynomial growth, Lemma 3.1 and 3.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax import Array

from trajopt import checks
from trajopt.policies.initial import Gaussian
from trajopt.policies.policies import Linear
from trajopt.policies.problem import PolicyProblem
from trajopt.problem import QuadraticCost


@dataclass(frozen=True)
class Integrator:
    """x' = x + u with n = m = ``size``: the static-gain system's one-step map (no parameters beyond n)."""

    size: int = 1
    dt: float = 1.0
    name: ClassVar[str] = "integrator"

    def __post_init__(self):
        checks.at_least("size", self.size, 1)

    @property
    def state_size(self) -> int:
        return self.size

    @property
    def control_size(self) -> int:
        return self.size

    def step(self, x: Array, u: Array) -> Array:
        return x + u

    def stable_dt(self) -> float:
        return float("inf")


def static_gain_problem(size: int = 2, horizon: int = 10, sigma: float = 0.1, q: float = 1.0, r: float = 0.1,
                        qf: float = 1.0, mean=None, std=None, theta0=None, **options) -> PolicyProblem:
    """The static-gain linear problem: Integrator(size), Linear policy (K: [n, n], theta0 = -0.2 I flattened
    by default), Q = q I, R = r I, Q_f = qf I, goal 0, x_1 ~ N(mean, diag(std^2)) (default mean 1, std 0.5).
    ``options`` go to `PolicyProblem` (n_init, resample, n_eval, seeds)."""
    n = size
    mean = [1.0] * n if mean is None else list(mean)
    std = [0.5] * n if std is None else list(std)
    eye = jnp.eye(n)
    cost = QuadraticCost(Q=q * eye, R=r * eye, Qf=qf * eye, goal=jnp.zeros(n))
    theta0 = (-0.2 * eye).reshape(-1) if theta0 is None else theta0
    return PolicyProblem(name="static_gain", system=Integrator(n), policy=Linear(), task_cost=cost,
                         initial=Gaussian(mean=tuple(mean), std=tuple(std)), horizon=horizon, sigma=sigma,
                         theta0=theta0, **options)


def expected_cost(problem: PolicyProblem, theta: Array, sigma: float | None = None) -> Array:
    """F(theta) in closed form (module docstring) for a `static_gain_problem`: theta [n*n] -> scalar.

    ``sigma`` defaults to the problem's; sigma = 0 gives the noise-free expected cost.
    """
    sigma = problem.sigma if sigma is None else sigma
    n = problem.state_size
    K = theta.reshape(n, n)
    A = jnp.eye(n) + K
    c = problem.task_cost
    mu = jnp.asarray(problem.initial.mean)
    M1 = jnp.diag(jnp.asarray(problem.initial.std) ** 2) + jnp.outer(mu, mu)

    def body(M, _):
        stage = jnp.trace(c.Q @ M) + jnp.trace(K.T @ c.R @ K @ M) + sigma**2 * jnp.trace(c.R)
        return A @ M @ A.T + sigma**2 * jnp.eye(n), stage

    MH, stages = jax.lax.scan(body, M1, None, length=problem.horizon)
    return jnp.sum(stages) + jnp.trace(c.Qf @ MH)


def exact_gradient(problem: PolicyProblem, theta: Array, sigma: float | None = None) -> Array:
    """grad F(theta) of the closed form: [n*n]."""
    return jax.grad(lambda th: expected_cost(problem, th, sigma))(theta)
