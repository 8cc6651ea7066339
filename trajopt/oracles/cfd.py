"""`cfd`: contacts from distance (DiffMJX, ICLR 2026), a straight-through gradient for MuJoCo MJX systems.

    value = f(U)                      the true model's cost (its rollout, bit for bit)
    grad  = sum_t  dJ/dx_{t+1} · ∂step_cfd(x_t, u_t)     along the TRUE states x_t (reverse accumulation)

The forward rollout is the true model (`trajopt.systems.mjx.MJX`'s step); only the backward pass differentiates a
model whose contacts act from a distance: every contact pair at signed distance 0 <= dist < ``margin`` is pushed
apart by

    F(dist) = acceleration * m_eff * (1 - dist / margin) ** power

(m_eff the pair's effective mass, 1 / (w_1 + w_2) from MuJoCo's ``body_invweight0``), so that a gradient exists
before the bodies touch: where exact autodiff sees a body in free flight (no dependence on how close the contact
is), cfd sees the contact's pull on the trajectory. Where bodies touch, or are farther apart than ``margin``, the
backward model is the true one. The construction, the force and what it adds per step are in
`trajopt.systems.mjx_contact`.

| parameter | default | meaning |
|---|---|---|
| margin | 0.01 | the distance (m) from which contacts act in the backward pass; 0: none (cfd = exact) |
| acceleration | 1.0 | the relative acceleration (m/s²) the force gives a pair at touching distance; 0: none |
| power | 2.0 | the decay exponent (>= 1): 1 linear (a kink at ``margin``), 2 smooth to first order there |

One rollout and one backward pass per call, as `exact`; the backward pass also runs the CFD model's step at each
true state and, per physics substep, one more kinematics and collision pass, so it costs more than exact's: the
oracle declares its backward map (``backward_step``), whose cost is measured beside the plain backward pass, and
each of its backward passes is charged that ratio (`trajopt.compute.StepCosts.oracles`, ``cfd``) instead of ρ_b. Deterministic; applies to a time-stepped
problem over an ``mjx`` system and to an ``mjx_toss`` problem (`trajopt.systems.mjx_toss`), refused (a
ValueError from ``check``, exit 2 on the command line) on any other system and on a policy problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import jax

from trajopt import checks
from trajopt.oracles.base import OpenLoop, make_info


@dataclass(frozen=True)
class CFD(OpenLoop):
    """margin: range of the distance force (m); acceleration: its strength at touching distance (m/s²); power: its
    decay exponent (>= 1)."""

    margin: float = 0.01
    acceleration: float = 1.0
    power: float = 2.0
    name: ClassVar[str] = "cfd"
    colour: ClassVar[str] = "#8c564b"  # its colour in every figure
    chooses_alpha: ClassVar[bool] = False  # mixes FoBG and ZoBG with an α of its own rule
    deterministic: ClassVar[bool] = True  # the same U gives the same estimate, whatever the key
    value_in_calls: ClassVar[bool] = True  # the value it reports is its counted rollout's f(U)
    applies_to: ClassVar[tuple[str, ...]] = ("mjx", "mjx_toss")  # the systems it can differentiate (none: every one)

    def __post_init__(self):
        checks.non_negative("margin", self.margin)
        checks.non_negative("acceleration", self.acceleration)
        checks.finite("power", self.power)
        if self.power < 1:
            raise checks.FieldError("power", self.power, "a number >= 1 (the force must vanish continuously at "
                                    "the margin, with a finite slope)")

    def calls(self, problem) -> tuple[int, int]:
        """(rollouts, backward passes) per estimate: one of each."""
        return 1, 1

    def backward_step(self, system):
        """The one-step map whose VJP this oracle's backward pass runs on ``system`` (what the compute currency
        times, `trajopt.compute.declared_backward_steps`): `straight_through` of the true step and `cfd_step` at
        this oracle's parameters; for a one-step system (the cube toss) its cost through that step as a map of one
        state, x + objective(u), as `trajopt.compute.system_step` gives the system's. None where it differentiates
        the system's own step (not an MJX system; ``margin`` or ``acceleration`` 0: cfd = exact)."""
        from trajopt.systems.mjx_contact import cfd_step, mjx_system, straight_through

        sim = mjx_system(system)
        if sim is None or getattr(sim, "backend", "mjx") != "mjx" or self.margin == 0 or self.acceleration == 0:
            return None
        through = straight_through(sim.step, cfd_step(sim, self.margin, self.acceleration, self.power))
        if sim is system:
            return through
        objective_with = getattr(system, "objective_with", None)
        if not callable(objective_with):
            return None
        objective = objective_with(through)
        return lambda x, u: x + objective(u[None])

    def check(self, problem) -> None:
        """Refuse a problem this oracle cannot differentiate: a policy problem (`OpenLoop`), or one not built from
        an MJX system (`trajopt.systems.mjx_contact.check_contact_problem`)."""
        super().check(problem)
        from trajopt.systems.mjx_contact import check_contact_problem

        check_contact_problem(problem, self.name)

    def objective(self, problem):
        """The straight-through objective U -> f(U) whose gradient is this oracle's estimate."""
        from trajopt.systems.mjx_contact import cfd_step, check_contact_problem, straight_through_objective

        sim = check_contact_problem(problem, self.name)
        return straight_through_objective(problem, cfd_step(sim, self.margin, self.acceleration, self.power))

    def estimate(self, key, problem, U):
        del key
        value, grad = jax.value_and_grad(self.objective(problem))(U)
        rollouts, gradients = self.calls(problem)
        return grad, make_info(value, rollouts=rollouts, gradients=gradients)
