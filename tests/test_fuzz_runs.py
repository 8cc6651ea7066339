"""Property: damaged run folders and odd command-line values end in a clean success or a clean exit 2.

(a) A real run folder (made once per module) with one file damaged (truncated at a random offset, replaced by
random bytes or by another run's file, or with markup characters put into the strings of result.json and
config.toml) is read by `report`, `diagnose --at`, `landscape --run` and `gradcheck --at`: exit 0 or 2 (gradcheck
may say 1, its "bug" verdict), never a traceback, and any report escapes what was injected.
(b) Random `--set` strings for `validate` (markup characters, huge integers, negative numbers, non-numbers):
exit 0 or 2, never a traceback.

The default budget is small; a larger search:

    TRAJOPT_FUZZ_EXAMPLES=500 pytest tests/test_fuzz_runs.py -p no:randomly
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from trajopt.cli import app
from trajopt.spec import parse_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PIVOT = ROOT / "problems" / "pivot.toml"
STIFF = ROOT / "problems" / "pushing_stiff.toml"
EXAMPLES = int(os.environ.get("TRAJOPT_FUZZ_EXAMPLES", "25"))
RUN_EXAMPLES = max(5, EXAMPLES // 2)  # each example renders a report or runs a verb: about 0.8 s
runner = CliRunner()

MARKUP = ["[bold]", "[/]", "[/bold]", "[link=http://x]y[/link]", "<script>alert(1)</script>", "$x$", "$\\frac{",
          "]]", "[[x]]", "{", "%s", "\u202e", "\\", '"', "`rm`", "|", "\n", ":b:", "[red]x", "<b>inj</b>"]
FILES = ["result.json", "config.toml", "metrics.jsonl", "trajectory.npz"]


def _invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _clean(result, allowed=(0, 2)):
    """Exit 0 or 2 (or what `allowed` says), and no exception other than the exit itself."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in allowed, (result.exit_code, result.output)
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def runs_made(tmp_path_factory):
    """A small pivot run (1-D: every run-bound verb reads it) and a foreign one (another problem)."""
    root = tmp_path_factory.mktemp("fuzz_runs")
    made = {}
    for name, problem, extra in (("pivot", PIVOT, []), ("foreign", STIFF, ["--set", "task.horizon=8"])):
        out = root / name
        result = _invoke("compare", problem, "--iterations", "3", "--seeds", "1", "--oracles", "fobg,zobg", *extra,
                         "--out", out, "--quiet")
        assert result.exit_code == 0, result.output
        made[name] = out
    return made


