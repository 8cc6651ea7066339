"""What the alpha-order oracles share: the batch summary their α rules read, and the mixed estimate.

Each mixing oracle (aobg, ivw, ddcg, stepwise, fixed_alpha) owns its rule as a method

    alpha_rule(summary: BatchSummary, problem) -> (alpha, details)

``alpha`` is a scalar or an array of U's shape (per coordinate); ``details`` is a dict of scalars the rule
computed on the way (AoBG's Bernstein radius, DDCG's test and its two sides), named without the oracle's
prefix. `mixed_estimate` turns a rule into the oracle's ``estimate``; `trajopt.diagnostics` applies every
registered rule (`trajopt.oracles.alpha_choosers`) to the same batches, so the two cannot drift apart.

    grad = alpha * FoBG + (1 - alpha) * ZoBG

A first-order batch that is not finite (one sample's gradient overflows or is NaN: a chaotic or stiff rollout, a
kink whose derivative is 0 x inf) has no usable mean or variance. The paper's rule has no case for it; every rule's
α is 0 there, the estimate the rule itself falls back to when ε > γ (Suh et al. 2022, Eq. 5: α = 0 is the ZoBG).
The ZoBG is selected, not multiplied (0 x inf is NaN): `BatchSummary.mix`. A per-coordinate rule falls back in the
coordinates whose samples are not all finite. The run records how many estimates fell back
(`trajopt.result.Result.first_order_fallbacks`: their ``var_first`` is NaN).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax import Array

from trajopt.oracles._samples import SplitSamples, split_samples, split_sizes
from trajopt.oracles.base import make_info
from trajopt.stats import per_coordinate_variance, sample_mean_and_trace_variance

NAN = float("nan")


class BatchSummary(NamedTuple):
    """The FoBG and ZoBG batches and their statistics.

    batches: the `SplitSamples` (g1 [N1, *U.shape], g0 [N0, *U.shape], f1 [N1] or None, value f(U));
    g1, g0: the batch means (U's shape); s1, s0: their per-sample trace variances (scalars); sigma: the
    perturbation scale the batches were drawn with.
    """

    batches: SplitSamples
    g1: Array
    s1: Array
    g0: Array
    s0: Array
    sigma: float

    @property
    def n1(self) -> int:
        return self.batches.g1.shape[0]

    @property
    def n0(self) -> int:
        return self.batches.g0.shape[0]

    def per_coordinate(self) -> tuple[Array, Array]:
        """(v1, v0): per-coordinate variances of the two batches, U's shape each (their sums are s1, s0 up to
        rounding)."""
        return per_coordinate_variance(self.batches.g1), per_coordinate_variance(self.batches.g0)

    def first_order_usable(self, alpha: Array) -> Array:
        """Where the FoBG batch is finite, in ``alpha``'s shape: a bool scalar for a scalar α (every sample of every
        coordinate finite), U's shape for a per-coordinate α (each coordinate's samples finite)."""
        finite = jnp.all(jnp.isfinite(self.batches.g1), axis=0)
        return jnp.all(finite) if jnp.ndim(alpha) == 0 else finite

    def mix(self, alpha: Array) -> tuple[Array, Array]:
        """(alpha, grad): grad = alpha g1 + (1 - alpha) g0 where the FoBG batch is usable, else alpha = 0 and
        grad = g0 (`first_order_usable`; selected, so a non-finite g1 does not reach it)."""
        usable = self.first_order_usable(alpha)
        alpha = jnp.where(usable, alpha, 0.0)
        return alpha, jnp.where(usable, alpha * self.g1 + (1.0 - alpha) * self.g0, self.g0)


def summarise_batches(batches: SplitSamples, sigma: float) -> BatchSummary:
    g1, s1 = sample_mean_and_trace_variance(batches.g1)
    g0, s0 = sample_mean_and_trace_variance(batches.g0)
    return BatchSummary(batches, g1, s1, g0, s0, sigma)


def mixed_calls(oracle) -> tuple[int, int]:
    """(rollouts, backward passes) per estimate of a mixing oracle: its split's (`split_sizes`)."""
    return split_sizes(oracle.samples, oracle.split)[2:]


def mixed_estimate(oracle, key, problem, U):
    """``estimate`` of a mixing oracle: its batches (``samples``, ``sigma``, ``split``), its ``alpha_rule``, the
    mix, and the info (α: the mean over coordinates for a per-coordinate rule; ``radius`` and the variances
    from the rule's details where it gives them)."""
    batches = split_samples(key, problem, U, oracle.samples, oracle.sigma, oracle.split,
                            with_values=getattr(oracle, "needs_values", False))
    s = summarise_batches(batches, oracle.sigma)
    alpha, details = oracle.alpha_rule(s, problem)
    alpha, grad = s.mix(alpha)
    info = make_info(
        batches.value, alpha=jnp.mean(alpha) if jnp.ndim(alpha) else alpha,
        var_first=details.get("var_first", s.s1), var_zero=details.get("var_zero", s.s0),
        bias_gap=jnp.linalg.norm(s.g1 - s.g0), radius=details.get("radius", NAN),
        rollouts=batches.rollouts, gradients=batches.gradients,
    )
    return grad, info
