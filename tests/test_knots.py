"""The samplers on knots (`trajopt.methods._sampling`), pinned by hand in NumPy: MPPI, predictive sampling, DIAL and
CEM sample K knot values and interpolate them to the T steps (zero-order hold, linear, natural cubic spline).

* the knot times of a few (T, K), written out by hand, and ``init`` reading U0 at them;
* one step of each sampler on K < T knots computed by hand (noise [N, K, m] from the step's key, each candidate's
  controls the hand interpolation of its knots, clipped to the box): the new knots and the new control sequence,
  which is the hand interpolation of the knots (SciPy's natural cubic spline, ``np.interp``, a hold by hand);
* K = T (given, and by the default rule on a horizon <= 20) is per-step sampling: the same hand step with no
  interpolation, and the controls are the knots bit for bit; the default rule on T > 20 takes 20 knots;
* the refusals: knots < 0 or not an integer, an unknown interpolation or temperature mode, a temperature <= 0 (at
  construction), knots > T (by ``check(problem)``, and by the CLI: one exit-2 line naming ``variants.NAME.knots``,
  no run folder).
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.interpolate import CubicSpline
from typer.testing import CliRunner

from trajopt.checks import FieldError
from trajopt.cli import app
from trajopt.methods import CEM, DIAL, MPPI, PredictiveSampling
from trajopt.problem import Problem

T, M = 10, 2
rng = np.random.default_rng(7)
C = rng.normal(size=(T, M)) * 0.5  # the minimiser of the separable part
WT = np.linspace(0.5, 2.0, T)
U0 = np.stack([np.linspace(-0.4, 0.6, T), 0.3 * np.sin(np.arange(T))], axis=1)  # not a spline of any knots
KEY = jax.random.PRNGKey(11)
SAMPLERS = {"mppi": MPPI, "ps": PredictiveSampling, "dial": DIAL, "cem": CEM}


def f_np(U: np.ndarray) -> np.ndarray:
    """f(U) = sum_t w_t |u_t - c_t|^2 + 0.3 <u_0, u_1> for U [..., T', M] (T' = T) -> [...]."""
    return np.sum(WT[:, None] * (U - C) ** 2, axis=(-2, -1)) + 0.3 * np.sum(U[..., 0, :] * U[..., 1, :], axis=-1)


def make_problem(U0_=U0) -> Problem:
    w, c = jnp.asarray(WT), jnp.asarray(C)

    def objective(U):
        return jnp.sum(w[:, None] * (U - c) ** 2) + 0.3 * jnp.sum(U[0] * U[1])

    return Problem("knots_quadratic", jnp.asarray(U0_), objective)


def hand_interp(y: np.ndarray, tk, T_: int, kind: str) -> np.ndarray:
    """The controls [..., T_, M] at steps 0..T_-1 of knot values y [..., K, M] at the knot times tk, by hand."""
    t = np.arange(T_, dtype=float)
    tk = np.asarray(tk, dtype=float)
    if kind == "zero":  # hold the last knot at or before t
        j = np.array([max(i for i in range(len(tk)) if tk[i] <= s) for s in t])
        return y[..., j, :]
    if kind == "linear":
        flat = y.reshape(-1, *y.shape[-2:])
        out = np.stack([np.stack([np.interp(t, tk, f[:, k]) for k in range(f.shape[-1])], -1) for f in flat])
        return out.reshape(*y.shape[:-2], T_, y.shape[-1])
    return CubicSpline(tk, y, axis=-2, bc_type="natural")(t)  # natural: second derivative 0 at both ends


def noise(key, n: int, K: int) -> np.ndarray:
    """eps_i ~ N(0, I) on the knots: [n, K, M], float32 from the step's key, cast (the samplers' documented draw)."""
    return np.asarray(jax.random.normal(key, (n, K, M), dtype=jnp.float32)).astype(np.float64)


def softmax(costs, lam):
    w = np.exp(-(costs - costs.min()) / lam)
    return w / w.sum()


def hand_step(name, method, y, key, controls, f, sigma=None, lo=-np.inf, hi=np.inf):
    """One step of ``name`` from knot values y [K, M] (the documented update): ``controls`` maps knots [..., K, M]
    to the controls the candidates are scored on (the clipped spline; the identity for K = T), ``f`` the cost.
    Returns (new knots, new controls, new sigma or None)."""
    K = y.shape[0]
    eps = noise(key, getattr(method, "samples", getattr(method, "population", 0)), K)
    if name in ("mppi", "dial"):
        if name == "dial":  # iteration 0 (the first step): sigma(0, h) = sigma0 exp(-(H - h) / (beta2 H)), H = K
            s = np.array([method.sigma * math.exp(-(K - h) / (method.beta2 * K)) for h in range(K)])[:, None]
        else:
            s = method.sigma
        Y = np.clip(y + s * eps, lo, hi)
        c = f(controls(Y))
        w = softmax(c, method.temperature * c.std())  # relative temperature (MPPI's default; DIAL's rule)
        y_new = np.clip(np.tensordot(w, Y, axes=1), lo, hi)
        return y_new, controls(y_new), None
    if name == "ps":
        Y = np.clip(y + method.sigma * eps, lo, hi)
        cand_y = np.concatenate([y[None], Y])
        cand_u = np.concatenate([controls(y)[None], controls(Y)])
        best = int(np.argmin(f(cand_u)))  # the incumbent first: it wins ties
        return cand_y[best], cand_u[best], None
    Y = np.clip(y + sigma * eps, lo, hi)  # cem
    elite = Y[np.argsort(f(controls(Y)))[:method.elites]]
    mu = np.clip(method.alpha_mu * y + (1 - method.alpha_mu) * elite.mean(0), lo, hi)
    sig = np.maximum(method.alpha_sigma * sigma + (1 - method.alpha_sigma) * elite.std(0), method.sigma_min)
    return mu, controls(mu), sig


def build(name, **kw):
    small = {"mppi": dict(samples=12, sigma=0.4, temperature=0.5), "ps": dict(samples=12, sigma=0.4),
             "dial": dict(samples=12, sigma=0.5, temperature=0.3, beta2=2.0),
             "cem": dict(population=12, elite_fraction=0.25, alpha_mu=0.3, alpha_sigma=0.4, sigma_init=0.5)}[name]
    return SAMPLERS[name](**small, **kw)


def test_knot_times_and_init_read_U0_there():
    """The knot times, written out by hand: T = 10 on 4 knots is 0, 3, 6, 9; on 3 knots 0, 4.5 -> 5, 9 (half up);
    on 1 knot the start; on T knots every step; init's knots are U0 at those times. Catches: linspace truncated
    (0, 4, 9), the last knot off the end (T), knots read off the wrong rows."""
    problem = make_problem()
    for K, times in ((4, [0, 3, 6, 9]), (3, [0, 5, 9]), (1, [0]), (2, [0, 9]), (T, list(range(T)))):
        state = MPPI(knots=K).init(KEY, problem, problem.U0)
        np.testing.assert_array_equal(state.knots, U0[times])
        assert state.U.shape == (T, M)


# (method, interpolation, K, box): each interpolation, each sampler on K < T, one case with a box a cubic overshoots
CASES = [("mppi", "zero", 4, None), ("mppi", "linear", 4, None), ("mppi", "cubic", 4, (-0.45, 0.5)),
         ("ps", "linear", 3, None), ("dial", "cubic", 4, None), ("cem", "zero", 3, (-0.45, 0.5)),
         ("cem", "cubic", 4, None)]
KNOT_TIMES = {3: [0, 5, 9], 4: [0, 3, 6, 9]}


@pytest.mark.parametrize("name, interpolation, K, box", CASES)
def test_one_step_on_knots_by_hand(name, interpolation, K, box):
    """One step on K < T knots equals the hand step (noise [N, K, M], each candidate's controls the hand spline of
    its clipped knots, clipped again), and the new controls are the hand spline of the new knots. Catches: noise
    drawn per step instead of per knot, candidates scored on their knots' values instead of the interpolation,
    the hold or spline off by a knot, the natural end condition replaced (clamped, not-a-knot), the controls not
    clipped after a spline's overshoot, a knot's value read off U instead of kept."""
    lo, hi = box or (-np.inf, np.inf)
    method = build(name, knots=K, interpolation=interpolation, u_min=lo, u_max=hi)
    problem = make_problem()
    state = method.init(KEY, problem, problem.U0)
    tk = KNOT_TIMES[K]
    y0 = np.clip(U0, lo, hi)[tk]
    interp = lambda Y: hand_interp(Y, tk, T, interpolation)
    np.testing.assert_allclose(state.knots, y0, rtol=0, atol=0)
    np.testing.assert_allclose(state.U, np.clip(interp(y0), lo, hi), rtol=1e-12, atol=1e-14)
    key = jax.random.fold_in(KEY, 0)
    new, info = jax.jit(lambda k, s: method.step(k, problem, s))(key, state)
    sigma0 = np.full_like(y0, 0.5) if name == "cem" else None
    y1, U1, sig1 = hand_step(name, method, y0, key, lambda Y: np.clip(interp(Y), lo, hi), f_np, sigma0, lo, hi)
    np.testing.assert_allclose(new.knots, y1, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(new.U, U1, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(new.U, np.clip(interp(np.asarray(new.knots)), lo, hi), rtol=1e-12, atol=1e-14)
    if sig1 is not None:
        np.testing.assert_allclose(new.sigma, sig1, rtol=1e-12, atol=1e-14)
    if box is not None and interpolation == "cubic":  # the clip after the spline is exercised: some candidates'
        Y = np.clip(y0 + method.sigma * noise(key, method.samples, K), lo, hi)  # splines overshoot the box
        assert np.any((interp(Y) > hi + 1e-6) | (interp(Y) < lo - 1e-6))
    assert not np.allclose(new.U, state.U)  # the step moved


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_knots_equal_to_the_horizon_is_per_step_sampling(name):
    """K = T samples every step: a hand per-step step (noise [N, T, M], no interpolation) on T = 25 > 20 steps with
    knots = 25 given; the controls are the knots bit for bit (no interpolation, no second clip). The default rule
    takes min(20, T) knots: 20 on T = 25. Catches: the knot times for K = T not every step, a spline applied when
    K = T (rounding in W y), the default rule as 20 knots on every horizon or as T."""
    T25 = 25
    U0_25 = np.linspace(-0.3, 0.4, T25)[:, None] * np.ones(M)
    w = jnp.linspace(0.5, 2.0, T25)

    problem = Problem("long", jnp.asarray(U0_25), lambda U: jnp.sum(w[:, None] * (U - 0.2) ** 2))
    f = lambda U: np.sum(np.asarray(w)[:, None] * (U - 0.2) ** 2, axis=(-2, -1))  # noqa: E731
    method = build(name, knots=T25, u_min=-0.35, u_max=0.5)
    state = method.init(KEY, problem, problem.U0)
    key = jax.random.fold_in(KEY, 0)
    new, _ = jax.jit(lambda k, s: method.step(k, problem, s))(key, state)
    np.testing.assert_array_equal(new.U, new.knots)
    y0 = np.clip(U0_25, -0.35, 0.5)
    sigma0 = np.full_like(y0, 0.5) if name == "cem" else None
    y1, U1, sig1 = hand_step(name, method, y0, key, lambda Y: Y, f, sigma0, -0.35, 0.5)
    np.testing.assert_allclose(new.U, U1, rtol=1e-12, atol=1e-14)
    if sig1 is not None:
        np.testing.assert_allclose(new.sigma, sig1, rtol=1e-12, atol=1e-14)
    assert SAMPLERS[name]().init(KEY, problem, problem.U0).knots.shape == (20, M)  # default: min(20, 25)
    assert SAMPLERS[name]().init(KEY, make_problem(), jnp.asarray(U0)).knots.shape == (T, M)  # min(20, 10) = T


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("field, value, words", [
    ("knots", -1, "knots: found -1, allowed: an integer in 1..T"), ("knots", 2.5, "knots: found 2.5"),
    ("knots", True, "knots: found True"), ("interpolation", "quadratic", "interpolation: found 'quadratic', allowed: "
                                                                         "one of 'zero', 'linear', 'cubic'")])
def test_bad_knot_fields_are_refused_at_construction(name, field, value, words):
    """knots a non-negative integer (not a bool), interpolation one of three: a FieldError naming the key."""
    with pytest.raises(FieldError) as e:
        SAMPLERS[name](**{field: value})
    assert words in str(e.value) and e.value.field == field


@pytest.mark.parametrize("cls, field, value, words", [
    (MPPI, "temperature", 0.0, "temperature: found 0.0, allowed: a number > 0"),
    (MPPI, "temperature", -0.5, "temperature: found -0.5, allowed: a number > 0"),
    (DIAL, "temperature", 0.0, "temperature: found 0.0, allowed: a number > 0"),
    (MPPI, "temperature_mode", "relatif", "temperature_mode: found 'relatif', allowed: one of 'relative', 'absolute'")])
def test_bad_temperatures_are_refused_at_construction(cls, field, value, words):
    with pytest.raises(FieldError) as e:
        cls(**{field: value})
    assert words in str(e.value)


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_more_knots_than_steps_is_refused_by_check(name):
    """knots = T fits, T + 1 does not: check(problem) (and so init) raises a FieldError naming knots and the
    horizon; the default 0 fits any horizon. Catches: the bound off by one, the check skipped by init."""
    problem = make_problem()
    SAMPLERS[name](knots=T).check(problem)
    SAMPLERS[name]().check(problem)
    for call in (lambda m: m.check(problem), lambda m: m.init(KEY, problem, problem.U0)):
        with pytest.raises(FieldError) as e:
            call(SAMPLERS[name](knots=T + 1))
        assert e.value.field == "knots" and f"found {T + 1}, allowed: an integer in 1..{T}" in str(e.value)


SOFT = str(Path(__file__).resolve().parent.parent / "problems" / "pushing_soft.toml")


@pytest.mark.parametrize("method, key, value, words", [
    ("mppi", "knots", "9", "variants.m.knots: found 9, allowed: an integer in 1..8 for mppi (pushing_soft's decision "
                          "has 8 steps)"),
    ("cem", "knots", "-1", "variants.m.knots: found -1, allowed"),
    ("dial", "interpolation", '"quad"', "variants.m.interpolation: found 'quad', allowed: one of 'zero', 'linear'"),
    ("mppi", "temperature_mode", '"rel"', "variants.m.temperature_mode: found 'rel', allowed: one of 'relative'"),
    ("ps", "knots", "9", "variants.m.knots: found 9, allowed: an integer in 1..8 for ps")])
def test_the_cli_refuses_bad_knots_with_one_line_naming_the_key(tmp_path, method, key, value, words):
    """trajopt compare with a variant whose knots exceed the horizon (8 steps) or whose knot fields are bad: exit 2,
    one line `FILE: variants.m.KEY: found X, allowed: Y`, no run folder (refused before anything compiles)."""
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["compare", SOFT, "--iterations", "2", "--seeds", "1", "--set", "task.horizon=8",
                                      "--set", f'variants.m.method="{method}"', "--set", f"variants.m.{key}={value}",
                                      "--set", 'solve.variants=["m"]', "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    line = " ".join(result.stderr.split())
    assert words in line and SOFT in line and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
