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
import re
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, example, given, settings
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


# any JSON value, the awkward ones included: huge integers, NaN and infinities (Python's json writes and reads them),
# markup, nesting
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.sampled_from([10**400, -1, 0, 2**63]),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6), st.sampled_from(MARKUP)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6)
TOML_VALUES = st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True), st.booleans(),
                        st.text(max_size=6), st.sampled_from(MARKUP), st.lists(st.integers(-5, 5), max_size=3))
# arrays a trajectory.npz may be made to hold: shapes against the run's seeds and problem, every dtype kind
ARRAYS = st.tuples(st.lists(st.integers(0, 3), max_size=3), st.sampled_from(["f8", "f4", "i8", "u1", "?", "c16", "U2"]),
                   st.sampled_from([0.0, float("nan"), float("inf"), 1e308]))


def _leaf_paths(doc, prefix=()):
    """Paths to every value (containers included) of a decoded document."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield prefix + (k,)
            yield from _leaf_paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield prefix + (i,)
            yield from _leaf_paths(v, prefix + (i,))


def _set_at(doc, path, value):
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value


def _make_fifo(p: Path, foreign) -> None:
    p.unlink()
    os.mkfifo(p)


@st.composite
def damages(draw):
    """(file name, kind, function that damages that file in a copied run folder given the foreign run)."""
    name = draw(st.sampled_from(FILES))
    kinds = ["truncate", "random bytes", "foreign file", "link out", "fifo", "edit", "edit"] \
        + (["markup"] * 3 if name in ("result.json", "config.toml") else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "truncate":
        fraction = draw(st.floats(0, 1, exclude_max=True))
        return name, kind, lambda p, foreign: p.write_bytes(p.read_bytes()[: int(len(p.read_bytes()) * fraction)])
    if kind == "random bytes":
        data = draw(st.binary(max_size=300))
        return name, kind, lambda p, foreign: p.write_bytes(data)
    if kind == "foreign file":
        return name, kind, lambda p, foreign: shutil.copyfile(foreign / name, p)
    if kind == "link out":  # a symbolic link to the foreign run's file (outside the folder)
        return name, kind, lambda p, foreign: (p.unlink(), os.symlink(foreign / name, p))
    if kind == "fifo":  # a reader that opened it would wait forever for a writer
        return name, kind, _make_fifo
    if kind == "edit":
        return name, kind, _edit(draw, name)
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


def _edit(draw, name: str):
    """A well-formed file with wrong content: a value of result.json or config.toml replaced by another of any
    type, metrics.jsonl with lines dropped, repeated or with a field of any type, or trajectory.npz with arrays
    of other shapes and dtypes."""
    picks = draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=3))
    if name == "result.json":
        values = draw(st.lists(JSON_VALUES, min_size=len(picks), max_size=len(picks)))

        def edit(p, foreign):
            doc = json.loads(p.read_text())
            for pick, value in zip(picks, values):
                paths = list(_leaf_paths(doc))
                _set_at(doc, paths[pick % len(paths)], value)
            p.write_text(json.dumps(doc))
    elif name == "config.toml":
        values = draw(st.lists(TOML_VALUES, min_size=len(picks), max_size=len(picks)))

        def edit(p, foreign):
            doc = tomllib.loads(p.read_text())
            for pick, value in zip(picks, values):
                paths = list(_leaf_paths(doc))
                _set_at(doc, paths[pick % len(paths)], value)
            p.write_text(tomli_w.dumps(doc))
    elif name == "metrics.jsonl":
        how = draw(st.sampled_from(["drop", "repeat", "field"]))
        values = draw(st.lists(JSON_VALUES, min_size=len(picks), max_size=len(picks)))
        keys = draw(st.lists(st.sampled_from(["variant", "seed", "iteration", "cost", "rollouts", "alpha", "new"]),
                             min_size=len(picks), max_size=len(picks)))

        def edit(p, foreign):
            lines = p.read_text().splitlines()
            for pick, value, key in zip(picks, values, keys):
                i = pick % len(lines)
                if how == "drop" and len(lines) > 1:
                    del lines[i]
                elif how == "repeat":
                    lines.insert(pick % (len(lines) + 1), lines[i])
                else:
                    row = json.loads(lines[i])
                    row[key] = value
                    lines[i] = json.dumps(row)
            p.write_text("\n".join(lines) + "\n")
    else:
        arrays = draw(st.lists(ARRAYS, min_size=1, max_size=3))
        keys = draw(st.lists(st.sampled_from(["fobg/U", "zobg/U", "fobg/X", "other/U", "U"]), min_size=len(arrays),
                             max_size=len(arrays)))

        def edit(p, foreign):
            import numpy as np

            with np.load(p) as data:
                out = {k: data[k] for k in data.files}
            for key, (shape, dtype, fill) in zip(keys, arrays):
                with np.errstate(all="ignore"):  # NaN or 1e308 cast to an integer type: whatever it gives
                    out[key] = np.full(shape, fill).astype(dtype) if dtype != "U2" else np.full(shape, "ab")
            with open(p, "wb") as f:
                np.savez(f, **out)
    return edit


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


def _read_or_refuse(run: Path):
    """`runs.read_run` of ``run`` in a thread that must end within a minute (a FIFO opened for reading would block
    it forever): the Run, or the RunFolderError it raised; anything else fails."""
    import threading

    from trajopt import runs

    out = {}

    def target():
        try:
            out["run"] = runs.read_run(run)
        except runs.RunFolderError as e:
            out["error"] = e
        except BaseException as e:  # noqa: BLE001 - reported below
            out["other"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), f"reading {run} hangs"
    assert "other" not in out, repr(out.get("other"))
    return out.get("run"), out.get("error")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])
@given(damage=damages())
def test_a_damaged_run_folder_is_read_or_refused_by_name(runs_made, damage):
    """The reader itself (no figures: fast, so many examples): a damaged folder is read (with notes where it reads
    around something) or refused with a RunFolderError naming the damaged file; never another exception, never a
    hang; and what it read renders into a report's text."""
    from trajopt import report

    name, kind, apply = damage
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(runs_made["pivot"], run)
        apply(run / name, runs_made["foreign"])
        read, error = _read_or_refuse(run)
        if error is not None:
            assert str(error).startswith(str(run / "")), str(error)  # names a file of the folder (or the folder)
            if kind in ("link out", "fifo"):
                assert str(error).startswith(f"{run / name}: "), str(error)
            return
        for note in read.notes:
            assert note.startswith(str(run / "")), note
        text = report.markdown_report([read], "figures", {str(read.path): []})
        assert text.startswith("# ") and "<script" not in text


