"""Closed-loop studies (`verb = "mpc"`): every cell one `trajopt mpc` run of its problem's [mpc] table. Rows against a
direct `trajopt mpc` run of the same cell, compute per control step against an independent count (CEM: K x
population rollouts of H steps), resume, best.csv and the figures, the study keys' mapping onto [mpc] and the
refusals (exit 2, nothing written); the shipped budget study's dry run and the Ray backend in the slow job."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trajopt.cli import app
from trajopt.studies import expand, load_study

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()

# test_mpc_cli's small cart-pole, as written there (its CEM run at 2 iterations per replan is a cell here: with the
# session's compilation cache, whichever file runs second loads the other's programs): 6 plant steps, horizon 4, a
# replan every 2 steps, a plant with twice the cart friction and a push on the pole at step 3
PROBLEM = """
title = "small cart-pole MPC"
[system]
name = "cartpole"
force_limit = 10.0
[task]
horizon = 8
x0 = [0.0, 0.0, 0.0, 0.0]
goal = [0.0, 3.141592653589793, 0.0, 0.0]
wrap = [1]
Q = [1.0, 2.0, 0.1, 0.1]
R = [0.01]
Qf = [50.0, 50.0, 5.0, 5.0]
[solve]
seeds = 2
optimizer = { name = "adam", step = 0.3 }
[variants.exact_adam]
oracle = "exact"
[method.cem]
population = 10
[mpc]
episode = 6
horizon = 4
replan_every = 2
iterations = 2
variants = ["exact_adam", "cem"]
[plant]
cart_damping = 0.3
[[plant.disturbance]]
at = 3
dx = [0.0, 0.0, 0.0, 0.5]
[success]
radius = 10.0
positions = [0]
"""
H, POPULATION = 4, 10


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def study_text(problem: Path, body: str, verb: str = "mpc") -> str:
    return f'verb = "{verb}"\nproblems = ["{problem}"]\n' + body


GIVEN = {"backward": 2.5, "linearization": 4.0, "source": "given (test)"}


def given_step_costs(mp: pytest.MonkeyPatch) -> None:
    """`trajopt study` and `trajopt mpc` with the step costs GIVEN instead of measured on this host (a measurement
    compiles and times three programs: seconds; the measured path is the slow gradient test's)."""
    from trajopt import step_costs
    from trajopt.cli import mpc as mpc_cli
    from trajopt.compute import StepCosts

    def given(spec, problem, oracles=None, *, measuring=None):  # measuring: the CLI's status line, unused here
        return StepCosts.from_dict(GIVEN)

    mp.setattr(step_costs, "step_costs_for", given)
    mp.setattr(mpc_cli, "step_costs_for", given)


@pytest.fixture(scope="module")
def cem_study(tmp_path_factory):
    """CEM at two budgets (mpc.iterations 1 and 2) on the small cart-pole, 2 seeds, through `trajopt study`."""
    tmp = tmp_path_factory.mktemp("mpc_study")
    problem = write(tmp, "small.toml", PROBLEM)
    study = write(tmp, "budget.toml", study_text(problem, 'variants = ["cem"]\nseeds = 2\n[grid]\n'
                                                          '"mpc.iterations" = [1, 2]\n'))
    folder = tmp / "out"
    with pytest.MonkeyPatch.context() as mp:
        given_step_costs(mp)
        r = invoke("study", study, "--out", folder, "--json")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((folder / "study.csv").open()))
    return tmp, problem, study, folder, json.loads(r.stdout), rows


def test_rows_are_the_direct_trajopt_mpc_run_of_the_cell(cem_study, monkeypatch):
    tmp, problem, _, folder, summary, rows = cem_study
    given_step_costs(monkeypatch)
    assert summary["status"] == "complete" and summary["ran"] == 2 and summary["rows"] == 4
    direct = tmp / "direct"
    r = invoke("mpc", problem, "--variants", "cem", "--set", "mpc.iterations=2", "--seeds", "0,1", "--out", direct,
               "--json")
    assert r.exit_code == 0, r.output
    entry = json.loads((direct / "result.json").read_text())["variants"]["cem"]
    mine = [row for row in rows if row["mpc.iterations"] == "2"]
    assert [int(row["seed"]) for row in mine] == [0, 1]
    assert [float(row["closed_loop_cost"]) for row in mine] == entry["closed_loop_cost"]  # bit for bit
    assert [float(row["success"]) for row in mine] == entry["success"]
    assert [row["status"] for row in mine] == entry["status"]
    assert np.mean([float(row["rollouts_per_step"]) for row in mine]) == entry["compute_per_step"]["rollouts"]
    assert np.mean([float(row["forward_equivalents_per_step"]) for row in mine]) == \
        entry["compute_per_step"]["forward_equivalents"]
    cell = folder / "cells" / "small" / "cem" / "mpc.iterations=2"
    a, b = np.load(cell / "trajectory.npz"), np.load(direct / "trajectory.npz")
    for k in ("cem/X", "cem/U"):
        np.testing.assert_array_equal(a[k], b[k])
    # the cell's folder is a trajopt mpc run folder of this cell: its config names the variant and the budget
    import tomllib

    config = tomllib.loads((cell / "config.toml").read_text())
    assert config["mpc"]["variants"] == ["cem"] and config["mpc"]["iterations"] == 2 and config["mpc"]["seeds"] == [0, 1]


