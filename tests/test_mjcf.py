"""The files an MJCF model makes MuJoCo read (trajopt.systems.mjcf, no MuJoCo needed): every place MuJoCo looks,
special files listed without being opened. tests/test_mjx.py checks that the mjx system refuses a model naming one."""

import os

from trajopt.systems.mjcf import model_files, special_file


def test_includes_and_assets_are_found_where_mujoco_looks(tmp_path):
    """An include beside its includer (MuJoCo also looks beside the main model), a nested include, a mesh named in
    an included file under the main file's <compiler meshdir> (MuJoCo merges the includes into one document), a
    cube texture's side files; a name found nowhere is listed at its first place."""
    (tmp_path / "parts").mkdir()
    (tmp_path / "meshes").mkdir()
    (tmp_path / "main.xml").write_text('<mujoco><compiler meshdir="meshes"/><include file="parts/body.xml"/>'
                                       '<!-- a comment --><asset><texture name="t" type="cube" fileright="r.png"/>'
                                       '</asset></mujoco>')
    (tmp_path / "parts" / "body.xml").write_text('<mujoco><include file="inner.xml"/>'
                                                 '<asset><mesh file="box.stl"/></asset></mujoco>')
    (tmp_path / "parts" / "inner.xml").write_text("<mujoco/>")
    (tmp_path / "meshes" / "box.stl").write_text("solid box\nendsolid box\n")
    files = model_files(str(tmp_path / "main.xml"))
    paths = [os.path.relpath(f.path, tmp_path) for f in files]
    assert paths == ["main.xml", os.path.join("parts", "body.xml"), os.path.join("parts", "inner.xml"),
                     "r.png", os.path.join("meshes", "box.stl")], paths
    mesh = files[-1]
    assert mesh.named_by == str(tmp_path / "parts" / "body.xml") and mesh.element == "<mesh file='box.stl'>"


def test_a_fifo_is_listed_and_never_opened(tmp_path):
    """A FIFO included from an include is listed, reported as a FIFO by stat, and never opened (opening it blocks:
    the search runs in a thread that must finish)."""
    os.mkfifo(tmp_path / "fifo.xml")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "part.xml").write_text('<mujoco><include file="../fifo.xml"/></mujoco>')
    (tmp_path / "main.xml").write_text('<mujoco><include file="sub/part.xml"/></mujoco>')
    import threading

    out = {}
    t = threading.Thread(target=lambda: out.update(files=model_files(str(tmp_path / "main.xml"))), daemon=True)
    t.start()
    t.join(30.0)
    assert "files" in out, "model_files blocked on a FIFO (or failed)"
    fifo = [f for f in out["files"] if f.path == str(tmp_path / "fifo.xml")]
    assert len(fifo) == 1 and special_file(fifo[0].path) == "a FIFO"
    assert fifo[0].named_by == str(tmp_path / "sub" / "part.xml") and fifo[0].element == "<include file='../fifo.xml'>"
    assert special_file(str(tmp_path / "main.xml")) is None and special_file(str(tmp_path / "absent.xml")) is None
    assert special_file(str(tmp_path / "sub")) == "a directory"
    assert model_files(str(tmp_path / "fifo.xml"))[0].path == str(tmp_path / "fifo.xml")  # the model itself: listed


# ------------------------------------------------------------------------------------------ models in packages

import hashlib  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

from trajopt.systems.mjcf import PackageModelError, escaping_file, model_hashes, package_model  # noqa: E402

ARM = '<mujoco><include file="parts/body.xml"/></mujoco>'


