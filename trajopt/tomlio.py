"""Reading TOML files safely, and the error every bad problem file raises. No JAX here: `trajopt list problems`
and the CLI's start-up import this module only.

`read_toml` reads only regular files (not a FIFO, a device such as /dev/zero, or a folder) of at most
`MAX_BYTES`, as UTF-8, and turns every failure into a `SpecError` naming the file.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MAX_BYTES = 1 << 20  # 1 MiB: a problem file is a few hundred bytes; anything larger is not one


class SpecError(ValueError):
    """A bad problem file or override. ``str()`` is the full message: ``FILE: KEY: what is wrong``."""

    def __init__(self, source: str, key: str, message: str):
        self.source, self.key, self.message = source, key, message
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {message}")


TomlError = SpecError


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
    if st.st_size > MAX_BYTES:
        raise SpecError(source, "", f"is {st.st_size:,} bytes; allowed: a TOML problem file of at most {MAX_BYTES:,} bytes")
    try:
        with open(p, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise SpecError(source, "", f"cannot be read ({e.strerror})") from None
    if len(data) > MAX_BYTES:
        raise SpecError(source, "", f"grew past {MAX_BYTES:,} bytes while read; allowed: a TOML problem file")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise SpecError(source, "", "is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(source, "", f"invalid TOML: {e}") from None
