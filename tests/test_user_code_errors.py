"""The command line when a user's system fails at run time (after the preflight's trace passed): one line naming the
variant and the error, exit 1, and the variants that finished written; a seed whose every update was skipped is
shown and counted as such. The systems are small modules written into a temporary directory (searched as the
current directory, like examples/user_system)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from trajopt.cli import app
from trajopt.cli._run_table import _summary_table

runner = CliRunner()

GUARDED = '''
from dataclasses import dataclass
import jax, jax.numpy as jnp, numpy as np

def _host(u, limit):
    if abs(float(u)) > limit:
        raise RuntimeError(f"|u| = {abs(float(u)):g} is past {limit:g}")
    return np.zeros((), np.float64)

@dataclass(frozen=True)
class Guarded:
    """x' = x + dt u; the host refuses |u| > limit (a check the trace cannot see: it runs with the values)."""
    limit: float = 1.0
    dt: float = 0.1
    state_size = 1
    control_size = 1

    def step(self, x, u):
        z = jax.pure_callback(lambda v: _host(v, self.limit), jax.ShapeDtypeStruct((), jnp.float64),
                              jax.lax.stop_gradient(u[0]), vmap_method="sequential")
        return x + self.dt * u + z
'''

KINK = '''
from dataclasses import dataclass
import jax.numpy as jnp

@dataclass(frozen=True)
class Kink:
    """x' = x + dt u + 0 sqrt(|u|): the same map, but its gradient at u = 0 is 0 x inf = NaN."""
    dt: float = 0.1
    state_size = 1
    control_size = 1

    def step(self, x, u):
        return x + self.dt * u + 0.0 * jnp.sqrt(jnp.abs(u))
'''

TASK = """
[task]
horizon = 3
x0 = [0.0]
goal = [1.0]
Q = [1.0]
R = [0.01]
Qf = [10.0]
u_init = 0.0
"""


def _files(tmp_path: Path, module: str, code: str, cls: str, solve: str) -> Path:
    (tmp_path / f"{module}.py").write_text(code)
    problem = tmp_path / "p.toml"
    problem.write_text(f'title = "user code"\n[system]\nname = "{module}:{cls}"\n{TASK}\n{solve}')
    return problem


GUARDED_SOLVE = """
[solve]
iterations = 6
seeds = 2
variants = ["calm", "wild", "after"]
[variants.calm]
oracle = "exact"
optimizer = { name = "sgd", step = 0.001 }
[variants.wild]   # its first update takes u past the limit: u = 24 at the second iteration
oracle = "exact"
optimizer = { name = "sgd", step = 10.0 }
[variants.after]
oracle = "exact"
optimizer = { name = "sgd", step = 0.001 }
"""


def test_a_variant_failing_at_run_time_is_one_line_and_the_finished_ones_are_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    problem = _files(tmp_path, "e2_guarded_a", GUARDED, "Guarded", GUARDED_SOLVE)
    r = runner.invoke(app, ["compare", str(problem), "--out", str(tmp_path / "out"), "--json"])
    assert r.exit_code == 1, r.output
    line = ("p.toml: variants.wild: failed while running: ")
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and line in errors[0] and "RuntimeError: |u| = 24 is past 1" in errors[0], r.stderr
    summary = json.loads((tmp_path / "out" / "result.json").read_text())
    assert summary["status"] == "failed" and list(summary["variants"]) == ["calm"]
    assert summary["variants"]["calm"]["status"] == ["ok", "ok"] and summary["variants"]["calm"]["iterations"] == 6
    assert summary["variants_not_run"] == ["wild", "after"]
    assert summary["error"]["variant"] == "wild" and summary["error"]["stage"] == "running"
    assert summary["error"]["message"].endswith("RuntimeError: |u| = 24 is past 1")
    assert json.loads(r.stdout)["status"] == "failed"
    # the first variant failing: nothing finished, nothing written, exit 1 (it failed after the run started)
    r = runner.invoke(app, ["compare", str(problem), "--variants", "wild", "--out", str(tmp_path / "none")])
    assert r.exit_code == 1 and "variants.wild: failed while running" in r.stderr
    assert not (tmp_path / "none").exists()


@pytest.mark.slow  # the console script in a fresh process (about 10 s on 2 cores): CI's slow job runs it
def test_the_console_script_shows_no_traceback(tmp_path):
    problem = _files(tmp_path, "e2_guarded_b", GUARDED, "Guarded", GUARDED_SOLVE)
    r = subprocess.run([sys.executable, "-m", "trajopt", "compare", str(problem), "--out", str(tmp_path / "out"),
                        "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and "variants.wild: failed while running" in r.stderr, r.stderr
    assert json.loads((tmp_path / "out" / "result.json").read_text())["variants_not_run"] == ["wild", "after"]


FAR_KINK = '''
from dataclasses import dataclass
import jax.numpy as jnp

