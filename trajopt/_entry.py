"""The `trajopt` console script: hold SIGINT/SIGTERM from the first instruction, then run the Typer app."""

from __future__ import annotations


def main() -> None:
    from trajopt import _signals

    _signals.install()
    from trajopt.cli import app

    try:
        app()
    except SystemExit as e:
        if _signals.requested() and e.code in (0, None):
            raise SystemExit(130) from None  # the verb finished, but the user asked it to stop: say so
        raise
