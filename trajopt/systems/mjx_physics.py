"""The mjx system's physics (`trajopt.systems.mjx.MJX`): one control step of an MJX model (`_physics`: ``substeps``
`mjx_step` calls, mjx.step with an RK4 model's stages in one loop, from x = [qpos, qvel] with ctrl u; `_make_step`,
as the system differentiates it: `differentiable`), and the model's physics scaled for a plant
(`trajopt.closedloop.plant`): `PlantPhysics`, a base of `MJX` that scales a copy of the model (`with_physics`) or
steps it with factors drawn per seed (`physics_step`; on backend "mujoco" on scaled copies of the C model,
`trajopt.systems.mujoco_c.scaled_step_function`). `trajopt.systems.mjx` re-exports these names.
"""

from __future__ import annotations

import contextlib
import functools
import io

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from trajopt.systems.mjx_model import _import_mujoco


class PlantPhysics:
    """The plant's physics of an mjx system (`trajopt.closedloop.plant`): a base of `trajopt.systems.mjx.MJX`, on its
    ``mj_model``, ``mjx_model``, ``substeps``, ``gradient_mode`` and ``backend`` (and, on backend "mujoco", its
    ``_simulator`` and ``_bind_backend``)."""

    # [plant.scale] keys that scale the model's physics for the plant only: parameter -> the element a name refers to
    PHYSICS = {"body_mass": "body", "dof_damping": "joint", "geom_friction": "geom"}
    # the ones a per-seed draw may scale (read by mjx.step at run time; a body's mass also sets derived constants)
    PHYSICS_PER_SEED = ("dof_damping", "geom_friction")

    def physics_names(self, parameter: str) -> tuple[str, ...]:
        """The names ``parameter`` (a key of `PHYSICS`) may scale one by one: the model's named bodies (but the
        world), joints or geoms, in MuJoCo's order."""
        mujoco, _ = _import_mujoco()
        kind = self.PHYSICS[parameter]
        obj = getattr(mujoco.mjtObj, f"mjOBJ_{kind.upper()}")
        count = {"body": self.mj_model.nbody, "joint": self.mj_model.njnt, "geom": self.mj_model.ngeom}[kind]
        names = [mujoco.mj_id2name(self.mj_model, obj, i) for i in range(1 if kind == "body" else 0, count)]
        return tuple(n for n in names if n)

    def with_physics(self, factors) -> "PlantPhysics":
        """A copy of this system whose model has its physics scaled, for a plant (this system unchanged).

        factors: (parameter, name or None, f) triples: ``body_mass`` multiplies the named body's (None: every
        body's) mass and rotational inertia by f (its density scaled) and MuJoCo's derived constants are computed
        again (``mj_setConst``: subtree masses, inverse weights); ``dof_damping`` the named joint's (None: every
        joint's) damping of each of its dofs; ``geom_friction`` the named geom's (None: every geom's) three
        friction coefficients (sliding, torsional, rolling) and those of every ``<pair>`` naming it."""
        import copy

        mujoco, mjx = _import_mujoco()
        mm = copy.deepcopy(self.mj_model)
        for parameter, name, f in factors:
            mask, pairs = _physics_mask(mujoco, mm, parameter, name)
            if parameter == "body_mass":
                mm.body_mass[mask] *= f
                mm.body_inertia[mask] *= f
            elif parameter == "dof_damping":
                mm.dof_damping[mask] *= f
            else:
                mm.geom_friction[mask] *= f
                if mm.npair:
                    mm.pair_friction[pairs] *= f
        if any(p == "body_mass" for p, _, _ in factors):
            mujoco.mj_setConst(mm, mujoco.MjData(mm))
        with contextlib.redirect_stdout(io.StringIO()):
            m = mjx.put_model(mm)
            d0 = mjx.make_data(m)
        out = copy.copy(self)
        object.__setattr__(out, "mj_model", mm)
        object.__setattr__(out, "mjx_model", m)
        object.__setattr__(out, "_step", _make_step(mjx, m, d0, mm.nq, self.substeps, self.gradient_mode))
        object.__setattr__(out, "physics_factors", tuple(getattr(self, "physics_factors", ())) + tuple(factors))
        bind = getattr(out, "_bind_backend", None)  # another simulator of mj_model, if the system has one: rebound
        if callable(bind):
            bind()
        return out

    def physics_step(self, targets):
        """``step(x, u, factors) -> x'``: one control step with the physics scaled by factors traced at run time (a
        plant drawn per seed). targets: (parameter, name or None) pairs, parameter in `PHYSICS_PER_SEED`; factors:
        [len(targets)], each scaling its target as `with_physics` does. Not differentiated (a plant's step)."""
        mujoco, mjx = _import_mujoco()
        m, mm = self.mjx_model, self.mj_model
        masks = []
        for parameter, name in targets:
            if parameter not in self.PHYSICS_PER_SEED:
                raise ValueError(f"{parameter}: not scaled per seed; allowed: {', '.join(self.PHYSICS_PER_SEED)}")
            mask, pairs = _physics_mask(mujoco, mm, parameter, name)
            masks.append((parameter, mask.astype(float), pairs.astype(float)))
        if self.backend == "mujoco":  # MuJoCo's C simulator: each row of a batch on its own scaled copy of the model
            from trajopt.systems.mujoco_c import scaled_step_function

            return scaled_step_function(self._simulator, lambda model, factors: _scale_c_model(model, masks, factors))
        with jax.ensure_compile_time_eval():
            d0 = mjx.make_data(m)
        physics = _physics(mjx, d0, int(mm.nq), int(self.substeps))

        def step(x: Array, u: Array, factors: Array) -> Array:
            mp = m
            for (parameter, mask, pairs), f in zip(masks, factors):
                if parameter == "dof_damping":
                    mp = mp.replace(dof_damping=mp.dof_damping * (1 + mask * (f - 1)).astype(mp.dof_damping.dtype))
                else:
                    g = (1 + mask * (f - 1)).astype(mp.geom_friction.dtype)
                    mp = mp.replace(geom_friction=mp.geom_friction * g[:, None])
                    if mm.npair:
                        p = (1 + pairs * (f - 1)).astype(mp.pair_friction.dtype)
                        mp = mp.replace(pair_friction=mp.pair_friction * p[:, None])
            return physics(mp, x, u)

        return step


