"""The cfd oracle and `trajopt fidelity` without MuJoCo: what they refuse (exit 2, one line, nothing written, before
anything compiles) and the fidelity table on a penalty-contact problem. Their MJX side is tests/test_mjx_contact.py
(the mjx job)."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trajopt import spec
from trajopt.checks import FieldError
from trajopt.cli import app
from trajopt.oracles import ORACLES

PROBLEMS = Path(__file__).resolve().parent.parent / "problems"
STIFF = str(PROBLEMS / "pushing_stiff.toml")
runner = CliRunner()


def words(result) -> str:
    return " ".join(result.output.split())


@pytest.mark.parametrize("field, value, allowed", [("margin", -0.01, "a number >= 0"),
                                                   ("acceleration", -1.0, "a number >= 0"),
                                                   ("power", 0.5, "a number >= 1")])
def test_cfd_refuses_bad_parameters(field, value, allowed):
    with pytest.raises(FieldError, match=allowed):
        ORACLES.get("cfd")(**{field: value})


def test_cfd_negative_margin_is_an_exit_2_line_at_its_key(tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["compare", STIFF, "--oracles", "cfd", "--set", "oracle.cfd.margin=-0.01",
                                 "--out", str(out)])
    assert result.exit_code == 2 and "oracle.cfd.margin: found -0.01, allowed: a number >= 0" in words(result)
    assert not out.exists()


@pytest.mark.parametrize("verb", [["compare", "--iterations", "2"], ["sweep", "--over",
                                                                     "oracle.fobg.sigma=0.1,0.2"], ["fidelity"]])
def test_cfd_on_a_system_that_is_not_mjx_is_refused(tmp_path, verb):
    out = tmp_path / "run"
    result = runner.invoke(app, [verb[0], STIFF, "--oracles", "fobg,cfd", *verb[1:], "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "oracle 'cfd' differentiates the contacts of a MuJoCo MJX model" in words(result)
    assert "pushing_stiff" in words(result) and not out.exists()


def test_cfd_check_on_a_plain_problem():
    problem = spec.load(STIFF).problem()
    assert type(problem.system).__name__ == "Pushing"  # the problem knows its system (the owner of its step)
    with pytest.raises(ValueError, match="Pushing: use exact, fobg, zobg or aobg there"):
        ORACLES.get("cfd")().check(problem)


@pytest.mark.parametrize("args, message", [
    (["--timesteps", "1e-3"], "--timesteps: found a grid for the system 'pushing', allowed: a system with an MJX time step"),
    (["--solrefs", "0.02,1"], "--solrefs: found a grid for the system 'pushing'"),
    (["--reference-timestep", "1e-4"], "--reference-timestep: found '1e-4' for the system 'pushing', allowed: a "
                                       "system with an MJX time step"),
    (["--reference-timestep", "auto"], "--reference-timestep: found 'auto' for the system 'pushing'"),
    (["--solrefs", "0.02"], "--solrefs: found '0.02', allowed: pairs timeconst,dampratio"),
    (["--solrefs", "0.02,-1"], "allowed: pairs timeconst,dampratio (both > 0) or -stiffness,-damping"),
    (["--timesteps", "1e-3,abc"], "--timesteps: found '1e-3,abc', allowed: comma-separated numbers"),
    (["--timesteps", "1e-3,1e-3"], "a repeated time step"),
    (["--repeats", "0"], "--repeats: found 0, allowed: an integer >= 1"),
    (["--fd-step", "0"], "--fd-step: found 0.0, allowed: a number in (0, 0.1]"),
    (["--oracles", "exact,nope"], "--oracles: unknown oracle 'nope'"),
    (["--oracles", "exact,exact"], "a repeated name"),
    (["--reference-timestep", "soon"], "--reference-timestep: found 'soon'"),
])
def test_fidelity_refuses_bad_flags(tmp_path, args, message):
    out = tmp_path / "f"
    result = runner.invoke(app, ["fidelity", STIFF, *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert message in words(result)
    assert not out.exists()


@pytest.mark.slow  # three small compiled programs: about 10 s on 2 loaded cores
def test_fidelity_on_penalty_pushing_needs_no_grid(tmp_path):
    """Without a grid, one cell at the file's settings and no fine reference: exact against its own finite
    differences (penalty contact, away from any switch at U0: a smooth cost), FoBG with its spread over repeats."""
    out = tmp_path / "f"
    result = runner.invoke(app, ["fidelity", STIFF, "--oracles", "exact,fobg", "--repeats", "3", "--set",
                                 "task.horizon=6", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["reference_timestep"] is None and [r["oracle"] for r in report["rows"]] == ["exact", "fobg"]
    exact, fobg = report["rows"]
    assert exact["fd_trusted"] and exact["repeats"] == 1 and exact["rel_fd"]["median"] < 1e-6
    assert exact["cos_fd"]["median"] == pytest.approx(1.0, abs=1e-9)
    assert fobg["repeats"] == 3 and fobg["rel_fd"]["q25"] <= fobg["rel_fd"]["median"] <= fobg["rel_fd"]["q75"]
    assert "cos_fine" not in exact
    assert (out / "fidelity.csv").is_file() and (out / "fidelity.png").is_file()
