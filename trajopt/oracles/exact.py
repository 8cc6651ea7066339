"""`exact`: the plain autodiff gradient of the noise-free objective, grad f(U).

No smoothing: on a flat branch of a discontinuity it is exactly 0, and at a stiff contact it is as large
as the contact's Jacobians make it. One rollout and one backward pass per call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax

from trajopt.oracles.base import OpenLoop, OracleInfo, make_info


@dataclass(frozen=True)
class Exact(OpenLoop):
    name: ClassVar[str] = "exact"
    colour: ClassVar[str] = "#7f7f7f"  # its colour in every figure
    chooses_alpha: ClassVar[bool] = False  # mixes FoBG and ZoBG with an α of its own rule
    deterministic: ClassVar[bool] = True  # the same U gives the same estimate, whatever the key
    value_in_calls: ClassVar[bool] = True  # the value it reports is its counted rollout's f(U)

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per estimate: one of each."""
        return 1, 1

    def estimate(self, key, problem, U) -> tuple[jax.Array, OracleInfo]:
        del key
        value, grad = jax.value_and_grad(problem.objective)(U)
        rollouts, gradients = self.calls(problem)
        return grad, make_info(value, rollouts=rollouts, gradients=gradients)