def test_compute_per_control_step_is_k_times_the_population(cem_study):
    *_, rows = cem_study
    for row in rows:
        K = int(row["mpc.iterations"])
        assert float(row["rollouts_per_step"]) == K * POPULATION  # CEM: one rollout per member, K steps per replan
        assert float(row["gradients_per_step"]) == 0.0
        assert float(row["forward_equivalents_per_step"]) == H * K * POPULATION  # horizon-H rollouts, no backward
        assert row["plan_failures"] == "0" and row["status"] == "ok"
    # the timing columns are the cell's (its first seed's), the same on each of its rows
    for K in ("1", "2"):
        cell = [row for row in rows if row["mpc.iterations"] == K]
        for col in ("plan_seconds_p50", "plan_seconds_max", "deadline_miss_rate", "realtime_factor", "run_seconds"):
            assert cell[0][col] == cell[1][col] != ""


def test_resume_reuses_the_finished_closed_loop_cells(cem_study):
    _, _, study, folder, _, rows = cem_study
    markers = sorted(folder.glob("cells/**/cell.json"))
    before = {p: p.read_bytes() for p in markers}
    r = invoke("study", study, "--out", folder, "--json")
    assert r.exit_code == 0, r.output
    again = json.loads(r.stdout)
    assert again["ran"] == 0 and again["skipped"] == 2
    assert {p: p.read_bytes() for p in markers} == before
    assert list(csv.DictReader((folder / "study.csv").open())) == rows


def test_best_table_figures_and_step_costs_are_written(cem_study):
    _, _, _, folder, _, rows = cem_study
    best = list(csv.DictReader((folder / "best.csv").open()))
    assert [b["mpc.iterations"] for b in best] == ["1", "2"] and {b["best"] for b in best} == {"cem"}
    for b in best:
        costs = sorted(float(row["closed_loop_cost"]) for row in rows if row["mpc.iterations"] == b["mpc.iterations"])
        assert float(b["closed_loop_cost_median"]) == pytest.approx((costs[0] + costs[1]) / 2, rel=1e-15)
        # both seeds succeed (radius 10 on the cart's position): Wilson's 95 % interval of 2/2 is [0.3424, 1]
        assert float(b["success_rate"]) == 1.0 and float(b["success_low"]) == pytest.approx(0.34238, abs=1e-5)
        assert float(b["success_high"]) == 1.0 and b["ties"] == "" and b["runner_up"] == ""
    for name in ("study_mpc_iterations.png", "study_mpc_iterations_compute.png"):
        assert (folder / name).read_bytes()[:4] == b"\x89PNG"
    page = (folder / "report.html").read_text()
    assert "Best variant at each grid point" in page and page.count("<img") == 2
    meta = json.loads((folder / "study.json").read_text())
    assert meta["study"]["verb"] == "mpc" and len(meta["step_costs"]) == 1
    recorded = {k: meta["step_costs"][0][k] for k in ("backward", "linearization", "source")}
    assert recorded == GIVEN and meta["step_costs"][0]["problems"] == ["small"]
    assert meta["step_costs"][0]["system"]["name"] == "cartpole" and meta["step_costs"][0]["n"] == 4
    for result in folder.glob("cells/**/result.json"):
        assert json.loads(result.read_text())["step_costs"] == recorded


# ------------------------------------------------------------------------------------------ the study file


