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

Models inside installed Python packages (an mjx system's ``model = { package = "gymnasium", path =
"envs/mujoco/assets/hopper.xml" }``):

    package_model("gymnasium", "envs/mujoco/assets/hopper.xml")
        -> PackageModel(package="gymnasium", path="envs/mujoco/assets/hopper.xml", file="/.../hopper.xml",
                        distribution="gymnasium", version="1.4.0")

The package's folder is found with ``importlib.util.find_spec`` on its top-level name, which does not run the
package's code (gymnasium's ``__init__`` imports a great deal); the distribution and its version are the installed
distribution whose RECORD lists the file (``importlib.metadata``; the MJX test models under ``mujoco/mjx/`` belong
to mujoco-mjx, not to mujoco). `escaping_file` finds a file that a model names outside its own folder (refused
for a package model: the package and version would not identify it). `model_hashes` is the model's content record
(sha256 of the model file and of every file it reads).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.util
import os
import posixpath
import re
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


# ------------------------------------------------------------------------------------------ models in packages

PACKAGE_KEYS = ("package", "path", "version")
_TOP_LEVEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class PackageModelError(ValueError):
    """A package model that cannot be used: ``key`` is the model table's key at fault (``package``, ``path`` or
    ``version``), ``message`` what was found and what is allowed."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}")


@dataclass(frozen=True)
class PackageModel:
    """A model file inside an installed package: ``package`` (the top-level import name), ``path`` (relative to the
    package's folder, '/'-separated, normalised), ``file`` (absolute), ``distribution`` and ``version`` (the
    installed distribution whose RECORD lists the file, else the distribution named like the package; both ''
    when neither is found, e.g. a package on sys.path that pip did not install)."""

    package: str
    path: str
    file: str
    distribution: str
    version: str

    def table(self) -> dict:
        """The model table a resolved config records: {package, path, version} (version left out when unknown)."""
        return {"package": self.package, "path": self.path, **({"version": self.version} if self.version else {})}


def _normalised_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def package_model(package: object, path: object, version: object = None) -> PackageModel:
    """Resolve ``path`` inside the installed package ``package`` without importing it (module doc).

    Raises PackageModelError: ``package`` not a top-level name or not installed (the message gives the pip
    command), or a module rather than a package folder; ``path`` absolute, leaving the package (``..``, or a link
    to a file outside it), missing (a close name suggested) or not a regular file; ``version`` given and not the
    installed one."""
    if not isinstance(package, str) or not _TOP_LEVEL_NAME.match(package):
        raise PackageModelError("package", f"found {package!r}, allowed: the top-level import name of an installed "
                                "package (e.g. 'gymnasium'; the rest of the way belongs in path)")
    if not isinstance(path, str) or not path.strip() or "\\" in path or "\0" in path:
        raise PackageModelError("path", f"found {path!r}, allowed: a file's path inside the package, '/'-separated "
                                "(e.g. 'envs/mujoco/assets/hopper.xml')")
    if version is not None and (not isinstance(version, str) or not version):
        raise PackageModelError("version", f"found {version!r}, allowed: the installed version as a string "
                                "(e.g. '1.4.0'), or no version key (whatever is installed)")
    rel = posixpath.normpath(path)
    if posixpath.isabs(path) or re.match(r"^[A-Za-z]:", path) or rel == "." or rel == ".." or rel.startswith("../"):
        raise PackageModelError("path", f"found {path!r}, which is outside the package {package}; allowed: a path "
                                "relative to the package's folder that stays inside it")
    try:
        spec = importlib.util.find_spec(package)  # a top-level name: finds the folder, runs nothing
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise PackageModelError("package", f"found {package!r}, which is not installed; allowed: an installed package "
                                f"(install it: pip install {package})")
    folders = list(spec.submodule_search_locations or [])
    if not folders:
        raise PackageModelError("package", f"found {package!r}, a module ({spec.origin}), not a package folder; "
                                "allowed: a package whose folder holds the model file")
    parts = rel.split("/")
    candidates = [os.path.join(folder, *parts) for folder in folders]
    file = next((c for c in candidates if os.path.lexists(c)), None)
    if file is None:
        where = os.path.dirname(candidates[0])
        hint = ""
        try:
            close = difflib.get_close_matches(parts[-1], sorted(os.listdir(where)), n=1)
            hint = f" (did you mean {posixpath.join(posixpath.dirname(rel), close[0])!r}?)" if close else ""
        except OSError:
            pass
        raise PackageModelError("path", f"found {path!r}: no such file in the package {package} "
                                f"({', '.join(folders)}){hint}; allowed: a file the package ships")
    folder = folders[candidates.index(file)]
    real = os.path.realpath(file)
    if os.path.commonpath([real, os.path.realpath(folder)]) != os.path.realpath(folder):
        raise PackageModelError("path", f"found {path!r}, a link to {real}, which is outside the package {package}; "
                                "allowed: a file inside the package's folder")
    what = special_file(file)
    if what is not None:
        raise PackageModelError("path", f"found {path!r} ({file}), {what}; allowed: a regular file (an MJCF .xml file)")
    distribution, installed = _owner(package, rel, os.path.dirname(os.path.abspath(folder)))
    if version is not None and version != installed:
        found = f"{distribution} {installed} is installed" if installed else "no installed distribution lists the file"
        raise PackageModelError("version", f"found {version!r}, but {found}; allowed: the installed version"
                                + (f" ({installed!r})" if installed else "")
                                + f", or no version key (whatever is installed; pip install "
                                f"'{distribution or package}=={version}' to get this one)")
    return PackageModel(package=package, path=rel, file=os.path.abspath(file), distribution=distribution,
                        version=installed)


@functools.lru_cache(maxsize=256)
def _owner(package: str, rel: str, site: str) -> tuple[str, str]:
    """(distribution name, version) of the installed distribution whose RECORD lists ``package/rel`` (searched
    among the distributions installed in ``site``, the folder that holds the package), else of the distribution
    named like the package anywhere on sys.path; ("", "") when there is none."""
    from importlib import metadata

    line = f"{package}/{rel},"
    for dist in metadata.distributions(path=[site]):
        try:
            record = dist.read_text("RECORD") or ""
        except OSError:
            continue
        if record.startswith(line) or f"\n{line}" in record:
            return str(dist.metadata["Name"]), str(dist.version)
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return "", ""
    if _normalised_name(str(dist.metadata["Name"])) != _normalised_name(package):
        return "", ""
    return str(dist.metadata["Name"]), str(dist.version)


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.normpath(path), os.path.normpath(folder)
    return os.path.commonpath([path, folder]) == folder


def escaping_file(model: str) -> ModelFile | None:
    """The first file the model names (`model_files`: includes, meshes, textures, ...) that lies outside the model
    file's own folder, by its name or, where it exists, by where its links lead; None when every file is inside."""
    folder = os.path.dirname(os.path.abspath(model))
    real_folder = os.path.dirname(os.path.realpath(model))
    for f in model_files(model)[1:]:
        if not _inside(f.path, folder) or (os.path.lexists(f.path) and not _inside(os.path.realpath(f.path), real_folder)):
            return f
    return None


def file_sha256(path: str) -> str:
    """sha256 (hex) of a regular file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_hashes(model: str) -> tuple[str, dict[str, str]]:
    """(sha256 of the model file, {path relative to the model's folder: sha256} of every other regular file it
    reads, `model_files`' order); files that do not exist or are not regular are left out (MuJoCo did not read
    them, or refused the model already)."""
    files = model_files(model)
    folder = os.path.dirname(files[0].path)
    others = {}
    for f in files[1:]:
        if os.path.isfile(f.path) and special_file(f.path) is None:
            others[os.path.relpath(f.path, folder).replace(os.sep, "/")] = file_sha256(f.path)
    return file_sha256(files[0].path), others
