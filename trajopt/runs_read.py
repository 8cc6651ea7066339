"""Reading a run folder back (`read_run`) into the `trajopt.result.Result` objects the figures take from memory.

Readers trust no file: each is opened with `trajopt.runs_files.open_member` (no link out of its folder, no FIFO
or device); result.json (`read_result`), every line of metrics.jsonl (`read_metrics`) and the arrays of
trajectory.npz (`read_trajectories`, `check_trajectories`) are checked against each other. What cannot be read is
a `trajopt.runs_files.RunFolderError` naming the file and what was found; what can be read around (missing metrics
lines, a missing trajectory file) is read, with a note (`Run.notes`). Run folders written before variants existed
(keys ``oracles`` and ``oracle``) are still read.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from trajopt.runs_files import (
    CONFIG, DERIVED_FIELDS, METRICS, RESULT, TRAJECTORY, RunFolderError, is_int, is_number, open_member, read_text,
    short_repr,
)
from trajopt.runs_summary import step_costs_of, variant_entries
from trajopt.history import memory_store
from trajopt.result import Result
from trajopt.stats import nan_band_columns
from trajopt.tomlio import MAX_CONFIG_BYTES  # what `--from` reads back: the same cap

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True, eq=False)
class Run:
    """A run folder read back.

    Attributes:
        path: the folder.
        result: result.json as a dict (``result["variants"]``: the per-variant summaries).
        config: config.toml as a dict.
        variants: variant names in run order.
        series: {variant: {field: [S, K+1] array}} from metrics.jsonl: cost, rollouts, gradients, seconds and
            every other field the lines carry (NaN where null).
        results: {variant: `Result`} rebuilt from the folder (``method`` is None; the timings are per
            iteration), so figures are drawn from a folder exactly as from a run in memory.
        notes: what the reader found missing or out of place and read around, one sentence each naming the file
            (missing metrics lines, a missing trajectory file, ...); empty for a folder as trajopt wrote it.
    """

    path: Path
    result: dict
    config: dict
    variants: list[str]
    series: dict[str, dict[str, np.ndarray]]
    results: dict[str, Result]
    notes: tuple[str, ...] = ()

    def trajectories(self) -> dict[str, np.ndarray]:
        return read_trajectories(self.path)


def read_run(path: str | Path, store=None) -> Run:
    """Read a run folder written by `trajopt.runs_write.write_run`. A missing, truncated or foreign file raises
    `RunFolderError` naming it. ``store`` (a `trajopt.history.HistoryStore`, default memory) holds the arrays read from
    metrics.jsonl: a `trajopt.runs_files.DiskHistory` maps them to files, for a history larger than memory."""
    path = Path(path)
    if not path.is_dir():
        raise RunFolderError(f"{path}: not a folder")
    result = read_result(path)
    config = read_config(path, required=False)
    entries = variant_entries(result)
    variants = list(entries)
    K, seeds = result["iterations"], result["seeds"]
    # a variant may have run its own number of iterations (an equal-budget compare): its entry says how many
    own = {v: int(entries[v].get("iterations", K)) for v in variants}
    notes: list[str] = []
    try:
        series = read_metrics(path / METRICS, variants, seeds, own, store, notes)
    except RunFolderError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, OSError) as e:
        raise RunFolderError(f"{path / METRICS}: a line is truncated or not written by trajopt ({type(e).__name__}: "
                             f"{str(e)[:200]})") from None
    if os.path.lexists(path / TRAJECTORY):
        traj = check_trajectories(path / TRAJECTORY, read_trajectories(path), variants, len(seeds), notes)
    else:
        traj = {}
        notes.append(f"{path / TRAJECTORY}: missing; the trajectories are not drawn")
    results = {v: _rebuild_result(v, entries[v], series[v], traj, seeds, own[v], store, result) for v in variants}
    return Run(path=path, result=result, config=config, variants=variants, series=series, results=results,
               notes=tuple(notes))


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` holds a result.json (in any form: what it is and whether it reads is `read_result`'s to say,
    naming the file, where "not a run folder" would mislead)."""
    return os.path.lexists(Path(path) / RESULT)


