"""The mjx system's backend = "mujoco" (MuJoCo's C simulator, `trajopt.systems.mujoco_c`): its states against a plain
mj_step loop and against MJX, one host call per vmapped batch, the refusal of methods that need derivatives (before
anything compiles, exit 2 from the CLI), the forward-only methods' counts against the rows it simulates, non-finite
inputs, and what a run records."""

import os

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
from trajopt.compute import measure_step_costs  # noqa: E402
from trajopt.methods import METHODS, GradientMethod, MultiStart, check_applicable  # noqa: E402
from trajopt.oracles import ORACLES  # noqa: E402
from trajopt.spec import SpecError  # noqa: E402
from trajopt.systems import mujoco_c  # noqa: E402
from trajopt.systems.mjx import MJX  # noqa: E402

# the independent reference: (qpos, qvel, ctrl) set, a cold solver, substeps x mujoco.mj_step per control step
from test_mjx import c_rollout as mj_step_rollout  # noqa: E402  (tests/ is on the path)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PENDULUM = os.path.join(ROOT, "problems", "mjx_pendulum_wall.toml")
C = ['system.backend="mujoco"']
T = 150  # steps compared (>= 100); the pendulum hits both walls within them
runner = CliRunner()


def controls(mm, T: int, B: int = 0, seed: int = 0) -> np.ndarray:
    """[T, m] (or [B, T, m]) uniform in 80 % of the actuators' control range."""
    lo, hi = mm.actuator_ctrlrange[:, 0], mm.actuator_ctrlrange[:, 1]
    shape = (B, T, mm.nu) if B else (T, mm.nu)
    return 0.8 * (lo + (hi - lo) * np.random.default_rng(seed).uniform(size=shape))




@pytest.fixture(scope="module")
def pendulum():
    """(spec on MJX, spec on the C backend)."""
    return spec.load(PENDULUM), spec.load(PENDULUM, overrides=C)


class Tally:
    """Calls and rows (rollouts of the horizon) of `mujoco_c.Simulator.rollout`, the one place the C backend simulates."""

    def __init__(self, monkeypatch):
        self.calls = self.rows = 0
        original = mujoco_c.Simulator.rollout

        def counted(sim, x0, U):
            self.calls += 1
            self.rows += int(U.shape[0])
            return original(sim, x0, U)

        monkeypatch.setattr(mujoco_c.Simulator, "rollout", counted)

    def reset(self):
        self.calls = self.rows = 0


def test_states_are_mj_steps_and_match_mjx_over_150_steps(pendulum):
    mjx_spec, c_spec = pendulum
    mm = mjx_spec.system.mj_model
    x0 = np.asarray(mjx_spec.task.x0, float)
    U = controls(mm, T)
    X = np.asarray(jax.jit(c_spec.system.simulate)(jnp.asarray(x0), jnp.asarray(U)))
    assert X.shape == (T + 1, 2)
    # the C backend is MuJoCo's mj_step, control step by control step (a cold solver at each, ctrl held for substeps)
    np.testing.assert_allclose(X, mj_step_rollout(c_spec.system, x0, U), rtol=0, atol=1e-12)
    assert np.max(np.abs(X[:, 0])) > 0.45  # the swing reaches the walls at +-0.5 rad (the limit constraint acts)
    # and MJX's rollout of the same model and controls: the same states to the solvers' round-off (measured 8e-15)
    Xm = np.asarray(jax.jit(mjx_spec.problem().trajectory)(jnp.asarray(U)))
    np.testing.assert_allclose(X, Xm, rtol=0, atol=1e-9)
    # the problem's objective runs the C rollout: the same cost as MJX's
    np.testing.assert_allclose(float(jax.jit(c_spec.problem().objective)(jnp.asarray(U[:100]))),
                               float(jax.jit(mjx_spec.problem().objective)(jnp.asarray(U[:100]))), rtol=1e-12)


def test_a_vmapped_batch_is_one_host_call_and_each_row_its_own_rollout(pendulum, monkeypatch):
    _, c_spec = pendulum
    system = c_spec.system
    tally = Tally(monkeypatch)
    x0 = jnp.asarray(c_spec.task.x0, float)
    Ub = controls(system.mj_model, 30, B=6)
    batch = jax.jit(jax.vmap(system.simulate, (None, 0)))(x0, jnp.asarray(Ub))
    assert (tally.calls, tally.rows) == (1, 6)
    nested = jax.jit(jax.vmap(jax.vmap(system.simulate, (None, 0)), (None, 0)))(x0, jnp.asarray(Ub.reshape(2, 3, 30, 1)))
    assert (tally.calls, tally.rows) == (2, 12)
    np.testing.assert_array_equal(np.asarray(nested).reshape(6, 31, 2), np.asarray(batch))
    for i in (0, 5):  # a row of the batch is the rollout of its own controls
        np.testing.assert_allclose(np.asarray(batch[i]), mj_step_rollout(system, np.asarray(x0), Ub[i]), atol=1e-12,
                                   rtol=0)
    # one control step (system.step) is a rollout of one
    x1 = jax.jit(system.step)(x0, jnp.asarray(Ub[0, 0]))
    np.testing.assert_array_equal(np.asarray(x1), np.asarray(batch[0, 1]))


