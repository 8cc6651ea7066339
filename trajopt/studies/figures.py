"""Study figures and the study's HTML page, from the table's rows (in memory or read back from study.csv).

`axis_figure`: the final cost against one grid axis, one panel per problem (and, with several axes, one row of
panels per combination of the other axes' values), one line per variant: the median over seeds with an
interquartile band (solid for registered oracles and methods, dashed for other variants), the initial cost
dotted; a failed cell is a gap, marked by a dotted vertical line; a median above 3x the initial cost (a
diverged run) is a labelled triangle on the top edge, so that it does not squash the rest.
"""

from __future__ import annotations

import base64
import html
import itertools
import math
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from trajopt.plots import set_title
from trajopt.stats import nan_band
from trajopt.studies.study import Axis, StudySpec, folder_names, label_value, toml_value

MAX_ROWS = 6  # rows of panels (combinations of the other axes) drawn per axis figure
OFF_SCALE = 3.0  # medians above this multiple of the initial cost are drawn as labelled marks on the top edge


def _num(v) -> float:
    return math.nan if v is None else float(v)


def _same(a, b) -> bool:
    return toml_value(a) == toml_value(b) if not isinstance(a, (int, float)) or isinstance(a, bool) else \
        (isinstance(b, (int, float)) and not isinstance(b, bool) and math.isclose(float(a), float(b), rel_tol=1e-12))


def axis_figure(rows: Sequence[Mapping], study: StudySpec, axis: Axis, metric: str = "final_cost") -> Figure:
    """Final (or best) cost against ``axis``: panels problem x other-axes combination, a line per variant.

    Args:
        rows: the study table, one dict per (cell, seed).
        study: the study (problems, variants and axes in order).
        axis: the x axis (log scale when ``axis.log``).
        metric: "final_cost" or "best_cost".
    """
    from trajopt.plots import registered_colour, variant_colours

    problems = list(dict.fromkeys([p.stem for p in study.problems]))
    others = [a for a in study.grid if a.key != axis.key]
    combos = list(itertools.product(*[a.values for a in others]))[:MAX_ROWS]
    colours = variant_colours(list(study.variants))
    registered = {v for v in study.variants if registered_colour(v) is not None}
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in axis.values)
    xs = np.array(axis.values, float) if numeric else np.arange(len(axis.values), dtype=float)
    fig = Figure(figsize=(4.6 * len(problems), 3.6 * len(combos) + 0.6))
    axes = fig.subplots(len(combos), len(problems), squeeze=False)
    n_seeds = len(study.seeds)
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
            ax.plot(xs, initial, ":", color="#777777", lw=1.0, label="initial cost")
            if finite_all and min(finite_all) > 0 and max(finite_all) / min(finite_all) > 10:
                ax.set_yscale("log")
            if off and finite_all:
                lo_y, hi_y = min(finite_all), max(finite_all)
                top = hi_y * 1.25 if ax.get_yscale() == "log" else hi_y + 0.12 * (hi_y - lo_y)
                ax.set_ylim(top=top)
                for x, v, colour in off:
                    ax.plot([x], [top], "^", color=colour, ms=7, clip_on=False)
                    ax.annotate(f"{v:.2g}", (x, top), textcoords="offset points", xytext=(4, -10), fontsize=7,
                                color=colour)
            if axis.log and numeric:
                ax.set_xscale("log")
            if not numeric:
                ax.set_xticks(xs, [label_value(v) for v in axis.values])
            for i in sorted(failed_x):
                ax.axvline(xs[i], color="#999999", lw=0.8, ls=":")
                ax.annotate("failed", (xs[i], 0.02), xycoords=("data", "axes fraction"), fontsize=7, color="#666666",
                            ha="center")
            title = problem + ("" if not others else "\n" + ", ".join(f"{a.key}={label_value(v)}" for a, v in zip(others, combo)))
            set_title(ax, title, 10)
            ax.set_xlabel(axis.key)
            ax.grid(True, which="both", alpha=0.25)
            if c == 0:
                ax.set_ylabel(f"{metric.replace('_', ' ')} (median, IQR over {n_seeds} seeds)", fontsize=9)
    axes[0, -1].legend(fontsize=8, loc="best")
    set_title(fig, study.title, 12)
    fig.tight_layout()
    return fig


def variants_figure(rows: Sequence[Mapping], study: StudySpec, metric: str = "final_cost") -> Figure:
    """A study without a grid: one panel per problem, the final cost of each variant (median over seeds, the
    interquartile range as an error bar, one colour per variant), the initial cost in the panel's title; a median beyond
    OFF_SCALE times the initial cost is a labelled triangle on the top edge."""
    from trajopt.plots import variant_colours

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
    axes[0, 0].set_ylabel(f"{metric.replace('_', ' ')} (median, IQR over {len(study.seeds)} seeds)", fontsize=8)
    set_title(fig, study.title, 10)
    fig.tight_layout()
    return fig


