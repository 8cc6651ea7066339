"""The run folder: write and read config.toml, metrics.jsonl, result.json and trajectory.npz.

    config.toml      the resolved configuration (every default filled in): `trajopt solve` it to repeat the run
    metrics.jsonl    one JSON object per (variant, seed, iteration k = 0..K): cost f(U_k) and every field of the
                     variant's method info at that iterate (for a gradient variant the oracle's diagnostics, the
                     estimate's norm and ``skipped``; null at k = K, where no step was taken); ``rollouts``,
                     ``gradients`` and ``linearizations`` count the simulator calls spent before U_k (the most any
                     seed spent) and ``forward_equivalents`` converts them into forward steps with the run's
                     ``step_costs`` (`trajopt.compute`); ``seconds`` is the run time at U_k,
                     interpolated linearly inside each compiled chunk (the only timing field)
    result.json      the summary: status, per-variant final and best costs per seed, costs and timings, the
                     variant's resolved configuration, versions
    trajectory.npz   ``<variant>/U`` [S, T, m] and, for time-stepped problems, ``<variant>/X`` [S, T+1, n]

Run folders written before variants existed (keys ``oracles`` and ``oracle``) are still read.

Every file is written atomically (a temporary name in the same folder, then a rename), so a folder never
holds a half-written file. metrics.jsonl is written as it is produced, a block of lines at a time, never held
whole in memory. `DiskHistory` keeps a run's recorded history in files mapped into memory, in a temporary
folder inside the run folder being written (for a history larger than memory; removed when the run folder
is complete, or when the run fails). Text is written as UTF-8 as it was given ("🚀", never "\\ud83d\\ude80").

Readers trust no file: each is opened without following a link out of its folder and `os.fstat`-ed before a
byte is read (a FIFO or a device is named, never read: `open_member`); result.json, every line of
metrics.jsonl and the arrays of trajectory.npz are checked against each other. What cannot be read is a
`RunFolderError` naming the file and what was found; what can be read around (missing metrics lines, a missing
trajectory file) is read, with a note (`Run.notes`). Temporaries a killed writer left (`is_temporary`) are
never read.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import re
import shutil
import stat
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from trajopt.solver import STATUS_INTERRUPTED, STATUS_OK, Result, memory_store
from trajopt.stats import blocked_nan_median, nan_band_columns, nan_median
from trajopt.systems.base import model_source

CONFIG, METRICS, RESULT, TRAJECTORY, CONVERGENCE = (
    "config.toml", "metrics.jsonl", "result.json", "trajectory.npz", "convergence.png",
)
COUNT_FIELDS = ("value", "rollouts", "gradients", "linearizations")  # stored as cost and cumulative counts
DERIVED_FIELDS = ("forward_equivalents",)  # metrics.jsonl columns computed from the counts (not info fields)
TIMING_FIELDS = ("seconds", "run_seconds", "compile_seconds", "created")


# ----------------------------------------------------------------------------------------- writing


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename."""
    with atomic_file(path) as f:
        f.write(data)


