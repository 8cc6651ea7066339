"""The closed-loop suite's table (#28 items 4-5): one row per task x planner from a `trajopt study` folder of
examples/studies/closed_loop_suite.toml, and the suite models' steps per second (MJX beside mujoco.mj_step).

    trajopt study examples/studies/closed_loop_suite.toml --out runs/studies/closed_loop_suite
    python benchmarks/suite.py table runs/studies/closed_loop_suite > benchmarks/suite_table.md
    python benchmarks/suite.py speed > benchmarks/suite_speed.txt
    python benchmarks/suite.py speed finger_spinner reacher                  # only the named models' rows
    python benchmarks/suite.py diff benchmarks/suite_study.csv FOLDER        # a study run again against the record

``table`` reads the study's study.csv (one row per cell and seed: `trajopt.studies.cells.MPC_ROW_COLUMNS`) and
study.json and prints a Markdown table, one row per task and planner (and grid point, where the study has a grid):
the median closed-loop cost over seeds (a seed whose plant blew up counts as +inf, so it ranks last) and the
interquartile range; the success rate over seeds with a percentile-bootstrap 95 % interval (10,000 resamples of the
seeds with replacement, numpy's default_rng(0)); the compute per control step in forward-step equivalents (FSE = H
(rollouts + rho_b backward passes + rho_l linearisations), the step costs study.json records); the plan time per
replan, p50 and p95, and the real-time factor (timed on the cell's first seed); the cell's compile and run seconds.
The numbers and their texts are `trajopt.studies.suite_table`'s (`suite_rows`, `bootstrap_interval`, `markdown`),
which the study's own page (report.html) shows too.

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

import numpy as np

from trajopt.studies.suite_table import RESAMPLES, bootstrap_interval, markdown, suite_rows  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent


def table(folder: Path) -> str:
    rows = list(csv.DictReader((folder / "study.csv").open()))
    meta = json.loads((folder / "study.json").read_text())
    keys = [a["key"] for a in meta.get("study", {}).get("grid", [])]
    t = suite_rows(rows, keys)
    seeds = sorted({int(r["seed"]) for r in rows})
    total_compile = sum(r.get("compile_seconds") or 0.0 for r in t)
    total_run = sum(r.get("run_seconds") or 0.0 for r in t)
    costs = "; ".join(f"{', '.join(s.get('problems', []))}: rho_b {s['backward']:.3g}, rho_l {s['linearization']:.3g}"
                      for s in meta.get("step_costs", []))
    return (markdown(t, keys) + f"\n{len(t)} cells, seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}); compile {total_compile:.0f} s "
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


def diff(recorded: Path, folder: Path) -> str:
    """Per task and planner of the study in ``folder``: whether every seed's success equals the recorded study.csv's
    (``recorded``), and the largest relative difference of a seed's closed-loop cost."""
    def rows(path):
        with open(path, newline="") as f:
            return {(r["problem"], r["variant"], r["seed"]): r for r in csv.DictReader(f)}

    old, new = rows(recorded), rows(folder / "study.csv")
    worst: dict = {}
    for key, r in new.items():
        if key not in old:
            return f"{key}: not in {recorded}\n"
        a, b = float(old[key]["closed_loop_cost"]), float(r["closed_loop_cost"])
        rel = abs(a - b) / abs(a) if a else abs(b)
        same, most = worst.get(key[:2], (True, 0.0))
        worst[key[:2]] = (same and old[key]["success"] == r["success"], max(most, rel))
    lines = ["| task | planner | every success the same | largest relative cost difference |", "|---|---|---|---|"]
    lines += [f"| {t} | {v} | {'yes' if same else 'NO'} | {most:.1e} |" for (t, v), (same, most) in worst.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "diff":
        print(diff(Path(sys.argv[2]), Path(sys.argv[3])), end="")
    elif len(sys.argv) >= 3 and sys.argv[1] == "table":
        print(table(Path(sys.argv[2])), end="")
    elif len(sys.argv) >= 2 and sys.argv[1] == "speed":  # speed [MODEL...]: only the named rows
        unknown = set(sys.argv[2:]) - {m[0] for m in SPEED_MODELS}
        if unknown:
            sys.exit(f"speed: no model {', '.join(sorted(unknown))}; allowed: {', '.join(m[0] for m in SPEED_MODELS)}")
        chosen = tuple(m for m in SPEED_MODELS if m[0] in sys.argv[2:]) if sys.argv[2:] else SPEED_MODELS
        print(speed(chosen), end="")
    else:
        print(__doc__)
        sys.exit(2)
