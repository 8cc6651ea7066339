"""Figures of closed-loop runs (`trajopt.closedloop.MPCResult`, one per variant), built in memory as matplotlib
`Figure` objects (the library never switches the backend or touches pyplot's state; `trajopt.plots.save_figure`
writes them).

* `realised_figure`: the realised states and applied controls against time, per variant the median over seeds with
  an interquartile band (the goal dotted); panel labels are the system's state and control names.
* `closed_loop_cost_figure`: each seed's closed-loop cost per variant (points) with the median (a bar), and the
  success rate where one is defined.
* `plan_time_figure`: each timed replan's plan seconds against the replan index, per variant, with the control
  period (the deadline) drawn across.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np

from trajopt.plots import _new_figure, plain, set_title, variant_colours
from trajopt.stats import nan_band


def _setting(v) -> str:
    """A setting's value as titles state it (``400``, ``0.02``, ``31.6228``)."""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def plant_text(plant: Mapping) -> str:
    """What a closed-loop run's plant changes (its result.json's ``plant``, `trajopt.closedloop.Plant.describe`), in
    a few words: "plant = model", or "plant ≠ model (" the overridden parameters (without their values: a grid over
    one keeps the text), the per-seed draws, "measurement noise", "N disturbances" ")"."""
    overrides = list(plant.get("overrides") or {})
    parts = overrides + [f"{label} drawn per seed" for label in plant.get("per_seed") or {}
                         if not any(k.startswith(label) for k in overrides)]
    if np.any(np.asarray(plant.get("state_noise") or 0.0, float) > 0):
        parts.append("measurement noise")
    n = len(plant.get("disturbances") or ())
    if n:
        parts.append(f"{n} disturbance{'s' if n > 1 else ''}")
    return "plant ≠ model (" + "; ".join(parts) + ")" if parts else "plant = model"


def task_settings_text(entries: Sequence[Mapping]) -> str:
    """"MPC: episode N, horizon H, replan every r, K iterations per replan, S seeds, control period P ms, plant ≠ model
    (...)" (what ``trajopt mpc``'s figures state, and the plant, `plant_text`) of the cells of a figure (a task's, or
    every cell a study's figure draws), ``entries`` being what each cell ran with (its result.json's ``mpc``,
    ``seeds`` and ``plant``; a study's `trajopt.studies.store.cell_settings`, or `trajopt mpc`'s summary). A setting that differs between the cells (a grid
    over it) lists its values in order, "horizon 10/20", and is named again at the end, "varies between cells:
    horizon" (a plant that differs: "plant varies between cells"); a value a result.json lacks is "?"."""
    if not entries:
        return "MPC: settings not recorded (no cell of this task ran)"
    varies = []

    def values(name, get, fmt=_setting) -> str:
        found = []
        for e in entries:
            try:
                v = get(e)
                found.append("?" if v is None else fmt(v))
            except (KeyError, TypeError, AttributeError, ValueError):  # a result.json trajopt did not write
                found.append("?")
        found = list(dict.fromkeys(found))
        if len(found) > 1:
            varies.append(name)
        return "/".join(found)

    text = (f"MPC: episode {values('episode', lambda e: e['mpc']['episode'])}, "
            f"horizon {values('horizon', lambda e: e['mpc']['horizon'])}, "
            f"replan every {values('replan every', lambda e: e['mpc']['replan_every'])}, "
            f"{values('iterations per replan', lambda e: e['mpc']['iterations'])} iterations per replan, "
            f"{values('seeds', lambda e: len(e['seeds']), str)} seeds")
    period = values("control period", lambda e: e["mpc"]["control_period"], lambda v: f"{float(v) * 1e3:g} ms")
    text += "" if period == "?" else f", control period {period}"
    plant = values("plant", lambda e: plant_text(e["plant"]), str)
    if "plant" in varies:
        varies.remove("plant")
        text += ", plant varies between cells"
    elif plant != "?":
        text += f", {plant}"
    return text + (f"; varies between cells: {', '.join(varies)}" if varies else "")


def _names(results) -> list[str]:
    return list(results)


def state_labels(system, n: int, m: int) -> tuple[list[str], list[str]]:
    """The state and control names of a system (`trajopt.systems.base.state_names` / ``control_names``: its own, else
    x0.. / u0..); x0.. / u0.. when no system is given."""
    from trajopt.systems.base import control_names, default_names, state_names

    if system is None:
        return list(default_names("x", n)), list(default_names("u", m))
    return list(state_names(system)), list(control_names(system))


def _band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """median, 25th and 75th percentile over the first axis (NaN-aware): [S, T] -> three [T]."""
    return nan_band(values, axis=0)


