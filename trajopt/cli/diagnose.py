"""`trajopt diagnose` and `trajopt gradcheck`: which gradient to trust at a point, and does autodiff agree with
finite differences there. The numbers come from `trajopt.diagnostics`; this module parses, prints and writes.

Both verbs look at the problem's initial guess U0 (``--at init``, the default) or at the final U of a run
(``--at RUN_DIR``: each run oracle's median seed, or the one ``--oracle`` names).
"""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from trajopt.cli._common import (
    EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ForceOpt, JsonOpt, OutOpt, ProblemArg, QuietOpt, SetOpt, app,
    check_distinct, check_force, check_sets, fail, fmt, is_policy_file, load_spec, out, preflight, write_final,
)

AtOpt = typer.Option("init", "--at", help="Where to look: init (the problem's U0) or a RUN_DIR (each run oracle's "
                                          "final U, median seed).")
OracleOpt = typer.Option(None, "--oracle", help="With --at RUN_DIR: only this run oracle's final U.")

DIAGNOSE_JSON, DIAGNOSE_FIGURE = "diagnose.json", "diagnose.png"
# the bias line follows the reading's decision (trajopt.diagnostics.decide), so the two cannot disagree
VERDICTS = {"biased": "evidence of FoBG bias", "suspect": "mixed evidence of FoBG bias (see the reading: more --repeats decide)",
            "plateau": "a plateau: the FoBG carries no information here"}


# The sections of a resolved configuration that define the problem (the objective); solve, oracle, variants and
# method only choose how it is optimised or estimated, and name/title/description are labels.
PROBLEM_SECTIONS = ("system", "task", "policy", "initial_state")


def _plain(value):
    """A resolved value in TOML's own terms (tuples as lists, numpy scalars as Python numbers)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    return value


def problem_differences(resolved: dict, config: dict) -> list[str]:
    """The dotted keys of the problem-defining sections (`PROBLEM_SECTIONS`) where a resolved configuration and a
    run's config.toml differ, as ``key (file X, run Y)``."""
    diffs: list[str] = []

    def walk(prefix: str, a, b) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in list(a) + [k for k in b if k not in a]:
                walk(f"{prefix}.{k}" if prefix else k, a.get(k, "<absent>"), b.get(k, "<absent>"))
        elif not _same(a, b):
            show = lambda v: v if isinstance(v, str) else repr(v)  # noqa: E731
            text_a, text_b = show(a), show(b)
            diffs.append(f"{prefix} (file {text_a[:60]}, run {text_b[:60]})")

    for section in PROBLEM_SECTIONS:
        walk(section, _plain(resolved.get(section, "<absent>")), _plain(config.get(section, "<absent>")))
    return diffs


