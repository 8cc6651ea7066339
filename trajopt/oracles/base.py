"""The oracle contract.

An oracle is a named, immutable, hashable configuration (a frozen dataclass) with a pure method

    estimate(key, problem, U) -> (grad: U.shape, info: OracleInfo)

``info`` holds scalars every oracle fills, NaN where a field does not apply. ``rollouts`` and
``gradients`` count the simulator calls the *gradient estimate* spends (forward rollouts and backward
passes); evaluating the noise-free cost only to monitor progress is not counted.

Optional members: ``calls(problem) -> (rollouts, backward passes)`` per estimate (what ``estimate`` counts);
``deterministic`` (the estimate ignores the key); ``value_in_calls`` (the counted rollouts include f(U), the
``value`` reported: exact, the one-sided ZoBG and the mixing oracles, whose zero-noise baseline is f(U); a
property where it depends on the options); ``check(problem)``, raising ValueError when the oracle cannot
estimate on the problem; ``backward_step(system)``, for an oracle whose backward pass differentiates another one-step
map than the system's step (`cfd`): that map (the system's value, the oracle's VJP; a one-step system's in the form
`trajopt.compute.system_step` gives), or None where it differentiates the system's own step. The compute currency
times it beside the plain backward pass and charges the oracle its own ratio per backward pass
(`trajopt.compute.StepCosts.oracles`); an oracle without it is charged ρ_b. The open-loop oracles (`OpenLoop`) perturb U and evaluate ``problem.objective``, so
they refuse a problem that decides on another objective than the one it reports (a policy problem: its
oracles are `trajopt.policies.POLICY_ORACLES`, under the same names).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp
from jax import Array

from trajopt.problem import Problem, decision_is_objective, problem_kind

NAN = float("nan")


class OracleInfo(NamedTuple):
    """Per-call diagnostics (all scalars).

    value: f(U), the noise-free cost at U.
    alpha: weight on the first-order estimate (1 = FoBG, 0 = ZoBG); NaN for single estimators.
    var_first: empirical trace variance of the per-sample first-order gradients (sigma_hat_1^2).
    var_zero: empirical trace variance of the per-sample zeroth-order gradients (sigma_hat_0^2).
    bias_gap: B = ||FoBG mean - ZoBG mean||.
    radius: eps, the Bernstein confidence radius on the ZoBG.
    rollouts: forward rollouts spent on the gradient.
    gradients: backward passes spent on the gradient.
    """

    value: Array
    alpha: Array
    var_first: Array
    var_zero: Array
    bias_gap: Array
    radius: Array
    rollouts: Array
    gradients: Array


INFO_FIELDS = OracleInfo._fields


def make_info(value, *, alpha=NAN, var_first=NAN, var_zero=NAN, bias_gap=NAN, radius=NAN, rollouts=0, gradients=0):
    """An OracleInfo with float64-or-default-float scalars and integer counts."""
    f = lambda v: jnp.asarray(v, dtype=jnp.result_type(float))  # noqa: E731
    return OracleInfo(
        value=f(value), alpha=f(alpha), var_first=f(var_first), var_zero=f(var_zero), bias_gap=f(bias_gap),
        radius=f(radius), rollouts=jnp.asarray(rollouts, jnp.int32), gradients=jnp.asarray(gradients, jnp.int32),
    )


class OpenLoop:
    """A mixin of the open-loop oracles: ``check(problem)`` refuses a problem whose methods decide on another
    objective than ``problem.objective`` (these oracles estimate, and count, the gradient of ``objective``
    itself; on a policy problem that is the fixed evaluation batch its results are reported on)."""

    def check(self, problem) -> None:
        if decision_is_objective(problem):
            return
        name, oracle = getattr(problem, "name", "the problem"), getattr(self, "name", type(self).__name__)
        if problem_kind(problem) == "policy":
            raise ValueError(f"oracle {oracle!r} is an open-loop oracle (it perturbs a control sequence and "
                             f"differentiates the reported objective); {name} is a policy problem (its decision is a "
                             f"policy's parameters): use the policy oracle {oracle!r} (trajopt.policies.POLICY_ORACLES)")
        raise ValueError(f"oracle {oracle!r} is an open-loop oracle (it differentiates the reported objective); "
                         f"{name} decides on another objective than the one it reports (decision_is_objective is "
                         "false)")


class Oracle(Protocol):
    name: str

    def estimate(self, key: Array, problem: Problem, U: Array) -> tuple[Array, OracleInfo]: ...


def gaussian_noise(key: Array, n: int, shape: tuple[int, ...], sigma: float, dtype) -> Array:
    """N perturbations w_i ~ N(0, sigma^2 I) of the decision array: [N, *shape].

    Drawn in float32 and cast to the working dtype: this halves the cost of the random numbers and leaves
    the estimators unchanged, since every use of a sample sees the same w. It also makes seed s draw the
    same w in float32 and float64 runs.
    """
    return sigma * jax.random.normal(key, (n, *shape), dtype=jnp.float32).astype(dtype)
