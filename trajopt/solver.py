"""The fused optimisation loop: ``lax.scan`` over iterations, ``vmap`` over seeds, for any method.

    solve(problem, method, key=..., iterations=K, seeds=[...]) -> Result

``method`` follows the contract of `trajopt.methods.base` (``init``/``step``); the paper's loop is
``GradientMethod(oracle, optimizer)``.

Iteration k of seed s draws its noise from ``fold_in(fold_in(key, s), k)``, so seed s sees the same noise
alone or inside a batch, and any chunking of the loop gives the same iterates. The scan runs in chunks of
``chunk`` iterations (one compiled program, the last chunk padded and masked); between chunks the caller
may report progress or ask to stop. Nothing calls back into Python inside a chunk.

**Work that is done is not run.** A seed stops being stepped when its method says its state has stopped
(``stopped(state)``, `trajopt.methods.base`: a converged iLQR), when its spend reaches a compute ``budget`` (in
forward-step equivalents, `trajopt.compute`; at most one step over) or when it is not finite; when every seed has
stopped (which the loop learns as a chunk ends; the chunk queued behind it still runs, and its rows show what each
seed repeats), no further chunk runs and the rest of the history repeats each seed's last row (a non-finite seed's
blank rows): what the steps would have recorded, the same `Result`, sooner (`Result.settled_at`). Such runs use
finer chunks by default (`default_chunk`). Inside a chunk a stopped seed still costs a step (the seeds are one
vmap; the loop's program is the plain one, so that without a budget the iterates and the history are bit for bit
those of running every step). A deterministic method may run once for every seed (``prepare(..., once=True)``, what
`trajopt.compare` does; `Result.ran_once`).

A seed whose cost or next state is not finite stops there with status ``non_finite``: its
returned U is its last iterate with a finite cost, its later history is NaN, and the other seeds run on. A seed
whose every update was skipped for a non-finite estimate (``GradientMethod(skip_non_finite=True)``, a file's
``on_non_finite = "skip"``) never moved from U0: its status is ``all_skipped``, not ``ok`` (a seed with some
updates skipped stays ``ok``; `Result.skipped` counts them).

**Checked before anything compiles** (`check_run`, `trajopt.solve_checks`): the problem, the method, the key, the
iterations, the seeds, the chunk, the budget and the callbacks, each a ValueError or TypeError naming the argument,
what was found and what is allowed. **User code that fails later** (a system, oracle, policy or method that raises
while the loop is traced, compiled or run) raises `SolveError`, which names the variant and the stage and keeps the
original as ``__cause__``.

The recorded history is the only thing that grows with the number of iterations. `Prepared.run` allocates it
once, through a ``history_store`` (default: in memory, `memory_store`), and writes each chunk's outputs into
it as they arrive; a caller that expects a history larger than memory passes a store that maps files
(`trajopt.runs.DiskHistory`; the library itself never writes files).
"""

from __future__ import annotations

import functools
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from trajopt import programs, traces
from trajopt.compiler import CPU_COMPILER_OPTIONS, compile_cached
from trajopt.compute import problem_horizon
from trajopt.history import (HistoryStore, allocate_history, history_bytes, memory_store, quiet_from,
                             repeat_rows)
from trajopt.loop import (CHUNK_ENTRIES, STOPPING_CHUNKS, Layout, StopRule, default_chunk, final_decision, info_fields,
                          make_budget_chunk, make_chunk, make_finish, stop_rule, with_finish)
from trajopt.methods.base import Method, method_label
from trajopt.problem import Problem
from trajopt.result import (STATUS_ALL_SKIPPED, STATUS_INTERRUPTED, STATUS_NON_FINITE, STATUS_OK, STATUSES, Result,
                            skipped_counts)
from trajopt.solve_checks import (SEEDS_ALLOWED, SolveError, check_budget, check_chunk, check_iterations, check_key,
                                  check_method, check_problem, check_run, check_run_options, check_seeds, shown,
                                  user_code)

# what `trajopt.solver` has always offered, kept here for its callers; each name lives where it is defined
__all__ = [
    "STATUS_OK", "STATUS_NON_FINITE", "STATUS_ALL_SKIPPED", "STATUS_INTERRUPTED", "STATUSES",
    "HistoryStore", "history_bytes", "memory_store",
    "SolveError", "SEEDS_ALLOWED", "check_seeds", "check_iterations", "check_chunk", "check_key", "check_method",
    "check_problem", "check_budget", "check_run",
    "Result", "info_fields", "CHUNK_ENTRIES", "STOPPING_CHUNKS", "default_chunk", "solve", "prepare",
    "CPU_COMPILER_OPTIONS", "loop_constants", "runs_once", "prepare_each", "Prepared",
]


