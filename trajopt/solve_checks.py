"""What a run of the solver refuses before anything compiles, and what user code that fails later becomes.

**Checked before anything compiles** (`check_run`): the problem (``U0`` a non-empty finite float array, a callable
``objective``), the method (``init`` and ``step``), the key (one PRNG key), the iterations (an integer in
0..`MAX_ITERATIONS`), the seeds (distinct integers in 0..2**32 - 1, at most `MAX_SEEDS`, with iterations x seeds
<= `MAX_HISTORY`), the chunk (None or an integer in 1..`MAX_ITERATIONS`), the budget and the callbacks
(`check_run_options`): a ValueError or TypeError whose message names the argument, what was found and what is
allowed (the bounds are those of a problem file, `trajopt.limits`).

**User code that fails later** (a system, oracle, policy or method that raises while the loop is traced, compiled or
run: a shape error under vmap, a Python ``if`` on a traced value, an XLA runtime error) raises `SolveError`
(`user_code` turns any exception into one), which names the variant and the stage and keeps
the original as ``__cause__``. `trajopt.solver` runs the loop; these are its rules on what it is given.
"""

from __future__ import annotations

import itertools
import math
from contextlib import contextmanager
from typing import Any, Iterable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from trajopt.compute import StepCosts
from trajopt.limits import MAX_HISTORY, MAX_ITERATIONS, MAX_SEED, MAX_SEEDS
from trajopt.methods.base import Method
from trajopt.problem import Problem


class SolveError(RuntimeError):
    """User code (a system, policy, oracle or method) that raised while a variant's loop was traced, compiled or
    run: a shape error under vmap, a Python ``if`` on a traced value under grad, an XLA runtime error.

    Attributes:
        variant: the run's name (a variant's name, or the method's label).
        stage: "tracing" (the method's init and step traced and lowered, and its initial state computed),
            "compiling" (XLA) or "running" (a chunk of the loop, or the final evaluation).
        reason: ``"<error type>: <first line of its message>"``.
        results: {name: Result} of the variants that finished before this one (`trajopt.compare` fills it; empty
            otherwise).

    ``str(error)`` is one line: ``variant 'NAME' failed while STAGE: TYPE: first line``; the original exception
    is ``__cause__`` (its full traceback is there)."""

    def __init__(self, variant: str, stage: str, error: BaseException):
        self.variant, self.stage, self.results = variant, stage, {}
        self.reason = f"{type(error).__name__}: {_first_line(error)}".rstrip(": ")
        super().__init__(f"variant {variant!r} failed while {stage}: {self.reason}")


