"""The `trajopt diagnose` figure: per-time-step gradient variance of the FoBG and ZoBG batches.

Drawn from `trajopt.diagnostics.summarise` dicts (no run folder needed) as a `matplotlib.figure.Figure`; save
with `trajopt.plots.save_figure`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from trajopt.plots import _figure, oracle_colour, set_title


def step_variance_figure(locations: Sequence[tuple[str, dict]], title: str = ""):
    """One panel per location: the per-sample variance of the gradient at each time step t (summed over the
    controls of step t) for the FoBG and ZoBG batches: the mean over repeats (line) and the interquartile
    range over repeats (band: what one batch sees), log axis (symmetric-log where a variance is exactly 0).

    Args:
        locations: (label, summary) pairs, summary from `trajopt.diagnostics.summarise`.
        title: the figure title.

    Returns: a matplotlib Figure.
    """
    n = len(locations)
    fig, axes = _figure(n, 2.6 * n + 0.7, sharex=True)
    for ax, (label, summary) in zip(axes[:, 0], locations):
        means = []
        for key, name, shown in (("step_var_first", "fobg", "FoBG"), ("step_var_zero", "zobg", "ZoBG")):
            band = summary[key]
            mean = np.asarray(band["mean"], float)
            low, high = np.asarray(band["q25"], float), np.asarray(band["q75"], float)
            t = np.arange(mean.size)
            colour = oracle_colour(name, 0)
            total = summary[key.replace("step_", "")]["mean"]
            ax.plot(t, mean, color=colour, lw=1.4, marker="o" if mean.size <= 3 else None,
                    label=f"{shown}  (trace σ̂² = {total:.3g})")
            ax.fill_between(t, low, high, color=colour, alpha=0.2, lw=0)
            means.append(mean)
        means = np.concatenate(means)
        positive = means[means > 0]
        if positive.size == means.size and means.size:
            ax.set_yscale("log")
        elif positive.size:  # an exactly-zero FoBG (a plateau) stays visible on a symmetric-log axis
            ax.set_yscale("symlog", linthresh=float(positive.min()))
        ax.set_ylabel("per-step variance")
        ax.set_title(label, fontsize=9, loc="left")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("time step t")
    if title:
        set_title(fig, title, 10)
    fig.tight_layout()
    return fig