def study_figures(rows: Sequence[Mapping], study: StudySpec) -> dict[str, Figure]:
    """{file stem: Figure}: ``study_<key>`` per grid axis (dots as ``_``; made a safe, distinct file name by
    `trajopt.studies.study.folder_names`), or ``study_variants`` for a study without a grid."""
    if not study.grid:
        return {"study_variants": variants_figure(rows, study)}
    names = folder_names([f"study_{a.key.replace('.', '_')}" for a in study.grid], [a.key for a in study.grid])
    return {name: axis_figure(rows, study, axis) for name, axis in zip(names, study.grid)}


# ---------------------------------------------------------------------------------------------- report

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.88em}th,td{border:1px solid #ddd;padding:.25em .5em;
text-align:right}th{background:#f4f4f4}td.l,th.l{text-align:left}figure{margin:1em 0}figure img{max-width:100%}
.meta{color:#666;font-size:.9em}.failed{color:#a00}code{background:#f4f4f4;padding:0 .25em}
"""


def _fmt(x, digits: int = 5) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}"


def cell_summaries(rows: Sequence[Mapping], meta: Mapping) -> list[dict]:
    """Per cell of study.json: its label, folder, status, seeds ok, median/q25/q75 final cost, error."""
    out = []
    for c in meta["cells"]:
        sub = [r for r in rows if r.get("problem") == c["problem"] and r.get("variant") == c["variant"]
               and all(_same(r.get(k), v) for k, v in c["point"].items())]
        finals = np.array([_num(r.get("final_cost")) for r in sub], float)
        med, q25, q75 = nan_band(finals) if finals.size else (math.nan,) * 3
        errors = [r.get("error") for r in sub if r.get("error")]
        out.append({**c, "seeds_ok": sum(r.get("status") == "ok" for r in sub), "seeds": len(sub),
                    "median": float(med), "q25": float(q25), "q75": float(q75),
                    "error": errors[0] if errors else None})
    return out


def study_html(meta: Mapping, rows: Sequence[Mapping], figures: Mapping[str, bytes]) -> str:
    """The study's self-contained page: description, figures (PNG bytes, embedded), a table of cells with links
    to their run folders (`trajopt report CELL_FOLDER` renders one in full)."""
    st = meta["study"]
    title = st.get("title") or st.get("name", "study")
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    grid = ", ".join(f"{a['key']} ∈ {{{', '.join(label_value(v) for v in a['values'])}}}" for a in st["grid"]) or "no grid"
    parts.append(f"<p class='meta'>study <code>{html.escape(st['source'])}</code> · status <b>{html.escape(meta['status'])}"
                 f"</b> · backend {html.escape(meta.get('backend', ''))} · {len(meta['cells'])} cells: "
                 f"{len(st['problems'])} problems × {len(st['variants'])} variants × {html.escape(grid)} · "
                 f"{st['iterations']} iterations × {len(st['seeds'])} seeds · updated {html.escape(meta.get('updated', ''))}</p>")
    if st.get("description"):
        parts.append(f"<p>{html.escape(st['description'])}</p>")
    if st.get("set"):
        parts.append("<p class='meta'>every cell: " + ", ".join(f"<code>{html.escape(s)}</code>" for s in st["set"]) + "</p>")
    parts.append("<h2>Final cost against the grid</h2>")
    for name, png in figures.items():
        src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        parts.append(f"<figure><img alt='{html.escape(name)}' src='{src}'><figcaption>{html.escape(name)}: final cost, "
                     "median and interquartile band over seeds; dotted lines mark failed cells</figcaption></figure>")
    if not figures:
        parts.append("<p>No grid: see the table.</p>")
    parts.append("<h2>Cells</h2>")
    keys = [a["key"] for a in st["grid"]]
    head = ["problem", "variant", *keys, "status", "seeds ok", "median final", "IQR", "error"]
    body = []
    for c in cell_summaries(rows, meta):
        link = f"<a href='{html.escape(c['folder'])}/'>{html.escape(c['variant'])}</a>" if c["status"] == "ok" else html.escape(c["variant"])
        cls = " class='failed'" if c["status"] == "failed" else ""
        cells = [f"<td class='l'>{html.escape(c['problem'])}</td>", f"<td class='l'>{link}</td>",
                 *[f"<td>{html.escape(label_value(c['point'][k]))}</td>" for k in keys],
                 f"<td{cls}>{html.escape(c['status'])}</td>", f"<td>{c['seeds_ok']}/{c['seeds']}</td>",
                 f"<td>{_fmt(c['median'])}</td>", f"<td>{_fmt(c['q25'])} – {_fmt(c['q75'])}</td>",
                 f"<td class='l'>{html.escape((c['error'] or '')[:300])}</td>"]
        body.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("<table><thead><tr>" + "".join(f"<th class='l'>{html.escape(h)}</th>" for h in head)
                 + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>")
    parts.append("<p class='meta'>The full table, one row per (cell, seed), is study.csv / study.parquet; each cell's "
                 "folder is a run folder (<code>trajopt report cells/…</code> renders one).</p></body></html>\n")
    return "\n".join(parts)


__all__ = ["axis_figure", "variants_figure", "study_figures", "study_html", "cell_summaries"]
