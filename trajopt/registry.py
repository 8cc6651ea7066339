"""A name -> factory mapping: the single source for TOML names, `trajopt list` and parametrised tests.

Names containing a colon (``"package.module:attribute"``) are imported on lookup, so users plug in their
own systems and oracles without touching trajopt. The module is looked for on ``sys.path`` and then in the
current working directory (as ``python -m`` would), so ``examples.user_system.cart:CartPole`` works from the
repository root with the ``trajopt`` console script too.

Security: importing a module runs its top-level code, exactly as Python's own ``import`` does; name only
modules you trust. What the name resolves to is checked before anything is called: the name must be a dotted
module path of identifiers, one colon and an identifier; the attribute must be a **class** (or a callable
marked ``__trajopt_factory__ = True``) that has the members its registry's contract needs
(`system_contract`, `oracle_contract`, `method_contract`, `policy_contract`). ``os:system`` is therefore
refused without being called. An exception raised while importing (``SystemExit`` included) is reported as
"cannot import it (...)".
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
import sys
import weakref
from typing import Any, Callable, Generic, Iterator, Optional, TypeVar

T = TypeVar("T")

_MODULE_ATTRIBUTE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


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


def _has(cls: Any, attr: str) -> bool:
    """Whether a class (or object) provides ``attr``: an attribute, a property, or an annotated (dataclass) field."""
    if hasattr(cls, attr):
        return True
    fields = getattr(cls, "__dataclass_fields__", None)
    if isinstance(fields, dict) and attr in fields:
        return True
    return any(attr in getattr(k, "__annotations__", {}) for k in getattr(cls, "__mro__", ()))


def _require(cls: Any, kind: str, members: tuple[str, ...], callables: tuple[str, ...] = ()) -> None:
    missing = [m for m in members if not _has(cls, m)]
    missing += [m for m in callables if not callable(getattr(cls, m, None))]
    if missing:
        raise TypeError(f"it has no {', '.join(missing)}; a {kind} needs {', '.join(members + callables)}")


def system_contract(cls: Any) -> None:
    """A system: ``state_size``, ``control_size`` and ``step(x, u)``; or ``one_step = True`` and ``cost(theta)``."""
    if getattr(cls, "one_step", False) is True:
        _require(cls, "one-step system", ("state_size", "control_size"), ("cost",))
    else:
        missing = [m for m in ("state_size", "control_size") if not _has(cls, m)]
        if not callable(getattr(cls, "step", None)):
            missing.append("step")
        if missing:
            raise TypeError(f"it has no {', '.join(missing)}; a system needs state_size, control_size and step(x, u) "
                            "(or one_step = True and cost(theta))")


def oracle_contract(cls: Any) -> None:
    """An oracle: ``estimate(key, problem, U)``."""
    _require(cls, "gradient oracle", (), ("estimate",))


def method_contract(cls: Any) -> None:
    """A method: ``init(key, problem, U0)`` and ``step(key, problem, state)``."""
    _require(cls, "method", (), ("init", "step"))


def policy_contract(cls: Any) -> None:
    """A policy: ``param_size(n, m)``, ``init_params(n, m)`` and ``__call__(theta, x)``."""
    _require(cls, "policy", (), ("param_size", "init_params", "__call__"))


def check_name(name: str) -> tuple[str, str]:
    """``(module, attribute)`` of a well-formed ``package.module:attribute`` name; ValueError otherwise."""
    if not isinstance(name, str) or not _MODULE_ATTRIBUTE.match(name):
        raise ValueError(f"malformed name {name!r}: allowed: 'package.module:Class' (a dotted module path of "
                         "identifiers, one colon, an identifier)")
    module_name, _, attr = name.partition(":")
    return module_name, attr


_REGISTRIES: "weakref.WeakSet[Registry]" = weakref.WeakSet()  # every `Registry` alive (`foreign_names`)


def foreign_names() -> set[str]:
    """The names registered, in any registry, to an entry defined outside trajopt's own package (a class a user
    registered from Python under a plain name): what a problem file names without saying whose code it is
    (`trajopt.traces` keeps nothing for a file naming one, as for a ``package.module:Class`` name)."""
    out = set()
    for registry in _REGISTRIES:
        for name, entry in registry._entries.items():
            module = str(getattr(entry, "__module__", "") or "")
            if module != "trajopt" and not module.startswith("trajopt."):
                out.add(name)
    return out


def _what(entry: Any) -> str:
    kind = type(entry).__name__
    return f"a {kind}" if kind[0].lower() not in "aeiou" else f"an {kind}"


class Registry(Generic[T]):
    """An ordered name -> entry mapping with ``module:attribute`` fallback.

    Args:
        kind: what the entries are ("system", "oracle", ...), used in messages.
        check: an optional contract check, called with an imported ``module:attribute`` entry before it is
            returned; it raises (TypeError, ValueError) with what is missing (see `system_contract`).
    """

    def __init__(self, kind: str, check: Optional[Callable[[Any], None]] = None):
        self.kind = kind
        self.check = check
        self._entries: dict[str, T] = {}
        _REGISTRIES.add(self)

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
            return self._import(name)
        raise UnknownName(self.kind, name, self.names())

    def _import(self, name: str) -> T:
        """Import ``module:attribute`` and check it is a class (or a marked factory) implementing the contract."""
        try:
            module_name, attr = check_name(name)
        except ValueError as exc:
            raise UnknownName(self.kind, name, self.names(), str(exc)) from None
        try:
            module = import_module(module_name)
        except KeyboardInterrupt:
            raise
        except SystemExit as exc:
            raise UnknownName(self.kind, name, self.names(),
                              f"cannot import it (module {module_name!r} called sys.exit({exc.code!r}) while importing)") from None
        except BaseException as exc:  # noqa: BLE001  user code: whatever its import raised
            raise UnknownName(self.kind, name, self.names(),
                              f"cannot import it ({type(exc).__name__}: {exc})") from None
        try:
            entry = getattr(module, attr)
        except AttributeError:
            raise UnknownName(self.kind, name, self.names(),
                              f"cannot import it (module {module_name!r} has no attribute {attr!r})") from None
        except Exception as exc:  # noqa: BLE001  a module __getattr__ of the user's
            raise UnknownName(self.kind, name, self.names(), f"cannot import it ({type(exc).__name__}: {exc})") from None
        if not isinstance(entry, type) and getattr(entry, "__trajopt_factory__", False) is not True:
            raise UnknownName(self.kind, name, self.names(),
                              f"{module_name}.{attr} is {_what(entry)}, not a class; a {self.kind} must be a class "
                              "(or a factory marked __trajopt_factory__ = True)")
        if self.check is not None and isinstance(entry, type):
            try:
                self.check(entry)
            except (TypeError, ValueError) as exc:
                raise UnknownName(self.kind, name, self.names(), f"not a {self.kind}: {exc}") from None
        return entry

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
