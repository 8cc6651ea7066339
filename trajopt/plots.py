"""Figures, built in memory as `matplotlib.figure.Figure` objects from results (`trajopt.result.Result`, one per
variant). The library never switches matplotlib's backend and never touches pyplot's global state: figures are
made with ``Figure()`` directly and written by the caller (`save_figure`, the CLI) or shown by a notebook.

`convergence_figure`: the noise-free cost on a log axis (linear when a cost is <= 0) against iterations,
simulator rollouts, backward passes, compute (forward-step equivalents, `trajopt.compute`) or run seconds; per
variant the median across seeds with an interquartile band; a second panel with alpha for the variants that choose
one.

A history may be larger than memory (a file mapped into memory, `trajopt.runs.DiskHistory`): figures read it a
block of iterations at a time, and a curve of more than `MAX_POINTS` iterates is drawn at `MAX_POINTS` of them,
evenly strided, the first and the last included (`plot_columns`); a shorter one is drawn at every iterate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from trajopt.runs_files import atomic_write_bytes
from trajopt.result import Result
from trajopt.stats import column_blocks, nan_band_columns

MAX_POINTS = 4000  # iterates drawn per curve, at most

# Colours for variants that are not a registered oracle or method, by position.
_PALETTE = ["#bcbd22", "#393b79", "#8c6d31", "#843c39", "#7b4173", "#637939", "#00a087", "#e6550d", "#31a354",
            "#756bb1", "#636363", "#9c9ede"]
X_AXES = {"iterations": "iteration", "rollouts": "simulator rollouts (per seed)",
          "gradients": "backward passes (per seed)", "seconds": "run seconds (compile excluded)",
          "compute": "compute (forward-step equivalents per seed)"}
COUNT_AXES = ("rollouts", "gradients", "compute")  # drawn symmetric-log when they span more than two decades


def _new_figure(**kwargs):
    """A `matplotlib.figure.Figure`; matplotlib is imported on first use, so importing this module is light."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def warm_up() -> None:
    """Import matplotlib's figure and Agg modules and build its maths-text parser (a log axis labels its ticks
    in maths text, and the first parse builds a grammar: about 0.2 s), so that the first figure does not wait
    for them. The CLI calls it on a worker thread while the compiled loops run; it draws nothing and changes no
    setting, and calling it again costs nothing."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401 - imported for its cost
    from matplotlib.figure import Figure  # noqa: F401
    from matplotlib.mathtext import MathTextParser

    MathTextParser("agg").parse("$10^{3}$", dpi=72)


def plain(text: str) -> str:
    """User text shown literally in a figure: ``$`` would start matplotlib's maths mode (and a malformed formula
    fails when the figure is drawn), so it is escaped."""
    return str(text).replace("$", r"\$")


def set_title(target, title: str, fontsize: float) -> None:
    """A figure's (``suptitle``) or an axes' title from user text: escaped (`plain`) and wrapped to the width it
    has, so that a long title (the problem and every --set override) is never clipped at the figure's edge."""
    import textwrap

    fig = getattr(target, "figure", None) or target
    width = fig.get_figwidth() * (target.get_position().width if hasattr(target, "get_position") else 0.95)
    chars = max(20, int(width * 72 / (0.6 * fontsize)))  # an average glyph is about 0.6 em wide
    text = "\n".join(textwrap.fill(line, chars) for line in plain(title).split("\n"))
    (target.set_title if hasattr(target, "set_title") else target.suptitle)(text, fontsize=fontsize)


def registered_colour(name: str) -> Optional[str]:
    """The colour an oracle or method class declares for itself (``colour``), or None."""
    from trajopt.methods import METHODS
    from trajopt.oracles import ORACLES

    for registry in (ORACLES, METHODS):
        if name in registry:
            return getattr(registry.get(name), "colour", None)
    return None


def variant_colours(names: Sequence[str]) -> dict[str, str]:
    """One colour per variant, the same in every figure of a run: a variant named after a registered oracle or
    method takes that one's colour, the others take the palette in order (never a colour already used)."""
    colours: dict[str, str] = {}
    for n in names:
        c = registered_colour(n)
        if c is not None and c not in colours.values():  # two that registered one colour (cfd, fixed_alpha): the first
            colours[n] = c
    spare = [c for c in _PALETTE if c not in colours.values()]
    for n in names:
        if n not in colours:
            colours[n] = spare.pop(0) if spare else _PALETTE[len(colours) % len(_PALETTE)]
    return colours


