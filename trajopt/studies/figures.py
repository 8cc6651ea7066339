"""Study figures, from the table's rows (in memory or read back from study.csv). The study's HTML page is
`trajopt.studies.page` (`study_html`, `cell_summaries` and `task_names` are re-exported here).

`axis_figure`: the final cost against one grid axis, one panel per problem (and, with several axes, one row of
panels per combination of the other axes' values), one line per variant: the median over seeds with an
interquartile band (solid for registered oracles and methods, dashed for other variants), the initial cost
dotted; a failed cell is a gap, marked by a dotted vertical line; a median above 3x the initial cost (a
diverged run) is a labelled triangle on the top edge, so that it does not squash the rest.

A closed-loop study (``verb = "mpc"``) draws the closed-loop cost the same way (no initial cost), and for an
``mpc.iterations`` axis (the compute budget per control step) also `compute_figure`: the closed-loop cost against
the forward-step equivalents each variant spent per control step, on a log x axis. `best_rows` is its "best variant
at each grid point" table (best.csv and the page). A closed-loop study's page shows the suite table
(`trajopt.studies.suite_table`: a row per problem x variant x grid point), and one with several problems (tasks) also
draws a `task_figure` per problem, shown in a section per task: each seed's closed-loop cost per cell (variant, and
grid point), the median marked, a seed that blew up drawn as such, and the success rate with its bootstrap 95 %
interval. Every figure of a closed-loop study states under its title what the cells it draws ran with
(`task_settings_text` of their result.json entries: episode, horizon, replan period, method steps per replan K, seeds,
control period and whether the plant differs from the model; a setting that differs between them is listed and named
as varying), so that a figure read alone says how to reproduce it.

A fidelity study (``verb = "fidelity"``) draws `fidelity_figures`: per problem, `trajopt.plots_fidelity.fidelity_figure`
of its rows (relative error against the ``timestep`` axis, else its first numeric axis; one line per oracle; a row
of panels per solref and combination of the other axes' values), its title stating the problem, horizon, repeats,
the fine reference's time step and the finite-difference step.
"""

from __future__ import annotations

import itertools
import math
from typing import Mapping, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from trajopt.fidelity import METRICS
from trajopt.plots import plain, registered_colour, set_title, variant_colours
from trajopt.plots_closedloop import plant_text, task_settings_text
from trajopt.plots_fidelity import fidelity_figure
from trajopt.stats import nan_band, wilson_interval
from trajopt.studies.expand import folder_names
from trajopt.studies.file import BUDGET_KEY as STUDY_BUDGET_KEY
from trajopt.studies.file import Axis, StudySpec
from trajopt.studies.values import label_value
from trajopt.studies.page import BUDGET_KEY, _num, _same, cell_summaries, study_html, task_names
from trajopt.studies.suite_table import cell_key, suite_rows

MAX_ROWS = 6  # rows of panels (combinations of the other axes) drawn per axis figure
OFF_SCALE = 3.0  # medians above this multiple of the initial cost are drawn as labelled marks on the top edge
BEST_COLUMNS = ("best", "ties", "closed_loop_cost_median", "closed_loop_cost_q25", "closed_loop_cost_q75",
                "seeds", "seeds_not_finite", "success_rate", "success_low", "success_high",
                "forward_equivalents_per_step", "runner_up", "runner_up_median", "within_iqr")


def _seeds_text(rows: Sequence[Mapping], study: StudySpec) -> str:
    """How many seeds a median is over: the study's count, or (a closed-loop study taking each problem's own) the
    counts found in the rows."""
    if study.seeds is not None:
        return str(len(study.seeds))
    per_problem = {}
    for r in rows:
        per_problem.setdefault(r.get("problem"), set()).add(r.get("seed"))
    counts = sorted({len(v) for v in per_problem.values()})
    return "/".join(str(c) for c in counts) or "0"


def _metric(study: StudySpec) -> str:
    return "closed_loop_cost" if study.closed_loop else "final_cost"


