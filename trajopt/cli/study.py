"""`trajopt study STUDY.toml`: a grid of problems x variants x parameters x seeds, locally or on a Ray cluster."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from trajopt import _signals
from trajopt.cli._common import (
    EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, IterOpt, JsonOpt, QuietOpt, SeedsOpt, app, err, fail, fmt,
    measuring_status, out, title_text, write_final,
)
from trajopt.cli._outputs import _interruptible, history_memory_limit, lock_out
from trajopt.tomlio import SpecError

# The library (JAX, the studies package, Ray) is imported inside each command, so that importing the CLI stays fast.

BACKENDS = ("local", "ray")


def _default_out(study_file: Path) -> Path:
    return Path("runs") / "studies" / study_file.stem


MEASURED_STEPS = 16  # distinct configurations whose step a dry run compiles and evaluates; the rest use the plan


class _Stopped(Exception):
    """SIGINT/SIGTERM during a dry run's estimate."""


def _planned(spec, variant: str):
    """Rollouts per step as the variant's method plans them (``calls``, no compilation), or None."""
    method = spec.variants[variant].method
    calls = getattr(method, "calls", None)
    if calls is None:
        return None
    try:
        return int(calls(spec.problem())[0])
    except Exception:  # noqa: BLE001  (a method without a fixed count: no estimate)
        return None


def _estimate(expansion, study, should_stop=None) -> tuple[list[dict], int]:
    """Per cell: rollouts per step (one evaluated step per distinct problem/variant configuration, for the first
    `MEASURED_STEPS` configurations; the method's planned ``calls`` for the others, which compiles nothing) and
    the cell's total (rollouts per step x iterations x seeds; a closed-loop cell's: x iterations per replan x
    replans x seeds, its step on the horizon-H problem); the study's total. ``should_stop`` is polled between
    configurations (raises _Stopped)."""
    from trajopt.studies import step_counts
    from trajopt.studies.cells import fidelity_counts

    cache: dict = {}
    rows, total = [], 0
    for c in expansion.cells:
        if c.error is not None:
            rows.append({"cell": c, "per_step": None, "total": 0})
            continue
        spec = expansion.specs[c.index]
        if c.verb == "fidelity":  # every estimate of the cell, counted from the oracles' plans (nothing compiles)
            counts = fidelity_counts(c, spec)
            total += counts["rollouts"]
            rows.append({"cell": c, "per_step": counts["gradients"], "total": counts["rollouts"]})
            continue
        key = (c.problem, c.variant, json.dumps(spec.variants[c.variant].table, sort_keys=True, default=str),
               spec.task.horizon, json.dumps(spec.raw_task, sort_keys=True, default=str),  # n_eval of a policy
               spec.closed_loop.mpc.settings.horizon if c.verb == "mpc" else None)
        if key not in cache:
            if should_stop is not None and should_stop():
                raise _Stopped()
            measured = sum(1 for v in cache.values() if v[1] == "step")
            if measured < MEASURED_STEPS:
                try:
                    cache[key] = (step_counts(c)["rollouts"], "step")
                except Exception:  # noqa: BLE001  (an estimate only: the run will report the error)
                    cache[key] = (None, "step")
            else:
                cache[key] = (_planned(spec, c.variant), "plan")
        per = cache[key][0]
        steps = c.iterations * (spec.closed_loop.mpc.settings.replans if c.verb == "mpc" else 1)
        cell_total = per * steps * len(c.seeds) if per is not None else 0
        total += cell_total
        rows.append({"cell": c, "per_step": per, "total": cell_total})
    return rows, total


