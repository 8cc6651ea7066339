"""Compile once: a traced program whose floating-point constants are its inputs, and the compiled programs this
process keeps by their text.

A problem's parameters (a stiffness, a mass, a time step), an oracle's (σ), an optimiser's (its step) and a run's
settings are Python numbers (or arrays) when a loop is traced: JAX writes them into the program as constants, so a
run with another stiffness is another program, and XLA compiles it again (seconds for a contact problem, minutes for
an MJX one) to compute the same operations on other numbers. Here a traced program (its jaxpr) is evaluated again
with chosen constants taken from inputs instead:

    f(args) = J(args; c_1, ..., c_L)            # J: the jaxpr; c_i its floating-point constants, in a fixed order
    lift(f, positions P)(c_P, args) = the same operations, with the c_i of P read from inputs

so that two runs whose programs differ only in those numbers lower to the same text and share one compilation
(`compile`: in this process through `CACHE`, across processes through JAX's persistent cache when it is on). Which
constants: `constants` of two traces, ``a.differing(b)``: what a study's grid varies (`trajopt.studies.cells`).
The shapes (horizon, samples, seeds, state size), the integer constants and the program's operations still key the
program: a different horizon is another program, as it must be. A constant keeps its value, dtype and weak type as
an input (the numbers of one dtype travel in one vector, read back with static slices), and every operation is
bound again as traced.

**The last bit.** A lifted program computes the operations as written. Where XLA had folded a constant into another
when both were constants (``(A * c1) * c2`` into ``A * (c1 * c2)``: the √2 of a normal draw and σ; a step size and
a stiffness in a backward pass), the lifted program multiplies twice, which can round differently in the last bit,
and a stiff or chaotic run amplifies a last bit over its iterations. So only what varies is lifted (a single run
keeps all its constants, bit-identical to before), and ``TRAJOPT_COMPILE_ONCE=0`` compiles every program with its
constants. benchmarks/bench_compile_once.txt records the differences seen.

Higher-order primitives are evaluated again through JAX's own API, so their bodies' constants can be inputs too:
``scan`` (`jax.lax.scan`), ``while`` (`jax.lax.while_loop`), ``cond`` (`jax.lax.switch`); calls (``jit``,
``closed_call``, ``remat``, and the primal of a ``custom_jvp_call`` / ``custom_vjp_call``: nothing is differentiated
after this point) are inlined. Any other primitive is bound as it was traced, its body's constants left as they are
(still correct, only not shared).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore

ENV = "TRAJOPT_COMPILE_ONCE"
"""``TRAJOPT_COMPILE_ONCE=0`` in the environment compiles every program with its constants, as traced."""

CACHE_SIZE = 64
"""The most compiled programs `CACHE` keeps (the least recently used is dropped first)."""

_CALLS = ("jit", "pjit", "closed_call", "core_call", "remat", "checkpoint", "remat2")
_CUSTOM = ("custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr")


def enabled() -> bool:
    """Whether programs are lifted (`ENV` is not "0", "false" or "off")."""
    import os

    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "off")


def _liftable(x: Any) -> bool:
    """A floating-point literal: a number, or an array JAX wrote into the jaxpr (an array closed over that it did
    not is decided by `_liftable_const`)."""
    aval = getattr(x, "aval", None)
    return (aval is not None and getattr(aval, "shape", None) is not None
            and jnp.issubdtype(getattr(aval, "dtype", np.int32), jnp.floating))


def _liftable_const(c: Any) -> bool:
    return (isinstance(c, (np.ndarray, jax.Array)) and jnp.issubdtype(c.dtype, jnp.floating)
            and not isinstance(c, jax.core.Tracer))


def _sub(eqn) -> Optional[jcore.ClosedJaxpr]:
    """The body of a call-like equation (inlined), or None."""
    for name in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        j = eqn.params.get(name)
        if isinstance(j, jcore.ClosedJaxpr):
            return j
        if isinstance(j, jcore.Jaxpr):
            return jcore.ClosedJaxpr(j, ())
    return None


def _liftable_in(v) -> bool:
    return isinstance(v, jcore.Literal) and _liftable(v)


def _bodies(eqn) -> list:
    """The sub-jaxprs `_Evaluator` evaluates again (and so lifts): a call's or custom rule's primal body, a scan's,
    a while loop's condition and body, a cond's branches; none for any other primitive."""
    name, p = eqn.primitive.name, eqn.params
    if name in _CALLS or name in _CUSTOM:
        body = _sub(eqn)
        return [body] if body is not None else []
    if name == "scan":
        return [p["jaxpr"]]
    if name == "while":
        return [p["cond_jaxpr"], p["body_jaxpr"]]
    if name == "cond":
        return list(p["branches"])
    return []


def _walk_constants(closed: jcore.ClosedJaxpr) -> list:
    """Every floating-point constant of ``closed`` and of the bodies it evaluates again (`_bodies`), once each, in a
    fixed walk order, as (key, value, weak): a literal (key: its identity) or an array a closed jaxpr holds (key:
    the jaxpr's identity and the array's index). The i-th constant of two traces of one program is the same
    constant (its value may differ)."""
    seen: set = set()
    out: list = []

    def consts(c):
        for i, value in enumerate(c.consts):
            key = (id(c), i)
            if _liftable_const(value) and key not in seen:
                seen.add(key)
                out.append((key, value, False))

    def walk(c):
        consts(c)
        for eqn in c.jaxpr.eqns:
            for v in eqn.invars:
                if _liftable_in(v) and id(v) not in seen:
                    seen.add(id(v))
                    out.append((id(v), v.val, bool(getattr(v.aval, "weak_type", False))))
            for body in _bodies(eqn):
                walk(body)

    walk(closed)
    return out


class _Evaluator:
    """Evaluates a closed jaxpr by binding its equations again, the literals in ``inputs`` ({id(literal): traced
    value}) read from there; the bodies of `_bodies` are evaluated the same way through JAX's API. A literal is
    found by its identity, not by the order it is met, so a body JAX traces twice (a scan's, when it promotes a
    weakly typed carry) reads the same input."""

    def __init__(self, inputs: dict):
        self.inputs = inputs

    def literal(self, lit):
        return self.inputs.get(id(lit), lit.val)

    def run(self, closed: jcore.ClosedJaxpr, consts: Sequence[Any], args: Sequence[Any]) -> list:
        jaxpr = closed.jaxpr
        env: dict = {}

        def read(v):
            if isinstance(v, jcore.Literal):
                return self.literal(v)
            return env[v]

        for var, val in zip(jaxpr.constvars, consts):
            env[var] = val
        for var, val in zip(jaxpr.invars, args):
            env[var] = val
        for eqn in jaxpr.eqns:
            name = eqn.primitive.name
            invals = [read(v) for v in eqn.invars]
            outs = self.equation(eqn, invals)
            if not eqn.primitive.multiple_results and name not in _CALLS + _CUSTOM + ("scan", "while", "cond"):
                outs = [outs]
            for var, val in zip(eqn.outvars, outs):
                if not isinstance(var, jcore.DropVar):
                    env[var] = val
        return [read(v) for v in jaxpr.outvars]

    def closed(self, closed: jcore.ClosedJaxpr, args: Sequence[Any]) -> list:
        consts = [self.inputs.get((id(closed), i), c) for i, c in enumerate(closed.consts)]
        return self.run(closed, consts, args)

    def equation(self, eqn, invals: list):
        name, p = eqn.primitive.name, eqn.params
        if name in _CALLS or name in _CUSTOM:
            body = _sub(eqn)
            if body is not None:
                return self.closed(body, invals)
        if name == "scan":
            return self._scan(p, invals)
        if name == "while":
            return self._while(p, invals)
        if name == "cond":
            return self._cond(p, invals)
        return eqn.primitive.bind(*invals, **p)

    def _scan(self, p, invals):
        nc, nk = p["num_consts"], p["num_carry"]
        consts, init, xs = invals[:nc], list(invals[nc:nc + nk]), list(invals[nc + nk:])
        body = p["jaxpr"]

        def f(carry, x):
            out = self.closed(body, [*consts, *carry, *x])
            return out[:nk], out[nk:]

        carry, ys = jax.lax.scan(f, init, xs, length=p["length"], reverse=p["reverse"], unroll=p["unroll"])
        return [*carry, *ys]

    def _while(self, p, invals):
        cn, bn = p["cond_nconsts"], p["body_nconsts"]
        cconsts, bconsts, init = invals[:cn], invals[cn:cn + bn], invals[cn + bn:]
        cond_j, body_j = p["cond_jaxpr"], p["body_jaxpr"]

        def cond(carry):
            return self.closed(cond_j, [*cconsts, *carry])[0]

        def body(carry):
            return self.closed(body_j, [*bconsts, *carry])

        return list(jax.lax.while_loop(cond, body, list(init)))

    def _cond(self, p, invals):
        index, ops = invals[0], invals[1:]
        branches = [lambda *ops, b=b: self.closed(b, ops) for b in p["branches"]]
        return list(jax.lax.switch(index, branches, *ops))


@dataclass(frozen=True)
class Constants:
    """The floating-point constants of a traced program (`constants`), in a fixed order (`_walk_constants`):
    ``values`` [(dtype, weak, value)], numbers and arrays."""

    values: tuple
    structure: str = ""

    @property
    def shape(self) -> tuple:
        """What must match for two traces to be one program with other numbers: the program's operations and their
        result types (``structure``), each constant's dtype, weak type and shape."""
        return self.structure, tuple((dtype, weak, np.shape(v)) for dtype, weak, v in self.values)

    def differing(self, other: "Constants") -> Optional["Positions"]:
        """The positions where ``other``'s constants differ from these, or None when the two are not one program
        (another count, dtype or shape)."""
        if self.shape != other.shape:
            return None
        return Positions(frozenset(i for i, (a, b) in enumerate(zip(self.values, other.values))
                                   if np.asarray(a[2]).tobytes() != np.asarray(b[2]).tobytes()))


