"""Figures, drawn from run folders only (`trajopt.runs.Run`), with matplotlib's Agg backend.

`convergence_figure`: the noise-free cost on a log axis (linear when a cost is <= 0) against iterations,
simulator rollouts or run seconds; per oracle the median across seeds with an interquartile band; a second
panel with alpha for the oracles that choose one.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from trajopt.runs import Run  # noqa: E402

# The paper's colours: FoBG red, ZoBG blue, AoBG green; the rest from a qualitative palette.
ORACLE_COLOURS = {"fobg": "#d62728", "zobg": "#1f77b4", "aobg": "#2ca02c", "exact": "#7f7f7f", "ddcg": "#e377c2",
                  "ivw": "#ff7f0e", "stepwise": "#9467bd", "fixed_alpha": "#8c564b", "fd": "#17becf"}
_PALETTE = ["#bcbd22", "#393b79", "#8c6d31", "#843c39", "#7b4173", "#637939"]  # user oracles, by position
X_AXES = {"iterations": "iteration", "rollouts": "simulator rollouts", "seconds": "run seconds (compile excluded)"}


def oracle_colour(name: str, index: int) -> str:
    return ORACLE_COLOURS.get(name, _PALETTE[index % len(_PALETTE)])


def _x_values(run: Run, oracle: str, x: str) -> np.ndarray:
    s = run.series[oracle]
    if x == "iterations":
        return np.arange(s["cost"].shape[1])
    if x == "rollouts":
        return np.nanmax(s["rollouts"], axis=0)
    if x == "seconds":
        return np.nanmedian(s["seconds"], axis=0)
    raise ValueError(f"x must be one of {', '.join(X_AXES)}, not {x!r}")


def _band(values: np.ndarray):
    """Median and interquartile range across seeds (axis 0), ignoring NaN (failed seeds)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return (np.nanmedian(values, axis=0), np.nanpercentile(values, 25, axis=0), np.nanpercentile(values, 75, axis=0))


def convergence_figure(run: Run, x: str = "iterations"):
    """The convergence figure of a run folder; returns a matplotlib Figure."""
    with_alpha = [o for o in run.oracles if np.isfinite(run.series[o]["alpha"]).any()]
    n_panels = 2 if with_alpha else 1
    fig, axes = plt.subplots(n_panels, 1, figsize=(7.0, 4.2 + 2.2 * (n_panels - 1)), sharex=True,
                             gridspec_kw={"height_ratios": [3, 1.4][:n_panels]}, squeeze=False)
    ax = axes[0, 0]
    all_costs = np.concatenate([run.series[o]["cost"].ravel() for o in run.oracles])
    finite = all_costs[np.isfinite(all_costs)]
    log_scale = finite.size > 0 and finite.min() > 0
    n_seeds = len(run.result["seeds"])
    for i, o in enumerate(run.oracles):
        colour = oracle_colour(o, i)
        xs = _x_values(run, o, x)
        med, lo, hi = _band(run.series[o]["cost"])
        failed = sum(s != "ok" for s in run.result["oracles"][o]["status"])
        label = o + (f" ({failed}/{n_seeds} seeds stopped)" if failed else "")
        ax.plot(xs, med, color=colour, lw=1.8, label=label)
        ax.fill_between(xs, lo, hi, color=colour, alpha=0.2, lw=0)
    if log_scale:
        ax.set_yscale("log")
    ax.set_ylabel("cost f(U)" + (" (log scale)" if log_scale else ""))
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(title=f"median, IQR band over {n_seeds} seeds", fontsize=9, title_fontsize=9)
    ax.set_title(run.result.get("title", run.result.get("problem", "")), fontsize=11)
    if with_alpha:
        ax2 = axes[1, 0]
        for i, o in enumerate(run.oracles):
            if o not in with_alpha:
                continue
            colour = oracle_colour(o, run.oracles.index(o))
            med, lo, hi = _band(run.series[o]["alpha"])
            xs = _x_values(run, o, x)
            ax2.plot(xs, med, color=colour, lw=1.4, label=o)
            ax2.fill_between(xs, lo, hi, color=colour, alpha=0.2, lw=0)
        ax2.set_ylim(-0.05, 1.05)
        ax2.set_ylabel("alpha (weight on FoBG)")
        ax2.grid(True, alpha=0.25)
        ax2.legend(fontsize=8, loc="best")
    axes[-1, 0].set_xlabel(X_AXES[x])
    fig.tight_layout()
    return fig