def _scale_c_model(model, masks, factors) -> None:
    """Scale a copy of the C model in place as `MJX.physics_step` scales the MJX model: each (parameter, mask, pairs)
    of ``masks`` by its factor (dof_damping; geom_friction and the <pair>s naming a scaled geom)."""
    for (parameter, mask, pairs), f in zip(masks, factors):
        if parameter == "dof_damping":
            model.dof_damping[:] = model.dof_damping * (1 + mask * (f - 1))
        else:
            model.geom_friction[:] = model.geom_friction * (1 + mask * (f - 1))[:, None]
            if model.npair:
                model.pair_friction[:] = model.pair_friction * (1 + pairs * (f - 1))[:, None]


def _physics_mask(mujoco, mm, parameter: str, name):
    """(mask, pairs): the bodies [nbody], dofs [nv] or geoms [ngeom] that ``parameter`` scales for ``name`` (None:
    all of them; for body_mass every body but the world), and the ``<pair>`` s [npair] naming a scaled geom (for
    geom_friction; empty otherwise). ValueError for a name the model lacks."""
    kind = PlantPhysics.PHYSICS[parameter]
    count = {"body": mm.nbody, "joint": mm.njnt, "geom": mm.ngeom}[kind]
    if name is None:
        chosen = np.ones(count, bool)
        if kind == "body":
            chosen[0] = False
    else:
        i = mujoco.mj_name2id(mm, getattr(mujoco.mjtObj, f"mjOBJ_{kind.upper()}"), name)
        if i < 0:
            raise ValueError(f"{name!r} is not a {kind} of the model")
        chosen = np.arange(count) == i
    pairs = np.zeros(mm.npair, bool)
    if kind == "joint":
        chosen = chosen[np.asarray(mm.dof_jntid)] if mm.nv else np.zeros(0, bool)
    if kind == "geom" and mm.npair:
        pairs = chosen[np.asarray(mm.pair_geom1)] | chosen[np.asarray(mm.pair_geom2)]
    return chosen, pairs