def test_seeds_and_iterations_map_onto_the_mpc_table(tmp_path):
    problem = write(tmp_path, "small.toml", PROBLEM.replace("iterations = 2\n", "iterations = 2\nseeds = [3, 5]\n"))
    path = write(tmp_path, "s.toml", study_text(problem, 'variants = ["cem", "exact_adam"]\n'))
    study = load_study(path)
    assert study.seeds is None and study.iterations is None and study.closed_loop
    e = expand(study)
    for c in e.cells:  # the problem's own [mpc] seeds and iterations
        assert c.seeds == (3, 5) and c.iterations == 2 and c.verb == "mpc"
        assert f'mpc.variants=["{c.variant}"]' in c.overrides and f'solve.variants=["{c.variant}"]' in c.overrides
        assert not any(o.startswith(("mpc.seeds", "mpc.iterations", "solve.seeds")) for o in c.overrides)
        # as trajopt mpc: every variant's schedules span the K = 2 steps of one replan
        assert [o for o in c.overrides if o.startswith("solve.iterations")] == ["solve.iterations=2"]
        assert e.specs[c.index].solve.iterations == 2
    e = expand(load_study(path, seeds=(0, 7), iterations=3))  # --seeds / --iterations replace mpc.seeds / iterations
    for c in e.cells:
        mpc = e.specs[c.index].closed_loop.mpc
        assert c.seeds == (0, 7) and mpc.seeds == (0, 7) and c.iterations == 3 == mpc.settings.iterations
        assert e.specs[c.index].solve.iterations == 3
    # without [mpc] seeds: the problem's solve.seeds
    plain = write(tmp_path, "plain.toml", PROBLEM)
    e = expand(load_study(write(tmp_path, "p.toml", study_text(plain, 'variants = ["cem"]\n'))))
    assert e.cells[0].seeds == (0, 1)


def test_grid_and_set_reach_mpc_and_plant_keys_through_their_types(tmp_path):
    problem = write(tmp_path, "small.toml", PROBLEM)
    e = expand(load_study(write(tmp_path, "s.toml", study_text(problem, '''variants = ["cem"]
[set.mpc]
warm_start = "zero"
[grid]
"mpc.iterations" = "1,2"
"plant.cart_damping" = [1, 2]
"plant.scale.pole_mass" = [1.5]
"plant.state_noise" = [0, 0.01]
'''))))
    assert len(e.cells) == 2 * 2 * 1 * 2
    assert {v for c in e.cells for k, v in c.point if k == "mpc.iterations"} == {1, 2}  # integers, as [mpc] takes
    assert all(type(v) is float for c in e.cells for k, v in c.point if k == "plant.cart_damping")
    for c in e.cells:
        cl = e.specs[c.index].closed_loop
        point = dict(c.point)
        assert cl.mpc.settings.iterations == point["mpc.iterations"] and cl.mpc.settings.warm_start == "zero"
        plant = cl.plant.plant
        assert plant.system.cart_damping == point["plant.cart_damping"]
        assert plant.system.pole_mass == pytest.approx(0.1 * 1.5)  # the model's 0.1, scaled
        assert float(plant.state_noise) == point["plant.state_noise"]
        assert e.specs[c.index].system.cart_damping == 0.1  # the planner's model is untouched
    assert len({c.fingerprint for c in e.cells}) == len(e.cells)
    # the same problem and variant as a compare cell: another fingerprint (the verb is hashed for closed-loop cells)
    compare = expand(load_study(write(tmp_path, "c.toml", f'problems = ["{problem}"]\nvariants = ["cem"]\n')))
    closed = expand(load_study(write(tmp_path, "m.toml", study_text(problem, 'variants = ["cem"]\n'))))
    assert compare.cells[0].fingerprint != closed.cells[0].fingerprint


MPC = 'variants = ["cem"]\n'


@pytest.mark.parametrize("verb, body, key, words", [
    ("open", MPC, "verb", 'allowed: "compare"'),
    ("mpc", MPC + '[grid]\n"mpc.seeds" = [1, 2]\n', "grid.mpc.seeds", "the study's `seeds` key"),
    ("mpc", MPC + '[set]\n"mpc.variants" = ["cem"]\n', "set.mpc.variants", "the study's `variants` key"),
    ("mpc", MPC + '[set]\n"solve.seeds" = 3\n', "set.solve.seeds", "the study's `seeds` key"),
    ("mpc", MPC + '[grid]\n"solve.iterations" = [1, 2]\n', "grid.solve.iterations", "no closed-loop cell reads"),
    ("mpc", MPC + 'iterations = 2\n[grid]\n"mpc.iterations" = [1, 2]\n', "grid.mpc.iterations", "one of them"),
    ("compare", MPC + '[set]\n"mpc.horizon" = 3\n', "set.mpc.horizon", 'verb = "mpc"'),
    ("compare", MPC + '[grid]\n"plant.cart_damping" = [0.1, 1.0]\n', "grid.plant.cart_damping", 'verb = "mpc"'),
    ("compare", MPC + '[set]\n"success.radius" = 1.0\n', "set.success.radius", "closed-loop cells only"),
    ("mpc", MPC + '[set]\n"method.cem.sigma_init" = 1.0\n"oracle.samples" = 4\n', "set.oracle.samples",
     "reaches no variant"),
])
def test_bad_keys_are_refused_before_anything_runs(tmp_path, verb, body, key, words):
    problem = write(tmp_path, "small.toml", PROBLEM)
    path = write(tmp_path, "s.toml", study_text(problem, body, verb))
    out = tmp_path / "out"
    r = invoke("study", path, "--out", out)
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and f"{path}: {key}" in text and words in text, text
    assert not out.exists()