def _rewrite_json(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def _rewrite_lines(path: Path, edit) -> None:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(row) + "\n" for row in edit(lines)))


def _rewrite_npz(path: Path, **arrays) -> None:
    import numpy as np

    with np.load(path) as data:
        out = {k: data[k] for k in data.files}
    out.update(arrays)
    for k in [k for k, v in out.items() if v is None]:
        del out[k]
    with open(path, "wb") as f:
        np.savez(f, **out)


def _object_npz(path: Path) -> None:
    import numpy as np

    with open(path, "wb") as f:
        np.savez(f, **{"fobg/U": np.array([None, {"a": 1}], dtype=object)})


def _link(path: Path, target) -> None:
    path.unlink()
    os.symlink(target, path)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


_F = lambda *shape: __import__("numpy").zeros(shape)  # noqa: E731

# (what is damaged, the damage (run folder, foreign run), the words of the error, or None and the note's words)
READER_CASES = [
    ("trajectory.npz missing", lambda r, f: (r / "trajectory.npz").unlink(), None, "trajectory.npz: missing; the "
     "trajectories are not drawn"),
    ("a variant's U missing", lambda r, f: _rewrite_npz(r / "trajectory.npz", **{"zobg/U": None}), None,
     "no final decision for 'zobg'"),
    ("an array of no variant", lambda r, f: _rewrite_npz(r / "trajectory.npz", **{"other/U": _F(1, 1, 1)}), None,
     "'other/U' belong to no variant of result.json; ignored"),
    ("U of other seeds", lambda r, f: _rewrite_npz(r / "trajectory.npz", **{"fobg/U": _F(5, 3)}),
     "trajectory.npz: fobg/U has shape [5, 3], expected [1, ...] (one entry per seed of result.json)", None),
    ("U a scalar", lambda r, f: _rewrite_npz(r / "trajectory.npz", **{"fobg/U": _F()}), "fobg/U has shape []", None),
    ("U of two shapes", lambda r, f: _rewrite_npz(r / "trajectory.npz", **{"fobg/U": _F(1, 2, 1)}),
     "the variants' U have different shapes (fobg: [1, 2, 1], zobg: [1, 1, 1])", None),
    ("X beside U wrong", lambda r, f: _rewrite_npz(r / "trajectory.npz", **{"fobg/X": _F(1, 1, 2)}),
     "fobg/X has shape [1, 1, 2] beside fobg/U [1, 1, 1]; expected states [S, T+1, n]", None),
    ("U of text", lambda r, f: _rewrite_npz(r / "trajectory.npz", **{"fobg/U": __import__("numpy").array([["a"]])}),
     "fobg/U holds <U1 values, expected numbers", None),
    ("an object array", lambda r, f: _object_npz(r / "trajectory.npz"), "Object arrays cannot be loaded", None),
    ("metrics.jsonl missing", lambda r, f: (r / "metrics.jsonl").unlink(), "metrics.jsonl: missing", None),
    ("lines missing", lambda r, f: _rewrite_lines(r / "metrics.jsonl", lambda rows: rows[::2]), None,
     "metrics.jsonl: 4 of 8 lines missing; their iterates are gaps in the curves"),
    ("a variant's lines missing", lambda r, f: _rewrite_lines(r / "metrics.jsonl",
                                                               lambda rows: [x for x in rows if x["variant"] != "zobg"]),
     None, "4 of 8 lines missing (none for 'zobg')"),
    ("foreign lines", lambda r, f: _rewrite_lines(r / "metrics.jsonl", lambda rows: rows + [
        {**rows[0], "variant": "cem"}, {**rows[0], "seed": 9}, {**rows[0], "iteration": 4}]), None,
     "3 line(s) about a variant, seed or iteration that result.json does not list (the first: line 9); ignored"),
    ("a line twice", lambda r, f: _rewrite_lines(r / "metrics.jsonl", lambda rows: rows + rows[2:3]),
     "metrics.jsonl: line 9: repeats variant 'fobg', seed 0, iteration 2 of an earlier line", None),
    ("a cost of text", lambda r, f: _rewrite_lines(r / "metrics.jsonl", lambda rows: [{**rows[0], "cost": "x"}] + rows[1:]),
     "metrics.jsonl: line 1: 'cost' is 'x', expected a number or null", None),
    ("a list for a count", lambda r, f: _rewrite_lines(r / "metrics.jsonl", lambda rows: rows[:3] + [{**rows[3], "rollouts": [1]}] + rows[4:]),
     "line 4: 'rollouts' is [1], expected a number or null", None),
    ("a seed of text", lambda r, f: _rewrite_lines(r / "metrics.jsonl", lambda rows: [{**rows[0], "seed": "0"}] + rows[1:]),
     "line 1: 'seed' is '0', expected a seed number", None),
    ("a negative iteration", lambda r, f: _rewrite_lines(r / "metrics.jsonl", lambda rows: [{**rows[0], "iteration": -1}] + rows[1:]),
     "line 1: 'iteration' is -1, expected an iteration number >= 0", None),
    ("a cost beyond a double", lambda r, f: _rewrite_lines(r / "metrics.jsonl", lambda rows: [{**rows[0], "cost": 10**400}] + rows[1:]),
     "line 1: 'cost' is 1000", None),
    ("a line that is a list", lambda r, f: (r / "metrics.jsonl").write_text("[1, 2]\n"),
     "line 1: found a JSON list, expected an object", None),
    ("bytes that are not UTF-8", lambda r, f: (r / "metrics.jsonl").write_bytes(b"\xff\xfe{}\n"), "not UTF-8", None),
    ("result.json claiming 10^7 iterations x 10^5 seeds", lambda r, f: _rewrite_json(r / "result.json", lambda d: d.update(
        iterations=10**7, seeds=list(range(10**5)), variants={})), "'variants'" , None),
    ("result.json claiming 10^7 iterations", lambda r, f: _rewrite_json(r / "result.json", lambda d: (
        d.update(iterations=10**7), [v.update(iterations=10**7) for v in d["variants"].values()])),
     "bytes for 20000002 lines", None),
    ("a seed twice", lambda r, f: _rewrite_json(r / "result.json", lambda d: (
        d.update(seeds=[0, 0]), [v.update({k: v[k] * 2 for k in ("status", "final_cost", "best_cost")})
                                 for v in d["variants"].values()])), "'seeds' is [0, 0], a seed repeated", None),
    ("result.json nested deep", lambda r, f: (r / "result.json").write_text(_nested(100_000)), "nested deeper", None),
    ("result.json a FIFO", lambda r, f: _make_fifo(r / "result.json", f), "result.json: a named pipe (FIFO), "
     "expected a file written by trajopt", None),
    ("metrics.jsonl a FIFO", lambda r, f: _make_fifo(r / "metrics.jsonl", f), "metrics.jsonl: a named pipe", None),
    ("config.toml a FIFO", lambda r, f: _make_fifo(r / "config.toml", f), "config.toml: a named pipe", None),
    ("trajectory.npz a FIFO", lambda r, f: _make_fifo(r / "trajectory.npz", f), "trajectory.npz: a named pipe", None),
    ("config.toml a folder", lambda r, f: ((r / "config.toml").unlink(), (r / "config.toml").mkdir()),
     "config.toml: a folder, expected a file written by trajopt", None),
    ("result.json a link out", lambda r, f: _link(r / "result.json", f / "result.json"),
     "result.json: a symbolic link to", None),
    ("metrics.jsonl a link to /dev/zero", lambda r, f: _link(r / "metrics.jsonl", "/dev/zero"),
     "metrics.jsonl: a symbolic link to /dev/zero, outside the run folder", None),
    ("trajectory.npz a dangling link", lambda r, f: _link(r / "trajectory.npz", "gone.npz"),
     "trajectory.npz: a symbolic link to a file that does not exist", None),
]


