"""Reports from run folders: one self-contained HTML page (figures embedded as base64 PNG) or Markdown.

A report gathers, per run folder: the problem's title and description, the resolved hyper-parameters,
convergence against iterations, rollouts and seconds, alpha and variance traces, a final-cost table
(median, IQR, best, mean ± std, a ranking by median) and the state and control trajectories of each
variant's best seed. Pure functions of `trajopt.runs.Run` objects (read from a folder, or built in memory by
``compare --report`` from the results it has): the caller writes the result.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from trajopt import plots
from trajopt.runs import Run, iterations_text, legend_labels, variant_entries
from trajopt.stats import nan_band

SECTIONS = ("Problem", "Hyper-parameters", "Final cost", "Convergence", "Diagnostics", "Trajectories")


@dataclass(frozen=True)
class Figure:
    name: str       # file-name stem, unique in a report
    caption: str
    png: bytes


def final_cost_rows(run: Run) -> list[dict]:
    """Per variant: median, IQR, best, mean, std of the final cost over seeds, seeds ok, rank by median."""
    rows = []
    entries = variant_entries(run.result)
    for name in run.variants:
        o = entries[name]
        finals = np.array([np.nan if v is None else v for v in o["final_cost"]], float)
        best = np.array([np.nan if v is None else v for v in o["best_cost"]], float)
        f = finals[np.isfinite(finals)]
        med, q25, q75 = (float(v) for v in nan_band(finals))
        rows.append({
            "variant": name,
            "seeds_ok": sum(s == "ok" for s in o["status"]),
            "seeds": len(o["status"]),
            "median": med,
            "q25": q25,
            "q75": q75,
            "best": float(np.nanmin(best)) if np.isfinite(best).any() else math.nan,
            "mean": float(f.mean()) if f.size else math.nan,
            "std": float(f.std(ddof=1)) if f.size > 1 else math.nan,
            "initial": o.get("initial_cost"),
            "alpha": o.get("median_alpha"),
            "rollouts": o.get("rollouts"),
            "forward_equivalents": o.get("forward_equivalents"),  # absent in folders written before step costs
            "run_seconds": o.get("run_seconds"),
        })
    order = sorted(range(len(rows)), key=lambda i: (math.isnan(rows[i]["median"]), rows[i]["median"]))
    for rank, i in enumerate(order, start=1):
        rows[i]["rank"] = rank
    return rows


def _flatten(prefix: str, value, out: list) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else k, v, out)
    else:
        out.append((prefix, value))


def hyperparameter_rows(run: Run) -> list[tuple[str, str]]:
    """The resolved configuration as (dotted key, value) rows, title and description left out."""
    rows: list = []
    cfg = {k: v for k, v in run.config.items() if k not in ("title", "description", "name")}
    _flatten("", cfg, rows)
    return [(k, _show(v)) for k, v in rows]


def _show(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list) and len(v) > 8:
        return f"[{', '.join(_show(x) for x in v[:6])}, ... ({len(v)} values)]"
    if isinstance(v, list):
        return "[" + ", ".join(_show(x) for x in v) + "]"
    return str(v)


def _num(x, digits: int = 5) -> str:
    """A number for a table ('–' for None, NaN and anything that is not a number: a report never trusts its input)."""
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)) or not math.isfinite(float(x)):
        return "–"
    return f"{x:.{digits}g}"


def _count(x) -> str:
    """An integer with thousands separators ('–' for anything else)."""
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        return _num(x)
    return f"{x:,}"


def _e(x) -> str:
    """Any value from a run folder as HTML text (escaped, quotes included)."""
    return html.escape(str(x), quote=True)


def _md(x) -> str:
    """Any value from a run folder as Markdown text: HTML escaped, one line, table pipes and backticks escaped."""
    text = " ".join(str(x).split())
    return html.escape(text, quote=False).replace("|", "\\|").replace("`", "\\`")


# configuration keys that label a run rather than configure it (never "what differs")
LABEL_KEYS = ("title", "description")
RUN_FOLDER = "run folder"  # what tells apart runs of one configuration (no key differs)
MAX_HEADING_KEYS = 4


def _problem_of(run: Run) -> str:
    return str(run.config.get("name") or run.result.get("problem") or "")


def differing_keys(runs: Sequence[Run]) -> list[str]:
    """The dotted keys of the resolved configurations (each run's config.toml) whose values are not the same in
    every run, in the order the configuration lists them; labels (title, description) left out."""
    flat = []
    for run in runs:
        rows: list = []
        _flatten("", {k: v for k, v in run.config.items() if k not in LABEL_KEYS}, rows)
        flat.append(dict(rows))
    keys = list(dict.fromkeys(k for f in flat for k in f))
    missing = object()
    return [k for k in keys if any(f.get(k, missing) != flat[0].get(k, missing) for f in flat[1:])]


def _order_value(value) -> tuple:
    """A sort key for one configuration value: numbers by value, then text, then anything else, absent last."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "") if math.isfinite(float(value)) else (0, math.inf, str(value))
    if isinstance(value, (str, bool)):
        return (1, 0.0, str(value))
    if value is None:
        return (3, 0.0, "")
    return (2, 0.0, _show(value))


def order_runs(runs: Sequence[Run]) -> list[tuple[Run, list[tuple[str, object]]]]:
    """Runs ordered and labelled by what differs: grouped by problem (in the order given), and within a problem by
    the values of the keys that differ between its runs (numerically where numeric; ties keep the order given).
    Returns (run, [(key, value), ...] of the differing keys) pairs; a lone run of its problem has none."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(_problem_of(run), []).append(run)
    ordered = []
    for members in groups.values():
        keys = differing_keys(members) if len(members) > 1 else []
        labelled = []
        if len(members) > 1 and not keys:  # the same configuration twice (repeated runs): the folders tell them apart
            names = [run.path.name for run in members]
            whole = len(set(names)) < len(names)
            labelled = [(run, [(RUN_FOLDER, str(run.path) if whole else run.path.name)]) for run in members]
        for run in members if not labelled else []:
            rows: list = []
            _flatten("", run.config, rows)
            values = dict(rows)
            labelled.append((run, [(k, values.get(k)) for k in keys]))
        labelled.sort(key=lambda pair: tuple(_order_value(v) for _, v in pair[1]))
        ordered += labelled
    return ordered


def run_heading(run: Run, differences: Sequence[tuple[str, object]]) -> str:
    """A run's section heading: its title, or, among runs of one problem that differ, the problem's name and the
    differing resolved keys with this run's values ("pushing_stiff: system.stiffness = 10")."""
    if not differences:
        return _run_title(run)
    shown = [f"{k} = {'(absent)' if v is None else _show(v)}" for k, v in differences[:MAX_HEADING_KEYS]]
    more = len(differences) - MAX_HEADING_KEYS
    return f"{_problem_of(run) or _run_title(run)}: {', '.join(shown)}" + (f" (+{more} more keys)" if more > 0 else "")


def _report_title(ordered: Sequence[tuple[Run, list]]) -> str:
    if len(ordered) == 1:
        return _run_title(ordered[0][0])
    problems = list(dict.fromkeys(_problem_of(run) for run, _ in ordered))
    keys = list(dict.fromkeys(k for _, diffs in ordered for k, _ in diffs))
    if len(problems) == 1 and keys == [RUN_FOLDER]:
        return f"{problems[0]}: {len(ordered)} runs of one configuration"
    if len(problems) == 1 and keys:
        shown = ", ".join(keys[:MAX_HEADING_KEYS]) + (", ..." if len(keys) > MAX_HEADING_KEYS else "")
        return f"{problems[0]}: {len(ordered)} runs across {shown}"
    shown = ", ".join(p or "(unnamed)" for p in problems[:MAX_HEADING_KEYS]) + (", ..." if len(problems) > MAX_HEADING_KEYS else "")
    return f"trajopt report: {len(ordered)} runs of {len(problems)} problems ({shown})"


def _description(run: Run) -> str:
    """The problem file's description; under --set overrides it says that the text was written for the file's own
    values (it may state them, "at k = 1000") and names the overrides the run was made with."""
    desc = run.config.get("description", "") or "(no description)"
    overrides = run.result.get("overrides")
    if isinstance(overrides, list) and overrides:
        desc += (" [The problem file's description, written for the file's own parameter values; this run was made "
                 f"with --set {', '.join(str(o) for o in overrides)}.]")
    return desc


def run_figures(run: Run, tag: str, title: Optional[str] = None) -> list[Figure]:
    """Every figure of one run, as PNG bytes, titled ``title`` (default: the run's own title; a report of several
    runs of one problem passes the heading that names what differs, `report_figures`)."""
    title = _title(run) if title is None else title
    labels = legend_labels(run.result)
    figs = []
    # compute (forward-step equivalents) when the folder records the step costs that convert its counts
    costed = all(r.step_costs is not None for r in run.results.values())
    for x in ("iterations", "rollouts", *(("compute",) if costed else ()), "seconds"):
        png, why = _draw(lambda x=x: plots.convergence_figure(run.results, x=x, title=title, labels=labels))
        figs.append(Figure(f"{tag}convergence_{x}", f"Cost against {plots.x_label(x, run.results)}: median and interquartile band over seeds"
                           + ("; lower panel: α" if x == "iterations" else "") + why, png))
    png, why = _draw(lambda: plots.variance_figure(run.results, title=title))
    if png is not None:
        figs.append(Figure(f"{tag}variance", "Per-sample trace variances of the first- and zeroth-order batches "
                           "and the bias gap B, per iteration" + why, png))
    # a folder read from disk may lack a variant's final decision (its run folder says so in the notes)
    drawn = {n: r for n, r in run.results.items() if r.U is not None}
    if any(r.X is not None for r in drawn.values()):
        drawn = {n: r for n, r in drawn.items() if r.X is not None}
    if drawn:
        left_out = [n for n in run.results if n not in drawn]
        has_states = next(iter(drawn.values())).X is not None
        caption = ("States and controls of each variant's best seed (lowest final cost)" if has_states
                   else "Final decision of every seed, per variant")
        if left_out:
            caption += f" (not drawn, no final decision in the folder: {', '.join(left_out)})"
        goal = _goal(run, next(iter(drawn.values())).X.shape[-1] if has_states else 0)
        png, why = _draw(lambda: plots.trajectory_figure(drawn, goal=goal, title=title))
        figs.append(Figure(f"{tag}trajectories", caption + why, png))
    return figs


def _draw(make) -> tuple[Optional[bytes], str]:
    """(PNG bytes of the figure ``make()`` draws, ""), (None, "") when it draws none, or (b"", why not) when the
    data cannot be drawn: matplotlib raises on values near ±1e308 (a blow-up's last costs, a tampered file), and a
    report of the rest of the folder is still worth having (its caption says what is missing)."""
    try:
        fig = make()
        return (None, "") if fig is None else (plots.figure_bytes(fig), "")
    except (ValueError, OverflowError, FloatingPointError) as e:
        return b"", f" (not drawn: {type(e).__name__}: {' '.join(str(e).split())[:80]})"


def report_figures(runs: Sequence[Run]) -> dict[str, list[Figure]]:
    """{run folder: its figures} for a report of ``runs``: among runs of one problem that differ, each run's figures
    are titled with its heading (the problem and what differs, `run_heading`), so a figure shown alone still says
    which run it is."""
    titles = {id(run): run_heading(run, differences) if differences else None for run, differences in order_runs(runs)}
    return {str(r.path): run_figures(r, f"r{i}_", titles[id(r)]) for i, r in enumerate(runs)}


def _goal(run: Run, n: int):
    """config.toml's task.goal when it is a list of ``n`` finite numbers (drawn on the n state panels), else None:
    a report never trusts its input."""
    task = run.config.get("task")
    goal = task.get("goal") if isinstance(task, dict) else None
    if isinstance(goal, list) and len(goal) == n and all(isinstance(g, (int, float)) and not isinstance(g, bool)
                                               and math.isfinite(g) for g in goal):
        return goal
    return None


def _title(run: Run) -> str:
    return str(run.result.get("title", run.result.get("problem", "")))


def _run_title(run: Run) -> str:
    return str(run.result.get("title", run.result.get("problem", "")))


def _versions(r: dict) -> str:
    versions = r.get("versions", {})
    return ", ".join(f"{k} {v}" for k, v in versions.items()) if isinstance(versions, dict) else str(versions)


# ---------------------------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1000px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}th,td{border:1px solid #ddd;padding:.3em .6em;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.9em;color:#555}
.meta{color:#666;font-size:.9em}code{background:#f4f4f4;padding:0 .25em}
"""


def _table_html(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cost_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["rank", "variant", "seeds ok", "median", "IQR", "best", "mean ± std", "α median", "rollouts", "FSE",
              "run s"]
    body = [[str(r["rank"]), r["variant"], f"{r['seeds_ok']}/{r['seeds']}", _num(r["median"]),
             f"{_num(r['q25'])} – {_num(r['q75'])}", _num(r["best"]), f"{_num(r['mean'])} ± {_num(r['std'], 3)}",
             _num(r["alpha"], 3), _count(r["rollouts"]), _num(r.get("forward_equivalents"), 6),
             _num(r["run_seconds"], 3)]
            for r in sorted(rows, key=lambda r: r["rank"])]
    return header, body


def _figure_section(figs: list[Figure], src: Callable[[Figure], str], fmt: str) -> list[str]:
    if fmt == "html":  # a figure that could not be drawn (no bytes) is its caption alone
        return [f'<figure><img alt="{html.escape(f.caption)}" src="{src(f)}"><figcaption>{html.escape(f.caption)}'
                "</figcaption></figure>" if f.png else f"<p class='meta'>{html.escape(f.caption)}</p>" for f in figs]
    return [f"![{f.caption}]({src(f)})\n\n*{f.caption}*\n" if f.png else f"*{f.caption}*\n" for f in figs]


def html_report(runs: Sequence[Run], figures: Optional[dict[str, list[Figure]]] = None) -> str:
    """One self-contained HTML page for one or more run folders (figures embedded as data URIs)."""
    figures = figures or report_figures(runs)
    embed = lambda f: "data:image/png;base64," + base64.b64encode(f.png).decode("ascii")  # noqa: E731
    ordered = order_runs(runs)
    title = _report_title(ordered)
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>"]
    for run, differences in ordered:
        r = run.result
        if len(runs) > 1:
            parts.append(f"<h1>{_e(run_heading(run, differences))}</h1>")
            if differences:
                parts.append(f"<p class='meta'>{_e(_run_title(run))}</p>")
        parts.append(f"<p class='meta'>run folder <code>{_e(run.path)}</code> · {_e(r.get('verb', ''))}"
                     f" · status <b>{_e(r.get('status', ''))}</b> · {_e(iterations_text(r))} × "
                     f"{_e(len(r.get('seeds', [])))} seeds · created {_e(r.get('created', ''))} · "
                     f"{_e(_versions(r))} · {_e(r.get('platform'))}, x64={_e(r.get('x64'))}</p>")
        if run.notes:  # what the reader found missing or out of place in the folder, and read around
            parts.append("<p class='meta'><b>Read with notes:</b></p><ul class='meta'>"
                         + "".join(f"<li>{_e(n)}</li>" for n in run.notes) + "</ul>")
        parts.append("<h2>Problem</h2>")
        parts.append(f"<p>{_e(_description(run))}</p><p class='meta'>source <code>{_e(r.get('source'))}</code></p>")
        parts.append("<h2>Hyper-parameters</h2>")
        parts.append(_table_html(["key", "value"], hyperparameter_rows(run)))
        parts.append("<h2>Final cost</h2>")
        rows = final_cost_rows(run)
        parts.append(f"<p>Initial cost {_num(rows[0]['initial'], 8)}. Ranked by the median final cost over seeds.</p>")
        parts.append(_table_html(*_cost_table(rows)))
        figs = figures[str(run.path)]
        by_kind = {k: [f for f in figs if k in f.name] for k in ("convergence", "variance", "trajectories")}
        parts.append("<h2>Convergence</h2>")
        parts += _figure_section(by_kind["convergence"], embed, "html")
        parts.append("<h2>Diagnostics</h2>")
        parts += _figure_section(by_kind["variance"], embed, "html") or ["<p>No variance diagnostics in this run.</p>"]
        parts.append("<h2>Trajectories</h2>")
        parts += _figure_section(by_kind["trajectories"], embed, "html")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def markdown_report(runs: Sequence[Run], figure_dir: str, figures: Optional[dict[str, list[Figure]]] = None) -> str:
    """A Markdown report; figures are referenced as ``figure_dir/<name>.png`` (the caller writes them)."""
    figures = figures or report_figures(runs)
    link = lambda f: f"{figure_dir}/{f.name}.png"  # noqa: E731
    out = []
    ordered = order_runs(runs)
    for run, differences in ordered:
        r = run.result
        out.append(f"# {_md(run_heading(run, differences) if len(runs) > 1 else _run_title(run))}\n")
        out.append(f"Run folder `{_md(run.path)}` · {_md(r.get('verb', ''))} · status **{_md(r.get('status', ''))}** · "
                   f"{_md(iterations_text(r))} × {len(r.get('seeds', []))} seeds · {_md(_versions(r))}\n")
        if run.notes:  # what the reader found missing or out of place in the folder, and read around
            out.append("**Read with notes:**\n\n" + "\n".join(f"- {_md(n)}" for n in run.notes) + "\n")
        out.append("## Problem\n")
        out.append(_md(_description(run)) + "\n")
        out.append("## Hyper-parameters\n")
        out.append("| key | value |\n|---|---|")
        out += [f"| {_md(k)} | {_md(v)} |" for k, v in hyperparameter_rows(run)]
        out.append("\n## Final cost\n")
        rows = final_cost_rows(run)
        header, body = _cost_table(rows)
        out.append(f"Initial cost {_num(rows[0]['initial'], 8)}. Ranked by the median final cost over seeds.\n")
        out.append("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in body]
        out.append("")
        figs = figures[str(run.path)]
        for section, key in (("Convergence", "convergence"), ("Diagnostics", "variance"), ("Trajectories", "trajectories")):
            chosen = [f for f in figs if key in f.name]
            if chosen:
                out.append(f"## {section}\n")
                out += _figure_section(chosen, link, "md")
    return "\n".join(out) + "\n"
