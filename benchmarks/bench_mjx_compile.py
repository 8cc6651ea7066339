"""Where an MJX variant's compile time goes, and which solver settings compile faster (#27 item 3).

For an MJX problem (the shipped pendulum between joint-limit walls, problems/mjx_pendulum_wall.toml, and the suite's
finger turning a spinner, problems/suite/finger_spinner.toml) this times ``jax.jit(f).lower(...)`` (tracing MJX into
a program) and ``.compile()`` (XLA) separately, each in a fresh Python process (no in-memory or persistent cache),
for the pieces an MJX variant's program is made of:

    step      one control step, x [n], u [m] -> x' [n] (``substeps`` mjx.step calls)
    rollout   the scan of that step over the horizon, U [T, m] -> X [T+1, n]
    vmap      the oracle's batch: the cost of N rollouts side by side, U [N, T, m] -> J [N]
    jacobian  the gradient of one rollout's cost through forward-mode step Jacobians (``gradient = "forward"``,
              the default whenever the solver runs more than one iteration)
    mujoco    the same N rollouts by MuJoCo's C simulator (``backend = "mujoco"``: `trajopt.systems.mujoco_c`, one
              jax.pure_callback): what is left to compile is the cost around the callback
    3 sites   a program that steps the model at three places (N rollouts, 3 rollouts, 1 rollout), with the step a
              jax.jit of its own (trajopt's, "model's own") and inlined ("step inlined", as trajopt stepped it
              before: `bench_mjx_jit.inline_physics`): the size of the optimised program and what tracing once saves
    variant   a whole variant as `trajopt compare` runs it (`trajopt.solve`: the file's seeds and key, its iterations
              up to 100): ZoBG, FoBG (the finger: its "grad" variant), MPPI and PS (32 samples, σ 0.5), on MJX without and
              with the step inlined and, for the samplers, on MuJoCo's C simulator (``backend = "mujoco"``)

and then the rollout stage under solver settings that change what MJX traces: the model's own (Newton, its
iterations and ls_iterations), one solver iteration, one line-search iteration, the CG solver, the warm start or
the implicit joint damping (eulerdamp) disabled, and XLA's backend optimisation level 0 (an ``XLA_FLAGS`` setting
of the process, not of the model). Every setting's rollout under a fixed control sequence (uniform in 80 % of the
control range, seed 0) is compared with the model's own settings: the maximum absolute state difference over the
horizon, and the run time of one compiled rollout (median of 20).

    python benchmarks/bench_mjx_compile.py > benchmarks/bench_mjx_compile.txt      # everything (~60 min here)
    python benchmarks/bench_mjx_compile.py finger rollout sites variant:mppi   # only these problems' and rows
    python benchmarks/bench_mjx_compile.py --one PROBLEM SETTING STAGE              # one measurement (a child)

Needs the [mjx] extra. The recorded output is from a shared 2-core CPU host (its load average is printed).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBLEMS = {"pendulum_wall": ("problems/mjx_pendulum_wall.toml", 10),   # (file, N samples of the vmap stage)
            "finger": ("problems/suite/finger_spinner.toml", 32)}
STAGES = ("step", "rollout", "vmap", "jacobian", "mujoco")
VARIANTS = {"pendulum_wall": ("zobg", "fobg", "mppi", "ps"), "finger": ("grad", "mppi", "ps")}
SETTINGS = {  # name: (changes to mj_model.opt, XLA_FLAGS added)
    "model's own": ({}, ""),
    "iterations = 1": ({"iterations": 1}, ""),
    "ls_iterations = 1": ({"ls_iterations": 1}, ""),
    "solver = CG": ({"solver": "CG"}, ""),
    "no warmstart": ({"disable": "WARMSTART"}, ""),
    "no eulerdamp": ({"disable": "EULERDAMP"}, ""),
    "XLA opt level 0": ({}, "--xla_backend_optimization_level=0"),
}


def one(problem: str, setting: str, stage: str) -> dict:
    """One measurement in this (fresh) process: {"lower_s", "compile_s", "run_ms", "X" (rollout stages)}."""
    import numpy as np
    import jax
    import jax.numpy as jnp
    import mujoco

    import trajopt  # noqa: F401  (x64, XLA flags)
    from trajopt import spec
    from trajopt.problem import rollout
    from trajopt.systems.mjx import _import_mujoco, _make_step

    jax.config.update("jax_enable_compilation_cache", False)
    path, samples = PROBLEMS[problem]
    s = spec.load(os.path.join(ROOT, path))
    system, t = s.system, s.task
    _, mjx = _import_mujoco()
    mm = system.mj_model  # a private copy: spec.load built this system for this process only
    if stage.startswith("variant:"):
        return variant(s, system, stage.split(":", 1)[1], setting)
    if stage == "3 sites":
        return three_sites(s, setting)
    changes, _ = SETTINGS[setting]
    for key, value in changes.items():
        if key == "solver":
            mm.opt.solver = getattr(mujoco.mjtSolver, f"mjSOL_{value}")
        elif key == "disable":
            mm.opt.disableflags |= int(getattr(mujoco.mjtDisableBit, f"mjDSBL_{value}"))
        else:
            setattr(mm.opt, key, value)
    m = mjx.put_model(mm)
    d0 = mjx.make_data(m)
    step = _make_step(mjx, m, d0, mm.nq, system.substeps, "forward" if stage == "jacobian" else "reverse")
    x0 = jnp.asarray(t.x0, float)
    T, nu = int(t.horizon), int(mm.nu)
    lo, hi = mm.actuator_ctrlrange[:, 0], mm.actuator_ctrlrange[:, 1]
    U = jnp.asarray(0.8 * (lo + (hi - lo) * np.random.default_rng(0).uniform(size=(T, nu))))
    cost = s.problem().cost
    Ns = jnp.broadcast_to(U, (samples, T, nu)) + 0.01 * jnp.arange(samples)[:, None, None]
    if stage == "step":
        f, args = step, (x0, U[0])
    elif stage == "rollout":
        f, args = (lambda U: rollout(step, x0, U)), (U,)
    elif stage == "vmap":
        f, args = jax.vmap(lambda U: cost(rollout(step, x0, U), U)), (Ns,)
    elif stage == "jacobian":
        f, args = jax.grad(lambda U: cost(rollout(step, x0, U), U)), (U,)
    else:  # mujoco: the C simulator's N rollouts through one callback
        from trajopt.systems.mjx import MJX

        c = MJX(**{**{k: getattr(system, k) for k in ("model", "substeps", "keyframe", "timestep", "iterations",
                                                        "ls_iterations", "solref")}, "backend": "mujoco"})
        f, args = jax.vmap(lambda U: cost(c.simulate(x0, U), U)), (Ns,)
    result, compiled, out = timed(f, args, 20)
    if stage == "rollout":
        result["X"] = np.asarray(out).tolist()
    if stage == "mujoco":
        result["X"] = np.asarray(jax.jit(lambda U: c.simulate(x0, U))(U)).tolist()
    return result


def timed(f, args, runs: int) -> tuple[dict, object, object]:
    """({lower_s, compile_s, run_ms}, the compiled program, its last output): ``jax.jit(f)`` lowered and compiled on
    ``args`` (each timed), then run once to warm up and ``runs`` times (the median in milliseconds)."""
    import jax
    import numpy as np

    tic = time.perf_counter()
    lowered = jax.jit(f).lower(*args)
    lower_s = time.perf_counter() - tic
    tic = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - tic
    out = jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(runs):
        tic = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - tic)
    return {"lower_s": lower_s, "compile_s": compile_s, "run_ms": 1e3 * float(np.median(times))}, compiled, out


def inlined_step() -> None:
    """The MJX step traced in place at each call site, as trajopt stepped it before its own jit (for this process:
    `bench_mjx_jit.inline_physics`)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_mjx_jit import inline_physics

    inline_physics()