def save_figure(fig, path: Path, dpi: int = 150) -> None:
    """Save a figure atomically (PNG or any format matplotlib knows, by extension), and close it."""
    from trajopt.runs import atomic_write_bytes

    atomic_write_bytes(Path(path), figure_bytes(fig, Path(path).suffix.lstrip(".") or "png", dpi))


def variance_figure(run: Run, x: str = "iterations"):
    """Per-sample trace variances (FoBG and ZoBG batches) and the bias gap B along the run, log axes."""
    fields = [("var_first", "FoBG variance  σ̂₁²"), ("var_zero", "ZoBG variance  σ̂₀²"), ("bias_gap", "bias gap B")]
    shown = [(f, label) for f, label in fields if any(np.isfinite(run.series[o][f]).any() for o in run.oracles)]
    if not shown:
        return None
    fig, axes = plt.subplots(len(shown), 1, figsize=(7.0, 2.3 * len(shown) + 0.6), sharex=True, squeeze=False)
    for ax, (f, label) in zip(axes[:, 0], shown):
        for i, o in enumerate(run.oracles):
            values = run.series[o][f]
            if not np.isfinite(values).any():
                continue
            med, lo, hi = _band(values)
            xs = _x_values(run, o, x)
            ax.plot(xs, med, color=oracle_colour(o, i), lw=1.4, label=o)
            ax.fill_between(xs, lo, hi, color=oracle_colour(o, i), alpha=0.2, lw=0)
        finite = np.concatenate([run.series[o][f][np.isfinite(run.series[o][f])] for o in run.oracles])
        if finite.size and finite.min() > 0:
            ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel(X_AXES[x])
    fig.tight_layout()
    return fig


def best_seed_index(run: Run, oracle: str) -> int:
    """Index (into the seeds list) of the oracle's seed with the lowest final cost."""
    finals = np.array([np.inf if v is None else v for v in run.result["oracles"][oracle]["final_cost"]], float)
    return int(np.argmin(np.where(np.isfinite(finals), finals, np.inf)))


