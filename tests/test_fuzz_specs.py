"""Property: any mutation of a shipped problem file gives a clean success or a clean exit-2 error, and so do random
values for the flags of solve, compare, sweep, landscape, diagnose and gradcheck.

Mutations: delete a key, change a value's type, perturb a number, add an unknown key, or damage the text.
The default budget is small (the slow job runs ten times as many command lines); a larger search (documented in
the README):

    TRAJOPT_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz_specs.py -m "slow or not slow" -p no:randomly
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from trajopt.cli import app

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PROBLEMS = sorted((Path(__file__).resolve().parent.parent / "problems").glob("*.toml"))
EXAMPLES = int(os.environ.get("TRAJOPT_FUZZ_EXAMPLES", "30"))
runner = CliRunner()


def _paths(doc, prefix=()):
    for k, v in doc.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from _paths(v, prefix + (k,))


def _get_parent(doc, path):
    for k in path[:-1]:
        doc = doc[k]
    return doc


OTHER_VALUES = st.one_of(
    st.text(max_size=8), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True),
    st.lists(st.floats(-5, 5), max_size=5), st.builds(dict), st.builds(lambda: [[1.0, 2.0], [3.0]]),  # fresh objects: mutated later
)


@st.composite
def mutated_documents(draw):
    path = draw(st.sampled_from(PROBLEMS))
    text = path.read_text()
    doc = tomllib.loads(text)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(doc))
        kind = draw(st.sampled_from(["delete", "retype", "perturb", "add", "garbage"]))
        if kind == "garbage":
            raw = tomli_w.dumps(doc)
            at = draw(st.integers(0, len(raw)))
            junk = draw(st.sampled_from(["[", "]", "=", '"', "\n[[x]]\n", "= =", "\x00", "\nkey\n", "}"]))
            return raw[:at] + junk + raw[at:]
        if not paths:
            break
        target = draw(st.sampled_from(paths))
        parent = _get_parent(doc, target)
        if kind == "delete":
            del parent[target[-1]]
        elif kind == "retype":
            parent[target[-1]] = draw(OTHER_VALUES)
        elif kind == "perturb":
            value = parent[target[-1]]
            factor = draw(st.sampled_from([-1.0, 0.0, 0.5, 2.0, 3.0]))
            if isinstance(value, bool):
                parent[target[-1]] = not value
            elif isinstance(value, int):
                parent[target[-1]] = int(value * factor) if abs(value * factor) < 5000 else value
            elif isinstance(value, float):
                parent[target[-1]] = value * factor
            elif isinstance(value, list) and value and isinstance(value[0], (int, float)):
                i = draw(st.integers(0, len(value) - 1))
                value[i] = value[i] * factor
        elif kind == "add":
            table = parent[target[-1]] if isinstance(parent[target[-1]], dict) else parent
            table[draw(st.sampled_from(["extra", "sigma", "gama", "Qd", "x_0", "name"]))] = draw(OTHER_VALUES)
    return tomli_w.dumps(doc)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_documents())
def test_mutated_problem_files_fail_cleanly_or_validate(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mutated.toml"
        path.write_text(text)
        result = runner.invoke(app, ["validate", str(path)])
    if result.exit_code == 2:
        assert result.stderr.startswith("error: ") and "mutated.toml" in result.stderr.replace("\n", "")
    else:
        assert result.exit_code == 0, (result.exit_code, result.output, repr(result.exception))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


@pytest.mark.slow
@settings(max_examples=max(5, EXAMPLES // 5), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_documents())
def test_mutated_problem_files_run_cleanly(text):
    """The same property through `compare` (a couple of iterations, one seed)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mutated.toml"
        path.write_text(text)
        result = runner.invoke(app, ["compare", str(path), "--iterations", "2", "--seeds", "1", "-q",
                                     "--out", str(Path(tmp) / "out")])
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output, repr(result.exception))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


