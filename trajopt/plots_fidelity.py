"""The `trajopt fidelity` figure: each oracle's gradient error against the time step.

Drawn from the rows `trajopt fidelity` writes (fidelity.json's ``rows``) as a `matplotlib.figure.Figure`; save with
`trajopt.plots.save_figure`. A fidelity study draws the same figure per problem from its table's rows
(`trajopt.studies.figures.fidelity_figures`), against its grid's axis.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from trajopt.plots import _new_figure, oracle_colour, plain, set_title

REFERENCES = {"fd": "vs finite differences at the same time step", "fine": "vs the exact gradient at the fine time step"}


def fidelity_figure(rows: Sequence[Mapping], oracles: Sequence[str], title: str = "", x: str = "timestep",
                    xlabel: str = "time step (s)"):
    """Relative error |g - r| / |r| (median over repeats, line; interquartile range, band) against the time step
    (log-log), one line per oracle; one column per reference present (finite differences at the cell's own step,
    the fine-step exact gradient), one row per stiffness (solref) and point. A cell whose finite-difference
    reference failed its check is drawn with a hollow marker in the first column. The ``fd`` reference itself
    appears in the second column as a dashed black line: how far the cell's own true derivative is from the
    fine-step one (the discretisation's share of every oracle's error).

    Args:
        rows: dicts with keys point, solref, timestep, oracle, fd_trusted and rel_fd / rel_fine {median, q25, q75}.
        oracles: the oracles, in legend order.
        title: the figure title.
        x, xlabel: the rows' key drawn on the x axis (log scale where all its values are > 0) and its label.
    """
    groups = sorted({(str(r["point"]), str(r["solref"])) for r in rows}, key=lambda g: (g[0], g[1]))
    refs = [k for k in REFERENCES if any(f"rel_{k}" in r for r in rows)] or ["fd"]
    fig = _new_figure(figsize=(5.2 * len(refs), 3.0 * len(groups) + 0.8))
    axes = fig.subplots(len(groups), len(refs), squeeze=False)
    for gi, (point, solref) in enumerate(groups):
        cell_rows = [r for r in rows if str(r["point"]) == point and str(r["solref"]) == solref]
        for ci, ref in enumerate(refs):
            ax = axes[gi, ci]
            names = list(oracles) + (["fd"] if ref == "fine" else [])
            for i, name in enumerate(names):
                mine = sorted((r for r in cell_rows if r["oracle"] == name and f"rel_{ref}" in r),
                              key=lambda r: r[x])
                if not mine:
                    continue
                h = np.array([r[x] for r in mine], float)
                med = np.array([r[f"rel_{ref}"]["median"] for r in mine], float)
                lo = np.array([r[f"rel_{ref}"]["q25"] for r in mine], float)
                hi = np.array([r[f"rel_{ref}"]["q75"] for r in mine], float)
                colour = "black" if name == "fd" else oracle_colour(name, i)
                style = "--" if name == "fd" else "-"
                ax.plot(h, med, style, color=colour, lw=1.4, label=name if name != "fd" else "fd (the cell's own)")
                if np.any(hi > lo):
                    ax.fill_between(h, lo, hi, color=colour, alpha=0.15, lw=0)
                trusted = np.array([bool(r.get("fd_trusted", True)) for r in mine])
                shown = trusted if ref == "fd" else np.ones_like(trusted)
                ax.plot(h[shown], med[shown], "o", color=colour, ms=4)
                ax.plot(h[~shown], med[~shown], "o", mfc="none", color=colour, ms=6)
            if all(float(r[x]) > 0 for r in cell_rows):
                ax.set_xscale("log")
            if np.any([r.get(f"rel_{ref}", {}).get("median", np.nan) > 0 for r in cell_rows]):
                ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("relative error |g − r| / |r|")
            ax.grid(True, which="both", alpha=0.3)
            ax.set_title(plain(f"{REFERENCES[ref]}" + (f"\nsolref {solref}" if solref != "model" else "")
                               + (f", {point}" if len(groups) > 1 and point != "U0" else "")), fontsize=9)
            if gi == 0 and ci == len(refs) - 1:
                ax.legend(fontsize=8)
    if title:
        set_title(fig, title, 10)
    fig.tight_layout()
    return fig
