"""MuJoCo's C simulator behind an mjx system (``[system] backend = "mujoco"``): rollouts for forward-only methods.

    sim = Simulator(mj_model, substeps=2)
    rollout = rollout_function(sim)       # rollout(x0: [n], U: [T, m]) -> X: [T+1, n], jit- and vmap-able
    X = jax.vmap(rollout, (None, 0))(x0, U_batch)          # [N, T+1, n]: ONE host call for the N rollouts

The states are MuJoCo's own (``mujoco.rollout``: the C library's ``mj_step``, multi-threaded over the batch), so
nothing of the physics is traced or compiled by XLA: a program that runs these rollouts compiles in about the time
of the cost around them. The map is the one an MJX system steps (`trajopt.systems.mjx`): x = [qpos, qvel], u =
ctrl held for ``substeps`` physics steps, every control step starting the constraint solver cold (qacc_warmstart
= 0) and the substeps within it warm-starting from the previous one, as ``mj_step`` does. Two settings of the
model the simulator runs on (a copy; the caller's model is not changed) make the C library behave as MJX does:
``autoreset`` is disabled (MuJoCo would silently reset a diverging simulation to qpos0; MJX lets it become
non-finite, which a run then reports as ``non_finite``) and so is ``island`` (MuJoCo's per-island constraint
solve, which MJX does not have). A rollout whose x0 or controls are not finite returns NaN from the first step
that reads them, as MJX's arithmetic would. MuJoCo's warning about a diverging simulation ("Nan, Inf or huge value
in QACC") is kept in ``Simulator.warnings`` (the last 8) instead of printed and appended to MUJOCO_LOG.TXT in the
working directory (MuJoCo's handler is swapped for the duration of a call and restored).

**Batching.** ``rollout`` is a ``jax.pure_callback`` with ``vmap_method="broadcast_all"``: under ``vmap`` (an
oracle's N samples, a method's population, the seeds, any nesting of these) the batch arrives as one array and is
simulated by one ``mujoco.rollout`` call per control step ([B, substeps] physics steps each, B the whole batch,
spread over the host's cores). Per control step, because MuJoCo's rollout carries the warm start from one step to
the next, and the MJX map starts each control step cold.

**No derivatives.** The callback has no JVP: differentiating it in either mode (``jax.grad``, ``jax.jacfwd``)
raises `NotDifferentiable` while the program is traced, before anything compiles. The mjx system's
``check_method`` turns that into the refusal of a method that needs gradients or linearisations
(`trajopt.systems.mjx`).

**Counting.** One row of a batch is one rollout of the horizon (T control steps); the methods count their
rollouts as they do on MJX (``info.rollouts``); tests/test_mujoco_backend.py checks those counts against the rows
this module actually simulates (`Simulator.rollout` is the one place they are simulated).

Host threads: ``threads`` (default: every CPU the process may use) ``mujoco.MjData`` and one
thread pool (``mujoco.rollout.Rollout``) per simulator, made on first use and guarded by a lock, so two programs
calling back at once take turns. The results do not depend on the threads (each rollout is simulated by one
thread, in order).
"""

from __future__ import annotations

import os
import threading
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

BACKENDS = ("mjx", "mujoco")
BACKEND_DOC = {"mjx": "MuJoCo MJX (JAX: traced, compiled, differentiable)",
               "mujoco": "MuJoCo's C simulator (mujoco.rollout: nothing to compile, forward rollouts only)"}


class NotDifferentiable(ValueError):
    """Raised while tracing a derivative (JVP, VJP, Jacobian) of the C simulator's rollout or step."""


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover  (not Linux)
        return os.cpu_count() or 1


