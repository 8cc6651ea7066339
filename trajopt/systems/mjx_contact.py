"""Contacts from distance (CFD) on MuJoCo MJX, the straight-through step, and the time-step rule of MJX contacts.

**The backward model.** For an MJX system (`trajopt.systems.mjx.MJX`) the backward model is the same model with
one more force: every contact pair MJX's collision driver reports (``d.contact``: its signed distance ``dist``,
midpoint ``pos`` and normal ``n``, the first row of its frame, pointing from the first geom to the second) whose
distance lies in the gap ``0 <= dist < margin`` pushes the two bodies apart with

    F(dist) = acceleration * m_eff * (1 - dist / margin) ** power,      m_eff = 1 / (w_1 + w_2)

along ``n`` at ``pos`` (``+F n`` on the second geom's body, ``-F n`` on the first's), w_b the body's translational
inverse weight at qpos0 (MuJoCo's ``body_invweight0[b, 0]``; 0 for the world), so that the pair's relative
acceleration at touching distance is about ``acceleration`` (m/s²), falling to 0 at ``dist = margin``. The force
enters as a generalised force J(pos)^T F (`mujoco.mjx.apply_ft`), computed at the start of each physics substep
from that substep's own kinematics and collision pass (one `mjx.kinematics`, `mjx.com_pos` and `mjx.collision`
more per substep), and added to ``qfrc_applied`` for that substep's ``mjx.step``. Where bodies touch (dist < 0)
or are farther apart than ``margin`` the backward model *is* the true model: MuJoCo's soft contact constraint
acts exactly as in the forward simulation, and only the gap [0, margin) gains a force that the true model does
not have. With ``margin = 0`` or ``acceleration = 0`` no force is added at all. Joint limits are not contacts and
get no force (a model whose only constraints are limits has cfd = exact).

**Straight through.** `straight_through(forward, backward)` is a one-step map whose value is ``forward(x, u)``
(the true ``system.step``, so a rollout's states and cost are those of the true model, bit for bit) and whose
vector-Jacobian product is ``backward``'s at the same (x, u): along the *true* trajectory, each step's Jacobians
∂x'/∂x and ∂x'/∂u are those of the CFD model. `straight_through_objective` builds the cost of a problem with that
step (a time-stepped MJX problem: its rollout from ``x0``; a system with ``objective_with(step)``, the cube toss
`trajopt.systems.mjx_toss.MJXToss`: its own simulation). The backward model is differentiated the way the system
differentiates itself (``gradient_mode``): reverse mode through ``mjx.step`` with one solver iteration, else the
step's forward-mode Jacobians (``jax.jacfwd``, n + m tangents) handed to reverse mode by a ``jax.custom_vjp``.

**Time step.** `contact_stable_dt(system)` is MuJoCo's rule for its soft constraints: a constraint's time
constant (solref[0], standard form) must be at least twice the time step (below it MuJoCo's ``refsafe`` clamps
the time constant to 2 timesteps, so the contact is softer than written, or, with refsafe disabled, the
constraint's reference dynamics are explicitly unstable). It returns min(timeconst) / 2 over the contacts and
limits the model can activate (inf when every solref is in the direct form, [-stiffness, -damping]).

This module reads MJX's contact list through ``Data._impl.contact`` (mujoco-mjx 3.17, the tested version).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from trajopt.systems.mjx import differentiable

StepFn = Callable[[Array, Array], Array]


def mjx_system(system: Any):
    """The `trajopt.systems.mjx.MJX` that ``system`` runs on: itself, or its ``mjx_system`` (the cube toss's); None
    for anything else (and when the [mjx] extra is not installed, for every system but a toss's)."""
    try:
        from trajopt.systems.mjx import MJX
    except ImportError:  # pragma: no cover  (mjx.py imports mujoco lazily; kept for safety)
        return None
    if isinstance(system, MJX):
        return system
    inner = getattr(system, "mjx_system", None)
    return inner if isinstance(inner, MJX) else None


def problem_system(problem: Any) -> Any:
    """The system a problem was built from: its ``system`` (`trajopt.problem.Problem.system`), else the owner of its
    bound ``step``; None when neither says."""
    return getattr(problem, "system", None) or getattr(getattr(problem, "step", None), "__self__", None)


def check_contact_problem(problem: Any, oracle: str = "cfd") -> Any:
    """The MJX system of ``problem`` (`mjx_system`), or ValueError with one sentence saying why the oracle cannot
    differentiate it: the problem was not built from an MJX system, or it is an MJX system's problem of another
    kind than a time-stepped rollout or a system with ``objective_with`` (the cube toss)."""
    system = problem_system(problem)
    sim = mjx_system(system)
    name = getattr(problem, "name", "the problem")
    if sim is None:
        what = type(system).__name__ if system is not None else "not known (a problem built from a plain function)"
        raise ValueError(f"oracle {oracle!r} differentiates the contacts of a MuJoCo MJX model (system \"mjx\" or "
                         f"\"mjx_toss\"); {name}'s system is {what}: use exact, fobg, zobg or aobg there")
    if getattr(sim, "backend", "mjx") != "mjx":
        raise ValueError(f"oracle {oracle!r} differentiates MJX's contacts, and {name}'s mjx system runs on backend "
                         f"{sim.backend!r} (no derivatives); allowed: system.backend = \"mjx\"")
    if sim is system and not getattr(problem, "time_stepped", False):
        raise ValueError(f"oracle {oracle!r} needs a time-stepped problem over the MJX system (a rollout of its "
                         f"step from x0); {name} is not one")
    if sim is not system and not callable(getattr(system, "objective_with", None)):
        raise ValueError(f"oracle {oracle!r}: {type(system).__name__} runs on an MJX model but has no "
                         "objective_with(step), through which the oracle would swap in its straight-through step")
    return sim


def distance_force(dist: Array, margin: float, acceleration: float, power: float, m_eff: Array) -> Array:
    """F(dist) = acceleration * m_eff * (1 - dist / margin) ** power on 0 <= dist < margin, else 0 (the module doc).
    Elementwise over contacts; ``margin > 0``."""
    inside = (dist >= 0) & (dist < margin)
    closeness = 1.0 - jnp.clip(dist / margin, 0.0, 1.0)
    return jnp.where(inside, acceleration * m_eff * closeness ** power, 0.0)


def cfd_step(system: Any, margin: float, acceleration: float, power: float) -> StepFn:
    """The backward model's one-step map (x [nq + nv], u [nu]) -> x' for the MJX system ``system`` (the module doc):
    ``system.substeps`` calls of ``mjx.step`` (`mjx_physics.mjx_step`: an RK4 model's stages in one loop), each with
    the distance force of the substep's start added to ``qfrc_applied``, differentiable as ``system.gradient_mode``
    says. ``margin = 0`` or ``acceleration = 0`` gives the system's own step."""
    if margin == 0 or acceleration == 0:
        return system.step
    from trajopt.systems.mjx import _import_mujoco, _like
    from trajopt.systems.mjx_physics import mjx_step

    _, mjx = _import_mujoco()
    m, mm = system.mjx_model, system.mj_model
    with jax.ensure_compile_time_eval():  # concrete constants even when built inside a trace (a custom_vjp's
        d0 = mjx.make_data(m)             # backward pass may not close over tracers)
        zero = jnp.zeros_like(d0.qfrc_applied)
    nq, substeps = int(mm.nq), int(system.substeps)
    invweight = np.asarray(mm.body_invweight0)[:, 0].copy()
    geom_body = np.asarray(mm.geom_bodyid).copy()

    def generalised_force(d):
        dk = mjx.collision(m, mjx.com_pos(m, mjx.kinematics(m, d)))
        c = dk._impl.contact
        if c.dist.shape[0] == 0:
            return zero
        b1, b2 = jnp.asarray(geom_body)[c.geom[:, 0]], jnp.asarray(geom_body)[c.geom[:, 1]]
        w = jnp.asarray(invweight)[b1] + jnp.asarray(invweight)[b2]
        m_eff = jnp.where(w > 0, 1.0 / jnp.where(w > 0, w, 1.0), 0.0)
        force = distance_force(c.dist, margin, acceleration, power, m_eff)[:, None] * c.frame[:, 0, :]
        torque = jnp.zeros(3, force.dtype)

        def one(f, p, body1, body2):
            return mjx.apply_ft(m, dk, f, torque, p, body2) - mjx.apply_ft(m, dk, f, torque, p, body1)

        return jax.vmap(one)(force, c.pos, b1, b2).sum(axis=0).astype(zero.dtype)

    def substep(_, d):
        pushed = d.replace(qfrc_applied=zero + generalised_force(d))
        return _like(mjx_step(mjx, m, pushed).replace(qfrc_applied=zero), d)

    def physics(x: Array, u: Array) -> Array:
        dtype = d0.qpos.dtype
        d = d0.replace(qpos=x[:nq].astype(dtype), qvel=x[nq:].astype(dtype), ctrl=u.astype(dtype))
        d = jax.lax.fori_loop(0, substeps, substep, d)
        return jnp.concatenate([d.qpos, d.qvel]).astype(x.dtype)

    return differentiable(physics, system.gradient_mode)


def straight_through(forward: StepFn, backward: StepFn) -> StepFn:
    """A step whose value is ``forward(x, u)`` and whose VJP is ``backward``'s at the same (x, u) (jax.custom_vjp):
    the backward pass never evaluates ``forward``'s derivative, the forward pass never runs ``backward``."""

    @jax.custom_vjp
    def step(x, u):
        return forward(x, u)

    def fwd(x, u):
        return forward(x, u), (x, u)

    def bwd(res, g):
        x, u = res
        return jax.vjp(backward, x, u)[1](g)

    step.defvjp(fwd, bwd)
    return step


def straight_through_objective(problem: Any, backward: StepFn) -> Callable[[Array], Array]:
    """The problem's objective with every step of its simulation made `straight_through(true step, backward)`:
    the same value as ``problem.objective`` (the same operations on the same states), the CFD model's gradient.
    A time-stepped problem: cost(rollout(step, x0, U), U); a system with ``objective_with(step)`` (the cube toss):
    that objective. Call `check_contact_problem` first."""
    from trajopt.problem import rollout

    system = problem_system(problem)
    sim = mjx_system(system)
    step = straight_through(sim.step, backward)
    if sim is not system:
        return system.objective_with(step)
    x0, cost = problem.x0, problem.cost

    def objective(U: Array) -> Array:
        return cost(rollout(step, x0, U), U)

    return objective


def contact_stable_dt(system: Any) -> float:
    """MuJoCo's time-step rule for the soft constraints of an MJX system (or a toss's): min(timeconst) / 2 over every
    geom, contact pair, limited joint and equality whose solref is in the standard form (timeconst > 0); inf when
    there is none. A time step above it makes MuJoCo soften the constraint (refsafe) or integrate it unstably."""
    sim = mjx_system(system)
    if sim is None:
        return math.inf
    import mujoco

    from trajopt.systems.mjx import stable_timestep  # the rule's owner: the mjx system refuses a step beyond it

    return stable_timestep(mujoco, sim.mj_model)[0]
