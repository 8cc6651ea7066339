"""Gradient diagnostics: which estimator can be trusted at a point, and does autodiff agree with finite
differences. Pure library code (no printing, no files); the CLI verbs `trajopt diagnose` and
`trajopt gradcheck` call it.

**Estimator statistics** (`estimator_statistics`, `summarise`, `reading`). At a decision U, draw ``repeats``
independent FoBG and ZoBG batch pairs (repeat r uses ``fold_in(key, r)``; one ``vmap``), exactly the batches
`aobg` draws (`trajopt.oracles._samples.split_samples`, independent split), and compute for each repeat
what every alpha rule would see and choose:

* ||FoBG||, ||ZoBG||, their per-sample trace variances s1, s0 and per-time-step variances (summed over the
  control dimension), the gap B = ||FoBG - ZoBG||, AoBG's Bernstein radius eps;
* the alpha of `aobg` (Eq. 5 with the file's gamma, L, delta), of `ivw` (alpha_inf), of `ddcg` (IVW or 0 by
  the local-quadratic test, with the test's two sides) and of `stepwise` (mean over coordinates);
* Var[f] over the FoBG batch, and the share of FoBG samples that are exactly 0 (autodiff on a flat branch:
  a plateau sign);
* the excess squared gap B^2 - (s1/N1 + s0/N0): with independent batches its expectation is
  ||E FoBG - E ZoBG||^2, the squared bias of the FoBG (the ZoBG being unbiased), so a mean over repeats that
  is several standard errors above 0 is direct evidence of bias.

`summarise` turns the [R] arrays into means with 95% confidence intervals over the repeats (normal
approximation, mean +- 1.96 sd / sqrt(R)), and `reading` into one line.

**Gradient check** (`gradient_check`, `gradcheck_summary`). The autodiff directional derivative grad f(U) . v
against central differences (f(U + h v) - f(U - h v)) / 2h along K random unit directions at several steps h,
with the second difference (f(U + h v) - 2 f(U) + f(U - h v)) / h^2 to tell curvature from a jump.
"""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from trajopt.oracles._mixing import summarise_batches
from trajopt.oracles._samples import split_samples
from trajopt.problem import Problem

Z95 = 1.959963984540054  # two-sided 95% normal quantile

# ------------------------------------------------------------------------------------ estimator statistics


def batch_statistics(key: Array, problem: Problem, U: Array, *, samples: int, sigma: float,
                     rules: Mapping[str, object]) -> dict[str, Array]:
    """Statistics of one pair of independent N-sample batches at U (U: [T, m]), and what each α rule does with it.

    ``rules``: {name: a mixing oracle} (normally every registered oracle that chooses its own α, with the file's
    parameters); each rule is the oracle's own ``alpha_rule`` applied to these batches, so with the same key,
    N and sigma the weights are exactly those the oracles choose. Returns a dict of scalars (a leading [R] axis
    after `estimator_statistics`):

    value: f(U). norm_first, norm_zero: ||FoBG||, ||ZoBG||. var_first, var_zero: per-sample trace variances.
    step_var_first, step_var_zero: [T] per-time-step variances (summed over the m controls of step t).
    bias_gap: B. excess_gap: B^2 - (var_first / N1 + var_zero / N0). value_var: Var[f] over the FoBG batch.
    zero_share: share of FoBG samples that are exactly 0. For each rule NAME: alpha_NAME (the mean over
    coordinates for a per-coordinate rule), norm_NAME (the norm of its mixed estimate), var_NAME (its per-sample
    variance sum(alpha^2 v1 + (1 - alpha)^2 v0), Lemma C.2), and NAME_DETAIL for each detail the rule reports
    (aobg_radius, ddcg_pass, ddcg_lhs, ddcg_rhs).
    """
    b = split_samples(key, problem, U, samples, sigma, "independent", with_values=True)
    s = summarise_batches(b, sigma)
    n1, n0 = s.n1, s.n0
    v1, v0 = s.per_coordinate()
    _per_step = lambda v: v.reshape(v.shape[0], -1).sum(axis=1)  # noqa: E731  [T, m] -> [T], summed over m
    gap = jnp.linalg.norm(s.g1 - s.g0)
    per_sample_zero = jnp.all(b.g1.reshape(n1, -1) == 0, axis=1)
    out = {
        "value": b.value, "norm_first": jnp.linalg.norm(s.g1), "norm_zero": jnp.linalg.norm(s.g0),
        "var_first": s.s1, "var_zero": s.s0, "step_var_first": _per_step(v1), "step_var_zero": _per_step(v0),
        "bias_gap": gap, "excess_gap": gap**2 - (s.s1 / n1 + s.s0 / n0), "value_var": jnp.var(b.f1, ddof=1),
        "zero_share": jnp.mean(per_sample_zero.astype(b.value.dtype)),
    }
    for name, oracle in rules.items():
        alpha, details = oracle.alpha_rule(s, problem)
        alpha, mixed = s.mix(alpha)  # alpha = 0 where the FoBG batch is not finite (trajopt.oracles._mixing)
        out[f"alpha_{name}"] = jnp.mean(alpha) if jnp.ndim(alpha) else jnp.asarray(alpha, b.value.dtype)
        out[f"norm_{name}"] = jnp.linalg.norm(mixed)
        out[f"var_{name}"] = jnp.sum(jnp.where(s.first_order_usable(alpha), alpha**2 * v1, 0.0) + (1 - alpha) ** 2 * v0)
        for k, v in details.items():
            if k not in ("var_first", "var_zero"):  # the batches' own variances, already above
                out[f"{name}_{k}"] = v
    return out


