"""MJX on models nobody here wrote: steps per second beside MuJoCo's C simulator, compile times, and how closely
trajopt's rollout follows mujoco.mj_step (at each model's own solver settings and at converged ones).

    python benchmarks/bench_mjx_models.py > benchmarks/bench_mjx_models.txt

Needs the [mjx] extra and gymnasium (pip install -e ".[suite]"): gymnasium's inverted pendulum and hopper, and the
humanoid and shadow hand that the mujoco-mjx wheel ships in mujoco/mjx/test_data, loaded as package models
(``model = { package, path }``). For each configuration (control steps of ``substeps`` physics steps, the settings of
tests/test_mjx.py's fidelity test where it has one):

* fidelity: 100 control steps of random controls over each actuator's full range (seed 0) from qpos0 moved by
  U(-0.01, 0.01) (quaternions kept): the one-step map at each state of C's trajectory (max and median deviation), the
  free rollout (max deviation), and C's own spread when x0 moves by 1e-12 (max over 3 moves), all in max |.| over
  the state's coordinates; one compiled program gives both trajopt numbers.
* speed, in physics steps per second: C mj_step in a Python loop (one trajectory, the warm start cleared every
  control step as trajopt's step does); ``mujoco.rollout`` (B trajectories, one MjData per CPU); MJX jitted, one
  trajectory (a lax.scan of T control steps: the program above) and vmapped over B trajectories (jit(vmap(scan))).
  Each run time is the fastest of 3 after the compiling call; compile time is the first call's (lower, compile and
  the first run; XLA's default CPU options, as a user's jax.jit gets).

Run on a shared, loaded 2-core CPU host: the timings are upper bounds for this CPU, the fidelity numbers are exact.
"""

import os
import platform
import time

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from trajopt.systems.mjx import MJX

jax.config.update("jax_enable_x64", True)

GYM = "envs/mujoco/assets/"
HUMANOID = {"package": "mujoco", "path": "mjx/test_data/humanoid/humanoid.xml"}
HAND = {"package": "mujoco", "path": "mjx/test_data/shadow_hand/scene_right.xml"}
CONVERGED = {"iterations": 100, "ls_iterations": 50}
T, B = 100, 64  # control steps per trajectory, trajectories in a batch
CONFIGS = [  # (label, model, MJX settings, measure the vmapped batch)
    ("gymnasium inverted_pendulum", {"package": "gymnasium", "path": GYM + "inverted_pendulum.xml"}, {"substeps": 2}, True),
    ("gymnasium hopper", {"package": "gymnasium", "path": GYM + "hopper.xml"}, {"substeps": 4}, True),
    ("mujoco-mjx humanoid, its own settings", HUMANOID, {"substeps": 2}, True),
    ("mujoco-mjx humanoid, converged", HUMANOID, {"substeps": 2, **CONVERGED}, True),
    ("mujoco-mjx tendon_force_clamp", {"package": "mujoco", "path": "mjx/test_data/actuator/tendon_force_clamp.xml"},
     {"substeps": 5}, True),
    ("mujoco-mjx shadow hand, its own settings", HAND, {"substeps": 5}, True),
    ("mujoco-mjx shadow hand, converged", HAND, {"substeps": 5, **CONVERGED}, False),
]


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def start(system: MJX, seed: int) -> np.ndarray:
    """qpos0 and zero velocity moved by U(-0.01, 0.01), quaternions kept (tests/test_mjx.py's fidelity_start)."""
    mm = system.mj_model
    move = np.random.default_rng(seed).uniform(-0.01, 0.01, system.state_size)
    for j in range(mm.njnt):
        kind, a = int(mm.jnt_type[j]), int(mm.jnt_qposadr[j])
        if kind == int(mujoco.mjtJoint.mjJNT_FREE):
            move[a + 3:a + 7] = 0.0
        elif kind == int(mujoco.mjtJoint.mjJNT_BALL):
            move[a:a + 4] = 0.0
    return system.default_x0() + move


def controls(system: MJX, shape) -> np.ndarray:
    mm = system.mj_model
    lo, hi = np.where(mm.actuator_ctrllimited[:, None].astype(bool), mm.actuator_ctrlrange, [-1.0, 1.0]).T
    return np.random.default_rng(0).uniform(lo, hi, size=(*shape, system.control_size))


def c_rollout(system: MJX, x0, U) -> np.ndarray:
    """[T + 1, n]: what MJX.step does, with mj_step (the warm start cleared every control step)."""
    mm = system.mj_model
    d = mujoco.MjData(mm)
    x, xs = np.asarray(x0, float), [np.asarray(x0, float)]
    for u in U:
        d.qpos[:], d.qvel[:], d.ctrl[:] = x[: mm.nq], x[mm.nq:], u
        d.qacc_warmstart[:] = 0.0
        for _ in range(system.substeps):
            mujoco.mj_step(mm, d)
        x = np.concatenate([d.qpos, d.qvel])
        xs.append(x)
    return np.array(xs)


def fastest(f, repeats: int = 3) -> float:
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f())
        best = min(best, time.perf_counter() - t)
    return best


