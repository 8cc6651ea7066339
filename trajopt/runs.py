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

This module is the face of the run folder; the work is done by four modules, each owning one part:

    trajopt.runs_files     the files on disk: names, atomic writing, JSON and UTF-8 text, `DiskHistory`,
                           `open_member`, `RunFolderError` (numpy and the standard library only: no JAX)
    trajopt.runs_summary   result.json's content (`summarise`, `versions`) and the words read off it
                           (`entry_method_label`, `legend_labels`, `iterations_text`)
    trajopt.runs_write     writing a folder (`write_run`, `metrics_lines`, `write_config`, `write_table`)
    trajopt.runs_read      reading one back (`read_run` into a `Run`, `read_result`, `read_metrics`, ...)

(`trajopt.runs_mpc` is the closed-loop folder of `trajopt mpc`, on the same files.) Every name below is theirs,
re-exported here; a test that replaces one for the code that calls it replaces it on the module that owns it.
"""

from __future__ import annotations

from trajopt.runs_files import (
    CONFIG, CONVERGENCE, COUNT_FIELDS, DERIVED_FIELDS, METRICS, RESULT, TEMPORARY, TEMPORARY_SUFFIX, TIMING_FIELDS,
    TRAJECTORY, DiskHistory, RunFolderError, atomic_file, atomic_write_bytes, dumps_json, is_temporary,
    named_os_error, open_member, utf8, write_lines,
)
from trajopt.runs_read import (
    MAX_METRICS_LINE, METRICS_KEYS, Run, check_trajectories, is_run_dir, read_config, read_metrics, read_result,
    read_run, read_trajectories,
)
from trajopt.runs_summary import (
    entry_method_label, final_evaluation_seconds, iterations_text, legend_labels, overall_status, run_step_costs,
    summarise, variant_entries, versions,
)
from trajopt.runs_write import ITERATION_BLOCK, metric_fields, metrics_lines, write_config, write_run, write_table

__all__ = [
    # the files (trajopt.runs_files)
    "CONFIG", "METRICS", "RESULT", "TRAJECTORY", "CONVERGENCE", "COUNT_FIELDS", "DERIVED_FIELDS", "TIMING_FIELDS",
    "TEMPORARY", "TEMPORARY_SUFFIX", "is_temporary", "atomic_file", "atomic_write_bytes", "named_os_error",
    "write_lines", "DiskHistory", "utf8", "dumps_json", "RunFolderError", "open_member",
    # result.json's content (trajopt.runs_summary)
    "summarise", "overall_status", "run_step_costs", "versions", "variant_entries", "iterations_text",
    "entry_method_label", "legend_labels", "final_evaluation_seconds",
    # writing (trajopt.runs_write)
    "write_run", "metrics_lines", "metric_fields", "ITERATION_BLOCK", "write_config", "write_table",
    # reading (trajopt.runs_read)
    "Run", "read_run", "read_result", "read_config", "read_metrics", "read_trajectories", "check_trajectories",
    "is_run_dir", "METRICS_KEYS", "MAX_METRICS_LINE",
]
