"""Reliability II, the remaining findings: no command-line option silently ignored, every verb's --out claimed
before any work, reports ordered and headed by what differs between their runs, and signals at random
moments of a run's life. Each test is the regression test of one finding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trajopt import spec
from trajopt.cli import app

ROOT = Path(__file__).resolve().parent.parent
STIFF = ROOT / "problems" / "pushing_stiff.toml"
PIVOT = ROOT / "problems" / "pivot.toml"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _message(result) -> str:
    return " ".join(result.stderr.split())


# ------------------------------------------------------------------- no option silently ignored


@pytest.mark.parametrize("sets, key, words", [
    (["oracle.gamma=5"], "--set oracle.gamma", "applies to aobg, aobg_adam, tuned_aobg (not selected); selected: fobg, zobg"),
    (["oracle.aobg.gamma=5"], "--set oracle.aobg.gamma", "applies to aobg, aobg_adam, tuned_aobg (not selected); selected: fobg, zobg"),
    (["method.cem.samples=4"], "--set method.cem.samples", "applies to cem (not selected)"),
    (['variants.x.oracle="aobg"'], "--set variants.x.oracle", "applies to x (not selected)"),
    (["oracle.aobg={gamma=5.0}"], "--set oracle.aobg", "applies to aobg"),
])
def test_compare_refuses_an_override_no_selected_variant_takes(tmp_path, sets, key, words):
    out = tmp_path / "out"
    args = [a for s in sets for a in ("--set", s)]
    result = invoke("compare", STIFF, "--oracles", "fobg,zobg", *args, "--iterations", "2", "--seeds", "1",
                    "--out", out)
    message = _message(result)
    assert result.exit_code == 2, result.output
    assert f"{STIFF}: {key}: " in message and words in message, message
    assert "Traceback" not in result.output and not out.exists()


def test_an_override_that_reaches_a_selected_variant_is_accepted():
    # oracle.aobg.* reaches the tuned_aobg variant (an AoBG), oracle.samples every sampling oracle, a variant's own
    # keys reach it when it is selected, and the file's optimiser reaches bare oracle names
    s = spec.load(STIFF, ['solve.variants=["tuned_aobg", "fobg"]'])
    for item in ("oracle.aobg.gamma=5", "oracle.samples=4", "variants.tuned_aobg.sigma_final=0.01",
                 "solve.optimizer.step=0.01", "system.stiffness=10", "solve.iterations=3"):
        assert spec.unreached_override(s, item, "variants") is None, item
    # the file's [oracle.aobg] gamma wins over a shared oracle.gamma: that override would be a silent no-op
    assert "oracle.aobg.gamma sets it in the file" in spec.unreached_override(s, "oracle.gamma=5", "variants")
    s = spec.load(STIFF, ['solve.variants=["cem"]'])
    assert "selected: cem" in spec.unreached_override(s, "solve.optimizer.step=0.1", "variants")
    assert spec.unreached_override(s, "method.cem.samples=8", "variants") is None
    # diagnose and sweep study solve.oracles; gradcheck runs no oracle
    s = spec.load(STIFF, ['solve.oracles=["aobg", "ivw"]'])
    assert spec.unreached_override(s, "oracle.ivw.samples=4", "oracles") is None
    assert "not selected" in spec.unreached_override(s, "oracle.fobg.samples=4", "oracles")
    assert "runs no optimiser" in spec.unreached_override(s, "solve.optimizer.step=0.1", "oracles", "diagnose")
    assert "gradcheck runs no oracle" in spec.unreached_override(s, "oracle.samples=4", "none", "gradcheck")


def test_an_override_shadowed_by_every_selected_variants_own_key_is_refused():
    # [variants.big] sets samples itself, which wins over [oracle.aobg] and over --set oracle.aobg.samples
    text = STIFF.read_text() + '\n[variants.big]\noracle = "aobg"\nsamples = 20\n'
    s = spec.loads(text, source="p.toml", overrides=['solve.variants=["big"]'])
    for item in ("oracle.aobg.samples=4", "oracle.samples=4"):
        why = spec.unreached_override(s, item, "variants")
        assert why is not None and "variants.big.samples sets it in the file" in why, (item, why)
    assert spec.unreached_override(s, "oracle.aobg.gamma=5", "variants") is None  # not shadowed: big takes it
    assert spec.unreached_override(s, "variants.big.samples=4", "variants") is None
    s = spec.loads(text, source="p.toml", overrides=['solve.variants=["big", "aobg"]'])
    assert spec.unreached_override(s, "oracle.aobg.samples=4", "variants") is None  # the bare aobg takes it


def test_the_files_own_shared_defaults_stay_lenient():
    """A shared [oracle] key that only unselected oracles take, and an unused [oracle.NAME] table, are the file's
    defaults: validated and kept, not refused (only command-line overrides must reach something)."""
    text = STIFF.read_text().replace("[oracle]\n", "[oracle]\ngamma = 5.0\n")
    s = spec.loads(text, source="p.toml", overrides=['solve.oracles=["fobg", "zobg"]'])
    assert list(s.variants) == ["fobg", "zobg"]


@pytest.mark.parametrize("verb, args, key, words", [
    ("diagnose", ["--set", "oracle.fobg.sigma=0.3", "--repeats", "2"], "--set oracle.fobg.sigma",
     "(not selected); selected: aobg, ivw, ddcg, stepwise"),
    ("diagnose", ["--set", "solve.optimizer.step=0.1", "--repeats", "2"], "--set solve.optimizer.step",
     "diagnose runs no optimiser"),
    ("sweep", ["--oracles", "fobg,zobg", "--over", "oracle.aobg.gamma=1,2", "--repeats", "2"],
     "--over oracle.aobg.gamma", "selected: fobg, zobg"),
    ("sweep", ["--oracles", "exact", "--samples", "4", "--over", "system.stiffness=10,100", "--repeats", "2"],
     "--samples (oracle.samples)", "selected: exact"),
    ("gradcheck", ["--set", "oracle.samples=4"], "--set oracle.samples", "gradcheck runs no oracle"),
    ("validate", ["--set", "oracle.ivw.samples=4"], "--set oracle.ivw.samples", "selected: fobg, zobg, aobg"),
])
def test_other_verbs_refuse_overrides_that_reach_nothing(tmp_path, verb, args, key, words):
    out = ["--out", tmp_path / "out"] if verb in ("diagnose", "sweep") else []
    result = invoke(verb, STIFF, *args, *out)
    message = _message(result)
    assert result.exit_code == 2, result.output
    assert f"{key}: " in message and words in message, message
    assert not (tmp_path / "out").exists()


def test_landscape_refuses_samples_no_studied_oracle_takes(tmp_path):
    result = invoke("landscape", PIVOT, "--range", "-1:1:3", "--oracles", "exact", "--samples", "4",
                    "--out", tmp_path / "l")
    assert result.exit_code == 2 and "--samples (oracle.samples)" in _message(result)
    assert not (tmp_path / "l").exists()


# ------------------------------------------------------------- --out of diagnose, sweep and landscape claimed

SMALL_STIFF = ["--set", "task.horizon=8", "--repeats", "2"]
OUT_VERBS = {
    "diagnose": ["diagnose", STIFF, *SMALL_STIFF],
    "sweep": ["sweep", STIFF, *SMALL_STIFF, "--oracles", "fobg,zobg", "--over", "system.stiffness=10,100"],
    "landscape": ["landscape", PIVOT, "--range", "-1:1:3", "--repeats", "2", "--oracles", "fobg,zobg"],
}
MARKER = {"diagnose": "diagnose.json", "sweep": "sweep.json", "landscape": "landscape.json"}


@pytest.mark.parametrize("verb", list(OUT_VERBS))
def test_a_folder_claimed_by_another_run_is_refused(tmp_path, verb):
    """Two runs into one folder: while the first holds its claim (the flock on the folder), the second exits 2
    before any work and writes nothing."""
    from trajopt.cli._outputs import claim_out

    folder = tmp_path / "shared"
    with claim_out(folder, force=False):
        result = invoke(*OUT_VERBS[verb], "--out", folder, "--force")
        assert result.exit_code == 2, result.output
        assert f"--out {folder}: in use by another trajopt run" in _message(result)
        assert list(folder.iterdir()) == []


# sweep's is the slowest (several seconds): CI's slow job runs it
@pytest.mark.parametrize("verb", [pytest.param(v, marks=pytest.mark.slow) if v == "sweep" else v for v in OUT_VERBS])
def test_force_empties_an_older_run_folder_first(tmp_path, verb):
    folder = tmp_path / "old"
    folder.mkdir()
    for name in ("result.json", "report.html", ".metrics.jsonl.x1.tmp"):
        (folder / name).write_text("stale")
    result = invoke(*OUT_VERBS[verb], "--out", folder)
    assert result.exit_code == 2 and "--force" in _message(result)  # not empty: refused without --force
    assert (folder / "report.html").read_text() == "stale"
    result = invoke(*OUT_VERBS[verb], "--out", folder, "--force", "--quiet")
    assert result.exit_code == 0, result.output
    names = {p.name for p in folder.iterdir()}
    assert MARKER[verb] in names and not names & {"report.html", "result.json", ".metrics.jsonl.x1.tmp"}, names
    # the folder this verb wrote is itself a run folder that --force may empty again (diagnose: no config.toml)
    result = invoke(*OUT_VERBS[verb], "--out", folder, "--force", "--quiet")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("verb", list(OUT_VERBS))
def test_an_unusable_out_fails_before_any_work(tmp_path, verb):
    (tmp_path / "file").write_text("x")
    for bad, words in ((tmp_path / "file", "exists and is not a folder"), (Path("/proc/trajopt-x"), "cannot create")):
        result = invoke(*OUT_VERBS[verb], "--out", bad)
        assert result.exit_code == 2 and words in _message(result), result.output
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep")
    result = invoke(*OUT_VERBS[verb], "--out", mine, "--force")
    assert result.exit_code == 2 and "only a trajopt run folder" in _message(result)
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]


# ------------------------------------------------------------------ reports ordered and headed by what differs


@pytest.fixture(scope="module")
def stiffness_runs(tmp_path_factory):
    """Two runs of one file under --set system.stiffness, in folders whose alphabetical order is the wrong order."""
    root = tmp_path_factory.mktemp("by_stiffness")
    folders = {}
    for name, k in (("a_stiff", 1000), ("b_soft", 10)):
        out = root / name
        result = invoke("compare", STIFF, "--iterations", "5", "--seeds", "1", "--oracles", "fobg",
                        "--set", "task.horizon=20", "--set", f"system.stiffness={k}", "--out", out, "--quiet")
        assert result.exit_code == 0, result.output
        folders[k] = out
    return folders


@pytest.mark.parametrize("suffix", [pytest.param(".html", marks=pytest.mark.slow), ".md"])  # the same ordering rule
def test_report_orders_and_heads_runs_by_what_differs(stiffness_runs, tmp_path, suffix):
    import re

    out = tmp_path / f"r{suffix}"
    result = invoke("report", stiffness_runs[1000], stiffness_runs[10], "-o", out, "--quiet")
    assert result.exit_code == 0, result.output
    text = out.read_text()
    pattern = r"<h1>([^<]*)</h1>" if suffix == ".html" else r"^# (.*)$"
    headings = [h for h in re.findall(pattern, text, flags=re.M) if "system.stiffness =" in h]
    assert headings == ["pushing_stiff: system.stiffness = 10", "pushing_stiff: system.stiffness = 1000"], headings
    if suffix == ".html":
        assert "<h1>pushing_stiff: 2 runs across system.stiffness</h1>" in text
        # the sections follow the headings: k = 10's folder is shown first
        assert text.index(str(stiffness_runs[10])) < text.index(str(stiffness_runs[1000]))


def test_order_runs_is_numeric_and_groups_problems(stiffness_runs):
    from trajopt import report, runs

    base = runs.read_run(stiffness_runs[10])

    def forged(**system):
        config = {**base.config, "system": {**base.config["system"], **system}}
        return runs.Run(path=base.path, result=base.result, config=config, variants=base.variants,
                        series=base.series, results=base.results)

    ks = [forged(stiffness=k) for k in (100.0, 9.0, 1e4, 20.0)]
    ordered = report.order_runs(ks)
    assert [dict(d)["system.stiffness"] for _, d in ordered] == [9.0, 20.0, 100.0, 1e4]  # not 100 < 20 < 9 as text
    other = runs.Run(path=base.path, result=base.result, config={**base.config, "name": "other"}, variants=base.variants,
                     series=base.series, results=base.results)
    ordered = report.order_runs([other, *ks[:2]])
    assert ordered[0] == (other, []) and report.run_heading(other, []) == report._run_title(other)
    assert report.differing_keys([ks[0], ks[0]]) == []


def _forged(base, *, name=None, path=None, **sections):
    """A copy of ``base`` (a Run) whose config.toml differs: ``sections`` merged into its tables."""
    from trajopt import runs

    config = {**base.config, **({"name": name} if name else {})}
    for section, values in sections.items():
        config[section] = {**base.config.get(section, {}), **values}
    return runs.Run(path=path or base.path, result=base.result, config=config, variants=base.variants,
                    series=base.series, results=base.results)


def test_runs_differing_in_several_keys_are_ordered_by_each_in_turn_and_headed_with_all(stiffness_runs):
    from trajopt import report, runs

    base = runs.read_run(stiffness_runs[10])
    made = [_forged(base, system={"stiffness": k}, solve={**base.config["solve"], "iterations": n}, path=Path(f"/r{i}"))
            for i, (k, n) in enumerate([(100.0, 5), (10.0, 50), (100.0, 3), (10.0, 5)])]
    ordered = report.order_runs(made)
    assert [dict(d) for _, d in ordered] == [
        {"system.stiffness": 10.0, "solve.iterations": 5}, {"system.stiffness": 10.0, "solve.iterations": 50},
        {"system.stiffness": 100.0, "solve.iterations": 3}, {"system.stiffness": 100.0, "solve.iterations": 5}]
    assert report.run_heading(*ordered[0]) == "pushing_stiff: system.stiffness = 10, solve.iterations = 5"
    assert report._report_title(ordered) == "pushing_stiff: 4 runs across system.stiffness, solve.iterations"


def test_runs_differing_in_their_variants_or_of_several_problems_say_so(stiffness_runs):
    from trajopt import report, runs

    base = runs.read_run(stiffness_runs[10])
    a = _forged(base, solve={**base.config["solve"], "variants": ["fobg"]}, path=Path("/a"))
    b = _forged(base, solve={**base.config["solve"], "variants": ["fobg", "zobg"]}, path=Path("/b"))
    other = _forged(base, name="pivot", path=Path("/c"))
    ordered = report.order_runs([b, other, a])
    assert [run.path for run, _ in ordered] == [Path("/b"), Path("/a"), Path("/c")]  # problems in the order given
    assert report.run_heading(*ordered[0]) == "pushing_stiff: solve.variants = [fobg, zobg]"
    assert ordered[2][1] == [] and report.run_heading(*ordered[2]) == report._run_title(other)
    assert report._report_title(ordered) == "trajopt report: 3 runs of 2 problems (pushing_stiff, pivot)"


def test_runs_of_one_configuration_are_told_apart_by_their_folders(stiffness_runs):
    """The same command twice: no key differs, so the headings (and figure titles) were the same text twice."""
    from trajopt import report, runs

    base = runs.read_run(stiffness_runs[10])
    twice = [_forged(base, path=Path("/x/second")), _forged(base, path=Path("/x/first"))]
    ordered = report.order_runs(twice)
    assert [report.run_heading(*pair) for pair in ordered] == ["pushing_stiff: run folder = first",
                                                              "pushing_stiff: run folder = second"]
    assert report._report_title(ordered) == "pushing_stiff: 2 runs of one configuration"
    same_name = [_forged(base, path=Path("/a/run")), _forged(base, path=Path("/b/run"))]
    assert [dict(d)["run folder"] for _, d in report.order_runs(same_name)] == ["/a/run", "/b/run"]


def test_each_runs_figures_are_titled_with_what_differs(stiffness_runs, monkeypatch):
    """A figure is often looked at alone (the Markdown report's figures are files): among runs that differ, each
    figure's title is the run's heading, not the file's title (which was the same for every run)."""
    from trajopt import plots, report, runs

    titles = []
    for name in ("convergence_figure", "trajectory_figure"):
        monkeypatch.setattr(plots, name, lambda *a, title="", **k: titles.append(title) or object())
    monkeypatch.setattr(plots, "variance_figure", lambda *a, **k: None)
    monkeypatch.setattr(plots, "figure_bytes", lambda fig, *a, **k: b"")
    base = runs.read_run(stiffness_runs[10])
    made = [_forged(base, system={"stiffness": k}, path=Path(f"/k{k}")) for k in (1000.0, 10.0)]
    report.report_figures(made)
    assert sorted(set(titles)) == ["pushing_stiff: system.stiffness = 10", "pushing_stiff: system.stiffness = 1000"]
    assert titles.count(titles[0]) == len(titles) / 2 >= 2  # every figure of each run (convergence axes, trajectories)
    titles.clear()
    report.report_figures(made[:1])  # a lone run keeps its own title
    assert set(titles) == {report._title(made[0])}


# ------------------------------------------------------------------------------ signals at random moments


def _entry_command(out: Path, *extra) -> list[str]:
    """The console script's entry point (signals held from its first line), in a fresh interpreter."""
    import sys

    return [sys.executable, "-c", "from trajopt._entry import main; main()", "compare", str(STIFF),
            "--iterations", "40", "--seeds", "1", "--out", str(out), *extra]


def _check_signalled_run(out: Path, rc: int, sig: int, delay: float, sent_at, stderr: str) -> str:
    """The outcome of a run sent ``sig`` after ``delay`` seconds (``sent_at``: the wall-clock time it was sent, or
    None when the run had already exited): one of the allowed outcomes, named; anything else fails."""
    import tomllib

    from trajopt import runs

    files = sorted(out.iterdir()) if out.exists() else []
    names = [p.name for p in files]
    assert not [n for n in names if n.endswith(".tmp")], (names, stderr)

    def complete(status: str) -> dict:
        summary = json.loads((out / "result.json").read_text())
        assert summary["status"] == status, (summary["status"], rc, stderr)
        assert tomllib.loads((out / "config.toml").read_text())["system"]["name"] == "pushing"
        assert {"metrics.jsonl", "trajectory.npz", "convergence.png"} <= set(names), names
        runs.read_run(out)  # every file reads back
        return summary

    def before_signal() -> bool:  # every byte of the folder was written before the signal was sent
        return sent_at is None or max(p.stat().st_mtime for p in files) <= sent_at

    if rc == 130:
        if not files:
            return "interrupted before the folder was claimed"
        summary = complete("interrupted")
        assert "interrupted" in [s for v in summary["variants"].values() for s in v["status"]] \
            or summary.get("variants_not_run") or summary.get("interrupted_while_writing"), summary
        return "interrupted: complete folder"
    if rc == 0:
        complete("ok")
        assert before_signal(), "exit 0, but a file of the folder was written after the signal"
        return "after the last byte: complete, ok"
    # the interpreter's own start-up (before trajopt's first line installs the handlers) or its teardown (after
    # the last byte, once Python has restored the default handlers): killed by the signal, nothing half-written
    assert rc == -sig, (rc, stderr)
    if not files:
        assert delay < 0.5 and "stopping after" not in stderr and "Traceback" not in stderr, (delay, stderr)
        return "before the handlers were installed: nothing written"
    complete("ok")
    assert before_signal(), "killed after a file was written past the signal"
    return "during interpreter teardown: complete, ok"


DRIVER = """
import os, signal, sys
import trajopt.plots
from trajopt.cli import compare

def hooked(original):
    def call(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # the signal lands inside this step of the run's life
        return original(*args, **kwargs)
    return call

if sys.argv[1] == "figure":  # while the folder is written (the figure comes after the run files)
    trajopt.plots.save_figure = hooked(trajopt.plots.save_figure)
elif sys.argv[1] == "summary":  # after the last chunk, before the first byte of the folder
    import trajopt.runs
    trajopt.runs.summarise = hooked(trajopt.runs.summarise)
else:  # after the last byte: while the final table is printed
    compare._summary_table = hooked(compare._summary_table)
del sys.argv[1]
from trajopt._entry import main
main()
"""


@pytest.mark.parametrize("moment, code, status",
                         [("summary", 130, "interrupted"), ("figure", 130, "interrupted"), ("table", 0, "ok")])
def test_the_exit_status_agrees_with_the_folder(tmp_path, moment, code, status):
    """A signal while the folder is written (from the end of the last chunk, every loop finished and none of them
    marked interrupted, to the figure) marks it interrupted, says when (exit 130); one after its last byte (the
    final table) leaves it "ok" and exits 0: never exit 130 beside a folder that says ok or does not say why."""
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    cmd = [sys.executable, "-c", DRIVER, moment, "compare", str(STIFF), "--iterations", "2", "--seeds", "1",
           "--oracles", "fobg", "--set", "task.horizon=8", "--out", str(out)]
    done = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                          timeout=300)
    assert done.returncode == code, done.stderr.decode()
    summary = json.loads((out / "result.json").read_text())
    assert summary["status"] == status
    assert summary.get("interrupted_while_writing", False) is (status == "interrupted")
    assert not summary.get("variants_not_run") and summary["variants"]["fobg"]["status"] == ["ok"]
    assert (out / "convergence.png").is_file() and not [p for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_signals_at_random_moments_leave_a_complete_folder_or_none(tmp_path):
    """SIGINT or SIGTERM at 8 random moments of a compare run (one in each eighth of its measured duration, so
    start-up, compilation, the loops, writing and plotting are all covered): every time the exit status is 130
    with a complete folder marked interrupted (or no folder at all), or 0 with a complete "ok" folder written
    entirely before the signal."""
    import os
    import signal
    import subprocess
    import time

    import numpy as np

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for i in range(2):  # the first fills the compilation cache; the second is the run's full duration
        started = time.monotonic()
        done = subprocess.run(_entry_command(tmp_path / f"full{i}"), cwd=tmp_path, env=env, capture_output=True,
                              timeout=600)
        full = time.monotonic() - started
        assert done.returncode == 0, done.stderr.decode()
    rng = np.random.default_rng(20240611)
    edges = np.linspace(0.05, full, 9)
    delays = rng.uniform(edges[:-1], edges[1:])
    signals = rng.choice([signal.SIGINT, signal.SIGTERM], size=len(delays))
    outcomes = []
    for i, (delay, sig) in enumerate(zip(delays, signals)):
        out = tmp_path / f"run{i}"
        proc = subprocess.Popen(_entry_command(out), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            time.sleep(delay)
            sent_at = None
            if proc.poll() is None:
                sent_at = time.time()
                proc.send_signal(int(sig))
            _, stderr = proc.communicate(timeout=300)
        finally:
            proc.kill()
            proc.wait()
        outcome = _check_signalled_run(out, proc.returncode, int(sig), float(delay), sent_at,
                                       stderr.decode(errors="replace"))
        outcomes.append((round(float(delay), 2), signal.Signals(int(sig)).name, outcome))
    print(f"full run {full:.2f} s; outcomes: {outcomes}")
    assert any(o[2].startswith("interrupted: complete") for o in outcomes), outcomes


# every other verb that writes: (its arguments, the file it writes last with its status, the files beside it);
# report writes one file, with no status: complete or absent
WRITING_VERBS = {
    "solve": (["solve", STIFF, "--oracle", "fobg", "--iterations", "40", "--seeds", "1"], "result.json",
              {"config.toml", "metrics.jsonl", "trajectory.npz", "convergence.png"}),
    "sweep": (["sweep", STIFF, "--set", "task.horizon=8", "--oracles", "fobg,zobg", "--samples", "4", "--repeats", "2",
               "--over", "system.stiffness=10,30,100"], "sweep.json", {"config.toml", "sweep.csv", "sweep.png"}),
    "landscape": (["landscape", PIVOT, "--range", "-1:1:9", "--repeats", "4", "--oracles", "fobg,zobg"],
                  "landscape.json", {"config.toml", "landscape.csv", "landscape.png"}),
    "diagnose": (["diagnose", STIFF, "--set", "task.horizon=8", "--repeats", "4", "--samples", "8"], "diagnose.json",
                 {"diagnose.png"}),
    "report": ([], None, set()),
}


def _check_verb_outcome(verb: str, out: Path, rc: int, sig: int, delay: float, sent_at, stderr: str) -> str:
    """`_check_signalled_run` for any verb: exit 130 with the folder complete and marked interrupted (or nothing
    written), exit 0 with it complete and "ok" and written entirely before the signal, or killed by the signal
    during the interpreter's start-up (nothing written) or teardown (complete, "ok")."""
    _, marker, beside = WRITING_VERBS[verb]
    target = out / "r.html" if verb == "report" else out
    files = ([target] if target.is_file() else []) if verb == "report" else (sorted(out.iterdir()) if out.exists() else [])
    names = {p.name for p in files}
    assert not [n for n in names if n.startswith(".")], (names, stderr)  # no temporary, no streamed history
    assert "Traceback" not in stderr, stderr

    def complete(status: str) -> None:
        if verb == "report":
            assert target.read_text().endswith("</html>\n"), "a report that exists is whole"
            return
        assert json.loads((out / marker).read_text())["status"] == status, (rc, stderr)
        assert beside <= names, names

    def before_signal() -> bool:
        return sent_at is None or max(p.stat().st_mtime for p in files) <= sent_at

    if rc == 130:
        if not files:
            return "interrupted: nothing written"
        assert verb != "report", "exit 130 beside a report"
        complete("interrupted")
        return "interrupted: complete folder"
    if rc == 0:
        complete("ok")
        assert before_signal(), "exit 0, but a file was written after the signal"
        return "after the last byte: complete, ok"
    assert rc == -sig, (rc, stderr)
    if not files:
        assert delay < 0.5 and "stopping after" not in stderr, (delay, stderr)
        return "before the handlers were installed: nothing written"
    complete("ok")
    assert before_signal(), "killed after a file was written past the signal"
    return "during interpreter teardown: complete, ok"


@pytest.mark.slow
@pytest.mark.parametrize("verb", list(WRITING_VERBS))
def test_signals_at_random_moments_of_every_writing_verb(stiffness_runs, tmp_path, verb):
    """As the compare test above, for solve, sweep, landscape, diagnose and report: SIGINT or SIGTERM at 4 random
    moments (one in each quarter of the verb's measured duration): the exit status and what is on disk agree."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import numpy as np

    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def command(out: Path) -> list[str]:
        args = (["report", str(stiffness_runs[10]), "-o", str(out / "r.html")] if verb == "report"
                else [*map(str, WRITING_VERBS[verb][0]), "--out", str(out)])
        return [sys.executable, "-c", "from trajopt._entry import main; main()", *args, "--quiet"]

    for i in range(2):  # the first fills the compilation cache; the second is the verb's full duration
        (tmp_path / f"full{i}").mkdir()
        started = time.monotonic()
        done = subprocess.run(command(tmp_path / f"full{i}" / "o"), cwd=tmp_path, env=env, capture_output=True,
                              timeout=600)
        full = time.monotonic() - started
        assert done.returncode == 0, done.stderr.decode()
    rng = np.random.default_rng(sum(map(ord, verb)))
    edges = np.linspace(0.05, full, 5)
    delays = rng.uniform(edges[:-1], edges[1:])
    signals = rng.choice([signal.SIGINT, signal.SIGTERM], size=len(delays))
    outcomes = []
    for i, (delay, sig) in enumerate(zip(delays, signals)):
        out = tmp_path / f"run{i}" / "o"
        out.parent.mkdir()
        if verb == "report":
            out.mkdir()
        proc = subprocess.Popen(command(out), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            time.sleep(delay)
            sent_at = None
            if proc.poll() is None:
                sent_at = time.time()
                proc.send_signal(int(sig))
            _, stderr = proc.communicate(timeout=300)
        finally:
            proc.kill()
            proc.wait()
        outcomes.append((round(float(delay), 2), signal.Signals(int(sig)).name,
                         _check_verb_outcome(verb, out, proc.returncode, int(sig), float(delay), sent_at,
                                             stderr.decode(errors="replace"))))
    print(f"{verb}: full run {full:.2f} s; outcomes: {outcomes}")


def test_user_text_in_messages_is_never_turned_into_emoji():
    # rich reads ":b:" as an emoji code: "--range a:b:c" was echoed back as "a🅱c"
    result = invoke("landscape", ROOT / "problems" / "pivot.toml", "--range", "a:b:c")
    assert result.exit_code == 2 and "'a:b:c'" in _message(result), _message(result)