def _record(lines):
    return "".join(f"{line},sha256=x,1\n" for line in lines)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """An installed package made by hand on sys.path: ``fakepkg`` (its __init__ raises: importing it is a bug),
    shipped by the distribution fakepkg 2.3.1, plus a file another distribution (fakepkg-extras 0.1) puts into the
    same folder, as mujoco-mjx puts its test models into mujoco's; a top-level module ``fakemod``."""
    root = tmp_path / "site"
    pkg = root / "fakepkg"
    (pkg / "models" / "parts").mkdir(parents=True)
    (pkg / "extra").mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('fakepkg was imported')\n")
    (pkg / "models" / "arm.xml").write_text(ARM)
    (pkg / "models" / "parts" / "body.xml").write_text("<mujoco/>")
    (pkg / "models" / "escapes.xml").write_text('<mujoco><include file="../outside.xml"/></mujoco>')
    (pkg / "models" / "mesh_escapes.xml").write_text('<mujoco><compiler meshdir="../meshes"/>'
                                                     '<asset><mesh file="m.stl"/></asset></mujoco>')
    (pkg / "outside.xml").write_text("<mujoco/>")
    (tmp_path / "secret.xml").write_text("<mujoco/>")
    (pkg / "models" / "link.xml").symlink_to(tmp_path / "secret.xml")
    (pkg / "extra" / "x.xml").write_text("<mujoco/>")
    (root / "fakemod.py").write_text("raise RuntimeError('fakemod was imported')\n")
    for name, version, files in [("fakepkg", "2.3.1", ["fakepkg/__init__.py", "fakepkg/models/arm.xml",
                                                        "fakepkg/models/parts/body.xml", "fakepkg/outside.xml"]),
                                 ("fakepkg_extras", "0.1", ["fakepkg/extra/x.xml"])]:
        info = root / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n")
        (info / "RECORD").write_text(_record(files + [f"{name}-{version}.dist-info/RECORD"]))
    monkeypatch.syspath_prepend(str(root))
    return root


def test_a_package_model_is_found_without_importing_the_package(site):
    """The file in the package's folder, the distribution whose RECORD lists it and its version; the package's
    code never runs (its __init__ raises)."""
    m = package_model("fakepkg", "models/./arm.xml")
    assert m.file == str(site / "fakepkg" / "models" / "arm.xml") and m.path == "models/arm.xml"
    assert (m.distribution, m.version) == ("fakepkg", "2.3.1")
    assert m.table() == {"package": "fakepkg", "path": "models/arm.xml", "version": "2.3.1"}
    assert package_model("fakepkg", "models/arm.xml", "2.3.1").version == "2.3.1"  # the installed version: accepted
    assert "fakepkg" not in sys.modules


def test_the_distribution_is_the_one_whose_record_lists_the_file(site):
    """A file that another distribution installed into the package's folder (mujoco-mjx's test models inside
    mujoco/) carries that distribution's name and version, not the one named like the package."""
    m = package_model("fakepkg", "extra/x.xml")
    assert (m.distribution, m.version) == ("fakepkg-extras", "0.1")
    unlisted = package_model("fakepkg", "models/escapes.xml")  # in no RECORD: the distribution named like the package
    assert (unlisted.distribution, unlisted.version) == ("fakepkg", "2.3.1")


@pytest.mark.parametrize("package, path, version, key, words", [
    ("nopkg_here", "a.xml", None, "package", ["'nopkg_here'", "not installed", "pip install nopkg_here"]),
    ("fakepkg.models", "arm.xml", None, "package", ["'fakepkg.models'", "top-level import name"]),
    ("fakemod", "a.xml", None, "package", ["a module", "not a package folder"]),
    (7, "a.xml", None, "package", ["found 7"]),
    ("fakepkg", "../secret.xml", None, "path", ["outside the package fakepkg"]),
    ("fakepkg", "models/../../secret.xml", None, "path", ["outside the package fakepkg"]),
    ("fakepkg", "/etc/hostname", None, "path", ["outside the package fakepkg"]),
    ("fakepkg", "models/link.xml", None, "path", ["a link to", "secret.xml", "outside the package"]),
    ("fakepkg", "models/amr.xml", None, "path", ["no such file", "did you mean 'models/arm.xml'?"]),
    ("fakepkg", "models", None, "path", ["a directory", "allowed: a regular file"]),
    ("fakepkg", "models\\arm.xml", None, "path", ["'/'-separated"]),
    ("fakepkg", "", None, "path", ["found ''"]),
    ("fakepkg", "models/arm.xml", "2.3.0", "version", ["'2.3.0'", "fakepkg 2.3.1 is installed", "('2.3.1')",
                                                       "pip install 'fakepkg==2.3.0'"]),
    ("fakepkg", "models/arm.xml", 2.3, "version", ["found 2.3"]),
])
def test_package_model_refusals(site, package, path, version, key, words):
    with pytest.raises(PackageModelError) as e:
        package_model(package, path, version)
    assert e.value.key == key, str(e.value)
    for w in words:
        assert w in e.value.message, (w, e.value.message)
    assert "fakepkg" not in sys.modules and "fakemod" not in sys.modules