def _like(new, old):
    """``new`` (an mjx.Data) with every array in ``old``'s dtype. Under x64, mjx.step returns some integer index
    arrays of a model with tendons (ten_wrapadr, ten_wrapnum, wrap_obj) as int64 where make_data made them int32,
    which a loop carry refuses (mujoco-mjx 3.17; the values are indices, so the cast loses nothing)."""
    return jax.tree.map(lambda a, b: a.astype(b.dtype) if a.dtype != b.dtype else a, new, old)


def _make_step(mjx, m, d0, nq: int, substeps: int, mode: str):
    """The pure one-step map, with a forward-mode Jacobian custom_vjp when ``mode == "forward"``.

    The physics is a ``jax.jit`` of its own: a variant steps the model at several places (the oracle's samples and
    their Jacobians, the reported f(U), the final evaluation, the start), and JAX then traces MJX's Python once per
    argument shape and reuses that jaxpr, and its vmapped and differentiated forms, at every place, where inlined
    physics was traced, batched and linearised again at each; the jit keeps them for the next variant of the same
    system in the process. Measured on the shipped MJX problems (benchmarks/bench_mjx_jit.txt, docs/mjx.md): tracing
    37-67 % less, XLA's compile the same or less, the run within 6 %, the same costs and decisions bit for bit."""
    physics = _physics(mjx, d0, nq, substeps)
    return differentiable(jax.jit(lambda x, u: physics(m, x, u)), mode)


def _physics(mjx, d0, nq: int, substeps: int):
    """``physics(m, x, u) -> x'``: ``substeps`` `mjx_step` calls of the mjx.Model ``m`` (a traced model for a plant
    whose parameters are drawn per seed, `MJX.physics_step`) from x = [qpos, qvel] with ctrl u."""

    def physics(m, x: Array, u: Array) -> Array:
        dtype = d0.qpos.dtype
        d = d0.replace(qpos=x[:nq].astype(dtype), qvel=x[nq:].astype(dtype), ctrl=u.astype(dtype))
        d = jax.lax.fori_loop(0, substeps, lambda _, d: _like(mjx_step(mjx, m, d), d), d)
        return jnp.concatenate([d.qpos, d.qvel]).astype(x.dtype)

    return physics


