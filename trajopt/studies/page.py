"""The study's HTML page (report.html), from the table's rows (in memory or read back from study.csv) and the
figures' PNG bytes: `study_html` (description, figures embedded, a table of cells linking their run folders; a
closed-loop study's also the suite table, a section per task and the "best variant at each grid point" table) and
`cell_summaries` (each cell's numbers, as the page's table shows them). A fidelity study's page (`_fidelity_html`):
its figures, and a table of every cell and oracle: cosine and relative error against each reference, the
finite-difference check, the timings, each cell linking its folder (fidelity.json, fidelity.csv).

It draws nothing (no matplotlib): the figures (`trajopt.studies.figures`, which re-exports these names) build on
what the two share: `task_names` (the file stem of a closed-loop study's figure per problem, which the page shows in
its section per task), `BUDGET_KEY` (the compute-budget axis) and the row-value helpers.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from trajopt.stats import nan_band
from trajopt.step_costs import costs_text
from trajopt.studies.expand import folder_names
from trajopt.studies.values import label_value, toml_value
from trajopt.studies.suite_table import TABLE_HEAD, row_texts, suite_rows

BUDGET_KEY = "mpc.iterations"  # a closed-loop study's compute-budget axis: also drawn against FSE per control step
TASK_PREFIX = "task_"  # a closed-loop study's figure per problem: task_<problem>.png


def _num(v) -> float:
    return math.nan if v is None else float(v)


def _same(a, b) -> bool:
    return toml_value(a) == toml_value(b) if not isinstance(a, (int, float)) or isinstance(a, bool) else \
        (isinstance(b, (int, float)) and not isinstance(b, bool) and math.isclose(float(a), float(b), rel_tol=1e-12))


def task_names(problems: Sequence[str]) -> dict[str, str]:
    """{problem: file stem} of the figure per problem: ``task_<problem>``, made a safe and distinct file name by
    `trajopt.studies.expand.folder_names` (never a ``study_`` figure's)."""
    problems = list(dict.fromkeys(problems))
    return dict(zip(problems, folder_names([TASK_PREFIX + p for p in problems], problems)))


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
    """Per cell of study.json: its label, folder, status, seeds ok, median/q25/q75 final cost (a closed-loop
    study's: closed-loop cost, and its success rate, median FSE per control step and plan timing; a budget study's
    also the median FSE its seeds spent), error."""
    closed = meta["study"].get("verb") == "mpc"
    metric = "closed_loop_cost" if closed else "final_cost"
    out = []
    for c in meta["cells"]:
        sub = [r for r in rows if r.get("problem") == c["problem"] and r.get("variant") == c["variant"]
               and all(_same(r.get(k), v) for k, v in c["point"].items())]
        finals = np.array([_num(r.get(metric)) for r in sub], float)
        med, q25, q75 = nan_band(finals) if finals.size else (math.nan,) * 3
        errors = [r.get("error") for r in sub if r.get("error")]
        entry = {**c, "seeds_ok": sum(r.get("status") == "ok" for r in sub), "seeds": len(sub),
                 "median": float(med), "q25": float(q25), "q75": float(q75), "error": errors[0] if errors else None}
        if closed:
            succ = np.array([_num(r.get("success")) for r in sub], float)
            succ = succ[np.isfinite(succ)]
            fse = np.array([_num(r.get("forward_equivalents_per_step")) for r in sub], float)
            first = sub[0] if sub else {}
            entry.update(success_rate=float(succ.mean()) if succ.size else None,
                         fse=float(nan_band(fse)[0]) if fse.size else math.nan,
                         plan_p50=_num(first.get("plan_seconds_p50")), misses=_num(first.get("deadline_miss_rate")),
                         rtf=_num(first.get("realtime_factor")))
        elif meta["study"].get("budget") is not None:  # a budget study's: the median FSE its seeds spent
            fse = np.array([_num(r.get("forward_equivalents")) for r in sub], float)
            entry.update(fse=float(nan_band(fse)[0]) if fse.size else math.nan)
        out.append(entry)
    return out


def _best_table(best: Sequence[Mapping], keys: Sequence[str]) -> str:
    """The page's "best variant at each grid point" table (`best_rows`)."""
    head = ["problem", *keys, "best (ties)", "median closed-loop cost", "IQR", "success [Wilson 95 %]", "FSE / step",
            "runner-up (median)", "within the best's IQR"]
    body = []
    for b in best:
        if b["best"] is None:
            cells = [html.escape(b["problem"]), *[html.escape(label_value(b[k])) for k in keys],
                     "no variant with a finite median", *[""] * 6]
        else:
            rate = "–" if b["success_rate"] is None else \
                f"{b['success_rate']:.0%} [{b['success_low']:.0%}, {b['success_high']:.0%}]"
            ties = f" (= {b['ties'].replace(';', ', ')})" if b["ties"] else ""
            runner = "–" if b["runner_up"] is None else f"{b['runner_up']} ({_fmt(b['runner_up_median'])})"
            cells = [html.escape(b["problem"]), *[html.escape(label_value(b[k])) for k in keys],
                     f"<b>{html.escape(b['best'])}</b>{html.escape(ties)}", _fmt(b["closed_loop_cost_median"]),
                     f"{_fmt(b['closed_loop_cost_q25'])} – {_fmt(b['closed_loop_cost_q75'])}", rate,
                     _fmt(b["forward_equivalents_per_step"], 4), html.escape(runner),
                     html.escape((b["within_iqr"] or "–").replace(";", ", "))]
        body.append("<tr>" + "".join(f"<td{' class=l' if i == 0 else ''}>{x}</td>" for i, x in enumerate(cells)) + "</tr>")
    return ("<table><thead><tr>" + "".join(f"<th class='l'>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")


def _grid_text(st: Mapping) -> str:
    """The study's grid in a few words: "key ∈ {v1, v2}, ...", or "no grid"."""
    return ", ".join(f"{a['key']} ∈ {{{', '.join(label_value(v) for v in a['values'])}}}" for a in st["grid"]) or "no grid"


def _opening(meta: Mapping, kind: str, summary: str) -> list[str]:
    """A study page's opening, the same for every verb: the title, the meta line ("{kind} FILE · status · backend ·
    {summary} · updated"), the description and the overrides every cell ran with."""
    st = meta["study"]
    title = st.get("title") or st.get("name", "study")
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p class='meta'>{kind} <code>{html.escape(st['source'])}</code> · status <b>"
             f"{html.escape(meta['status'])}</b> · backend {html.escape(meta.get('backend', ''))} · {summary} · "
             f"updated {html.escape(meta.get('updated', ''))}</p>"]
    if st.get("description"):
        parts.append(f"<p>{html.escape(st['description'])}</p>")
    if st.get("set"):
        parts.append("<p class='meta'>every cell: " + ", ".join(f"<code>{html.escape(s)}</code>" for s in st["set"]) + "</p>")
    if st.get("skip"):
        parts.append(f"<p class='meta'>{html.escape(skipped_text(st['skip']))}</p>")
    return parts


def skipped_text(pairs: Sequence[Sequence[str]]) -> str:
    """The study's [skip] in words: "not run (the study's [skip]): ilqr on finger_spinner, reacher; lbfgs on ..."."""
    by: dict = {}
    for variant, problem in pairs:
        by.setdefault(variant, []).append(problem)
    return "not run (the study's [skip]): " + "; ".join(f"{v} on {', '.join(ps)}" for v, ps in by.items())


def study_html(meta: Mapping, rows: Sequence[Mapping], figures: Mapping[str, bytes],
               best: Sequence[Mapping] = ()) -> str:
    """The study's self-contained page: description, figures (PNG bytes, embedded), a table of cells with links
    to their run folders (`trajopt report CELL_FOLDER` renders one in full); a closed-loop study's also its
    "best variant at each grid point" table (``best``, `best_rows`) and its step costs."""
    st = meta["study"]
    if st.get("verb") == "mpc":
        return _closed_loop_html(meta, rows, figures, best)
    if st.get("verb") == "fidelity":
        return _fidelity_html(meta, rows, figures)
    budget = st.get("budget") is not None  # a budget study: compute per seed instead of iterations, FSE spent shown
    compute = (f"a budget of {', '.join(label_value(b) for b in st['budget'])} forward-step equivalents per seed"
               if budget else f"{st['iterations']} iterations")
    parts = _opening(meta, "study", f"{len(meta['cells'])} cells: {len(st['problems'])} problems × "
                     f"{len(st['variants'])} variants × {html.escape(_grid_text(st))} · {html.escape(compute)} × "
                     f"{len(st['seeds'])} seeds")
    if budget:
        parts.append(_step_costs_html(meta, "T (rollouts + ρ<sub>b</sub> backward passes + ρ<sub>l</sub> "
                                            "linearisations)"))
    parts.append("<h2>Final cost against the grid</h2>")
    for name, png in figures.items():
        src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        parts.append(f"<figure><img alt='{html.escape(name)}' src='{src}'><figcaption>{html.escape(name)}: final cost, "
                     "median and interquartile band over seeds; dotted lines mark failed cells</figcaption></figure>")
    if not figures:
        parts.append("<p>No grid: see the table.</p>")
    parts.append("<h2>Cells</h2>")
    keys = [a["key"] for a in st["grid"]]
    head = ["problem", "variant", *keys, "status", "seeds ok", "median final", "IQR",
            *(("median FSE spent",) if budget else ()), "error"]
    body = []
    for c in cell_summaries(rows, meta):
        spent = (f"<td>{_fmt(c['fse'], 6)}</td>",) if budget else ()
        link = f"<a href='{html.escape(c['folder'])}/'>{html.escape(c['variant'])}</a>" if c["status"] == "ok" else html.escape(c["variant"])
        cls = " class='failed'" if c["status"] == "failed" else ""
        cells = [f"<td class='l'>{html.escape(c['problem'])}</td>", f"<td class='l'>{link}</td>",
                 *[f"<td>{html.escape(label_value(c['point'][k]))}</td>" for k in keys],
                 f"<td{cls}>{html.escape(c['status'])}</td>", f"<td>{c['seeds_ok']}/{c['seeds']}</td>",
                 f"<td>{_fmt(c['median'])}</td>", f"<td>{_fmt(c['q25'])} – {_fmt(c['q75'])}</td>", *spent,
                 f"<td class='l'>{html.escape((c['error'] or '')[:300])}</td>"]
        body.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("<table><thead><tr>" + "".join(f"<th class='l'>{html.escape(h)}</th>" for h in head)
                 + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>")
    parts.append("<p class='meta'>The full table, one row per (cell, seed), is study.csv / study.parquet; each cell's "
                 "folder is a run folder (<code>trajopt report cells/…</code> renders one).</p></body></html>\n")
    return "\n".join(parts)


def _step_costs_html(meta: Mapping, formula: str) -> str:
    """The page's line of study.json's step costs per system (what converts counts into forward-step equivalents,
    FSE = ``formula``), "" when it records none."""
    costs = meta.get("step_costs") or []
    if not costs:
        return ""
    items = [f"{html.escape(', '.join(c.get('problems', [])) or '?')}: "
             + (html.escape(costs_text(c, 4)) if c.get("backward") is not None and c.get("linearization") is not None
                else "not measured")
             + f" ({html.escape(str(c.get('source', '')))})" for c in costs]
    return f"<p class='meta'>step costs (forward-step equivalents, FSE = {formula}): " + "; ".join(items) + "</p>"


def _suite_table_html(rows: Sequence[Mapping], keys: Sequence[str]) -> str:
    """A closed-loop page's suite table: one row per task x variant (x grid point), `trajopt.studies.suite_table`'s
    numbers and texts (benchmarks/suite.py prints the same table in Markdown)."""
    head = [*TABLE_HEAD[:2], *keys, *TABLE_HEAD[2:]]
    body = []
    for r in suite_rows(rows, keys):
        lead = [r["problem"], r["variant"], *(label_value(r["point"][k]) for k in keys)]
        texts = row_texts(r)
        first = "<td class='l failed'>" if "failed" in r else "<td>"
        body.append("<tr>" + "".join(f"<td class='l'>{html.escape(x)}</td>" for x in lead)
                    + first + html.escape(texts[0]) + "</td>" + "".join(f"<td>{html.escape(x)}</td>" for x in texts[1:])
                    + "</tr>")
    return ("<h2>Per task and variant</h2><p class='meta'>median closed-loop cost over seeds (a seed whose plant blew "
            "up counts as +inf) and its interquartile range; success rate with its percentile-bootstrap 95 % interval "
            "(10,000 resamples of the seeds, seed 0); forward-step equivalents per control step (mean over seeds); "
            "plan time per replan and real-time factor, timed on the cell's first seed; the cell's compile and run "
            "seconds</p><table><thead><tr>" + "".join(f"<th class='l'>{html.escape(h)}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>")


def _tasks_html(tasks: Mapping[str, str], figures: Mapping[str, bytes]) -> str:
    """A closed-loop page's section per task: its `task_figure` (``tasks``: {problem: figure name}, `task_names`)."""
    parts = []
    for problem, name in tasks.items():
        if name not in figures:
            continue
        src = "data:image/png;base64," + base64.b64encode(figures[name]).decode("ascii")
        parts.append(f"<h3 id='{html.escape(name)}'>{html.escape(problem)}</h3><figure><img alt='{html.escape(name)}' "
                     f"src='{src}'><figcaption>{html.escape(name)}.png: each seed's closed-loop cost (a dot; an ✕ on the "
                     "top edge: a seed whose plant blew up, counted), the median (a bar; a blown-up seed counts as +inf); "
                     "below, where the task has a success predicate, the success rate with its bootstrap 95 % "
                     "interval</figcaption></figure>")
    return "<h2>Per task</h2>" + "".join(parts) if parts else ""


def _closed_loop_html(meta: Mapping, rows: Sequence[Mapping], figures: Mapping[str, bytes],
                      best: Sequence[Mapping]) -> str:
    """`study_html` of a closed-loop study."""
    st = meta["study"]
    grid = _grid_text(st)
    if st.get("iterations") is not None:
        iters = f"{st['iterations']} method steps per replan"
    elif any(a["key"] == BUDGET_KEY for a in st["grid"]):
        iters = "the grid's mpc.iterations method steps per replan"
    else:
        iters = "each problem's mpc.iterations method steps per replan"
    seeds = f"{len(st['seeds'])} seeds" if st.get("seeds") is not None else "each problem's seeds"
    parts = _opening(meta, "closed-loop study", f"{len(meta['cells'])} cells: {len(st['problems'])} problems × "
                     f"{len(st['variants'])} variants × {html.escape(grid)} · {html.escape(iters)} × "
                     f"{html.escape(seeds)}")
    parts.append(_step_costs_html(meta, "H (rollouts + ρ<sub>b</sub> backward passes)"))
    parts.append("<h2>Closed-loop cost against the grid</h2>")
    tasks = task_names([Path(p).stem for p in st["problems"]])
    for name, png in figures.items():
        if name in tasks.values():
            continue
        src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        what = ("closed-loop cost against forward-step equivalents per control step (log x), median and IQR over "
                "seeds, one line per variant through its budgets" if name.endswith("_compute") else
                "closed-loop cost, median and interquartile band over seeds; dotted lines mark failed cells")
        parts.append(f"<figure><img alt='{html.escape(name)}' src='{src}'><figcaption>{html.escape(name)}: "
                     f"{what}</figcaption></figure>")
    keys = [a["key"] for a in st["grid"]]
    parts.append(_suite_table_html(rows, keys))
    parts.append(_tasks_html(tasks, figures))
    if best:
        parts.append("<h2>Best variant at each grid point</h2><p class='meta'>lowest median closed-loop cost over the "
                     "point's seeds (a seed whose episode blew up counts as +inf); ties named beside it; success with "
                     "its Wilson 95 % interval; also in best.csv</p>")
        parts.append(_best_table(best, keys))
    parts.append("<h2>Cells</h2>")
    head = ["problem", "variant", *keys, "status", "seeds ok", "median closed-loop cost", "IQR", "success",
            "FSE / step", "plan ms p50*", "misses*", "RTF*", "error"]
    body = []
    for c in cell_summaries(rows, meta):
        link = f"<a href='{html.escape(c['folder'])}/'>{html.escape(c['variant'])}</a>" if c["status"] == "ok" else html.escape(c["variant"])
        cls = " class='failed'" if c["status"] == "failed" else ""
        rate = c.get("success_rate")
        rate = "–" if rate is None else f"{rate:.0%}"
        misses = c.get("misses", math.nan)
        misses = "–" if not math.isfinite(misses) else f"{misses:.0%}"
        cells = [f"<td class='l'>{html.escape(c['problem'])}</td>", f"<td class='l'>{link}</td>",
                 *[f"<td>{html.escape(label_value(c['point'][k]))}</td>" for k in keys],
                 f"<td{cls}>{html.escape(c['status'])}</td>", f"<td>{c['seeds_ok']}/{c['seeds']}</td>",
                 f"<td>{_fmt(c['median'])}</td>", f"<td>{_fmt(c['q25'])} – {_fmt(c['q75'])}</td>",
                 f"<td>{rate}</td>", f"<td>{_fmt(c.get('fse'), 4)}</td>",
                 f"<td>{_fmt(c.get('plan_p50', math.nan) * 1e3, 3)}</td>", f"<td>{misses}</td>",
                 f"<td>{_fmt(c.get('rtf'), 3)}</td>",
                 f"<td class='l'>{html.escape((c['error'] or '')[:300])}</td>"]
        body.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("<table><thead><tr>" + "".join(f"<th class='l'>{html.escape(h)}</th>" for h in head)
                 + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>")
    parts.append("<p class='meta'>* measured on each cell's first seed only (a timing-only replay of its episode, "
                 "replan by replan, on the host that ran it): plan time per replan, the share of replans over the "
                 "control period, simulated time / wall time. The full table, one row per (cell, seed), is study.csv / "
                 "study.parquet; each cell's folder is a <code>trajopt mpc</code> run folder.</p></body></html>\n")
    return "\n".join(parts)


def _fidelity_html(meta: Mapping, rows: Sequence[Mapping], figures: Mapping[str, bytes]) -> str:
    """`study_html` of a fidelity study (``verb = "fidelity"``)."""
    st = meta["study"]
    reference = str(st.get("reference_timestep") or "none")
    used = "/".join(dict.fromkeys(label_value(r["reference_timestep"]) for r in rows
                                  if r.get("reference_timestep") is not None))
    if used and used != reference:  # "auto": the time step it resolved to, as the figures state it
        reference = f"{reference} ({used})"
    parts = _opening(meta, "fidelity study", f"{len(meta['cells'])} cells: {len(st['problems'])} problems × "
                     f"{html.escape(_grid_text(st))} · oracles {html.escape(', '.join(st['variants']))} · "
                     f"{len(st['seeds'])} {'repeat' if len(st['seeds']) == 1 else 'repeats'} of the stochastic "
                     f"oracles · fine reference at timestep {html.escape(reference)} · fd step "
                     f"{html.escape(label_value(st.get('fd_step')))} · at U0")
    parts.append("<h2>Gradient error against the grid</h2>")
    for name, png in figures.items():
        src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        parts.append(f"<figure><img alt='{html.escape(name)}' src='{src}'><figcaption>{html.escape(name)}: relative "
                     "error |g − r| / |r|, median and interquartile band over the repeats, one line per oracle; left "
                     "against finite differences at the cell's own step (a hollow marker: the reference failed its "
                     "check), right against the fine reference</figcaption></figure>")
    keys = [a["key"] for a in st["grid"]]
    head = ["problem", *keys, "oracle", "status", "cos vs fd", "rel. error vs fd", "cos vs fine", "rel. error vs fine",
            "fd check", "compile / run s", "error"]
    folders = {(c["problem"], tuple(toml_value(c["point"].get(k)) for k in keys)): c for c in meta["cells"]}
    body = []
    for r in rows:
        c = folders.get((r.get("problem"), tuple(toml_value(r.get(k)) for k in keys)), {})
        problem = html.escape(str(r.get("problem")))
        if c.get("status") == "ok":
            problem = f"<a href='{html.escape(c['folder'])}/'>{problem}</a>"
        check = "–" if r.get("fd_agreement") is None else \
            _fmt(r["fd_agreement"], 2) + ("" if r.get("fd_trusted") in (True, 1, "True") else " (untrusted)")
        timing = "–" if r.get("compile_seconds") is None else f"{r['compile_seconds']:.1f} / {r['run_seconds']:.2f}"
        cls = " class='failed'" if r.get("status") != "ok" else ""
        cells = [f"<td class='l'>{problem}</td>", *[f"<td>{html.escape(label_value(r.get(k)))}</td>" for k in keys],
                 f"<td class='l'>{html.escape(str(r.get('variant')))}</td>", f"<td{cls}>{html.escape(str(r.get('status')))}</td>",
                 *[f"<td>{_fmt(_num(r.get(f'{m}_median')), 4)} [{_fmt(_num(r.get(f'{m}_q25')), 3)}, "
                   f"{_fmt(_num(r.get(f'{m}_q75')), 3)}]</td>" for m in ("cos_fd", "rel_fd", "cos_fine", "rel_fine")],
                 f"<td>{check}</td>", f"<td>{timing}</td>", f"<td class='l'>{html.escape((r.get('error') or '')[:300])}</td>"]
        body.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("<h2>Cells and oracles</h2><p class='meta'>median [q25, q75] over the repeats (one draw of a "
                 "deterministic oracle); fd: the cell's own finite differences against the fine reference; fd check: "
                 "||g(eps) − g(10 eps)|| / ||g(eps)||, trusted at most 1 %</p>")
    parts.append("<table><thead><tr>" + "".join(f"<th class='l'>{html.escape(h)}</th>" for h in head)
                 + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>")
    parts.append("<p class='meta'>The full table is study.csv / study.parquet (fidelity.csv's columns per cell and "
                 "oracle); each cell's folder holds fidelity.json (the references' gradients included) and "
                 "fidelity.csv, as <code>trajopt fidelity</code> writes them.</p></body></html>\n")
    return "\n".join(parts)


__all__ = ["study_html", "cell_summaries", "task_names"]
