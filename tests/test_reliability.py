"""Reliability: the catalogue of bad inputs, mutated files, interruption, non-finite seeds, re-runs."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from trajopt import runs
from trajopt.cli import app
from trajopt.cli._run_table import _summary_table
from trajopt.optim import SGD
from trajopt.oracles import Exact
from trajopt.problem import Problem
from trajopt.methods import GradientMethod
from trajopt.solver import solve as solve_method


def solve(problem, oracle, optimizer, *, skip_non_finite=False, **kwargs):
    """The paper's loop: a gradient method of this oracle and optimiser."""
    return solve_method(problem, GradientMethod(oracle, optimizer, skip_non_finite=skip_non_finite), **kwargs)

ROOT = Path(__file__).resolve().parent.parent
PROBLEMS = ROOT / "problems"
STIFF = PROBLEMS / "pushing_stiff.toml"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


BASE = STIFF.read_text()
TASK_LINE = BASE.splitlines().index("[task]") + 1

# (label, file text or None for the base file, extra CLI args, the key path the message must name, words)
CATALOGUE = [
    ("malformed TOML", _edit(BASE, "[task]", "[task"), [], "", f"line {TASK_LINE}, column 6"),
    ("unknown section", BASE + "\n[solver]\nx = 1\n", [], "solver", "unknown key (did you mean 'solve'?)"),
    ("unknown key", _edit(BASE, "stiffness =", "stifness ="), [], "system.stifness", "did you mean 'stiffness'"),
    ("wrong type", _edit(BASE, "horizon = 200", 'horizon = "200"'), [], "task.horizon", "allowed: an integer"),
    ("x0 length", _edit(BASE, "x0 = [0.0, 1.0, 0.0, 0.0]", "x0 = [0.0, 1.0]"), [], "task.x0", "4 numbers"),
    ("goal length", _edit(BASE, "goal = [1.0, 2.0, 0.0, 0.0]", "goal = [1.0]"), [], "task.goal", "4 numbers"),
    ("Q length", _edit(BASE, "Q = [0.1, 10.0, 0.1, 0.1]", "Q = [0.1, 10.0]"), [], "task.Q", "4 numbers"),
    ("R length", _edit(BASE, "R = [1.0]", "R = [1.0, 1.0]"), [], "task.R", "1 numbers"),
    ("sigma zero", _edit(BASE, "sigma = 0.1", "sigma = 0.0"), [], "oracle.sigma", "> 0 (the shared key, as fobg's sigma)"),
    ("sigma negative", None, ["--set", "oracle.zobg.sigma=-0.1"], "oracle.zobg.sigma", "> 0"),
    ("samples < 2", _edit(BASE, "samples = 10", "samples = 1"), [], "oracle.samples", ">= 2 (the shared key, as fobg's samples)"),
    ("step <= 0", _edit(BASE, "step = 1e-3", "step = 0.0"), [], "solve.optimizer.step", "> 0"),
    ("unknown system", _edit(BASE, 'name = "pushing"', 'name = "pusher"'), [], "system.name", "unknown system 'pusher'"),
    ("unknown oracle", None, ["--oracles", "fobg,zorg"], "solve.oracles", "did you mean 'zobg'"),
    ("unknown optimiser", _edit(BASE, 'name = "sgd"', 'name = "lbfgs"'), [], "solve.optimizer.name", "unknown optimizer"),
    ("--set unknown key", None, ["--set", "oracle.aobg.gama=0.1"], "oracle.aobg.gama", "did you mean 'gamma'"),
    ("--set without =", None, ["--set", "oracle.aobg.gamma"], "--set oracle.aobg.gamma", "KEY.PATH=VALUE"),
    ("unstable dt", _edit(BASE, "dt = 0.005", "dt = 0.05"), [], "system.dt", "largest stable dt"),
    ("bad delta", None, ["--set", "oracle.aobg.delta=1.5"], "oracle.aobg.delta", "(0.0, 1.0)"),
    ("non-finite number", _edit(BASE, "u_init = 0.1", "u_init = nan"), [], "task.u_init", "non-finite"),
    ("bad on_non_finite", None, ["--set", "solve.on_non_finite=ignore"], "solve.on_non_finite", "'skip'"),
    ("seeds", None, ["--seeds", "0"], "solve.seeds", ">= 1"),
    ("not UTF-8", b"title = '\xff'\n", [], "", "not UTF-8"),
]


