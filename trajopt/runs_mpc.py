"""The closed-loop run folder (`trajopt mpc`): the same contract as `trajopt.runs` (every file atomic, result.json
last), with closed-loop content.

    config.toml      the resolved configuration (every default filled in, [mpc], [plant] and [success] included)
    metrics.jsonl    one JSON object per (variant, seed, plant step t = 0..N): the realised state ``x`` at t, the
                     applied control ``u`` (null at t = N), ``stage_cost`` (the terminal cost at t = N) and, at a
                     replanning step, ``replan`` true with the plan's ``planned_cost`` (the model's prediction),
                     ``rollouts``, ``gradients`` and ``forward_equivalents`` spent on it
    result.json      per variant: ``closed_loop_cost`` [per seed], ``closed_loop_cost_median`` (and IQR),
                     ``success`` [per seed] and ``success_rate`` with its Wilson 95 % interval (where the problem
                     defines success), ``compute_per_step`` {rollouts, gradients, linearizations, forward_equivalents} (mean per
                     replan), ``plan_seconds`` {p50, p95, max}, ``deadline_miss_rate``, ``realtime_factor``,
                     ``status``; and for the run: the ``mpc`` settings, the ``plant`` (its overrides, noise and
                     disturbances), the ``step_costs`` that converted the counts and, for a model read from a file
                     (MJX), its ``model_source`` (package and version, or file, with sha256 hashes)
    trajectory.npz   ``<variant>/X`` [S, N+1, n] the realised states and ``<variant>/U`` [S, N, m] the applied controls
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from trajopt.compute import StepCosts, forward_equivalents, method_costs
from trajopt.runs_files import (METRICS, RESULT, TRAJECTORY, atomic_write_bytes, dumps_json, encode_line, plain_list,
                                write_lines)
from trajopt.runs_write import write_config
from trajopt.stats import nan_band, wilson_interval
from trajopt.systems.base import model_source

FIGURES = {"realised": "realised.png", "cost": "closed_loop_cost.png", "plan_time": "plan_time.png"}


def forward_equivalents_of(result, costs: StepCosts) -> np.ndarray:
    """[S, R] each replan's compute in forward-step equivalents, H (rollouts + ρ gradients + ρ_l linearizations)
    (horizon H steps per rollout; ρ the planner's oracle's own backward ratio where ``costs`` hold one, else ρ_b:
    `trajopt.compute.method_costs`)."""
    return forward_equivalents(result.settings.horizon, method_costs(costs, result.method), result.rollouts,
                               result.gradients, result.linearizations)


def overall_status(results) -> str:
    statuses = [s for r in results for s in r.status]
    if all(s == "ok" for s in statuses):
        return "ok"
    return "failed" if all(s != "ok" for s in statuses) else "partial"


def summarise(spec, results: Mapping, *, step_costs: StepCosts, versions: Mapping, platform_name: str, x64: bool,
              created: str) -> dict:
    """The content of a closed-loop run's result.json (see the module docstring)."""
    variants = {}
    first = next(iter(results.values()))
    for name, r in results.items():
        fse = forward_equivalents_of(r, step_costs)
        med, q25, q75 = nan_band(r.closed_loop_cost)
        entry = {
            "kind": spec.variants[name].kind if name in spec.variants else None,
            "base": spec.variants[name].base if name in spec.variants else None,
            "status": list(r.status),
            "closed_loop_cost": r.closed_loop_cost,
            "closed_loop_cost_median": med,
            "closed_loop_cost_iqr": [q25, q75],
            "failed_at": [int(k) if k >= 0 else None for k in r.failed_at],
            "plan_failures": [int(k) for k in r.plan_failures],
            "compute_per_step": {**r.compute_per_step(), "forward_equivalents": float(np.mean(fse))},
            "plan_seconds": r.plan_seconds_summary(),
            "deadline_miss_rate": r.deadline_miss_rate,
            "realtime_factor": r.realtime_factor,
            "compile_seconds": r.compile_seconds,
            "run_seconds": r.run_seconds,
            # trajopt.traces: the episode's programs were read back, not traced (compile_seconds has no tracing);
            # trajopt.compiler: where each compiled program came from (memory, hit or miss of the cache, or off)
            "program": {"trace_reused": bool(getattr(r, "trace_reused", False)),
                        "compilation_cache": dict(getattr(r, "compilation_cache", {}) or {})},
            "config": spec.variants[name].table if name in spec.variants else {},
        }
        if r.success is not None:
            ok = r.success[np.isfinite(r.success)]
            lo, hi = wilson_interval(int(ok.sum()), int(ok.size))
            entry.update(success=r.success, success_rate=r.success_rate, success_interval=[lo, hi])
        variants[name] = entry
    s = first.settings
    out = {
        "status": overall_status(results.values()),
        "verb": "mpc",
        "problem": spec.name,
        "title": spec.title,
        "source": spec.source,
        "mpc": {"episode": s.episode, "horizon": s.horizon, "replan_every": s.replan_every,
                "iterations": s.iterations, "warm_start": s.warm_start, "replans": s.replans,
                "dt": first.dt, "control_period": first.control_period},
        "plant": first.plant.describe(first.plant_factors),
        "step_costs": step_costs.as_dict(),
        "seeds": [int(v) for v in first.seeds],
        "variants": variants,
        "run_seconds": sum(r.run_seconds for r in results.values()),
        "compile_seconds": sum(r.compile_seconds for r in results.values()),
        "versions": dict(versions),
        "platform": platform_name,
        "x64": x64,
        "created": created,
    }
    if first.success is not None and getattr(spec, "closed_loop", None) is not None and spec.closed_loop.success:
        sc = spec.closed_loop.success
        out["success"] = {"radius": sc.radius, "positions": list(sc.positions), "hold": sc.hold}
    source = model_source(spec.system)
    if source is not None:  # an MJX model's package and version, or file, with hashes
        out["model_source"] = source
    return out


