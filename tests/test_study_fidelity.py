"""Fidelity studies (`verb = "fidelity"`): every cell one `trajopt.fidelity.measure` call at a grid point, holding
every oracle.

The refusals need no compilation and no MuJoCo (they are refused while the study file is read, or while a non-MJX
problem is loaded): they run in the default job, each well under a second. The study itself runs on the smallest
MJX problem there is (tests/models/ball_drop.xml: a ball over a plane, horizon 2, tests/test_mjx_contact.py's) in
the mjx job: one module fixture runs a 2-point time-step grid once (exact and FoBG, 2 repeats, no fine reference:
2 cells x 3 compilations), which the row test compares, value for value, with `trajopt fidelity` on the same grid
(the command builds its grid itself), and the resume test reruns with one cell deleted, counting `measure` calls.
"""

import csv
import importlib.util
import json
import os
import shutil
import textwrap

import pytest
from typer.testing import CliRunner

from trajopt.cli import app

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BALL = os.path.join(ROOT, "tests", "models", "ball_drop.xml")
PUSHING = os.path.join(ROOT, "problems", "pushing_soft.toml")
HAS_MJX = importlib.util.find_spec("mujoco") is not None and importlib.util.find_spec("mujoco.mjx") is not None
runner = CliRunner()

# what differs between two runs of the same cell (timings), and what a study row adds to fidelity.csv's columns
TIMINGS = ("compile_seconds", "run_seconds")


def _invoke(args):
    result = runner.invoke(app, args)
    return result.exit_code, " ".join(result.output.split())


# --------------------------------------------------------------------------------------------- refusals (default run)


@pytest.mark.parametrize("body, key, words", [
    ('variants = ["exact"]\niterations = 5\n', "iterations", 'found int 5 with verb = "fidelity", allowed: none'),
    ('variants = ["exact"]\nbudget = 1000\n', "budget", 'found int 1000 with verb = "fidelity", allowed: none'),
    ('variants = ["exact", "nope"]\n', "variants[1]", "unknown oracle 'nope'"),
    ('variants = ["fd"]\n', "variants[0]", "finite differences are the reference"),
    ('variants = ["exact"]\n[grid]\ntimestep = [1e-3, 0.0]\n', "grid.timestep",
     "found float 0.0 (value 2 of the list), allowed: time steps > 0"),
    ('variants = ["exact"]\n[grid]\ntimestep = [-1e-3]\n', "grid.timestep", "allowed: time steps > 0"),
    ('variants = ["exact"]\n[grid]\nsolref = [[0.02, -1.0]]\n', "grid.solref", "allowed: [timeconst, dampratio]"),
    ('variants = ["exact"]\n[grid]\ntimestep = [1e-3]\n', "grid.timestep",
     "(system 'pushing'), allowed: problems over a system with an MJX time step"),
    ('variants = ["exact"]\n[grid]\n"system.timestep" = [0.01]\n', "grid.system.timestep", "grid axis `timestep`"),
    ('variants = ["exact"]\n[set]\n"system.substeps" = 2\n', "set.system.substeps", "grid axis `timestep`"),
    ('variants = ["exact"]\n[variant.exact]\noracle = "exact"\n', "variant", "allowed: none (`variants` are oracle"),
    ('variants = ["exact"]\nseeds = [0, 3]\n', "seeds", "allowed: a count R"),
    ('variants = ["exact"]\nfd_step = 0.5\n', "fd_step", "allowed: a number in (0, 0.1]"),
    ('variants = ["exact"]\nreference_timestep = 0\n', "reference_timestep", "allowed: \"auto\""),
    # a time step given that no problem here can take (pushing has no MJX time step): it was dropped without a word
    ('variants = ["exact"]\nreference_timestep = 1e-4\n', "reference_timestep",
     "found 0.0001, allowed: a study with a problem over a system with an MJX time step"),
])
def test_refused_before_anything_runs(tmp_path, body, key, words):
    """Exit 2, one line naming the study file and the key, nothing written: refused while the file is read (or,
    for the grid on a non-MJX problem, while its problem is loaded), before any cell is built or compiled."""
    study = tmp_path / "f.toml"
    study.write_text(f'verb = "fidelity"\nproblems = ["{PUSHING}"]\n' + body)
    out = tmp_path / "out"
    code, text = _invoke(["study", str(study), "--out", str(out)])
    assert code == 2, text
    assert f"{study}: {key}: " in text and words in text, text
    assert not out.exists()


