"""The notebook face: run several variants on one problem in memory, and load a TOML file into Python.

    compare(problem, variants, *, key, iterations, seeds, budget=None, step_costs=None) -> {name: Result}
    load(path, overrides=()) -> Loaded(problem, variants, spec)

A deterministic method runs once per `compare`, its result shared by the seeds (``Result.ran_once``). A budget is in
forward-step equivalents (`trajopt.compute`) and admits every method.

Nothing here prints or writes files; figures come from `trajopt.plots` as `Figure` objects. Every argument is
checked before anything compiles, as the CLI checks a file (`trajopt.solver.check_run`, the bounds of
`trajopt.limits`): a ValueError or TypeError names the argument, what was found and what is allowed. A variant's
own code that fails later raises `trajopt.SolveError`, naming the variant (the original exception its cause).
"""

from __future__ import annotations

import inspect
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import jax

from trajopt.limits import MAX_ITERATIONS
from trajopt.problem import Problem
from trajopt.solve_checks import SolveError, check_budget, check_iterations, check_method, check_problem, is_integer, shown
from trajopt.result import Result
from trajopt.solver import method_label, prepare_each


def _named(variants: Union[Mapping[str, Any], Sequence[Any]]) -> dict[str, Any]:
    """{name: method} from a mapping or a list of methods (named by `method_label`), each checked."""
    if isinstance(variants, Mapping):
        named = dict(variants)
        for name in named:
            if not isinstance(name, str) or not name:
                raise TypeError(f"variants: found the name {shown(name)}, allowed: non-empty "
                                "strings as names ({name: method})")
    elif isinstance(variants, (str, bytes)) or not isinstance(variants, Iterable) \
            or callable(getattr(variants, "step", None)):
        raise TypeError(f"variants: found {shown(variants)}, allowed: {{name: method}} "
                        "or a list of methods")
    else:
        named = {}
        for m in variants:
            check_method(m, "variants")
            label = method_label(m)
            if label in named:
                raise ValueError(f"variants: found two labelled {label!r}, allowed: distinct labels; pass a dict "
                                 "{name: method} instead")
            named[label] = m
    if not named:
        raise ValueError("variants: found none, allowed: at least one {name: method}")
    for name, m in named.items():
        check_method(m, f"variants[{name!r}]")
    return named


def _steps(named: Mapping[str, Any], iterations: Union[int, Mapping[str, int], None], problem: Any = None,
           budget: Any = None, step_costs: Any = None) -> dict[str, int]:
    """{name: iterations} from one number for all or {name: iterations} (every variant's, and no other name); None
    with a budget: each variant's `trajopt.compute.budget_iterations`."""
    if iterations is None:
        if budget is None:
            raise TypeError("iterations: found None, allowed: an integer, or {name: iterations}; None only with a "
                            "budget (each variant then runs what the budget buys)")
        from trajopt.compute import budget_iterations

        check_budget(budget, step_costs)
        return {n: budget_iterations(m, problem, float(budget), step_costs) for n, m in named.items()}
    if isinstance(iterations, Mapping):
        missing = [n for n in named if n not in iterations]
        if missing:
            raise ValueError(f"iterations: found no number of steps for {', '.join(map(repr, missing))}, allowed: "
                             "one for every variant, or one number for all")
        unknown = [n for n in iterations if n not in named]
        if unknown:
            raise ValueError(f"iterations: found steps for {', '.join(map(repr, unknown))}, which is not a variant; "
                             f"allowed: the variants' names ({', '.join(map(repr, named))})")
        return {n: check_iterations(iterations[n], f"iterations[{n!r}]") for n in named}
    steps = check_iterations(iterations)
    return {n: steps for n in named}


