"""Writers (issue #30): a folder a verb writes is complete or absent whatever happens while it is written.

Any OSError while --out is written (a file-size limit, a read-only folder, an I/O error, a full disk) is one exit-2
line naming the file, with nothing half-written left; a killed writer's temporaries are removed by the next
--force and never read; a second Ctrl-C while the folder is written finishes it, marked interrupted (a third
abandons it: nothing stays); text outside the basic multilingual plane is stored as written. Each test is the
regression test of one finding; the end-to-end runs use the one-step pivot (cheap to compile).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from trajopt import plots, report, runs, runs_files
from trajopt.cli import app
from trajopt.cli._outputs import claim_out, is_leftover

ROOT = Path(__file__).resolve().parent.parent
PIVOT = ROOT / "problems" / "pivot.toml"
runner = CliRunner()

# each verb that writes a folder, on the pivot, small; and the file it writes last (its status marker)
VERBS = {
    "compare": (["compare", PIVOT, "--oracles", "fobg,zobg", "--iterations", "2", "--seeds", "1"], "result.json"),
    "solve": (["solve", PIVOT, "--oracle", "fobg", "--iterations", "2", "--seeds", "1"], "result.json"),
    "diagnose": (["diagnose", PIVOT, "--repeats", "2", "--samples", "4"], "diagnose.json"),
    "sweep": (["sweep", PIVOT, "--oracles", "fobg,zobg", "--samples", "4", "--repeats", "2",
               "--over", "system.max_angle=0.5,0.7"], "sweep.json"),
    "landscape": (["landscape", PIVOT, "--range", "-1:1:3", "--repeats", "2", "--oracles", "fobg,zobg"],
                  "landscape.json"),
}
SLOW_VERBS = ("sweep", "solve", "diagnose")  # the slowest, or the same path as compare's: CI's slow job runs them


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _message(result) -> str:
    return " ".join(result.stderr.split())


def _verb_params(verbs):
    return [pytest.param(v, marks=pytest.mark.slow) if v in SLOW_VERBS else v for v in verbs]


@pytest.fixture(scope="module")
def pivot_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("writers") / "run"
    result = invoke(*VERBS["compare"][0], "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out


# ---------------------------------------------------------------------------------------- any OSError


@pytest.mark.parametrize("code", [errno.EFBIG, errno.EROFS, errno.EACCES, errno.EIO, errno.ENOSPC])
def test_claim_out_turns_any_os_error_into_one_line_and_keeps_nothing(tmp_path, capsys, code):
    """Before: only ENOSPC and EDQUOT were caught (in solve and compare only); EFBIG, EROFS, EACCES or EIO ended in
    a traceback, with the files written so far left in the folder."""
    folder = tmp_path / "out"
    with pytest.raises(typer.Exit) as exit_:
        with claim_out(folder, force=False):
            runs.atomic_write_bytes(folder / "config.toml", b"x = 1\n")
            with runs.atomic_file(folder / "metrics.jsonl") as f:
                f.write(b"{}\n")
                raise OSError(code, os.strerror(code))  # as a failed write() raises it: no file name
    assert exit_.value.exit_code == 2
    message = " ".join(capsys.readouterr().err.split())
    assert message.startswith(f"error: --out {folder}: writing failed, {folder / 'metrics.jsonl'}: "
                              f"{os.strerror(code)}; nothing was kept"), message
    assert message.count("error:") == 1 and not folder.exists()  # created by the claim: gone with its files


def test_a_finished_command_in_this_process_leaves_the_next_claim_unsettled(tmp_path, capsys):
    """A verb run in-process (CliRunner, a notebook) settles its outputs inside `_signals.hold`; the next claim in the
    same process must not inherit that: its failed write is still one exit-2 line with nothing kept (the settled
    flag leaked out of the block and the OSError escaped as a traceback, when another file's CLI test ran first)."""
    from trajopt import _signals

    with _signals.hold():
        _signals.settle()
    assert not _signals.settled()
    folder = tmp_path / "out"
    with pytest.raises(typer.Exit) as exit_:
        with claim_out(folder, force=False):
            runs.atomic_write_bytes(folder / "config.toml", b"x = 1\n")
            raise OSError(errno.EIO, os.strerror(errno.EIO))
    assert exit_.value.exit_code == 2 and not folder.exists()


def test_a_folder_emptied_by_force_is_left_empty_when_writing_fails(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "result.json").write_text("{}")  # an older run: --force empties it first
    with pytest.raises(typer.Exit):
        with claim_out(folder, force=True):
            runs.atomic_write_bytes(folder / "config.toml", b"x = 1\n")
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(folder / "trajectory.npz"))
    assert folder.is_dir() and list(folder.iterdir()) == []  # not ours to remove; nothing half-written in it


