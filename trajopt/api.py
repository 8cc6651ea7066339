"""The notebook face: run several variants on one problem in memory, and load a TOML file into Python.

    compare(problem, variants, *, key, iterations, seeds) -> {name: Result}
    load(path, overrides=()) -> Loaded(problem, variants, spec)

Nothing here prints or writes files; figures come from `trajopt.plots` as `Figure` objects.
"""

from __future__ import annotations

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
    iterations: int,
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
        iterations: steps per variant.
        seeds: the seeds, run together as one vmap per variant.
        chunk: iterations per compiled chunk (default: about a tenth).
        on_chunk: progress callback ``on_chunk(name, done, total)``.
        compile_ahead: compile the next variant on a worker thread while this one runs (what the CLI does;
            faster, the same results). Off by default: the worker does not see JAX settings local to the
            caller's thread, such as a ``with jax.default_device(...)`` block.

    Returns:
        {name: Result}, in the order given.
    """
    named = _named(variants)
    out = {}
    prepared = prepare_each(problem, [(m, iterations) for m in named.values()], key=key, seeds=seeds, chunk=chunk,
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

    @property
    def key(self) -> jax.Array:
        """The file's root key, ``PRNGKey(solve.key)``."""
        return jax.random.PRNGKey(self.spec.solve.key)

    def compare(self, variants: Optional[Sequence[str]] = None, *, iterations: Optional[int] = None,
                seeds: Optional[Sequence[int]] = None, **kwargs) -> dict[str, Result]:
        """`compare` with the file's key, iterations and seeds (each overridable) over its variants (or some)."""
        chosen = self.variants if variants is None else {n: self.variants[n] for n in variants}
        return compare(self.problem, chosen, key=self.key, iterations=iterations or self.spec.solve.iterations,
                       seeds=self.spec.solve.seeds if seeds is None else seeds, **kwargs)


def load(path: Union[str, Path], overrides: Sequence[str] = ()) -> Loaded:
    """Read and validate a TOML problem file (``overrides`` as ``--set`` items) into a `Loaded`.

    Raises `trajopt.spec.SpecError` (file, key, what was found, what is allowed) for a bad file.
    """
    from trajopt import spec as spec_mod

    s = spec_mod.load(path, overrides)
    return Loaded(problem=s.problem(), variants={n: v.method for n, v in s.variants.items()}, spec=s)
