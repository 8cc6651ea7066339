"""What every verb that writes shares: SIGINT/SIGTERM held while it works (`_interruptible`), its ``--out`` folder
claimed before any work and complete or absent after (`claim_out`, `lock_out`; the leftovers a killed writer may
leave, `is_leftover`), the largest recorded history kept in memory (`history_memory_limit`) and the title its
figures and tables show (`display_title`). Used by solve, compare, diagnose, fidelity, sweep, landscape, report,
study and mpc; no JAX (the CLI's start-up path).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

from trajopt import _signals
from trajopt.cli._common import fail
from trajopt.runs_files import DiskHistory


def _interruptible():
    """SIGINT/SIGTERM set a flag that the solver polls between chunks; a second SIGINT aborts at once."""
    return _signals.hold()


# ------------------------------------------------------------------------------------------- --out


# a folder holding one of these is a trajopt run folder (diagnose writes no config.toml: its diagnose.json marks it)
RUN_MARKERS = ("config.toml", "result.json", "diagnose.json")
# a streamed history's temporary folder; one that a killed run left behind marks a trajopt run folder too
HISTORY_TEMP = DiskHistory.PREFIX


@contextmanager
def lock_out(path: Path):
    """Create ``--out`` (exit 2 if it cannot be: a file in the way, an unwritable path, /proc) and hold an
    exclusive ``flock`` on the folder itself for the block: a second trajopt command into the same folder is
    refused while the first holds it, and a killed one leaves no lock file behind. Yields whether this call
    created the folder."""
    import fcntl  # POSIX only: imported where it is used

    if path.exists() and not path.is_dir():
        raise fail(f"--out {path}: exists and is not a folder")
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise fail(f"--out {path}: cannot create or open it ({e.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise fail(f"--out {path}: in use by another trajopt run; choose another folder") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise fail(f"--out {path}: not writable")
        yield created
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def claim_out(path: Path, force: bool):
    """Check ``--out`` before any work and hold it for the run.

    The folder is created and locked (`lock_out`), and, with ``--force``, emptied first: stale temporaries and
    an older run's report go with it. ``--force`` empties only a trajopt run folder (one with a `RUN_MARKERS`
    file, or a temporary a killed trajopt writer left: `is_leftover`); other folders are refused. A folder this
    call created and nothing was written into is removed again if the run fails. solve, compare, diagnose,
    sweep and landscape all claim --out so (`trajopt study` locks its folder with `lock_out` and keeps its own
    resume rules).

    The folder is the block's alone (empty when claimed), so it is complete or absent: if writing fails (any
    OSError: a full disk, a file-size limit, a read-only or vanished folder, an I/O error) or the user abandons
    the writing (KeyboardInterrupt) before the outputs are final (`trajopt._signals.settle`), whatever the block
    wrote is removed; an OSError becomes one line naming the file and the reason (exit 2, the status of every
    --out problem).
    """
    with lock_out(path) as created:
        present = list(path.iterdir())
        if present and not force:
            raise fail(f"--out {path}: folder exists and is not empty; choose another or pass --force to overwrite")
        if present:
            if not any((path / m).exists() for m in RUN_MARKERS) and not any(is_leftover(p) for p in present):
                raise fail(f"--out {path}: --force empties only a trajopt run folder (one with "
                           f"{', '.join(RUN_MARKERS[:-1])} or {RUN_MARKERS[-1]}); this one holds other files "
                           f"({', '.join(sorted(p.name for p in present)[:3])})")
            try:
                _empty(path)
            except OSError as e:
                raise fail(f"--out {path}: --force cannot empty it ({_os_reason(e)})") from None
        ok = False
        try:
            yield path
            ok = True
        except (OSError, KeyboardInterrupt) as e:
            if _signals.settled():  # the outputs were final before this (e.g. a closed stdout): they stay
                raise
            try:
                _empty(path)  # nothing half-written stays behind
            except OSError:
                pass
            if isinstance(e, OSError):
                raise fail(f"--out {path}: writing failed, {_os_reason(e)}; nothing was kept ({_os_hint(e)})") from None
            raise
        finally:
            if not ok and created:
                try:
                    path.rmdir()  # only if nothing is left in it
                except OSError:
                    pass


def _empty(path: Path) -> None:
    """Remove everything inside ``path`` (links removed, never followed)."""
    for p in list(path.iterdir()):
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def _os_reason(e: OSError) -> str:
    """'FILE: reason' of an OSError (the file it names, if any; the reason as the system words it)."""
    reason = e.strerror or str(e)
    return f"{e.filename}: {reason}" if e.filename and str(e.filename) not in reason else reason


def _os_hint(e: OSError) -> str:
    """What to do about a failed write, by its errno."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some space, or choose another folder"
    if e.errno == errno.EFBIG:
        return "a file-size limit stopped it (ulimit -f); raise it, or choose another folder"
    return "choose another folder"


