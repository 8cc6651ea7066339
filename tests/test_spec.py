"""Problem files: shipped files load, every bad input is a SpecError naming the key path."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from trajopt import spec
from trajopt.oracles import AoBG, FoBG, ZoBG
from trajopt.optim import SGD, Adam

PROBLEMS = Path(__file__).resolve().parent.parent / "problems"
STIFF = PROBLEMS / "pushing_stiff.toml"


@pytest.mark.parametrize(
    "stem, golden", [("pushing_soft", 2374.8938), ("pushing_medium", 1746.1570), ("pushing_stiff", 1821.2490)]
)
def test_shipped_pushing_files_have_the_golden_initial_cost(stem, golden):
    s = spec.load(PROBLEMS / f"{stem}.toml")
    p = s.problem()
    assert float(p.objective(p.U0)) == pytest.approx(golden, abs=5e-5)
    assert s.solve.iterations == 500 and s.solve.oracles == ("fobg", "zobg", "aobg")
    assert s.solve.optimizer == SGD(step=1e-3)
    assert s.oracles["fobg"] == FoBG(samples=10, sigma=0.1)
    assert s.oracles["zobg"] == ZoBG(samples=10, sigma=0.1)
    assert s.oracles["aobg"] == AoBG(samples=10, sigma=0.1, gamma=1e8, L=100.0, delta=0.95)


def test_shared_oracle_defaults_and_per_oracle_tables():
    s = spec.loads(
        """
        [system]
        name = "pushing"
        stiffness = 10.0
        [task]
        horizon = 5
        x0 = [0, 1, 0, 0]
        goal = [1, 2, 0, 0]
        Q = [0.1, 10, 0.1, 0.1]
        R = [1]
        [solve]
        oracles = ["exact", "zobg", "aobg"]
        optimizer = { name = "adam", step = 0.03 }
        [oracle]
        sigma = 0.3
        [oracle.aobg]
        samples = 4
        """,
        name="tiny",
    )
    assert s.oracles["zobg"] == ZoBG(samples=10, sigma=0.3)
    assert s.oracles["aobg"].samples == 4 and s.oracles["aobg"].sigma == 0.3
    assert s.solve.optimizer == Adam(step=0.03)
    np.testing.assert_array_equal(s.task.Qf, s.task.Q)  # Qf defaults to Q
    assert s.task.U0.shape == (5, 1) and np.all(s.task.U0 == 0)
    assert s.solve.seeds == (0, 1, 2, 3, 4)


def test_resolved_config_round_trips():
    import tomli_w

    s = spec.load(STIFF)
    again = spec.loads(tomli_w.dumps(s.resolved()), source="config.toml", name=s.name)
    assert again.resolved() == s.resolved()
    assert math.isinf(spec.load(STIFF, ["oracle.aobg.gamma=inf"]).resolved()["oracle"]["aobg"]["gamma"])


@pytest.mark.parametrize(
    "override, key, words",
    [
        (["oracle.aobg.gama=1"], "oracle.aobg.gama", "did you mean 'gamma'"),
        (['solve.oracles=["fogb"]'], "solve.oracles", "did you mean 'fobg'"),
        (['system.name="pusing"'], "system.name", "did you mean 'pushing'"),
        (['solve.optimizer.name="adm"'], "solve.optimizer.name", "did you mean 'adam'"),
        (['system.stiffness="stiff"'], "system.stiffness", "allowed: a number"),
        (["solve.iterations=1.5"], "solve.iterations", "allowed: an integer"),
        (["task.x0=[1, 2]"], "task.x0", "4 numbers"),
        (["task.Q=[1, 2, 3]"], "task.Q", "4 numbers"),
        (["task.R=[1, 2]"], "task.R", "1 numbers"),
        (["oracle.zobg.sigma=0"], "oracle.zobg.sigma", "> 0"),
        (["oracle.fobg.samples=1"], "oracle.fobg.samples", ">= 2"),
        (["solve.optimizer.step=-1"], "solve.optimizer.step", "> 0"),
        (["oracle.aobg.delta_convention=\"failure\""], "oracle.aobg.delta_convention", "'reference'"),
        (["bogus=1"], "bogus", "allowed: name, title, description"),
        (["oracle.nope.sigma=1"], "oracle.nope", "unknown oracle"),
        (["system.dt=0.02"], "system.dt", "largest stable dt is 0.01"),
        (["solve.seeds=0"], "solve.seeds", ">= 1"),
    ],
)
def test_bad_inputs_name_file_and_key(override, key, words):
    with pytest.raises(spec.SpecError) as info:
        spec.load(STIFF, override)
    message = str(info.value)
    assert message.startswith(f"{STIFF}: {key}:"), message
    assert words in message


def test_unstable_dt_is_allowed_with_the_override_flag():
    s = spec.load(STIFF, ["system.dt=0.02", "system.allow_unstable=true"])
    assert s.system.dt == 0.02 and s.allow_unstable


def test_malformed_toml_reports_line_and_column(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('title = "x"\n[system\nname = "pushing"\n')
    with pytest.raises(spec.SpecError) as info:
        spec.load(bad)
    assert str(bad) in str(info.value) and "line 2" in str(info.value)


def test_missing_file():
    with pytest.raises(spec.SpecError, match="no such file"):
        spec.load("does/not/exist.toml")


def test_set_values_are_parsed_as_toml():
    assert spec.parse_value("1e-3") == 1e-3
    assert spec.parse_value("[1, 2]") == [1, 2]
    assert spec.parse_value("true") is True
    assert spec.parse_value("adam") == "adam"
