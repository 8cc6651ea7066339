"""result.json's content: the summary of a run (`summarise`: status, per-variant final and best costs per seed,
counts and forward-step equivalents, timings, each variant's resolved configuration, versions) and what is read
off it for people (`entry_method_label`, `legend_labels`, `iterations_text`: the words a table, a legend and a
title state). Readers of folders written before variants existed (key ``oracles``) go through `variant_entries`;
a folder read from disk is not trusted, so every reader of an entry here leaves out what is missing or malformed.
"""

from __future__ import annotations

import math
import platform
from typing import Any, Iterable, Mapping

import jax
import numpy as np
import optax

import trajopt
from trajopt.compute import StepCosts
from trajopt.runs_files import is_number
from trajopt.result import STATUS_INTERRUPTED, STATUS_OK, Result
from trajopt.stats import blocked_nan_median, nan_median
from trajopt.systems.base import model_source


def overall_status(results: Iterable[Result]) -> str:
    """"ok" (every seed ok), "interrupted", "failed" (no seed ok: each non-finite or never updated, "all_skipped")
    or "partial" (some)."""
    statuses = [s for r in results for s in r.status]
    if any(s == STATUS_INTERRUPTED for s in statuses):
        return STATUS_INTERRUPTED
    if all(s == STATUS_OK for s in statuses):
        return STATUS_OK
    if not any(s == STATUS_OK for s in statuses):
        return "failed"
    return "partial"


def final_evaluation_programs(results: Iterable[Result]) -> dict[int, float]:
    """{seeds run: seconds} of the final evaluation's programs of ``results``: the variants of a command share one
    per number of seeds run (`trajopt.solver.prepare_each`: a deterministic method run once for every seed has its
    own), and hold its seconds (lowering and compiling it) apart from their ``compile_seconds``."""
    programs: dict[int, float] = {}
    for r in results:
        seconds = getattr(r, "final_evaluation_seconds", None)
        if seconds is not None:
            programs.setdefault(1 if r.ran_once else len(r.seeds), float(seconds))
    return programs


def final_evaluation_seconds(results: Iterable[Result]) -> float:
    """The seconds the final evaluation's programs of ``results`` took to lower and compile, each program once
    (`final_evaluation_programs`)."""
    return sum(final_evaluation_programs(results).values())


def run_step_costs(results: Mapping[str, Result], step_costs=None):
    """The `trajopt.compute.StepCosts` a run converts its counts with: ``step_costs``, else the first result's own."""
    if step_costs is not None:
        return step_costs
    return next((r.step_costs for r in results.values() if getattr(r, "step_costs", None) is not None), None)


def step_costs_of(entry: Any):
    """The `trajopt.compute.StepCosts` of result.json's ``step_costs`` entry, or None (absent or malformed: a folder
    read from disk is not trusted)."""
    if not isinstance(entry, Mapping):
        return None
    try:
        return StepCosts.from_dict(entry)
    except (KeyError, TypeError, ValueError):
        return None