def compare(
    problem: Problem,
    variants: Union[Mapping[str, Any], Sequence[Any]],
    *,
    key: jax.Array,
    iterations: Union[int, Mapping[str, int], None],
    seeds: Sequence[int] = (0,),
    chunk: Optional[int] = None,
    on_chunk: Optional[Callable[[str, int, int], None]] = None,
    compile_ahead: bool = False,
    budget: Optional[float] = None,
    step_costs: Any = None,
) -> dict[str, Result]:
    """Run several methods on one problem with the same key and seeds (each one fused `solve`).

    A deterministic method (its ``deterministic`` flag: exact and fd gradients, iLQR, L-BFGS;
    `trajopt.solver.runs_once`) gives every seed the same run: it is run once, for the first seed, and that result
    is every seed's (``Result.ran_once``; the same as each seed's own run).

    Args:
        problem: the Problem (its ``U0`` a non-empty finite float array, its ``objective`` callable).
        variants: {name: method} (non-empty string names), or a list of methods, named by their oracle or method
            name (`trajopt.solver.method_label`; two with one label: pass a dict). Each method has ``init`` and
            ``step`` (`trajopt.methods.base`).
        key: root PRNG key (``jax.random.PRNGKey(n)`` or ``jax.random.key(n)``), shared by every variant (seed s of
            each draws from ``fold_in(key, s)``).
        iterations: steps per variant: one integer in 0..`trajopt.limits.MAX_ITERATIONS` for all, or
            {name: steps} for each (every variant's name, and no other); with a budget, the most each may run, or
            None for what the budget buys (`trajopt.compute.budget_iterations`: floor(budget / spend per step) for
            a fixed-cost method, ceil(budget / T) for one whose spend varies).
        seeds: the seeds, run together as one vmap per variant: distinct integers in 0..2**32 - 1 (a seed is
            folded into the key as uint32: a larger one would repeat another's noise), at most
            `trajopt.limits.MAX_SEEDS`, with iterations x seeds <= `trajopt.limits.MAX_HISTORY` for each variant.
        chunk: iterations per compiled chunk: None (about a tenth) or an integer in 1..`trajopt.limits.MAX_ITERATIONS`.
        on_chunk: progress callback ``on_chunk(name, done, total)``, or None.
        compile_ahead: prepare up to two variants ahead on worker threads (what the CLI does; faster, the same
            results; each runs once the compilations in flight are done, so its seconds do not depend on its place). Off by default: the worker does not see JAX settings local to the
            caller's thread, such as a ``with jax.default_device(...)`` block.
        budget: a compute budget per seed in forward-step equivalents (`trajopt.compute`), the same for every
            variant, or None: each seed of each variant stops once its spend reaches it (`trajopt.solve`).
        step_costs: the `trajopt.compute.StepCosts` that convert the counts (required with a budget; recorded on
            each `Result` either way, for `Result.forward_equivalents`).

    Returns:
        {name: Result}, in the order given.

    Raises:
        TypeError, ValueError: any argument outside what is allowed above, for any variant, before any variant is
            traced, compiled or run (`trajopt.solver.check_run`); the message names the argument, what was found
            and what is allowed.
        trajopt.SolveError: a variant's own code (its method, or the problem's system or policy) raised while it was
            traced, compiled or run; it names the variant and keeps the original as ``__cause__``, and its
            ``results`` holds {name: Result} of the variants that finished before it (nothing computed is lost).
    """
    return _compare(problem, variants, key=key, iterations=iterations, seeds=seeds, chunk=chunk, on_chunk=on_chunk,
                    compile_ahead=compile_ahead, budget=budget, step_costs=step_costs)