def test_non_finite_inputs_give_nan_from_the_step_that_reads_them(pendulum):
    _, c_spec = pendulum
    system = c_spec.system
    U = controls(system.mj_model, 10)
    U[4] = np.nan
    X = np.asarray(jax.jit(system.simulate)(jnp.asarray(c_spec.task.x0, float), jnp.asarray(U)))
    assert np.all(np.isfinite(X[:5])) and np.all(np.isnan(X[5:]))
    X = np.asarray(jax.jit(system.simulate)(jnp.array([np.inf, 0.0]), jnp.asarray(U[:3])))
    assert np.isinf(X[0, 0]) and np.all(np.isnan(X[1:]))


DIFFERENTIATING = {
    "oracle 'exact'": lambda: GradientMethod(ORACLES.get("exact")()),
    "oracle 'fobg'": lambda: GradientMethod(ORACLES.get("fobg")(samples=4)),
    "oracle 'aobg'": lambda: GradientMethod(ORACLES.get("aobg")(samples=4)),
    "oracle 'cfd'": lambda: GradientMethod(ORACLES.get("cfd")()),
    "method 'ilqr'": lambda: METHODS.get("ilqr")(),
    "method 'lbfgs'": lambda: METHODS.get("lbfgs")(),
    "method 'ilqr' (2 starts)": lambda: MultiStart(METHODS.get("ilqr")(), starts=2, start_spread=0.1),
}
FORWARD_ONLY = {
    "zobg": lambda: GradientMethod(ORACLES.get("zobg")(samples=4)),
    "mppi": lambda: METHODS.get("mppi")(samples=8),
    "ps": lambda: METHODS.get("ps")(samples=8),
    "cem": lambda: METHODS.get("cem")(population=10),
    "dial": lambda: METHODS.get("dial")(samples=8),
}


@pytest.mark.parametrize("label", list(DIFFERENTIATING))
def test_methods_that_differentiate_are_refused_naming_the_ones_that_run(pendulum, label):
    _, c_spec = pendulum
    with pytest.raises(ValueError) as e:
        check_applicable(DIFFERENTIATING[label](), c_spec.problem())
    message = str(e.value)
    if label == "oracle 'cfd'":  # cfd's own rule (it swaps in MJX's contact gradients)
        assert message.startswith("oracle 'cfd' differentiates MJX's contacts") and 'backend = "mjx"' in message
        return
    assert message.startswith(f"{label} needs derivatives of the simulator, which system.backend = \"mujoco\" "
                              f"(MuJoCo {mujoco.__version__} (C)) does not give"), message
    allowed = message.split("allowed on it: ")[1].split(" (or")[0].split(", ")
    assert {"cem", "mppi", "ps", "dial", "oracle zobg"} <= set(allowed), allowed
    assert not {"ilqr", "lbfgs", "oracle exact", "oracle fobg", "oracle aobg", "oracle cfd"} & set(allowed), allowed


def test_refusal_on_mjx_backend_is_nothing(pendulum):
    mjx_spec, _ = pendulum
    check_applicable(DIFFERENTIATING["oracle 'fobg'"](), mjx_spec.problem())  # no error: MJX differentiates