@contextmanager
def atomic_file(path: Path):
    """A binary file to write ``path`` through: a temporary file in the same folder, flushed, synced, given the
    permissions a new file gets (0666 less the umask) and renamed to ``path`` when the block ends; removed
    instead if the block raises (an error, KeyboardInterrupt), so ``path`` is either whole or untouched."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    except OSError as e:
        raise named_os_error(e, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):  # a write that failed (EFBIG, EIO, ENOSPC...) names the file, not its temporary
            raise named_os_error(e, path) from None
        raise


def named_os_error(e: OSError, path: Path) -> OSError:
    """``e`` as an OSError of the same kind (errno) naming ``path``: the file trajopt was writing when it failed
    (a write() that fails names no file; a temporary's name means nothing to the user)."""
    return OSError(e.errno, e.strerror or str(e), str(path))


TEMPORARY_SUFFIX = ".tmp"
# what a killed writer may leave in a folder: `atomic_file`'s temporaries (.NAME.RANDOM.tmp) and `DiskHistory`'s
# folders (.history-RANDOM); never run data (readers open only the files they name), removed by `--force`
TEMPORARY = re.compile(r"^\..+\.tmp$")


def is_temporary(name: str) -> bool:
    """Whether a file or folder name in a run folder is a temporary a killed trajopt writer left behind."""
    return bool(TEMPORARY.match(name)) or name.startswith(DiskHistory.PREFIX)


def write_lines(path: Path, lines: Iterable[str], block_chars: int = 1 << 18) -> None:
    """Write ``"\n".join(lines) + "\n"`` (UTF-8) to ``path`` atomically (`atomic_file`), as the lines come: they
    are joined and written in blocks of about ``block_chars`` characters, so memory holds one block, never the
    file."""
    with atomic_file(path) as f:
        block, size, written = [], 0, False
        for line in lines:
            block.append(line)
            size += len(line) + 1
            if size >= block_chars:
                f.write(_utf8("\n".join(block) + "\n"))
                block, size, written = [], 0, True
        if block or not written:
            f.write(_utf8("\n".join(block) + "\n"))


class DiskHistory:
    """A `trajopt.solver.HistoryStore` on disk: each array the solver asks for is an ``.npy`` file mapped into
    memory (`numpy.lib.format.open_memmap`), in a temporary folder ``.history-*`` inside ``parent`` (the run
    folder being written), made on the first request.

    The space of each file is reserved when it is made (``posix_fallocate``), so a full disk is an OSError
    naming the file before the run starts, not a crash when a page is written. `close` (or leaving a ``with``
    block) removes the folder; the arrays stay readable until they are dropped (the mapped files outlive
    their names on POSIX systems)."""

    PREFIX = ".history-"

    def __init__(self, parent: Path):
        self.parent = Path(parent)
        self.folder: Path | None = None
        self._count = 0

    def __call__(self, name: str, shape: tuple, dtype) -> np.ndarray:
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(dir=self.parent, prefix=self.PREFIX))
        self._count += 1
        path = self.folder / f"{self._count:04d}.npy"  # numbered: a field's name is not needed to be a file name
        array = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(dtype), shape=tuple(shape))
        _reserve(path)
        return array

    def close(self) -> None:
        """Remove the temporary folder and everything in it (nothing when no array was asked for)."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> "DiskHistory":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _reserve(path: Path) -> None:
    """Allocate the disk blocks of ``path`` now (an OSError naming it if the disk is full), where supported."""
    import errno

    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        try:
            os.posix_fallocate(f.fileno(), 0, size)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise OSError(e.errno, f"{path}: no room for {size} bytes of recorded history ({e.strerror})") from None
            # a file system without fallocate: the space is taken as the pages are written


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


def _plain_list(values: list) -> list:
    """`_jsonable` of a list from ``ndarray.tolist()``, with a fast path for its finite floats and ints."""
    return [v if (type(v) is float and math.isfinite(v)) or type(v) is int else _jsonable(v) for v in values]


# json.dumps(row, allow_nan=False, ensure_ascii=False), without a new encoder per row
_encode_line = json.JSONEncoder(allow_nan=False, ensure_ascii=False).encode
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_surrogates(text: str) -> str:
    """JSON text with each lone surrogate (an undecodable byte of a file name or argument, as Python decodes it)
    written as its \\uXXXX escape: UTF-8 cannot hold one, JSON's escape keeps it exactly. Text outside the basic
    multilingual plane ("🚀") is one code point, not a surrogate, and stays as written."""
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _utf8(text: str) -> bytes:
    """JSON text as UTF-8 bytes (lone surrogates escaped, `_escape_surrogates`)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _escape_surrogates(text).encode("utf-8")


def utf8(text: str) -> bytes:
    """Text (a report, a table) as UTF-8 bytes: "🚀" as written; a lone surrogate (an undecodable byte of an
    argument or a file name, which UTF-8 cannot hold) becomes U+FFFD."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub("\ufffd", text).encode("utf-8")


def dumps_json(obj: Any) -> str:
    """JSON as trajopt writes it: indented, NaN and inf as null, text as written (UTF-8, never "\\ud83d..."
    escapes; only a lone surrogate, which UTF-8 cannot hold, is escaped)."""
    return _escape_surrogates(json.dumps(_jsonable(obj), indent=2, allow_nan=False, ensure_ascii=False)) + "\n"


def overall_status(results: Iterable[Result]) -> str:
    """"ok" (every seed ok), "interrupted", "failed" (no seed ok: each non-finite or never updated, "all_skipped")
    or "partial" (some)."""
    statuses = [s for r in results for s in r.status]
    if any(s == STATUS_INTERRUPTED for s in statuses):
        return STATUS_INTERRUPTED
    if all(s == STATUS_OK for s in statuses):
        return STATUS_OK
    if not any(s == STATUS_OK for s in statuses):
        return "failed"
    return "partial"


def metric_fields(result: Result) -> list[str]:
    """The info fields metrics.jsonl stores per iteration, in the method's order (value and counts aside)."""
    return [f for f in result.history if f not in COUNT_FIELDS]


