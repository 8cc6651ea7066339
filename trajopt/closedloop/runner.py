"""`mpc`: run methods as receding-horizon controllers on one problem, each as one compiled episode over seeds.

    mpc(problem, {name: method}, *, episode, horizon, replan_every=1, iterations=1, warm_start="hold",
        plant=None, key, seeds=(0,), success=None, time_plans=True) -> {name: MPCResult}

Each method's batched episode (`trajopt.closedloop.episode`) is compiled once and run over every seed; then, with
``time_plans``, a timing-only pass replays seed ``seeds[0]``'s episode replan by replan (the planning step compiled
apart, one seed, no batching: what a controller runs) and records the wall time of each replan, from which the
deadline-miss rate at the control period (``replan_every`` x dt) and the real-time factor (N dt / the episode's wall
time) follow. Nothing is printed or written.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from trajopt import programs, traces
from trajopt.closedloop.episode import (STATUS_NON_FINITE, STATUS_OK, MPCResult, MPCSettings, _Episode,
                                       planning_problem)
from trajopt.closedloop.plant import Plant, plant_of
from trajopt.methods.base import check_applicable
from trajopt.compiler import compile_cached
from trajopt.solve_checks import check_method
from trajopt.solver import method_label


def _named(methods) -> dict:
    if isinstance(methods, Mapping):
        named = dict(methods)
        for name, m in named.items():  # an oracle or a name in place of a method: named here, not deep in a trace
            check_method(m, f"methods[{name!r}]")
    else:
        named = {}
        for i, m in enumerate(methods):
            check_method(m, f"methods[{i}]")
            label = method_label(m)
            if label in named:
                raise ValueError(f"two methods are both labelled {label!r}; pass a dict {{name: method}} instead")
            named[label] = m
    if not named:
        raise ValueError("mpc needs at least one method")
    return named


@dataclass(frozen=True, eq=False)
class _Compiled:
    """One method's compiled programs: the batched episode, and (for the timing pass) one seed's start, plan and
    advance; compile_seconds: the wall time to trace and compile them all."""

    run: Any
    start: Any = None
    plan: Any = None
    advance: Any = None
    compile_seconds: float = 0.0
    trace_reused: bool = False  # the programs' traces were read back (`trajopt.traces`), not traced here
    compilation_cache: Mapping = field(default_factory=dict)  # {program: `trajopt.compiler.CACHE_STATUSES`}


PROGRAMS = ("episode", "start", "plan", "advance")
"""The names of one method's programs, in `_programs`' order (`_Compiled.compilation_cache`'s keys)."""


def _programs(episode: _Episode, key, seeds, x0s, time_plans: bool) -> list:
    """[(function, arguments)] of one method's closed loop: the batched episode, and with ``time_plans`` one seed's
    start, plan and advance (`time_episode`); named `PROGRAMS`."""
    programs_ = [(episode.run, (key, seeds, x0s))]
    if time_plans:
        seed_key = jax.random.fold_in(key, int(seeds[0]))
        x0 = None if x0s is None else x0s[0]
        i0 = jnp.asarray(0, jnp.int32)
        carry = jax.eval_shape(episode.start, seed_key, x0)
        planned = jax.eval_shape(episode.plan, seed_key, carry, i0)
        programs_ += [(episode.start, (seed_key, x0)), (episode.plan, (seed_key, carry, i0)),
                      (episode.advance, (carry, planned, i0))]
    return programs_


def episode_constants(episode: _Episode, key, seeds, x0s, time_plans: bool) -> tuple:
    """The floating-point constants of each program of one method's closed loop (`_programs`; traced, not compiled):
    two episodes' ``a[i].differing(b[i])`` is what ``compile_episode(..., lift=...)`` takes as inputs
    (`trajopt.programs`)."""
    return tuple(programs.constants(fn, *args) for fn, args in _programs(episode, key, seeds, x0s, time_plans))


def _lower(fn, args, positions):
    """(the lowered program, the inputs it takes first): with ``positions`` (`trajopt.programs.Positions`, compile
    once on) those constants are inputs; else as traced."""
    if positions and programs.enabled():
        try:
            lifted = programs.lift(fn, *args, positions=positions)
            return jax.jit(lifted.fn).lower(lifted.inputs, *args), (lifted.inputs,)
        except Exception:  # noqa: BLE001 - a program JAX cannot evaluate again: lowered with its constants below
            pass
    return jax.jit(fn).lower(*args), ()


def compile_episode(episode: _Episode, key, seeds, x0s, time_plans: bool, lift: Optional[tuple] = None,
                    trace_identity: Optional[Mapping] = None) -> _Compiled:
    """Trace every program of one method's closed loop (the batched episode; with ``time_plans`` also one seed's
    start, plan and advance for `time_episode`) in this thread, then compile them side by side on worker threads
    (XLA's compiler releases the GIL): the timing pass costs little more wall time than the episode's own compile.
    ``lift``: per program, the constants to take as inputs (`episode_constants` of a grid's probes), so that
    episodes differing only in them share compiled programs (`trajopt.programs.CACHE`); None: every constant
    stays one, as traced. ``trace_identity`` (`trajopt.traces.problem_identity` of the spec that made the episode;
    not with ``lift``): the programs' traces are kept on disk and read back by a later process instead of being
    traced again (`trajopt.traces`)."""
    from concurrent.futures import ThreadPoolExecutor

    t0 = time.perf_counter()
    kept = None
    if trace_identity is not None and lift is None:
        kept = traces.lower_all(_trace_key(trace_identity, episode, key, seeds, x0s, time_plans),
                                lambda: _programs(episode, key, seeds, x0s, time_plans))
    if kept is not None:
        lowered = [(k.lowered, ()) for k in kept]
    else:
        todo = _programs(episode, key, seeds, x0s, time_plans)
        lowered = [_lower(fn, args, None if lift is None else lift[i]) for i, (fn, args) in enumerate(todo)]
    with ThreadPoolExecutor(min(len(lowered), 4), thread_name_prefix="trajopt-compile") as pool:
        got = list(pool.map(lambda item: compile_cached(item[0]), lowered))
    compiled = [functools.partial(c.program, *inputs) if inputs else c.program for c, (_, inputs) in zip(got, lowered)]
    if kept is not None:
        compiled = [k.wrap(c) for k, c in zip(kept, compiled)]
    return _Compiled(*compiled, compile_seconds=time.perf_counter() - t0,
                     trace_reused=kept is not None and kept[0].from_cache,
                     compilation_cache={name: c.cache for name, c in zip(PROGRAMS, got)})


def _trace_key(identity: Mapping, episode: _Episode, key, seeds, x0s, time_plans: bool) -> Optional[str]:
    """The key of one method's kept episode programs (`trajopt.traces.key`; None: not kept): the problem's
    ``identity`` (its plant's model included) with the method's own variant table (`trajopt.traces.for_variant`),
    its name, the settings, and the batched episode's arguments (the timing programs' follow from them)."""
    return traces.key(traces.for_variant(identity, episode.name),
                      {"episode": episode.name, "settings": repr(episode.settings), "time_plans": bool(time_plans)},
                      (key, seeds, x0s))


def time_episode(compiled: _Compiled, settings, key, seed: int, x0=None) -> tuple[np.ndarray, float]:
    """(plan seconds per replan [R], the episode's wall seconds) of one seed's episode (from ``x0`` if given), replan
    by replan with the compiled one-seed programs, each run once before the clock starts."""
    seed_key = jax.random.fold_in(key, seed)
    start, plan, advance = compiled.start, compiled.plan, compiled.advance
    carry = jax.block_until_ready(start(seed_key, x0))
    i0 = jnp.asarray(0, jnp.int32)
    jax.block_until_ready(advance(carry, jax.block_until_ready(plan(seed_key, carry, i0)), i0))  # warm
    plan_seconds = []
    t_start = time.perf_counter()
    for i in range(settings.replans):
        index = jnp.asarray(i, jnp.int32)
        t0 = time.perf_counter()
        planned = jax.block_until_ready(plan(seed_key, carry, index))
        plan_seconds.append(time.perf_counter() - t0)
        carry, _ = jax.block_until_ready(advance(carry, planned, index))
    return np.asarray(plan_seconds), time.perf_counter() - t_start


def mpc(problem, methods: Union[Mapping[str, Any], Sequence[Any]], *, episode: Optional[int] = None,
        horizon: Optional[int] = None, replan_every: int = 1, iterations: int = 1, warm_start: str = "hold",
        settings: Optional[MPCSettings] = None, plant: Any = None, key: jax.Array, seeds: Sequence[int] = (0,),
        success: Any = None, time_plans: bool = True, initial_states: Any = None,
        lift: Optional[Mapping[str, tuple]] = None, trace_identity: Optional[Mapping] = None
        ) -> dict[str, MPCResult]:
    """Run each method as a receding-horizon controller (see `trajopt.closedloop.episode` for what one replan does).

    Args:
        problem: a time-stepped problem (`trajopt.trajectory_problem`: step, x0, cost, U0); the planner's model is its
            ``step``, its cost the task's, its U0 the initial guess (and the ``initial`` fill rule's source).
        methods: {name: method} (or a list of methods, named by their oracle or method name).
        episode, horizon, replan_every, iterations, warm_start: the `MPCSettings` (or pass ``settings``).
        plant: None (the model itself), a `trajopt.closedloop.Plant` (a system, measurement noise, disturbances), a
            system object, or a mapping of parameter overrides ({"stiffness": 1000.0, "scale": {"mass": 1.5}}).
        key: the root PRNG key; seed s of every method draws from fold_in(key, s).
        seeds: the seeds (distinct integers in 0..2**32 - 1), run as one vmap per method.
        success: a `trajopt.closedloop.Success` (or None: no success read-out).
        time_plans: measure plan seconds per replan on seeds[0] (a second, timing-only pass).
        initial_states: [S, n], each seed's own start (None: the problem's x0 for every seed); e.g. draws from a
            policy problem's initial-state distribution.
        lift: {name: per program, `trajopt.programs.Positions`} (`episode_constants` of a grid's probes): those
            constants of the method's programs are inputs, so that episodes differing only in them (a study grid
            over a plant's parameters) share compiled programs; None: every constant stays one (bit-identical).
        trace_identity: what identifies ``problem``, ``methods`` and ``plant``, from the spec that made them
            (`trajopt.traces.problem_identity`, which ``trajopt mpc`` passes): each method's traced programs are
            then kept on disk and read back by a later process instead of being traced again; None: traced.

    Returns:
        {name: MPCResult}, in the order given.
    """
    if settings is None:
        if episode is None or horizon is None:
            raise TypeError("mpc: give episode and horizon (or settings=MPCSettings(...))")
        settings = MPCSettings(episode=episode, horizon=horizon, replan_every=replan_every, iterations=iterations,
                               warm_start=warm_start)
    named = _named(methods)
    seeds_arr = np.asarray(list(seeds), dtype=np.int64)
    if seeds_arr.size == 0 or len(set(seeds_arr.tolist())) != seeds_arr.size or seeds_arr.min() < 0 \
            or seeds_arr.max() > 2**32 - 1:
        raise ValueError(f"seeds: found {list(seeds)}, allowed: distinct integers in 0..{2**32 - 1} (at least one)")
    the_plant = plant_of(_model_of(problem), plant)
    n = int(jnp.asarray(problem.x0).shape[0]) if getattr(problem, "x0", None) is not None else 0
    the_plant.check(n, settings.episode)
    if success is not None:
        success.check(n, settings.episode)
    dt = _dt(problem, the_plant)
    x0s = None
    if initial_states is not None:
        x0s = jnp.asarray(initial_states, jnp.asarray(problem.x0).dtype)
        if x0s.shape != (seeds_arr.size, n) or not bool(jnp.all(jnp.isfinite(x0s))):
            raise ValueError(f"initial_states: found shape {list(x0s.shape)}, allowed: finite [{seeds_arr.size}, {n}] "
                             "(one start per seed)")
    if getattr(problem, "step", None) is not None and getattr(problem, "x0", None) is not None:
        planned = planning_problem(problem, settings)  # every method against the H-step problem it will plan
        for name, method in named.items():
            try:
                check_applicable(method, planned)
            except ValueError as e:
                raise ValueError(f"methods[{name!r}]: {e} (the planning horizon is {settings.horizon})") from None
    out = {}
    for name, method in named.items():
        ep = _Episode(problem, method, settings, the_plant, name=name)
        compiled = compile_episode(ep, key, jnp.asarray(seeds_arr), x0s, time_plans, (lift or {}).get(name),
                                   trace_identity)
        compile_seconds = compiled.compile_seconds
        t0 = time.perf_counter()
        res = jax.device_get(jax.block_until_ready(compiled.run(key, jnp.asarray(seeds_arr), x0s)))
        run_seconds = time.perf_counter() - t0
        plan_seconds, episode_seconds = (
            time_episode(compiled, settings, key, int(seeds_arr[0]), None if x0s is None else x0s[0])
            if time_plans else (None, math.nan))
        X = np.asarray(res["X"])
        failed_at = np.asarray(res["failed_at"])
        out[name] = MPCResult(
            name=name, method=method, settings=settings, plant=the_plant, seeds=seeds_arr, X=X, U=np.asarray(res["U"]),
            closed_loop_cost=np.asarray(res["cost"]), planned_cost=np.asarray(res["planned"]),
            rollouts=np.asarray(res["rollouts"]), gradients=np.asarray(res["gradients"]),
            linearizations=np.asarray(res["linearizations"]),
            status=[STATUS_OK if f < 0 else STATUS_NON_FINITE for f in failed_at], failed_at=failed_at,
            plan_failures=np.asarray(res["plan_failures"]), compile_seconds=compile_seconds, run_seconds=run_seconds,
            success=None if success is None else success(problem.cost, X), plan_seconds=plan_seconds,
            episode_seconds=episode_seconds, dt=dt,
            plant_factors={d.label: np.asarray(res["plant_factors"])[:, j] for j, d in enumerate(the_plant.draws)},
            trace_reused=compiled.trace_reused, compilation_cache=dict(compiled.compilation_cache))
    return out


def mpc_constants(problem, method, *, settings: MPCSettings, plant: Any = None, key: jax.Array,
                  seeds: Sequence[int] = (0,), initial_states: Any = None, time_plans: bool = True) -> tuple:
    """`episode_constants` of what ``mpc(problem, {name: method}, ...)`` compiles for ``method`` (traced, not
    compiled): a study's probes of its grid compare them (``lift``)."""
    seeds_arr = jnp.asarray(np.asarray(list(seeds), dtype=np.int64))
    x0s = None if initial_states is None else jnp.asarray(initial_states, jnp.asarray(problem.x0).dtype)
    episode = _Episode(problem, method, settings, plant_of(_model_of(problem), plant))
    return episode_constants(episode, key, seeds_arr, x0s, time_plans)


def _model_of(problem):
    """The planner's system: the problem's ``system`` if it keeps one, else the owner of its bound ``step`` method
    (`trajopt.trajectory_problem` keeps ``system.step``); None for a plain function."""
    return getattr(problem, "system", None) or getattr(getattr(problem, "step", None), "__self__", None)


def _dt(problem, plant: Plant) -> float:
    """The control step dt of the system (its ``dt``), NaN when the problem does not say."""
    for owner in (_model_of(problem), plant.system):
        dt = getattr(owner, "dt", None)
        if isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0:
            return float(dt)
    return math.nan