def read_result(path: str | Path) -> dict:
    """result.json of a run folder, checked for the keys readers use (a RunFolderError naming the file otherwise)."""
    file = Path(path) / RESULT
    try:
        result = json.loads(read_text(file))
    except json.JSONDecodeError as e:
        raise RunFolderError(f"{file}: not valid JSON, truncated or not written by trajopt ({e})") from None
    except RecursionError:
        raise RunFolderError(f"{file}: nested deeper than any file trajopt writes") from None
    if not isinstance(result, dict):
        raise RunFolderError(f"{file}: found a JSON {type(result).__name__}, expected an object (a trajopt run summary)")
    if result.get("verb") == "mpc":  # a closed-loop run folder: its own report (trajopt mpc --report), not these readers'
        raise RunFolderError(f"{file}: a closed-loop run (trajopt mpc), allowed: the run folder of trajopt compare or "
                             "solve (a closed-loop run's report is `trajopt mpc ... --report`: report.html in its folder)")
    K, seeds, entries = result.get("iterations"), result.get("seeds"), variant_entries(result)
    if isinstance(K, bool) or not isinstance(K, int) or not 0 <= K <= 10**7:
        raise RunFolderError(f"{file}: 'iterations' is {K!r}, expected an integer in 0..10000000")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(x, int) and not isinstance(x, bool) for x in seeds) \
            or len(seeds) > 100_000:
        raise RunFolderError(f"{file}: 'seeds' is {short_repr(seeds)}, expected a non-empty list of seed numbers")
    if len(set(seeds)) != len(seeds):
        raise RunFolderError(f"{file}: 'seeds' is {short_repr(seeds)}, a seed repeated; expected distinct seed numbers")
    if not isinstance(entries, dict) or not entries:
        raise RunFolderError(f"{file}: no 'variants' table, expected one entry per variant")
    for name, e in entries.items():
        if not isinstance(e, dict) or not isinstance(e.get("status"), list) or len(e["status"]) != len(seeds) \
                or not all(isinstance(x, str) for x in e["status"]):
            raise RunFolderError(f"{file}: variants.{name}: expected a table with a 'status' list of {len(seeds)} strings")
        for key in ("final_cost", "best_cost"):  # every reader uses them: required
            v = e.get(key)
            if not isinstance(v, list) or len(v) != len(seeds) or not all(x is None or is_number(x) for x in v):
                raise RunFolderError(f"{file}: variants.{name}.{key}: expected a list of {len(seeds)} numbers, found "
                                     f"{short_repr(v)}")
        v = e.get("failed_at")
        if v is not None and (not isinstance(v, list) or len(v) != len(seeds)
                              or not all(x is None or (isinstance(x, int) and not isinstance(x, bool)) for x in v)):
            raise RunFolderError(f"{file}: variants.{name}.failed_at: expected a list of {len(seeds)} iteration "
                                 f"numbers (or null), found {short_repr(v)}")
        for key in ("run_seconds", "compile_seconds"):
            v = e.get(key)
            if v is not None and not is_number(v):
                raise RunFolderError(f"{file}: variants.{name}.{key}: expected a number of seconds, found "
                                     f"{short_repr(v)}")
        it = e.get("iterations", K)
        if isinstance(it, bool) or not isinstance(it, int) or not 0 <= it <= K:
            raise RunFolderError(f"{file}: variants.{name}.iterations is {it!r}, expected an integer in 0..{K}")
    return result


def read_config(path: str | Path, *, required: bool = True) -> dict:
    """config.toml of a run folder (the resolved configuration); {} when absent and not `required`."""
    file = Path(path) / CONFIG
    if not os.path.lexists(file) and not required:
        return {}
    try:
        config = tomllib.loads(read_text(file, MAX_CONFIG_BYTES))
    except tomllib.TOMLDecodeError as e:
        raise RunFolderError(f"{file}: not valid TOML, truncated or not written by trajopt ({e})") from None
    except RecursionError:
        raise RunFolderError(f"{file}: nested deeper than any file trajopt writes") from None
    if required and not isinstance(config.get("system"), dict):
        raise RunFolderError(f"{file}: no [system] table, not a resolved trajopt configuration")
    return config