def _failing_write(monkeypatch, name: str, code: int = errno.EFBIG):
    """`runs_files.atomic_file` fails with ``code`` part-way through writing the file called ``name`` (as a write() that
    hits a file-size limit, a read-only remount or a disk error does); every other file is written."""
    real = runs_files.atomic_file

    @contextmanager
    def atomic_file(path):
        with real(path) as f:
            if Path(path).name == name:
                f.write(b"partial")
                raise OSError(code, os.strerror(code))
            yield f

    monkeypatch.setattr(runs_files, "atomic_file", atomic_file)  # its owner: what every writer calls


@pytest.mark.parametrize("verb, last", [
    pytest.param(v, "convergence.png" if v == "compare" else m, marks=[pytest.mark.slow] if v in SLOW_VERBS else [])
    for v, (_, m) in VERBS.items()])
def test_a_failed_write_of_any_verb_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch, verb, last):
    """compare fails at its figure, written after result.json (a folder that said "ok" without its figure); the
    others at the file they write last. The files written before are removed: nothing claims to be complete."""
    _failing_write(monkeypatch, last, errno.EROFS if verb in ("diagnose", "landscape") else errno.EFBIG)
    out = tmp_path / "out"
    result = invoke(*VERBS[verb][0], "--out", out, "--quiet")
    message = _message(result)
    assert result.exit_code == 2, result.output
    assert message.startswith(f"error: --out {out}: writing failed, {out / last}: ") and "nothing was kept" in message
    assert "Traceback" not in result.output and not out.exists()


def test_a_failed_report_write_leaves_neither_the_report_nor_its_figures(pivot_run, tmp_path, monkeypatch):
    _failing_write(monkeypatch, "r.md", errno.EIO)
    out = tmp_path / "notes" / "r.md"
    result = invoke("report", pivot_run, "-o", out)
    assert result.exit_code == 2, result.output
    assert _message(result).startswith(f"error: --output {out}: writing failed, {out}: {os.strerror(errno.EIO)}; "
                                       "nothing was written")
    assert list(out.parent.iterdir()) == []  # the figures written before the page are removed, their folder too


@pytest.mark.slow  # a fresh interpreter: several seconds
def test_a_file_size_limit_is_one_line_and_leaves_nothing(tmp_path):
    """The real thing: RLIMIT_FSIZE (ulimit -f) in the child, so that a write() fails with EFBIG (Python ignores
    SIGXFSZ). Before: a traceback, exit 1, config.toml left alone in the folder."""
    out = tmp_path / "run"
    cmd = ["bash", "-c", 'ulimit -f 4 && exec "$@"', "limited",  # 4 blocks of 1 KiB: metrics.jsonl is larger
           sys.executable, "-c", "from trajopt._entry import main; main()", *map(str, VERBS["compare"][0]),
           "--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRAJOPT_CACHE": "0"}  # the limit must not truncate the shared cache
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("error:") == 1, done.stderr
    assert f"--out {out}: writing failed, " in done.stderr and os.strerror(errno.EFBIG) in done.stderr
    assert "ulimit -f" in done.stderr and not out.exists()


# ----------------------------------------------------------------------------------- temporary leftovers


