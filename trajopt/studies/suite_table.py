"""The suite table of a closed-loop study: one row per problem (task) x variant (planner) x grid point, a pure
function of the study's rows (`trajopt.studies.cells.MPC_ROW_COLUMNS`, as the study holds them or as csv reads
study.csv back: numbers or their text, None or "" where empty).

Per cell (`suite_rows`):

* the median closed-loop cost over its seeds, a seed whose plant blew up (no finite cost) counting as +inf, so it
  ranks last: the median is inf when half the seeds or more blew up; the interquartile range (None when a seed blew
  up) and ``blown_up``, how many seeds did;
* the success rate over the seeds with a recorded success (where the problem has a [success] table) with its
  percentile-bootstrap 95 % interval (`bootstrap_interval`: `RESAMPLES` resamples of the seeds with replacement,
  numpy's default_rng(``seed``), 0 by default; an all-success or all-failure cell has the interval [rate, rate]:
  the bootstrap cannot see beyond the seeds it has, the Wilson interval of best.csv can);
* the compute per control step in forward-step equivalents (the mean over seeds; FSE = H (rollouts + rho_b backward
  passes + rho_l linearisations));
* the plan time per replan, p50 and p95, and the real-time factor (simulated time / wall time), all timed on the
  cell's first seed (one seed, no batching), and the cell's compile and run seconds.

A failed cell's row is ``{problem, variant, point, seeds, failed: its error}``. `row_texts` formats a row's numbers
as the table shows them (`TABLE_HEAD`), `markdown` writes the table in Markdown (benchmarks/suite.py prints it; the
study's page, `trajopt.studies.page`, shows the same texts in HTML).
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

from trajopt.studies.values import label_value

RESAMPLES = 10_000
TABLE_HEAD = ("task", "planner", "median cost [IQR]", "success [bootstrap 95 %]", "FSE / control step",
              "plan ms p50 / p95", "real-time factor", "compile s", "run s")


def bootstrap_interval(values: Sequence[float], resamples: int = RESAMPLES, level: float = 0.95,
                       seed: int = 0) -> tuple:
    """(low, high): the percentile-bootstrap ``level`` interval of the mean of ``values`` [S]: ``resamples`` means of
    S draws with replacement (numpy's default_rng(seed), so the same values and seed give the same interval), their
    (1 - level) / 2 and (1 + level) / 2 quantiles (numpy's linear interpolation). (nan, nan) for no values."""
    v = np.asarray(values, float)
    if v.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(axis=1)
    a = (1.0 - level) / 2.0
    return (float(np.quantile(means, a)), float(np.quantile(means, 1.0 - a)))


def _num(v) -> Optional[float]:
    """A table value as a float (numbers or their text), None where empty (None or "")."""
    return None if v is None or v == "" else float(v)


def cell_key(row: Mapping, keys: Sequence[str] = ()) -> tuple:
    """The cell a row belongs to: (problem, variant, each grid key's value as text)."""
    return (row["problem"], row["variant"], *(str(row.get(k)) for k in keys))


def suite_rows(rows: Iterable[Mapping], keys: Sequence[str] = (), seed: int = 0) -> list:
    """One dict per cell (problem, variant and the values of the grid ``keys``) in first-seen order, from the study's
    rows (see the module docstring): problem, variant, point ({key: value}), seeds, blown_up, cost_median, cost_q25,
    cost_q75, success_rate, success_interval (`bootstrap_interval` with ``seed``), fse_per_step, plan_p50_ms,
    plan_p95_ms, realtime_factor, compile_seconds, run_seconds; None where a value is missing."""
    cells: dict = {}
    for r in rows:
        cells.setdefault(cell_key(r, keys), []).append(r)
    out = []
    for rs in cells.values():
        first = rs[0]
        head = {"problem": first["problem"], "variant": first["variant"], "point": {k: first.get(k) for k in keys},
                "seeds": len(rs)}
        failed = [r for r in rs if r["status"] == "failed"]
        if failed:
            out.append({**head, "failed": failed[0]["error"]})
            continue
        costs = np.array([c if (c := _num(r["closed_loop_cost"])) is not None and math.isfinite(c) else math.inf
                          for r in rs])
        success = [_num(r["success"]) for r in rs]
        success = [s for s in success if s is not None and math.isfinite(s)]
        finite = costs[np.isfinite(costs)]
        fse = [f for r in rs if (f := _num(r["forward_equivalents_per_step"])) is not None]
        timed = {k: _num(first[k]) for k in ("plan_seconds_p50", "plan_seconds_p95", "realtime_factor",
                                             "compile_seconds", "run_seconds")}
        ms = {k: None if timed[k] is None else 1e3 * timed[k] for k in ("plan_seconds_p50", "plan_seconds_p95")}
        out.append({**head, "blown_up": int(np.sum(~np.isfinite(costs))),
                    "cost_median": float(np.median(costs)),
                    "cost_q25": float(np.quantile(costs, 0.25)) if finite.size == costs.size else None,
                    "cost_q75": float(np.quantile(costs, 0.75)) if finite.size == costs.size else None,
                    "success_rate": float(np.mean(success)) if success else None,
                    "success_interval": bootstrap_interval(success, seed=seed) if success else None,
                    "fse_per_step": float(np.mean(fse)) if fse else None,
                    "plan_p50_ms": ms["plan_seconds_p50"], "plan_p95_ms": ms["plan_seconds_p95"],
                    "realtime_factor": timed["realtime_factor"], "compile_seconds": timed["compile_seconds"],
                    "run_seconds": timed["run_seconds"]})
    return out


def _g(v: Optional[float], digits: int = 4) -> str:
    if v is None:
        return "–"
    if math.isinf(v):
        return "inf"
    return f"{v:.{digits}g}"


def _f(v: Optional[float], spec: str) -> str:
    return "–" if v is None else format(v, spec)


def _line(error) -> str:
    """A failed cell's error on one line (a message of several lines would break a Markdown table's row)."""
    return " ".join(str(error).split())


def row_texts(r: Mapping) -> list:
    """The texts of a `suite_rows` row under `TABLE_HEAD`'s columns after task and planner: median cost [IQR] (or how
    many seeds blew up), success rate [bootstrap interval], FSE per control step, plan ms p50 / p95, real-time
    factor, compile s, run s; a failed cell's: "failed: ERROR" (on one line) and empty texts."""
    if "failed" in r:
        return [f"failed: {_line(r['failed'])}"] + [""] * (len(TABLE_HEAD) - 3)
    iqr = f" [{_g(r['cost_q25'])}, {_g(r['cost_q75'])}]" if r["cost_q25"] is not None else \
        f" ({r['blown_up']} of {r['seeds']} blew up)"
    succ = "–" if r["success_rate"] is None else \
        f"{r['success_rate']:.2f} [{r['success_interval'][0]:.2f}, {r['success_interval'][1]:.2f}]"
    return [f"{_g(r['cost_median'])}{iqr}", succ, _f(r["fse_per_step"], ".3g"),
            f"{_f(r['plan_p50_ms'], '.3g')} / {_f(r['plan_p95_ms'], '.3g')}", _f(r["realtime_factor"], ".3g"),
            _f(r["compile_seconds"], ".0f"), _f(r["run_seconds"], ".1f")]


def markdown(table: Sequence[Mapping], keys: Sequence[str] = ()) -> str:
    """The suite table in Markdown: one row per task and planner (and grid point: a column per key after the
    planner)."""
    head = [*TABLE_HEAD[:2], *keys, *TABLE_HEAD[2:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table:
        lead = [r["problem"], r["variant"], *(label_value(r["point"][k]) for k in keys)]
        if "failed" in r:
            lines.append("| " + " | ".join(lead) + f" | failed: {_line(r['failed'])} |" + " |" * (len(TABLE_HEAD) - 3))
            continue
        lines.append("| " + " | ".join(lead + row_texts(r)) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["RESAMPLES", "TABLE_HEAD", "bootstrap_interval", "cell_key", "markdown", "row_texts", "suite_rows"]