def read_trajectories(path: str | Path, *, required: bool = True) -> dict[str, np.ndarray]:
    """trajectory.npz of a run folder as {``<variant>/U``: array, ...}; {} when absent and not `required`.
    A truncated or foreign file is a RunFolderError naming it (never a pickle: object arrays are refused)."""
    file = Path(path) / TRAJECTORY
    if not os.path.lexists(file):
        if required:
            raise RunFolderError(f"{file}: missing (not a run folder, or one written without trajectories)")
        return {}
    with open_member(file) as f:  # a regular file inside the folder (never a FIFO, a device, a link out)
        try:
            with np.load(f, allow_pickle=False) as data:
                if not hasattr(data, "files"):
                    raise RunFolderError(f"{file}: a single array, expected an .npz archive of <variant>/U arrays")
                out = {k: data[k] for k in data.files}
        except RunFolderError:
            raise
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, zipfile.LargeZipFile, MemoryError,
                NotImplementedError, RecursionError) as e:  # NotImplementedError: a zip compression numpy cannot read
            raise RunFolderError(f"{file}: cannot be read, truncated or not written by trajopt ({type(e).__name__}: "
                                 f"{str(e)[:200]})") from None
    for k, a in out.items():
        if a.dtype.kind not in "fiu":
            raise RunFolderError(f"{file}: {k} holds {a.dtype} values, expected numbers")
    return out


def check_trajectories(file: Path, traj: Mapping[str, np.ndarray], variants: list[str], n_seeds: int,
                       notes: list | None = None) -> dict[str, np.ndarray]:
    """The arrays of trajectory.npz (``traj``) that readers use, checked against result.json: each ``<variant>/U``
    and ``<variant>/X`` of a listed variant has one entry per seed (``n_seeds`` first) and at least one more
    axis, and every variant's U (and X) has the same shape (one problem's decisions); otherwise a
    `RunFolderError` naming the file, the array and its shape. Arrays of no listed variant are left out, and a
    variant without a U is read without one, each with a sentence appended to ``notes``."""
    out, ignored, shapes = {}, [], {"U": {}, "X": {}}
    for key, a in traj.items():
        name, _, kind = key.rpartition("/")
        if name not in variants or kind not in shapes:
            ignored.append(key)
            continue
        if a.ndim < 2 or a.shape[0] != n_seeds:
            raise RunFolderError(f"{file}: {key} has shape {list(a.shape)}, expected [{n_seeds}, ...] (one "
                                 "entry per seed of result.json)")
        shapes[kind][name] = a.shape
        out[key] = a
    for kind, by in shapes.items():
        if len(set(by.values())) > 1:
            raise RunFolderError(f"{file}: the variants' {kind} have different shapes ("
                                 + ", ".join(f"{n}: {list(s)}" for n, s in by.items())
                                 + "); the variants of one run solve one problem")
    for name, xs in shapes["X"].items():  # states [S, T+1, n] beside controls [S, T, m]
        us = shapes["U"].get(name)
        if us is None or len(xs) != 3 or len(us) != 3 or xs[1] != us[1] + 1:
            raise RunFolderError(f"{file}: {name}/X has shape {list(xs)} beside {name}/U "
                                 f"{'(none)' if us is None else list(us)}; expected states [S, T+1, n] beside "
                                 "controls [S, T, m]")
    if notes is not None:
        lacking = [v for v in variants if f"{v}/U" not in out]
        if lacking:
            notes.append(f"{file}: no final decision for {', '.join(repr(v) for v in lacking)}; "
                         "not drawn in the trajectory figure")
        if ignored:
            notes.append(f"{file}: {', '.join(repr(k) for k in ignored[:4])}" + (" ..." if len(ignored) > 4 else "")
                         + " belong to no variant of result.json; ignored")
    return out


METRICS_KEYS = ("variant", "oracle", "seed", "iteration")  # what a line of metrics.jsonl is about; every other
MAX_METRICS_LINE = 1 << 20  # field is a number or null. trajopt's lines are a few hundred bytes


