"""Per-sample first- and zeroth-order gradients: the building blocks of every sampling oracle.

* `first_order_samples`: pathwise gradients grad f(U + w_i), optionally with the values f(U + w_i) (same
  rollouts: ``jax.value_and_grad``).
* `zeroth_order_samples`: score-function gradients with the zero-noise baseline (the paper's ZoBG).
* `zeroth_order_units`: the ZoBG's variants (one- or two-sided, antithetic), as i.i.d. units.
* `split_samples`: the FoBG and ZoBG batches an alpha-order oracle mixes, under a sample split
  (``"independent"``, ``"halves"`` or ``"shared"``, see `SPLITS`), with their simulator-call counts.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import Array

from trajopt import checks
from trajopt.oracles.base import gaussian_noise
from trajopt.problem import Problem

SPLITS = ("independent", "halves", "shared")
"""How an alpha-order oracle draws its FoBG and ZoBG batches from ``samples`` = N:

* ``"independent"`` (the paper's sample splitting, App. C.1; the default): N FoBG samples and N fresh ZoBG
  samples, 2N + 1 rollouts and N backward passes.
* ``"halves"``: N/2 FoBG samples and N/2 independent ZoBG samples, N + 1 rollouts and N/2 backward passes:
  the same simulator budget as one N-sample FoBG or ZoBG (N even, N >= 4). Still independent, so
  Var = alpha^2 Var1 + (1 - alpha)^2 Var0 (Lemma C.2) and the alpha rules keep their meaning.
* ``"shared"``: one batch of N perturbations feeds both: f(U + w_i) and grad f(U + w_i) from one
  ``value_and_grad`` per sample, and the ZoBG sample (f(U + w_i) - f(U)) w_i / sigma^2 from the same value.
  N + 1 rollouts and N backward passes: exactly the FoBG's budget plus the baseline. The two estimates are
  then *correlated*, so Lemma C.2 no longer holds and the inverse-variance weight is a heuristic there.
"""


def first_order_samples(key: Array, problem: Problem, U: Array, n: int, sigma: float, *, with_values: bool = False):
    """Pathwise gradients of the noisy objective (Suh et al. 2022, §2.2: the reparameterisation gradient).

        g1_i = grad_U f(U + w_i),   w_i ~ N(0, sigma^2 I)       (autodiff with w_i held fixed)

    Returns: g1 [N, *U.shape]; with ``with_values`` the pair (g1, values [N]) where values_i = f(U + w_i),
    taken from the same rollouts (``jax.value_and_grad``). Costs N rollouts and N backward passes either way.
    """
    w = gaussian_noise(key, n, U.shape, sigma, U.dtype)
    return first_order_from_noise(problem, U, w, with_values=with_values)


def first_order_from_noise(problem: Problem, U: Array, w: Array, *, with_values: bool = False):
    """`first_order_samples` for given perturbations w: [N, *U.shape]."""
    if with_values:
        values, grads = jax.vmap(jax.value_and_grad(problem.objective))(U + w)
        return grads, values
    return jax.vmap(jax.grad(problem.objective))(U + w)


def zeroth_order_samples(key: Array, problem: Problem, U: Array, n: int, sigma: float, baseline: Array) -> Array:
    """Score-function gradients with the zero-noise baseline (Suh et al. 2022, §2.2):

        g0_i = (f(U + w_i) - f(U)) * w_i / sigma^2,   w_i ~ N(0, sigma^2 I)

    ``baseline`` is f(U), computed once by the caller. Returns: [N, *U.shape]. Costs N rollouts.
    """
    w = gaussian_noise(key, n, U.shape, sigma, U.dtype)
    values = jax.vmap(problem.objective)(U + w)
    return score_samples(values, baseline, w, sigma)


def score_samples(values: Array, baseline: Array, w: Array, sigma: float) -> Array:
    """(values_i - baseline) * w_i / sigma^2 for values: [N], w: [N, *shape] -> [N, *shape]."""
    weights = (values - baseline).reshape(values.shape + (1,) * (w.ndim - 1))
    return weights * w / sigma**2


ZOBG_ESTIMATORS = ("one_sided", "two_sided")


def zeroth_order_units(key: Array, problem: Problem, U: Array, n: int, sigma: float, baseline: Array, *,
                       estimator: str = "one_sided", antithetic: bool = False) -> Array:
    """The ZoBG's independent units, whose mean is the estimate.

    * one-sided, plain (the paper's): N units  g_i = (f(U + w_i) - f(U)) w_i / sigma^2            (N rollouts)
    * two-sided, plain:               N units  g_i = (f(U + w_i) - f(U - w_i)) w_i / (2 sigma^2)    (2N rollouts)
    * antithetic (either):          N/2 units  g_j = 1/2 [g(w_j) + g(-w_j)]                        (N rollouts)

    For the antithetic pair the baseline cancels, 1/2[(f(U+w) - b) w - (f(U-w) - b) w] / sigma^2
    = (f(U + w) - f(U - w)) w / (2 sigma^2), and the two-sided sample is already symmetric in w, so both
    estimators give the same antithetic unit: N/2 directions, each evaluated at U + w_j and U - w_j.

    Returns: [units, *U.shape] (i.i.d. across units). ``baseline`` = f(U) is used by the plain one-sided form only.
    """
    if antithetic:
        w = gaussian_noise(key, n // 2, U.shape, sigma, U.dtype)
        both = jax.vmap(problem.objective)(jnp.concatenate([U + w, U - w]))
        plus, minus = both[: n // 2], both[n // 2:]
        return _two_sided(plus, minus, w, sigma)
    w = gaussian_noise(key, n, U.shape, sigma, U.dtype)
    if estimator == "two_sided":
        both = jax.vmap(problem.objective)(jnp.concatenate([U + w, U - w]))
        return _two_sided(both[:n], both[n:], w, sigma)
    return score_samples(jax.vmap(problem.objective)(U + w), baseline, w, sigma)


def _two_sided(plus: Array, minus: Array, w: Array, sigma: float) -> Array:
    weights = (plus - minus).reshape(plus.shape + (1,) * (w.ndim - 1))
    return weights * w / (2.0 * sigma**2)


def zeroth_order_cost(n: int, estimator: str, antithetic: bool) -> tuple[int, int]:
    """(units, rollouts) of `zeroth_order_units`. The plain one-sided form adds the baseline rollout f(U)."""
    if antithetic:
        return n // 2, n
    if estimator == "two_sided":
        return n, 2 * n
    return n, n + 1


# ------------------------------------------------------------------------------------------ splits


class SplitSamples(NamedTuple):
    """The two batches of an alpha-order oracle.

    value: f(U). g1: [N1, *U.shape] FoBG samples; f1: [N1] their values f(U + w_i) (None unless asked for).
    g0: [N0, *U.shape] ZoBG samples (zero-noise baseline). rollouts, gradients: the simulator calls spent.
    """

    value: Array
    g1: Array
    f1: Optional[Array]
    g0: Array
    rollouts: int
    gradients: int


def check_split(split: str, samples: int, field: str = "split") -> None:
    """Validate a split name against ``samples`` (``halves`` needs an even N >= 4: two batches of >= 2)."""
    checks.one_of(field, split, SPLITS)
    if split == "halves" and (samples % 2 or samples < 4):
        raise checks.FieldError("samples", samples, "an even integer >= 4 with split = 'halves' (two batches of N/2)")


def split_sizes(samples: int, split: str) -> tuple[int, int, int, int]:
    """(N1, N0, rollouts, gradients) of a split of ``samples`` = N."""
    if split == "halves":
        half = samples // 2
        return half, half, samples + 1, half
    if split == "shared":
        return samples, samples, samples + 1, samples
    return samples, samples, 2 * samples + 1, samples


def split_samples(key: Array, problem: Problem, U: Array, samples: int, sigma: float, split: str = "independent", *,
                  with_values: bool = False) -> SplitSamples:
    """FoBG and ZoBG batches at U under a sample split (see `SPLITS`).

    ``independent`` and ``halves`` draw the FoBG batch from ``split(key)[0]`` and the ZoBG batch from
    ``split(key)[1]``; ``shared`` draws one batch from ``split(key)[0]``. ``with_values`` also returns the FoBG
    batch's values f(U + w_i) (no extra rollouts).
    """
    n1, n0, rollouts, gradients = split_sizes(samples, split)
    key_first, key_zero = jax.random.split(key)
    value = problem.objective(U)
    if split == "shared":
        w = gaussian_noise(key_first, n1, U.shape, sigma, U.dtype)
        g1, f1 = first_order_from_noise(problem, U, w, with_values=True)
        g0 = score_samples(f1, value, w, sigma)
        return SplitSamples(value, g1, f1 if with_values else None, g0, rollouts, gradients)
    out = first_order_samples(key_first, problem, U, n1, sigma, with_values=with_values)
    g1, f1 = out if with_values else (out, None)
    g0 = zeroth_order_samples(key_zero, problem, U, n0, sigma, value)
    return SplitSamples(value, g1, f1, g0, rollouts, gradients)