@pytest.mark.parametrize("what, damage, error, note", READER_CASES, ids=[c[0] for c in READER_CASES])
def test_a_reader_names_what_is_wrong_or_reads_around_it(runs_made, tmp_path, what, damage, error, note):
    """Each finding of the reader trial, pinned: one RunFolderError naming the file and what is wrong (exit 2 in
    every verb), or the folder read with a note where the rest of it is usable. Before: tracebacks (a reshape
    error for a missing trajectory file, an OverflowError, an AttributeError on a list line), hangs (a FIFO), a
    link out of the folder followed, foreign or repeated metrics lines taken silently."""
    run = tmp_path / "run"
    shutil.copytree(runs_made["pivot"], run)
    damage(run, runs_made["foreign"])
    read, refused = _read_or_refuse(run)
    if error is not None:
        assert refused is not None and error in " ".join(str(refused).split()), (str(refused), read and read.notes)
        assert str(refused).startswith(str(run / "")), str(refused)
    else:
        assert refused is None, str(refused)
        assert any(note in n for n in read.notes), read.notes


def test_links_inside_the_folder_are_followed(runs_made, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs_made["pivot"], run)
    (run / "result.json").rename(run / "summary.json")
    os.symlink("summary.json", run / "result.json")
    read, refused = _read_or_refuse(run)
    assert refused is None and read.notes == () and read.variants == ["fobg", "zobg"]


