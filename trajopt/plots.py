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
ORACLE_COLOURS = {"fobg": "#d62728", "zobg": "#1f77b4", "aobg": "#2ca02c", "exact": "#7f7f7f"}
_PALETTE = ["#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
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
    """Save a figure atomically (PNG or any format matplotlib knows, by extension)."""
    import io

    from trajopt.runs import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format=Path(path).suffix.lstrip(".") or "png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
