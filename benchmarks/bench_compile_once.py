"""Compile once: a 5 x 4 study grid (contact stiffness x the oracle's sigma) on stiff pushing, compiled per cell
(``TRAJOPT_COMPILE_ONCE=0``, how every study ran before), once for the grid with its cells run one after another
(``TRAJOPT_GROUP_CELLS=1``: the constants the grid varies are inputs of one program, `trajopt.programs`), and as one
program vmapped over the grid's cells (``TRAJOPT_GROUP_CELLS=20``: the default on an accelerator; a CPU's default is the
cells in turn, as these rows found, `trajopt.studies.groups`), then chunked (``TRAJOPT_GROUP_CELLS=3``:
seven chunks of three cells, the last padded), each from a cold compilation cache; then the grid again in a new
process with the cache warm (JAX's persistent cache, which the command line keeps: the lifted program's text is the
same in every process).

    python benchmarks/bench_compile_once.py            # writes benchmarks/bench_compile_once.txt

For each run: the wall time of the ``trajopt study`` command, the compile and run seconds summed over its 20 cells
(study.csv: each cell's, shared by its seeds; a grouped cell's run seconds are its chunk's, counted once per chunk,
and its chunk's compilation is charged to the chunk's first cell), the cells whose compiled loop was reused
(result.json), the peak resident memory of the study's process, and the largest relative difference of a final cost
from the per-cell compilation's (the grid's program computes the operations as written where XLA had folded a grid
value into another constant: a last bit, which the stiffest cells' 500 iterations amplify), then of the vmapped
grid's from the cells run one after another with the same lifted program. Then the grid's run seconds as one
program and with its cells in turn, alternated in this process (`interleaved`: the load of a shared host falls on
both alike), and honest seconds: the same variant placed first and last in one compare, its run seconds
(`positions`).

The host is shared: a long background job (another study) ran beside this script, which runs under ``nice -n 10``;
the header records the load average.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUDY = """title = "Compile once: stiffness x sigma on stiff pushing (5 x 4)"
problems = ["{problem}"]
variants = ["aobg"]
seeds = 5
iterations = 500

[grid]
"system.stiffness" = [10.0, 30.0, 100.0, 300.0, 1000.0]
"oracle.sigma" = [0.025, 0.05, 0.1, 0.2]
"""


def run(study: Path, out: Path, cache: Path, compile_once: bool, group_cells: str = "") -> dict:
    env = dict(os.environ, TRAJOPT_COMPILE_ONCE="1" if compile_once else "0", TRAJOPT_CACHE_DIR=str(cache),
               TRAJOPT_CACHE="1", TRAJOPT_GROUP_CELLS=group_cells)
    script = ("import resource, sys; from trajopt._entry import main; "
              "code = 0\ntry:\n    main()\nexcept SystemExit as e:\n    code = e.code or 0\n"
              "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", script, "study", str(study), "--out", str(out), "--quiet"],
                          env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stdout + proc.stderr)
    peak = next(int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("PEAK_KIB"))
    rows = list(csv.DictReader(open(out / "study.csv")))
    cells = {}
    for r in rows:
        cells[(r["system.stiffness"], r["oracle.sigma"])] = (float(r["compile_seconds"]), float(r["run_seconds"]))
    summaries = [json.loads(p.read_text())["variants"]["aobg"] for p in out.glob("cells/**/result.json")]
    reused = sum(s["program"]["reused"] for s in summaries)
    runs, chunks = {}, set()  # a grouped cell's run seconds are its chunk's: once per chunk
    for i, s in enumerate(summaries):
        group = s["program"].get("group")
        key = ("chunk", group["chunk"]) if group else ("cell", i)
        runs[key] = s["run_seconds"]
        chunks.add(key)
    costs = {(r["system.stiffness"], r["oracle.sigma"], r["seed"]): float(r["final_cost"]) for r in rows}
    return {"wall": wall, "compile": sum(c for c, _ in cells.values()), "run": sum(runs.values()),
            "cells": len(cells), "programs": len(chunks), "reused": reused, "peak_mib": peak / 1024, "costs": costs}


def positions(repeats: int = 5) -> list[str]:
    """Honest seconds: the same variant (zobg) first and last of four in one `trajopt.solver.prepare_each` (what
    ``trajopt compare`` runs), its run seconds each time; medians over ``repeats`` processes' worth of runs."""
    import jax
    import numpy as np

    from trajopt import solver
    from trajopt import spec as spec_mod

    spec = spec_mod.load(ROOT / "problems/pushing_stiff.toml")
    v = spec.variants
    runs = [(v[n].method, 500) for n in ("zobg", "fobg", "aobg", "zobg")]
    first, last = [], []
    for r in range(repeats):
        solver.programs.CACHE.clear()
        seconds = [p.run().run_seconds for p in solver.prepare_each(spec.problem(), runs, key=jax.random.PRNGKey(r),
                                                                    seeds=range(5))]
        first.append(seconds[0])
        last.append(seconds[-1])
    return [f"honest seconds: zobg placed first and last of [zobg, fobg, aobg, zobg] (pushing_stiff, 5 seeds, 500 "
            f"iterations, compiled ahead as compare does), run seconds median of {repeats}: first "
            f"{np.median(first):.3f} s, last {np.median(last):.3f} s (ratio {np.median(first) / np.median(last):.2f}; "
            f"each: {', '.join(f'{a:.3f}/{b:.3f}' for a, b in zip(first, last))})"]


