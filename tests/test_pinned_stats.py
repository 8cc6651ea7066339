"""Pinned summaries over seeds (`trajopt.stats`): the median and quartiles every table, result.json and figure
shows, computed here by hand on small arrays (linear interpolation between order statistics, NumPy's default),
with failed seeds (NaN, inf) left out; and the block-wise median of a history larger than its block equal to the
hand-computed one, for an odd and an even number of finite entries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trajopt import stats


def quantile_by_hand(values, q: float) -> float:
    """The q-quantile of the finite values, linear between the order statistics at (n - 1) q."""
    v = sorted(x for x in values if math.isfinite(x))
    pos = (len(v) - 1) * q
    lo = math.floor(pos)
    return v[lo] + (v[min(lo + 1, len(v) - 1)] - v[lo]) * (pos - lo)


@pytest.mark.parametrize("values", [[4.0, 1.0, 3.0, 2.0], [4.0, math.nan, 1.0, 3.0, math.inf, 2.0, -math.inf, 10.0]])
def test_nan_band_is_median_and_quartiles_of_the_finite_values(values):
    """[1, 2, 3, 4]: median 2.5, quartiles 1.75 and 3.25; with NaN and +-inf among them (failed seeds) those are left
    out. Catches: a quartile taken at the median, non-finite entries counted."""
    median, q25, q75 = stats.nan_band(values)
    assert (float(median), float(q25), float(q75)) == pytest.approx(
        (quantile_by_hand(values, 0.5), quantile_by_hand(values, 0.25), quantile_by_hand(values, 0.75)), rel=1e-15)
    assert stats.nan_median(values) == quantile_by_hand(values, 0.5)
    if len(values) == 4:
        assert (float(median), float(q25), float(q75)) == (2.5, 1.75, 3.25)


def test_nan_band_along_seeds_per_iteration():
    """A history [S = 4 seeds, K = 3 iterations]: one band per iteration, over the seeds still finite there."""
    h = np.array([[1.0, 5.0, math.nan], [2.0, 6.0, 7.0], [3.0, math.nan, 8.0], [10.0, 7.0, 9.0]])
    median, q25, q75 = stats.nan_band(h, axis=0)
    for k in range(3):
        col = list(h[:, k])
        assert (median[k], q25[k], q75[k]) == pytest.approx(
            (quantile_by_hand(col, 0.5), quantile_by_hand(col, 0.25), quantile_by_hand(col, 0.75)), rel=1e-15)
    m, a, b = stats.nan_band_columns(h, block_bytes=8)  # one column per block: the same numbers
    np.testing.assert_array_equal(np.stack([m, a, b]), np.stack([median, q25, q75]))


@pytest.mark.parametrize("finite", [301, 300])
def test_blocked_median_of_a_history_larger_than_its_block(finite):
    """A [3, 120] history with NaN and inf where seeds failed, read 8 columns at a time: the median of its finite
    entries, odd count (the middle one) and even count (the mean of the two middle ones)."""
    rng = np.random.default_rng(7)
    h = rng.normal(size=(3, 120)).round(3)
    h.ravel()[finite:] = np.nan
    h[0, -1] = math.inf
    got = stats.blocked_nan_median(h, block_bytes=8 * 3 * 8, gather=4)
    assert got == quantile_by_hand(list(h.ravel()), 0.5)