@dataclass(frozen=True)
class FarKink:
    """x' = x + dt u + 0 sqrt(max(u - 100, 0)): the same map, but its gradient is 0 x (inf x 0) = NaN wherever
    u < 100 (every control here), while its values stay finite."""
    dt: float = 0.1
    state_size = 1
    control_size = 1

    def step(self, x, u):
        return x + self.dt * u + 0.0 * jnp.sqrt(jnp.maximum(u - 100.0, 0.0))
'''


def test_estimates_that_fell_back_to_the_zobg_are_counted_and_shown(tmp_path, monkeypatch):
    """Every FoBG batch is NaN here: fobg stops at its first iteration, while aobg falls back to the ZoBG at every
    one of its 6 iterations (alpha 0), runs on, lowers the cost, and says so in result.json and the table."""
    monkeypatch.chdir(tmp_path)
    solve = '[solve]\niterations = 6\nseeds = 2\noracles = ["fobg", "aobg"]\noptimizer = { name = "sgd", step = 0.1 }\n'
    problem = _files(tmp_path, "e2_far_kink", FAR_KINK, "FarKink", solve)
    r = runner.invoke(app, ["compare", str(problem), "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output  # a variant's seeds survived: the run is partial, not failed
    summary = json.loads((tmp_path / "out" / "result.json").read_text())
    fobg, aobg = summary["variants"]["fobg"], summary["variants"]["aobg"]
    assert fobg["status"] == ["non_finite", "non_finite"] and fobg["first_order_fallbacks"] == [0, 0]
    assert aobg["status"] == ["ok", "ok"] and aobg["first_order_fallbacks"] == [6, 6]
    assert aobg["final_alpha"] == [0.0, 0.0] and all(c < aobg["initial_cost"] for c in aobg["final_cost"])
    wide = Console(width=400, file=io.StringIO())
    wide.print(_summary_table(summary))
    assert "ok, 12 FoBG batches not finite (α = 0)" in wide.file.getvalue()


def test_fallback_counts_take_recorded_iterations_before_a_failure():
    """By hand: seed 0 falls back at iteration 0, fails at 1 (its NaN statistics there are the failure, not a
    fallback) and records nothing after; seed 1 mixes, falls back once, mixes again; a finite or infinite var_first,
    a NaN alpha (an oracle that chooses none) or a skipped update is no fallback."""
    from trajopt.result import fallback_counts

    nan, inf = float("nan"), float("inf")
    history = {"alpha": np.array([[0.0, 0.0, nan], [0.5, 0.0, 0.2], [nan, nan, nan], [0.0, 0.0, 0.0]]),
               "var_first": np.array([[nan, nan, nan], [1.0, nan, 2.0], [nan, nan, nan], [inf, nan, nan]])}
    # seed 3: an overflowed variance of a finite batch (inf: alpha 0 is its rule's own), then one fallback, then
    # an update skipped (its ZoBG was not finite either: no estimate was used)
    history["skipped"] = np.array([[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 1]])
    assert fallback_counts(history, np.array([1, -1, -1, -1])).tolist() == [1, 1, 0, 1]
    assert fallback_counts({"alpha": history["alpha"]}, np.array([-1, -1, -1, -1])).tolist() == [0, 0, 0, 0]


def test_seeds_whose_every_update_was_skipped_are_shown_and_counted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    solve = '[solve]\niterations = 6\nseeds = 2\noracles = ["exact"]\non_non_finite = "skip"\n'
    problem = _files(tmp_path, "e2_kink", KINK, "Kink", solve)
    r = runner.invoke(app, ["compare", str(problem), "--out", str(tmp_path / "out")])
    assert r.exit_code == 1, r.output  # no seed made an update: the run failed
    summary = json.loads((tmp_path / "out" / "result.json").read_text())
    wide = Console(width=400, file=io.StringIO())
    wide.print(_summary_table(summary))  # the table the command printed, on one line per row
    assert "0/2 ok, 2 all_skipped, 12 updates skipped" in wide.file.getvalue()  # 2 seeds x 6 skipped updates
    assert summary["status"] == "failed"
    entry = summary["variants"]["exact"]
    assert entry["status"] == ["all_skipped", "all_skipped"] and entry["skipped_updates"] == [6, 6]
    assert entry["failed_at"] == [None, None]


# ------------------------------------------------------------------------------ a user's own policy

POLICIES = '''
from dataclasses import dataclass
import jax.numpy as jnp

