"""`trajopt mpc`: the run folder, the table's numbers against the realised trajectory, and bad input refused (exit 2,
nothing written) before anything compiles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trajopt.cli import app

ROOT = Path(__file__).resolve().parents[1]
SMALL = """
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
optimizer = { name = "adam", step = 0.3, schedule = "cosine" }
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


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mpc")
    problem = tmp / "small.toml"
    problem.write_text(SMALL)
    out = tmp / "run"
    res = CliRunner().invoke(app, ["mpc", str(problem), "--out", str(out), "--json"])
    return problem, out, res


def test_the_run_folder_holds_every_file_and_the_numbers_agree(run):
    problem, out, res = run
    assert res.exit_code == 0, res.output
    for name in ("config.toml", "metrics.jsonl", "result.json", "trajectory.npz", "realised.png",
                 "closed_loop_cost.png", "plan_time.png"):
        assert (out / name).is_file(), name
    result = json.loads((out / "result.json").read_text())
    assert result["verb"] == "mpc" and result["seeds"] == [0, 1]
    assert result["mpc"] == {"episode": 6, "horizon": 4, "replan_every": 2, "iterations": 2, "warm_start": "hold",
                             "replans": 3, "dt": 0.02, "control_period": 0.04}
    assert result["plant"]["overrides"] == {"cart_damping": 0.3}
    assert result["plant"]["disturbances"] == [{"at": 3, "dx": [0.0, 0.0, 0.0, 0.5]}]
    traj = np.load(out / "trajectory.npz")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for name, entry in result["variants"].items():
        X, U = traj[f"{name}/X"], traj[f"{name}/U"]
        assert X.shape == (2, 7, 4) and U.shape == (2, 6, 1)
        mine = [r for r in rows if r["variant"] == name]
        assert len(mine) == 2 * 7  # seeds x (N + 1) plant steps
        for r in mine:  # metrics.jsonl's states are the trajectory file's
            np.testing.assert_array_equal(r["x"], X[r["seed"], r["step"]])
        # the closed-loop cost is the sum of the rows' stage costs and the terminal cost
        for i in range(2):
            total = sum(r["stage_cost"] for r in mine if r["seed"] == i)
            np.testing.assert_allclose(entry["closed_loop_cost"][i], total, rtol=1e-12)
        replans = [r for r in mine if r.get("replan")]
        assert [r["step"] for r in replans if r["seed"] == 0] == [0, 2, 4]
        assert entry["compute_per_step"]["rollouts"] == np.mean([r["rollouts"] for r in replans])
    assert result["variants"]["cem"]["compute_per_step"]["rollouts"] == 2 * 10  # K x population
    assert result["variants"]["exact_adam"]["compute_per_step"]["gradients"] == 2
    assert result["variants"]["cem"]["success"] == [1.0, 1.0]  # radius 10 on the cart's position


def test_a_variants_schedule_spans_the_steps_of_one_replan(run):
    """The method restarts at every replan, so a decaying step schedule spans K = mpc.iterations steps (not the file's
    solve.iterations), and the resolved config says so."""
    import tomllib

    problem, out, res = run
    config = tomllib.loads((out / "config.toml").read_text())
    assert config["variants"]["exact_adam"]["optimizer"]["decay_steps"] == 2
    assert config["solve"]["iterations"] == 2


def test_settings_trajopt_mpc_does_not_read_are_refused(run, tmp_path):
    problem, out, res = run
    for item in ("solve.iterations=50", "variants.exact_adam.iterations=9", "solve.seeds=3"):
        bad = CliRunner().invoke(app, ["mpc", str(problem), "--set", item, "--out", str(tmp_path / "x")])
        assert bad.exit_code == 2 and "not read by trajopt mpc" in " ".join(bad.output.split()), bad.output
        assert not (tmp_path / "x").exists()


def test_report_of_a_closed_loop_folder_says_which_command_reports_it(run, tmp_path):
    """`trajopt report` reads compare and solve folders; on a closed-loop one it said "'iterations' is None, expected
    an integer", as if the folder were broken. It names what the folder is and where its report comes from."""
    problem, out, res = run
    bad = CliRunner().invoke(app, ["report", str(out), "--output", str(tmp_path / "r.html")])
    text = " ".join(bad.output.split())
    assert bad.exit_code == 2 and "a closed-loop run (trajopt mpc)" in text and "--report" in text, bad.output
    assert not (tmp_path / "r.html").exists()


def test_config_toml_reruns_the_same_closed_loop(run, tmp_path):
    problem, out, res = run
    again = CliRunner().invoke(app, ["mpc", str(out / "config.toml"), "--out", str(tmp_path / "again"), "--json"])
    assert again.exit_code == 0, again.output
    first = np.load(out / "trajectory.npz")
    second = np.load(tmp_path / "again" / "trajectory.npz")
    for k in first.files:
        np.testing.assert_array_equal(first[k], second[k])


