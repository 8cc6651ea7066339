"""The closed-loop suite (problems/suite/, examples/studies/closed_loop_suite.toml, benchmarks/suite.py; #28 items
3-5). Default run (no compile): every task validates with [mpc], [plant] and [success] and states its success
predicate; the perturbations each task promises are on its plant (noise 0.005, mid-episode pushes, mass x1.5,
damping x0.1, plan soft and execute stiff); the finger model makes and breaks contact under mujoco.mj_step; the
reacher's goal pose puts the fingertip on the target; the study names every CPU task; the table's bootstrap interval
against a hand-enumerated case. Slow job: the suite study at 2 seeds and short episodes on the non-MJX tasks; a smoke
episode of each MJX task (marked mjx too)."""

from __future__ import annotations

import csv
import functools
import importlib.util
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trajopt.cli import app

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "problems" / "suite"
STUDY = ROOT / "examples" / "studies" / "closed_loop_suite.toml"
FILES = sorted(SUITE.glob("*.toml"))
MJX_TASKS = ("finger_spinner", "reacher", "shadow_hand")
GPU_SCALE = ("shadow_hand",)  # not in the CPU study
runner = CliRunner()


def task_param(path: Path):
    """A suite file as a test parameter: an MJX task's load compiles its MuJoCo model and imports MJX (seconds), so it
    is marked mjx (CI's mjx step); the tennis policy file's validation compiles its initial-state sampler and policy
    check (about 15 s on this host), so it is slow. The other tasks validate in milliseconds, in the default run."""
    marks = [pytest.mark.mjx] if path.stem in MJX_TASKS else [pytest.mark.slow] if path.stem == "tennis" else []
    return pytest.param(path, marks=marks, id=path.stem)


TASKS = [task_param(p) for p in FILES]


def needs_model(name: str) -> None:
    """Skip an MJX task when MuJoCo (or the package its model comes from) is absent."""
    if name in MJX_TASKS:
        pytest.importorskip("mujoco.mjx", reason="the MJX tasks need the [mjx] extra")
    if name == "reacher" and importlib.util.find_spec("gymnasium") is None:
        pytest.skip("the reacher task needs gymnasium (pip install -e '.[suite]')")


def load(name: str):
    needs_model(name)
    return _load(name)


@functools.lru_cache(maxsize=None)
def _load(name: str):
    """Each task's spec once per session (an MJX task's load compiles its MuJoCo model: about a second)."""
    from trajopt import spec

    return spec.load(str(SUITE / f"{name}.toml"))


