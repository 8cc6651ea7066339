"""`trajopt report`: one shareable page (HTML, or Markdown with its figures) from run folders."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer
from rich.markup import escape

from trajopt.cli._common import EXIT_INTERRUPTED, QuietOpt, app, err, fail, out


def write_report(run_dirs: list[Path], output: Path, quiet: bool = False) -> list[Path]:
    """Write report.html (self-contained) or report.md (+ a figures folder beside it); returns the files written.

    The history read back from metrics.jsonl is kept in memory, or, when that file is larger than twice
    ``$TRAJOPT_HISTORY_MEMORY`` (default 1 GiB; its arrays take about half the file's size), in files mapped into
    memory in a temporary ``.history-*`` folder beside the report, removed when the report is written.

    What a run folder's reader noted (missing metrics lines, a missing trajectory file) is shown in the report and,
    unless ``quiet``, printed on stderr, one line each. The report is whole or absent: a failed write (any OSError)
    removes what was written and is one line naming the file (exit 2); a signal before the report is written writes
    nothing, and one while it is written removes it (exit 130), so a report that exists is complete."""
    import os

    from trajopt import _signals, report, runs
    from trajopt.cli._outputs import _os_reason, history_memory_limit

    limit = history_memory_limit()
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise fail(f"--output {output}: cannot create its folder ({_os_reason(e)})") from None
    size = sum(os.path.getsize(p) for p in (Path(d) / runs.METRICS for d in run_dirs) if p.is_file())
    written: list[Path] = []  # the files written so far, the report first
    made: list[Path] = []  # a figures folder this call made
    with _signals.hold():
        try:
            with runs.DiskHistory(output.parent) as disk:
                try:
                    loaded = [runs.read_run(d, store=disk if size > 2 * limit else None) for d in run_dirs]
                except runs.RunFolderError as e:
                    raise fail(str(e)) from None
                for run in loaded if not quiet else []:
                    for note in run.notes:
                        err.print(f"[bold]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
                figures = report.report_figures(loaded)
                if _signals.requested():  # before a byte of the report: nothing written
                    err.print("interrupted: no report written", highlight=False)
                    raise typer.Exit(EXIT_INTERRUPTED)
                _signals.writing()
                _write(loaded, figures, output, written, made)
        except OSError as e:  # a full disk, a file-size limit, an unwritable --output: one line, nothing kept
            _remove(written, made)
            raise fail(f"--output {output}: writing failed, {_os_reason(e)}; nothing was written") from None
        except KeyboardInterrupt:  # the writing abandoned (Ctrl-C three times): nothing half-written stays
            _remove(written, made)
            raise
        if _signals.settle():  # a signal while the report was written: it is removed, and the exit says so
            _remove(written, made)
            err.print("interrupted while the report was written: removed", highlight=False)
            raise typer.Exit(EXIT_INTERRUPTED)
    return written


def _write(loaded: list, figures: dict, output: Path, written: list[Path], made: list[Path]) -> None:
    """Write the report (and, for Markdown, its figures first), each file atomically, listing in ``written`` each
    file as it is written (the report first) and in ``made`` a figures folder made here."""
    from trajopt import report, runs

    if output.suffix.lower() == ".md":
        fig_dir = output.parent / f"{output.stem}_figures"
        if not fig_dir.is_dir():
            fig_dir.mkdir()
            made.append(fig_dir)
        for figs in figures.values():
            for f in figs:
                if not f.png:  # not drawn: its caption says why
                    continue
                path = fig_dir / f"{f.name}.png"
                runs.atomic_write_bytes(path, f.png)
                written.append(path)
        runs.atomic_write_bytes(output, runs.utf8(report.markdown_report(loaded, fig_dir.name, figures)))
    else:
        runs.atomic_write_bytes(output, runs.utf8(report.html_report(loaded, figures)))
    written.insert(0, output)


def _remove(written: list[Path], made: list[Path]) -> None:
    """Remove the files of a report that was not completed, and a figures folder made for it if it is empty."""
    for path in written:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
    for folder in made:
        try:
            folder.rmdir()
        except OSError:
            pass
    written.clear()


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
    written = write_report(run_dirs, output, quiet)
    if not quiet:
        out.print(f"report: [bold]{escape(str(written[0]))}[/]" + (f" (+ {len(written) - 1} figures)" if len(written) > 1 else ""))
