"""`trajopt study`: grid expansion and validation, the local executor, the study folder, resume, failed cells,
--dry-run, exit codes; the Ray backend against a local Ray (same table, a killed worker retried)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trajopt.cli import app
from trajopt.spec import SpecError
from trajopt.studies import (LocalExecutor, cell_rows, expand, load_study, prepare, read_table, run_cell,
                             run_study)
from trajopt.studies.cells import CELL_OK, CellOutcome

ROOT = Path(__file__).resolve().parent.parent
PUSHING = ROOT / "problems" / "pushing_stiff.toml"
CHAIN = ROOT / "problems" / "chain3_stiff.toml"
runner = CliRunner()

# Tiny: 5 iterations, 2 seeds, horizon 20. Stiffness 10^4 is unstable at the files' dt: that cell fails.
TINY = f"""
title = "tiny"
problems = ["{PUSHING}"]
variants = ["zobg"]
seeds = 2
iterations = 5
[set]
"task.horizon" = 20
[grid]
"system.stiffness" = [10.0, 100.0, 10000.0]
"""


def write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def fake_cell(cell, should_stop=None):
    """A cell that runs nothing: rows with the cell's index as its cost (for the driver's logic)."""
    rows = cell_rows(cell, error=cell.error)
    if cell.error is None:
        rows = [{**r, "status": "ok", "final_cost": float(cell.index), "error": None} for r in rows]
    return CellOutcome(cell.index, CELL_OK if cell.error is None else "failed", rows, error=cell.error)


# ------------------------------------------------------------------------------------------ expansion


def test_expansion_sizes_order_and_overrides(tmp_path):
    study = load_study(write(tmp_path, f"""
problems = ["{PUSHING}", "{CHAIN}"]
variants = ["fobg", "aobg", "fobg_adam"]
seeds = 3
iterations = 7
[grid]
"system.stiffness" = "logspace:1:3:3"
"oracle.samples" = [4, 8]
[set]
"task.horizon" = 20
[variant.fobg_adam]
oracle = "fobg"
optimizer = {{ name = "adam", step = 0.1 }}
"""))
    assert [a.key for a in study.grid] == ["system.stiffness", "oracle.samples"]
    assert study.grid[0].log and not study.grid[1].log
    np.testing.assert_allclose(study.grid[0].values, [10, 100, 1000])
    e = expand(study)
    assert len(e.cells) == 2 * 3 * 3 * 2 and not e.invalid  # fobg_adam exists in both: the study defines it
    labels = [c.label for c in e.cells[:7]]
    assert labels[0] == "pushing_stiff / fobg / system.stiffness=10, oracle.samples=4"
    assert labels[1] == "pushing_stiff / fobg / system.stiffness=10, oracle.samples=8"  # last axis fastest
    assert labels[6] == "pushing_stiff / aobg / system.stiffness=10, oracle.samples=4"
    assert e.cells[18].problem == "chain3_stiff"
    c = e.cells[3]
    assert c.folder == "cells/pushing_stiff/fobg/system.stiffness=100,oracle.samples=8"
    spec = e.specs[c.index]
    assert spec.system.stiffness == 100.0 and spec.task.horizon == 20 and spec.solve.iterations == 7
    assert tuple(spec.solve.seeds) == (0, 1, 2) and list(spec.variants) == ["fobg"]
    assert spec.variants["fobg"].oracle.samples == 8
    assert len({c.fingerprint for c in e.cells}) == len(e.cells)
    # --seeds / --iterations replace the file's
    e2 = expand(load_study(tmp_path / "study.toml", seeds=(5, 6), iterations=3))
    assert e2.cells[0].seeds == (5, 6) and e2.specs[0].solve.iterations == 3


def test_the_studys_iterations_reach_a_variant_with_its_own(tmp_path):
    # pushing_stiff's `tuned` sets iterations = 625 and a cosine step over them; a study cell runs the study's
    # iterations, with the schedule re-resolved for them (not a cosine over 625 cut off after 7)
    e = expand(load_study(write(tmp_path, f"""
