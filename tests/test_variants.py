"""Variants in `compare`: oracles under different optimisers and methods side by side in one run folder, with
their resolved configuration recorded so that --from repeats them, and clear errors for bad names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trajopt import runs, spec
from trajopt.cli import app
from trajopt.methods import GradientMethod
from trajopt.optim import SGD, Adam

PROBLEMS = Path(__file__).resolve().parent.parent / "problems"
SOFT = str(PROBLEMS / "pushing_soft.toml")
SMALL = ["--iterations", "10", "--seeds", "2", "--set", "task.horizon=30"]
ADAM = ["--set", 'variants.aobg_adam.oracle="aobg"', "--set", 'variants.aobg_adam.optimizer={name="adam", step=0.05}']

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.slow  # end to end, several seconds: CI's slow job runs it
def test_variants_run_side_by_side_and_repeat_from_the_folder(tmp_path):
    out = tmp_path / "v"
    r = invoke("compare", SOFT, *SMALL, *ADAM, "--variants", "fobg,aobg,aobg_adam", "--x", "rollouts", "--out", out,
               "--json", "--quiet")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert list(summary["variants"]) == ["fobg", "aobg", "aobg_adam"]
    assert summary["variants"]["aobg_adam"]["config"]["optimizer"]["name"] == "adam"
    assert summary["variants"]["aobg"]["config"]["optimizer"]["name"] == "sgd"
    # the same oracle and seeds under two optimisers: the same first cost, different paths
    run = runs.read_run(out)
    a, b = run.results["aobg"], run.results["aobg_adam"]
    np.testing.assert_array_equal(a.cost[:, 0], b.cost[:, 0])
    assert not np.allclose(a.cost[:, -1], b.cost[:, -1])
    # rollouts are the oracle's (2N + 1 per step for aobg), whatever the optimiser
    assert summary["variants"]["aobg_adam"]["rollouts"] == summary["variants"]["aobg"]["rollouts"] == 10 * 21
    assert (out / "convergence.png").stat().st_size > 0
    # config.toml records every variant resolved: --from repeats the run bit for bit
    config = spec.load(out / "config.toml")
    assert list(config.variants) == ["fobg", "aobg", "aobg_adam"]
    again = tmp_path / "again"
    r2 = invoke("compare", "--from", out, "--out", again, "--quiet")
    assert r2.exit_code == 0, r2.output
    for name in ("fobg", "aobg", "aobg_adam"):
        np.testing.assert_array_equal(runs.read_run(again).results[name].cost, run.results[name].cost)


def test_set_reaches_inside_a_variant():
    s = spec.load(SOFT, [a for a in ADAM if a != "--set"] + ["variants.aobg_adam.optimizer.step=0.2",
                                                            "variants.aobg_adam.samples=4", "solve.variants=[\"aobg_adam\"]"])
    v = s.variants["aobg_adam"]
    assert v.method == GradientMethod(v.oracle, Adam(step=0.2))
    assert v.oracle.samples == 4 and s.oracles["aobg"].samples == 10  # the file's aobg is untouched
    # a variant with the file's optimiser name overrides only some of its keys
    s = spec.load(SOFT, ['variants.slow.oracle="zobg"', "variants.slow.optimizer={step=1e-4}", "solve.variants=[\"slow\"]"])
    assert s.variants["slow"].optimizer == SGD(step=1e-4)


def test_bad_variant_inputs_exit_2(tmp_path):
    r = invoke("compare", SOFT, *SMALL, "--variants", "aobgg", "--out", tmp_path / "a")
    assert r.exit_code == 2 and "unknown variant 'aobgg'" in r.stderr and "did you mean 'aobg'" in r.stderr
    assert not (tmp_path / "a").exists()
    r = invoke("compare", SOFT, *SMALL, "--variants", "fobg", "--oracles", "zobg", "--out", tmp_path / "b")
    assert r.exit_code == 2 and "not both" in r.stderr
    r = invoke("compare", SOFT, *SMALL, "--variants", "fobg,fobg", "--out", tmp_path / "c")
    assert r.exit_code == 2 and "repeated" in r.stderr
    r = invoke("compare", SOFT, *SMALL, "--set", 'variants.x.oracle="fobg"', "--set", "variants.x.gama=1",
               "--variants", "x", "--out", tmp_path / "d")
    assert r.exit_code == 2 and "variants.x.gama" in r.stderr
    r = invoke("compare", SOFT, *SMALL, "--set", 'variants.x.oracle="fobg"', "--set", 'variants.x.method="gradient"',
               "--variants", "x", "--out", tmp_path / "e")
    assert r.exit_code == 2 and "both 'oracle' and 'method'" in r.stderr
    # an unused variant table is still validated
    r = invoke("compare", SOFT, *SMALL, "--set", 'variants.unused.oracle="nope"', "--out", tmp_path / "f")
    assert r.exit_code == 2 and "variants.unused.oracle" in r.stderr


def test_oracles_flag_refuses_a_method_name(tmp_path):
    r = invoke("compare", SOFT, *SMALL, "--oracles", "gradient", "--out", tmp_path / "a")
    assert r.exit_code == 2 and "solve.oracles" in r.stderr and "is a method" in r.stderr and "--variants" in r.stderr


def _runnable_methods():
    from trajopt.methods import METHODS

    # "gradient" is named by its oracle (a bare oracle name); every other registered method by its own name
    return [m for m in METHODS.names() if m != "gradient" and not m.endswith("_test")]


@pytest.mark.parametrize("method", _runnable_methods())
def test_every_registered_method_runs_through_compare(tmp_path, method):
    out = tmp_path / method
    r = invoke("compare", SOFT, "--iterations", "3", "--seeds", "2", "--set", "task.horizon=15", "--variants",
               f"fobg,{method}", "--x", "iterations,rollouts", "--out", out, "--json", "--quiet")
    assert r.exit_code == 0, r.output
    entry = json.loads(r.stdout)["variants"][method]
    assert entry["kind"] == "method" and entry["base"] == method and entry["status"] == ["ok", "ok"]
    assert entry["rollouts"] > 0 and all(np.isfinite(entry["final_cost"]))
    assert entry["final_cost"][0] <= entry["initial_cost"] + 1e-9 or method in ("mppi", "dial")  # samplers may not descend in 3 steps
    run = runs.read_run(out)
    assert run.results[method].cost.shape == (2, 4)


# ------------------------------------------------------------------------------------------ the run folder


@pytest.mark.slow  # end to end, several seconds: CI's slow job runs it
def test_out_is_claimed_before_the_run(tmp_path):
    import fcntl
    import os

    # --force empties an older run folder first: its stale temporaries and foreign report go
    old = tmp_path / "old"
    old.mkdir()
    for name in ("config.toml", "result.json", "report.html", ".metrics.jsonl.abc.tmp"):
        (old / name).write_text("stale")
    r = invoke("compare", SOFT, *SMALL, "--out", old, "--force", "--quiet")
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in old.iterdir())
    assert "report.html" not in names and not [n for n in names if n.endswith(".tmp")]
    assert json.loads((old / "result.json").read_text())["status"] == "ok"
    # --force never empties a folder that is not a run folder
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep me")
    r = invoke("compare", SOFT, *SMALL, "--out", mine, "--force")
    assert r.exit_code == 2 and "only a trajopt run folder" in r.stderr and (mine / "thesis.tex").read_text() == "keep me"
    # a folder held by another run is refused before any work
    busy = tmp_path / "busy"
    busy.mkdir()
    fd = os.open(busy, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        r = invoke("compare", SOFT, *SMALL, "--out", busy, "--force")
        assert r.exit_code == 2 and "in use by another trajopt run" in r.stderr
    finally:
        os.close(fd)
    # an --out that cannot be created fails at once and leaves nothing
    r = invoke("compare", SOFT, *SMALL, "--out", "/proc/trajopt-run")
    assert r.exit_code == 2 and "/proc/trajopt-run" in r.stderr
    # a run refused after the claim (a method that does not apply) removes the folder it created
    onestep = Path(__file__).resolve().parent.parent / "problems" / "pivot.toml"
    gone = tmp_path / "gone"
    r = invoke("compare", onestep, "--variants", "ilqr", "--iterations", "2", "--out", gone)
    assert r.exit_code == 2 and "ilqr needs a time-stepped problem" in r.stderr and not gone.exists()


def test_titles_with_dollars_and_brackets_are_shown_literally(tmp_path):
    out = tmp_path / "t"  # one variant, the run of test_every_registered_method_runs_through_compare: its program
    r = invoke("compare", SOFT, "--iterations", "3", "--seeds", "2", "--set", "task.horizon=15", "--variants", "fobg",
               "--set", 'title="cost $\\\\foo$ [bold]x[/bold]"', "--out", out, "--quiet")
    assert r.exit_code == 0, r.output
    assert (out / "convergence.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "result.json").read_text())["title"].startswith("cost $\\foo$ [bold]x[/bold]")


@pytest.mark.slow  # end to end, several seconds: CI's slow job runs it
def test_titles_under_set_never_repeat_the_files_parameter_values(tmp_path):
    stiff = str(PROBLEMS / "pushing_stiff.toml")  # its title says "k = 1000"
    out = tmp_path / "k10"
    r = invoke("compare", stiff, *SMALL, "--set", "system.stiffness=10", "--report", "--out", out, "--quiet")
    assert r.exit_code == 0, r.output
    title = json.loads((out / "result.json").read_text())["title"]
    assert title == "pushing_stiff [--set task.horizon=30, system.stiffness=10]" and "1000" not in title
    assert "pushing_stiff [--set task.horizon=30, system.stiffness=10]" in (out / "report.html").read_text()