def read_metrics(path: Path, variants: list[str], seeds: list[int], iterations: int | Mapping[str, int],
                 store=None, notes: list | None = None) -> dict[str, dict[str, np.ndarray]]:
    """{variant: {field: [S, K+1]}} from metrics.jsonl (NaN where a value is null or missing), read a line at a
    time into arrays from ``store`` (a `trajopt.history.HistoryStore`; default memory,
    `trajopt.runs_files.DiskHistory` maps files). ``iterations``: K, or each variant's own K.

    Nothing in the file is trusted: a line that is not a JSON object of numbers (or null; true/false count as
    1/0) about a variant, a seed and an iteration >= 0, or one that repeats another's (variant, seed,
    iteration), is a `RunFolderError` naming the file, the line and what was found. Lines missing (gaps in the
    curves) and lines about a variant, seed or iteration that result.json does not list (ignored) are read
    around, with a sentence appended to ``notes``."""
    store = store or memory_store
    own = dict(iterations) if isinstance(iterations, Mapping) else {v: int(iterations) for v in variants}
    seed_index = {s: i for i, s in enumerate(seeds)}
    S = len(seeds)
    expected = sum(S * (own[v] + 1) for v in variants)
    series: dict[str, dict[str, np.ndarray]] = {o: {} for o in variants}
    seen: dict[str, np.ndarray] = {}
    extra, first_extra, number = 0, None, 0

    def bad(what: str) -> RunFolderError:
        return RunFolderError(f"{path}: line {number}: {what}")

    with open_member(path) as raw:
        size = os.fstat(raw.fileno()).st_size
        if expected > size + 10**6:  # a line takes 100 bytes or more: this file cannot be these runs' metrics, and
            raise RunFolderError(  # arrays for them would be allocated for nothing
                f"{path}: {size} bytes for {expected} lines ({S} seeds x the iterations of result.json); "
                "not the metrics of this run")
        f = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
        while True:
            try:
                line = f.readline(MAX_METRICS_LINE + 1)
            except UnicodeDecodeError:
                number += 1
                raise bad("not UTF-8 text; truncated or not written by trajopt") from None
            except OSError as e:
                raise RunFolderError(f"{path}: cannot be read ({e.strerror})") from None
            if not line:
                break
            number += 1
            if len(line) > MAX_METRICS_LINE:
                raise bad(f"longer than {MAX_METRICS_LINE} characters; not a line trajopt writes")
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError) as e:
                raise bad(f"not valid JSON, truncated or not written by trajopt ({str(e)[:80]})") from None
            if not isinstance(row, dict):
                raise bad(f"found a JSON {type(row).__name__}, expected an object (one variant, seed and iteration)")
            name, seed, k = row.get("variant", row.get("oracle")), row.get("seed"), row.get("iteration")
            if not isinstance(name, str):
                raise bad(f"'variant' is {short_repr(name)}, expected a variant's name")
            if not is_int(seed):
                raise bad(f"'seed' is {short_repr(seed)}, expected a seed number")
            if not is_int(k) or k < 0:
                raise bad(f"'iteration' is {short_repr(k)}, expected an iteration number >= 0")
            values = {}
            for fld, v in row.items():
                if fld in METRICS_KEYS:
                    continue
                if v is not None and not isinstance(v, (int, float)):  # bool is an int: "skipped" is true/false
                    raise bad(f"{fld!r} is {short_repr(v)}, expected a number or null")
                try:
                    values[fld] = math.nan if v is None else float(v)
                except OverflowError:
                    raise bad(f"{fld!r} is {short_repr(v)}, expected a number within the range of a double") from None
            s = seed_index.get(seed)
            if name not in series or s is None or k > own[name]:
                extra += 1
                first_extra = first_extra or number
                continue
            if name not in seen:
                seen[name] = store(f"{name}/lines read", (S, own[name] + 1), np.bool_)
                seen[name][...] = False
            if seen[name][s, k]:
                raise bad(f"repeats variant {name!r}, seed {seed}, iteration {k} of an earlier line; each is written once")
            seen[name][s, k] = True
            for fld, v in values.items():
                if fld not in series[name]:
                    series[name][fld] = store(f"{name}/{fld}", (S, own[name] + 1), np.float64)
                    series[name][fld][...] = np.nan
                series[name][fld][s, k] = v
    if notes is not None:
        found = sum(int(np.count_nonzero(a)) for a in seen.values())
        if found < expected:
            absent = [v for v in variants if v not in seen]
            notes.append(f"{path}: {expected - found} of {expected} lines missing"
                         + (f" (none for {', '.join(repr(v) for v in absent)})" if absent else "")
                         + "; their iterates are gaps in the curves")
        if extra:
            notes.append(f"{path}: {extra} line(s) about a variant, seed or iteration that result.json does not list "
                         f"(the first: line {first_extra}); ignored")
    return series