def test_iterations_option_against_a_budget_grid_and_a_problem_without_mpc_are_refused(tmp_path):
    problem = write(tmp_path, "small.toml", PROBLEM)
    path = write(tmp_path, "s.toml", study_text(problem, MPC + '[grid]\n"mpc.iterations" = [1, 2]\n'))
    r = invoke("study", path, "--iterations", "3", "--out", tmp_path / "out")
    assert r.exit_code == 2 and f"{path}: grid.mpc.iterations" in " ".join(r.output.split())
    bare = write(tmp_path, "bare.toml", PROBLEM[:PROBLEM.index("[mpc]")])
    path = write(tmp_path, "b.toml", study_text(bare, MPC))
    r = invoke("study", path, "--out", tmp_path / "out")
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and f"{path}: problems[0]: {bare} has no [mpc] table" in text, text
    # a plant key the system lacks: the problem's own validation names it (the problem file and the key)
    path = write(tmp_path, "k.toml", study_text(problem, MPC + '[grid]\n"plant.stifness" = [1.0, 2.0]\n'))
    r = invoke("study", path, "--out", tmp_path / "out")
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and f"{problem}: plant.stifness: unknown key" in text, text
    assert not (tmp_path / "out").exists()


def test_best_rows_rank_blown_up_seeds_last_and_state_ties():
    from trajopt.studies.figures import best_rows
    from trajopt.studies.file import Axis, StudySpec

    study = StudySpec(source="s.toml", name="s", title="s", description="", problems=(Path("p.toml"),),
                      variants=("a", "b", "c", "d"), variant_tables={}, seeds=(0, 1, 2), iterations=None,
                      grid=(Axis("mpc.iterations", (1, 2)),), verb="mpc")

    def rows(K, variant, costs, success=None, status="ok"):
        return [{"problem": "p", "variant": variant, "mpc.iterations": K, "seed": i, "status": status,
                 "closed_loop_cost": c, "success": None if success is None else success[i],
                 "forward_equivalents_per_step": 30.0 * K} for i, c in enumerate(costs)]

    table = (rows(1, "a", [1.0, 2.0, 3.0], [1.0, 1.0, 0.0])
             + rows(1, "b", [2.0, 2.0, None])      # one blown-up seed counts as +inf: median 2, a tie with a
             + rows(1, "c", [0.5, None, None])     # best survivor, but 2 of 3 seeds blew up: median +inf
             + rows(1, "d", [0.1, 0.1, 0.1], status="failed")  # a failed cell takes no part
             + rows(2, "a", [None, None, None]) + rows(2, "b", [5.0, 6.0, 7.0]))
    b1, b2 = best_rows(table, study)
    assert b1["best"] == "a" and b1["ties"] == "b" and b1["closed_loop_cost_median"] == 2.0
    assert (b1["closed_loop_cost_q25"], b1["closed_loop_cost_q75"]) == (1.5, 2.5)
    assert b1["runner_up"] == "c" and b1["runner_up_median"] is None and b1["within_iqr"] is None
    assert b1["seeds"] == 3 and b1["seeds_not_finite"] == 0 and b1["forward_equivalents_per_step"] == 30.0
    # 2 successes in 3: Wilson 95 % = (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n) = [0.2077, 0.9385]
    assert b1["success_rate"] == pytest.approx(2 / 3) and b1["success_low"] == pytest.approx(0.20765, abs=1e-5)
    assert b1["success_high"] == pytest.approx(0.93851, abs=1e-5)
    assert b2["best"] == "b" and b2["runner_up"] == "a" and b2["success_rate"] is None and b2["ties"] is None
    # b's IQR is [5.5, 6.5]: a variant with a median of 6.2 is within it (not a tie)
    b3 = best_rows(table + rows(2, "c", [6.2, 6.2, 9.0]), study)[1]
    assert b3["best"] == "b" and b3["within_iqr"] == "c" and b3["runner_up"] == "c"
    # no variant with a finite median at a point: no best
    b4 = best_rows(rows(1, "a", [None, None, None]), study)[0]
    assert b4["best"] is None and b4["closed_loop_cost_median"] is None


