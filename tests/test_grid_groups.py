"""A grid in one program (trajopt.studies.groups): the cells of a grid that differ only in the numbers it varies run
as one compiled program vmapped over them, and each cell's folder holds what running it alone writes.

One module fixture runs a 2 x 3 grid (σ x the step, one step so large that its cells blow up) on a small spring-wall
problem twice into study folders: grouped (the default) and one program per cell (``group_cells=1``: the path every
cell took before, which shares one compiled program between cells through the cache); XLA's compilations are counted
at XLA (every ``Lowered.compile``), not by trajopt's own counters."""

import csv
import json
from pathlib import Path

import pytest

from builders import xla_compiles
from trajopt import programs
from trajopt.studies import expand, groups, load_study
from trajopt.studies.executors import LocalExecutor
from trajopt.studies.runner import run_study

ROOT = Path(__file__).resolve().parent.parent
GROUPED = 64  # cells per program, memory allowing: grouped on this CPU too (whose default runs the cells in turn)
STUDY = f'''title = "2 x 3 in one program"
problems = ["{(ROOT / "problems/spring_wall_100.toml").as_posix()}"]
variants = ["zobg"]
seeds = 2
iterations = 6
[set]
"task.horizon" = 10
[grid]
"oracle.sigma" = [0.1, 0.2]
"solve.optimizer.step" = [1e-5, 1e-4, 1e90]
'''
TIMINGS = ("run_seconds", "compile_seconds")


def _run(tmp, name, executor):
    from trajopt.studies import store

    study = load_study(tmp / "study.toml")
    expansion = expand(study)
    folder = tmp / name
    store.prepare(folder, fresh=True)
    run = run_study(study, expansion, folder, executor)
    return run, folder, expansion


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("groups")
    (tmp / "study.toml").write_text(STUDY)
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv(programs.ENV, "1")
        programs.CACHE.clear()
        compiles = xla_compiles(mp)
        grouped = _run(tmp, "grouped", LocalExecutor(group_cells=GROUPED))
        n_grouped = len(compiles)
        alone = _run(tmp, "alone", LocalExecutor(group_cells=1))
        n_alone = len(compiles) - n_grouped
    finally:
        mp.undo()
    return {"grouped": grouped, "alone": alone, "compiles": (n_grouped, n_alone), "tmp": tmp}


def _rows(folder):
    return list(csv.DictReader(open(folder / "study.csv")))


def _summaries(folder):
    return {p.parent.relative_to(folder).as_posix(): json.loads(p.read_text())
            for p in sorted(folder.glob("cells/**/result.json"))}


def test_each_grouped_cell_has_the_numbers_of_its_own_run(both):
    """Every cell's rows equal its rows run alone (the step and σ of the cell, not of the group's first cell), the
    finite ones to 1e-13 relative: XLA compiles the loop vmapped over the cells apart from the cell's own, and a sum
    can round otherwise in its last bit; the cells that blow up (step 1e90) are "non_finite" where they are alone too,
    and do not touch the others."""
    (run_g, folder_g, _), (run_a, folder_a, _) = both["grouped"], both["alone"]
    assert run_g.status == run_a.status == "complete"
    rows_g, rows_a = _rows(folder_g), _rows(folder_a)
    assert len(rows_g) == len(rows_a) == 12
    statuses = {}
    for g, a in zip(rows_g, rows_a):
        assert {k: v for k, v in g.items() if k not in TIMINGS + ("final_cost", "best_cost", "initial_cost")} == \
               {k: v for k, v in a.items() if k not in TIMINGS + ("final_cost", "best_cost", "initial_cost")}
        for k in ("final_cost", "best_cost", "initial_cost"):
            if a[k] == "":
                assert g[k] == ""
            else:
                assert float(g[k]) == pytest.approx(float(a[k]), rel=1e-13, abs=0)
        statuses.setdefault(float(g["solve.optimizer.step"]) > 1, set()).add(g["status"])
    assert statuses[False] == {"ok"} and "non_finite" in statuses[True]  # a blow-up is its cell's own
    finals = {(r["oracle.sigma"], r["solve.optimizer.step"]): r["final_cost"] for r in rows_g if r["seed"] == "0"}
    assert len({v for k, v in finals.items() if float(k[1]) < 1}) == 4  # four finite cells, four numbers


def test_the_group_compiles_once_and_its_records_say_so(both):
    """One XLA compilation for the six cells grouped (the per-cell path compiles one shared program too: what it
    reuses is the cache, not a vmap); each result.json records its group, the first cell the compilation, the
    others reuse, and every cell the chunk's run seconds (one number: the chunk ran as one program)."""
    assert both["compiles"] == (1, 1)
    grouped = _summaries(both["grouped"][1])
    alone = _summaries(both["alone"][1])
    assert grouped.keys() == alone.keys() and len(grouped) == 6
    records = [s["variants"]["zobg"]["program"] for s in grouped.values()]
    groups_ = sorted((r["group"]["index"], r["reused"], r["compilation_cache"] == "memory") for r in records)
    assert groups_ == [(0, False, False), *[(g, True, True) for g in range(1, 6)]]
    assert {(r["group"]["cells"], r["group"]["chunks"], r["group"]["chunk_cells"], r["group"]["padded"])
            for r in records} == {(6, 1, 6, 0)}
    assert all("group" not in s["variants"]["zobg"]["program"] for s in alone.values())
    runs = {s["variants"]["zobg"]["run_seconds"] for s in grouped.values()}
    assert len(runs) == 1


