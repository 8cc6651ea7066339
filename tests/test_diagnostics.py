"""trajopt.diagnostics and the `diagnose` / `gradcheck` verbs: the statistics equal what the oracles compute, the
bias and variance readings on problems whose answer is known, the gradient-check verdicts on smooth, kinked,
discontinuous, stiff and wrong gradients, and the CLI's exit codes, JSON and figure.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm
from typer.testing import CliRunner

from trajopt.cli import app
from trajopt.diagnostics import (
    batch_statistics,
    estimator_statistics,
    gradcheck_summary,
    gradient_check,
    mean_interval,
    median_seed_index,
    reading,
    summarise,
)
from trajopt.oracles import DDCG, IVW, AoBG, Stepwise
from trajopt.problem import Problem
from trajopt.systems.heaviside import Heaviside

Z = 5.0
PROBLEMS = Path(__file__).resolve().parent.parent / "problems"
SOFT = str(PROBLEMS / "pushing_soft.toml")
SMALL = ["--set", "task.horizon=30"]


def quadratic_problem(d=4, seed=0):
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(d, d))
    A = jnp.asarray(M @ M.T / d + np.eye(d))
    b = jnp.asarray(rng.normal(size=d))
    U = jnp.asarray(rng.normal(size=(d, 1)))
    return Problem("quadratic", U, lambda U: 0.5 * U.reshape(-1) @ A @ U.reshape(-1) + b @ U.reshape(-1))


def heaviside_problem(theta=0.05):
    return Problem("heaviside", jnp.full((1, 1), theta), lambda U: Heaviside(1).cost(U[0]))


RULES = {"aobg": AoBG(samples=10, gamma=5.0, L=1.0), "ivw": IVW(samples=10), "ddcg": DDCG(samples=10),
         "stepwise": Stepwise(samples=10)}
CONFIG = dict(samples=10, sigma=0.1, rules=RULES)


# ---------------------------------------------------------------------------------------------------------
# estimator statistics


def test_batch_statistics_alphas_are_the_oracles_alphas():
    # Same key, N and sigma: the rules applied to the diagnostic batches give exactly the oracles' weights.
    problem = quadratic_problem()
    # each compiled once for the three keys (eagerly, every operation compiles on its own)
    statistics = jax.jit(lambda key: batch_statistics(key, problem, problem.U0, **CONFIG))
    estimates = jax.jit(lambda key: {name: o.estimate(key, problem, problem.U0) for name, o in RULES.items()})
    for key in jax.random.split(jax.random.PRNGKey(0), 3):
        st, by_rule = statistics(key), estimates(key)
        for name in RULES:
            grad, info = by_rule[name]
            assert float(st[f"alpha_{name}"]) == pytest.approx(float(info.alpha), rel=1e-12), name
            assert float(st[f"norm_{name}"]) == pytest.approx(float(jnp.linalg.norm(grad)), rel=1e-12), name
        _, info = by_rule["aobg"]
        for f, mine in (("var_first", "var_first"), ("var_zero", "var_zero"), ("bias_gap", "bias_gap"),
                        ("radius", "aobg_radius")):
            assert float(st[mine]) == pytest.approx(float(getattr(info, f)), rel=1e-12), f


def test_estimator_statistics_repeats_use_fold_in_keys():
    problem = quadratic_problem()
    key = jax.random.PRNGKey(1)
    # each compiled as one program (eagerly, every operation compiles on its own)
    st = jax.jit(lambda k: estimator_statistics(k, problem, problem.U0, 4, **CONFIG))(key)
    assert st["var_first"].shape == (4,) and st["step_var_first"].shape == (4, problem.shape[0])
    one = jax.jit(lambda k: batch_statistics(k, problem, problem.U0, **CONFIG))(jax.random.fold_in(key, 2))
    assert float(st["alpha_ivw"][2]) == pytest.approx(float(one["alpha_ivw"]), rel=1e-13)
    np.testing.assert_allclose(np.asarray(st["step_var_first"]).sum(axis=1), np.asarray(st["var_first"]), rtol=1e-12)
    with pytest.raises(ValueError, match="repeats"):
        estimator_statistics(key, problem, problem.U0, 1, **CONFIG)


R = 400


def _summary(problem, **overrides):
    config = {**CONFIG, **overrides}
    st = jax.jit(lambda U: estimator_statistics(jax.random.PRNGKey(2), problem, U, R, **config))(problem.U0)
    return st, summarise(st, samples=config["samples"], sigma=config["sigma"])


def test_excess_gap_estimates_the_squared_bias():
    # Heaviside: the FoBG is 0, the ZoBG unbiased for phi(theta/sigma)/sigma, so E[B^2 - s1/N - s0/N] = grad F^2.
    theta, sigma = 0.05, 0.1
    st, s = _summary(heaviside_problem(theta))
    truth = (norm.pdf(theta / sigma) / sigma) ** 2
    ex = np.asarray(st["excess_gap"])
    assert abs(ex.mean() - truth) < Z * ex.std(ddof=1) / math.sqrt(R)
    assert s["bias_z"] > Z and s["zero_share"]["mean"] == 1.0
    # DDCG passes only when all N = 10 values are equal (every sample on one side of the step): Var[f] = 0.
    p_switch = 1 - norm.cdf(theta / sigma) ** 10 - norm.cdf(-theta / sigma) ** 10
    assert abs(s["ddcg_switch_share"] - p_switch) < Z * math.sqrt(p_switch * (1 - p_switch) / R)
    # A quadratic: both unbiased, the excess gap is 0 in expectation.
    st, s = _summary(quadratic_problem())
    ex = np.asarray(st["excess_gap"])
    assert abs(ex.mean()) < Z * ex.std(ddof=1) / math.sqrt(R)


def test_readings_on_known_problems():
    _, s = _summary(heaviside_problem())
    text = reading(s)
    assert text.startswith("first-order gradient looks biased here: DDCG switches to zeroth order") and "exactly 0 (on a flat branch)" in text
    _, s = _summary(quadratic_problem())  # smooth, N = 10: the FoBG's variance is far below the ZoBG's
    assert s["variance_ratio"] < 0.1 and reading(s).startswith("smooth: first order is reliable")

    # stiff: a steep, rapidly varying valley, FoBG variance >> ZoBG's, no bias (unbiased, continuous).
    def stiff(U):
        return jnp.sum(jnp.sin(200.0 * U) ** 2) / 200.0

    problem = Problem("stiff", jnp.full((3, 1), 0.3), stiff)
    _, s = _summary(problem)
    assert s["variance_ratio"] > 1 and reading(s).startswith("stiff: FoBG variance")


def test_reading_rules_on_synthetic_summaries():
    base = {"variance_ratio": 0.5, "alpha_ivw": {"mean": 0.66}, "zero_share": {"mean": 0.0},
            "ddcg_switch_share": 0.0, "bias_z": 0.0}
    assert reading(base).startswith("mixed: FoBG variance 0.5× ZoBG's")
    assert reading({**base, "variance_ratio": 250.0}).startswith("stiff: FoBG variance 250× ZoBG's")
    assert reading({**base, "variance_ratio": 0.01}).startswith("smooth: first order is reliable")
    assert reading({**base, "bias_z": 4.0}).startswith("first-order gradient looks biased here: FoBG and ZoBG means")
    assert reading({**base, "ddcg_switch_share": 0.6}).startswith(
        "first-order gradient looks biased here: DDCG switches to zeroth order in 60%")
    assert reading({**base, "zero_share": {"mean": 0.9}}).startswith("plateau: 90% of first-order samples")
    assert reading({**base, "ddcg_switch_share": 0.2}).startswith("near a discontinuity: DDCG switches")
    assert reading({**base, "bias_z": 2.5}).startswith("near a discontinuity")


def test_summary_intervals_and_median_seed():
    s = mean_interval([1.0, 2.0, 3.0, 4.0])
    half = 1.959963984540054 * np.std([1, 2, 3, 4], ddof=1) / 2
    assert s["mean"] == 2.5 and s["high"] == pytest.approx(2.5 + half) and s["half"] == pytest.approx(half)
    assert mean_interval([0.0, 0.0, 0.0, 100.0], lower=0.0)["low"] == 0.0
    assert median_seed_index([5.0, 1.0, 3.0]) == 2
    assert median_seed_index([5.0, 1.0, 3.0, 4.0]) == 2  # lower middle
    assert median_seed_index([None, 2.0, float("nan"), 1.0]) == 3  # non-finite seeds sort last


# ---------------------------------------------------------------------------------------------------------
# gradient check


def _check(problem, U=None, K=6, steps=(1e-2, 1e-4, 1e-6)):
    U = problem.U0 if U is None else U
    return gradcheck_summary(gradient_check(jax.random.PRNGKey(3), problem, U, K, steps))


def test_gradcheck_consistent_on_a_smooth_function_with_second_order_errors():
    problem = Problem("smooth", jnp.ones((4, 2)), lambda U: jnp.sum(jnp.sin(U) ** 3) + jnp.sum(U**4))
    s = _check(problem)
    assert s["verdict"] == "consistent" and s["counts"]["consistent"] == 6
    assert 1.7 < s["observed_order"][0] < 2.3  # central differences: O(h^2) between 1e-2 and 1e-4
    assert "O(h²)" in s["message"]


def test_gradcheck_flags_a_discontinuity_at_u():
    s = _check(heaviside_problem(0.0))  # H(0) = 1: every direction straddles the jump
    assert s["verdict"] == "discontinuity" and "not a bug" in s["message"]
    assert all(d["label"] == "discontinuity" and d["jump"] != 0 for d in s["per_direction"])


def test_gradcheck_flags_a_kink_as_non_smooth():
    problem = Problem("kink", jnp.zeros((3, 1)), lambda U: jnp.sum(jnp.abs(U)) + jnp.sum(U))
    s = _check(problem)
    assert s["verdict"] == "non_smooth" and s["counts"]["non_smooth"] == 6


def test_gradcheck_flags_stiffness_resolved_only_at_small_steps():
    problem = Problem("ramp", jnp.full((2, 1), 3e-4), lambda U: jnp.sum(jnp.tanh(U / 1e-3)))
    s = _check(problem)
    assert s["verdict"] == "stiff" and s["per_step"][0]["median_rel_error"] > 0.01
    assert s["per_step"][-1]["agree_share"] == 1.0


@jax.custom_jvp
def _wrong(x):
    return jnp.sum(jnp.sin(x))


@_wrong.defjvp
def _wrong_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return _wrong(x), jnp.sum(1.1 * jnp.cos(x) * dx)  # 10% too large


def test_gradcheck_flags_a_wrong_gradient_as_a_bug():
    s = _check(Problem("bug", jnp.ones((4, 1)), _wrong))
    assert s["verdict"] == "bug" and s["counts"]["unexplained"] == 6
    assert s["per_step"][-1]["median_rel_error"] == pytest.approx(0.1 / 1.1, rel=1e-3)


def test_gradcheck_calls_differences_that_lost_every_digit_inconclusive():
    # f = 1e30 + sum(sin U): the slope (order 1) is right, but f(U + hv) and f(U - hv) round alike at every step
    # (fd = 0, relative error 1). That is no agreement: the rounding error (64 eps |f| / h ~ 1e18) dwarfs the slope.
    s = _check(Problem("huge", jnp.ones((4, 1)), lambda U: 1e30 + jnp.sum(jnp.sin(U))))
    assert all(d["fd"] == [0.0, 0.0, 0.0] and d["rel_error"] == [1.0, 1.0, 1.0] for d in s["per_direction"])
    assert not any(a for d in s["per_direction"] for a in d["agree"])
    assert all(p["agree_share"] == 0.0 for p in s["per_step"])
    assert s["verdict"] == "inconclusive" and s["counts"]["inconclusive"] == 6 and s["counts"]["consistent"] == 0
    assert s["message"].startswith("inconclusive: central differences lost every digit")


def test_gradcheck_near_an_optimum_is_consistent():
    """At 1e-10 from a quadratic's minimum (gradcheck --at a converged run) the slope is about 1e-10 and the quotient's
    rounding error a few percent of it: the digits it keeps agree, as before the fd = 0 case above was told apart (a
    rule asking the rounding error to be under 1 % of the slope called these "rounding")."""
    c = jnp.linspace(0.5, 1.5, 8).reshape(4, 2)
    s = _check(Problem("bowl", c, lambda U: 1.0 + 0.5 * jnp.sum((U - c) ** 2)), U=c + 1e-10, K=8)
    assert s["verdict"] == "consistent" and s["counts"]["consistent"] == 8, s["message"]


def test_a_run_whose_config_holds_a_nan_default_matches_its_own_file():
    """The pendulum's wall_damping defaults to NaN (derived from the stiffness), and nan != nan: every pendulum run
    was refused by --at RUN / --run RUN as disagreeing with its own config.toml."""
    from trajopt.cli.diagnose import problem_differences

    run = {"system": {"name": "pendulum", "wall_damping": float("nan"), "gains": [1.0, float("nan")]}}
    assert problem_differences(run, json.loads(json.dumps(run))) == []
    other = {"system": {"name": "pendulum", "wall_damping": 0.5, "gains": [1.0, float("nan")]}}
    assert problem_differences(run, other) == ["system.wall_damping (file nan, run 0.5)"]


# ---------------------------------------------------------------------------------------------------------
# CLI


runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def diagnose_init(tmp_path_factory):
    out = tmp_path_factory.mktemp("diag") / "init"
    # 3 repeats of 4 samples, as every diagnose below: one estimator program, compiled once for the file
    result = invoke("diagnose", SOFT, *SMALL, "--repeats", "3", "--samples", "4", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    return out, json.loads(result.stdout)


def test_diagnose_json_and_files(diagnose_init):
    out, report = diagnose_init
    assert report["problem"] == "pushing_soft" and report["samples"] == 4 and report["repeats"] == 3
    (loc,) = report["locations"]
    s = loc["summary"]
    for k in ("norm_first", "var_first", "var_zero", "bias_gap", "aobg_radius", "alpha_aobg", "alpha_ivw", "alpha_ddcg",
              "alpha_stepwise", "zero_share"):
        assert set(s[k]) == {"mean", "low", "high", "half"}, k
    assert len(s["step_var_first"]["mean"]) == 30
    assert loc["reading"] and loc["oracle"] is None
    assert (out / "diagnose.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "diagnose.json").read_text())["locations"][0]["reading"] == loc["reading"]


def test_diagnose_prints_a_table_and_a_reading(tmp_path):
    result = invoke("diagnose", SOFT, *SMALL, "--repeats", "3", "--samples", "4", "--out", tmp_path / "d")
    assert result.exit_code == 0, result.output
    for text in ("initial guess U0", "fobg", "zobg", "aobg", "ivw", "ddcg", "stepwise", "reading:", "Var[f]"):
        assert text in result.output, text


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "soft"
    result = invoke("compare", SOFT, *SMALL, "--iterations", "3", "--seeds", "3", "--oracles", "fobg,zobg",
                    "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out


def test_diagnose_at_a_run_folder_uses_each_oracles_median_seed(small_run, tmp_path):
    result = invoke("diagnose", SOFT, *SMALL, "--at", small_run, "--repeats", "3", "--samples", "4", "--out",
                    tmp_path / "d", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    summary = json.loads((small_run / "result.json").read_text())
    assert [loc["oracle"] for loc in report["locations"]] == ["fobg", "zobg"]
    for loc in report["locations"]:
        finals = summary["variants"][loc["oracle"]]["final_cost"]
        assert loc["final_cost"] == sorted(finals)[1] and loc["seed"] == summary["seeds"][finals.index(loc["final_cost"])]
        assert loc["summary"]["value"] == pytest.approx(loc["final_cost"], rel=1e-12)
    result = invoke("diagnose", SOFT, *SMALL, "--at", small_run, "--oracle", "zobg", "--repeats", "3", "--samples", "4",
                    "--out", tmp_path / "e", "--json")
    assert [loc["oracle"] for loc in json.loads(result.stdout)["locations"]] == ["zobg"]


@pytest.mark.parametrize("args, message", [
    (["--repeats", "1"], "--repeats"),
    (["--samples", "1"], "--samples"),
    (["--at", "no/such/run"], "--at no/such/run"),
    (["--oracle", "fobg"], "--at RUN_DIR"),
    (["--set", "oracle.ddcg.c=2"], "oracle.ddcg.c"),
    (["--set", "task.horizon=0"], "task.horizon"),
])
def test_diagnose_bad_input_exits_2(tmp_path, args, message):
    result = invoke("diagnose", SOFT, *args, "--out", tmp_path / "d")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "d").exists()


def test_diagnose_bad_run_folder_input_exits_2(small_run, tmp_path):
    result = invoke("diagnose", SOFT, "--at", small_run, "--out", tmp_path / "d")  # horizon 400 against 30
    assert result.exit_code == 2 and "shape" in result.output
    result = invoke("diagnose", SOFT, *SMALL, "--at", small_run, "--oracle", "aobg", "--out", tmp_path / "d")
    assert result.exit_code == 2 and "fobg, zobg" in result.output
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    result = invoke("diagnose", SOFT, *SMALL, "--out", tmp_path / "full")
    assert result.exit_code == 2 and "--force" in result.output


def test_gradcheck_json_and_exit_codes():
    result = invoke("gradcheck", SOFT, *SMALL, "--directions", "3", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (loc,) = report["locations"]
    assert report["steps"] == [1e-2, 1e-4, 1e-6] and loc["directions"] == 3
    assert loc["verdict"] == "consistent" and len(loc["per_step"]) == 3
    result = invoke("gradcheck", SOFT, *SMALL, "--directions", "2", "--steps", "1e-3,1e-5")
    assert result.exit_code == 0 and "verdict:" in result.output


@pytest.mark.parametrize("args, message", [
    (["--steps", "abc"], "--steps"), (["--steps", "0,1e-4"], "--steps"), (["--steps", "1e-2,1e-2"], "repeated"),
    (["--directions", "0"], "--directions"), (["--set", "task.horizon=x"], "task.horizon"),
])
def test_gradcheck_bad_input_exits_2(args, message):
    result = invoke("gradcheck", SOFT, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_gradcheck_exits_1_on_a_wrong_gradient(tmp_path, monkeypatch):
    # A user system (loaded by its import path) whose custom derivative is 10% off.
    (tmp_path / "wrong_system.py").write_text(textwrap.dedent("""
        import math
        from dataclasses import dataclass
        import jax
        import jax.numpy as jnp

        @jax.custom_jvp
        def cost(theta):
            return jnp.sum(jnp.sin(theta))

        @cost.defjvp
        def _jvp(primals, tangents):
            (x,), (dx,) = primals, tangents
            return cost(x), jnp.sum(1.1 * jnp.cos(x) * dx)

        @dataclass(frozen=True)
        class Wrong:
            one_step = True
            state_size = 0
            control_size = 2
            dt = math.nan

            def cost(self, theta):
                return cost(theta)

            def stable_dt(self):
                return math.inf
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    problem = tmp_path / "wrong.toml"
    problem.write_text('[system]\nname = "wrong_system:Wrong"\n[task]\nu_init = 0.3\n')
    result = invoke("gradcheck", problem, "--directions", "3")
    assert result.exit_code == 1, result.output
    assert "check the gradient" in result.output


def test_verdict_and_reading_come_from_one_decision():
    """The bias line diagnose prints follows the reading's decision: a 'near a discontinuity' reading never sits
    beside 'no evidence of FoBG bias' (the contradiction seen on a user's hopper)."""
    from trajopt.cli.diagnose import VERDICTS
    from trajopt.diagnostics import decide

    base = {"variance_ratio": 0.5, "alpha_ivw": {"mean": 0.67}, "zero_share": {"mean": 0.0},
            "ddcg_switch_share": 0.0, "bias_z": 0.0}
    for change, kind in (({"bias_z": 2.5}, "suspect"), ({"ddcg_switch_share": 0.2}, "suspect"),
                         ({"bias_z": 4.0}, "biased"), ({}, "mixed")):
        got, text = decide({**base, **change})
        assert got == kind and reading({**base, **change}) == text
        verdict = VERDICTS.get(got, "no evidence of FoBG bias")
        assert ("no evidence" in verdict) == (kind not in ("biased", "suspect", "plateau"))