# --------------------------------------------------------------------------------------------- slow


def shipped_have_mpc() -> bool:
    import tomllib

    return all("mpc" in tomllib.loads((ROOT / "problems" / f).read_text())
               for f in ("pushing_stiff.toml", "pendulum_swingup.toml"))


@pytest.mark.slow
@pytest.mark.skipif(not shipped_have_mpc(), reason="pushing_stiff.toml and pendulum_swingup.toml have no [mpc] yet")
def test_the_shipped_budget_study_dry_runs(tmp_path):
    example = ROOT / "examples" / "studies" / "mpc_budget.toml"
    r = invoke("study", example, "--seeds", "2", "--dry-run", "--json", "--out", tmp_path / "out")
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)
    budgets = load_study(example).grid[0]
    assert budgets.key == "mpc.iterations" and len(budgets.values) >= 4
    variants = load_study(example).variants
    assert len(variants) >= 4 and len(plan["cells"]) == 2 * len(variants) * len(budgets.values)
    assert all(c["valid"] for c in plan["cells"])
    assert plan["study"]["seeds"] == [0, 1] and plan["rollouts"] > 0
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_gradient_cell_converts_backward_passes_with_the_recorded_step_costs(tmp_path, monkeypatch):
    monkeypatch.delenv("TRAJOPT_STEP_COSTS")  # measured on this host (tests/conftest.py gives them otherwise)
    problem = write(tmp_path, "small.toml", PROBLEM)
    study = write(tmp_path, "s.toml", study_text(problem, 'variants = ["exact_adam"]\niterations = 2\n'))
    r = invoke("study", study, "--out", tmp_path / "out", "--quiet")
    assert r.exit_code == 0, r.output
    costs = json.loads((tmp_path / "out" / "study.json").read_text())["step_costs"][0]
    assert costs["source"].startswith("measured: ")  # on this host, by trajopt.step_costs
    rho = costs["backward"]
    for row in csv.DictReader((tmp_path / "out" / "study.csv").open()):
        # exact gradient, one step = 1 rollout + 1 backward pass of H steps; K = 2 per replan
        assert float(row["rollouts_per_step"]) == 2.0 and float(row["gradients_per_step"]) == 2.0
        assert float(row["forward_equivalents_per_step"]) == pytest.approx(H * (2.0 + rho * 2.0), rel=1e-12)
        assert math.isfinite(float(row["closed_loop_cost"]))


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="the Ray backend needs the [ray] extra")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"TRAJOPT_X64": os.environ.get("TRAJOPT_X64", "1")}})
    yield ray
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # Ray starts its processes by fork+exec
def test_ray_backend_gives_the_local_closed_loop_table(cem_study, ray_local, tmp_path):
    from trajopt.studies import RayExecutor, prepare, read_table, run_study

    _, _, study_file, local_folder, _, _ = cem_study
    study = load_study(study_file)
    prepare(tmp_path / "ray", fresh=False)
    recorded = json.loads((local_folder / "study.json").read_text())["step_costs"][0]
    from trajopt.compute import StepCosts

    res = run_study(study, expand(study), tmp_path / "ray", RayExecutor(),
                    step_costs=lambda spec, problem, oracles=(): StepCosts.from_dict(recorded))
    assert res.status == "complete" and set(res.cell_status.values()) == {"ok"}
    timing = ("plan_seconds_p50", "plan_seconds_p95", "plan_seconds_max", "deadline_miss_rate", "realtime_factor",
              "run_seconds", "compile_seconds")
    local, remote = read_table(local_folder), read_table(tmp_path / "ray")
    assert [{k: v for k, v in r.items() if k not in timing} for r in local] == \
           [{k: v for k, v in r.items() if k not in timing} for r in remote]
    for cell in (tmp_path / "ray").glob("cells/**/cell.json"):  # each a whole trajopt mpc run folder
        assert {"config.toml", "metrics.jsonl", "result.json", "trajectory.npz"} <= {p.name for p in cell.parent.iterdir()}
