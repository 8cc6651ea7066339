"""The recorded history streams to disk for runs that would not fit in memory (issue #17): the solver's
``history_store``, `trajopt.runs.DiskHistory`, metrics.jsonl written as it is produced, the CLI's
TRAJOPT_HISTORY_MEMORY threshold, and the consumers that read a history in blocks (counts, the median α,
the figures), each giving what the in-memory path gives."""

from __future__ import annotations

import json
import os
import signal
import tracemalloc
import zipfile
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from builders import random_quadratic
from typer.testing import CliRunner

from trajopt import plots, runs, runs_files, solver, stats
from trajopt import spec as spec_mod
from trajopt.cli import app
from trajopt.methods import GradientMethod
from trajopt.optim import SGD
from trajopt.oracles import AoBG, Exact
from trajopt.problem import Problem
from trajopt.solver import Result, solve

ROOT = Path(__file__).resolve().parent.parent
SOFT = ROOT / "problems" / "pushing_soft.toml"
SMALL = ["--iterations", "12", "--seeds", "2", "--set", "task.horizon=30", "--variants", "aobg,cem"]
KEY = jax.random.PRNGKey(0)

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


# ------------------------------------------------------------------------------------------------ the CLI


@pytest.fixture
def still_clock(monkeypatch):
    """The solver's clock stands still, so that two runs write the same ``seconds`` (the only timing field of
    metrics.jsonl) and their folders can be compared byte for byte."""
    monkeypatch.setattr(solver, "time", SimpleNamespace(perf_counter=lambda: 0.0))


@pytest.fixture(scope="module")
def memory_run(tmp_path_factory) -> Path:
    """The run folder of `trajopt compare SOFT SMALL` with its history in memory and the solver's clock standing still
    (`still_clock`), made once for the tests that compare a streamed run or a read-back with it (none writes in it)."""
    out = tmp_path_factory.mktemp("memory_run") / "memory"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("TRAJOPT_HISTORY_MEMORY", raising=False)
        mp.setattr(solver, "time", SimpleNamespace(perf_counter=lambda: 0.0))
        assert invoke("compare", SOFT, *SMALL, "--out", out, "--quiet").exit_code == 0
    return out


@pytest.fixture
def disk_spy(monkeypatch):
    """Records the temporary folder of every history array `DiskHistory` makes."""
    made = []
    real = runs.DiskHistory.__call__

    def spy(self, name, shape, dtype):
        array = real(self, name, shape, dtype)
        made.append((self.folder, name, shape, Path(array.filename)))
        return array

    monkeypatch.setattr(runs.DiskHistory, "__call__", spy)
    return made


def _npz_members(path: Path) -> dict:
    """The archive's members as bytes (its zip headers carry the time it was written)."""
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _result_without_timing(path: Path) -> dict:
    summary = json.loads((path / runs.RESULT).read_text())
    for k in runs.TIMING_FIELDS:
        summary.pop(k, None)
    for v in summary["variants"].values():
        for k in (*runs.TIMING_FIELDS, "history"):
            v.pop(k, None)
    return summary


def _same_folders(memory: Path, disk: Path) -> None:
    assert (memory / runs.METRICS).read_bytes() == (disk / runs.METRICS).read_bytes()
    assert _npz_members(memory / runs.TRAJECTORY) == _npz_members(disk / runs.TRAJECTORY)
    assert (memory / runs.CONFIG).read_bytes() == (disk / runs.CONFIG).read_bytes()
    assert _result_without_timing(memory) == _result_without_timing(disk)
    assert (memory / runs.CONVERGENCE).read_bytes() == (disk / runs.CONVERGENCE).read_bytes()
    assert sorted(p.name for p in memory.iterdir()) == sorted(p.name for p in disk.iterdir())


def _history_kinds(path: Path) -> dict:
    return {n: v["history"] for n, v in json.loads((path / runs.RESULT).read_text())["variants"].items()}


def test_compare_streamed_to_disk_writes_the_folder_of_a_run_in_memory(memory_run, tmp_path, monkeypatch, still_clock,
                                                                        disk_spy):
    assert memory_run.is_dir() and not disk_spy
    monkeypatch.setenv("TRAJOPT_HISTORY_MEMORY", "1")
    assert invoke("compare", SOFT, *SMALL, "--out", tmp_path / "disk", "--quiet").exit_code == 0
    # every array of both variants was a file inside the run folder being written, and none is left
    assert {name for _, name, _, _ in disk_spy} >= {"cost", "alpha", "rollouts", "elite_cost"}
    assert all(folder.parent == tmp_path / "disk" and folder.name.startswith(".history-") for folder, *_ in disk_spy)
    assert not any(f.exists() for *_, f in disk_spy) and not any(folder.exists() for folder, *_ in disk_spy)
    _same_folders(memory_run, tmp_path / "disk")
    assert _history_kinds(memory_run) == {"aobg": "memory", "cem": "memory"}
    assert _history_kinds(tmp_path / "disk") == {"aobg": "disk", "cem": "disk"}


