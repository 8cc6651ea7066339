"""Traced programs kept on disk: a command run again skips tracing, as JAX's persistent cache lets it skip XLA.

Tracing is JAX running trajopt's (and MJX's) Python to write the program down; on an MJX problem it is most of a
warm command's wait. Gymnasium's inverted pendulum's FoBG loop traces in about 9 s on a 2-core CPU, where its
compiled program then loads from the compilation cache in about 1 s (benchmarks/bench_mjx_cold.txt). So the
programs a command compiles (`trajopt.solver`'s fused loop; `trajopt.closedloop`'s episode and its timing programs,
kept together) are traced as functions of their flattened arguments and exported with `jax.export` (StableHLO,
serialized); the exports, their outputs' tree structures and what tracing recorded besides (the loop's
`trajopt.loop.Layout`) are kept in a ``traces`` folder beside the compilation cache (`folder`). Every run, the first
included, lowers the exported program (``Exported.call``) and compiles that: the program text is the same in every
run, so a later run finds XLA's compiled program in the compilation cache too. The results are those of the program
traced directly, bit for bit (tests/test_traces.py; the main job's numbers).

**The key** is a sha256 of everything the traced program depends on, written as exact JSON (a value that cannot
be is not kept):

* `FORMAT` (this module's way of keeping an entry);
* `environment`: the bytes of every trajopt source file, the version of Python and of every installed
  distribution (of one installed in editable mode, its files' sizes and times too), JAX's configuration (x64 among
  it) and the device;
* the problem, `problem_identity`: its resolved spec (every table with its defaults filled in, which reloads to
  the same problem: `trajopt.spec.Spec.resolved`) less `UNREAD_KEYS`, with the running variant's own resolved
  table (`for_variant`), and its system's ``content_digest`` (an MJX model: the bytes of the compiled model, so
  every file MuJoCo read for it), and a closed-loop plant's own system's;
* the run: the variant's name, its iterations, chunk, seed count, budget and a budget's step costs, whether it runs
  once for every seed (`trajopt.solver`), or an episode's settings (`trajopt.closedloop.runner`), and the
  arguments' tree, shapes, dtypes and weak types (`signature`).

**Not kept** (fail closed): a problem whose spec names user code (a ``package.module:Class`` anywhere, or a plain
name Python registered to a class outside trajopt), whose Python is not in the key; a system that reads a model file without a ``content_digest`` of it. A program JAX
refuses to export (host callbacks: MuJoCo's C simulator) is traced directly, and its key remembers that, so the
next run does not try again. Anything of this module's own that fails leaves the run to trace directly.

**When:** with the compilation cache (`trajopt._setup.cache_requested`: the command line, or ``TRAJOPT_CACHE=1``);
``TRAJOPT_TRACE_CACHE=0`` turns this one off alone. The folder holds at most `MAX_BYTES` (the least recently used
entries go first; an MJX loop's entry is a few hundred KB). An entry is read only when its stored key and its
programs' sha256 match. Like the compilation cache, it is trusted code (an entry is a pickle): do not point it at a
folder others can write to. Needs the ``flatbuffers`` package (JAX's serialization; a dependency of trajopt's),
without which nothing is kept.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import pickle
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

FORMAT = 1
"""The version of an entry's layout; another is a different key (never read as this one)."""

ENV = "TRAJOPT_TRACE_CACHE"
"""``TRAJOPT_TRACE_CACHE=0`` (or false, no, off) in the environment: traced programs are not kept."""

MAX_BYTES = 256 << 20
"""The most the traces folder holds; past it the least recently used entries are removed."""

FOLDER = "traces"


def enabled() -> bool:
    """Whether traced programs are kept: the compilation cache is asked for (`trajopt._setup.cache_requested`),
    `ENV` does not turn them off, and JAX can serialize an export (``flatbuffers`` is installed)."""
    from trajopt import _setup

    if os.environ.get(ENV, "").strip().lower() in _setup._OFF or not _setup.cache_requested():
        return False
    try:
        import flatbuffers  # noqa: F401  - jax.export's serialization imports it
    except ImportError:
        return False
    return True


def folder() -> Optional[Path]:
    """``<the compilation cache's parent>/traces`` (beside it, as the kept step costs are), or None when off."""
    from trajopt import _setup

    cache = _setup.cache_dir() if enabled() else None
    return Path(os.path.dirname(cache)) / FOLDER if cache else None