def test_every_reading_verb_names_a_fifo_or_a_link_out_and_never_hangs(runs_made, tmp_path):
    """report, diagnose --at and solve --from: one line, exit 2, within the test's time (before: report and
    diagnose followed the link and reported another run; a FIFO config.toml was "not a run folder")."""
    fifo = tmp_path / "fifo"
    shutil.copytree(runs_made["pivot"], fifo)
    _make_fifo(fifo / "config.toml", None)
    linked = tmp_path / "linked"
    shutil.copytree(runs_made["pivot"], linked)
    _link(linked / "result.json", runs_made["foreign"] / "result.json")
    for run, words in ((fifo, "config.toml: a named pipe (FIFO)"), (linked, "result.json: a symbolic link to")):
        for args in (["report", run, "-o", tmp_path / "r.html"], ["diagnose", PIVOT, "--at", run, "--repeats", "2",
                                                                  "--out", tmp_path / "d"]):
            result = _invoke(*args)
            _clean(result, (2,))
            assert words in " ".join(result.stderr.split()) and result.stderr.count("error:") == 1, result.stderr
    result = _invoke("solve", "--from", fifo, "--out", tmp_path / "s")
    _clean(result, (2,))
    assert f"--from {fifo}: {fifo / 'config.toml'}: a named pipe (FIFO)" in " ".join(result.stderr.split())
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "d").exists() and not (tmp_path / "s").exists()


