"""Your own system from TOML: examples/user_system/cart.{py,toml} loads by its ``package.module:Class`` path,
its parameters are validated like a shipped system's, and the console script finds it from the repository
root (the current directory is searched, as ``python -m`` does)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trajopt import spec
from trajopt.cli import app
from trajopt.registry import UnknownName
from trajopt.systems import SYSTEMS

ROOT = Path(__file__).resolve().parent.parent
CART = ROOT / "examples" / "user_system" / "cart.toml"
NAME = "examples.user_system.cart:CartPole"
runner = CliRunner()


@pytest.fixture
def fresh_import(monkeypatch):
    """Neither the repository root nor '' on sys.path, and no cached `examples` modules: what the
    console script sees."""
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(ROOT), ".")])
    for mod in [m for m in sys.modules if m == "examples" or m.startswith("examples.")]:
        monkeypatch.delitem(sys.modules, mod)


def test_the_example_loads_by_its_import_path(monkeypatch, fresh_import):
    monkeypatch.chdir(ROOT)
    s = spec.load(CART)
    assert type(s.system).__name__ == "CartPole" and s.system_name == NAME
    assert (s.system.state_size, s.system.control_size, s.task.horizon) == (4, 1, 150)
    assert str(ROOT) not in sys.path  # the directory was only searched, not left on the path
    p = s.problem()
    assert float(p.objective(p.U0)) == pytest.approx(250 * math.pi**2, rel=1e-12)  # at rest: (150 + 100) pi^2
    assert s.resolved()["system"]["name"] == NAME


def test_outside_the_repository_the_import_fails_cleanly(monkeypatch, fresh_import, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnknownName, match="cannot import it"):
        SYSTEMS.get(NAME)


def test_step_is_the_cart_pole_equations(monkeypatch):
    monkeypatch.chdir(ROOT)
    system = spec.load(CART).system
    x, u = np.array([0.3, 2.0, -0.4, 1.5]), np.array([0.7])
    mc, mp, l, g, h = system.cart_mass, system.pole_mass, system.pole_length, system.gravity, system.dt
    s, c = math.sin(x[1]), math.cos(x[1])
    d = mc + mp * s**2
    p_dd = (u[0] + mp * s * (l * x[3] ** 2 + g * c)) / d
    t_dd = (-u[0] * c - mp * l * x[3] ** 2 * c * s - (mc + mp) * g * s) / (l * d)
    v, w = x[2] + h * p_dd, x[3] + h * t_dd
    np.testing.assert_allclose(system.step(x, u), [x[0] + h * v, x[1] + h * w, v, w], rtol=1e-12)


@pytest.mark.parametrize(
    "override, key, words",
    [("system.pole_length=-1.0", "system.pole_length", "allowed: a number > 0"),
     ("system.pole_lenght=1.0", "system.pole_lenght", "did you mean 'pole_length'"),
     ("system.dt=true", "system.dt", "allowed: a number")],
)
def test_bad_parameters_are_reported_with_their_key_path(monkeypatch, override, key, words):
    monkeypatch.chdir(ROOT)
    with pytest.raises(spec.SpecError) as info:
        spec.load(CART, [override])
    assert info.value.key == key and words in str(info.value)


@pytest.mark.slow  # end to end, several seconds: CI's slow job runs it
def test_compare_runs_the_example(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "cart"
    result = runner.invoke(app, ["compare", str(CART), "--iterations", "5", "--seeds", "2", "--quiet", "--out", str(out)],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "result.json").read_text())
    assert summary["status"] == "ok"
    for name in ("fobg", "zobg", "aobg"):
        assert summary["variants"][name]["status"] == ["ok", "ok"]


def _console_script() -> str | None:
    here = Path(sys.executable).parent / "trajopt"
    return str(here) if here.exists() else shutil.which("trajopt")


@pytest.mark.skipif(_console_script() is None, reason="the trajopt console script is not installed")
def test_the_console_script_finds_the_example_from_the_repository_root():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([_console_script(), "validate", "examples/user_system/cart.toml", "--json"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["system"] == NAME and info["initial_cost"] == pytest.approx(2467.4011, abs=1e-4)