def trajectory_figure(run: Run, state_names=None):
    """States and controls of each oracle's best seed (time-stepped problems), or the final decision of every
    seed per oracle (one-step problems)."""
    traj = run.trajectories()
    has_states = any(k.endswith("/X") for k in traj)
    if not has_states:
        fig, ax = plt.subplots(figsize=(7.0, 2.8))
        for i, o in enumerate(run.oracles):
            U = traj[f"{o}/U"].reshape(len(run.result["seeds"]), -1)
            for j in range(U.shape[1]):
                ax.scatter(U[:, j], np.full(U.shape[0], i) + 0.08 * j, color=oracle_colour(o, i), s=18, alpha=0.7)
        ax.set_yticks(range(len(run.oracles)), run.oracles)
        ax.set_xlabel("final decision θ (each seed)")
        ax.grid(True, alpha=0.25)
        fig.tight_layout()
        return fig
    X0 = traj[f"{run.oracles[0]}/X"]
    U0 = traj[f"{run.oracles[0]}/U"]
    n, m = X0.shape[-1], U0.shape[-1]
    panels = n + m
    cols = 2 if panels > 3 else 1
    rows = int(np.ceil(panels / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(7.0 if cols == 1 else 10.0, 1.9 * rows + 0.8), squeeze=False,
                             sharex=True)
    names = list(state_names or [f"x[{i}]" for i in range(n)]) + [f"u[{j}]" for j in range(m)]
    for i, o in enumerate(run.oracles):
        s = best_seed_index(run, o)
        X, U = traj[f"{o}/X"][s], traj[f"{o}/U"][s]
        seed = run.result["seeds"][s]
        for p in range(panels):
            ax = axes[p // cols, p % cols]
            if p < n:
                ax.plot(np.arange(X.shape[0]), X[:, p], color=oracle_colour(o, i), lw=1.3, label=f"{o} (seed {seed})")
            else:
                ax.step(np.arange(U.shape[0]), U[:, p - n], where="post", color=oracle_colour(o, i), lw=1.1)
    goal = run.config.get("task", {}).get("goal")
    for p in range(panels):
        ax = axes[p // cols, p % cols]
        ax.set_ylabel(names[p], fontsize=9)
        ax.grid(True, alpha=0.25)
        if goal is not None and p < n:
            ax.axhline(goal[p], color="k", lw=0.8, ls=":")
    for p in range(panels, rows * cols):
        axes[p // cols, p % cols].axis("off")
    for c in range(cols):
        axes[-1, c].set_xlabel("time step")
    axes[0, 0].legend(fontsize=8, title="best seed (dotted: goal)", title_fontsize=8)
    fig.tight_layout()
    return fig


def figure_bytes(fig, fmt: str = "png", dpi: int = 110) -> bytes:
    """A figure encoded as bytes (and closed)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def _variance_source(oracles: list[str], preferred: str, has_field) -> str | None:
    """The oracle whose batches to show for a variance: the single estimator itself if it ran, else the
    first mixing oracle that reports that variance (its batches are the same estimator's)."""
    if preferred in oracles and has_field(preferred):
        return preferred
    return next((o for o in oracles if has_field(o)), None)


def sweep_figure(rows: list[dict], key: str, title: str = ""):
    """Estimator statistics against a swept parameter: trace variances of FoBG and ZoBG (log-log, median and IQR
    over repeats) and, below, the alpha each adaptive oracle would choose."""
    values = sorted({r["value"] for r in rows})
    by = {(r["oracle"], r["value"]): r for r in rows}
    oracles = list(dict.fromkeys(r["oracle"] for r in rows))
    adaptive = [o for o in oracles if any(np.isfinite(by[(o, v)].get("alpha_median", np.nan)) for v in values
                                          if (o, v) in by) and o not in ("fixed_alpha",)]
    series = [("fobg", "var_first", "FoBG per-sample variance σ̂₁²"), ("zobg", "var_zero", "ZoBG per-sample variance σ̂₀²")]
    fig, axes = plt.subplots(2 if adaptive else 1, 1, figsize=(7.0, 6.4 if adaptive else 4.2), sharex=True,
                             squeeze=False, gridspec_kw={"height_ratios": [3, 1.5][: 2 if adaptive else 1]})
    ax = axes[0, 0]
    for i, (oracle, field, label) in enumerate(series):
        source = _variance_source(oracles, oracle, lambda o, field=field: f"{field}_median" in by.get((o, values[0]), {}))
        if source is None:
            continue
        pts = [(v, by[(source, v)].get(f"{field}_median", np.nan), by[(source, v)].get(f"{field}_q25", np.nan),
                by[(source, v)].get(f"{field}_q75", np.nan)) for v in values if (source, v) in by]
        xs, med, lo, hi = (np.array(c, float) for c in zip(*pts))
        colour = oracle_colour(oracle, i)
        shown = med > 0
        ax.plot(xs[shown], med[shown], "o-", color=colour, lw=1.6, ms=4, label=label)
        ax.fill_between(xs, np.where(lo > 0, lo, np.nan), np.where(hi > 0, hi, np.nan), color=colour, alpha=0.2, lw=0)
        zero = ~shown & np.isfinite(med)
        if zero.any():
            ax.plot(xs[zero], np.full(zero.sum(), np.nan), "x", color=colour)
            for xv in xs[zero]:
                ax.axvline(xv, color=colour, lw=0.6, ls=":", alpha=0.6)
            ax.plot([], [], ":", color=colour, label=f"{oracle}: empirical variance 0 (median) at dotted values")
    ax.set_xscale("log" if min(values) > 0 else "linear")
    ax.set_yscale("log")
    ax.set_ylabel("per-sample trace variance")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, title="median and IQR over repeats", title_fontsize=8)
    ax.set_title(title, fontsize=11)
    if adaptive:
        ax2 = axes[1, 0]
        for i, o in enumerate(adaptive):
            pts = [(v, by[(o, v)].get("alpha_median", np.nan), by[(o, v)].get("alpha_q25", np.nan),
                    by[(o, v)].get("alpha_q75", np.nan)) for v in values if (o, v) in by]
            xs, med, lo, hi = (np.array(c, float) for c in zip(*pts))
            ax2.plot(xs, med, "o-", color=oracle_colour(o, oracles.index(o)), lw=1.4, ms=3, label=o)
            ax2.fill_between(xs, lo, hi, color=oracle_colour(o, oracles.index(o)), alpha=0.2, lw=0)
        ax2.set_ylim(-0.05, 1.05)
        ax2.set_ylabel("α (weight on FoBG)")
        ax2.grid(True, alpha=0.25)
        ax2.legend(fontsize=8)
    axes[-1, 0].set_xlabel(key)
    fig.tight_layout()
    return fig


def landscape_figure(data: dict, oracles: list[str], sigma: float, marks: dict | None = None, title: str = ""):
    """Fig. 2 / Fig. 7 of the paper along a 1-D decision: f and F; the gradient estimates' means with a band of
    one standard deviation over repeats; their per-sample variances; the alpha of each adaptive oracle.
    ``marks``: {"start": theta0, oracle: [final thetas of a run]} drawn on the f/F panel."""
    theta = data["theta"]
    adaptive = [o for o in oracles if f"{o}/alpha" in data and o != "fixed_alpha"]
    has_var = any(f"{o}/var_first" in data or f"{o}/var_zero" in data for o in oracles)
    n = 2 + int(has_var) + int(bool(adaptive))
    fig, axes = plt.subplots(n, 1, figsize=(7.0, 2.3 * n + 0.6), sharex=True, squeeze=False)
    ax = axes[0, 0]
    ax.plot(theta, data["f"], color="k", lw=1.0, label="f(θ)")
    ax.plot(theta, data["F"], color="#555", lw=1.6, ls="--", label=f"F(θ) = E f(θ + w), σ = {sigma:g}")
    if marks:
        f_at = lambda t: np.interp(t, theta, data["f"])  # noqa: E731
        if "start" in marks:
            ax.plot([marks["start"]], [f_at(marks["start"])], "^", color="k", ms=8, label="start")
        for i, o in enumerate(oracles):
            if o in marks:
                pts = np.asarray(marks[o], float)
                ax.plot(pts, f_at(pts), "*", color=oracle_colour(o, i), ms=10, alpha=0.7, label=f"{o} final")
    ax.set_ylabel("cost")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.25)
    ax.set_title(title, fontsize=11)
    ax = axes[1, 0]
    for i, o in enumerate(oracles):
        mean, std = data[f"{o}/grad_mean"], data[f"{o}/grad_std"]
        ax.plot(theta, mean, color=oracle_colour(o, i), lw=1.3, label=o)
        ax.fill_between(theta, mean - std, mean + std, color=oracle_colour(o, i), alpha=0.2, lw=0)
    ax.plot(theta, np.gradient(data["F"], theta), color="#555", lw=1.0, ls="--", label="dF/dθ (numerical)")
    ax.set_ylabel("gradient estimate\n(mean ± 1 std over repeats)")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.25)
    row = 2
    if has_var:
        ax = axes[row, 0]
        for field, preferred, ls, label in (("var_first", "fobg", "-", "FoBG σ̂₁²"), ("var_zero", "zobg", "--", "ZoBG σ̂₀²")):
            source = _variance_source(oracles, preferred, lambda o, field=field: f"{o}/{field}" in data)
            if source is not None:
                v = data[f"{source}/{field}"]
                ax.plot(theta, np.where(v > 0, v, np.nan), ls, color=oracle_colour(preferred, 0), lw=1.2,
                        label=f"{label} ({source})")
        ax.set_yscale("log")
        ax.set_ylabel("per-sample variance\n(blank where 0)")
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.25)
        row += 1
    if adaptive:
        ax = axes[row, 0]
        for o in adaptive:
            ax.plot(theta, data[f"{o}/alpha"], color=oracle_colour(o, oracles.index(o)), lw=1.3, label=o)
        ax.set_ylim(-0.05, 1.05)
        ax.set_ylabel("α (median)")
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.25)
    axes[-1, 0].set_xlabel("θ")
    fig.tight_layout()
    return fig
