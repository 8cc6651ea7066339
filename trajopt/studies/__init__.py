"""Grid studies: problems x variants x grid points x seeds, run locally or on a Ray cluster.

    study = load_study("examples/studies/stiffness_grid.toml", seeds=(0, 1), iterations=50)
    cells = expand(study)                          # every cell's spec validated, nothing run
    prepare(folder, fresh=False, name=study.name)     # refuses another study's folder
    result = run_study(study, cells, folder, LocalExecutor())     # or RayExecutor(address=...)

A study file with ``budget`` (compute per seed in forward-step equivalents, instead of ``iterations``) needs its
cells' iterations under the budget before it runs: ``cells = with_budget(study, expand(study))`` (the step costs
once per system; `expand.with_budget`).

A study file with ``verb = "mpc"`` makes every cell a closed-loop run of its problem's ``[mpc]`` table
(`trajopt.closedloop.mpc`; `cells.run_closed_loop_cell`), with its own table columns (`cells.MPC_ROW_COLUMNS`), a
figure against forward-step equivalents per control step for an ``mpc.iterations`` axis and best.csv.

Modules: `file` (the study file and its validation), `values` (its values: written as TOML, labelled, normalised,
checked; seeds and names), `expand` (its cells, their folders and fingerprints),
`cells` (run one cell: a pure function), `executors` (local, Ray), `runner` (skip finished cells, write each as it
arrives), `store` (the study folder), `figures` (figures and the study's page), `suite_table` (a closed-loop
study's table per problem x variant), `sources` (the files a problem names, hashed into its cells' fingerprints).
"""

from trajopt.studies.cells import (MPC_ROW_COLUMNS, CellOutcome, cell_rows, mpc_cell_rows, run_cell,
                                   run_closed_loop_cell, step_counts)
from trajopt.studies.executors import LocalExecutor, RayExecutor, executor
from trajopt.studies.runner import StudyRun, run_study
from trajopt.studies.store import StudyFolderError, StudyWriteError, prepare, read_table, write_outputs
from trajopt.studies.expand import Cell, Expansion, ExpansionStopped, expand, with_budget
from trajopt.studies.file import Axis, Resources, StudySpec, load_study, parse_seeds

__all__ = ["Axis", "Cell", "CellOutcome", "Expansion", "ExpansionStopped", "LocalExecutor", "MPC_ROW_COLUMNS",
           "RayExecutor", "Resources", "StudyFolderError", "StudyRun", "StudySpec", "StudyWriteError", "cell_rows",
           "executor", "expand", "load_study", "mpc_cell_rows", "parse_seeds", "prepare", "read_table", "run_cell",
           "run_closed_loop_cell", "run_study", "step_counts", "with_budget", "write_outputs"]
