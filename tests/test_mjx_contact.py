"""Contacts from distance on MJX (the cfd oracle), the cube toss system and `trajopt fidelity` (the [mjx] extra).

The cfd oracle is pinned by hand on a ball falling towards a plane without touching it (tests/models/ball_drop.xml:
two Euler steps, so every derivative is a line of algebra), its value against the true cost compiled on its own,
and its two limits (margin 0, a margin the ball never enters) against the exact gradient. Each module fixture
compiles one program (MJX compiles for a minute or more on a loaded 2-core host)."""

import json
import os
import textwrap

import pytest

pytest.importorskip("mujoco.mjx", reason="the mjx system needs the [mjx] extra: pip install -e '.[mjx]'")
pytestmark = pytest.mark.mjx  # selected by `pytest -m mjx` (CI installs the extra and runs them); not in the default run

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from trajopt import spec  # noqa: E402
from trajopt.cli import app  # noqa: E402
from trajopt.oracles import ORACLES  # noqa: E402
from trajopt.spec import SpecError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BALL = os.path.join(ROOT, "tests", "models", "ball_drop.xml")
TOSS = os.path.join(ROOT, "problems", "mjx_cube_toss.toml")
PUSH = os.path.join(ROOT, "problems", "mjx_push_stiff.toml")
H, MASS, RADIUS, GRAVITY = 0.01, 1.0, 0.05, 9.81
GOAL_V, QF_V = 1.0, 3.0
NEAR = dict(margin=0.1, acceleration=3.0, power=2.0)   # the ball (5 cm of gap at x0 = 0) is inside it
HIGH = 0.2  # started 20 cm higher (25 cm of gap), the ball never enters the near law's margin
runner = CliRunner()


def ball_text(gradient: str = "auto") -> str:
    return textwrap.dedent(f"""
        [system]
        name = "mjx"
        model = "{BALL}"
        gradient = "{gradient}"

        [task]
        horizon = 2
        x0 = [0.0, 0.0]
        goal = [0.0, {GOAL_V}]
        Q = [0.0, 0.0]
        R = [0.0]
        Qf = [0.0, {QF_V}]
        u_init = 0.0
        """)


# The least XLA optimisation compiles these programs in about half the time (as tests/test_counts.py does); the true
# cost the oracle's value is compared with is compiled with the same options, apart from the oracle's program.
FAST_COMPILE = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 0,
                "xla_llvm_disable_expensive_passes": True}


def compiled(fn, *args):
    lowered = jax.jit(fn).lower(*args)
    try:
        return lowered.compile(compiler_options=FAST_COMPILE)
    except Exception:  # a jaxlib that does not know an option: its defaults
        return lowered.compile()


@pytest.fixture(scope="module")
def ball():
    """The ball problem in reverse mode (and forward mode for the near law), every estimate in one program whose
    start x0 is an argument: at x0 = 0 the ball is inside the near law's margin, at x0 = HIGH above it."""
    from trajopt.problem import trajectory_problem

    rev = spec.loads(ball_text()).problem()
    fwd = spec.loads(ball_text("forward")).problem()
    assert rev.system.gradient_mode == "reverse" and fwd.system.gradient_mode == "forward"
    U = jnp.array([[0.5], [-0.25]])
    cfd = ORACLES.get("cfd")
    oracles = {"exact": ORACLES.get("exact")(), "zero": cfd(margin=0.0), "near": cfd(**NEAR)}
    key = jax.random.PRNGKey(0)

    def program(U, x0):
        r, f = (trajectory_problem(p.name, p.step, x0, p.cost, p.U0) for p in (rev, fwd))
        return {n: o.estimate(key, r, U) for n, o in oracles.items()}, oracles["near"].estimate(key, f, U)

    def objective(U, x0):
        return trajectory_problem(rev.name, rev.step, x0, rev.cost, rev.U0).objective(U)

    x0, high = jnp.zeros(2), jnp.array([HIGH, 0.0])
    run, value = compiled(program, U, x0), compiled(objective, U, x0)
    (estimates, forward_near), far = run(U, x0), run(U, high)[0]
    return {"problem": rev, "U": U, "value": value(U, x0), "estimates": estimates, "forward_near": forward_near,
            "far": far}


