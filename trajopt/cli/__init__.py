"""The `trajopt` command line: thin. It parses, calls the library, writes through `trajopt.runs` and prints
with rich. One module per group of verbs, each registering its commands on the shared Typer `app`:

    run.py       solve, compare
    info.py      validate, list
    report.py    report
    study.py     sweep, landscape
    diagnose.py  diagnose, gradcheck
    studies.py   study (grids of problems × variants × parameters × seeds; local or Ray)

Exit codes: 0 success, 1 the run failed (every seed non-finite), 2 bad input, 130 interrupted (the run
folder is still complete and marked "interrupted").
"""

from trajopt.cli import run, info, diagnose, study, report, studies, mpc  # noqa: F401,I001  (registers the commands, in this order)
from trajopt.cli._common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, app


def main() -> None:
    """The console script (`trajopt._entry.main`): signals held from the start, then the app."""
    from trajopt._entry import main as entry

    entry()


__all__ = ["app", "main", "EXIT_OK", "EXIT_FAILED", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED"]
