"""Policy-gradient oracles: the open-loop oracle contract, for closed-loop policy problems.

    estimate(key, problem: PolicyProblem, U = theta[None]: [1, d]) -> (grad: [1, d], OracleInfo)

exactly as `trajopt.oracles.base` (``make_info``: ``value`` = problem.objective(U), the noise-free cost over
the fixed evaluation batch, not counted; ``alpha``, ``var_first``, ``var_zero``, ``bias_gap``, ``radius``;
``rollouts`` and ``gradients`` count the closed-loop trajectories (one initial state each) and the
backward passes through them that the estimate spent). `trajopt.methods.GradientMethod(oracle, optimizer)`
and `trajopt.solver.solve` run them unchanged. The names are the open-loop ones.

Per sample i (Suh et al. 2022, §2.2) the estimate draws an initial state x_1^i (`trajopt.policies.problem.
initial_states`: fresh from rho, or from the fixed training set) and action noise w^i_{1:H} ~ N(0, sigma^2 I)
and rolls out u_h = pi(x_h, theta) + w_h:

    FoBG_i = grad_theta V_1(x_1^i, w^i, theta)                                  (autodiff, w^i held fixed)
    ZoBG_i = (1/sigma^2) [V_1(x_1^i, w^i, theta) - V_1(x_1^i, 0, theta)] sum_h D_theta pi(x^i_h, theta)^T w^i_h

The ZoBG baseline is the zero-noise rollout from the SAME initial state x_1^i (the authors'
``objective_function_policy.zero_order_gradient_batch``): one extra rollout per sample, deterministic given
x_1^i, so it does not bias the estimator (E[w_h | x_{1:h}] = 0). The score sum_h D_theta pi^T w_h is one VJP
of the policy along the stored states (no backward pass through the simulator).

| name     | estimate                                                        | rollouts, backward passes |
|----------|-----------------------------------------------------------------|---------------------------|
| exact    | noise-free pathwise gradient, mean over N initial states        | N, N                      |
| fobg     | FoBG (Suh et al. 2022, §2.2)                                     | N, N                      |
| zobg     | ZoBG with the per-sample zero-noise baseline (§2.2)              | 2N, 0                     |
| aobg     | bias-constrained alpha mix of independent FoBG and ZoBG batches | 3N, N (independent split) |
| ivw      | inverse-variance mix, no bias constraint                        | 3N, N (independent split) |
| stepwise | IVW-H: per-(step, action) weights in action space, then a VJP   | 2N, N                     |

Each oracle's ``calls(problem)`` gives the table's counts (what ``estimate`` counts); ``value`` (the evaluation
batch's cost, ``n_eval`` rollouts) is never among them. Each oracle's ``check(problem)`` refuses a problem that is
not a policy problem (`ClosedLoop`); the open-loop oracles of the same names refuse a policy problem.

Every oracle's ``sigma`` defaults to NaN, meaning the problem's action noise ``problem.sigma`` (the sigma of
F, Eq. 1); a number overrides it.

Sample splits of the mixing oracles (``split``): ``"independent"`` (the paper's: two batches, each with its
own fresh initial states and noise, App. C.1 and the code's ``bias_constrained_aobg``; N FoBG rollouts, N
ZoBG rollouts and N baselines), ``"halves"`` (N/2 + N/2: 3N/2 rollouts, N/2 backward passes) and
``"shared"`` (one batch feeds both: the noisy rollouts' values give the ZoBG, 2N rollouts, N backward
passes; the two estimates are then correlated and Lemma C.2 no longer holds).

DDCG is not offered: its local-quadratic identity Var[grad f] = 2 Var[f]/sigma^2 - 2||g||^2 needs isotropic
Gaussian noise on the decision theta, while here the noise is on the actions (and x_1 varies), so the test
has no meaning in this form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from trajopt import checks
from trajopt.oracles._mixing import summarise_batches
from trajopt.oracles._samples import SPLITS
from trajopt.oracles.aobg import AoBG
from trajopt.oracles.ivw import IVW
from trajopt.oracles.base import make_info
from trajopt.problem import problem_kind
from trajopt.policies.problem import PolicyProblem, draw_samples, value, value_and_states, zero_noise
from trajopt.stats import (
    inverse_variance_alpha,
    per_coordinate_variance,
    sample_mean_and_trace_variance,
)

# ------------------------------------------------------------------------------------ per-sample pieces


def score(problem: PolicyProblem, theta: Array, X: Array, w: Array) -> Array:
    """sum_h D_theta pi(x_h, theta)^T w_h, the likelihood-ratio direction of one trajectory (Suh et al. 2022, §2.2: the score of the REINFORCE estimator).

    theta [d], X [H+1, n] (the visited states; only X[:H] are used, held fixed), w [H, m] -> [d]. One VJP of
    the policy with cotangents w_h; no derivative through the dynamics.
    """
    states = jax.lax.stop_gradient(X[:-1])

    def inner(th):
        return jnp.sum(jax.vmap(problem.policy, in_axes=(None, 0))(th, states) * w)

    return jax.grad(inner)(theta)


def first_order_samples(problem: PolicyProblem, theta: Array, X1: Array, W: Array) -> tuple[Array, Array]:
    """FoBG samples and their values: X1 [N, n], W [N, H, m] -> (g1 [N, d], V [N]), V_i = V_1(x_1^i, w^i, theta).
    N rollouts and N backward passes."""
    vg = jax.value_and_grad(lambda th, x1, w: value(problem, th, x1, w))
    values, grads = jax.vmap(vg, in_axes=(None, 0, 0))(theta, X1, W)
    return grads, values


def baselines(problem: PolicyProblem, theta: Array, X1: Array) -> Array:
    """Zero-noise costs from each sample's own initial state: X1 [N, n] -> b [N], b_i = V_1(x_1^i, 0, theta).
    N rollouts."""
    w0 = zero_noise(problem)
    return jax.vmap(lambda x1: value(problem, theta, x1, w0))(X1)


def zeroth_order_samples(problem: PolicyProblem, theta: Array, X1: Array, W: Array, sigma: float) -> Array:
    """ZoBG samples with the per-sample zero-noise baseline (Suh et al. 2022, §2.2): X1 [N, n], W [N, H, m] -> g0 [N, d].

        g0_i = (V_1(x_1^i, w^i, theta) - V_1(x_1^i, 0, theta)) * score_i / sigma^2

    2N rollouts (noisy and baseline), no backward pass through the simulator.
    """

    def one(x1, w):
        v, X = value_and_states(problem, theta, x1, w)
        return v, score(problem, theta, X, w)

    values, scores = jax.vmap(one)(X1, W)
    return score_weighted(values, baselines(problem, theta, X1), scores, sigma)


def score_weighted(values: Array, base: Array, scores: Array, sigma: float) -> Array:
    """(values_i - base_i) * scores_i / sigma^2: [N], [N], [N, d] -> [N, d]."""
    return (values - base)[:, None] * scores / sigma**2


def shared_samples(problem: PolicyProblem, theta: Array, X1: Array, W: Array, sigma: float):
    """FoBG and ZoBG samples from the same N trajectories, and their action-space parts.

    Returns (g1 [N, d], g0 [N, d], a1 [N, H, m], a0 [N, H, m], states [N, H+1, n]) with
    a1_i = grad_w V_1(x_1^i, w^i, theta) (= dV/du_h, the closed loop's total derivative) and
    a0_i = (V_i - b_i) w^i / sigma^2; g1_i = sum_h D_theta pi(x_h)^T a1_i[h] + (nothing else: theta enters only
    through the actions), g0_i = sum_h D_theta pi(x_h)^T a0_i[h]. 2N rollouts, N backward passes.
    """

    def one(x1, w):
        def f(th, ww):
            return value_and_states(problem, th, x1, ww)

        (v, X), (g_theta, g_w) = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(theta, w)
        return v, X, g_theta, g_w

    values, X, g1, a1 = jax.vmap(one)(X1, W)
    base = baselines(problem, theta, X1)
    a0 = (values - base)[:, None, None] * W / sigma**2
    g0 = jax.vmap(lambda Xi, ai: score(problem, theta, Xi, ai))(X, a0)
    return g1, g0, a1, a0, X


# ------------------------------------------------------------------------------------ shared config


class ClosedLoop:
    """A mixin of the policy oracles: ``check(problem)`` refuses a problem that is not a closed-loop policy problem
    (they draw initial states and action noise and roll out ``problem.policy``)."""

    def check(self, problem) -> None:
        kind = problem_kind(problem)
        if kind == "policy":
            return
        name = getattr(self, "name", type(self).__name__)
        raise ValueError(f"oracle {name!r} is a policy oracle (it rolls out a feedback policy from sampled initial "
                         f"states); {getattr(problem, 'name', 'the problem')} is an open-loop {kind} problem: use the "
                         f"open-loop oracle {name!r} (trajopt.oracles.ORACLES)")


def _check_sigma(sigma: float) -> None:
    if not math.isnan(sigma):
        checks.positive("sigma", sigma)


def _sigma(oracle_sigma: float, problem: PolicyProblem) -> float:
    return problem.sigma if math.isnan(oracle_sigma) else oracle_sigma


class Batches(NamedTuple):
    """FoBG and ZoBG samples of a mixing oracle: g1 [N1, d], g0 [N0, d], and their cost."""

    g1: Array
    g0: Array
    rollouts: int
    gradients: int


def split_counts(samples: int, split: str) -> tuple[int, int, int, int]:
    """(N1, N0, rollouts, gradients) of a policy sample split."""
    if split == "halves":
        h = samples // 2
        return h, h, 3 * h, h
    if split == "shared":
        return samples, samples, 2 * samples, samples
    return samples, samples, 3 * samples, samples


def split_batches(key: Array, problem: PolicyProblem, theta: Array, samples: int, sigma: float, split: str) -> Batches:
    """The two batches under ``split``: ``independent``/``halves`` draw the FoBG batch (initial states and
    noise) from ``split(key)[0]`` and the ZoBG batch from ``split(key)[1]``; ``shared`` draws one batch from
    ``split(key)[0]``."""
    n1, n0, rollouts, gradients = split_counts(samples, split)
    k1, k0 = jax.random.split(key)
    if split == "shared":
        X1, W = draw_samples(problem, k1, n1, sigma)
        g1, g0, *_ = shared_samples(problem, theta, X1, W, sigma)
        return Batches(g1, g0, rollouts, gradients)
    X1, W = draw_samples(problem, k1, n1, sigma)
    g1, _ = first_order_samples(problem, theta, X1, W)
    X0, W0 = draw_samples(problem, k0, n0, sigma)
    g0 = zeroth_order_samples(problem, theta, X0, W0, sigma)
    return Batches(g1, g0, rollouts, gradients)


def _check_split(split: str, samples: int) -> None:
    checks.one_of("split", split, SPLITS)
    if split == "halves" and (samples % 2 or samples < 4):
        raise checks.FieldError("samples", samples, "an even integer >= 4 with split = 'halves' (two batches of N/2)")


# ------------------------------------------------------------------------------------ oracles


def _mixed(rule, key, problem, U, sigma):
    """The estimate of a mixing policy oracle: its two batches (split as ``rule.split``) and the open-loop
    oracle's own ``alpha_rule`` (`trajopt.oracles._mixing`), so the closed-loop and open-loop α are one rule."""
    b = split_batches(key, problem, U[0], rule.samples, sigma, rule.split)
    s = summarise_batches(b, sigma)
    alpha, details = rule.alpha_rule(s, problem)
    alpha, grad = s.mix(alpha)  # alpha = 0, the ZoBG alone, where the FoBG batch is not finite
    info = make_info(problem.objective(U), alpha=alpha, var_first=s.s1, var_zero=s.s0,
                     bias_gap=jnp.linalg.norm(s.g1 - s.g0), radius=details.get("radius", math.nan),
                     rollouts=b.rollouts, gradients=b.gradients)
    return grad[None], info


@dataclass(frozen=True)
class PolicyExact(ClosedLoop):
    """samples: N initial states. The noise-free pathwise gradient (1/N) sum_i grad_theta V_1(x_1^i, 0, theta):
    what a differentiable simulator returns without smoothing (on a flat branch exactly 0). With a point
    rho it is grad of the unsmoothed cost, which differs from grad F by the O(sigma^2) effect of the noise."""

    samples: int = 10
    name: ClassVar[str] = "exact"

    def __post_init__(self):
        checks.at_least("samples", self.samples, 1)

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per estimate: N of each."""
        return self.samples, self.samples

    def estimate(self, key, problem, U):
        theta = U[0]
        X1, W = draw_samples(problem, key, self.samples, 1.0)
        g, _ = first_order_samples(problem, theta, X1, jnp.zeros_like(W))
        rollouts, gradients = self.calls(problem)
        return g.mean(axis=0)[None], make_info(problem.objective(U), rollouts=rollouts, gradients=gradients)


@dataclass(frozen=True)
class PolicyFoBG(ClosedLoop):
    """samples: N; sigma: action-noise std (NaN = the problem's). Suh et al. 2022, §2.2 (the reparameterisation gradient); N rollouts, N backward passes."""

    samples: int = 10
    sigma: float = math.nan
    name: ClassVar[str] = "fobg"

    def __post_init__(self):
        checks.at_least("samples", self.samples, 2)
        _check_sigma(self.sigma)

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per estimate: N of each."""
        return self.samples, self.samples

    def estimate(self, key, problem, U):
        X1, W = draw_samples(problem, key, self.samples, _sigma(self.sigma, problem))
        g1, _ = first_order_samples(problem, U[0], X1, W)
        grad, var_first = sample_mean_and_trace_variance(g1)
        rollouts, gradients = self.calls(problem)
        info = make_info(problem.objective(U), var_first=var_first, rollouts=rollouts, gradients=gradients)
        return grad[None], info


@dataclass(frozen=True)
class PolicyZoBG(ClosedLoop):
    """samples: N; sigma: action-noise std (NaN = the problem's). Suh et al. 2022, §2.2 with the per-sample zero-noise
    baseline from the same initial state; 2N rollouts, no backward pass."""

    samples: int = 10
    sigma: float = math.nan
    name: ClassVar[str] = "zobg"

    def __post_init__(self):
        checks.at_least("samples", self.samples, 2)
        _check_sigma(self.sigma)

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per estimate: 2N (noisy and baseline), none backward."""
        return 2 * self.samples, 0

    def estimate(self, key, problem, U):
        sigma = _sigma(self.sigma, problem)
        X1, W = draw_samples(problem, key, self.samples, sigma)
        g0 = zeroth_order_samples(problem, U[0], X1, W, sigma)
        grad, var_zero = sample_mean_and_trace_variance(g0)
        return grad[None], make_info(problem.objective(U), var_zero=var_zero, rollouts=self.calls(problem)[0])


@dataclass(frozen=True)
class PolicyAoBG(ClosedLoop):
    """The bias-constrained alpha-order gradient (Suh et al. 2022, §4, Eqs. 4-5), as `trajopt.oracles.aobg`:

        AoBG = alpha FoBG + (1 - alpha) ZoBG,  alpha = argmin alpha^2 s1 + (1-alpha)^2 s0  s.t.  eps + alpha B <= gamma
        eps  = sqrt(2 s0 log((d+1)/p) / N0) + (2 L / (3 N0)) log((d+1)/p),   d = theta's size

    samples: N per batch; sigma: action-noise std (NaN = the problem's); gamma (inf = IVW), L, delta,
    delta_convention (`trajopt.stats.failure_log_term`), regulariser (the code's 1e-5), split."""

    samples: int = 10
    sigma: float = math.nan
    gamma: float = math.inf
    L: float = 100.0
    delta: float = 0.95
    delta_convention: str = "reference"
    regulariser: float = 1e-5
    split: str = "independent"
    name: ClassVar[str] = "aobg"

    def __post_init__(self):
        checks.at_least("samples", self.samples, 2)
        _check_sigma(self.sigma)
        checks.non_negative("gamma", self.gamma, allow_inf=True)
        checks.non_negative("L", self.L)
        checks.in_interval("delta", self.delta, 0.0, 1.0, closed=False)
        checks.one_of("delta_convention", self.delta_convention, ("reference", "confidence"))
        checks.non_negative("regulariser", self.regulariser)
        _check_split(self.split, self.samples)

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per estimate: the split's (3N, N independent)."""
        return split_counts(self.samples, self.split)[2:]

    def estimate(self, key, problem, U):
        sigma = _sigma(self.sigma, problem)
        rule = AoBG(samples=self.samples, sigma=sigma, gamma=self.gamma, L=self.L, delta=self.delta,
                    delta_convention=self.delta_convention, regulariser=self.regulariser, split=self.split)
        return _mixed(rule, key, problem, U, sigma)


@dataclass(frozen=True)
class PolicyIVW(ClosedLoop):
    """Inverse-variance weighting of FoBG and ZoBG batches, alpha = s0 / (s0 + s1 + regulariser), no bias
    constraint (Suh et al. 2022, alpha_inf of Eq. 5; the follow-up's IVW, arXiv 2604.18161). samples, sigma, regulariser, split as `PolicyAoBG`."""

    samples: int = 10
    sigma: float = math.nan
    regulariser: float = 1e-5
    split: str = "independent"
    name: ClassVar[str] = "ivw"

    def __post_init__(self):
        checks.at_least("samples", self.samples, 2)
        _check_sigma(self.sigma)
        checks.non_negative("regulariser", self.regulariser)
        _check_split(self.split, self.samples)

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per estimate: the split's (3N, N independent)."""
        return split_counts(self.samples, self.split)[2:]

    def estimate(self, key, problem, U):
        sigma = _sigma(self.sigma, problem)
        rule = IVW(samples=self.samples, sigma=sigma, regulariser=self.regulariser, split=self.split)
        return _mixed(rule, key, problem, U, sigma)


@dataclass(frozen=True)
class PolicyStepwise(ClosedLoop):
    """IVW-H (the follow-up, arXiv 2604.18161: per-step inverse-variance weights): per-(step h, action a) inverse-variance weights in ACTION space, then the policy VJP.

    From one batch of N trajectories (shared: 2N rollouts with the baselines, N backward passes):

        a1_i[h, a] = dV_i/du_h[a]  (pathwise, the closed loop's total derivative),   a0_i[h, a] = (V_i - b_i) w_i[h, a] / sigma^2
        alpha[h, a] = Var_i a0[h, a] / (Var_i a0[h, a] + Var_i a1[h, a] + regulariser)
        grad = (1/N) sum_i sum_h D_theta pi(x^i_h, theta)^T (alpha[h] a1_i[h] + (1 - alpha[h]) a0_i[h])

    Each sample's fused action gradient is pulled back along its own trajectory; where a coordinate's pathwise
    samples a1[:, h, a] are not all finite, alpha[h, a] = 0 (the ZoBG's part alone, as every mixing oracle falls
    back, `trajopt.oracles._mixing`). ``alpha`` in the info is the mean of alpha[h, a]; ``var_first``/``var_zero`` are the trace variances of the theta-space FoBG/ZoBG
    samples of the same batch, ``bias_gap`` the norm of their mean difference.
    """

    samples: int = 10
    sigma: float = math.nan
    regulariser: float = 1e-5
    name: ClassVar[str] = "stepwise"

    def __post_init__(self):
        checks.at_least("samples", self.samples, 2)
        _check_sigma(self.sigma)
        checks.non_negative("regulariser", self.regulariser)

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per estimate: 2N (noisy and baseline), N backward."""
        return 2 * self.samples, self.samples

    def estimate(self, key, problem, U):
        theta, sigma = U[0], _sigma(self.sigma, problem)
        X1, W = draw_samples(problem, key, self.samples, sigma)
        g1, g0, a1, a0, X = shared_samples(problem, theta, X1, W, sigma)
        alpha = inverse_variance_alpha(per_coordinate_variance(a1), per_coordinate_variance(a0), self.regulariser)
        # alpha[h, a] = 0, the ZoBG's part alone, where that coordinate's pathwise samples are not all finite (the
        # open-loop fallback, trajopt.oracles._mixing: selected, since 0 x NaN is NaN)
        usable = jnp.all(jnp.isfinite(a1), axis=0)
        alpha = jnp.where(usable, alpha, 0.0)
        fused = jnp.where(usable, alpha * a1 + (1.0 - alpha) * a0, a0)
        grads = jax.vmap(lambda Xi, fi: score(problem, theta, Xi, fi))(X, fused)
        m1, s1 = sample_mean_and_trace_variance(g1)
        m0, s0 = sample_mean_and_trace_variance(g0)
        info = make_info(problem.objective(U), alpha=jnp.mean(alpha), var_first=s1, var_zero=s0,
                         bias_gap=jnp.linalg.norm(m1 - m0), rollouts=self.calls(problem)[0],
                         gradients=self.calls(problem)[1])
        return grads.mean(axis=0)[None], info
