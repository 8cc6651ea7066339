"""Reliability II: what a problem file may make trajopt import and call, user-code errors at validation,
bounds on sizes, readers of run folders that do not trust what they read, escaped reports, help text,
and commands bound to a run folder's own configuration. Each test is the regression test of one finding."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trajopt import spec
from trajopt.cli import app
from trajopt.registry import UnknownName
from trajopt.systems import SYSTEMS

ROOT = Path(__file__).resolve().parent.parent
STIFF = ROOT / "problems" / "pushing_stiff.toml"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _message(result) -> str:
    return " ".join(result.stderr.split())


USER_TASK = '[task]\nhorizon = 5\nx0 = [0.0, 0.0]\ngoal = [1.0, 0.0]\nQ = [1.0, 1.0]\nR = [1.0]\n'


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A working directory holding user modules (imported by ``module:attribute``), removed from sys.modules after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("r2_"):
            del sys.modules[name]


def _problem(folder: Path, system_name: str, extra: str = "", task: str = USER_TASK) -> Path:
    path = folder / "problem.toml"
    path.write_text(f'[system]\nname = "{system_name}"\n{extra}{task}')
    return path


# ------------------------------------------------------------------------- what a name may import and call


def test_os_system_is_refused_before_it_is_called(user_dir):
    path = _problem(user_dir, "os:system", 'command = "echo PWNED > pwned.txt"\n')
    result = invoke("validate", path)
    assert result.exit_code == 2
    assert not (user_dir / "pwned.txt").exists()
    assert "not a class" in _message(result) and "system.name" in _message(result)


@pytest.mark.parametrize("name", [":", ".:x", "a:b:c", "os:", ":system", "os.:x", "1os:x", "os:sys tem", "os/x:y"])
def test_malformed_names_are_a_clean_error(user_dir, name):
    with pytest.raises(UnknownName, match="malformed name"):
        SYSTEMS.get(name)
    result = invoke("validate", _problem(user_dir, name))
    assert result.exit_code == 2 and "malformed name" in _message(result)


@pytest.mark.parametrize("top_name", ["/abs", "../..", "..", "a/b", "a\\\\b", ".hidden"])
def test_top_level_name_cannot_leave_the_runs_folder(tmp_path, monkeypatch, top_name):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "p.toml"
    path.write_text(f'name = "{top_name}"\n' + STIFF.read_text())
    result = invoke("compare", path, "--iterations", "1", "--seeds", "1", "--quiet")
    assert result.exit_code == 2 and ": name:" in _message(result)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.toml"]


@pytest.mark.parametrize("body, words", [
    ("raise RuntimeError('broken module')\n", "cannot import it (RuntimeError: broken module)"),
    ("import sys\nsys.exit(0)\n", "sys.exit(0)"),
    ("import sys\nsys.exit('bye')\n", "sys.exit('bye')"),
    ("x = 1\n", "has no attribute 'Sys'"),
    ("Sys = 3\n", "not a class"),
    ("def Sys(**kw):\n    return None\n", "not a class"),
    ("class Sys:\n    state_size = 2\n    control_size = 1\n", "has no step"),
    ("class Sys:\n    def step(self, x, u):\n        return x\n", "has no state_size, control_size"),
])
def test_user_module_errors_are_reported(user_dir, body, words):
    (user_dir / "r2_mod.py").write_text(body)
    result = invoke("validate", _problem(user_dir, "r2_mod:Sys"))
    assert result.exit_code == 2, result.output
    message = _message(result)
    assert "system.name" in message and "r2_mod:Sys" in message and words in message, message
    assert "Traceback" not in result.output


def test_a_marked_factory_is_accepted(user_dir):
    (user_dir / "r2_factory.py").write_text(textwrap.dedent('''
        import jax.numpy as jnp

        class _Sys:
            state_size = 2
            control_size = 1
            def __init__(self, gain=1.0):
                self.gain = gain
            def step(self, x, u):
                return x + self.gain * jnp.concatenate([u, u])

        def make(gain=1.0):
            return _Sys(gain)
        make.__trajopt_factory__ = True
    '''))
    s = spec.load(_problem(user_dir, "r2_factory:make", "gain = 2.0\n"))
    assert s.system.gain == 2.0


@pytest.mark.parametrize("registry, name, words", [
    ("trajopt.oracles:ORACLES", "trajopt.systems.pushing:Pushing", "has no estimate"),
    ("trajopt.methods:METHODS", "trajopt.oracles.zobg:ZoBG", "has no init, step"),
    ("trajopt.policies:POLICIES", "trajopt.systems.pushing:Pushing", "has no param_size, init_params"),
])
def test_every_registry_checks_its_contract(registry, name, words):
    import importlib

    module, attr = registry.split(":")
    reg = getattr(importlib.import_module(module), attr)
    with pytest.raises(UnknownName, match=words):
        reg.get(name)


def test_every_registered_entry_meets_its_contract():
    from trajopt.methods import METHODS
    from trajopt.oracles import ORACLES
    from trajopt.policies import POLICIES, POLICY_ORACLES

    for reg in (SYSTEMS, ORACLES, METHODS, POLICIES, POLICY_ORACLES):
        assert reg.check is not None
        for name in reg:
            reg.check(reg.get(name))


# ------------------------------------------------------------------------- user code errors at validation

USER_SYSTEMS = '''
import math
from dataclasses import dataclass

import jax.numpy as jnp


@dataclass(frozen=True)
class WrongShape:
    state_size = 2
    control_size = 1
    def step(self, x, u):
        return jnp.zeros(3)


@dataclass(frozen=True)
class WrongDtype:
    state_size = 2
    control_size = 1
    def step(self, x, u):
        return jnp.zeros(2, dtype=jnp.int32)


@dataclass(frozen=True)
class PythonIf:
    state_size = 2
    control_size = 1
    def step(self, x, u):
        if x[0] > 0:
            return x
        return -x


@dataclass(frozen=True)
class StringSize:
    state_size = "2"
    control_size = 1
    def step(self, x, u):
        return x


@dataclass(frozen=True)
class FloatSize:
    state_size = 2
    control_size = 1.0
    def step(self, x, u):
        return x


@dataclass(frozen=True)
class PostInit:
    state_size = 2
    control_size = 1
    def __post_init__(self):
        raise RuntimeError("boom in post_init")
    def step(self, x, u):
        return x


@dataclass(frozen=True)
class StableDt:
    state_size = 2
    control_size = 1
    dt = 0.1
    def stable_dt(self):
        return 1 / 0
    def step(self, x, u):
        return x


@dataclass(frozen=True)
class OneStepCost:
    one_step = True
    state_size = 0
    control_size = 2
    dt = math.nan
    def cost(self, theta):
        return theta  # not a scalar


@dataclass(frozen=True)
class Good:
    state_size = 2
    control_size = 1
    dt = 0.1
    def stable_dt(self):
        return math.inf
    def step(self, x, u):
        return x + self.dt * jnp.concatenate([x[1:], u])
'''


@pytest.mark.parametrize("cls, words", [
    ("WrongShape", "returned float64[3], expected float64[2]"),
    ("WrongDtype", "returned int32[2], expected float64[2]"),
    ("PythonIf", "TracerBoolConversionError"),
    ("StringSize", "state_size is '2' (str), expected an integer"),
    ("FloatSize", "control_size is 1.0 (float), expected an integer"),
    ("PostInit", "RuntimeError: boom in post_init"),
    ("StableDt", "stable_dt() raised ZeroDivisionError"),
    ("OneStepCost", "cost(theta: float64[2]) returned float64[2], expected a float64 scalar"),
])
def test_user_system_errors_are_spec_errors(user_dir, cls, words):
    (user_dir / "r2_systems.py").write_text(USER_SYSTEMS)
    task = '[task]\nu_init = 0.0\n' if cls == "OneStepCost" else USER_TASK
    out = user_dir / "out"
    result = invoke("compare", _problem(user_dir, f"r2_systems:{cls}", task=task), "--iterations", "2", "--seeds", "1",
                    "--out", out)
    message = _message(result)
    assert result.exit_code == 2, result.output
    assert "problem.toml" in message and f"r2_systems:{cls}" in message and words in message, message
    assert "Traceback" not in result.output and len(result.stderr.splitlines()) <= 3
    assert not out.exists()


def test_a_good_user_system_passes_the_trial(user_dir):
    (user_dir / "r2_systems.py").write_text(USER_SYSTEMS)
    s = spec.load(_problem(user_dir, "r2_systems:Good"))
    assert type(s.system).__name__ == "Good"


# ---------------------------------------------------------------------------------------------- bounds


@pytest.mark.parametrize("sets, key, words", [
    (["solve.iterations=100000000000000000000000"], "solve.iterations", "1..10000000"),
    (["solve.iterations=10000001"], "solve.iterations", "1..10000000"),
    (["solve.iterations=5000000", "solve.seeds=100"], "solve.iterations", "iterations x seeds <= 100000000"),
    (["solve.seeds=[0, 4294967296]"], "solve.seeds", "0..4294967295"),
    (["solve.seeds=1000000000"], "solve.seeds", "1..100000"),
    (["solve.key=4294967296"], "solve.key", "0..4294967295"),
    (["solve.key=-1"], "solve.key", "0..4294967295"),
    (["task.horizon=1000001"], "task.horizon", "1..1000000"),
    (["solve.chunk=100000000000"], "solve.chunk", "1..10000000"),
])
def test_sizes_are_bounded(sets, key, words):
    with pytest.raises(spec.SpecError) as info:
        spec.load(STIFF, sets)
    assert info.value.key == key and words in str(info.value) and "found" in str(info.value)


def test_iterations_bound_through_the_cli():
    result = invoke("validate", STIFF, "--set", "solve.iterations=100000000000000000000000")
    assert result.exit_code == 2 and "solve.iterations" in _message(result)
    result = invoke("compare", STIFF, "--iterations", "20000000", "--seeds", "1", "--quiet")
    assert result.exit_code == 2 and "solve.iterations" in _message(result)


def test_largest_seed_and_key_are_accepted():
    s = spec.load(STIFF, ["solve.seeds=[0, 4294967295]", "solve.key=4294967295"])
    assert s.solve.seeds == (0, 4294967295) and s.solve.key == 4294967295


# ------------------------------------------------------------------------------- readers of run folders

PIVOT = ROOT / "problems" / "pivot.toml"
BALL = ROOT / "problems" / "ball_with_wall.toml"
SMALL = ["--set", "task.horizon=8", "--set", "system.stiffness=10.0"]


@pytest.fixture(scope="module")
def stiff_run(tmp_path_factory):
    """A small pushing run made with --set options (horizon 8, k = 10)."""
    out = tmp_path_factory.mktemp("runs") / "stiff"
    result = invoke("compare", STIFF, "--iterations", "3", "--seeds", "2", "--oracles", "fobg,zobg", *SMALL,
                    "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def pivot_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "pivot"
    result = invoke("compare", PIVOT, "--iterations", "3", "--seeds", "2", "--oracles", "fobg,zobg", "--out", out,
                    "--quiet")
    assert result.exit_code == 0, result.output
    return out


def _copy(run: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(run, dest)
    return dest


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_trajectory_is_a_clean_error_everywhere(stiff_run, pivot_run, tmp_path):
    bad = _copy(stiff_run, tmp_path / "bad")
    _truncate(bad / "trajectory.npz")
    config = bad / "config.toml"
    for args in (["diagnose", config, "--at", bad, "--repeats", "2", "--out", tmp_path / "d"],
                 ["gradcheck", config, "--at", bad, "--directions", "1"]):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        assert "trajectory.npz" in _message(result) and "Traceback" not in result.output
    pbad = _copy(pivot_run, tmp_path / "pbad")
    _truncate(pbad / "trajectory.npz")
    result = invoke("landscape", pbad / "config.toml", "--run", pbad, "--range", "-1:1:5", "--repeats", "2",
                    "--out", tmp_path / "l")
    assert result.exit_code == 2 and "trajectory.npz" in _message(result), result.output
    result = invoke("report", pbad, "-o", tmp_path / "r.html")
    assert result.exit_code == 2 and "trajectory.npz" in _message(result), result.output


@pytest.mark.parametrize("name, damage, words", [
    ("result.json", lambda p: _truncate(p), "result.json: not valid JSON"),
    ("result.json", lambda p: p.write_text("[1, 2]"), "expected an object"),
    ("result.json", lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "iterations": 10**12})), "'iterations'"),
    ("result.json", lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "seeds": "x"})), "'seeds'"),
    ("metrics.jsonl", lambda p: _truncate(p, 0.3), "metrics.jsonl"),
    ("metrics.jsonl", lambda p: p.unlink(), "metrics.jsonl: missing"),
    ("config.toml", lambda p: p.write_text("[system\n"), "config.toml: not valid TOML"),
    ("trajectory.npz", lambda p: p.write_bytes(b"PK\x03\x04garbage"), "trajectory.npz: cannot be read"),
])
def test_read_run_names_the_damaged_file(pivot_run, tmp_path, name, damage, words):
    from trajopt import runs

    bad = _copy(pivot_run, tmp_path / "bad")
    damage(bad / name)
    with pytest.raises(runs.RunFolderError, match=words.replace("(", r"\(").replace(".", r"\.")):
        runs.read_run(bad)
    result = invoke("report", bad, "-o", tmp_path / "r.html")
    assert result.exit_code == 2 and name in _message(result) and "Traceback" not in result.output


def test_crafted_result_cannot_inject_into_the_reports(pivot_run, tmp_path):
    bad = _copy(pivot_run, tmp_path / "bad")
    result = json.loads((bad / "result.json").read_text())
    evil = "<script>alert(1)</script>"
    result.update(title=evil, x64=evil, status=evil, verb=evil, platform=evil, created=evil,
                  versions={"jax": evil})
    (bad / "result.json").write_text(json.dumps(result))
    config = (bad / "config.toml").read_text().replace('description = ""', f'description = "{evil}"')
    (bad / "config.toml").write_text(config + f'\n[extra]\nkey = "{evil}"\n')
    assert invoke("report", bad, "-o", tmp_path / "r.html", "--quiet").exit_code == 0
    assert invoke("report", bad, "-o", tmp_path / "r.md", "--quiet").exit_code == 0
    for page in (tmp_path / "r.html", tmp_path / "r.md"):
        text = page.read_text()
        assert "<script>" not in text and "&lt;script&gt;" in text, page


def test_iterations_in_the_html_report_are_escaped(pivot_run):
    from trajopt import report, runs

    run = runs.read_run(pivot_run)
    # a result.json whose variants do not record their iterations: the heading shows the top-level value
    variants = {n: {k: v for k, v in e.items() if k != "iterations"} for n, e in run.result["variants"].items()}
    forged = runs.Run(path=run.path, result={**run.result, "iterations": "<b>9</b>", "x64": "<i>x</i>",
                                             "variants": variants},
                      config=run.config, variants=run.variants, series=run.series, results=run.results)
    figures = {str(run.path): []}
    page = report.html_report([forged], figures)
    assert "<b>9</b>" not in page and "&lt;b&gt;9&lt;/b&gt;" in page and "<i>x</i>" not in page


# ------------------------------------------------------------------------------------ run-bound commands


def test_diagnose_at_a_run_refuses_a_file_that_disagrees(stiff_run, tmp_path):
    # the run was made with --set system.stiffness=10: the file's k = 1000 is another problem
    result = invoke("diagnose", STIFF, "--set", "task.horizon=8", "--at", stiff_run, "--repeats", "2",
                    "--out", tmp_path / "d")
    message = _message(result)
    assert result.exit_code == 2, result.output
    assert "system.stiffness (file 1000.0, run 10.0)" in message and "task.horizon" not in message
    assert not (tmp_path / "d").exists()
    result = invoke("diagnose", STIFF, "--set", "task.horizon=8", "--set", "task.Q=[1.0, 1.0, 1.0, 1.0]",
                    "--set", "system.stiffness=10.0", "--at", stiff_run, "--repeats", "2", "--out", tmp_path / "d")
    assert result.exit_code == 2 and "task.Q" in _message(result) and "system.stiffness" not in _message(result)


@pytest.mark.slow  # end to end, several seconds: CI's slow job runs it
def test_run_bound_commands_accept_the_runs_own_config(stiff_run, tmp_path):
    config = stiff_run / "config.toml"
    result = invoke("diagnose", config, "--at", stiff_run, "--repeats", "2", "--out", tmp_path / "d", "--json")
    assert result.exit_code == 0, result.output
    result = invoke("gradcheck", STIFF, *SMALL, "--at", stiff_run, "--directions", "1", "--json")
    assert result.exit_code in (0, 1), result.output  # the same problem through the same --set options
    # a run's own settings (iterations, key) do not change the problem, and gradcheck runs no run: setting them is
    # refused as a flag that applies to nothing (exit 2, naming the key), not silently ignored
    result = invoke("gradcheck", config, "--set", "solve.iterations=7", "--at", stiff_run, "--directions", "1",
                    "--json")
    assert result.exit_code == 2 and "--set solve.iterations" in _message(result) and "gradcheck runs none" in \
        _message(result), result.output


def test_gradcheck_at_a_run_refuses_a_file_that_disagrees(stiff_run):
    result = invoke("gradcheck", STIFF, "--set", "task.horizon=8", "--at", stiff_run, "--directions", "1")
    assert result.exit_code == 2 and "system.stiffness" in _message(result) and "task.horizon" not in _message(result)


@pytest.mark.slow  # end to end, several seconds: CI's slow job runs it
def test_landscape_refuses_another_problems_run(pivot_run, tmp_path):
    result = invoke("landscape", BALL, "--run", pivot_run, "--range", "-1:1:5", "--repeats", "2",
                    "--out", tmp_path / "l")
    assert result.exit_code == 2, result.output
    assert "system.name (file ball_with_wall, run pivot)" in _message(result)
    assert not (tmp_path / "l").exists()
    result = invoke("landscape", PIVOT, "--run", pivot_run, "--range", "-1:1:5", "--repeats", "2",
                    "--out", tmp_path / "ok", "--quiet")
    assert result.exit_code == 0, result.output


def test_run_bound_commands_need_the_runs_config(stiff_run, tmp_path):
    bad = _copy(stiff_run, tmp_path / "bad")
    (bad / "config.toml").unlink()
    result = invoke("gradcheck", STIFF, *SMALL, "--at", bad, "--directions", "1")
    assert result.exit_code == 2 and "config.toml: missing" in _message(result)


# ------------------------------------------------------------------------------------------- help text


def test_help_shows_text_as_written():
    result = invoke("sweep", "--help")
    assert "linspace:a:b:n" in result.output and "🅱" not in result.output
    result = invoke("compare", "--help")
    text = " ".join(result.output.split())
    assert "<bool>" not in result.output and "--force " in text
    assert "[variants] tables" in text or "[variants.NAME]" in text
    assert "[default: iterations]" in text


@pytest.mark.parametrize("what", ["optimizers", "oracles", "methods"])
def test_list_prints_one_entry_per_line(what):
    from trajopt.methods import METHODS
    from trajopt.optim import OPTIMIZERS
    from trajopt.oracles import ORACLES

    registry = {"optimizers": OPTIMIZERS, "oracles": ORACLES, "methods": METHODS}[what]
    result = invoke("list", what)
    assert result.exit_code == 0
    for name in registry:
        assert any(line.split("│")[1:2] and line.split("│")[1].strip() == name for line in result.output.splitlines()), name


def test_diagnose_and_landscape_titles_under_set_name_the_override_not_the_files_k(tmp_path):
    small = ["--set", "task.horizon=8", "--set", "system.stiffness=30000.0", "--set", "system.dt=0.0001"]
    d = invoke("diagnose", STIFF, *small, "--repeats", "2", "--samples", "4", "--out", tmp_path / "d", "--quiet")
    assert d.exit_code == 0, d.output
    title = json.loads((tmp_path / "d" / "diagnose.json").read_text())["title"]
    assert "system.stiffness=30000.0" in title and "k = 1000" not in title
    # landscape (one decision variable): pivot.toml's title names no parameter, so the override must be added
    land = invoke("landscape", PIVOT, "--set", "system.max_angle=0.5", "--oracles", "exact", "--range", "-1:1:3",
                  "--repeats", "2", "--out", tmp_path / "l", "--quiet")
    assert land.exit_code == 0, land.output
    metas = [json.loads(p.read_text()) for p in (tmp_path / "l").glob("*.json")]
    assert any("system.max_angle=0.5" in str(m.get("title", "")) for m in metas), metas


@pytest.mark.slow  # end to end, several seconds: CI's slow job runs it
def test_a_signal_during_sweep_or_diagnose_ends_in_a_complete_folder_marked_interrupted(tmp_path, monkeypatch):
    import os
    import signal

    from trajopt import analysis, diagnostics

    small = ["--set", "task.horizon=8"]  # the sweep's --over sets the stiffness (--set of it too is refused)
    real_point = analysis.point_statistics

    def point_then_signal(*args, **kwargs):  # the signal arrives while the first point is computed
        out = real_point(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(analysis, "point_statistics", point_then_signal)
    sweep = invoke("sweep", STIFF, *small, "--oracles", "fobg,zobg", "--samples", "4", "--repeats", "2",
                   "--over", "system.stiffness=10,30,100", "--out", tmp_path / "s", "--quiet")
    assert sweep.exit_code == 130, sweep.output
    meta = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert meta["status"] == "interrupted" and meta["values_not_run"] == [30.0, 100.0]
    assert (tmp_path / "s" / "sweep.png").exists() and (tmp_path / "s" / "sweep.csv").exists()

    real_summarise = diagnostics.summarise

    def summarise_then_signal(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real_summarise(*args, **kwargs)

    monkeypatch.setattr(diagnostics, "summarise", summarise_then_signal)
    d = invoke("diagnose", STIFF, *small, "--repeats", "2", "--samples", "4", "--out", tmp_path / "d", "--quiet")
    assert d.exit_code == 130, d.output
    assert json.loads((tmp_path / "d" / "diagnose.json").read_text())["status"] == "interrupted"
    # and without a signal both say ok
    monkeypatch.undo()
    d = invoke("diagnose", STIFF, *small, "--repeats", "2", "--samples", "4", "--out", tmp_path / "d2", "--quiet")
    assert d.exit_code == 0 and json.loads((tmp_path / "d2" / "diagnose.json").read_text())["status"] == "ok"