def _rebuild_result(name: str, entry: Mapping, s: Mapping[str, np.ndarray], traj: Mapping[str, np.ndarray],
                    seeds: list[int], K: int, store=None, top: Mapping | None = None) -> Result:
    """A `Result` from a variant's result.json ``entry``, its metrics.jsonl ``series`` ``s`` and trajectories;
    ``top``: result.json itself (its ``step_costs`` and their horizon: what `Result.forward_equivalents` uses)."""
    store = store or memory_store
    shape = (len(seeds), K + 1)
    cost = s.get("cost", np.full(shape, np.nan))
    history = {"value": cost[:, :K]}
    for fld in ("rollouts", "gradients", "linearizations"):
        with warnings.catch_warnings():  # an iterate no line gave: NaN for every seed, a gap (no count spent)
            warnings.simplefilter("ignore", RuntimeWarning)
            cum = np.nanmax(s[fld], axis=0) if fld in s else np.zeros(K + 1)
        history[fld] = store(f"{name}/{fld} per step", (len(seeds), K), np.float64)
        history[fld][...] = np.diff(np.nan_to_num(cum))
    for fld, values in s.items():
        if fld not in ("cost", "rollouts", "gradients", "linearizations", "seconds", *DERIVED_FIELDS):
            history[fld] = values[:, :K]
    seconds = nan_band_columns(s["seconds"], quartiles=False)[0] if "seconds" in s and K else np.zeros(K + 1)
    failed = [(-1 if k is None else int(k)) for k in entry.get("failed_at") or [None] * len(seeds)]  # null: none
    return Result(
        name=name, method=None, seeds=np.asarray(seeds), U=traj.get(f"{name}/U"), X=traj.get(f"{name}/X"), cost=cost,
        history=history, status=list(entry["status"]), failed_at=np.asarray(failed), iterations=K,
        run_seconds=float(entry.get("run_seconds") or 0.0), compile_seconds=float(entry.get("compile_seconds") or 0.0),
        chunk_ends=list(range(1, K + 1)), chunk_seconds=[float(x) for x in np.nan_to_num(seconds[1:])],
        **_run_facts(entry, top or {}, len(seeds)),
    )


def _run_facts(entry: Mapping, top: Mapping, n_seeds: int) -> dict:
    """The `Result` fields result.json records besides the history (step costs, horizon, budget, stops, ran_once),
    each only where it reads as written (a folder from disk is not trusted; older folders have none of them)."""
    costs = top.get("step_costs")
    horizon = costs.get("horizon") if isinstance(costs, Mapping) else None
    stopped, stopped_at = entry.get("stopped"), entry.get("stopped_at")
    return {
        "step_costs": step_costs_of(costs),
        "horizon": horizon if is_int(horizon) and horizon > 0 else None,
        "budget": float(top["budget"]) if is_number(top.get("budget")) else None,
        "stopped": list(stopped) if isinstance(stopped, list) and len(stopped) == n_seeds
        and all(x is None or isinstance(x, str) for x in stopped) else None,
        "stopped_at": np.array([-1 if k is None else k for k in stopped_at], np.int64)
        if isinstance(stopped_at, list) and len(stopped_at) == n_seeds
        and all(k is None or (is_int(k) and k >= 0) for k in stopped_at) else None,
        "ran_once": entry.get("ran_once") is True,
        **_program_facts(entry.get("program")),
        # the oracle whose own backward ratio its counts were charged (runs_summary's charged_oracle; else its config's)
        "oracle": entry["charged_oracle"] if isinstance(entry.get("charged_oracle"), str)
        else _config_oracle(entry.get("config")),
    }


def _program_facts(program) -> dict:
    """How a variant's loop was compiled (result.json's ``program``: `Result.reused`, ``trace_reused``,
    ``compilation_cache``, ``final_evaluation`` and its seconds), each only where it reads as written."""
    from trajopt.compiler import CACHE_STATUSES

    program = program if isinstance(program, Mapping) else {}
    cache, final = program.get("compilation_cache"), program.get("final_evaluation")
    seconds = program.get("final_evaluation_seconds")
    return {"reused": program.get("reused") is True, "trace_reused": program.get("trace_reused") is True,
            "compilation_cache": cache if cache in CACHE_STATUSES else None,
            "final_evaluation": final if final in (*CACHE_STATUSES, "loop") else None,
            "final_evaluation_seconds": float(seconds) if is_number(seconds) else None}


def _config_oracle(table, depth: int = 0):
    """The ``oracle`` a variant's config table names (a gradient method's, or that of the method a MultiStart's
    table holds), else None."""
    if not isinstance(table, Mapping) or depth > 8:
        return None
    if isinstance(table.get("oracle"), str):
        return table["oracle"]
    return next((o for v in table.values() if (o := _config_oracle(v, depth + 1)) is not None), None)
