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