def _titled(study: StudySpec, title: str, settings: Optional[Sequence[Mapping]]) -> str:
    """A figure's title: ``title``, and a line stating what its cells ran with: for a closed-loop study
    `task_settings_text` of ``settings`` (the entries of every cell the figure draws); for a compare study its
    iterations and its [set] overrides (the problem files' own values otherwise)."""
    if study.closed_loop:
        return f"{title}\n{task_settings_text(settings or ())}"
    ran = ([f"{study.iterations} iterations"] if study.iterations is not None else []) + \
        ([f"set {', '.join(study.fixed)}"] if study.fixed else [])
    return f"{title}\n[{'; '.join(ran)}]" if ran else title


def axis_figure(rows: Sequence[Mapping], study: StudySpec, axis: Axis, metric: str = "final_cost",
                settings: Optional[Sequence[Mapping]] = None) -> Figure:
    """Final (or best, or a closed-loop study's closed-loop) cost against ``axis``: panels problem x other-axes
    combination, a line per variant.

    Args:
        rows: the study table, one dict per (cell, seed).
        study: the study (problems, variants and axes in order).
        axis: the x axis (log scale when ``axis.log``).
        metric: "final_cost", "best_cost" or "closed_loop_cost" (no initial cost is drawn for it).
        settings: a closed-loop study's: what its cells ran with (their result.json entries,
            `trajopt.studies.store.cell_settings`), stated under the title (`task_settings_text`).
    """
    problems = list(dict.fromkeys([p.stem for p in study.problems]))
    others = [a for a in study.grid if a.key != axis.key]
    combos = list(itertools.product(*[a.values for a in others]))[:MAX_ROWS]
    colours = variant_colours(list(study.variants))
    registered = {v for v in study.variants if registered_colour(v) is not None}
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in axis.values)
    xs = np.array(axis.values, float) if numeric else np.arange(len(axis.values), dtype=float)
    fig = Figure(figsize=(4.6 * len(problems), 3.6 * len(combos) + 0.6))
    axes = fig.subplots(len(combos), len(problems), squeeze=False)
    n_seeds = _seeds_text(rows, study)
    with_initial = metric != "closed_loop_cost"
    for r, combo in enumerate(combos):
        for c, problem in enumerate(problems):
            ax = axes[r, c]
            sub = [row for row in rows if row.get("problem") == problem
                   and all(_same(row.get(a.key), v) for a, v in zip(others, combo))]
            failed_x = set()
            initial = []
            for i, x in enumerate(axis.values):
                at = [_num(row.get("initial_cost")) for row in sub if _same(row.get(axis.key), x)]
                initial.append(nan_band(np.array(at, float))[0] if at else np.nan)
            initial = np.array(initial, float)
            # y range: up to OFF_SCALE x the initial cost; medians above it are drawn on the top edge, labelled
            cap = OFF_SCALE * np.nanmax(initial) if np.isfinite(initial).any() and np.nanmax(initial) > 0 else np.inf
            finite_all = list(initial[np.isfinite(initial)])
            off = []
            for variant in study.variants:
                med, lo, hi = [], [], []
                for i, x in enumerate(axis.values):
                    vals = [_num(row.get(metric)) for row in sub if row.get("variant") == variant and _same(row.get(axis.key), x)]
                    if any(row.get("status") == "failed" and row.get("variant") == variant and _same(row.get(axis.key), x)
                           for row in sub):
                        failed_x.add(i)
                    m, q25, q75 = nan_band(np.array(vals, float)) if vals else (np.nan, np.nan, np.nan)
                    med.append(m), lo.append(q25), hi.append(q75)
                med, lo, hi = (np.array(a, float) for a in (med, lo, hi))
                above = med > cap
                off += [(xs[i], med[i], colours[variant]) for i in np.flatnonzero(above)]
                shown = np.where(above, np.nan, med)
                finite_all += list(shown[np.isfinite(shown)]) + list(lo[np.isfinite(lo) & (lo <= cap)])
                style = "o-" if variant in registered else "s--"
                ax.plot(xs, shown, style, color=colours[variant], lw=1.6, ms=3.5, label=variant)
                ax.fill_between(xs, np.minimum(lo, cap), np.minimum(hi, cap), color=colours[variant], alpha=0.15, lw=0)
            if with_initial:
                ax.plot(xs, initial, ":", color="#777777", lw=1.0, label="initial cost")
            if finite_all and min(finite_all) > 0 and max(finite_all) / min(finite_all) > 10:
                ax.set_yscale("log")
            if off and finite_all:
                lo_y, hi_y = min(finite_all), max(finite_all)
                top = hi_y * 1.25 if ax.get_yscale() == "log" else hi_y + 0.12 * (hi_y - lo_y)
                ax.set_ylim(top=top)
                below = {}  # the labels already at each x: the next goes under them, not over them
                for x, v, colour in off:
                    j = below[x] = below.get(x, -1) + 1
                    ax.plot([x], [top], "^", color=colour, ms=7, clip_on=False)
                    ax.annotate(f"{v:.2g}", (x, top), textcoords="offset points", xytext=(4, -10 - 9 * j), fontsize=7,
                                color=colour)
            if axis.log and numeric:
                ax.set_xscale("log")
            if not numeric:
                ax.set_xticks(xs, [label_value(v) for v in axis.values])
            elif all(isinstance(v, int) for v in axis.values) and len(axis.values) <= 12:
                ax.set_xticks(xs, [label_value(v) for v in axis.values])  # integer values: ticks at them
            for i in sorted(failed_x):
                ax.axvline(xs[i], color="#999999", lw=0.8, ls=":")
                ax.annotate("failed", (xs[i], 0.02), xycoords=("data", "axes fraction"), fontsize=7, color="#666666",
                            ha="center")
            title = problem + ("" if not others else "\n" + ", ".join(f"{a.key}={label_value(v)}" for a, v in zip(others, combo)))
            set_title(ax, title, 10)
            ax.set_xlabel("budget (forward-step equivalents per seed)" if axis.key == STUDY_BUDGET_KEY else axis.key)
            ax.grid(True, which="both", alpha=0.25)
            if c == 0:
                ax.set_ylabel(f"{metric.replace('_', ' ')} (median, IQR over {n_seeds} seeds)", fontsize=9)
    axes[0, -1].legend(fontsize=8, loc="best")
    set_title(fig, _titled(study, study.title, settings), 10 if study.closed_loop else 12)
    fig.tight_layout()
    return fig


