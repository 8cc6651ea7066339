"""A grid in one program: the cells of a study that differ only in the numbers its grid varies (a stiffness, σ, a
step) run as ONE compiled program, vmapped over the cells, in chunks that keep its memory bounded.

    plan(cells, memory_limit=..., max_cells=...) -> [Chunk]      which cells run together (nothing compiles)
    run_chunk(chunk, should_stop) -> iterator of CellOutcome      one chunk: one program for its cells

**When.** By default on an accelerator only (`default_group_cells`): on a 2-core CPU the grid as one program ran
slower than its cells in turn (benchmarks/bench_compile_once.txt), so there ``max_cells`` defaults to 1;
``TRAJOPT_GROUP_CELLS=N`` groups anywhere.

**Which cells group.** `plan` gathers the compare cells (``verb = "compare"``) of one problem file, variant, seeds,
budget and grid probes (`trajopt.studies.cells.lift_positions`), when compile once is on (``TRAJOPT_COMPILE_ONCE``
not 0): the candidates. `run_chunk` traces and lowers each candidate's fused loop with the grid's constants as inputs
(exactly what `trajopt.studies.cells.run_cell` lowers), and the cells whose lowered loops have the same program text,
argument types and compile options, the same stop rule's program and the same iterations, chunk length and seeds
form one group: one program computes all of them,

    chunk(c_1 .. c_G; x_1 .. x_G) = vmap over g of loop(c_g; x_g)    (`trajopt.programs.over_runs`)

c_g the cell's lifted constants, x_g its seeds' states (its start, its seed keys). A cell whose loop is another
program (a value that changes it, a callback), that cannot be lifted, or whose tracing fails runs alone, as
`run_cell` runs it (and fails alone, with its own message). So does a group of one, a closed-loop or fidelity cell
(today's path: one compiled program per cell, shared through `trajopt.programs.CACHE`), and every cell when
``TRAJOPT_COMPILE_ONCE=0`` or ``max_cells`` is 1.

**Memory.** A group is cut into chunks of at most ``max_cells`` cells (``TRAJOPT_GROUP_CELLS``; default: what memory
allows) such that the chunk holds at most ``memory_limit`` bytes (the CLI's ``TRAJOPT_HISTORY_MEMORY``, 1 GiB: the
bound past which a run's history streams to disk) of recorded histories (`trajopt.history.history_bytes`) and
rollout states of one step (`trajopt.preflight.check_working_set`'s size: seeds x rollouts per step x horizon x
(state + control size) x 8 bytes) together, and its loop's outputs per chunk of iterations stay within
`trajopt.loop.CHUNK_ENTRIES` seed-iterations (the fused solve's own bound). A cell over the bound alone is a chunk of
one: today's path (its history streams to disk where the executor says so). The chunks of a group are as even as
possible; a smaller last chunk is padded with copies of its last cell (their rows are dropped), so the group
compiles once.

**The same numbers.** Each cell's seeds run the same iterations from the same start with the same noise (seed s of
a cell draws from ``fold_in(fold_in(key, s), k)`` as alone); a seed's history, status and final cost are its rows of
the group's run. XLA compiles the vmapped loop apart from the cell's own, so a last bit can differ where it fuses
or vectorises the extra batch axis otherwise (benchmarks/bench_compile_once.txt records the differences seen). The
group's loop stops when every seed of every cell has stopped (a converged iLQR, a budget): the rows after a cell's
own stop repeat its last row, as they would alone; only ``settled_at`` (and the seconds) are the group's.

**The records.** A grouped cell's result.json says so: ``program.group`` = {cells: the group's size, chunks: its
chunks, chunk: this cell's chunk (0-based), chunk_cells: the cells in it, index: the cell's place in it, padded: the
copies added}. Its ``compile_seconds`` is its own tracing and lowering, plus, for the first cell of each chunk, the
chunk's program's compilation (next to nothing when the group's program is reused: ``program.reused``; the others
have ``reused`` true). Its ``run_seconds`` is the chunk's wall time, shared by the chunk's cells as a cell's seconds
are shared by its seeds: a chunk's cells were never timed apart.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from trajopt.studies.cells import (CELL_FAILED, CELL_INTERRUPTED, CellOutcome, budget_options, cell_rows, cell_spec,
                                   compare_outcome, lift_positions, run_cell)
from trajopt.studies.expand import Cell

GROUP_ENV = "TRAJOPT_GROUP_CELLS"
"""``TRAJOPT_GROUP_CELLS=N``: at most N cells per compiled chunk (1: one program per cell, today's path); unset: the
default of where the cells run (`default_group_cells`)."""

DEFAULT_MEMORY = 1 << 30
"""The bound a chunk's histories and rollout states stay under when the caller gives none (bytes; the CLI gives
``TRAJOPT_HISTORY_MEMORY``, whose default this is)."""


def default_group_cells(accelerator: Optional[bool] = None) -> Optional[int]:
    """The most cells per chunk when nobody says (``max_cells`` None, ``TRAJOPT_GROUP_CELLS`` unset): on a CPU 1, the
    cells in turn, each compiled once and shared (benchmarks/bench_compile_once.txt: on a 2-core CPU the grid as one
    vmapped program ran about 15 % slower and held more memory, each cell's seeds already keeping the cores busy);
    on an accelerator None, as many as memory allows (one program over the grid's rows: what a GPU is for).
    ``accelerator`` None asks JAX's default backend (a Ray driver passes whether its tasks ask for GPUs)."""
    if accelerator is None:
        import jax

        accelerator = jax.default_backend() != "cpu"
    return None if accelerator else 1


def group_cells_limit(environ: Optional[dict] = None) -> Optional[int]:
    """The most cells per chunk from ``TRAJOPT_GROUP_CELLS`` (None: unset, `default_group_cells` decides); a
    ValueError with one line naming the variable, what was found and what is allowed."""
    text = (os.environ if environ is None else environ).get(GROUP_ENV)
    if text is None or not text.strip():
        return None
    try:
        n = int(text.strip())
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{GROUP_ENV}: found {text!r}, allowed: a whole number >= 1, the most study cells one compiled "
                         "program runs together (1: one program per cell; unset: 1 on a CPU, as many as memory "
                         "allows on an accelerator)")
    return n


@dataclass(frozen=True)
class Chunk:
    """Cells that run as one program (`run_chunk`): ``cells``; ``group`` the cells of their group, ``number`` this
    chunk's place among the group's ``chunks``, ``size`` the cells its program is compiled for (the group's largest
    chunk: a smaller one is padded)."""

    cells: tuple
    group: int = 1
    number: int = 0
    chunks: int = 1
    size: int = 1


def _candidate(cell: Cell):
    """What cells must share to be candidates for one group (None: the cell runs alone)."""
    if cell.error is not None or cell.verb != "compare" or not cell.probes:
        return None
    return (cell.path, cell.variant, cell.probes, cell.budget, tuple(cell.seeds), repr(cell.step_costs))


def cell_bytes(cell: Cell) -> tuple[int, int]:
    """(bytes one cell adds to a chunk: its recorded history and the rollout states of one step, seed-iterations it
    adds to one chunk's outputs), from its spec (the step traced abstractly, nothing compiled)."""
    from trajopt.history import history_bytes
    from trajopt.loop import default_chunk, info_fields
    from trajopt.preflight import rollouts_per_step
    from trajopt.solver import runs_once

    spec = cell_spec(cell)
    problem, method = spec.problem(), spec.variants[cell.variant].method
    seeds, iterations = len(spec.solve.seeds), spec.iterations_of(cell.variant)
    rows = 1 if cell.budget is not None and runs_once(method, seeds) else seeds
    history = history_bytes(seeds, iterations, len(info_fields(problem, method)))
    width = int(getattr(spec.system, "state_size", 0)) + int(getattr(spec.system, "control_size", 0))
    working = rows * (rollouts_per_step(method, problem) or 1) * int(spec.task.horizon) * width * 8
    chunk = spec.solve.chunk if spec.solve.chunk is not None else default_chunk(iterations, seeds)
    return history + working, rows * min(chunk, max(iterations, 1))


def cells_per_chunk(cell: Cell, memory_limit: Optional[int] = None, max_cells: Optional[int] = None) -> int:
    """The most cells of ``cell``'s group one chunk holds (see the module docstring): at least 1."""
    from trajopt.loop import CHUNK_ENTRIES

    limit = DEFAULT_MEMORY if memory_limit is None else memory_limit
    try:
        size, entries = cell_bytes(cell)
    except Exception:  # noqa: BLE001 - a cell whose spec fails: alone (run_cell records why)
        return 1
    cap = min(limit // max(size, 1), CHUNK_ENTRIES // max(entries, 1))
    return max(1, min(cap, max_cells) if max_cells is not None else cap)


def plan(cells: Sequence[Cell], *, memory_limit: Optional[int] = None, max_cells: Optional[int] = None,
         spread: int = 1, accelerator: Optional[bool] = None) -> list[Chunk]:
    """The chunks ``cells`` run in: each group of candidates (`_candidate`) cut into even chunks of at most
    `cells_per_chunk` cells (and into at least ``spread``, the tasks a cluster runs at once, where it has as many
    cells), every other cell a chunk of its own, in the order of each group's first cell. ``max_cells`` None:
    `default_group_cells` (``accelerator`` as it takes it): one cell per chunk on a CPU."""
    from trajopt import programs

    if max_cells is None:
        max_cells = default_group_cells(accelerator)
    if not programs.enabled() or max_cells == 1:
        return [Chunk((c,)) for c in cells]
    groups: dict = {}
    order: list = []
    for c in cells:
        key = _candidate(c)
        if key is None:
            order.append([c])
        else:
            if key not in groups:
                groups[key] = []
                order.append(groups[key])
            groups[key].append(c)
    out = []
    for members in order:
        if len(members) == 1:
            out.append(Chunk((members[0],)))
            continue
        cap = cells_per_chunk(members[0], memory_limit, max_cells)
        n = max(math.ceil(len(members) / cap), min(max(spread, 1), len(members)))
        size = math.ceil(len(members) / n)
        for i in range(n):
            out.append(Chunk(tuple(members[i * size:(i + 1) * size]), group=len(members), number=i, chunks=n,
                             size=size if n > 1 else len(members)))
    return out


def _failed(cell: Cell, e: BaseException) -> CellOutcome:
    """A failed outcome as `run_cell` records one."""
    msg = f"{type(e).__name__}: {e}"
    return CellOutcome(cell.index, CELL_FAILED, cell_rows(cell, error=msg), error=msg + "\n" + traceback.format_exc(limit=3))


def _lower(cell: Cell):
    """(the cell's spec, its traced and lowered loop: `trajopt.solver`'s, with the grid's constants as inputs), as
    `run_cell` prepares it, before anything compiles."""
    import jax

    from trajopt import solver

    spec = cell_spec(cell)
    variant = spec.variants[cell.variant]
    lowered = solver._lower(spec.problem(), variant.method, key=jax.random.PRNGKey(spec.solve.key),
                            iterations=spec.iterations_of(cell.variant), seeds=spec.solve.seeds,
                            chunk=spec.solve.chunk, name=cell.variant, lift=lift_positions(cell),
                            **budget_options(cell))
    return spec, lowered


def _program(low):
    """What cells must share to run as one program: their loop's program (text, argument types, compile options), its
    stop rule's, and the run's settings; a loop that calls Python is its own (two can have the same text)."""
    from trajopt import programs
    from trajopt.compiler import compile_options

    if programs.host_callbacks(low.lowered):
        return ("alone", id(low))
    p = low.prepared
    options = compile_options()
    stopped = None if low.stopped_lowered is None else programs.program_key(low.stopped_lowered, options)
    return (programs.program_key(low.lowered, options), stopped, p["iterations"], p["chunk"], p["shared"],
            tuple(np.asarray(p["seeds"]).tolist()), p["budget"], repr(p["step_costs"]), p["horizon"],
            tuple(p["layout"].fields))


def run_chunk(chunk: Chunk, should_stop: Optional[Callable[[], bool]] = None) -> Iterator[CellOutcome]:
    """Run a chunk's cells (see the module docstring) and yield each cell's outcome when its program has run; after
    an interrupted one (a stop request) nothing more. ``should_stop`` is polled between cells while they are traced
    and between the compiled chunks of iterations of the loop."""
    if len(chunk.cells) == 1:
        yield run_cell(chunk.cells[0], should_stop)
        return
    members, alone = [], []
    for cell in chunk.cells:
        if should_stop is not None and should_stop():
            return
        try:
            spec, low = _lower(cell)
        except Exception:  # noqa: BLE001 - run alone: run_cell records its own error
            alone.append(cell)
            continue
        if low.program is None:  # its loop could not be lifted: compiled with its constants, alone
            alone.append(cell)
        else:
            members.append((cell, spec, low))
    parts: dict = {}
    for m in members:
        parts.setdefault(_program(m[2]), []).append(m)
    for part in parts.values():
        outcomes = _run_part(part, chunk, should_stop, pad=len(parts) == 1)  # padded: the group's program again
        for outcome in outcomes:
            yield outcome
            if outcome.status == CELL_INTERRUPTED:
                return
    for cell in alone:
        if should_stop is not None and should_stop():
            return
        outcome = run_cell(cell, should_stop)
        yield outcome
        if outcome.status == CELL_INTERRUPTED:
            return


def _alone(cell: Cell, spec, low, should_stop) -> CellOutcome:
    """One cell's lowered loop compiled (or reused) and run on its own: what `run_cell` does, without tracing again."""
    from trajopt.solver import STATUS_INTERRUPTED

    try:
        result = low.compile().run(should_stop=should_stop, name=cell.variant)
        if any(s == STATUS_INTERRUPTED for s in result.status):
            return CellOutcome(cell.index, CELL_INTERRUPTED, [])
        return compare_outcome(cell, spec, result)
    except Exception as e:  # noqa: BLE001  (recorded in the table; the study goes on)
        return _failed(cell, e)


def _run_part(part: list, chunk: Chunk, should_stop, pad: bool) -> list[CellOutcome]:
    """The outcomes of cells whose loops are one program (``part``: [(cell, spec, lowered)]), run as one vmap (padded
    to ``chunk.size`` cells with ``pad``). If the group's program fails, each cell runs alone (its error its own)."""
    import jax
    import jax.numpy as jnp

    from trajopt import programs, solver
    from trajopt.compiler import compile_cached
    from trajopt.solver import STATUS_INTERRUPTED

    p0 = part[0][2].prepared
    if len(part) == 1 or p0["iterations"] == 0:
        return [_alone(*m, should_stop) for m in part]
    count = len(part)
    size = max(count, chunk.size) if pad else count
    order = list(range(count)) + [count - 1] * (size - count)  # the padding: copies of the last cell
    lows = [part[i][2] for i in order]
    rows = int(np.shape(p0["carry"][1])[0])  # each cell's rows: its seeds (one for a shared deterministic run)
    t0 = time.perf_counter()
    try:
        inputs = programs.stack_inputs([low.program.inputs for low in lows])
        carry = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *[low.prepared["carry"] for low in lows])
        keys = jnp.concatenate([low.prepared["seed_keys"] for low in lows])
        fn = programs.over_runs(part[0][2].program.fn, size, (True, True, False, False))
        lowered = jax.jit(fn).lower(inputs, carry, keys, np.arange(p0["chunk"], dtype=np.int32), True)
        program, reused, cache = compile_cached(lowered)
        stopped_fn = None
        if part[0][2].stopped_lowered is not None:  # the same program for every cell (`_program`)
            stopped_fn = compile_cached(jax.jit(jax.vmap(p0["rule"].converged)).lower(carry[0]))[0]
        compile_seconds = time.perf_counter() - t0
        seeds = np.concatenate([np.asarray(low.prepared["seeds"])[:rows] for low in lows])
        group = solver.Prepared(**{**p0, "seeds": seeds, "carry": carry, "seed_keys": keys, "shared": False,
                                   "history_store": None}, compiled=functools.partial(program, inputs),
                                compile_seconds=0.0, stopped_fn=stopped_fn, reused=reused, compilation_cache=cache)
        result = group.run(should_stop=should_stop)
    except Exception:  # noqa: BLE001 - the group's program failed: each cell alone, so a failure is its cell's own
        return [_alone(*m, should_stop) for m in part]
    if any(s == STATUS_INTERRUPTED for s in result.status):
        return [CellOutcome(cell.index, CELL_INTERRUPTED, []) for cell, _, _ in part]
    outcomes = []
    for g, (cell, spec, low) in enumerate(part):
        record = {"cells": chunk.group, "chunks": chunk.chunks, "chunk": chunk.number, "chunk_cells": count,
                  "index": g, "padded": size - count}
        try:
            mine = cell_result(result, g, rows, low.prepared, name=cell.variant,
                               compile_seconds=low.seconds + (compile_seconds if g == 0 else 0.0),
                               reused=reused if g == 0 else True, cache=cache if g == 0 else "memory")
            outcomes.append(compare_outcome(cell, spec, mine, group=record))
        except Exception as e:  # noqa: BLE001
            outcomes.append(_failed(cell, e))
    return outcomes


def cell_result(result, g: int, rows: int, prepared: dict, *, name: str, compile_seconds: float, reused: bool,
                cache: str):
    """Cell ``g``'s `Result` from its group's (whose seeds are the cells' ``rows`` rows one after another): its rows
    of every per-seed array (a shared deterministic run's one row repeated for each of its seeds, as
    `trajopt.solver.Prepared.run` repeats it), its own name, method, seeds, lifted count, and the seconds and
    program facts given (``cache``: `Result.compilation_cache`)."""
    seeds = np.asarray(prepared["seeds"])
    n, shared = len(seeds), bool(prepared["shared"])
    at = slice(g * rows, (g + 1) * rows)

    def take(a):
        a = np.asarray(a)[at]
        return np.repeat(a, n, axis=0) if shared else a

    def listed(values):
        values = list(values[at])
        return values * n if shared else values

    return dataclasses.replace(
        result, name=name, method=prepared["method"], seeds=seeds, U=take(result.U),
        X=None if result.X is None else take(result.X), cost=take(result.cost),
        history={f: take(v) for f, v in result.history.items()}, status=listed(result.status),
        failed_at=take(result.failed_at), stopped=None if result.stopped is None else listed(result.stopped),
        stopped_at=None if result.stopped_at is None else take(result.stopped_at), ran_once=shared,
        compile_seconds=compile_seconds, reused=reused, compilation_cache=cache, lifted=prepared["lifted"],
        # an evaluation compiled apart (a group stopped early) is the group's: counted with its first cell only
        final_evaluation_seconds=result.final_evaluation_seconds if g == 0 else None)