def test_files_a_model_names_outside_its_folder(site):
    """An include beside the model or below it stays inside; '../outside.xml' and a mesh under <compiler
    meshdir='../meshes'> leave the model's folder (named with the element and the file that names it)."""
    models = site / "fakepkg" / "models"
    assert escaping_file(str(models / "arm.xml")) is None
    out = escaping_file(str(models / "escapes.xml"))
    assert out.path == str(site / "fakepkg" / "outside.xml") and out.element == "<include file='../outside.xml'>"
    assert out.named_by == str(models / "escapes.xml")
    mesh = escaping_file(str(models / "mesh_escapes.xml"))
    assert mesh.path == str(site / "fakepkg" / "meshes" / "m.stl") and mesh.element == "<mesh file='m.stl'>"


def test_model_hashes_cover_the_model_and_what_it_reads(site):
    models = site / "fakepkg" / "models"
    digest, others = model_hashes(str(models / "arm.xml"))
    assert digest == hashlib.sha256(ARM.encode()).hexdigest()
    assert others == {"parts/body.xml": hashlib.sha256(b"<mujoco/>").hexdigest()}


def test_a_study_hashes_a_package_model(site):
    """A study cell's fingerprint covers a package model's files (trajopt.studies.sources finds the file as the mjx
    system does); a package model that cannot be found names no file."""
    from trajopt.studies.sources import SourceHashes, mjcf_model

    raw = {"system": {"name": "mjx", "model": {"package": "fakepkg", "path": "models/arm.xml"}}}
    models = site / "fakepkg" / "models"
    assert mjcf_model(raw, "p.toml") == str(models / "arm.xml")
    assert set(SourceHashes().of(raw, "p.toml")) == {f"model:{models / 'arm.xml'}", f"model:{models / 'parts' / 'body.xml'}"}
    raw["system"]["model"]["package"] = "nopkg_here"
    assert mjcf_model(raw, "p.toml") is None


# ------------------------------------------------------------------------------------------ result.json

import json  # noqa: E402
import math  # noqa: E402
from dataclasses import dataclass  # noqa: E402

SOURCE = {"file": "/models/integrator.xml", "sha256": "ab" * 32, "files": {}}


@dataclass(frozen=True)
class Integrator:
    """x' = x + dt u."""

    dt: float = 0.1
    state_size = 1
    control_size = 1

    def step(self, x, u):
        return x + self.dt * u

    def stable_dt(self) -> float:
        return math.inf


@dataclass(frozen=True)
class SourcedIntegrator(Integrator):
    """The same, saying where its model came from (as an MJX system does)."""

    @property
    def model_source(self) -> dict:
        return dict(SOURCE)


SOURCED = """
[system]
name = "test_mjcf:SourcedIntegrator"
[task]
horizon = 3
x0 = [1.0]
goal = [0.0]
Q = [1.0]
R = [0.1]
[solve]
seeds = 1
oracles = ["exact"]
[mpc]
episode = 2
horizon = 2
iterations = 1
"""


@pytest.mark.slow
def test_result_json_records_the_model_source(tmp_path):
    """`trajopt solve` and `trajopt mpc` write the system's model_source into result.json (an MJX run's package and
    version, or file, with hashes); a system without one writes none. (Slow: two small compilations, 5-20 s.)"""
    from typer.testing import CliRunner

    from trajopt.cli import app

    problem = tmp_path / "p.toml"
    for system, expected in (("SourcedIntegrator", SOURCE), ("Integrator", None)):
        problem.write_text(SOURCED.replace("SourcedIntegrator", system))
        for verb, extra in (("solve", ["--oracle", "exact", "--iterations", "1"]), ("mpc", [])):
            out = tmp_path / f"{system}_{verb}"
            res = CliRunner().invoke(app, [verb, str(problem), "--out", str(out)] + extra)
            assert res.exit_code == 0, res.output
            assert json.loads((out / "result.json").read_text()).get("model_source") == expected, (system, verb)
