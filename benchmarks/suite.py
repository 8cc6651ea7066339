"""The closed-loop suite's table (#28 items 4-5): one row per task x planner from a `trajopt study` folder of
examples/studies/closed_loop_suite.toml, and the suite models' steps per second (MJX beside mujoco.mj_step).

    trajopt study examples/studies/closed_loop_suite.toml --out runs/studies/closed_loop_suite
    python benchmarks/suite.py table runs/studies/closed_loop_suite > benchmarks/suite_table.md
    python benchmarks/suite.py speed > benchmarks/suite_speed.txt

``table`` reads the study's study.csv (one row per cell and seed: `trajopt.studies.cells.MPC_ROW_COLUMNS`) and
study.json and prints a Markdown table, per task and planner:

* the median closed-loop cost over seeds (a seed whose plant blew up counts as +inf, so it ranks last: the median is
  inf when half the seeds or more blew up), and the interquartile range;
* the success rate over seeds with a percentile-bootstrap 95 % interval (`bootstrap_interval`: 10,000 resamples of
  the seeds with replacement, numpy's default_rng(0); an all-success or all-failure column has the interval
  [rate, rate]: the bootstrap cannot see beyond the seeds it has, Wilson's interval in best.csv can);
* the compute per control step in forward-step equivalents (the mean over seeds; FSE = H (rollouts + rho_b backward
  passes + rho_l linearisations), the step costs study.json records);
* the plan time per replan, p50 and p95 (timed on the cell's first seed, one seed, no batching), and the real-time
  factor (simulated time / wall time of that episode; > 1 keeps up);
* the cell's compile and run seconds.

``speed`` times each suite MJX model's control step: mujoco.mj_step in a Python loop (one trajectory; the warm start
cleared every control step, as trajopt's step does), trajopt's MJX step jitted over a T-step lax.scan (one
trajectory) and vmapped over B trajectories, in physics steps per second, with the MJX program's compile time.
Run on this shared, loaded 2-core CPU host: the timings are upper bounds.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

RESAMPLES = 10_000
ROOT = Path(__file__).resolve().parent.parent


def bootstrap_interval(values: Sequence[float], resamples: int = RESAMPLES, level: float = 0.95,
                       seed: int = 0) -> tuple:
    """(low, high): the percentile-bootstrap ``level`` interval of the mean of ``values`` [S] (resamples of S draws with
    replacement; numpy's default_rng(seed), so the same values give the same interval)."""
    v = np.asarray(values, float)
    if v.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(resamples, v.size))].mean(axis=1)
    a = (1.0 - level) / 2.0
    return (float(np.quantile(means, a)), float(np.quantile(means, 1.0 - a)))


def _num(s: str) -> Optional[float]:
    return None if s in ("", None) else float(s)


def suite_rows(rows: Iterable[Mapping[str, str]]) -> list:
    """One dict per (problem, variant) in first-seen order, from study.csv's rows (strings, as csv reads them)."""
    cells: dict = {}
    for r in rows:
        cells.setdefault((r["problem"], r["variant"]), []).append(r)
    out = []
    for (problem, variant), rs in cells.items():
        failed = [r for r in rs if r["status"] == "failed"]
        if failed:
            out.append({"problem": problem, "variant": variant, "seeds": len(rs), "failed": failed[0]["error"]})
            continue
        costs = np.array([c if (c := _num(r["closed_loop_cost"])) is not None and math.isfinite(c) else math.inf
                          for r in rs])
        success = [_num(r["success"]) for r in rs]
        success = [s for s in success if s is not None and math.isfinite(s)]
        finite = costs[np.isfinite(costs)]
        row = {"problem": problem, "variant": variant, "seeds": len(rs),
               "blown_up": int(np.sum(~np.isfinite(costs))),
               "cost_median": float(np.median(costs)),
               "cost_q25": float(np.quantile(costs, 0.25)) if finite.size == costs.size else None,
               "cost_q75": float(np.quantile(costs, 0.75)) if finite.size == costs.size else None,
               "success_rate": float(np.mean(success)) if success else None,
               "success_interval": bootstrap_interval(success) if success else None,
               "fse_per_step": float(np.mean([float(r["forward_equivalents_per_step"]) for r in rs])),
               "plan_p50_ms": 1e3 * float(rs[0]["plan_seconds_p50"]),
               "plan_p95_ms": 1e3 * float(rs[0]["plan_seconds_p95"]),
               "realtime_factor": float(rs[0]["realtime_factor"]),
               "compile_seconds": float(rs[0]["compile_seconds"]), "run_seconds": float(rs[0]["run_seconds"])}
        out.append(row)
    return out


def _g(v: Optional[float], digits: int = 4) -> str:
    if v is None:
        return "–"
    if math.isinf(v):
        return "inf"
    return f"{v:.{digits}g}"