def _string_paths(doc, prefix=()):
    """Paths to every string value (and every table key, as ("key", path)) of a decoded JSON/TOML document."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield ("key", prefix + (k,))
            yield from _string_paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _string_paths(v, prefix + (i,))
    elif isinstance(doc, str):
        yield ("value", prefix)


def _inject(doc, where, payload):
    kind, path = where
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    last = path[-1]
    if kind == "key":
        parent[f"{last}{payload}"] = parent.pop(last)
    else:
        parent[last] = f"{parent[last]}{payload}"


@st.composite
def damages(draw):
    """(file name, kind, function that damages that file in a copied run folder given the foreign run)."""
    name = draw(st.sampled_from(FILES))
    kinds = ["truncate", "random bytes", "foreign file"] + (["markup"] * 3 if name in ("result.json", "config.toml") else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "truncate":
        fraction = draw(st.floats(0, 1, exclude_max=True))
        return name, kind, lambda p, foreign: p.write_bytes(p.read_bytes()[: int(len(p.read_bytes()) * fraction)])
    if kind == "random bytes":
        data = draw(st.binary(max_size=300))
        return name, kind, lambda p, foreign: p.write_bytes(data)
    if kind == "foreign file":
        return name, kind, lambda p, foreign: shutil.copyfile(foreign / name, p)
    payloads = draw(st.lists(st.sampled_from(MARKUP), min_size=1, max_size=3))
    picks = draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=4))

    def markup(p, foreign):
        text = p.read_text()
        doc = json.loads(text) if name.endswith(".json") else tomllib.loads(text)
        places = list(_string_paths(doc))
        for i, pick in enumerate(picks):
            _inject(doc, places[pick % len(places)], payloads[i % len(payloads)])
            places = list(_string_paths(doc))
        p.write_text(json.dumps(doc) if name.endswith(".json") else tomli_w.dumps(doc))

    return name, kind, markup


# markup in output names (file names may hold any of these): printed back, they must be shown as written
NAME_MARKS = ["", "[bold]", "[/x]", "[/]", "[red]", "$x$", "<b>inj</b>", "[link=y]", "]["]


def _commands(run: Path, work: Path, mark: str) -> dict:
    """Each verb that reads a run folder, printing its console output (no --quiet), its outputs named with ``mark``."""
    return {
        "report html": (["report", run, "-o", work / f"{mark}r.html"], (0, 2)),
        "report md": (["report", run, "-o", work / f"{mark}r.md"], (0, 2)),
        "diagnose --at": (["diagnose", PIVOT, "--at", run, "--repeats", "2", "--out", work / f"{mark}d"], (0, 2)),
        "landscape --run": (["landscape", PIVOT, "--run", run, "--range", "-1:1:3", "--repeats", "2", "--oracles",
                             "fobg,zobg", "--out", work / f"{mark}l"], (0, 2)),
        "gradcheck --at": (["gradcheck", PIVOT, "--at", run, "--directions", "1"], (0, 1, 2)),
    }


@settings(max_examples=RUN_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                           HealthCheck.function_scoped_fixture])
@given(damage=damages(), command=st.sampled_from(["report html", "report md", "diagnose --at", "landscape --run",
                                                  "gradcheck --at"]), mark=st.sampled_from(NAME_MARKS))
@pytest.mark.slow  # end to end, several seconds: CI's slow job runs it
def test_damaged_run_folders_are_read_cleanly(runs_made, damage, command, mark):
    name, kind, apply = damage
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run = work / f"{mark}run"
        shutil.copytree(runs_made["pivot"], run)
        apply(run / name, runs_made["foreign"])
        args, allowed = _commands(run, work, mark)[command]
        result = _invoke(*args)
        _clean(result, allowed)
        if result.exit_code == 2:
            assert result.stderr.startswith("error: "), result.stderr
        elif command.startswith("report"):
            assert str(work / f"{mark}r.") in " ".join(result.stdout.split()), result.stdout  # the name as written
        for page in (work / f"{mark}r.html", work / f"{mark}r.md"):
            if page.exists():  # whatever was injected is shown as text, never as markup
                text = page.read_text()
                assert "<script" not in text and "<b>inj" not in text, (name, kind)


def test_a_damaged_folder_is_named(runs_made, tmp_path):
    """One fixed case of each kind through `report`, for a readable failure if the property above breaks."""
    for name in FILES:
        run = tmp_path / name
        shutil.copytree(runs_made["pivot"], run)
        (run / name).write_bytes(b"\x00garbage")
        result = _invoke("report", run, "-o", tmp_path / f"{name}.html")
        _clean(result)
        assert result.exit_code == 2 and name in " ".join(result.stderr.split()), (name, result.output)


@pytest.mark.parametrize("edit, words", [  # cases the search above found
    (lambda e: e.pop("final_cost"), "variants.fobg.final_cost: expected a list of 1 numbers"),
    (lambda e: e.pop("best_cost"), "variants.fobg.best_cost"),
    (lambda e: e.update(run_seconds="x"), "variants.fobg.run_seconds: expected a number of seconds"),
    (lambda e: e.update(failed_at=["a"]), "variants.fobg.failed_at"),
    (lambda e: e.update(failed_at=[1, 2, 3]), "variants.fobg.failed_at"),
])
def test_a_forged_variant_entry_is_named(runs_made, tmp_path, edit, words):
    run = tmp_path / "run"
    shutil.copytree(runs_made["pivot"], run)
    result = json.loads((run / "result.json").read_text())
    edit(result["variants"]["fobg"])
    (run / "result.json").write_text(json.dumps(result))
    for args in (["report", run, "-o", tmp_path / "r.html"],
                 ["landscape", PIVOT, "--run", run, "--range", "-1:1:3", "--out", tmp_path / "l"]):
        out = _invoke(*args)
        _clean(out, (2,))
        assert "result.json" in out.stderr and words in " ".join(out.stderr.split()), out.stderr


# ------------------------------------------------------------------------------------ command-line values

KEYS = ["system.stiffness", "system.dt", "system.mass", "task.horizon", "task.u_init", "task.x0", "oracle.samples",
        "oracle.sigma", "oracle.aobg.gamma", "oracle.fobg.samples", "solve.iterations", "solve.seeds", "solve.key",
        "solve.chunk", "solve.optimizer.step", "solve.optimizer.name", "solve.oracles", "solve.variants", "title",
        "name", "variants.x.oracle", "method.cem.samples", "oracle", "system", "task.Q"]
NUMBERS = st.one_of(st.integers(-10**30, 10**30), st.sampled_from([0, -1, 2**32, 2**63, 10**23, -(10**23)]),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr))
ODD = st.sampled_from(["nan", "inf", "-inf", "1e999", "abc", "[1, 2", "{", '"', "[]", "{}", "true", "[1, 2, 3]",
                       '"fobg"', '["fobg", "fobg"]', "0x10", "1_000", "", " ", "=", "==", "1e23", "-0.0"])
VALUES = st.one_of(NUMBERS.map(str), ODD, st.sampled_from(MARKUP),
                   st.text(alphabet=st.sampled_from(list("[]/<>$\\{}=\"' .:ab01")), max_size=12))
SET_ITEMS = st.one_of(
    st.tuples(st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.tuples(st.sampled_from(KEYS + [""]), st.sampled_from(MARKUP), VALUES).map(lambda t: f"{t[0]}{t[1]}={t[2]}"),
    st.text(alphabet=st.sampled_from(list("[]/<>$\\{}=\"' .:ab01")), max_size=16),
)


# the strings validate prints back (title, name, description), set to markup or to quoted markup
TEXT_ITEMS = st.tuples(st.sampled_from(["title", "description", "name", "system.name"]),
                       st.lists(st.sampled_from(MARKUP), min_size=1, max_size=3).map("".join),
                       st.booleans()).map(lambda t: f"{t[0]}={json.dumps(t[1]) if t[2] else t[1]}")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sets=st.lists(st.one_of(SET_ITEMS, TEXT_ITEMS), min_size=1, max_size=3), as_json=st.booleans())
def test_odd_set_values_validate_cleanly(sets, as_json):
    args = ["validate", STIFF, *[a for s in sets for a in ("--set", s)]] + (["--json"] if as_json else [])
    result = _invoke(*args)
    _clean(result)
    if result.exit_code == 2:
        assert result.stderr.startswith("error: ") or result.stderr.startswith("Usage:"), result.stderr
    titles = [parse_value(item.partition("=")[2].strip()) for item in sets if item.partition("=")[0].strip() == "title"]
    if result.exit_code == 0 and not as_json and titles and "\n" not in str(titles[-1]):  # printed as written
        assert "".join(str(titles[-1]).split()) in "".join(result.stdout.split()), (titles[-1], result.stdout)


@pytest.mark.parametrize("title", ["[/x]", "[bold]x", "[red]t[/red]", "$x$ [/]", "<b>inj</b>"])
def test_validate_shows_a_title_as_written(title):
    result = _invoke("validate", PIVOT, "--set", f"title={json.dumps(title)}")
    _clean(result, (0,))
    assert title in result.stdout


FLAG_VALUES = st.one_of(NUMBERS.map(str), ODD, st.sampled_from(MARKUP))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flag=st.sampled_from(["--iterations", "--seeds", "--oracles", "--variants", "--x", "--budget", "--out"]),
       value=FLAG_VALUES)
def test_odd_flag_values_are_refused_cleanly_before_any_run(tmp_path_factory, flag, value):
    """compare with one odd flag value and a second, always invalid, option (so that nothing runs even when the
    value itself is fine): exit 2, one clean message, nothing written."""
    work = tmp_path_factory.mktemp("flags")
    out = ["--out", work / "o"] if flag != "--out" else []
    result = _invoke("compare", STIFF, flag, value, *out, "--set", "system.mass=0.0", "--quiet")
    _clean(result, (2,))
    assert not (work / "o").exists()