def variants_figure(rows: Sequence[Mapping], study: StudySpec, metric: str = "final_cost",
                    settings: Optional[Sequence[Mapping]] = None) -> Figure:
    """A study without a grid: one panel per problem, the final cost of each variant (median over seeds, the
    interquartile range as an error bar, one colour per variant), the initial cost in the panel's title; a median beyond
    OFF_SCALE times the initial cost is a labelled triangle on the top edge. A closed-loop study's title states its
    cells' ``settings`` (as `axis_figure`'s)."""
    problems = list(dict.fromkeys([p.stem for p in study.problems]))
    variants = list(study.variants)
    colours = variant_colours(variants)
    cols = min(4, len(problems))
    nrows = math.ceil(len(problems) / cols)
    fig = Figure(figsize=(3.6 * cols, 3.2 * nrows + 0.8))
    axes = fig.subplots(nrows, cols, squeeze=False)
    for i, problem in enumerate(problems):
        ax = axes[i // cols, i % cols]
        mine = [r for r in rows if r.get("problem") == problem]
        initial = next((_num(r.get("initial_cost")) for r in mine if r.get("initial_cost") is not None), math.nan)
        top = OFF_SCALE * initial if math.isfinite(initial) and initial > 0 else math.inf
        for j, v in enumerate(variants):
            values = [_num(r.get(metric)) for r in mine if r.get("variant") == v]
            med, lo, hi = (float(x) for x in nan_band(values))
            if not math.isfinite(med):
                continue
            if med > top:
                ax.plot([j], [top], "^", color=colours[v], ms=8)
                ax.annotate(f"{med:.3g}", (j, top), fontsize=7, ha="center", va="top", xytext=(0, -6),
                            textcoords="offset points")
                continue
            ax.errorbar([j], [med], yerr=[[med - lo], [min(hi, top) - med]], fmt="o", color=colours[v], ms=5,
                        capsize=3)
        ax.set_xticks(range(len(variants)), variants, rotation=60, fontsize=7, ha="right")
        set_title(ax, f"{problem} (initial {initial:.4g})" if math.isfinite(initial) else problem, 9)
        ax.grid(True, axis="y", alpha=0.25)
    for i in range(len(problems), nrows * cols):
        axes[i // cols, i % cols].axis("off")
    axes[0, 0].set_ylabel(f"{metric.replace('_', ' ')} (median, IQR over {_seeds_text(rows, study)} seeds)", fontsize=8)
    budget = f" [budget: {label_value(study.budget[0])} forward-step equivalents per seed]" \
        if study.budget is not None and len(study.budget) == 1 else ""
    set_title(fig, _titled(study, study.title + budget, settings), 10)
    fig.tight_layout()
    return fig


def _budget_curve(sub: Sequence[Mapping], variant: str, axis: Axis) -> tuple:
    """(x, median, q25, q75, K) arrays of one variant's points on a budget axis: x the median forward-step
    equivalents per control step over the point's seeds, the closed-loop cost's median and quartiles; points with
    no finite compute or cost left out."""
    out = []
    for k in axis.values:
        at = [row for row in sub if row.get("variant") == variant and _same(row.get(axis.key), k)]
        fse = np.array([_num(row.get("forward_equivalents_per_step")) for row in at], float)
        cost = np.array([_num(row.get("closed_loop_cost")) for row in at], float)
        x = nan_band(fse)[0] if fse.size else np.nan
        m, q25, q75 = nan_band(cost) if cost.size else (np.nan,) * 3
        if np.isfinite(x) and x > 0 and np.isfinite(m):
            out.append((float(x), float(m), float(q25), float(q75), k))
    if not out:
        return (np.array([]),) * 4 + ([],)
    cols = list(zip(*out))
    return (*(np.array(c, float) for c in cols[:4]), list(cols[4]))


def compute_figure(rows: Sequence[Mapping], study: StudySpec, axis: Axis,
                   settings: Optional[Sequence[Mapping]] = None) -> Figure:
    """A closed-loop study's cost against compute: for a budget axis (``mpc.iterations``, K method steps per
    replan) the closed-loop cost (median and IQR over seeds, as error bars) against the forward-step equivalents
    each variant spent per control step (the median over seeds of `forward_equivalents_per_step`), log x; one
    panel per problem (and combination of the other axes' values), one line per variant through its budgets in
    order, the smallest and largest K labelled. A variant's FSE per step grows with K at its own rate: the
    comparison at equal compute is read across the x axis, not at equal K. The title states the cells' ``settings``
    (as `axis_figure`'s)."""
    problems = list(dict.fromkeys([p.stem for p in study.problems]))
    others = [a for a in study.grid if a.key != axis.key]
    combos = list(itertools.product(*[a.values for a in others]))[:MAX_ROWS]
    colours = variant_colours(list(study.variants))
    registered = {v for v in study.variants if registered_colour(v) is not None}
    fig = Figure(figsize=(4.8 * len(problems), 3.8 * len(combos) + 0.6))
    axes = fig.subplots(len(combos), len(problems), squeeze=False)
    for r, combo in enumerate(combos):
        for c, problem in enumerate(problems):
            ax = axes[r, c]
            sub = [row for row in rows if row.get("problem") == problem
                   and all(_same(row.get(a.key), v) for a, v in zip(others, combo))]
            positive = []
            for variant in study.variants:
                x, med, lo, hi, ks = _budget_curve(sub, variant, axis)
                if not x.size:
                    continue
                positive += [v for v in (*med, *lo) if v > 0]
                style = "o-" if variant in registered else "s--"
                ax.errorbar(x, med, yerr=[med - lo, hi - med], fmt=style, color=colours[variant], lw=1.4, ms=4,
                            capsize=2, label=variant)
                for i in {0, len(ks) - 1}:
                    ax.annotate(f"K={label_value(ks[i])}", (x[i], med[i]), textcoords="offset points", xytext=(3, 4),
                                fontsize=6, color=colours[variant])
            ax.set_xscale("log")
            if positive and min(positive) > 0 and max(positive) / min(positive) > 10:
                ax.set_yscale("log")
            title = problem + ("" if not others else "\n" + ", ".join(f"{a.key}={label_value(v)}" for a, v in zip(others, combo)))
            set_title(ax, title, 10)
            ax.set_xlabel("forward-step equivalents per control step (log)")
            ax.grid(True, which="both", alpha=0.25)
            if c == 0:
                ax.set_ylabel(f"closed-loop cost (median, IQR over {_seeds_text(rows, study)} seeds)", fontsize=9)
    if any(ax.get_legend_handles_labels()[0] for ax in axes.ravel()):
        axes[0, -1].legend(fontsize=8, loc="best")
    set_title(fig, _titled(study, f"{study.title}: closed-loop cost against compute per control step", settings), 10)
    fig.tight_layout()
    return fig


def _quantile(values, q: float) -> float:
    """The q-quantile of ``values`` with every non-finite value as +inf (NumPy's linear interpolation between the
    two order statistics around it; +inf when the upper one is +inf): q = 0.5 is the median."""
    v = np.sort(np.where(np.isfinite(np.asarray(values, float)), values, np.inf))
    pos = q * (v.size - 1)
    i = int(math.floor(pos))
    j = min(i + 1, v.size - 1)
    t = pos - i
    if t == 0 or v[i] == v[j]:
        return float(v[i])
    if not math.isfinite(v[j]):
        return math.inf
    return float(v[i] + (v[j] - v[i]) * t)


def best_rows(rows: Sequence[Mapping], study: StudySpec) -> list[dict]:
    """A closed-loop study's "best variant at each grid point": one row per problem and grid point.

    The variants are ranked by their median closed-loop cost over the point's seeds, a seed whose episode blew up
    (no finite cost) counting as +inf (so a variant that diverged on most seeds is not ranked by its survivors);
    a failed cell takes no part. Columns: problem, each grid key, then `BEST_COLUMNS`: ``best`` the variant with
    the lowest median (None when no variant has a finite one), ``ties`` the other variants with exactly the same
    median (";"-joined), the best's median and quartiles (non-finite costs as +inf; a quartile at +inf is None) and
    ``seeds`` /
    ``seeds_not_finite``, its success rate with the Wilson 95 % interval (`trajopt.stats.wilson_interval`; over
    the seeds with a recorded success, as ``trajopt mpc`` reports it; None where the problem defines no success),
    its median forward-step equivalents per control step, the ``runner_up`` and its median, and ``within_iqr``:
    the other variants whose median lies within the best's interquartile range (not clearly worse on these
    seeds)."""
    problems = list(dict.fromkeys([p.stem for p in study.problems]))
    points = list(itertools.product(*[a.values for a in study.grid]))
    out = []
    for problem in problems:
        mine = [r for r in rows if r.get("problem") == problem]
        for point in points:
            at = [r for r in mine if all(_same(r.get(a.key), v) for a, v in zip(study.grid, point))]
            ranked = []
            for order, variant in enumerate(study.variants):
                vr = [r for r in at if r.get("variant") == variant and r.get("status") != "failed"]
                if not vr:
                    continue
                costs = np.array([_num(r.get("closed_loop_cost")) for r in vr], float)
                rank = _quantile(costs, 0.5)
                ranked.append((rank, order, variant, vr, costs))
            ranked.sort(key=lambda t: (t[0], t[1]))
            row = {"problem": problem, **{a.key: v for a, v in zip(study.grid, point)}, **{k: None for k in BEST_COLUMNS}}
            if ranked and math.isfinite(ranked[0][0]):
                rank, _, variant, vr, costs = ranked[0]
                q25, q75 = (_quantile(costs, q) for q in (0.25, 0.75))
                succ = np.array([_num(r.get("success")) for r in vr], float)
                succ = succ[np.isfinite(succ)]
                fse = np.array([_num(r.get("forward_equivalents_per_step")) for r in vr], float)
                row.update(best=variant, ties=";".join(v for rk, _, v, _, _ in ranked[1:] if rk == rank) or None,
                           closed_loop_cost_median=rank, closed_loop_cost_q25=q25,
                           closed_loop_cost_q75=q75 if math.isfinite(q75) else None,
                           seeds=len(vr), seeds_not_finite=int(np.sum(~np.isfinite(costs))),
                           forward_equivalents_per_step=float(nan_band(fse)[0]) if fse.size else None,
                           within_iqr=";".join(v for rk, _, v, _, _ in ranked[1:] if rk != rank and rk <= q75) or None)
                if succ.size:
                    lo, hi = wilson_interval(int(succ.sum()), int(succ.size))
                    row.update(success_rate=float(succ.mean()), success_low=lo, success_high=hi)
                others = [t for t in ranked[1:] if t[0] != rank]
                if others:
                    row.update(runner_up=others[0][2],
                               runner_up_median=others[0][0] if math.isfinite(others[0][0]) else None)
            out.append(row)
    return out


def best_columns(study: StudySpec) -> list[str]:
    """best.csv's columns: problem, each grid key, then `BEST_COLUMNS`."""
    return ["problem", *(a.key for a in study.grid), *BEST_COLUMNS]


def _value(v) -> float:
    """A table value as a float, NaN where empty (None or "")."""
    return math.nan if v is None or v == "" else float(v)


def task_figure(rows: Sequence[Mapping], study: StudySpec, problem: str, settings: Sequence[Mapping] = ()) -> Figure:
    """One problem (task) of a closed-loop study: each cell's (variant's, and with a grid each point's) closed-loop
    cost over its seeds, a dot per seed and a bar at the median (`trajopt.studies.suite_table.suite_rows`: a seed
    whose plant blew up counts as +inf), a seed with no finite cost an ``x`` on the top edge, counted ("1 not
    finite"), a failed cell written as such; where the problem records a success, a second panel with each cell's
    success rate and its percentile-bootstrap 95 % interval. The title states the problem, its title and the
    settings that made it (`task_settings_text` of ``settings``, its cells' result.json entries)."""
    keys = [a.key for a in study.grid]
    mine = [r for r in rows if r.get("problem") == problem]
    table = suite_rows(mine, keys)
    by_cell: dict = {}
    for r in mine:
        by_cell.setdefault(cell_key(r, keys), []).append(r)
    with_success = any(math.isfinite(_value(r.get("success"))) for r in mine)
    colours = variant_colours(list(dict.fromkeys([*study.variants, *(t["variant"] for t in table)])))
    fig = Figure(figsize=(max(5.5, 0.95 * len(table) + 2.8), 5.6 if with_success else 4.0))
    if with_success:
        ax, ax_s = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2.3, 1]})
    else:
        ax, ax_s = fig.subplots(), None
    edge = ax.get_xaxis_transform()  # x in data, y in axes fraction: the top edge for the seeds with no finite cost
    finite_all, not_finite = [], False
    for i, (t, rs) in enumerate(zip(table, by_cell.values())):  # both in the cells' first-seen order
        colour = colours[t["variant"]]
        if "failed" in t:
            ax.annotate("failed", (i, 0.5), xycoords=edge, ha="center", va="center", rotation=90, fontsize=8,
                        color="#a00000")
            continue
        cost = np.array([_value(r.get("closed_loop_cost")) for r in rs], float)
        jitter = (np.arange(cost.size) - (cost.size - 1) / 2) * (0.5 / max(cost.size, 1))
        ok = np.isfinite(cost)
        finite_all += list(cost[ok])
        ax.scatter(i + jitter[ok], cost[ok], color=colour, s=16, alpha=0.8, zorder=3)
        if (~ok).any():
            not_finite = True
            ax.scatter(i + jitter[~ok], np.full(int((~ok).sum()), 0.97), transform=edge, marker="x", color=colour,
                       s=30, zorder=3, clip_on=False)
            ax.annotate(f"{int((~ok).sum())} not finite", (i, 0.9), xycoords=edge, ha="center", va="center",
                        fontsize=7, color=colour)
        if math.isfinite(t["cost_median"]):
            ax.hlines(t["cost_median"], i - 0.3, i + 0.3, color="k", lw=1.6, zorder=4)
        else:
            ax.annotate("median: not finite", (i, 0.85), xycoords=edge, ha="center", va="center", fontsize=7,
                        color="k")
        if ax_s is not None and t["success_rate"] is not None:
            rate, (lo, hi) = t["success_rate"], t["success_interval"]
            ax_s.errorbar([i], [rate], yerr=[[rate - lo], [hi - rate]], fmt="o", color=colour, ms=5, capsize=3)
    if finite_all and min(finite_all) > 0 and max(finite_all) / min(finite_all) > 10:
        ax.set_yscale("log")
    if not_finite and finite_all:  # headroom: the top fifth of the panel is the seeds with no finite cost
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, hi * (hi / lo) ** 0.25 if ax.get_yscale() == "log" else hi + 0.25 * (hi - lo))
    labels = [plain(t["variant"]) + "".join(f"\n{k}={label_value(t['point'][k])}" for k in keys) for t in table]
    bottom = ax_s if ax_s is not None else ax
    bottom.set_xticks(range(len(table)), labels, fontsize=8)
    bottom.set_xlim(-0.6, len(table) - 0.4)
    S = "/".join(dict.fromkeys(str(t["seeds"]) for t in table)) or "0"
    ax.set_ylabel(f"closed-loop cost\n({S} seeds; bar: median)", fontsize=9)
    ax.grid(True, axis="y", alpha=0.25)
    if ax_s is not None:
        ax_s.set_ylim(-0.05, 1.05)
        ax_s.set_ylabel("success rate\n(bootstrap 95 %)", fontsize=9)
        ax_s.grid(True, axis="y", alpha=0.25)
    title = next((e.get("title") for e in settings if isinstance(e, Mapping) and e.get("title")), None)
    named = problem + (f": {title}" if title and title != problem else "")
    set_title(fig, f"{named}\n{task_settings_text(settings)}", 10)
    fig.tight_layout()
    return fig