def test_report_of_a_run_larger_than_memory_reads_it_into_mapped_files(memory_run, tmp_path, monkeypatch, disk_spy):
    """`trajopt report` reads metrics.jsonl into files mapped into memory (beside the report, removed after) when
    the file is larger than twice TRAJOPT_HISTORY_MEMORY, and writes the same report as from memory."""
    monkeypatch.delenv("TRAJOPT_HISTORY_MEMORY", raising=False)
    run = memory_run
    assert invoke("report", run, "--output", tmp_path / "memory" / "report.md", "--quiet").exit_code == 0
    assert not disk_spy
    monkeypatch.setenv("TRAJOPT_HISTORY_MEMORY", str((run / runs.METRICS).stat().st_size // 2 - 1))
    assert invoke("report", run, "--output", tmp_path / "disk" / "report.md", "--quiet").exit_code == 0
    assert {name for _, name, _, _ in disk_spy} >= {"aobg/cost", "aobg/alpha", "cem/cost", "aobg/rollouts per step"}
    assert all(folder.parent == tmp_path / "disk" for folder, *_ in disk_spy)
    assert not any(folder.exists() for folder, *_ in disk_spy)
    assert sorted(p.name for p in (tmp_path / "disk").iterdir()) == ["report.md", "report_figures"]
    assert (tmp_path / "memory" / "report.md").read_bytes() == (tmp_path / "disk" / "report.md").read_bytes()
    figures = sorted((tmp_path / "memory" / "report_figures").iterdir())
    assert figures and [f.read_bytes() for f in figures] == [
        (tmp_path / "disk" / "report_figures" / f.name).read_bytes() for f in figures]


def test_a_run_read_back_into_mapped_files_equals_one_read_into_memory(memory_run, tmp_path):
    run = memory_run
    memory = runs.read_run(run)
    with runs.DiskHistory(tmp_path) as disk:
        mapped = runs.read_run(run, store=disk)
        for name in memory.variants:
            a, b = memory.results[name], mapped.results[name]
            assert isinstance(b.cost, np.memmap)
            np.testing.assert_array_equal(a.cost, b.cost)
            assert a.history.keys() == b.history.keys()
            for f in a.history:
                np.testing.assert_array_equal(a.history[f], b.history[f])
            assert a.chunk_seconds == b.chunk_seconds


def test_an_interrupted_streamed_run_leaves_the_same_folder_and_no_temporaries(tmp_path, monkeypatch, still_clock,
                                                                              disk_spy):
    real_run = solver.Prepared.run

    def run_then_signal(self, *, on_chunk=None, **kwargs):  # SIGINT after the first chunk of the first variant
        def hook(done, total):
            if on_chunk is not None:
                on_chunk(done, total)
            os.kill(os.getpid(), signal.SIGINT)

        return real_run(self, on_chunk=hook, **kwargs)

    monkeypatch.setattr(solver.Prepared, "run", run_then_signal)
    for kind, limit in (("memory", str(1 << 30)), ("disk", "0")):
        monkeypatch.setenv("TRAJOPT_HISTORY_MEMORY", limit)
        result = invoke("compare", SOFT, *SMALL, "--out", tmp_path / kind, "--quiet")
        assert result.exit_code == 130, result.output
    summary = json.loads((tmp_path / "disk" / runs.RESULT).read_text())
    assert summary["status"] == "interrupted" and summary["variants_not_run"] == ["cem"]
    assert summary["variants"]["aobg"]["iterations"] == 2 and summary["variants"]["aobg"]["history"] == "disk"
    assert disk_spy and not any(folder.exists() for folder, *_ in disk_spy)
    _same_folders(tmp_path / "memory", tmp_path / "disk")


def test_a_failing_streamed_run_removes_its_history_files(tmp_path, monkeypatch, disk_spy):
    def broken(*args, **kwargs):
        raise RuntimeError("disk trouble")

    monkeypatch.setattr(runs, "write_run", broken)
    monkeypatch.setenv("TRAJOPT_HISTORY_MEMORY", "0")
    out = tmp_path / "run"
    result = runner.invoke(app, ["compare", str(SOFT), *SMALL, "--out", str(out), "--quiet"])
    assert isinstance(result.exception, RuntimeError)
    assert disk_spy and not any(folder.exists() for folder, *_ in disk_spy)
    assert not out.exists()  # the folder this run created, with nothing written into it, is gone too


@pytest.mark.parametrize("value", ["1GB", "-1", "1.5", "lots"])
def test_a_bad_history_memory_setting_is_refused_before_any_work(tmp_path, monkeypatch, value):
    monkeypatch.setenv("TRAJOPT_HISTORY_MEMORY", value)
    result = runner.invoke(app, ["compare", str(SOFT), "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "TRAJOPT_HISTORY_MEMORY" in message and repr(value) in message and "whole number of bytes" in message
    assert not (tmp_path / "run").exists()


def test_force_empties_a_folder_that_a_killed_streamed_run_left(tmp_path, monkeypatch):
    from trajopt.cli._outputs import HISTORY_TEMP

    assert HISTORY_TEMP == runs.DiskHistory.PREFIX
    out = tmp_path / "run"
    (out / ".history-abc123").mkdir(parents=True)
    (out / ".history-abc123" / "0001.npy").write_bytes(b"x")
    monkeypatch.setenv("TRAJOPT_HISTORY_MEMORY", "1")
    assert invoke("compare", SOFT, *SMALL, "--out", out, "--quiet").exit_code == 2  # not empty: --force needed
    assert invoke("compare", SOFT, *SMALL, "--out", out, "--quiet", "--force").exit_code == 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------------------------------ the solver


def _scenarios():
    problem, *_ = random_quadratic((3, 2), 0)
    blowup = Problem("blowup", jnp.ones((2, 1)), lambda U: jnp.sum(U**2))
    aobg = GradientMethod(AoBG(samples=4, sigma=0.1), SGD(0.02))
    return {
        "normal": (problem, aobg, dict(iterations=23, seeds=[0, 3], chunk=5)),
        "interrupted": (problem, aobg, dict(iterations=23, seeds=[0, 3], chunk=5, should_stop=lambda: True)),
        "zero iterations": (problem, aobg, dict(iterations=0, seeds=[0, 1])),
        "non-finite": (blowup, GradientMethod(Exact(), SGD(10.0)), dict(iterations=200, seeds=[0, 1], chunk=60)),
    }


SCENARIOS = _scenarios()


def _assert_same_result(a: Result, b: Result) -> None:
    assert a.iterations == b.iterations and a.status == b.status
    np.testing.assert_array_equal(a.failed_at, b.failed_at)
    np.testing.assert_array_equal(a.U, b.U)
    assert a.cost.dtype == b.cost.dtype and a.cost.shape == b.cost.shape
    assert np.array_equal(a.cost, b.cost, equal_nan=True)
    assert list(a.history) == list(b.history)
    for f in a.history:
        assert a.history[f].dtype == b.history[f].dtype and a.history[f].shape == b.history[f].shape, f
        assert np.array_equal(a.history[f], b.history[f], equal_nan=True), f


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_custom_history_store_holds_the_result_and_changes_nothing(scenario):
    problem, method, kwargs = SCENARIOS[scenario]
    made = {}

    def store(name, shape, dtype):
        made[name] = np.full(shape, -7, dtype)  # anything not overwritten would show
        return made[name]

    default = solve(problem, method, key=KEY, **kwargs)
    custom = solve(problem, method, key=KEY, history_store=store, **kwargs)
    _assert_same_result(default, custom)
    K = default.iterations
    assert set(made) == set(default.history) - {"value"} | {"cost"}
    assert made["cost"].shape == (2, kwargs["iterations"] + 1)
    if K:  # the result's arrays are (views of) the store's: no copy was made
        assert np.shares_memory(custom.cost, made["cost"])
        assert np.shares_memory(custom.history["value"], made["cost"])
        assert all(np.shares_memory(custom.history[f], made[f]) for f in made if f != "cost")
    if scenario == "non-finite":
        assert custom.status == ["non_finite", "non_finite"] and np.isnan(custom.cost[:, -1]).all()
    if scenario == "interrupted":
        assert custom.iterations == 5 and custom.cost.shape == (2, 6)
    np.testing.assert_array_equal(default.counts(), custom.counts())


@pytest.mark.parametrize("scenario", ["normal", "zero iterations"])
def test_disk_history_maps_files_in_the_folder_and_removes_them(tmp_path, scenario):
    problem, method, kwargs = SCENARIOS[scenario]
    default = solve(problem, method, key=KEY, **kwargs)
    with runs.DiskHistory(tmp_path) as disk:
        streamed = solve(problem, method, key=KEY, history_store=disk, **kwargs)
        files = sorted(disk.folder.iterdir())
        assert disk.folder.parent == tmp_path and len(files) == len(default.history)  # cost + fields but value
        assert isinstance(streamed.cost, np.memmap)
    assert list(tmp_path.iterdir()) == []
    _assert_same_result(default, streamed)  # still readable once the files are gone


def test_a_store_that_returns_the_wrong_array_is_named():
    problem, method, kwargs = SCENARIOS["normal"]
    with pytest.raises(ValueError, match=r"history_store\('cost', \(2, 24\), float64\) returned .*shape \(2, 23\)"):
        solve(problem, method, key=KEY, history_store=lambda name, shape, dtype: np.empty((2, 23)), **kwargs)


# ------------------------------------------------------------------------------------- metrics.jsonl


def _synthetic(S: int, K: int, seed: int = 0) -> Result:
    """A Result of an AoBG-like method with K iterations (no solve: cheap at any K)."""
    rng = np.random.default_rng(seed)
    cost = rng.random((S, K + 1))
    history = {"value": cost[:, :K]}
    for f in ("alpha", "var_first", "var_zero", "bias_gap", "radius", "grad_norm", "step_size", "sigma"):
        history[f] = rng.random((S, K))
    history["alpha"][:, ::3] = 1.0  # ties
    history["rollouts"] = np.full((S, K), 21, np.int32)
    history["gradients"] = np.full((S, K), 10, np.int32)
    history["skipped"] = rng.random((S, K)) < 0.01
    if K > 10:
        cost[0, K // 2:] = np.nan  # a seed that stopped
        for f in history:
            if history[f].dtype.kind == "f" and f != "value":
                history[f][0, K // 2:] = np.nan
    ends = list(range(max(1, K // 7), K + 1, max(1, K // 7)))
    return Result(name="aobg", method=None, seeds=np.arange(S), U=np.zeros((S, 4, 1)), X=None, cost=cost,
                  history=history, status=["non_finite"] + ["ok"] * (S - 1),
                  failed_at=np.array([K // 2] + [-1] * (S - 1)),
                  iterations=K, run_seconds=1.0, compile_seconds=1.0, chunk_ends=ends,
                  chunk_seconds=[0.123456789 * (i + 1) for i in range(len(ends))])


def _one_string(results) -> bytes:
    """metrics.jsonl as the whole file in one string (how it was written before it streamed)."""
    return ("\n".join(runs.metrics_lines(results)) + "\n").encode()


def test_metrics_jsonl_streams_in_blocks_and_stays_byte_identical(tmp_path):
    results = {"aobg": _synthetic(2, 2500), "b\u00e9": _synthetic(1, runs.ITERATION_BLOCK), "z": _synthetic(3, 0)}
    runs.write_lines(tmp_path / "m.jsonl", runs.metrics_lines(results), block_chars=3000)
    assert (tmp_path / "m.jsonl").read_bytes() == _one_string(results)
    assert list(tmp_path.iterdir()) == [tmp_path / "m.jsonl"]
    # one block-boundary row, checked by hand: the last iteration has no step, so its fields are null
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 2501 + runs.ITERATION_BLOCK + 1 + 3
    last = rows[2 * 2501 - 1]
    assert last["iteration"] == 2500 and last["alpha"] is None and last["rollouts"] == 2500 * 21
    runs.write_lines(tmp_path / "empty", iter(()))
    assert (tmp_path / "empty").read_bytes() == b"\n"


def test_write_lines_is_atomic_and_gets_the_permissions_of_a_new_file(tmp_path):
    def failing():
        yield "a line"
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        runs.write_lines(tmp_path / "m.jsonl", failing(), block_chars=1)
    assert list(tmp_path.iterdir()) == []  # no half-written file, no temporary
    mask = os.umask(0o027)
    try:
        runs.write_lines(tmp_path / "m.jsonl", ["x"])
    finally:
        os.umask(mask)
    assert (tmp_path / "m.jsonl").stat().st_mode & 0o777 == 0o640


def test_writing_metrics_jsonl_holds_a_small_part_of_it_in_memory(tmp_path):
    spec = spec_mod.load(SOFT, [])
    results = {"aobg": _synthetic(2, 10_000)}
    summary = {"status": "ok"}
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        runs.write_run(tmp_path, spec, results, summary)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    size = (tmp_path / runs.METRICS).stat().st_size
    assert size > 5_000_000
    assert peak < size / 4, f"peak Python allocation {peak} bytes while writing {size} bytes"
    assert (tmp_path / runs.METRICS).read_bytes() == _one_string(results)


# ----------------------------------------------------------------------- reading a history in blocks


@pytest.mark.parametrize("seed", range(4))
def test_blocked_median_is_numpys_median(seed):
    rng = np.random.default_rng(seed)
    arrays = [
        rng.normal(size=(3, 1001)),
        np.where(rng.random((4, 999)) < 0.3, np.nan, rng.normal(size=(4, 999))),  # NaN
        rng.integers(0, 3, size=(5, 400)).astype(float),  # ties, an even count
        np.full((2, 300), 0.25),  # all equal
        np.full((3, 100), np.nan),  # all NaN
        np.where(rng.random((2, 777)) < 0.5, 1.0, np.where(rng.random((2, 777)) < 0.5, np.nan, 0.0)),  # α-like
        rng.normal(size=(1, 2)) * 1e300,  # two huge values: their mean
        -np.abs(rng.normal(size=(3, 50))),  # all negative
        np.concatenate([rng.normal(size=(2, 64)), np.full((2, 1), np.nan)], axis=1)[:, :-1],  # a strided view
    ]
    for a in arrays:
        expected = np.nanmedian(a) if np.isfinite(a).any() else np.nan
        for block, gather in ((64, 0), (64, 5), (512, 1 << 20), (1 << 30, 0)):
            got = stats.blocked_nan_median(a, block_bytes=block, gather=gather)
            assert got == expected or (np.isnan(got) and np.isnan(expected)), (a.shape, block, gather, got, expected)
    # inf counts as missing, as in nan_median
    with_inf = np.where(rng.random((3, 200)) < 0.2, np.inf, rng.normal(size=(3, 200)))
    assert stats.blocked_nan_median(with_inf, block_bytes=64) == stats.nan_median(with_inf)
    signed_zeros = np.array([[-0.0, 0.0, -0.0, 1.0, -1.0]])
    assert stats.blocked_nan_median(signed_zeros, block_bytes=8) == 0.0


@pytest.mark.parametrize("rows", [3, 700])  # NumPy takes another path for a NaN median of >= 600 rows
def test_band_by_columns_is_nan_band_bit_for_bit(rows):
    rng = np.random.default_rng(rows)
    for nan_share in (0.0, 0.2):
        v = rng.normal(size=(rows, 60))
        v[rng.random(v.shape) < nan_share] = np.nan
        v[:, 7] = np.nan
        for columns in (None, np.array([0, 1, 2, 30, 59]), np.array([5])):
            expected = stats.nan_band(v if columns is None else v[:, columns], axis=0)
            for block in (8, 8 * rows * 3, 1 << 30):
                got = stats.nan_band_columns(v, columns, block_bytes=block)
                for e, g in zip(expected, got):
                    assert np.array_equal(e, g, equal_nan=True)
                median_only = stats.nan_band_columns(v, columns, block_bytes=block, quartiles=False)
                assert np.array_equal(median_only[0], expected[0], equal_nan=True) and median_only[1:] == (None, None)


def test_everything_read_in_blocks_is_what_one_block_gives(monkeypatch):
    """Result.counts / skipped / best_cost, result.json's α and the figures, with blocks of a few iterations,
    equal what they are with the whole history in one block."""
    spec = spec_mod.load(SOFT, [])
    results = {"aobg": _synthetic(3, 900), "other": _synthetic(2, 700, seed=1)}

    def everything():
        r = results["aobg"]
        summary = runs.summarise(spec, results, verb="compare", versions={}, platform_name="cpu", x64=True,
                                 created="now")
        figures = [plots.figure_bytes(plots.convergence_figure(results, x="rollouts"), dpi=40),
                   plots.figure_bytes(plots.variance_figure(results), dpi=40)]
        return r.counts("rollouts"), r.skipped, r.best_cost, r.final_cost, runs.dumps_json(summary), figures

    whole = everything()
    monkeypatch.setattr(stats, "BLOCK_BYTES", 100)
    blocked = everything()
    for a, b in zip(whole[:4], blocked[:4]):
        np.testing.assert_array_equal(a, b)
    assert whole[4] == blocked[4]
    assert whole[5] == blocked[5]


@pytest.mark.slow  # end to end, several seconds: CI's slow job runs it
def test_a_long_run_is_drawn_at_a_few_thousand_iterates_first_and_last_included():
    K = 3 * plots.MAX_POINTS
    results = {"aobg": _synthetic(2, K)}
    fig = plots.convergence_figure(results, x="rollouts")
    cost_line, alpha_line = fig.axes[0].lines[0], fig.axes[1].lines[0]
    xs = cost_line.get_xdata()
    assert len(xs) == plots.MAX_POINTS
    full = results["aobg"].counts("rollouts")
    assert xs[0] == full[0] and xs[-1] == full[-1]
    at = plots.plot_columns(K + 1)
    assert at[0] == 0 and at[-1] == K and np.all(np.diff(at) > 0)
    np.testing.assert_array_equal(cost_line.get_ydata(), stats.nan_band(results["aobg"].cost[:, at], axis=0)[0])
    assert len(alpha_line.get_xdata()) == plots.MAX_POINTS and alpha_line.get_xdata()[-1] == full[K - 1]
    # a shorter run is drawn at every iterate
    short = {"aobg": _synthetic(2, plots.MAX_POINTS - 1)}
    line = plots.convergence_figure(short).axes[0].lines[0]
    np.testing.assert_array_equal(line.get_xdata(), np.arange(plots.MAX_POINTS))
    np.testing.assert_array_equal(line.get_ydata(), stats.nan_band(short["aobg"].cost, axis=0)[0])


@pytest.mark.slow  # end to end, several seconds: CI's slow job runs it
def test_curves_equal_only_at_the_drawn_iterates_are_not_called_the_same():
    K = 2 * plots.MAX_POINTS
    a = _synthetic(2, K)
    b = _synthetic(2, K)
    b.cost[:, 1] += 1.0  # iterate 1 is not among the drawn ones
    assert 1 not in plots.plot_columns(K + 1)
    labels = [t.get_text() for t in plots.convergence_figure({"a": a, "b": b}).axes[0].get_legend().get_texts()]
    assert not any("same curve" in t for t in labels)
    c = _synthetic(2, K)
    labels = [t.get_text() for t in plots.convergence_figure({"a": a, "c": c}).axes[0].get_legend().get_texts()]
    assert any("same curve as a" in t for t in labels)


def test_a_variants_own_iterations_are_capped_like_solve_iterations():
    # the history cap holds for variants.NAME.iterations too (an equal-budget compare sets it)
    base = ['variants.big.oracle="fobg"', 'solve.variants=["big"]']
    for iterations, seeds in ((10_000_001, 1), (10_000_000, 11)):  # past MAX_ITERATIONS; past MAX_HISTORY
        with pytest.raises(spec_mod.SpecError, match=r"variants\.big\.iterations: found .* iterations x seeds <= "):
            spec_mod.load(SOFT, base + [f"variants.big.iterations={iterations}", f"solve.seeds={seeds}"])
    loaded = spec_mod.load(SOFT, base + ["variants.big.iterations=10000000", "solve.seeds=10"])
    assert loaded.variants["big"].iterations == 10_000_000
    result = runner.invoke(app, ["compare", str(SOFT), "--budget", "1000000000000", "--variants", "exact", "--quiet"],
                           env={"TRAJOPT_STEP_COSTS": "1,1"})  # exact at T (1 + 1) = 800 a step: 1.25e9 steps
    assert result.exit_code == 2 and "--budget: found 1,000,000,000,000" in result.stderr
    assert "'exact' would be given 1,250,000,000 steps" in result.stderr, result.stderr


def test_a_full_disk_for_the_streamed_history_is_a_message_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    def full(path):
        raise OSError(errno.ENOSPC, f"{path}: no room for 1 bytes of recorded history (No space left on device)")

    monkeypatch.setattr(runs_files, "_reserve", full)
    monkeypatch.setenv("TRAJOPT_HISTORY_MEMORY", "1")
    out = tmp_path / "run"
    result = invoke("compare", SOFT, *SMALL, "--out", out)
    message = " ".join(result.stderr.split())
    assert result.exit_code == 2, result.output
    assert f"--out {out}:" in message and "no room for 1 bytes of recorded history" in message, message
    assert "Traceback" not in result.output and not out.exists()