def summarise(spec, results: Mapping[str, Result], *, verb: str, versions: Mapping[str, str], platform_name: str,
              x64: bool, created: str, step_costs=None) -> dict:
    """The content of result.json. With step costs (``step_costs``, else the results' own: `run_step_costs`), each
    variant's ``forward_equivalents`` (the most any seed spent, as ``rollouts``) and ``forward_equivalents_per_seed``,
    and the run's ``step_costs`` (ρ_b, ρ_l, their source and the horizon T that converts a count)."""
    costs = run_step_costs(results, step_costs)
    variants = {}
    for name, r in results.items():
        rollouts = r.counts("rollouts")
        gradients = r.counts("gradients")
        alpha = r.history.get("alpha")  # [S, K], perhaps a file mapped into memory: read in blocks
        last_alpha = np.asarray(alpha[:, -1]) if alpha is not None and r.iterations else np.full(len(r.seeds), np.nan)
        median_alpha = blocked_nan_median(alpha) if alpha is not None else math.nan
        v = spec.variants.get(name)
        variants[name] = {
            "kind": v.kind if v else None,
            "base": v.base if v else None,
            "status": list(r.status),
            "final_cost": r.final_cost,
            "best_cost": r.best_cost,
            "initial_cost": float(r.cost[0, 0]),
            "failed_at": [int(k) if k >= 0 else None for k in r.failed_at],
            "skipped_updates": [int(k) for k in r.skipped],
            "first_order_fallbacks": [int(k) for k in r.first_order_fallbacks],
            # a seed that ended above its own initial cost (a diverging step, or a seed that went uphill): said beside
            # its status, which only says whether it stayed finite
            "above_initial": [bool(f > c0) for f, c0 in zip(r.final_cost, r.cost[:, 0])],
            "median_final_cost": nan_median(r.final_cost),
            "median_best_cost": nan_median(r.best_cost),
            "final_alpha": last_alpha,
            "median_alpha": median_alpha,
            "rollouts": int(rollouts[-1]),
            "gradients": int(gradients[-1]),
            "linearizations": int(r.counts("linearizations")[-1]),
            **({"forward_equivalents": float(r.forward_equivalents(costs)[-1]),
                "forward_equivalents_per_seed": [float(x) for x in r.seed_forward_equivalents(costs)]}
               if costs is not None else {}),
            # an oracle charged its own backward ratio (step_costs' oracles: cfd's) is named, so a folder read back
            # converts with it too
            **({"charged_oracle": r.oracle_name} if costs is not None and r.oracle_name in dict(costs.oracles)
               else {}),
            "stopped": list(r.stopped) if r.stopped is not None else [None] * len(r.seeds),
            # the iteration at which each stopped seed stopped (the iterations it ran; null: it did not stop)
            "stopped_at": [int(k) if k >= 0 else None for k in r.stopped_at] if r.stopped_at is not None
            else [None] * len(r.seeds),
            "ran_once": bool(r.ran_once),
            "run_seconds": r.run_seconds,
            "compile_seconds": r.compile_seconds,
            # trajopt.programs: constants taken as inputs (a study grid's; None: none), and whether the compiled
            # loop was reused (compile_seconds is then tracing and lowering only); trajopt.traces: whether its
            # trace was read back from the traces folder (compile_seconds then has no tracing); trajopt.compiler:
            # where the compiled loop came from (memory, hit or miss of the compilation cache, or off); and the
            # final evaluation's program, one for the variants (where it came from, or "loop": the loop evaluated
            # it itself; and the seconds it took to lower and compile, once, not in the variants' compile_seconds)
            "program": {"lifted_constants": getattr(r, "lifted", None), "reused": bool(getattr(r, "reused", False)),
                        "trace_reused": bool(getattr(r, "trace_reused", False)),
                        "compilation_cache": getattr(r, "compilation_cache", None),
                        "final_evaluation": getattr(r, "final_evaluation", None),
                        "final_evaluation_seconds": getattr(r, "final_evaluation_seconds", None)},
            "config": v.table if v else {},
            "iterations": r.iterations,
        }
    first = next(iter(results.values()))
    shared = final_evaluation_programs(results.values())
    budgets = {r.budget for r in results.values() if getattr(r, "budget", None) is not None}
    return {
        "status": overall_status(results.values()),
        "verb": verb,
        "problem": spec.name,
        "title": spec.title,
        "source": spec.source,
        "iterations": max(r.iterations for r in results.values()),
        "iterations_requested": spec.solve.iterations,
        "seeds": [int(s) for s in first.seeds],
        "variants": variants,
        "run_seconds": sum(r.run_seconds for r in results.values()),
        # every program the command compiled: the variants' own and, once, the final evaluation they share
        "compile_seconds": sum(r.compile_seconds for r in results.values()) + sum(shared.values()),
        "final_evaluation_seconds": sum(shared.values()),
        "final_evaluation_programs": len(shared),
        "versions": dict(versions),
        "platform": platform_name,
        "x64": x64,
        "created": created,
        **({"step_costs": {**costs.as_dict(), "horizon": int(first.horizon or 1)}} if costs is not None else {}),
        **({"budget": max(budgets)} if budgets else {}),
        **({"model_source": source} if (source := model_source(spec.system)) is not None else {}),
    }


