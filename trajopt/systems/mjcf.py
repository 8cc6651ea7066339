"""The files an MJCF model makes MuJoCo read, found without MuJoCo or JAX (and without opening a special file).

    model_files("problems/models/push.xml")  -> [ModelFile(path="/abs/problems/models/push.xml", ...), ...]

MuJoCo reads the model file, the files it includes (``<include file=...>``, nested) and the asset files its
elements name (meshes, height fields, skins, textures: ``file`` and a cube texture's ``fileright`` ..
``fileback``; attached models). It looks for them in more than one place, so every place is listed where a file
exists there (a name found at none is listed at its first place): an include in the including file's folder and
the main model's; an asset under the ``<compiler>`` folder for its kind (meshdir, texturedir, assetdir; a
``<compiler>`` anywhere in the model applies, as MuJoCo merges the includes into one document), then the main
model's folder and the naming file's.

Uses: `trajopt.systems.mjx` refuses a model any of whose files exists but is not a regular file (a FIFO or a device
would block MuJoCo's reader) before MuJoCo opens anything; a study's fingerprint hashes these files
(`trajopt.studies.sources`). A file is parsed for includes only if it is a regular file of at most
`MAX_XML_BYTES`; XML this parser cannot read is left to MuJoCo's own message.
"""

from __future__ import annotations

import os
import stat
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass

MAX_FILES = 1000          # files followed from one model (includes and assets): a bound, not a limit in practice
MAX_XML_BYTES = 64 << 20  # an MJCF file larger than this is listed but not searched for includes
ASSET_DIRS = {"mesh": "meshdir", "skin": "meshdir", "texture": "texturedir", "hfield": "assetdir"}


@dataclass(frozen=True)
class ModelFile:
    """One file MuJoCo may read for a model: ``path`` (absolute, normalised); ``named_by``, the file whose
    ``element`` (e.g. ``<include file='parts/a.xml'>``) names it ('' for the model itself)."""

    path: str
    named_by: str = ""
    element: str = ""


def _regular_xml(path: str) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size <= MAX_XML_BYTES


def model_files(model: str) -> list[ModelFile]:
    """The model file, the files it includes and the asset files it names, in the order found (at most
    `MAX_FILES`), at every place MuJoCo may read them from (module doc)."""
    main = os.path.abspath(model)
    main_dir = os.path.dirname(main)
    found: list[ModelFile] = [ModelFile(main)]
    seen = {main}
    pending = [main]
    assets: list[tuple[str, str, str, str]] = []  # (naming file, tag, attribute, value), resolved after every file
    compiler: dict[str, str] = {}
    while pending and len(found) < MAX_FILES:
        current = pending.pop(0)
        if not _regular_xml(current):
            continue
        try:
            root = ElementTree.parse(current).getroot()
        except (OSError, ElementTree.ParseError, ValueError, RecursionError):
            continue
        here = os.path.dirname(current)
        for c in root.iter("compiler"):
            compiler.update({k: v for k, v in c.attrib.items() if k in ("meshdir", "texturedir", "assetdir")})
        for el in root.iter():
            tag = el.tag if isinstance(el.tag, str) else ""  # comments and processing instructions have none
            for attr, value in el.attrib.items():
                if not tag or not attr.startswith("file") or not value:
                    continue
                if tag != "include":
                    assets.append((current, tag, attr, value))
                    continue
                candidates = list(dict.fromkeys(os.path.normpath(os.path.join(d, value)) for d in (here, main_dir)))
                for c in [c for c in candidates if os.path.exists(c)] or candidates[:1]:
                    if c not in seen and len(found) < MAX_FILES:
                        seen.add(c)
                        found.append(ModelFile(c, current, f"<{tag} {attr}={value!r}>"))
                        pending.append(c)
    for current, tag, attr, value in assets:
        sub = compiler.get(ASSET_DIRS.get(tag, "assetdir"), compiler.get("assetdir", ""))
        here = os.path.dirname(current)
        candidates = list(dict.fromkeys(os.path.normpath(os.path.join(d, value))
                                        for d in (os.path.join(main_dir, sub), main_dir, here)))
        for c in [c for c in candidates if os.path.exists(c)] or candidates[:1]:
            if c not in seen and len(found) < MAX_FILES:
                seen.add(c)
                found.append(ModelFile(c, current, f"<{tag} {attr}={value!r}>"))
    return found


def special_file(path: str) -> str | None:
    """"a FIFO", "a directory", ... when ``path`` exists (links followed) and is not a regular file; else None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    for test, what in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "not a regular file"