def test_cli_refuses_before_compiling_with_exit_2(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["compare", PENDULUM, "--set", C[0], "--out", str(out), "--quiet"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"{PENDULUM}: variants.fobg: oracle 'fobg' needs derivatives of the simulator" in text, text
    assert "allowed on it: cem, mppi, ps, dial" in text and "oracle zobg" in text
    assert not out.exists()


def test_a_forward_only_run_records_the_simulator(tmp_path, monkeypatch):
    import json

    monkeypatch.delenv("TRAJOPT_STEP_COSTS")  # measured (tests/conftest.py gives them): no derivatives, ρ = 0

    out = tmp_path / "run"
    result = runner.invoke(app, ["compare", PENDULUM, "--set", C[0], "--variants", "zobg,mppi", "--iterations", "3",
                                 "--seeds", "2", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "result.json").read_text())
    assert record["model_source"]["simulator"] == f"MuJoCo {mujoco.__version__} (C)"
    assert 'backend = "mujoco"' in (out / "config.toml").read_text()
    assert record["step_costs"]["backward"] == 0 and record["step_costs"]["linearization"] == 0
    assert record["variants"]["zobg"]["gradients"] == 0 and record["variants"]["zobg"]["rollouts"] > 0
    # their final evaluation calls back into the simulator (never in a cache of programs by text): still compiled
    # once for both variants (one record: the same seconds in each), without the persistent cache
    final = {(v["program"]["final_evaluation"], v["program"]["final_evaluation_seconds"])
             for v in record["variants"].values()}
    assert len(final) == 1 and next(iter(final))[0] == "off", final


@pytest.mark.parametrize("label", list(FORWARD_ONLY))
def test_counted_rollouts_are_the_rows_simulated(pendulum, monkeypatch, label):
    """info.rollouts (+ f(U) for the reported value where the method's counted rollouts do not include it, the
    method contract's one uncounted evaluation) == the rollouts MuJoCo simulated for one step; init at most f(U0)."""
    _, c_spec = pendulum
    problem = c_spec.problem()
    method = FORWARD_ONLY[label]()
    check_applicable(method, problem)
    tally = Tally(monkeypatch)
    key = jax.random.PRNGKey(0)
    state = jax.jit(lambda k: method.init(k, problem, problem.U0))(key)
    assert tally.rows in (0, 1)
    tally.reset()
    _, info = jax.jit(lambda k, s: method.step(k, problem, s))(key, state)
    jax.block_until_ready(info)
    reports = 0 if getattr(method, "value_in_calls", False) else 1
    assert tally.rows == int(info.rollouts) + reports, (tally.rows, int(info.rollouts), reports)
    assert int(info.gradients) == 0


def test_bad_backend_and_step_costs(pendulum):
    with pytest.raises(SpecError, match=r"system\.backend: found 'c', allowed: 'mjx': MuJoCo MJX .*; 'mujoco': "
                                        r"MuJoCo's C simulator"):
        spec.load(PENDULUM, overrides=['system.backend="c"'])
    _, c_spec = pendulum
    costs = measure_step_costs(c_spec.system.step, 2, 1)
    assert (costs.backward, costs.linearization) == (0.0, 0.0) and "not measured" in costs.source


def test_a_plant_drawn_per_seed_runs_on_the_c_simulator_as_on_mjx():
    """`MJX.physics_step` on the C backend (each row on its own scaled copy of the model) against MJX's, on the
    sliding ball: friction x2 and damping x10 move it as MJX moves it, and differently from the unscaled model."""
    slider = os.path.join(ROOT, "tests", "models", "slider.xml")
    targets = [("geom_friction", None), ("dof_damping", "x")]
    # the solver converged (the file runs one iteration, where MJX and MuJoCo stop at different points)
    steps = {b: MJX(model=slider, substeps=2, iterations=50, ls_iterations=50, backend=b).physics_step(targets)
             for b in ("mjx", "mujoco")}
    x0 = jnp.array([0.0, 0.0, 1.0, 0.0])  # sliding along x at 1 m/s
    F = jnp.array([[1.0, 1.0], [2.0, 10.0], [0.5, 1.0]])  # three seeds' factors
    u = jnp.array([2.0])

    def episode(step):
        def body(x, _):
            y = jax.vmap(step, (0, None, 0))(x, u, F)
            return y, y
        return jax.lax.scan(body, jnp.broadcast_to(x0, (3, 4)), None, length=40)[1]

    Xc, Xm = (np.asarray(jax.jit(lambda s=steps[b]: episode(s))()) for b in ("mujoco", "mjx"))
    np.testing.assert_allclose(Xc, Xm, rtol=0, atol=1e-6)  # measured: 2e-9 (the solvers' tolerance)
    assert Xc[-1, 1, 0] < Xc[-1, 0, 0] < Xc[-1, 2, 0]  # more friction and damping: behind; less friction: ahead


def test_a_diverging_rollout_is_nan_and_its_warning_kept_not_printed_or_logged(pendulum, tmp_path, monkeypatch, capfd):
    _, c_spec = pendulum
    monkeypatch.chdir(tmp_path)  # MuJoCo's own handler appends to MUJOCO_LOG.TXT in the working directory
    X = np.asarray(jax.jit(c_spec.system.simulate)(jnp.array([0.0, 1e300]), jnp.zeros((3, 1))))
    assert np.all(np.isnan(X[1:]))  # not reset to qpos0 (MuJoCo's autoreset is off): the run sees non-finite
    assert any("unstable" in w for w in c_spec.system._simulator.warnings)
    assert "WARNING" not in capfd.readouterr().out and not (tmp_path / "MUJOCO_LOG.TXT").exists()
