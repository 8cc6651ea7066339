"""The run folder: write and read config.toml, metrics.jsonl, result.json and trajectory.npz.

    config.toml      the resolved configuration (every default filled in): `trajopt solve` it to repeat the run
    metrics.jsonl    one JSON object per (oracle, seed, iteration k = 0..K): cost f(U_k) and the oracle's
                     diagnostics at that iterate (null at k = K, where no gradient was taken); ``rollouts`` and
                     ``gradients`` count the simulator calls spent before U_k; ``seconds`` is the run time at U_k,
                     interpolated linearly inside each compiled chunk (the only timing field)
    result.json      the summary: status, per-oracle final and best costs per seed, costs and timings, versions
    trajectory.npz   ``<oracle>/U`` [S, T, m] and, for time-stepped problems, ``<oracle>/X`` [S, T+1, n]

Every file is written atomically (a temporary name in the same folder, then a rename), so a folder never
holds a half-written file.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from trajopt.solve import STATUS_INTERRUPTED, STATUS_NON_FINITE, STATUS_OK, Result

CONFIG, METRICS, RESULT, TRAJECTORY, CONVERGENCE = (
    "config.toml", "metrics.jsonl", "result.json", "trajectory.npz", "convergence.png",
)
METRIC_FIELDS = ("alpha", "var_first", "var_zero", "bias_gap", "radius", "grad_norm")
TIMING_FIELDS = ("seconds", "run_seconds", "compile_seconds", "created")


# ----------------------------------------------------------------------------------------- writing


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _jsonable(x: Any) -> Any:
    """NaN and inf -> None (JSON has neither); numpy scalars -> Python numbers."""
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def dumps_json(obj: Any) -> str:
    return json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n"


def _median(values: np.ndarray) -> float:
    finite = np.asarray(values, float)
    finite = finite[np.isfinite(finite)]
    return float(np.median(finite)) if finite.size else math.nan


def overall_status(results: Iterable[Result]) -> str:
    """"ok" (every seed ok), "interrupted", "failed" (every seed non-finite) or "partial" (some)."""
    statuses = [s for r in results for s in r.status]
    if any(s == STATUS_INTERRUPTED for s in statuses):
        return STATUS_INTERRUPTED
    if all(s == STATUS_OK for s in statuses):
        return STATUS_OK
    if all(s == STATUS_NON_FINITE for s in statuses):
        return "failed"
    return "partial"


def cumulative_counts(result: Result, field: str) -> np.ndarray:
    """[K+1] simulator calls (``rollouts`` or ``gradients``) spent before iterate k (the same for every seed)."""
    per_iter = np.asarray(result.history[field], float)
    per_iter = np.nanmax(per_iter, axis=0) if per_iter.size else np.zeros(0)
    return np.concatenate([[0.0], np.cumsum(np.nan_to_num(per_iter))])


def iteration_seconds(result: Result) -> np.ndarray:
    """[K+1] run seconds at iterate k, interpolated linearly inside each chunk."""
    ends = np.concatenate([[0], result.chunk_ends])
    secs = np.concatenate([[0.0], result.chunk_seconds])
    return np.interp(np.arange(result.iterations + 1), ends, secs)


def summarise(spec, results: Mapping[str, Result], *, verb: str, versions: Mapping[str, str], platform_name: str,
              x64: bool, created: str) -> dict:
    """The content of result.json."""
    oracle_configs = spec.resolved()["oracle"]
    oracles = {}
    for name, r in results.items():
        rollouts = cumulative_counts(r, "rollouts")
        gradients = cumulative_counts(r, "gradients")
        last_alpha = r.history["alpha"][:, -1] if r.iterations else np.full(len(r.seeds), np.nan)
        oracles[name] = {
            "status": list(r.status),
            "final_cost": r.final_cost,
            "best_cost": r.best_cost,
            "initial_cost": float(r.cost[0, 0]),
            "failed_at": [int(k) if k >= 0 else None for k in r.failed_at],
            "skipped_updates": [int(k) for k in r.skipped],
            "median_final_cost": _median(r.final_cost),
            "median_best_cost": _median(r.best_cost),
            "final_alpha": last_alpha,
            "median_alpha": _median(r.history["alpha"]),
            "rollouts": int(rollouts[-1]),
            "gradients": int(gradients[-1]),
            "run_seconds": r.run_seconds,
            "compile_seconds": r.compile_seconds,
            "config": oracle_configs.get(name, {}),
        }
    first = next(iter(results.values()))
    return {
        "status": overall_status(results.values()),
        "verb": verb,
        "problem": spec.name,
        "title": spec.title,
        "source": spec.source,
        "iterations": first.iterations,
        "iterations_requested": spec.solve.iterations,
        "seeds": [int(s) for s in first.seeds],
        "oracles": oracles,
        "run_seconds": sum(r.run_seconds for r in results.values()),
        "compile_seconds": sum(r.compile_seconds for r in results.values()),
        "versions": dict(versions),
        "platform": platform_name,
        "x64": x64,
        "created": created,
    }


def metrics_lines(results: Mapping[str, Result]) -> Iterator[str]:
    """metrics.jsonl, one line per (oracle, seed, iteration)."""
    for name, r in results.items():
        rollouts = cumulative_counts(r, "rollouts")
        gradients = cumulative_counts(r, "gradients")
        seconds = iteration_seconds(r)
        K = r.iterations
        for i, seed in enumerate(r.seeds):
            for k in range(K + 1):
                row = {"oracle": name, "seed": int(seed), "iteration": k, "cost": r.cost[i, k]}
                for f in METRIC_FIELDS:
                    row[f] = r.history[f][i, k] if k < K else None
                row["rollouts"] = int(rollouts[k])
                row["gradients"] = int(gradients[k])
                row["seconds"] = round(float(seconds[k]), 6)
                yield json.dumps(_jsonable(row), allow_nan=False)


def write_run(out_dir: Path, spec, results: Mapping[str, Result], summary: Mapping) -> None:
    """Write config.toml, metrics.jsonl, trajectory.npz and, last, result.json into ``out_dir``."""
    out_dir = Path(out_dir)
    write_config(out_dir, spec)
    atomic_write_bytes(out_dir / METRICS, ("\n".join(metrics_lines(results)) + "\n").encode())
    arrays = {}
    for name, r in results.items():
        arrays[f"{name}/U"] = r.U
        if r.X is not None:
            arrays[f"{name}/X"] = r.X
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(out_dir / TRAJECTORY, buf.getvalue())
    atomic_write_bytes(out_dir / RESULT, dumps_json(summary).encode())


def versions() -> dict[str, str]:
    import jax
    import optax

    import trajopt

    return {"trajopt": trajopt.__version__, "jax": jax.__version__, "optax": optax.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


# ----------------------------------------------------------------------------------------- reading


@dataclass(frozen=True, eq=False)
class Run:
    """A run folder read back.

    Attributes:
        path: the folder.
        result: result.json as a dict.
        config: config.toml as a dict.
        oracles: oracle names in run order.
        series: {oracle: {field: [S, K+1] array}} from metrics.jsonl, for cost, rollouts, gradients,
            seconds and the METRIC_FIELDS (NaN where null).
    """

    path: Path
    result: dict
    config: dict
    oracles: list[str]
    series: dict[str, dict[str, np.ndarray]]

    def trajectories(self) -> dict[str, np.ndarray]:
        with np.load(self.path / TRAJECTORY) as data:
            return {k: data[k] for k in data.files}


def read_metrics(path: Path, oracles: list[str], seeds: list[int], iterations: int) -> dict[str, dict[str, np.ndarray]]:
    fields = ("cost", *METRIC_FIELDS, "rollouts", "gradients", "seconds")
    seed_index = {s: i for i, s in enumerate(seeds)}
    series = {o: {f: np.full((len(seeds), iterations + 1), np.nan) for f in fields} for o in oracles}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            o, s, k = row["oracle"], seed_index.get(row["seed"]), row["iteration"]
            if o not in series or s is None or k > iterations:
                continue
            for fld in fields:
                v = row.get(fld)
                series[o][fld][s, k] = np.nan if v is None else v
    return series


def read_run(path: str | Path) -> Run:
    """Read a run folder written by `write_run`."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    path = Path(path)
    result = json.loads((path / RESULT).read_text(encoding="utf-8"))
    config = tomllib.loads((path / CONFIG).read_text(encoding="utf-8")) if (path / CONFIG).exists() else {}
    oracles = list(result["oracles"])
    series = read_metrics(path / METRICS, oracles, result["seeds"], result["iterations"])
    return Run(path=path, result=result, config=config, oracles=oracles, series=series)


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / RESULT).is_file()


def write_table(out_dir: Path, stem: str, rows: list[dict], meta: Mapping) -> None:
    """A study's results: ``<stem>.csv`` (one row per dict, union of keys) and ``<stem>.json`` (meta + rows)."""
    import csv

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None or (isinstance(v, float) and not math.isfinite(v)) else v)
                         for k, v in r.items()})
    atomic_write_bytes(out_dir / f"{stem}.csv", buf.getvalue().encode())
    atomic_write_bytes(out_dir / f"{stem}.json", dumps_json({**meta, "rows": rows}).encode())


def write_config(out_dir: Path, spec) -> None:
    """The resolved configuration of a study's base problem, as config.toml."""
    import tomli_w

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(out_dir) / CONFIG, tomli_w.dumps(spec.resolved()).encode())