def _first_line(e: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message, at most ``limit`` characters. An error raised in a host
    callback reaches Python as XLA's runtime error, whose message is a header, the callback's traceback and then
    its exception: the header and that exception's first line ("INTERNAL: CpuCallback error calling callback:
    RuntimeError: ...")."""
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    line = lines[0].strip() if lines else ""
    marker = "Traceback (most recent call last)"
    if marker in line:
        frames = [i for i, ln in enumerate(lines) if ln.lstrip().startswith("File ")]
        after = [ln for ln in lines[frames[-1] + 1:] if not ln.startswith((" ", "\t"))] if frames else []
        if after:
            line = f"{line.split(marker)[0].strip()} {after[0].strip()}".strip()
    return line if len(line) <= limit else line[:limit - 3] + "..."


@contextmanager
def user_code(variant: str, stage: str):
    """Raise any exception from inside as a `SolveError` naming ``variant`` and ``stage`` (the original its cause)."""
    try:
        yield
    except SolveError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever user code raises is reported as one line, the cause kept
        raise SolveError(variant, stage, e) from e


def shown(value: Any) -> str:
    """How a refused argument is shown: its repr (on one line, shortened) and its type, "3.0 (float)"."""
    text = " ".join(repr(value).split())
    return f"{text if len(text) <= 60 else text[:57] + '...'} ({type(value).__name__})"


def is_integer(v: Any) -> bool:
    """A Python or NumPy integer, or a 0-d integer array (``jnp.int32(3)``); not a bool."""
    if isinstance(v, (bool, np.bool_)):
        return False
    if isinstance(v, (int, np.integer)):
        return True
    dtype, shape = getattr(v, "dtype", None), getattr(v, "shape", None)
    try:
        return dtype is not None and tuple(shape) == () and np.dtype(dtype).kind in "iu"
    except TypeError:  # not a NumPy dtype (a PRNG key's)
        return False


SEEDS_ALLOWED = (f"a non-empty sequence of at most {MAX_SEEDS:,} distinct integers in 0..{MAX_SEED} (2**32 - 1: "
                 "seeds are folded into the key as uint32, so a larger one would repeat the noise of its value "
                 "mod 2**32)")


def check_seeds(seeds: Iterable[int], argument: str = "seeds") -> np.ndarray:
    """[S] int64 seed numbers from ``seeds`` (a sequence, range or integer array), or a ValueError/TypeError that
    names ``argument``, what was found and `SEEDS_ALLOWED`."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise TypeError(f"{argument}: found {shown(seeds)}, allowed: {SEEDS_ALLOWED}"
                        + (f"; range({seeds}) for {seeds} seeds" if is_integer(seeds) and seeds > 0 else ""))
    if hasattr(seeds, "dtype") and hasattr(seeds, "shape"):  # a numpy or JAX array
        try:
            array = np.asarray(seeds)
        except TypeError:  # an array NumPy cannot hold (PRNG keys)
            raise TypeError(f"{argument}: found {shown(seeds)}, allowed: {SEEDS_ALLOWED}") from None
        if array.ndim != 1 or array.dtype.kind not in "iu":
            raise TypeError(f"{argument}: found an array of shape {list(array.shape)} and dtype {array.dtype}, "
                            f"allowed: {SEEDS_ALLOWED}")
        values = array.tolist()
    else:
        values = list(itertools.islice(seeds, MAX_SEEDS + 1))  # a huge iterable is not listed past the bound
    if not values or len(values) > MAX_SEEDS:
        found = "none" if not values else f"more than {MAX_SEEDS:,}"
        raise ValueError(f"{argument}: found {found}, allowed: {SEEDS_ALLOWED}")
    seen = set()
    for i, v in enumerate(values):
        if not is_integer(v):
            raise TypeError(f"{argument}: found {shown(v)} at position {i}, allowed: {SEEDS_ALLOWED}")
        if not 0 <= int(v) <= MAX_SEED:
            raise ValueError(f"{argument}: found seed {int(v)}, allowed: {SEEDS_ALLOWED}")
        if int(v) in seen:
            raise ValueError(f"{argument}: found seed {int(v)} twice, allowed: {SEEDS_ALLOWED}")
        seen.add(int(v))
    return np.asarray([int(v) for v in values], dtype=np.int64)


def check_iterations(iterations: Any, argument: str = "iterations") -> int:
    """``iterations`` as an int, or a ValueError/TypeError: an integer in 0..`MAX_ITERATIONS`."""
    allowed = f"an integer in 0..{MAX_ITERATIONS:,}"
    if not is_integer(iterations):
        raise TypeError(f"{argument}: found {shown(iterations)}, allowed: {allowed}")
    if not 0 <= int(iterations) <= MAX_ITERATIONS:
        raise ValueError(f"{argument}: found {int(iterations)}, allowed: {allowed}")
    return int(iterations)


def check_chunk(chunk: Any) -> Optional[int]:
    """``chunk`` as an int (or None), or a ValueError/TypeError: None or an integer in 1..`MAX_ITERATIONS`."""
    if chunk is None:
        return None
    allowed = f"None (about a tenth of the run) or an integer in 1..{MAX_ITERATIONS:,}"
    if not is_integer(chunk):
        raise TypeError(f"chunk: found {shown(chunk)}, allowed: {allowed}")
    if not 1 <= int(chunk) <= MAX_ITERATIONS:
        raise ValueError(f"chunk: found {int(chunk)}, allowed: {allowed}")
    return int(chunk)


def check_key(key: Any) -> None:
    """A TypeError unless ``key`` is one PRNG key: ``jax.random.PRNGKey(n)`` (uint32 [2]) or ``jax.random.key(n)``."""
    allowed = "one PRNG key: jax.random.PRNGKey(n) (a uint32 array of shape (2,)) or jax.random.key(n)"
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    if dtype is None or shape is None:
        raise TypeError(f"key: found {shown(key)}, allowed: {allowed}")
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        ok = tuple(shape) == ()
    else:  # a raw key: uint32 of the default implementation's shape ((2,) for threefry)
        ok = tuple(shape) == jax.eval_shape(lambda: jax.random.PRNGKey(0)).shape and np.dtype(dtype) == np.uint32
    if not ok:
        raise TypeError(f"key: found an array of shape {list(shape)} and dtype {dtype}, allowed: {allowed}")


def check_method(method: Any, argument: str = "method") -> None:
    """A TypeError unless ``method`` has callable ``init`` and ``step`` (`trajopt.methods.base`)."""
    if not (callable(getattr(method, "init", None)) and callable(getattr(method, "step", None))):
        raise TypeError(f"{argument}: found {shown(method)}, allowed: a method with init(key, problem, U0) and "
                        "step(key, problem, state) (trajopt.GradientMethod(oracle, optimizer), trajopt.METHODS, or "
                        "one of your own: see trajopt.methods.base)")


def check_problem(problem: Any) -> None:
    """A TypeError/ValueError unless ``problem`` has a non-empty finite float array ``U0`` and a callable
    ``objective`` (a `trajopt.Problem`)."""
    U0 = getattr(problem, "U0", None)
    if U0 is None or not callable(getattr(problem, "objective", None)):
        raise TypeError(f"problem: found {shown(problem)}, allowed: a trajopt.Problem (U0 and objective; "
                        "trajopt.trajectory_problem or trajopt.one_step_problem build one)")
    allowed = "a non-empty finite float array (the initial guess U0, shape [T, m])"
    if not (hasattr(U0, "dtype") and hasattr(U0, "shape")):
        raise TypeError(f"problem.U0: found {shown(U0)}, allowed: {allowed}")
    if not jnp.issubdtype(U0.dtype, jnp.floating):
        raise TypeError(f"problem.U0: found an array of dtype {U0.dtype}, allowed: {allowed}")
    if int(np.prod(U0.shape)) == 0:
        raise ValueError(f"problem.U0: found an array of shape {list(U0.shape)}, allowed: {allowed}")
    finite = np.isfinite(np.asarray(U0))
    if not finite.all():
        where = tuple(int(i) for i in np.argwhere(~finite)[0])
        raise ValueError(f"problem.U0: found {np.asarray(U0)[where]} at index {list(where)}, allowed: {allowed}")


def _check_callable(value: Any, argument: str, allowed: str) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{argument}: found {shown(value)}, allowed: None or {allowed}")


def check_budget(budget: Any, step_costs: Any) -> None:
    """A ValueError/TypeError unless ``budget`` is None or a finite number > 0 (forward-step equivalents per seed)
    and ``step_costs`` is None or a `trajopt.compute.StepCosts` (required with a budget: it converts the counts)."""
    if step_costs is not None and not isinstance(step_costs, StepCosts):
        raise TypeError(f"step_costs: found {shown(step_costs)}, allowed: None or a trajopt.compute.StepCosts")
    if budget is None:
        return
    allowed = "None or a finite number > 0 (forward-step equivalents per seed; trajopt.compute)"
    if isinstance(budget, (bool, np.bool_)) or not isinstance(budget, (int, float, np.integer, np.floating)):
        raise TypeError(f"budget: found {shown(budget)}, allowed: {allowed}")
    if not (math.isfinite(float(budget)) and float(budget) > 0):
        raise ValueError(f"budget: found {float(budget)!r}, allowed: {allowed}")
    if step_costs is None:
        raise TypeError("step_costs: found None with a budget, allowed: a trajopt.compute.StepCosts (a backward pass "
                        "and a linearisation in forward steps: trajopt.compute.measure_step_costs, or given)")


def check_run(problem: Problem, method: Method, *, key: jax.Array, iterations: int, seeds: Iterable[int],
              chunk: Optional[int] = None, budget: Any = None, step_costs: Any = None
              ) -> tuple[int, np.ndarray, Optional[int]]:
    """Check the arguments of one run of `solve` or `prepare` before anything is traced or compiled: ``(iterations,
    seeds [S] int64, chunk)``, or a ValueError/TypeError naming the argument, what was found and what is allowed
    (`check_problem`, `check_method`, `check_key`, `check_iterations`, `check_seeds`, `check_chunk`,
    `check_budget`, and iterations x seeds <= `MAX_HISTORY`, the recorded history's bound)."""
    check_problem(problem)
    check_method(method)
    check_key(key)
    check_budget(budget, step_costs)
    iterations = check_iterations(iterations)
    seeds_arr = check_seeds(seeds)
    if iterations * len(seeds_arr) > MAX_HISTORY:
        raise ValueError(f"iterations: found {iterations:,} iterations x {len(seeds_arr):,} seeds = "
                         f"{iterations * len(seeds_arr):,}, allowed: iterations x seeds <= {MAX_HISTORY:,} (the "
                         "recorded history, about 100 bytes per iteration and seed)")
    return iterations, seeds_arr, check_chunk(chunk)


def check_run_options(on_chunk, should_stop, name, history_store) -> None:
    """TypeErrors for the callbacks and name of `solve` / `Prepared.run`."""
    _check_callable(on_chunk, "on_chunk", "a function on_chunk(done, total)")
    _check_callable(should_stop, "should_stop", "a function should_stop() -> bool")
    _check_callable(history_store, "history_store", "a function store(name, shape, dtype) -> array (a HistoryStore)")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name: found {shown(name)}, allowed: None or a string")

