"""trajopt's speed as a measured, recorded property.

    python benchmarks/run.py            # about 3-5 minutes on 2 cores; writes benchmarks/RESULTS.md and RESULTS.json
    python benchmarks/run.py --full     # every scaling point (seeds to 1,000, T to 10,000, N to 1,000, 64 bodies)

What it measures, on problems/pushing_stiff.toml with one seed unless said otherwise:

1. Start-up: ``trajopt --help``, ``trajopt list`` and ``trajopt list oracles`` in fresh processes (median of 5).
2. Per oracle (exact, fobg, zobg, aobg): the fused update of ``trajopt.solve`` (default chunking and one chunk),
   compile time with an empty and with a warm compilation cache, beside the speed-of-light loop
   (`benchmarks/sol.py`, a minimal hand-written fused JAX loop, checked to give trajopt's iterates to 1e-10) and a
   straightforward NumPy loop (`benchmarks/numpy_ref.py`, hand-written adjoint for the FoBG's gradients).
3. End to end: ``trajopt solve --oracle X --seeds 1`` and the README's ``trajopt compare`` (3 oracles x 5 seeds x
   500 iterations), fresh processes, with a cold and a warm compilation cache.
4. Scaling of the AoBG update in seeds (vmapped), horizon T, samples N and chain length (problems/chain3_stiff.toml):
   one fresh process per point (no compilation cache), time per iteration, compile time and peak memory (maxrss),
   a table and a log-log figure (benchmarks/figures/) with the fitted exponent each.
5. Memory of long runs: ``trajopt compare problems/heaviside.toml --oracles aobg`` for 8 seeds at two lengths, the
   history kept in memory and streamed to disk (``TRAJOPT_HISTORY_MEMORY``), fresh processes, peak memory each.

Timings are minima over repeats inside a process (the loop's own speed) and medians over fresh processes (what a
user waits). Every compilation cache it uses is a temporary directory: the user's cache is never touched.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "benchmarks"
PUSHING = ROOT / "problems/pushing_stiff.toml"
CHAIN = ROOT / "problems/chain3_stiff.toml"
ORACLES = ("exact", "fobg", "zobg", "aobg")

SCALING_DEFAULT = {
    "seeds": [1, 10, 100],
    "horizon": [100, 1000, 10000],
    "samples": [2, 10, 100, 1000],
    "bodies": [2, 8, 32],
}
SCALING_FULL = {
    "seeds": [1, 3, 10, 30, 100, 300, 1000],
    "horizon": [100, 300, 1000, 3000, 10000],
    "samples": [2, 5, 10, 30, 100, 300, 1000],
    "bodies": [2, 4, 8, 16, 32, 64],
}
TARGETS = {"sol_ratio": 1.2, "startup_s": 0.5, "compile_s": 1.0, "compare_warm_s": 5.0, "compare_cold_s": 10.0}


# ------------------------------------------------------------------------------------------------ workers



def _whole_compile(run) -> float:
    """A lone run's compile seconds (a `Prepared` or a `Result`): its loop's and its final evaluation's."""
    return run.compile_seconds + (getattr(run, "finish_seconds", None) or getattr(run, "final_evaluation_seconds", None)
                                  or 0.0)