def mjx_step(mjx, m, d):
    """One ``mjx.step(m, d)``: MJX's own step, but for a model with the RK4 integrator written as one loop.

    MJX (mujoco-mjx 3.17, ``forward.step``) evaluates the forward dynamics a(q, v) once, then ``rungekutta4`` scans
    over the three remaining stages with ``unroll=3``: four copies of the collision, constraint and solver code in the
    program, which XLA compiles four times. Here the same four stages run as one ``lax.scan`` of length 4 over the
    Butcher tableau (c = 0, 1/2, 1/2, 1; b = 1/6, 1/3, 1/3, 1/6), one copy of the forward dynamics:

        stage i = 1..4:  q_i = q0 (+) c_i dt k_{i-1}^v,  v_i = v0 + c_i dt k_{i-1}^a,  act_i = act0 + c_i dt k_{i-1}^act
                         k_i = (v_i, a(q_i, v_i, act_i), act_dot(...)) at time t0 + c_i dt
        then MJX's ``_advance`` with v = sum_i b_i k_i^v, a = sum_i b_i k_i^a, act_dot = sum_i b_i k_i^act

    ((+): MJX's position integration, quaternions included), each in MJX's order of operations. The first stage
    takes q0, v0, act0 and t0 as they are (a select, not q0 (+) 0), as MJX's first forward call does; every stage's
    solver starts from the step's input warm start, as in MJX (only ``_advance`` writes it). So the states agree with
    ``mjx.step`` to the last bits, not bit for bit (XLA fuses a loop body apart from unrolled copies: at most
    3.6e-16 over 30 steps of gymnasium's inverted pendulum, reacher and hopper), and XLA compiles the step's programs
    in about 40 % of the time (benchmarks/bench_mjx_rk4.txt, docs/mjx.md). Other integrators, a model on another
    implementation than MJX's JAX one, and another mujoco-mjx than the one these private pieces were written
    against (`RK4_IN_ONE_LOOP`) take ``mjx.step`` itself."""
    if not steps_in_one_loop(mjx, m):
        return mjx.step(m, d)
    from mujoco.mjx._src import forward as mjx_forward  # MJX's private pieces: rk4_in_one_loop checks the version
    from mujoco.mjx._src import scan as mjx_scan

    a_tableau, b = mjx_forward._RK4_A, mjx_forward._RK4_B
    dt = m.opt.timestep
    c = jnp.concatenate([jnp.zeros(1), jnp.tril(a_tableau).sum(axis=0)])  # 0, 1/2, 1/2, 1
    d0 = d

    def integrate(*args):
        return mjx_forward._integrate_pos(*args, dt=dt)

    def stage(carry, column):
        kv, ka, kact, sv, sa, sact, d = carry
        ci, bi, first = column
        qpos = mjx_scan.flat(m, integrate, "jqv", "q", m.jnt_type, d0.qpos, ci * kv)
        d = d.replace(qpos=jnp.where(first, d0.qpos, qpos),
                      qvel=jnp.where(first, d0.qvel, d0.qvel + ci * ka * dt),
                      act=jnp.where(first, d0.act, d0.act + ci * kact * dt),
                      time=jnp.where(first, d0.time, d0.time + ci * dt))
        d = _like(mjx_forward.forward(m, d), d)  # the carry keeps its dtypes (`_like`)
        kv, ka, kact = d.qvel, d.qacc, d.act_dot
        sv, sa, sact = (jnp.where(first, bi * k, s + bi * k) for k, s in ((kv, sv), (ka, sa), (kact, sact)))
        return (kv, ka, kact, sv, sa, sact, d), None

    zeros = (jnp.zeros_like(d.qvel), jnp.zeros_like(d.qacc), jnp.zeros_like(d.act_dot))
    columns = (c, jnp.asarray(b), jnp.arange(4) == 0)
    (_, _, _, sv, sa, sact, d1), _ = jax.lax.scan(stage, (*zeros, *zeros, d), columns)
    d = d1.replace(qpos=d0.qpos, qvel=d0.qvel, act=d0.act, time=d0.time)
    return mjx_forward._advance(m, d, sact, sa, sv)


RK4_IN_ONE_LOOP = "3.17.0"
"""The mujoco-mjx whose private RK4 pieces (``forward._RK4_A``/``_RK4_B``, ``_integrate_pos``, ``_advance``,
``scan.flat``) `mjx_step` was written and tested against (the [mjx] extra's pin); another version steps with
``mjx.step`` itself."""


def steps_in_one_loop(mjx, m) -> bool:
    """Whether `mjx_step` runs the mjx.Model ``m``'s step as one loop of RK4 stages: an RK4 model on MJX's JAX
    implementation, with the mujoco-mjx `RK4_IN_ONE_LOOP` installed (`MJX.step_program` names it)."""
    return m.opt.integrator == mjx.IntegratorType.RK4 and m.impl == mjx.Impl.JAX and rk4_in_one_loop()


@functools.lru_cache(maxsize=None)
def rk4_in_one_loop() -> bool:
    """Whether `mjx_step` runs an RK4 model's stages in one loop: the installed mujoco-mjx is `RK4_IN_ONE_LOOP`."""
    from importlib import metadata

    try:
        return metadata.version("mujoco-mjx") == RK4_IN_ONE_LOOP
    except metadata.PackageNotFoundError:
        return False


def differentiable(physics, mode: str):
    """``physics(x: [n], u: [m]) -> [n]`` as an MJX system differentiates it: as it is for "reverse"; for "forward", a
    custom_vjp whose forward pass computes the Jacobians [n, n] and [n, m] with ``jax.jacfwd`` (reverse mode through
    MJX's solver loop is then never traced). Shared by the system's own step and `trajopt.systems.mjx_contact`."""
    if mode == "reverse":
        return physics

    @jax.custom_vjp
    def step(x, u):
        return physics(x, u)

    def fwd(x, u):
        (jx, ju), y = jax.jacfwd(lambda x, u: (physics(x, u),) * 2, argnums=(0, 1), has_aux=True)(x, u)
        return y, (jx, ju)

    def bwd(res, g):
        jx, ju = res
        return g @ jx, g @ ju

    step.defvjp(fwd, bwd)
    return step
