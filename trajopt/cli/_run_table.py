"""The table `trajopt solve` and `trajopt compare` print (rich): per variant its method, status, final and best
costs, α, counts, forward-step equivalents and timings, read from the run's result.json content."""

from __future__ import annotations

import numpy as np
from rich.markup import escape
from rich.table import Table

from trajopt.cli._common import CACHE_HIT_NOTE, any_cache_hit, fmt, seconds_text, seeds_status_text, title_text


def _summary_table(summary: dict) -> Table:
    """The table of a run from its result.json content ``summary``."""
    from trajopt.runs_summary import entry_method_label, iterations_text  # JAX: kept off the CLI's start-up path
    from trajopt.stats import nan_band

    n = len(summary["seeds"])
    # variants that run different numbers of iterations (their own `iterations`, --budget), or seeds that stopped
    # before the last (converged, or at the budget), get a column
    stops = any(k is not None for o in summary["variants"].values() for k in o.get("stopped_at") or ())
    per_variant = len({o["iterations"] for o in summary["variants"].values()}) > 1 or stops
    # linearisations (iLQR's Jacobians) get a column when a variant spent some; FSE when the run has step costs
    linearised = any(o.get("linearizations") for o in summary["variants"].values())
    costs = summary.get("step_costs")
    caption = ("rollouts, backward passes" + (", linearisations" if linearised else "") + " and FSE are per seed"
               if costs else "rollouts and backward passes are per seed")
    if costs:
        caption += (f"; FSE: forward-step equivalents, T (rollouts + {costs['backward']:g} backward + "
                    f"{costs['linearization']:g} linearisations), T = {costs['horizon']}")
    ran_once = any(o.get("ran_once") for o in summary["variants"].values())
    table = Table(title=title_text(f"{summary['title']}  ({iterations_text(summary)}, {n} seed{'s' if n != 1 else ''})"),
                  title_justify="left", caption=escape(caption) + "; seconds on "
                  f"{escape(str(summary.get('platform', '?')))}; α: median over seeds and iterations (variants that "
                  "choose one)" + ("; ran once: a deterministic method, its one run shared by every seed" if ran_once
                                   else ""),
                  caption_justify="left")
    for col, justify in [("variant", "left"), ("method", "left"), ("status", "left"), ("final (median)", "right"),
                         ("final IQR", "right"), ("best", "right"), ("α median", "right"),
                         *([("iterations", "right")] if per_variant else []),
                         ("rollouts", "right"), ("backward", "right"), *([("lin.", "right")] if linearised else []),
                         *([("FSE", "right")] if costs else []), ("run+compile s", "right")]:
        table.add_column(col, justify=justify)
    if any_cache_hit(summary):
        table.caption += "; " + CACHE_HIT_NOTE
    if stops:
        table.caption += ("; iterations \"k of K\": a seed stopped before the variant's K (converged, or at its "
                          "budget; it spent nothing after), k the median over seeds of the iterations each ran")
    shared, programs = summary.get("final_evaluation_seconds"), summary.get("final_evaluation_programs") or 1
    if shared:  # the variants' final evaluation: one program per number of seeds run, its seconds nobody's own
        whose = ("one program for the variants" if programs == 1 and len(summary["variants"]) > 1 else "one program"
                 if programs == 1 else f"{programs} programs for the variants (one per number of seeds run)")
        table.caption += (f"; the final evaluation, {whose}: {shared:.1f} s to trace and compile, not in "
                          "run+compile s")
    if "success_radius" in summary:
        table.add_column(f"success (r = {summary['success_radius']:g})", justify="right")
        table.caption += f"; success: median share of {summary['success_held_out']} held-aside starts within the radius"
    for name, o in summary["variants"].items():
        finals = np.array([np.nan if v is None else v for v in o["final_cost"]], float)
        status = seeds_status_text(o["status"])
        skipped = sum(k for k in o.get("skipped_updates") or () if isinstance(k, int))  # on_non_finite = "skip"
        status += f", {skipped:,} updates skipped" if skipped else ""
        above = sum(bool(a) for a, s in zip(o.get("above_initial") or (), o["status"]) if s == "ok")
        status += f", {above} above f(U0)" if above else ""  # ended above its initial cost
        fallbacks = sum(k for k in o.get("first_order_fallbacks") or () if isinstance(k, int))
        status += f", {fallbacks:,} FoBG batches not finite (α = 0)" if fallbacks else ""
        for reason in ("converged", "budget"):  # seeds stopped early (and spent nothing more)
            k = sum(r == reason for r in o.get("stopped") or ())
            status += f", {k} {'converged' if reason == 'converged' else 'at the budget'}" if k else ""
        status += ", ran once" if o.get("ran_once") else ""
        _, q25, q75 = nan_band(finals)
        iqr = f"{fmt(q25)}–{fmt(q75)}" if np.isfinite(q25) else "-"
        best = [v for v in o["best_cost"] if v is not None]
        table.add_row(
            escape(name), escape(entry_method_label(o)), status, fmt(o["median_final_cost"]), iqr,
            fmt(min(best) if best else None), fmt(o["median_alpha"], 3),
            *([_iterations_cell(o)] if per_variant else []), f"{o['rollouts']:,}", f"{o['gradients']:,}",
            *([f"{o.get('linearizations', 0):,}"] if linearised else []),
            *([_fse(o.get("forward_equivalents"))] if costs else []),
            seconds_text(o),
            *([f"{o['median_success_rate']:.0%}" if o["median_success_rate"] == o["median_success_rate"] else "-"]
              if "success_radius" in summary else []),
        )
    return table


def _iterations_cell(o: dict) -> str:
    """A variant's iterations for the table: its own, or, where a seed stopped before them (``stopped_at``), the
    median over seeds of the iterations each ran (a non-finite seed's: up to its ``failed_at``) "of" its own (a
    converged iLQR: "7 of 500")."""
    K = o["iterations"]
    failed = o.get("failed_at") or [None] * len(o.get("stopped_at") or ())
    ran = [k if k is not None else f if f is not None else K for k, f in zip(o.get("stopped_at") or (), failed)]
    if not ran or all(k == K for k in ran):
        return f"{K:,}"
    median = float(np.median(ran))
    return f"{median:,.{0 if median.is_integer() else 1}f} of {K:,}"


def _fse(x) -> str:
    """Forward-step equivalents for the table: whole numbers with separators from 1,000 on, else 4 digits."""
    if not isinstance(x, (int, float)) or x != x:
        return "-"
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"
