"""GPU scale: what trajopt does on an accelerator (#27 item 5), recorded with the device's name.

    pip install -e ".[cuda,mjx]"
    python benchmarks/bench_gpu.py                 # on a GPU: writes benchmarks/bench_gpu.txt
    python benchmarks/bench_gpu.py --smoke         # any machine: the same three measurements at toy sizes (prints)

Three measurements, each compile and run seconds apart (the compile from an empty compilation cache: a temporary
one), on JAX's default device:

1. AoBG on stiff pushing (problems/pushing_stiff.toml: T = 200, N = 10 samples) over 1,000 seeds x 500 iterations:
   one fused loop, the seeds one vmap (`trajopt.solve`); updates per second (seeds x iterations / run seconds).
2. An MJX problem at 1,000 samples: ZoBG on problems/mjx_push_stiff.toml with ``oracle.samples = 1000``, 4 seeds x
   20 iterations (the samples' rollouts are one vmap of MJX steps); rollouts per second.
3. A closed-loop episode: the suite's stiff pushing task (problems/suite/pushing_stiff.toml, its [mpc] settings:
   gradient planner and MPPI) over 100 seeds (`trajopt.mpc`); the real-time factor of one seed's episode and the
   batched episode's seconds.

Without a GPU it refuses (exit 2) unless ``--smoke`` (sizes / 100 or so), which checks the script runs; the numbers
of a smoke run are not recorded. CI never runs it: no GPU there.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def aobg_many_seeds(smoke: bool) -> str:
    import jax

    import trajopt

    seeds, iterations = (8, 20) if smoke else (1000, 500)
    loaded = trajopt.load(ROOT / "problems/pushing_stiff.toml")
    prepared, compile_s = _timed(lambda: trajopt.solver.prepare(
        loaded.problem, loaded.variants["aobg"], key=jax.random.PRNGKey(0), iterations=iterations,
        seeds=range(seeds)))
    result = prepared.run()
    rate = seeds * iterations / result.run_seconds
    return (f"AoBG, stiff pushing, {seeds} seeds x {iterations} iterations: compile {compile_s:.1f} s, run "
            f"{result.run_seconds:.2f} s ({rate:,.0f} seed-updates/s), median final cost "
            f"{float(sorted(result.final_cost)[len(result.final_cost) // 2]):.1f}")


def mjx_many_samples(smoke: bool) -> str:
    import jax

    import trajopt

    samples, seeds, iterations = (16, 2, 3) if smoke else (1000, 4, 20)
    loaded = trajopt.load(ROOT / "problems/mjx_push_stiff.toml", [f"oracle.samples={samples}"])
    method = loaded.variants.get("zobg") or trajopt.GradientMethod(trajopt.ZoBG(samples=samples), trajopt.Adam())
    prepared, compile_s = _timed(lambda: trajopt.solver.prepare(
        loaded.problem, method, key=jax.random.PRNGKey(0), iterations=iterations, seeds=range(seeds)))
    result = prepared.run()
    rollouts = float(result.counts("rollouts")[-1]) * seeds
    return (f"ZoBG on MJX stiff pushing, {samples} samples, {seeds} seeds x {iterations} iterations: compile "
            f"{compile_s:.1f} s, run {result.run_seconds:.2f} s ({rollouts / result.run_seconds:,.0f} rollouts/s)")


def closed_loop_episode(smoke: bool) -> list[str]:
    import jax

    import trajopt
    from trajopt import spec as spec_mod

    seeds = 4 if smoke else 100
    spec = spec_mod.load(ROOT / "problems/suite/pushing_stiff.toml", closed_loop=True)
    cl = spec.closed_loop
    lines = []
    for name in ("grad", "mppi"):
        if name not in spec.variants:
            continue
        results = trajopt.mpc(spec.closed_loop_problem(), {name: spec.variants[name].method}, settings=cl.mpc.settings,
                              plant=cl.plant.plant if cl.plant is not None else None, key=jax.random.PRNGKey(0),
                              seeds=range(seeds), success=cl.success)
        r = results[name]
        lines.append(f"closed loop, suite pushing_stiff, {name}, {seeds} seeds: compile {r.compile_seconds:.1f} s, "
                     f"batched episode {r.run_seconds:.2f} s, one seed's real-time factor {r.realtime_factor:.2f}, "
                     f"median closed-loop cost {r.closed_loop_cost_median:.1f}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="toy sizes on any device; nothing is recorded")
    args = parser.parse_args()
    os.environ.setdefault("TRAJOPT_CACHE_DIR", tempfile.mkdtemp(prefix="trajopt-gpu-cache-"))
    import trajopt  # noqa: F401  (first: it sets JAX's flags before JAX starts)
    import jax

    device = jax.devices()[0]
    if device.platform != "gpu" and not args.smoke:
        print(f"bench_gpu: no GPU (JAX's default device is {device.platform}: {device.device_kind}); "
              "install the [cuda] extra on a machine with an NVIDIA GPU, or pass --smoke", file=sys.stderr)
        return 2
    lines = [f"bench_gpu: {device.device_kind} ({device.platform}), jax {jax.__version__}, python "
             f"{platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
             + (" [smoke: toy sizes, not a measurement]" if args.smoke else "")]
    lines.append(aobg_many_seeds(args.smoke))
    try:
        lines.append(mjx_many_samples(args.smoke))
    except ImportError as e:  # the [mjx] extra is absent
        lines.append(f"MJX: not measured ({e}; pip install -e '.[mjx]')")
    lines += closed_loop_episode(args.smoke)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if not args.smoke:
        (Path(__file__).with_suffix(".txt")).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
