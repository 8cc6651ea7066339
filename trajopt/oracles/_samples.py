"""Per-sample first- and zeroth-order gradients: the building blocks of fobg, zobg and aobg."""

from __future__ import annotations

import jax
from jax import Array

from trajopt.oracles.base import gaussian_noise
from trajopt.problem import Problem


def first_order_samples(key: Array, problem: Problem, U: Array, n: int, sigma: float) -> Array:
    """Pathwise gradients of the noisy objective (PAPER.md §1.3).

        g1_i = grad_U f(U + w_i),   w_i ~ N(0, sigma^2 I)       (autodiff with w_i held fixed)

    Returns: [N, *U.shape]. Costs N rollouts and N backward passes.
    """
    w = gaussian_noise(key, n, U.shape, sigma, U.dtype)
    return jax.vmap(jax.grad(problem.objective))(U + w)


def zeroth_order_samples(key: Array, problem: Problem, U: Array, n: int, sigma: float, baseline: Array) -> Array:
    """Score-function gradients with the zero-noise baseline (PAPER.md §1.2):

        g0_i = (f(U + w_i) - f(U)) * w_i / sigma^2,   w_i ~ N(0, sigma^2 I)

    ``baseline`` is f(U), computed once by the caller. Returns: [N, *U.shape]. Costs N rollouts.
    """
    w = gaussian_noise(key, n, U.shape, sigma, U.dtype)
    values = jax.vmap(problem.objective)(U + w)
    weights = (values - baseline).reshape((n,) + (1,) * U.ndim)
    return weights * w / sigma**2
