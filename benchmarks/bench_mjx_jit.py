"""The MJX step as a ``jax.jit`` of its own, against inlined physics: compile and run of whole variants (#27 item 3).

trajopt's MJX system steps the model through a ``jax.jit`` of its physics (`trajopt.systems.mjx_physics._make_step`),
so that JAX traces MJX's Python once per argument shape and reuses that jaxpr, vmapped and differentiated, at every
place a variant steps the model; and its rollout starts batched wherever the controls are (`trajopt.systems.mjx.MJX.
simulate`), so that JAX batches the scan over the horizon once, not twice. This script measures both against the
way trajopt stepped the model before them ("inlined": the physics traced in place at each call site, the rollout's
first state unbatched), on the shipped MJX problems and their three variants (FoBG, ZoBG, AoBG: the files' seeds,
samples and key, 30 iterations), each variant in a fresh Python process with no compilation cache, the two settings
alternating, ``ROUNDS`` rounds:

    trace s   tracing the variant's fused loop and converting it to MLIR (JAX's compile log, ``fused_chunk``)
    XLA s     XLA compiling it
    run ms    the compiled loop's run per iteration (`trajopt.Result.run_seconds` / 30: the final evaluation included)
    same      whether every seed's cost at every iteration and its final decision are bit-identical between the two

Each row gives the median over the rounds and, in brackets, the range.

    python benchmarks/bench_mjx_jit.py > benchmarks/bench_mjx_jit.txt      # about 25 minutes on 2 cores
    python benchmarks/bench_mjx_jit.py push                              # only the problems whose file has this

Needs the [mjx] extra. Run it on a quiet host (the load average is printed per row).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBLEMS = ("mjx_pendulum_wall", "mjx_ball_wall", "mjx_push_soft")
VARIANTS = ("fobg", "zobg", "aobg")
SETTINGS = ("inlined", "jitted")
ITERATIONS = 30
ROUNDS = 2


def inline_physics() -> None:
    """Step the model as trajopt did before (for this process): the physics traced in place at each call site, the
    rollout from an unbatched first state."""
    import trajopt.systems.mjx as M
    import trajopt.systems.mjx_physics as P
    from trajopt.problem import rollout

    def make_step(mjx, m, d0, nq, substeps, mode):
        physics = P._physics(mjx, d0, nq, substeps)
        return P.differentiable(lambda x, u: physics(m, x, u), mode)

    def simulate(self, x0, U):
        return rollout(self._step, x0, U)

    M._make_step = make_step
    M.MJX.simulate = simulate


def fused_loop_seconds() -> dict:
    """{"trace": s, "xla": s}, filled from JAX's compile log from now on in this process: the fused loop's tracing
    and MLIR conversion, and XLA's compile (every ``fused_chunk`` program; JAX's ``jax_log_compiles`` is turned on
    and its log kept from the console)."""
    import logging
    import re

    import jax

    seconds = {"trace": 0.0, "xla": 0.0}

    class Seconds(logging.Handler):
        def emit(self, record):
            m = re.search(r"Finished (tracing|jaxpr to MLIR module conversion|XLA compilation of) .*?(\d+\.\d+) sec",
                          record.getMessage())
            if m and "fused_chunk" in record.getMessage():
                seconds["xla" if m.group(1).startswith("XLA") else "trace"] += float(m.group(2))

    jax.config.update("jax_log_compiles", True)
    for logger in ("jax._src.dispatch", "jax._src.interpreters.pxla", "jax._src.compiler"):
        logging.getLogger(logger).addHandler(Seconds())
        logging.getLogger(logger).propagate = False
    return seconds


def one(problem: str, name: str, setting: str) -> dict:
    """One variant in this process: trace and XLA seconds of its fused loop, run ms per iteration, a digest of its
    costs and final decisions."""
    import jax
    import numpy as np
    from trajopt import spec
    from trajopt.solver import solve

    if setting == "inlined":
        inline_physics()
    seconds = fused_loop_seconds()
    s = spec.load(os.path.join(ROOT, "problems", f"{problem}.toml"))
    r = solve(s.problem(), s.variants[name].method, key=jax.random.PRNGKey(s.solve.key), iterations=ITERATIONS,
              seeds=s.solve.seeds)
    digest = hashlib.sha256(np.ascontiguousarray(r.cost).tobytes() + np.ascontiguousarray(r.U).tobytes()).hexdigest()
    return {"trace": seconds["trace"], "xla": seconds["xla"], "run_ms": 1e3 * r.run_seconds / ITERATIONS,
            "digest": digest[:16], "final": float(np.median(r.cost[:, -1]))}


def child(problem: str, name: str, setting: str) -> dict:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", problem, name, setting],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, "TRAJOPT_CACHE": "0"})
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(only: list[str]) -> None:
    import statistics

    import jax
    import mujoco
    from importlib import metadata

    print(f"# bench_mjx_jit: mujoco {mujoco.__version__}, mujoco-mjx {metadata.version('mujoco-mjx')}, jax "
          f"{jax.__version__}, {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"# each variant in a fresh process, no compilation cache, {ITERATIONS} iterations; median [min-max] of "
          f"{ROUNDS} rounds, the settings alternating")
    print(f"\n{'problem':18s} {'variant':7s} {'setting':8s} {'trace s':>16s} {'XLA s':>16s} {'run ms':>20s}  same  "
          "final cost median; load")
    for problem in [p for p in PROBLEMS if not only or any(o in p for o in only)]:
        for name in VARIANTS:
            got: dict[str, list[dict]] = {k: [] for k in SETTINGS}
            for _ in range(ROUNDS):
                for setting in SETTINGS:
                    got[setting].append(child(problem, name, setting))
            load = os.getloadavg()[0]
            digests = {r.get("digest") for rows in got.values() for r in rows}
            for setting in SETTINGS:
                rows = got[setting]
                bad = [r["error"] for r in rows if "error" in r]
                if bad:
                    print(f"{problem:18s} {name:7s} {setting:8s} failed: {bad[0]}", flush=True)
                    continue

                def cell(key, fmt):
                    v = [r[key] for r in rows]
                    return f"{statistics.median(v):{fmt}} [{min(v):{fmt}}-{max(v):{fmt}}]"

                print(f"{problem:18s} {name:7s} {setting:8s} {cell('trace', '.1f'):>16s} {cell('xla', '.1f'):>16s} "
                      f"{cell('run_ms', '.1f'):>20s}  {'yes' if len(digests) == 1 else 'NO':4s}  "
                      f"{rows[0]['final']:.6g}; {load:.2f}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--one":
        print(json.dumps(one(*sys.argv[2:])))
    else:
        main(sys.argv[1:])