problems = ["{PUSHING}"]
variants = ["tuned", "tuned_aobg"]
seeds = 1
iterations = 7
"""), iterations=None))
    for c in e.cells:
        variant = e.specs[c.index].variants[c.variant]
        assert (variant.iterations or e.specs[c.index].solve.iterations) == 7
        assert variant.optimizer.decay_steps == 7


@pytest.mark.parametrize("body, key, words", [
    ('problems = ["P"]\nvariants = ["fobg"]\nbogus = 1', "bogus", "unknown key"),
    ('variants = ["fobg"]', "problems", "missing"),
    ('problems = ["nope.toml"]\nvariants = ["fobg"]', "problems[0]", "no such file"),
    ('problems = ["P"]\nvariants = ["fobg", "fobg"]', "variants", "distinct"),
    ('problems = ["P"]\nvariants = ["fobg"]\nseeds = 0', "seeds", "allowed: a count >= 1"),
    ('problems = ["P"]\nvariants = ["fobg"]\niterations = "x"', "iterations", "an integer >= 1"),
    ('problems = ["P"]\nvariants = ["fobg"]\n[grid]\n"system.stiffness" = "logspace:1:2"', "grid.system.stiffness",
     "allowed: a comma-separated list"),
    ('problems = ["P"]\nvariants = ["fobg"]\n[grid]\n"system.stiffness" = []', "grid.system.stiffness", "non-empty"),
    ('problems = ["P"]\nvariants = ["fobg"]\n[resources]\ngpus = 1', "resources.gpus", "allowed: num_cpus"),
    ('problems = ["P"]\nvariants = ["fobg"]\n[variant.other]\noracle = "zobg"', "variant.other", "not listed"),
])
def test_study_file_errors(tmp_path, body, key, words):
    path = write(tmp_path, body.replace('"P"', json.dumps(str(PUSHING))))
    with pytest.raises(SpecError) as info:
        load_study(path)
    assert info.value.source == str(path) and info.value.key == key and words in info.value.message


@pytest.mark.parametrize("body, key, words", [
    ('[grid]\n"system.stifness" = [1.0, 2.0]', "system.stifness", "unknown key"),          # like --set
    ('[set]\n"oracle.zobg.samples" = "many"', "oracle.zobg.samples", "allowed: an integer"),
])
def test_cell_override_errors_are_reported_like_set(tmp_path, body, key, words):
    path = write(tmp_path, f'problems = ["{PUSHING}"]\nvariants = ["zobg"]\n{body}')
    with pytest.raises(SpecError) as info:
        expand(load_study(path))
    assert info.value.source == str(PUSHING) and info.value.key == key and words in info.value.message
    r = invoke("study", path, "--out", tmp_path / "out")
    assert r.exit_code == 2 and key in r.output and not (tmp_path / "out").exists()


def test_variant_missing_from_one_problem_is_a_clear_error(tmp_path):
    path = write(tmp_path, f'problems = ["{PUSHING}", "{CHAIN}"]\nvariants = ["fobg_adam"]')
    with pytest.raises(SpecError) as info:
        expand(load_study(path))
    msg = str(info.value)
    assert str(CHAIN) in msg and "fobg_adam" in msg and "[variant.fobg_adam]" in msg


def test_skip_leaves_out_the_named_pairs_only(tmp_path):
    """[skip] builds no cell for its (variant, problem) pairs: the study the test above refuses (fobg_adam is no
    variant of the chain) expands once the chain is skipped for it, every other pair kept; the dry run says so and
    the study's definition (study.json, the page) records the pairs."""
    path = write(tmp_path, f'problems = ["{PUSHING}", "{CHAIN}"]\nvariants = ["fobg_adam", "zobg"]\nseeds = 1\n'
                 'iterations = 2\n[skip]\nfobg_adam = ["chain3_stiff"]')
    study = load_study(path)
    e = expand(study)
    assert [(c.problem, c.variant) for c in e.cells] == [("pushing_stiff", "fobg_adam"), ("pushing_stiff", "zobg"),
                                                         ("chain3_stiff", "zobg")]
    assert study.definition()["skip"] == [["fobg_adam", "chain3_stiff"]]
    r = invoke("study", path, "--dry-run")
    assert r.exit_code == 0 and "3 cells" in r.output and "1 problem-variant pairs skipped" in " ".join(r.output.split())
    from trajopt.studies.page import skipped_text
    assert skipped_text(study.definition()["skip"]) == "not run (the study's [skip]): fobg_adam on chain3_stiff"