def interleaved(study: Path, repeats: int = 2) -> list[str]:
    """The grid's run seconds as one program and with its cells in turn (the same lifted loop, one cell at a time),
    alternated in this process (both compiled before the first timing), so that the host's load falls on both."""
    from trajopt.studies import expand, groups, load_study
    from trajopt.studies.cells import run_cell

    cells = expand(load_study(study)).cells
    chunk = groups.Chunk(tuple(cells), group=len(cells), size=len(cells))
    list(groups.run_chunk(chunk))  # compiled (and run once) before timing
    run_cell(cells[0])
    grid, turn = [], []
    for _ in range(repeats):
        grid.append(next(iter(groups.run_chunk(chunk))).result.run_seconds)
        turn.append(sum(run_cell(c).result.run_seconds for c in cells))
    return [f"run seconds alternated in one process ({repeats} each, compiled before): one program "
            f"{', '.join(f'{g:.2f}' for g in grid)} s; cells in turn {', '.join(f'{t:.2f}' for t in turn)} s"]


def main() -> None:
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        study = tmp / "grid.toml"
        study.write_text(STUDY.format(problem=(ROOT / "problems/pushing_stiff.toml").as_posix()))
        results = {
            "per cell (TRAJOPT_COMPILE_ONCE=0), cold cache": run(study, tmp / "a", tmp / "cache_a", False),
            "compile once, cells in turn, cold cache": run(study, tmp / "b", tmp / "cache_b", True, "1"),
            "one program (vmapped grid), cold cache": run(study, tmp / "d", tmp / "cache_d", True, "20"),
            "one program, chunks of 3 cells, cold cache": run(study, tmp / "e", tmp / "cache_e", True, "3"),
            "one program, warm cache (a new process)": run(study, tmp / "f", tmp / "cache_d", True, "20"),
        }
    base = results["per cell (TRAJOPT_COMPILE_ONCE=0), cold cache"]["costs"]
    load = os.getloadavg()
    import jax

    lines.append(f"bench_compile_once: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                 f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; python {platform.python_version()}, "
                 f"jax {jax.__version__}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; the host is shared "
                 "with a long background job, this script under nice -n 10")
    lines.append("grid: pushing_stiff.toml, aobg, system.stiffness [10, 30, 100, 300, 1000] x oracle.sigma "
                 "[0.025, 0.05, 0.1, 0.2], 5 seeds, 500 iterations (20 cells)")
    lines.append(f"{'run':44s} {'wall s':>8s} {'compile s':>10s} {'run s':>7s} {'programs':>8s} {'reused':>7s} "
                 f"{'peak MiB':>9s} {'max rel. diff':>14s}")
    for name, r in results.items():
        diffs = [abs(r["costs"][k] - v) / abs(v) for k, v in base.items() if v]
        lines.append(f"{name:44s} {r['wall']:8.1f} {r['compile']:10.1f} {r['run']:7.2f} {r['programs']:8d} "
                     f"{r['reused']:>3d}/{r['cells']:<3d} {r['peak_mib']:9.0f} {max(diffs):14.1e}")
    lines.append("programs: the compiled programs that ran the cells (a chunk of a group is one); run s: summed once "
                 "per program")
    turn = results["compile once, cells in turn, cold cache"]["costs"]
    for name in ("one program (vmapped grid), cold cache", "one program, chunks of 3 cells, cold cache"):
        grid = results[name]["costs"]
        same = sum(grid[k] == v for k, v in turn.items())
        worst = max(abs(grid[k] - v) / abs(v) for k, v in turn.items() if v)
        lines.append(f"{name} against the cells in turn (the same lifted program, not vmapped): {same} of "
                     f"{len(turn)} final costs bit-identical, largest relative difference {worst:.1e}")
    for name in ("compile once, cells in turn, cold cache", "one program (vmapped grid), cold cache"):
        costs = results[name]["costs"]
        by_k: dict = {}
        for cell, v in base.items():
            diff = abs(costs[cell] - v) / abs(v) if v else 0.0
            by_k[cell[0]] = max(by_k.get(cell[0], 0.0), diff)
        lines.append(f"{name}: largest relative difference of a final cost from the per-cell compilation, by "
                     "stiffness: " + ", ".join(f"k = {float(k):g}: {d:.0e}" for k, d in by_k.items()))
    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp) / "grid.toml"
        study.write_text(STUDY.format(problem=(ROOT / "problems/pushing_stiff.toml").as_posix()))
        lines += interleaved(study)
    lines += positions()
    text = "\n".join(lines) + "\n"
    print(text, end="")
    (Path(__file__).with_suffix(".txt")).write_text(text)


if __name__ == "__main__":
    main()