def _by_point(rows) -> dict:
    return {(float(r["oracle.sigma"]), float(r["solve.optimizer.step"]), int(r["seed"])): r for r in rows}


def test_a_chunk_padded_with_copies_gives_the_same_rows(both, monkeypatch):
    """Three of the cells as a chunk compiled for six (three copies of the last added, as `plan` pads a group's
    smaller chunk): the group's program is reused (no compilation) and each cell's rows are bit for bit those of
    the six-cell chunk."""
    (_, folder_g, expansion) = both["grouped"]
    cells = list(expansion.cells)[:3]
    compiles = xla_compiles(monkeypatch)
    outcomes = list(groups.run_chunk(groups.Chunk(tuple(cells), group=6, number=0, chunks=2, size=6)))
    assert len(compiles) == 0
    assert [o.summary["variants"]["zobg"]["program"]["group"]["padded"] for o in outcomes] == [3, 3, 3]
    six = _by_point(_rows(folder_g))
    for r in (r for o in outcomes for r in o.rows):
        mine = six[(r["oracle.sigma"], r["solve.optimizer.step"], r["seed"])]
        assert repr(r["final_cost"]) == mine["final_cost"] and r["status"] == mine["status"]


def test_a_failing_cell_leaves_its_group(both, monkeypatch):
    """A cell whose loop fails to trace runs alone (and fails alone: its own message), and the others still run as
    one program (here the six-cell one, padded: nothing compiles) with their own rows."""
    (_, folder_g, expansion) = both["grouped"]
    cells = list(expansion.cells)[:3]
    real = groups._lower

    def broken(cell):
        if cell.index == cells[1].index:
            raise RuntimeError("boom")
        return real(cell)

    monkeypatch.setattr(groups, "_lower", broken)
    monkeypatch.setattr(groups, "run_cell", lambda cell, should_stop=None: groups._failed(cell, RuntimeError("boom")))
    compiles = xla_compiles(monkeypatch)
    outcomes = {o.index: o for o in groups.run_chunk(groups.Chunk(tuple(cells), group=6, size=6))}
    assert len(compiles) == 0
    assert outcomes[cells[1].index].status == "failed" and "boom" in outcomes[cells[1].index].error
    six = _by_point(_rows(folder_g))
    for c in (cells[0], cells[2]):
        assert outcomes[c.index].status == "ok"
        for r in outcomes[c.index].rows:
            assert repr(r["final_cost"]) == six[(r["oracle.sigma"], r["solve.optimizer.step"], r["seed"])]["final_cost"]


def test_the_default_groups_on_an_accelerator_and_runs_cells_in_turn_on_a_cpu(both):
    """Nobody saying how many cells a program runs: one per chunk on a CPU (the grid as one program ran slower there:
    benchmarks/bench_compile_once.txt), the whole group (memory allowing) on an accelerator."""
    cells = expand(load_study(both["tmp"] / "study.toml")).cells
    assert [len(c.cells) for c in groups.plan(cells, accelerator=False)] == [1] * len(cells)
    assert len(groups.plan(cells, accelerator=True)) < len(cells)
    assert groups.default_group_cells(accelerator=False) == 1 and groups.default_group_cells(accelerator=True) is None


def test_group_cells_knob(monkeypatch):
    monkeypatch.setenv(groups.GROUP_ENV, "3")
    assert groups.group_cells_limit() == 3
    monkeypatch.delenv(groups.GROUP_ENV)
    assert groups.group_cells_limit() is None
    for bad in ("0", "x", "-2"):
        monkeypatch.setenv(groups.GROUP_ENV, bad)
        with pytest.raises(ValueError, match="TRAJOPT_GROUP_CELLS: found"):
            groups.group_cells_limit()


@pytest.mark.slow  # traces the six cells twice: about 8 s on this loaded 2-core host
def test_a_stop_inside_a_group_keeps_nothing_half_done_and_resume_runs_it(both):
    """A stop request while the group's program runs: its cells are interrupted (nothing of them written, the study
    "interrupted"); the rerun groups the unfinished cells again and writes the rows the uninterrupted study wrote."""
    from trajopt.studies import store

    tmp = both["tmp"]
    study = load_study(tmp / "study.toml")
    expansion = expand(study)
    folder = tmp / "stopped"
    store.prepare(folder, fresh=True)
    polls = []

    def stop():  # true from the poll after the group's first chunk of iterations (after the cells' tracing)
        polls.append(1)
        return len(polls) > len(expansion.cells) + 2

    run = run_study(study, expansion, folder, LocalExecutor(group_cells=GROUPED), should_stop=stop)
    assert run.status == "interrupted" and run.ran == [] and not list(folder.glob("cells/**/result.json"))
    again = run_study(study, expansion, folder, LocalExecutor(group_cells=GROUPED))
    assert again.status == "complete" and sorted(again.ran) == [c.index for c in expansion.cells]
    assert _by_point(_rows(folder)).keys() == _by_point(_rows(both["grouped"][1])).keys()
    for k, r in _by_point(_rows(folder)).items():
        assert r["final_cost"] == _by_point(_rows(both["grouped"][1]))[k]["final_cost"]