def test_a_method_tables_integer_key_stays_an_integer_in_set_and_grid(tmp_path):
    """A study's [set] and [grid] over a [method.NAME] key take the method field's type: samples = 4 reaches the cell
    as 4, not 4.0 (which the method refuses: "found 4.0, allowed: an integer"), so the cells expand."""
    study = load_study(write(tmp_path, f'problems = ["{PUSHING}"]\nvariants = ["mppi"]\nseeds = 1\niterations = 2\n'
                             '[set]\n"method.mppi.samples" = 4\n[grid]\n"method.mppi.knots" = [4, 8]'))
    assert study.fixed == ("method.mppi.samples=4",) and study.grid[0].values == (4, 8)
    e = expand(study)
    assert [e.specs[c.index].variants["mppi"].method.knots for c in e.cells] == [4, 8]
    assert {e.specs[c.index].variants["mppi"].method.samples for c in e.cells} == {4}


@pytest.mark.parametrize("skip, key, words", [
    ('fobg = ["pushing_stiff"]', "skip.fobg", "a variant the study runs"),
    ('zobg = ["pushing"]', "skip.zobg", "the name (file stem) of a problem"),
    ('zobg = ["chain3_stiff", "chain3_stiff"]', "skip.zobg", "twice"),
    ('zobg = "chain3_stiff"', "skip.zobg", "a non-empty list"),
    ('zobg = ["chain3_stiff"]\naobg = ["chain3_stiff"]', "skip", "every variant skipped on 'chain3_stiff'"),
])
def test_skip_errors(tmp_path, skip, key, words):
    path = write(tmp_path, f'problems = ["{PUSHING}", "{CHAIN}"]\nvariants = ["zobg", "aobg"]\n[skip]\n{skip}')
    with pytest.raises(SpecError) as info:
        load_study(path)
    assert info.value.source == str(path) and info.value.key == key and words in info.value.message
    r = invoke("study", path, "--out", tmp_path / "out")
    assert r.exit_code == 2 and not (tmp_path / "out").exists()


@pytest.mark.parametrize("table, key", [("grid", "system.stifness"), ("set", "system.stifness")])
def test_a_study_key_every_cell_refuses_is_traced_to_the_study(tmp_path, table, key):
    """A misspelt [grid] or [set] key is refused by the problem file (an unknown key of its [system]); the message
    said only the problem file, as if the user's problem were wrong: it now names the study's own key."""
    value = "[10.0, 20.0]" if table == "grid" else "10.0"
    path = write(tmp_path, f'problems = ["{PUSHING}"]\nvariants = ["zobg"]\nseeds = 1\niterations = 2\n'
                 f'[{table}]\n"{key}" = {value}\n')
    r = invoke("study", path, "--dry-run")
    message = " ".join(r.output.split())
    assert r.exit_code == 2 and f"pushing_stiff.toml: {key}: unknown key" in message, r.output
    assert message.endswith(f"(from study {path}: {table}.{key})"), r.output


def test_a_compare_studys_figures_state_its_iterations_and_set(tmp_path):
    """A study's figure titled only with its title hid what every cell ran with (a [set] step of 1e6 drew costs of
    1e15 under "audit study"): its iterations and [set] overrides are stated under the title."""
    from trajopt.studies.figures import study_figures

    study = load_study(write(tmp_path, TINY))
    rows = [{"problem": "pushing_stiff", "variant": "zobg", "system.stiffness": k, "seed": s, "status": "ok",
             "final_cost": 1.0 + s, "initial_cost": 2.0} for k in (10.0, 100.0, 10000.0) for s in (0, 1)]
    figure = study_figures(rows, study)["study_system_stiffness"]
    assert figure._suptitle.get_text().replace("\n", " ").endswith("[5 iterations; set task.horizon=20]")


def test_unstable_grid_point_is_an_invalid_cell_or_refused_with_strict(tmp_path):
    study = load_study(write(tmp_path, TINY))
    e = expand(study)
    assert [c.error is None for c in e.cells] == [True, True, False]
    assert "system.dt" in e.cells[2].error and "unstable" in e.cells[2].error
    with pytest.raises(SpecError, match="--strict"):
        expand(study, strict=True)


# ------------------------------------------------------------------------------------- driver logic


