"""`trajopt sweep` and `trajopt landscape`: estimator statistics across a parameter or a 1-D decision."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from trajopt import _signals
from trajopt.cli._common import (
    EXIT_INTERRUPTED, ForceOpt, JsonOpt, ProblemArg, QuietOpt, SetOpt, app, check_distinct, check_force, check_sets,
    fail, fmt, is_policy_file, load_spec, out, preflight, title_text, write_final,
)
from trajopt.cli.diagnose import PROBLEM_SECTIONS, check_run_config
from trajopt.cli._outputs import _interruptible, claim_out, display_title
from trajopt.tomlio import toml_string

# The library (JAX, numpy, matplotlib) is imported inside each command, so that importing the CLI stays fast.

SamplesOpt = typer.Option(None, "--samples", help="Samples N per estimate (sets every oracle's `samples`).")
RepeatsOpt = typer.Option(20, "--repeats", help="Independent estimates per point (median and IQR are over these).")
OraclesOpt = typer.Option(None, "--oracles", help="Comma-separated oracles (default: fobg, zobg and the adaptive ones).")
StudyOutOpt = typer.Option(None, "--out", help="Output folder (default runs/<problem>/<timestamp>-<verb>).")


def _study_oracles(oracles: Optional[str], policy: bool = False) -> list[str]:
    """--oracles, or by default fobg, zobg and every oracle that chooses its own α among those of the problem's
    registry (a policy problem has no ddcg)."""
    from trajopt.oracles import alpha_choosers

    if oracles:
        return [o.strip() for o in oracles.split(",") if o.strip()]
    if policy:
        from trajopt.policies import POLICY_ORACLES

        return ["fobg", "zobg"] + [n for n in alpha_choosers() if n in POLICY_ORACLES]
    return ["fobg", "zobg"] + alpha_choosers()


def _overrides(problem: Path, sets, samples, names, verb: str, over: Optional[str] = None) -> list[str]:
    """The overrides of an oracle-level study: the --set items, the studied oracles, and ``--samples`` N as every
    studied oracle's own ``oracle.NAME.samples`` (a shared ``oracle.samples`` would lose to a file's own
    [oracle.NAME] samples). Refused (exit 2): --samples when no studied oracle takes samples, and a key given twice
    (--set and --samples, or --set and --over: the later would silently win)."""
    from trajopt.tables import fields_of  # numpy: imported when the command runs

    items = list(sets or []) + ["solve.oracles=[" + ", ".join(toml_string(n) for n in names) + "]"]
    own = []
    if samples is not None:
        spec = load_spec(problem, items)
        taking = [n for n, o in spec.oracles.items() if "samples" in fields_of(o)]
        if not taking:  # the message names the oracles that take samples and the ones studied
            check_sets(spec, [f"oracle.samples={samples}"], "oracles", verb, label="--samples (oracle.samples)")
        own = [f"oracle.{n}.samples={samples}" for n in taking]
    check_distinct([(f"--set {item.partition('=')[0].strip()}", item) for item in sets or []]
                   + [("--samples", item) for item in own]
                   + ([(f"--over {over.partition('=')[0].strip()}", over)] if over is not None else []))
    return items + own


def _check_reach(spec, sets, verb: str, over: Optional[str] = None) -> None:
    """Refuse --set and --over keys that none of the studied oracles takes (exit 2)."""
    check_sets(spec, sets, "oracles", verb)
    if over is not None:
        check_sets(spec, [over], "oracles", verb, label=f"--over {over.partition('=')[0].strip()}")


def _check_study_size(spec, problem, repeats: int, points: int = 1, label: str = "--repeats") -> None:
    """`trajopt.spec.check_working_set` for an oracle-level study: repeats (x points, landscape) estimates side by
    side, each the rollouts of the studied oracle that spends most."""
    from trajopt.spec import SpecError, check_working_set, rollouts_per_step

    per = max([rollouts_per_step(o, problem) or getattr(o, "samples", 1) for o in spec.oracles.values()] or [1])
    what = f"{repeats:,} repeats" + (f" x {points:,} points" if points > 1 else "") + f" x {per:,} rollouts per estimate"
    try:
        check_working_set(spec, {label: (repeats * points * per, what)}, problem)
    except SpecError as e:
        raise fail(str(e)) from None


def _check_varies(key: str, specs: list) -> None:
    """Refuse (exit 2) a swept oracle key that leaves unchanged, at every value, the problem and the configuration of
    a studied oracle that takes the key (another setting wins over it: an [oracle.NAME] key of the file, --samples):
    its line would be drawn flat "against" the key. Oracles that do not take the key are flat by nature; a problem
    key always reaches the problem (a user system built by a factory records none of its parameters, so its
    configuration cannot be compared)."""
    from trajopt.tables import fields_of  # numpy: imported when the command runs

    parts = key.split(".")
    if len(specs) < 2 or parts[0] != "oracle":  # a problem key always reaches the problem (or is an unknown key)
        return

    def takes(name, oracle) -> bool:
        return parts[1] in fields_of(oracle) if len(parts) == 2 else parts[1] == name

    def seen(spec, name) -> str:
        r = spec.resolved()
        return json.dumps([r.get(k) for k in PROBLEM_SECTIONS] + [r["solve"]["key"], r["oracle"].get(name)],
                          sort_keys=True, default=str)

    for name, oracle in specs[0][1].oracles.items():
        if takes(name, oracle) and len({seen(s, name) for _, s in specs}) == 1:
            raise fail(f"--over {key}: found the same {name} estimate at every value (another setting wins over the "
                       f"key: an [oracle.{name}] key of the file, --samples or --set), allowed: a key that changes what "
                       "each studied oracle that takes it estimates")


def _estimates_note(spec, names, repeats: int, key: Optional[str] = None) -> str:
    """What each point's statistics are over, for a title: "[N = 10, 20 repeats]" (each studied oracle's samples N,
    per oracle where they differ; "N swept" where ``key`` is a samples key), so that a figure or table states it."""
    if key is not None and key.split(".")[-1] == "samples":
        n = "N swept"
    else:
        samples = {o: getattr(spec.oracles.get(o), "samples", None) for o in names}
        known = {o: s for o, s in samples.items() if s is not None}
        n = (f"N = {next(iter(known.values()))}" if len(set(known.values())) == 1 else
             "N = " + ", ".join(f"{o} {s}" for o, s in known.items())) if known else ""
    return f" [{n + ', ' if n else ''}{repeats} repeats]"


def _out_dir(spec, verb: str, out_dir: Optional[Path]) -> Path:
    """--out, or the default runs/<problem>/<timestamp>-<verb> (claimed with `trajopt.cli._outputs.claim_out`)."""
    return out_dir or Path("runs") / spec.name / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{verb}"


@app.command()
def sweep(
    problem: Path = ProblemArg,
    over: List[str] = typer.Option(..., "--over", help="KEY=VALUES: any key of the file, values as 1,10,100, "
                                   "linspace:a:b:n or logspace:a:b:n (10^a..10^b). One key: a grid over several "
                                   "keys is a study (trajopt study)."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip values the problem refuses (e.g. an "
                                      "unstable time step), recording them in sweep.json, instead of refusing."),
    samples: Optional[int] = SamplesOpt,
    repeats: int = RepeatsOpt,
    oracles: Optional[str] = OraclesOpt,
    set_: Optional[List[str]] = SetOpt,
    out_dir: Optional[Path] = StudyOutOpt,
    force: bool = ForceOpt,
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Estimator statistics at the initial guess across a parameter (variance vs stiffness, horizon, N).

    Per-sample variances of FoBG and ZoBG, the gap and each adaptive oracle's alpha; writes sweep.csv,
    sweep.json and sweep.png.
    """
    import jax

    from trajopt import analysis, plots, programs, runs
    from trajopt import spec as spec_mod

    if len(over) != 1:
        raise fail(f"--over given {len(over)} times ({'; '.join(over)}); allowed: one --over (sweep draws a line); "
                   "for a grid over several keys write a study file with a [grid] table and run `trajopt study`")
    over = over[0]
    if "=" not in over:
        raise fail(f"--over {over}: allowed: KEY=VALUES, e.g. system.stiffness=logspace:1:4:10")
    key, _, grid = over.partition("=")
    key = key.strip()
    if repeats < 2:
        raise fail(f"--repeats: found {repeats}, allowed: an integer >= 2")
    check_force(force, out_dir)
    names = _study_oracles(oracles, is_policy_file(problem, set_))
    base_overrides = _overrides(problem, set_, samples, names, "sweep", over)
    base = load_spec(problem, base_overrides)
    raw = spec_mod.apply_overrides(spec_mod.read_toml(problem), base_overrides, str(problem))
    typ = spec_mod.key_type(raw, key)
    if typ not in (int, float):
        raise fail(f"--over {key}: found a key of type {typ.__name__}, allowed: a numeric key")
    _check_reach(base, set_, "sweep", over)
    preflight(base, use="oracles")  # an oracle that cannot estimate here, or user code that fails when traced
    try:
        values = analysis.parse_grid(grid, integer=typ is int)
    except ValueError as e:
        raise fail(f"--over {key}: {e}") from None
    specs, skipped = [], []
    for v in values:  # every point validated up front: a refused value is named, and refused or skipped
        try:
            specs.append((v, spec_mod.load(problem, base_overrides + [f"{key}={v!r}"])))
        except spec_mod.SpecError as e:
            if not skip_invalid:
                raise fail(f"--over {key} = {v:g}: {e} (--skip-invalid skips such values)") from None
            skipped.append({"value": v, "error": str(e)})
    if not specs:
        raise fail(f"--over {key}: every value was refused by the problem ({skipped[0]['error']})")
    for _, s in specs:  # --over oracle.samples or task.horizon: each point's estimates are bounded in memory
        _check_study_size(s, s.problem(), repeats)
    _check_varies(key, specs)
    values = [v for v, _ in specs]
    folder = _out_dir(base, "sweep", out_dir)
    with _interruptible() as should_stop, claim_out(folder, force):  # created, locked, (--force) emptied first
        points = []
        root = jax.random.PRNGKey(base.solve.key)
        # the constants the sweep varies, which every point takes as inputs: one compilation per oracle
        lift = analysis.sweep_positions(root, (specs[0][1].problem(), specs[0][1].oracles),
                                        (specs[1][1].problem(), specs[1][1].oracles), repeats) \
            if len(specs) > 1 and programs.enabled() else {}
        for v, s in specs:
            if points and should_stop():  # a signal: stop between points, and write the ones done
                break
            if not quiet and not json_out:
                out.print(escape(f"  {key} = {v:g}"), highlight=False)
            points.append((v, analysis.point_statistics(root, s.problem(), s.oracles, repeats, lift=lift)))
        rows = analysis.sweep_rows(points)
        # the title names what was swept and set, never the file's own parameter values (its title may say k = 1000)
        title = (display_title(base, set_) if set_ else base.name) + f": variance against {key}" + \
            _estimates_note(base, names, repeats, key) + \
            (" (skipped, refused by the problem: " + ", ".join(f"{p['value']:g}" for p in skipped) + ")" if skipped else "")
        meta = {"problem": base.name, "title": title, "key": key, "values": values, "repeats": repeats,
                "oracles": names, "samples": {n: getattr(o, "samples", None) for n, o in base.oracles.items()},
                "skipped": skipped, "values_not_run": [v for v, _ in specs[len(points):]],
                # trajopt.programs: per oracle, the constants its points took as inputs (None: compiled per point)
                "lifted_constants": {n: len(p.indices) if p else None for n, p in lift.items()} or None}
        _signals.writing()  # the points are computed: a second Ctrl-C now finishes the folder, marked interrupted
        runs.write_config(folder, base)
        table_rows = [{key: r["value"], **{k: v for k, v in r.items() if k != "value"}} for r in rows]

        plots.save_figure(plots.sweep_figure(rows, key, title=title), folder / "sweep.png")

        def write(status):
            meta["status"] = status
            runs.write_table(folder, "sweep", table_rows, meta)

        status = write_final(write)
    done = EXIT_INTERRUPTED if status == "interrupted" else 0
    if json_out:
        sys.stdout.write(runs.dumps_json({**meta, "rows": rows, "out": str(folder)}))
        raise typer.Exit(done)
    if quiet:
        raise typer.Exit(done)
    from trajopt.oracles import alpha_choosers

    adaptive = [o for o in names if o in alpha_choosers()]
    table = Table(title=title_text(f"{title} (medians)"), title_justify="left")
    for col in ("value", "σ̂₁² (FoBG)", "σ̂₀² (ZoBG)", "ratio", *[f"α {o}" for o in adaptive]):
        table.add_column(col, justify="right")
    by = {(r["oracle"], r["value"]): r for r in rows}
    for v in values:
        v1 = by.get(("fobg", v), {}).get("var_first_median")
        v0 = by.get(("zobg", v), {}).get("var_zero_median")
        ratio = v1 / v0 if v1 is not None and v0 else None
        alphas = [fmt(by.get((o, v), {}).get("alpha_median"), 3) for o in adaptive]
        table.add_row(fmt(v), fmt(v1, 3), fmt(v0, 3), fmt(ratio, 3), *alphas)
    out.print(table)
    if status == "interrupted":
        out.print(escape(f"interrupted: {len(meta['values_not_run'])} values not run"))
    out.print(f"sweep folder: [bold]{escape(str(folder))}[/]")
    raise typer.Exit(done)