def test_keys_of_a_fidelity_study_are_refused_in_other_verbs(tmp_path):
    study = tmp_path / "c.toml"
    study.write_text(f'problems = ["{PUSHING}"]\nvariants = ["exact"]\nreference_timestep = 1e-3\n')
    code, text = _invoke(["study", str(study), "--out", str(tmp_path / "out")])
    assert code == 2 and f"{study}: reference_timestep: found float 0.001 with verb = 'compare'" in text, text


def test_the_command_line_iterations_are_refused(tmp_path):
    study = tmp_path / "f.toml"
    study.write_text(f'verb = "fidelity"\nproblems = ["{PUSHING}"]\nvariants = ["exact"]\n')
    code, text = _invoke(["study", str(study), "--iterations", "3", "--out", str(tmp_path / "out")])
    assert code == 2 and f"{study}: iterations: found --iterations 3" in text, text


def test_the_dry_run_counts_a_cell_per_grid_point(tmp_path):
    """One cell per problem x grid point (not per oracle), each holding every oracle; its rollouts counted by hand:
    finite differences and their check 4 d (d = T m = T on soft pushing: one control, the pusher's force), exact 1, FoBG its samples
    x 2 repeats."""
    from trajopt import spec

    samples = spec.load(PUSHING, ["task.horizon=5", 'solve.oracles=["fobg"]']).oracles["fobg"].samples
    study = tmp_path / "f.toml"
    study.write_text(f'verb = "fidelity"\nproblems = ["{PUSHING}"]\nvariants = ["exact", "fobg"]\nseeds = 2\n'
                     '[grid]\n"task.horizon" = [5, 10]\n')
    result = runner.invoke(app, ["study", str(study), "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [c["label"] for c in report["cells"]] == [f"pushing_soft / fidelity / task.horizon={h}" for h in (5, 10)]
    assert report["cells"][0]["rollouts"] == 4 * 5 + 1 + 2 * samples
    assert report["rollouts"] == sum(4 * h + 1 + 2 * samples for h in (5, 10))


# --------------------------------------------------------------------------------------------- the study (mjx job)


def ball_problem(path) -> str:
    path.write_text(textwrap.dedent(f"""
        [system]
        name = "mjx"
        model = "{BALL}"

        [task]
        horizon = 2
        x0 = [0.0, 0.0]
        goal = [0.0, 1.0]
        Q = [0.0, 0.0]
        R = [0.0]
        Qf = [0.0, 3.0]
        u_init = 0.5
        """))
    return str(path)


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """The study run once: 2 cells (time steps 0.01, the file's, and 0.005: substeps 2), exact and FoBG with 2
    repeats, no fine reference."""
    if not HAS_MJX:
        pytest.skip("the [mjx] extra")
    base = tmp_path_factory.mktemp("fidelity_study")
    problem = ball_problem(base / "ball.toml")
    study = base / "f.toml"
    study.write_text(f'verb = "fidelity"\nproblems = ["{problem}"]\nvariants = ["exact", "fobg"]\nseeds = 2\n'
                     'reference_timestep = "none"\n[set]\n"oracle.fobg.samples" = 4\n[grid]\ntimestep = [0.01, 0.005]\n')
    out = base / "out"
    code, text = _invoke(["study", str(study), "--out", str(out)])
    assert code == 0, text
    return {"problem": problem, "study": study, "out": out, "base": base}


@pytest.mark.mjx
@pytest.mark.skipif(not HAS_MJX, reason="the [mjx] extra")
def test_rows_equal_the_fidelity_command(ran):
    """Each row of the study equals `trajopt fidelity` on the same grid (the command builds its own cells), value
    for value apart from the timings; the study's variant is the row's oracle."""
    from trajopt.studies import read_table

    out = ran["base"] / "command"
    code, text = _invoke(["fidelity", ran["problem"], "--timesteps", "0.01,0.005", "--oracles", "exact,fobg",
                          "--repeats", "2", "--reference-timestep", "none", "--set", "oracle.fobg.samples=4",
                          "--out", str(out)])
    assert code == 0, text
    with open(out / "fidelity.csv", newline="") as f:
        command = list(csv.DictReader(f))
    with open(ran["out"] / "study.csv", newline="") as f:
        study = list(csv.DictReader(f))
    assert len(command) == len(study) == 4
    key = lambda r: (float(r["timestep"]), r["oracle"])  # noqa: E731
    for c, s in zip(sorted(command, key=key), sorted(study, key=key)):
        assert s["variant"] == s["oracle"] and s["status"] == "ok" and s["horizon"] == "2"
        for k in c:
            if k not in TIMINGS and k != "timestep":
                assert s[k] == c[k], (k, s[k], c[k])
        assert float(s["timestep"]) == float(c["timestep"])
    rows = read_table(ran["out"])
    assert {r["steps"] for r in rows if r["timestep"] == 0.005} == {4}  # substeps 2: the control period is kept
    assert (ran["out"] / "fidelity_ball.png").is_file() and (ran["out"] / "report.html").is_file()
    cell = ran["out"] / "cells" / "ball" / "timestep=0.005"
    report = json.loads((cell / "fidelity.json").read_text())
    assert report["repeats"] == 2 and [r["oracle"] for r in report["rows"]] == ["exact", "fobg"]
    assert (cell / "fidelity.csv").read_text().splitlines()[0].startswith("point,solref,timestep,steps,oracle")


@pytest.mark.mjx
@pytest.mark.skipif(not HAS_MJX, reason="the [mjx] extra")
def test_a_rerun_computes_only_the_missing_cell(ran, monkeypatch):
    """Resume: with one cell's folder deleted, a rerun calls `trajopt.fidelity.measure` once (the other cell is
    read back from its cell.json and fidelity.json), and the table is the same apart from the timings."""
    from trajopt import fidelity

    before = (ran["out"] / "study.csv").read_text()
    calls = []
    real = fidelity.measure
    monkeypatch.setattr(fidelity, "measure", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    shutil.rmtree(ran["out"] / "cells" / "ball" / "timestep=0.01")
    code, text = _invoke(["study", str(ran["study"]), "--out", str(ran["out"])])
    assert code == 0 and "(1 run now, 1 reused)" in text, text
    assert len(calls) == 1 and calls[0][0][0]["timestep"] == 0.01
    code, text = _invoke(["study", str(ran["study"]), "--out", str(ran["out"])])
    assert code == 0 and "(0 run now, 2 reused)" in text and len(calls) == 1, text

    def strip(text):
        lines = [ln.split(",") for ln in text.splitlines()]
        drop = {lines[0].index(k) for k in TIMINGS}
        return [[v for i, v in enumerate(ln) if i not in drop] for ln in lines]

    assert strip((ran["out"] / "study.csv").read_text()) == strip(before)


@pytest.mark.mjx
@pytest.mark.skipif(not HAS_MJX, reason="the [mjx] extra")
@pytest.mark.parametrize("grid, key, words", [
    ("timestep = [0.003]", "grid.timestep", "does not divide the control period 0.01 s"),
    ("solref = [[0.005, 1.0]]", "grid.solref", "largest stable timestep here is 0.0025"),   # at the file's 0.01
])
def test_mjx_cells_are_refused_before_anything_compiles(tmp_path, grid, key, words):
    """A time step that does not divide the control period, a stiffness the time step cannot simulate: exit 2 at
    the grid's key, naming the problem, before a cell is built (no compilation: milliseconds)."""
    problem = ball_problem(tmp_path / "ball.toml")
    study = tmp_path / "f.toml"
    study.write_text(f'verb = "fidelity"\nproblems = ["{problem}"]\nvariants = ["exact"]\n[grid]\n{grid}\n')
    out = tmp_path / "out"
    code, text = _invoke(["study", str(study), "--out", str(out)])
    assert code == 2 and f"{study}: {key}: problem {problem}: " in text and words in text, text
    assert not out.exists()
