"""`trajopt fidelity`: each oracle's gradient against references over a grid of time steps and contact stiffnesses.
The numbers come from `trajopt.fidelity`; this module parses, refuses, prints and writes.

For every cell (solref x time step; each axis defaults to the file's own value) and every oracle: the cosine
similarity and relative error of the oracle's gradient at the point (``--at``) against

* the central finite differences of the noise-free cost at the cell's own time step (step rule and check:
  `trajopt.fidelity`; a reference that fails its check is marked untrusted in every row of the cell), and
* the exact gradient at a much finer time step (``--reference-timestep``: default the finest cell's step / 4; one
  per solref; itself checked against its own finite differences),

as the median and quartiles over ``--repeats`` draws of a stochastic oracle (one draw of a deterministic one).
Writes fidelity.json (everything, the references' gradients included), fidelity.csv (one row per cell, oracle and
point) and fidelity.png (relative error against the time step, one line per oracle) into the output folder.
Everything that cannot run is refused before anything compiles: a grid value that is not a time step or a solref,
a time step that does not divide an mjx problem's control period, or that breaks MuJoCo's stability rule for the
cell's stiffness (timeconst >= 2 timestep: the mjx system's own refusal, named by the flag that set it), an oracle that cannot differentiate the problem (cfd off MJX),
a grid or a --reference-timestep (auto or a time step) for a system without an MJX time step, a cell
whose estimates would hold more than `trajopt.preflight.MAX_WORKING_SET` bytes at once.
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
    EXIT_INTERRUPTED, EXIT_OK, ForceOpt, JsonOpt, OutOpt, ProblemArg, QuietOpt, SetOpt, app, check_force, check_sets,
    fail, fmt, load_spec, out, preflight, title_text, write_final,
)

FIDELITY_JSON, FIDELITY_CSV, FIDELITY_FIGURE = "fidelity.json", "fidelity.csv", "fidelity.png"
# the table's columns and rows: trajopt.fidelity.CSV_COLUMNS, flat_row, csv_text (imported with the library)


def _numbers(text: str, flag: str, example: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise fail(f"{flag}: found {text!r}, allowed: comma-separated numbers, e.g. {example}") from None
    return values


def parse_timesteps(text: Optional[str]) -> Optional[list[float]]:
    """The --timesteps grid: distinct finite numbers > 0 (s)."""
    if text is None:
        return None
    values = _numbers(text, "--timesteps", "1e-3,3e-4,1e-4")
    if not values or not all(math.isfinite(h) and h > 0 for h in values):
        raise fail(f"--timesteps: found {text!r}, allowed: comma-separated time steps > 0 (seconds), e.g. 1e-3,3e-4")
    if len(set(values)) != len(values):
        raise fail(f"--timesteps: found a repeated time step in {text!r}, allowed: distinct time steps")
    return sorted(values, reverse=True)


def parse_solrefs(text: Optional[str]) -> Optional[list[tuple[float, float]]]:
    """The --solrefs grid: pairs "timeconst,dampratio" (both > 0) or "-stiffness,-damping", separated by ';'."""
    if text is None:
        return None
    pairs = []
    for item in (p for p in text.split(";") if p.strip()):
        values = _numbers(item, "--solrefs", "0.02,1;0.2,1")
        ok = len(values) == 2 and all(math.isfinite(v) for v in values) and (
            (values[0] > 0 and values[1] > 0) or (values[0] < 0 and values[1] <= 0))
        if not ok:
            raise fail(f"--solrefs: found {item.strip()!r}, allowed: pairs timeconst,dampratio (both > 0) or "
                       "-stiffness,-damping, separated by ';', e.g. 0.02,1;0.2,1")
        pairs.append((values[0], values[1]))
    if not pairs:
        raise fail(f"--solrefs: found {text!r}, allowed: at least one pair timeconst,dampratio")
    if len(set(pairs)) != len(pairs):
        raise fail(f"--solrefs: found a repeated pair in {text!r}, allowed: distinct pairs")
    return pairs


def parse_reference(text: str) -> Optional[float]:
    """--reference-timestep: "auto" (-1), "none" (None) or a time step > 0."""
    t = text.strip().lower()
    if t == "none":
        return None
    if t == "auto":
        return -1.0
    try:
        h = float(t)
    except ValueError:
        h = math.nan
    if not (math.isfinite(h) and h > 0):
        raise fail(f"--reference-timestep: found {text!r}, allowed: auto (the finest cell's time step / 4), none, or "
                   "a time step > 0 (seconds)")
    return h


def _default_out(spec) -> Path:
    return Path("runs") / spec.name / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-fidelity"


def _check_memory(cell: dict, oracles: dict, repeats: int, flag: str) -> None:
    """Exit 2 when one estimate of the cell (an oracle's repeats, or the finite-difference reference) would hold more
    than MAX_WORKING_SET bytes at once (`trajopt.fidelity.working_set`)."""
    from trajopt.fidelity import memory_needs
    from trajopt.preflight import MAX_WORKING_SET

    for what, size in memory_needs(cell["problem"], cell["spec"].system, oracles, repeats).items():
        if size > MAX_WORKING_SET:
            raise fail(f"{flag}: the cell {cell['label']} needs {size:.3g} bytes at once for {what}; allowed: at most "
                       f"{MAX_WORKING_SET:.3g} bytes ({MAX_WORKING_SET >> 30} GiB): fewer --repeats, a larger time "
                       "step, a shorter horizon or duration")


@app.command()
def fidelity(
    problem: Path = ProblemArg,
    timesteps: Optional[str] = typer.Option(None, "--timesteps", help="Comma-separated MJX time steps (s), e.g. "
                                            "1e-3,3e-4,1e-4 (default: the file's). An mjx problem keeps its control "
                                            "period (substeps = period / timestep), a toss its duration."),
    solrefs: Optional[str] = typer.Option(None, "--solrefs", help="Contact stiffnesses: solref pairs "
                                          "timeconst,dampratio separated by ';', e.g. '0.02,1;0.2,1' (default: the "
                                          "file's)."),
    oracles: Optional[str] = typer.Option(None, "--oracles", help="Comma-separated oracles (default: exact, cfd on an "
                                          "MJX problem, then the file's solve.oracles)."),
    repeats: int = typer.Option(5, "--repeats", help="Draws of each stochastic oracle (median and quartiles)."),
    reference: Optional[str] = typer.Option(None, "--reference-timestep", help="The fine time step of the "
                                            "exact-gradient reference of an MJX problem: auto (the default: the "
                                            "finest cell's / 4), none, or a time step (s)."),
    fd_step: Optional[float] = typer.Option(None, "--fd-step", help="The finite-difference step eps of the "
                                            "reference (default: float64 eps^(1/3) = 6.06e-6), checked at 10 eps."),
    at: str = typer.Option("init", "--at", help="Where to look: init (the problem's U0) or a RUN_DIR (each run "
                           "variant's final U, median seed)."),
    variant: Optional[str] = typer.Option(None, "--oracle", help="With --at RUN_DIR: only this run variant's final U."),
    set_: Optional[List[str]] = SetOpt,
    out_dir: Optional[Path] = OutOpt,
    force: bool = ForceOpt,
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Gradient fidelity: each oracle against finite differences and a fine-time-step gradient, over time step and
    contact stiffness; writes fidelity.json, fidelity.csv and fidelity.png."""
    from trajopt import spec as spec_mod
    from trajopt.fidelity import (
        FD_AGREE, FD_CHECK, FD_STEP, CellError, cell_overrides, csv_text, fine_timestep, grid_cell, oracle_config,
        timestep_system,
    )

    hs = parse_timesteps(timesteps)
    srs = parse_solrefs(solrefs)
    fine_h = parse_reference("auto" if reference is None else reference)
    if repeats < 1:
        raise fail(f"--repeats: found {repeats}, allowed: an integer >= 1")
    eps = FD_STEP if fd_step is None else fd_step
    if not (math.isfinite(eps) and 0 < eps <= 0.1):
        raise fail(f"--fd-step: found {fd_step!r}, allowed: a number in (0, 0.1] (relative to |U_j| above 1)")
    check_force(force, out_dir)
    from trajopt.cli.sweeps import is_policy_file

    if is_policy_file(problem, set_):
        raise fail(f"{problem}: policy: found a policy problem, allowed: an open-loop problem (fidelity compares "
                   "gradients of a decision's cost; a policy problem's oracles perturb the actions)")
    base = load_spec(problem, list(set_ or []))
    names = _oracle_names(oracles, base)
    overrides = list(set_ or []) + ["solve.oracles=[" + ", ".join(json.dumps(o) for o in names) + "]"]
    spec = load_spec(problem, overrides)
    check_sets(spec, set_, "oracles", "fidelity")
    prob = spec.problem()
    preflight(spec, prob, use="oracles")  # an oracle that cannot differentiate the problem (cfd off MJX): one line
    if (hs or srs) and timestep_system(spec.system) is None:
        raise fail(f"{'--timesteps' if hs else '--solrefs'}: found a grid for the system {spec.system_name!r}, allowed: "
                   "a system with an MJX time step and solref (mjx, mjx_toss); `trajopt sweep` varies another "
                   "system's parameters")
    if reference is not None and fine_h is not None and timestep_system(spec.system) is None:
        raise fail(f"--reference-timestep: found {reference!r} for the system {spec.system_name!r}, allowed: a system "
                   "with an MJX time step (mjx, mjx_toss); another system has no fine-time-step reference (leave the "
                   "flag out, or none)")

    def cell(h, sr, flag):
        try:
            extra = cell_overrides(spec.system, h, sr)
        except CellError as e:
            raise fail(f"{flag if flag != '--timesteps' else e.key}: {e.message}") from None
        try:
            s = spec_mod.load(problem, overrides + extra) if extra else spec
        except spec_mod.SpecError as e:  # the mjx system refuses a time step beyond its contacts' rule: name the flag
            named = "--solrefs" if h is None and flag == "--timesteps" else flag
            raise fail(f"{named}: {e.message}" if e.key in ("system.timestep", "system.solref") else str(e)) from None
        return grid_cell(s, s.problem() if extra else prob)

    grid = [[cell(h, sr, "--timesteps") for h in (hs or [None])] for sr in (srs or [None])]
    for row in grid:
        for c in row:
            _check_memory(c, spec.oracles, repeats, "--repeats")
    fines: list = [None] * len(grid)
    if fine_h is not None and timestep_system(spec.system) is not None:
        h_ref = fine_timestep(fine_h, [c["timestep"] for row in grid for c in row])
        fines = [cell(h_ref, sr, "--reference-timestep") for sr in (srs or [None])]
        for f in fines:
            _check_memory(f, {"exact": _exact()}, 1, "--reference-timestep")
    else:
        h_ref = None
    from trajopt.cli.diagnose import _locations

    locations = _locations(at, variant, prob, spec)
    out_dir = out_dir or _default_out(spec)
    from trajopt.cli._outputs import _interruptible, claim_out, display_title

    with _interruptible(), claim_out(out_dir, force):
        rows, references = _compute(spec, grid, fines, locations, repeats, eps)
        from trajopt import _signals, runs

        _signals.writing()
        from trajopt.plots import save_figure
        from trajopt.plots_fidelity import fidelity_figure

        title = display_title(spec, set_)
        figure = out_dir / FIDELITY_FIGURE
        drawn = any(not getattr(o, "deterministic", False) for o in spec.oracles.values())
        # the configuration that made the figure, as a fidelity study's figure states it
        stated = ([f"horizon {int(prob.shape[0])}"] if getattr(prob, "time_stepped", False) else [])
        stated += [f"{repeats} {'repeat' if repeats == 1 else 'repeats'} of the stochastic oracles"] if drawn else []
        stated += [f"fine reference at timestep {h_ref:g}" if h_ref else "no fine reference", f"fd step {eps:g}"]
        save_figure(fidelity_figure(rows, list(spec.oracles), title=f"{title}: gradient error against the time "
                                    f"step ({', '.join(stated)})"), figure)
        report = {"problem": spec.name, "source": spec.source, "title": title, "at": at, "oracles": list(spec.oracles),
                  "oracle_config": {n: oracle_config(o) for n, o in spec.oracles.items()}, "repeats": repeats,
                  "key": spec.solve.key, "timesteps": [c["timestep"] for c in grid[0]],
                  "solrefs": [row[0]["solref"] for row in grid], "reference_timestep": h_ref,
                  "fd_step": eps, "fd_check": FD_CHECK * eps, "fd_agree": FD_AGREE,
                  "references": references, "rows": rows, "figure": str(figure), "out": str(out_dir)}

        def write(status):
            report["status"] = status
            runs.atomic_write_bytes(out_dir / FIDELITY_CSV, csv_text(rows).encode())
            runs.atomic_write_bytes(out_dir / FIDELITY_JSON, runs.dumps_json(report).encode())

        status = write_final(write)
    if json_out:
        sys.stdout.write(runs.dumps_json(report))
    elif not quiet:
        out.print(_table(title, rows, h_ref))
        out.print(f"figure: [bold]{escape(str(figure))}[/]")
    raise typer.Exit(EXIT_INTERRUPTED if status == "interrupted" else EXIT_OK)


def _exact():
    from trajopt.oracles import ORACLES

    return ORACLES.get("exact")()


def _oracle_names(text: Optional[str], spec) -> list[str]:
    """The oracles to measure: --oracles (registered or module:Class names, distinct, not fd: it is the reference),
    else exact, cfd where the problem is over an MJX system, then the file's solve.oracles."""
    from trajopt.fidelity import oracle_refusal, timestep_system
    from trajopt.oracles import ORACLES

    if text is None:
        names = ["exact"] + (["cfd"] if timestep_system(spec.system) is not None else []) + list(spec.oracles)
        return list(dict.fromkeys(n for n in names if n != "fd"))
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise fail(f"--oracles: found {text!r}, allowed: comma-separated oracle names ({', '.join(ORACLES.names())})")
    if len(set(names)) != len(names):
        raise fail(f"--oracles: found a repeated name in {text!r}, allowed: distinct oracles")
    for n in names:
        why = oracle_refusal(n)  # the rule the fidelity study applies too
        if why is not None:
            raise fail(f"--oracles: {why}")
    return names


def _compute(spec, grid, fines, locations, repeats: int, eps: float) -> tuple[list[dict], list[dict]]:
    """`trajopt.fidelity.measure` with the file's solve.key, stopping between cells when a signal arrived."""
    import jax

    from trajopt import _signals
    from trajopt.fidelity import measure

    return measure(jax.random.PRNGKey(spec.solve.key), grid, fines, locations, repeats, eps,
                   should_stop=_signals.requested)


def _table(title: str, rows: list[dict], h_ref) -> Table:
    table = Table(title=title_text(f"{title}: median [q25, q75] over repeats; fine reference at timestep "
                               f"{'-' if h_ref is None else f'{h_ref:g}'}"), title_justify="left")
    for col, justify in [("point", "left"), ("solref", "left"), ("timestep", "right"), ("oracle", "left"),
                         ("cos vs fd", "right"), ("rel. error vs fd", "right"), ("cos vs fine", "right"),
                         ("rel. error vs fine", "right"), ("fd check", "right"), ("compile / run s", "right")]:
        table.add_column(col, justify=justify)

    def cell(r, m):
        s = r.get(m)
        if s is None:
            return "-"
        return f"{fmt(s['median'], 3)} [{fmt(s['q25'], 2)}, {fmt(s['q75'], 2)}]" if r["repeats"] > 1 else fmt(s["median"], 4)

    for r in rows:
        check = f"{fmt(r['fd_agreement'], 2)}" + ("" if r["fd_trusted"] else " (untrusted)")
        table.add_row(escape(r["point"]), escape(r["solref"]), f"{r['timestep']:g}", escape(r["oracle"]), cell(r, "cos_fd"),
                      cell(r, "rel_fd"), cell(r, "cos_fine"), cell(r, "rel_fine"), check,
                      f"{r['compile_seconds']:.1f} / {r['run_seconds']:.2f}")
    return table