def _dry_run(study, expansion, folder: Path, json_out: bool, quiet: bool, should_stop=None) -> None:
    from trajopt import runs
    from trajopt.studies.values import label_value

    try:
        est, total = _estimate(expansion, study, should_stop)
    except _Stopped:
        err.print("interrupted while estimating the study's cost; nothing written", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if json_out:
        sys.stdout.write(runs.dumps_json({
            "study": study.definition(), "out": str(folder), "rollouts": total,
            "cells": [{"index": e["cell"].index, "label": e["cell"].label, "folder": e["cell"].folder,
                       "valid": e["cell"].error is None, "error": e["cell"].error,
                       "rollouts_per_step": e["per_step"], "rollouts": e["total"],
                       **({"iterations": e["cell"].iterations} if study.budget is not None else {})} for e in est]}))
        return
    if quiet:
        return
    keys = [a.key for a in study.grid]
    if study.fidelity:
        _fidelity_dry_run(study, expansion, est, total, folder)
        return
    points = math.prod(len(a.values) for a in study.grid)
    skipped = f", {len(study.skip)} problem-variant pairs skipped" if study.skip else ""
    if study.closed_loop:
        gridded = any(a.key == "mpc.iterations" for a in study.grid)
        iters = study.iterations if study.iterations is not None else \
            ("the grid's mpc.iterations" if gridded else "each problem's mpc.iterations")
        seeds = len(study.seeds) if study.seeds is not None else "each problem's"
        each = f"closed loop: {iters} iterations per replan x {seeds} seeds"
        caption = ("rollouts: simulator calls (horizon-H rollouts), per method step from one evaluated step on the first "
                   "replan's problem, x iterations per replan x replans x seeds")
    elif study.budget is not None:
        budgets = ", ".join(label_value(b) for b in study.budget)
        each = f"a budget of {budgets} forward-step equivalents per seed x {len(study.seeds)} seeds each"
        caption = ("rollouts: simulator calls, per step from one evaluated step, x iterations x seeds; iterations: each "
                   "variant's under the budget (floor(budget / its cost per step); iLQR, L-BFGS: at most "
                   "ceil(budget / T), stopped once their spend reaches it)")
    else:
        each = f"{study.iterations} iterations x {len(study.seeds)} seeds each"
        caption = "rollouts: simulator calls, per step from one evaluated step, x iterations x seeds"
    table = Table(title=title_text(f"{study.title}: {len(expansion.cells)} cells ({len(study.problems)} problems x "
                               f"{len(study.variants)} variants x {points} grid points{skipped}), {each}"),
                  title_justify="left",
                  caption=caption, caption_justify="left")
    budgeted = study.budget is not None  # each cell's iterations come from its budget: shown
    for col in ("#", "problem", "variant", *keys, "valid", *(("iterations",) if budgeted else ()), "rollouts/step",
                "rollouts"):
        table.add_column(escape(col), justify="left" if col in ("problem", "variant", "valid") else "right")
    for e in est:
        c = e["cell"]
        table.add_row(str(c.index), escape(c.problem), escape(c.variant), *[escape(label_value(v)) for _, v in c.point],
                      "yes" if c.error is None else "[red]no[/]",
                      *((f"{c.iterations:,}" if c.error is None else "",) if budgeted else ()), fmt(e["per_step"]),
                      f"{e['total']:,}")
    out.print(table)
    by_error: dict = {}
    for c in expansion.invalid:
        by_error.setdefault(c.error.split(": ", 1)[-1], []).append(c.label)
    for message, labels in by_error.items():
        shown = "; ".join(labels[:4]) + (f"; ... ({len(labels)} cells)" if len(labels) > 4 else "")
        out.print(f"[yellow]invalid, recorded as failed:[/] {escape(shown)}: {escape(message)}", highlight=False,
                  soft_wrap=True)
    out.print(f"total: {total:,} rollouts; nothing written (study folder would be [bold]{escape(str(folder))}[/])")


def _fidelity_dry_run(study, expansion, est, total: int, folder: Path) -> None:
    """The dry run's table of a fidelity study: a cell per problem x grid point, each holding every oracle."""
    from trajopt.studies.values import label_value

    keys = [a.key for a in study.grid]
    points = len(expansion.cells) // max(1, len(study.problems))
    ref = "none" if study.reference_timestep is None else ("auto (the finest cell's time step / 4)"
                                                           if study.reference_timestep < 0 else f"{study.reference_timestep:g}")
    table = Table(title=title_text(f"{study.title}: {len(expansion.cells)} fidelity cells ({len(study.problems)} problems x "
                               f"{points} grid points), each: oracles {', '.join(study.variants)} x {len(study.seeds)} "
                               f"repeats at U0, fine reference {ref}, fd step {study.fd_step:g}"),
                  title_justify="left", caption="rollouts: the cell's estimates (finite differences and their check: 4 d; "
                  "each oracle's draws; the fine reference's 1 + 4 d at its step); gradients: the differentiated ones",
                  caption_justify="left")
    for col in ("#", "problem", *keys, "valid", "fine step", "rollouts", "gradients"):
        table.add_column(escape(col), justify="left" if col in ("problem", "valid") else "right")
    for e in est:
        c = e["cell"]
        fine = (c.fidelity or {}).get("reference_timestep")
        table.add_row(str(c.index), escape(c.problem), *[escape(label_value(v)) for _, v in c.point],
                      "yes" if c.error is None else "[red]no[/]", "-" if fine is None else f"{fine:g}",
                      f"{e['total']:,}", fmt(e["per_step"]))
    out.print(table)
    out.print(f"total: {total:,} rollouts; nothing written (study folder would be [bold]{escape(str(folder))}[/])")


@app.command("study")
def study_cmd(
    study_file: Path = typer.Argument(..., help="A TOML study file (see examples/studies/).", show_default=False),
    backend: str = typer.Option("local", "--backend", help="local: cells one after another in this process; "
                                "ray: each cell a Ray task."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (what `ray start --head` "
                                          "prints); default RAY_ADDRESS, else a local Ray instance."),
    seeds: Optional[str] = SeedsOpt,
    iterations: Optional[int] = IterOpt,
    budget: Optional[float] = typer.Option(None, "--budget", help="Compute budget per seed in forward-step "
                                           "equivalents, replacing the study file's budget or iterations: every "
                                           "cell runs what `trajopt compare --budget` runs (not with verb = "
                                           "\"mpc\")."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Study folder (default runs/studies/<study>)."),
    resume: bool = typer.Option(True, "--resume/--fresh", help="Skip the cells already finished in the study folder "
                                "(default), or empty the folder and start over."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="On resume, run the failed cells again."),
    strict: bool = typer.Option(False, "--strict", help="Refuse the study if any cell's spec is invalid (instead of "
                                "recording that cell as failed)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the cells and their cost in rollouts; run and write nothing."),
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Run a study: every problem x variant x grid point, each a fused solve over the seeds (with verb = "mpc" in
    the study file, a closed-loop run of the problem's [mpc] table; --seeds and --iterations then replace mpc.seeds
    and mpc.iterations; with verb = "fidelity", one cell per problem x grid point measuring every oracle's gradient
    as `trajopt fidelity` does, --seeds the repeats). With a budget (the file's `budget`, or --budget) every compare cell runs what `trajopt
    compare --budget` runs, the step costs measured once per system for the study.

    Writes a study folder: study.csv / study.parquet (one row per cell and seed), study.json, one run folder per
    cell, a figure per grid axis and report.html. Rerunning resumes: finished cells are skipped (a cell whose
    problem, overrides or named files changed runs again). A folder holds one study: another study's is refused.
    A disk error while writing is exit 2 with the finished cells kept; Ctrl-C exits 130 with a readable folder.
    """
    if backend not in BACKENDS:
        raise fail(f"--backend: found {backend!r}, allowed: {', '.join(BACKENDS)}")
    memory_limit = history_memory_limit()  # a bad TRAJOPT_HISTORY_MEMORY: exit 2 before any work
    try:  # a bad TRAJOPT_GROUP_CELLS (cells per compiled program): exit 2 before any work
        from trajopt.studies.groups import group_cells_limit
        group_cells_limit()
    except ValueError as e:
        raise fail(str(e)) from None
    if address is not None and backend != "ray":
        raise fail("--address: only with --backend ray")
    if iterations is not None and iterations < 1:
        raise fail(f"--iterations: found {iterations}, allowed: an integer >= 1")
    if budget is not None and iterations is not None:
        raise fail("give --budget or --iterations, not both (the budget sets each variant's iterations)")
    if retry_failed and not resume:
        raise fail("give --fresh or --retry-failed, not both (--retry-failed reruns the failed cells of a resumed "
                   "study; --fresh empties the folder, so nothing is left to retry)")
    # SIGINT/SIGTERM held from here: expanding and estimating a large study takes a while, and stops at once
    with _interruptible() as should_stop:
        _study(study_file, backend, address, seeds, iterations, out_dir, resume, retry_failed, strict, dry_run,
               json_out, quiet, memory_limit, should_stop, budget)


def _study(study_file, backend, address, seeds, iterations, out_dir, resume, retry_failed, strict, dry_run, json_out,
           quiet, memory_limit, should_stop, budget=None):
    from trajopt.studies import expand, load_study, parse_seeds
    from trajopt.studies.executors import executor
    from trajopt.studies.expand import ExpansionStopped, with_budget

    folder = out_dir or _default_out(study_file)
    try:
        seed_list = parse_seeds(seeds) if seeds is not None else None
        study = load_study(study_file, seeds=seed_list, iterations=iterations, budget=budget)
        expansion = expand(study, strict=strict, should_stop=should_stop)
        if study.budget is not None:  # each cell's iterations under its budget: step costs once per system
            expansion = with_budget(study, expansion, recorded=_recorded_step_costs(folder, study, resume),
                                    should_stop=should_stop, measure=_measuring(quiet or json_out))
    except SpecError as e:
        raise fail(str(e)) from None
    except ExpansionStopped:
        err.print("interrupted while the study's cells were built; nothing written", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if dry_run:
        _dry_run(study, expansion, folder, json_out, quiet, should_stop)
        raise typer.Exit(EXIT_OK)
    if backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise fail("--backend ray: Ray is not installed; allowed: pip install 'trajopt-alpha[ray]', or --backend local") from None
    from trajopt.runs import DiskHistory

    # a local cell's history larger than TRAJOPT_HISTORY_MEMORY streams into .history-* in the study folder,
    # removed once the cell's run folder is written
    ex = executor(backend, address=address, resources=study.resources,
                  history=(lambda: DiskHistory(folder), memory_limit))
    if backend == "ray":
        try:
            ex.check()
        except ConnectionError as e:
            raise fail(f"--address: cannot reach the Ray cluster {e}; allowed: the address `ray start --head` printed "
                       "(HOST:6379, or ray://HOST:10001), or none for a local Ray") from None
    with lock_out(folder):  # a second study into the same folder is refused while this one runs
        _run_locked(study, expansion, folder, ex, resume, retry_failed, address, json_out, quiet, should_stop)


def _measuring(quiet: bool):
    """How the study measures a system's step costs (`trajopt.step_costs.step_costs_for`, looked up when called), with
    the status line on a terminal while one runs unless ``quiet``."""
    def measure(spec, problem, oracles=()):
        from trajopt import step_costs

        return step_costs.step_costs_for(spec, problem, oracles=oracles, measuring=measuring_status(spec, quiet))
    return measure


def _recorded_step_costs(folder: Path, study, resume: bool) -> list:
    """The step costs a budget study converts with: those an earlier run of this study in ``folder`` recorded (a
    resumed study keeps its currency, and so its cells' iterations), else none (measured once per system, or
    ``TRAJOPT_STEP_COSTS``, whose bad value is exit 2 here, before anything compiles)."""
    from trajopt.compute import given_step_costs
    from trajopt.studies import store
    from trajopt.studies.runner import recorded_step_costs

    try:
        given_step_costs()
    except ValueError as e:
        raise fail(str(e)) from None
    if not resume or store.study_name(folder) != study.name:
        return []
    return recorded_step_costs(folder)


def _write_failed(folder: Path, e, kept: int) -> typer.Exit:
    """The exit-2 line for a study folder that could not be written (a bad environment, like any --out problem)."""
    return fail(f"--out {folder}: cannot write {e.path if hasattr(e, 'path') else (e.filename or folder)} "
                f"({e.reason if hasattr(e, 'reason') else e.strerror}); {kept} finished "
                f"{'cell is' if kept == 1 else 'cells are'} kept in it: rerun "
                "the same command to resume (after freeing space or lifting the limit), or choose another --out")


def _run_locked(study, expansion, folder, ex, resume, retry_failed, address, json_out, quiet, should_stop):
    from trajopt.studies import StudyFolderError, prepare, run_study, write_outputs
    from trajopt.studies import store
    from trajopt.studies.runner import STUDY_INTERRUPTED

    try:
        prepare(folder, fresh=not resume, name=study.name)
    except StudyFolderError as e:
        raise fail(f"--out {e}") from None
    except OSError as e:
        raise fail(f"--out {folder}: cannot prepare it ({e.strerror}: {e.filename or folder})") from None
    show = not (quiet or json_out)

    def on_cell(cell, outcome, done, total):
        if not show:
            return
        if outcome.status == "ok" and study.fidelity:
            errors = ", ".join(f"{r['variant']} {fmt(r.get('rel_fd_median'))}" for r in outcome.rows
                               if r["variant"] != "fd")
            err.print(f"[{done}/{total}] {escape(cell.label)}: median relative error vs fd: {escape(errors)}",
                      highlight=False, soft_wrap=True)
        elif outcome.status == "ok":
            import numpy as np

            from trajopt.stats import nan_median

            metric, what = ("closed_loop_cost", "closed-loop cost") if study.closed_loop else ("final_cost", "final")
            finals = np.array([np.nan if r[metric] is None else r[metric] for r in outcome.rows], float)
            ok = sum(r["status"] == "ok" for r in outcome.rows)
            err.print(f"[{done}/{total}] {escape(cell.label)}: median {what} {fmt(nan_median(finals))}, {ok}/{len(outcome.rows)} "
                      f"seeds ok", highlight=False, soft_wrap=True)
        else:
            first = (outcome.error or "").splitlines()
            err.print(f"[{done}/{total}] {escape(cell.label)}: [red]failed[/]: {escape(first[0] if first else '')}",
                      highlight=False, soft_wrap=True)

    try:
        result = run_study(study, expansion, folder, ex, should_stop=should_stop, retry_failed=retry_failed,
                           on_cell=on_cell, step_costs=_measuring(not show))
    except ConnectionError as e:
        raise fail(f"--address {address or '(RAY_ADDRESS)'}: cannot connect to a Ray cluster ({e})") from None
    except store.StudyWriteError as e:
        raise _write_failed(folder, e, e.kept) from None
    except KeyboardInterrupt:
        err.print(f"aborted (Ctrl-C twice): the finished cells and the table are kept in {escape(str(folder))}; rerun the "
                  "same command to resume", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if not quiet:
        for note in result.notes:
            err.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    from trajopt.studies.runner import meta as study_meta

    written = {"status": result.status, "files": []}

    def write(flag: str) -> None:
        """The table (again, only when a signal changed the status) and the figures and page, with the status."""
        status = result.status if flag == "ok" else STUDY_INTERRUPTED
        meta = study_meta(study, expansion, result.cell_status, status, ex.name, result.step_costs)
        if status != result.status:
            store.write_table(folder, study, result.rows, meta)
        written.update(status=status, files=write_outputs(folder, study, result.rows, meta))

    getattr(_signals, "writing", lambda: None)()  # the cells are done: a second Ctrl-C now marks, not abandons
    try:
        write_final(write)
    except OSError as e:
        raise _write_failed(folder, e, len(result.cell_status)) from None
    except KeyboardInterrupt:
        err.print(f"aborted (Ctrl-C twice) while the figures were drawn: the table is kept in {escape(str(folder))}",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    status, files = written["status"], written["files"]
    failed = [i for i, s in result.cell_status.items() if s == "failed"]
    n = len(expansion.cells)
    if json_out:
        from trajopt import runs

        sys.stdout.write(runs.dumps_json({"status": status, "out": str(folder), "cells": n,
                                          "ran": len(result.ran), "skipped": len(result.skipped), "failed": len(failed),
                                          "rows": len(result.rows), "files": files, "notes": result.notes,
                                          "errors": {expansion.cells[i].label: result.errors.get(i, "").splitlines()[0]
                                                     if result.errors.get(i) else "" for i in failed}}))
    elif not quiet:
        out.print(f"{status}: {len(result.cell_status)}/{n} cells finished ({len(result.ran)} run now, "
                  f"{len(result.skipped)} reused), {len(failed)} failed", highlight=False)
        for i in failed[:10]:
            first = (result.errors.get(i) or "").splitlines()
            out.print(f"  [red]failed[/] {escape(expansion.cells[i].label)}: {escape(first[0] if first else '')}", highlight=False,
                      soft_wrap=True)
        out.print(f"study folder: [bold]{escape(str(folder))}[/] (study.csv, report.html)")
    if status != "complete":
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(EXIT_FAILED if failed and len(failed) == n else EXIT_OK)
