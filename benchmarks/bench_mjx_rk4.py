"""MJX's RK4 step against trajopt's (`trajopt.systems.mjx_physics.mjx_step`): the same four stages, unrolled (MJX:
four copies of the forward dynamics in the program) or in one loop (trajopt: one copy), on gymnasium's RK4 models.

    python benchmarks/bench_mjx_rk4.py > benchmarks/bench_mjx_rk4.txt      # about 10 minutes on 2 cores

Per model and step, in a fresh process each (nothing cached, no persistent compilation cache), two programs:
``rollout``, a jitted lax.scan of 30 steps from the model's initial state under fixed random controls, and
``jacobians``, the forward-mode Jacobian of the sum of that rollout's states with respect to its controls, vmapped
over 4 control sequences (what a first-order oracle compiles). Each row gives the tracing (``jit(f).lower``) and
XLA (``.compile()``) seconds and the fastest of 5 runs; ``max |dx|`` is the largest difference between the two
steps' rollout states (x64). Needs the [suite] extra (mujoco-mjx and gymnasium); run it on a quiet host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

MODELS = ("inverted_pendulum.xml", "reacher.xml", "hopper.xml")
STEPS = ("mjx", "trajopt")


def child(model: str, which: str) -> None:
    """One model and step: print a JSON line per program, and save the rollout for the comparison."""
    import trajopt  # noqa: F401  (first: it sets XLA's CPU while-loop flag, as every trajopt run has it)

    import gymnasium
    import jax
    import jax.numpy as jnp
    import mujoco
    import numpy as np
    from mujoco import mjx

    from trajopt.systems.mjx_physics import mjx_step

    jax.config.update("jax_enable_x64", True)
    path = os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets", model)
    mm = mujoco.MjModel.from_xml_path(path)
    m = mjx.put_model(mm)
    d0 = mjx.make_data(m)
    step = mjx.step if which == "mjx" else (lambda m, d: mjx_step(mjx, m, d))

    def rollout(U):
        def body(d, u):
            d = step(m, d.replace(ctrl=u))
            return d, jnp.concatenate([d.qpos, d.qvel])
        return jax.lax.scan(body, d0, U)[1]

    def jacobians(Us):
        return jax.vmap(jax.jacfwd(lambda U: rollout(U).sum()))(Us)

    U = jnp.asarray(np.random.default_rng(0).uniform(-0.5, 0.5, size=(30, mm.nu)))
    for name, f, arg in (("rollout", rollout, U), ("jacobians", jacobians, jnp.stack([U, -U, 0.5 * U, U[::-1]]))):
        t0 = time.perf_counter()
        lowered = jax.jit(f).lower(arg)
        t1 = time.perf_counter()
        compiled = lowered.compile()
        t2 = time.perf_counter()
        out = jax.block_until_ready(compiled(arg))
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            jax.block_until_ready(compiled(arg))
            runs.append(time.perf_counter() - t)
        if name == "rollout":
            np.save(sys.argv[4], np.asarray(out))
        print(json.dumps({"program": name, "trace": t1 - t0, "xla": t2 - t1, "run": min(runs)}), flush=True)


def main() -> None:
    import tempfile

    import jax
    import mujoco
    import numpy as np
    from importlib import metadata

    print(f"# bench_mjx_rk4: mujoco {mujoco.__version__}, mujoco-mjx {metadata.version('mujoco-mjx')}, jax "
          f"{jax.__version__}, {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("# seconds: tracing / XLA compile / the fastest of 5 runs (ms); each model and step in a fresh process")
    print(f"\n{'model':22s} {'program':10s} {'MJX: trace s':>12s} {'XLA s':>6s} {'run ms':>8s}"
          f" {'trajopt: trace s':>16s} {'XLA s':>6s} {'run ms':>8s}  max |dx|")
    with tempfile.TemporaryDirectory() as tmp:
        for model in MODELS:
            rows: dict[str, dict[str, dict]] = {}
            for which in STEPS:
                save = os.path.join(tmp, f"{which}.npy")
                p = subprocess.run([sys.executable, __file__, "child", model, which, save], capture_output=True,
                                   text=True)
                if p.returncode:
                    sys.exit(f"{model} {which}: {p.stderr.strip().splitlines()[-1]}")
                lines = [line for line in p.stdout.splitlines() if line.startswith("{")]  # not MJX's import notes
                rows[which] = {r["program"]: r for r in map(json.loads, lines)}
            dx = float(np.abs(np.load(os.path.join(tmp, "mjx.npy")) - np.load(os.path.join(tmp, "trajopt.npy"))).max())
            for program in ("rollout", "jacobians"):
                a, b = rows["mjx"][program], rows["trajopt"][program]
                print(f"{model:22s} {program:10s} {a['trace']:12.1f} {a['xla']:6.1f} {1e3 * a['run']:8.2f}"
                      f" {b['trace']:16.1f} {b['xla']:6.1f} {1e3 * b['run']:8.2f}  {dx:.1e}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(sys.argv[2], sys.argv[3])
    else:
        main()