def _compare(problem, variants, *, key, iterations, seeds=(0,), chunk=None, on_chunk=None, compile_ahead=False,
             budget=None, step_costs=None, trace_identity: Optional[Mapping] = None) -> dict[str, Result]:
    """`compare`, its loops kept on disk under ``trace_identity`` (`trajopt.traces.problem_identity` of the spec
    that built ``problem`` and every variant, and nothing else: `Loaded.compare` checks it) when given."""
    named = _named(variants)
    if iterations is None:
        check_problem(problem)
    steps = _steps(named, iterations, problem, budget, step_costs)
    if on_chunk is not None and not callable(on_chunk):
        raise TypeError(f"on_chunk: found {shown(on_chunk)}, allowed: None or a function "
                        "on_chunk(name, done, total)")
    if not isinstance(compile_ahead, bool):
        raise TypeError(f"compile_ahead: found {shown(compile_ahead)}, allowed: "
                        "True or False")
    out = {}
    # every variant's arguments are checked here, before the first is traced
    prepared = prepare_each(problem, [(m, steps[n]) for n, m in named.items()], key=key, seeds=seeds, chunk=chunk,
                            ahead=compile_ahead, names=list(named), budget=budget, step_costs=step_costs, once=True,
                            trace_identity=trace_identity)
    try:
        for name, loop in zip(named, prepared):
            hook = None if on_chunk is None else (lambda done, total, name=name: on_chunk(name, done, total))
            out[name] = loop.run(on_chunk=hook, name=name)
    except SolveError as e:
        e.results = dict(out)  # the variants that finished
        raise
    finally:
        prepared.close()  # an error (or an interrupt) cancels what was being compiled ahead
    return out