def study_figures(rows: Sequence[Mapping], study: StudySpec,
                  settings: Optional[Mapping[str, Sequence[Mapping]]] = None) -> dict[str, Figure]:
    """{file stem: Figure}: ``study_<key>`` per grid axis (dots as ``_``; made a safe, distinct file name by
    `trajopt.studies.expand.folder_names`), or ``study_variants`` for a study without a grid. A closed-loop study
    draws the closed-loop cost, and for its ``mpc.iterations`` axis also ``study_<key>_compute``
    (`compute_figure`), and with several problems (tasks) one ``task_<problem>`` per problem (`task_figure`,
    `task_names`; ``settings``: {problem: what its cells ran with}, `trajopt.studies.store.cell_settings`). Each
    figure of a closed-loop study states the settings of the cells it draws under its title (`task_settings_text`:
    a setting that differs between them lists its values and is named as varying)."""
    if study.fidelity:
        return fidelity_figures(rows, study)
    metric = _metric(study)
    # a compare study's one budget (budget = B) is an axis of one value: every cell's, drawn on no x axis of its own
    drawn = [a for a in study.grid if not (a.key == STUDY_BUDGET_KEY and len(a.values) == 1 and not study.closed_loop)]
    out = {}
    every = [e for p in dict.fromkeys(p.stem for p in study.problems) for e in (settings or {}).get(p, ())]
    if not drawn:
        out["study_variants"] = variants_figure(rows, study, metric, every)
    names = folder_names([f"study_{a.key.replace('.', '_')}" for a in drawn], [a.key for a in drawn])
    for name, axis in zip(names, drawn):
        out[name] = axis_figure(rows, study, axis, metric, every)
        if study.closed_loop and axis.key == BUDGET_KEY:
            out[f"{name}_compute"] = compute_figure(rows, study, axis, every)
    tasks = task_names([p.stem for p in study.problems])
    if study.closed_loop and len(tasks) > 1:
        for problem, name in tasks.items():
            out[name] = task_figure(rows, study, problem, (settings or {}).get(problem, ()))
    return out