def solve(
    problem: Problem,
    method: Method,
    *,
    key: jax.Array,
    iterations: int,
    seeds: Sequence[int] = (0,),
    chunk: Optional[int] = None,
    on_chunk: Optional[Callable[[int, int], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    name: Optional[str] = None,
    history_store: Optional[HistoryStore] = None,
    budget: Optional[float] = None,
    step_costs=None,
) -> Result:
    """Run ``iterations`` steps of ``method`` from problem.U0, for every seed, as one fused loop.

    Args:
        problem: the Problem (its ``U0`` a non-empty finite float array, its ``objective`` callable).
        method: a method (``init``/``step``, see `trajopt.methods.base`), e.g.
            ``GradientMethod(AoBG(), SGD(1e-3))``.
        key: root PRNG key (``jax.random.PRNGKey(n)`` or ``jax.random.key(n)``); seed s uses ``fold_in(key, s)``,
            its iteration k ``fold_in(fold_in(key, s), k)``.
        iterations: K, the number of steps: an integer in 0..`trajopt.limits.MAX_ITERATIONS`.
        seeds: the seed numbers, run together as one vmap: distinct integers in 0..2**32 - 1 (a seed is folded
            into the key as uint32: a larger one would repeat another's noise), at most
            `trajopt.limits.MAX_SEEDS` of them, with iterations x seeds <= `trajopt.limits.MAX_HISTORY`.
        chunk: iterations per compiled chunk (default `default_chunk`: about a tenth of K, bounded in memory); an
            integer in 1..`trajopt.limits.MAX_ITERATIONS` (one longer than the run is the run's length).
        on_chunk: called as ``on_chunk(done, total)`` after each chunk.
        should_stop: polled after each chunk; True stops the run, marked "interrupted".
        name: the label of the result (default: the method's, or its oracle's, name).
        history_store: where the recorded history is kept (a `HistoryStore`: ``store(name, shape, dtype)``
            returning a writable array; called for ``"cost"`` [S, K+1] and each info field [S, K]). Default
            `memory_store` (``np.empty``); `trajopt.runs.DiskHistory` maps files instead. The results are the
            same either way.
        budget: a compute budget per seed in forward-step equivalents (`trajopt.compute`: T (rollouts + ρ_b
            backward passes + ρ_l linearizations), T the problem's horizon, `trajopt.compute.problem_horizon`), or
            None. A seed takes no further step once its spend reaches the budget (status "ok", ``stopped`` "budget"),
            so it ends at most one step's spend over it; ``iterations`` stays the most it may run. For a method of
            fixed cost per step (its ``calls``), ``iterations`` = floor(budget / its spend per step)
            (`trajopt.compute.step_equivalents`) runs it to the budget without ever passing it.
        step_costs: the `trajopt.compute.StepCosts` (ρ_b, ρ_l) that convert the counts: required with a budget;
            without one it is only recorded (`Result.forward_equivalents` uses it).

    A seed whose method says it has stopped (``stopped(state)``, `trajopt.methods.base`: a converged iLQR) spends
    nothing more; when every seed has stopped (converged, over its budget or non-finite) the loop runs no further
    chunk, and the rest of the history repeats each seed's last row (a non-finite seed's blank rows), what the
    steps would have recorded: the same `Result` as running them, sooner (``Result.settled_at``).

    Returns:
        Result with U*, histories of every info field, status and timings.

    Raises:
        TypeError, ValueError: an argument outside what is allowed above, before anything is traced or compiled
            (`check_run`); the message names the argument, what was found and what is allowed.
        SolveError: the problem's or the method's own code raised while the loop was traced, compiled or run
            (the variant and the stage named, the original exception its ``__cause__``).

    ``solve(...)`` is ``prepare(...).run(...)``: `prepare` compiles, `Prepared.run` runs.
    """
    check_run_options(on_chunk, should_stop, name, history_store)
    return prepare(problem, method, key=key, iterations=iterations, seeds=seeds, chunk=chunk, name=name,
                   budget=budget, step_costs=step_costs).run(
        on_chunk=on_chunk, should_stop=should_stop, history_store=history_store)


def prepare(
    problem: Problem,
    method: Method,
    *,
    key: jax.Array,
    iterations: int,
    seeds: Sequence[int] = (0,),
    chunk: Optional[int] = None,
    history_store: Optional[HistoryStore] = None,
    name: Optional[str] = None,
    budget: Optional[float] = None,
    step_costs=None,
    once: bool = False,
    lift=None,
) -> "Prepared":
    """Compile the fused loop of `solve` without running it (arguments, checks and errors as there; ``name`` and
    ``history_store`` become the defaults of ``.run()``); ``.run()`` runs it.

    ``once``: a deterministic method (`runs_once`) is compiled and run for the first seed only and its result
    shared by every seed (``Result.ran_once``): what `trajopt.compare` does. Its seeds' rows are that run's, the
    same as each seed's own run.

    ``lift``: the loop's constants to make inputs (`trajopt.programs.Positions`, e.g. what `loop_constants` of two
    runs says differs between them), so that runs differing only in them share one compilation (what a study's
    grid does); None: every constant stays one, as traced.

    Compiling is pure (it computes nothing the run depends on besides the initial state), so a caller may
    prepare the next run on another thread while this one computes: the compiled loop releases the GIL.
    """
    check_run_options(None, None, name, history_store)
    if not isinstance(once, bool):
        raise TypeError(f"once: found {shown(once)}, allowed: True or False")
    return _lower(problem, method, key=key, iterations=iterations, seeds=seeds, chunk=chunk,
                  history_store=history_store, name=name, budget=budget, step_costs=step_costs, once=once,
                  lift=lift).compile()


@dataclass(frozen=True, eq=False)
class _Lowered:
    """A traced and lowered fused loop and its initial state: the first half of `prepare` (Python-bound: it
    holds the GIL), before XLA compiles it (which does not)."""

    prepared: dict
    lowered: Any
    seconds: float
    stopped_lowered: Any = None
    inputs: tuple = ()  # what the lowered loop takes before its own arguments (`_lower_loop`)
    program: Any = None  # the `trajopt.programs.Lifted` it was lowered from (None: lowered with its constants)
    flat: Any = None  # a `trajopt.traces.Lowered`: the loop lowered from a kept export, of its flattened arguments
    finish: Any = None  # the final evaluation's program (`_lower_finish`) when the loop does not evaluate it itself

    def compile(self) -> "Prepared":
        t0 = time.perf_counter()
        with user_code(self.prepared["name"], "compiling"):
            compiled, reused, cache = compile_cached(self.lowered)
            if self.inputs:
                compiled = functools.partial(compiled, *self.inputs)
            if self.flat is not None:
                compiled = self.flat.wrap(compiled)
            stopped_fn = None if self.stopped_lowered is None else compile_cached(self.stopped_lowered)[0]
            seconds = self.seconds + time.perf_counter() - t0  # the run's own programs: not the shared evaluation
            finish_fn, finish_cache, finish_seconds = (None, None, None) if self.finish is None \
                else self.finish.compile()
        return Prepared(compiled=compiled, compile_seconds=seconds, stopped_fn=stopped_fn, reused=reused,
                        trace_reused=self.flat is not None and self.flat.from_cache, compilation_cache=cache,
                        finish_fn=finish_fn, finish_cache=finish_cache, finish_seconds=finish_seconds,
                        **self.prepared)


@dataclass(frozen=True, eq=False)
class _Finish:
    """The final evaluation's program (`trajopt.loop.make_finish` of a problem, for decisions of one shape) lowered,
    directly or from a kept export (``flat``), in ``lower_seconds``, and compiled once for every run that holds it
    (`prepare_each`)."""

    lowered: Any
    cost_dtype: np.dtype
    flat: Any = None
    lower_seconds: float = 0.0
    _compiled: list = field(default_factory=list, repr=False)
    _lock: Any = field(default_factory=threading.Lock, repr=False)

    def compile(self) -> tuple[Callable, str, float]:
        """(the compiled program, where it came from: `trajopt.compiler.CACHE_STATUSES`, the seconds it took to
        lower and compile), the same for every run that asks: the first compiles it, under a lock (a run asking
        while it is compiled waits for it). Kept here too, not only in `trajopt.programs.CACHE`, which does not
        share a program that calls back into Python (MuJoCo's C simulator; this one is the same lowered program,
        the same callbacks)."""
        with self._lock:
            if not self._compiled:
                t0 = time.perf_counter()
                compiled, reused, cache = compile_cached(self.lowered)
                self._compiled.append((compiled if self.flat is None else self.flat.wrap(compiled),
                                       "memory" if reused else cache,
                                       self.lower_seconds + time.perf_counter() - t0))
            return self._compiled[0]


def _lower_finish(problem: Problem, U: jax.ShapeDtypeStruct, trace_identity: Optional[Mapping],
                  lowered_before: Optional[dict] = None) -> _Finish:
    """The program that evaluates the decisions U ([S, T, m]: ``final_decision`` of a run's carry) of ``problem``'s
    seeds, ``make_finish(problem)``, lowered. Its text depends on the problem and U's shape only, so every variant
    of a run (with as many seeds) lowers the same program, which `trajopt.programs.CACHE` compiles once (and, with
    a ``trace_identity``, which is kept on disk once: `trajopt.traces`, keyed by the problem without its
    variants). ``lowered_before``: {(shape, dtype): _Finish} of this problem's runs lowered before
    (`prepare_each`), read and filled: each shape is traced once."""
    at = (tuple(U.shape), str(U.dtype))
    known = None if lowered_before is None else lowered_before.get(at)
    if known is None:
        t0 = time.perf_counter()
        finish = make_finish(problem)
        flat = None
        if trace_identity is not None:
            flat = traces.lower(finish, (U,), traces.key({**trace_identity, "variants": {}}, {"program": "finish"},
                                                         (U,)))
        lowered = flat.lowered if flat is not None else jax.jit(finish).lower(U)
        known = _Finish(lowered, np.dtype(lowered.out_info[0].dtype), flat, time.perf_counter() - t0)
        if lowered_before is not None:
            lowered_before.setdefault(at, known)
    return known


def _lower(problem: Problem, method: Method, *, key: jax.Array, iterations: int, seeds: Sequence[int] = (0,),
           chunk: Optional[int] = None, history_store: Optional[HistoryStore] = None,
           name: Optional[str] = None, budget: Optional[float] = None, step_costs=None, once: bool = False,
           lift=None, constants_only: bool = False):
    """Check the arguments (`check_run`), then trace and lower the loop and compute its initial state."""
    iterations, seeds_arr, chunk = check_run(problem, method, key=key, iterations=iterations, seeds=seeds,
                                             chunk=chunk, budget=budget, step_costs=step_costs)
    return _lower_checked(problem, method, key=key, iterations=iterations, seeds_arr=seeds_arr, chunk=chunk,
                          history_store=history_store, name=name or method_label(method), budget=budget,
                          step_costs=step_costs, once=once, lift=lift, constants_only=constants_only)


def loop_constants(problem: Problem, method: Method, *, key: jax.Array, iterations: int, seeds: Sequence[int] = (0,),
                   chunk: Optional[int] = None, budget: Optional[float] = None, step_costs=None, once: bool = False):
    """The floating-point constants of the loop `prepare` would compile (`trajopt.programs.Constants`; traced, not
    compiled): two runs' ``a.differing(b)`` is what ``prepare(..., lift=...)`` makes inputs so that they share one
    compilation (None: they are not one program with other numbers)."""
    return _lower(problem, method, key=key, iterations=iterations, seeds=seeds, chunk=chunk, budget=budget,
                  step_costs=step_costs, once=once, constants_only=True)


def runs_once(method: Method, n_seeds: int) -> bool:
    """Whether `trajopt.compare` runs ``method`` once for ``n_seeds`` seeds and shares the result: a method whose
    steps and start ignore the key (its ``deterministic`` flag: exact and fd gradients, iLQR, L-BFGS; MultiStart
    over one of them without a spread) gives every seed the same run."""
    return n_seeds > 1 and bool(getattr(method, "deterministic", False))


def _lower_checked(problem: Problem, method: Method, *, key: jax.Array, iterations: int, seeds_arr: np.ndarray,
                   chunk: Optional[int], history_store: Optional[HistoryStore], name: str,
                   budget: Optional[float] = None, step_costs=None, once: bool = False, lift=None,
                   constants_only: bool = False, trace_identity: Optional[Mapping] = None,
                   finishes: Optional[dict] = None):
    shared = once and runs_once(method, len(seeds_arr))
    run_seeds = seeds_arr[:1] if shared else seeds_arr  # a deterministic method: the first seed's run, for all
    # a chunk longer than the run would only pad it: the run's length (the same iterates, smaller outputs)
    horizon = problem_horizon(problem)
    rule = stop_rule(method, budget, step_costs, horizon)
    stops = rule.stopped is not None or rule.budget is not None
    chunk = min(chunk, max(iterations, 1)) if chunk is not None else default_chunk(iterations, len(seeds_arr), stops)
    n_seeds = len(run_seeds)

    def start(key, seeds):  # one small program instead of a dozen eagerly dispatched ops (each compiled apart)
        seed_keys = jax.vmap(lambda s: jax.random.fold_in(key, s))(seeds)
        U0 = jnp.broadcast_to(problem.U0, (n_seeds, *problem.U0.shape))
        state = jax.vmap(lambda k, u: method.init(k, problem, u))(seed_keys, U0)
        carry = (state, jnp.ones(n_seeds, bool), jnp.full(n_seeds, -1, jnp.int32), U0)
        if rule.budget is not None:  # each seed's spend (`make_budget_chunk`)
            carry += (jnp.zeros(n_seeds, jnp.result_type(float)),)
        return seed_keys, carry

    t0 = time.perf_counter()  # compile_seconds: everything before the loop's first chunk (the start included)
    with user_code(name, "tracing"):
        seed_keys, carry = jax.jit(start)(key, jnp.asarray(run_seeds))
        layout = Layout()
        loop = (make_chunk(problem, method, iterations, layout) if rule.budget is None
                else make_budget_chunk(problem, method, iterations, layout, rule))
        # a grid's loop (lift) evaluates its decisions itself: its cells' constants are inputs of that program only
        fused = bool(lift) or constants_only
        run_chunk = with_finish(problem, loop, layout, rule, fused=fused)
        ks0 = np.arange(chunk, dtype=np.int32)
        if constants_only:
            return programs.constants(run_chunk, carry, seed_keys, ks0, True)
        # before the loop is traced: the layout it records holds the final cost's dtype
        finish = None
        if not fused:
            t_finish = time.perf_counter()
            shape = jax.eval_shape(final_decision, carry)
            finish = _lower_finish(problem, jax.ShapeDtypeStruct(shape.shape, shape.dtype), trace_identity, finishes)
            layout.final_dtype = finish.cost_dtype
            t0 += time.perf_counter() - t_finish  # its own seconds (`_Finish`), shared by the runs that hold it
        flat = None
        if trace_identity is not None and not lift:  # a kept trace (`trajopt.traces`), keyed by the problem and run
            flat = traces.lower(run_chunk, (carry, seed_keys, ks0, True),
                                _trace_key(trace_identity, name, iterations, chunk, n_seeds, rule, shared,
                                           (carry, seed_keys, ks0)),
                                record=layout.recorded, restore=layout.restore)
        if flat is not None:
            lowered, inputs, lifted, program = flat.lowered, (), None, None
        else:
            lowered, inputs, lifted, program = _lower_loop(run_chunk, carry, seed_keys, ks0, lift)
        # [S] whether each seed's method has stopped (its `stopped`), asked between chunks (`Prepared.run`)
        stopped_lowered = None if rule.stopped is None else jax.jit(jax.vmap(rule.converged)).lower(carry[0])
    return _Lowered(prepared=dict(problem=problem, method=method, iterations=iterations, seeds=seeds_arr,
                                  chunk=chunk, layout=layout, seed_keys=seed_keys, carry=carry,
                                  history_store=history_store, name=name, rule=rule, horizon=horizon,
                                  budget=None if budget is None else float(budget), step_costs=step_costs,
                                  shared=shared, lifted=lifted),
                    lowered=lowered, seconds=time.perf_counter() - t0, stopped_lowered=stopped_lowered,
                    inputs=inputs, program=program, flat=flat, finish=finish)


def _trace_key(identity: Mapping, name: str, iterations: int, chunk: int, n_seeds: int, rule: StopRule,
               shared: bool, args: tuple) -> Optional[str]:
    """The key of a run's kept trace (`trajopt.traces.key`; None: not kept): the problem's ``identity`` with the
    variant ``name``'s own table (`trajopt.traces.for_variant`) and what the run's loop is traced with besides it
    (a budget's step costs are constants of the loop; its arguments)."""
    costs = None if rule.budget is None else [float(rule.costs.backward), float(rule.costs.linearization)]
    run = {"name": name, "iterations": int(iterations), "chunk": int(chunk), "seeds": int(n_seeds),
           "budget": rule.budget, "horizon": rule.horizon, "costs": costs, "once": bool(shared),
           "stops": rule.stopped is not None}
    return traces.key(traces.for_variant(identity, name), run, args)


def _lower_loop(run_chunk, carry, seed_keys, ks0, lift) -> tuple[Any, tuple, Optional[int], Any]:
    """(the lowered loop, the inputs it takes before its own arguments, how many constants became inputs, the
    `trajopt.programs.Lifted` it was lowered from or None: what a study's group vmaps over its cells). With
    ``lift`` (`trajopt.programs.Positions`, and `trajopt.programs` on: ``TRAJOPT_COMPILE_ONCE`` not 0) those
    constants of the loop (a stiffness, σ, a step: what varies over a study's grid) are its inputs, so runs that
    differ only in them lower to one program and share its compilation; without, the loop is lowered with its
    constants, as traced (None). A program JAX cannot evaluate again is lowered as traced too."""
    if lift and programs.enabled():
        try:
            lifted = programs.lift(run_chunk, carry, seed_keys, ks0, True, positions=lift)
            lowered = jax.jit(lifted.fn).lower(lifted.inputs, carry, seed_keys, ks0, True)
            return lowered, (lifted.inputs,), lifted.n_lifted, lifted
        except Exception:  # noqa: BLE001 - the constant program below traces again (and raises the user's error)
            pass
    return jax.jit(run_chunk).lower(carry, seed_keys, ks0, True), (), None, None


def prepare_each(problem: Problem, runs: Sequence[tuple[Method, int]], *, key: jax.Array,
                 seeds: Sequence[int] = (0,), chunk: Optional[int] = None, ahead: bool = True,
                 names: Optional[Sequence[str]] = None, budget: Optional[float] = None, step_costs=None,
                 once: bool = False, trace_identity: Optional[Mapping] = None) -> Iterator["Prepared"]:
    """`prepare` each (method, iterations) of ``runs`` in order (``names``: the runs' names, which a `SolveError`
    and each `Prepared` carry; default the methods' labels; ``budget``, ``step_costs`` and ``once`` as in `prepare`,
    for every run).

    Every run's arguments are checked (`check_run`) when this is called, before anything is traced or compiled: a
    bad one raises here, not after the runs before it. With ``ahead`` (the CLI's choice), up to two runs ahead of
    the caller, as a pipeline: one worker thread traces and lowers the runs in order (Python, which holds the
    GIL), and XLA compiles each lowered run on one of two more (which do not hold it), so the compilers of two runs
    do not wait for each other's tracing. The program the runs share, their final evaluation (`_lower_finish`),
    is traced first and compiled while the first run is traced (a core that would otherwise wait for that
    trace); its seconds are each run's ``final_evaluation_seconds``, in no run's ``compile_seconds``. A run is
    handed to the caller once the runs in flight behind it are compiled too (and that evaluation): its loop then
    runs alone, so its seconds do not depend on its place in the list (when the next runs compiled while it ran,
    a first variant ran 1.5-6x slower than the same variant placed last, on 2 cores:
    benchmarks/bench_compile_once.txt). The workers do not see JAX settings that are local to the
    caller's thread (a ``with jax.default_device(...)`` block, for one), so ``ahead=False`` prepares each in the
    caller's thread when it is reached. Either way the results are the same. A run whose own code fails when
    traced or compiled (`SolveError`) raises when the caller reaches it; closing the iterator early cancels what
    has not started.

    ``trace_identity``: what identifies the problem and the runs' methods, from the spec that made them
    (`trajopt.traces.problem_identity`, which the CLI passes, having built both from that spec alone): each run's
    traced loop is then kept on disk and read back by a later process instead of being traced again
    (`trajopt.traces`); None (the default): traced, as objects cannot be identified from here."""
    runs = list(runs)
    names = [method_label(m) if callable(getattr(m, "step", None)) else "?" for m, *_ in runs] if names is None \
        else list(names)
    if len(names) != len(runs):
        raise ValueError(f"names: found {len(names)} names for {len(runs)} runs, allowed: one name per run")
    checked = []
    for (method, iterations), name in zip(runs, names):
        iterations, seeds_arr, chunk_ = check_run(problem, method, key=key, iterations=iterations, seeds=seeds,
                                                  chunk=chunk, budget=budget, step_costs=step_costs)
        checked.append(dict(method=method, iterations=iterations, seeds_arr=seeds_arr, chunk=chunk_, name=name,
                            budget=budget, step_costs=step_costs, once=bool(once)))
    return _pipeline(problem, checked, key, ahead, trace_identity)


def _pipeline(problem: Problem, runs: list[dict], key: jax.Array, ahead: bool,
              trace_identity: Optional[Mapping] = None) -> Iterator["Prepared"]:
    """The generator of `prepare_each`, over runs already checked."""
    finishes: dict = {}  # the final evaluation's program, lowered once per shape for every run (`_lower_finish`)

    def lower_finish(run):  # the first run's final evaluation, lowered before its loop and compiled while it traces
        try:
            n_seeds = 1 if run["once"] and runs_once(run["method"], len(run["seeds_arr"])) else len(run["seeds_arr"])
            U = jax.ShapeDtypeStruct((n_seeds, *problem.U0.shape), problem.U0.dtype)  # `final_decision`'s, as a rule
            return _lower_finish(problem, U, trace_identity, finishes)
        except Exception:  # noqa: BLE001 - the run lowers it again when it is reached, and raises the user's error
            return None

    def lower(run):
        return _lower_checked(problem, run["method"], key=key, iterations=run["iterations"],
                              seeds_arr=run["seeds_arr"], chunk=run["chunk"], history_store=None, name=run["name"],
                              budget=run["budget"], step_costs=run["step_costs"], once=run["once"],
                              trace_identity=trace_identity, finishes=finishes)

    if not ahead:
        for run in runs:
            yield lower(run).compile()
        return
    tracer = ThreadPoolExecutor(1, thread_name_prefix="trajopt-trace")
    compilers = ThreadPoolExecutor(2, thread_name_prefix="trajopt-compile")
    pending, early = [], []  # early: the shared evaluation's compile, waited for with the first run's

    def submit(i):
        if i < len(runs):
            lowering = tracer.submit(lower, runs[i])
            pending.append(compilers.submit(lambda: lowering.result().compile()))

    try:
        if runs:  # the program every run shares goes first: XLA compiles it while the first run is traced
            finish = tracer.submit(lower_finish, runs[0])
            early.append(compilers.submit(lambda: finish.result() and finish.result().compile()))
        submit(0)
        submit(1)
        for i in range(len(runs)):
            current = pending.pop(0)
            submit(i + 2)
            # what is in flight is compiled before the caller gets this run: its loop then runs alone, and its
            # seconds do not depend on its place in the list (`wait` raises nothing: a later run's error is raised
            # when the caller reaches it)
            wait([current, *pending, *early])
            early.clear()
            yield current.result()
    finally:
        tracer.shutdown(wait=False, cancel_futures=True)
        compilers.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True, eq=False)
class Prepared:
    """A compiled fused loop and its initial state (from `prepare`); ``run()`` runs it, and may be called again
    (each call starts from the same initial state and gives the same `Result`)."""

    problem: Problem
    method: Any
    iterations: int
    seeds: np.ndarray
    chunk: int
    compiled: Any
    layout: Any
    seed_keys: Any
    carry: Any
    compile_seconds: float
    history_store: Optional[HistoryStore] = None
    name: Optional[str] = None
    rule: Optional[StopRule] = None
    stopped_fn: Any = None  # compiled: state [S, ...] -> [S] bool, the method's `stopped` for each seed
    horizon: Optional[int] = None
    budget: Optional[float] = None
    step_costs: Any = None
    shared: bool = False
    lifted: Optional[int] = None  # constants lifted into inputs (`_lower_loop`); None: compiled with its constants
    reused: bool = False  # the compiled loop came from `trajopt.programs.CACHE` (only traced and lowered here)
    trace_reused: bool = False  # the loop's trace was read back (`trajopt.traces`), not traced here
    compilation_cache: Optional[str] = None  # where the compiled loop came from (`trajopt.compiler.CACHE_STATUSES`)
    finish_fn: Any = None  # compiled: U [S, ...] -> (f(U), X), when the loop does not evaluate its decisions itself
    finish_cache: Optional[str] = None  # where finish_fn came from (`trajopt.compiler.CACHE_STATUSES`)
    finish_seconds: Optional[float] = None  # its lowering and compile (not in compile_seconds: shared by the runs)

    def history_bytes(self) -> int:
        """`history_bytes` of this loop (what a caller compares with its memory to choose a `HistoryStore`)."""
        return history_bytes(len(self.seeds), self.iterations, len(self.layout.fields))

    def history_fields(self) -> dict[str, tuple[np.dtype, tuple]]:
        """{field: (dtype, shape of one iteration's value)} of the method's info, in its order (what each
        iteration records besides the cost)."""
        return dict(self.layout.fields)

    def run(self, *, on_chunk: Optional[Callable[[int, int], None]] = None,
            should_stop: Optional[Callable[[], bool]] = None, name: Optional[str] = None,
            history_store: Optional[HistoryStore] = None) -> Result:
        """Run the loop (``on_chunk``, ``should_stop``, ``name``, ``history_store`` as in `solve`; the name and
        the store default to those given to `prepare`, else the method's label and memory) and return its `Result`.

        The history is allocated once, before the first chunk: ``cost`` [S, K+1] and each info field [S, K]
        (``history["value"]`` is a view of ``cost[:, :K]``); each chunk's outputs are written in place as they
        arrive. A run stopped early returns views of the first iterations only (``cost[:, :k+1]``). A failure of
        the computation itself raises `SolveError` (stage "running"); what the callbacks raise is raised as is."""
        check_run_options(on_chunk, should_stop, name, history_store)
        problem, method, iterations, chunk = self.problem, self.method, self.iterations, self.chunk
        compiled, layout, seed_keys, carry = self.compiled, self.layout, self.seed_keys, self.carry
        seeds_arr, n_seeds, compile_seconds = self.seeds, len(self.seeds), self.compile_seconds
        name = name or self.name or method_label(method)
        store = history_store or self.history_store or memory_store
        cost, history, value_apart = allocate_history(store, layout, n_seeds, iterations)
        done, interrupted, settled_at, final = 0, False, None, None
        chunk_ends, chunk_seconds = [], []
        starts = list(range(0, iterations, chunk))

        def dispatch(carry, start, last=False):  # returns at once: XLA runs the chunk while the host goes on
            ks = np.arange(start, start + chunk, dtype=np.int32)
            with user_code(name, "running"):  # last: the final decision is evaluated after this chunk
                return compiled(carry, seed_keys, ks, last or start + chunk >= iterations)

        t_start = time.perf_counter()
        pending = dispatch(carry, 0) if starts else None
        settling, stopped_now = False, None  # settling: every seed had stopped when the chunk before this one ended
        asks = self.stopped_fn is not None  # the method says when a seed has stopped: asked between chunks
        for n, start in enumerate(starts):
            carry, info, final, over = pending
            more = n + 1 < len(starts) and not settling

            if asks:  # known before the next chunk is queued, so that it evaluates the final decision if it is the last
                with user_code(name, "running"):
                    stopped_now = self._ask(carry, over)
                settled = bool(np.all(~stopped_now[2] | stopped_now[0] | stopped_now[1]))
                pending = dispatch(carry, starts[n + 1], settled) if more else None
            else:  # queue the next chunk before reading this one, so the loop computes while the host records and
                # reports (a stop drops the queued chunk: the run ends at this chunk's carry); the chunk evaluates the
                # final decision itself once every seed is over its budget or not finite
                pending = dispatch(carry, starts[n + 1]) if more else None
                with user_code(name, "running"):
                    stopped_now = self._ask(carry, over)
                settled = bool(np.all(~stopped_now[2] | stopped_now[1]))
            with user_code(name, "running"):
                host = jax.device_get(info)  # waits for this chunk (an error in it is raised here)
            chunk_seconds.append(time.perf_counter() - t_start)
            take = min(chunk, iterations - start)
            for f, values in layout.unpack(host, take).items():  # into the history, in place (a shared run's one
                history[f][:, start:start + take] = values        # row broadcast to every seed)
            if value_apart:
                cost[:, start:start + take] = history["value"][:, start:start + take]
            del host
            done += take
            chunk_ends.append(done)
            if settling and done < iterations:  # nothing can change any more: the rest is filled in, not run
                repeat_rows(history, cost, value_apart, done, iterations)
                settled_at, done = done, iterations
                chunk_ends.append(done)
                chunk_seconds.append(chunk_seconds[-1])
                if on_chunk is not None:
                    on_chunk(done, iterations)
                break
            # every seed has stopped: the chunk queued behind this one (if any) records the rows each repeats, and
            # evaluates the final decisions; then nothing more runs
            settling = settled
            if on_chunk is not None:
                on_chunk(done, iterations)
            if done < iterations and should_stop is not None and should_stop():
                interrupted = True
                break
        run_seconds = chunk_seconds[-1] if chunk_seconds else 0.0

        with user_code(name, "running"):  # the final evaluation
            alive, failed_at = carry[1], carry[2]
            t0 = time.perf_counter()
            if final is None or done < iterations or final[0] is None:  # evaluated apart
                # the last chunk returned the decision; stopped early or nothing ran: the carry's
                U = final_decision(carry) if final is None or done < iterations else final[1]
                compiled_finish, final_evaluation = self.finish_fn, self.finish_cache
                finish_seconds = self.finish_seconds
                if compiled_finish is None:  # a loop that evaluates it itself, stopped early
                    t1 = time.perf_counter()
                    compiled_finish, reused_finish, final_evaluation = compile_cached(
                        jax.jit(make_finish(problem)).lower(U))
                    final_evaluation = "memory" if reused_finish else final_evaluation
                    finish_seconds = time.perf_counter() - t1
                    t0 = time.perf_counter()
                final = compiled_finish(U)
            else:  # the loop evaluated the decision itself (a grid's: `with_finish`)
                final, U = final
                final_evaluation, finish_seconds = "loop", None
            final_value, X = jax.block_until_ready(final)
            run_seconds += time.perf_counter() - t0
            final_value = self._seedwise(np.asarray(final_value))
            X = None if X is None else self._seedwise(np.asarray(X))
            U = self._seedwise(np.asarray(U))
            alive = self._seedwise(np.asarray(alive))
            failed_at = self._seedwise(np.asarray(failed_at))

        final_value = np.where(alive, final_value, np.nan)
        cost[:, done] = final_value
        cost = cost[:, :done + 1]
        history = {f: values[:, :done] for f, values in history.items()}
        status = [
            STATUS_OK if a and not interrupted else (STATUS_INTERRUPTED if a else STATUS_NON_FINITE) for a in alive
        ]
        if done:  # a seed that ran every iteration without one update (each skipped) did not converge: it never moved
            skipped = skipped_counts(history, n_seeds)
            status = [STATUS_ALL_SKIPPED if st == STATUS_OK and k == done else st for st, k in zip(status, skipped)]
        stopped = [None] * n_seeds
        quiet = quiet_from(history, n_seeds, done)  # the iteration from which each seed spent nothing
        if stopped_now is not None:  # why each finite seed stopped before the last iteration, as its last chunk ended
            converged_h, over_h = self._seedwise(stopped_now[0]), self._seedwise(stopped_now[1])
            stopped = [("converged" if c else "budget" if o else None) if a and q < done else None
                       for c, o, a, q in zip(converged_h, over_h, alive, quiet)]
        return Result(
            name=name, method=method, seeds=seeds_arr, U=U, X=X, cost=cost,
            history=history, status=status, failed_at=failed_at, iterations=done, run_seconds=run_seconds,
            compile_seconds=compile_seconds, chunk_ends=chunk_ends, chunk_seconds=chunk_seconds,
            horizon=self.horizon, step_costs=self.step_costs, budget=self.budget, stopped=stopped,
            stopped_at=np.array([q if r is not None else -1 for q, r in zip(quiet, stopped)], np.int64),
            ran_once=self.shared, settled_at=settled_at, lifted=self.lifted, reused=self.reused,
            trace_reused=self.trace_reused, compilation_cache=self.compilation_cache,
            final_evaluation=final_evaluation, final_evaluation_seconds=finish_seconds,
        )

    def _ask(self, carry, over) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """([S'] converged: the method says the seed has stopped, [S'] over its budget, [S'] alive) at the end of the
        chunk that gave ``carry`` and ``over`` (S' the seeds run: one for a shared run); waits for that chunk."""
        alive = carry[1]
        converged = self.stopped_fn(carry[0]) if self.stopped_fn is not None else np.zeros(alive.shape, bool)
        return tuple(np.asarray(a, bool) for a in jax.device_get((converged, over, alive)))

    def _seedwise(self, a: np.ndarray) -> np.ndarray:
        """[S, ...] from a per-seed array of the run: itself, or a shared run's one row for every seed."""
        return np.repeat(a, len(self.seeds), axis=0) if self.shared else a
