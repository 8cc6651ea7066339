"""An MJX variant's compile seconds as a user meets them: `trajopt compare` on a cold compilation cache, then the same
command again on the cache it filled (#27 item 3's targets: <= 20 s per MJX variant on a cold cache for the shipped
MJX problems and gymnasium's inverted pendulum, seconds on a warm one).

    python benchmarks/bench_mjx_cold.py > benchmarks/bench_mjx_cold.txt      # about 25 minutes on 2 cores
    python benchmarks/bench_mjx_cold.py inverted                             # only the rows whose label has this

Each row is one `trajopt compare` in a fresh process (the file's variants, its seeds and samples; 10 iterations, since
compiling does not depend on them), first with an empty cache folder of its own (``TRAJOPT_CACHE_DIR``), then again
with the folder it filled (its compiled programs, and beside it the traced loops, `trajopt.traces`); then the same
pair in another empty folder with ``TRAJOPT_TRACE_CACHE=0``, the compilation cache alone ("untraced": a warm command
traces every loop again). The seconds are each variant's ``compile_seconds`` from the run folder's result.json
(tracing and XLA; the CLI compiles up to two variants at once, so on 2 cores a variant's seconds include sharing the
CPU with the next one), the final evaluation's ``final_evaluation_seconds`` (row "shared": one program for the
command's variants, compiled while the first one is traced; in none of their seconds) and the command's wall time
(Python's start and imports, every compile, the run, the folder).
Gymnasium's inverted pendulum (``model = { package = "gymnasium", ... }``, its RK4 integrator and joint limits as
its authors wrote them) is a problem file written to the temporary folder, not shipped. The last rows run the same
models' forward-only variant on MuJoCo's C simulator (``system.backend = "mujoco"``). The cube toss
(problems/mjx_cube_toss.toml: 1,000 steps of 1 ms, exact and cfd gradients through all of them) is not a row: its
cold command ran past 10 minutes here and was stopped. The cause, found after: measuring its step costs (which
`trajopt compare` does first) timed 16 x 64 evaluations of its one step, the whole 1 s flight, per repetition
(an expensive step is now timed on fewer, `trajopt.compute.measure_step_costs`); its cold command then took 397 s
in all, not run through this script.

Needs the [suite] extra (mujoco-mjx and gymnasium). Run it on a quiet host: the load average is printed per row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INVERTED_PENDULUM = """title = "gymnasium's inverted pendulum, balancing (a measurement of compile time only)"

[system]
name = "mjx"
model = { package = "gymnasium", path = "envs/mujoco/assets/inverted_pendulum.xml" }
substeps = 2

[task]
horizon = 50
x0 = [0.0, 0.2, 0.0, 0.0]
goal = [0.0, 0.0, 0.0, 0.0]
Q = [1.0, 10.0, 0.1, 0.1]
R = [0.01]
Qf = [1.0, 100.0, 1.0, 1.0]

[solve]
iterations = 100
seeds = 5
oracles = ["fobg", "zobg", "aobg"]

