"""The `trajopt` command line: thin. It parses, calls the library, writes through `trajopt.runs` and prints
with rich. One module per group of verbs, named after them, each registering its commands on the shared Typer
`app`:

    compare.py   solve, compare
    validate.py  validate, list
    diagnose.py  diagnose, gradcheck
    fidelity.py  fidelity (gradient error per oracle over time step and contact stiffness)
    sweeps.py    sweep, landscape
    report.py    report
    study.py     study (grids of problems × variants × parameters × seeds; local or Ray)
    mpc.py       mpc (a closed-loop run of a problem's [mpc] table)

beside what they share: `_common.py` (options, messages, loading a problem file) and `_outputs.py` (claiming
--out, holding signals, titles).

The console script is `trajopt._entry.main` (signals held from its first instruction, then this app); this package
does not import it. Importing the CLI imports no JAX: each command imports the library modules it runs inside its
function, so that ``trajopt --help``, ``trajopt list`` and a refused command line answer in a fraction of a second.

Exit codes: 0 success, 1 the run failed (every seed non-finite), 2 bad input, 130 interrupted (the run
folder is still complete and marked "interrupted").
"""

from trajopt.cli import compare, validate, diagnose, fidelity, sweeps, report, study, mpc  # noqa: F401,I001  (registers the commands, in this order)
from trajopt.cli._common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, app

__all__ = ["app", "EXIT_OK", "EXIT_FAILED", "EXIT_BAD_INPUT", "EXIT_INTERRUPTED"]