def estimator_statistics(key: Array, problem: Problem, U: Array, repeats: int, **config) -> dict[str, Array]:
    """`batch_statistics` for ``repeats`` independent batch pairs (keys ``fold_in(key, r)``), one ``vmap``.

    ``config``: the keyword arguments of `batch_statistics` (samples, sigma, rules). Every field
    gets a leading [R] axis. Not jitted here: wrap the call in ``jax.jit`` (with U as an argument) to compile once.
    """
    if repeats < 2:
        raise ValueError(f"repeats must be >= 2 (a confidence interval needs a spread), not {repeats}")
    keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(repeats))
    return jax.vmap(lambda k: batch_statistics(k, problem, U, **config))(keys)


def mean_interval(values, lower: float = -math.inf) -> dict[str, float]:
    """Mean over repeats with a 95% normal confidence interval of the mean (NaN-aware).

    ``half`` is the half-width 1.96 sd / sqrt(R); ``low`` is floored at ``lower`` (0 for a non-negative
    quantity: with heavy tails the normal interval can otherwise reach below it).
    """
    v = np.asarray(values, float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "half": math.nan}
    mean = float(v.mean())
    half = Z95 * float(v.std(ddof=1)) / math.sqrt(v.size) if v.size > 1 else math.nan
    return {"mean": mean, "low": max(mean - half, lower), "high": mean + half, "half": half}


NOT_MEANS = ("value", "step_var_first", "step_var_zero")  # every other field is summarised as a mean with an interval
PASS_SUFFIX = "_pass"  # a rule's boolean test outcome (ddcg_pass): summarised as the share of failed tests
SIGNED_SUFFIXES = ("excess_gap", "_rhs")  # quantities that may be negative


def summarise(stats: Mapping[str, Array], *, samples: int, sigma: float) -> dict:
    """Means with 95% intervals over the repeats, plus derived numbers; a JSON-ready dict of floats.

    Keys: value, repeats, samples, sigma; for every other scalar field of `batch_statistics`: a {mean, low,
    high, half} dict (see `mean_interval`; low floored at 0 except for signed quantities); for each rule test
    NAME_pass: NAME_switch_share (share of repeats where the test failed: ddcg_switch_share, the share where DDCG
    chose the ZoBG); variance_ratio
    (mean var_first / mean var_zero), bias_z (excess_gap mean over its standard error), step_var_first and
    step_var_zero ({mean, q25, q75} lists over the T steps: the mean and the interquartile range over repeats).
    """
    s = {k: np.asarray(v) for k, v in stats.items()}
    R = s["value"].shape[0]
    out: dict = {"value": float(s["value"][0]), "repeats": int(R), "samples": int(samples), "sigma": float(sigma)}
    for k, v in s.items():
        if k in NOT_MEANS:
            continue
        if k.endswith(PASS_SUFFIX):
            out[k[: -len(PASS_SUFFIX)] + "_switch_share"] = float(np.mean(~v.astype(bool)))
            continue
        out[k] = mean_interval(v, lower=-math.inf if k.endswith(SIGNED_SUFFIXES) else 0.0)
    v1, v0 = out["var_first"]["mean"], out["var_zero"]["mean"]
    out["variance_ratio"] = v1 / v0 if v0 > 0 else (math.inf if v1 > 0 else math.nan)
    ex = s["excess_gap"]
    se = float(ex.std(ddof=1)) / math.sqrt(R)
    out["bias_z"] = float(ex.mean()) / se if se > 0 else (0.0 if ex.mean() == 0 else math.copysign(math.inf, ex.mean()))
    for k in ("step_var_first", "step_var_zero"):
        arr = s[k]  # [R, T]
        out[k] = {"mean": arr.mean(axis=0).tolist(), "q25": np.percentile(arr, 25, axis=0).tolist(),
                  "q75": np.percentile(arr, 75, axis=0).tolist()}
    return out


