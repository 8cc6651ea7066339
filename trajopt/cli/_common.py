"""Shared pieces of the CLI: the Typer app, the consoles, exit codes, option declarations and helpers."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.text import Text
from rich.console import Console
from rich.markup import escape

import trajopt

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

app = typer.Typer(
    name="trajopt",
    help="Trajectory optimisation through contact with first-, zeroth- and alpha-order gradient oracles.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # help text is shown as written: no rich markup, so "[default: x]", "[variants.NAME]" and "linspace:a:b:n"
    # survive (rich turned ":b:" into an emoji and ate bracketed words); flags show no "<bool>" metavar
    rich_markup_mode=None,
)
# Rich falls back to 80 columns when not writing to a terminal; the result table needs a little more.
# emoji off: rich would turn user text such as "--range a:b:c" into "a🅱c" (":b:" is an emoji code)
out = Console(width=None if sys.stdout.isatty() else 150, emoji=False)
err = Console(stderr=True, emoji=False)


_LINE_BREAKS = str.maketrans({c: repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


def one_line(message: str) -> str:
    """``message`` on one line: every character Python splits lines at (``str.splitlines``: a newline, a carriage
    return, a form feed, ...), which a user's key or value can carry into a message, written as its escape (``\\n``)."""
    return message.translate(_LINE_BREAKS)


def fail(message: str) -> typer.Exit:
    """Print a bad-input error on stderr, on one line (`one_line`); return the exit-2 exception to raise."""
    err.print(f"[bold red]error:[/] {escape(one_line(message))}", highlight=False, markup=True, soft_wrap=True)
    return typer.Exit(EXIT_BAD_INPUT)


def _version(value: bool):
    if value:
        out.print(f"trajopt {trajopt.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
):
    """trajopt: which gradient should you trust on your system?"""


def load_spec(problem: Path, overrides: list[str]):
    """Load and validate a problem file; a SpecError becomes an exit-2 message."""
    from trajopt import spec as spec_mod

    try:
        return spec_mod.load(problem, overrides)
    except spec_mod.SpecError as e:
        raise fail(str(e) + overrides_blamed(problem, overrides, e)) from None


def seeds_status_text(statuses) -> str:
    """A variant's per-seed statuses for a table: "ok", or "3/5 ok, 2 non_finite" (every other status named)."""
    n, ok = len(statuses), sum(s == "ok" for s in statuses)
    return "ok" if ok == n else f"{ok}/{n} ok, {n - ok} " + "/".join(sorted(set(s for s in statuses if s != "ok")))


def overrides_blamed(problem: Path, overrides: list[str], error, **load) -> str:
    """For a load error under overrides: " (the file alone loads: ...)" naming the overrides the error follows from,
    when the file loads without them and the error's own key is not one of them (``--set mpc.episode=20`` refused
    at success.hold, whose 50 steps no longer fit); "" otherwise."""
    from trajopt import spec as spec_mod

    keys = [item.partition("=")[0].strip() for item in overrides]
    if not overrides or getattr(error, "key", None) in keys:
        return ""

    def refused(items) -> bool:
        try:
            spec_mod.load(problem, items, **load)
        except spec_mod.SpecError as e:
            return e.key == error.key
        return False

    try:
        spec_mod.load(problem, [], **load)
    except spec_mod.SpecError:
        return ""
    alone = [item for item in overrides if refused([item])]  # the one(s) that make it alone, else all of them
    return f" (the file alone loads: this follows from {', '.join(alone or overrides)})"


def is_policy_file(problem: Path, sets) -> bool:
    """Whether PROBLEM (with its --set items) is a policy problem (a [policy] table); False when it cannot be
    read (load_spec then says why)."""
    from trajopt import spec as spec_mod  # JAX: imported when a command runs, not with the CLI

    try:
        return "policy" in spec_mod.apply_overrides(spec_mod.read_toml(problem), list(sets or []), str(problem))
    except spec_mod.SpecError:
        return False


def check_sets(spec, sets, use: str, verb: str, label: str | None = None) -> None:
    """Refuse (exit 2) a command-line override that reaches nothing this verb runs: an oracle, method, variant or
    optimiser key none of the selected ones takes (`trajopt.spec.unreached_override` says which keys and why)."""
    from trajopt import spec as spec_mod

    for item in sets or []:
        try:
            spec_mod.check_override(spec, item, use, verb, label)
        except spec_mod.SpecError as e:
            raise fail(str(e)) from None


def preflight(spec, problem=None, *, use: str = "variants", trace: bool = True) -> None:
    """Refuse (exit 2, one line, before anything compiles, runs or is written) what cannot run on the problem:
    ``use`` "variants" checks the selected variants (`trajopt.spec.check_variants`: iLQR on a policy problem, and,
    with ``trace``, user code that fails when traced under vmap and grad), "oracles" the studied oracles
    (`trajopt.spec.check_oracles`)."""
    from trajopt import spec as spec_mod

    check = {"variants": spec_mod.check_variants, "oracles": spec_mod.check_oracles}[use]
    try:
        check(spec, problem, trace=trace)
    except spec_mod.SpecError as e:
        raise fail(str(e)) from None