@dataclass(frozen=True)
class Positions:
    """Which constants of a program become its inputs: indices into `Constants` ``values``."""

    indices: frozenset = frozenset()

    def __bool__(self) -> bool:
        return bool(self.indices)

    def __or__(self, other: "Positions") -> "Positions":
        return Positions(self.indices | other.indices)


def constants(fn: Callable, *args) -> Constants:
    """Trace ``fn(*args)`` (nothing runs or compiles) and return its floating-point constants."""
    closed = jax.make_jaxpr(fn)(*args)
    found = _walk_constants(closed)
    return Constants(tuple((str(np.asarray(v).dtype), weak, np.asarray(v)) for _, v, weak in found),
                     _structure(closed))


def _structure(closed: jcore.ClosedJaxpr) -> str:
    """sha256 of the operations of ``closed`` (and of the bodies `_bodies` finds) and their result types."""
    h = hashlib.sha256()

    def walk(c):
        for eqn in c.jaxpr.eqns:
            h.update(eqn.primitive.name.encode())
            h.update(repr([str(v.aval) for v in eqn.outvars]).encode())
            for body in _bodies(eqn):
                walk(body)

    walk(closed)
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class Lifted:
    """A traced function with some of its constants lifted out (`lift`): ``fn(inputs, *args)`` computes what the
    traced function computed on ``args``, reading those constants from ``inputs`` ({(dtype, weak): vector} of the
    scalars, and a tuple of the arrays), which hold the values it was traced with. ``n_lifted``: how many."""

    fn: Callable
    inputs: tuple
    n_lifted: int


