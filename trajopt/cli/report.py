"""`trajopt report`: one shareable page (HTML, or Markdown with its figures) from run folders."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer
from rich.markup import escape

from trajopt.cli._common import QuietOpt, app, fail, out


def write_report(run_dirs: list[Path], output: Path) -> list[Path]:
    """Write report.html (self-contained) or report.md (+ a figures folder beside it); returns the files written.

    The history read back from metrics.jsonl is kept in memory, or, when that file is larger than twice
    ``$TRAJOPT_HISTORY_MEMORY`` (default 1 GiB; its arrays take about half the file's size), in files mapped into
    memory in a temporary ``.history-*`` folder beside the report, removed when the report is written."""
    import os

    from trajopt import runs
    from trajopt.cli.run import history_memory_limit

    limit = history_memory_limit()
    output.parent.mkdir(parents=True, exist_ok=True)
    size = sum(os.path.getsize(p) for p in (Path(d) / runs.METRICS for d in run_dirs) if p.is_file())
    with runs.DiskHistory(output.parent) as disk:
        try:
            loaded = [runs.read_run(d, store=disk if size > 2 * limit else None) for d in run_dirs]
        except runs.RunFolderError as e:
            raise fail(str(e)) from None
        except OSError as e:  # a full disk while the history is mapped: a message, not a trace
            raise fail(f"--output {output}: {e.filename + ': ' if e.filename else ''}{e.strerror}; nothing was "
                       "written") from None
        return _write(loaded, output)


def _write(loaded: list, output: Path) -> list[Path]:
    from trajopt import report, runs

    figures = {str(r.path): report.run_figures(r, f"r{i}_") for i, r in enumerate(loaded)}
    if output.suffix.lower() == ".md":
        fig_dir = output.parent / f"{output.stem}_figures"
        fig_dir.mkdir(exist_ok=True)
        written = []
        for figs in figures.values():
            for f in figs:
                path = fig_dir / f"{f.name}.png"
                runs.atomic_write_bytes(path, f.png)
                written.append(path)
        runs.atomic_write_bytes(output, report.markdown_report(loaded, fig_dir.name, figures).encode())
        return [output, *written]
    runs.atomic_write_bytes(output, report.html_report(loaded, figures).encode())
    return [output]


@app.command("report")
def report_cmd(
    run_dirs: List[Path] = typer.Argument(..., help="One or more run folders (written by solve or compare).",
                                          show_default=False),
    output: Path = typer.Option(Path("report.html"), "--output", "-o",
                                help="report.html (self-contained) or report.md (figures in report_figures/)."),
    quiet: bool = QuietOpt,
):
    """Gather run folders into one shareable report (HTML or Markdown).

    Problem, hyper-parameters, final costs, convergence, diagnostics and trajectories.
    """
    from trajopt.runs import is_run_dir

    seen = {}
    for d in run_dirs:
        if not is_run_dir(d):
            raise fail(f"{d}: not a run folder (no result.json in it)")
        same = seen.setdefault(d.resolve(), d)
        if same is not d:  # the same run twice would be reported, ranked and plotted as two
            raise fail(f"{d}: given twice (as {same}); allowed: each run folder once")
    if output.suffix.lower() not in (".html", ".htm", ".md"):
        raise fail(f"--output {output}: allowed: a .html or .md file name")
    written = write_report(run_dirs, output)
    if not quiet:
        out.print(f"report: [bold]{escape(str(written[0]))}[/]" + (f" (+ {len(written) - 1} figures)" if len(written) > 1 else ""))
