"""Time to solution of iLQR and L-BFGS: the solver that stops work that is done, against the fixed-iteration run.

    python benchmarks/bench_stopping.py > benchmarks/bench_stopping.txt

For problems/pendulum_trajax.toml and problems/acrobot.toml at the files' own iterations and seeds (200 x 5 and
500 x 5), each method at its defaults, three ways:

* fixed: every iteration of every seed runs (the method wrapped so that the solver cannot see its ``stopped``: the
  loop before #26). A converged iLQR or L-BFGS step is itself a skipped branch (the deterministic methods step one
  seed at a time, `trajopt.methods._batching`), so a stopped seed costs little even here;
* stops: ``trajopt.solve`` as it is now: a seed whose method has stopped spends nothing, and once every seed has,
  no further chunk runs (the rest of the history is filled in);
* compare: ``trajopt.compare``, which also runs a deterministic method once and shares the result among the seeds.

Each loop is compiled once and run 5 times (the median run shown, with the spread of the 5; compilation apart). "settled" is the iteration
after which nothing ran; "same" says whether the final costs and decisions equal the fixed run's bit for bit
(compare's: those of one seed alone, the same run). Both methods have a stopping test (iLQR: its tolerance on the
cost decrease; L-BFGS: the gradient norm and the relative decrease, issue #26 item 5). Numbers are from a busy,
shared 2-core CPU machine (its CPU and the load are printed): medians, and speed-ups as ratios of medians.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

import trajopt
from trajopt.methods import METHODS
from trajopt.solver import prepare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBLEMS = ("pendulum_trajax", "acrobot")
METHOD_NAMES = ("ilqr", "lbfgs")
REPEATS = 5


@dataclass(frozen=True)
class FixedIterations:
    """``method`` with nothing but init and step: the solver runs every iteration of every seed (no ``stopped``, no
    ``deterministic``)."""

    method: Any

    @property
    def name(self) -> str:
        return self.method.name

    def init(self, key, problem, U0):
        return self.method.init(key, problem, U0)

    def step(self, key, problem, state):
        return self.method.step(key, problem, state)


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else platform.processor()."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(loop) -> tuple[Any, float, float, float]:
    """(the result, the median, min and max of `REPEATS` runs of a prepared loop, seconds)."""
    times, result = [], None
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        result = loop.run()
        times.append(time.perf_counter() - t0)
    return result, float(np.median(times)), min(times), max(times)


def main() -> None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# bench_stopping: jax {jax.__version__}, {cpu_name()} ({platform.machine()}), {os.cpu_count()} CPUs, "
          f"load average {load:.1f} at the start (a busy, shared machine)")
    print(f"# run s: the median of {REPEATS} runs of the compiled loop (min-max beside it); speed-up: the fixed run's "
          f"median over this one's; compile seconds apart\n")
    header = (f"{'problem':<16} {'method':<6} {'way':<8} {'K x S':>9} {'run s':>8} {'min-max s':>13} {'speed-up':>8} "
              f"{'compile s':>9} {'settled':>8} {'final cost':>12}  same")
    print(header)
    print("-" * len(header))
    for name in PROBLEMS:
        loaded = trajopt.load(os.path.join(ROOT, "problems", f"{name}.toml"))
        problem, key = loaded.problem, loaded.key
        K, seeds = loaded.spec.solve.iterations, list(loaded.spec.solve.seeds)
        for method_name in METHOD_NAMES:
            method = METHODS.get(method_name)()
            runs = {}
            for way, m, once in (("fixed", FixedIterations(method), False), ("stops", method, False),
                                 ("compare", method, True)):
                loop = prepare(problem, m, key=key, iterations=K, seeds=seeds, once=once)
                result, seconds, lo, hi = timed(loop)
                runs[way] = (result, seconds, lo, hi, loop.compile_seconds)
            base_result, base_seconds = runs["fixed"][:2]
            alone = prepare(problem, FixedIterations(method), key=key, iterations=K, seeds=seeds[:1]).run()
            for way, (r, seconds, lo, hi, compile_seconds) in runs.items():
                ref_cost, ref_U = ((base_result.final_cost, base_result.U) if way != "compare" else
                                   (np.repeat(alone.final_cost, len(seeds)), np.repeat(alone.U, len(seeds), axis=0)))
                same = np.array_equal(r.final_cost, ref_cost) and np.array_equal(r.U, ref_U)
                settled = "-" if r.settled_at is None else str(r.settled_at)
                print(f"{name:<16} {method_name:<6} {way:<8} {f'{K}x{len(seeds)}':>9} {seconds:8.3f} {f'{lo:.3f}-{hi:.3f}':>13} "
                      f"{base_seconds / seconds:7.1f}x {compile_seconds:9.1f} {settled:>8} "
                      f"{float(np.median(r.final_cost)):12.6g}  {'yes' if same else 'no'}"
                      + ("" if way != "compare" or not r.ran_once else " (ran once)"))
            print()


if __name__ == "__main__":
    main()