@app.command()
def landscape(
    problem: Path = ProblemArg,
    range_: str = typer.Option(..., "--range", help="LO:HI:N, the decision values to evaluate."),
    samples: Optional[int] = SamplesOpt,
    repeats: int = typer.Option(20, "--repeats", help="Independent estimates per point (the figure's gradient "
                                "estimates are their mean ± 1 std; landscape.csv has their statistics)."),
    oracles: Optional[str] = OraclesOpt,
    run_dir: Optional[Path] = typer.Option(None, "--run", help="A compare run of this problem: mark its final points."),
    set_: Optional[List[str]] = SetOpt,
    out_dir: Optional[Path] = StudyOutOpt,
    force: bool = ForceOpt,
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Estimators along a one-dimensional decision (the paper's Fig. 2 and Fig. 7).

    f, the smoothed F, the gradient estimates with their spread, their variances and each adaptive oracle's
    alpha across theta; writes landscape.csv, landscape.json and landscape.png.
    """
    import jax
    import numpy as np

    from trajopt import analysis, plots, runs

    try:
        thetas = analysis.parse_range(range_)
    except ValueError as e:
        raise fail(f"--range: {e}") from None
    if repeats < 2:
        raise fail(f"--repeats: found {repeats}, allowed: an integer >= 2")
    check_force(force, out_dir)
    names = _study_oracles(oracles, is_policy_file(problem, set_))
    spec = load_spec(problem, _overrides(problem, set_, samples, names, "landscape"))
    _check_reach(spec, set_, "landscape")
    prob = spec.problem()
    preflight(spec, prob, use="oracles")
    if prob.dimension != 1:
        raise fail(f"{problem}: landscape needs a problem with one decision variable (T*m = 1); this one has "
                   f"{prob.dimension} (horizon {spec.task.horizon} x {prob.shape[-1]} controls)")
    _check_study_size(spec, prob, repeats, len(thetas), "--range")  # every point's repeats run side by side
    marks = None
    if run_dir is not None:
        if not runs.is_run_dir(run_dir):
            raise fail(f"--run {run_dir}: not a run folder (no result.json in it)")
        try:
            runs.read_result(run_dir)
            traj = runs.read_trajectories(run_dir)
        except runs.RunFolderError as e:
            raise fail(f"--run {run_dir}: {e}") from None
        check_run_config(spec, run_dir, f"--run {run_dir}")
        marks = {"start": float(np.asarray(spec.task.U0).ravel()[0])}
        marks.update({k.split("/")[0]: v.ravel() for k, v in traj.items() if k.endswith("/U")})
    folder = _out_dir(spec, "landscape", out_dir)
    with _interruptible(), claim_out(folder, force):  # created, locked and (--force) emptied before any work
        sigma = next((o.sigma for o in spec.oracles.values() if hasattr(o, "sigma")), 0.1)
        data = analysis.landscape(jax.random.PRNGKey(spec.solve.key), prob, spec.oracles, thetas, repeats, sigma)
        rows = [{k: float(v[i]) for k, v in data.items()} for i in range(len(thetas))]
        # under --set: the problem's name and the overrides, not the file's title; then N and the repeats
        title = display_title(spec, set_) + _estimates_note(spec, names, repeats)
        meta = {"problem": spec.name, "title": title, "range": range_, "repeats": repeats, "oracles": names,
                "sigma": sigma}
        _signals.writing()  # computed: a second Ctrl-C now finishes the folder, marked interrupted
        runs.write_config(folder, spec)
        plots.save_figure(plots.landscape_figure(data, names, sigma, marks, title=title), folder / "landscape.png")

        def write(status):
            meta["status"] = status
            runs.write_table(folder, "landscape", rows, meta)

        status = write_final(write)
    if json_out:
        sys.stdout.write(runs.dumps_json({**meta, "out": str(folder)}))
    elif not quiet:
        out.print(f"landscape of {escape(title)} over {len(thetas)} points: [bold]{escape(str(folder))}[/]")
    raise typer.Exit(EXIT_INTERRUPTED if status == "interrupted" else 0)