def _nested(row: Mapping, x: str, group: str) -> dict:
    """A fidelity study's row as `fidelity_figure` reads it: the metrics as {median, q25, q75}, the x value, and the
    panel row's label ``group`` in place of the solref."""
    out = {"point": row.get("point"), "oracle": row.get("variant"), "fd_trusted": row.get("fd_trusted") in (True, 1, "True"),
           "solref": group, x: _num(row.get(x))}
    for m in METRICS:
        if row.get(f"{m}_median") is not None:
            out[m] = {s: _num(row.get(f"{m}_{s}")) for s in ("median", "q25", "q75")}
    return out


def fidelity_figures(rows: Sequence[Mapping], study: StudySpec) -> dict[str, Figure]:
    """{``fidelity_<problem>``: Figure} of a fidelity study: per problem, each oracle's relative error (median and
    quartiles over the repeats) against the ``timestep`` axis (else the first numeric grid axis, else the time step),
    against finite differences and the fine reference (`trajopt.plots_fidelity.fidelity_figure`), a row of panels per
    solref and combination of the other axes' values; a failed cell leaves its point out. The title states the
    problem, its horizon, the repeats, the fine reference's time step and the finite-difference step."""
    numeric = [a.key for a in study.grid if a.key != "solref"
               and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in a.values)]
    x = "timestep" if "timestep" in numeric or not numeric else numeric[0]
    others = [a.key for a in study.grid if a.key != x]
    names = folder_names([f"fidelity_{p.stem}" for p in study.problems], [p.stem for p in study.problems])
    out = {}
    for path, name in zip(study.problems, names):
        mine = [r for r in rows if r.get("problem") == path.stem and r.get("status") != "failed"]
        nested = [_nested(r, x, ", ".join([label_value(r.get("solref")),  # the panel row: "solref [0.02, 1.0], ..."
                                          *(f"{k}={label_value(r.get(k))}" for k in others if k != "solref")]))
                  for r in mine if r.get(x) is not None]
        horizon = "/".join(dict.fromkeys(str(r.get("horizon")) for r in mine)) or "?"
        refs = "/".join(dict.fromkeys(label_value(r["reference_timestep"]) for r in mine
                                      if r.get("reference_timestep") is not None)) or "none"
        title = (f"{path.stem}: gradient error against {x} (horizon {horizon}, {len(study.seeds)} "
                 f"{'repeat' if len(study.seeds) == 1 else 'repeats'} of the stochastic oracles, fine reference at timestep {refs}, fd step {label_value(study.fd_step)})")
        fig = fidelity_figure(nested, list(study.variants), title=title, x=x,
                              xlabel="time step (s)" if x == "timestep" else x)
        out[name] = fig
    return out


__all__ = ["fidelity_figures", "axis_figure", "variants_figure", "compute_figure", "task_figure", "task_names", "task_settings_text", "plant_text",
           "best_rows", "best_columns", "study_figures", "study_html", "cell_summaries"]
