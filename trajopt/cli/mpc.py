"""`trajopt mpc`: run variants as receding-horizon controllers (a file's ``[mpc]`` and ``[plant]``) over seeds and
write a run folder."""

from __future__ import annotations

import math
import sys
from datetime import datetime
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from trajopt.tomlio import toml_string

from trajopt.cli._common import (
    CACHE_HIT_NOTE, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ForceOpt, JsonOpt, OutOpt, QuietOpt, SeedsOpt, SetOpt,
    any_cache_hit, app, check_sets, err, fail, fmt, measuring_status, out, overrides_blamed, seconds_text,
    seeds_status_text, title_text,
)

# the step costs' cache and measurement are shared with the closed-loop studies (trajopt.studies)
from trajopt.step_costs import STEP_COSTS_FILE, costs_text, step_costs_for  # noqa: E402,F401
from trajopt.step_costs import host as _host  # noqa: E402,F401


def settings_text(summary: dict) -> str:
    """"MPC: episode N, horizon H, replan every r, K iterations per replan, S seeds, control period P ms, plant ≠ model
    (...)": what the table's and every figure's title state besides the problem (and its --set overrides); one text
    with a closed-loop study's figures (`trajopt.plots_closedloop.task_settings_text`)."""
    from trajopt.plots_closedloop import task_settings_text  # deferred: it imports matplotlib, as the figures do

    return task_settings_text([summary])


def _mpc_table(summary: dict) -> Table:
    table = Table(title=title_text(f"{summary['title']}  ({settings_text(summary)})"),
                  title_justify="left", caption_justify="left",
                  caption="compute per control step (replan), mean over seeds and replans; FSE: forward-step "
                  f"equivalents ({costs_text(summary['step_costs'])}); plan time on seed "
                  f"{summary['seeds'][0]} on {escape(str(summary.get('platform', '?')))}")
    has_success = any("success_rate" in v for v in summary["variants"].values())
    has_lin = any(v["compute_per_step"].get("linearizations") for v in summary["variants"].values())
    cols = [("variant", "left"), ("status", "left"), ("closed-loop cost", "right"), ("IQR", "right"),
            *([("success [95 %]", "right")] if has_success else []), ("rollouts", "right"), ("backward", "right"),
            *([("linearisations", "right")] if has_lin else []), ("FSE", "right"), ("plan ms p50/p95/max", "right"), ("misses", "right"), ("RTF", "right"),
            ("run+compile s", "right")]
    for col, justify in cols:
        table.add_column(col, justify=justify)
    if any_cache_hit(summary):
        table.caption += "; " + CACHE_HIT_NOTE
    for name, v in summary["variants"].items():
        # as the open-loop table: "1/2 ok, 1 non_finite" (the cost's median and IQR are over the ok seeds alone)
        status = seeds_status_text(v["status"])
        q = v["closed_loop_cost_iqr"]
        c = v["compute_per_step"]
        ps = v["plan_seconds"]
        ms = lambda x: "-" if x is None or not math.isfinite(x) else f"{x * 1e3:.3g}"  # noqa: E731
        miss, rtf = v["deadline_miss_rate"], v["realtime_factor"]
        success = []
        if has_success:
            rate, (lo, hi) = v.get("success_rate"), v.get("success_interval", [None, None])
            success = ["-" if rate is None else f"{rate:.0%} [{lo:.0%}, {hi:.0%}]"]
        table.add_row(escape(name), status, fmt(v["closed_loop_cost_median"]),
                      "-" if q[0] is None else f"{fmt(q[0])}–{fmt(q[1])}", *success,
                      f"{c['rollouts']:,.4g}", f"{c['gradients']:,.4g}",
                      *([f"{c.get('linearizations', 0):,.4g}"] if has_lin else []), f"{c['forward_equivalents']:,.4g}",
                      f"{ms(ps['p50'])}/{ms(ps['p95'])}/{ms(ps['max'])}",
                      "-" if miss is None or not math.isfinite(miss) else f"{miss:.0%}",
                      "-" if rtf is None or not math.isfinite(rtf) else f"{rtf:.3g}",
                      seconds_text(v))
    return table


def mpc_overrides(sets, seeds: Optional[str], variants: Optional[str], episode: Optional[int],
                  iterations: Optional[int], horizon: Optional[int]) -> list[str]:
    """The CLI's shortcuts as --set overrides of the [mpc] table (validated and reported like file keys)."""
    from trajopt.cli.compare import _names

    items = list(sets or [])
    if seeds is not None:
        text = seeds.strip()
        items.append(f"mpc.seeds=[{text}]" if "," in text else f"mpc.seeds={text}")
    if variants is not None:
        names = _names("--variants", variants)
        items.append("mpc.variants=[" + ", ".join(toml_string(n) for n in names) + "]")
    for key, value in (("episode", episode), ("iterations", iterations), ("horizon", horizon)):
        if value is not None:
            items.append(f"mpc.{key}={value}")
    return items