def test_force_removes_a_killed_writers_temporaries_and_nothing_else(tmp_path):
    """A run killed while writing its first file leaves only a temporary (.config.toml.RANDOM.tmp) or a streamed
    history's folder: the next --force claims and empties it (before: "holds other files", refused). A user's
    folder stays refused, even with an editor's look-alike temporary in it."""
    left = tmp_path / "killed"
    left.mkdir()
    (left / ".config.toml.k3x_9abc.tmp").write_bytes(b"half")
    with pytest.raises(typer.Exit):  # not empty: --force needed
        with claim_out(left, force=False):
            pass
    with claim_out(left, force=True):
        assert list(left.iterdir()) == []
    history = tmp_path / "streamed"
    (history / ".history-x1").mkdir(parents=True)
    with claim_out(history, force=True):
        assert list(history.iterdir()) == []
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep")
    (mine / ".thesis.tex.k3x_9abc.tmp").write_text("an editor's")
    os.symlink(tmp_path / "streamed", mine / ".history-link")  # a link is never taken for ours
    with pytest.raises(typer.Exit):
        with claim_out(mine, force=True):
            pass
    assert sorted(p.name for p in mine.iterdir()) == [".history-link", ".thesis.tex.k3x_9abc.tmp", "thesis.tex"]
    assert [is_leftover(p) for p in (mine / ".history-link", mine / "thesis.tex")] == [False, False]


def test_temporaries_in_a_run_folder_are_never_read(pivot_run, tmp_path):
    clean = runs.read_run(pivot_run)
    run = tmp_path / "run"
    shutil.copytree(pivot_run, run)
    (run / ".result.json.abcd1234.tmp").write_text('{"status": "ok", "variants": {"x": {}}}')
    (run / ".metrics.jsonl.abcd1234.tmp").write_text("garbage\n")
    (run / ".history-zz").mkdir()
    (run / ".history-zz" / "0001.npy").write_bytes(b"\x93NUMPY")
    read = runs.read_run(run)
    assert read.result == clean.result and read.variants == clean.variants and read.notes == ()
    for name in clean.variants:
        assert (read.results[name].cost == clean.results[name].cost).all()
    assert runs.is_temporary(".result.json.abcd1234.tmp") and runs.is_temporary(".history-zz")
    assert not runs.is_temporary("result.json")


# ------------------------------------------------------------------------------ Ctrl-C while writing


def _signal_inside(monkeypatch, module, name, signals):
    """Deliver ``signals`` to this process at the start of ``module.name`` (the handler runs right after each)."""
    real = getattr(module, name)

    def hooked(*args, **kwargs):
        for sig in signals:
            os.kill(os.getpid(), sig)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, hooked)


def _complete_interrupted(out: Path, marker: str) -> dict:
    names = {p.name for p in out.iterdir()}
    assert not [n for n in names if n.startswith(".")], names  # no temporary left
    summary = json.loads((out / marker).read_text())
    assert summary["status"] == "interrupted", summary["status"]
    return summary


def test_a_second_ctrl_c_while_the_folder_is_written_keeps_the_run(tmp_path, monkeypatch):
    """Two SIGINTs after the loops finished (as the summary is made, before the first byte of the folder). Before:
    the second raised KeyboardInterrupt and the computed results were lost (exit 1, no folder)."""
    _signal_inside(monkeypatch, runs, "summarise", [signal.SIGINT, signal.SIGINT])
    out = tmp_path / "run"
    result = invoke(*VERBS["compare"][0], "--out", out, "--quiet")
    assert result.exit_code == 130, result.output
    summary = _complete_interrupted(out, "result.json")
    assert summary["interrupted_while_writing"] is True and not summary["variants_not_run"]
    assert {v["status"][0] for v in summary["variants"].values()} == {"ok"}  # every loop had finished
    assert {"config.toml", "metrics.jsonl", "trajectory.npz", "convergence.png"} <= {p.name for p in out.iterdir()}
    assert runs.read_run(out).notes == ()  # the folder reads back whole
    assert "the results are being written" in result.stderr


def test_a_third_ctrl_c_while_writing_abandons_the_folder_entirely(tmp_path, monkeypatch):
    _signal_inside(monkeypatch, plots, "save_figure", [signal.SIGINT] * 3)  # after result.json was written
    out = tmp_path / "run"
    result = invoke(*VERBS["compare"][0], "--out", out, "--quiet")
    assert result.exit_code == 130 and not out.exists()  # abandoned (Typer's exit for KeyboardInterrupt): nothing
    # half-written stays, though result.json was already written


