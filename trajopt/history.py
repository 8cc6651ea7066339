"""The recorded history of a run: where it is kept (a `HistoryStore`: memory by default, `memory_store`; files mapped
into memory with `trajopt.runs.DiskHistory`), how `trajopt.solver.Prepared.run` allocates it once before the loop
runs (`allocate_history`: ``cost`` [S, K+1] and each info field [S, K]), fills the rows of a run whose every seed
had stopped (`repeat_rows`) and reads when each seed stopped spending (`quiet_from`), a block of iterations at a
time. The history is the only thing that grows with the number of iterations; the library never writes files.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from trajopt.compute import COUNT_FIELDS
from trajopt.loop import Layout
from trajopt.stats import column_blocks

HistoryStore = Callable[[str, tuple, np.dtype], np.ndarray]
"""``store(name, shape, dtype) -> array``: where `trajopt.solver.Prepared.run` keeps the recorded history. It is
called once per run for ``"cost"`` (shape [S, K+1]) and once for each info field (shape [S, K], or [S, K, ...]
for a field that is not a scalar), before the first chunk runs, and must return a writable array of exactly that
shape and dtype (its content may be uninitialised: every entry that is returned is written first). The result's
``cost`` and ``history`` are these arrays, or views of them (``history["value"]`` is a view of ``cost``)."""


def history_bytes(n_seeds: int, iterations: int, n_fields: int) -> int:
    """The estimated size of a recorded history: seeds x iterations x (info fields + the cost) x 8 bytes."""
    return n_seeds * iterations * (n_fields + 1) * 8


def memory_store(name: str, shape: tuple, dtype) -> np.ndarray:
    """The default `HistoryStore`: an uninitialised in-memory array of ``shape`` and ``dtype``."""
    return np.empty(shape, dtype)


def quiet_from(history: Mapping[str, np.ndarray], n_seeds: int, K: int) -> np.ndarray:
    """[S] the iteration from which each seed spent no simulator call (1 + its last row with a count; K when it spent
    in its last row), read a block of iterations at a time from the end."""
    fields = [history[f] for f in COUNT_FIELDS if f in history]
    quiet = np.zeros(n_seeds, np.int64)
    found = np.zeros(n_seeds, bool)
    if not fields or K == 0:
        return quiet
    for cols in reversed(list(column_blocks(fields[0]))):
        spent = np.zeros((n_seeds, cols.stop - cols.start), bool)
        for h in fields:
            spent |= np.nan_to_num(np.asarray(h[:, cols], float)) != 0
        last = np.where(spent.any(axis=1), cols.start + spent.shape[1] - np.argmax(spent[:, ::-1], axis=1), 0)
        quiet = np.where(found, quiet, last)
        found |= spent.any(axis=1)
        if found.all():
            break
    return quiet


def repeat_rows(history: dict, cost: np.ndarray, value_apart: bool, begin: int, end: int) -> None:
    """Rows begin..end-1 of every field (and of ``cost``) repeat row begin-1: the rest of a run whose every seed had
    stopped a chunk before ``begin``, what their steps would have recorded (a seed its method stopped records the same
    row at every later step, the method contract's ``stopped``; a seed over its budget its value and no calls; a
    non-finite seed blank rows)."""
    for values in history.values():
        values[:, begin:end] = values[:, begin - 1:begin]
    if value_apart:
        cost[:, begin:end] = history["value"][:, begin:end]


def allocate_history(store: HistoryStore, layout: Layout, n_seeds: int, iterations: int):
    """(cost [S, K+1], {field: [S, K, ...]}, value_apart) from ``store``, before the loop runs.

    ``history["value"]`` is a view of ``cost[:, :K]`` when their dtypes agree (always, unless a method's value and
    its problem's objective differ in precision); otherwise (``value_apart``) it is its own array and the loop
    copies it into ``cost`` chunk by chunk. The dtypes are those the arrays had when they were concatenated
    after the loop: the fields' own, ``cost`` the common type of ``value`` and the final evaluation; with
    K = 0 every field is float64 (nothing was recorded)."""
    fields = layout.fields
    if iterations == 0:
        dtypes = {f: (np.dtype(np.float64), ()) for f in fields}
    else:
        dtypes = dict(fields)
    value_dtype = dtypes["value"][0]
    cost_dtype = np.result_type(value_dtype, layout.final_dtype)
    cost = _from_store(store, "cost", (n_seeds, iterations + 1), cost_dtype)
    value_apart = cost_dtype != value_dtype
    history = {}
    for f, (dtype, shape) in dtypes.items():
        if f == "value" and not value_apart:
            history[f] = cost[:, :iterations]
        else:
            history[f] = _from_store(store, f, (n_seeds, iterations) + tuple(shape), dtype)
    return cost, history, value_apart


def _from_store(store: HistoryStore, name: str, shape: tuple, dtype) -> np.ndarray:
    """``store(name, shape, dtype)``, checked: a writable array of exactly that shape and dtype."""
    dtype = np.dtype(dtype)
    array = store(name, shape, dtype)
    if not isinstance(array, np.ndarray) or array.shape != shape or array.dtype != dtype \
            or not array.flags.writeable:
        found = (f"{type(array).__name__} of shape {getattr(array, 'shape', '?')}, dtype {getattr(array, 'dtype', '?')}"
                 + ("" if not isinstance(array, np.ndarray) or array.flags.writeable else ", read-only"))
        raise ValueError(f"history_store({name!r}, {shape}, {dtype}) returned a {found}; expected a writable "
                         f"numpy array of shape {shape} and dtype {dtype}")
    return array
