"""A closed-loop study's page: the suite table (`trajopt.studies.suite_table`, a pure function of the study's rows,
which benchmarks/suite.py prints too) against hand computations, and with several problems a figure per task (each
seed a dot, the median marked, a non-finite seed shown as such, the success rate with its bootstrap interval; the
title states the settings that made it). The default run draws from hand-written rows and result.json entries (no
compile); the slow job runs two tiny closed-loop problems through `trajopt study`."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from trajopt.studies import load_study, store
from trajopt.studies.figures import study_figures, study_html, task_figure, task_names
from trajopt.studies.suite_table import bootstrap_interval, markdown, suite_rows
from test_study_mpc import PROBLEM as SMALL_CARTPOLE  # tests/ is on the path (pytest's rootdir-relative import)

# two tiny closed-loop problems: test_study_mpc's small cart-pole (6 plant steps, horizon 4, CEM at 2 method steps per
# replan, 2 seeds; its cell's programs are the ones that file compiles), with the success radius on the cart's position
# that both seeds reach (10) and one that neither does (0.001)
RADIUS = "radius = 10.0"
assert RADIUS in SMALL_CARTPOLE
MPC = {"episode": 6, "horizon": 4, "replan_every": 2, "iterations": 2, "warm_start": True, "replans": 3, "dt": 0.05,
       "control_period": 0.1}
SETTINGS = "MPC: episode 6, horizon 4, replan every 2, 2 iterations per replan, 2 seeds, control period 100 ms"


def row(problem, variant, seed, cost, success, status="ok", p50=0.002, **more):
    """A study row (`MPC_ROW_COLUMNS`) as the study holds it: numbers, None where empty."""
    return {"problem": problem, "variant": variant, "seed": seed, "status": status, "closed_loop_cost": cost,
            "success": success, "rollouts_per_step": 20.0, "gradients_per_step": 0.0, "linearizations_per_step": 0.0,
            "forward_equivalents_per_step": 80.0 + seed, "plan_failures": 0, "plan_seconds_p50": p50,
            "plan_seconds_p95": 0.004, "plan_seconds_max": 0.005, "deadline_miss_rate": 0.0, "realtime_factor": 5.0,
            "run_seconds": 1.5, "compile_seconds": 3.0, "error": "boom" if status == "failed" else None} | more


# 4 seeds: costs 4, 1, 3, 2 (median 2.5, quartiles 1.75 and 3.25), successes 1, 1, 1, 0; and a cell whose seed 1 blew
# up (no cost, no success): costs 5, inf, 1, 2 rank as 1, 2, 5, inf (median 3.5), successes 0, 1, 0. The timing
# columns are the cell's first seed's (one seed timed; a study writes the same on each row: here not, to tell)
ROWS = [row("near", "cem", 0, 4.0, 1.0, p50=0.002), row("near", "cem", 1, 1.0, 1.0, p50=0.009),
        row("near", "cem", 2, 3.0, 1.0, p50=0.009), row("near", "cem", 3, 2.0, 0.0, p50=0.009),
        row("near", "ps", 0, 5.0, 0.0), row("near", "ps", 1, None, None, "non_finite"),
        row("near", "ps", 2, 1.0, 1.0), row("near", "ps", 3, 2.0, 0.0)]


def test_table_numbers_are_the_hand_computed_ones():
    """Median and quartiles (numpy's linear interpolation), the blown-up seed as +inf, the success rate over the seeds
    that record one, the percentile-bootstrap interval's ends, FSE per step (the mean), plan time (the first seed's).

    Bootstrap of 1, 1, 1, 0: a resample's mean is k/4 with k ~ Binomial(4, 3/4): P(0) = 1/256 = 0.4 % and P(k <= 1)
    = 13/256 = 5.1 %, so the 2.5 % quantile is 1/4; P(4) = 81/256 = 32 %, so the 97.5 % quantile is 1. Of 0, 1, 0:
    k/3 with k ~ Binomial(3, 1/3): P(0) = 8/27 = 30 % (the 2.5 % quantile is 0), P(3) = 1/27 = 3.7 % (the 97.5 %
    quantile is 1)."""
    cem, ps = suite_rows(ROWS)
    assert (cem["problem"], cem["variant"], cem["seeds"], cem["blown_up"]) == ("near", "cem", 4, 0)
    assert (cem["cost_median"], cem["cost_q25"], cem["cost_q75"]) == (2.5, 1.75, 3.25)
    assert cem["success_rate"] == 0.75 and cem["success_interval"] == (0.25, 1.0)
    assert cem["fse_per_step"] == 81.5 and cem["plan_p50_ms"] == 2.0 and cem["plan_p95_ms"] == 4.0
    assert (cem["realtime_factor"], cem["compile_seconds"], cem["run_seconds"]) == (5.0, 3.0, 1.5)
    assert ps["cost_median"] == 3.5 and ps["blown_up"] == 1 and ps["cost_q25"] is None and ps["cost_q75"] is None
    assert ps["success_rate"] == pytest.approx(1 / 3) and ps["success_interval"] == (0.0, 1.0)
    # the same numbers from study.csv's text (as csv reads it back: "" where empty)
    text = [{k: "" if v is None else str(v) for k, v in r.items()} for r in ROWS]
    assert suite_rows(text) == [cem, ps]
    md = markdown([cem, ps])
    assert "| near | cem | 2.5 [1.75, 3.25] | 0.75 [0.25, 1.00] | 81.5 | 2 / 4 | 5 | 3 | 1.5 |" in md
    assert "| near | ps | 3.5 (1 of 4 blew up) | 0.33 [0.00, 1.00] |" in md
    # a failed cell: its error on the row's one line (a message of two lines would cut the table in two)
    failed = suite_rows([row("far", "cem", s, None, None, "failed", error="TypeError: no\n  * at args[1]") for s in (0, 1)])
    assert markdown(failed).splitlines()[2:] == ["| far | cem | failed: TypeError: no * at args[1] | | | | | | |"]


def test_bootstrap_takes_an_explicit_seed_and_reproduces():
    values = [1.0] * 6 + [0.0] * 4
    assert bootstrap_interval(values, seed=7) == bootstrap_interval(values, seed=7)
    draws = {bootstrap_interval(values, resamples=50, seed=s) for s in range(6)}
    assert len(draws) > 1  # the seed is used: 50 resamples of 10 seeds differ between seeds
    (cell,) = suite_rows(ROWS[:4], seed=7)
    assert cell["success_interval"] == bootstrap_interval([1.0, 1.0, 1.0, 0.0], seed=7)


def test_grid_points_are_cells_of_their_own():
    rows = [row("near", "cem", 0, 1.0, 1.0, **{"mpc.horizon": 4}),
            row("near", "cem", 0, 9.0, 0.0, **{"mpc.horizon": 8})]
    a, b = suite_rows(rows, ["mpc.horizon"])
    assert (a["point"], a["cost_median"]) == ({"mpc.horizon": 4}, 1.0)
    assert (b["point"], b["cost_median"]) == ({"mpc.horizon": 8}, 9.0)
    assert "| near | cem | 8 | 9 [9, 9] |" in markdown([a, b], ["mpc.horizon"])


def write_problems(tmp: Path, names=("near", "far"), variants=("cem", "ps"), seeds: int = 4) -> Path:
    """The tiny problems (near: success radius 10, far: 0.001) and a closed-loop study of them."""
    for name, radius in zip(names, (10.0, 0.001)):
        (tmp / f"{name}.toml").write_text(SMALL_CARTPOLE.replace('"small cart-pole MPC"', f'"small cart-pole, {name}"')
                                          .replace(RADIUS, f"radius = {radius}"))
    study = tmp / "tasks.toml"
    study.write_text('verb = "mpc"\nproblems = ' + json.dumps([f"{n}.toml" for n in names])
                     + f"\nvariants = {json.dumps(list(variants))}\nseeds = {seeds}\n")
    return study


def _texts(fig) -> str:
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [t.get_text() for t in ax.texts] + [t.get_text() for t in ax.get_xticklabels()]
    return " | ".join(" ".join(t.split()) for t in out)  # a title wrapped to the figure's width: one line again


def test_task_figure_shows_every_seed_and_the_non_finite_one(tmp_path):
    study = load_study(write_problems(tmp_path))
    settings = [{"title": "small cart-pole, near", "mpc": MPC, "seeds": [0, 1]}] * 2
    fig = task_figure(ROWS, study, "near", settings)
    cost_ax, success_ax = fig.axes
    dots = [len(c.get_offsets()) for c in cost_ax.collections if type(c).__name__ == "PathCollection"]
    assert sorted(dots) == [1, 3, 4]  # cem's 4 seeds, ps's 3 finite ones and its blown-up one (an x on the top edge)
    bars = [seg for c in cost_ax.collections if type(c).__name__ == "LineCollection" for seg in c.get_segments()]
    assert sorted(seg[0][1] for seg in bars) == [2.5, 3.5]  # the medians (the blown-up seed counted as +inf)
    text = _texts(fig)
    assert "1 not finite" in text and SETTINGS in text and "near: small cart-pole, near MPC:" in text
    # the success panel: each cell's rate with its bootstrap interval as the error bar
    drawn = []
    for bar in success_ax.containers:  # an errorbar: its point, and its vertical segment from the interval's low end
        (segment,) = bar.lines[2][0].get_segments()
        drawn.append((float(bar.lines[0].get_xdata()[0]), float(bar.lines[0].get_ydata()[0]), *segment[:, 1]))
    assert drawn == [(0.0, 0.75, 0.25, 1.0), (1.0, pytest.approx(1 / 3), 0.0, 1.0)]
    # a cell whose every seed blew up has no median to draw; a failed cell says so
    gone = [row("near", "cem", s, None, None, "non_finite") for s in range(2)] + \
        [row("near", "ps", s, None, None, "failed") for s in range(2)]
    text = _texts(task_figure(gone, study, "near", settings))
    assert "2 not finite" in text and "median: not finite" in text and "failed" in text


def test_page_has_the_suite_table_and_a_figure_per_task(tmp_path):
    """write_outputs into a study folder written by hand (rows, study.json's cells, each ok cell's result.json)."""
    study = load_study(write_problems(tmp_path))
    folder = tmp_path / "out"
    rows = ROWS + [{**r, "problem": "far", "success": None if r["success"] is None else 0.0} for r in ROWS]
    cells = []
    for i, (problem, variant) in enumerate([("near", "cem"), ("near", "ps"), ("far", "cem"), ("far", "ps")]):
        cells.append({"index": i, "label": f"{problem}/{variant}", "problem": problem, "variant": variant, "point": {},
                      "folder": f"cells/{problem}/{variant}/default", "status": "ok"})
        cell = folder / cells[-1]["folder"]
        cell.mkdir(parents=True)
        mpc = {**MPC, "iterations": 2 if variant == "cem" else 3}
        (cell / "result.json").write_text(json.dumps({"verb": "mpc", "title": f"small cart-pole, {problem}",
                                                      "mpc": mpc, "seeds": [0, 1, 2, 3]}))
    meta = {"study": study.definition(), "status": "complete", "backend": "local", "cells": cells, "updated": "now",
            "step_costs": []}
    written = store.write_outputs(folder, study, rows, meta)
    names = task_names(["near", "far"])
    assert names == {"near": "task_near", "far": "task_far"}
    for name in names.values():
        assert f"{name}.png" in written and (folder / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    page = (folder / "report.html").read_text()
    assert page.count("<img") == 3 and page.count("<h3") == 2  # study_variants and one figure per task
    assert page.index("<h3 id='task_near'>near</h3>") < page.index("<h3 id='task_far'>far</h3>")
    assert "<td>2.5 [1.75, 3.25]</td><td>0.75 [0.25, 1.00]</td><td>81.5</td><td>2 / 4</td>" in page
    assert "<td>3.5 (1 of 4 blew up)</td><td>0.33 [0.00, 1.00]</td>" in page
    assert "<td>2.5 [1.75, 3.25]</td><td>0.00 [0.00, 0.00]</td>" in page  # far: every seed missed
    # the figure's title states the settings its cells ran with (a setting that differs between them: both values)
    fig = study_figures(rows, study, store.cell_settings(folder, meta))["task_far"]
    assert "MPC: episode 6, horizon 4, replan every 2, 2/3 iterations per replan, 4 seeds" in _texts(fig)


def test_one_problem_gets_the_table_but_no_task_section(tmp_path):
    study = load_study(write_problems(tmp_path, ("near",)))
    figures = study_figures(ROWS, study)
    assert list(figures) == ["study_variants"]
    meta = {"study": study.definition(), "status": "complete", "backend": "local", "cells": [], "updated": "now"}
    page = study_html(meta, ROWS, {"study_variants": b"png"})
    assert "Per task and variant" in page and "<h3" not in page and page.count("<img") == 1


def test_task_figure_names_are_safe_and_distinct():
    names = task_names(["near", "Near", "a/b", "a b"])
    assert len({n.casefold() for n in names.values()}) == 4 and names["near"] != "task_near"  # case-folded apart
    assert all("/" not in n and " " not in n and n.startswith("task_") for n in names.values())


# --------------------------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_a_two_task_study_writes_its_page(tmp_path, monkeypatch):
    """The two tiny problems through `trajopt study` (CEM, 2 seeds, 6-step episodes): a figure per task, and the
    page's table is study.csv's numbers (both seeds within 10 of the goal position on near, none within 0.001 on
    far)."""
    from typer.testing import CliRunner

    from trajopt.cli import app

    monkeypatch.setenv("TRAJOPT_STEP_COSTS", "2.5,4")
    study = write_problems(tmp_path, variants=("cem",), seeds=2)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["study", str(study), "--out", str(out), "--quiet"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((out / "study.csv").open()))
    assert [(x["problem"], x["success"]) for x in rows] == \
        [("near", "1.0"), ("near", "1.0"), ("far", "0.0"), ("far", "0.0")]
    page = (out / "report.html").read_text()
    assert (out / "task_near.png").is_file() and (out / "task_far.png").is_file() and page.count("<h3") == 2
    costs = sorted(float(x["closed_loop_cost"]) for x in rows if x["problem"] == "near")
    median = f"{(costs[0] + costs[1]) / 2:.4g}"
    assert f"<td>{median} [" in page and "<td>1.00 [1.00, 1.00]</td>" in page and "<td>0.00 [0.00, 0.00]</td>" in page
    assert all(math.isfinite(float(x["closed_loop_cost"])) for x in rows)