def test_resume_runs_only_missing_cells_and_interruption_keeps_finished_ones(tmp_path):
    study = load_study(write(tmp_path, TINY.replace('[10.0, 100.0, 10000.0]', '[10.0, 20.0, 40.0, 10000.0]')))
    e = expand(study)
    folder = tmp_path / "out"
    calls = []

    def counting(cell, should_stop=None):
        calls.append(cell.index)
        return fake_cell(cell)

    # interrupted after two cells: both on disk (and the invalid cell, recorded first), the table readable
    prepare(folder, fresh=False)
    r = run_study(study, e, folder, LocalExecutor(), should_stop=lambda: len(calls) >= 2, cell_fn=counting)
    assert r.status == "interrupted" and calls == [0, 1]
    assert len(read_table(folder)) == 6 and json.loads((folder / "study.json").read_text())["status"] == "interrupted"
    # resume: the remaining cell only
    r = run_study(study, e, folder, LocalExecutor(), cell_fn=counting)
    assert r.status == "complete" and calls == [0, 1, 2] and sorted(r.skipped) == [0, 1, 3] and r.ran == [2]
    assert r.cell_status == {0: "ok", 1: "ok", 2: "ok", 3: "failed"}
    rows = read_table(folder)
    assert [row["final_cost"] for row in rows[:6]] == [0, 0, 1, 1, 2, 2]
    assert rows[-1]["status"] == "failed" and "system.dt" in rows[-1]["error"]
    # remove one cell's folder: only that cell runs again
    import shutil

    shutil.rmtree(folder / e.cells[1].folder)
    mtime = (folder / e.cells[0].folder / "cell.json").stat().st_mtime_ns
    r = run_study(study, e, folder, LocalExecutor(), cell_fn=counting)
    assert calls[3:] == [1] and r.ran == [1]
    assert (folder / e.cells[0].folder / "cell.json").stat().st_mtime_ns == mtime
    # a changed study (other seeds) reruns every cell; --retry-failed reruns the failed ones only
    e3 = expand(load_study(tmp_path / "study.toml", seeds=(0, 1, 2)))
    r = run_study(study, e3, folder, LocalExecutor(), cell_fn=counting)
    assert calls[4:] == [0, 1, 2] and sorted(r.ran) == [0, 1, 2, 3]
    r = run_study(study, e3, folder, LocalExecutor(), cell_fn=counting, retry_failed=True)
    assert calls[7:] == [] and r.ran == [3]


def test_an_exception_in_a_cell_is_recorded_and_the_study_goes_on(tmp_path):
    study = load_study(write(tmp_path, TINY))
    e = expand(study)

    def flaky(cell, should_stop=None):
        if cell.index == 0:
            raise RuntimeError("worker lost")
        return fake_cell(cell)

    prepare(tmp_path / "out", fresh=False)
    r = run_study(study, e, tmp_path / "out", LocalExecutor(), cell_fn=flaky)
    assert r.status == "complete" and r.cell_status == {0: "failed", 1: "ok", 2: "failed"}
    assert "worker lost" in read_table(tmp_path / "out")[0]["error"]


# ---------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def local_study(tmp_path_factory):
    """The tiny study run once through the CLI (2 real cells, 1 failed)."""
    tmp = tmp_path_factory.mktemp("study")
    path = write(tmp, TINY)
    r = invoke("study", path, "--out", tmp / "out", "--quiet")
    return path, tmp / "out", r


def test_cli_local_study_folder(local_study):
    path, folder, r = local_study
    assert r.exit_code == 0, r.output
    cols = ["problem", "variant", "system.stiffness", "seed", "status", "final_cost", "best_cost", "initial_cost",
            "rollouts", "gradients", "run_seconds", "compile_seconds", "error"]
    rows = read_table(folder)
    assert list(rows[0]) == cols and len(rows) == 6
    assert [r["status"] for r in rows] == ["ok"] * 4 + ["failed"] * 2
    assert all(r["final_cost"] < r["initial_cost"] + 1e-9 for r in rows[:4])
    assert rows[0]["rollouts"] == 5 * 11 and "system.dt" in rows[5]["error"]  # ZoBG: N = 10 samples + f(U)
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(folder / "study.parquet")
    assert table.column_names == cols and table.num_rows == 6
    np.testing.assert_array_equal(table.column("final_cost").to_numpy(zero_copy_only=False)[:4],
                                  [r["final_cost"] for r in rows[:4]])
    from trajopt import runs

    cell = folder / "cells" / "pushing_stiff" / "zobg" / "system.stiffness=100"
    run = runs.read_run(cell)
    assert run.result["status"] == "ok" and run.variants == ["zobg"] and run.result["seeds"] == [0, 1]
    assert run.result["variants"]["zobg"]["rollouts"] == rows[2]["rollouts"]
    assert run.result["variants"]["zobg"]["final_cost"] == [rows[2]["final_cost"], rows[3]["final_cost"]]
    assert run.config["system"]["stiffness"] == 100.0 and run.config["task"]["horizon"] == 20
    assert (folder / "report.html").read_text().count("<img") == 1 and (folder / "study_system_stiffness.png").is_file()
    meta = json.loads((folder / "study.json").read_text())
    assert meta["status"] == "complete" and [c["status"] for c in meta["cells"]] == ["ok", "ok", "failed"]
    # rerun: everything reused, nothing recomputed
    before = (cell / "result.json").stat().st_mtime_ns
    r2 = invoke("study", path, "--out", folder, "--json")
    assert r2.exit_code == 0 and json.loads(r2.stdout)["ran"] == 0 and json.loads(r2.stdout)["skipped"] == 3
    assert (cell / "result.json").stat().st_mtime_ns == before