def check_distinct(items) -> None:
    """Refuse (exit 2) two overrides of one key, or of a key and then of a table holding it: the one applied
    later would silently replace the other. ``items``: (how it was given, ``KEY.PATH=VALUE``) in the order they
    are applied (``--set`` items first, then the flags that stand for keys: --iterations is solve.iterations)."""
    seen: list[tuple[str, tuple]] = []
    for label, item in items:
        key = tuple(k.strip() for k in str(item).partition("=")[0].strip().split("."))
        for other_label, other in seen:
            if other[: len(key)] == key:
                where = label if label == other_label else f"{other_label} and {label}"
                raise fail(f"{where}: found {'.'.join(other)} set twice, allowed: each key once (the later value "
                           "would silently replace the earlier)")
        seen.append((label, key))


def check_force(force: bool, out_dir) -> None:
    """Refuse --force without --out (exit 2): it empties the --out folder; without one a run gets a new folder and
    --force would do nothing (or empty another run's folder made in the same second)."""
    if force and out_dir is None:
        raise fail("--force: found without --out, allowed: --force with --out DIR (it empties that folder; without "
                   "--out every run gets a new folder)")


def title_text(text: str) -> Text:
    """A table's title as written, never read as rich markup (a Text is not parsed: `rich.markup.escape` drops the
    backslash of "\\[[x]]" and doubles a trailing one), in the style rich gives a title."""
    return Text(text, style="table.title")


CACHE_HIT_MARK = "*"
CACHE_HIT_NOTE = "*: the compiled program was read from the compilation cache (XLA did not compile it)"


def seconds_text(entry: dict) -> str:
    """A variant's "run+compile" seconds for a table (its result.json ``entry``), marked `CACHE_HIT_MARK` when its
    compiled program (a closed loop's batched episode) was read from JAX's compilation cache."""
    cache = (entry.get("program") or {}).get("compilation_cache")
    if isinstance(cache, dict):
        cache = cache.get("episode")
    mark = CACHE_HIT_MARK if cache == "hit" else ""
    return f"{entry['run_seconds']:.2f}+{entry['compile_seconds']:.1f}{mark}"


def any_cache_hit(summary: dict) -> bool:
    """Whether a table of ``summary`` marks a variant's seconds (`seconds_text`): then its caption says why."""
    return any(seconds_text(v).endswith(CACHE_HIT_MARK) for v in summary["variants"].values())


def fmt(x, digits: int = 5) -> str:
    """A number for a table: 5 significant digits, '-' for None and NaN."""
    if x is None:
        return "-"
    try:
        xf = float(x)
    except (TypeError, ValueError):
        return str(x)
    if xf != xf:
        return "-"
    return f"{xf:.{digits}g}"


ProblemArg = typer.Argument(..., help="A TOML problem file (see `trajopt list problems`).", show_default=False)
SetOpt = typer.Option(None, "--set", help="Override a key of the file: KEY.PATH=VALUE (repeatable).")
SeedsOpt = typer.Option(None, "--seeds", help="Number of seeds, or a comma-separated list of seed numbers.")
IterOpt = typer.Option(None, "--iterations", help="Number of updates.")
OutOpt = typer.Option(None, "--out", help="Run folder (default runs/<problem>/<timestamp>-<verb>).")
ForceOpt = typer.Option(False, "--force", help="Write into an --out folder that is not empty.")
JsonOpt = typer.Option(False, "--json", help="Print a machine-readable summary on stdout (under --quiet too).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Print nothing but errors.")


def write_final(write) -> str:
    """Write a verb's outputs, marked with their status, and make them final (the run-folder rule of `solve`).

    ``write(status)`` writes every output with ``status``: "interrupted" when SIGINT/SIGTERM arrived before
    (the verb stopped early, or finished what it was computing), else "ok". A signal that lands while they are
    written rewrites them as "interrupted"; one after `trajopt._signals.settle` finds them final and the command
    exits as they say. Returns the status (the caller exits 130 for "interrupted")."""
    from trajopt import _signals

    status = "interrupted" if _signals.requested() else "ok"
    write(status)
    if _signals.settle() and status == "ok":
        status = "interrupted"
        write(status)
    return status


def measuring_status(spec, quiet: bool):
    """The status line shown on a terminal while the system's step costs are measured (a large model's take
    minutes, before any variant's progress bar), or None when ``quiet``."""
    if quiet:
        return None
    from trajopt._setup import cache_requested

    name = escape(str(spec.resolved()["system"]["name"]))
    kept = "once, then kept" if cache_requested() else "not kept: TRAJOPT_CACHE turns the cache off"
    return err.status(f"measuring the step costs of '{name}' on this host ({kept})", spinner="dots")