def markdown(table: Sequence[Mapping]) -> str:
    """The suite table in Markdown (one row per task and planner)."""
    head = ("| task | planner | median cost [IQR] | success [bootstrap 95 %] | FSE / control step | plan ms p50 / p95 "
            "| real-time factor | compile s | run s |\n|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in table:
        if "failed" in r:
            lines.append(f"| {r['problem']} | {r['variant']} | failed: {r['failed']} | | | | | | |")
            continue
        iqr = f" [{_g(r['cost_q25'])}, {_g(r['cost_q75'])}]" if r["cost_q25"] is not None else \
            f" ({r['blown_up']} of {r['seeds']} blew up)"
        succ = "–" if r["success_rate"] is None else \
            f"{r['success_rate']:.2f} [{r['success_interval'][0]:.2f}, {r['success_interval'][1]:.2f}]"
        lines.append(f"| {r['problem']} | {r['variant']} | {_g(r['cost_median'])}{iqr} | {succ} | "
                     f"{r['fse_per_step']:.3g} | {r['plan_p50_ms']:.3g} / {r['plan_p95_ms']:.3g} | "
                     f"{r['realtime_factor']:.3g} | {r['compile_seconds']:.0f} | {r['run_seconds']:.1f} |")
    return head + "\n".join(lines) + "\n"


def table(folder: Path) -> str:
    rows = list(csv.DictReader((folder / "study.csv").open()))
    meta = json.loads((folder / "study.json").read_text())
    t = suite_rows(rows)
    seeds = sorted({int(r["seed"]) for r in rows})
    total_compile = sum(r.get("compile_seconds", 0.0) for r in t)
    total_run = sum(r.get("run_seconds", 0.0) for r in t)
    costs = "; ".join(f"{', '.join(s.get('problems', []))}: rho_b {s['backward']:.3g}, rho_l {s['linearization']:.3g}"
                      for s in meta.get("step_costs", []))
    return (markdown(t) + f"\n{len(t)} cells, seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}); compile {total_compile:.0f} s "
            f"and run {total_run:.0f} s summed over cells (each cell's compile_seconds and run_seconds).\n"
            f"Step costs (forward steps per backward pass / linearisation): {costs}\n")


# ----------------------------------------------------------------------------------------------- speed

SPEED_MODELS = (("finger_spinner", ROOT / "problems/suite/finger_spinner.toml", 25, 16),
                ("reacher", ROOT / "problems/suite/reacher.toml", 25, 16),
                ("shadow_hand", ROOT / "problems/suite/shadow_hand.toml", 10, 4))


def speed(models=SPEED_MODELS, repeats: int = 3) -> str:
    import jax
    import jax.numpy as jnp
    import mujoco

    from trajopt import spec

    jax.config.update("jax_enable_x64", True)
    out = ["| model | n / m | substeps | mj_step (C, 1 trajectory) | MJX jit (1 trajectory) | MJX vmap (B) | MJX compile s |",
           "|---|---|---|---|---|---|---|"]
    for name, path, T, B in models:
        s = spec.load(str(path)).system
        sub = int(s.substeps)
        m = s.mj_model
        d = mujoco.MjData(m)
        x0 = np.asarray(s.default_x0())
        rng = np.random.default_rng(0)
        lo, hi = m.actuator_ctrlrange[:, 0], m.actuator_ctrlrange[:, 1]
        U = rng.uniform(lo, hi, size=(B, T, m.nu))
        best_c = math.inf
        for _ in range(repeats):
            d.qpos[:], d.qvel[:] = x0[:m.nq], x0[m.nq:]
            t0 = time.perf_counter()
            for t in range(T):
                d.ctrl[:] = U[0, t]
                d.qacc_warmstart[:] = 0.0
                for _ in range(sub):
                    mujoco.mj_step(m, d)
            best_c = min(best_c, time.perf_counter() - t0)

        def roll(u):
            return jax.lax.scan(lambda x, ut: (s.step(x, ut), None), jnp.asarray(x0), u)[0]

        one, many = jax.jit(roll), jax.jit(jax.vmap(roll))
        t0 = time.perf_counter()
        one(jnp.asarray(U[0])).block_until_ready()
        compile_s = time.perf_counter() - t0
        many(jnp.asarray(U)).block_until_ready()
        best_1 = best_b = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            one(jnp.asarray(U[0])).block_until_ready()
            best_1 = min(best_1, time.perf_counter() - t0)
            t0 = time.perf_counter()
            many(jnp.asarray(U)).block_until_ready()
            best_b = min(best_b, time.perf_counter() - t0)
        steps = T * sub
        out.append(f"| {name} | {s.state_size} / {s.control_size} | {sub} | {steps / best_c:,.0f} | {steps / best_1:,.0f} "
                   f"| {B * steps / best_b:,.0f} (B = {B}) | {compile_s:.0f} |")
    return "\n".join(out) + "\nphysics steps per second (the fastest of 3 runs after the compiling call)\n"


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "table":
        print(table(Path(sys.argv[2])), end="")
    elif len(sys.argv) == 2 and sys.argv[1] == "speed":
        print(speed(), end="")
    else:
        print(__doc__)
        sys.exit(2)