def hand(U, law=None):
    """(J, dJ/dU [2, 1]) by hand: two semi-implicit Euler steps of a falling ball, no contact (the module doc).
    v1 = h(u0/m - g), z1 = h v1, v2 = v1 + h(u1/m - g), J = Qf_v (v2 - goal_v)^2. The cfd model adds the distance
    force F(d) = a m_eff (1 - d/margin)^p on 0 <= d < margin (d the gap between ball and plane), which reaches the
    gradient through the Jacobian of step 2 only (step 1's acts on z0, which is fixed): dv2/dz1 = h F'(d1) / m,
    with dz1/du0 = h^2 / m."""
    u0, u1 = float(U[0, 0]), float(U[1, 0])
    v1 = H * (u0 / MASS - GRAVITY)
    z1 = H * v1
    v2 = v1 + H * (u1 / MASS - GRAVITY)
    J = QF_V * (v2 - GOAL_V) ** 2
    dv2_du0, dv2_du1 = H / MASS, H / MASS
    if law is not None:
        mm = mujoco.MjModel.from_xml_path(BALL)
        m_eff = 1.0 / mm.body_invweight0[1, 0]  # MuJoCo's translational inverse weight of the ball (world: 0)
        d1 = 0.1 - RADIUS + z1  # the gap at x1: centre 0.1 + z1 above the plane, minus the radius
        assert 0 <= d1 < law["margin"]
        slope = -law["acceleration"] * m_eff * law["power"] / law["margin"] * (1 - d1 / law["margin"]) ** (law["power"] - 1)
        dv2_du0 += H * slope / MASS * H**2 / MASS
    return J, np.array([[2 * QF_V * (v2 - GOAL_V) * dv2_du0], [2 * QF_V * (v2 - GOAL_V) * dv2_du1]])


def test_the_hand_computation_is_the_exact_gradient(ball):
    J, g = hand(np.asarray(ball["U"]))
    grad, info = ball["estimates"]["exact"]
    assert float(info.value) == pytest.approx(J, rel=1e-12)
    np.testing.assert_allclose(np.asarray(grad), g, rtol=1e-10)


@pytest.mark.parametrize("law", ["zero", "near"])
def test_cfd_value_is_the_true_cost_bit_for_bit(ball, law):
    _, info = ball["estimates"][law]
    assert float(info.value) == float(ball["value"])  # the true rollout, compiled apart from the oracle's program
    assert (int(info.rollouts), int(info.gradients)) == (1, 1)


def test_cfd_with_margin_zero_is_the_exact_gradient(ball):
    np.testing.assert_array_equal(np.asarray(ball["estimates"]["zero"][0]), np.asarray(ball["estimates"]["exact"][0]))


def test_cfd_beyond_its_reach_is_the_exact_gradient(ball):
    far = ball["far"]
    np.testing.assert_allclose(np.asarray(far["near"][0]), np.asarray(far["exact"][0]), rtol=1e-13, atol=0)
    assert abs(float(far["exact"][0][0, 0]) - float(ball["estimates"]["exact"][0][0, 0])) < 1e-12  # free fall alike


def test_cfd_near_contact_is_the_hand_computed_distance_force_gradient(ball):
    _, g = hand(np.asarray(ball["U"]), NEAR)
    grad = np.asarray(ball["estimates"]["near"][0])
    np.testing.assert_allclose(grad, g, rtol=1e-9)
    assert abs(grad[0, 0] - np.asarray(ball["estimates"]["exact"][0])[0, 0]) > 1e-6  # the force is felt


def test_cfd_in_forward_mode_is_the_reverse_mode_gradient(ball):
    grad, info = ball["forward_near"]
    np.testing.assert_allclose(np.asarray(grad), np.asarray(ball["estimates"]["near"][0]), rtol=1e-10)
    assert float(info.value) == pytest.approx(float(ball["value"]), rel=1e-14)


def test_cfd_refuses_a_problem_without_an_mjx_system(ball):
    from trajopt.problem import trajectory_problem

    p = ball["problem"]
    plain = trajectory_problem("plain", lambda x, u: p.step(x, u), p.x0, p.cost, p.U0)  # a function, not a system
    with pytest.raises(ValueError, match="differentiates the contacts of a MuJoCo MJX model"):
        ORACLES.get("cfd")().check(plain)
    ORACLES.get("cfd")().check(p)


# ----------------------------------------------------------------------------------------------- the cube toss


def toss_spec(*overrides):
    return spec.load(TOSS, ["system.duration=0.2", *overrides])