def measure(label: str, model: dict, settings: dict, batch: bool) -> None:
    t = time.perf_counter()
    system = MJX(model=model, **settings)
    load = time.perf_counter() - t
    mm = system.mj_model
    src = system.model_source
    print(f"\n## {label}\n  {src['distribution']} {src['version']}: {src['path']} (sha256 {src['sha256'][:12]}); nq {mm.nq}, "
          f"nv {mm.nv}, nu {mm.nu}, ngeom {mm.ngeom}; timestep {system.timestep:g} s x {system.substeps} substeps; "
          f"solver iterations {system.iterations}, ls_iterations {system.ls_iterations}; loaded in {load:.2f} s", flush=True)
    x0 = start(system, 1)
    U = controls(system, (T,))
    ref = c_rollout(system, x0, U)
    physics = T * system.substeps

    def run(x0, U, X, forced):
        def body(x, inputs):
            u, given = inputs
            y = system.step(jnp.where(forced, given, x), u)
            return y, y

        return jax.lax.scan(body, x0, (U, X))[1]

    single = jax.jit(run)
    args = (jnp.asarray(x0), jnp.asarray(U), jnp.asarray(ref[:-1]))
    t = time.perf_counter()
    free = np.asarray(jax.block_until_ready(single(*args, False)))
    compile_single = time.perf_counter() - t
    forced = np.asarray(single(*args, True))
    one = np.abs(forced - ref[1:]).max(axis=1)
    dev = np.abs(free - ref[1:]).max(axis=1)
    spread = np.zeros(T)
    for seed in range(3):
        moved = c_rollout(system, x0 + 1e-12 * np.random.default_rng(seed).standard_normal(x0.shape), U)
        spread = np.maximum(spread, np.abs(moved - ref).max(axis=1)[1:])
    contact = 0
    d = mujoco.MjData(mm)
    for x, u in zip(ref[:-1], U):
        d.qpos[:], d.qvel[:], d.ctrl[:] = x[: mm.nq], x[mm.nq:], u
        mujoco.mj_forward(mm, d)
        contact += d.ncon > 0
    scale = max(1.0, float(np.abs(ref).max()))
    print(f"  fidelity over {T} control steps ({contact} with contact; state scale {scale:.3g}): one-step max "
          f"{one.max():.2e} (median {np.median(one):.1e}), free rollout max {dev.max():.2e} "
          f"(after 10 / 50 / 100 steps: {dev[9]:.1e} / {dev[49]:.1e} / {dev[-1]:.1e}); C's own spread under a 1e-12 "
          f"move of x0: {spread.max():.1e}; first step where the free rollout differs by more than 1e-9 x scale: "
          f"{next((k + 1 for k in range(T) if dev[k] > 1e-9 * scale), 'none')}", flush=True)

    t_single = fastest(lambda: single(*args, False))
    t_c = fastest(lambda: c_rollout(system, x0, U), repeats=3)
    line = (f"  physics steps/s: C mj_step loop {physics / t_c:,.0f}; MJX single trajectory {physics / t_single:,.0f} "
            f"(compile {compile_single:.1f} s)")
    try:
        from mujoco import rollout
    except ImportError:
        rollout = None
    X0 = np.stack([start(system, 1 + b) for b in range(B)])
    UB = controls(system, (B, T))
    if rollout is not None:
        size = mujoco.mj_stateSize(mm, mujoco.mjtState.mjSTATE_FULLPHYSICS)
        state = np.zeros((B, size))
        d = mujoco.MjData(mm)
        for b in range(B):
            d.qpos[:], d.qvel[:] = X0[b, : mm.nq], X0[b, mm.nq:]
            mujoco.mj_getState(mm, d, state[b], mujoco.mjtState.mjSTATE_FULLPHYSICS)
        ctrl = np.repeat(UB, system.substeps, axis=1)
        datas = [mujoco.MjData(mm) for _ in range(os.cpu_count() or 1)]
        t_roll = fastest(lambda: rollout.rollout(mm, datas, state, ctrl))
        line += f"; mujoco.rollout x {B} ({len(datas)} threads) {B * physics / t_roll:,.0f}"
    if batch:
        vmapped = jax.jit(jax.vmap(lambda x0, U: run(x0, U, jnp.zeros((T, x0.shape[0]), x0.dtype), False)))
        bargs = (jnp.asarray(X0), jnp.asarray(UB))
        t = time.perf_counter()
        jax.block_until_ready(vmapped(*bargs))
        compile_batch = time.perf_counter() - t
        t_batch = fastest(lambda: vmapped(*bargs))
        line += f"; MJX vmapped x {B} {B * physics / t_batch:,.0f} (compile {compile_batch:.1f} s)"
    print(line, flush=True)


if __name__ == "__main__":
    from importlib import metadata

    print(f"# bench_mjx_models: {cpu_name()}, {os.cpu_count()} CPUs (shared with other jobs: a loaded host), "
          f"mujoco {mujoco.__version__}, mujoco-mjx {metadata.version('mujoco-mjx')}, jax {jax.__version__}, "
          f"gymnasium {metadata.version('gymnasium')}; T = {T} control steps, B = {B}", flush=True)
    for label, model, settings, batch in CONFIGS:
        measure(label, model, settings, batch)