def test_a_cell_larger_than_the_history_memory_streams_to_disk_and_writes_the_same_folder(tmp_path, monkeypatch):
    """TRAJOPT_HISTORY_MEMORY applies to study cells too: a cell whose history is larger keeps it in files in the
    study folder (removed once its run folder is written), and writes the same metrics as one kept in memory."""
    from types import SimpleNamespace

    from trajopt import runs, solver

    monkeypatch.setattr(solver, "time", SimpleNamespace(perf_counter=lambda: 0.0))  # the same "seconds" twice
    made = []
    real = runs.DiskHistory.__call__

    def spy(self, name, shape, dtype):
        made.append(self.parent)
        return real(self, name, shape, dtype)

    monkeypatch.setattr(runs.DiskHistory, "__call__", spy)
    path = write(tmp_path, TINY)
    monkeypatch.delenv("TRAJOPT_HISTORY_MEMORY", raising=False)
    assert invoke("study", path, "--out", tmp_path / "memory", "--quiet").exit_code == 0
    assert not made
    monkeypatch.setenv("TRAJOPT_HISTORY_MEMORY", "0")
    assert invoke("study", path, "--out", tmp_path / "disk", "--quiet").exit_code == 0
    assert made and set(made) == {tmp_path / "disk"}
    assert not list((tmp_path / "disk").glob(".history-*"))
    cell = Path("cells") / "pushing_stiff" / "zobg" / "system.stiffness=100"
    kinds = {k: json.loads((tmp_path / k / cell / "result.json").read_text())["variants"]["zobg"]["history"]
             for k in ("memory", "disk")}
    assert kinds == {"memory": "memory", "disk": "disk"}
    assert (tmp_path / "memory" / cell / "metrics.jsonl").read_bytes() == (tmp_path / "disk" / cell / "metrics.jsonl").read_bytes()
    r = runner.invoke(app, ["study", str(path), "--out", str(tmp_path / "bad"), "--quiet"],
                      env={"TRAJOPT_HISTORY_MEMORY": "lots"})
    assert r.exit_code == 2 and "TRAJOPT_HISTORY_MEMORY" in r.output and not (tmp_path / "bad").exists()


def test_cli_dry_run_writes_nothing_and_counts_rollouts(tmp_path):
    path = write(tmp_path, TINY)
    r = invoke("study", path, "--out", tmp_path / "out", "--dry-run", "--json", "--seeds", "3")
    assert r.exit_code == 0 and not (tmp_path / "out").exists()
    data = json.loads(r.stdout)
    assert [c["valid"] for c in data["cells"]] == [True, True, False]
    assert data["cells"][0]["rollouts_per_step"] == 11 and data["cells"][0]["rollouts"] == 11 * 5 * 3
    assert data["rollouts"] == 2 * 165


def test_cli_refuses_fresh_with_retry_failed(tmp_path):
    # --retry-failed reruns a resumed study's failed cells; --fresh empties the folder: the pair would ignore one flag
    path = write(tmp_path, TINY)
    for extra in ([], ["--dry-run"]):
        r = invoke("study", path, "--out", tmp_path / "out", "--fresh", "--retry-failed", *extra)
        assert r.exit_code == 2, r.output
        assert "give --fresh or --retry-failed, not both" in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "out").exists()


