"""`trajopt solve` and `trajopt compare`: run variants (oracles under an optimiser, or methods) on a problem and
write a run folder. What every writing verb shares (claiming --out, holding signals, titles) is
`trajopt.cli._outputs`'s; the table printed at the end is `trajopt.cli._run_table`'s."""

from __future__ import annotations

import json
import math
import os
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import List, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.markup import escape

# the library modules that import JAX (or matplotlib) are imported inside the functions that run them: the CLI's
# start-up path (--help, a refused command line) stays free of both
from trajopt import _signals
from trajopt.cli._common import (
    EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ForceOpt, IterOpt, JsonOpt, OutOpt, QuietOpt, SeedsOpt, measuring_status,
    SetOpt, app, check_distinct, check_force, check_sets, err, fail, load_spec, one_line, out, preflight,
)
from trajopt.cli._outputs import _interruptible, claim_out, display_title, history_memory_limit
from trajopt.cli._run_table import _summary_table
from trajopt.runs_files import CONFIG, RESULT, DiskHistory, RunFolderError, open_member
from trajopt.step_costs import step_costs_for
from trajopt.tomlio import read_toml

XOpt = typer.Option("iterations", "--x", help="x-axis of the convergence plot: iterations, rollouts, gradients "
                                                "(backward passes), compute (forward-step equivalents) or seconds; a "
                                                "comma list (iterations,rollouts) draws one column each.")


def _names(option: str, text: str) -> list[str]:
    names = [o.strip() for o in text.split(",")]
    if not text.strip() or not all(names):
        raise fail(f"{option}: found {text!r}, allowed: comma-separated names, e.g. fobg,zobg,aobg")
    if len(set(names)) != len(names):
        raise fail(f"{option}: found a repeated name in {text!r}, allowed: distinct names")
    return names


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string, spelled as written: "fo🚀" stays "fo🚀" (json.dumps' default "\\ud83d\\ude80"
    is a surrogate pair, which TOML refuses, so such a name came back as the whole unparsed value); quotes,
    backslashes and control characters escaped (DEL too, which TOML allows only escaped)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def cli_overrides(sets: List[str], iterations: Optional[int], seeds: Optional[str], oracles: Optional[str],
                  variants: Optional[str] = None, oracle_flag: str = "--oracles") -> list[str]:
    """CLI shortcuts become `--set` overrides, so they are validated (and reported) like file keys.

    ``--oracles a,b`` names oracles (each a variant with the file's optimiser): it sets ``solve.oracles`` and
    ``solve.variants``; ``--variants a,b`` sets ``solve.variants`` (variant tables, oracles or methods).
    """
    labelled = [(f"--set {item.partition('=')[0].strip()}", item) for item in sets or []]
    if oracles is not None and variants is not None:
        raise fail(f"give {oracle_flag} or {oracle_flag.replace('oracle', 'variant')}, not both (a bare oracle name is a variant: --variants fobg,aobg_adam)")
    if iterations is not None:
        labelled.append(("--iterations", f"solve.iterations={iterations}"))
    if seeds is not None:
        text = seeds.strip()
        labelled.append(("--seeds", f"solve.seeds=[{text}]" if "," in text else f"solve.seeds={text}"))
    if oracles is not None:
        names = _names(oracle_flag, oracles)  # unknown names are reported by the spec, with the file and key
        listed = "[" + ", ".join(toml_string(n) for n in names) + "]"
        labelled += [(oracle_flag, f"solve.oracles={listed}"), (oracle_flag, f"solve.variants={listed}")]
    if variants is not None:
        names = _names("--variants", variants)
        labelled.append(("--variants", "solve.variants=[" + ", ".join(toml_string(n) for n in names) + "]"))
    check_distinct(labelled)  # --set solve.iterations=5 --iterations 10: the flag would silently win
    return [item for _, item in labelled]


