"""Closed-loop speed: can each method control the task in real time on this CPU, at a budget that still solves it?

    python benchmarks/closed_loop.py            # a few minutes on 2 cores; writes benchmarks/closed_loop.md and .json

For pendulum swing-up, the cart-pole swing-up and stiff pushing (each file's [mpc], [plant] and [success]), at a
50 Hz control period (replanning every 20 ms of simulated time: every step of the pendulum's and the cart-pole's
0.02 s, every 4 steps of pushing's 0.005 s), one gradient method and one sampling method each run as controllers
over 3 seeds (`trajopt.closedloop.mpc`, the library call `trajopt mpc` makes). For each, at K method steps per replan:

* the closed-loop cost (median over seeds) and the success rate: does the budget still solve the task?
* plan time per replan (p50, p95, max) on seed 0, replayed replan by replan by the timing pass, against the 20 ms
  deadline: the share of replans that miss it;
* the real-time factor: simulated time / the wall time of that one-seed episode (>= 1: faster than real time);
* compute per control step in forward-step equivalents (the system's step costs measured on this host).

The target (issue #25): a real-time factor >= 1 for each problem with at least one gradient and one sampling
method at a budget that still solves the task. The script records what it sees, met or not. No compilation cache is
used (a temporary one), and nothing outside benchmarks/ is written.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "benchmarks"

# (problem file, replan_every for 50 Hz, [(variant, K)...]): a gradient and a sampling method at two budgets each
CASES = [
    ("pendulum_swingup.toml", 1, [("exact_adam", 2), ("exact_adam", 5), ("mppi", 2), ("mppi", 5)]),
    ("cartpole_swingup.toml", 1, [("exact_adam", 2), ("exact_adam", 5), ("mppi", 2), ("mppi", 5)]),
    ("pushing_stiff.toml", 4, [("fobg_adam", 2), ("fobg_adam", 5), ("mppi", 2), ("mppi", 5)]),
]
SEEDS = (0, 1, 2)


def run(quick: bool) -> dict:
    os.environ.setdefault("TRAJOPT_CACHE_DIR", tempfile.mkdtemp(prefix="trajopt-bench-cache-"))
    import jax

    import trajopt  # noqa: F401  (float64, the CPU flag)
    from trajopt import spec as spec_mod
    from trajopt.closedloop import mpc
    from trajopt.compute import forward_equivalents, measure_step_costs
    from trajopt.step_costs import host

    rows = []
    for file, every, variants in CASES:
        path = ROOT / "problems" / file
        for name, K in (variants[0], variants[2]) if quick else variants:
            spec = spec_mod.load(path, [f"mpc.replan_every={every}", f"mpc.iterations={K}", f"solve.iterations={K}",
                                        f"solve.variants=[\"{name}\"]"], closed_loop=True)
            cl = spec.closed_loop
            problem = spec.closed_loop_problem()
            costs = measure_step_costs(problem.step, int(spec.system.state_size), int(spec.system.control_size))
            r = mpc(problem, {name: spec.variants[name].method}, settings=cl.mpc.settings,
                    plant=cl.plant.plant if cl.plant is not None else None, key=jax.random.PRNGKey(spec.solve.key),
                    seeds=SEEDS, success=cl.success, initial_states=spec.closed_loop_starts(SEEDS))[name]
            fse = forward_equivalents(r.settings.horizon, costs, r.rollouts, r.gradients, r.linearizations)
            ps = r.plan_seconds_summary()
            rows.append({"problem": file, "variant": name, "iterations_per_replan": K,
                         "control_period_s": r.control_period, "episode": r.settings.episode,
                         "horizon": r.settings.horizon, "closed_loop_cost_median": r.closed_loop_cost_median,
                         "success_rate": r.success_rate, "plan_ms_p50": ps["p50"] * 1e3, "plan_ms_p95": ps["p95"] * 1e3,
                         "plan_ms_max": ps["max"] * 1e3, "deadline_miss_rate": r.deadline_miss_rate,
                         "realtime_factor": r.realtime_factor, "fse_per_step": float(fse.mean()),
                         "step_costs": costs.as_dict(), "compile_seconds": r.compile_seconds})
            print(json.dumps(rows[-1]), flush=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"created": datetime.datetime.now().isoformat(timespec="seconds"), "host": host(),
            "python": platform.python_version(), "load_after": load, "seeds": list(SEEDS), "rows": rows}


def markdown(result: dict) -> str:
    lines = [f"# Closed loop in real time (recorded {result['created']})", "",
             f"Host: {result['host']}; load average after the run: {result['load_after']}. Seeds {result['seeds']}; "
             "plan times and the real-time factor from one seed's timing pass.", "",
             "| problem | variant | K | period | cost (median) | success | plan ms p50 / p95 / max | misses | RTF | FSE / step |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        rate = "-" if r["success_rate"] is None else f"{r['success_rate']:.0%}"
        lines.append(f"| {r['problem']} | {r['variant']} | {r['iterations_per_replan']} | "
                     f"{r['control_period_s'] * 1e3:g} ms | {r['closed_loop_cost_median']:.5g} | {rate} | "
                     f"{r['plan_ms_p50']:.3g} / {r['plan_ms_p95']:.3g} / {r['plan_ms_max']:.3g} | "
                     f"{r['deadline_miss_rate']:.0%} | {r['realtime_factor']:.3g} | {r['fse_per_step']:.4g} |")
    met = {}
    for r in result["rows"]:
        ok = r["realtime_factor"] >= 1 and (r["success_rate"] or 0) > 0
        kind = "gradient" if "adam" in r["variant"] else "sampling"
        met.setdefault(r["problem"], {}).setdefault(kind, False)
        met[r["problem"]][kind] |= ok
    lines += ["", "Target (RTF >= 1 at a budget that still succeeds on some seed, for a gradient and a sampling method):"]
    for problem, kinds in met.items():
        lines.append(f"- {problem}: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in kinds.items()))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one budget per method (a smoke run)")
    args = parser.parse_args()
    result = run(args.quick)
    (HERE / "closed_loop.json").write_text(json.dumps(result, indent=1) + "\n")
    (HERE / "closed_loop.md").write_text(markdown(result))
    sys.stdout.write(markdown(result))


if __name__ == "__main__":
    main()