def test_cli_exit_codes(tmp_path):
    path = write(tmp_path, TINY)
    assert invoke("study", path, "--backend", "dask").exit_code == 2
    assert invoke("study", path, "--address", "x:1").exit_code == 2
    assert invoke("study", path, "--seeds", "a,b").exit_code == 2
    assert invoke("study", tmp_path / "missing.toml").exit_code == 2
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("not a study")
    r = invoke("study", path, "--out", busy, "--fresh")
    assert r.exit_code == 2 and "not a study folder" in r.output and (busy / "keep.txt").exists()
    if importlib.util.find_spec("ray") is not None:  # an unreachable cluster: refused before anything is written
        r = invoke("study", path, "--backend", "ray", "--address", "127.0.0.1:1", "--out", tmp_path / "r")
        assert r.exit_code == 2 and "cannot reach" in r.output and not (tmp_path / "r").exists()
    r = invoke("study", path, "--out", tmp_path / "s", "--strict")
    assert r.exit_code == 2 and "--strict" in r.output and "system.dt" in r.output and not (tmp_path / "s").exists()
    # every cell failed at run time (iLQR on a one-step problem): exit 1, the table says why
    bad = write(tmp_path, f'problems = ["{ROOT / "problems" / "heaviside.toml"}"]\nvariants = ["ilqr"]\nseeds = 2\n'
                'iterations = 3', "bad.toml")
    r = invoke("study", bad, "--out", tmp_path / "bad", "--quiet")
    assert r.exit_code == 1 and "one-step" in read_table(tmp_path / "bad")[0]["error"]
    # --fresh empties a study folder and starts over
    r = invoke("study", bad, "--out", tmp_path / "bad", "--quiet", "--fresh", "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["ran"] == 1


def test_local_cell_is_the_solver_run(tmp_path):
    """A cell's numbers are exactly those of `solve` on the same spec (one fused run over its seeds)."""
    import jax

    from trajopt.solver import solve

    e = expand(load_study(write(tmp_path, TINY.replace("[10.0, 100.0, 10000.0]", "[100.0]"))))
    out = run_cell(e.cells[0])
    spec = e.specs[0]
    ref = solve(spec.problem(), spec.variants["zobg"].method, key=jax.random.PRNGKey(spec.solve.key), iterations=5,
                seeds=(0, 1))
    np.testing.assert_array_equal([r["final_cost"] for r in out.rows], ref.final_cost)


def test_a_cells_compile_seconds_hold_its_final_evaluation(tmp_path, monkeypatch):
    """A cell is one run, so its final evaluation's program is its own: its rows' compile seconds hold it (which a
    run's ``compile_seconds`` leaves to ``final_evaluation_seconds``, a command's variants sharing it). One that XLA
    takes 3 s longer to compile gives a cell of a tiny problem at least 3 s."""
    import time

    from trajopt import programs, solver

    real = solver.compile_cached

    def slow_finish(lowered):
        if "@jit_finish" in lowered.as_text()[:300]:
            time.sleep(3.0)
        return real(lowered)

    monkeypatch.setattr(solver, "compile_cached", slow_finish)
    programs.CACHE.clear()
    e = expand(load_study(write(tmp_path, TINY.replace("[10.0, 100.0, 10000.0]", "[100.0]"))))
    out = run_cell(e.cells[0])
    assert out.rows and all(r["compile_seconds"] >= 3.0 for r in out.rows), out.rows


def test_off_scale_medians_at_one_grid_value_are_labelled_apart(tmp_path):
    """Medians above the figure's scale are drawn on its top edge with their values: two variants off the scale at the
    same grid value get two labels, one under the other (not one over the other), each in its variant's colour."""
    from trajopt.studies.figures import axis_figure

    study = load_study(write(tmp_path, TINY.replace('variants = ["zobg"]', 'variants = ["zobg", "fobg"]')))
    rows = [{"problem": study.problems[0].stem, "variant": v, "system.stiffness": k, "seed": s, "status": "ok",
             "initial_cost": 1.0, "final_cost": (0.5 if k == 10.0 else big)}
            for v, big in (("zobg", 500.0), ("fobg", 900.0)) for k in study.grid[0].values for s in (0, 1)]
    fig = axis_figure(rows, study, study.grid[0])
    labels = [t for t in fig.axes[0].texts if t.get_text() in ("5e+02", "9e+02")]
    assert sorted(t.get_text() for t in labels) == ["5e+02"] * 2 + ["9e+02"] * 2  # two grid values off the scale
    for k in (100.0, 10000.0):
        at = [t for t in labels if t.xy[0] == k]
        assert len(at) == 2 and len({t.xyann for t in at}) == 2, [t.xyann for t in at]
        assert len({t.get_color() for t in at}) == 2  # each in its own variant's colour


# ------------------------------------------------------------------------------------------------ Ray


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="the Ray backend needs the [ray] extra")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's own cloudpickle: workers cannot import tests
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"TRAJOPT_X64": os.environ.get("TRAJOPT_X64", "1")}})
    yield ray
    ray.shutdown()