def _default_out(spec, verb: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / spec.name / f"{stamp}-{verb}"


ROLLOUTS = "rollouts.png"


def _success(spec, problem, results, summary) -> None:
    """Policy problems: the share of held-aside initial states (``[success] held_out`` of them, drawn from the
    problem's test seed, never the training or evaluation ones) whose closed loop ends within ``[success] radius``
    of the goal, for each seed's returned policy; into result.json as ``success_rate`` (per seed) and
    ``median_success_rate``, with ``success_radius`` beside them."""
    from trajopt.policies import held_out_states
    from trajopt.policies.tennis import success_rate
    from trajopt.stats import nan_median

    p = spec.policy
    states = held_out_states(problem, p.held_out)
    for name, r in results.items():
        rates = [success_rate(problem, theta, states, p.success_radius, p.positions) if math.isfinite(c) else math.nan
                 for theta, c in zip(r.U, r.final_cost)]
        summary["variants"][name]["success_rate"] = rates
        summary["variants"][name]["median_success_rate"] = nan_median(rates)
    summary["success_radius"] = p.success_radius
    summary["success_held_out"] = p.held_out


ROLLOUTS_SHOWN = 60  # held-aside starts drawn per panel (the first ones of the table's)


def _rollouts_figure(spec, problem, results, title, summary=None):
    """Closed-loop rollouts of each variant's median-cost seed from the first `ROLLOUTS_SHOWN` of the
    ``[success] held_out`` held-aside starts. The figure says so: its title names the subset, each panel the seed
    it draws and, labelled as such, the share of the drawn starts within the radius; beside it, from
    ``summary`` (result.json's, `_success`), that seed's share of all held-aside starts and the table's median
    over seeds, the very numbers of the table (the same states, seeds and rule)."""
    from trajopt.diagnostics import median_seed_index
    from trajopt.policies import held_out_states
    from trajopt.policies.tennis import rollouts_figure

    p = spec.policy
    shown = min(p.held_out, ROLLOUTS_SHOWN)
    thetas, notes = {}, {}
    for name, r in results.items():
        i = median_seed_index(r.final_cost)
        thetas[name] = r.U[i][0]
        notes[name] = f"seed {int(r.seeds[i])} (median cost)"
        v = (summary or {}).get("variants", {}).get(name, {})
        if p.success_radius is not None and "success_rate" in v:
            rate = lambda x: "-" if x is None or not math.isfinite(x) else f"{x:.1%}"  # noqa: E731
            notes[name] += (f"\nall {p.held_out} starts: {rate(v['success_rate'][i])}\n"
                            f"table, median of {len(r.seeds)} seeds: {rate(v['median_success_rate'])}")
    fig = rollouts_figure(problem, thetas, held_out_states(problem, p.held_out)[:shown], radius=p.success_radius,
                          positions=p.positions, notes=notes)  # the first of the very states the table scores
    from trajopt.plots import set_title

    set_title(fig, f"{title}: closed-loop rollouts of each variant's median-cost seed from the first {shown} of "
              f"{p.held_out} held-aside starts", 10)
    return fig


def _run(verb: str, problem: Path, overrides: list[str], out_dir: Optional[Path], force: bool, x: str,
         json_out: bool, quiet: bool, plot: bool, report: bool = False, sets: Optional[List[str]] = None,
         budget: Optional[int] = None) -> int:
    """Load, run every variant, write the folder, plot, report and print, with SIGINT/SIGTERM held throughout:
    a signal stops the loop after the current chunk, and the folder is still written whole and marked
    "interrupted" (exit 130), whenever the signal came."""
    with _interruptible() as should_stop:
        return _run_held(verb, problem, overrides, out_dir, force, x, json_out, quiet, plot, report, sets, should_stop,
                         budget)


def budget_overrides(spec, budget: int, step_costs) -> list[str]:
    """``variants.NAME.iterations`` for an equal-budget compare in forward-step equivalents: each selected variant's
    `trajopt.compute.budget_steps` (a fixed-cost variant never passes the budget; iLQR and L-BFGS are stopped by the
    solver once their spend reaches it). Exit 2 when one step of a variant is over the budget or the iterations
    would pass the bounds of a run."""
    from trajopt.compute import budget_steps

    try:
        steps = budget_steps(spec.problem(), {n: v.method for n, v in spec.variants.items()}, budget, step_costs,
                             len(spec.solve.seeds))
    except ValueError as e:
        raise fail(f"--budget: {e}") from None
    return [f"variants.{name}.iterations={n}" for name, n in steps.items()]


def backward_free(spec) -> list[str]:
    """The selected variants whose steps spend no backward pass (their fixed calls per step say 0: ZoBG, CEM,
    MPPI, ...); a variant without a fixed count (iLQR, L-BFGS) is taken to spend some."""
    prob = spec.problem()
    names = []
    for name, v in spec.variants.items():
        calls = getattr(v.method, "calls", None)
        try:
            counts = calls(prob) if callable(calls) else None
        except (AttributeError, TypeError, ValueError):  # an oracle without a fixed count
            counts = None
        if counts is not None and int(counts[1]) == 0:
            names.append(name)
    return names


def check_gradient_axis(spec) -> None:
    """Refuse ``--x gradients`` when no selected variant spends a backward pass: every curve would stand at x = 0."""
    free = backward_free(spec)
    if free and len(free) == len(spec.variants):
        raise fail(f"--x gradients: found no selected variant that spends backward passes ({', '.join(free)} spend "
                   "none: every curve would stand at x = 0), allowed: iterations, rollouts or seconds, or variants "
                   "that compute gradients")


def gradient_axis_note(results, x) -> str:
    """What the convergence figure's title adds when a ``gradients`` axis shows variants that spent no backward
    pass (their curves stand at x = 0): which they are."""
    if "gradients" not in x:
        return ""
    free = [name for name, r in results.items() if not r.counts("gradients")[-1] > 0]
    return f" [backward-pass axis: {', '.join(free)} spent none, drawn at 0]" if free else ""


def _run_held(verb, problem, overrides, out_dir, force, x, json_out, quiet, plot, report, sets, should_stop,
              budget=None) -> int:
    memory_limit = history_memory_limit()  # a bad TRAJOPT_HISTORY_MEMORY: exit 2 before any work
    spec = load_spec(problem, overrides)
    check_sets(spec, sets, "variants", verb)  # an oracle/method/variant key that no selected variant takes: exit 2
    sets = recorded_overrides(problem, overrides) + list(sets or [])  # --from: the run's own, less those set again
    from trajopt.spec import iteration_overrides

    # a variant that cannot run on this problem (iLQR on a policy problem), rollouts past the memory bound, user code
    # that fails when traced as the run traces it: exit 2 before the step costs are measured or anything compiles
    preflight(spec)
    extra = iteration_overrides(spec, overrides)
    if extra:
        overrides = overrides + extra
        spec = load_spec(problem, overrides)
    changed = changed_since_run(problem, quiet)  # --from: a model or module file that changed since that run
    # measured once per system and host (kept beside the compilation cache)
    step_costs = run_step_costs(spec, quiet=quiet or json_out)
    if budget is not None:
        spec = load_spec(problem, overrides + budget_overrides(spec, budget, step_costs))
    if "gradients" in x:
        check_gradient_axis(spec)
    out_dir = out_dir or _default_out(spec, verb)
    # a history larger than memory_limit streams into .history-* inside the folder, removed when the folder is
    # complete (below, before it is declared final) or, on an error or Ctrl-C twice, by this block's exit; any
    # OSError while the folder is written (a full disk: the streamed history reserves its space first; a file-size
    # limit; an I/O error) is one line from claim_out, which removes what was written: nothing half-written stays
    with claim_out(out_dir, force), DiskHistory(out_dir) as disk:
        return _run_claimed(spec, verb, out_dir, x, json_out, quiet, plot, report, sets, should_stop, budget,
                            disk, memory_limit, step_costs, changed)


def problem_sources(path) -> dict:
    """{"model:PATH" | "module:PATH": sha256} of the files the problem file at ``path`` names besides itself (an MJCF
    model and what it includes, a user module: `trajopt.studies.sources`), what result.json records as ``sources``
    so that a later ``--from`` of the run can say which changed; {} when the file cannot be read again."""
    from trajopt.studies.sources import SourceHashes

    try:
        return SourceHashes().of(read_toml(path), str(path))
    except Exception:  # noqa: BLE001  the file was read and validated moments ago; a record is not worth a failure
        return {}


def _from_run_record(path, field: str):
    """With ``--from RUN`` (``path`` is RUN/config.toml): ``field`` of the run's result.json; None for a problem file,
    a run without result.json, or one that does not read."""
    path = Path(path)
    if path.name != CONFIG or not (path.parent / RESULT).is_file():
        return None
    try:
        return json.loads((path.parent / RESULT).read_text(encoding="utf-8")).get(field)
    except (OSError, ValueError, AttributeError):
        return None


def recorded_overrides(path, overrides) -> list[str]:
    """With ``--from RUN`` (``path`` is RUN/config.toml): the ``--set`` items that run was made with (its result.json's
    ``overrides``, already applied in its config.toml), less those whose key ``overrides`` sets again (a ``--set``,
    or a flag's: ``--iterations`` sets solve.iterations, ``--variants`` solve.variants), so that the new
    run's titles, report and result.json state them as the first run's did (the file's title may state values they
    changed: "k = 1000"); [] for a problem file or a run made without any."""
    recorded = _from_run_record(path, "overrides")
    if not isinstance(recorded, list) or not all(isinstance(item, str) for item in recorded):
        return []
    again = {item.partition("=")[0].strip() for item in overrides or []}
    return [item for item in recorded if item.partition("=")[0].strip() not in again]


def changed_since_run(path, quiet: bool) -> list[str]:
    """With ``--from RUN`` (``path`` is RUN/config.toml): the files the run's result.json recorded (``sources``)
    whose content differs now (changed, missing, or new), each named in a warning on stderr (the rerun may not
    reproduce that run's numbers); [] for a problem file or a run that recorded none."""
    path = Path(path)
    recorded = _from_run_record(path, "sources")
    if not isinstance(recorded, dict):
        return []
    now = problem_sources(path)
    changed = sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))
    for key in changed:
        kind, _, file = key.partition(":")
        what = "is missing now" if now.get(key) == "missing" else "is new" if key not in recorded else \
            f"changed since that run (sha256 {str(recorded.get(key))[:12]}…, now {str(now.get(key))[:12]}…)"
        if not quiet:  # one line however long the paths (soft_wrap: the console does not break it)
            err.print(f"warning: --from {path.parent}: the {kind} file {file} {what}: this run may not reproduce "
                      "that run's numbers", highlight=False, markup=False, soft_wrap=True)
    return changed


