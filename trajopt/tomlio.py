"""Reading TOML files safely, and the error every bad problem file raises. No JAX here: `trajopt list problems`
and the CLI's start-up import this module only.

`read_toml` reads only regular files (not a FIFO, a device such as /dev/zero, or a folder) of at most
`MAX_BYTES`, as UTF-8, and turns every failure into a `SpecError` naming the file. A run folder's config.toml
(a config.toml beside a result.json), which trajopt writes itself, may be up to `MAX_CONFIG_BYTES`: the resolved
configuration of a large but allowed run (100,000 seeds, one per line; a long u_init written out by rows) is
larger than the file it came from, and `--from` must read it back.
"""

from __future__ import annotations

import math
import stat
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MAX_BYTES = 1 << 20  # 1 MiB: a problem file is a few hundred bytes; anything larger is not one
MAX_DEPTH = 16  # tables and arrays inside each other: a problem file needs 4 ([variants.NAME.optimizer], a matrix)
MAX_MAGNITUDE = 1e100  # the largest finite number a file, an override or a range may give (see `check_number`)
MAX_CONFIG_BYTES = 64 << 20  # a run folder's config.toml: what trajopt writes from inputs within the limits


def _limit(p: Path) -> int:
    """`MAX_CONFIG_BYTES` for a run folder's recorded configuration (config.toml beside result.json), else `MAX_BYTES`."""
    return MAX_CONFIG_BYTES if p.name == "config.toml" and (p.parent / "result.json").is_file() else MAX_BYTES


class SpecError(ValueError):
    """A bad problem file or override. ``str()`` is the full message: ``FILE: KEY: what is wrong``."""

    def __init__(self, source: str, key: str, message: str):
        self.source, self.key, self.message = source, key, message
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {message}")


TomlError = SpecError


def check_number(value: float, source: str, key: str) -> float:
    """Refuse (SpecError) a finite number whose magnitude exceeds `MAX_MAGNITUDE` or, other than 0, is below its
    inverse: products, squares and inverses of two or three such numbers (σ², k/m·dt², 1/σ) stay finite in the
    validation arithmetic and the first steps of a run. Infinities and NaN pass (each key's own check allows
    them or not: iLQR's u_min may be -inf, a stiffness must be finite)."""
    if math.isfinite(value) and value != 0 and not 1 / MAX_MAGNITUDE <= abs(value) <= MAX_MAGNITUDE:
        raise SpecError(source, key, f"found {value!r}, allowed: a number of magnitude between 1e-100 and 1e100 "
                        "(or 0): beyond, the arithmetic on it overflows")
    return value


def read_toml(path: str | Path) -> dict:
    """Decode a TOML file, turning read and syntax errors into SpecError (with line and column)."""
    source = str(path)
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise SpecError(source, "", "no such file") from None
    except OSError as e:
        raise SpecError(source, "", f"cannot be read ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise SpecError(source, "", "is a folder, not a TOML file")
    if not stat.S_ISREG(st.st_mode):
        raise SpecError(source, "", "is not a regular file (a device, pipe or socket); allowed: a TOML file")
    limit = _limit(p)
    if st.st_size > limit:
        raise SpecError(source, "", f"is {st.st_size:,} bytes; allowed: a TOML problem file of at most {limit:,} bytes")
    try:
        with open(p, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise SpecError(source, "", f"cannot be read ({e.strerror})") from None
    if len(data) > limit:
        raise SpecError(source, "", f"grew past {limit:,} bytes while read; allowed: a TOML problem file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(source, "", "is not UTF-8 text") from None
    return loads(text, source)


def loads(text: str, source: str = "<string>") -> dict:
    """Decode TOML text (`read_toml`'s parser), refusing nesting deeper than `MAX_DEPTH` (`check_depth`)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(source, "", f"invalid TOML: {e}") from None
    except RecursionError:  # arrays or inline tables nested thousands deep: the parser recurses
        raise SpecError(source, "", f"found nesting deeper than {MAX_DEPTH} levels, allowed: tables and arrays "
                        f"nested at most {MAX_DEPTH} deep") from None
    check_depth(doc, source)
    return doc


def check_depth(value, source: str, key: str = "", start: int = 0) -> None:
    """Refuse (SpecError at the deepest key path) tables and arrays nested deeper than `MAX_DEPTH` in ``value``,
    itself ``start`` levels deep: deeper documents would exhaust the recursion of what reads them next (a deep
    copy, JSON, the validation). Walks without recursion."""
    if start > MAX_DEPTH:
        raise SpecError(source, key, f"found nesting deeper than {MAX_DEPTH} levels, allowed: tables and arrays "
                        f"nested at most {MAX_DEPTH} deep")
    stack = [(value, start, key)]
    while stack:
        v, depth, path = stack.pop()
        if isinstance(v, dict):
            items = [(f"{path}.{k}" if path else str(k), c) for k, c in v.items()]
        elif isinstance(v, list):
            items = [(f"{path}[{i}]", c) for i, c in enumerate(v)]
        else:
            continue
        if depth + 1 > MAX_DEPTH:
            raise SpecError(source, path, f"found nesting deeper than {MAX_DEPTH} levels, allowed: tables and arrays "
                            f"nested at most {MAX_DEPTH} deep")
        stack.extend((c, depth + 1, k) for k, c in items)


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string, spelled as written: "fo🚀" stays "fo🚀" (json.dumps' default "\\ud83d\\ude80"
    is a surrogate pair, which TOML refuses, so such a name came back as the whole unparsed value); quotes,
    backslashes and control characters escaped (DEL too, which TOML allows only escaped)."""
    import json

    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")
