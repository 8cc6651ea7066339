"""The `trajopt` command line: thin. It parses, calls the library, writes through `trajopt.runs` and prints
with rich. Exit codes: 0 success, 1 the run failed (every seed non-finite), 2 bad input, 130 interrupted
(the run folder is still complete and marked "interrupted").
"""

from __future__ import annotations

import json
import signal
import sys
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import trajopt
from trajopt.spec import SpecError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

app = typer.Typer(
    name="trajopt",
    help="Trajectory optimisation through contact with first-, zeroth- and alpha-order gradient oracles.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Rich falls back to 80 columns when not writing to a terminal; the result table needs a little more.
out = Console(width=None if sys.stdout.isatty() else 110)
err = Console(stderr=True)


class BadInput(Exception):
    """A CLI-level bad input (not from a problem file)."""


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(EXIT_BAD_INPUT)


def _version(value: bool):
    if value:
        out.print(f"trajopt {trajopt.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    """trajopt: which gradient should you trust on your system?"""


# ------------------------------------------------------------------------------------------ helpers


def _overrides(sets: List[str], iterations: Optional[int], seeds: Optional[str], oracles: Optional[str]) -> list[str]:
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


def _load(problem: Path, overrides: list[str]):
    from trajopt import spec as spec_mod

    try:
        return spec_mod.load(problem, overrides)
    except SpecError as e:
        raise _fail(str(e)) from None


def _default_out(spec, verb: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / spec.name / f"{stamp}-{verb}"


def _check_out(path: Path, force: bool) -> None:
    if path.exists() and not path.is_dir():
        raise _fail(f"--out {path}: exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise _fail(f"--out {path}: folder exists and is not empty; choose another or pass --force to overwrite")


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


def _fmt(x, digits: int = 5) -> str:
    if x is None:
        return "-"
    try:
        xf = float(x)
    except (TypeError, ValueError):
        return str(x)
    if xf != xf:
        return "-"
    return f"{xf:.{digits}g}"


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
        iqr = f"{_fmt(np.percentile(finite, 25))}–{_fmt(np.percentile(finite, 75))}" if finite.size else "-"
        best = [v for v in o["best_cost"] if v is not None]
        table.add_row(
            name, status, _fmt(o["median_final_cost"]), iqr, _fmt(min(best) if best else None),
            _fmt(o["median_alpha"], 3), f"{o['rollouts']:,}", f"{o['run_seconds']:.2f}+{o['compile_seconds']:.1f}",
        )
    return table


def _run(verb: str, problem: Path, overrides: list[str], out_dir: Optional[Path], force: bool, x: str,
         json_out: bool, quiet: bool, plot: bool) -> int:
    import jax

    from trajopt import runs
    from trajopt.solve import solve

    spec = _load(problem, overrides)
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
                                      should_stop=should_stop)
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
    if json_out:
        sys.stdout.write(runs.dumps_json({**summary, "out": str(out_dir)}))
    elif not quiet:
        out.print(_summary_table(summary))
        out.print(f"run folder: [bold]{out_dir}[/]")
    if summary["status"] == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary["status"] == "failed" else EXIT_OK


# ------------------------------------------------------------------------------------------ commands

ProblemArg = typer.Argument(..., help="A TOML problem file (see `trajopt list problems`).", show_default=False)
SetOpt = typer.Option(None, "--set", help="Override a key of the file: KEY.PATH=VALUE (repeatable).")
SeedsOpt = typer.Option(None, "--seeds", help="Number of seeds, or a comma-separated list of seed numbers.")
IterOpt = typer.Option(None, "--iterations", help="Number of updates.")
OutOpt = typer.Option(None, "--out", help="Run folder (default runs/<problem>/<timestamp>-<verb>).")
ForceOpt = typer.Option(False, "--force", help="Write into an --out folder that is not empty.")
JsonOpt = typer.Option(False, "--json", help="Print a machine-readable summary on stdout.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Print nothing but errors.")
XOpt = typer.Option("iterations", "--x", help="x-axis of the convergence plot: iterations, rollouts or seconds.")


def _check_x(x: str) -> None:
    from trajopt.plots import X_AXES

    if x not in X_AXES:
        raise _fail(f"--x: found {x!r}, allowed: {', '.join(X_AXES)}")


@app.command()
def solve(
    problem: Path = ProblemArg,
    oracle: str = typer.Option(..., "--oracle", help="The gradient oracle (see `trajopt list oracles`)."),
    seeds: Optional[str] = SeedsOpt,
    iterations: Optional[int] = IterOpt,
    set_: Optional[List[str]] = SetOpt,
    out_dir: Optional[Path] = OutOpt,
    force: bool = ForceOpt,
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Optimise PROBLEM with one oracle over several seeds and write a run folder."""
    code = _run("solve", problem, _overrides(set_, iterations, seeds, oracle), out_dir, force, "iterations",
                json_out, quiet, plot=True)
    raise typer.Exit(code)


@app.command()
def compare(
    problem: Path = ProblemArg,
    oracles: Optional[str] = typer.Option(None, "--oracles", help="Comma-separated oracle names (default: the file's)."),
    seeds: Optional[str] = SeedsOpt,
    iterations: Optional[int] = IterOpt,
    x: str = XOpt,
    set_: Optional[List[str]] = SetOpt,
    out_dir: Optional[Path] = OutOpt,
    force: bool = ForceOpt,
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Run several oracles on PROBLEM with the same seeds; write a run folder and convergence.png."""
    _check_x(x)
    code = _run("compare", problem, _overrides(set_, iterations, seeds, oracles), out_dir, force, x, json_out,
                quiet, plot=True)
    raise typer.Exit(code)


@app.command()
def validate(
    problem: Path = ProblemArg,
    set_: Optional[List[str]] = SetOpt,
    json_out: bool = JsonOpt,
):
    """Check PROBLEM and print its sizes, horizon, stability margin and initial cost J(U0)."""
    import math

    spec = _load(problem, list(set_ or []))
    prob = spec.problem()
    import jax

    j0 = float(jax.jit(prob.objective)(prob.U0))
    system = spec.system
    dt = getattr(system, "dt", math.nan)
    stable = float(system.stable_dt()) if hasattr(system, "stable_dt") else math.inf
    info = {
        "problem": str(problem), "title": spec.title, "system": spec.system_name,
        "state_size": int(system.state_size), "control_size": int(system.control_size),
        "horizon": spec.task.horizon, "decision_size": prob.dimension, "dt": dt,
        "stable_dt": stable, "stability_margin": (stable / dt) if math.isfinite(stable) and dt > 0 else None,
        "initial_cost": j0, "oracles": list(spec.solve.oracles), "iterations": spec.solve.iterations,
        "seeds": list(spec.solve.seeds),
    }
    if json_out:
        from trajopt.runs import dumps_json

        sys.stdout.write(dumps_json(info))
        return
    table = Table(title=f"{problem}: valid", title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    margin = info["stability_margin"]
    rows = [
        ("title", spec.title), ("system", spec.system_name),
        ("state / control size", f"{info['state_size']} / {info['control_size']}"),
        ("horizon T", str(info["horizon"])), ("decision size d = T·m", str(info["decision_size"])),
        ("dt", _fmt(dt)),
        ("stability margin", "no explicit limit" if margin is None else f"{margin:.2f}× (largest stable dt {_fmt(stable, 4)})"),
        ("J(U0)", f"{j0:.4f}"), ("oracles", ", ".join(spec.solve.oracles)),
        ("iterations × seeds", f"{spec.solve.iterations} × {len(spec.solve.seeds)}"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    out.print(table)


def problem_files() -> list[Path]:
    """Shipped problem files: ./problems and the source tree's problems/ folder."""
    roots = [Path.cwd() / "problems", Path(trajopt.__file__).resolve().parent.parent / "problems"]
    seen, files = set(), []
    for root in roots:
        if root.is_dir():
            for f in sorted(root.glob("*.toml")):
                if f.resolve() not in seen:
                    seen.add(f.resolve())
                    files.append(f)
    return files


@app.command("list")
def list_(what: str = typer.Argument("problems", help="problems, systems, oracles or optimizers.")):
    """List shipped problems, systems, oracles or optimizers."""
    import inspect

    from trajopt.optim import OPTIMIZERS
    from trajopt.oracles import ORACLES
    from trajopt.systems import SYSTEMS

    registries = {"systems": SYSTEMS, "oracles": ORACLES, "optimizers": OPTIMIZERS}
    if what == "problems":
        from trajopt import spec as spec_mod

        table = Table(title="Shipped problems", title_justify="left")
        table.add_column("file")
        table.add_column("title")
        for f in problem_files():
            try:
                title = spec_mod.read_toml(f).get("title", "")
            except SpecError as e:
                title = f"[red]{e.message}[/]"
            try:
                shown = str(f.relative_to(Path.cwd()))
            except ValueError:
                shown = str(f)
            table.add_row(shown, str(title))
        out.print(table)
        return
    if what not in registries:
        raise _fail(f"list: found {what!r}, allowed: problems, systems, oracles, optimizers")
    reg = registries[what]
    table = Table(title=what.capitalize(), title_justify="left")
    table.add_column("name")
    table.add_column("description")
    for name in reg:
        entry = reg.get(name)
        doc = inspect.getdoc(sys.modules[entry.__module__]) or inspect.getdoc(entry) or ""
        first = doc.strip().split("\n\n")[0].replace("\n", " ")
        table.add_row(name, first)
    out.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
