"""``--from RUN`` reruns a run folder's config.toml; the numbers also depend on files the config only names (a user
module, an MJCF model). result.json records their sha256 (``sources``) and a rerun warns, naming the file, when one
changed since the run, and stays silent when none did."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from trajopt.cli import app
from trajopt.cli.compare import changed_since_run

USER = '''
from dataclasses import dataclass
import jax.numpy as jnp

@dataclass(frozen=True)
class Drift:
    dt: float = 0.1
    state_size = 1
    control_size = 1

    def step(self, x, u):
        return x + self.dt * u
'''

PROBLEM = '''[system]
name = "fromsrc_user:Drift"
[task]
horizon = 4
x0 = [0.0]
goal = [1.0]
Q = [1.0]
R = [0.01]
Qf = [1.0]
[solve]
iterations = 2
seeds = 1
oracles = ["exact"]
'''


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRAJOPT_STEP_COSTS", "2,3")  # given, not measured: not what this test is about
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "fromsrc_user.py").write_text(USER)
    (tmp_path / "p.toml").write_text(PROBLEM)
    yield tmp_path
    sys.modules.pop("fromsrc_user", None)


def _compare(*args):
    return CliRunner().invoke(app, ["compare", *map(str, args), "--json"], catch_exceptions=False)


def test_from_warns_when_a_user_module_changed_since_the_run(user_dir):
    first = _compare(user_dir / "p.toml", "--out", user_dir / "a")
    assert first.exit_code == 0, first.output
    sources = json.loads((user_dir / "a" / "result.json").read_text())["sources"]
    module = str((user_dir / "fromsrc_user.py").resolve())
    assert list(sources) == [f"module:{module}"] and len(sources[f"module:{module}"]) == 64
    # unchanged: nothing to say (what --from asks before any work)
    assert changed_since_run(user_dir / "a" / "config.toml", quiet=False) == []
    # the module edited (a comment is enough: its bytes are what the run depended on): one warning naming it
    (user_dir / "fromsrc_user.py").write_text(USER + "# edited\n")
    changed = _compare("--from", user_dir / "a", "--out", user_dir / "c")
    assert changed.exit_code == 0, changed.output
    lines = [x for x in changed.stderr.splitlines() if "warning" in x]
    assert len(lines) == 1 and f"module file {module} changed since that run" in lines[0], changed.stderr
    # and the new run's record says so
    record = json.loads((user_dir / "c" / "result.json").read_text())
    assert record["sources_changed_since_from_run"] == [f"module:{module}"]