def run_step_costs(results: Mapping[str, Result], step_costs=None):
    """The `trajopt.compute.StepCosts` a run converts its counts with: ``step_costs``, else the first result's own."""
    if step_costs is not None:
        return step_costs
    return next((r.step_costs for r in results.values() if getattr(r, "step_costs", None) is not None), None)


def summarise(spec, results: Mapping[str, Result], *, verb: str, versions: Mapping[str, str], platform_name: str,
              x64: bool, created: str, step_costs=None) -> dict:
    """The content of result.json. With step costs (``step_costs``, else the results' own: `run_step_costs`), each
    variant's ``forward_equivalents`` (the most any seed spent, as ``rollouts``) and ``forward_equivalents_per_seed``,
    and the run's ``step_costs`` (ρ_b, ρ_l, their source and the horizon T that converts a count)."""
    costs = run_step_costs(results, step_costs)
    variants = {}
    for name, r in results.items():
        rollouts = r.counts("rollouts")
        gradients = r.counts("gradients")
        alpha = r.history.get("alpha")  # [S, K], perhaps a file mapped into memory: read in blocks
        last_alpha = np.asarray(alpha[:, -1]) if alpha is not None and r.iterations else np.full(len(r.seeds), np.nan)
        median_alpha = blocked_nan_median(alpha) if alpha is not None else math.nan
        v = spec.variants.get(name)
        variants[name] = {
            "kind": v.kind if v else None,
            "base": v.base if v else None,
            "status": list(r.status),
            "final_cost": r.final_cost,
            "best_cost": r.best_cost,
            "initial_cost": float(r.cost[0, 0]),
            "failed_at": [int(k) if k >= 0 else None for k in r.failed_at],
            "skipped_updates": [int(k) for k in r.skipped],
            "median_final_cost": nan_median(r.final_cost),
            "median_best_cost": nan_median(r.best_cost),
            "final_alpha": last_alpha,
            "median_alpha": median_alpha,
            "rollouts": int(rollouts[-1]),
            "gradients": int(gradients[-1]),
            "linearizations": int(r.counts("linearizations")[-1]),
            **({"forward_equivalents": float(r.forward_equivalents(costs)[-1]),
                "forward_equivalents_per_seed": [float(x) for x in r.seed_forward_equivalents(costs)]}
               if costs is not None else {}),
            "stopped": list(r.stopped) if r.stopped is not None else [None] * len(r.seeds),
            "ran_once": bool(r.ran_once),
            "run_seconds": r.run_seconds,
            "compile_seconds": r.compile_seconds,
            "config": v.table if v else {},
            "iterations": r.iterations,
        }
    first = next(iter(results.values()))
    budgets = {r.budget for r in results.values() if getattr(r, "budget", None) is not None}
    return {
        "status": overall_status(results.values()),
        "verb": verb,
        "problem": spec.name,
        "title": spec.title,
        "source": spec.source,
        "iterations": max(r.iterations for r in results.values()),
        "iterations_requested": spec.solve.iterations,
        "seeds": [int(s) for s in first.seeds],
        "variants": variants,
        "run_seconds": sum(r.run_seconds for r in results.values()),
        "compile_seconds": sum(r.compile_seconds for r in results.values()),
        "versions": dict(versions),
        "platform": platform_name,
        "x64": x64,
        "created": created,
        **({"step_costs": {**costs.as_dict(), "horizon": int(first.horizon or 1)}} if costs is not None else {}),
        **({"budget": max(budgets)} if budgets else {}),
        **({"model_source": source} if (source := model_source(spec.system)) is not None else {}),
    }


ITERATION_BLOCK = 1024  # iterations of one seed turned into Python numbers at a time by `metrics_lines`


def iterations_text(summary: Mapping) -> str:
    """"500 iterations", or "500–2,500 iterations" when the variants of a run differ (a variant with its own
    ``iterations``, an equal-budget compare): what a title states. Reads result.json's content."""
    counts = sorted({int(v["iterations"]) for v in variant_entries(summary).values()
                     if isinstance(v, Mapping) and _is_number(v.get("iterations"))})
    if len(counts) > 1:
        return f"{counts[0]:,}–{counts[-1]:,} iterations"
    return f"{counts[0] if counts else summary.get('iterations')} iterations"


