"""Success of a closed-loop episode: the realised states end near the goal.

    success = max_{t > N - hold} ‖ e(x_t)[positions] ‖₂ <= radius

with e(x) = x − goal the task cost's error (angles listed in the task's ``wrap`` wrapped to [−π, π)), ``positions`` the
state coordinates compared (all by default), ``hold`` the number of final states that must all be within the radius
(1: the final state only). It is the policy problems' ``[success]`` rule (radius, positions) applied to the realised
trajectory, with ``hold`` added: a swing-up that passes the top and falls again does not count.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from trajopt import checks


@dataclass(frozen=True)
class Success:
    """radius: the tolerance (> 0); positions: the state indices compared (empty: all); hold: how many final states
    must be within it (>= 1)."""

    radius: float
    positions: tuple[int, ...] = ()
    hold: int = 1

    def __post_init__(self):
        checks.positive("radius", self.radius)
        checks.at_least("hold", self.hold, 1)

    def check(self, n: int, episode: int) -> None:
        """FieldError unless the positions are state indices and hold fits the episode."""
        if any(isinstance(i, bool) or not 0 <= i < n for i in self.positions) or len(set(self.positions)) != len(self.positions):
            raise checks.FieldError("positions", list(self.positions), f"distinct state indices in 0..{n - 1}")
        if self.hold > episode + 1:
            raise checks.FieldError("hold", self.hold, f"an integer in 1..{episode + 1} (the episode's states)")

    def distance(self, cost, X) -> np.ndarray:
        """[S, hold] ‖e(x_t)[positions]‖ over the last ``hold`` states of X [S, N+1, n]."""
        E = np.asarray(cost.error(jnp.asarray(X[:, -self.hold:, :])))
        if self.positions:
            E = E[..., list(self.positions)]
        return np.linalg.norm(E, axis=-1)

    def __call__(self, cost, X) -> np.ndarray:
        """[S] 1.0 where the episode succeeded, 0.0 where not, NaN where its states are not finite."""
        d = self.distance(cost, X)
        ok = np.all(d <= self.radius, axis=-1).astype(float)
        return np.where(np.all(np.isfinite(X), axis=(1, 2)), ok, np.nan)
