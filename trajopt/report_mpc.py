"""The report of a closed-loop run (`trajopt mpc --report`): one self-contained HTML page, figures embedded.

It states the configuration that made the numbers (the problem, the [mpc] settings, the plant's changes, the seeds,
the step costs that converted the counts) beside the table every variant has in result.json, and the three
figures of the run folder.
"""

from __future__ import annotations

import base64
import html
import math
from typing import Mapping

from trajopt.report import _CSS, _table_html
from trajopt.step_costs import costs_text


def _n(x, digits: int = 5) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}g}" if isinstance(x, (int, float)) else str(x)


def html_mpc_report(summary: Mapping, figures: Mapping[str, bytes]) -> str:
    """HTML for a closed-loop run's result.json content ``summary`` and its figures {caption: PNG bytes}."""
    e = html.escape
    m, plant = summary["mpc"], summary.get("plant", {})
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(str(summary['title']))}</title>"
             f"<style>{_CSS}</style></head><body><h1>{e(str(summary['title']))}</h1>",
             f"<p class='meta'>closed loop (trajopt mpc) · status <b>{e(str(summary['status']))}</b> · "
             f"{len(summary['seeds'])} seeds · source <code>{e(str(summary.get('source')))}</code> · created "
             f"{e(str(summary.get('created')))} · {e(str(summary.get('platform')))}</p>",
             "<h2>Configuration</h2>",
             _table_html(["key", "value"], [
                 ["episode (plant steps)", m["episode"]], ["horizon (planning steps)", m["horizon"]],
                 ["replan every", m["replan_every"]], ["iterations per replan", m["iterations"]],
                 ["warm start", m["warm_start"]], ["control period (s)", _n(m.get("control_period"))],
                 ["plant overrides", ", ".join(f"{k} = {v:.6g}" if isinstance(v, float) else f"{k} = {v}"
                                              for k, v in plant.get("overrides", {}).items()) or "none"],
                 ["measurement noise (std)", plant.get("state_noise", 0)],
                 ["disturbances", "; ".join(f"at {d['at']}: {d['dx']}" for d in plant.get("disturbances", [])) or "none"],
                 *([["factors drawn per seed", "; ".join(
                     f"{label} in {d['range']}: " + ", ".join(f"seed {s} x{f:.4g}" for s, f in
                                                             zip(summary["seeds"], d.get("factors", [])))
                     for label, d in plant["per_seed"].items())]] if plant.get("per_seed") else []),
                 ["step costs", f"{costs_text(summary['step_costs'])} ({summary['step_costs']['source']})"]]),
             "<h2>Closed-loop results</h2>"]
    rows = []
    for name, v in summary["variants"].items():
        q = v["closed_loop_cost_iqr"]
        c = v["compute_per_step"]
        ps = v["plan_seconds"]
        rate = v.get("success_rate")
        lo, hi = v.get("success_interval", [None, None])
        ok, others = sum(s == "ok" for s in v["status"]), sorted(set(s for s in v["status"] if s != "ok"))
        # as the printed table: the seeds that are not ok named, since the cost's median and IQR leave them out
        rows.append([name, f"{ok}/{len(v['status'])}" + (f" ({len(v['status']) - ok} {'/'.join(others)})" if others
                                                         else ""),
                     _n(v["closed_loop_cost_median"]), f"{_n(q[0])} – {_n(q[1])}",
                     "-" if rate is None else f"{rate:.0%} [{lo:.0%}, {hi:.0%}]",
                     _n(c["rollouts"], 4), _n(c["gradients"], 4), _n(c.get("linearizations", 0), 4),
                     _n(c["forward_equivalents"], 4),
                     " / ".join(_n(None if ps[k] is None else ps[k] * 1e3, 3) for k in ("p50", "p95", "max")),
                     _n(v["deadline_miss_rate"], 3), _n(v["realtime_factor"], 3)])
    parts.append(_table_html(["variant", "seeds ok", "closed-loop cost (median)", "IQR", "success [95 %]",
                              "rollouts / step", "backward / step", "linearisations / step", "FSE / step", "plan ms p50 / p95 / max",
                              "deadline misses", "real-time factor"], rows))
    for caption, png in figures.items():
        src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        parts.append(f'<figure><img alt="{e(caption)}" src="{src}"><figcaption>{e(caption)}</figcaption></figure>')
    parts.append("</body></html>\n")
    return "\n".join(parts)