class Simulator:
    """MuJoCo's C simulator for one model: ``rollout(x0 [B, n], U [B, T, m]) -> X [B, T+1, n]`` (numpy, float64).

    ``mj_model`` is copied; the copy has ``autoreset`` and ``island`` disabled (module doc). ``substeps``: physics
    steps per control step (ctrl held)."""

    def __init__(self, mj_model, substeps: int, threads: int = 0):
        import mujoco

        self._mujoco = mujoco
        mm = mj_model.__copy__()
        for flag in ("mjDSBL_AUTORESET", "mjDSBL_ISLAND"):
            bit = getattr(mujoco.mjtDisableBit, flag, None)
            if bit is not None:
                mm.opt.disableflags |= int(bit)
        self.model, self.substeps = mm, int(substeps)
        self.nq, self.nv, self.nu = int(mm.nq), int(mm.nv), int(mm.nu)
        self.threads = int(threads) if threads > 0 else _cpus()
        spec = int(mujoco.mjtState.mjSTATE_FULLPHYSICS)
        self._spec = spec
        data = mujoco.MjData(mm)
        template = np.empty(mujoco.mj_stateSize(mm, spec))
        mujoco.mj_getState(mm, data, template, spec)
        self._template = template
        # FULLPHYSICS is time, qpos, qvel, ... in the order of the mjtState bits
        self._qpos_at = int(mujoco.mj_stateSize(mm, int(mujoco.mjtState.mjSTATE_TIME)))
        self._lock = threading.Lock()
        self.warnings: tuple = ()
        self._pool = None
        self._datas = None

    def _ensure(self):
        """The thread pool and its per-thread data (made on first use): ``threads`` MjData (one, run on the calling
        thread, when ``threads`` is 1)."""
        if self._pool is None:
            from mujoco.rollout import Rollout

            self._pool = Rollout(nthread=self.threads if self.threads > 1 else 0)
            self._datas = [self._mujoco.MjData(self.model) for _ in range(self.threads)]
        return self._pool, self._datas

    def rollout(self, x0: np.ndarray, U: np.ndarray, models: list | None = None) -> np.ndarray:
        """X [B, T+1, n] (float64) from x0 [B, n] and U [B, T, m]: X[:, 0] = x0, then T control steps, each
        ``substeps`` mj_step calls from a cold solver (qacc_warmstart = 0). ``models``: B models of the same sizes,
        one per row (a plant's per-seed physics, `scaled_step_function`), instead of ``model`` for every row."""
        x0 = np.asarray(x0, dtype=np.float64)
        U = np.asarray(U, dtype=np.float64)
        B, T = U.shape[0], U.shape[1]
        nq, nv, a, k = self.nq, self.nv, self._qpos_at, self.substeps
        X = np.empty((B, T + 1, nq + nv))
        X[:, 0] = x0
        if B == 0 or T == 0:
            return X
        bad = ~np.isfinite(x0).all(axis=1)          # a row that read a non-finite input: NaN from there on
        state = np.tile(self._template, (B, 1))     # [B, nstate]: time, qpos, qvel, ... (the model's defaults)
        state[:, a:a + nq + nv] = np.where(bad[:, None], self._template[a:a + nq + nv], x0)
        cold = np.zeros((B, nv))
        control = np.empty((B, k, self.nu))
        out = np.empty((B, k, state.shape[1]))
        spec = int(self._mujoco.mjtState.mjSTATE_CTRL)
        mujoco = self._mujoco
        with self._lock:
            pool, datas = self._ensure()
            models = [self.model] * B if models is None else list(models)
            previous = mujoco.get_mju_user_warning()  # a diverging rollout's warning: kept, not printed or logged
            mujoco.set_mju_user_warning(self._warned)
            try:
                self._roll(pool, datas, models, state, control, cold, out, spec, bad, U, X, T)
            finally:
                mujoco.set_mju_user_warning(previous)
        return X

    def _warned(self, message) -> None:
        """MuJoCo's warning handler while this simulator runs: the message is kept (`warnings`, the last few)."""
        self.warnings = (self.warnings + (str(message).strip(),))[-8:]

    def _roll(self, pool, datas, models, state, control, cold, out, spec, bad, U, X, T) -> None:
        """`rollout`'s loop over the T control steps (in place: state, control, out, bad, X)."""
        a, n = self._qpos_at, self.nq + self.nv
        for t in range(T):
            u = U[:, t]
            bad |= ~np.isfinite(u).all(axis=1)
            control[:] = np.where(bad[:, None], 0.0, u)[:, None, :]
            # skip_checks: the shapes are built here; MuJoCo's own checks would cost more than the physics
            pool.rollout(models, datas, state, control, control_spec=spec, skip_checks=True, nstep=self.substeps,
                         initial_warmstart=cold, state=out)
            state[:] = out[:, -1]
            X[:, t + 1] = state[:, a:a + n]
            if bad.any():
                X[bad, t + 1] = np.nan
                state[bad] = self._template  # MuJoCo never reads the non-finite input

    def close(self) -> None:
        """Stop the thread pool (a later rollout starts a new one)."""
        with self._lock:
            if self._pool is not None:
                self._pool.close()
            self._pool = None


