"""The mjx system refuses a time step beyond MuJoCo's rule for soft constraints (timeconst >= 2 x timestep), in every
verb, before anything compiles (the [mjx] extra; no JAX program is compiled here: each test builds models only).

The rule's two reasons are pinned on MuJoCo's C simulator (no compile): with refsafe on, any timeconst below 2 h
simulates bit for bit as timeconst = 2 h (the solref written has no effect); with refsafe off, the contact is
integrated unstably (the box is thrown metres into the air)."""

import os
import textwrap

import pytest

pytest.importorskip("mujoco.mjx", reason="the mjx system needs the [mjx] extra: pip install -e '.[mjx]'")
pytestmark = pytest.mark.mjx  # selected by `pytest -m mjx` (CI installs the extra and runs them); not in the default run

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from trajopt import spec  # noqa: E402
from trajopt.cli import app  # noqa: E402
from trajopt.spec import SpecError  # noqa: E402
from trajopt.systems.mjx import stable_timestep  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PUSH_XML = os.path.join(ROOT, "problems", "models", "push.xml")
PUSH = os.path.join(ROOT, "problems", "mjx_push_stiff.toml")        # solref 0.02, timestep 0.01: at the edge
TOSS = os.path.join(ROOT, "problems", "mjx_cube_toss.toml")         # solref 0.005, refsafe off, timestep 1e-3
runner = CliRunner()


def _push_final(timeconst: float, refsafe: bool) -> np.ndarray:
    """(qpos, qvel) of push.xml after 1 s at h = 0.01 under a constant 5 N, with every geom's solref [timeconst, 1]."""
    m = mujoco.MjModel.from_xml_path(PUSH_XML)
    m.geom_solref[:] = [timeconst, 1.0]
    if not refsafe:
        m.opt.disableflags |= mujoco.mjtDisableBit.mjDSBL_REFSAFE
    d = mujoco.MjData(m)
    d.ctrl[:] = 5.0
    for _ in range(100):
        mujoco.mj_step(m, d)
    return np.concatenate([d.qpos, d.qvel])


def test_the_rule_is_what_mujoco_does():
    """Why a time step beyond timeconst / 2 is refused: with refsafe on MuJoCo replaces the time constant by 2 h
    (0.005 and 0.02 at h = 0.01 give the same motion, bit for bit, so the solref written is ignored); with refsafe
    off the same contact gains energy (the 0.5 kg box, resting on the table, ends more than a metre up)."""
    np.testing.assert_array_equal(_push_final(0.005, refsafe=True), _push_final(0.02, refsafe=True))
    np.testing.assert_array_equal(_push_final(0.02, refsafe=False), _push_final(0.02, refsafe=True))  # at the edge
    assert _push_final(0.005, refsafe=False)[2] > 1.0  # box z: thrown, where the edge's box stays below 0.1 m
    assert _push_final(0.02, refsafe=False)[2] < 0.1


def test_the_limit_is_the_smallest_standard_form_time_constant_over_two():
    """Geoms, limited joints only (an unlimited joint's solref never acts), and the direct form skipped."""
    m = mujoco.MjModel.from_xml_string(textwrap.dedent("""
        <mujoco><option timestep="0.001"/><worldbody>
          <geom name="floor" type="plane" size="1 1 0.1" solref="0.03 1"/>
          <body name="b" pos="0 0 0.2">
            <joint name="free_hinge" type="hinge" solreflimit="0.001 1"/>
            <joint name="stop" type="slide" range="-1 1" limited="true" solreflimit="0.012 1"/>
            <geom name="ball" type="sphere" size="0.05" solref="-1000 -10"/>
          </body></worldbody>
          <actuator><motor joint="stop"/></actuator></mujoco>"""))
    limit, where = stable_timestep(mujoco, m)
    assert limit == 0.006 and where == "<joint name=\"stop\">'s timeconst 0.012"
    m.jnt_limited[:] = 0
    assert stable_timestep(mujoco, m) == (0.015, "<geom name=\"floor\">'s timeconst 0.03")
    m.geom_solref[:] = [-1000.0, -10.0]
    assert stable_timestep(mujoco, m)[0] == float("inf")


@pytest.mark.parametrize("path, items, key, words", [
    (PUSH, ["system.timestep=0.02"], "system.timestep", "largest stable timestep here is 0.01; allowed: timestep "
     "<= 0.01, or a solref whose timeconst is >= 0.04"),
    (PUSH, ["system.solref=[0.0199, 1.0]"], "system.solref", "with refsafe on, MuJoCo would simulate timeconst = "
     "2 x timestep instead"),
    (TOSS, ["system.timestep=0.0026"], "system.timestep", "with refsafe disabled"),
])
def test_a_problem_beyond_the_rule_is_refused_at_its_key(path, items, key, words):
    with pytest.raises(SpecError) as e:
        spec.load(path, items)
    assert e.value.key == key and words in e.value.message, str(e.value)


@pytest.mark.parametrize("path, items", [
    (PUSH, []),                                            # timeconst 0.02 = 2 x 0.01: the edge is allowed
    (PUSH, ["system.solref=[0.01, 1.0]", "system.timestep=0.005", "system.substeps=4"]),
    (TOSS, ["system.timestep=0.0025"]),
])
def test_a_time_step_at_or_within_the_rule_loads(path, items):
    spec.load(path, items)


def test_a_model_beyond_the_rule_as_its_authors_wrote_it_runs_as_mujoco_runs_it(tmp_path):
    """refsafe on and neither timestep nor solref set by the problem: the model's own choice (gymnasium's inverted
    pendulum: timestep 0.02, its rail's timeconst 0.02) loads, as MuJoCo simulates it; the same time step set by the
    problem file is refused (the file chose a value MuJoCo would not honour)."""
    model = tmp_path / "soft.xml"
    model.write_text('<mujoco><option timestep="0.02"/><worldbody><geom type="plane" size="1 1 .1" '
                     'solref="0.02 1"/><body pos="0 0 .2"><joint name="z" type="slide" axis="0 0 1"/>'
                     '<geom type="sphere" size=".05"/></body></worldbody><actuator><motor joint="z"/></actuator>'
                     '</mujoco>')
    problem = tmp_path / "p.toml"
    problem.write_text(f'''[system]
name = "mjx"
model = "{model.as_posix()}"
[task]
horizon = 3
goal = [0.1, 0.0]
Q = [1.0, 0.0]
R = [0.1]
''')
    assert spec.load(problem).system.timestep == 0.02
    with pytest.raises(SpecError) as e:
        spec.load(problem, ["system.timestep=0.02"])
    assert e.value.key == "system.timestep"


@pytest.mark.parametrize("verb, extra", [
    ("compare", ["--variants", "exact"]),
    ("solve", ["--oracle", "exact"]),
    ("mpc", ["--set", "mpc.episode=2", "--set", "mpc.horizon=2"]),
])
def test_every_verb_refuses_it_in_one_line_before_anything_runs(tmp_path, verb, extra):
    out = tmp_path / "run"
    result = runner.invoke(app, [verb, PUSH, "--set", "system.timestep=0.02", *extra, "--out", str(out)])
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    assert f"{PUSH}: system.timestep: found timestep 0.02 with <geom name=\"table\">'s timeconst 0.02" in line, line
    assert not out.exists()
