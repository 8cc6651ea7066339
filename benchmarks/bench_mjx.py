"""MJX benchmark: compile and per-update time of the paper's three oracles on each shipped MJCF problem (the
problem file's own settings: seeds, iterations, samples), the final costs `compare` would report, and the
two gradient modes (reverse through one solver iteration vs forward-mode Jacobians of the converged solve).

    python benchmarks/bench_mjx.py > benchmarks/bench_mjx.txt

Needs the [mjx] extra. Numbers in bench_mjx.txt are from a busy, shared 2-core CPU machine.
"""

import os
import platform
import time

import jax
import numpy as np

from trajopt import spec
from trajopt.methods import GradientMethod
from trajopt.solver import solve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBLEMS = ["mjx_pendulum_wall", "mjx_push_soft", "mjx_push_stiff", "mjx_ball_wall"]


def gradient_modes(name: str) -> None:
    """One jitted value_and_grad of the objective at U0 + 0.3 (pendulum) / U0 (others), per mode."""
    grads = {}
    for label, overrides in [("forward, model's iterations", []),
                             ("reverse, iterations = 1", ["system.iterations=1"])]:
        s = spec.load(os.path.join(ROOT, "problems", f"{name}.toml"), overrides=overrides)
        p = s.problem()
        U = p.U0 + (0.3 if "pendulum" in name else 0.0)
        f = jax.jit(jax.value_and_grad(p.objective))
        t = time.perf_counter()
        jax.block_until_ready(f(U))
        compile_s = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(5):
            v, g = jax.block_until_ready(f(U))
        run_s = (time.perf_counter() - t) / 5
        grads[label] = (float(v), np.asarray(g).ravel())
        print(f"  {label:30s} iterations={s.system.iterations:3d} compile {compile_s:6.1f} s  value+grad {1e3 * run_s:8.1f} ms  "
              f"cost {float(v):.6g}", flush=True)
    (v1, g1), (v2, g2) = grads.values()
    rel = np.linalg.norm(g1 - g2) / max(np.linalg.norm(g1), 1e-300)
    cos = float(g1 @ g2 / max(np.linalg.norm(g1) * np.linalg.norm(g2), 1e-300))
    print(f"  one solver iteration vs converged: cost rel. diff {abs(v1 - v2) / abs(v1):.2e}, gradient rel. diff {rel:.2e}, "
          f"cosine {cos:.6f}", flush=True)


def oracles(name: str) -> None:
    s = spec.load(os.path.join(ROOT, "problems", f"{name}.toml"))
    p = s.problem()
    print(f"  T = {s.task.horizon}, n = {s.system.state_size}, m = {s.system.control_size}, seeds = {len(s.solve.seeds)}, "
          f"iterations = {s.solve.iterations}, gradient mode {s.system.gradient_mode} (solver iterations {s.system.iterations}); "
          f"initial cost {float(jax.jit(p.objective)(p.U0)):.6g}", flush=True)
    for oracle in s.solve.oracles:
        r = solve(p, GradientMethod(s.oracles[oracle], s.solve.optimizer), key=jax.random.PRNGKey(s.solve.key),
                  iterations=s.solve.iterations, seeds=s.solve.seeds)
        final = r.cost[:, -1]
        extra = ""
        if "alpha" in r.history:
            extra = f"  alpha median {np.nanmedian(r.history['alpha']):.2f}"
        compile_s = r.compile_seconds + (r.final_evaluation_seconds or 0.0)  # its loop and its final evaluation
        print(f"  {oracle:5s} compile {compile_s:6.1f} s  per update {1e3 * r.run_seconds / r.iterations:8.1f} ms "
              f"(all {len(s.solve.seeds)} seeds)  final cost median {np.nanmedian(final):.6g}  "
              f"[{np.nanmin(final):.6g}, {np.nanmax(final):.6g}]{extra}", flush=True)


if __name__ == "__main__":
    import mujoco

    print(f"# bench_mjx: mujoco {mujoco.__version__}, jax {jax.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs (shared with other jobs: a busy machine)", flush=True)
    for name in PROBLEMS:
        print(f"\n## {name}", flush=True)
        oracles(name)
        if name in ("mjx_pendulum_wall", "mjx_push_stiff", "mjx_ball_wall"):
            gradient_modes(name)
