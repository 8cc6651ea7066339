"""Property: any mutation of a shipped problem file gives a clean success or a clean exit-2 error.

Mutations: delete a key, change a value's type, perturb a number, add an unknown key, or damage the text.
The default budget is small; a larger search (documented in the README):

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
