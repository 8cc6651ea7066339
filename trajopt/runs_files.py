"""A run folder's files on disk: their names, atomic writing, the text trajopt writes, the history store on disk,
and opening a file without trusting it. The ground floor of `trajopt.runs`: numpy and the standard library only
(no JAX), so the CLI imports it on its start-up path.

Every file is written atomically (`atomic_file`: a temporary name in the same folder, then a rename), so a folder
never holds a half-written file; `write_lines` writes one a block of lines at a time, never holding it whole in
memory. `DiskHistory` keeps a run's recorded history in files mapped into memory, in a temporary folder inside the
run folder being written. Text is written as UTF-8 as it was given ("🚀", never "\\ud83d\\ude80"; `dumps_json`,
`encode_line`, `utf8`).

Readers trust no file: `open_member` opens one without following a link out of its folder and `os.fstat`-s it
before a byte is read (a FIFO or a device is named, never read). What cannot be read is a `RunFolderError` naming
the file and what was found. Temporaries a killed writer left (`is_temporary`) are never read.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable

import numpy as np


CONFIG, METRICS, RESULT, TRAJECTORY, CONVERGENCE = (
    "config.toml", "metrics.jsonl", "result.json", "trajectory.npz", "convergence.png",
)
COUNT_FIELDS = ("value", "rollouts", "gradients", "linearizations")  # stored as cost and cumulative counts
DERIVED_FIELDS = ("forward_equivalents",)  # metrics.jsonl columns computed from the counts (not info fields)
# what differs between two runs of one configuration: timings, and how the loop was compiled (``program``: reused
# from this process's compiled programs or compiled, trajopt.programs)
TIMING_FIELDS = ("seconds", "run_seconds", "compile_seconds", "final_evaluation_seconds", "final_evaluation_programs",
                 "created", "program")


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
                f.write(escaped_utf8("\n".join(block) + "\n"))
                block, size, written = [], 0, True
        if block or not written:
            f.write(escaped_utf8("\n".join(block) + "\n"))


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
    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        try:
            os.posix_fallocate(f.fileno(), 0, size)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise OSError(e.errno, f"{path}: no room for {size} bytes of recorded history ({e.strerror})") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -------------------------------------------------------------------------------------------- text


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


def plain_list(values: list) -> list:
    """`_jsonable` of a list from ``ndarray.tolist()``, with a fast path for its finite floats and ints."""
    return [v if (type(v) is float and math.isfinite(v)) or type(v) is int else _jsonable(v) for v in values]


# json.dumps(row, allow_nan=False, ensure_ascii=False), without a new encoder per row
encode_line = json.JSONEncoder(allow_nan=False, ensure_ascii=False).encode
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_surrogates(text: str) -> str:
    """JSON text with each lone surrogate (an undecodable byte of a file name or argument, as Python decodes it)
    written as its \\uXXXX escape: UTF-8 cannot hold one, JSON's escape keeps it exactly. Text outside the basic
    multilingual plane ("🚀") is one code point, not a surrogate, and stays as written."""
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def escaped_utf8(text: str) -> bytes:
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


# ----------------------------------------------------------------------------------------- reading


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


def read_text(path: Path, limit: int = 64 << 20) -> str:
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


# ------------------------------------------------------------------------ a value read from a file


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def short_repr(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."