# ------------------------------------------------------------------------------------- command-line flags
# Random values for the flags of solve, compare, sweep, landscape, diagnose and gradcheck: each command is accepted
# (it reaches the computation, replaced here by a sentinel so that no example compiles anything) or refused with
# one exit-2 line (click's own usage error for a value of the wrong type), never a traceback or another exit code.

class Accepted(Exception):
    """Raised where an accepted command would start computing."""


def _accepted(*args, **kwargs):
    raise Accepted


COMPUTE = [("trajopt.solver", "prepare_each"), ("trajopt.analysis", "point_statistics"),
           ("trajopt.analysis", "landscape"), ("trajopt.diagnostics", "estimator_statistics"),
           ("trajopt.diagnostics", "gradient_check")]
FLAG_PROBLEMS = [PROBLEMS[0].parent / f for f in ("pushing_soft.toml", "heaviside.toml", "pivot.toml",
                                                  "pendulum_wall_policy.toml")]
NAMES = st.sampled_from(["fobg", "zobg", "aobg", "exact", "cem", "ilqr", "mppi", "ps", "dial", "lbfgs", "ivw",
                         "tuned_aobg", "nope", "fobg,zobg", "fobg,fobg", ",", "", "a:b", "fobg,ilqr", "zobg,cem"])
SET_KEYS = st.sampled_from(["system.stiffness", "system.dt", "system.mass", "system.dimension", "task.horizon",
                            "task.u_init", "task.x0", "oracle.samples", "oracle.sigma", "oracle.aobg.gamma",
                            "oracle.fobg.samples", "solve.iterations", "solve.seeds", "solve.key", "solve.optimizer.step",
                            "solve.optimizer.name", "solve.variants", "solve.oracles", "solve.on_non_finite",
                            "method.cem.population", "variants.x.oracle", "success.radius", "task.n_eval", "title",
                            "name", "", "a..b", "system"])
SET_VALUES = st.one_of(
    st.sampled_from(["1", "0", "-1", "2", "3", "0.5", "1e308", "1e-308", "inf", "nan", "-inf", "1e400", "1" + "0" * 30,
                     '"sgd"', '"adam"', "true", "[1, 2]", "[]", "{a = 1}", "[" * 20 + "1" + "]" * 20, '"a\\nb"',
                     "[" * 5000 + "]" * 5000, "x y", '["fobg"]', '["ilqr", "fobg"]', '"skip"']),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=10))
INTEGERS = st.one_of(st.integers(-3, 12).map(str), st.sampled_from(["1000000", "10000001", "4294967296", "1e3", "abc",
                                                                   "99999999999999999999", ""]))
GRIDS = st.sampled_from(["1,2", "linspace:1:2:3", "logspace:0:400:3", "logspace:1:2", "1e308,1", "a,b", "10,1e5",
                         "linspace:0:1:100000000", "", "inf,1", "3"])