def _vector(values, group: tuple) -> jax.Array:
    """The literals of one group as one vector of their dtype (or the runs' vectors stacked, `stack_inputs`), weakly
    typed where they were (as a Python number is), so that every operation reading one types its result as it did."""
    dtype, weak = group
    v = np.asarray(values, dtype=np.dtype(dtype))
    if not weak:
        return jnp.asarray(v)
    from jax._src.lax.lax import _convert_element_type  # JAX's own way to make a weakly typed array

    return _convert_element_type(v, np.dtype(dtype), weak_type=True)


def lift(fn: Callable, *args, positions: Optional[Positions] = None) -> Lifted:
    """Trace ``fn(*args)`` and lift out its constants at ``positions`` (`Positions`; None: every floating-point
    constant), see the module docstring."""
    closed, shapes = jax.make_jaxpr(fn, return_shape=True)(*args)
    out_tree = jax.tree_util.tree_structure(shapes)
    found = _walk_constants(closed)
    chosen = range(len(found)) if positions is None else sorted(i for i in positions.indices if i < len(found))
    groups: dict = {}  # (dtype, weak) -> [key]: the numbers, one vector per group
    values: dict = {}
    array_keys: list = []  # the arrays, each an input
    for i in chosen:
        key, value, weak = found[i]
        if np.shape(value):
            array_keys.append(key)
        else:
            groups.setdefault((str(np.asarray(value).dtype), weak), []).append(key)
        values[key] = value
    scalars = {g: _vector([values[k] for k in keys], g) for g, keys in groups.items()}
    arrays = tuple(jnp.asarray(values[k]) for k in array_keys)

    def lifted(inputs, *a):
        scalars_in, arrays_in = inputs
        given = dict(zip(array_keys, arrays_in))
        for g, keys in groups.items():
            vector = scalars_in[g]
            given.update((k, vector[j]) for j, k in enumerate(keys))
        ev = _Evaluator(given)
        out = ev.run(closed, [given.get((id(closed), i), c) for i, c in enumerate(closed.consts)],
                     jax.tree_util.tree_leaves(a))
        return jax.tree_util.tree_unflatten(out_tree, out)

    return Lifted(fn=lifted, inputs=(scalars, arrays), n_lifted=len(chosen))