def test_report_reads_around_what_is_missing_and_says_so(runs_made, tmp_path):
    """A folder without trajectory.npz and with metrics lines missing is reported (it was a reshape traceback),
    each gap named on stderr and in the page; diagnose --at refuses a decision that is not finite."""
    run = tmp_path / "run"
    shutil.copytree(runs_made["pivot"], run)
    _rewrite_lines(run / "metrics.jsonl", lambda rows: rows[:-1])
    (run / "trajectory.npz").unlink()
    result = _invoke("report", run, "-o", tmp_path / "r.md")
    _clean(result, (0,))
    notes = " ".join(result.stderr.split())
    assert "note: " in notes and "1 of 8 lines missing" in notes and "trajectory.npz: missing" in notes, notes
    page = (tmp_path / "r.md").read_text()
    assert "Read with notes" in page and "1 of 8 lines missing" in page and "## Trajectories" not in page
    nan = tmp_path / "nan"
    shutil.copytree(runs_made["pivot"], nan)
    _rewrite_npz(nan / "trajectory.npz", **{"fobg/U": _F(1, 1, 1) * float("nan"), "zobg/U": _F(1, 1, 1) * float("nan")})
    _rewrite_json(nan / "result.json", lambda d: [v.update(final_cost=[None], best_cost=[None])
                                                  for v in d["variants"].values()])
    result = _invoke("diagnose", PIVOT, "--at", nan, "--repeats", "2", "--out", tmp_path / "d")
    _clean(result, (2,))
    assert "fobg/U of seed 0 (the median seed) holds non-finite values" in " ".join(result.stderr.split())
    assert _invoke("report", nan, "-o", tmp_path / "nan.html").exit_code == 0  # an all-NaN run is still reported


def test_values_no_figure_can_show_leave_that_figure_out_and_say_why(runs_made, tmp_path):
    """Costs near -1e308 (a blow-up's last finite values, or a tampered file) made matplotlib raise "arange: cannot
    compute length" and the whole report a traceback; now that figure is its caption, saying why."""
    run = tmp_path / "run"
    shutil.copytree(runs_made["pivot"], run)
    _rewrite_lines(run / "metrics.jsonl", lambda rows: [{**row, "cost": -1e308} for row in rows])
    result = _invoke("report", run, "-o", tmp_path / "r.md")
    _clean(result, (0,))
    page = (tmp_path / "r.md").read_text()
    assert "(not drawn: ValueError: " in page, page
    linked = re.findall(r"\]\((r_figures/[^)]+\.png)\)", page)
    assert linked and all((tmp_path / link).is_file() for link in linked)  # the figures that were drawn


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
@example(sets=["title=\\[[x]]"], as_json=False)  # rich's escape() lost its backslash (found by this test)
@example(sets=["title=a\\"], as_json=False)  # and doubled a trailing one
def test_odd_set_values_validate_cleanly(sets, as_json):
    args = ["validate", STIFF, *[a for s in sets for a in ("--set", s)]] + (["--json"] if as_json else [])
    result = _invoke(*args)
    _clean(result)
    if result.exit_code == 2:
        assert result.stderr.startswith("error: ") or result.stderr.startswith("Usage:"), result.stderr
    titles = [parse_value(item.partition("=")[2].strip()) for item in sets if item.partition("=")[0].strip() == "title"]
    if result.exit_code == 0 and not as_json and titles and "\n" not in str(titles[-1]):  # printed as written
        assert "".join(str(titles[-1]).split()) in "".join(result.stdout.split()), (titles[-1], result.stdout)


TITLES = ["[/x]", "[bold]x", "[red]t[/red]", "$x$ [/]", "<b>inj</b>", "\\[[x]]", "a\\", "\\[bold]x"]


@pytest.mark.parametrize("title", TITLES)
def test_validate_shows_a_title_as_written(title):
    result = _invoke("validate", PIVOT, "--set", f"title={json.dumps(title)}")
    _clean(result, (0,))
    assert title in result.stdout