def _stage_costs(cost, X: np.ndarray, U: np.ndarray) -> np.ndarray:
    """[S, N+1] stage(x_t, u_t) for t < N and terminal(x_N) at N."""
    stage = jax.vmap(jax.vmap(cost.stage))(jnp.asarray(X[:, :-1]), jnp.asarray(U))
    terminal = jax.vmap(cost.terminal)(jnp.asarray(X[:, -1]))
    return np.concatenate([np.asarray(stage), np.asarray(terminal)[:, None]], axis=1)


def metrics_lines(results: Mapping, cost, step_costs: StepCosts):
    """metrics.jsonl of a closed-loop run, one line per (variant, seed, plant step)."""
    for name, r in results.items():
        stages = _stage_costs(cost, r.X, r.U)
        fse = forward_equivalents_of(r, step_costs)
        every = r.settings.replan_every
        N = r.settings.episode
        for i, seed in enumerate(r.seeds):
            X = r.X[i].tolist()
            U = r.U[i].tolist()
            c = plain_list(stages[i].tolist())
            for t in range(N + 1):
                row = {"variant": name, "seed": int(seed), "step": t, "x": plain_list(X[t]),
                       "u": plain_list(U[t]) if t < N else None, "stage_cost": c[t]}
                if t < N and t % every == 0:
                    j = t // every
                    row.update(replan=True, planned_cost=plain_list([float(r.planned_cost[i, j])])[0],
                               rollouts=int(r.rollouts[i, j]), gradients=int(r.gradients[i, j]),
                               linearizations=int(r.linearizations[i, j]), forward_equivalents=float(fse[i, j]))
                yield encode_line(row)


def write_run(out_dir: Path, spec, results: Mapping, summary: Mapping, cost, step_costs: StepCosts) -> None:
    """config.toml, metrics.jsonl, trajectory.npz, then result.json, each atomically."""
    out_dir = Path(out_dir)
    write_config(out_dir, spec)
    write_lines(out_dir / METRICS, metrics_lines(results, cost, step_costs))
    arrays = {}
    for name, r in results.items():
        arrays[f"{name}/U"] = r.U
        arrays[f"{name}/X"] = r.X
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(out_dir / TRAJECTORY, buf.getvalue())
    atomic_write_bytes(out_dir / RESULT, dumps_json(summary).encode())