def _same(a, b) -> bool:
    """Equal values, a NaN equal to a NaN (a system's NaN default, e.g. the pendulum's wall_damping, is the same in
    the file and the run: ``nan != nan`` refused every such run)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def check_run_config(spec, run_dir: Path, flag: str) -> dict:
    """The run folder's own config.toml, after checking that the problem file (with its --set options) describes the
    same problem; exit 2 naming the differing keys otherwise (or naming a missing or unreadable config.toml)."""
    from trajopt import runs

    try:
        config = runs.read_config(run_dir)
    except runs.RunFolderError as e:
        raise fail(f"{flag}: {e}") from None
    diffs = problem_differences(spec.resolved(), config)
    if diffs:
        raise fail(f"{flag}: the problem file {spec.source} (with its --set options) disagrees with the run's "
                   f"{run_dir / runs.CONFIG} on {len(diffs)} key(s): {'; '.join(diffs[:8])}"
                   + (" ..." if len(diffs) > 8 else "")
                   + f"; pass {run_dir / runs.CONFIG} as PROBLEM (or the same --set options the run was made with)")
    return config


def _locations(at: str, oracle: Optional[str], problem, spec=None) -> list[dict]:
    """[{label, U, oracle, seed, final_cost}] for --at init or --at RUN_DIR (exit 2 on bad input). With a spec, a
    run folder's config.toml must describe the same problem (`check_run_config`)."""
    import numpy as np

    from trajopt import runs
    from trajopt.diagnostics import median_seed_index

    if at == "init":
        if oracle is not None:
            raise fail("--oracle chooses a run oracle's final U; it needs --at RUN_DIR")
        return [{"label": "initial guess U0", "U": problem.U0, "oracle": None, "seed": None, "final_cost": None}]
    run_dir = Path(at)
    if not run_dir.is_dir():
        raise fail(f"--at {at}: allowed: init or a run folder (written by solve or compare); no such folder")
    try:
        result = runs.read_result(run_dir)
        trajectories = runs.read_trajectories(run_dir)
    except runs.RunFolderError as e:
        raise fail(f"--at {at}: {e}") from None
    entries = runs.variant_entries(result)
    run_oracles = [o for o in entries if f"{o}/U" in trajectories]
    if not run_oracles:
        raise fail(f"--at {at}: the run folder holds no final U (no <variant>/U in {runs.TRAJECTORY})")
    if oracle is not None:
        if oracle not in run_oracles:
            raise fail(f"--oracle: found {oracle!r}, allowed: a variant of that run ({', '.join(run_oracles)})")
        run_oracles = [oracle]
    seeds = result.get("seeds", [])
    found = []
    for name in run_oracles:
        Us = trajectories[f"{name}/U"]
        finals = entries[name].get("final_cost", [])
        i = median_seed_index(finals) if finals else 0
        if Us.ndim < 1 or not 0 <= i < Us.shape[0]:
            raise fail(f"--at {at}: {run_dir / runs.TRAJECTORY}: {name}/U has shape {list(Us.shape)}, expected one "
                       f"decision per seed ({len(seeds)})")
        U = np.asarray(Us[i])
        if U.shape != tuple(problem.shape):
            raise fail(f"--at {at}: {name}'s final U has shape {list(U.shape)} but the problem's decision is "
                       f"{list(problem.shape)}; pass the run's config.toml as PROBLEM (or the same --set options)")
        seed = seeds[i] if i < len(seeds) else i
        cost = finals[i] if i < len(finals) else None
        if not np.isfinite(U).all():  # a run whose every seed failed (or a tampered file): no point to look at
            raise fail(f"--at {at}: {run_dir / runs.TRAJECTORY}: {name}/U of seed {seed} (the median seed) holds "
                       "non-finite values; allowed: a run folder whose final decision is finite (--oracle chooses "
                       "another variant)")
        found.append({"label": f"{name}'s final U (median seed {seed}, f = {fmt(cost)})", "U": U, "oracle": name,
                      "seed": seed, "final_cost": cost})
    if spec is not None:  # the decision's shape agrees: now every problem parameter must agree too
        check_run_config(spec, run_dir, f"--at {at}")
    return found


def _default_out(spec) -> Path:
    return Path("runs") / spec.name / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-diagnose"


def _ci(d: dict) -> str:
    """mean ± the 95% half-width."""
    return fmt(d["mean"], 4) + (f" ± {fmt(d['half'], 2)}" if d["half"] == d["half"] and d["half"] > 0 else "")


def _rule_note(name: str, s: dict, oracle) -> str:
    """What a rule reported besides α: its details (means), its test's switch share, and its key parameter."""
    parts = []
    for key, value in s.items():
        if key.startswith(f"{name}_") and isinstance(value, dict) and "mean" in value:
            parts.append(f"{key[len(name) + 1:]} = {fmt(value['mean'], 4)}")
    if f"{name}_switch_share" in s:
        parts.append(f"ZoBG in {s[f'{name}_switch_share']:.0%} of batches")
    gamma = getattr(oracle, "gamma", None)
    if gamma is not None:
        parts.append("γ = " + ("∞" if math.isinf(gamma) else fmt(gamma)))
    return ", ".join(parts)


def _table(label: str, s: dict, rules: dict) -> Table:
    table = Table(title=escape(f"{label}: f(U) = {fmt(s['value'], 7)}; N = {s['samples']}, σ = {fmt(s['sigma'])}, "
                               f"{s['repeats']} repeats (mean ± 95% half-width)"), title_justify="left")
    for col, justify in [("oracle", "left"), ("‖mean gradient‖", "right"), ("per-sample trace variance", "right"),
                         ("α (weight on FoBG)", "right"), ("note", "left")]:
        table.add_column(col, justify=justify)
    zero = s["zero_share"]["mean"]
    table.add_row("fobg", _ci(s["norm_first"]), _ci(s["var_first"]), "1", f"exactly-0 samples {zero:.0%}")
    table.add_row("zobg", _ci(s["norm_zero"]), _ci(s["var_zero"]), "0", escape(f"Var[f] = {fmt(s['value_var']['mean'], 4)}"))
    for name, oracle in rules.items():  # every registered oracle that chooses its own α, by its own rule
        table.add_row(escape(name), _ci(s[f"norm_{name}"]), _ci(s[f"var_{name}"]), _ci(s[f"alpha_{name}"]),
                      escape(_rule_note(name, s, oracle)))
    return table