FLAG_VALUES = {
    "--oracle": NAMES, "--variant": NAMES, "--oracles": NAMES, "--variants": NAMES,
    "--seeds": st.sampled_from(["1", "2", "0", "-1", "1,2", "1,1", "a", "4294967296", "100001", "1e3", "", " "]),
    "--iterations": INTEGERS, "--budget": INTEGERS, "--samples": INTEGERS, "--repeats": INTEGERS,
    "--directions": INTEGERS,
    "--x": st.sampled_from(["iterations", "rollouts", "gradients", "seconds", "iterations,gradients", "gradients,gradients",
                            "foo", ""]),
    "--set": st.one_of(st.tuples(SET_KEYS, SET_VALUES).map("=".join), SET_KEYS),
    "--over": st.tuples(SET_KEYS, GRIDS).map("=".join),
    "--range": st.sampled_from(["0:1:3", "-1e308:1e308:5", "1:0:3", "0:1:1", "0:1:100000000", "a:b:c", "0:1", "-1:1:5"]),
    "--steps": st.sampled_from(["1e-2,1e-4", "0", "-1", "a", "1e-2,1e-2", "1e400", ""]),
    "--at": st.sampled_from(["init", "no-such-run", "/"]), "--from": st.sampled_from(["no-such-run", "/", "."]),
    "--run": st.sampled_from(["no-such-run", "."]),
}
SWITCHES = ["--force", "--json", "--quiet", "--report", "--skip-invalid"]
VERB_FLAGS = {
    "solve": ["--oracle", "--variant", "--from", "--seeds", "--iterations", "--set", "--force", "--json", "--quiet"],
    "compare": ["--oracles", "--variants", "--from", "--seeds", "--iterations", "--x", "--set", "--force", "--report",
                "--budget", "--json", "--quiet"],
    "sweep": ["--over", "--skip-invalid", "--samples", "--repeats", "--oracles", "--set", "--force", "--json", "--quiet"],
    "landscape": ["--range", "--samples", "--repeats", "--oracles", "--run", "--set", "--force", "--json", "--quiet"],
    "diagnose": ["--at", "--oracle", "--samples", "--repeats", "--set", "--force", "--json", "--quiet"],
    "gradcheck": ["--directions", "--steps", "--at", "--oracle", "--set", "--json", "--quiet"],
}
DEFAULTS = {"sweep": ["--over", "oracle.sigma=0.1,0.2"], "landscape": ["--range", "0:1:3"],  # their required flags
            "solve": ["--variant", "zobg"]}


@st.composite
def command_lines(draw):
    verb = draw(st.sampled_from(sorted(VERB_FLAGS)))
    args = [verb]
    if verb not in ("solve", "compare") or draw(st.booleans()):  # solve and compare may take --from instead
        args.append(str(draw(st.sampled_from(FLAG_PROBLEMS))))
    flags = draw(st.lists(st.sampled_from(VERB_FLAGS[verb] + ["--set"] * 3), max_size=5))  # --set drawn more often
    if verb in DEFAULTS and not {DEFAULTS[verb][0], "--oracle", "--from"} & set(flags):
        args += DEFAULTS[verb]
    if verb == "landscape" and draw(st.booleans()):
        args += ["--set", "system.dimension=1"]
    for flag in flags:
        args += [flag] if flag in SWITCHES else [flag, draw(FLAG_VALUES[flag])]
    if verb != "gradcheck" and draw(st.booleans()):
        args += ["--out", "OUT"]
    return args


def _one_command(args):
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        import importlib

        mp.chdir(tmp)
        for module, name in COMPUTE:
            mp.setattr(importlib.import_module(module), name, _accepted)
        result = runner.invoke(app, [str(Path(tmp) / "out") if a == "OUT" else a for a in args])
    if isinstance(result.exception, Accepted):
        return
    stderr = result.stderr
    assert result.exit_code == 2, (args, result.exit_code, result.output, repr(result.exception))
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
    assert "Traceback" not in result.output, (args, result.output)
    if "Usage:" not in stderr:  # click's usage error: a value of the wrong type for an option
        assert stderr.startswith("error: ") and len(stderr.strip().splitlines()) == 1, (args, stderr)


@settings(max_examples=max(10, EXAMPLES // 2), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command_lines())
def test_random_flags_are_accepted_or_refused_in_one_line(args):
    _one_command(args)


@pytest.mark.slow
@settings(max_examples=EXAMPLES * 10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command_lines())
def test_random_flags_are_accepted_or_refused_in_one_line_more(args):
    _one_command(args)


@pytest.mark.parametrize("item", ["=\n", "a\u2028b=1", "so\rlve.seeds=2"], ids=["newline", "line-separator", "cr"])
def test_a_line_break_in_a_flag_stays_on_the_error_line(item):
    """Hypothesis found ``--set '=\\n'`` printing its error on two lines (the key echoed as written): every character
    that splits a line is written as its escape, so a refusal stays one line whatever the user typed."""
    _one_command(["diagnose", str(FLAG_PROBLEMS[0]), "--set", item])
