"""Everything checked before anything compiles (issue #30): a variant that cannot run on the problem, and user code
that fails when traced the way the run traces it (under vmap and grad), are refused with one exit-2 line before
any variant is compiled or run and before the run folder exists."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trajopt import spec
from trajopt.cli import app

ROOT = Path(__file__).resolve().parent.parent
PROBLEMS = ROOT / "problems"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _message(result) -> str:
    return " ".join(result.stderr.split())


@pytest.fixture
def nothing_compiles(monkeypatch):
    """The solver's loop may not be traced, compiled or run: every refusal here comes before it."""
    import trajopt.solver

    def refuse(*args, **kwargs):
        raise AssertionError("a loop was prepared before the refusal")

    monkeypatch.setattr(trajopt.solver, "prepare_each", refuse)
    monkeypatch.setattr(trajopt.solver, "_lower", refuse)


@pytest.mark.parametrize("problem, kind", [("pendulum_wall_policy.toml", "a policy problem"),
                                           ("pivot.toml", "a one-step problem")])
def test_a_variant_that_cannot_run_is_refused_before_the_others_run(tmp_path, nothing_compiles, problem, kind):
    out = tmp_path / "out"
    r = invoke("compare", PROBLEMS / problem, "--variants", "fobg,zobg,ilqr", "--iterations", "3", "--seeds", "1",
               "--out", out)
    message = _message(r)
    assert r.exit_code == 2, r.output
    assert f"{problem}: variants.ilqr: ilqr needs a time-stepped problem" in message and kind in message, message
    assert "is a one-step problem" not in message or kind == "a one-step problem"  # a policy problem is not one
    assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()


def test_validate_refuses_what_compare_would_refuse():
    r = invoke("validate", PROBLEMS / "pendulum_wall_policy.toml", "--set", 'solve.variants=["fobg", "ilqr"]')
    assert r.exit_code == 2 and "variants.ilqr" in _message(r) and "a policy problem" in _message(r)


def test_solve_refuses_ilqr_on_a_one_step_problem(tmp_path, nothing_compiles):
    r = invoke("solve", PROBLEMS / "heaviside.toml", "--variant", "ilqr", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "variants.ilqr" in _message(r) and not (tmp_path / "o").exists()


USER_CODE = '''
import math
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class WhileStep:
    """Fine forward and under vmap; lax.while_loop has no reverse-mode gradient (FoBG fails, ZoBG runs)."""
    state_size = 2
    control_size = 1
    dt = 0.1

    def stable_dt(self):
        return math.inf

    def step(self, x, u):
        y = x + self.dt * jnp.concatenate([x[1:], u])
        _, y = jax.lax.while_loop(lambda c: (c[0] < 2) & (jnp.abs(c[1][0]) > 10.0), lambda c: (c[0] + 1, c[1] * 0.5),
                                  (0, y))
        return y


@dataclass(frozen=True)
class Callback:
    """A host callback without a vmap rule: fine alone (validation's trial of one step), fails under vmap."""
    state_size = 2
    control_size = 1
    dt = 0.1

    def stable_dt(self):
        return math.inf

    def step(self, x, u):
        y = jax.pure_callback(np.asarray, jax.ShapeDtypeStruct((2,), x.dtype), x)
        return y + self.dt * jnp.concatenate([x[1:], u])


class State(NamedTuple):
    U: jax.Array


class Info(NamedTuple):
    value: jax.Array
    rollouts: jax.Array
    gradients: jax.Array


@dataclass(frozen=True)
class Drifting:
    """A user method whose step changes its state's dtype (the loop cannot carry it)."""
    name = "drifting"

    def init(self, key, problem, U0):
        return State(U=U0)

    def step(self, key, problem, state):
        info = Info(problem.objective(state.U), jnp.int32(1), jnp.int32(0))
        return State(U=state.U.astype(jnp.float32)), info
'''

TASK = '[task]\nhorizon = 5\nx0 = [0.0, 0.0]\ngoal = [1.0, 0.0]\nQ = [1.0, 1.0]\nR = [1.0]\n'


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "e1_user.py").write_text(USER_CODE)
    yield tmp_path
    sys.modules.pop("e1_user", None)


def _problem(folder: Path, system: str, extra: str = "") -> Path:
    path = folder / "p.toml"
    path.write_text(f'[system]\nname = "e1_user:{system}"\n{TASK}[solve]\niterations = 3\nseeds = 2\n{extra}')
    return path


def test_user_system_without_a_reverse_gradient_is_refused_at_the_variant_that_needs_one(user_dir, nothing_compiles):
    path = _problem(user_dir, "WhileStep")
    r = invoke("compare", path, "--variants", "zobg,fobg", "--out", user_dir / "o")
    message = _message(r)
    assert r.exit_code == 2, r.output
    assert "p.toml: variants.fobg: found ValueError in system 'e1_user:WhileStep'" in message, message
    assert "Reverse-mode differentiation does not work for lax.while_loop" in message and "allowed:" in message
    assert len(r.stderr.strip().splitlines()) == 1 and not (user_dir / "o").exists()
    # the oracle-level studies check their oracles the same way, before their folder exists
    r = invoke("diagnose", path, "--repeats", "2", "--out", user_dir / "d")
    assert r.exit_code == 2 and "oracle.aobg: found ValueError in system 'e1_user:WhileStep'" in _message(r)
    assert not (user_dir / "d").exists()
    r = invoke("sweep", path, "--over", "system.dt=0.1,0.2", "--oracles", "zobg,fobg", "--out", user_dir / "s")
    assert r.exit_code == 2 and "oracle.fobg: found ValueError" in _message(r) and not (user_dir / "s").exists()
    # the ZoBG needs no gradient: that variant alone passes the preflight
    spec.check_variants(spec.load(path, ['solve.variants=["zobg"]']))


def test_user_system_without_a_vmap_rule_is_refused(user_dir, nothing_compiles):
    r = invoke("compare", _problem(user_dir, "Callback"), "--variants", "zobg", "--out", user_dir / "o")
    message = _message(r)
    assert r.exit_code == 2 and "variants.zobg: found NotImplementedError in system 'e1_user:Callback'" in message
    assert "under vmap over seeds" in message and not (user_dir / "o").exists()


def test_user_method_whose_state_changes_is_refused(user_dir, nothing_compiles):
    path = _problem(user_dir, "WhileStep", '[variants.mine]\nmethod = "e1_user:Drifting"\n')
    r = invoke("compare", path, "--variants", "zobg,mine", "--out", user_dir / "o")
    message = _message(r)
    assert r.exit_code == 2 and "variants.mine: found method 'e1_user:Drifting' whose step returned a state of " \
        "another structure, shape or dtype than init's" in message, message
    assert "allowed: a step that returns (state, info)" in message