@pytest.mark.parametrize("edit, key, words", [
    ("[mpc]\nepisode = 6\nhorizon = 4\nreplan_every = 5", "mpc.replan_every", "1..4"),
    ("[mpc]\nepisode = 6\nhorizon = 4\nwarm_start = \"roll\"", "mpc.warm_start", "hold, zero, initial"),
    ("[mpc]\nepisode = 6", "mpc.horizon", "missing"),
    ("[mpc]\nepisode = 6\nhorizon = 4\n[plant]\nstifness = 3.0", "plant.stifness", "unknown key"),
    ("[mpc]\nepisode = 6\nhorizon = 4\n[plant]\ndt = 0.01", "plant.dt", "control period"),
    ("[mpc]\nepisode = 6\nhorizon = 4\n[plant]\nstate_noise = -0.1", "plant.state_noise", ">= 0"),
    ("[mpc]\nepisode = 6\nhorizon = 4\n[[plant.disturbance]]\nat = 9\ndx = [0.0, 0.0, 0.0, 1.0]",
     "plant.disturbance[0].at", "0..6"),
    ("[mpc]\nepisode = 6\nhorizon = 4\n[[plant.disturbance]]\nat = 2\ndx = [1.0]", "plant.disturbance[0].dx",
     "4 finite numbers"),
    ("[mpc]\nepisode = 6\nhorizon = 4\n[success]\nradius = 0.0", "success.radius", "> 0"),
])
def test_bad_closed_loop_tables_are_refused_before_any_work(tmp_path, edit, key, words):
    base = SMALL[:SMALL.index("[mpc]")]
    problem = tmp_path / "bad.toml"
    problem.write_text(base + edit + "\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["mpc", str(problem), "--out", str(out)])
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert f"{problem}: {key}" in text and words in text, text
    assert not out.exists()


def test_a_value_refused_because_of_an_override_names_the_override(tmp_path):
    """pendulum_swingup's success.hold = 50 fits its 250-step episode: --set mpc.episode=20 is refused at
    success.hold, which the user did not touch; the message says which override it follows from (not --iterations,
    which alone loads), and a file refused on its own says nothing of the kind."""
    swingup = ROOT / "problems" / "pendulum_swingup.toml"
    for verb, more in (("mpc", ["--iterations", "3"]), ("validate", ["--set", "solve.seeds=2"])):
        res = CliRunner().invoke(app, [verb, str(swingup), *more, "--set", "mpc.episode=20"])
        message = " ".join(res.output.split())
        assert res.exit_code == 2 and "success.hold: found 50, allowed: an integer in 1..21 (the file alone loads: " \
            "this follows from mpc.episode=20)" in message, res.output
    bad = tmp_path / "bad.toml"
    bad.write_text(swingup.read_text().replace("hold = 50", "hold = 5000"))
    res = CliRunner().invoke(app, ["mpc", str(bad), "--set", "mpc.episode=20"])
    assert res.exit_code == 2 and "success.hold: found 5000" in res.output and "file alone" not in res.output


def test_a_variant_that_cannot_run_closed_loop_is_refused_before_any_work(tmp_path):
    problem = tmp_path / "p.toml"
    problem.write_text(SMALL.replace('variants = ["exact_adam", "cem"]', 'variants = ["exact_adam", "nope"]'))
    res = CliRunner().invoke(app, ["mpc", str(problem), "--out", str(tmp_path / "out")])
    # named at the key the name came from (mpc.variants), not the solve.variants the command sets from it
    assert res.exit_code == 2 and "p.toml: mpc.variants: unknown variant 'nope'" in res.output, res.output
    assert not (tmp_path / "out").exists()
    res = CliRunner().invoke(app, ["mpc", str(problem), "--variants", "cem,nosuch", "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "p.toml: --variants: unknown variant 'nosuch'" in res.output, res.output


def test_knots_that_fit_the_task_but_not_the_planning_horizon_are_refused_before_any_work(tmp_path):
    """A sampler's knots are checked against the H-step problem it plans (H = mpc.horizon = 4), not the task's T = 8:
    knots = 6 fits T and not H (it failed inside the compiled episode with a traceback)."""
    problem = tmp_path / "p.toml"
    problem.write_text(SMALL.replace("[method.cem]\npopulation = 10", "[method.cem]\npopulation = 10\nknots = 6"))
    res = CliRunner().invoke(app, ["mpc", str(problem), "--out", str(tmp_path / "out")])
    message = " ".join(res.output.split())
    assert res.exit_code == 2 and "variants.cem.knots: found 6" in message and "1..4" in message, res.output
    assert not (tmp_path / "out").exists()
    # the library refuses it the same way, before compiling
    import jax

    from trajopt.closedloop import mpc
    from trajopt.methods import CEM

    import trajopt

    loaded = trajopt.load(problem)
    with pytest.raises(ValueError, match=r"methods\['cem'\]: .*knots.*planning horizon is 4"):
        mpc(loaded.problem, {"cem": CEM(population=10, knots=6)}, episode=6, horizon=4, key=jax.random.PRNGKey(0))


def test_every_figure_title_states_the_overrides_and_the_mpc_settings(tmp_path, monkeypatch):
    """Each figure says what made it: the --set override and the [mpc] settings (episode, horizon, replan period, K
    steps per replan, seeds), as the table does; they said only the problem and the overrides."""
    from trajopt import plots

    titles = {}

    def keep(fig, path, dpi=150):
        texts = [fig._suptitle.get_text()] if fig._suptitle is not None else []
        titles[path.name] = " ".join(" ".join(texts + [ax.get_title() for ax in fig.axes]).split())

    monkeypatch.setattr(plots, "save_figure", keep)
    problem = tmp_path / "p.toml"
    problem.write_text(SMALL)
    # the file's own plant value under --set: the module run's closed loop of cem, its programs compiled already
    res = CliRunner().invoke(app, ["mpc", str(problem), "--set", "plant.cart_damping=0.3", "--variants", "cem",
                                   "--seeds", "2", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert set(titles) == {"realised.png", "closed_loop_cost.png", "plan_time.png"}
    for name, text in titles.items():
        assert "plant.cart_damping=0.3" in text, (name, text)
        assert "episode 6, horizon 4, replan every 2, 2 iterations per replan, 2 seeds" in text, (name, text)


def test_a_file_without_mpc_is_refused(tmp_path):
    problem = tmp_path / "p.toml"
    problem.write_text(SMALL[:SMALL.index("[mpc]")])
    res = CliRunner().invoke(app, ["mpc", str(problem), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "mpc: missing" in " ".join(res.output.split())


TENNIS_MPC = ["mpc", str(ROOT / "problems" / "tennis.toml"), "--variants", "zobg_mpc", "--episode", "3", "--horizon",
              "2", "--iterations", "1", "--set", "mpc.replan_every=1", "--json"]


def _tennis_mpc(seeds: str, out: Path) -> np.ndarray:
    """[S, 4, n] the plant's states of a short closed loop of tennis.toml's zobg_mpc over ``seeds`` (run into ``out``)."""
    res = CliRunner().invoke(app, TENNIS_MPC + ["--seeds", seeds, "--out", str(out)])
    assert res.exit_code == 0, res.output
    return np.load(out / "trajectory.npz")["zobg_mpc/X"]


def test_a_policy_file_runs_closed_loop_from_its_initial_state_distribution(tmp_path):
    """tennis.toml is a policy problem; its [mpc] plans the paddle with open-loop oracles and each seed throws its own
    ball: seed s starts at the state drawn with fold_in(PRNGKey(test_seed), s), whatever seeds run beside it. (That a
    seed's closed loop is the same alone as beside others is pinned by test_closedloop's measurement-noise test; the
    slow test below runs this one alone.)"""
    from trajopt import spec as spec_mod

    X = _tennis_mpc("0,4", tmp_path / "a")
    spec = spec_mod.load(ROOT / "problems" / "tennis.toml", closed_loop=True)
    np.testing.assert_array_equal(X[:, 0], spec.closed_loop_starts([0, 4]))
    np.testing.assert_array_equal(spec.closed_loop_starts([4])[0], X[1, 0])  # seed 4's throw, alone
    assert not np.allclose(X[0, 0], X[1, 0])  # two throws
    result = json.loads((tmp_path / "a" / "result.json").read_text())
    assert result["variants"]["zobg_mpc"]["compute_per_step"]["rollouts"] == 17  # the open-loop ZoBG: N + 1


@pytest.mark.slow
def test_a_policy_files_seed_runs_the_same_closed_loop_alone(tmp_path):
    """Seed 4 of tennis.toml's closed loop run alone (``--seeds 4,``: a list, not a count) is its run beside seed 0."""
    X = _tennis_mpc("0,4", tmp_path / "a")
    alone = _tennis_mpc("4,", tmp_path / "b")
    np.testing.assert_allclose(alone[0], X[1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("moment", ["summary", "figure"])
def test_a_signal_while_the_folder_is_written_leaves_it_whole_and_marked(run, tmp_path, monkeypatch, moment):
    """SIGTERM once every episode has run (while result.json's content is made, or while a figure is drawn): the
    folder is complete, says interrupted (and why), and the exit status is 130."""
    import os
    import signal

    from trajopt import plots_closedloop, runs_mpc

    problem, out, res = run
    target, name = (runs_mpc, "summarise") if moment == "summary" else (plots_closedloop, "plan_time_figure")
    original = getattr(target, name)

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, interrupted)
    folder = tmp_path / "out"
    result = CliRunner().invoke(app, ["mpc", str(problem), "--out", str(folder), "--quiet"])
    assert result.exit_code == 130, result.output
    summary = json.loads((folder / "result.json").read_text())
    assert summary["status"] == "interrupted" and summary["interrupted_while_writing"] is True
    if moment == "summary":
        assert summary["variants_not_run"] == []
    for f in ("config.toml", "metrics.jsonl", "trajectory.npz", "realised.png", "closed_loop_cost.png", "plan_time.png"):
        assert (folder / f).is_file(), f


def test_loaded_mpc_is_the_command_lines_closed_loop(run):
    """trajopt.load(FILE).mpc() runs the file's [mpc], [plant] and [success] in memory: the same trajectories and
    costs as `trajopt mpc FILE` (and the public face names the closed loop)."""
    import trajopt

    problem, out, res = run
    results = trajopt.load(problem).mpc(time_plans=False)
    traj = np.load(out / "trajectory.npz")
    summary = json.loads((out / "result.json").read_text())
    assert list(results) == ["exact_adam", "cem"]
    for name, r in results.items():
        np.testing.assert_array_equal(r.X, traj[f"{name}/X"])
        np.testing.assert_array_equal(r.closed_loop_cost, summary["variants"][name]["closed_loop_cost"])
    assert trajopt.mpc is trajopt.closedloop.mpc and trajopt.Success is trajopt.closedloop.Success
    with pytest.raises(trajopt.SpecError, match="nope"):
        trajopt.load(problem).mpc(["nope"])


# pushing_stiff.toml's ZoBG with a step of 1e6: seed 0's controls reach ~1e180 while the plant's states stay finite,
# so its closed-loop cost overflows (its stage cost is inf from some step on); seed 1's stays finite (~6e184)
BLOW_UP = ["mpc", str(ROOT / "problems" / "pushing_stiff.toml"), "--variants", "zobg", "--episode", "40",
           "--horizon", "20", "--iterations", "3", "--set", "plant.disturbance=[]", "--set", "success.hold=5",
           "--set", "solve.optimizer.step=1e6"]


def _first_non_finite_step(out: Path, variant: str, seed: int):
    """The first plant step of a seed whose state, control or stage cost in metrics.jsonl is not finite (null)."""
    for line in (out / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["variant"] == variant and row["seed"] == seed and (
                row["stage_cost"] is None or None in row["x"] or (row["u"] is not None and None in row["u"])):
            return row["step"]
    return None


def test_a_seed_whose_closed_loop_cost_overflows_is_non_finite_and_the_run_partial(tmp_path):
    """Numerical blow-ups are a status, never silent: the blown-up seed is non_finite at the first step its record is
    not finite (its cost null), the table says so beside the median of the other seed, the run is partial and exits 0
    (as compare: 1 only when every seed failed); seed 0 alone fails the run: status failed, exit 1."""
    from rich.console import Console

    from trajopt.cli.mpc import _mpc_table

    out = tmp_path / "two"
    res = CliRunner().invoke(app, BLOW_UP + ["--seeds", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "non_finite" in res.output
    result = json.loads((out / "result.json").read_text())
    v = result["variants"]["zobg"]
    assert result["status"] == "partial"
    assert v["status"] == ["non_finite", "ok"]
    assert np.all(np.isfinite(np.load(out / "trajectory.npz")["zobg/X"]))  # the states stayed finite: the cost did not
    failed_at = _first_non_finite_step(out, "zobg", 0)
    assert isinstance(failed_at, int) and 0 <= failed_at <= 40
    assert v["failed_at"] == [failed_at, None]
    assert v["closed_loop_cost"][0] is None and v["closed_loop_cost"][1] is not None
    assert v["closed_loop_cost_median"] == v["closed_loop_cost"][1]
    console = Console(width=400, record=True)
    console.print(_mpc_table(result))
    assert "1/2 ok, 1 non_finite" in console.export_text()
    from trajopt.report_mpc import html_mpc_report

    assert "<td>1/2 (1 non_finite)</td>" in html_mpc_report(result, {})  # the report's "seeds ok" names it too

    alone = tmp_path / "one"
    res = CliRunner().invoke(app, BLOW_UP + ["--set", "mpc.seeds=[0]", "--out", str(alone), "--json"])
    assert res.exit_code == 1, res.output
    result = json.loads((alone / "result.json").read_text())
    assert result["status"] == "failed"
    assert result["variants"]["zobg"]["status"] == ["non_finite"]
    assert result["variants"]["zobg"]["failed_at"] == [failed_at]
    console = Console(width=400, record=True)
    console.print(_mpc_table(result))
    assert "0/1 ok, 1 non_finite" in console.export_text()