def run_step_costs(spec, quiet: bool = False):
    """The step costs the run converts its counts with (`trajopt.step_costs.step_costs_for`: measured once per
    system and host, with a status line on a terminal unless ``quiet``, or ``TRAJOPT_STEP_COSTS``); a bad
    ``TRAJOPT_STEP_COSTS`` is exit 2, before any work."""
    try:
        return step_costs_for(spec, None, measuring=measuring_status(spec, quiet))
    except ValueError as e:  # TRAJOPT_STEP_COSTS: its own one-line message
        raise fail(str(e)) from None


def _warm_figures():
    """`trajopt.plots.warm_up` on a daemon thread while the last compiled loop runs (it releases the GIL, and no
    other variant is being traced then), so the figure that follows does not wait for matplotlib. Returns the
    thread: join it before drawing (matplotlib is not made to be driven from two threads at once). A failure is
    left to the figure that needs matplotlib."""
    def target():
        try:
            from trajopt.plots import warm_up

            warm_up()
        except Exception:  # noqa: BLE001 - reported by the figure itself later
            pass

    thread = threading.Thread(target=target, name="trajopt-warm-figures", daemon=True)
    thread.start()
    return thread


def _run_claimed(spec, verb, out_dir, x, json_out, quiet, plot, report, sets, should_stop, budget, disk,
                 memory_limit, step_costs=None, changed_sources=()) -> int:
    import jax

    from trajopt import runs, traces
    from trajopt.solver import SolveError, prepare_each

    prob = spec.problem()
    key = jax.random.PRNGKey(spec.solve.key)
    title = display_title(spec, sets) + (f" [equal budget: {budget:,} forward-step equivalents per seed]" if budget
                                         else "")
    show = not (quiet or json_out)
    warming = None  # matplotlib's warm-up: started when the last variant runs, the prepare thread then idle
    results, history_kind = {}, {}
    progress = Progress(TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err, disable=not show, transient=False)
    # up to two variants are traced and compiled ahead while this one runs (the same results as one at a time)
    # a deterministic method runs once, its result shared by the seeds (once=True); a budget stops each seed there
    prepared = prepare_each(prob, [(v.method, spec.iterations_of(n)) for n, v in spec.variants.items()],
                            key=key, seeds=spec.solve.seeds, chunk=spec.solve.chunk, names=list(spec.variants),
                            budget=budget, step_costs=step_costs, once=True,
                            trace_identity=traces.problem_identity(spec))  # traced loops kept with the cache
    failure = None  # a variant whose own code failed (traced, compiled or run): the variants before it are kept
    with progress:
        for index, (name, variant) in enumerate(spec.variants.items()):
            iterations = spec.iterations_of(name)
            task = progress.add_task(f"{escape(name)} (compiling)", total=iterations)

            def on_chunk(done, total, task=task, name=name):
                progress.update(task, completed=done, description=escape(name))

            try:  # a signal before or during compilation still lets the first chunk run: the folder has data
                loop = next(prepared)
                if plot and index == len(spec.variants) - 1:  # tracing (Python) no longer competes for the GIL
                    warming = _warm_figures()
                history_kind[name] = "disk" if loop.history_bytes() > memory_limit else "memory"
                results[name] = loop.run(on_chunk=on_chunk, should_stop=should_stop, name=name,
                                         history_store=disk if history_kind[name] == "disk" else None)
            except SolveError as e:  # user code the preflight's trace did not catch: one line, what finished kept
                failure = e
                break
            progress.update(task, description=escape(name))
            if should_stop():
                break
    prepared.close()
    _signals.writing()  # the loops are done: from here a second Ctrl-C no longer loses what they computed
    if failure is not None:
        line = f"{spec.source}: variants.{failure.variant}: failed while {failure.stage}: {failure.reason}"
        if failure.stage != "running" and not results:  # refused before anything ran: exit 2, nothing written
            raise fail(line)
        if not results:  # it failed while running, and nothing had finished: exit 1, nothing to write
            err.print(f"[bold red]error:[/] {escape(one_line(line))}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_FAILED)
    summary = runs.summarise(
        spec, results, verb=verb, versions=runs.versions(), platform_name=jax.default_backend(),
        x64=bool(jax.config.jax_enable_x64), created=datetime.now().isoformat(timespec="seconds"),
        step_costs=step_costs,
    )
    summary["title"] = title
    summary["sources"] = problem_sources(spec.source)  # what a later --from compares (changed_since_run)
    if changed_sources:  # --from a run whose model or module files have changed since: said in the record too
        summary["sources_changed_since_from_run"] = list(changed_sources)
    for name in results:  # where the recorded history was kept while the folder was written
        summary["variants"][name]["history"] = history_kind[name]
    if sets:
        summary["overrides"] = list(sets)  # the report says the file's description was written for other values
    if spec.policy is not None and spec.policy.success_radius is not None:
        _success(spec, prob, results, summary)

    def mark_interrupted():
        summary["status"] = "interrupted"
        summary["variants_not_run"] = [o for o in spec.variants if o not in results]

    if failure is not None:  # the folder holds the variants that finished; status failed, exit 1
        summary["status"] = "failed"
        summary["variants_not_run"] = [o for o in spec.variants if o not in results]
        summary["error"] = {"variant": failure.variant, "stage": failure.stage, "message": failure.reason}
    elif summary["status"] == "interrupted" or len(results) < len(spec.variants) or should_stop():
        mark_interrupted()
        if not summary["variants_not_run"] and all(  # every loop had finished: the signal came after the last
                s != "interrupted" for v in summary["variants"].values() for s in v["status"]):  # chunk
            summary["interrupted_while_writing"] = True
    runs.write_run(out_dir, spec, results, summary)
    if plot:
        from trajopt import plots

        if warming is not None:
            warming.join()
        plots.save_figure(plots.convergence_figure(results, x=x, title=title + gradient_axis_note(results, x),
                                                   labels=runs.legend_labels(summary), step_costs=step_costs),
                          out_dir / runs.CONVERGENCE)
        if spec.policy is not None:
            plots.save_figure(_rollouts_figure(spec, prob, results, title, summary), out_dir / ROLLOUTS)
    if report:
        from trajopt import report as report_mod

        run = runs.Run(path=out_dir, result=json.loads(runs.dumps_json(summary)), config=spec.resolved(),
                       variants=list(results), series={}, results=results)
        runs.atomic_write_bytes(out_dir / "report.html",
                                runs.utf8(report_mod.html_report([run], {str(out_dir): report_mod.run_figures(run, "r0_")})))
    disk.close()  # the streamed history's files (the arrays stay readable until dropped)
    # the folder is complete: a signal from here on finds it final and the exit status agrees with it (0 for "ok")
    if _signals.settle() and summary["status"] != "interrupted":  # the signal came while the folder was written
        mark_interrupted()
        summary["interrupted_while_writing"] = True
        runs.atomic_write_bytes(out_dir / runs.RESULT, runs.dumps_json(summary).encode())
    if json_out:
        sys.stdout.write(runs.dumps_json({**summary, "out": str(out_dir)}))
    elif not quiet:
        out.print(_summary_table(summary))
        out.print(f"run folder: [bold]{escape(str(out_dir))}[/]")
    if failure is not None:
        err.print(f"[bold red]error:[/] {escape(one_line(line))} (the variants before it are in {escape(str(out_dir))})",
                  highlight=False, soft_wrap=True)
    if summary["status"] == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary["status"] == "failed" else EXIT_OK


# ------------------------------------------------------------------------------------------ commands


def _check_x(x: str) -> list[str]:
    """--x as a list of axes (a comma list draws one column per axis)."""
    from trajopt.plots import X_AXES

    axes = [a.strip() for a in x.split(",")]
    if not axes or any(a not in X_AXES for a in axes) or len(set(axes)) != len(axes):
        raise fail(f"--x: found {x!r}, allowed: one or more (comma-separated, distinct) of {', '.join(X_AXES)}")
    return axes


FromOpt = typer.Option(None, "--from", help="Re-run the configuration recorded in a run folder (its config.toml).")
OptionalProblemArg = typer.Argument(None, help="A TOML problem file (see `trajopt list problems`).", show_default=False)


def _problem_or_run(problem: Optional[Path], from_run: Optional[Path]) -> Path:
    """The file to load: PROBLEM, or RUN_DIR/config.toml with --from (exactly one of them)."""
    if problem is not None and from_run is not None:
        raise fail("give a PROBLEM file or --from RUN_DIR, not both")
    if from_run is not None:
        config = from_run / CONFIG
        if not from_run.is_dir() or not os.path.lexists(config):
            raise fail(f"--from {from_run}: not a run folder (no {CONFIG} in it)")
        try:  # a regular file inside the folder: never a FIFO (the reader would hang), a device or a link out of it
            open_member(config).close()  # (its size is tomlio's to check)
        except RunFolderError as e:
            raise fail(f"--from {from_run}: {e}") from None
        return config
    if problem is None:
        raise fail("missing PROBLEM: give a TOML problem file (see `trajopt list problems`) or --from RUN_DIR")
    return problem


@app.command()
def solve(
    problem: Optional[Path] = OptionalProblemArg,
    oracle: Optional[str] = typer.Option(None, "--oracle", help="The gradient oracle (see `trajopt list oracles`)."),
    variant: Optional[str] = typer.Option(None, "--variant", help="A variant instead: a [variants] table of the file, "
                                          "an oracle or a method (see `trajopt list methods`)."),
    from_run: Optional[Path] = FromOpt,
    seeds: Optional[str] = SeedsOpt,
    iterations: Optional[int] = IterOpt,
    set_: Optional[List[str]] = SetOpt,
    out_dir: Optional[Path] = OutOpt,
    force: bool = ForceOpt,
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Optimise PROBLEM with one oracle (or variant) over several seeds and write a run folder.

    With --from RUN_DIR, repeat a recorded run: the same configuration, seeds and variants (bit for bit on the
    same machine and library versions), unless options here change them.
    """
    path = _problem_or_run(problem, from_run)
    if oracle is None and variant is None and from_run is None:
        raise fail("missing --oracle NAME or --variant NAME (see `trajopt list oracles`); `trajopt compare` runs several")
    if variant is not None and "," in variant:
        raise fail(f"--variant: found {variant!r}, allowed: one name (`trajopt compare --variants` runs several)")
    if oracle is not None and "," in oracle:
        raise fail(f"--oracle: found {oracle!r}, allowed: one name (`trajopt compare --oracles` runs several)")
    check_force(force, out_dir)
    code = _run("solve", path, cli_overrides(set_, iterations, seeds, oracle, variant, "--oracle"), out_dir, force, "iterations",
                json_out, quiet, plot=True, sets=set_)
    raise typer.Exit(code)


@app.command()
def compare(
    problem: Optional[Path] = OptionalProblemArg,
    oracles: Optional[str] = typer.Option(None, "--oracles", help="Comma-separated oracle names, each under the "
                                          "file's optimiser (default: the file's variants)."),
    variants: Optional[str] = typer.Option(None, "--variants", help="Comma-separated variants: [variants] tables of "
                                           "the file, oracles (file's optimiser) or methods (their defaults)."),
    from_run: Optional[Path] = FromOpt,
    seeds: Optional[str] = SeedsOpt,
    iterations: Optional[int] = IterOpt,
    x: str = XOpt,
    set_: Optional[List[str]] = SetOpt,
    out_dir: Optional[Path] = OutOpt,
    force: bool = ForceOpt,
    report: bool = typer.Option(False, "--report", help="Also write report.html into the run folder."),
    budget: Optional[int] = typer.Option(None, "--budget", help="Equal compute budget per seed, in forward-step "
                                         "equivalents (one step of the model; a backward pass and a linearisation "
                                         "count as their measured cost): a fixed-cost variant runs budget // (its "
                                         "cost per step) steps, iLQR and L-BFGS run until their spend reaches it."),
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Run several variants on PROBLEM with the same seeds; write a run folder and convergence.png."""
    x = _check_x(x)
    path = _problem_or_run(problem, from_run)
    if budget is not None and (budget < 1 or budget > 10**12):
        raise fail(f"--budget: found {budget}, allowed: forward-step equivalents per seed in 1..1e12")
    if budget is not None and iterations is not None:
        raise fail("give --budget or --iterations, not both (the budget sets each variant's iterations)")
    for item in set_ or [] if budget is not None else []:
        key = item.partition("=")[0].strip()
        if key == "solve.iterations" or (key.startswith("variants.") and key.endswith(".iterations")):
            raise fail(f"--set {key}: found with --budget, allowed: one of them (the budget sets each variant's "
                       "iterations)")
    check_force(force, out_dir)
    code = _run("compare", path, cli_overrides(set_, iterations, seeds, oracles, variants), out_dir, force, x,
                json_out, quiet, plot=True, report=report, sets=set_, budget=budget)
    raise typer.Exit(code)