@functools.lru_cache(maxsize=None)
def environment() -> str:
    """sha256 (hex) of what a traced program depends on besides the problem and the run: trajopt's source files
    (their paths in the package and bytes), Python's version, every installed distribution's name and version (and
    for one installed in editable mode, its Python files' paths, sizes and modification times: its version does
    not change when its source does), JAX's configuration values and the default device. Computed once per
    process."""
    from importlib import metadata

    import jax

    h = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(sys.version.encode())
    dists = sorted((((str(d.metadata.get("Name") or "?"), str(d.version)), d) for d in metadata.distributions()),
                   key=lambda e: e[0])
    h.update(json.dumps([name for name, _ in dists]).encode())
    for _, d in dists:
        for root in _editable_roots(d):
            for path in sorted(root.rglob("*.py")):
                st = path.stat()
                h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\0".encode())
    config = getattr(jax.config, "values", {})
    h.update(json.dumps(sorted((k, repr(v)) for k, v in config.items())).encode())
    device = jax.devices()[0]
    h.update(f"{device.platform}|{getattr(device, 'device_kind', '')}".encode())
    return h.hexdigest()


def _editable_roots(dist) -> list[Path]:
    """The source folder of a distribution installed in editable mode (PEP 610's direct_url.json), other than
    trajopt's own (hashed by content above); none for a regular install."""
    try:
        info = json.loads(dist.read_text("direct_url.json") or "{}")
    except (OSError, ValueError):
        return []
    if not info.get("dir_info", {}).get("editable") or not str(info.get("url", "")).startswith("file://"):
        return []
    root = Path(info["url"][len("file://"):])
    return [] if Path(__file__).resolve().parent.parent == root.resolve() or not root.is_dir() else [root]


def _digest(system) -> tuple[bool, Optional[str]]:
    """(whether ``system`` is identified, its ``content_digest`` or None): a system that reads a model file
    (``model``) is identified only by the digest of what it read; without one it is not, and nothing is kept."""
    digest = getattr(system, "content_digest", None)
    if callable(digest):
        return True, digest()
    return getattr(system, "model", None) is None, None


UNREAD_KEYS = (("title",), ("description",), ("solve", "variants"), ("solve", "oracles"), ("mpc", "variants"),
               ("oracle",), ("solve", "seeds"), ("solve", "key"), ("mpc", "seeds"))
"""The resolved spec's keys that no kept program is traced with, left out of `problem_identity`:

* the file's words (title, description);
* which variants run, and the options of the oracles they name: each run's key holds its own variant's resolved
  table instead (`for_variant`), which has every option its method is built with, its oracle's included
  (`trajopt.methods.variants.Variant.table`). So a run of one variant reads the trace a run of them all kept,
  and another option of one oracle leaves the other variants' traces where they were;
* the seeds and the PRNG key: they reach the programs as arguments (the seed keys, a closed loop's seeds and
  starts), and their count as the arguments' shapes, which are in the key."""


def problem_identity(spec) -> Optional[dict]:
    """What identifies ``spec``'s problem and variants for a kept trace: {"spec": its resolved tables but
    `UNREAD_KEYS` and ``variants``, "variants": {name: resolved table} (a run keeps only its own: `for_variant`),
    "system": its system's ``content_digest`` or None, "plant": a closed-loop plant's own system's}; None when
    nothing is kept: `enabled` is false, the spec names user code (a ``package.module:Class`` string anywhere in
    it, whose Python the key does not cover: `trajopt.studies.sources.user_names`; or a name registered from Python
    to a class outside trajopt: `trajopt.registry.foreign_names`), or a system reads a model file and has no digest
    of it (fail closed).

    Only a caller that built the problem, the methods and the plant from ``spec`` alone may pass this on (the CLI
    does, and `trajopt.api.Loaded` for what `load` built): the key holds the spec, not objects changed after it was
    read (a method put in place of one built from it, a method edited in place)."""
    if not enabled():
        return None
    from trajopt.registry import foreign_names
    from trajopt.studies.sources import strings, user_names

    resolved = spec.resolved()
    if next(user_names(resolved), None) is not None or foreign_names() & set(strings(resolved)):
        return None
    identified, system = _digest(spec.system)
    plant = getattr(getattr(getattr(getattr(spec, "closed_loop", None), "plant", None), "plant", None), "system", None)
    plant_identified, plant_digest = _digest(plant) if plant is not None else (True, None)
    if not identified or not plant_identified:
        return None
    kept = copy.deepcopy(resolved)  # the spec's own tables stay as they are
    variants = kept.pop("variants", {})
    for path in UNREAD_KEYS:
        table = kept
        for part in path[:-1]:
            table = table.get(part) if isinstance(table, dict) else None
        if isinstance(table, dict):
            table.pop(path[-1], None)
    return {"spec": kept, "variants": variants, "system": system, "plant": plant_digest}


