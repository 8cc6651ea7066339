"""Step and σ schedules: the recorded step and σ at iteration k are optax's / the formula's, a degenerate σ
schedule is the constant one bit for bit, chunking does not change a scheduled run, and bad schedule keys are
refused with the key named."""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from builders import pushing_problem

from trajopt import spec
from trajopt.methods import GradientMethod
from trajopt.optim import SGD, Adam
from trajopt.oracles import Exact, ZoBG, AoBG
from trajopt.solver import solve

KEY = jax.random.PRNGKey(0)
K = 12


@pytest.fixture(scope="module")
def problem():
    return pushing_problem(stiffness=10.0, damping=0.99, horizon=30)


@pytest.mark.parametrize("opt, expected", [
    (SGD(step=1e-3, schedule="cosine", decay_steps=K, final_scale=0.1), optax.cosine_decay_schedule(1e-3, K, 0.1)),
    (SGD(step=1e-3, schedule="exponential", decay_steps=4, decay_rate=0.5), optax.exponential_decay(1e-3, 4, 0.5)),
    (Adam(step=0.05, schedule="warmup_cosine", warmup_steps=3, decay_steps=K, final_scale=0.2),
     optax.warmup_cosine_decay_schedule(0.0, 0.05, 3, K, 0.01)),
    (Adam(step=0.05, schedule="piecewise", boundaries=(4, 8), scales=(0.5, 0.1)),
     optax.piecewise_constant_schedule(0.05, {4: 0.5, 8: 0.1})),
])
def test_recorded_step_is_optax_schedule(problem, opt, expected):
    r = solve(problem, GradientMethod(Exact(), opt), key=KEY, iterations=K, seeds=[0, 1])
    want = np.array([float(expected(jnp.asarray(k, jnp.int32))) for k in range(K)])  # as the optimiser counts
    np.testing.assert_allclose(r.history["step_size"], np.broadcast_to(want, (2, K)), rtol=1e-12)


def test_constant_step_is_recorded_and_unchanged(problem):
    r = solve(problem, GradientMethod(Exact(), SGD(2e-3)), key=KEY, iterations=K, seeds=[0])
    assert np.all(r.history["step_size"] == 2e-3)


@pytest.mark.parametrize("schedule", ["geometric", "linear"])
def test_recorded_sigma_follows_the_formula(problem, schedule):
    s0, s1 = 0.2, 0.02
    m = GradientMethod(ZoBG(samples=4, sigma=s0), SGD(1e-3), sigma_schedule=schedule, sigma_final=s1, sigma_steps=K)
    r = solve(problem, m, key=KEY, iterations=K, seeds=[0])
    t = np.minimum(np.arange(K), K - 1) / (K - 1)
    want = s0 * (s1 / s0) ** t if schedule == "geometric" else s0 + (s1 - s0) * t
    np.testing.assert_allclose(r.history["sigma"][0], want, rtol=1e-13)
    assert r.history["sigma"][0, 0] == s0 and abs(r.history["sigma"][0, -1] - s1) < 1e-15