@dataclass(frozen=True, eq=False)
class Loaded:
    """A problem file, ready to run.

    Attributes:
        problem: the Problem.
        variants: {name: method} for the file's ``solve.variants`` (or its oracles), in order.
        spec: the validated file (`trajopt.spec.Spec`): title, system, task, solve settings, resolved config.
    """

    problem: Problem
    variants: dict
    spec: Any
    path: Optional[str] = None
    overrides: tuple = ()
    # set by `load` alone: ``problem`` and ``variants`` were built from ``spec`` (a copy made with
    # `dataclasses.replace` is not: init=False fields are not copied), so their traced loops may be kept on disk
    _built_from_spec: bool = field(default=False, init=False, repr=False, compare=False)

    def _trace_identity(self, chosen: Mapping) -> Optional[dict]:
        """`trajopt.traces.problem_identity` of ``spec`` when the problem and the ``chosen`` methods are the ones
        `load` built from it (the same objects: a method put into ``variants`` since is not), else None; None too
        unless the compilation cache is asked for (``TRAJOPT_CACHE=1``): the library writes no files unasked."""
        from trajopt import traces

        if not self._built_from_spec or any(n not in self.spec.variants or m is not self.spec.variants[n].method
                                            for n, m in chosen.items()):
            return None
        return traces.problem_identity(self.spec)

    @property
    def key(self) -> jax.Array:
        """The file's root key, ``PRNGKey(solve.key)``."""
        return jax.random.PRNGKey(self.spec.solve.key)

    def compare(self, variants: Optional[Sequence[str]] = None, *, iterations: Optional[int] = None,
                seeds: Optional[Sequence[int]] = None, **kwargs) -> dict[str, Result]:
        """`compare` with the file's key and seeds over its variants, or over the ones named.

        ``variants`` names any of the file's ``[variants]`` tables, oracles or methods, as ``--variants`` does
        (``load("problems/pushing_stiff.toml").compare(["aobg", "tuned"])``), not only those it runs by default:
        the file is then loaded again with them as ``solve.variants`` (a name it does not define raises
        `trajopt.spec.SpecError`; for a `Loaded` not read from a file, a name not in ``variants`` raises KeyError).
        One name, or a list of distinct non-empty names (a TypeError or ValueError otherwise).

        Each variant runs its own number of iterations: its table's ``iterations`` if it sets one, else
        ``solve.iterations``. ``iterations=N`` (an integer in 1..`trajopt.limits.MAX_ITERATIONS`, as the file's
        ``solve.iterations``) runs every chosen variant for N, as ``--iterations N`` does on the command line: the
        file is loaded again with that override, so step and σ schedules that default to the run's length span N.
        With ``budget=B`` (and ``step_costs``) and no ``iterations``, each variant runs what the budget buys, not the
        file's iterations (as ``--budget`` does). ``seeds`` replaces the file's seeds. With the compilation cache
        asked for (``TRAJOPT_CACHE=1``), each variant's traced loop is kept on disk and read back by a later call or
        process, as the command line keeps it (`trajopt.traces`), when this `Loaded` is the one `load` made: not a
        copy with another problem, nor a method put into ``variants`` since. Other keyword arguments go to
        `compare`, which checks the seeds,
        chunk and callbacks, every variant's iterations x seeds, and raises `trajopt.SolveError` for a variant whose
        own code fails (see there), all before anything is compiled.
        """
        passed_on = set(inspect.signature(compare).parameters) - {"problem", "variants", "key", "iterations", "seeds"}
        if set(kwargs) - passed_on:  # named here, not as a private function's unexpected argument
            raise TypeError(f"Loaded.compare: found keyword argument(s) {', '.join(sorted(set(kwargs) - passed_on))}, "
                            f"allowed: variants, iterations, seeds, {', '.join(sorted(passed_on))}")
        loaded, extra = self, []
        if isinstance(variants, str):
            variants = [variants]
        if variants is not None:
            if not isinstance(variants, Iterable):
                raise TypeError(f"variants: found {shown(variants)}, allowed: a variant "
                                "name or a list of names")
            variants = list(variants)
            bad = [n for n in variants if not isinstance(n, str) or not n]
            if bad:
                raise TypeError(f"variants: found {shown(bad[0])}, allowed: non-empty "
                                "variant names (strings)")
            if not variants or len(set(variants)) != len(variants):
                found = "none" if not variants else f"{next(n for n in variants if variants.count(n) > 1)!r} twice"
                raise ValueError(f"variants: found {found}, allowed: distinct variant names, at least one")
        if iterations is not None:  # a file's solve.iterations: 1.. (solve itself also takes 0)
            allowed = f"an integer in 1..{MAX_ITERATIONS:,} (a file's solve.iterations)"
            if not is_integer(iterations):
                raise TypeError(f"iterations: found {shown(iterations)}, allowed: {allowed}")
            if not 1 <= int(iterations) <= MAX_ITERATIONS:
                raise ValueError(f"iterations: found {int(iterations)}, allowed: {allowed}")
            iterations = int(iterations)
        if variants is not None and any(n not in self.variants for n in variants):
            # a [variants] table, oracle or method the file does not run by default: as `--variants` does
            extra.append("solve.variants=[" + ", ".join(json.dumps(n) for n in variants) + "]")
        if iterations is not None:
            extra.append(f"solve.iterations={iterations}")
        if extra and self.path is not None:
            loaded = load(self.path, [*self.overrides, *extra])
        missing = [n for n in (variants or ()) if n not in loaded.variants]
        if missing:
            raise KeyError(f"variants: found {', '.join(map(repr, missing))} not in this problem (it was not loaded "
                           f"from a file), allowed: {', '.join(loaded.variants)}")
        chosen = loaded.variants if variants is None else {n: loaded.variants[n] for n in variants}
        if iterations is None and kwargs.get("budget") is not None:
            steps = None  # what the budget buys (`compare`), not the file's iterations
        else:
            steps = {n: iterations if iterations is not None else loaded.spec.iterations_of(n) for n in chosen}
        return _compare(loaded.problem, chosen, key=loaded.key, iterations=steps,
                        seeds=loaded.spec.solve.seeds if seeds is None else seeds,
                        trace_identity=loaded._trace_identity(chosen), **kwargs)

    def mpc(self, variants: Optional[Sequence[str]] = None, *, iterations: Optional[int] = None,
            seeds: Optional[Sequence[int]] = None, time_plans: bool = True) -> dict:
        """The file's closed loop (its ``[mpc]``, ``[plant]`` and ``[success]`` tables), as `trajopt mpc` runs it, in
        memory: {name: `trajopt.closedloop.MPCResult`}.

        ``variants``: names of the file's variant tables, oracles or methods (default: ``mpc.variants``, else the
        file's variants); ``iterations``: K method steps per replan (default ``mpc.iterations``); ``seeds``: default
        ``mpc.seeds``, else ``solve.seeds``. As on the command line, each variant's step and sigma schedules span the K
        steps of one replan, and a policy file's variants name open-loop oracles with each seed starting from its own
        draw of the initial-state distribution. Raises `trajopt.spec.SpecError` for a file without ``[mpc]`` or a bad
        name; a `Loaded` not read from a file cannot be reloaded (ValueError)."""
        from trajopt import spec as spec_mod
        from trajopt import traces
        from trajopt.closedloop import mpc as run_mpc
        from trajopt.tomlio import toml_string

        if self.path is None:
            raise ValueError("Loaded.mpc: this problem was not read from a file; call trajopt.closedloop.mpc directly")
        if isinstance(variants, str):
            variants = [variants]
        extra = [f"mpc.iterations={int(iterations)}"] if iterations is not None else []
        spec = spec_mod.load(self.path, [*self.overrides, *extra], closed_loop=True)
        if spec.closed_loop is None or spec.closed_loop.mpc is None:
            raise spec_mod.SpecError(spec.source, "mpc", "missing; allowed: an [mpc] table with episode and horizon")
        cl = spec.closed_loop
        names = list(variants) if variants is not None else (
            list(cl.mpc.variants) if cl.mpc.variants is not None else list(spec.variants))
        K = cl.mpc.settings.iterations
        items = [*self.overrides, *extra, "solve.variants=[" + ", ".join(toml_string(n) for n in names) + "]",
                 f"solve.iterations={K}"]
        spec = spec_mod.load(self.path, items, closed_loop=True)
        more = spec_mod.iteration_overrides(spec, items)
        if more:
            spec = spec_mod.load(self.path, [*items, *more], closed_loop=True)
        cl = spec.closed_loop
        problem = spec.closed_loop_problem()
        spec_mod.check_variants(spec, problem)
        chosen = seeds if seeds is not None else (cl.mpc.seeds if cl.mpc.seeds is not None else spec.solve.seeds)
        chosen = [int(s) for s in chosen]
        return run_mpc(problem, {n: v.method for n, v in spec.variants.items()}, settings=cl.mpc.settings,
                       plant=cl.plant.plant if cl.plant is not None else None, key=jax.random.PRNGKey(spec.solve.key),
                       seeds=chosen, success=cl.success, initial_states=spec.closed_loop_starts(chosen),
                       time_plans=time_plans, trace_identity=traces.problem_identity(spec))  # all built from spec