@pytest.mark.parametrize("verb", _verb_params(["diagnose", "sweep", "landscape"]))
def test_two_ctrl_c_while_any_verb_writes_finish_the_folder_marked_interrupted(tmp_path, monkeypatch, verb):
    """The same at each verb's writing moment (its figure): exit 130, the folder complete and marked."""
    _signal_inside(monkeypatch, plots, "save_figure", [signal.SIGINT, signal.SIGINT])
    out = tmp_path / "out"
    args, marker = VERBS[verb]
    result = invoke(*args, "--out", out, "--quiet")
    assert result.exit_code == 130, result.output
    _complete_interrupted(out, marker)
    assert f"{verb}.png" in {p.name for p in out.iterdir()}


@pytest.mark.parametrize("moment", [pytest.param("reading", marks=pytest.mark.slow), "writing"])
def test_a_report_interrupted_is_not_written(pivot_run, tmp_path, monkeypatch, moment):
    """report: a signal before its file is written writes nothing; two while it is written remove it; either way
    exit 130, so that a report that exists is complete (before: no signal handling, KeyboardInterrupt, exit 1)."""
    where = (runs, "read_run") if moment == "reading" else (report, "markdown_report")
    _signal_inside(monkeypatch, *where, [signal.SIGINT] * (1 if moment == "reading" else 2))
    out = tmp_path / "r" / "r.md"
    result = invoke("report", pivot_run, "-o", out, "--quiet")
    assert result.exit_code == 130, result.output
    assert list(out.parent.iterdir()) == []


# ---------------------------------------------------------------------------------------- text as written


ROCKET, DOUBLE_A = "\N{ROCKET}", "\N{MATHEMATICAL DOUBLE-STRUCK CAPITAL A}"  # outside the basic multilingual plane


def test_text_outside_the_basic_plane_is_stored_as_written(tmp_path):
    """A title and a variant name with "🚀" and "𝔸": result.json and metrics.jsonl held "\\ud83d\\ude80" (JSON's
    ASCII escapes), and naming such a variant with --variants was refused as "unknown variant '[\\"fo\\\\ud83d..."
    (the escaped pair is no TOML string, so the whole list came back as one name). A lone surrogate (an
    undecodable byte of an argument) has no UTF-8 form: JSON keeps its escape, config.toml shows U+FFFD."""
    problem = tmp_path / "p.toml"
    problem.write_text(PIVOT.read_text(encoding="utf-8") + f'\n[variants."fo{ROCKET}"]\noracle = "fobg"\n',
                       encoding="utf-8")
    out = tmp_path / "run"
    title = f"{ROCKET} {DOUBLE_A} \udcff"
    result = invoke("compare", problem, "--variants", f"fo{ROCKET},zobg", "--iterations", "2", "--seeds", "1",
                    "--set", f"title={json.dumps(title, ensure_ascii=False)}", "--out", out, "--quiet", "--report")
    assert result.exit_code == 0, result.output
    for name in ("result.json", "metrics.jsonl", "config.toml", "report.html"):
        data = (out / name).read_bytes()
        assert f"fo{ROCKET}".encode() in data and b"\\ud83d" not in data.lower(), name
    summary = json.loads((out / "result.json").read_text(encoding="utf-8"))
    assert list(summary["variants"]) == [f"fo{ROCKET}", "zobg"]
    assert summary["title"] == f"{ROCKET} {DOUBLE_A} \ufffd"  # shown (figures, table): U+FFFD (matplotlib raised)
    assert b"\\udcff" in (out / "result.json").read_bytes()  # recorded (--set): escaped, read back exactly
    assert summary["overrides"] == [f"title={json.dumps(title, ensure_ascii=False)}"]
    assert f"{ROCKET} {DOUBLE_A} \ufffd" in (out / "config.toml").read_text(encoding="utf-8")
    assert runs.read_run(out).variants == [f"fo{ROCKET}", "zobg"]
    unknown = invoke("compare", problem, "--variants", f"{DOUBLE_A}x,zobg", "--out", tmp_path / "u")
    assert unknown.exit_code == 2 and f"unknown variant '{DOUBLE_A}x'" in _message(unknown), _message(unknown)
    assert not (tmp_path / "u").exists()
