"""Traced programs kept on disk: a command run again skips tracing, as JAX's persistent cache lets it skip XLA.

Tracing is JAX running trajopt's (and MJX's) Python to write the program down; on an MJX problem it is most of a
warm command's wait. Gymnasium's inverted pendulum's FoBG loop traces in about 9 s on a 2-core CPU, where its
compiled program then loads from the compilation cache in about 1 s (benchmarks/bench_mjx_cold.txt). So the loop a
command compiles (`trajopt.solver`) is traced as a function of its flattened arguments and exported with
`jax.export` (its StableHLO, serialized); the export, its outputs' tree structure and what tracing recorded besides
(the loop's `trajopt.loop.Layout`) are kept in a ``traces`` folder beside the compilation cache (`folder`). Every
run, the first included, lowers the exported program (``Exported.call``) and compiles that: the program text is the
same in every run, so a later run finds XLA's compiled program in the compilation cache too. The results are those
of the program traced directly, bit for bit (tests/test_traces.py; the main job's numbers).

**The key** is a sha256 of everything the traced program depends on:

* `FORMAT` (this module's way of keeping an entry);
* `environment`: the bytes of every trajopt source file, the version of Python and of every installed
  distribution, JAX's configuration (x64 among it) and the device;
* the problem, `problem_identity`: its resolved spec (every table with its defaults filled in, which reloads to
  the same problem: `trajopt.spec.Spec.resolved`) and its system's ``content_digest`` where it has one (an MJX
  model: the bytes of the compiled model, so every file MuJoCo read for it);
* the run (`trajopt.solver`): the variant's name, its iterations, chunk, seeds, budget and step costs, whether it
  runs once for every seed, and its arguments' shapes and dtypes.

**Not kept:** a problem whose spec names user code (a ``package.module:Class`` anywhere): that Python is not in
the key. A program JAX cannot export (host callbacks: MuJoCo's C simulator) is traced directly, and its key
remembers that, so the next run does not try again.

**When:** with the compilation cache (`trajopt._setup.cache_requested`: the command line, or ``TRAJOPT_CACHE=1``);
``TRAJOPT_TRACE_CACHE=0`` turns this one off alone. The folder holds at most `MAX_BYTES` (the least recently used
entries go first; an MJX loop's entry is a few hundred KB). Like the compilation cache, it is trusted code (an
entry is a pickle): do not point it at a folder others can write to. Needs the ``flatbuffers`` package (JAX's
serialization; a dependency of trajopt's), without which nothing is kept.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import sys
import tempfile
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
    """Whether traced programs are kept: the compilation cache is on (`trajopt._setup.cache_requested` and a
    folder), `ENV` does not turn them off, and JAX can serialize an export (``flatbuffers`` is installed)."""
    from trajopt import _setup

    if os.environ.get(ENV, "").strip().lower() in _setup._OFF or not _setup.cache_requested():
        return False
    if _setup.cache_dir() is None:
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
    (their paths in the package and bytes), Python's version, every installed distribution's name and version,
    JAX's configuration values and the default device. Computed once per process."""
    from importlib import metadata

    import jax

    h = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(sys.version.encode())
    dists = sorted({(d.metadata.get("Name") or "?", d.version) for d in metadata.distributions()})
    h.update(json.dumps(dists).encode())
    config = getattr(jax.config, "values", {})
    h.update(json.dumps(sorted((k, repr(v)) for k, v in config.items())).encode())
    device = jax.devices()[0]
    h.update(f"{device.platform}|{getattr(device, 'device_kind', '')}".encode())
    return h.hexdigest()


def problem_identity(spec) -> Optional[dict]:
    """What identifies ``spec``'s problem and variants for a kept trace: {"spec": its resolved tables, "system":
    its system's ``content_digest`` or None}; None when nothing is kept (`enabled` is false, or the spec names user
    code: a ``package.module:Class`` string anywhere in it, whose Python the key does not cover)."""
    if not enabled():
        return None
    from trajopt.studies.sources import MODULE_ATTRIBUTE, strings

    resolved = spec.resolved()
    if any(":" in s and MODULE_ATTRIBUTE.match(s.strip()) for s in strings(resolved)):
        return None
    digest = getattr(spec.system, "content_digest", None)
    return {"spec": resolved, "system": digest() if callable(digest) else digest}


def key(identity: Mapping, run: Mapping) -> str:
    """sha256 (hex) of `FORMAT`, `environment`, the problem's ``identity`` (`problem_identity`) and the ``run``'s
    settings (JSON; anything else by its ``repr``)."""
    text = json.dumps({"format": FORMAT, "environment": environment(), "problem": identity, "run": run},
                      sort_keys=True, default=repr)
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


def lower(fn: Callable, args: tuple, key: str, *, record: Callable[[], Any] = lambda: None,
          restore: Callable[[Any], None] = lambda recorded: None) -> Optional[Lowered]:
    """``fn(*args)`` lowered through an export kept under ``key`` (`lower_all` of one program)."""
    out = lower_all(key, lambda: [(fn, args)], record=record, restore=restore)
    return None if out is None else out[0]


def lower_all(key: str, programs: Callable[[], Sequence[tuple[Callable, tuple]]], *,
              record: Callable[[], Any] = lambda: None,
              restore: Callable[[Any], None] = lambda recorded: None) -> Optional[list[Lowered]]:
    """Each ``fn(*args)`` of ``programs()`` ([(fn, args)], built only when they are traced) lowered through its
    export, the exports kept together under ``key``: read from the folder when there (then ``restore(recorded)``
    with what ``record()`` returned after they were traced, and ``programs`` is not called), else traced now,
    exported and kept. Each is lowered with its export's argument types, in both cases, so a kept program's text
    is the one compiled when it was traced (and XLA's compiled program is found in the compilation cache).

    None when there is no folder, when ``fn``'s own code raises while traced, or when JAX cannot export one of
    them (host callbacks; marked under ``key``, so the next call returns None at once, without calling
    ``programs``): the caller then traces them directly, as without this module (raising ``fn``'s errors)."""
    import jax
    from jax import export

    where = folder()
    if where is None:
        return None
    path = where / f"{key}.trace"
    entry = _read(path)
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

        jitted = jax.jit(flat)
        try:
            jitted.trace(*leaves)  # fn's own errors: raised again when the caller traces it directly
        except Exception:  # noqa: BLE001
            return None
        traced.append((jitted, leaves, box))
    try:  # each trace above is reused (JAX keeps it by function and argument types)
        exports = [(export.export(jitted)(*leaves), box["out_tree"]) for jitted, leaves, box in traced]
        entry = {"programs": [(bytes(e.serialize()), tree) for e, tree in exports], "recorded": record()}
        pickle.dumps(entry)  # what cannot be kept (a tree of a class made at run time) is not
    except Exception:  # noqa: BLE001 - JAX cannot export one (host callbacks): traced directly, now and next time
        _write(where, path, {"programs": None})
        return None
    _write(where, path, entry)
    return [_lowered(e, tree, False) for e, tree in exports]


def _lowered(exported, out_tree, from_cache: bool) -> Lowered:
    import jax

    types = [jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=a.weak_type) for a in exported.in_avals]
    return Lowered(jax.jit(exported.call).lower(*types), out_tree, from_cache)


def _read(path: Path) -> Optional[dict]:
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f)
        os.utime(path)  # recently used: kept longest
    except Exception:  # noqa: BLE001 - missing, partly written by a process that died, or of another layout
        return None
    return entry if isinstance(entry, dict) and "programs" in entry else None


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


def _trim(where: Path, limit: int = MAX_BYTES) -> None:
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