def load(path: Union[str, Path], overrides: Sequence[str] = ()) -> Loaded:
    """Read and validate a TOML problem file (``overrides`` as ``--set`` items) into a `Loaded`.

    Raises `trajopt.spec.SpecError` (file, key, what was found, what is allowed) for a bad file.
    """
    from trajopt import spec as spec_mod

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: found {shown(path)}, allowed: the path of a TOML problem file (a str or a Path)")
    if isinstance(overrides, (str, bytes)) or not isinstance(overrides, Iterable):
        raise TypeError(f"overrides: found {shown(overrides)}, allowed: a list of 'KEY=VALUE' strings, as --set takes "
                        "(e.g. ['system.stiffness=10'])")
    overrides = tuple(overrides)
    if not all(isinstance(item, str) for item in overrides):
        raise TypeError(f"overrides: found {shown(list(overrides))}, allowed: a list of 'KEY=VALUE' strings, as --set "
                        "takes (e.g. ['system.stiffness=10'])")
    s = spec_mod.load(path, overrides)
    extra = spec_mod.iteration_overrides(s, overrides)  # solve.iterations among the overrides reaches every variant
    if extra:
        s = spec_mod.load(path, overrides + tuple(extra))
    # the caller's overrides only: a reload (Loaded.compare) derives the variants' iterations again from them
    loaded = Loaded(problem=s.problem(), variants={n: v.method for n, v in s.variants.items()}, spec=s,
                    path=str(path), overrides=overrides)
    object.__setattr__(loaded, "_built_from_spec", True)
    return loaded
