"""A name -> factory mapping: the single source for TOML names, `trajopt list` and parametrised tests.

Names containing a colon (``"package.module:attribute"``) are imported on lookup, so users plug in their
own systems and oracles without touching trajopt. The module is looked for on ``sys.path`` and then in the
current working directory (as ``python -m`` would), so ``examples.user_system.cart:CartPole`` works from the
repository root with the ``trajopt`` console script too.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownName(KeyError):
    """Raised for a name that is neither registered nor an importable ``module:attribute`` path."""

    def __init__(self, kind: str, name: str, known: list[str], detail: str = ""):
        self.kind, self.name, self.known = kind, name, known
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        extra = f": {detail}" if detail else ""
        super().__init__(f"unknown {kind} {name!r}{hint}{extra}; known: {', '.join(known)}")

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.args[0]


def import_module(module_name: str):
    """``importlib.import_module``, retried with the current working directory on ``sys.path`` when the
    top-level package is not found (the console script's ``sys.path`` does not contain it; ``python -m``'s
    does). The directory is removed again afterwards; the imported modules stay in ``sys.modules``."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        if exc.name != module_name.split(".")[0] or cwd in sys.path or "" in sys.path:
            raise
    sys.path.insert(0, cwd)
    try:
        importlib.invalidate_caches()
        return importlib.import_module(module_name)
    finally:
        if cwd in sys.path:
            sys.path.remove(cwd)


class Registry(Generic[T]):
    """An ordered name -> entry mapping with ``module:attribute`` fallback."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def __call__(self, name: str):
        """Decorator form: ``@registry("name")``."""

        def deco(entry: T) -> T:
            return self.register(name, entry)

        return deco

    def get(self, name: str) -> T:
        if name in self._entries:
            return self._entries[name]
        if ":" in name:
            module_name, _, attr = name.partition(":")
            try:
                module = import_module(module_name)
                return getattr(module, attr)
            except (ImportError, AttributeError) as exc:
                raise UnknownName(self.kind, name, self.names(), f"cannot import it ({exc})") from None
        raise UnknownName(self.kind, name, self.names())

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
