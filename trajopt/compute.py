"""One compute currency: forward-step equivalents.

Every method counts what it spends in simulator calls of three kinds (`trajopt.methods.base`): forward
``rollouts`` (T steps of the one-step map each), backward passes (``gradients``: a vector-Jacobian product through
a rollout, T step VJPs) and ``linearizations`` (the Jacobians ∂step/∂x, ∂step/∂u at the T points of a rollout,
iLQR's). They cost different amounts, so they are converted into one unit, the **forward-step equivalent** (FSE):
the cost of one forward step of the model,

    FSE = T (rollouts + ρ_b gradients + ρ_l linearizations)

with ρ_b = cost(one step's VJP) / cost(one forward step) and ρ_l = cost(one step's Jacobians) / cost(one forward
step), the `StepCosts` of the system. T is the problem's horizon (1 for a one-step problem, whose "step" is its cost
function; a policy problem's closed-loop horizon H).

`measure_step_costs` measures ρ_b and ρ_l on this host by timing three compiled programs over the same batch of
states and controls (a batch of rollouts; the same rollouts with their backward pass; the Jacobians at the same
points), interleaved and repeated, the median of each: ρ_b = (t_forward+backward − t_forward) / t_forward,
ρ_l = t_jacobians / t_forward. A timing depends on the host: the command line measures once per system and host,
keeps the ratios (`trajopt.cli`), and records them in every run, so a run and its ``--from`` repeat use the same
currency; from Python, pass the `StepCosts` you want (or measure them) to whatever converts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

COUNT_FIELDS = ("rollouts", "gradients", "linearizations")


@dataclass(frozen=True)
class StepCosts:
    """backward: ρ_b, a step's VJP in forward steps; linearization: ρ_l, a step's Jacobians in forward steps; source:
    how they were obtained ("measured ..." or "given")."""

    backward: float = 1.0
    linearization: float = 1.0
    source: str = "given"

    def __post_init__(self):
        for name in ("backward", "linearization"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"StepCosts.{name}: found {v!r}, allowed: a finite number >= 0")

    def as_dict(self) -> dict:
        return {"backward": self.backward, "linearization": self.linearization, "source": self.source}

    @classmethod
    def from_dict(cls, d: dict) -> "StepCosts":
        return cls(backward=float(d["backward"]), linearization=float(d["linearization"]),
                   source=str(d.get("source", "given")))


def forward_equivalents(horizon: int, costs: StepCosts, rollouts=0, gradients=0, linearizations=0):
    """T (rollouts + ρ_b gradients + ρ_l linearizations): counts (numbers or arrays) -> forward-step equivalents."""
    return horizon * (np.asarray(rollouts, float) + costs.backward * np.asarray(gradients, float)
                      + costs.linearization * np.asarray(linearizations, float))


def counts_of(info_or_history: Any) -> dict:
    """{rollouts, gradients, linearizations} of an info NamedTuple, a history dict or a mapping (0 where absent)."""
    get = (info_or_history.get if isinstance(info_or_history, dict)
           else (lambda k, d=0: getattr(info_or_history, k, d)))
    return {k: get(k, 0) for k in COUNT_FIELDS}


def problem_horizon(problem) -> int:
    """T of a problem, as a rollout counts steps: a time-stepped problem's U rows, a policy problem's H, 1 otherwise."""
    if getattr(problem, "time_stepped", False):
        return int(problem.U0.shape[0])
    horizon = getattr(problem, "horizon", None)
    if isinstance(horizon, int):
        return horizon
    return 1


def _fastest_seconds(fns: list[Callable[[], Any]], repeats: int) -> list[float]:
    """The shortest wall time of each function over ``repeats`` rounds, measured interleaved (one call of each per
    round): on a shared machine the fastest run is the least disturbed estimate of a program's own cost."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            jax.block_until_ready(f())
            times[i].append(time.perf_counter() - t0)
    return [float(np.min(t)) for t in times]


def measure_step_costs(step: Callable, n: int, m: int, *, batch: int = 1024, length: int = 32, repeats: int = 15,
                       key: Optional[jax.Array] = None, scale: float = 0.1) -> StepCosts:
    """ρ_b and ρ_l of a one-step map ``step(x: [n], u: [m]) -> [n]`` on this host (see the module docstring).

    The programs run ``batch`` rollouts of ``length`` steps from small random states and controls (N(0, scale²),
    fixed by ``key``): forward (the sum of the final states, so nothing is dead code), forward with the backward pass
    of that sum, and the Jacobians of the step at the same batch x length points. Each is compiled and run once
    before timing."""
    key = jax.random.PRNGKey(0) if key is None else key
    kx, ku = jax.random.split(key)
    dtype = jnp.result_type(float)
    X0 = scale * jax.random.normal(kx, (batch, n), dtype)
    U = scale * jax.random.normal(ku, (batch, length, m), dtype)

    def final(x0, us):
        return jnp.sum(jax.lax.scan(lambda x, u: (step(x, u), None), x0, us)[0])

    def states(x0, us):
        def body(x, u):
            return step(x, u), x
        return jax.lax.scan(body, x0, us)[1]

    forward = jax.jit(jax.vmap(final))
    backward = jax.jit(jax.vmap(jax.value_and_grad(final, argnums=1)))
    points = jax.jit(jax.vmap(states))(X0, U)
    jacobians = jax.jit(jax.vmap(jax.vmap(jax.jacfwd(step, argnums=(0, 1)))))
    fns = [lambda: forward(X0, U), lambda: backward(X0, U), lambda: jacobians(points, U)]
    for f in fns:
        jax.block_until_ready(f())
    t_f, t_fb, t_l = _fastest_seconds(fns, repeats)
    t_f = max(t_f, 1e-9)
    return StepCosts(backward=round(max(t_fb - t_f, 0.0) / t_f, 3), linearization=round(t_l / t_f, 3),
                     source=f"measured: {batch} x {length} steps, fastest of {repeats}")
