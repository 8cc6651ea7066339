"""The MuJoCo MJX system (the optional [mjx] extra): rollouts against MuJoCo's C simulator, gradients against
finite differences, every oracle on every shipped MJCF problem, and the validation of bad MJCF inputs."""

import os
import textwrap
import tomllib

import pytest

pytest.importorskip("mujoco.mjx", reason="the mjx system needs the [mjx] extra: pip install -e '.[mjx]'")
pytestmark = pytest.mark.mjx  # selected by `pytest -m mjx` (CI installs the extra and runs them); not in the default run

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from trajopt import diagnostics, spec  # noqa: E402
from trajopt.methods import GradientMethod  # noqa: E402
from trajopt.optim import SGD  # noqa: E402
from trajopt.oracles import ORACLES  # noqa: E402
from trajopt.solver import solve  # noqa: E402
from trajopt.spec import SpecError  # noqa: E402
from trajopt.systems import SYSTEMS  # noqa: E402
from trajopt.systems.mjx import MJX, ModelError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "problems", "models")
ARM = os.path.join(ROOT, "tests", "models", "two_link_arm.xml")  # two motors, declared elbow first
PROBLEMS = ["mjx_pendulum_wall", "mjx_push_soft", "mjx_push_stiff", "mjx_ball_wall"]
HUMANOID = {"package": "mujoco", "path": "mjx/test_data/humanoid/humanoid.xml"}  # shipped by the mujoco-mjx wheel


def c_rollout(system: MJX, x0: np.ndarray, U: np.ndarray) -> np.ndarray:
    """MuJoCo's C simulator doing what MJX.step does: set (qpos, qvel, ctrl), cold solver start, substeps x mj_step."""
    mm = system.mj_model
    d = mujoco.MjData(mm)
    x, xs = np.asarray(x0, float), [np.asarray(x0, float)]
    for u in U:
        d.qpos[:], d.qvel[:], d.ctrl[:] = x[: mm.nq], x[mm.nq:], u
        d.qacc_warmstart[:] = 0.0
        for _ in range(system.substeps):
            mujoco.mj_step(mm, d)
        x = np.concatenate([d.qpos, d.qvel])
        xs.append(x)
    return np.array(xs)


def mjx_rollout(system: MJX, x0, U) -> np.ndarray:
    def body(x, u):
        y = system.step(x, u)
        return y, y

    _, xs = jax.jit(lambda x0, U: jax.lax.scan(body, x0, U))(jnp.asarray(x0), jnp.asarray(U))
    return np.concatenate([np.asarray(x0)[None], np.asarray(xs)])