def suite_module():
    spec = importlib.util.spec_from_file_location("suite_bench", ROOT / "benchmarks" / "suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_suite_has_its_tasks():
    assert {p.stem for p in FILES} == {"pendulum_swingup", "cartpole_swingup", "pushing_stiff", "pushing_soft_plan",
                                       "tennis", "finger_spinner", "reacher", "shadow_hand"}


@pytest.mark.parametrize("path", TASKS)
def test_every_task_validates_with_its_closed_loop_tables_and_states_success(path):
    s = load(path.stem)
    cl = s.closed_loop
    assert cl is not None and cl.mpc is not None and cl.plant is not None and cl.success is not None
    # the description states the success predicate with the table's own numbers (radius; hold where there is one)
    text = " ".join(s.description.split())
    assert "Success:" in text
    predicate = text[text.index("Success:"):]
    assert re.search(rf"\b{cl.success.radius:g}\b", predicate), (predicate, cl.success.radius)
    if cl.success.hold > 1:
        assert f"({cl.success.hold} steps)" in predicate, predicate
    # the control period in the description is the model's: replan_every x dt
    st = cl.mpc.settings
    assert st.replan_every <= st.horizon <= st.episode


@pytest.mark.parametrize("path", TASKS)
def test_every_plant_is_perturbed_as_its_description_says(path):
    s = load(path.stem)
    plant = s.closed_loop.plant.plant
    st = s.closed_loop.mpc.settings
    assert np.all(np.asarray(plant.state_noise) == 0.005)  # position noise sigma = 0.005, every task
    for d in plant.disturbances:  # pushes happen mid-episode, on a velocity coordinate
        assert 0 < d.at < st.episode and len(d.dx) == s.system.state_size
        n_pos = s.system.state_size // 2
        assert all(v == 0.0 for v in d.dx[:n_pos]) and any(v != 0.0 for v in d.dx[n_pos:])
    assert plant.disturbances or plant.system is not None or path.stem in ("shadow_hand",)


def test_the_perturbed_parameters_are_the_promised_ones():
    cart = load("cartpole_swingup")
    p, m = cart.closed_loop.plant.plant.system, cart.system
    assert (p.pole_mass, p.cart_damping, p.pole_damping) == (pytest.approx(1.5 * m.pole_mass),
                                                              pytest.approx(0.1 * m.cart_damping),
                                                              pytest.approx(0.1 * m.pole_damping))
    assert p.cart_mass == m.cart_mass
    stiff, soft = load("pushing_stiff"), load("pushing_soft_plan")
    assert stiff.system.stiffness == 1000.0 and stiff.closed_loop.plant.plant.system.stiffness == 1000.0
    assert soft.system.stiffness == 100.0 and soft.closed_loop.plant.plant.system.stiffness == 1000.0  # plan soft
    for s in (stiff, soft):
        assert s.closed_loop.plant.plant.system.mass == pytest.approx(0.15)  # payload x1.5 of the model's 0.1
        assert s.closed_loop.mpc.settings == stiff.closed_loop.mpc.settings  # the same episode, only the model differs


@pytest.mark.slow
def test_tennis_plant_bounces_less():
    tennis = load("tennis")
    assert tennis.system.restitution == 1.0 and tennis.closed_loop.plant.plant.system.restitution == 0.9


@pytest.mark.mjx
def test_the_finger_plans_soft_and_executes_stiff():
    s = load("finger_spinner")
    assert s.system.solref == (0.1, 1.0) and s.closed_loop.plant.plant.system.solref == (0.02, 1.0)


@pytest.mark.mjx  # needs mujoco (the [mjx] extra): CI's mjx step runs it, the default run has no mujoco
def test_the_finger_model_makes_and_breaks_contact_with_the_spinner():
    """mujoco.mj_step on the model file: a torque on the first joint for 0.4 s, then a small reverse torque; the tip
    hits the bar (contact), turns it, and swings away (no contact) while the damped spinner coasts to rest."""
    mujoco = pytest.importorskip("mujoco")
    m = mujoco.MjModel.from_xml_path(str(ROOT / "problems" / "models" / "finger_spinner.xml"))
    d = mujoco.MjData(m)
    assert (m.nq, m.nv, m.nu) == (3, 3, 2)
    contacts = []
    for t in range(200):
        d.ctrl[:] = [0.1, 0.0] if t < 40 else [-0.05, 0.0]
        mujoco.mj_step(m, d)
        contacts.append(d.ncon)
    first = next(t for t, c in enumerate(contacts) if c > 0)
    assert contacts[0] == 0 and first > 0  # starts apart
    assert any(c == 0 for c in contacts[first:])  # contact broken again
    assert d.qpos[2] > 0.01 and abs(d.qvel[2]) < 0.05  # the spinner was turned and is coming to rest
    names = {m.geom(g).name for g in range(m.ngeom) if m.geom_contype[g] or m.geom_conaffinity[g]}
    assert names == {"tip", "bar"}  # only the fingertip and the bar collide (a sphere-capsule pair, which MJX has)


@pytest.mark.mjx
def test_the_reacher_goal_puts_the_fingertip_on_the_target():
    mujoco = pytest.importorskip("mujoco")
    s = load("reacher")
    m = s.system.mj_model
    d = mujoco.MjData(m)
    goal = np.asarray(s.task.goal)
    d.qpos[:] = goal[:m.nq]
    mujoco.mj_forward(m, d)
    np.testing.assert_allclose(d.body("fingertip").xpos[:2], d.body("target").xpos[:2], atol=1e-12)
    assert s.system.model_source["package"] == "gymnasium" and s.system.model_source["version"]


def test_the_study_runs_every_cpu_task_with_a_gradient_planner_and_the_baselines():
    from trajopt.studies import load_study

    study = load_study(STUDY)
    assert study.verb == "mpc" and len(study.seeds) >= 10
    assert {Path(p).resolve() for p in study.problems} == {p.resolve() for p in FILES if p.stem not in GPU_SCALE}
    assert study.variants[0] == "grad" and {"mppi", "cem", "ps"} <= set(study.variants)


@pytest.mark.parametrize("path", [p for p in TASKS if p.values[0].stem not in MJX_TASKS])
def test_the_study_runs_every_method_and_the_papers_oracles_on_each_cpu_task(path):
    """Every method of the registry (but the optional extra's evosax, whose ES methods the suite does not run) is the
    method of a variant the study runs on the task, and the gradient method runs exact autodiff, FoBG, ZoBG and AoBG;
    a [skip] leaves out nothing on a hand-written task."""
    from trajopt.methods import METHODS
    from trajopt.studies import load_study

    study = load_study(STUDY)
    spec = load(path.stem)
    run = [spec.variants[v].method for v in study.variants if not study.skipped(path.stem, v)]
    assert set(study.variants) == {v for v in study.variants if not study.skipped(path.stem, v)}
    assert set(METHODS.names()) - {"evosax"} <= {m.name for m in run}
    assert {"exact", "fobg", "zobg", "aobg"} <= {m.oracle.name for m in run if m.name == "gradient"}


# --------------------------------------------------------------------------------------------- the table


def test_bootstrap_interval_of_two_seeds_is_the_enumerated_one():
    """Two seeds, one success: the resampled means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so the 2.5 % and
    97.5 % quantiles are 0 and 1. Three seeds, two successes: a resample has k successes with probability
    C(3, k) (2/3)^k (1/3)^(3-k) = 1/27, 6/27, 12/27, 8/27 for k = 0..3, so 3.7 % of the means are 0 (the 2.5 %
    quantile is 0; a 90 % interval's 5 % quantile would be 1/3) and 29.6 % are 1 (the 97.5 % quantile is 1). All
    successes give [1, 1]; the same values give the same interval."""
    bench = suite_module()
    assert bench.bootstrap_interval([0.0, 1.0]) == (0.0, 1.0)
    assert bench.bootstrap_interval([1.0, 1.0, 0.0]) == (0.0, 1.0)
    assert bench.bootstrap_interval([1.0, 1.0, 0.0], level=0.9)[0] == pytest.approx(1 / 3)
    assert bench.bootstrap_interval([1.0] * 10) == (1.0, 1.0)
    lo, hi = bench.bootstrap_interval([1.0] * 7 + [0.0] * 3)
    assert 0.3 < lo < 0.7 < hi <= 1.0 and (lo, hi) == bench.bootstrap_interval([1.0] * 7 + [0.0] * 3)


def test_table_rows_rank_a_blown_up_seed_last():
    bench = suite_module()

    def row(seed, cost, success, status="ok"):
        return {"problem": "p", "variant": "v", "seed": str(seed), "status": status, "closed_loop_cost": cost,
                "success": success, "forward_equivalents_per_step": "30.0", "plan_seconds_p50": "0.002",
                "plan_seconds_p95": "0.004", "realtime_factor": "5.0", "compile_seconds": "3", "run_seconds": "1",
                "error": ""}

    (r,) = bench.suite_rows([row(0, "1.0", "1.0"), row(1, "3.0", "0.0"), row(2, "", "", "non_finite")])
    assert r["cost_median"] == 3.0 and r["blown_up"] == 1 and r["cost_q25"] is None  # [1, 3, inf]: median 3
    assert r["success_rate"] == 0.5 and r["seeds"] == 3  # the blown-up seed has no success value
    assert (r["plan_p50_ms"], r["plan_p95_ms"], r["fse_per_step"]) == (2.0, 4.0, 30.0)
    assert "3 (1 of 3 blew up)" in bench.markdown([r])


# --------------------------------------------------------------------------------------------- slow

GIVEN_STEP_COSTS = "2.5,4"  # TRAJOPT_STEP_COSTS: no measurement (it compiles and times three programs per system)


@pytest.mark.slow
def test_the_suite_study_smoke_on_the_cpu_tasks(tmp_path, monkeypatch):
    """The shipped study's non-MJX tasks x its planners, 2 seeds, 50-step episodes with 3-step horizons and one method
    step per replan (no pushes: they come later than step 50): every cell runs, every seed's cost is finite, and
    benchmarks/suite.py's table has a row per cell."""
    from trajopt.studies import load_study

    monkeypatch.setenv("TRAJOPT_STEP_COSTS", GIVEN_STEP_COSTS)
    shipped = load_study(STUDY)
    problems = [str(p) for p in shipped.problems if Path(p).stem not in MJX_TASKS]
    smoke = tmp_path / "smoke.toml"
    smoke.write_text('verb = "mpc"\nproblems = ' + json.dumps(problems) + "\nvariants = " + json.dumps(list(shipped.variants))
                     + '\nseeds = 2\n[set]\n"mpc.episode" = 50\n"mpc.horizon" = 3\n"mpc.replan_every" = 3\n'
                     '"mpc.iterations" = 1\n"plant.disturbance" = []\n')
    out = tmp_path / "out"
    r = runner.invoke(app, ["study", str(smoke), "--out", str(out), "--json", "--quiet"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((out / "study.csv").open()))
    assert len(rows) == len(problems) * len(shipped.variants) * 2
    assert {row["status"] for row in rows} == {"ok"} and all(math.isfinite(float(row["closed_loop_cost"])) for row in rows)
    bench = suite_module()
    table = bench.suite_rows(rows)
    assert len(table) == len(problems) * len(shipped.variants)
    assert all(t["fse_per_step"] > 0 and t["realtime_factor"] > 0 for t in table)
    assert "| pendulum_swingup | grad |" in bench.table(out)


SMOKE = {  # one planner per MJX task: a few control steps, 2 seeds; predictive sampling with 4 samples (no gradient
    # through MJX to compile: the gradient planners' MJX programs take minutes to compile on a 2-core CPU)
    "finger_spinner": ("ps", ["mpc.episode=4", "mpc.horizon=3", "mpc.replan_every=2", "mpc.iterations=1",
                              "success.hold=2", "method.ps.samples=4",
                              "plant.disturbance=[{at = 2, dx = [0.0, 0.0, 0.0, 0.0, 0.0, -1.0]}]"]),
    "reacher": ("ps", ["mpc.episode=4", "mpc.horizon=3", "mpc.replan_every=2", "mpc.iterations=1", "success.hold=2",
                       "method.ps.samples=4", "plant.disturbance=[]"]),
    "shadow_hand": ("ps", ["mpc.episode=2", "mpc.horizon=2", "mpc.replan_every=1", "mpc.iterations=1",
                           "success.hold=1", "method.ps.samples=4"]),
}


HAND_OPT_IN = "TRAJOPT_SUITE_HAND"  # the Shadow hand's smoke episode compiles for about 5 CPU minutes (docs/suite.md)


@pytest.mark.slow
@pytest.mark.mjx
@pytest.mark.parametrize("name", MJX_TASKS)
def test_a_smoke_episode_of_each_mjx_task(name, tmp_path, monkeypatch):
    needs_model(name)
    if name == "shadow_hand" and os.environ.get(HAND_OPT_IN) != "1":
        pytest.skip(f"the Shadow hand's CPU smoke episode compiles for about 5 CPU minutes: set {HAND_OPT_IN}=1")
    monkeypatch.setenv("TRAJOPT_STEP_COSTS", GIVEN_STEP_COSTS)
    variant, sets = SMOKE[name]
    args = ["mpc", str(SUITE / f"{name}.toml"), "--variants", variant, "--seeds", "2", "--out", str(tmp_path / "run"),
            "--json", "--quiet"]
    for s in sets:
        args += ["--set", s]
    r = runner.invoke(app, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    entry = result["variants"][variant]
    assert entry["status"] == ["ok", "ok"] and all(math.isfinite(c) for c in entry["closed_loop_cost"])
    source = result["model_source"]
    if name == "finger_spinner":
        assert source["file"].endswith("finger_spinner.xml") and len(source["sha256"]) == 64
    else:
        assert source["package"] in ("gymnasium", "mujoco") and source["version"]
    X = np.load(tmp_path / "run" / "trajectory.npz")[f"{variant}/X"]
    episode = int(sets[0].split("=")[1])
    assert X.shape[:2] == (2, episode + 1) and np.all(np.isfinite(X))
    assert os.path.exists(tmp_path / "run" / "config.toml")


@pytest.mark.slow
@pytest.mark.mjx
def test_an_mjx_closed_loop_cell_outcome_travels_between_processes(tmp_path, monkeypatch):
    """A closed-loop study cell on an MJX task returns an outcome that pickles and unpickles (what a Ray worker's
    result does on its way to the driver): the finger's smoke episode as a study cell. Its plant's system holds a
    custom_vjp step, which travelled in the outcome and failed every MJX cell of the suite under --backend ray."""
    import pickle

    from trajopt.studies import expand, load_study
    from trajopt.studies.cells import CELL_OK, run_closed_loop_cell

    needs_model("finger_spinner")
    monkeypatch.setenv("TRAJOPT_STEP_COSTS", GIVEN_STEP_COSTS)
    variant, sets = SMOKE["finger_spinner"]
    study = tmp_path / "study.toml"
    study.write_text('verb = "mpc"\nproblems = ' + json.dumps([str(SUITE / "finger_spinner.toml")])
                     + f'\nvariants = ["{variant}"]\nseeds = 2\n[set]\n'
                     + "".join(f'"{k}" = {v}\n' for k, v in (s.split("=", 1) for s in sets)))
    cell = expand(load_study(study)).cells[0]
    outcome = run_closed_loop_cell(cell)
    assert outcome.status == CELL_OK, outcome.error
    back = pickle.loads(pickle.dumps(outcome))
    assert [r["closed_loop_cost"] for r in back.rows] == [r["closed_loop_cost"] for r in outcome.rows]