def test_scheduled_estimate_is_the_paper_estimator_at_sigma_k(problem):
    """Iteration k's estimate is the oracle's with sigma = sigma_k (to rounding: a traced σ fuses differently)."""
    oracle = AoBG(samples=6, sigma=0.3)
    m = GradientMethod(oracle, SGD(1e-3), sigma_schedule="geometric", sigma_final=0.03, sigma_steps=K)
    k, key = 7, jax.random.PRNGKey(5)
    g_sched, info = jax.jit(lambda U: m.oracle_at(jnp.int32(k)).estimate(key, problem, U))(problem.U0)
    fixed = dataclasses.replace(oracle, sigma=float(m.sigma_at(k)))
    g_fixed, info_fixed = jax.jit(lambda U: fixed.estimate(key, problem, U))(problem.U0)
    np.testing.assert_allclose(np.asarray(g_sched), np.asarray(g_fixed), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(float(info.alpha), float(info_fixed.alpha), rtol=1e-9)


def test_degenerate_sigma_schedule_is_bit_identical_to_constant(problem):
    oracle = ZoBG(samples=5, sigma=0.1)
    const = solve(problem, GradientMethod(oracle, SGD(1e-3)), key=KEY, iterations=K, seeds=[0, 1])
    same = GradientMethod(oracle, SGD(1e-3), sigma_schedule="geometric", sigma_final=0.1, sigma_steps=K)
    sched = solve(problem, same, key=KEY, iterations=K, seeds=[0, 1])
    np.testing.assert_array_equal(const.cost, sched.cost)
    np.testing.assert_array_equal(const.U, sched.U)


def test_chunking_does_not_change_a_scheduled_run(problem):
    m = GradientMethod(AoBG(samples=4, sigma=0.2), Adam(step=0.05, schedule="cosine", decay_steps=K),
                       sigma_schedule="linear", sigma_final=0.05, sigma_steps=K)
    a = solve(problem, m, key=KEY, iterations=K, seeds=[0, 1], chunk=K)
    b = solve(problem, m, key=KEY, iterations=K, seeds=[0, 1], chunk=5)
    np.testing.assert_array_equal(a.cost, b.cost)
    np.testing.assert_array_equal(a.history["step_size"], b.history["step_size"])


def test_problem_file_schedules(tmp_path):
    from pathlib import Path
    stiff = Path(__file__).resolve().parent.parent / "problems" / "pushing_stiff.toml"
    s = spec.load(stiff, ['variants.t.oracle="aobg"', 'variants.t.optimizer={name="adam", step=0.5, schedule="cosine"}',
                          'variants.t.sigma_schedule="geometric"', "variants.t.sigma_final=0.02", 'solve.variants=["t"]',
                          "solve.iterations=300"])
    m = s.variants["t"].method
    assert m.optimizer.decay_steps == 300 and m.sigma_steps == 300 and m.sigma_final == 0.02
    again = spec.loads(__import__("tomli_w").dumps(s.resolved()))
    assert again.variants["t"].method == m
    for bad, key in [('variants.t.sigma_schedule="cubic"', "variants.t.sigma_schedule"),
                     ('variants.t.optimizer={schedule="piecewise", boundaries=[5, 3], scales=[1.0, 1.0]}', "variants.t.optimizer.boundaries"),
                     ('variants.t.optimizer={schedule="cosine", final_scale=2.0}', "variants.t.optimizer.final_scale")]:
        with pytest.raises(spec.SpecError, match=key.replace(".", r"\.")):
            spec.load(stiff, ['variants.t.oracle="aobg"', "variants.t.sigma_final=0.05", bad, 'solve.variants=["t"]'])
    with pytest.raises(spec.SpecError, match=r"variants\.t\.sigma_final: missing"):
        spec.load(stiff, ['variants.t.oracle="aobg"', 'variants.t.sigma_schedule="linear"'])


# ------------------------------------------------------------------------------------------ equal budget


@pytest.mark.slow  # end to end, several seconds: CI's slow job runs it
def test_equal_budget_compare(tmp_path, monkeypatch):
    """--budget B, in forward-step equivalents (a rollout T forward steps, a backward pass ρ_b = 2 of them, given):
    a fixed-cost variant runs B // (T (r + 2 g)) steps, r and g its oracle's calls() per step, and spends at most B;
    iLQR (its spend varies) runs until its spend reaches B, at most one step over; the folder reads back with each
    variant's own iteration count."""
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from trajopt import runs
    from trajopt.cli import app

    monkeypatch.setenv("TRAJOPT_STEP_COSTS", "2,3")
    soft = Path(__file__).resolve().parent.parent / "problems" / "pushing_soft.toml"
    T, B = 20, 6000
    args = ["compare", str(soft), "--set", f"task.horizon={T}", "--seeds", "2", "--budget", str(B),
            "--set", 'variants.a4.oracle="aobg"', "--set", "variants.a4.samples=4",
            "--variants", "a4,aobg,zobg,ps,ilqr", "--out", str(tmp_path / "b"), "--json", "--quiet"]
    r = CliRunner().invoke(app, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["step_costs"]["backward"] == 2 and summary["step_costs"]["horizon"] == T and summary["budget"] == B
    s = spec.load(tmp_path / "b" / "config.toml")
    problem = s.problem()
    for name in ("a4", "aobg", "zobg", "ps"):
        entry = summary["variants"][name]
        rollouts, gradients = s.variants[name].method.calls(problem)
        per_step = T * (rollouts + 2 * gradients)
        assert entry["iterations"] == B // per_step == s.variants[name].iterations
        assert entry["rollouts"] == entry["iterations"] * rollouts and entry["gradients"] == entry["iterations"] * gradients
        assert entry["forward_equivalents"] == entry["iterations"] * per_step <= B
    assert summary["variants"]["a4"]["iterations"] == B // (T * (9 + 2 * 4))
    ilqr = summary["variants"]["ilqr"]
    run = runs.read_run(tmp_path / "b")
    h = run.results["ilqr"].history
    per_step = T * (h["rollouts"] + 3 * h["linearizations"])  # [S, K] its spend, step by step
    for seed, spent in enumerate(ilqr["forward_equivalents_per_seed"]):
        steps = per_step[seed][per_step[seed] > 0]
        assert spent == steps.sum() and (spent >= B or ilqr["stopped"][seed] == "converged")
        assert spent - steps[-1] < B  # the last step began under the budget: at most one step over
    assert run.results["a4"].cost.shape == (2, B // (T * 17) + 1)


def test_a_one_iteration_run_of_a_file_with_sigma_schedules(tmp_path):
    # problems/pushing_stiff.toml ships scheduled variants; `--iterations 1` gives them S = 1 (sigma_0), not a refusal
    from pathlib import Path

    from typer.testing import CliRunner

    from trajopt.cli import app

    r = CliRunner().invoke(app, ["compare", str(Path(__file__).resolve().parent.parent / "problems" / "pushing_stiff.toml"), "--iterations", "1", "--seeds", "1",
                                 "--variants", "tuned_fobg", "--out", str(tmp_path / "one"), "--quiet"])
    assert r.exit_code == 0, r.output
    # tuned_fobg sets its own iterations (2,500) and a σ schedule over them in the file: --iterations on the
    # command line reaches it all the same
    entry = json.loads((tmp_path / "one" / "result.json").read_text())["variants"]["tuned_fobg"]
    assert entry["iterations"] == 1 and entry["config"]["sigma_schedule"] == "geometric"
    m = GradientMethod(ZoBG(samples=4, sigma=0.2), SGD(1e-3), sigma_schedule="geometric", sigma_final=0.02, sigma_steps=1)
    assert float(m.sigma_at(0)) == 0.2 and float(m.sigma_at(5)) == 0.2


def test_the_shipped_tuned_variants_keep_the_papers_budget_and_match_across_files():
    # issue #13: `tuned` is one configuration in both pushing files, within the paper's AoBG budget per seed
    # (500 x (2N + 1) = 10,500 rollouts, 5,000 backward passes at N = 10), and `tuned_exact` is exact gradients
    # under the same optimiser and schedule (one start)
    from pathlib import Path

    from trajopt.methods import MultiStart

    problems = Path(__file__).resolve().parent.parent / "problems"
    names = ("tuned", "tuned_fobg", "tuned_exact", "tuned_aobg")
    chosen = ['solve.variants=["aobg", "tuned", "tuned_fobg", "tuned_exact", "tuned_aobg"]']
    stiff, soft = (spec.load(problems / f, chosen) for f in ("pushing_stiff.toml", "pushing_soft.toml"))
    for name in names:
        assert stiff.variants[name].table == soft.variants[name].table, name
    paper = stiff.variants["aobg"]
    paper_calls = np.array(paper.method.calls(stiff.problem())) * stiff.solve.iterations
    assert tuple(paper_calls) == (10_500, 5_000)
    for name in names:
        v = stiff.variants[name]
        spent = np.array(v.method.calls(stiff.problem())) * (v.iterations or stiff.solve.iterations)
        assert np.all(spent <= paper_calls), (name, spent)
    tuned, exact = stiff.variants["tuned"], stiff.variants["tuned_exact"]
    assert isinstance(tuned.method, MultiStart) and tuned.method.starts == 8 and tuned.table["start_spread"] == 0.01
    assert tuple(np.array(tuned.method.calls(stiff.problem())) * tuned.iterations) == (5_000, 5_000)
    assert exact.base == tuned.base == "exact" and not isinstance(exact.method, MultiStart)
    assert exact.optimizer.name == tuned.optimizer.name == "adam" and exact.optimizer.step == tuned.optimizer.step
    assert exact.optimizer.schedule == tuned.optimizer.schedule == "cosine"
    assert tuned.optimizer.decay_steps == tuned.iterations and exact.optimizer.decay_steps == exact.iterations


@pytest.mark.slow  # end to end, several seconds: CI's slow job runs it
def test_iterations_on_the_command_line_reach_variants_with_their_own(tmp_path):
    # no flag silently ignored: --iterations N reaches a variant that sets `iterations` in its table, unless the
    # command line also names that variant's own iterations; a run whose variants differ says so in its title
    # and table (an iterations column)
    from pathlib import Path

    from typer.testing import CliRunner

    from trajopt.cli import app

    problem = tmp_path / "p.toml"
    problem.write_text(Path(__file__).resolve().parent.parent.joinpath("problems", "pushing_soft.toml").read_text()
                       + "\n[variants.long]\noracle = \"exact\"\niterations = 50\n")
    run = lambda *a: CliRunner().invoke(app, ["compare", str(problem), "--seeds", "1", *a], catch_exceptions=False)
    r = run("--variants", "long,zobg", "--iterations", "3", "--out", str(tmp_path / "a"))
    assert r.exit_code == 0, r.output
    variants = json.loads((tmp_path / "a" / "result.json").read_text())["variants"]
    assert variants["long"]["iterations"] == 3 and variants["zobg"]["iterations"] == 3
    assert "(3 iterations, 1 seed)" in " ".join(r.stdout.split())
    r = run("--variants", "long,zobg", "--iterations", "3", "--set", "variants.long.iterations=5",
            "--out", str(tmp_path / "b"))
    assert r.exit_code == 0, r.output
    variants = json.loads((tmp_path / "b" / "result.json").read_text())["variants"]
    assert variants["long"]["iterations"] == 5 and variants["zobg"]["iterations"] == 3
    assert "(3–5 iterations, 1 seed)" in " ".join(r.stdout.split())
    from rich.console import Console

    from trajopt.cli._run_table import _summary_table

    def header(folder):
        console = Console(width=300, record=True, file=open(os.devnull, "w"))
        console.print(_summary_table(json.loads((tmp_path / folder / "result.json").read_text())))
        return next(line for line in console.export_text().splitlines() if "┃ variant" in line)

    assert "┃ iterations ┃" in header("b") and "iterations" not in header("a")