BIAS_Z = 3.0          # excess gap this many standard errors above 0: the FoBG's bias shows
SWITCH_SHARE = 0.5    # DDCG switching to the ZoBG in at least this share of batches: the test flags bias
PLATEAU_SHARE = 0.5   # at least this share of FoBG samples exactly 0: U sits on a flat branch
SUSPECT_SWITCH = 0.1  # DDCG switching this often (twice its nominal 5% false-alarm rate) ...
SUSPECT_Z = 2.0       # ... or an excess gap this many standard errors above 0: a discontinuity may be near
STIFF_RATIO = 1.0     # FoBG per-sample variance above the ZoBG's: inverse-variance weighting leans zeroth order
SMOOTH_RATIO = 0.1    # FoBG variance below a tenth of the ZoBG's: alpha_ivw > 0.9


def _ratio_text(r: float) -> str:
    if not math.isfinite(r):
        return "∞" if r > 0 else "undefined"
    if 10 <= r < 1e6:
        return f"{r:.0f}"
    return f"{r:.2g}"


def decide(summary: dict) -> tuple[str, str]:
    """(kind, one line) saying what the statistics mean, by the first rule that applies (thresholds: the module
    constants); kind is "biased", "plateau", "suspect", "stiff", "smooth" or "mixed". Every verdict the CLI
    prints comes from this one decision, so its lines cannot disagree:

    1. "first-order gradient looks biased here: DDCG switches to zeroth order ..." when DDCG's test fails in
       at least SWITCH_SHARE of the batches, or the excess gap is BIAS_Z standard errors above 0;
    2. "plateau: ..." when at least PLATEAU_SHARE of the FoBG samples are exactly 0;
    3. "near a discontinuity: ..." when DDCG switches in at least SUSPECT_SWITCH of the batches or the excess
       gap is SUSPECT_Z standard errors above 0 (suggestive, not conclusive: more repeats decide);
    4. "stiff: FoBG variance R× ZoBG's ..." when the FoBG's per-sample variance exceeds the ZoBG's;
    5. "smooth: first order is reliable ..." when it is below SMOOTH_RATIO of it; "mixed: ..." in between.
    """
    ratio = summary["variance_ratio"]
    a_ivw = summary["alpha_ivw"]["mean"] if "alpha_ivw" in summary else 1.0 / (1.0 + ratio) if ratio == ratio else math.nan
    zero = summary["zero_share"]["mean"]
    switch = summary.get("ddcg_switch_share", 0.0)
    z = summary["bias_z"]
    zeros = f"{zero:.0%} of first-order samples are exactly 0"
    plateau = f"; {zeros} (on a flat branch)" if zero > 0 else ""
    if switch >= SWITCH_SHARE:
        return "biased", (f"first-order gradient looks biased here: DDCG switches to zeroth order in {switch:.0%} of batches "
                f"(the function values vary more than the FoBG's variance allows){plateau}")
    if z >= BIAS_Z:
        return "biased", (f"first-order gradient looks biased here: FoBG and ZoBG means differ beyond their noise "
                f"(excess gap {z:.1f} standard errors above 0), though DDCG switches in only {switch:.0%} of "
                f"batches{plateau}")
    if zero >= PLATEAU_SHARE:
        return "plateau", (f"plateau: {zeros} (a flat branch); the first-order gradient carries no information here, only "
                f"samples that reach beyond the flat region do (ZoBG; DDCG switches in {switch:.0%} of batches)")
    if switch >= SUSPECT_SWITCH or z >= SUSPECT_Z:
        return "suspect", (f"near a discontinuity: DDCG switches to zeroth order in {switch:.0%} of batches and the excess "
                f"gap is {z:.1f} standard errors above 0; the first-order gradient may be biased here (more "
                f"--repeats decide){plateau}")
    if ratio > STIFF_RATIO:
        return "stiff", (f"stiff: FoBG variance {_ratio_text(ratio)}× ZoBG's; inverse-variance weighting leans zeroth order "
                f"(α ≈ {a_ivw:.2f}){plateau}")
    if ratio < SMOOTH_RATIO:
        return "smooth", f"smooth: first order is reliable (FoBG variance {_ratio_text(ratio)}× ZoBG's, α ≈ {a_ivw:.2f}){plateau}"
    return "mixed", (f"mixed: FoBG variance {_ratio_text(ratio)}× ZoBG's; the alpha-order estimators mix both "
            f"(α ≈ {a_ivw:.2f}){plateau}")


