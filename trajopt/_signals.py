"""SIGINT/SIGTERM for the command line (used by `trajopt.cli` only; the library never touches signals).

The console script installs the handlers first thing (`trajopt._entry`), before any heavy import, so that a
signal at any moment of a run's life sets a flag instead of killing the process half-way: the fused loop polls
the flag between chunks, the run folder is still written completely and marked ``interrupted``, and the process
exits 130. A second Ctrl-C while the work is computed aborts at once (nothing is kept). Once the work is done and
its outputs are being written (`writing`), the computed results are not given up: a second Ctrl-C is noted and
the outputs are finished and marked interrupted; only a third abandons them (the verb then removes what it
wrote, so the folder is complete or absent, never half-written). Under a test runner (no console script) `hold`
installs them for the duration of a verb and restores the previous handlers afterwards.
"""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager

STATE = {"stop": False, "signal": None, "global": False, "settled": False, "late": None, "writing": False,
         "repeats": 0}
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _handler(signum, frame):
    if STATE["settled"]:  # the outputs are final and say "ok": a signal now changes nothing, the command exits
        if STATE["late"] is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        STATE["late"] = signum
        return
    if STATE["writing"]:  # the results are computed and being written: finished and marked, not given up
        if STATE["stop"] and signum == signal.SIGINT:
            STATE["repeats"] += 1
            if STATE["repeats"] >= 2:  # a third Ctrl-C: abandon (what was written is removed by the verb)
                raise KeyboardInterrupt
        STATE["stop"], STATE["signal"] = True, STATE["signal"] or signum
        sys.stderr.write("the results are being written; the folder will be complete and marked interrupted "
                         f"(Ctrl-C {'again' if STATE['repeats'] else 'twice more'} abandons it)...\n")
        return
    if STATE["stop"] and signum == signal.SIGINT:
        raise KeyboardInterrupt
    STATE["stop"], STATE["signal"] = True, signum
    sys.stderr.write("stopping after the current chunk; the run folder will be complete (Ctrl-C again to abort)...\n")


def requested() -> bool:
    """Whether SIGINT or SIGTERM arrived since the handlers were installed (and before `settle`)."""
    return bool(STATE["stop"])


def writing() -> None:
    """Mark that the verb's work is done and its outputs are being written: from now on a second Ctrl-C no longer
    aborts (the computed results would be lost); the outputs are finished and marked interrupted instead."""
    STATE["writing"] = True


def settled() -> bool:
    """Whether the command's outputs were declared final (`settle`): an error after that moment is not theirs."""
    return bool(STATE["settled"])


def settle() -> bool:
    """Mark the command's outputs final; return whether a signal arrived before this moment.

    A verb calls it once its last byte is written: a signal before it was (or is now) recorded in the outputs
    and the command exits 130; a signal after it finds them complete and unmarked, and the command exits as
    it would have (0), so that the exit status and the folder never disagree. The flag is set before the
    check, and the handler runs between bytecodes of the main thread, so no signal falls between the two.
    """
    STATE["settled"] = True
    return bool(STATE["stop"])


def install() -> None:
    """Install the handlers for the whole process (the console script)."""
    for sig in SIGNALS:
        signal.signal(sig, _handler)
    STATE["global"] = True


@contextmanager
def hold():
    """The handlers for the duration of a block (no-op when installed for the process); yields `requested`."""
    previous = {}
    if not STATE["global"]:
        STATE.update(stop=False, signal=None, settled=False, late=None, writing=False, repeats=0)
        for sig in SIGNALS:
            try:
                previous[sig] = signal.signal(sig, _handler)
            except ValueError:  # not in the main thread (e.g. under a test runner's thread)
                pass
    try:
        yield requested
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)
        if not STATE["global"]:  # the block's state ends with it: a later claim in this process starts unsettled
            STATE.update(stop=False, signal=None, settled=False, late=None, writing=False, repeats=0)