def oracle_colour(name: str, index: int) -> str:
    """The colour of one oracle (or variant) shown alone: its registered colour, else the palette at ``index``."""
    return registered_colour(name) or _PALETTE[index % len(_PALETTE)]


def _chooses_alpha(name: str) -> bool:
    """Whether a registered oracle chooses its own α (user oracles: when they report one)."""
    from trajopt.oracles import ORACLES

    return getattr(ORACLES.get(name), "chooses_alpha", True) if name in ORACLES else True


def x_values(result: Result, x: str, step_costs=None) -> np.ndarray:
    """[K+1] the x coordinate of iterate k: its index, the simulator calls spent before it, the forward-step
    equivalents spent before it (``compute``: `Result.forward_equivalents` with ``step_costs``, else the run's
    own) or run seconds."""
    if x == "iterations":
        return np.arange(result.iterations + 1)
    if x in ("rollouts", "gradients"):
        return result.counts(x)
    if x == "compute":
        return result.forward_equivalents(step_costs)
    if x == "seconds":
        return result.iteration_seconds()
    raise ValueError(f"x must be one of {', '.join(X_AXES)}, not {x!r}")


def plot_columns(n: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """[P] the indices a curve of ``n`` points is drawn at: all of them when ``n <= max_points``, else
    ``max_points`` evenly strided ones, always the first and the last."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(np.intp))


DRAWN_CEILING = 1e200
"""The largest cost a convergence curve is drawn at: a diverged run's costs (up to the float maximum, 1e308) are
drawn at this ceiling, and its legend entry says so. matplotlib's axis limits and log ticks overflow near the
float maximum (it then drew no curve at all, nor the other variants'); the recorded costs are untouched."""


def _capped(band) -> tuple[tuple, bool]:
    """(med, lo, hi) with each finite entry above `DRAWN_CEILING` drawn at it, and whether any was."""
    arrays = [np.asarray(v, float) for v in band]
    over = any(bool(np.any(a[np.isfinite(a)] > DRAWN_CEILING)) for a in arrays)
    return tuple(np.where(np.isfinite(a) & (a > DRAWN_CEILING), DRAWN_CEILING, a) for a in arrays), over


def _finite_min(values) -> Optional[float]:
    """The smallest finite entry of ``values`` ([S, K, ...], read in blocks of iterations), None if there is none."""
    low = None
    for cols in column_blocks(values):
        block = np.asarray(values[:, cols], float)
        block = block[np.isfinite(block)]
        if block.size:
            low = block.min() if low is None else min(low, block.min())
    return low


def _any_finite(values) -> bool:
    """Whether ``values`` ([S, K, ...], read in blocks of iterations) has a finite entry."""
    return any(np.isfinite(np.asarray(values[:, cols], float)).any() for cols in column_blocks(values))


def _figure(rows: int, height: float, width: float = 7.0, **kwargs):
    fig = _new_figure(figsize=(width, height))
    axes = fig.subplots(rows, 1, squeeze=False, **kwargs)
    return fig, axes


def _wide_range(values: Sequence[np.ndarray]) -> bool:
    """Whether positive x values span more than two decades (rollouts of CEM beside an exact gradient's)."""
    pos = np.concatenate([v[v > 0] for v in values]) if values else np.zeros(0)
    return pos.size > 0 and pos.max() / pos.min() > 100


def convergence_figure(results: Mapping[str, Result], x: Union[str, Sequence[str]] = "iterations", title: str = "",
                       labels: Optional[Mapping[str, str]] = None, step_costs=None):
    """The convergence figure of several variants' results on one problem; returns a Figure.

    Args:
        results: {variant name: Result}, in legend order (all with the same seeds).
        x: "iterations", "rollouts", "gradients", "compute" (forward-step equivalents, `trajopt.compute`) or
            "seconds", or several of them (one column each, e.g. ``("iterations", "rollouts")``). A count axis
            spanning more than two decades is drawn symmetric-log (linear near 0, so the start shows).
        title: the figure's title (the caller states the configuration: problem, overrides).
        labels: {variant name: legend entry} (default: the names); the CLI and `trajopt report` give each
            variant's method ("tuned_fobg: fobg + adam 0.2 cosine, σ geometric to 0.0003", `trajopt.runs.legend_labels`).
        step_costs: the `trajopt.compute.StepCosts` the ``compute`` axis converts with (default: each result's own,
            those its run was given; a ValueError when a result has none).
    """
    axes_x = [x] if isinstance(x, str) else list(x)
    for a in axes_x:
        if a not in X_AXES:
            raise ValueError(f"x must be one of {', '.join(X_AXES)}, not {a!r}")
    names = list(results)
    labels = dict(labels or {})
    colours = variant_colours(names)
    with_alpha = [o for o in names if "alpha" in results[o].history and _any_finite(results[o].history["alpha"])]
    rows, cols = (2 if with_alpha else 1), len(axes_x)
    fig = _new_figure(figsize=(7.0 * cols if cols == 1 else 6.0 * cols, 4.2 + 2.2 * (rows - 1)))
    axes = fig.subplots(rows, cols, squeeze=False, sharex="col", gridspec_kw={"height_ratios": [3, 1.4][:rows]})
    lows = [low for low in (_finite_min(results[o].cost) for o in names) if low is not None]
    log_scale = bool(lows) and min(lows) > 0
    n_seeds = len(next(iter(results.values())).seeds)
    shown = {o: plot_columns(results[o].iterations + 1) for o in names}  # [P] the iterates each curve is drawn at
    bands = {o: nan_band_columns(results[o].cost, shown[o]) for o in names}
    for c, xa in enumerate(axes_x):
        ax = axes[0, c]
        xs_all = {o: x_values(results[o], xa, step_costs) for o in names}  # [K+1], every iterate (range and scale)
        drawn = {}
        for o in names:
            r = results[o]
            (med, lo, hi), capped = _capped(bands[o])
            xs = xs_all[o][shown[o]]
            failed = sum(s != "ok" for s in r.status)
            label = plain(labels.get(o, o)) + (f" ({failed}/{n_seeds} seeds stopped)" if failed else "")
            label += f" (costs above {DRAWN_CEILING:.0e} drawn at it)" if capped else ""
            # a curve that coincides with one already drawn (AoBG at alpha = 1 is FoBG) is dashed and says so
            same = next((p for p, (px, pm) in drawn.items() if px.shape == xs.shape and np.array_equal(px, xs)
                         and np.array_equal(pm, med, equal_nan=True) and _same_curve(results[p], r, xs_all[p], xs_all[o])),
                        None)
            drawn[o] = (xs, med)
            if same is not None:
                label += f" (same curve as {plain(same)})"
            ax.plot(xs, med, color=colours[o], lw=1.8, ls="--" if same is not None else "-", label=label)
            ax.fill_between(xs, lo, hi, color=colours[o], alpha=0.2, lw=0)
        if log_scale:
            ax.set_yscale("log")
        symlog = xa in COUNT_AXES and _wide_range(list(xs_all.values()))
        if symlog:
            smallest = min(v[v > 0].min() for v in xs_all.values() if (v > 0).any())
            ax.set_xscale("symlog", linthresh=smallest)
            ax.set_xlim(left=0)  # counts are >= 0: the autoscaled margin would open a negative decade or more
        elif xa == "iterations":  # whole iterations only: two of them drew ticks at 0.25, 0.5, ...
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, which="both", alpha=0.25)
        if c == 0:
            ax.set_ylabel("cost f(U)" + (" (log scale)" if log_scale else ""))
            long = len(names) > 6 or any(len(t) > 32 for t in labels.values())
            ax.legend(title=f"median, IQR band over {n_seeds} seed{'s' if n_seeds != 1 else ''}", fontsize=8 if long else 9,
                      title_fontsize=9)
        if with_alpha:
            ax2 = axes[1, c]
            for o in with_alpha:
                r = results[o]
                at = plot_columns(r.iterations)
                med, lo, hi = nan_band_columns(r.history["alpha"], at)
                xs = xs_all[o][: r.iterations][at]
                ax2.plot(xs, med, color=colours[o], lw=1.4, label=plain(o))
                ax2.fill_between(xs, lo, hi, color=colours[o], alpha=0.2, lw=0)
            ax2.set_ylim(-0.05, 1.05)
            ax2.grid(True, alpha=0.25)
            if c == 0:
                ax2.set_ylabel("alpha (weight on FoBG)")
                ax2.legend(fontsize=8, loc="best")
        label = x_label(xa, results, step_costs) + (" (symmetric log)" if symlog else "")
        # a long label (the step costs it states) takes two lines rather than run past the figure's edge
        axes[-1, c].set_xlabel(label if len(label) < 90 else label.replace(" (", "\n(", 1))
    if cols == 1:
        set_title(axes[0, 0], title, 11)
    else:
        set_title(fig, title, 11)
    fig.tight_layout()
    return fig


def x_label(x: str, results: Mapping[str, Result], step_costs=None) -> str:
    """The x axis's label; for ``compute`` it states the step costs that converted the counts (the given
    ``step_costs``, else the runs' own: a figure against forward-step equivalents says which ρ_b and ρ_l made it)."""
    if x != "compute":
        return X_AXES[x]
    costs = {(c.backward, c.linearization, c.oracles) for c in
             ([step_costs] if step_costs is not None else [r.step_costs for r in results.values()]) if c is not None}
    if len(costs) != 1:
        return X_AXES[x]
    rb, rl, own = costs.pop()
    # an oracle charged its own backward ratio (cfd's) says so too
    charged = sorted({n for r in results.values() if (n := r.oracle_name) in dict(own)})
    extra = "".join(f", ρ_{n} = {dict(own)[n]:.3g}" for n in charged)
    return f"forward-step equivalents per seed (ρ_b = {rb:.3g}, ρ_l = {rl:.3g}{extra})"


def _same_curve(a: Result, b: Result, xa: np.ndarray, xb: np.ndarray) -> bool:
    """Whether two results' median cost curves coincide at every iterate (checked at full resolution when the
    figure draws them strided: equal at the drawn points is not enough)."""
    if a.iterations + 1 <= MAX_POINTS:
        return True  # every iterate is drawn: the caller compared them all
    return np.array_equal(xa, xb) and np.array_equal(nan_band_columns(a.cost, quartiles=False)[0],
                                                     nan_band_columns(b.cost, quartiles=False)[0], equal_nan=True)


def save_figure(fig, path: Path, dpi: int = 150) -> None:
    """Save a figure atomically (PNG or any format matplotlib knows, by extension), and close it."""
    atomic_write_bytes(Path(path), figure_bytes(fig, Path(path).suffix.lstrip(".") or "png", dpi))


def _history(r: Result, field: str) -> Optional[np.ndarray]:
    """[S, K] the field's history, or None when it has no finite entry (or the result has no such field)."""
    values = r.history.get(field)
    return values if values is not None and _any_finite(values) else None


def variance_figure(results: Mapping[str, Result], x: str = "iterations", title: str = "", step_costs=None):
    """Per-sample trace variances (FoBG and ZoBG batches) and the bias gap B along the run, log axes; None when
    no variant reports them."""
    names = list(results)
    colours = variant_colours(names)
    fields = [("var_first", "FoBG variance  σ̂₁²"), ("var_zero", "ZoBG variance  σ̂₀²"), ("bias_gap", "bias gap B")]
    present = {(o, f): _history(results[o], f) for o in names for f, _ in fields}
    shown = [(f, label) for f, label in fields if any(present[(o, f)] is not None for o in names)]
    if not shown:
        return None
    fig, axes = _figure(len(shown), 2.3 * len(shown) + 0.6, sharex=True)
    for ax, (f, label) in zip(axes[:, 0], shown):
        lows = []
        for o in names:
            values = present[(o, f)]
            if values is None:
                continue
            at = plot_columns(results[o].iterations)
            med, lo, hi = nan_band_columns(values, at)
            xs = x_values(results[o], x, step_costs)[: results[o].iterations][at]
            ax.plot(xs, med, color=colours[o], lw=1.4, label=plain(o))
            ax.fill_between(xs, lo, hi, color=colours[o], alpha=0.2, lw=0)
            lows.append(_finite_min(values))
        if lows and min(lows) > 0:
            ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=8)
    set_title(axes[0, 0], title, 11)
    axes[-1, 0].set_xlabel(x_label(x, results, step_costs))
    fig.tight_layout()
    return fig