@app.command("mpc")
def mpc_cmd(
    problem: Path = typer.Argument(..., help="A TOML problem file with an [mpc] table (see `trajopt list problems`).",
                                   show_default=False),
    variants: Optional[str] = typer.Option(None, "--variants", help="Comma-separated variants: [variants] tables of "
                                           "the file, oracles (file's optimiser) or methods (default: [mpc] "
                                           "variants, else the file's)."),
    seeds: Optional[str] = SeedsOpt,
    episode: Optional[int] = typer.Option(None, "--episode", help="Plant steps of the episode ([mpc] episode)."),
    horizon: Optional[int] = typer.Option(None, "--horizon", help="Planning steps per replan ([mpc] horizon)."),
    iterations: Optional[int] = typer.Option(None, "--iterations", help="Method steps per replan ([mpc] iterations)."),
    set_: Optional[List[str]] = SetOpt,
    out_dir: Optional[Path] = OutOpt,
    force: bool = ForceOpt,
    report: bool = typer.Option(False, "--report", help="Also write report.html into the run folder."),
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Run variants as receding-horizon controllers on PROBLEM's plant ([mpc], [plant], [success]) over seeds; write a
    run folder with the realised trajectories, closed-loop cost, compute and plan time per control step."""
    from trajopt.cli._outputs import _interruptible

    overrides = mpc_overrides(set_, seeds, variants, episode, iterations, horizon)
    with _interruptible() as should_stop:
        code = _run(problem, overrides, set_, out_dir, force, report, json_out, quiet, should_stop)
    raise typer.Exit(code)


def _selected(spec) -> list[str]:
    mpc = spec.closed_loop.mpc
    return list(mpc.variants) if mpc.variants is not None else list(spec.variants)


def _load(problem_path, overrides, variants_key: str = "solve.variants"):
    """The closed-loop spec of a problem file (a policy file's variants name open-loop oracles); exit 2 if bad, a
    ``solve.variants`` error named at ``variants_key`` (the key the command's variants came from)."""
    from trajopt import spec as spec_mod

    try:
        return spec_mod.load(problem_path, overrides, closed_loop=True)
    except spec_mod.SpecError as e:
        if e.key == "solve.variants":
            e = spec_mod.SpecError(e.source, variants_key, e.message)
        raise fail(str(e) + overrides_blamed(problem_path, overrides, e, closed_loop=True)) from None


def _run(problem_path, overrides, sets, out_dir, force, report, json_out, quiet, should_stop) -> int:
    from trajopt.cli._outputs import claim_out, display_title

    spec = _load(problem_path, overrides)
    if spec.closed_loop is None or spec.closed_loop.mpc is None:
        raise fail(f"{spec.source}: mpc: missing; allowed: an [mpc] table with episode and horizon (the closed-loop "
                   "run's settings; see docs/closed_loop.md)")
    for item in sets or []:
        key = item.partition("=")[0].strip()
        if key in ("solve.iterations", "solve.variants", "solve.seeds") or (
                key.startswith("variants.") and key.endswith(".iterations")):
            raise fail(f"{spec.source}: --set {key}: not read by trajopt mpc (a closed-loop run takes mpc.iterations "
                       "steps per replan, mpc.variants and mpc.seeds); allowed: --set mpc.iterations=K, "
                       "--iterations K, --variants, --seeds")
    names = _selected(spec)
    iterations = spec.closed_loop.mpc.settings.iterations
    # the [mpc] variants are the run's variants, each running K = mpc.iterations steps per replan: load again with
    # them as solve.variants and K as every variant's iterations, so that each is validated like --variants and its
    # step and sigma schedules span the K steps of a replan (the method restarts them at every replan)
    from trajopt.spec import iteration_overrides

    run_overrides = overrides + ["solve.variants=[" + ", ".join(toml_string(n) for n in names) + "]",
                                 f"solve.iterations={iterations}"]
    # the names come from --variants or mpc.variants, not the file's solve.variants
    given = any(item.startswith("mpc.variants=") and item not in (sets or []) for item in overrides)
    spec = _load(problem_path, run_overrides, "--variants" if given else "mpc.variants")
    extra = iteration_overrides(spec, run_overrides)
    if extra:
        spec = _load(problem_path, run_overrides + extra)
    check_sets(spec, sets, "variants", "mpc")
    mpc_spec = spec.closed_loop.mpc
    problem = spec.closed_loop_problem()
    from trajopt.spec import SpecError, check_variants

    from trajopt.closedloop.episode import planning_problem

    try:  # every variant against the H-step problem it plans (applicability, a sampler's knots <= H, sizes, user
        # code traced) before anything compiles
        check_variants(spec, planning_problem(problem, mpc_spec.settings) if getattr(problem, "time_stepped", False)
                       else problem)
    except SpecError as e:
        raise fail(str(e)) from None
    if not getattr(problem, "time_stepped", False):
        raise fail(f"{spec.source}: mpc: closed-loop MPC needs a time-stepped open-loop problem (a one-step map, a "
                   f"start and a stage cost); {spec.name} is not one")
    out_dir = out_dir or Path("runs") / spec.name / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-mpc"
    title = display_title(spec, sets)
    seeds = mpc_spec.seeds if mpc_spec.seeds is not None else spec.solve.seeds
    with claim_out(out_dir, force):
        return _run_claimed(spec, problem, out_dir, title, seeds, report, json_out, quiet, should_stop)


def _run_claimed(spec, problem, out_dir, title, seeds, report, json_out, quiet, should_stop) -> int:
    import jax
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from trajopt import runs, runs_mpc, traces
    from trajopt.closedloop import mpc

    cl = spec.closed_loop
    settings = cl.mpc.settings
    plant = cl.plant.plant if cl.plant is not None else None
    key = jax.random.PRNGKey(spec.solve.key)
    show = not (quiet or json_out)
    step_costs = step_costs_for(spec, problem, measuring=measuring_status(spec, not show))
    results = {}
    identity = traces.problem_identity(spec)  # traced episodes kept with the compilation cache
    progress = Progress(TextColumn("{task.description:<24}"), BarColumn(), TimeElapsedColumn(), console=err,
                        disable=not show, transient=False)
    with progress:
        for name, variant in spec.variants.items():
            task = progress.add_task(f"{escape(name)} (compiling, running, timing)", total=1)
            results.update(mpc(problem, {name: variant.method}, settings=settings, plant=plant, key=key, seeds=seeds,
                               success=cl.success, initial_states=spec.closed_loop_starts(seeds),
                               trace_identity=identity))
            progress.update(task, completed=1, description=escape(name))
            if should_stop():
                break
    from trajopt import _signals

    _signals.writing()  # the episodes are done: from here a second Ctrl-C no longer loses what they computed
    summary = runs_mpc.summarise(spec, results, step_costs=step_costs, versions=runs.versions(),
                                 platform_name=jax.default_backend(), x64=bool(jax.config.jax_enable_x64),
                                 created=datetime.now().isoformat(timespec="seconds"))
    summary["title"] = title
    if len(results) < len(spec.variants) or should_stop():
        summary["status"] = "interrupted"
        summary["variants_not_run"] = [v for v in spec.variants if v not in results]
        if not summary["variants_not_run"]:  # every episode had finished: the signal came while summarising
            summary["interrupted_while_writing"] = True
    runs_mpc.write_run(out_dir, spec, results, summary, problem.cost, step_costs)
    from trajopt import plots
    from trajopt.plots_closedloop import closed_loop_cost_figure, plan_time_figure, realised_figure

    titled = f"{title}\n{settings_text(summary)}"  # the settings that made the figures, as the table states them
    figures = {
        "realised": ("realised states and controls (median and interquartile band over seeds)",
                     realised_figure(results, system=spec.system, goal=spec.task.goal, title=titled)),
        "cost": ("closed-loop cost of each seed", closed_loop_cost_figure(results, title=titled)),
        "plan_time": ("plan time per replan against the control period", plan_time_figure(results, title=titled)),
    }
    for kind, (_, fig) in figures.items():
        plots.save_figure(fig, out_dir / runs_mpc.FIGURES[kind])
    if report:
        from trajopt.report_mpc import html_mpc_report

        pngs = {caption: plots.figure_bytes(fig) for caption, fig in figures.values()}
        runs.atomic_write_bytes(out_dir / "report.html", html_mpc_report(summary, pngs).encode())
    if _signals.settle() and summary["status"] != "interrupted":
        summary["status"] = "interrupted"
        summary["interrupted_while_writing"] = True
        runs.atomic_write_bytes(out_dir / runs.RESULT, runs.dumps_json(summary).encode())
    if json_out:
        sys.stdout.write(runs.dumps_json({**summary, "out": str(out_dir)}))
    elif not quiet:
        out.print(_mpc_table(summary))
        out.print(f"run folder: [bold]{escape(str(out_dir))}[/]")
    if summary["status"] == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary["status"] == "failed" else EXIT_OK