def realised_figure(results: Mapping, system=None, goal: Optional[Sequence[float]] = None, title: str = ""):
    """States and controls of every variant over the episode: median over seeds, interquartile band (see the
    module docstring). ``goal`` [n] is drawn dotted on the state panels."""
    names = _names(results)
    colours = variant_colours(names)
    first = results[names[0]]
    n, m = first.X.shape[-1], first.U.shape[-1]
    dt = first.dt if math.isfinite(first.dt) else 1.0
    unit = "time (s)" if math.isfinite(first.dt) else "plant step"
    states, controls = state_labels(system, n, m)
    panels = n + m
    cols = 2 if panels > 3 else 1
    rows = int(np.ceil(panels / cols))
    fig = _new_figure(figsize=(7.0 if cols == 1 else 10.0, 1.9 * rows + 1.0))
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    for name in names:
        r = results[name]
        S = len(r.seeds)
        tx = np.arange(r.X.shape[1]) * dt
        tu = np.arange(r.U.shape[1]) * dt
        for p in range(panels):
            ax = axes[p // cols, p % cols]
            values = r.X[:, :, p] if p < n else r.U[:, :, p - n]
            t = tx if p < n else tu
            med, lo, hi = _band(values)
            label = f"{plain(name)} (median of {S} seed{'s' if S != 1 else ''})" if p == 0 else None
            if p < n:
                ax.plot(t, med, color=colours[name], lw=1.3, label=label)
            else:
                ax.step(t, med, where="post", color=colours[name], lw=1.1, label=label)
            if S > 1:
                ax.fill_between(t, lo, hi, color=colours[name], alpha=0.18, lw=0, step="post" if p >= n else None)
    for p in range(panels):
        ax = axes[p // cols, p % cols]
        ax.set_ylabel(plain(states[p] if p < n else controls[p - n]), fontsize=9)
        ax.grid(True, alpha=0.25)
        if goal is not None and p < n:
            ax.axhline(goal[p], color="k", lw=0.8, ls=":")
    for p in range(panels, rows * cols):
        axes[p // cols, p % cols].axis("off")
    for c in range(cols):
        axes[-1, c].set_xlabel(unit)
    axes[0, 0].legend(fontsize=8, title="realised (band: interquartile; dotted: goal)", title_fontsize=8)
    if title:
        set_title(fig, title, 11)
    fig.tight_layout()
    return fig


def closed_loop_cost_figure(results: Mapping, title: str = ""):
    """Each seed's closed-loop cost per variant, the median marked (over the finite ones); the success rate in the
    tick label where defined, and the number of seeds whose cost is not finite (status non_finite: no point). A
    log axis when every cost is positive and they span more than a decade."""
    names = _names(results)
    colours = variant_colours(names)
    fig = _new_figure(figsize=(max(5.0, 1.1 * len(names) + 2.5), 3.6))
    ax = fig.subplots()
    finite = np.concatenate([np.asarray(results[k].closed_loop_cost, float) for k in names])
    finite = finite[np.isfinite(finite)]
    for i, name in enumerate(names):
        r = results[name]
        c = np.asarray(r.closed_loop_cost, float)
        jitter = (np.arange(c.size) - (c.size - 1) / 2) * (0.5 / max(c.size, 1))
        ax.scatter(i + jitter, c, color=colours[name], s=16, alpha=0.8, zorder=3)
        med = r.closed_loop_cost_median
        if math.isfinite(med):
            ax.hlines(med, i - 0.3, i + 0.3, color="k", lw=1.6, zorder=4)
    labels = []
    for name in names:
        r = results[name]
        rate = r.success_rate
        lost = int(np.sum(~np.isfinite(np.asarray(r.closed_loop_cost, float))))  # non_finite seeds: no point drawn
        labels.append(plain(name) + (f"\nsuccess {rate:.0%}" if rate is not None and math.isfinite(rate) else "")
                      + (f"\n{lost} non-finite (not drawn)" if lost else ""))
    ax.set_xticks(range(len(names)), labels, fontsize=9)
    if finite.size and np.all(finite > 0) and finite.max() / finite.min() > 10:
        ax.set_yscale("log")
    S = len(results[names[0]].seeds)
    ax.set_ylabel(f"closed-loop cost ({S} seed{'s' if S != 1 else ''}; bar: median)")
    ax.grid(True, axis="y", alpha=0.25)
    if title:
        set_title(ax, title, 10)
    fig.tight_layout()
    return fig


def plan_time_figure(results: Mapping, title: str = ""):
    """Plan seconds of each timed replan (seed ``seeds[0]``, the timing pass) against the replan index, per variant,
    and the control period replan_every x dt dashed: the deadline a real-time controller must meet."""
    names = [k for k in _names(results) if results[k].plan_seconds is not None]
    colours = variant_colours(_names(results))
    fig = _new_figure(figsize=(7.0, 3.4))
    ax = fig.subplots()
    deadlines = set()
    for name in names:
        r = results[name]
        p = np.asarray(r.plan_seconds) * 1e3
        miss = r.deadline_miss_rate
        label = plain(name) + (f" (misses {miss:.0%})" if math.isfinite(miss) else "")
        ax.plot(np.arange(p.size), p, color=colours[name], lw=1.0, marker=".", ms=3, label=label)
        if math.isfinite(r.control_period):
            deadlines.add(r.control_period)
    for d in sorted(deadlines):
        ax.axhline(d * 1e3, color="k", ls="--", lw=1.0, label=f"control period {d * 1e3:g} ms")
    ax.set_yscale("log")
    ax.set_xlabel("replan")
    seed = int(results[names[0]].seeds[0]) if names else 0
    ax.set_ylabel(f"plan time (ms, seed {seed})")
    ax.grid(True, alpha=0.25)
    if names:
        ax.legend(fontsize=8)
    if title:
        set_title(ax, title, 10)
    fig.tight_layout()
    return fig