def _refuse_derivative(what: str) -> NotDifferentiable:
    return NotDifferentiable(f"{what} of the mjx system on backend \"mujoco\" (MuJoCo's C simulator) was asked for: "
                             "that backend runs forward rollouts only and has no derivatives; allowed: forward-only "
                             "methods there, or backend = \"mjx\"")


def rollout_function(sim: Simulator) -> Callable[[Array, Array], Array]:
    """``rollout(x0: [n], U: [T, m]) -> X: [T+1, n]`` by ``sim``: one host call per batch under ``vmap`` (module
    doc); the result has the dtype of ``x0`` and ``U`` promoted (float64 under x64). Differentiating it raises
    `NotDifferentiable`."""
    n = sim.nq + sim.nv

    def host(x0, U):
        x0, U = np.asarray(x0), np.asarray(U)
        lead = U.shape[:-2]
        T = U.shape[-2]
        X = sim.rollout(x0.reshape(-1, n), U.reshape(-1, T, U.shape[-1]))
        return X.reshape(*lead, T + 1, n).astype(np.result_type(x0.dtype, U.dtype))

    @jax.custom_jvp
    def rollout(x0: Array, U: Array) -> Array:
        dtype = jnp.result_type(x0, U)
        shape = jax.ShapeDtypeStruct((U.shape[-2] + 1, n), dtype)
        return jax.pure_callback(host, shape, x0.astype(dtype), U.astype(dtype), vmap_method="broadcast_all")

    @rollout.defjvp
    def _jvp(primals, tangents):
        raise _refuse_derivative("a derivative (jax.grad, jax.jacfwd, jax.jvp) of a rollout")

    return rollout


def step_function(rollout: Callable[[Array, Array], Array]) -> Callable[[Array, Array], Array]:
    """``step(x: [n], u: [m]) -> x': [n]``: one control step, a rollout of one (no derivatives either)."""

    def step(x: Array, u: Array) -> Array:
        return rollout(x, u[None])[1]

    return step


def scaled_step_function(sim: Simulator, scale: Callable) -> Callable[[Array, Array, Array], Array]:
    """``step(x: [n], u: [m], factors: [k]) -> x': [n]``: one control step by ``sim`` on a copy of its model scaled by
    ``scale(model, factors)`` (in place), per row of a vmapped batch (a closed-loop plant whose physics is drawn per
    seed: `trajopt.systems.mjx.MJX.physics_step`). The copies are kept per distinct factors (a seed's draw is fixed
    over its episode), at most `MAX_SCALED_MODELS` of them. No derivatives."""
    n, m = sim.nq + sim.nv, sim.nu
    copies: dict = {}

    def model_for(factors: tuple):
        if factors not in copies:
            if len(copies) >= MAX_SCALED_MODELS:
                copies.clear()
            model = sim.model.__copy__()
            scale(model, np.asarray(factors))
            copies[factors] = model
        return copies[factors]

    def host(x, u, factors):
        x, u, factors = np.asarray(x), np.asarray(u), np.asarray(factors)
        lead = x.shape[:-1]
        rows = factors.reshape(-1, factors.shape[-1])
        models = [model_for(tuple(float(v) for v in r)) for r in rows]
        X = sim.rollout(x.reshape(-1, n), u.reshape(-1, 1, m), models=models)
        return X[:, 1].reshape(*lead, n).astype(np.result_type(x.dtype, u.dtype))

    @jax.custom_jvp
    def step(x: Array, u: Array, factors: Array) -> Array:
        dtype = jnp.result_type(x, u)
        return jax.pure_callback(host, jax.ShapeDtypeStruct((n,), dtype), x.astype(dtype), u.astype(dtype),
                                 jnp.asarray(factors, jnp.float64 if dtype == jnp.float64 else dtype),
                                 vmap_method="broadcast_all")

    @step.defjvp
    def _jvp(primals, tangents):
        raise _refuse_derivative("a derivative of a plant step")

    return step


MAX_SCALED_MODELS = 4096  # scaled model copies kept by one plant step (a few per seed in practice)
