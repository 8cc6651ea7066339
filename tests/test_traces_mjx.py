"""Kept traces of MJX loops (trajopt.traces): MJX's program exports and reads back, keyed by the compiled model's
bytes; MuJoCo's C simulator (host callbacks) is traced directly each time."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("mujoco.mjx", reason="the mjx system needs the [mjx] extra: pip install -e '.[mjx]'")
pytestmark = pytest.mark.mjx  # selected by `pytest -m mjx` (CI installs the extra and runs them); not in the default run

from trajopt import runs, traces  # noqa: E402
from trajopt.cli import app  # noqa: E402
from trajopt.spec import load  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PENDULUM = ROOT / "problems" / "mjx_pendulum_wall.toml"
SMALL = ["--variants", "zobg", "--iterations", "3", "--seeds", "2", "--set", "task.horizon=20",
         "--set", "oracle.samples=4"]


def _compare(out, *extra, problem=PENDULUM):
    result = CliRunner().invoke(app, ["compare", str(problem), *SMALL, *extra, "--out", str(out), "--quiet"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "result.json").read_text())
    metrics = [{k: v for k, v in json.loads(line).items() if k not in runs.TIMING_FIELDS}
               for line in (out / "metrics.jsonl").read_text().splitlines()]
    return data["variants"]["zobg"], metrics


def test_an_mjx_loop_is_read_back_and_runs_the_same(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAJOPT_CACHE_DIR", str(tmp_path / "cache" / "jax"))
    monkeypatch.delenv(traces.ENV, raising=False)
    first, m1 = _compare(tmp_path / "a")
    second, m2 = _compare(tmp_path / "b")
    assert not first["program"]["trace_reused"] and second["program"]["trace_reused"]
    assert m1 == m2 and first["final_cost"] == second["final_cost"]
    # MuJoCo's C simulator calls back into Python: not exportable, so traced directly, and only that is kept
    c_backend = ["--set", 'system.backend="mujoco"']
    c1, _ = _compare(tmp_path / "c", *c_backend)
    c2, _ = _compare(tmp_path / "d", *c_backend)
    assert not c1["program"]["trace_reused"] and not c2["program"]["trace_reused"]
    # the MJX loop and its final evaluation, the C backend's markers for both
    assert len(list((tmp_path / "cache" / "traces").glob("*.trace"))) == 4


def test_the_model_is_keyed_by_its_compiled_bytes_not_its_path(tmp_path, monkeypatch):
    """An edited model file (or a file it includes) is another trace; the same model elsewhere is the same one."""
    monkeypatch.setenv("TRAJOPT_CACHE_DIR", str(tmp_path / "cache" / "jax"))
    monkeypatch.delenv(traces.ENV, raising=False)
    models = tmp_path / "models"
    shutil.copytree(ROOT / "problems" / "models", models)
    problem = tmp_path / "p.toml"
    problem.write_text(PENDULUM.read_text())
    digest = load(problem).system.content_digest()
    assert digest == load(PENDULUM).system.content_digest()
    xml = models / "pendulum_wall.xml"
    text = xml.read_text()
    assert text.count('mass="1"') == 1
    first, _ = _compare(tmp_path / "a", problem=problem)
    xml.write_text(text.replace('mass="1"', 'mass="1.01"'))  # the bob 1 % heavier: nothing in the spec changes
    assert load(problem).system.content_digest() != digest
    heavier, _ = _compare(tmp_path / "b", problem=problem)
    assert not heavier["program"]["trace_reused"] and heavier["final_cost"] != first["final_cost"]


def test_the_toss_is_keyed_by_its_model_and_a_model_without_a_digest_is_not_kept(monkeypatch):
    """The cube toss builds an mjx system from its model file: keyed by that model's digest. A system that names a
    model file but has no digest of it is not kept at all (fail closed)."""
    from trajopt import traces as t

    monkeypatch.setenv("TRAJOPT_CACHE", "1")
    toss = load(ROOT / "problems" / "mjx_cube_toss.toml")
    identity = t.problem_identity(toss)
    assert identity is not None and identity["system"] == toss.system.mjx_system.content_digest()

    class NoDigest:
        model = "models/push.xml"

    monkeypatch.setattr(type(toss.system), "content_digest", None)
    assert t.problem_identity(toss) is None
    assert t._digest(NoDigest()) == (False, None)