def entry_method_label(entry: Mapping) -> str:
    """What a variant runs, in a few words, from its result.json entry: 'aobg + sgd 0.001', 'fobg + adam 0.2 cosine,
    σ geometric to 0.0003', 'exact + adam 0.2 cosine, best of 8 starts (spread 0.01)' or 'cem' (the full
    configuration is in result.json). The summary table's method column.
    A folder read from disk is not trusted: a missing or malformed key leaves its words out, never raises."""
    cfg = entry.get("config") if isinstance(entry.get("config"), Mapping) else {}
    base = str(entry.get("base") or "")
    starts, spread = cfg.get("starts"), cfg.get("start_spread")
    spread = f" (spread {spread:g})" if _is_number(spread) and spread > 0 else ""
    starts = ("" if not _is_number(starts) else f", best of {starts:g} starts{spread}" if starts > 1
              else f", 1 start{spread}" if spread else "")
    if entry.get("kind") != "oracle":
        return base + starts
    opt = cfg.get("optimizer") if isinstance(cfg.get("optimizer"), Mapping) else {}
    clip = opt.get("clip_norm")  # result.json writes no clipping (inf) as null
    step = f" {opt['step']:g}" if _is_number(opt.get("step")) else ""
    schedule = opt.get("schedule", "constant")
    sigma_schedule, sigma_final = cfg.get("sigma_schedule", "constant"), cfg.get("sigma_final")
    sigma = (f", σ {sigma_schedule}" + (f" to {sigma_final:g}" if _is_number(sigma_final) else "")
             if sigma_schedule not in ("constant", None) else "")
    return (f"{base} + {opt.get('name', '?')}{step}" + (f" {schedule}" if schedule not in ("constant", None) else "")
            + (f", clip {clip:g}" if _is_number(clip) and math.isfinite(clip) else "") + sigma + starts)


def legend_labels(summary: Mapping) -> dict[str, str]:
    """{variant: its legend entry} for a figure of the run whose result.json content is ``summary``: the method
    label when it starts with the variant's name ("aobg + sgd 0.001"), else "name: label" ("tuned: fobg + adam 0.2
    cosine, σ geometric to 0.0003"), so a figure states what each curve ran, as the table does."""
    out = {}
    for name, entry in variant_entries(summary).items():
        label = entry_method_label(entry) if isinstance(entry, Mapping) else ""
        out[name] = name if not label or label == name else label if label.startswith(name + " ") else f"{name}: {label}"
    return out


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
                cost = _plain_list(np.asarray(r.cost[i, k0:k1]).tolist())
                last = [None] if k1 == K + 1 else []  # no step was taken at k = K
                history = {f: _plain_list(np.asarray(r.history[f][i, k0:min(k1, K)]).tolist()) + last for f in fields}
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
                    yield _encode_line(row)


def write_run(out_dir: Path, spec, results: Mapping[str, Result], summary: Mapping) -> None:
    """Write config.toml, metrics.jsonl (streamed, `write_lines`), trajectory.npz and, last, result.json into
    ``out_dir``."""
    out_dir = Path(out_dir)
    write_config(out_dir, spec)
    costs = summary.get("step_costs") if isinstance(summary, Mapping) else None
    write_lines(out_dir / METRICS, metrics_lines(results, _step_costs_of(costs)))
    arrays = {}
    for name, r in results.items():
        arrays[f"{name}/U"] = r.U
        if r.X is not None:
            arrays[f"{name}/X"] = r.X
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(out_dir / TRAJECTORY, buf.getvalue())
    atomic_write_bytes(out_dir / RESULT, dumps_json(summary).encode())


def _step_costs_of(entry: Any):
    """The `trajopt.compute.StepCosts` of result.json's ``step_costs`` entry, or None (absent or malformed: a folder
    read from disk is not trusted)."""
    from trajopt.compute import StepCosts

    if not isinstance(entry, Mapping):
        return None
    try:
        return StepCosts.from_dict(entry)
    except (KeyError, TypeError, ValueError):
        return None


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


class RunFolderError(ValueError):
    """A run folder, or one of its files, that is missing, truncated, unreadable or not what trajopt writes.
    The message names the file; the CLI reports it with exit status 2."""


_FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def open_member(file: Path, limit: int | None = None):
    """A file of a run folder, opened for reading (binary) without trusting what is there.

    Checked before a byte is read: a symbolic link must resolve inside the folder (``file.parent``), and what is
    opened must be a regular file (a FIFO would block the reader forever, a device never ends: the file is
    opened non-blocking and `os.fstat`-ed, so the check is of the very file that is read) of at most ``limit``
    bytes. Anything else is a `RunFolderError` naming the file and what was found."""
    file = Path(file)
    try:
        info = os.lstat(file)
    except FileNotFoundError:
        raise RunFolderError(f"{file}: missing (not a run folder, or an incomplete one)") from None
    except OSError as e:
        raise RunFolderError(f"{file}: cannot be read ({e.strerror})") from None
    if stat.S_ISLNK(info.st_mode):
        real, home = Path(os.path.realpath(file)), Path(os.path.realpath(file.parent))
        if home not in real.parents:
            raise RunFolderError(f"{file}: a symbolic link to {real}, outside the run folder; allowed: the file "
                                 "itself, or a link to a file inside the folder")
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise RunFolderError(f"{file}: a symbolic link to a file that does not exist") from None
    except OSError as e:
        raise RunFolderError(f"{file}: cannot be read ({e.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _FILE_KINDS if test(info.st_mode)), "not a regular file")
            raise RunFolderError(f"{file}: {kind}, expected a file written by trajopt")
        if limit is not None and info.st_size > limit:
            raise RunFolderError(f"{file}: {info.st_size} bytes, larger than any file trajopt writes ({limit})")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_text(path: Path, limit: int = 64 << 20) -> str:
    with open_member(path, limit) as f:
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise RunFolderError(f"{path}: cannot be read ({e.strerror})") from None
    if len(data) > limit:
        raise RunFolderError(f"{path}: larger than any file trajopt writes ({limit} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RunFolderError(f"{path}: not UTF-8 text at byte {e.start}, truncated or not written by trajopt") from None


METRICS_KEYS = ("variant", "oracle", "seed", "iteration")  # what a line of metrics.jsonl is about; every other
MAX_METRICS_LINE = 1 << 20  # field is a number or null. trajopt's lines are a few hundred bytes


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def read_metrics(path: Path, variants: list[str], seeds: list[int], iterations: int | Mapping[str, int],
                 store=None, notes: list | None = None) -> dict[str, dict[str, np.ndarray]]:
    """{variant: {field: [S, K+1]}} from metrics.jsonl (NaN where a value is null or missing), read a line at a
    time into arrays from ``store`` (a `trajopt.solver.HistoryStore`; default memory, `DiskHistory` maps files).
    ``iterations``: K, or each variant's own K.

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
                raise bad(f"'variant' is {_short(name)}, expected a variant's name")
            if not _is_int(seed):
                raise bad(f"'seed' is {_short(seed)}, expected a seed number")
            if not _is_int(k) or k < 0:
                raise bad(f"'iteration' is {_short(k)}, expected an iteration number >= 0")
            values = {}
            for fld, v in row.items():
                if fld in METRICS_KEYS:
                    continue
                if v is not None and not isinstance(v, (int, float)):  # bool is an int: "skipped" is true/false
                    raise bad(f"{fld!r} is {_short(v)}, expected a number or null")
                try:
                    values[fld] = math.nan if v is None else float(v)
                except OverflowError:
                    raise bad(f"{fld!r} is {_short(v)}, expected a number within the range of a double") from None
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
    import warnings

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
    stopped = entry.get("stopped")
    return {
        "step_costs": _step_costs_of(costs),
        "horizon": horizon if _is_int(horizon) and horizon > 0 else None,
        "budget": float(top["budget"]) if _is_number(top.get("budget")) else None,
        "stopped": list(stopped) if isinstance(stopped, list) and len(stopped) == n_seeds
        and all(x is None or isinstance(x, str) for x in stopped) else None,
        "ran_once": entry.get("ran_once") is True,
    }


def variant_entries(result: Mapping) -> dict:
    """result.json's per-variant summaries (``variants``, or ``oracles`` in folders written before variants)."""
    return result.get("variants", result.get("oracles", {}))


def read_result(path: str | Path) -> dict:
    """result.json of a run folder, checked for the keys readers use (a RunFolderError naming the file otherwise)."""
    file = Path(path) / RESULT
    try:
        result = json.loads(_read_text(file))
    except json.JSONDecodeError as e:
        raise RunFolderError(f"{file}: not valid JSON, truncated or not written by trajopt ({e})") from None
    except RecursionError:
        raise RunFolderError(f"{file}: nested deeper than any file trajopt writes") from None
    if not isinstance(result, dict):
        raise RunFolderError(f"{file}: found a JSON {type(result).__name__}, expected an object (a trajopt run summary)")
    K, seeds, entries = result.get("iterations"), result.get("seeds"), variant_entries(result)
    if isinstance(K, bool) or not isinstance(K, int) or not 0 <= K <= 10**7:
        raise RunFolderError(f"{file}: 'iterations' is {K!r}, expected an integer in 0..10000000")
    if not isinstance(seeds, list) or not seeds or not all(isinstance(x, int) and not isinstance(x, bool) for x in seeds) \
            or len(seeds) > 100_000:
        raise RunFolderError(f"{file}: 'seeds' is {_short(seeds)}, expected a non-empty list of seed numbers")
    if len(set(seeds)) != len(seeds):
        raise RunFolderError(f"{file}: 'seeds' is {_short(seeds)}, a seed repeated; expected distinct seed numbers")
    if not isinstance(entries, dict) or not entries:
        raise RunFolderError(f"{file}: no 'variants' table, expected one entry per variant")
    for name, e in entries.items():
        if not isinstance(e, dict) or not isinstance(e.get("status"), list) or len(e["status"]) != len(seeds) \
                or not all(isinstance(x, str) for x in e["status"]):
            raise RunFolderError(f"{file}: variants.{name}: expected a table with a 'status' list of {len(seeds)} strings")
        for key in ("final_cost", "best_cost"):  # every reader uses them: required
            v = e.get(key)
            if not isinstance(v, list) or len(v) != len(seeds) or not all(x is None or _is_number(x) for x in v):
                raise RunFolderError(f"{file}: variants.{name}.{key}: expected a list of {len(seeds)} numbers, found "
                                     f"{_short(v)}")
        v = e.get("failed_at")
        if v is not None and (not isinstance(v, list) or len(v) != len(seeds)
                              or not all(x is None or (isinstance(x, int) and not isinstance(x, bool)) for x in v)):
            raise RunFolderError(f"{file}: variants.{name}.failed_at: expected a list of {len(seeds)} iteration "
                                 f"numbers (or null), found {_short(v)}")
        for key in ("run_seconds", "compile_seconds"):
            v = e.get(key)
            if v is not None and not _is_number(v):
                raise RunFolderError(f"{file}: variants.{name}.{key}: expected a number of seconds, found {_short(v)}")
        it = e.get("iterations", K)
        if isinstance(it, bool) or not isinstance(it, int) or not 0 <= it <= K:
            raise RunFolderError(f"{file}: variants.{name}.iterations is {it!r}, expected an integer in 0..{K}")
    return result


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def read_config(path: str | Path, *, required: bool = True) -> dict:
    """config.toml of a run folder (the resolved configuration); {} when absent and not `required`."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    from trajopt.tomlio import MAX_CONFIG_BYTES  # what `--from` reads back: the same cap

    file = Path(path) / CONFIG
    if not os.path.lexists(file) and not required:
        return {}
    try:
        config = tomllib.loads(_read_text(file, MAX_CONFIG_BYTES))
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
    import zipfile

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


def read_run(path: str | Path, store=None) -> Run:
    """Read a run folder written by `write_run`. A missing, truncated or foreign file raises `RunFolderError`
    naming it. ``store`` (a `trajopt.solver.HistoryStore`, default memory) holds the arrays read from
    metrics.jsonl: a `DiskHistory` maps them to files, for a history larger than memory."""
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
    atomic_write_bytes(out_dir / f"{stem}.csv", _utf8(buf.getvalue()))
    atomic_write_bytes(out_dir / f"{stem}.json", dumps_json({**meta, "rows": rows}).encode())


def write_config(out_dir: Path, spec) -> None:
    """The resolved configuration of a study's base problem, as config.toml."""
    import tomli_w

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    text = tomli_w.dumps(spec.resolved())  # UTF-8: "🚀" as written; a lone surrogate (an undecodable byte of an
    # argument) has no TOML spelling at all: U+FFFD stands in for it
    atomic_write_bytes(Path(out_dir) / CONFIG, _LONE_SURROGATE.sub("\ufffd", text).encode("utf-8"))