# the files trajopt writes into a run folder; `trajopt.runs.atomic_file` writes each through a temporary
# .NAME.RANDOM.tmp beside it (mkstemp's 8 random characters), which a killed run may leave behind
OUTPUT_NAMES = ("config.toml", "metrics.jsonl", "result.json", "trajectory.npz", "convergence.png", "rollouts.png",
                "report.html", "diagnose.json", "diagnose.png", "sweep.csv", "sweep.json", "sweep.png",
                "landscape.csv", "landscape.json", "landscape.png", "realised.png", "closed_loop_cost.png",
                "plan_time.png")  # the last three: trajopt mpc's figures
_LEFTOVER = re.compile(r"^\.(" + "|".join(re.escape(n) for n in OUTPUT_NAMES) + r")\.[a-z0-9_]{8}\.tmp$")


def is_leftover(p: Path) -> bool:
    """Whether ``p`` is a temporary that a killed trajopt writer left in a run folder: a streamed history's
    ``.history-*`` folder or an output's ``.NAME.RANDOM.tmp`` file (never run data; `--force` removes it)."""
    if p.is_symlink():
        return False
    return (p.name.startswith(HISTORY_TEMP) and p.is_dir()) or (bool(_LEFTOVER.match(p.name)) and p.is_file())


# ---------------------------------------------------------------------------- the recorded history


HISTORY_MEMORY_ENV = "TRAJOPT_HISTORY_MEMORY"
DEFAULT_HISTORY_MEMORY = 1 << 30  # bytes


def history_memory_limit() -> int:
    """The largest history (bytes, as estimated by `trajopt.solver.Prepared.history_bytes`) a variant keeps in
    memory; a larger one streams to disk. ``$TRAJOPT_HISTORY_MEMORY`` (a whole number of bytes, 0 streams every
    run) or 1 GiB; exit 2 on a bad value."""
    text = os.environ.get(HISTORY_MEMORY_ENV)
    if text is None or not text.strip():
        return DEFAULT_HISTORY_MEMORY
    try:
        limit = int(text.strip())
    except ValueError:
        limit = -1
    if limit < 0:
        raise fail(f"{HISTORY_MEMORY_ENV}: found {text!r}, allowed: a whole number of bytes >= 0, the largest recorded "
                   f"history kept in memory (default {DEFAULT_HISTORY_MEMORY}, 1 GiB; 0 streams every run to disk)")
    return limit


# ------------------------------------------------------------------------------------------ titles


def display_title(spec, sets: Optional[List[str]]) -> str:
    """The title a figure or table shows. Without --set, the file's title. With --set, the file's title may state
    parameter values the overrides changed ("k = 1000"), so the problem's name stands in for it (unless the title
    itself was set), followed by every override. An mjx system on MuJoCo's C simulator (``backend = "mujoco"``) says
    so, unless an override set it (then the override says it). A lone surrogate (an undecodable byte of an argument or a file
    name) is shown as U+FFFD: no font, file or terminal can show it (matplotlib raised a TypeError on it)."""
    keys = [item.split("=", 1)[0].strip() for item in sets or []]
    # which simulator ran, where it is not MJX's own and no --set says so (an mjx system's backend = "mujoco")
    simulator = " [MuJoCo's C simulator]" if getattr(getattr(spec, "system", None), "backend", None) == "mujoco" \
        and "system.backend" not in keys else ""
    if not sets:
        return _LONE_SURROGATE.sub("\ufffd", spec.title + simulator)
    own = "title" in keys
    others = [item for item, k in zip(sets, keys) if k != "title"]
    head = spec.title if own else spec.name
    return _LONE_SURROGATE.sub("\ufffd", head + simulator + (f" [--set {', '.join(others)}]" if others else ""))


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