def stack_inputs(inputs: Sequence[tuple]) -> tuple:
    """The ``inputs`` of several runs of one lifted program (each a `Lifted` ``inputs`` of the same `lift`: the same
    groups and arrays), stacked for `over_runs`: every vector ``[n]`` becomes ``[R, n]`` and every array ``[...]`` ``[R, ...]``, one
    row per run, each group keeping its dtype and weak type."""
    first_scalars, first_arrays = inputs[0]
    scalars = {g: _vector(np.stack([np.asarray(i[0][g]) for i in inputs]), g) for g in first_scalars}
    arrays = tuple(jnp.asarray(np.stack([np.asarray(i[1][j]) for i in inputs])) for j in range(len(first_arrays)))
    return scalars, arrays


def over_runs(fn: Callable, runs: int, rows: Sequence[bool]) -> Callable:
    """One program for ``runs`` runs of a lifted program ``fn(inputs, *args)`` (`Lifted` ``fn``) that differ in their
    inputs and in some arguments:

        g(stack_inputs([in_1, ..., in_R]), *args)[r] = fn(in_r, *args_r)       (jax.vmap over the runs)

    An argument marked in ``rows`` holds every run's rows one after another along its leading axis ([R * S, ...]:
    run r's are rows r S .. r S + S - 1, e.g. its seeds' states), and so does every result of ``g`` (``fn``'s results
    all lead with such rows); the others are the same for every run (e.g. the iteration numbers of a chunk)."""

    def split(a):
        return a.reshape((runs, a.shape[0] // runs) + tuple(a.shape[1:]))

    def g(inputs, *args):
        args = [jax.tree_util.tree_map(split, a) if r else a for a, r in zip(args, rows)]
        out = jax.vmap(fn, in_axes=(0, *[0 if r else None for r in rows]))(inputs, *args)
        return jax.tree_util.tree_map(lambda a: a.reshape((-1,) + tuple(a.shape[2:])), out)

    return g


class _Cache:
    """Compiled programs by the sha256 of their lowered text and compile options (least recently used dropped
    past `CACHE_SIZE`); thread-safe (the solver compiles on worker threads), and a program being compiled on one
    thread is waited for by another that asks for it (`claim`), not compiled twice at once."""

    def __init__(self):
        self._lock = threading.Lock()
        self._programs: dict[str, Any] = {}
        self._compiling: dict[str, threading.Event] = {}
        self.hits = 0
        self.misses = 0

    def claim(self, key: str) -> tuple[Any, Optional[threading.Event]]:
        """(the program ``key``, None) when it is kept; else (None, None) when this thread is to compile it (it is
        then marked as being compiled until `put` or `failed`), or (None, the event that the thread compiling it
        sets when done: then claim again)."""
        with self._lock:
            program = self._programs.pop(key, None)
            if program is not None:
                self._programs[key] = program  # most recently used last
                self.hits += 1
                return program, None
            event = self._compiling.get(key)
            if event is None:
                self._compiling[key] = threading.Event()
            return None, event

    def failed(self, key: str) -> None:
        """The program ``key`` did not compile: the threads waiting for it go on (and compile it themselves)."""
        with self._lock:
            event = self._compiling.pop(key, None)
        if event is not None:
            event.set()

    def put(self, key: str, program) -> None:
        with self._lock:
            event = self._compiling.pop(key, None)
            self.misses += 1
            self._programs[key] = program
            while len(self._programs) > CACHE_SIZE:
                self._programs.pop(next(iter(self._programs)))
        if event is not None:
            event.set()

    def clear(self) -> None:
        with self._lock:
            self._programs.clear()
            self.hits = self.misses = 0


CACHE = _Cache()
"""The compiled programs of this process (`compile`); ``CACHE.clear()`` forgets them."""


def program_key(lowered, options: Optional[dict] = None) -> str:
    """sha256 of a lowered program's text (without locations), its arguments' types (weak types included: a
    compiled program refuses a strongly typed argument where it was compiled for a weak one, and the text does not
    tell them apart), the structures of its arguments and results, and the options it is compiled with."""
    args = repr([str(getattr(a, "aval", None) or getattr(a, "_aval", None))
                 for a in jax.tree_util.tree_leaves(lowered.args_info)])
    # the structures of its arguments and results (two methods' states can be the same arrays in other classes: a
    # compiled program takes and returns only its own)
    args += repr((lowered.in_tree, lowered.out_tree))
    try:  # which arguments the program kept (jit drops unused ones from the text), and what it returns
        ca = lowered._lowering.compile_args
        args += repr((sorted(ca["kept_var_idx"]), [str(a) for a in ca["global_out_avals"]]))
    except (AttributeError, KeyError, TypeError):
        args += repr(id(lowered))  # unknown: this program only
    text = lowered.as_text()
    return hashlib.sha256("\n".join((text, args, repr(sorted((options or {}).items())))).encode()).hexdigest()


def host_callbacks(lowered) -> bool:
    """Whether a lowered program calls Python (a user's ``jax.pure_callback``, a host-callback count): two such
    programs can have the same text and call different functions. True when it cannot be told (JAX's lowering keeps
    the list in a private field)."""
    try:
        return bool(lowered._lowering.compile_args["host_callbacks"])
    except (AttributeError, KeyError, TypeError):
        return True


def compile(lowered, compile_fn: Callable[[Any], Any], options: Optional[dict] = None) -> tuple[Any, bool]:
    """(the compiled program, whether it came from `CACHE`): ``compile_fn(lowered)`` (which compiles with
    ``options``) unless a program with the same text, argument types and options was compiled in this process
    before."""
    if host_callbacks(lowered):  # the text names a callback by its place, not by what it calls: never shared
        return compile_fn(lowered), False
    key = program_key(lowered, options)
    while True:
        program, event = CACHE.claim(key)
        if program is not None:
            return program, True
        if event is None:
            break
        event.wait()  # another thread compiles it (then claimed above), or failed to (then compiled here)
    done = False
    try:
        program = compile_fn(lowered)
        CACHE.put(key, program)
        done = True
    finally:  # whatever stopped it (an error, a KeyboardInterrupt), the threads waiting for it go on
        if not done:
            CACHE.failed(key)
    return program, False


def probe(fn_a: Callable, fn_b: Callable, *args) -> Optional[Positions]:
    """Where the constants of ``fn_a(*args)`` and ``fn_b(*args)`` differ (traced, nothing compiles): what a grid
    over the two makes inputs. None when they are not one program with other numbers, or nothing differs."""
    differs = constants(fn_a, *args).differing(constants(fn_b, *args))
    return differs or None


def call(fn: Callable, *args, positions: Optional[Positions] = None):
    """``jax.jit(fn)(*args)``, with the constants at ``positions`` as inputs of a program shared through `CACHE`
    (`lift`, `compile`) when given and compile once is on (`enabled`)."""
    if positions and enabled():
        try:
            lifted = lift(fn, *args, positions=positions)
            lowered = jax.jit(lifted.fn).lower(lifted.inputs, *args)
        except Exception:  # noqa: BLE001 - a program JAX cannot evaluate again: compiled with its constants below
            pass
        else:
            program, _ = compile(lowered, lambda lowered: lowered.compile())
            return program(lifted.inputs, *args)
    return jax.jit(fn)(*args)
