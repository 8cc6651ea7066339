"""`trajopt solve` and `trajopt compare`: run oracles on a problem and write a run folder."""

from __future__ import annotations

import json
import signal
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import List, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trajopt.cli._common import (
    EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ForceOpt, IterOpt, JsonOpt, OutOpt, QuietOpt, SeedsOpt,
    SetOpt, app, err, fail, fmt, load_spec, out,
)

XOpt = typer.Option("iterations", "--x", help="x-axis of the convergence plot: iterations, rollouts or seconds.")


def cli_overrides(sets: List[str], iterations: Optional[int], seeds: Optional[str], oracles: Optional[str]) -> list[str]:
    """CLI shortcuts become `--set` overrides, so they are validated (and reported) like file keys."""
    items = list(sets or [])
    if iterations is not None:
        items.append(f"solve.iterations={iterations}")
    if seeds is not None:
        text = seeds.strip()
        if "," in text:
            items.append(f"solve.seeds=[{text}]")
        else:
            items.append(f"solve.seeds={text}")
    if oracles is not None:
        names = [o.strip() for o in oracles.split(",") if o.strip()]
        items.append("solve.oracles=[" + ", ".join(json.dumps(n) for n in names) + "]")
    return items


def _default_out(spec, verb: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / spec.name / f"{stamp}-{verb}"


def _check_out(path: Path, force: bool) -> None:
    if path.exists() and not path.is_dir():
        raise fail(f"--out {path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise fail(f"--out {path}: folder exists and is not empty; choose another or pass --force to overwrite")


@contextmanager
def _interruptible():
    """SIGINT/SIGTERM set a flag that the solver polls between chunks; a second SIGINT aborts at once."""
    state = {"stop": False}
    previous = {}

    def handler(signum, frame):
        if state["stop"] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        state["stop"] = True
        err.print("[yellow]stopping after the current chunk (Ctrl-C again to abort)...[/]")

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not in the main thread (e.g. under a test runner's thread)
            pass
    try:
        yield lambda: state["stop"]
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


def _summary_table(summary: dict) -> Table:
    import numpy as np

    n = len(summary["seeds"])
    table = Table(title=f"{summary['title']}  ({summary['iterations']} iterations, {n} seeds)", title_justify="left")
    for col, justify in [("oracle", "left"), ("status", "left"), ("final (median)", "right"),
                         ("final IQR", "right"), ("best", "right"), ("α median", "right"),
                         ("rollouts", "right"), ("run+compile s", "right")]:
        table.add_column(col, justify=justify)
    for name, o in summary["oracles"].items():
        finals = np.array([np.nan if v is None else v for v in o["final_cost"]], float)
        finite = finals[np.isfinite(finals)]
        ok = sum(s == "ok" for s in o["status"])
        status = "ok" if ok == n else f"{ok}/{n} ok" + (f", {n - ok} " + "/".join(sorted(set(s for s in o["status"] if s != 'ok'))))
        iqr = f"{fmt(np.percentile(finite, 25))}–{fmt(np.percentile(finite, 75))}" if finite.size else "-"
        best = [v for v in o["best_cost"] if v is not None]
        table.add_row(
            name, status, fmt(o["median_final_cost"]), iqr, fmt(min(best) if best else None),
            fmt(o["median_alpha"], 3), f"{o['rollouts']:,}", f"{o['run_seconds']:.2f}+{o['compile_seconds']:.1f}",
        )
    return table


def _run(verb: str, problem: Path, overrides: list[str], out_dir: Optional[Path], force: bool, x: str,
         json_out: bool, quiet: bool, plot: bool, report: bool = False) -> int:
    import jax

    from trajopt import runs
    from trajopt.solve import solve

    spec = load_spec(problem, overrides)
    out_dir = out_dir or _default_out(spec, verb)
    _check_out(out_dir, force)
    prob = spec.problem()
    optimizer = spec.solve.optimizer.build()
    key = jax.random.PRNGKey(spec.solve.key)
    show = not (quiet or json_out)
    results = {}
    with _interruptible() as should_stop:
        progress = Progress(TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=err, disable=not show, transient=False)
        with progress:
            for name in spec.solve.oracles:
                task = progress.add_task(f"{name} (compiling)", total=spec.solve.iterations)

                def on_chunk(done, total, task=task, name=name):
                    progress.update(task, completed=done, description=name)

                results[name] = solve(prob, spec.oracles[name], optimizer, key=key, iterations=spec.solve.iterations,
                                      seeds=spec.solve.seeds, chunk=spec.solve.chunk, on_chunk=on_chunk,
                                      should_stop=should_stop, skip_non_finite=spec.solve.on_non_finite == "skip")
                progress.update(task, description=name)
                if should_stop():
                    break
    summary = runs.summarise(
        spec, results, verb=verb, versions=runs.versions(), platform_name=jax.default_backend(),
        x64=bool(jax.config.jax_enable_x64), created=datetime.now().isoformat(timespec="seconds"),
    )
    if summary["status"] == "interrupted" or len(results) < len(spec.solve.oracles):
        summary["status"] = "interrupted"
        summary["oracles_not_run"] = [o for o in spec.solve.oracles if o not in results]
    runs.write_run(out_dir, spec, results, summary)
    if plot:
        from trajopt import plots

        plots.save_figure(plots.convergence_figure(runs.read_run(out_dir), x=x), out_dir / runs.CONVERGENCE)
    if report:
        from trajopt.cli.report import write_report

        write_report([out_dir], out_dir / "report.html")
    if json_out:
        sys.stdout.write(runs.dumps_json({**summary, "out": str(out_dir)}))
    elif not quiet:
        out.print(_summary_table(summary))
        out.print(f"run folder: [bold]{out_dir}[/]")
    if summary["status"] == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary["status"] == "failed" else EXIT_OK


# ------------------------------------------------------------------------------------------ commands


def _check_x(x: str) -> None:
    from trajopt.plots import X_AXES

    if x not in X_AXES:
        raise fail(f"--x: found {x!r}, allowed: {', '.join(X_AXES)}")


FromOpt = typer.Option(None, "--from", help="Re-run the configuration recorded in a run folder (its config.toml).")
OptionalProblemArg = typer.Argument(None, help="A TOML problem file (see `trajopt list problems`).", show_default=False)


def _problem_or_run(problem: Optional[Path], from_run: Optional[Path]) -> Path:
    """The file to load: PROBLEM, or RUN_DIR/config.toml with --from (exactly one of them)."""
    from trajopt.runs import CONFIG

    if problem is not None and from_run is not None:
        raise fail("give a PROBLEM file or --from RUN_DIR, not both")
    if from_run is not None:
        config = from_run / CONFIG
        if not config.is_file():
            raise fail(f"--from {from_run}: not a run folder (no {CONFIG} in it)")
        return config
    if problem is None:
        raise fail("missing PROBLEM: give a TOML problem file (see `trajopt list problems`) or --from RUN_DIR")
    return problem


@app.command()
def solve(
    problem: Optional[Path] = OptionalProblemArg,
    oracle: Optional[str] = typer.Option(None, "--oracle", help="The gradient oracle (see `trajopt list oracles`)."),
    from_run: Optional[Path] = FromOpt,
    seeds: Optional[str] = SeedsOpt,
    iterations: Optional[int] = IterOpt,
    set_: Optional[List[str]] = SetOpt,
    out_dir: Optional[Path] = OutOpt,
    force: bool = ForceOpt,
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Optimise PROBLEM with one oracle over several seeds and write a run folder.

    With --from RUN_DIR, repeat a recorded run: the same configuration, seeds and oracles (bit for bit on the
    same machine and library versions), unless options here change them.
    """
    path = _problem_or_run(problem, from_run)
    if oracle is None and from_run is None:
        raise fail("missing --oracle NAME (see `trajopt list oracles`); `trajopt compare` runs several")
    code = _run("solve", path, cli_overrides(set_, iterations, seeds, oracle), out_dir, force, "iterations",
                json_out, quiet, plot=True)
    raise typer.Exit(code)


@app.command()
def compare(
    problem: Optional[Path] = OptionalProblemArg,
    oracles: Optional[str] = typer.Option(None, "--oracles", help="Comma-separated oracle names (default: the file's)."),
    from_run: Optional[Path] = FromOpt,
    seeds: Optional[str] = SeedsOpt,
    iterations: Optional[int] = IterOpt,
    x: str = XOpt,
    set_: Optional[List[str]] = SetOpt,
    out_dir: Optional[Path] = OutOpt,
    force: bool = ForceOpt,
    report: bool = typer.Option(False, "--report", help="Also write report.html into the run folder."),
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Run several oracles on PROBLEM with the same seeds; write a run folder and convergence.png."""
    _check_x(x)
    path = _problem_or_run(problem, from_run)
    code = _run("compare", path, cli_overrides(set_, iterations, seeds, oracles), out_dir, force, x, json_out,
                quiet, plot=True, report=report)
    raise typer.Exit(code)