def three_sites(s, setting: str) -> dict:
    """A program that steps the model at three places (the costs of N and of 3 rollouts side by side, and of one),
    as a variant does: its trace and XLA seconds, and the size of its optimised HLO, with the step jitted on its own
    ("model's own", trajopt's) or inlined ("step inlined")."""
    import jax
    import jax.numpy as jnp
    from trajopt import spec

    if setting == "step inlined":
        inlined_step()
    s = spec.load(s.source)
    p = s.problem()
    T, m = p.U0.shape

    def f(Us, U):
        return jax.vmap(p.objective)(Us), p.objective(U), jax.vmap(p.objective)(Us[:3] * 2)

    args = (jnp.zeros((10, T, m)), jnp.zeros((T, m)))
    result, compiled, _ = timed(f, args, 10)
    return {**result, "hlo_chars": len(compiled.as_text())}


def variant(s, system, name: str, setting: str) -> dict:
    """One whole variant as `trajopt compare` runs it (`trajopt.solve`: the file's seeds, key and iterations):
    its compile seconds (tracing and compiling the fused loop), run seconds per iteration and median final cost.
    ``name``: a variant of the file, or mppi / ps with 32 samples (σ 0.5, the control box); ``setting``: "model's
    own" (MJX) or "backend mujoco" (MuJoCo's C simulator, the same model)."""
    import numpy as np
    import jax
    from trajopt import spec
    from trajopt.methods import METHODS
    from trajopt.solver import solve

    if setting == "step inlined":
        inlined_step()
    s = spec.load(s.source, overrides=['system.backend="mujoco"'] if setting == "backend mujoco" else [])
    from bench_mjx_jit import fused_loop_seconds

    seconds = fused_loop_seconds()  # JAX's log of each compile: the fused loop's tracing + MLIR, and XLA's part
    lo, hi = s.system.mj_model.actuator_ctrlrange[:, 0], s.system.mj_model.actuator_ctrlrange[:, 1]
    if name in s.variants:
        method = s.variants[name].method
    else:
        method = METHODS.get(name)(samples=32, sigma=0.5, u_min=float(lo.min()), u_max=float(hi.max()))
    iterations = min(s.solve.iterations or 100, 100)  # compile does not depend on it; run is per iteration
    r = solve(s.problem(), method, key=jax.random.PRNGKey(s.solve.key), iterations=iterations, seeds=s.solve.seeds)
    return {"lower_s": seconds["trace"], "xla_s": seconds["xla"], "compile_s": r.compile_seconds + (r.final_evaluation_seconds or 0.0),
            "run_ms": 1e3 * r.run_seconds / iterations,
            "final": float(np.nanmedian(r.cost[:, -1])), "seeds": len(s.solve.seeds), "iterations": iterations}


