"""Studies: estimator statistics across a parameter (sweeps) and across a 1-D decision (landscapes).

Everything here is built on the oracles' own ``estimate``: an oracle is called ``repeats`` times at a point
with independent keys (one ``vmap``), and its ``OracleInfo`` gives the per-sample trace variances
(``var_first``, ``var_zero``), the FoBG-ZoBG gap and the alpha it would choose. The numbers a study shows are
therefore exactly the numbers an optimisation run would see.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from trajopt import programs
from trajopt.problem import Problem
from trajopt.stats import nan_band

STAT_FIELDS = ("var_first", "var_zero", "bias_gap", "radius", "alpha")


# ----------------------------------------------------------------------------------------------- grids


MAX_VALUES = 10_000  # values of a sweep grid or points of a landscape (each is a batch of estimates)


def _check_magnitudes(text: str, values) -> None:
    """Refuse values beyond `trajopt.tomlio.MAX_MAGNITUDE` (the bound on any number of a problem file) or not finite:
    a range over them overflows (hi - lo is inf at +-1e308) in the grid, the problem and the figure's axes."""
    from trajopt.tomlio import MAX_MAGNITUDE

    worst = max((abs(v) for v in values), default=0.0)
    if not worst <= MAX_MAGNITUDE:
        raise ValueError(f"found {text!r} (a value of magnitude {worst:g}), allowed: values of magnitude at most "
                         f"{MAX_MAGNITUDE:g}")


def parse_grid(text: str, *, integer: bool = False) -> list:
    """Values of a sweep: ``"1,10,100"``, ``"linspace:a:b:n"`` or ``"logspace:a:b:n"`` (10^a .. 10^b).

    Integer parameters are rounded and de-duplicated (in order). Raises ValueError with what is allowed.
    """
    text = text.strip()
    allowed = "a comma-separated list (1,10,100), linspace:START:STOP:COUNT or logspace:START:STOP:COUNT"
    if text.startswith(("linspace:", "logspace:")):
        kind, *parts = text.split(":")
        if len(parts) != 3:
            raise ValueError(f"found {text!r}, allowed: {allowed}")
        try:
            a, b, n = float(parts[0]), float(parts[1]), int(parts[2])
        except ValueError:
            raise ValueError(f"found {text!r}: START and STOP must be numbers and COUNT an integer") from None
        if n < 1 or not (math.isfinite(a) and math.isfinite(b)):
            raise ValueError(f"found {text!r}: COUNT must be >= 1 and the ends finite")
        if n > MAX_VALUES:
            raise ValueError(f"found COUNT {n}, allowed: at most {MAX_VALUES:,} values")
        with np.errstate(over="ignore"):  # 10^400 is inf: refused below with the other magnitudes
            values = np.linspace(a, b, n) if kind == "linspace" else np.logspace(a, b, n)
        values = [float(v) for v in values]
    else:
        try:
            values = [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"found {text!r}, allowed: {allowed}") from None
        if not values or not all(math.isfinite(v) for v in values):
            raise ValueError(f"found {text!r}, allowed: {allowed} of finite numbers")
        if len(values) > MAX_VALUES:
            raise ValueError(f"found {len(values):,} values, allowed: at most {MAX_VALUES:,}")
    _check_magnitudes(text, values)
    if integer:
        out: list = []
        for v in values:
            if int(round(v)) not in out:
                out.append(int(round(v)))
        return out
    return values


def parse_range(text: str) -> np.ndarray:
    """A 1-D landscape range ``"lo:hi:n"`` -> n points from lo to hi (n >= 2, lo < hi)."""
    parts = text.split(":")
    try:
        lo, hi, n = float(parts[0]), float(parts[1]), int(parts[2])
        if len(parts) != 3:
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError(f"found {text!r}, allowed: LO:HI:N, e.g. 0:1.5708:200") from None
    if not (lo < hi) or n < 2 or not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"found {text!r}: need LO < HI (finite) and N >= 2")
    if n > MAX_VALUES:
        raise ValueError(f"found N = {n}, allowed: at most {MAX_VALUES:,} points")
    _check_magnitudes(text, [lo, hi])
    return np.linspace(lo, hi, n)


# ----------------------------------------------------------------------------------------- estimates


def _repeats(key: jax.Array, problem: Problem, oracle, U: jax.Array, repeats: int):
    """(the vmapped estimate over repeat keys, the keys [R])."""
    keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(repeats))
    return jax.vmap(lambda k: oracle.estimate(k, problem, U)), keys


def estimate_repeats(key: jax.Array, problem: Problem, oracle, U: jax.Array, repeats: int, lift=None):
    """Call ``oracle.estimate`` ``repeats`` times at U with keys ``fold_in(key, r)``; ``lift``: the program's
    constants to take as inputs (`trajopt.programs.Positions`, what `sweep_positions` finds), so that the points of a
    sweep share one compilation.

    Returns (grads: [R, *U.shape], info: OracleInfo with fields of shape [R]).
    """
    fn, keys = _repeats(key, problem, oracle, U, repeats)
    return programs.call(fn, keys, positions=lift)