def for_variant(identity: Mapping, name: str) -> dict:
    """``identity`` (`problem_identity`) with only the variant ``name``'s table of its ``variants``: what one run
    of that variant is traced with. A name it does not hold keeps them all (a key that is only more specific)."""
    variants = identity.get("variants")
    if not isinstance(variants, Mapping) or name not in variants:
        return dict(identity)
    return {**identity, "variants": {name: variants[name]}}


def signature(args) -> dict:
    """The tree structure and each leaf's shape, dtype and weak type of a program's arguments: a traced program is
    another for other ones."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    leaves, tree = jax.tree_util.tree_flatten(args)
    return {"tree": str(tree), "leaves": [[list(np.shape(a)), str(jnp.result_type(a)),
                                            bool(getattr(a, "weak_type", False))] for a in leaves]}


def _exact(value):
    """JSON for what `json` does not write itself: NumPy scalars exactly; anything else is refused (TypeError), so
    a value whose text could round is never part of a key."""
    import numpy as np

    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"not keyable: {type(value).__name__}")


def key(identity: Mapping, run: Mapping, args: Any = None) -> Optional[str]:
    """sha256 (hex) of `FORMAT`, `environment`, the problem's ``identity`` (`problem_identity`), the ``run``'s
    settings (JSON, exactly) and its programs' arguments' `signature`, or None when one of them cannot be written
    exactly or the environment cannot be read: nothing is then kept."""
    try:
        text = json.dumps({"format": FORMAT, "environment": environment(), "problem": identity, "run": run,
                           "args": signature(args)}, sort_keys=True, default=_exact)
    except Exception:  # noqa: BLE001 - not keyable: traced as without this module
        return None
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Lowered:
    """A lowered program of its flattened arguments (``lowered``: JAX's), and how its compiled form is called with
    the arguments' trees (`wrap`); ``from_cache``: the trace was read from the folder, not traced now."""

    lowered: Any
    out_tree: Any
    from_cache: bool

    def wrap(self, compiled: Callable) -> Callable:
        """``call(*args)``: ``compiled`` on the leaves of ``args``, its outputs unflattened to the traced tree."""
        import jax

        out_tree = self.out_tree

        def call(*args):
            return jax.tree_util.tree_unflatten(out_tree, compiled(*jax.tree_util.tree_leaves(args)))

        return call


def lower(fn: Callable, args: tuple, key: Optional[str], *, record: Callable[[], Any] = lambda: None,
          restore: Callable[[Any], None] = lambda recorded: None) -> Optional[Lowered]:
    """``fn(*args)`` lowered through an export kept under ``key`` (`lower_all` of one program)."""
    out = lower_all(key, lambda: [(fn, args)], record=record, restore=restore)
    return None if out is None else out[0]


def lower_all(key: Optional[str], programs: Callable[[], Sequence[tuple[Callable, tuple]]], *,
              record: Callable[[], Any] = lambda: None,
              restore: Callable[[Any], None] = lambda recorded: None) -> Optional[list[Lowered]]:
    """Each ``fn(*args)`` of ``programs()`` ([(fn, args)], built only when they are traced) lowered through its
    export, the exports kept together under ``key``: read from the folder when there (then ``restore(recorded)``
    with what ``record()`` returned after they were traced, and ``programs`` is not called), else traced now,
    exported and kept. Each is lowered with its export's argument types, in both cases, so a kept program's text
    is the one compiled when it was traced (and XLA's compiled program is found in the compilation cache).

    None when there is no folder or key, when ``fn``'s own code raises while traced, when JAX refuses to export
    one of them (host callbacks, a custom call without a stable form: marked under ``key``, so the next call
    returns None at once, without calling ``programs``), or when anything of this module's own fails: the caller
    then traces them directly, as without this module (raising ``fn``'s errors as its own)."""
    import jax
    from jax import export

    where = folder()
    if where is None or key is None:
        return None
    path = where / f"{key}.trace"
    entry = _read(path, key)
    if entry is not None:
        if entry["programs"] is None:
            return None
        try:
            out = [_lowered(export.deserialize(bytearray(blob)), tree, True) for blob, tree in entry["programs"]]
            restore(entry["recorded"])
            return out
        except Exception:  # noqa: BLE001 - an entry that does not read back is traced again, and replaced
            pass
    traced = []
    for fn, args in programs():
        leaves, in_tree = jax.tree_util.tree_flatten(args)
        box: dict = {}

        def flat(*leaves, fn=fn, in_tree=in_tree, box=box):
            out = fn(*jax.tree_util.tree_unflatten(in_tree, leaves))
            flat_out, box["out_tree"] = jax.tree_util.tree_flatten(out)
            return flat_out

        _named(flat, getattr(fn, "__name__", "program"))  # the program keeps its name (logs, cache entries)
        jitted = jax.jit(flat)
        try:
            jitted.trace(*leaves)  # fn's own errors: raised again when the caller traces it directly
        except Exception:  # noqa: BLE001
            return None
        traced.append((jitted, leaves, box))
    try:  # each trace above is reused (JAX keeps it by function and argument types)
        exports = [(export.export(jitted)(*leaves), box["out_tree"]) for jitted, leaves, box in traced]
    except (NotImplementedError, ValueError):  # JAX refuses it (host callbacks): traced directly, now and next time
        _write(where, path, {"key": key, "programs": None})
        return None
    except Exception:  # noqa: BLE001 - anything else (memory, say) may pass: traced directly, nothing marked
        return None
    try:
        entry = {"key": key, "programs": [(bytes(e.serialize()), tree) for e, tree in exports],
                 "recorded": record()}
        entry["sha256"] = _blobs_digest(entry["programs"])
        pickle.dumps(entry)  # what cannot be kept (a tree of a class made at run time) is not
        out = [_lowered(e, tree, False) for e, tree in exports]
    except Exception:  # noqa: BLE001 - traced directly instead
        return None
    _write(where, path, entry)
    return out


def _lowered(exported, out_tree, from_cache: bool) -> Lowered:
    import jax

    def call(*args):
        return exported.call(*args)

    _named(call, exported.fun_name)  # "jit_fused_chunk", as traced directly: JAX's logs and its cache entries
    types = [jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=a.weak_type) for a in exported.in_avals]
    return Lowered(jax.jit(call).lower(*types), out_tree, from_cache)


