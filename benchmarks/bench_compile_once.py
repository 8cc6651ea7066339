"""Compile once: a 5 x 4 study grid (contact stiffness x the oracle's sigma) on stiff pushing, compiled per cell
(``TRAJOPT_COMPILE_ONCE=0``, how every study ran before) and once for the grid (the default: the constants the grid
varies are inputs of one program, `trajopt.programs`), each from a cold compilation cache; then the grid again in a
new process with the cache warm (JAX's persistent cache, which the command line keeps: the lifted program's text is
the same in every process).

    python benchmarks/bench_compile_once.py            # writes benchmarks/bench_compile_once.txt

For each run: the wall time of the ``trajopt study`` command, the compile and run seconds summed over its 20 cells
(study.csv: each cell's, shared by its seeds), the cells whose compiled loop was reused (result.json), the peak
resident memory of the study's process, and the largest relative difference of a final cost from the per-cell
compilation's (the grid's program computes the operations as written where XLA had folded a grid value into another
constant: a last bit, which the stiffest cells' 500 iterations amplify). Then honest seconds: the same variant
placed first and last in one compare, its run seconds (`positions`).
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


def run(study: Path, out: Path, cache: Path, compile_once: bool) -> dict:
    env = dict(os.environ, TRAJOPT_COMPILE_ONCE="1" if compile_once else "0", TRAJOPT_CACHE_DIR=str(cache),
               TRAJOPT_CACHE="1")
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
    reused = sum(json.loads(p.read_text())["variants"]["aobg"]["program"]["reused"]
                 for p in out.glob("cells/**/result.json"))
    costs = {(r["system.stiffness"], r["oracle.sigma"], r["seed"]): float(r["final_cost"]) for r in rows}
    return {"wall": wall, "compile": sum(c for c, _ in cells.values()), "run": sum(r for _, r in cells.values()),
            "cells": len(cells), "reused": reused, "peak_mib": peak / 1024, "costs": costs}


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


def main() -> None:
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        study = tmp / "grid.toml"
        study.write_text(STUDY.format(problem=(ROOT / "problems/pushing_stiff.toml").as_posix()))
        results = {
            "per cell (TRAJOPT_COMPILE_ONCE=0), cold cache": run(study, tmp / "a", tmp / "cache_a", False),
            "compile once, cold cache": run(study, tmp / "b", tmp / "cache_b", True),
            "compile once, warm cache (a new process)": run(study, tmp / "c", tmp / "cache_b", True),
        }
    base = results["per cell (TRAJOPT_COMPILE_ONCE=0), cold cache"]["costs"]
    load = os.getloadavg()
    import jax

    lines.append(f"bench_compile_once: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                 f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; python {platform.python_version()}, "
                 f"jax {jax.__version__}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    lines.append("grid: pushing_stiff.toml, aobg, system.stiffness [10, 30, 100, 300, 1000] x oracle.sigma "
                 "[0.025, 0.05, 0.1, 0.2], 5 seeds, 500 iterations (20 cells)")
    lines.append(f"{'run':44s} {'wall s':>8s} {'compile s':>10s} {'run s':>7s} {'reused':>7s} {'peak MiB':>9s} "
                 f"{'max rel. diff':>14s}")
    for name, r in results.items():
        diffs = [abs(r["costs"][k] - v) / abs(v) for k, v in base.items() if v]
        lines.append(f"{name:44s} {r['wall']:8.1f} {r['compile']:10.1f} {r['run']:7.2f} "
                     f"{r['reused']:>3d}/{r['cells']:<3d} {r['peak_mib']:9.0f} {max(diffs):14.1e}")
    compiled_once = results["compile once, cold cache"]["costs"]
    by_k: dict = {}
    for cell, v in base.items():
        diff = abs(compiled_once[cell] - v) / abs(v) if v else 0.0
        by_k[cell[0]] = max(by_k.get(cell[0], 0.0), diff)
    lines.append("largest relative difference of a final cost from the per-cell compilation, by stiffness: " +
                 ", ".join(f"k = {float(k):g}: {d:.0e}" for k, d in by_k.items()))
    lines += positions()
    text = "\n".join(lines) + "\n"
    print(text, end="")
    (Path(__file__).with_suffix(".txt")).write_text(text)


if __name__ == "__main__":
    main()