[oracle]
samples = 10
sigma = 0.5
"""
C_BACKEND = ['--set', 'system.backend="mujoco"', "--variants", "zobg"]


def compare(problem: str, extra: list[str], cache: str, out: str, traces: bool = True) -> dict:
    """One `trajopt compare` in a fresh process: {variant: (compile s, run s)}, its wall seconds and exit status.
    ``traces``: traced loops kept beside the cache (`trajopt.traces`; False: ``TRAJOPT_TRACE_CACHE=0``)."""
    env = {**os.environ, "TRAJOPT_CACHE": "1", "TRAJOPT_CACHE_DIR": cache, "TRAJOPT_TRACE_CACHE": "1" if traces else "0"}
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "trajopt", "compare", problem, "--set", "solve.iterations=10", *extra,
                        "--out", out], env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if p.returncode != 0:
        return {"rc": p.returncode, "wall": wall, "error": (p.stderr.strip().splitlines() or ["?"])[-1]}
    with open(os.path.join(out, "result.json")) as f:
        record = json.load(f)
    return {"rc": 0, "wall": wall, "shared": record.get("final_evaluation_seconds") or 0.0,
            "variants": {n: (v["compile_seconds"], v["run_seconds"]) for n, v in record["variants"].items()}}


def main(only: list[str]) -> None:
    import jax
    import mujoco
    from importlib import metadata

    print(f"# bench_mjx_cold: mujoco {mujoco.__version__}, mujoco-mjx {metadata.version('mujoco-mjx')}, jax "
          f"{jax.__version__}, {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("# per variant: compile s on a cold cache / on the warm cache the cold run filled (result.json's "
          "compile_seconds), with the traced loops kept (trajopt.traces) and, in a cache folder of its own, without "
          "(TRAJOPT_TRACE_CACHE=0: the compilation cache only); run s: the warm command's run_seconds (10 "
          "iterations, the file's seeds); wall s of each command; 'shared': the final evaluation, one program for "
          "the command's variants (result.json's final_evaluation_seconds, in no variant's compile s)")
    with tempfile.TemporaryDirectory() as tmp:
        ip = os.path.join(tmp, "inverted_pendulum.toml")
        with open(ip, "w") as f:
            f.write(INVERTED_PENDULUM)
        rows = [(f"{stem} (MJX)", os.path.join(ROOT, "problems", f"{stem}.toml"), [])
                for stem in ("mjx_pendulum_wall", "mjx_ball_wall", "mjx_push_soft")]
        rows += [("gymnasium inverted_pendulum (MJX)", ip, []),
                 ("mjx_pendulum_wall (MuJoCo C)", os.path.join(ROOT, "problems", "mjx_pendulum_wall.toml"), C_BACKEND),
                 ("gymnasium inverted_pendulum (MuJoCo C)", ip, C_BACKEND)]
        rows = [r for r in rows if not only or any(o in r[0] for o in only)]
        print(f"\n{'problem':40s} {'variant':8s} {'cold s':>7s} {'warm s':>7s} {'<= 20 s':>8s} {'run s':>6s} "
              f"{'untraced: cold / warm s':>24s}   wall cold / warm (untraced: cold / warm), load")
        for i, (label, path, extra) in enumerate(rows):
            load = os.getloadavg()[0]
            runs = {}
            for kept in (True, False):  # each in a cache folder of its own: the traces go beside it
                cache = os.path.join(tmp, f"row{i}-{kept}", "jax")
                cold = compare(path, extra, cache, os.path.join(tmp, f"cold{i}-{kept}"), kept)
                warm = compare(path, extra, cache, os.path.join(tmp, f"warm{i}-{kept}"), kept)
                runs[kept] = (cold, warm)
            (cold, warm), (cold0, warm0) = runs[True], runs[False]
            failed = [r.get("error") for r in (cold, warm, cold0, warm0) if r["rc"]]
            if failed:
                print(f"{label:40s} failed: {failed[0]}", flush=True)
                continue
            for name, (c, _) in cold["variants"].items():
                w, run = warm["variants"][name]
                c0, w0 = cold0["variants"][name][0], warm0["variants"][name][0]
                print(f"{label:40s} {name:8s} {c:7.1f} {w:7.1f} {'yes' if c <= 20 else 'no':>8s} {run:6.2f} "
                      f"{f'{c0:.1f} / {w0:.1f}':>24s}   {cold['wall']:.0f} / {warm['wall']:.0f} s "
                      f"({cold0['wall']:.0f} / {warm0['wall']:.0f} s), load {load:.2f}", flush=True)
            # the final evaluation: one program for the command's variants, in none of their compile seconds
            shared = f"{cold0['shared']:.1f} / {warm0['shared']:.1f}"
            print(f"{label:40s} {'shared':8s} {cold['shared']:7.1f} {warm['shared']:7.1f} {'':>8s} {'':>6s} "
                  f"{shared:>24s}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
