"""Compare studies under a compute budget (#25 item 0: "studies take a budget too"): the study key ``budget`` (a
number, or a list: the grid axis ``budget``) and ``trajopt study --budget``.

* Each cell is ``trajopt compare PROBLEM --budget B --variants V`` bit for bit (controls, costs, spend, iterations,
  where iLQR stopped), the step costs given by TRAJOPT_STEP_COSTS (ρ_b = 2, ρ_l = 3) so that nothing is measured.
* The rows' ``budget`` and ``forward_equivalents`` against counts made by hand: exact gradients cost T (1 + ρ_b) =
  90 FSE a step at T = 30, so a budget of 200 is floor(200 / 90) = 2 steps, 180 FSE. (The two budgets, 190 and
  200, give the fixed-cost variants the same steps: one compiled program for both cells.)
* A resumed study keeps the step costs it recorded (its cells are reused even when TRAJOPT_STEP_COSTS changed).
* Refusals (exit 2, one line naming the study file and the key, nothing written): bad values, ``budget`` with
  ``iterations``, keys the budget sets, a closed-loop study's budget, a variant whose one step is over the budget.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trajopt.cli import app
from trajopt.studies import load_study, read_table
from trajopt.tomlio import SpecError

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
T, RHO_B, RHO_L = 30, 2.0, 3.0
STEP_COSTS = f"{RHO_B:g},{RHO_L:g}"

# a pendulum swing-up from rest, 30 steps of 0.05 s: iLQR needs several steps, so a small budget stops it
PROBLEM = f"""
[system]
name = "pendulum"
dt = 0.05
[task]
horizon = {T}
x0 = [0.0, 0.0]
goal = [3.141592653589793, 0.0]
Q = [1.0, 1.0]
R = [1.0]
Qf = [20.0, 20.0]
u_init = 0.1
[solve]
iterations = 500
seeds = 2
optimizer = {{ name = "adam", step = 0.1 }}
[oracle]
samples = 2
sigma = 0.1
"""
VARIANTS = ("exact", "fobg", "ilqr")
BUDGETS = (190, 200)


def files(folder: Path, body: str, problem: str = PROBLEM, name: str = "s.toml") -> tuple[Path, Path]:
    """(the problem file, a study file ``name`` of ``body`` that runs it), written into ``folder``."""
    path = folder / "pendulum.toml"
    path.write_text(problem)
    (folder / name).write_text(f'problems = ["{path}"]\n' + body)
    return path, folder / name


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def budget_study(tmp_path_factory):
    """exact, FoBG (2 samples) and iLQR at budgets 190 and 200 FSE per seed, 2 seeds, through `trajopt study`."""
    tmp = tmp_path_factory.mktemp("budget_study")
    problem, study = files(tmp, f"variants = {list(VARIANTS)!r}\nseeds = 2\nbudget = {list(BUDGETS)!r}\n"
                           .replace("'", '"'), name="budget.toml")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRAJOPT_STEP_COSTS", STEP_COSTS)
        r = invoke("study", study, "--out", tmp / "out", "--json")
    assert r.exit_code == 0, r.output
    return tmp, problem, study, tmp / "out", json.loads(r.stdout), read_table(tmp / "out")


def test_a_cell_is_compare_with_the_same_budget_bit_for_bit(budget_study, monkeypatch):
    tmp, problem, _, folder, summary, _ = budget_study
    assert summary["status"] == "complete" and summary["ran"] == len(VARIANTS) * len(BUDGETS)
    monkeypatch.setenv("TRAJOPT_STEP_COSTS", STEP_COSTS)
    direct = tmp / "direct"
    r = invoke("compare", problem, "--variants", ",".join(VARIANTS), "--budget", BUDGETS[1], "--out", direct, "-q")
    assert r.exit_code == 0, r.output
    compare = json.loads((direct / "result.json").read_text())
    lines = [json.loads(line) for line in (direct / "metrics.jsonl").read_text().splitlines()]
    for v in VARIANTS:
        cell = folder / "cells" / "pendulum" / v / f"budget={BUDGETS[1]}"
        mine = json.loads((cell / "result.json").read_text())["variants"][v]
        theirs = compare["variants"][v]
        for key in ("status", "final_cost", "best_cost", "iterations", "stopped", "rollouts", "gradients",
                    "linearizations", "forward_equivalents_per_seed", "ran_once"):
            assert mine[key] == theirs[key], (v, key, mine[key], theirs[key])
        a, b = np.load(cell / "trajectory.npz"), np.load(direct / "trajectory.npz")
        for k in ("U", "X"):
            np.testing.assert_array_equal(a[f"{v}/{k}"], b[f"{v}/{k}"])
        cell_lines = [json.loads(line) for line in (cell / "metrics.jsonl").read_text().splitlines()]
        assert [(d["seed"], d["iteration"], d["cost"], d["forward_equivalents"]) for d in cell_lines] == \
            [(d["seed"], d["iteration"], d["cost"], d["forward_equivalents"]) for d in lines if d["variant"] == v]
    # what makes this a budget test: iLQR is stopped by the budget, not by its iteration count
    assert compare["variants"]["ilqr"]["stopped"] == ["budget", "budget"]
    assert compare["variants"]["ilqr"]["iterations"] > 1


def test_rows_carry_the_budget_and_the_spend_counted_by_hand(budget_study):
    _, _, _, folder, _, rows = budget_study
    header = list(rows[0])
    assert header.index("budget") == header.index("variant") + 1
    assert header.index("forward_equivalents") == header.index("gradients") + 1
    by = {(r["variant"], int(r["budget"]), int(r["seed"])): r for r in rows}
    assert len(by) == len(rows) == len(VARIANTS) * len(BUDGETS) * 2
    for budget in BUDGETS:
        for seed in (0, 1):
            # exact gradients: one rollout and one backward pass a step, T (1 + rho_b) = 90 FSE; floor(B / 90) = 2
            r = by[("exact", budget, seed)]
            assert (int(r["rollouts"]), int(r["gradients"]), float(r["forward_equivalents"])) == (2, 2, 180.0)
            # FoBG with 2 samples: two rollouts and two backward passes a step, 180 FSE; floor(B / 180) = 1 step
            r = by[("fobg", budget, seed)]
            assert (int(r["rollouts"]), int(r["gradients"]), float(r["forward_equivalents"])) == (2, 2, 180.0)
            # iLQR (here 2 rollouts and 1 linearisation a step, T (2 + rho_l) = 150 FSE) runs until its spend
            # reaches the budget: at most one step over
            r = by[("ilqr", budget, seed)]
            assert int(r["gradients"]) == 0 and budget <= float(r["forward_equivalents"]) < budget + 150
    meta = json.loads((folder / "study.json").read_text())
    assert meta["study"]["budget"] == list(BUDGETS) and meta["study"]["iterations"] is None
    [entry] = meta["step_costs"]  # one system, taken once for the study
    assert (entry["backward"], entry["linearization"], entry["problems"]) == (RHO_B, RHO_L, ["pendulum"])
    assert (folder / "study_budget.png").is_file()
    page = (folder / "report.html").read_text()
    assert "a budget of 190, 200 forward-step equivalents per seed" in page and "median FSE spent" in page
    assert "backward = 2, linearisation = 3 forward steps (given by TRAJOPT_STEP_COSTS)" in page


def test_a_resumed_study_keeps_its_recorded_step_costs(budget_study, monkeypatch):
    _, _, study, folder, _, rows = budget_study
    # other ratios now: the recorded ones still set the cells' iterations, so every cell is reused
    monkeypatch.setenv("TRAJOPT_STEP_COSTS", "5,5")
    r = invoke("study", study, "--out", folder, "--json")
    assert r.exit_code == 0, r.output
    again = json.loads(r.stdout)
    assert (again["ran"], again["skipped"]) == (0, len(VARIANTS) * len(BUDGETS))
    assert read_table(folder) == rows


def test_the_budget_option_replaces_the_files_iterations(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAJOPT_STEP_COSTS", STEP_COSTS)
    _, study = files(tmp_path, 'variants = ["exact"]\nseeds = 2\niterations = 3\n')
    r = invoke("study", study, "--budget", "1000", "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    dry = json.loads(r.stdout)
    assert dry["study"]["budget"] == [1000] and dry["study"]["iterations"] is None
    [cell] = dry["cells"]
    assert cell["iterations"] == 11 and cell["folder"].endswith("exact/budget=1000")
    # and --iterations replaces a file's budget
    _, study = files(tmp_path, 'variants = ["exact"]\nbudget = 1000\n', name="b.toml")
    spec = load_study(study, iterations=4)
    assert spec.budget is None and spec.iterations == 4 and spec.grid == ()
    spec = load_study(study)
    assert spec.budget == (1000,) and spec.iterations is None and [a.key for a in spec.grid] == ["budget"]


def test_one_budget_draws_the_variants_figure_and_a_list_its_axis(tmp_path):
    from trajopt.studies.figures import study_figures

    _, one = files(tmp_path, 'variants = ["exact"]\nbudget = 1000\n')
    _, two = files(tmp_path, 'variants = ["exact"]\nbudget = [1000, 3000]\n', name="two.toml")
    rows = [{"problem": "pendulum", "variant": "exact", "budget": b, "seed": 0, "status": "ok", "final_cost": 1.0,
             "initial_cost": 2.0} for b in (1000, 3000)]
    figures = study_figures(rows[:1], load_study(one))
    assert list(figures) == ["study_variants"]  # the title (wrapped to the figure's width) states the budget
    assert "[budget: 1000 forward-step equivalents per seed]" in \
        figures["study_variants"]._suptitle.get_text().replace("\n", " ")
    figures = study_figures(rows, load_study(two))
    assert list(figures) == ["study_budget"]
    ax = figures["study_budget"].axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "budget (forward-step equivalents per seed)"


def test_a_system_whose_step_costs_cannot_be_measured_leaves_its_cells_failed_with_the_reason(tmp_path):
    from trajopt.studies import expand, with_budget

    _, study = files(tmp_path, 'variants = ["exact", "fobg"]\nbudget = 1000\n')
    spec = load_study(study)
    calls = []

    def broken(spec, problem, oracles=()):
        calls.append(spec.name)
        raise RuntimeError("no timer on this host")

    expansion = with_budget(spec, expand(spec), measure=broken)
    assert len(calls) == 1  # once per system, not per cell
    assert [c.iterations for c in expansion.cells] == [0, 0] and not expansion.specs and not expansion.step_costs
    for c in expansion.cells:
        assert c.error.endswith("budget: the step costs of its system could not be measured on this host: "
                                "RuntimeError: no timer on this host"), c.error


BAD = [
    ("budget = 0.5", "budget", "found float 0.5"),
    ("budget = 1e13", "budget", f"found float {1e13!r}"),
    ('budget = "100"', "budget", "found str '100'"),
    ("budget = true", "budget", "found bool True"),
    ("budget = []", "budget", "found list []"),
    ("budget = [100, 100.0]", "budget", "found the value 100 twice (values 1 and 2)"),
    ("budget = [100, -1]", "budget", "found int -1 (value 2 of the list)"),
    ("budget = 100\niterations = 5", "iterations", "found int 5 with `budget`"),
    ('budget = 100\n[grid]\n"variants.exact.iterations" = [1, 2]', "grid.variants.exact.iterations",
     "which the study's `budget` sets"),
    ('budget = 100\n[set]\n"variants.exact.iterations" = 2', "set.variants.exact.iterations",
     "which the study's `budget` sets"),
    ("[grid]\nbudget = [100, 200]", "grid.budget", "the study's own top-level `budget` key"),
]


@pytest.mark.parametrize("body,key,words", BAD)
def test_bad_budgets_are_refused_before_anything_runs(tmp_path, body, key, words):
    _, study = files(tmp_path, 'variants = ["exact"]\n' + body + "\n")
    with pytest.raises(SpecError) as e:
        load_study(study)
    assert e.value.source == str(study) and e.value.key == key and words in e.value.message, str(e.value)
    out = tmp_path / "out"
    r = invoke("study", study, "--out", out)
    assert r.exit_code == 2 and f"{study}: {key}: " in r.stderr and words in r.stderr, r.stderr
    assert not out.exists()


def test_a_closed_loop_study_refuses_a_budget(tmp_path):
    for body, args in (("budget = 100\n", ()), ("", ("--budget", "100"))):
        _, study = files(tmp_path, 'verb = "mpc"\nvariants = ["exact"]\n' + body,
                         PROBLEM + "[mpc]\nepisode = 4\nhorizon = 3\n")
        out = tmp_path / "out"
        r = invoke("study", study, *args, "--out", out)
        assert r.exit_code == 2 and f"{study}: budget: " in r.stderr and "mpc.iterations" in r.stderr, r.stderr
        assert not out.exists()


def test_both_options_are_refused(tmp_path):
    _, study = files(tmp_path, 'variants = ["exact"]\n')
    r = invoke("study", study, "--budget", "100", "--iterations", "3", "--out", tmp_path / "out")
    assert r.exit_code == 2 and "--budget or --iterations, not both" in r.stderr
    assert not (tmp_path / "out").exists()


def test_a_variant_over_the_budget_is_refused_before_any_cell_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAJOPT_STEP_COSTS", STEP_COSTS)
    # FoBG with 2 samples costs 180 FSE a step: 1000 admits it, 150 does not (exact, 90 a step, fits both)
    problem, study = files(tmp_path, 'variants = ["exact", "fobg"]\nbudget = [1000, 150]\n')
    out = tmp_path / "out"
    r = invoke("study", study, "--out", out)
    assert r.exit_code == 2, r.output
    line = r.stderr.strip()
    assert line.startswith(f"error: {study}: budget: found 150, allowed: at least one step of every variant ('fobg' "
                           "spends 180 forward-step equivalents per step)"), line
    assert str(problem) in line and "\n" not in line
    assert not out.exists()


@pytest.mark.parametrize("quiet", [False, True])
def test_a_budget_study_measures_with_the_status_line_unless_quiet(tmp_path, monkeypatch, quiet):
    """`trajopt study` measures each system's step costs (once per system, before its cells) with the status line that
    `trajopt compare` shows on a terminal while a measurement runs (minutes on a large MJX model), and without it
    under --quiet or --json. The measurement is replaced by one that records what it was given."""
    from trajopt import step_costs
    from trajopt.compute import StepCosts

    seen = []

    def measured(spec, problem, oracles=None, *, measuring=None):
        seen.append(measuring)
        return StepCosts(RHO_B, RHO_L, "measured by the test")

    monkeypatch.delenv("TRAJOPT_STEP_COSTS", raising=False)
    monkeypatch.setattr(step_costs, "step_costs_for", measured)
    _, study = files(tmp_path, 'variants = ["exact"]\nseeds = 1\nbudget = 200\n', name="b.toml")
    r = invoke("study", study, "--out", tmp_path / "out", *(["--quiet"] if quiet else []))
    assert r.exit_code == 0, r.output
    assert len(seen) == 1 and (seen[0] is None) is quiet, seen
