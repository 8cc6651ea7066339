"""The `trajopt` console script: hold SIGINT/SIGTERM from the first instruction, turn on what the command line
uses and the library does not (the compilation cache, `trajopt._setup.cli_defaults`), then run the Typer app."""

from __future__ import annotations


def main() -> None:
    from trajopt import _setup, _signals

    _signals.install()
    import logging

    _setup.cli_defaults()  # the compilation cache: the CLI keeps it, the library only when asked (see _setup)
    # a host callback in user code that raises is reported as one line naming the variant (trajopt.SolveError);
    # JAX would also log the callback's traceback on stderr
    logging.getLogger("jax._src.callback").setLevel(logging.CRITICAL)
    from trajopt.cli import app

    try:
        app()
    except SystemExit as e:
        if _signals.requested() and e.code in (0, None):
            raise SystemExit(130) from None  # the verb finished, but the user asked it to stop: say so
        raise
