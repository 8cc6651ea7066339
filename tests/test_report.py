"""Reports: every section, every figure embedded and decodable, the same numbers as result.json."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from trajopt import report, runs
from trajopt.cli import app

PROBLEMS = Path(__file__).resolve().parent.parent / "problems"
runner = CliRunner()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    result = runner.invoke(app, ["compare", str(PROBLEMS / "pushing_stiff.toml"), "--iterations", "15", "--seeds", "3",
                                 "--set", "task.horizon=50", "--out", str(out), "--report", "-q"])
    assert result.exit_code == 0, result.output
    return out


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_compare_report_has_every_section_and_embedded_images(run_dir):
    page = (run_dir / "report.html").read_text()
    for section in report.SECTIONS:
        assert f"<h2>{section}</h2>" in page
    # under --set the heading names the problem and the override, not the file's title (which says k = 1000)
    assert "pushing_stiff [--set task.horizon=50]" in page and "A pusher block drives" in page
    # the file's description states its own values; under --set the report says so and names the override
    assert "written for the file&#x27;s own parameter values; this run was made with --set task.horizon=50" in page
    assert "oracle.aobg.gamma" in page and "solve.optimizer.step" in page
    images = _images(page)
    assert len(images) == 6  # convergence x4 (iterations, rollouts, compute, seconds), variance, trajectories
    for png in images:
        with Image.open(io.BytesIO(png)) as im:
            im.load()
            assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 150
    assert "src=\"http" not in page and "<script" not in page  # self-contained, nothing fetched


@pytest.fixture(scope="module")
def markdown_report(run_dir, tmp_path_factory):
    """`trajopt report RUN -o notes/report.md`, made once: (its path, the legend labels each convergence figure was
    drawn with)."""
    from trajopt import plots

    out = tmp_path_factory.mktemp("markdown") / "notes" / "report.md"
    seen = []
    real = plots.convergence_figure
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots, "convergence_figure", lambda *a, **k: seen.append(k.get("labels")) or real(*a, **k))
        result = runner.invoke(app, ["report", str(run_dir), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out, seen


def test_markdown_report_lists_the_numbers_of_result_json(run_dir, markdown_report):
    out, _ = markdown_report
    text = out.read_text()
    summary = json.loads((run_dir / "result.json").read_text())
    for name, o in summary["variants"].items():
        finals = np.array(o["final_cost"], float)
        row = next(line for line in text.splitlines() if re.match(rf"\| \d+ \| {re.escape(name)} \|", line))
        assert f"{np.median(finals):.5g}" in row
        assert f"{np.percentile(finals, 25):.5g} – {np.percentile(finals, 75):.5g}" in row
        assert f"{np.min(o['best_cost']):.5g}" in row
        assert f"{o['rollouts']:,}" in row
    for link in re.findall(r"\]\((report_figures/[^)]+\.png)\)", text):
        assert (out.parent / link).is_file()
    assert len(re.findall(r"\]\((report_figures/[^)]+\.png)\)", text)) == 6


def test_report_figures_name_each_variants_method_in_the_legend(markdown_report):
    _, seen = markdown_report  # the figures of a report drawn from the folder (`report.run_figures`)
    assert seen and all(labels == {"fobg": "fobg + sgd 0.001", "zobg": "zobg + sgd 0.001", "aobg": "aobg + sgd 0.001"}
                        for labels in seen)


def test_ranking_orders_by_median(run_dir):
    rows = report.final_cost_rows(runs.read_run(run_dir))
    ordered = sorted(rows, key=lambda r: r["rank"])
    assert [r["rank"] for r in ordered] == [1, 2, 3]
    assert all(a["median"] <= b["median"] for a, b in zip(ordered, ordered[1:]))


def test_report_of_two_runs_and_bad_inputs(run_dir, tmp_path):
    out = tmp_path / "two.html"
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    assert runner.invoke(app, ["report", str(run_dir), str(other), "-o", str(out), "-q"]).exit_code == 0
    assert len(_images(out.read_text())) == 12
    twice = runner.invoke(app, ["report", str(run_dir), str(other / ".." / "other"), str(run_dir), "-o",
                                str(tmp_path / "t.html")])
    assert twice.exit_code == 2 and "given twice" in twice.stderr and not (tmp_path / "t.html").exists()
    bad = runner.invoke(app, ["report", str(tmp_path), "-o", str(tmp_path / "r.html")])
    assert bad.exit_code == 2 and "not a run folder" in bad.stderr
    bad = runner.invoke(app, ["report", str(run_dir), "-o", str(tmp_path / "r.pdf")])
    assert bad.exit_code == 2 and ".html or .md" in bad.stderr


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    page = (run_dir / "report.html").read_text()
    probe = ("<script>window.addEventListener('load',()=>{const ok=[...document.images].every("
             "i=>i.complete&&i.naturalWidth>0);document.body.setAttribute('data-images',"
             "document.images.length+':'+ok);});</script>")
    probed = tmp_path / "probe.html"
    probed.write_text(page.replace("</body>", probe + "</body>"))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    assert 'data-images="6:true"' in dom, dom[-2000:]