def reading(summary: dict) -> str:
    """The one-line reading of `decide`."""
    return decide(summary)[1]


def median_seed_index(final_costs: Sequence[float]) -> int:
    """Index of the seed whose final cost is the median (the lower middle for an even count; non-finite last)."""
    c = np.asarray([np.inf if (v is None or not np.isfinite(v)) else v for v in final_costs], float)
    if c.size == 0:
        raise ValueError("no seeds")
    order = np.argsort(c, kind="stable")
    finite = int(np.isfinite(c).sum())
    if finite == 0:
        return int(order[0])
    return int(order[(finite - 1) // 2])


# ------------------------------------------------------------------------------------------ gradcheck


class GradCheck(NamedTuple):
    """Raw numbers of a gradient check: K directions, S steps (descending).

    value: f(U). slope: [K] autodiff grad f(U) . v_k. steps: [S]. f_plus, f_minus: [S, K] f(U +- h_s v_k).
    """

    value: Array
    slope: Array
    steps: Array
    f_plus: Array
    f_minus: Array


def gradient_check(key: Array, problem: Problem, U: Array, directions: int, steps: Sequence[float]) -> GradCheck:
    """Evaluate f along K random unit directions (Gaussian, normalised; drawn from ``key``) at the given steps.

    Costs 1 rollout + 1 backward pass + 2 K S rollouts. Steps are used as given, sorted in descending order.
    """
    steps = sorted((float(h) for h in steps), reverse=True)
    d = problem.dimension
    v = jax.random.normal(key, (directions, d), dtype=U.dtype)
    v = v / jnp.linalg.norm(v, axis=1, keepdims=True)
    value, grad = jax.value_and_grad(problem.objective)(U)
    slope = v @ grad.reshape(-1)
    hs = jnp.asarray(steps, dtype=U.dtype)
    offsets = (hs[:, None, None] * v[None]).reshape(-1, *U.shape)  # [S*K, T, m]
    f = jax.vmap(problem.objective)
    f_plus = f(U + offsets).reshape(len(steps), directions)
    f_minus = f(U - offsets).reshape(len(steps), directions)
    return GradCheck(value=value, slope=slope, steps=hs, f_plus=f_plus, f_minus=f_minus)


AGREE_RTOL = 1e-6     # relative agreement that counts as "autodiff and finite differences agree"
ROUNDING_ULPS = 64.0  # generous error of one evaluation of f, in units of eps * |f| (long rollouts accumulate)
JUMP_ORDER = 0.5      # |f(U+hv) - f(U-hv)| shrinking slower than h^0.5 between the two smallest steps: a jump
STIFF_REL = 0.01      # a consistent direction whose largest step is off by more than this: f bends sharply within h
RESOLVED_REL = 1.0    # a step keeps digits of the slope when the quotient's rounding error is below this share of |slope|


def _direction_label(slope, steps, f_plus, f_minus, value, eps) -> dict:
    """Classify one direction: consistent / discontinuity / non_smooth / rounding / inconclusive / unexplained (see
    gradcheck_summary)."""
    S = len(steps)
    delta = f_plus - f_minus
    fd = delta / (2 * steps)
    err = np.abs(fd - slope)
    scale = np.maximum(np.abs(slope), np.abs(fd))
    rel = np.where(scale > 0, err / np.where(scale > 0, scale, 1.0), 0.0)
    f_scale = np.maximum.reduce([np.abs(f_plus), np.abs(f_minus), np.full(S, abs(value))])
    rounding = ROUNDING_ULPS * eps * f_scale / steps  # error of the quotient from rounding in f
    # Within the rounding error counts as agreement only where that error is below the slope itself (the quotient
    # keeps digits of it): where f is so large that rounding swamps the slope's change (fd = 0 against a slope of
    # 1e16 at f = 4.5e34, relative error 1), the two "agree" only because the quotient says nothing.
    resolved = rounding < RESOLVED_REL * abs(slope)
    agree = (rel <= AGREE_RTOL) | ((err <= rounding) & resolved)
    curvature = (f_plus + f_minus - 2 * value) / steps**2
    with np.errstate(divide="ignore", invalid="ignore"):
        stiffness = np.where(np.abs(curvature) > 0, np.abs(curvature) * steps / abs(slope), 0.0)
    out = {"rel_error": rel.tolist(), "agree": agree.tolist(), "fd": fd.tolist(), "slope": float(slope),
           "stiffness": stiffness.tolist()}
    if agree.any():
        out["label"] = "consistent"
        out["resolved_at"] = float(steps[np.argmax(agree)])  # the largest step that agrees
        return out
    if np.all((err <= rounding) & (rounding >= abs(slope))):  # every step: rounding noise as large as the slope
        out["label"] = "inconclusive"
        return out
    last = S - 1
    jump = False
    if S >= 2 and abs(delta[last]) > 100 * ROUNDING_ULPS * eps * f_scale[last]:
        order = math.log(max(abs(delta[last - 1]), 1e-300) / abs(delta[last])) / math.log(steps[last - 1] / steps[last])
        jump = order < JUMP_ORDER and abs(delta[last]) > 10 * abs(2 * steps[last] * slope)
    if jump:
        out["label"] = "discontinuity"
        out["jump"] = float(delta[last])
    elif err[last] <= 1e3 * rounding[last]:
        out["label"] = "rounding"
    elif abs(curvature[last]) * steps[last] >= 0.5 * err[last]:
        out["label"] = "non_smooth"
        out["slope_change"] = float(abs(curvature[last]) * steps[last])
    else:
        out["label"] = "unexplained"
    return out


def gradcheck_summary(check: GradCheck) -> dict:
    """Relative errors per step and a verdict (a JSON-ready dict).

    Per direction k and step h: fd = (f(U + h v) - f(U - h v)) / 2h, relative error |fd - slope| / max(|slope|, |fd|)
    (0 when both are 0). A direction is

    * ``consistent`` if some step agrees: relative error <= AGREE_RTOL, or an error within the rounding error
      of the quotient (ROUNDING_ULPS * eps * |f| / h) where that rounding error is below RESOLVED_REL x |slope|
      (the quotient keeps digits of the slope; a relative error of 1, fd = 0 against a non-zero slope, never
      agrees). ``resolved_at`` is the largest agreeing step; larger steps then disagree only because f bends (or
      jumps) within h of U: truncation, not a bug.
    * ``inconclusive`` if at every step the error is within the rounding error and that rounding error is at
      least |slope|: central differences lost every digit (f is so large against the change the slope makes
      within h that f(U + h v) and f(U - h v) round alike), so they neither confirm nor refute the slope.
    * ``discontinuity`` if no step agrees and f(U + h v) - f(U - h v) does not shrink with h between the two
      smallest steps (order below JUMP_ORDER, against 1 for a smooth f), by more than the slope explains: f
      jumps within the smallest h of U along v. Autodiff returns the one-sided slope, correct for f but blind
      to the jump (which is what the smoothed objective F feels).
    * ``non_smooth`` if no step agrees and the slope changes within the smallest step by at least half the
      error (second difference |f''| h >= err / 2): a kink (the two one-sided slopes differ, and the central
      difference averages them) or stiffness not yet resolved at that step.
    * ``rounding`` if the error at the smallest step is within 1000x the rounding estimate (steps too small
      for the precision, e.g. float32).
    * ``unexplained`` otherwise: autodiff and finite differences disagree at every step with no jump, no
      curvature and no rounding to blame. That is what a wrong gradient looks like.

    ``verdict`` is one of "consistent", "stiff" (every direction consistent, but some agree only below the
    largest step, which is off by at least STIFF_REL there), "discontinuity", "non_smooth", "rounding",
    "inconclusive" or "bug" (any unexplained direction wins, then discontinuity, non_smooth, rounding,
    inconclusive), with a one-line ``message``. ``median_stiffness`` is the median of |f''| h / |f'| per step
    (the relative change of the slope within h; the second difference stands in for f'').
    """
    steps = np.asarray(check.steps, float)
    slope = np.asarray(check.slope, float)
    f_plus, f_minus = np.asarray(check.f_plus, float), np.asarray(check.f_minus, float)
    value = float(check.value)
    eps = float(np.finfo(np.asarray(check.value).dtype).eps)
    K = slope.shape[0]
    dirs = [_direction_label(slope[k], steps, f_plus[:, k], f_minus[:, k], value, eps) for k in range(K)]
    rel = np.array([d["rel_error"] for d in dirs])  # [K, S]
    per_step = []
    for s, h in enumerate(steps):
        per_step.append({"step": float(h), "median_rel_error": float(np.median(rel[:, s])),
                         "max_rel_error": float(np.max(rel[:, s])),
                         "agree_share": float(np.mean([d["agree"][s] for d in dirs]))})
    counts = {lab: sum(d["label"] == lab for d in dirs) for lab in
              ("consistent", "discontinuity", "non_smooth", "rounding", "inconclusive", "unexplained")}
    med = np.median(rel, axis=0)
    orders = []
    for s in range(len(steps) - 1):
        if med[s] > 0 and med[s + 1] > 0:
            orders.append(math.log(med[s] / med[s + 1]) / math.log(steps[s] / steps[s + 1]))
        else:
            orders.append(math.nan)
    stiffness = np.array([d["stiffness"] for d in dirs])  # [K, S]
    stiff_dirs = [k for k, d in enumerate(dirs)
                  if d["label"] == "consistent" and d["resolved_at"] < steps[0] and rel[k, 0] >= STIFF_REL]
    errors_text = " / ".join(f"{m:.2g}" for m in med) + " at h = " + " / ".join(f"{h:g}" for h in steps)
    shrink = ""
    if len(steps) > 1 and med[0] > med[1] > 0:
        shrink = f"; shrinking as h^{orders[0]:.1f}" + (" (O(h²): smooth)" if orders[0] > 1.5 else "")
    elif len(steps) > 1 and med[-1] > med[0]:
        shrink = "; smaller steps only lose digits to rounding (f is close to quadratic within the largest step)"
    if counts["unexplained"]:
        verdict = "bug"
        message = (f"disagreement in {counts['unexplained']}/{K} directions that no jump, curvature or rounding "
                   f"explains (median relative error {errors_text}): check the gradient")
    elif counts["discontinuity"]:
        verdict = "discontinuity"
        message = (f"discontinuity: f jumps within h = {steps[-1]:g} of U along {counts['discontinuity']}/{K} "
                   f"directions (the difference does not shrink with h); autodiff gives the one-sided slope, "
                   f"correct for f but blind to the jump the smoothed cost feels: not a bug")
    elif counts["non_smooth"]:
        verdict = "non_smooth"
        message = (f"non-smooth or stiff: along {counts['non_smooth']}/{K} directions the slope changes within "
                   f"h = {steps[-1]:g} by as much as the disagreement (a kink or an unresolved stiff contact; the "
                   f"central difference averages across it): not a bug")
    elif counts["rounding"]:
        verdict = "rounding"
        message = (f"rounding: in {counts['rounding']}/{K} directions the steps are too small for the precision "
                   f"(median relative error {errors_text}); try larger steps")
    elif counts["inconclusive"]:
        verdict = "inconclusive"
        message = (f"inconclusive: central differences lost every digit at these steps in {counts['inconclusive']}/{K} "
                   f"directions (f(U) = {value:.3g} rounds away the change the slope makes within h; median relative "
                   f"error {errors_text}): they neither confirm nor refute the gradient")
    elif stiff_dirs:
        verdict = "stiff"
        message = (f"consistent but stiff: autodiff matches central differences in all {K} directions, but in "
                   f"{len(stiff_dirs)} only below h = {steps[0]:g}, where the difference is off by more than "
                   f"{STIFF_REL:.0%}: f bends sharply (or has a kink or jump) within that step (median relative error "
                   f"{errors_text}): not a bug")
    else:
        verdict = "consistent"
        message = (f"consistent: autodiff matches central differences in all {K} directions (median relative "
                   f"error {errors_text}{shrink})")
    return {"value": value, "directions": K, "steps": steps.tolist(), "per_step": per_step,
            "observed_order": orders, "median_stiffness": np.median(stiffness, axis=0).tolist(), "counts": counts,
            "verdict": verdict, "message": message, "per_direction": dirs}