def _named(fn: Callable, name: str) -> None:
    fn.__name__ = fn.__qualname__ = name


def _blobs_digest(programs) -> str:
    return hashlib.sha256(b"".join(hashlib.sha256(blob).digest() for blob, _ in programs)).hexdigest()


def _read(path: Path, key: str) -> Optional[dict]:
    """The entry at ``path`` if it reads back whole and is the one kept for ``key`` (its key and its programs'
    sha256 as written); None otherwise (missing, cut short by a process that died, of another layout)."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f)
    except Exception:  # noqa: BLE001
        return None
    if not isinstance(entry, dict) or entry.get("key") != key or "programs" not in entry:
        return None
    if entry["programs"] is not None and entry.get("sha256") != _blobs_digest(entry["programs"]):
        return None
    try:
        os.utime(path)  # recently used: kept longest
    except OSError:
        pass
    return entry


def _write(where: Path, path: Path, entry: dict) -> None:
    """Keep ``entry`` at ``path`` (written whole, then renamed: a reader never sees half an entry), then trim the
    folder to `MAX_BYTES`. A folder that cannot be written is left alone: the run goes on without keeping."""
    try:
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=where, suffix=".tmp", delete=False) as f:
            try:
                pickle.dump(entry, f, protocol=pickle.HIGHEST_PROTOCOL)
            except BaseException:
                os.unlink(f.name)
                raise
        os.replace(f.name, path)
        _trim(where)
    except OSError:
        pass


STALE_SECONDS = 3600
"""A temporary file older than this in the folder is one a process left when it died while writing: removed."""


def _trim(where: Path, limit: int = MAX_BYTES) -> None:
    """Remove the least recently used entries until the folder holds at most ``limit`` bytes, and any temporary
    file older than `STALE_SECONDS`."""
    for p in where.glob("*.tmp"):
        try:
            if time.time() - p.stat().st_mtime > STALE_SECONDS:
                p.unlink()
        except OSError:
            pass
    entries = []
    for p in where.glob("*.trace"):
        try:
            st = p.stat()
        except OSError:
            continue
        entries.append((st.st_mtime, st.st_size, p))
    total = sum(size for _, size, _ in entries)
    for _, size, p in sorted(entries, key=lambda e: e[0]):
        if total <= limit:
            break
        try:
            p.unlink()
            total -= size
        except OSError:
            pass