def sweep_positions(key: jax.Array, first: tuple, second: tuple, repeats: int) -> dict:
    """{oracle: `trajopt.programs.Positions` or None}: the constants of each oracle's `estimate_repeats` program
    that differ between a sweep's first two points (``first``, ``second``: (problem, {oracle: oracle}) each), which
    every point then takes as inputs (`point_statistics`' ``lift``): one compilation per oracle for the sweep,
    where its points differ only in constants (a stiffness, σ; not a sample count or a horizon)."""
    (p1, o1), (p2, o2) = first, second
    out = {}
    for name in o1:
        fn_a, keys = _repeats(key, p1, o1[name], p1.U0, repeats)
        fn_b, _ = _repeats(key, p2, o2[name], p2.U0, repeats) if p2.U0.shape == p1.U0.shape else (None, None)
        out[name] = programs.probe(fn_a, fn_b, keys) if fn_b is not None else None
    return out


def summarise_repeats(values: np.ndarray) -> dict[str, float]:
    """Median and interquartile range over repeats (NaN-aware; all-NaN gives NaN)."""
    med, lo, hi = nan_band(values)
    return {"median": float(med), "q25": float(lo), "q75": float(hi)}


def point_statistics(key: jax.Array, problem: Problem, oracles: Mapping[str, object], repeats: int,
                     U: jax.Array | None = None, lift: Mapping | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """{oracle: {field: {median, q25, q75}}} for the STAT_FIELDS each oracle fills, at U (default U0); ``lift``:
    {oracle: Positions} (`sweep_positions`) for a point of a sweep.

    Every oracle sees the same keys, as in a run where they would be compared.
    """
    U = problem.U0 if U is None else U
    out = {}
    for name, oracle in oracles.items():
        _, info = estimate_repeats(key, problem, oracle, U, repeats, lift=(lift or {}).get(name))
        stats = {}
        for field in STAT_FIELDS:
            values = np.asarray(getattr(info, field))
            if np.isfinite(values).any():
                stats[field] = summarise_repeats(values)
        out[name] = stats
    return out


# ------------------------------------------------------------------------------------------ landscape


def smoothed_1d(objective, thetas: np.ndarray, sigma: float, nodes: int = 2001) -> np.ndarray:
    """F(theta) = E f(theta + sigma z), z ~ N(0, 1), by the trapezoid rule on z in [-6, 6].

    Deterministic and accurate to about 1e-3 of a jump's height at a discontinuity (the grid spacing times
    the density), far below what Monte Carlo with the same number of rollouts gives.
    """
    z = np.linspace(-6.0, 6.0, nodes)
    w = np.exp(-0.5 * z**2) / math.sqrt(2 * math.pi) * (z[1] - z[0])
    w[[0, -1]] *= 0.5
    f = jax.jit(jax.vmap(jax.vmap(lambda t: objective(jnp.reshape(t, (1, 1))), in_axes=0), in_axes=0))
    values = np.asarray(f(jnp.asarray(thetas)[:, None] + sigma * jnp.asarray(z)[None, :]))
    return values @ w


def landscape(key: jax.Array, problem: Problem, oracles: Mapping[str, object], thetas: np.ndarray, repeats: int,
              sigma: float) -> dict[str, np.ndarray]:
    """Everything the paper's Fig. 2 / Fig. 7 show along a 1-D decision theta.

    Returns arrays over thetas [P]: ``theta``, ``f``, ``F`` (smoothed with ``sigma``), and per oracle
    ``<oracle>/grad_mean``, ``<oracle>/grad_std`` (spread of the estimate over repeats) and, where the oracle
    fills them, ``<oracle>/<field>`` medians over repeats for the STAT_FIELDS.
    """
    if problem.dimension != 1:
        raise ValueError(f"a landscape needs a one-dimensional decision; this problem has {problem.dimension}")
    thetas = np.asarray(thetas, float)
    f = jax.jit(jax.vmap(lambda t: problem.objective(jnp.reshape(t, (1, 1)))))
    out = {"theta": thetas, "f": np.asarray(f(jnp.asarray(thetas))), "F": smoothed_1d(problem.objective, thetas, sigma)}
    keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(repeats))
    for name, oracle in oracles.items():
        def at(theta, oracle=oracle):
            U = jnp.reshape(theta, (1, 1))
            return jax.vmap(lambda k: oracle.estimate(k, problem, U))(keys)

        grads, info = jax.jit(jax.vmap(at))(jnp.asarray(thetas))
        g = np.asarray(grads).reshape(len(thetas), repeats)
        out[f"{name}/grad_mean"] = g.mean(axis=1)
        out[f"{name}/grad_std"] = g.std(axis=1, ddof=1) if repeats > 1 else np.zeros(len(thetas))
        for field in STAT_FIELDS:
            values = np.asarray(getattr(info, field))
            if np.isfinite(values).any():
                out[f"{name}/{field}"] = nan_band(values, axis=1)[0]
    return out


def sweep_rows(points: Sequence[tuple[object, dict]]) -> list[dict]:
    """Flatten [(value, point_statistics)] into table rows: value, oracle, field_median, field_q25, ..."""
    rows = []
    for value, stats in points:
        for name, fields in stats.items():
            row = {"value": value, "oracle": name}
            for field, s in fields.items():
                for k, v in s.items():
                    row[f"{field}_{k}"] = v
            rows.append(row)
    return rows
