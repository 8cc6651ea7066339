"""The notebook face: run several variants on one problem in memory, and load a TOML file into Python.

    compare(problem, variants, *, key, iterations, seeds) -> {name: Result}
    load(path, overrides=()) -> Loaded(problem, variants, spec)

Nothing here prints or writes files; figures come from `trajopt.plots` as `Figure` objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import jax

from trajopt.problem import Problem
from trajopt.solver import Result, method_label, prepare_each


def _named(variants: Union[Mapping[str, Any], Sequence[Any]]) -> dict[str, Any]:
    if isinstance(variants, Mapping):
        named = dict(variants)
    else:
        named = {}
        for m in variants:
            label = method_label(m)
            if label in named:
                raise ValueError(f"two variants are both labelled {label!r}; pass a dict {{name: method}} instead")
            named[label] = m
    if not named:
        raise ValueError("compare needs at least one variant")
    return named


def compare(
    problem: Problem,
    variants: Union[Mapping[str, Any], Sequence[Any]],
    *,
    key: jax.Array,
    iterations: Union[int, Mapping[str, int]],
    seeds: Sequence[int] = (0,),
    chunk: Optional[int] = None,
    on_chunk: Optional[Callable[[str, int, int], None]] = None,
    compile_ahead: bool = False,
) -> dict[str, Result]:
    """Run several methods on one problem with the same key and seeds (each one fused `solve`).

    Args:
        problem: the Problem.
        variants: {name: method} (or a list of methods, named by their oracle or method name).
        key: root PRNG key, shared by every variant (seed s of each draws from ``fold_in(key, s)``).
        iterations: steps per variant: one number for all, or {name: steps} for each (every name given).
        seeds: the seeds, run together as one vmap per variant.
        chunk: iterations per compiled chunk (default: about a tenth).
        on_chunk: progress callback ``on_chunk(name, done, total)``.
        compile_ahead: prepare up to two variants ahead on worker threads while this one runs (what the CLI does;
            faster, the same results). Off by default: the worker does not see JAX settings local to the
            caller's thread, such as a ``with jax.default_device(...)`` block.

    Returns:
        {name: Result}, in the order given.
    """
    named = _named(variants)
    if isinstance(iterations, Mapping):
        missing = [n for n in named if n not in iterations]
        if missing:
            raise ValueError(f"iterations: no number of steps for {', '.join(map(repr, missing))}; give one for "
                             "every variant, or one number for all")
        steps = {n: int(iterations[n]) for n in named}
    else:
        steps = {n: int(iterations) for n in named}
    out = {}
    prepared = prepare_each(problem, [(m, steps[n]) for n, m in named.items()], key=key, seeds=seeds, chunk=chunk,
                            ahead=compile_ahead)
    for name, loop in zip(named, prepared):
        hook = None if on_chunk is None else (lambda done, total, name=name: on_chunk(name, done, total))
        out[name] = loop.run(on_chunk=hook, name=name)
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

        Each variant runs its own number of iterations: its table's ``iterations`` if it sets one, else
        ``solve.iterations``. ``iterations=N`` runs every chosen variant for N, as ``--iterations N`` does on the
        command line: the file is loaded again with that override, so step and σ schedules that default to
        the run's length span N. ``seeds`` replaces the file's seeds; other keyword arguments go to `compare`.
        """
        loaded, extra = self, []
        if isinstance(variants, str):
            variants = [variants]
        if variants is not None and any(n not in self.variants for n in variants):
            # a [variants] table, oracle or method the file does not run by default: as `--variants` does
            extra.append("solve.variants=[" + ", ".join(json.dumps(str(n)) for n in variants) + "]")
        if iterations is not None:
            extra.append(f"solve.iterations={int(iterations)}")
        if extra and self.path is not None:
            loaded = load(self.path, [*self.overrides, *extra])
        missing = [n for n in (variants or ()) if n not in loaded.variants]
        if missing:
            raise KeyError(f"variants: {', '.join(map(repr, missing))} not in this problem (it was not loaded from a "
                           f"file); allowed: {', '.join(loaded.variants)}")
        chosen = loaded.variants if variants is None else {n: loaded.variants[n] for n in variants}
        steps = {n: iterations if iterations is not None else loaded.spec.iterations_of(n) for n in chosen}
        return compare(loaded.problem, chosen, key=loaded.key, iterations=steps,
                       seeds=loaded.spec.solve.seeds if seeds is None else seeds, **kwargs)


def load(path: Union[str, Path], overrides: Sequence[str] = ()) -> Loaded:
    """Read and validate a TOML problem file (``overrides`` as ``--set`` items) into a `Loaded`.

    Raises `trajopt.spec.SpecError` (file, key, what was found, what is allowed) for a bad file.
    """
    from trajopt import spec as spec_mod

    overrides = tuple(overrides)
    s = spec_mod.load(path, overrides)
    extra = spec_mod.iteration_overrides(s, overrides)  # solve.iterations among the overrides reaches every variant
    if extra:
        s = spec_mod.load(path, overrides + tuple(extra))
    # the caller's overrides only: a reload (Loaded.compare) derives the variants' iterations again from them
    return Loaded(problem=s.problem(), variants={n: v.method for n, v in s.variants.items()}, spec=s,
                  path=str(path), overrides=overrides)
