"""The CLI end to end through typer's CliRunner: exit codes, run-folder files, errors, reproducibility."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trajopt import runs
from trajopt.cli import app

PROBLEMS = Path(__file__).resolve().parent.parent / "problems"
SOFT = str(PROBLEMS / "pushing_soft.toml")
SMALL = ["--iterations", "12", "--seeds", "2", "--set", "task.horizon=40"]

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def compare_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "soft"
    result = invoke("compare", SOFT, *SMALL, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and "trajopt" in result.output


def test_compare_writes_the_run_folder(compare_run):
    for name in ("config.toml", "metrics.jsonl", "result.json", "trajectory.npz", "convergence.png"):
        assert (compare_run / name).is_file(), name
    assert (compare_run / "convergence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((compare_run / "result.json").read_text())
    assert summary["status"] == "ok" and summary["problem"] == "pushing_soft"
    assert summary["iterations"] == 12 and summary["seeds"] == [0, 1]
    assert list(summary["variants"]) == ["fobg", "zobg", "aobg"]
    aobg = summary["variants"]["aobg"]
    assert aobg["status"] == ["ok", "ok"] and len(aobg["final_cost"]) == 2
    assert aobg["rollouts"] == 12 * (2 * 10 + 1)
    assert summary["x64"] is True and "jax" in summary["versions"]
    rows = [json.loads(line) for line in (compare_run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * 2 * 13
    first = rows[0]
    assert set(first) >= {"variant", "seed", "iteration", "cost", "grad_norm", "alpha", "var_first", "var_zero",
                          "bias_gap", "radius", "rollouts", "seconds"}
    with np.load(compare_run / "trajectory.npz") as data:
        assert data["aobg/U"].shape == (2, 40, 1) and data["aobg/X"].shape == (2, 41, 4)


def test_run_folder_reads_back(compare_run):
    run = runs.read_run(compare_run)
    summary = run.result
    for name in run.variants:
        cost = run.series[name]["cost"]
        assert cost.shape == (2, 13)
        np.testing.assert_allclose(cost[:, -1], summary["variants"][name]["final_cost"])
    assert np.all(run.series["aobg"]["alpha"][:, :-1] >= 0)
    assert np.all(np.isnan(run.series["fobg"]["alpha"]))


def _strip_timing(rows):
    return [{k: v for k, v in r.items() if k not in runs.TIMING_FIELDS} for r in rows]


def test_same_command_twice_gives_identical_metrics(compare_run, tmp_path):
    again = tmp_path / "again"
    assert invoke("compare", SOFT, *SMALL, "--out", again, "--quiet").exit_code == 0
    a = [json.loads(x) for x in (compare_run / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (again / "metrics.jsonl").read_text().splitlines()]
    assert _strip_timing(a) == _strip_timing(b)
    ra, rb = (json.loads((d / "result.json").read_text()) for d in (compare_run, again))
    for r in (ra, rb):
        for k in runs.TIMING_FIELDS:
            r.pop(k, None)
        for o in r["variants"].values():
            o.pop("run_seconds"), o.pop("compile_seconds")
    # the second compare in this process reuses the first's compiled loops (trajopt.programs): how it was compiled
    assert [o["program"]["reused"] for o in rb["variants"].values()] == [True] * len(rb["variants"])
    assert [o["program"]["compilation_cache"] for o in rb["variants"].values()] == ["memory"] * len(rb["variants"])
    for r in (ra, rb):
        for o in r["variants"].values():
            o.pop("program")
    ra.pop("source"), rb.pop("source")
    assert ra == rb
    assert (compare_run / "config.toml").read_text() == (again / "config.toml").read_text()


def test_config_toml_repeats_the_run(compare_run, tmp_path):
    out = tmp_path / "repeat"
    assert invoke("compare", compare_run / "config.toml", "--out", out, "--quiet").exit_code == 0
    a = [json.loads(x) for x in (compare_run / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert _strip_timing(a) == _strip_timing(b)


def test_solve_one_oracle_and_json_summary(tmp_path):
    out = tmp_path / "solve"
    result = invoke("solve", SOFT, "--oracle", "zobg", *SMALL, "--out", out, "--json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert list(summary["variants"]) == ["zobg"] and summary["out"] == str(out)
    assert summary["variants"]["zobg"]["median_final_cost"] < summary["variants"]["zobg"]["initial_cost"]


def test_the_summary_table_names_the_backend_its_seconds_were_measured_on(tmp_path):
    import jax

    result = invoke("compare", SOFT, *SMALL, "--out", tmp_path / "run")
    assert result.exit_code == 0
    backend = json.loads((tmp_path / "run" / "result.json").read_text())["platform"]
    assert backend == jax.default_backend()
    assert f"seconds on {backend};" in " ".join(result.stdout.split())


def test_the_convergence_figure_legend_states_each_variants_optimiser(tmp_path, monkeypatch):
    # the table's method column said "exact + adam 0.2 cosine, ..." while the figure said only "tuned"
    from trajopt import plots

    saved = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: saved.append(fig))
    result = invoke("compare", SOFT, *SMALL, "--variants", "zobg,tuned", "--out", tmp_path / "run", "-q")
    assert result.exit_code == 0, result.output
    legend = [t.get_text() for t in saved[0].axes[0].get_legend().get_texts()]
    assert legend == ["zobg + sgd 0.001", "tuned: exact + adam 0.2 cosine, best of 8 starts (spread 0.01)"]


def test_compare_against_rollouts_axis(tmp_path):
    out = tmp_path / "x"
    assert invoke("compare", SOFT, *SMALL, "--oracles", "exact,zobg", "--x", "rollouts", "--out", out, "-q").exit_code == 0
    assert (out / "convergence.png").is_file()


@pytest.mark.parametrize(
    "text, words",
    [
        ('[system]\nname = "pushing"\nstifness = 10.0\n', "system.stifness: unknown key (did you mean 'stiffness'?)"),
        ('[system]\nname = "pushing"\nstiffness = "soft"\n', "system.stiffness: found 'soft' (a string), allowed: a number"),
        ('[solve]\noracles = ["zogb"]\n', "solve.oracles: unknown oracle 'zogb' (did you mean 'zobg'?)"),
    ],
)
def test_bad_toml_exits_2_with_a_clear_message_and_no_folder(tmp_path, text, words):
    base = Path(SOFT).read_text()
    # put the faulty lines in place of the file's own [system] or [solve] table
    if text.startswith("[system]"):
        body = base.split("[system]")[0] + text + "[task]" + base.split("[task]")[1]
    else:
        body = base.split("[solve]")[0] + text + "\n[oracle]" + base.split("[oracle]", 1)[1]
    bad = tmp_path / "bad.toml"
    bad.write_text(body)
    out = tmp_path / "out"
    result = invoke("compare", bad, "--out", out)
    assert result.exit_code == 2
    assert words in " ".join(result.stderr.split())
    assert str(bad) in result.stderr.replace("\n", "")
    assert not out.exists()


def test_unknown_oracle_on_the_command_line_exits_2(tmp_path):
    result = invoke("solve", SOFT, "--oracle", "nope", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "unknown oracle 'nope'" in result.stderr
    assert not (tmp_path / "o").exists()


def test_refuses_a_non_empty_out_folder_without_force(compare_run):
    result = invoke("compare", SOFT, *SMALL, "--out", compare_run)
    assert result.exit_code == 2 and "--force" in result.stderr


def test_validate_and_list():
    result = invoke("validate", SOFT, "--json")
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["state_size"] == 4 and info["control_size"] == 1 and info["horizon"] == 400
    assert info["initial_cost"] == pytest.approx(2374.8938, abs=5e-5)
    assert info["stability_margin"] == pytest.approx(0.1 / 0.005)
    listing = invoke("list", "problems")
    assert listing.exit_code == 0 and "pushing_stiff.toml" in listing.output
    assert invoke("list", "oracles").exit_code == 0
    assert invoke("list", "nonsense").exit_code == 2


def test_a_title_says_when_mujocos_c_simulator_ran():
    """An mjx system on backend = "mujoco" ran MuJoCo's C simulator, not MJX: every title says so (the file's own
    title does not), unless a --set of system.backend already does."""
    from types import SimpleNamespace

    from trajopt.cli._outputs import display_title

    spec = SimpleNamespace(title="Pendulum with walls (MJX)", name="mjx_pendulum_wall",
                           system=SimpleNamespace(backend="mujoco"))
    assert display_title(spec, None) == "Pendulum with walls (MJX) [MuJoCo's C simulator]"
    assert display_title(spec, ["oracle.sigma=0.2"]) == \
        "mjx_pendulum_wall [MuJoCo's C simulator] [--set oracle.sigma=0.2]"
    assert display_title(spec, ["system.backend=mujoco"]) == "mjx_pendulum_wall [--set system.backend=mujoco]"
    mjx = SimpleNamespace(title="T", name="n", system=SimpleNamespace(backend="mjx"))
    assert display_title(mjx, None) == "T"
