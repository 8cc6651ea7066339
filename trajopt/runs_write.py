"""Writing a run folder (`write_run`): config.toml, metrics.jsonl, trajectory.npz and, last, result.json, each
atomically (`trajopt.runs_files`); the content of result.json is `trajopt.runs_summary.summarise`'s. metrics.jsonl
is produced a block of iterations at a time (`metrics_lines`) and written as it is produced, never held whole in
memory (a history may be larger than memory: files mapped by `trajopt.runs_files.DiskHistory`). Also the files a
sweep or a landscape writes beside its config.toml (`write_table`).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np
import tomli_w

from trajopt.runs_files import (
    CONFIG, COUNT_FIELDS, METRICS, RESULT, TRAJECTORY, atomic_write_bytes, dumps_json, encode_line, escaped_utf8,
    plain_list, utf8, write_lines,
)
from trajopt.runs_summary import run_step_costs, step_costs_of
from trajopt.result import Result


ITERATION_BLOCK = 1024  # iterations of one seed turned into Python numbers at a time by `metrics_lines`


def metric_fields(result: Result) -> list[str]:
    """The info fields metrics.jsonl stores per iteration, in the method's order (value and counts aside)."""
    return [f for f in result.history if f not in COUNT_FIELDS]


def metrics_lines(results: Mapping[str, Result], step_costs=None) -> Iterator[str]:
    """metrics.jsonl, one line per (variant, seed, iteration), produced a block of iterations at a time (the
    history may be larger than memory: at most `ITERATION_BLOCK` values of each field are Python objects at
    once). ``forward_equivalents`` with ``step_costs`` (else the results' own, `run_step_costs`; absent without)."""
    costs = run_step_costs(results, step_costs)
    for name, r in results.items():
        rollouts = r.counts("rollouts")  # [K+1] each
        gradients = r.counts("gradients")
        linearizations = r.counts("linearizations")
        fse = r.forward_equivalents(costs) if costs is not None else None
        seconds = r.iteration_seconds()
        fields = metric_fields(r)
        K = r.iterations
        for i, seed in enumerate(r.seeds):
            seed = int(seed)
            for k0 in range(0, K + 1, ITERATION_BLOCK):
                k1 = min(k0 + ITERATION_BLOCK, K + 1)
                # a block of a row to Python numbers at once (NaN -> None), not one numpy scalar at a time
                cost = plain_list(np.asarray(r.cost[i, k0:k1]).tolist())
                last = [None] if k1 == K + 1 else []  # no step was taken at k = K
                history = {f: plain_list(np.asarray(r.history[f][i, k0:min(k1, K)]).tolist()) + last for f in fields}
                roll = [int(c) for c in rollouts[k0:k1].tolist()]
                grad = [int(c) for c in gradients[k0:k1].tolist()]
                lin = [int(c) for c in linearizations[k0:k1].tolist()]
                eq = None if fse is None else [float(c) for c in fse[k0:k1].tolist()]
                secs = [round(s, 6) for s in seconds[k0:k1].tolist()]
                for j in range(k1 - k0):
                    row = {"variant": name, "seed": seed, "iteration": k0 + j, "cost": cost[j]}
                    for f in fields:
                        row[f] = history[f][j]
                    row["rollouts"] = roll[j]
                    row["gradients"] = grad[j]
                    row["linearizations"] = lin[j]
                    if eq is not None:
                        row["forward_equivalents"] = eq[j]
                    row["seconds"] = secs[j]
                    yield encode_line(row)


def write_run(out_dir: Path, spec, results: Mapping[str, Result], summary: Mapping) -> None:
    """Write config.toml, metrics.jsonl (streamed, `write_lines`), trajectory.npz and, last, result.json into
    ``out_dir``."""
    out_dir = Path(out_dir)
    write_config(out_dir, spec)
    costs = summary.get("step_costs") if isinstance(summary, Mapping) else None
    write_lines(out_dir / METRICS, metrics_lines(results, step_costs_of(costs)))
    arrays = {}
    for name, r in results.items():
        arrays[f"{name}/U"] = r.U
        if r.X is not None:
            arrays[f"{name}/X"] = r.X
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(out_dir / TRAJECTORY, buf.getvalue())
    atomic_write_bytes(out_dir / RESULT, dumps_json(summary).encode())


def write_config(out_dir: Path, spec) -> None:
    """The resolved configuration of a study's base problem, as config.toml."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    text = tomli_w.dumps(spec.resolved())  # UTF-8: "🚀" as written; a lone surrogate (an undecodable byte of an
    # argument) has no TOML spelling at all: U+FFFD stands in for it
    atomic_write_bytes(Path(out_dir) / CONFIG, utf8(text))


def write_table(out_dir: Path, stem: str, rows: list[dict], meta: Mapping) -> None:
    """A study's results: ``<stem>.csv`` (one row per dict, union of keys) and ``<stem>.json`` (meta + rows)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v)
                         for k, v in r.items()})
    atomic_write_bytes(out_dir / f"{stem}.csv", escaped_utf8(buf.getvalue()))
    atomic_write_bytes(out_dir / f"{stem}.json", dumps_json({**meta, "rows": rows}).encode())