def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _anon_mib() -> float:
    """RssAnon of this process (MiB): resident memory not backed by a file (Linux; NaN elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def _method(loaded, oracle):
    import trajopt

    if oracle in loaded.variants:
        return loaded.variants[oracle]
    return trajopt.GradientMethod(trajopt.Exact(), loaded.variants["fobg"].optimizer)


def worker_oracles(iterations: int, numpy_iterations: int, repeats: int) -> dict:
    """Per-oracle timings in this (fresh) process: trajopt, speed of light, NumPy, and the equality check."""
    sys.path.insert(0, str(ROOT))
    import jax
    import jax.numpy as jnp
    import numpy as np

    import trajopt
    from benchmarks import numpy_ref, sol
    from trajopt import solver
    from trajopt.compiler import compile_lowered
    from trajopt.solver import prepare

    loaded = trajopt.load(PUSHING)
    spec = sol.PushingSpec.from_toml(PUSHING)
    key = jax.random.PRNGKey(0)
    out = {"numpy_check": numpy_ref.check_against_jax(spec)}
    for oracle in ORACLES:
        method = _method(loaded, oracle)
        row = {}
        # compiled once and run several times, as the speed-of-light loop below is (the first run of a freshly
        # compiled program pays a one-time warm-up that is not the loop's speed)
        loops = [prepare(loaded.problem, method, key=key, iterations=iterations, seeds=[0]) for _ in range(repeats)]
        # a run's whole compile: its loop and its final evaluation (`Prepared.finish_seconds`, which a command's
        # variants share and count apart)
        row["compile_s"] = _whole_compile(loops[0])
        row["compile_again_s"] = min(_whole_compile(p) for p in loops[1:]) if repeats > 1 else math.nan
        # the same program compiled with XLA's default options instead of `trajopt.compiler.CPU_COMPILER_OPTIONS`
        # (another cache key, so a real compile: after the first, so XLA's own start-up is not in it)
        lowered = solver._lower(loaded.problem, method, key=key, iterations=iterations, seeds=[0])
        t0 = time.perf_counter()
        lowered.lowered.compile()
        row["compile_xla_defaults_s"] = (lowered.seconds + time.perf_counter() - t0
                                         + (lowered.finish.lower_seconds if lowered.finish is not None else 0.0))
        runs = [loops[0].run() for _ in range(max(repeats, 5))]
        row["trajopt_ms"] = 1e3 * min(r.chunk_seconds[-1] for r in runs) / iterations
        one = prepare(loaded.problem, method, key=key, iterations=iterations, seeds=[0], chunk=iterations)
        row["trajopt_one_chunk_ms"] = 1e3 * min(one.run().chunk_seconds[-1] for _ in range(max(repeats, 5))) / iterations

        seeds = jnp.asarray([0], jnp.int32)
        t0 = time.perf_counter()
        # compiled as trajopt compiles its loop (`compile_lowered`: the same XLA options), so that the two
        # programs round alike and the iterates can be compared to 1e-10 below
        run = compile_lowered(sol.make_run(spec, oracle, iterations).lower(key, seeds))
        row["sol_compile_s"] = time.perf_counter() - t0
        times = []
        for _ in range(max(repeats, 5)):
            t0 = time.perf_counter()
            U, cost = jax.block_until_ready(run(key, seeds))
            times.append(time.perf_counter() - t0)
        row["sol_ms"] = 1e3 * min(times) / iterations
        row["full_run_diff_U"] = float(np.max(np.abs(np.asarray(U) - runs[0].U)))
        # the 1e-10 check on a short run (the stiff problem amplifies a last-bit difference ~50x per iteration)
        short = 20
        r = trajopt.solve(loaded.problem, method, key=key, iterations=short, seeds=[0])
        U_s, cost_s = compile_lowered(sol.make_run(spec, oracle, short).lower(key, seeds))(key, seeds)
        row["check_iterations"] = short
        row["check_diff_U"] = float(np.max(np.abs(np.asarray(U_s) - r.U)))
        row["check_diff_cost_rel"] = float(np.max(np.abs(np.asarray(cost_s) - r.cost) / np.abs(r.cost)))

        t0 = time.perf_counter()
        numpy_ref.run(spec, oracle, numpy_iterations)
        row["numpy_ms"] = 1e3 * (time.perf_counter() - t0) / numpy_iterations
        row["ratio_sol"] = row["trajopt_ms"] / row["sol_ms"]
        row["ratio_sol_one_chunk"] = row["trajopt_one_chunk_ms"] / row["sol_ms"]
        out[oracle] = row
    out["maxrss_mib"] = _maxrss_mib()
    return out


def scaling_overrides(axis: str, value: int) -> tuple[Path, list[str], int]:
    """(problem file, overrides, seeds) of one scaling point."""
    if axis == "seeds":
        return PUSHING, [], value
    if axis == "horizon":
        return PUSHING, [f"task.horizon={value}"], 1
    if axis == "samples":
        return PUSHING, [f"oracle.samples={value}"], 1
    if axis == "bodies":
        b = value
        pos, q = [float(i) for i in range(b)], [0.1] * (b - 1) + [10.0] + [0.1] * b
        return CHAIN, [f"system.bodies={b}", f"task.x0={pos + [0.0] * b}", f"task.goal={[p + 1 for p in pos] + [0.0] * b}",
                       f"task.Q={q}", f"task.Qf={q}"], 1
    raise ValueError(axis)


def worker_point(axis: str, value: int, oracle: str, iterations: int) -> dict:
    sys.path.insert(0, str(ROOT))
    import jax

    import trajopt

    path, overrides, n_seeds = scaling_overrides(axis, value)
    loaded = trajopt.load(path, overrides)
    rss0 = _maxrss_mib()
    r = trajopt.solve(loaded.problem, loaded.variants[oracle], key=jax.random.PRNGKey(0), iterations=iterations,
                      seeds=range(n_seeds), chunk=iterations)
    seconds = r.chunk_seconds[-1]
    return {"axis": axis, "value": value, "oracle": oracle, "iterations": iterations, "seeds": n_seeds,
            "ms_per_iteration": 1e3 * seconds / iterations, "ms_per_update": 1e3 * seconds / (iterations * n_seeds),
            "compile_s": _whole_compile(r), "maxrss_mib": _maxrss_mib(), "maxrss_before_solve_mib": rss0,
            "status_ok": sum(s == "ok" for s in r.status)}


# ------------------------------------------------------------------------------------------------ driver


def _python(args: list[str], env: dict | None = None, timeout: float = 900) -> dict:
    out = subprocess.run([sys.executable, str(Path(__file__)), *args], capture_output=True, text=True, timeout=timeout,
                         env=env, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _env(cache: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", "_TRAJOPT_JAX"))}
    if cache is None:
        env["TRAJOPT_CACHE"] = "0"
    else:
        env["TRAJOPT_CACHE"], env["TRAJOPT_CACHE_DIR"] = "1", cache
    return env


def _wall(cmd: list[str], env: dict, runs: int = 1) -> list[float]:
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls.append(time.perf_counter() - t0)
    return walls


def _trajopt_cmd() -> list[str]:
    """The console script of the Python running this (its environment's), else the one on PATH."""
    beside = Path(sys.executable).parent / "trajopt"
    exe = str(beside) if beside.exists() else shutil.which("trajopt")
    return [exe] if exe else [sys.executable, "-m", "trajopt"]


def measure_startup(runs: int = 5) -> dict:
    env = _env(None)
    cmd = _trajopt_cmd()
    out = {}
    for name, args in (("--help", ["--help"]), ("list", ["list"]), ("list oracles", ["list", "oracles"]),
                       ("list systems", ["list", "systems"])):
        walls = _wall(cmd + args, env, runs + 1)[1:]  # the first run warms the file cache
        out[name] = {"median_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls)}
    out["import jax"] = {"median_s": statistics.median(_wall([sys.executable, "-c", "import jax"], env, runs))}
    return out


def measure_cli(tmp: Path) -> dict:
    cmd = _trajopt_cmd()
    out = {}
    cache = str(tmp / "cli-cache")
    for oracle in ("exact", "fobg", "zobg", "aobg"):
        args = cmd + ["solve", str(PUSHING), "--oracle", oracle, "--seeds", "1", "--quiet", "--force"]
        cold = _wall(args + ["--out", str(tmp / f"solve-{oracle}")], _env(cache))[0]
        warm = _wall(args + ["--out", str(tmp / f"solve-{oracle}")], _env(cache), 2)
        out[f"solve {oracle} (1 seed)"] = {"cold_s": cold, "warm_s": min(warm)}
    args = cmd + ["compare", str(PUSHING), "--quiet", "--force", "--out", str(tmp / "compare")]
    cold = _wall(args, _env(str(tmp / "compare-cache")))[0]
    warm = _wall(args, _env(str(tmp / "compare-cache")), 2)
    nocache = _wall(args, _env(None))[0]
    out["compare (3 oracles x 5 seeds x 500)"] = {"cold_s": cold, "warm_s": min(warm), "no_cache_s": nocache}
    return out


HEAVISIDE = ROOT / "problems/heaviside.toml"
MEMORY_RUNS = (50_000, 200_000)  # iterations of the long runs (8 seeds each)


def worker_memory(iterations: int, seeds: int, out: str) -> dict:
    """One long ``trajopt compare`` in this process (the environment says where its history goes): peak memory,
    wall time, the history's estimated size and metrics.jsonl's."""
    import threading

    from trajopt.cli import app
    from trajopt.solver import history_bytes

    peak_anon, done = [0.0], threading.Event()

    def sample():  # the process's anonymous memory (its heap: what cannot be paged out to a file), every 20 ms
        while not done.wait(0.02):
            peak_anon[0] = max(peak_anon[0], _anon_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    app(["compare", str(HEAVISIDE), "--oracles", "aobg", "--iterations", str(iterations), "--seeds", str(seeds),
         "--out", out, "--quiet", "--force"], standalone_mode=False)
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    result = json.loads((Path(out) / "result.json").read_text())
    with (Path(out) / "metrics.jsonl").open() as f:  # a row: variant, seed, iteration, cost, the fields, 3 counts
        fields = len(json.loads(f.readline())) - 7 + 3  # the info fields: those, value, rollouts and gradients
    return {"iterations": iterations, "seeds": seeds, "wall_s": wall, "maxrss_mib": _maxrss_mib(),
            "peak_anon_mib": max(peak_anon[0], _anon_mib()),
            "history": result["variants"]["aobg"].get("history"),
            "history_mib": history_bytes(seeds, iterations, fields) / 2**20,
            "metrics_mib": (Path(out) / "metrics.jsonl").stat().st_size / 2**20}


def measure_memory(tmp: Path) -> list[dict]:
    rows = []
    for iterations in MEMORY_RUNS:
        for mode, limit in (("memory", str(1 << 40)), ("disk", "0")):
            env = {**_env(str(tmp / "memory-cache")), "TRAJOPT_HISTORY_MEMORY": limit}
            rows.append(_python(["--worker", "memory", "--iterations", str(iterations), "--value", "8",
                                 "--axis", str(tmp / f"memory-{iterations}-{mode}")], env=env, timeout=1800))
    return rows


def fit_exponent(xs, ys) -> float:
    import numpy as np

    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    return float(np.polyfit(lx, ly, 1)[0]) if len(xs) >= 2 else math.nan


def measure_scaling(points: dict, iterations: int, oracle: str = "aobg") -> dict:
    out = {}
    for axis, values in points.items():
        rows = []
        for v in values:
            # fewer iterations where one is long, so each point stays around a second
            big = (axis, v) in {("seeds", 300), ("seeds", 1000), ("horizon", 3000), ("horizon", 10000), ("samples", 300),
                                ("samples", 1000), ("bodies", 32), ("bodies", 64)}
            k = max(10, iterations // 10) if big else iterations
            rows.append(_python(["--worker", "point", "--axis", axis, "--value", str(v), "--oracle", oracle,
                                 "--iterations", str(k)], env=_env(None)))
        ys = [r["ms_per_iteration"] for r in rows]
        # the exponent over the upper half of the range, where fixed costs no longer dominate
        half = rows[len(rows) // 2 - (1 if len(rows) % 2 == 0 else 0):] if len(rows) > 2 else rows
        out[axis] = {"rows": rows, "exponent": fit_exponent(values, ys),
                     "exponent_upper": fit_exponent([r["value"] for r in half], [r["ms_per_iteration"] for r in half]),
                     "memory_exponent": fit_exponent(values, [r["maxrss_mib"] for r in rows])}
    return out


AXIS_LABEL = {"seeds": "seeds S (vmapped)", "horizon": "horizon T", "samples": "samples N per batch",
              "bodies": "chain bodies"}


def figures(scaling: dict, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for axis, data in scaling.items():
        xs = [r["value"] for r in data["rows"]]
        ys = [r["ms_per_iteration"] for r in data["rows"]]
        mem = [r["maxrss_mib"] for r in data["rows"]]
        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
        a.loglog(xs, ys, "o-", label=f"AoBG, exponent {data['exponent']:.2f} (upper half {data['exponent_upper']:.2f})")
        ref = [ys[0] * (x / xs[0]) for x in xs]
        a.loglog(xs, ref, ":", color="grey", label="linear")
        a.set_xlabel(AXIS_LABEL[axis])
        a.set_ylabel("ms per iteration")
        a.legend(fontsize=8)
        a.grid(True, which="both", alpha=0.3)
        b.loglog(xs, mem, "s-", color="C1", label=f"peak RSS, exponent {data['memory_exponent']:.2f}")
        b.set_xlabel(AXIS_LABEL[axis])
        b.set_ylabel("peak memory (MiB)")
        b.legend(fontsize=8)
        b.grid(True, which="both", alpha=0.3)
        fig.suptitle(f"Scaling in {AXIS_LABEL[axis]} (fused AoBG update, one process per point)", fontsize=10)
        fig.tight_layout()
        name = f"scaling_{axis}.png"
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)
        names.append(name)
    return names


def environment() -> dict:
    import jax
    import jaxlib
    import numpy

    import trajopt

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()}, {cpu}, {os.cpu_count()} logical CPUs",
            "os": platform.platform(), "python": platform.python_version(), "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "numpy": numpy.__version__, "trajopt": trajopt.__version__,
            "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "gpu": any(d.platform == "gpu" for d in jax.devices()),
            "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                  cwd=ROOT).stdout.strip()}


def _f(x, digits=3):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def report(data: dict) -> str:
    env, o, st, cli, sc = data["environment"], data["oracles_cold"], data["startup"], data["cli"], data["scaling"]
    warm = data["oracles_warm"]
    load0, load1 = data["load_before"], data["load_after"]
    # judged by the load before the run: the load after it is mostly the benchmark's own last processes (so load
    # that starts during the run is not flagged: the before / after figures are printed for the reader)
    busy = load0[0] > 0.5 * (os.cpu_count() or 1)
    L = [
        "# trajopt performance",
        "",
        "Written by `python benchmarks/run.py" + (" --full" if data["full"] else "") + "`; the numbers in "
        "RESULTS.json. Rerun it on your machine; the figures are in `benchmarks/figures/`.",
        "",
        f"* date: {env['date']}, git {env['git']}",
        f"* machine: {env['machine']}; {env['os']}",
        f"* Python {env['python']}, jax {env['jax']}, jaxlib {env['jaxlib']}, numpy {env['numpy']}, trajopt "
        f"{env['trajopt']}; backend: {env['backend']} ({', '.join(env['devices'])})",
        f"* load average (1 min) before / after: {load0[0]:.2f} / {load1[0]:.2f} (after: the benchmark's own processes "
        "included)"
        + ("  **(busy machine: other processes shared the CPUs; timings are noisy and pessimistic)**" if busy else ""),
        f"* GPU: {'yes' if env['gpu'] else 'none on this machine; no GPU numbers are recorded (install the `cuda` extra and rerun on one)'}",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for name, (value, limit, unit) in data["targets"].items():
        L.append(f"| {name} (≤ {limit}{unit}) | {_f(value, 2)}{unit} | {'yes' if value <= limit else '**no**'} |")
    L += [
        "",
        "## The fused update per oracle (stiff pushing, T = 200, N = 10, one seed, "
        f"{data['iterations']} iterations)",
        "",
        "ms per update: the compiled loop's wall time over the iterations, its final cost evaluation included "
        "(trajopt: `Result.run_seconds` of one compiled `trajopt.solver.prepare` run five times; speed of light: "
        "its compiled program run five times; the minimum of the five each). *speed of light*: `benchmarks/sol.py`, a minimal hand-written fused JAX loop of "
        "the same estimator (one `lax.scan`, SGD, the cost curve recorded, nothing else). *NumPy*: "
        "`benchmarks/numpy_ref.py` (a Python loop over time vectorised over samples; FoBG and AoBG use a "
        "hand-written adjoint for the gradients).",
        "",
        "| oracle | trajopt, default chunks | trajopt, one chunk | speed of light | ratio (default / one chunk) | NumPy | "
        "NumPy / trajopt | same iterates (20 its: max abs ΔU, rel Δcost) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ORACLES:
        r = o[name]
        L.append(f"| {name} | {_f(r['trajopt_ms'])} | {_f(r['trajopt_one_chunk_ms'])} | {_f(r['sol_ms'])} | "
                 f"{_f(r['ratio_sol'], 2)} / {_f(r['ratio_sol_one_chunk'], 2)} | {_f(r['numpy_ms'], 1)} | "
                 f"{r['numpy_ms'] / r['trajopt_ms']:.0f}× | {r['check_diff_U']:.1e}, {r['check_diff_cost_rel']:.1e} |")
    L += [
        "",
        "NumPy reference checked against JAX for the same perturbations (max relative difference): "
        + ", ".join(f"{k} {v:.1e}" for k, v in o["numpy_check"].items()) + ".",
        "",
        "### Compilation (seconds; first `solve` in a fresh process)",
        "",
        "*XLA's defaults*: the same program compiled without `trajopt.compiler.CPU_COMPILER_OPTIONS` (XLA's newer "
        "fusion emitters; measured after the first compile in the process). *speed of light*: its own program, "
        "compiled with the same options as trajopt's.",
        "",
        "| oracle | trajopt, empty cache | trajopt, warm cache (new process) | trajopt with XLA's defaults, empty "
        "cache | speed of light |",
        "|---|---|---|---|---|",
    ]
    for name in ORACLES:
        L.append(f"| {name} | {_f(o[name]['compile_s'], 2)} | {_f(warm[name]['compile_s'], 2)} | "
                 f"{_f(o[name].get('compile_xla_defaults_s'), 2)} | {_f(o[name]['sol_compile_s'], 2)} |")
    L += ["", "## Start-up and end to end (fresh processes, wall seconds)", "", "| command | median | min | max |",
          "|---|---|---|---|"]
    for name, r in st.items():
        label = 'python -c "import jax"' if name == "import jax" else "trajopt " + name
        L.append(f"| `{label}` | "
                 f"{_f(r['median_s'], 2)} | {_f(r.get('min_s'), 2)} | {_f(r.get('max_s'), 2)} |")
    L += ["", "| command (problems/pushing_stiff.toml) | empty cache | warm cache | cache off |", "|---|---|---|---|"]
    for name, r in cli.items():
        L.append(f"| `trajopt {name}` | {_f(r['cold_s'], 2)} | {_f(r['warm_s'], 2)} | {_f(r.get('no_cache_s'), 2)} |")
    L += ["", "## Scaling (fused AoBG update, one fresh process per point, compilation cache off)", "",
          "Each axis varies one size from stiff pushing (T = 200, N = 10, one seed); *bodies* is "
          "problems/chain3_stiff.toml with `system.bodies`. ms per iteration covers every seed; peak memory is the "
          "process's maxrss (JAX and XLA included, about 250-400 MiB at rest). The exponent is the slope of a "
          "least-squares line in log-log (over all points, and over the upper half where fixed per-iteration "
          "costs no longer dominate).", ""]
    for axis, d in sc.items():
        L += [f"### {AXIS_LABEL[axis]}: time exponent {d['exponent']:.2f} (upper half {d['exponent_upper']:.2f}), "
              f"memory exponent {d['memory_exponent']:.2f}", "",
              f"![{axis}](figures/scaling_{axis}.png)", "",
              "| value | iterations | ms per iteration | ms per update per seed | compile s | peak MiB |",
              "|---|---|---|---|---|---|"]
        for r in d["rows"]:
            L.append(f"| {r['value']} | {r['iterations']} | {_f(r['ms_per_iteration'])} | {_f(r['ms_per_update'], 4)} | "
                     f"{_f(r['compile_s'], 2)} | {r['maxrss_mib']:.0f} |")
        L.append("")
    if data.get("memory"):
        L += ["## Memory of long runs (fresh processes, peak RSS)", "",
              "`trajopt compare problems/heaviside.toml --oracles aobg --seeds 8 --iterations K`, its history kept in "
              "memory (`TRAJOPT_HISTORY_MEMORY` = 1 TiB) or streamed to disk (`TRAJOPT_HISTORY_MEMORY=0`; by default "
              "past 1 GiB). *anonymous*: the peak of the process's RssAnon (sampled every 20 ms), the memory that "
              "cannot be given back without swap; *peak RSS* also counts the pages of the mapped history files, "
              "which the kernel writes back and drops under memory pressure (page cache), so it overstates what a "
              "streamed run needs.", "",
              "| iterations | history | history MiB | metrics.jsonl MiB | peak anonymous MiB | peak RSS MiB | wall s |",
              "|---|---|---|---|---|---|---|"]
        for r in data["memory"]:
            L.append(f"| {r['iterations']:,} | {r['history']} | {r['history_mib']:.0f} | {r['metrics_mib']:.0f} | "
                     f"{r.get('peak_anon_mib', float('nan')):.0f} | {r['maxrss_mib']:.0f} | {r['wall_s']:.1f} |")
        L.append("")
    L += ["## Notes", "", *data.get("notes", [])]
    return "\n".join(L) + "\n"


NOTES = [
    "* The authors' code (NumPy/PyTorch, per-sample Python loops) spends 120-150 ms per AoBG update on stiff pushing "
    "on a 2-core CPU; the NumPy column above is a vectorised-over-samples NumPy loop, what a careful user would write.",
    "* Compilation cache: trajopt keeps compiled programs in `$TRAJOPT_CACHE_DIR`, else `$XDG_CACHE_HOME/trajopt/jax`, "
    "else `~/.cache/trajopt/jax` (`TRAJOPT_CACHE=0` turns it off). A warm cache still traces and lowers the program "
    "(the remaining compile seconds); XLA's compilation itself is skipped.",
    "* Scaling points run 100 iterations in one chunk (10 for the largest), so a fixed per-dispatch cost of a "
    "fraction of a millisecond is spread thinly; the small sizes are still dominated by per-iteration overheads, which "
    "is why the exponents over all points are below 1.",
    "* End to end, a CLI run also pays for importing JAX (the `import jax` row: 0.4-0.8 s on the hosts recorded so far, with ml_dtypes < 0.7, which trajopt "
    "pins: ml_dtypes 0.7.0 adds 1.3 s to every `import jax` under NumPy 2), loading the file and writing the run "
    "folder with its figure (matplotlib, with its maths-text parser, warmed up on a thread while the last variant "
    "runs). `compare` prepares up to two variants ahead while the current one runs, as a pipeline (one thread "
    "traces and lowers them in order, two more compile them), and the chunks of one run are queued one ahead, so "
    "the host's recording and progress overlap the compiled loop.",
    "* The fused loop is compiled with `trajopt.compiler.CPU_COMPILER_OPTIONS` (XLA's older CPU emitter, about a third "
    "less compile time than XLA's defaults, the column beside; `TRAJOPT_XLA_OPTIONS=0` turns them off). Speed of "
    "light sets the floor for compilation too (the table's last column): most of a compile is XLA's, so whether "
    "AoBG meets 1 s depends on the host as much as on trajopt. On the shared AMD EPYC host of the earlier "
    "recordings XLA needed 1.32 s for the minimal AoBG loop and trajopt 1.51 s; FoBG took 1.02 s there.",
    "* float64 throughout (stiff contact needs it); the noise is drawn in float32 and cast, in trajopt and in both references.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="every scaling point (takes much longer)")
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--out", type=Path, default=HERE, help="folder for RESULTS.md, RESULTS.json and figures/")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: startup,cli,scaling,memory")
    parser.add_argument("--worker", choices=("oracles", "point", "memory"), help=argparse.SUPPRESS)
    parser.add_argument("--axis", help=argparse.SUPPRESS)
    parser.add_argument("--value", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--oracle", default="aobg", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "oracles":
        print(json.dumps(worker_oracles(args.iterations, 10, args.repeats)))
        return
    if args.worker == "memory":
        print(json.dumps(worker_memory(args.iterations, args.value, args.axis)))
        return
    if args.worker == "point":
        print(json.dumps(worker_point(args.axis, args.value, args.oracle, args.iterations)))
        return

    sys.path.insert(0, str(ROOT))
    skip = set(filter(None, args.skip.split(",")))
    t_start = time.perf_counter()
    data = {"full": args.full, "iterations": args.iterations, "load_before": list(os.getloadavg())}
    with tempfile.TemporaryDirectory(prefix="trajopt-bench-") as tmp:
        tmp = Path(tmp)
        log = lambda msg: print(f"[{time.perf_counter() - t_start:6.1f} s] {msg}", flush=True)  # noqa: E731
        log("per-oracle loop, empty compilation cache")
        cache = str(tmp / "oracle-cache")
        worker = ["--worker", "oracles", "--iterations", str(args.iterations), "--repeats", str(args.repeats)]
        data["oracles_cold"] = _python(worker, env=_env(cache))
        log("per-oracle loop, warm compilation cache")
        data["oracles_warm"] = _python(worker[:4] + ["--repeats", "1"], env=_env(cache))
        data["startup"] = {} if "startup" in skip else (log("start-up") or measure_startup())
        data["cli"] = {} if "cli" in skip else (log("end to end (CLI)") or measure_cli(tmp))
        points = SCALING_FULL if args.full else SCALING_DEFAULT
        data["scaling"] = {} if "scaling" in skip else (log("scaling") or measure_scaling(points, 100))
        data["memory"] = [] if "memory" in skip else (log("memory of long runs") or measure_memory(tmp))
    data["load_after"] = list(os.getloadavg())
    data["environment"] = environment()
    o = data["oracles_cold"]
    targets = {f"{n}: trajopt / speed of light per update": (o[n]["ratio_sol"], TARGETS["sol_ratio"], "×")
               for n in ORACLES}
    targets.update({f"{n}: compile, empty cache": (o[n]["compile_s"], TARGETS["compile_s"], " s") for n in ORACLES})
    if data["startup"]:
        targets["`trajopt --help`"] = (data["startup"]["--help"]["median_s"], TARGETS["startup_s"], " s")
        targets["`trajopt list`"] = (data["startup"]["list"]["median_s"], TARGETS["startup_s"], " s")
        targets["`trajopt list oracles`"] = (data["startup"]["list oracles"]["median_s"], TARGETS["startup_s"], " s")
    if data["cli"]:
        c = data["cli"]["compare (3 oracles x 5 seeds x 500)"]
        targets["README's compare, warm cache"] = (c["warm_s"], TARGETS["compare_warm_s"], " s")
        targets["README's compare, empty cache"] = (c["cold_s"], TARGETS["compare_cold_s"], " s")
    data["targets"] = targets
    data["notes"] = NOTES
    data["total_seconds"] = time.perf_counter() - t_start
    if data["scaling"]:
        figures(data["scaling"], args.out / "figures")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "RESULTS.json").write_text(json.dumps(data, indent=1, default=float) + "\n")
    (args.out / "RESULTS.md").write_text(report(data))
    print(f"wrote {args.out / 'RESULTS.md'} in {data['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