@pytest.mark.parametrize("label, text, extra, key, words", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_bad_input_catalogue(tmp_path, label, text, extra, key, words):
    path = STIFF
    if text is not None:
        path = tmp_path / "problem.toml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "out"
    result = invoke("compare", path, *extra, "--out", out)
    message = " ".join(result.stderr.split())
    assert result.exit_code == 2, result.output
    assert str(path) in message
    assert (f": {key}:" if key else f"{path}:") in message, message
    assert words in message, message
    assert "Traceback" not in result.output
    assert not out.exists()


def test_missing_file_and_folder_as_file(tmp_path):
    for path in (tmp_path / "nope.toml", tmp_path):
        result = invoke("validate", path)
        assert result.exit_code == 2 and str(path) in result.stderr


def test_non_empty_out_folder_is_refused_and_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = invoke("compare", STIFF, "--iterations", "2", "--seeds", "1", "--out", out)
    assert result.exit_code == 2 and "--force" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_from_needs_a_run_folder(tmp_path):
    result = invoke("solve", "--from", tmp_path)
    assert result.exit_code == 2 and "not a run folder" in result.stderr


# --------------------------------------------------------------------------------------- non-finite


def _sqrt_kink_problem():
    """f(U) = sum(U^2) + sqrt(|U_00|): finite everywhere, infinite gradient at U_00 = 0."""
    return Problem(name="kink", U0=jnp.zeros((3, 1)), objective=lambda U: jnp.sum(U**2) + jnp.sqrt(jnp.abs(U[0, 0])))


def test_non_finite_gradient_stops_the_seed_or_is_skipped():
    problem = _sqrt_kink_problem()
    stop = solve(problem, Exact(), SGD(0.1).build(), key=jax.random.PRNGKey(0), iterations=5, seeds=[0, 1])
    assert stop.status == ["non_finite", "non_finite"] and list(stop.failed_at) == [0, 0]
    np.testing.assert_array_equal(stop.U, 0.0)
    skip = solve(problem, Exact(), SGD(0.1).build(), key=jax.random.PRNGKey(0), iterations=5, seeds=[0],
                 skip_non_finite=True)
    assert skip.status == ["all_skipped"] and list(skip.skipped) == [5]  # never updated: not "ok"
    assert np.isfinite(skip.final_cost).all()


UNSTABLE_WALL = """
title = "A mass near a penalty wall integrated beyond its stability limit"
[system]
name = "spring_wall"
stiffness = 1e6
contact_damping = 0.0
dt = 0.005              # omega*dt = 15.8: every contact grows exponentially
allow_unstable = true
[task]
horizon = 100
x0 = [0.0, 0.0]
goal = [0.95, 0.0]      # just inside the wall at x = 1
Q = [10.0, 0.1]
R = [0.01]
[solve]
optimizer = { name = "sgd", step = 1e-3 }
[oracle]
samples = 10
sigma = 1.0
"""


@pytest.mark.slow  # end to end, several seconds: CI's slow job runs it
def test_diverging_seeds_fail_alone_and_the_others_run_on():
    """Unstable wall contact: a seed whose noisy rollouts reach the wall overflows; the others never touch it.

    Which seeds fail is a property of each seed's own noise: every seed has the same status and failure
    iteration alone as inside the batch, and the surviving seeds have finite histories.
    """
    from trajopt import spec

    s = spec.loads(UNSTABLE_WALL, name="unstable_wall")
    problem, oracle, opt = s.problem(), s.oracles["fobg"], s.solve.optimizer.build()
    key = jax.random.PRNGKey(0)
    batch = solve(problem, oracle, opt, key=key, iterations=60, seeds=range(8))
    assert "non_finite" in batch.status and "ok" in batch.status, batch.status
    for i, seed in enumerate(batch.seeds):
        if batch.status[i] == "ok":
            assert np.isfinite(batch.cost[i]).all()
        else:
            k = batch.failed_at[i]
            assert 0 < k < 60 and np.isnan(batch.cost[i, k + 1:]).all() and np.isfinite(batch.U[i]).all()
    for i in (3, 4, 5):
        alone = solve(problem, oracle, opt, key=key, iterations=60, seeds=[i])
        assert alone.status[0] == batch.status[i] and alone.failed_at[0] == batch.failed_at[i]


# ------------------------------------------------------------------------------------- interruption


@pytest.mark.parametrize("sig, delay", [(signal.SIGINT, 6.0), (signal.SIGTERM, 6.0), (signal.SIGTERM, 1.5)],
                         ids=["SIGINT", "SIGTERM", "SIGTERM-at-start-up"])
@pytest.mark.slow  # end to end, several seconds: CI's slow job runs it
def test_signal_mid_run_leaves_a_complete_interrupted_folder(tmp_path, sig, delay):
    """The console script holds the signals from its first instruction: a signal during start-up, compilation
    or the loop still ends in a complete folder marked interrupted, exit 130."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "trajopt", "compare", str(STIFF), "--iterations", "200000", "--seeds", "2",
           "--set", "solve.chunk=500", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    time.sleep(delay)
    proc.send_signal(sig)
    try:
        _, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 130, stderr.decode()
    summary = json.loads((out / "result.json").read_text())
    assert summary["status"] == "interrupted"
    done = summary["iterations"]
    assert 0 < done < 200000 and done % 500 == 0
    assert summary["variants"]["fobg"]["status"] == ["interrupted", "interrupted"]
    assert summary["variants_not_run"] == ["zobg", "aobg"]
    run = runs.read_run(out)
    assert run.series["fobg"]["cost"].shape == (2, done + 1)
    assert np.isfinite(run.series["fobg"]["cost"]).all()
    with np.load(out / "trajectory.npz") as data:
        assert data["fobg/U"].shape == (2, 200, 1)
    assert (out / "convergence.png").stat().st_size > 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"


# ---------------------------------------------------------------------------------- reproducibility


def test_solve_from_run_dir_reproduces_bit_for_bit(tmp_path):
    first, again = tmp_path / "first", tmp_path / "again"
    assert invoke("solve", STIFF, "--oracle", "aobg", "--iterations", "15", "--seeds", "0,4", "--out", first,
                  "-q").exit_code == 0
    assert invoke("solve", "--from", first, "--out", again, "-q").exit_code == 0
    a = runs.read_run(first).series["aobg"]
    b = runs.read_run(again).series["aobg"]
    for field in ("cost", "alpha", "var_first", "var_zero", "bias_gap", "radius", "grad_norm"):
        np.testing.assert_array_equal(a[field], b[field])
    with np.load(first / "trajectory.npz") as x, np.load(again / "trajectory.npz") as y:
        np.testing.assert_array_equal(x["aobg/U"], y["aobg/U"])
    assert json.loads((again / "result.json").read_text())["problem"] == "pushing_stiff"


def test_a_rerun_states_the_overrides_its_run_was_made_with(tmp_path):
    """``--from`` runs the first run's config.toml (k = 10 applied), whose title is the file's "... (k = 1000)": the
    rerun's titles said k = 1000 and its result.json recorded no override. It states the first run's overrides,
    less a key given again (which wins, and is stated instead)."""
    first, again, other = tmp_path / "first", tmp_path / "again", tmp_path / "other"
    args = ["--oracles", "fobg", "--iterations", "2", "--seeds", "1", "-q"]
    assert invoke("compare", STIFF, "--set", "system.stiffness=10", *args, "--out", first).exit_code == 0
    assert invoke("compare", "--from", first, "--out", again, "-q").exit_code == 0
    summary = json.loads((again / "result.json").read_text())
    assert summary["title"] == "pushing_stiff [--set system.stiffness=10]"
    assert summary["overrides"] == ["system.stiffness=10"]
    assert invoke("compare", "--from", first, "--set", "system.stiffness=20", "--out", other, "-q").exit_code == 0
    summary = json.loads((other / "result.json").read_text())
    assert summary["title"] == "pushing_stiff [--set system.stiffness=20]"
    assert summary["overrides"] == ["system.stiffness=20"]
    # a flag sets a key too: the first run's --set solve.iterations=3 is not stated for a rerun of --iterations 2
    three, two = tmp_path / "three", tmp_path / "two"
    assert invoke("compare", STIFF, "--oracles", "fobg", "--seeds", "1", "--set", "solve.iterations=3", "--out", three,
                  "-q").exit_code == 0
    assert invoke("compare", "--from", three, "--iterations", "2", "--out", two, "-q").exit_code == 0
    summary = json.loads((two / "result.json").read_text())
    assert summary["iterations"] == 2 and "overrides" not in summary
    assert summary["title"] == "Pushing, stiff contact (k = 1000)"


def test_seeds_that_end_above_their_initial_cost_are_said_beside_ok(tmp_path):
    """A step of 1e6 takes the cost from 1821 to about 1e50 while it stays finite: status ok (it did not blow up to
    inf), but the table and result.json say that it ended above f(U0); a converging run says nothing more."""
    wild, calm = tmp_path / "wild", tmp_path / "calm"
    args = ["--oracles", "zobg", "--iterations", "3", "--seeds", "0,1"]
    assert invoke("compare", STIFF, *args, "--set", "solve.optimizer.step=1e6", "--out", wild).exit_code == 0
    assert invoke("compare", STIFF, *args, "--out", calm).exit_code == 0
    for folder, above in ((wild, [True, True]), (calm, [False, False])):
        summary = json.loads((folder / "result.json").read_text())
        entry = summary["variants"]["zobg"]
        assert entry["status"] == ["ok", "ok"] and entry["above_initial"] == above
        assert [c > entry["initial_cost"] for c in entry["final_cost"]] == above  # by the recorded costs
        wide = Console(width=400, file=io.StringIO())
        wide.print(_summary_table(summary))
        assert ("ok, 2 above f(U0)" in wide.file.getvalue()) == above[0]
        assert "ran once" not in wide.file.getvalue()  # its caption explains only what the table shows
    once = tmp_path / "once"
    assert invoke("compare", STIFF, "--oracles", "exact", "--iterations", "2", "--seeds", "0,1", "--out", once,
                  "-q").exit_code == 0
    wide = Console(width=400, file=io.StringIO())
    wide.print(_summary_table(json.loads((once / "result.json").read_text())))
    assert "ok, ran once" in wide.file.getvalue() and "ran once: a deterministic method" in wide.file.getvalue()


ALL_FAIL = UNSTABLE_WALL.replace("x0 = [0.0, 0.0]", "x0 = [0.0, 5.0]").replace("goal = [0.95, 0.0]", "goal = [0.0, 0.0]")


def test_every_seed_non_finite_exits_1_and_says_so(tmp_path):
    """A mass thrown at an explicitly unstable wall: every seed overflows within the first iterations."""
    problem = tmp_path / "all_fail.toml"
    problem.write_text(ALL_FAIL)
    out = tmp_path / "run"
    result = invoke("compare", problem, "--oracles", "fobg,zobg", "--iterations", "5", "--seeds", "3", "--out", out)
    assert result.exit_code == 1, result.output
    assert "0/3 ok" in result.stdout and "non_finite" in result.stdout  # the final table says so
    assert "skipped" not in result.stdout  # the failing estimate ended each seed; none was skipped (on_non_finite: stop)
    summary = json.loads((out / "result.json").read_text())
    assert summary["status"] == "failed"
    for o in summary["variants"].values():
        assert o["status"] == ["non_finite"] * 3 and all(0 <= k < 5 for k in o["failed_at"])
        assert o["skipped_updates"] == [0, 0, 0]
    # nothing is spent after a seed stops: the count runs up to the last seed's failing iteration only
    assert summary["variants"]["zobg"]["rollouts"] == 11 * (max(summary["variants"]["zobg"]["failed_at"]) + 1)


@pytest.mark.slow  # end to end, several seconds: CI's slow job runs it
def test_sigkill_leaves_no_unreadable_file(tmp_path):
    """SIGKILL while the run folder is being written (killed the moment a file after config.toml starts to
    appear: a temporary or, were writes not atomic, the file itself): every file present parses, temporaries
    are only hidden ``.<file>.*.tmp`` names, and readers report the incomplete folder cleanly."""
    import tomllib

    from trajopt.runs import RunFolderError, read_run

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "trajopt", "compare", str(PROBLEMS / "pivot.toml"), "--iterations", "5000",
           "--seeds", "2", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline, at_kill = time.monotonic() + 240, None
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            names = set(os.listdir(out)) if out.is_dir() else set()
            if "config.toml" in names and {n for n in names if not n.startswith(".config.toml.")} - {"config.toml"}:
                proc.kill()
                at_kill = names
                break
            time.sleep(0.0005)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert at_kill is not None and proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert "config.toml" in at_kill and "result.json" not in at_kill  # killed while the folder was being written
    names = sorted(os.listdir(out))
    run_files = ("config.toml", "metrics.jsonl", "trajectory.npz", "result.json")
    for name in names:
        p = out / name
        if name.startswith("."):  # a temporary of the atomic write, under a hidden name no reader opens
            assert name.endswith(".tmp") and any(name.startswith(f".{f}.") for f in run_files), name
            continue
        assert name in run_files, name
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".jsonl":
            assert [json.loads(line) for line in p.read_text().splitlines()]
        elif p.suffix == ".npz":
            with np.load(p) as data:
                assert data.files
        elif p.suffix == ".toml":
            assert tomllib.loads(p.read_text())["system"]["name"] == "pivot"
    if "result.json" not in names:  # incomplete: a clean error naming the file, for the library and the CLI
        with pytest.raises(RunFolderError, match="result.json"):
            read_run(out)
        result = invoke("report", out, "-o", tmp_path / "r.html")
        assert result.exit_code == 2 and "result.json" in result.stderr