def best_seed_index(result: Result) -> int:
    """Index (into the seeds) of the result's seed with the lowest final cost."""
    finals = np.asarray(result.final_cost, float)
    return int(np.argmin(np.where(np.isfinite(finals), finals, np.inf)))


def trajectory_figure(results: Mapping[str, Result], state_names=None, control_names=None, goal=None, title: str = "",
                      system=None):
    """States and controls of each variant's best seed (time-stepped problems), or the final decision of every
    seed per variant (one-step problems). ``goal``: [n] drawn dotted on the state panels.

    Panel labels: ``state_names`` [n] / ``control_names`` [m] when given, else the ``system``'s own
    (`trajopt.systems.state_names` / `control_names`), else "x0".."x{n-1}" / "u0".."u{m-1}" (the names a
    system without names has)."""
    names = list(results)
    colours = variant_colours(names)
    first = results[names[0]]
    if first.X is None:
        fig, axes = _figure(1, 2.8)
        ax = axes[0, 0]
        for i, o in enumerate(names):
            U = np.asarray(results[o].U).reshape(len(results[o].seeds), -1)
            for j in range(U.shape[1]):
                ax.scatter(U[:, j], np.full(U.shape[0], i) + 0.08 * j, color=colours[o], s=18, alpha=0.7)
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("final decision θ (each seed)")
        ax.grid(True, alpha=0.25)
        set_title(ax, title, 11)
        fig.tight_layout()
        return fig
    n, m = first.X.shape[-1], first.U.shape[-1]
    panels = n + m
    cols = 2 if panels > 3 else 1
    rows = int(np.ceil(panels / cols))
    fig = _new_figure(figsize=(7.0 if cols == 1 else 10.0, 1.9 * rows + 0.8))
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    from trajopt.systems import base

    if system is not None and int(system.state_size) == n and int(system.control_size) == m:
        state_names = state_names or base.state_names(system)
        control_names = control_names or base.control_names(system)
    labels = list(state_names or base.default_names("x", n)) + list(control_names or base.default_names("u", m))
    for o in names:
        r = results[o]
        s = best_seed_index(r)
        X, U = r.X[s], r.U[s]
        seed = int(r.seeds[s])
        for p in range(panels):
            ax = axes[p // cols, p % cols]
            if p < n:
                ax.plot(np.arange(X.shape[0]), X[:, p], color=colours[o], lw=1.3, label=f"{o} (seed {seed})")
            else:
                ax.step(np.arange(U.shape[0]), U[:, p - n], where="post", color=colours[o], lw=1.1)
    for p in range(panels):
        ax = axes[p // cols, p % cols]
        ax.set_ylabel(labels[p], fontsize=9)
        ax.grid(True, alpha=0.25)
        if goal is not None and p < n:
            ax.axhline(goal[p], color="k", lw=0.8, ls=":")
    for p in range(panels, rows * cols):
        axes[p // cols, p % cols].axis("off")
    for c in range(cols):
        axes[-1, c].set_xlabel("time step")
    axes[0, 0].legend(fontsize=8, title="best seed (dotted: goal)", title_fontsize=8)
    if title:
        set_title(fig, title, 11)
    fig.tight_layout()
    return fig


def figure_bytes(fig, fmt: str = "png", dpi: int = 110) -> bytes:
    """A figure encoded as bytes (a `Figure` made here is not registered with pyplot, so nothing to close)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi)
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
    adaptive = [o for o in oracles if _chooses_alpha(o) and any(np.isfinite(by[(o, v)].get("alpha_median", np.nan))
                                                                 for v in values if (o, v) in by)]
    series = [("fobg", "var_first", "FoBG per-sample variance σ̂₁²"), ("zobg", "var_zero", "ZoBG per-sample variance σ̂₀²")]
    fig, axes = _figure(2 if adaptive else 1, 6.4 if adaptive else 4.2, sharex=True,
                        gridspec_kw={"height_ratios": [3, 1.5][: 2 if adaptive else 1]})
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
    set_title(ax, title, 11)
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
    adaptive = [o for o in oracles if f"{o}/alpha" in data and _chooses_alpha(o)]
    has_var = any(f"{o}/var_first" in data or f"{o}/var_zero" in data for o in oracles)
    n = 2 + int(has_var) + int(bool(adaptive))
    fig, axes = _figure(n, 2.3 * n + 0.6, sharex=True)
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
    set_title(ax, title, 11)
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