@dataclass(frozen=True)
class Fine:
    def param_size(self, n, m): return m * n
    def init_params(self, n, m): return jnp.zeros(m * n)
    def __call__(self, theta, x): return theta.reshape(-1, x.shape[0]) @ x

@dataclass(frozen=True)
class TwoControls(Fine):
    def __call__(self, theta, x): return jnp.concatenate([x[:1], x[:1]])

@dataclass(frozen=True)
class ScalarControl(Fine):
    def __call__(self, theta, x): return jnp.dot(theta, x)

@dataclass(frozen=True)
class LongInit(Fine):
    def init_params(self, n, m): return jnp.zeros(m * n + 3)

@dataclass(frozen=True)
class FloatSize(Fine):
    def param_size(self, n, m): return m * n * 1.0

@dataclass(frozen=True)
class Raises(Fine):
    def __call__(self, theta, x): raise RuntimeError("not yet")
'''

POLICY_FILE = """title = "user policy"
[system]
name = "pendulum"
[policy]
name = "e2_policies:{cls}"
[initial_state]
name = "uniform"
low = [-0.3, -2.0]
high = [0.3, 2.0]
[task]
horizon = 5
goal = [0.0, 0.0]
Q = [10.0, 0.1]
R = [1.0]
n_eval = 4
[solve]
iterations = 2
seeds = 1
oracles = ["fobg"]
[oracle]
samples = 4
"""


@pytest.mark.parametrize("cls, words", [
    ("TwoControls", "e2_policies:TwoControls(theta, x) returned shape [2] float64, allowed: the control, a float "
                    "vector of shape [1]"),
    ("ScalarControl", "e2_policies:ScalarControl(theta, x) returned shape [] float64, allowed: the control, a float "
                      "vector of shape [1]"),
    ("LongInit", "e2_policies:LongInit: init_params(2, 1) returned shape [5], allowed: a vector of param_size(2, 1) = 2"),
    ("FloatSize", "e2_policies:FloatSize: param_size(2, 1) returned 2.0, allowed: an integer >= 1"),
    ("Raises", "e2_policies:Raises(theta, x) raised RuntimeError: not yet"),
])
def test_a_user_policy_that_breaks_its_contract_is_named_before_anything_runs(tmp_path, monkeypatch, cls, words):
    """A policy returning the wrong shape ran into a matrix product's TypeError inside an oracle's trace (reported at
    variants.fobg), a scalar was broadcast silently, and init_params' size was reported at task.theta0, which the file
    does not have: each is now refused at policy.name, naming what the method returned."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "e2_policies.py").write_text(POLICIES)
    problem = tmp_path / "p.toml"
    problem.write_text(POLICY_FILE.format(cls=cls))
    r = runner.invoke(app, ["compare", str(problem), "--out", str(tmp_path / "out")])
    message = " ".join(r.stderr.split())
    assert r.exit_code == 2 and f"p.toml: policy.name: {words}" in message, r.output
    assert "Traceback" not in r.output and not (tmp_path / "out").exists()
    problem.write_text(POLICY_FILE.format(cls="Fine"))
    assert runner.invoke(app, ["validate", str(problem)]).exit_code == 0
