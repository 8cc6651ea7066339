"""The files a problem's numbers depend on besides its own text, and their content hashes (no JAX here).

    sources = SourceHashes()                       # one per expansion: each file is read and hashed once
    sources.of(raw, "problems/mjx_push_stiff.toml")   -> {"model:/abs/models/push.xml": "9f2c...", ...}

A study cell's problem document (the problem file as decoded TOML with the cell's overrides) is in the cell's
fingerprint already; what it names is not. The files covered:

* an MJCF model (``[system] name = "mjx"`` or ``"mjx_toss"``, ``model = "..."`` read relative to the problem file, as
  `trajopt.systems.mjx.MJX.from_table` reads it, or a file inside an installed package, ``model = { package,
  path }``, found by `trajopt.systems.mjcf.package_model`), the files it includes (``<include file=...>``, nested) and
  the asset files it loads (meshes, height fields, skins, textures, attached models), at every place MuJoCo
  may read them from (the places `trajopt.systems.mjx` checks for special files);
* the module file of every ``package.module:Attribute`` name in the document (a user system, oracle, method,
  policy, initial-state distribution...), found in ``sys.modules``: the spec has imported it while it was
  validated, so nothing is imported here (a module the document names but that was never imported, e.g.
  because the cell's spec is invalid, is left out). The modules that module imports in turn are not followed.

A file that does not exist is recorded as ``"missing"`` (its later appearance changes the hash), a file that is
not a regular file (a FIFO, a device) as ``"special"`` without being opened, so hashing never blocks.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import sys
from typing import Any, Iterator, Mapping, Optional

MODULE_ATTRIBUTE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
MAX_FILES = 1000          # files followed from one model (includes and assets): a bound, not a limit in practice
MAX_XML_BYTES = 64 << 20  # an MJCF file larger than this is hashed but not searched for includes
MISSING, SPECIAL = "missing", "special"
_ASSET_DIRS = {"mesh": "meshdir", "skin": "meshdir", "texture": "texturedir", "hfield": "assetdir"}


def file_hash(path: str) -> str:
    """sha256 (hex) of a regular file's bytes, read in blocks; ``"missing"`` for no file, ``"special"`` for a file
    that is not a regular one (never opened: a FIFO would block)."""
    try:
        st = os.stat(path)
    except OSError:
        return MISSING
    if not stat.S_ISREG(st.st_mode):
        return SPECIAL
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return MISSING
    return h.hexdigest()


def strings(value: Any) -> Iterator[str]:
    """Every string value in a decoded TOML document (tables and arrays followed), in order."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings(v)


def user_names(raw: Mapping) -> Iterator[str]:
    """The ``package.module:Attribute`` names (a user's system, oracle, method, policy...) in a decoded problem
    document, stripped, in the order they are named."""
    for text in strings(raw):
        if ":" in text and MODULE_ATTRIBUTE.match(text.strip()):
            yield text.strip()


def module_files(raw: Mapping) -> list[str]:
    """The source files of the ``package.module:Attribute`` names in a decoded problem document whose module is
    imported (in ``sys.modules``), in the order they are named."""
    out = []
    for text in user_names(raw):
        module = sys.modules.get(text.partition(":")[0])
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and os.path.abspath(path) not in out:
            out.append(os.path.abspath(path))
    return out


MJCF_SYSTEMS = ("mjx", "mjx_toss")
"""The registered systems that read an MJCF model named by their table's ``model`` (the toss builds an mjx system)."""


def mjcf_model(raw: Mapping, source: str) -> Optional[str]:
    """The MJCF model path of an ``mjx`` or ``mjx_toss`` system, resolved as `MJX.from_table` resolves it; None
    otherwise."""
    system = raw.get("system")
    if not isinstance(system, Mapping) or system.get("name") not in MJCF_SYSTEMS:
        return None
    model = system.get("model")
    if isinstance(model, Mapping):  # a file inside an installed package: found as the mjx system finds it
        from trajopt.systems.mjcf import PackageModelError, package_model

        try:
            return package_model(model.get("package"), model.get("path"), model.get("version")).file
        except PackageModelError:
            return None
    if not isinstance(model, str) or not model:
        return None
    if os.path.isabs(model):
        return model
    base = os.path.dirname(source) if source and not source.startswith("<") else ""
    return os.path.abspath(os.path.join(base, model))


def mjcf_files(model: str) -> list[str]:
    """The model file, the files it includes (nested) and the asset files it names, in the order found (at most
    `MAX_FILES`), at every place MuJoCo may read them from (as `trajopt.systems.mjx` looks for special files):
    an include in the including file's folder and the main model's, an asset under its ``<compiler>`` folder
    (meshdir, texturedir, assetdir), the main model's folder and the naming file's. Every candidate that exists
    is listed; a file found at none is listed at its first candidate (hashed as missing)."""
    import xml.etree.ElementTree as ET

    main = os.path.abspath(model)
    main_dir = os.path.dirname(main)
    found: list[str] = [main]
    pending = [main]
    assets: list[list[str]] = []  # candidates of each asset, resolved once every file has been read
    compiler: dict[str, str] = {}
    while pending and len(found) < MAX_FILES:
        current = pending.pop(0)
        try:
            st = os.stat(current)
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_XML_BYTES:
                continue
            root = ET.parse(current).getroot()
        except (OSError, ET.ParseError, ValueError, RecursionError):
            continue
        here = os.path.dirname(current)
        for c in root.iter("compiler"):
            compiler.update({k: v for k, v in c.attrib.items() if k in ("meshdir", "texturedir", "assetdir")})
        for el in root.iter():
            tag = el.tag if isinstance(el.tag, str) else ""
            for attr, value in el.attrib.items():
                if not tag or not attr.startswith("file") or not value:  # file, and a cube texture's fileright..
                    continue
                if tag == "include":
                    candidates = [os.path.normpath(os.path.join(d, value)) for d in (here, main_dir)]
                    existing = [c for c in dict.fromkeys(candidates) if os.path.exists(c)] or candidates[:1]
                    for c in existing:
                        if c not in found:
                            found.append(c)
                            pending.append(c)
                else:
                    assets.append([here, tag, value])
    for here, tag, value in assets:
        sub = compiler.get(_ASSET_DIRS.get(tag, "assetdir"), compiler.get("assetdir", ""))
        candidates = [os.path.normpath(os.path.join(d, value)) for d in (os.path.join(main_dir, sub), main_dir, here)]
        for c in [c for c in dict.fromkeys(candidates) if os.path.exists(c)] or candidates[:1]:
            if c not in found and len(found) < MAX_FILES:
                found.append(c)
    return found


class SourceHashes:
    """Content hashes of the files problem documents depend on, each file hashed once per instance."""

    def __init__(self):
        self._hashes: dict[str, str] = {}
        self._models: dict[str, list[str]] = {}

    def _hash(self, path: str) -> str:
        if path not in self._hashes:
            self._hashes[path] = file_hash(path)
        return self._hashes[path]

    def of(self, raw: Mapping, source: str) -> dict[str, str]:
        """{"model:PATH" or "module:PATH": sha256 hex, "missing" or "special"} for the document ``raw`` of the
        problem file ``source`` (empty for a problem that names no file)."""
        out = {}
        model = mjcf_model(raw, source)
        if model is not None:
            if model not in self._models:
                self._models[model] = mjcf_files(model)
            for path in self._models[model]:
                out[f"model:{path}"] = self._hash(path)
        for path in module_files(raw):
            out[f"module:{path}"] = self._hash(path)
        return out