def child(problem: str, setting: str, stage: str) -> dict:
    env = dict(os.environ)
    flags = SETTINGS.get(setting, ({}, ""))[1]
    if flags:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flags).strip()
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", problem, setting, stage], env=env,
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(only: list[str]) -> None:
    import numpy as np
    import jax
    import mujoco
    from importlib import metadata

    print(f"# bench_mjx_compile: mujoco {mujoco.__version__}, mujoco-mjx {metadata.version('mujoco-mjx')}, jax "
          f"{jax.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs shared with other "
          f"jobs; load average at start {os.getloadavg()[0]:.2f}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("# seconds: lower = tracing MJX into a program (jit(f).lower), compile = XLA (lowered.compile), each in a fresh "
          "process; run = one call of the compiled program (median of 20)", flush=True)
    chosen = [p for p in PROBLEMS if p in only] or list(PROBLEMS)
    only = [a for a in only if a not in PROBLEMS]
    for problem, (path, samples) in [(p, PROBLEMS[p]) for p in chosen]:
        print(f"\n## {problem} ({path}; vmap and mujoco stages: N = {samples} rollouts)", flush=True)
        print(f"{'stage':14s} {'setting':20s} {'lower s':>8s} {'compile s':>10s} {'run ms':>9s} {'max |dX| vs own':>16s}  load",
              flush=True)
        reference = None
        rows = [(stage, "model's own") for stage in STAGES] + [("rollout", k) for k in SETTINGS if k != "model's own"]
        rows += [("3 sites", "model's own"), ("3 sites", "step inlined")]
        rows += [(f"variant:{v}", b) for v in VARIANTS[problem]
                 for b in ("model's own", "step inlined", "backend mujoco")
                 if b != "backend mujoco" or v in ("mppi", "ps")]
        rows = [(a, b) for a, b in rows if not only or a in only or (a.startswith("variant:") and "variant" in only)
                or (a == "3 sites" and "sites" in only)]
        if ("rollout", "model's own") not in rows and any(a in ("rollout", "mujoco") for a, _ in rows):
            rows.insert(0, ("rollout", "model's own"))
        for stage, setting in rows:
            r = child(problem, setting, stage)
            load = os.getloadavg()[0]
            if "error" in r:
                print(f"{stage:14s} {setting:20s} failed: {r['error']}", flush=True)
                continue
            diff = ""
            if "hlo_chars" in r:
                print(f"{stage:14s} {setting:20s} {r['lower_s']:8.1f} {r['compile_s']:10.1f} {r['run_ms']:9.2f} "
                      f"{'':>16s}  {load:.1f}  optimised HLO {r['hlo_chars']:,} characters", flush=True)
                continue
            if "final" in r:
                print(f"{stage:14s} {setting:20s} {r['lower_s']:8.1f} {r['xla_s']:10.1f} {r['run_ms']:9.2f} "
                      f"{'':>16s}  {load:.1f}  all compile {r['compile_s']:.1f} s; run: per iteration of {r['seeds']} "
                      f"seeds, {r['iterations']} iterations; final cost median {r['final']:.6g}", flush=True)
                continue
            if "X" in r:
                X = np.asarray(r["X"])
                if reference is None:
                    reference = X
                diff = f"{float(np.max(np.abs(X - reference))):.2e}"
            print(f"{stage:14s} {setting:20s} {r['lower_s']:8.1f} {r['compile_s']:10.1f} {r['run_ms']:9.2f} {diff:>16s}  "
                  f"{load:.1f}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--one":
        print(json.dumps(one(*sys.argv[2:])))
    else:
        main(sys.argv[1:])