@app.command()
def diagnose(
    problem: Path = ProblemArg,
    at: str = AtOpt,
    oracle: Optional[str] = OracleOpt,
    samples: Optional[int] = typer.Option(None, "--samples", help="N per batch (default: the file's aobg samples)."),
    repeats: int = typer.Option(100, "--repeats", help="Independent batch pairs (for the confidence intervals)."),
    set_: Optional[List[str]] = SetOpt,
    out_dir: Optional[Path] = OutOpt,
    force: bool = ForceOpt,
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Which gradient to trust here: estimator statistics and a one-line reading at U0 or a run's final U.

    Each estimator's norm and variance, the FoBG-ZoBG gap, the α that aobg, ivw, ddcg and stepwise would
    choose, and a one-line reading; writes diagnose.json and a per-time-step variance figure (diagnose.png)
    into the output folder.

    The FoBG and ZoBG batches are independent N-sample batches with the file's σ (the aobg's), repeated
    --repeats times with keys fold_in(PRNGKey(solve.key), r); the rules use the file's aobg / ivw / ddcg /
    stepwise parameters.
    """
    import jax

    from trajopt import runs
    from trajopt.cli._outputs import _interruptible, claim_out, display_title
    from trajopt.diagnostics import decide, estimator_statistics, summarise
    from trajopt.spec import SpecError, check_working_set

    if samples is not None and samples < 2:
        raise fail(f"--samples: found {samples}, allowed: an integer >= 2")
    if repeats < 2:
        raise fail(f"--repeats: found {repeats}, allowed: an integer >= 2 (a confidence interval needs a spread)")
    from trajopt.oracles import alpha_choosers

    check_force(force, out_dir)
    if is_policy_file(problem, set_):
        raise fail(f"{problem}: policy: found a policy problem, allowed: an open-loop problem (diagnose draws its "
                   "batches by perturbing the decision, as the open-loop estimators do; a policy problem's oracles "
                   "perturb the actions: `trajopt sweep --oracles fobg,zobg,aobg` studies those)")
    choosers = alpha_choosers()  # the rules diagnose reports: every registered oracle that chooses its own α
    own = [f"oracle.{o}.samples={samples}" for o in choosers] if samples is not None else []
    check_distinct([(f"--set {item.partition('=')[0].strip()}", item) for item in set_ or []]
                   + [("--samples", item) for item in own])  # --set oracle.aobg.samples and --samples: give one
    overrides = list(set_ or []) + ["solve.oracles=[" + ", ".join(json.dumps(o) for o in choosers) + "]"] + own
    spec = load_spec(problem, overrides)
    check_sets(spec, set_, "oracles", "diagnose")  # e.g. oracle.fobg.*: the batches use the rules' N and σ
    prob = spec.problem()
    preflight(spec, prob, use="oracles")  # user code that fails when traced: one line, before any work
    reference = spec.oracles.get("aobg") or next(iter(spec.oracles.values()))  # its N draws the batches
    try:  # repeats x (a FoBG and a ZoBG batch of N) side by side
        check_working_set(spec, {"--repeats": (repeats * 2 * reference.samples, f"{repeats:,} repeats x 2 batches "
                                                f"of {reference.samples:,} samples")}, prob)
    except SpecError as e:
        raise fail(str(e)) from None
    locations = _locations(at, oracle, prob, spec)
    out_dir = out_dir or _default_out(spec)
    with _interruptible(), claim_out(out_dir, force):  # created, locked and (--force) emptied before any work
        rules = {name: spec.oracles[name] for name in choosers}
        reference = rules.get("aobg") or next(iter(rules.values()))  # its N and σ draw the batches
        n, sigma = reference.samples, reference.sigma
        key = jax.random.PRNGKey(spec.solve.key)
        stats_at = jax.jit(lambda U: estimator_statistics(key, prob, U, repeats, samples=n, sigma=sigma, rules=rules))
        results = []
        for loc in locations:
            summary = summarise(stats_at(jax.numpy.asarray(loc["U"], prob.U0.dtype)), samples=n, sigma=sigma)
            kind, text = decide(summary)
            results.append({**{k: v for k, v in loc.items() if k != "U"}, "summary": summary, "kind": kind, "reading": text})

        from trajopt import _signals

        _signals.writing()  # computed: a second Ctrl-C now finishes the folder, marked interrupted
        from trajopt.plots import save_figure
        from trajopt.plots_diagnostics import step_variance_figure

        figure = out_dir / DIAGNOSE_FIGURE
        title = display_title(spec, set_)  # under --set: the problem's name and the overrides, not the file's title
        save_figure(step_variance_figure([(r["label"], r["summary"]) for r in results],
                                         title=f"{title}: per-time-step gradient variance (N = {n}, σ = {sigma:g}, "
                                               f"{repeats} repeats)"), figure)
        report = {"problem": spec.name, "source": spec.source, "title": title, "at": at, "samples": n,
                  "sigma": sigma, "repeats": repeats, "key": spec.solve.key, "locations": results,
                  "figure": str(figure), "out": str(out_dir)}

        def write(status):
            report["status"] = status
            runs.atomic_write_bytes(out_dir / DIAGNOSE_JSON, runs.dumps_json(report).encode())

        status = write_final(write)
    if json_out:
        sys.stdout.write(runs.dumps_json(report))
    elif not quiet:
        for r in results:
            s = r["summary"]
            out.print(_table(r["label"], s, rules))
            verdict = VERDICTS.get(r["kind"], "no evidence of FoBG bias")
            out.print(escape(f"B = ‖FoBG − ZoBG‖ = {_ci(s['bias_gap'])}; excess B² − (σ̂₁²/N + σ̂₀²/N) = "
                             f"{_ci(s['excess_gap'])} ({fmt(s['bias_z'], 3)} standard errors: {verdict}); "
                             f"FoBG/ZoBG variance ratio {fmt(s['variance_ratio'], 4)}"))
            out.print(f"[bold]reading:[/] {escape(r['reading'])}\n")
        out.print(f"figure: [bold]{escape(str(figure))}[/]")
    raise typer.Exit(EXIT_INTERRUPTED if status == "interrupted" else EXIT_OK)


def _parse_steps(text: str) -> list[float]:
    try:
        steps = [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise fail(f"--steps: found {text!r}, allowed: comma-separated positive numbers, e.g. 1e-2,1e-4,1e-6") from None
    if not steps or not all(math.isfinite(h) and h > 0 for h in steps):
        raise fail(f"--steps: found {text!r}, allowed: comma-separated positive numbers, e.g. 1e-2,1e-4,1e-6")
    if len(set(steps)) != len(steps):
        raise fail(f"--steps: found a repeated step in {text!r}, allowed: distinct steps")
    return steps


@app.command()
def gradcheck(
    problem: Path = ProblemArg,
    directions: int = typer.Option(8, "--directions", help="Random unit directions K."),
    steps: str = typer.Option("1e-2,1e-4,1e-6", "--steps", help="Comma-separated finite-difference steps h."),
    at: str = AtOpt,
    oracle: Optional[str] = OracleOpt,
    set_: Optional[List[str]] = SetOpt,
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Check autodiff against central finite differences, and explain any disagreement.

    grad f(U)·v against (f(U+hv) − f(U−hv))/2h along K random unit directions, for each step h; says whether
    a disagreement is a discontinuity, a kink or stiffness, or looks like a bug.

    Exit 0 unless some direction disagrees at every step with no jump, curvature or rounding to explain it
    (verdict "bug": exit 1). Directions come from PRNGKey(solve.key).
    """
    import jax

    from trajopt import runs
    from trajopt.diagnostics import gradcheck_summary, gradient_check

    if directions < 1:
        raise fail(f"--directions: found {directions}, allowed: an integer >= 1")
    hs = _parse_steps(steps)
    spec = load_spec(problem, list(set_ or []))
    check_sets(spec, set_, "none", "gradcheck")  # autodiff against finite differences: no oracle takes part
    prob = spec.problem()
    from trajopt.spec import SpecError, check_working_set

    try:  # f at U +- h v for every step h and direction v, side by side
        check_working_set(spec, {"--directions": (2 * directions * len(hs), f"2 x {directions:,} directions x "
                                                  f"{len(hs)} steps")}, prob)
    except SpecError as e:
        raise fail(str(e)) from None
    locations = _locations(at, oracle, prob, spec)
    key = jax.random.PRNGKey(spec.solve.key)
    check_at = jax.jit(lambda U: gradient_check(key, prob, U, directions, hs))
    results = []
    for loc in locations:
        summary = gradcheck_summary(check_at(jax.numpy.asarray(loc["U"], prob.U0.dtype)))
        results.append({**{k: v for k, v in loc.items() if k != "U"}, **summary})
    report = {"problem": spec.name, "source": spec.source, "at": at, "directions": directions,
              "steps": sorted(hs, reverse=True), "locations": results}
    if json_out:
        sys.stdout.write(runs.dumps_json(report))
    elif not quiet:
        for r in results:
            table = Table(title=escape(f"{r['label']}: f(U) = {fmt(r['value'], 7)}, {directions} random unit directions"),
                          title_justify="left")
            for col in ("step h", "median rel. error", "max rel. error", "agree", "median |f''|h/|f'|"):
                table.add_column(col, justify="right")
            for p, stiff in zip(r["per_step"], r["median_stiffness"]):
                table.add_row(f"{p['step']:g}", fmt(p["median_rel_error"], 3), fmt(p["max_rel_error"], 3),
                              f"{p['agree_share']:.0%}", fmt(stiff, 3))
            out.print(table)
            out.print(f"[bold]verdict:[/] {escape(r['message'])}\n")
    raise typer.Exit(EXIT_FAILED if any(r["verdict"] == "bug" for r in results) else EXIT_OK)