def test_toss_matches_mujoco_c_through_the_landing():
    """0.2 s at 1e-3 (the cube lands at about 0.07 s): y and z against mj_step with a cold solver start every step
    (what the mjx system does)."""
    s = toss_spec()
    system = s.system
    assert system.steps == 200 and system.control_names == ("cube vy",)
    theta = -0.3
    y = float(jax.jit(system.cost)(jnp.array([theta])))
    mm = system.mjx_system.mj_model
    d = mujoco.MjData(mm)
    mujoco.mj_resetDataKeyframe(mm, d, mujoco.mj_name2id(mm, mujoco.mjtObj.mjOBJ_KEY, "toss"))
    d.qvel[1] = theta
    for _ in range(200):
        d.qacc_warmstart[:] = 0.0
        mujoco.mj_step(mm, d)
    assert d.qpos[2] < 0.08  # it has landed (the centre of a 10 cm cube on an edge: about 0.07 m)
    assert y == pytest.approx(float(d.qpos[1]), abs=1e-9)


@pytest.mark.parametrize("key, value, words", [
    ("system.velocity", "[6]", "a list of distinct qvel indices in 0..5"),
    ("system.velocity", "[1, 1]", "distinct qvel indices"),
    ("system.position", "7", "a qpos index in 0..6"),
    ("system.duration", "0.0", "a number of seconds > 0"),
    ("system.duration", "1e6", "Jacobian entries"),
    ("system.substeps", "2", "unknown key for the mjx_toss system"),
])
def test_toss_refuses_bad_parameters_at_their_key(key, value, words):
    with pytest.raises(SpecError, match=words) as e:
        spec.load(TOSS, [f"{key}={value}"])
    assert key in str(e.value)


# --------------------------------------------------------------------------------------------- trajopt fidelity


@pytest.mark.parametrize("args, words", [
    (["--timesteps", "0"], "--timesteps: found '0', allowed: comma-separated time steps > 0"),
    (["--timesteps", "1e-3,-1e-4"], "time steps > 0"),
    (["--timesteps", "3e-3"], "largest stable timestep here is 0.0025"),   # solref 0.005: timeconst >= 2 h
    (["--solrefs", "0.001,1", "--timesteps", "1e-3"], "largest stable timestep here is 0.0005"),
    (["--repeats", "100000000", "--oracles", "zobg"], "bytes at once for oracle zobg"),
    (["--oracles", "fd"], "finite differences are the reference"),
    (["--reference-timestep", "-1"], "--reference-timestep: found '-1'"),
])
def test_fidelity_refuses_before_anything_compiles(tmp_path, args, words):
    out = tmp_path / "f"
    result = runner.invoke(app, ["fidelity", TOSS, *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert words in " ".join(result.output.split()), result.output
    assert not out.exists()


def test_fidelity_refuses_a_time_step_that_does_not_divide_the_control_period(tmp_path):
    result = runner.invoke(app, ["fidelity", PUSH, "--timesteps", "3e-3", "--out", str(tmp_path / "f")])
    assert result.exit_code == 2 and "does not divide the control period 0.02 s" in " ".join(result.output.split())


def test_fidelity_on_the_falling_ball(tmp_path):
    """One cell at h = 0.005 (the file's 0.01 halved: substeps 2, the same 0.01 s control period, 4 physics steps)
    and a fine reference at 0.0025 (8 steps); free fall is integrated exactly in velocity by semi-implicit Euler,
    so the cell's exact gradient equals the fine one (a cell that kept substeps would halve the control period and
    the gradient); cfd with the ball inside its margin differs from the finite differences, exact does not. One
    cell, not two: each costs three MJX compilations (about 30 s each on a loaded 2-core host)."""
    problem = tmp_path / "ball.toml"
    problem.write_text(ball_text() + textwrap.dedent(f"""
        [solve]
        oracles = ["exact", "cfd"]

        [oracle.cfd]
        margin = {NEAR['margin']}
        acceleration = {NEAR['acceleration']}
        """))
    out = tmp_path / "f"
    result = runner.invoke(app, ["fidelity", str(problem), "--timesteps", "0.005", "--reference-timestep",
                                 "0.0025", "--set", "task.u_init=0.5", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = {r["oracle"]: r for r in report["rows"]}
    assert [(r["timestep"], r["oracle"]) for r in report["rows"]] == [(0.005, o) for o in ("fd", "exact", "cfd")]
    assert rows["exact"]["steps"] == 4 and [r["steps"] for r in report["references"] if r["kind"] == "fine"] == [8]
    assert rows["exact"]["fd_trusted"] and rows["exact"]["rel_fd"]["median"] < 1e-6
    assert rows["exact"]["rel_fine"]["median"] < 1e-9
    assert rows["cfd"]["rel_fd"]["median"] > 1e-4
    lines = (out / "fidelity.csv").read_text().splitlines()
    assert lines[0].startswith("point,solref,timestep,steps,oracle") and len(lines) == 1 + len(rows)
    assert (out / "fidelity.png").is_file()
