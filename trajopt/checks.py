"""Parameter checks shared by the config dataclasses (oracles, optimisers, systems).

A failed check raises `FieldError`, a ValueError that knows the field name, what was found and what is
allowed, so that `trajopt.spec` can name the file and full key path (``oracle.zobg.sigma``) in its message.
"""

from __future__ import annotations

import math
from typing import Any, Iterable


class FieldError(ValueError):
    def __init__(self, field: str, found: Any, allowed: str):
        self.field, self.found, self.allowed = field, found, allowed
        super().__init__(f"{field}: found {found!r}, allowed: {allowed}")


def positive(field: str, value: float, *, allow_inf: bool = False) -> None:
    ok = value > 0 and (allow_inf or math.isfinite(value))
    if not ok:
        raise FieldError(field, value, "a number > 0" + (" (inf allowed)" if allow_inf else ""))


def non_negative(field: str, value: float, *, allow_inf: bool = False) -> None:
    ok = value >= 0 and (allow_inf or math.isfinite(value))
    if not ok:
        raise FieldError(field, value, "a number >= 0" + (" (inf allowed)" if allow_inf else ""))


def at_least(field: str, value: int, low: int) -> None:
    if value < low:
        raise FieldError(field, value, f"an integer >= {low}")


def in_interval(field: str, value: float, low: float, high: float, *, closed: bool = True) -> None:
    ok = (low <= value <= high) if closed else (low < value < high)
    if not ok:
        raise FieldError(field, value, f"a number in {'[' if closed else '('}{low}, {high}{']' if closed else ')'}")


def one_of(field: str, value: str, choices: Iterable[str]) -> None:
    choices = list(choices)
    if value not in choices:
        raise FieldError(field, value, "one of " + ", ".join(repr(c) for c in choices))


def finite(field: str, value: float) -> None:
    if not math.isfinite(value):
        raise FieldError(field, value, "a finite number")


def fraction(field: str, value: float) -> None:
    """A per-step multiplier such as a velocity damping factor: [0, 1]."""
    in_interval(field, value, 0.0, 1.0)