def write(tmp_path, text: str, name: str = "p.toml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


PENDULUM = f"""
[system]
name = "mjx"
model = "{os.path.join(MODELS, 'pendulum_wall.xml')}"
substeps = 2
{{extra}}
[task]
horizon = 10
x0 = [0.0, 0.5]
goal = [0.0, 0.0]
Q = [1.0, 0.1]
R = [0.1]
u_init = 0.2
"""


def test_registered_and_fields_are_toml_parameters():
    assert SYSTEMS.get("mjx") is MJX
    s = spec.load(os.path.join(ROOT, "problems", "mjx_pendulum_wall.toml")).system
    import dataclasses

    fields = dataclasses.asdict(s)
    assert set(fields) == {"model", "substeps", "keyframe", "timestep", "iterations", "ls_iterations", "solref", "gradient",
                           "backend"}
    assert os.path.isabs(fields["model"]) and fields["timestep"] == 0.01 and fields["iterations"] == 20
    assert s.state_size == 2 and s.control_size == 1 and s.dt == pytest.approx(0.02) and s.stable_dt() == np.inf
    assert hash(s) == hash(s)  # identity hash: closable in jit


def test_default_x0_and_keyframe():
    path = os.path.join(MODELS, "pendulum_wall.xml")
    np.testing.assert_array_equal(MJX(model=path).default_x0(), [0.0, 0.0])
    np.testing.assert_array_equal(MJX(model=path, keyframe="raised").default_x0(), [0.5, 0.0])


@pytest.mark.parametrize("problem", ["mjx_pendulum_wall", "mjx_push_stiff", "mjx_ball_wall"])
def test_rollout_matches_mujoco_c(problem):
    system = spec.load(os.path.join(ROOT, "problems", f"{problem}.toml")).system
    rng = np.random.default_rng(0)
    lo, hi = system.mj_model.actuator_ctrlrange.T
    U = rng.uniform(lo, hi, size=(15, system.control_size))  # large enough to make contact
    x0 = system.default_x0()
    np.testing.assert_allclose(mjx_rollout(system, x0, U), c_rollout(system, x0, U), atol=1e-8, rtol=0)


# Fidelity on models nobody here wrote (docs/mjx.md, "Fidelity"): trajopt's rollout against mujoco.mj_step for
# FIDELITY_STEPS control steps of random controls over each actuator's full range, each model compiled once (one
# program runs the free rollout and the one-step map along C's trajectory). Tolerance, on every state coordinate
# and step: FIDELITY_TOL * max(1, |x_c|). The models: gymnasium's inverted pendulum (RK4) and hopper
# (RK4, floor contact), and from the mujoco-mjx wheel's test data the humanoid (floor contact, 27 dofs) and
# tendon_force_clamp (fixed and spatial tendons driving 8 actuators; a tendon model failed inside the trace before
# trajopt.systems.mjx._like). MJX and C MuJoCo run the same Newton solver with the same stopping rule
# (opt.tolerance 1e-8 on the relative cost improvement) from the same cold start, so where both converge they take
# the same iterations and differ by floating-point summation order only: one step differs by at most 1e-12 (humanoid)
# and the 100-step rollouts by 1e-14 (hopper) to 1.4e-10 (humanoid), at most 3e-12 of the state's scale
# (benchmarks/bench_mjx_models.txt). 1e-9 is 300x above that and an order below the solver's own tolerance; a
# substep or actuator mix-up (substeps - 1; the controls reversed) moves the state by far more and fails. Contact
# amplifies a last-bit difference along a free rollout (C against itself with x0 moved by 1e-12), so the free
# rollout may also differ by C's own spread under that move, measured here, where that is larger. The start is the
# model's qpos0 and zero velocity moved by U(-0.01, 0.01) (quaternions kept): qpos0 often sits exactly on a
# constraint's switch (the hopper's joints at their limits, the humanoid's feet 1e-16 into the floor), where a last
# bit decides whether the constraint acts at all. MJX-tuned models run ONE solver iteration (humanoid, shadow hand:
# iterations = 1, ls_iterations = 4), where MJX's line search is not C's and the two trajectories part within 10
# steps (docs/mjx.md), so the humanoid is compared at converged settings (iterations = 100, ls_iterations = 50):
# its geometry, contacts and actuators, not the solver's truncation.
FIDELITY_STEPS, FIDELITY_TOL = 100, 1e-9
GYMNASIUM = "envs/mujoco/assets/"
FIDELITY = {  # name: (model table, MJX settings, fewest control steps with a contact in the C rollout)
    "gymnasium inverted_pendulum": ({"package": "gymnasium", "path": GYMNASIUM + "inverted_pendulum.xml"},
                                    {"substeps": 2}, 0),  # gymnasium's frame_skip
    "gymnasium hopper": ({"package": "gymnasium", "path": GYMNASIUM + "hopper.xml"}, {"substeps": 4}, 50),
    "mujoco-mjx humanoid": (HUMANOID, {"substeps": 2, "iterations": 100, "ls_iterations": 50}, 50),
    # tendons (fixed and spatial) driving 8 actuators, clamped actuator forces; no contact
    "mujoco-mjx tendon_force_clamp": ({"package": "mujoco", "path": "mjx/test_data/actuator/tendon_force_clamp.xml"},
                                      {"substeps": 5}, 0),
}


def _needs(model: dict) -> None:
    """Skip when the model's package is absent (found without importing it: gymnasium imports a great deal)."""
    import importlib.util

    if importlib.util.find_spec(model["package"]) is None:
        pytest.skip(f"needs {model['package']} (pip install -e '.[suite]')")


def _contact_steps(system: MJX, X: np.ndarray, U: np.ndarray) -> int:
    """How many control steps of a C trajectory start with at least one contact."""
    mm = system.mj_model
    d = mujoco.MjData(mm)
    count = 0
    for x, u in zip(X[:-1], U):
        d.qpos[:], d.qvel[:], d.ctrl[:] = x[: mm.nq], x[mm.nq:], u
        mujoco.mj_forward(mm, d)
        count += d.ncon > 0
    return count


def fidelity_start(system: MJX, seed: int = 1) -> np.ndarray:
    """qpos0 and zero velocity, every coordinate but the quaternions' moved by U(-0.01, 0.01)."""
    mm = system.mj_model
    move = np.random.default_rng(seed).uniform(-0.01, 0.01, system.state_size)
    for j in range(mm.njnt):
        kind, a = int(mm.jnt_type[j]), int(mm.jnt_qposadr[j])
        if kind == int(mujoco.mjtJoint.mjJNT_FREE):
            move[a + 3:a + 7] = 0.0
        elif kind == int(mujoco.mjtJoint.mjJNT_BALL):
            move[a:a + 4] = 0.0
    return system.default_x0() + move


def free_and_forced(system: MJX, x0, U, X) -> tuple[np.ndarray, np.ndarray]:
    """([T, n] the free rollout from x0, [T, n] step(X[t], U[t]) for each t), from one compiled program."""
    def run(x0, U, X, forced):
        def body(x, inputs):
            u, given = inputs
            y = system.step(jnp.where(forced, given, x), u)
            return y, y

        return jax.lax.scan(body, x0, (U, X))[1]

    f = jax.jit(run)
    args = (jnp.asarray(x0), jnp.asarray(U), jnp.asarray(X))
    return np.asarray(f(*args, False)), np.asarray(f(*args, True))


@pytest.mark.parametrize("name", list(FIDELITY))
def test_rollout_matches_mujoco_c_on_installed_models(name):
    """100 control steps of random controls over each actuator's full range (seed 0): trajopt's one-step map at
    each state of C's trajectory, and its free rollout, equal mujoco.mj_step's to FIDELITY_TOL of the state's scale
    (the free rollout: or to C's own spread when x0 moves by 1e-12, where larger); the floor models touch the floor
    on most steps (counted in the C rollout)."""
    model, settings, min_contact = FIDELITY[name]
    _needs(model)
    system = MJX(model=model, **settings)
    mm = system.mj_model
    lo, hi = np.where(mm.actuator_ctrllimited[:, None].astype(bool), mm.actuator_ctrlrange, [-1.0, 1.0]).T
    U = np.random.default_rng(0).uniform(lo, hi, size=(FIDELITY_STEPS, system.control_size))
    x0 = fidelity_start(system)
    ref = c_rollout(system, x0, U)
    free, forced = free_and_forced(system, x0, U, ref[:-1])
    tol = FIDELITY_TOL * max(1.0, np.abs(ref).max())
    one_step = np.abs(forced - ref[1:]).max()
    assert one_step <= tol, f"{name}: one-step deviation {one_step:.3g}, tolerance {tol:.3g}"
    spread = np.zeros(FIDELITY_STEPS)
    for seed in range(3):
        moved = c_rollout(system, x0 + 1e-12 * np.random.default_rng(seed).standard_normal(x0.shape), U)
        spread = np.maximum(spread, np.abs(moved - ref).max(axis=1)[1:])
    deviation = np.abs(free - ref[1:]).max(axis=1)
    worst = int(np.argmax(deviation - np.maximum(tol, spread)))
    assert np.all(deviation <= np.maximum(tol, spread)), (
        f"{name}: free rollout deviation {deviation[worst]:.3g} at step {worst + 1}, tolerance {tol:.3g}, "
        f"C's own spread {spread[worst]:.3g}")
    assert _contact_steps(system, ref, U) >= min_contact


def test_state_and_control_names_come_from_the_model(tmp_path):
    """qpos then qvel per joint, ctrl per actuator in MuJoCo's actuator order (the arm declares the elbow's motor
    first); the figures label their axes with these."""
    from trajopt.systems.base import control_names, state_names

    arm = MJX(model=ARM)
    assert state_names(arm) == ("shoulder", "elbow", "shoulder vel", "elbow vel")
    assert control_names(arm) == ("elbow_motor", "shoulder_motor")
    pendulum = MJX(model=os.path.join(MODELS, "pendulum_wall.xml"))
    assert state_names(pendulum) == ("hinge", "hinge vel") and control_names(pendulum) == ("torque",)
    # an unnamed free joint (7 qpos, 6 qvel), a named ball joint (4, 3), a hinge with an unnamed motor
    (tmp_path / "m.xml").write_text(
        '<mujoco><worldbody><body><freejoint/><geom size="0.1"/></body>'
        '<body pos="1 0 0"><joint name="b" type="ball"/><geom size="0.1"/></body>'
        '<body pos="2 0 0"><joint name="h" type="hinge"/><geom size="0.1"/></body></worldbody>'
        '<actuator><motor joint="h"/></actuator></mujoco>')
    s = MJX(model=str(tmp_path / "m.xml"))
    assert s.state_names == ("joint0 x", "joint0 y", "joint0 z", "joint0 qw", "joint0 qx", "joint0 qy", "joint0 qz",
                             "b qw", "b qx", "b qy", "b qz", "h",
                             "joint0 vx", "joint0 vy", "joint0 vz", "joint0 wx", "joint0 wy", "joint0 wz",
                             "b wx", "b wy", "b wz", "h vel")
    assert s.control_names == ("u0",) and len(s.state_names) == s.state_size


def test_several_actuators_map_to_the_models_actuator_order():
    """Control k drives the k-th actuator of <actuator> (here the elbow's motor first, gear 2, then the shoulder's):
    the MJX rollout equals MuJoCo's C simulator with each control written to its actuator BY NAME
    (``control_names[k]``), and the same controls swapped give another motion (so the comparison can fail)."""
    system = MJX(model=ARM, substeps=2)
    mm = system.mj_model

    def by_name(U):
        d = mujoco.MjData(mm)
        x, xs = system.default_x0(), [system.default_x0()]
        for u in U:
            d.qpos[:], d.qvel[:] = x[: mm.nq], x[mm.nq:]
            for name, value in zip(system.control_names, u):
                d.actuator(name).ctrl[0] = value
            d.qacc_warmstart[:] = 0.0
            for _ in range(system.substeps):
                mujoco.mj_step(mm, d)
            x = np.concatenate([d.qpos, d.qvel])
            xs.append(x)
        return np.array(xs)

    U = np.random.default_rng(0).uniform(-3.0, 3.0, size=(12, 2))
    ours = mjx_rollout(system, system.default_x0(), U)
    np.testing.assert_allclose(ours, by_name(U), atol=1e-8, rtol=0)
    assert np.abs(ours - by_name(U[:, ::-1])).max() > 1e-2


def test_several_actuators_gradient_matches_central_differences(tmp_path):
    """The forward-mode Jacobian's control columns (d x'/d u [n, m], m = 2) in the right order: the exact gradient
    of a cost on the two-motor arm equals central differences, control by control."""
    s = spec.load(write(tmp_path, f"""
        [system]
        name = "mjx"
        model = "{ARM}"
        [task]
        horizon = 6
        goal = [0.3, -0.2, 0.0, 0.0]
        Q = [1.0, 2.0, 0.1, 0.1]
        R = [0.1, 0.3]
        u_init = [0.5, -1.0]
        """))
    assert s.system.gradient_mode == "forward"
    problem = s.problem()
    U = problem.U0 + jnp.asarray(np.random.default_rng(1).normal(0.0, 0.5, problem.U0.shape))
    g = np.asarray(jax.jit(jax.grad(problem.objective))(U))
    f = jax.jit(problem.objective)
    h = 1e-5
    fd = np.zeros(U.shape)
    for idx in np.ndindex(*U.shape):
        E = np.zeros(U.shape)
        E[idx] = h
        fd[idx] = (f(U + E) - f(U - E)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


def test_x0_may_be_omitted(tmp_path):
    """Without task.x0 the problem starts at the system's default_x0() (qpos0, or the keyframe, with zero qvel)."""
    s = spec.load(write(tmp_path, f"""
        [system]
        name = "mjx"
        model = "{os.path.join(MODELS, 'pendulum_wall.xml')}"
        keyframe = "raised"
        [task]
        horizon = 3
        goal = [0.0, 0.0]
        Q = [1.0, 0.1]
        R = [0.1]
        """))
    np.testing.assert_array_equal(s.task.x0, [0.5, 0.0])


@pytest.mark.parametrize("extra", ["", "iterations = 1"])
def test_gradient_matches_central_differences_without_contact(tmp_path, extra):
    """Pendulum swinging gently, far from the +-0.5 rad limits: smooth dynamics; both gradient modes are exact."""
    s = spec.load(write(tmp_path, PENDULUM.format(extra=extra)))
    assert s.system.gradient_mode == ("reverse" if extra else "forward")
    problem = s.problem()
    U = problem.U0
    g = np.asarray(jax.jit(jax.grad(problem.objective))(U))
    f = jax.jit(problem.objective)
    h = 1e-5
    fd = np.zeros(U.size)
    for i in range(U.size):
        e = np.zeros(U.size)
        e[i] = h
        E = jnp.asarray(e.reshape(U.shape))
        fd[i] = (f(U + E) - f(U - E)) / (2 * h)
    np.testing.assert_allclose(g.ravel(), fd, rtol=1e-6, atol=1e-9)


def test_gradcheck_flags_the_contact_case():
    """The ball bounced off the wall. MuJoCo's soft contact is continuous, so autodiff is right locally
    (agreement at small steps), but the cost bends sharply within h = 0.1 (the bounce's timing moves):
    gradcheck must not call it plainly consistent (it says "stiff"; measured: 31% off at h = 0.1)."""
    s = spec.load(os.path.join(ROOT, "problems", "mjx_ball_wall.toml"), overrides=["task.u_init=0.3"])
    problem = s.problem()
    check = diagnostics.gradient_check(jax.random.PRNGKey(0), problem, problem.U0, directions=4, steps=[1e-1, 1e-3, 1e-5])
    summary = diagnostics.gradcheck_summary(check)
    assert summary["verdict"] in ("non_smooth", "discontinuity", "stiff"), summary["verdict"]


def _not_run_at_defaults(problem: str) -> list[str]:
    """The paper's oracles and ``exact`` that the problem file's own ``[solve] oracles`` leave out. Those it lists run
    at the file's defaults in this same job (tests/test_problems.py, test_every_file_runs_to_completion_at_its_defaults:
    every seed "ok", every final cost finite), so running them here again at a short horizon would only repeat that
    (12 compilations: 8-16 minutes of one worker in two sittings' durations); the test below runs the rest."""
    with open(os.path.join(ROOT, "problems", f"{problem}.toml"), "rb") as f:
        own = tomllib.load(f)["solve"]["oracles"]
    return [o for o in ("fobg", "exact", "zobg", "aobg") if o not in own]


@pytest.mark.slow
@pytest.mark.parametrize("problem, oracle", [(p, o) for p in PROBLEMS for o in _not_run_at_defaults(p)])
def test_every_oracle_runs_on_every_shipped_problem(problem, oracle):
    s = spec.load(os.path.join(ROOT, "problems", f"{problem}.toml"), overrides=["task.horizon=10"])
    config = s.oracles.get(oracle) or ORACLES.get(oracle)()
    result = solve(s.problem(), GradientMethod(config, SGD(1e-4)), key=jax.random.PRNGKey(0), iterations=3, seeds=(0, 1))
    assert result.cost.shape == (2, 4)
    assert np.all(np.isfinite(result.cost))


@pytest.mark.parametrize("method", ["fobg", "ilqr"])
def test_counts_match_callbacks_in_the_mjx_map(method):
    """The independent count of tests/test_counts.py on an MJX problem (horizon 3): the control step wrapped with
    host callbacks (a custom_vjp for FoBG's backward passes, a custom_jvp for iLQR's jacfwd linearisation), one
    jitted init and step, the counted rollouts, backward passes and linearisations against the callbacks'. iLQR
    needs a map with forward-mode derivatives: the default (several solver iterations, a custom VJP) is refused
    before anything compiles, one solver iteration (plain reverse mode through mjx.step) runs."""
    from test_counts import assert_counts

    from trajopt.methods import ILQR, check_applicable
    from trajopt.problem import trajectory_problem

    path = os.path.join(ROOT, "problems", "mjx_pendulum_wall.toml")
    if method == "ilqr":
        with pytest.raises(ValueError, match="ilqr linearises the one-step map with forward-mode derivatives"):
            check_applicable(ILQR(), spec.load(path, overrides=["task.horizon=3"]).problem())
    overrides = ["task.horizon=3"] + (["system.iterations=1"] if method == "ilqr" else [])
    base = spec.load(path, overrides=overrides).problem()
    build = lambda step: trajectory_problem("mjx_counted", step, base.x0, base.cost, base.U0)  # noqa: E731
    chosen = GradientMethod(ORACLES.get("fobg")(samples=2), SGD(1e-4)) if method == "fobg" else ILQR()
    assert_counts(chosen, build, base.step, 3, base.x0.shape[0] + base.U0.shape[1], closed_loop=False)


def test_a_variant_traces_mjx_at_most_twice_not_at_every_call_site(monkeypatch):
    """A FoBG variant steps the model at five places (the start's f(U0), the samples' forward-mode Jacobians, the
    reported f(U), the final trajectory and cost); the step is a jax.jit of its own, so MJX's Python (mjx.step) is
    traced once for the rollouts and once for the Jacobians (JAX traces the jit again inside the custom_vjp's
    forward pass, whose trace context differs), where inlined physics traced it at each place
    (benchmarks/bench_mjx_jit.py: the compile seconds)."""
    import mujoco.mjx as mjx_module

    traced = []
    real = mjx_module.step
    monkeypatch.setattr(mjx_module, "step", lambda m, d: traced.append(1) or real(m, d))
    path = os.path.join(ROOT, "problems", "mjx_pendulum_wall.toml")
    s = spec.load(path, overrides=["task.horizon=3"])
    r = solve(s.problem(), GradientMethod(ORACLES.get("fobg")(samples=2), SGD(1e-4)), key=jax.random.PRNGKey(0),
              iterations=2, seeds=[0, 1])
    assert np.isfinite(r.cost).all()
    assert 1 <= len(traced) <= 2  # at least one: the counter sees the step's traces (the test cannot pass vacuously)


def test_a_vmapped_rollout_starts_exactly_at_x0():
    """MJX.simulate under vmap over the controls makes x0 batched (so JAX batches the scan once); X[0] is still x0
    exactly, also for a row of NaN controls, and every row is the unbatched rollout."""
    system = spec.load(os.path.join(ROOT, "problems", "mjx_pendulum_wall.toml"), overrides=["task.horizon=4"]).system
    x0 = jnp.asarray(system.default_x0()) + 0.1
    U = jnp.stack([jnp.full((4, 1), 0.5), jnp.full((4, 1), jnp.nan), jnp.linspace(-1, 1, 4)[:, None]])
    X = jax.jit(jax.vmap(system.simulate, in_axes=(None, 0)))(x0, U)
    np.testing.assert_array_equal(np.asarray(X[:, 0]), np.broadcast_to(np.asarray(x0), (3, x0.shape[0])))
    for i in (0, 2):
        np.testing.assert_array_equal(np.asarray(X[i]), np.asarray(jax.jit(system.simulate)(x0, U[i])))



# A model for the RK4 step: a free box resting on the floor (quaternion integration, contact, the solver), a hinge
# driven through a first-order filter (an activation: RK4 integrates act too) and a ball joint below it, and a
# tendon (under x64 MJX's forward dynamics return some of a tendon's index arrays in another integer dtype).
RK4_MODEL = """
<mujoco>
  <option timestep="0.005" integrator="RK4"/>
  <worldbody>
    <geom type="plane" size="1 1 0.1"/>
    <body name="box" pos="0 0 0.049">
      <freejoint/>
      <geom type="box" size="0.05 0.05 0.05" mass="1"/>
    </body>
    <body name="arm" pos="0.5 0 0.5">
      <joint name="hinge" type="hinge" axis="0 1 0" damping="0.1"/>
      <geom type="capsule" fromto="0 0 0 0.2 0 0" size="0.02" contype="0" conaffinity="0"/>
      <body pos="0.2 0 0">
        <joint name="ball" type="ball" damping="0.01" armature="0.005"/>
        <geom type="capsule" fromto="0 0 0 0.15 0 0" size="0.02" contype="0" conaffinity="0"/>
      </body>
    </body>
  </worldbody>
  <tendon>
    <fixed name="coupling"><joint joint="hinge" coef="1"/></fixed>
  </tendon>
  <actuator>
    <general joint="hinge" dyntype="filter" dynprm="0.05" gainprm="2"/>
  </actuator>
</mujoco>
"""


def test_the_rk4_step_agrees_with_mjx_step_with_contact_quaternions_and_activation():
    """trajopt's RK4 step (four stages in one loop, `mjx_physics.mjx_step`) against MJX's own (four unrolled copies)
    over 60 steps of a box on the floor, a filtered hinge motor and a ball joint: every state, the activation and the
    time agree to 1e-12 (7e-16 measured on this host's CPU; the margin is for another CPU's fusion), and so do
    the forward-mode Jacobians of one step. A wrong tableau entry (the third stage at
    c = 1) or the activation held at its start moves the states by far more (both checked)."""
    from mujoco import mjx

    from trajopt.systems.mjx_physics import _like, mjx_step

    m = mjx.put_model(mujoco.MjModel.from_xml_string(RK4_MODEL))
    d0 = mjx.make_data(m)
    d0 = d0.replace(qvel=d0.qvel.at[0].set(0.3).at[5].set(2.0).at[6].set(-1.0).at[7:10].set(jnp.array([0.5, -1, 1])))

    def run(step):
        def body(d, t):
            d = _like(step(m, d.replace(ctrl=jnp.sin(0.2 * t)[None])), d)  # the loop's carry keeps its dtypes
            return d, (d.qpos, d.qvel, d.act, d.time)
        return jax.jit(lambda: jax.lax.scan(body, d0, jnp.arange(60.0))[1])()

    ours, theirs = run(lambda m, d: mjx_step(mjx, m, d)), run(mjx.step)
    assert float(jnp.abs(theirs[2]).max()) > 1e-3 and float(theirs[0][-1, 2]) < 0.06  # the act moves; the box is down
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-12)

    def one(step):
        def f(qvel):
            return step(m, d0.replace(qvel=qvel)).qpos
        return jax.jit(jax.jacfwd(f))(d0.qvel)

    np.testing.assert_allclose(np.asarray(one(lambda m, d: mjx_step(mjx, m, d))), np.asarray(one(mjx.step)),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("which", ["system", "cfd"])
def test_an_rk4_models_step_traces_the_forward_dynamics_once(tmp_path, monkeypatch, which):
    """The system's step (and the cfd oracle's backward model of it) traces MJX's forward dynamics once for an RK4
    model, in a loop over the four stages; mjx.step traces it twice, its first evaluation and the body of a scan over
    the three other stages that XLA receives unrolled: four copies of the collision, constraint and solver code to
    compile (docs/mjx.md: XLA's time about 40 % of mjx.step's)."""
    from mujoco import mjx
    from mujoco.mjx._src import forward as mjx_forward

    from trajopt.systems.mjx_contact import cfd_step

    (tmp_path / "m.xml").write_text(RK4_MODEL.replace('dyntype="filter" dynprm="0.05" ', ""))  # x holds no act
    system = MJX(model=str(tmp_path / "m.xml"), substeps=3)
    step = system.step if which == "system" else cfd_step(system, margin=0.01, acceleration=10.0, power=2.0)
    traced = []
    real = mjx_forward.forward
    monkeypatch.setattr(mjx_forward, "forward", lambda m, d: traced.append(1) or real(m, d))
    jax.make_jaxpr(step)(jnp.asarray(system.default_x0()), jnp.zeros(1))
    assert len(traced) == 1
    traced.clear()
    jax.make_jaxpr(lambda d: mjx.step(system.mjx_model, d))(mjx.make_data(system.mjx_model))
    assert len(traced) == 2  # the counter itself, on MJX's own step


def test_another_mujoco_mjx_steps_an_rk4_model_with_mjx_step_itself(tmp_path, monkeypatch):
    """The loop uses private pieces of the pinned mujoco-mjx (`mjx_physics.RK4_IN_ONE_LOOP`); with another version
    installed the step is mjx.step itself (its forward dynamics traced twice) and no step program is named."""
    from mujoco.mjx._src import forward as mjx_forward

    from trajopt.systems import mjx_physics

    (tmp_path / "m.xml").write_text(RK4_MODEL.replace('dyntype="filter" dynprm="0.05" ', ""))
    monkeypatch.setattr(mjx_physics, "RK4_IN_ONE_LOOP", "0.0")
    mjx_physics.rk4_in_one_loop.cache_clear()
    try:
        system = MJX(model=str(tmp_path / "m.xml"))
        traced = []
        real = mjx_forward.forward
        monkeypatch.setattr(mjx_forward, "forward", lambda m, d: traced.append(1) or real(m, d))
        jax.make_jaxpr(system.step)(jnp.asarray(system.default_x0()), jnp.zeros(1))
        assert len(traced) == 2 and system.step_program is None
    finally:
        mjx_physics.rk4_in_one_loop.cache_clear()  # the installed version's answer again after the test


def test_an_rk4_steps_compiled_program_is_under_half_the_size_of_mjx_steps():
    """What XLA makes of it: the optimised program of trajopt's RK4 step against mjx.step's, whose four copies of the
    forward dynamics XLA inlines (about 1.7 against 5.0 MB of HLO text for this model). The trace count above misses
    a loop unrolled again (``unroll=4``: 4.8 MB); this does not. (The lowered program cannot tell: its copies are calls
    of one function that XLA inlines later.)"""
    from mujoco import mjx

    from trajopt.systems.mjx_physics import mjx_step

    m = mjx.put_model(mujoco.MjModel.from_xml_string(RK4_MODEL))
    d = mjx.make_data(m)
    ours = len(jax.jit(lambda d: mjx_step(mjx, m, d)).lower(d).compile().as_text())
    theirs = len(jax.jit(lambda d: mjx.step(m, d)).lower(d).compile().as_text())
    assert ours < 0.5 * theirs, (ours, theirs)


def test_kept_step_costs_of_an_rk4_model_are_keyed_by_its_step_program(tmp_path):
    """Step costs kept before the RK4 step ran in one loop were timed on another program: an RK4 model's identity
    names its program, so they are measured again; an Euler model's and the C backend's identity is as before (no
    key), so their kept ratios still count."""
    from trajopt.step_costs import system_identity

    (tmp_path / "rk4.xml").write_text(RK4_MODEL.replace('dyntype="filter" dynprm="0.05" ', ""))
    (tmp_path / "euler.xml").write_text(RK4_MODEL.replace('dyntype="filter" dynprm="0.05" ', "")
                                        .replace('integrator="RK4"', 'integrator="Euler"'))
    idents = {}
    for name, extra in (("rk4", ""), ("euler", ""), ("rk4", 'backend = "mujoco"')):
        path = write(tmp_path, TEMPLATE.format(model=f"{name}.xml", extra=extra, x0="[" + ", ".join(["0.0"] * 22) + "]",
                                               q="[" + ", ".join(["1.0"] * 22) + "]", u_init="0.0"))
        idents[(name, extra)] = system_identity(spec.load(path))
    assert idents[("rk4", "")]["program"] == "rk4 in one loop"
    assert "program" not in idents[("euler", "")] and "program" not in idents[("rk4", 'backend = "mujoco"')]


# ------------------------------------------------------------------------------------------------ validation

TEMPLATE = """
[system]
name = "mjx"
model = "{model}"
{extra}
[task]
horizon = 5
x0 = {x0}
goal = {x0}
Q = {q}
R = [1.0]
u_init = {u_init}
"""


def bad(tmp_path, model="m.xml", extra="", x0="[0.0, 0.0]", u_init="0.0", xml=None):
    if xml is not None:
        (tmp_path / "m.xml").write_text(xml)
    q = "[" + ", ".join("1.0" for _ in x0.strip("[]").split(",")) + "]"
    path = write(tmp_path, TEMPLATE.format(model=model, extra=extra, x0=x0, q=q, u_init=u_init))
    with pytest.raises(SpecError) as e:
        spec.load(path)
    return path, e.value


def test_missing_model_file(tmp_path):
    path, e = bad(tmp_path, model="nowhere.xml")
    assert e.source == path and e.key == "system.model" and "nowhere.xml" in str(e) and "no such file" in str(e)


def test_malformed_xml(tmp_path):
    path, e = bad(tmp_path, xml="<mujoco><worldbody><body></mujoco>")
    assert e.source == path and e.key == "system.model" and "m.xml" in str(e) and "not a valid MJCF" in str(e)


def test_unknown_keyframe(tmp_path):
    path, e = bad(tmp_path, model=os.path.join(MODELS, "pendulum_wall.xml"), extra='keyframe = "upside_down"')
    assert e.key == "system.keyframe" and "upside_down" in str(e) and "'hanging'" in str(e) and path in str(e)


def test_no_actuators(tmp_path):
    xml = '<mujoco><worldbody><body><joint type="hinge"/><geom size="0.1"/></body></worldbody></mujoco>'
    path, e = bad(tmp_path, xml=xml, x0="[0.0, 0.0]")
    assert e.key == "system.model" and "no actuators" in str(e) and "m.xml" in str(e)


def test_wrong_control_size_in_u_init(tmp_path):
    path, e = bad(tmp_path, model=os.path.join(MODELS, "pendulum_wall.xml"), u_init="[0.0, 1.0, 2.0]")
    assert e.source == path and e.key == "task.u_init"


@pytest.mark.parametrize("extra, key", [
    ("substeps = 0", "system.substeps"), ('solref = [0.02]', "system.solref"), ("timestep = -1.0", "system.timestep"),
    ('gradient = "backwards"', "system.gradient"), ('gradient = "reverse"', "system.gradient"),  # model has 20 iterations
    ("stiffness = 3.0", "system.stiffness"),
])
def test_bad_parameters(tmp_path, extra, key):
    _, e = bad(tmp_path, model=os.path.join(MODELS, "pendulum_wall.xml"), extra=extra)
    assert e.key == key


def test_model_path_relative_to_problem_file(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "p.xml").write_text(open(os.path.join(MODELS, "pendulum_wall.xml")).read())
    s = spec.load(write(tmp_path, TEMPLATE.format(model="models/p.xml", extra="", x0="[0.0, 0.0]", q="[1.0, 1.0]", u_init="0.0")))
    assert s.system.model == str(tmp_path / "models" / "p.xml")


# ------------------------------------------------------------------------------------ models in packages


def _table(model: dict) -> str:
    return "{ " + ", ".join(f'{k} = "{v}"' for k, v in model.items()) + " }"


def package_problem(tmp_path, model: dict, n: int = 2, m: int = 1) -> str:
    return write(tmp_path, f"""
        [system]
        name = "mjx"
        model = {_table(model)}
        [task]
        horizon = 3
        goal = {[0.0] * n}
        Q = {[1.0] * n}
        R = {[0.1] * m}
        """)


def test_a_package_model_records_package_version_and_hashes(tmp_path):
    """model = { package, path }: the file inside the installed package, the distribution that installed it
    (mujoco-mjx, not mujoco: its RECORD lists the file), its version in the resolved config (which re-loads), and
    the sha256 of the model file and of each file it includes."""
    import hashlib
    from importlib import metadata

    import tomli_w

    s = spec.load(package_problem(tmp_path, HUMANOID, n=28 + 27, m=21))
    version = metadata.version("mujoco-mjx")
    assert s.system.model == {**HUMANOID, "version": version}
    source = s.system.model_source
    expected_file = os.path.join(os.path.dirname(mujoco.__file__), "mjx", "test_data", "humanoid", "humanoid.xml")
    assert source["file"] == expected_file and (source["distribution"], source["version"]) == ("mujoco-mjx", version)
    assert source["sha256"] == hashlib.sha256(open(expected_file, "rb").read()).hexdigest()
    assert (source["package"], source["path"]) == ("mujoco", HUMANOID["path"])
    resolved = s.resolved()
    assert resolved["system"]["model"] == {**HUMANOID, "version": version}
    again = spec.loads(tomli_w.dumps(resolved), str(tmp_path / "config.toml"))
    assert again.system.model_source == source and again.system.state_size == 28 + 27


def test_a_file_model_records_its_file_and_hashes(tmp_path):
    """A model named by path records its file, its sha256 and those of the files it reads (an include here)."""
    import hashlib

    (tmp_path / "parts").mkdir()
    body = PENDULUM_XML.split("<worldbody>")[1].split("</worldbody>")[0]
    (tmp_path / "parts" / "arm.xml").write_text(f"<mujoco><worldbody>{body}</worldbody></mujoco>")
    main = PENDULUM_XML.replace(f"<worldbody>{body}</worldbody>", '<include file="parts/arm.xml"/>')
    (tmp_path / "m.xml").write_text(main)
    source = MJX(model=str(tmp_path / "m.xml")).model_source
    assert source == {"file": str(tmp_path / "m.xml"), "sha256": hashlib.sha256(main.encode()).hexdigest(),
                      "files": {"parts/arm.xml": hashlib.sha256((tmp_path / "parts" / "arm.xml").read_bytes()).hexdigest()}}


@pytest.mark.parametrize("model, key, words", [
    ({"package": "no_such_package_here", "path": "a.xml"}, "system.model.package",
     ["'no_such_package_here'", "not installed", "pip install no_such_package_here"]),
    ({**HUMANOID, "version": "0.0.1"}, "system.model.version", ["'0.0.1'", "mujoco-mjx", "is installed"]),
    ({"package": "mujoco", "path": "mjx/test_data/humanoid/humanoid.xmll"}, "system.model.path",
     ["no such file", "did you mean 'mjx/test_data/humanoid/humanoid.xml'?"]),
    ({"package": "mujoco", "path": "../numpy/__init__.py"}, "system.model.path", ["outside the package mujoco"]),
    ({"package": "mujoco", "file": "x.xml"}, "system.model.file", ["unknown key", "package, path, version"]),
    ({"path": "x.xml"}, "system.model.package", ["missing"]),
])
def test_bad_package_models_are_refused(tmp_path, model, key, words):
    path = package_problem(tmp_path, model)
    with pytest.raises(SpecError) as e:
        spec.load(path)
    assert e.value.source == path and e.value.key == key, str(e.value)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_a_package_model_that_reads_a_file_outside_its_folder_is_refused(tmp_path, monkeypatch):
    """A package's model whose include leaves the model's folder: the package and version would not identify what is
    simulated, so it is refused (at system.model, naming the include and the file); the same model inside the folder
    loads."""
    site = tmp_path / "site"
    models = site / "modelpkg" / "models"
    models.mkdir(parents=True)
    (site / "modelpkg" / "__init__.py").write_text("")
    body = PENDULUM_XML.split("<worldbody>")[1].split("</worldbody>")[0]
    (site / "modelpkg" / "arm.xml").write_text(f"<mujoco><worldbody>{body}</worldbody></mujoco>")
    (models / "arm.xml").write_text(f"<mujoco><worldbody>{body}</worldbody></mujoco>")
    for name, target in (("out.xml", "../arm.xml"), ("in.xml", "arm.xml")):
        (models / name).write_text(PENDULUM_XML.replace(f"<worldbody>{body}</worldbody>", f'<include file="{target}"/>'))
    monkeypatch.syspath_prepend(str(site))
    path = package_problem(tmp_path, {"package": "modelpkg", "path": "models/out.xml"})
    with pytest.raises(SpecError) as e:
        spec.load(path)
    assert e.value.key == "system.model", str(e.value)
    for w in ("<include file='../arm.xml'>", str(site / "modelpkg" / "arm.xml"), "outside the model's folder"):
        assert w in str(e.value), (w, str(e.value))
    ok = MJX(model={"package": "modelpkg", "path": "models/in.xml"})
    assert ok.model == {"package": "modelpkg", "path": "models/in.xml"} and ok.model_source["version"] == ""


def test_mujoco_warnings_are_kept_not_printed_or_logged(tmp_path, monkeypatch, capfd):
    """A MuJoCo warning while the model compiles (a deprecated compiler attribute) lands in load_warnings: nothing
    on stdout or stderr and no MUJOCO_LOG.TXT in the working directory (MuJoCo's default handler writes both)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.xml").write_text(PENDULUM_XML.replace("<worldbody>", '<compiler settotalmass="2"/><worldbody>', 1))
    system = MJX(model=str(tmp_path / "m.xml"))
    assert any("settotalmass" in w for w in system.load_warnings), system.load_warnings
    out, err = capfd.readouterr()
    assert "settotalmass" not in out + err and not (tmp_path / "MUJOCO_LOG.TXT").exists()
    assert mujoco.get_mju_user_warning() is None  # the previous handler (none) is back


# ------------------------------------------------------------------------------------- what MJX refuses

PENDULUM_XML = open(os.path.join(MODELS, "pendulum_wall.xml")).read()


@pytest.mark.parametrize("change, found, allowed", [
    (('<option ', '<option solver="PGS" '), '<option solver="PGS">', 'solver = "CG", "Newton"'),
    (('integrator="Euler"', 'integrator="implicit"'), '<option integrator="implicit">', '"Euler", "RK4", "implicitfast"'),
    (('<option ', '<option><flag energy="enable"/></option><option '), '<flag energy="enable">', "allowed: enabling only"),
])
def test_options_mjx_does_not_implement_are_refused_at_load(tmp_path, change, found, allowed):
    """Refused when the problem is loaded, with the house message at system.model (the element, what MJX allows),
    never MJX's raw NotImplementedError."""
    path, e = bad(tmp_path, xml=PENDULUM_XML.replace(*change))
    assert e.source == path and e.key == "system.model"
    assert found in str(e) and "MJX" in str(e) and allowed in str(e), str(e)


CYLINDER_BOX = ('<mujoco><worldbody><body name="can"><joint name="s" type="slide" axis="0 0 1"/>'
                '<geom name="tin" type="cylinder" size="0.1 0.1" {extra}/></body><body name="crate" pos="0.15 0 0">'
                '<joint name="t" type="slide" axis="0 0 1"/><geom name="lid" type="box" size="0.1 0.1 0.1"/></body>'
                '</worldbody><actuator><motor joint="s"/></actuator></mujoco>')


def test_a_geom_pair_mjx_cannot_collide_is_refused_naming_both_geoms(tmp_path):
    """A cylinder that can touch a box (MJX has no cylinder-box collision function): refused at load, naming both
    geoms, their bodies and what each type collides with in MJX, never MJX's raw NotImplementedError."""
    path, e = bad(tmp_path, xml=CYLINDER_BOX.format(extra=""), x0="[0.0, 0.0, 0.0, 0.0]")
    assert e.key == "system.model" and e.source == path
    for words in ('<geom name="tin"> (cylinder, in <body name="can">)', '<geom name="lid"> (box, in <body name="crate">)',
                  "has no cylinder-box collision function", "a cylinder collides with: plane, sphere, capsule, "
                  "ellipsoid, cylinder", "contype/conaffinity"):
        assert words in str(e), (words, str(e))
    assert "NotImplementedError" not in str(e)


def test_a_pair_that_cannot_collide_is_not_refused(tmp_path):
    """The same bodies with the cylinder out of collision (contype = conaffinity = 0) load: the check follows MJX's
    own pair rules, not every pair of geoms in the model."""
    (tmp_path / "m.xml").write_text(CYLINDER_BOX.format(extra='contype="0" conaffinity="0"'))
    assert MJX(model=str(tmp_path / "m.xml")).state_size == 4


HINGE_MODEL = ('<mujoco><option {option}/>{asset}<worldbody>{world}<body name="arm"><joint name="hinge" type="hinge" '
               'axis="0 1 0" limited="true" range="-1 1"/><geom name="rod" type="capsule" size="0.05" fromto="0 0 0 0 0 -1"/>'
               '<site name="tip" pos="0 0 -1"/></body></worldbody><actuator>{actuator}</actuator>{more}</mujoco>')


@pytest.mark.parametrize("parts, words", [
    ({"actuator": '<general name="slow" joint="hinge" dyntype="filter" dynprm="0.1"/>'},
     ['<actuator name="slow"> with dyntype="filter"', "activation state", "x = [qpos, qvel]"]),
    ({"actuator": '<motor joint="hinge"/><adhesion name="stick" body="arm" ctrlrange="0 1"/>'},
     ['<actuator name="stick"> of transmission "body"', "MJX (mujoco-mjx", "allowed: joint, jointinparent, site, tendon"]),
    ({"actuator": '<motor joint="hinge"/>', "more": '<sensor><jointlimitpos name="lim" joint="hinge"/></sensor>'},
     ['<sensor name="lim"> of type "jointlimitpos"', "does not implement"]),
    ({"actuator": '<motor joint="hinge"/>', "option": 'integrator="implicitfast" density="1.2"'},
     ['<option integrator="implicitfast"> with fluid drag (density 1.2', 'allowed: integrator "Euler" or "RK4"']),
    ({"actuator": '<motor joint="hinge"/>', "asset": '<asset><mesh name="tet" vertex="0 0 0 1 0 0 0 1 0 0 0 1"/></asset>',
      "world": '<geom name="floor" type="plane" size="2 2 0.1" pos="0 0 -1.5"/><body name="rock" pos="0 0 -1.2">'
               '<freejoint/><geom name="stone" type="mesh" mesh="tet" margin="0.01"/></body>'},
     ['<geom name="floor"> (plane', '<geom name="stone"> (mesh, in <body name="rock">)', "with margin 0.01",
      "margin = 0"]),
])
def test_elements_mjx_cannot_simulate_are_refused_naming_the_element(tmp_path, parts, words):
    """Each refused at load, at system.model, naming the element and why (never MJX's NotImplementedError and never
    a failure inside a trace)."""
    fields = {"option": "", "asset": "", "world": "", "actuator": "", "more": ""} | parts
    (tmp_path / "m.xml").write_text(HINGE_MODEL.format(**fields))
    with pytest.raises(ModelError) as e:
        MJX(model=str(tmp_path / "m.xml"))
    assert e.value.key == "model"
    for w in words:
        assert w in e.value.message, (w, e.value.message)
    assert "NotImplementedError" not in e.value.message


def _refused_in_time(call, seconds=60.0):
    """call() in a daemon thread: (finished, what it raised); a reader blocked on a FIFO never finishes."""
    import threading

    outcome = {}

    def run():
        try:
            call()
        except BaseException as e:  # noqa: BLE001
            outcome["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    return not t.is_alive(), outcome.get("error")


@pytest.mark.parametrize("where", ["include", "nested include", "mesh", "model"])
def test_special_files_are_refused_before_reading(tmp_path, where):
    """A FIFO named by the model (an <include>, an include inside an include, a mesh) or given as the model
    itself would block MuJoCo's reader forever: it is refused by stat before anything is read."""
    os.mkfifo(tmp_path / "fifo.xml")
    (tmp_path / "sub").mkdir()
    body = PENDULUM_XML
    if where == "include":
        body = body.replace("<worldbody>", '<include file="fifo.xml"/><worldbody>')
    elif where == "nested include":
        (tmp_path / "sub" / "part.xml").write_text('<mujoco><include file="../fifo.xml"/></mujoco>')
        body = body.replace("<worldbody>", '<include file="sub/part.xml"/><worldbody>')
    elif where == "mesh":
        body = body.replace("<worldbody>", '<asset><mesh name="m" file="fifo.xml"/></asset><worldbody>')
    (tmp_path / "m.xml").write_text(body)
    model = "fifo.xml" if where == "model" else "m.xml"
    path = write(tmp_path, TEMPLATE.format(model=model, extra="", x0="[0.0, 0.0]", q="[1.0, 1.0]", u_init="0.0"))
    finished, error = _refused_in_time(lambda: spec.load(path))
    assert finished, "the loader blocked on a FIFO"
    assert isinstance(error, SpecError) and error.key == "system.model", repr(error)
    assert "a FIFO" in str(error) and "fifo.xml" in str(error) and "allowed: a regular file" in str(error)