def test_compare_shows_a_title_as_written(tmp_path):
    """The table's title holds the file's title, never read as markup (rich's escape() lost the backslash of
    "\\[[x]]" and doubled a trailing one)."""
    for i, title in enumerate(TITLES[-3:]):
        result = _invoke("compare", PIVOT, "--set", f"title={json.dumps(title)}", "--iterations", "2", "--seeds", "1",
                         "--variants", "zobg", "--out", tmp_path / str(i))
        _clean(result, (0,))
        assert f"{title}  (2 iterations, 1 seed)" in result.stdout, result.stdout


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


# every verb's every option that takes a value, from the app itself (a verb or an option added later is fuzzed too)
def _value_options() -> dict[str, list[str]]:
    import typer.main

    group = typer.main.get_command(app)
    return {name: [p.opts[0] for p in cmd.params if p.param_type_name == "option" and not p.is_flag]
            for name, cmd in group.commands.items()}


VALUE_OPTIONS = _value_options()
GUARD = ["--set", "system.no_such_key=1"]  # refused by every problem file: nothing runs, nothing is written
PATHS = st.sampled_from(["", ".", "..", "/", "/proc/x", "/dev/null", "a/b/c", "x.html", "x.md", "x.pdf", "-", "[bold]",
                         "<b>inj</b>.html", "\N{ROCKET}.md", "a b", "--force"])


def _verb_args(verb: str, run: Path) -> tuple[list, list]:
    """A valid invocation of ``verb`` but for the guard (its positional part, then the guard)."""
    if verb == "report":
        return [run], []
    if verb == "list":
        return ["problems"], []
    if verb == "study":
        return [ROOT / "examples" / "studies" / "no_such_study.toml"], []  # refused after its flags are read
    if verb == "validate":
        return [PIVOT], []
    extra = {"solve": ["--oracle", "fobg"], "sweep": ["--over", "system.max_angle=0.5,0.6"],
             "landscape": ["--range", "-1:1:3"]}.get(verb, [])
    return [PIVOT, *extra], GUARD


def _flag_property(runs_made, verb, flag, value):
    """``verb`` with ``flag`` set to ``value`` (in an empty working folder): exit 0 or 2, one clean message (or
    Typer's usage error), never a traceback; behind the guard nothing is written at all."""
    head, guard = _verb_args(verb, runs_made["pivot"])
    if verb == "list":
        head = [value]
    with tempfile.TemporaryDirectory() as cwd:
        here = os.getcwd()
        os.chdir(cwd)  # a relative --out or -o lands here, never in the repository
        try:
            args = [verb, *head, *([flag, value] if flag else []), *guard]
            result = _invoke(*args)
        finally:
            os.chdir(here)
        _clean(result, (0, 2))
        if result.exit_code == 2:
            assert result.stderr.startswith(("error: ", "Usage: ")), result.stderr
            assert result.stderr.count("error: ") <= 1, result.stderr
        if guard:
            assert result.exit_code == 2 and os.listdir(cwd) == [], (args, os.listdir(cwd))


VERB_FLAGS = st.sampled_from(sorted(VALUE_OPTIONS)).flatmap(
    lambda verb: st.tuples(st.just(verb), st.sampled_from(VALUE_OPTIONS[verb] or [None])))
ANY_FLAG_VALUE = st.one_of(FLAG_VALUES, PATHS, st.text(max_size=10))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])
@given(verb_flag=VERB_FLAGS, value=ANY_FLAG_VALUE)
def test_every_verbs_flags_take_any_value_cleanly(runs_made, verb_flag, value):
    _flag_property(runs_made, *verb_flag, value)


@pytest.mark.slow  # the same search, 8 times as many examples
@settings(max_examples=8 * EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                           HealthCheck.function_scoped_fixture])
@given(verb_flag=VERB_FLAGS, value=ANY_FLAG_VALUE)
def test_every_verbs_flags_take_any_value_cleanly_at_length(runs_made, verb_flag, value):
    _flag_property(runs_made, *verb_flag, value)


def test_the_flag_search_reaches_every_verb():
    assert {"solve", "compare", "diagnose", "gradcheck", "sweep", "landscape", "report", "validate"} <= set(VALUE_OPTIONS)
    assert "--output" in VALUE_OPTIONS["report"] and "--range" in VALUE_OPTIONS["landscape"]
