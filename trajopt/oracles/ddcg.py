"""`ddcg`: the discontinuity-detecting switch of the 2026 follow-up (Onoda et al. 2026, Eq. 14).

    DDCG(U) = alpha * FoBG(U) + (1 - alpha) * ZoBG(U)
    alpha   = s0 / (s0 + s1 + regulariser)   if the FoBG batch passes the local-quadratic test (Eq. 14)
            = 0                              otherwise (pure ZoBG)

The test (`trajopt.stats.quadratic_consistency_test`) asks whether the FoBG's sample variance, plus a
chi-squared confidence slack, is at least what a local quadratic model predicts from the spread of the
function values in the same batch:

    v1 + eps_v  >=  2 (1 - c) Var[f] / sigma^2  -  2 ||g1||^2

* v1 = s1, the FoBG batch's empirical trace variance; g1 its mean.
* Var[f] = the sample variance (1/(N-1)) of the FoBG batch's own noisy values f(U + w_i), which come with the
  gradients from the same rollouts (``jax.value_and_grad``): no extra simulator calls. (OUR choice of batch:
  the one whose gradients are tested, so both sides see the same perturbations.)
* eps_v: a one-sided chi-squared upper confidence bound on v1 at level ``confidence`` (OUR choice, 0.95;
  the paper's confidence level is not available): v1 + eps_v = v1 (N-1) / chi2_{1-confidence}(N-1).
* The floor (OUR choice): v1 <- max(v1, variance_floor * ||g1||^2, variance_floor_abs) before the slack;
  see the test's docstring for why the relative floor exists and why it never hides a plateau.
* c = 0.3, the follow-up's single hyper-parameter ("fixed for all tasks").

A plateau (every FoBG sample 0) or a jump inside the smoothing radius gives a large Var[f] and a quiet
FoBG, so the test fails and DDCG uses the ZoBG; a smooth or merely stiff region passes, and DDCG is IVW
there (stiffness raises v1, which the test accepts; the IVW weight then leans zeroth-order by itself).

Cost: the same batches as `aobg` / `ivw` (`split`, default independent): 2N + 1 rollouts, N backward passes.
``info.radius`` is NaN (there is no Bernstein radius).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax.numpy as jnp

from trajopt import checks
from trajopt.oracles._mixing import mixed_calls, mixed_estimate
from trajopt.oracles._samples import check_split
from trajopt.oracles.base import OpenLoop
from trajopt.stats import inverse_variance_alpha, quadratic_consistency_test


@dataclass(frozen=True)
class DDCG(OpenLoop):
    """samples: N per batch; sigma: perturbation std; c: the test's tolerance; confidence: level of the
    chi-squared slack eps_v; variance_floor: floor on v1 relative to ||FoBG mean||^2; variance_floor_abs: an
    absolute floor on v1; regulariser: as in IVW; split: the sample split."""

    samples: int = 10
    sigma: float = 0.1
    c: float = 0.3
    confidence: float = 0.95
    variance_floor: float = 0.25
    variance_floor_abs: float = 0.0
    regulariser: float = 1e-5
    split: str = "independent"
    name: ClassVar[str] = "ddcg"
    colour: ClassVar[str] = "#e377c2"  # its colour in every figure
    chooses_alpha: ClassVar[bool] = True  # mixes FoBG and ZoBG with an α of its own rule
    value_in_calls: ClassVar[bool] = True  # the zero-noise baseline f(U), its value, is one of its counted rollouts

    def __post_init__(self):
        checks.at_least("samples", self.samples, 2)
        checks.positive("sigma", self.sigma)
        checks.in_interval("c", self.c, 0.0, 1.0)
        checks.in_interval("confidence", self.confidence, 0.0, 1.0, closed=False)
        checks.non_negative("variance_floor", self.variance_floor)
        checks.non_negative("variance_floor_abs", self.variance_floor_abs)
        checks.non_negative("regulariser", self.regulariser)
        check_split(self.split, self.samples)

    def test(self, g1_mean, s1, f1, n1: int, sigma: float | None = None):
        """(passed, lhs, rhs) of the test for a FoBG batch: mean g1_mean, trace variance s1, values f1: [N1],
        drawn with ``sigma`` (default: this oracle's)."""
        value_var = jnp.var(f1, ddof=1)
        return quadratic_consistency_test(
            s1, value_var, jnp.sum(g1_mean**2), self.sigma if sigma is None else sigma, n1, c=self.c,
            confidence=self.confidence,
            variance_floor=self.variance_floor, variance_floor_abs=self.variance_floor_abs,
        )

    needs_values: ClassVar[bool] = True  # the test reads the FoBG batch's values f(U + w_i)

    def alpha_rule(self, s, problem):
        """The IVW weight where the FoBG batch passes the local-quadratic test, else 0; details: the test's
        outcome ``pass`` and its two sides ``lhs``, ``rhs``."""
        passed, lhs, rhs = self.test(s.g1, s.s1, s.batches.f1, s.n1, sigma=s.sigma)
        alpha = jnp.where(passed, inverse_variance_alpha(s.s1, s.s0, self.regulariser), 0.0)
        return alpha, {"pass": passed, "lhs": lhs, "rhs": rhs}

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per estimate: the split's (2N + 1, N independent)."""
        return mixed_calls(self)

    def estimate(self, key, problem, U):
        return mixed_estimate(self, key, problem, U)