def versions() -> dict[str, str]:
    """The versions result.json records (``versions``): trajopt, JAX, optax, numpy and Python."""
    return {"trajopt": trajopt.__version__, "jax": jax.__version__, "optax": optax.__version__,
            "numpy": np.__version__, "python": platform.python_version()}


def variant_entries(result: Mapping) -> dict:
    """result.json's per-variant summaries (``variants``, or ``oracles`` in folders written before variants)."""
    return result.get("variants", result.get("oracles", {}))


def iterations_text(summary: Mapping) -> str:
    """"500 iterations", or "500–2,500 iterations" when the variants of a run differ (a variant with its own
    ``iterations``, an equal-budget compare): what a title states. Reads result.json's content."""
    counts = sorted({int(v["iterations"]) for v in variant_entries(summary).values()
                     if isinstance(v, Mapping) and is_number(v.get("iterations"))})
    if len(counts) > 1:
        return f"{counts[0]:,}–{counts[-1]:,} iterations"
    return f"{counts[0] if counts else summary.get('iterations')} iterations"


def entry_method_label(entry: Mapping) -> str:
    """What a variant runs, in a few words, from its result.json entry: 'aobg + sgd 0.001', 'fobg + adam 0.2 cosine,
    σ geometric to 0.0003', 'exact + adam 0.2 cosine, best of 8 starts (spread 0.01)' or 'cem' (the full
    configuration is in result.json). The summary table's method column.
    A folder read from disk is not trusted: a missing or malformed key leaves its words out, never raises."""
    cfg = entry.get("config") if isinstance(entry.get("config"), Mapping) else {}
    base = str(entry.get("base") or "")
    starts, spread = cfg.get("starts"), cfg.get("start_spread")
    spread = f" (spread {spread:g})" if is_number(spread) and spread > 0 else ""
    starts = ("" if not is_number(starts) else f", best of {starts:g} starts{spread}" if starts > 1
              else f", 1 start{spread}" if spread else "")
    if entry.get("kind") != "oracle":
        return base + starts
    opt = cfg.get("optimizer") if isinstance(cfg.get("optimizer"), Mapping) else {}
    clip = opt.get("clip_norm")  # result.json writes no clipping (inf) as null
    step = f" {opt['step']:g}" if is_number(opt.get("step")) else ""
    schedule = opt.get("schedule", "constant")
    sigma_schedule, sigma_final = cfg.get("sigma_schedule", "constant"), cfg.get("sigma_final")
    sigma = (f", σ {sigma_schedule}" + (f" to {sigma_final:g}" if is_number(sigma_final) else "")
             if sigma_schedule not in ("constant", None) else "")
    return (f"{base} + {opt.get('name', '?')}{step}" + (f" {schedule}" if schedule not in ("constant", None) else "")
            + (f", clip {clip:g}" if is_number(clip) and math.isfinite(clip) else "") + sigma + starts)


def legend_labels(summary: Mapping) -> dict[str, str]:
    """{variant: its legend entry} for a figure of the run whose result.json content is ``summary``: the method
    label when it starts with the variant's name ("aobg + sgd 0.001"), else "name: label" ("tuned: fobg + adam 0.2
    cosine, σ geometric to 0.0003"), so a figure states what each curve ran, as the table does."""
    out = {}
    for name, entry in variant_entries(summary).items():
        label = entry_method_label(entry) if isinstance(entry, Mapping) else ""
        out[name] = name if not label or label == name else label if label.startswith(name + " ") else f"{name}: {label}"
    return out
