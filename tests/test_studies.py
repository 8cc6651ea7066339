"""Studies: sweep grids, the stiffness effect in a sweep, the landscape of a one-step problem."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trajopt import analysis
from trajopt.cli import app

PROBLEMS = Path(__file__).resolve().parent.parent / "problems"
STIFF = PROBLEMS / "pushing_stiff.toml"
runner = CliRunner()

BALL = """
title = "Ball with wall"
[system]
name = "ball_with_wall"
[task]
u_init = 0.1
[solve]
oracles = ["fobg", "zobg", "aobg"]
[oracle]
samples = 200
sigma = 0.1
[oracle.aobg]
gamma = 0.01
L = 1.0
"""


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_grids_parse():
    assert analysis.parse_grid("1,10,100") == [1.0, 10.0, 100.0]
    np.testing.assert_allclose(analysis.parse_grid("logspace:1:3:3"), [10.0, 100.0, 1000.0])
    np.testing.assert_allclose(analysis.parse_grid("linspace:0:1:5"), [0, 0.25, 0.5, 0.75, 1.0])
    assert analysis.parse_grid("linspace:1:3:5", integer=True) == [1, 2, 3]
    for bad in ("", "a,b", "logspace:1:2", "linspace:0:1:0", "logspace:x:1:3", "1,inf"):
        with pytest.raises(ValueError):
            analysis.parse_grid(bad)
    np.testing.assert_allclose(analysis.parse_range("0:1:3"), [0, 0.5, 1])
    for bad in ("1:0:10", "0:1:1", "0:1", "a:b:c"):
        with pytest.raises(ValueError):
            analysis.parse_range(bad)


@pytest.mark.parametrize(
    "over, words",
    [
        ("system.stiffness", "KEY=VALUES"),
        ("system.stiffness=logspace:1:2", "allowed: a comma-separated list"),
        ("system.stiffness=a,b", "allowed: a comma-separated list"),
        ("system.stifness=1,2", "system.stifness: unknown key"),
        ("solve.oracles=1,2", "numeric key"),
        ("system.stiffness=10,1e5", "largest stable dt"),
    ],
)
def test_sweep_rejects_bad_grids_with_exit_2(tmp_path, over, words):
    result = invoke("sweep", STIFF, "--over", over, "--out", tmp_path / "s")
    assert result.exit_code == 2
    assert words in " ".join(result.stderr.split())
    assert not (tmp_path / "s").exists()


@pytest.mark.slow  # end to end, several seconds: CI's slow job runs it
def test_sweep_over_stiffness_shows_fobg_variance_growing(tmp_path):
    out = tmp_path / "sweep"
    result = invoke("sweep", STIFF, "--over", "system.stiffness=10,100,1000", "--repeats", "4", "--oracles",
                    "fobg,zobg,aobg", "--set", "task.horizon=100", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads((out / "sweep.json").read_text())
    var_first = [r["var_first_median"] for r in data["rows"] if r["oracle"] == "fobg"]
    var_zero = [r["var_zero_median"] for r in data["rows"] if r["oracle"] == "zobg"]
    alpha = [r["alpha_median"] for r in data["rows"] if r["oracle"] == "aobg"]
    assert var_first[0] < var_first[1] < var_first[2]
    assert var_first[2] / var_first[0] > 1e3  # stiffness inflates the first-order variance by orders of magnitude
    assert max(var_zero) / min(var_zero) < 2  # the zeroth-order variance barely moves
    assert alpha[0] > 0.99 and alpha[2] < alpha[0]
    header = (out / "sweep.csv").read_text().splitlines()[0]
    assert header.startswith("system.stiffness,oracle,") and "var_first_median" in header  # the column names the key
    # the title names the override it ran under, and the swept key but not its values
    # and what each point's statistics are over (the figure's and the table's title too)
    assert data["title"] == "pushing_stiff [--set task.horizon=100]: variance against system.stiffness [N = 10, 4 repeats]"
    assert "1000" not in data["title"]
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_landscape_of_a_one_step_problem(tmp_path):
    problem = tmp_path / "ball.toml"
    problem.write_text(BALL)
    out = tmp_path / "land"
    result = invoke("landscape", problem, "--range", "0:1.5:31", "--repeats", "3", "--oracles", "fobg,zobg,aobg",
                    "--out", out, "-q")
    assert result.exit_code == 0, result.output
    landscape = json.loads((out / "landscape.json").read_text())
    rows = landscape["rows"]
    assert landscape["title"] == "Ball with wall [N = 200, 3 repeats]"  # what the spread is over
    theta = np.array([r["theta"] for r in rows])
    f = np.array([r["f"] for r in rows])
    # on the wall plateau (0.32 < theta < 0.69) the ball stops at the wall: f = -0.06^2 and FoBG sees no slope
    plateau = (theta > 0.4) & (theta < 0.6)
    np.testing.assert_allclose(f[plateau], -0.06**2)
    assert min(f) == pytest.approx(-0.0103911, abs=2e-4)
    assert (out / "landscape.png").is_file() and (out / "landscape.csv").is_file()


def test_landscape_refuses_a_multi_dimensional_problem(tmp_path):
    result = invoke("landscape", STIFF, "--range", "0:1:10", "--out", tmp_path / "l")
    assert result.exit_code == 2
    assert "one decision variable" in " ".join(result.stderr.split())
    assert not (tmp_path / "l").exists()


@pytest.mark.slow
def test_reproduce_paper_script_writes_every_figure(tmp_path):
    """examples/reproduce_paper.sh end to end (about 2.5 minutes on 2 cores)."""
    import os
    import shutil
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    assert shutil.which("trajopt", path=env["PATH"]), "the trajopt console script must be installed"
    subprocess.run(["bash", str(root / "examples/reproduce_paper.sh"), str(tmp_path / "paper")], check=True, env=env)
    figures = sorted(p.name for p in (tmp_path / "paper/figures").iterdir())
    documented = sorted(p.name for p in (root / "docs/figures/paper").iterdir())
    assert figures == documented and len(figures) == 11



@pytest.mark.slow  # end to end, several seconds: CI's slow job runs it
def test_sweep_refuses_a_second_over_and_names_an_unstable_point(tmp_path):
    r = invoke("sweep", STIFF, "--over", "system.stiffness=10,1000", "--over", "oracle.sigma=0.05,0.1",
               "--out", tmp_path / "a")
    assert r.exit_code == 2 and "--over given 2 times" in r.stderr and "trajopt study" in r.stderr
    assert not (tmp_path / "a").exists()
    # k = 1e5 is explicitly unstable at the file's dt: refused with the value named, or skipped and recorded
    r = invoke("sweep", STIFF, "--over", "system.stiffness=10,100000", "--repeats", "2", "--oracles", "fobg,zobg,aobg",
               "--set", "task.horizon=20", "--out", tmp_path / "b")
    assert r.exit_code == 2 and "system.stiffness = 100000" in r.stderr and "system.dt" in r.stderr
    out = tmp_path / "c"
    r = invoke("sweep", STIFF, "--over", "system.stiffness=10,100000", "--repeats", "2", "--oracles", "fobg,zobg,aobg",
               "--set", "task.horizon=20", "--skip-invalid", "--out", out)  # the printed table too, not only JSON
    assert r.exit_code == 0, r.output
    data = json.loads((out / "sweep.json").read_text())
    assert data["values"] == [10.0] and data["skipped"][0]["value"] == 100000.0 and "system.dt" in data["skipped"][0]["error"]
    assert "α aobg" in r.stdout and "skipped" in data["title"]