def crash_once_in(folder: Path):
    """A cell function that dies (os._exit, as a killed worker) on the first attempt of cell 0, marking it in
    ``folder``, and runs the cell normally otherwise."""
    folder = str(folder)

    def crash_once(cell, should_stop=None):
        marker = Path(folder) / f"attempt-{cell.index}"
        if cell.index == 0 and not marker.exists():
            marker.write_text("1")
            os._exit(1)
        return run_cell(cell)

    return crash_once


def always_crash_in(folder: Path):
    """A cell function whose worker always dies; each attempt leaves a file in ``folder``."""
    folder = str(folder)

    def always_crash(cell, should_stop=None):
        n = len(list(Path(folder).glob(f"crash-{cell.index}-*")))
        (Path(folder) / f"crash-{cell.index}-{n}").write_text("")
        os._exit(1)

    return always_crash


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # Ray starts its processes by fork+exec
def test_ray_backend_gives_the_local_table_and_retries_a_killed_worker(local_study, ray_local, tmp_path):
    from trajopt.studies import RayExecutor
    from trajopt.studies.file import Resources

    path, local_folder, r = local_study
    study = load_study(path)
    e = expand(study)
    folder = tmp_path / "ray"
    prepare(folder, fresh=False)
    res = run_study(study, e, folder, RayExecutor(resources=Resources(retries=2)), cell_fn=crash_once_in(tmp_path))
    assert (tmp_path / "attempt-0").exists()  # cell 0's first attempt died
    assert res.status == "complete" and res.cell_status == {0: "ok", 1: "ok", 2: "failed"}
    local, remote = read_table(local_folder), read_table(folder)
    timing = ("run_seconds", "compile_seconds")
    assert [{k: v for k, v in r.items() if k not in timing} for r in local] == \
           [{k: v for k, v in r.items() if k not in timing} for r in remote]
    assert json.loads((folder / "study.json").read_text())["backend"] == "ray"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # Ray starts its processes by fork+exec
def test_ray_worker_dying_past_its_retries_is_a_failed_cell(ray_local, tmp_path):
    from trajopt.studies import RayExecutor
    from trajopt.studies.file import Resources

    study = load_study(write(tmp_path, TINY.replace("[10.0, 100.0, 10000.0]", "[10.0, 20.0]")))
    e = expand(study)
    prepare(tmp_path / "out", fresh=False)
    res = run_study(study, e, tmp_path / "out", RayExecutor(resources=Resources(retries=1)),
                    cell_fn=always_crash_in(tmp_path))
    assert sorted(p.name for p in tmp_path.glob("crash-*")) == ["crash-0-0", "crash-0-1", "crash-1-0", "crash-1-1"]
    assert res.status == "complete" and res.cell_status == {0: "failed", 1: "failed"}
    rows = read_table(tmp_path / "out")
    assert all(r["status"] == "failed" and r["error"].startswith("WorkerCrashedError") and "after 1 retries" in r["error"]
               for r in rows), rows


def test_study_without_grid_draws_one_point_per_variant(tmp_path):
    """A study with no [grid] (the oracle-or-optimiser study's shape) still gets its figure: a panel per problem,
    a point per variant."""
    path = write(tmp_path, f"""
title = "no grid"
problems = ["{PUSHING}"]
variants = ["fobg", "zobg"]
seeds = 2
iterations = 3
[set]
"task.horizon" = 20
""")
    r = invoke("study", path, "--out", tmp_path / "out", "--quiet")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "study_variants.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "out" / "report.html").read_text().count("<img") == 1


def test_a_study_folder_in_use_by_another_command_is_refused(tmp_path):
    import fcntl

    path = write(tmp_path, TINY)
    folder = tmp_path / "busy"
    folder.mkdir()
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running study (or compare) holds
        r = invoke("study", path, "--out", folder)
        assert r.exit_code == 2 and "in use by another trajopt run" in r.output
        assert list(folder.iterdir()) == []  # nothing written
    finally:
        os.close(fd)
