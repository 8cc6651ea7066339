"""`trajopt study` never loses or mislabels a result (issue #30): injective cell folders, grid values normalised
through their key's type, fingerprints that cover the files a problem names, a folder that belongs to one study,
[grid]/[set] keys that reach what runs, bounds checked before expansion, writers that survive disk errors,
links, temporaries and a second Ctrl-C, readers that trust no cell.json, a run folder's config readable by
--from, fuzzed study files, and (slow) signals at random moments.

The driver tests run cells through `fake_cell` (rows only, nothing compiled): they pin what the study folder
holds, not the numbers a solve gives (tests/test_study.py runs real cells).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trajopt.cli import app
from trajopt.spec import SpecError
from trajopt.studies import LocalExecutor, cell_rows, expand, load_study, prepare, read_table, run_study
from trajopt.studies import store
from trajopt.studies.cells import CELL_OK, CellOutcome
from trajopt.studies.expand import ExpansionStopped, fingerprint
from trajopt.studies.file import MAX_CELLS

ROOT = Path(__file__).resolve().parent.parent
PUSHING = ROOT / "problems" / "pushing_stiff.toml"
runner = CliRunner()


def write(folder: Path, text: str, name: str = "study.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def invoke(*args, **kwargs):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False, **kwargs)


def fake_cell(cell, should_stop=None):
    """A cell that runs nothing: ok rows with 1000 + the cell's index as its final cost."""
    rows = cell_rows(cell, error=cell.error)
    if cell.error is None:
        rows = [{**r, "status": "ok", "final_cost": 1000.0 + cell.index, "error": None} for r in rows]
    return CellOutcome(cell.index, CELL_OK if cell.error is None else "failed", rows, error=cell.error)


def study_text(variants='["fobg"]', grid="", set_="", extra="", problems=None, seeds=2, iterations=3) -> str:
    problems = problems or [str(PUSHING)]
    return (f"problems = {json.dumps(problems)}\nvariants = {variants}\nseeds = {seeds}\niterations = {iterations}\n"
            f"{extra}\n[set]\n\"task.horizon\" = 8\n{set_}\n[grid]\n{grid}\n")


def run_fake(study, folder: Path, **kwargs):
    e = expand(study)
    prepare(folder, fresh=False, name=study.name)
    return e, run_study(study, e, folder, LocalExecutor(), cell_fn=kwargs.pop("cell_fn", fake_cell), **kwargs)


# -------------------------------------------------------------------------------------- 1. folder names


def test_names_that_sanitise_alike_get_their_own_folders_and_rows(tmp_path):
    """Variants 'a/b' and 'a_b', problems 'p q' and 'p_q', variants differing in case: before, '/' and ' ' became
    '_' and two cells shared a folder (one result lost, the table relabelled on resume)."""
    for stem in ("p q", "p_q"):
        shutil.copy(PUSHING, tmp_path / f"{stem}.toml")
    text = study_text(variants='["a/b", "a_b", "Zo", "zo"]', problems=[str(tmp_path / "p q.toml"), str(tmp_path / "p_q.toml")],
                      extra='[variant."a/b"]\noracle = "fobg"\n[variant.a_b]\noracle = "zobg"\n'
                            '[variant.Zo]\noracle = "zobg"\n[variant.zo]\noracle = "fobg"\n')
    study = load_study(write(tmp_path, text))
    e, r = run_fake(study, tmp_path / "out")
    folders = [c.folder for c in e.cells]
    assert len(set(folders)) == len(folders) == 8
    assert len({f.casefold() for f in folders}) == 8  # one folder each on a case-insensitive file system too
    assert "cells/p_q/a_b/default" in folders  # a name kept as written keeps its folder (studies resume)
    rows = read_table(tmp_path / "out")
    assert [(row["problem"], row["variant"], row["final_cost"]) for row in rows[::2]] == \
           [(c.problem, c.variant, 1000 + c.index) for c in e.cells]
    # resume: every cell reused as it is, labels unchanged
    e2, r2 = run_fake(load_study(tmp_path / "study.toml"), tmp_path / "out")
    assert r2.ran == [] and sorted(r2.skipped) == list(range(8)) and read_table(tmp_path / "out") == rows


def test_grid_point_and_figure_names_stay_distinct_and_inside_the_folder(tmp_path):
    from trajopt.studies.expand import folder_names

    # string values that sanitise alike, and a value that would climb out of the folder
    names = folder_names(["x=a/b", "x=a_b", "x=../../evil", "x=" + "v" * 300])
    assert len(set(names)) == 4 and all("/" not in n and len(n) < 128 for n in names) and names[1] == "x=a_b"
    # figure files: keys a.b_c and a_b.c both read study_a_b_c with the dots replaced
    assert len(set(folder_names(["study_a_b_c", "study_a_b_c"], ["a.b_c", "a_b.c"]))) == 2


def test_names_and_values_outside_the_basic_plane_reach_the_problem_as_written(tmp_path):
    """A study-defined variant '🚀 x' and a [set] string with '𝔸': each cell's problem gets them as written (they
    were passed on as JSON's surrogate escapes, which TOML refuses, and arrived as their escaped text)."""
    e = expand(load_study(write(tmp_path, study_text(variants='["🚀 x"]', extra='[variant."🚀 x"]\noracle = "fobg"\n',
                                                     set_='"title" = "𝔸 study\\u007f"'))))
    spec = e.specs[0]
    assert list(spec.variants) == ["🚀 x"] and spec.title == "𝔸 study\x7f" and e.cells[0].label.endswith("🚀 x")


# ------------------------------------------------------------------------------------ 2. grid values


@pytest.mark.parametrize("values, shown", [("[10, 10.0]", "10"), ("[1e-3, 0.001]", "0.001"), ('"10,1e1"', "10")])
def test_grid_values_equal_in_value_are_one_value(tmp_path, values, shown):
    path = write(tmp_path, study_text(grid=f'"system.stiffness" = {values}'))
    with pytest.raises(SpecError) as info:
        load_study(path)
    assert info.value.source == str(path) and info.value.key == "grid.system.stiffness"
    assert f"the value {shown} twice" in info.value.message
    r = invoke("study", path, "--out", tmp_path / "out")
    assert r.exit_code == 2 and "grid.system.stiffness" in r.stderr and not (tmp_path / "out").exists()


def test_grid_values_are_normalised_through_the_keys_type(tmp_path):
    """10 for a float key is 10.0 (same cell, same fingerprint, same folder); 20.0 for an integer key is 20."""
    a = expand(load_study(write(tmp_path, study_text(grid='"system.stiffness" = [10, 100]\n"oracle.samples" = [4.0, 8]'), "a.toml")))
    b = expand(load_study(write(tmp_path, study_text(grid='"system.stiffness" = [10.0, 1e2]\n"oracle.samples" = [4, 8]'), "b.toml")))
    assert [c.fingerprint for c in a.cells] == [c.fingerprint for c in b.cells]
    assert [c.folder for c in a.cells] == [c.folder for c in b.cells]
    assert not a.invalid and [c.point for c in a.cells][0] == (("system.stiffness", 10.0), ("oracle.samples", 4))
    assert type(a.cells[0].point[0][1]) is float and type(a.cells[0].point[1][1]) is int


# ------------------------------------------------------------------------- 3. fingerprints cover files


CART = ROOT / "examples" / "user_system" / "cart.py"


def test_a_changed_user_module_changes_the_fingerprint(tmp_path, monkeypatch):
    package = tmp_path / "studyuser_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "dyn.py").write_text(CART.read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    problem = (ROOT / "examples" / "user_system" / "cart.toml").read_text().replace(
        "examples.user_system.cart:CartPole", "studyuser_pkg.dyn:CartPole")
    write(tmp_path, problem, "cart.toml")
    path = write(tmp_path, study_text(problems=[str(tmp_path / "cart.toml")]).replace('"task.horizon" = 8', ""))

    def prints():
        return [c.fingerprint for c in expand(load_study(path)).cells]

    before = prints()
    cell = expand(load_study(path)).cells[0]
    assert list(cell.files) == [f"module:{package / 'dyn.py'}"]
    assert prints() == before  # nothing changed: the same cells
    (package / "dyn.py").write_text(CART.read_text() + "\n# an edit\n")
    assert prints() != before  # the module changed: old results are not reused
    # a problem that names no file keeps the fingerprint of the version before files were covered
    plain = expand(load_study(write(tmp_path, study_text(), "plain.toml"))).cells[0]
    assert plain.files == {} and plain.fingerprint == fingerprint(plain.doc, plain.overrides, plain.variant)


def test_an_mjcf_model_its_includes_and_assets_are_hashed(tmp_path):
    """Without MuJoCo: the files of an mjx problem are found where MuJoCo may read them (an include beside the
    main model or the including file, assets under <compiler meshdir>), and a change in an included file changes
    the hashes."""
    from trajopt.studies.sources import SourceHashes, file_hash

    models = tmp_path / "models"
    (models / "parts").mkdir(parents=True)
    (models / "meshes").mkdir()
    (models / "main.xml").write_text('<mujoco><compiler meshdir="meshes"/><include file="parts/body.xml"/>'
                                     '<asset><mesh file="box.stl"/></asset></mujoco>')
    (models / "parts" / "body.xml").write_text('<mujoco><include file="parts/inner.xml"/><include file="leaf.xml"/>'
                                               '</mujoco>')
    (models / "parts" / "inner.xml").write_text("<mujoco/>")
    (models / "parts" / "leaf.xml").write_text("<mujoco/>")  # beside the file that includes it
    (models / "meshes" / "box.stl").write_bytes(b"solid")
    os.mkfifo(models / "fifo.xml")  # named by no one: never opened
    raw = {"system": {"name": "mjx", "model": "models/main.xml"}}
    files = SourceHashes().of(raw, str(tmp_path / "p.toml"))
    assert list(files) == [f"model:{models / n}" for n in ("main.xml", "parts/body.xml", "parts/inner.xml",
                                                             "parts/leaf.xml", "meshes/box.stl")]
    assert files[f"model:{models / 'parts/inner.xml'}"] == file_hash(str(models / "parts" / "inner.xml"))
    (models / "parts" / "inner.xml").write_text("<mujoco><option timestep='0.001'/></mujoco>")
    assert SourceHashes().of(raw, str(tmp_path / "p.toml")) != files
    # the toss builds an mjx system from the same table keys: its model's files are the same ones
    toss = {"system": {"name": "mjx_toss", "model": "models/main.xml"}}
    assert SourceHashes().of(toss, str(tmp_path / "p.toml")) == SourceHashes().of(raw, str(tmp_path / "p.toml"))
    # a FIFO included from a model is recorded as special, never opened (a reader would block)
    (models / "main.xml").write_text('<mujoco><include file="fifo.xml"/></mujoco>')
    assert SourceHashes().of(raw, str(tmp_path / "p.toml"))[f"model:{models / 'fifo.xml'}"] == "special"


# ------------------------------------------------------------------------------ 4. one study per folder


def test_another_studys_folder_is_refused(tmp_path):
    a = load_study(write(tmp_path, study_text(), "a.toml"))
    run_fake(a, tmp_path / "out")
    b_path = write(tmp_path, study_text(variants='["zobg"]'), "b.toml")
    with pytest.raises(store.StudyFolderError, match="holds the study 'a', not 'b'"):
        prepare(tmp_path / "out", fresh=False, name="b")
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "out").rglob("*"))
    for extra in ((), ("--fresh",)):
        r = invoke("study", b_path, "--out", tmp_path / "out", *extra)
        assert r.exit_code == 2 and "holds the study 'a', not 'b'" in r.stderr, r.output
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "out").rglob("*")) == before
    assert json.loads((tmp_path / "out" / "study.json").read_text())["identity"]["name"] == "a"
    # the same study resumes (an edited a.toml is still study a)
    prepare(tmp_path / "out", fresh=False, name="a")


# --------------------------------------------------------------- 5. [grid] and [set] reach what runs


@pytest.mark.parametrize("table, body, key", [
    ("grid", '"solve.iterations" = [5, 10]', "grid.solve.iterations"),
    ("grid", '"solve.seeds" = [1, 2]', "grid.solve.seeds"),
    ("set", '"solve.variants" = ["zobg"]', "set.solve.variants"),
    ("set", '"solve.oracles" = ["zobg"]', "set.solve.oracles"),
    ("set", '[set.solve]\niterations = 4', "set.solve.iterations"),
])
def test_a_grid_or_set_over_the_runs_own_settings_is_refused(tmp_path, table, body, key):
    text = study_text(grid=body) if table == "grid" else study_text(set_=body)
    if body.startswith("[set.solve]"):
        text = study_text() + body + "\n"
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_study(path)
    assert info.value.source == str(path) and info.value.key == key and "study's `" in info.value.message


@pytest.mark.parametrize("variants, body, key, words", [
    ('["fobg"]', '"oracle.aobg.gamma" = [0.1, 1.0]', "grid.oracle.aobg.gamma", "(not selected); selected: fobg"),
    ('["fobg", "zobg"]', '"method.cem.population" = [20, 40]', "grid.method.cem.population", "applies to cem"),
    ('["cem"]', '"oracle.samples" = [4, 8]', "grid.oracle.samples", "applies to"),
])
def test_a_grid_key_no_variant_reads_is_refused(tmp_path, variants, body, key, words):
    path = write(tmp_path, study_text(variants=variants, grid=body))
    with pytest.raises(SpecError) as info:
        expand(load_study(path))
    assert info.value.source == str(path) and info.value.key == key and words in info.value.message
    assert str(PUSHING) in info.value.message
    r = invoke("study", path, "--out", tmp_path / "out", "--dry-run")
    assert r.exit_code == 2 and key in r.stderr and r.stdout == ""


def test_a_key_some_variant_reads_is_accepted(tmp_path):
    e = expand(load_study(write(tmp_path, study_text(variants='["fobg", "aobg"]', grid='"oracle.aobg.gamma" = [0.1, 1.0]',
                                                     set_='"oracle.samples" = 4'))))
    assert len(e.cells) == 4 and not e.invalid


# ------------------------------------------------------------------------------------------ 6. bounds


@pytest.mark.parametrize("body, key, words", [
    ('[grid]\n"system.stiffness" = "linspace:1:2:101"\n"oracle.samples" = "linspace:1:200:100"', "grid", "10,100 cells"),
    ('[grid]\n"system.stiffness" = "linspace:1:2:1000000000000"', "grid.system.stiffness", "1,000,000,000,000 values"),
    ("seeds = 1000000000000", "seeds", "at most 100,000"),
    ('seeds = 100000\n[grid]\n"system.stiffness" = "linspace:1:2:11"', "seeds", "1,100,000 table rows"),
    ('seeds = 1000\niterations = 200000\n[grid]\n"system.stiffness" = "linspace:1:2:10"', "iterations",
     "2,000,000,000 recorded iterations"),
])
def test_a_study_too_large_is_refused_before_expansion(tmp_path, body, key, words):
    text = f'problems = ["{PUSHING}"]\nvariants = ["fobg"]\n' + body
    path = write(tmp_path, text)
    started = time.monotonic()
    with pytest.raises(SpecError) as info:
        load_study(path)
    assert time.monotonic() - started < 5  # counted from the axis sizes: nothing built or allocated
    assert info.value.key == key and words in info.value.message, info.value.message
    assert MAX_CELLS == 10_000


def test_a_signal_stops_a_long_expansion_and_dry_run_at_once(tmp_path, monkeypatch):
    """SIGTERM while a study's cells are built: exit 130 after the cell being built, nothing written (a huge
    grid's dry run ignored SIGTERM for hours)."""
    from trajopt import spec as spec_mod

    path = write(tmp_path, study_text(grid='"system.stiffness" = "linspace:10:100:50"'))
    calls = []
    with pytest.raises(ExpansionStopped):
        expand(load_study(path), should_stop=lambda: len(calls.append(1) or calls) > 3)
    assert len(calls) == 4
    real = spec_mod.parse
    parsed = []

    def parse(*args, **kwargs):
        parsed.append(1)
        if len(parsed) == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # lands in the CLI's handler: a flag the expansion polls
        return real(*args, **kwargs)

    monkeypatch.setattr(spec_mod, "parse", parse)
    r = invoke("study", path, "--dry-run", "--out", tmp_path / "out")
    assert r.exit_code == 130 and "nothing written" in r.stderr and len(parsed) == 3
    assert not (tmp_path / "out").exists()


def test_a_dry_run_compiles_a_bounded_number_of_steps(tmp_path, monkeypatch):
    """The first MEASURED_STEPS distinct configurations are measured by an evaluated step; the others take the
    method's planned count (ZoBG with N samples: N + 1 rollouts per step), so a grid over thousands of
    configurations does not compile thousands of steps."""
    import trajopt.cli.study as cli_study
    import trajopt.studies as studies_mod

    measured = []
    monkeypatch.setattr(studies_mod, "step_counts", lambda cell: measured.append(cell.index) or {"rollouts": -1})
    monkeypatch.setattr(cli_study, "MEASURED_STEPS", 1)
    study = load_study(write(tmp_path, study_text(variants='["zobg"]', grid='"oracle.samples" = [4, 6, 8]')))
    rows, total = cli_study._estimate(expand(study), study)
    assert measured == [0] and [r["per_step"] for r in rows] == [-1, 7, 9]
    assert total == (-1 + 7 + 9) * 3 * 2  # x iterations x seeds


# ------------------------------------------------------------------------------------------ 7. writers


def test_a_file_size_limit_while_writing_is_one_message_and_the_finished_cells_are_kept(tmp_path):
    """EFBIG (ulimit -f) half-way through a study: store.StudyWriteError naming the file, the cells finished
    before it kept on disk, and a rerun without the limit runs only the rest."""
    import resource

    study = load_study(write(tmp_path, study_text(grid='"system.stiffness" = [10.0, 20.0, 30.0, 40.0]')))
    e = expand(study)
    folder = tmp_path / "out"
    prepare(folder, fresh=False, name=study.name)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    done = []

    def limited(cell, should_stop=None):
        if cell.index == 2:  # from the third cell on, no file may grow past 1 kB (cell.json is larger)
            resource.setrlimit(resource.RLIMIT_FSIZE, (1024, hard))
        done.append(cell.index)
        return fake_cell(cell)

    try:
        with pytest.raises(store.StudyWriteError) as info:
            run_study(study, e, folder, LocalExecutor(), cell_fn=limited)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert info.value.errno == errno.EFBIG and info.value.kept == 2 and "cells/" in info.value.path
    assert not list(folder.rglob(".*.tmp"))
    r = run_study(study, e, folder, LocalExecutor(), cell_fn=fake_cell)
    assert sorted(r.skipped) == [0, 1] and r.ran == [2, 3] and r.status == "complete"


def test_the_cli_turns_a_disk_error_into_one_line(tmp_path, monkeypatch):
    import trajopt.studies as studies_mod
    from trajopt import runs

    real_run, real_write = studies_mod.run_study, runs.atomic_write_bytes
    monkeypatch.setattr(studies_mod, "run_study", lambda *a, **k: real_run(*a, **{**k, "cell_fn": fake_cell}))

    def full(path, data):
        if Path(path).name == "cell.json" and "stiffness=20" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(path, data)

    monkeypatch.setattr(runs, "atomic_write_bytes", full)
    path = write(tmp_path, study_text(grid='"system.stiffness" = [10.0, 20.0, 30.0]'))
    r = invoke("study", path, "--out", tmp_path / "out", "--quiet")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output
    assert "No space left on device" in r.stderr and "1 finished cell is kept" in r.stderr
    assert "Traceback" not in r.output
    table = read_table(tmp_path / "out")
    assert [row["system.stiffness"] for row in table] == [10.0, 10.0]
    assert json.loads((tmp_path / "out" / "study.json").read_text())["status"] == "interrupted"


def test_links_under_cells_are_replaced_never_written_through(tmp_path):
    study = load_study(write(tmp_path, study_text(grid='"system.stiffness" = [10.0, 20.0]')))
    folder = tmp_path / "out"
    e, _ = run_fake(study, folder)
    outside = tmp_path / "outside"
    shutil.copytree(folder / e.cells[0].folder, outside)  # a valid marker, outside the study
    shutil.rmtree(folder / e.cells[0].folder)
    (folder / e.cells[0].folder).symlink_to(outside, target_is_directory=True)
    variant_dir = folder / Path(e.cells[1].folder).parent.parent  # cells/<problem>: a link one level up too
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = {p: p.read_bytes() for p in outside.rglob("*")}
    _, r = run_fake(study, folder)
    assert r.ran == [0] and len(r.notes) == 1 and "symbolic link" in r.notes[0]
    assert not (folder / e.cells[0].folder).is_symlink() and (folder / e.cells[0].folder / "cell.json").is_file()
    assert {p: p.read_bytes() for p in outside.rglob("*")} == before
    shutil.rmtree(variant_dir)
    variant_dir.symlink_to(elsewhere, target_is_directory=True)
    _, r = run_fake(study, folder)
    assert sorted(r.ran) == [0, 1] and list(elsewhere.iterdir()) == [] and not variant_dir.is_symlink()


def test_temporaries_of_an_interrupted_write_are_removed_on_the_next_run(tmp_path):
    study = load_study(write(tmp_path, study_text()))
    folder = tmp_path / "out"
    e, _ = run_fake(study, folder)
    leftovers = [folder / ".study.csv.k2j3.tmp", folder / e.cells[0].folder / ".cell.json.x8.tmp"]
    for p in leftovers:
        p.write_text("half")
    (folder / ".history-abc").mkdir()
    (folder / ".history-abc" / "0001.npy").write_bytes(b"\0" * 10)
    keep = folder / "notes.tmp"  # not a temporary's name: kept
    keep.write_text("mine")
    assert prepare(folder, fresh=False, name=study.name) == 3
    assert not any(p.exists() for p in leftovers) and not (folder / ".history-abc").exists() and keep.exists()


def test_a_second_ctrl_c_while_the_table_is_written_keeps_every_finished_cell(tmp_path, monkeypatch):
    study = load_study(write(tmp_path, study_text(grid='"system.stiffness" = [10.0, 20.0, 30.0]')))
    folder = tmp_path / "out"
    real = store.write_table
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the table after the second cell
            with runs_atomic_file_interrupted():
                return real(*args, **kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "write_table", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_fake(study, folder)
    meta = json.loads((folder / "study.json").read_text())
    assert meta["status"] == "interrupted" and [c["status"] for c in meta["cells"]] == ["ok", "ok", "pending"]
    assert len(read_table(folder)) == 4 and not list(folder.rglob(".*.tmp"))
    monkeypatch.setattr(store, "write_table", real)
    _, r = run_fake(study, folder)
    assert sorted(r.skipped) == [0, 1] and r.ran == [2]


class runs_atomic_file_interrupted:
    """Within the block, the first atomic file written is interrupted half-way (KeyboardInterrupt, as a second
    Ctrl-C raises it)."""

    def __enter__(self):
        from trajopt import runs

        self.runs, self.real = runs, runs.atomic_write_bytes

        def once(path, data):
            runs.atomic_write_bytes = self.real
            with runs.atomic_file(path) as f:
                f.write(data[: len(data) // 2])
                raise KeyboardInterrupt

        runs.atomic_write_bytes = once

    def __exit__(self, *exc):
        self.runs.atomic_write_bytes = self.real


# ------------------------------------------------------------------------------------------ 8. readers


def _forge(marker: dict, how: str):
    rows = marker["rows"]
    if how == "truncated":
        return None
    if how == "rows not a list":
        marker["rows"] = {"0": rows[0]}
    elif how == "a row missing":
        marker["rows"] = rows[:1]
    elif how == "a cost that is text":
        rows[0]["final_cost"] = "12"
    elif how == "another seed":
        rows[1]["seed"] = 7
    elif how == "another variant":
        rows[0]["variant"] = "zobg"
    elif how == "another grid value":
        rows[0]["system.stiffness"] = 20.0
    elif how == "a negative count":
        rows[0]["rollouts"] = -3
    elif how == "a boolean cost":
        rows[0]["final_cost"] = True
    elif how == "an unknown status":
        marker["status"] = "done"
    elif how == "a list":
        return [marker]
    return marker


@pytest.mark.parametrize("how", ["truncated", "rows not a list", "a row missing", "a cost that is text", "another seed",
                                 "another variant", "another grid value", "a negative count", "a boolean cost",
                                 "an unknown status", "a list"])
def test_a_damaged_or_forged_cell_json_is_run_again_with_a_note(tmp_path, how):
    study = load_study(write(tmp_path, study_text(grid='"system.stiffness" = [10.0]')))
    folder = tmp_path / "out"
    e, _ = run_fake(study, folder)
    path = folder / e.cells[0].folder / "cell.json"
    marker = _forge(json.loads(path.read_text()), how)
    path.write_text("{\"rows\": [" if marker is None else json.dumps(marker))
    _, r = run_fake(study, folder)
    assert r.ran == [0] and len(r.notes) == 1 and "cell.json" in r.notes[0] and "runs again" in r.notes[0], r.notes
    assert json.loads(path.read_text())["rows"][0]["final_cost"] == 1000.0


def test_special_and_huge_cell_json_are_never_read(tmp_path):
    study = load_study(write(tmp_path, study_text(grid='"system.stiffness" = [10.0, 20.0]')))
    folder = tmp_path / "out"
    e, _ = run_fake(study, folder)
    fifo, huge = (folder / c.folder / "cell.json" for c in e.cells)
    fifo.unlink()
    os.mkfifo(fifo)  # opening it would block forever
    with open(huge, "r+b") as f:
        f.truncate(store.MAX_JSON_BYTES + 1)  # sparse: no disk used
    _, r = run_fake(study, folder)
    assert sorted(r.ran) == [0, 1] and len(r.notes) == 2
    assert "not a regular file" in r.notes[0] and "larger than trajopt writes" in r.notes[1]


def test_a_marker_that_disagrees_with_its_run_folder_is_run_again(tmp_path):
    """An ok cell's rows are checked against its result.json (written by the same run): a marker whose costs were
    edited, or whose run files are missing, does not count as finished."""
    study = load_study(write(tmp_path, study_text(grid='"system.stiffness" = [10.0]')))
    folder = tmp_path / "out"
    e, _ = run_fake(study, folder)
    cell = e.cells[0]
    cell_dir = folder / cell.folder
    marker = json.loads((cell_dir / "cell.json").read_text())
    marker["run_folder"] = True
    (cell_dir / "cell.json").write_text(json.dumps(marker))
    for name in ("config.toml", "metrics.jsonl", "trajectory.npz"):
        (cell_dir / name).write_text("")
    result = {"status": "ok", "iterations": 3, "seeds": [0, 1], "study_cell": {"fingerprint": cell.fingerprint},
              "variants": {"fobg": {"status": ["ok", "ok"], "final_cost": [1000.0, 1000.0], "best_cost": [None, None]}}}
    (cell_dir / "result.json").write_text(json.dumps(result))
    assert store.check_cell(folder, cell) == (marker, None)  # the run folder backs the marker: finished
    result["variants"]["fobg"]["final_cost"] = [999.0, 1000.0]
    (cell_dir / "result.json").write_text(json.dumps(result))
    assert "final_cost differs" in store.check_cell(folder, cell)[1]
    result["variants"]["fobg"]["final_cost"] = [1000.0, 1000.0]
    result["study_cell"]["fingerprint"] = "0" * 16
    (cell_dir / "result.json").write_text(json.dumps(result))
    assert "another cell" in store.check_cell(folder, cell)[1]
    (cell_dir / "trajectory.npz").unlink()
    assert "trajectory.npz: missing" in store.check_cell(folder, cell)[1]


# ------------------------------------------------------------------------ 9. config written, config read


def test_a_run_folders_config_for_a_large_allowed_run_reads_back(tmp_path):
    """100,000 seeds (the most a run may have) write a config.toml of more than 1 MiB (one seed per line): --from
    reads a run folder's own config.toml up to MAX_CONFIG_BYTES; a hand-written file keeps the 1 MiB cap."""
    from trajopt import runs, spec as spec_mod
    from trajopt.tomlio import MAX_BYTES, read_toml

    spec = spec_mod.load(ROOT / "problems" / "heaviside.toml", ["solve.seeds=100000", "solve.iterations=1"])
    runs.write_config(tmp_path, spec)
    config = tmp_path / "config.toml"
    assert config.stat().st_size > MAX_BYTES
    with pytest.raises(SpecError, match="at most 1,048,576 bytes"):
        read_toml(config)  # not (yet) a run folder: a file this large is not a problem file
    (tmp_path / "result.json").write_text("{}")
    assert len(read_toml(config)["solve"]["seeds"]) == 100_000


# ------------------------------------------------------------------------------------------ 10. fuzzing

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("TRAJOPT_FUZZ_EXAMPLES", "30"))
# names and keys: mostly ones a study may use (so that most examples reach the expansion), some that it may not
NAMES = ["fobg", "zobg", "aobg", "cem", "tuned", "a/b", "é🚀", "FOBG", "a.b", " x", "x=y", "", "..", "nope"]
KEYS = ["system.stiffness", "oracle.samples", "oracle.sigma", "oracle.aobg.gamma", "method.cem.population",
        "solve.key", "variants.fobg.samples", "system.stifness", "solve.iterations", "a..b", "x=y", "system", "task.horizon"]
GOOD_VALUES = st.one_of(st.lists(st.integers(2, 40), min_size=1, max_size=3), st.lists(st.floats(0.01, 1e3), min_size=1, max_size=3),
                        st.sampled_from(["logspace:1:3:3", "linspace:2:20:3", "4,8", "1,10,1e1"]))
BAD_VALUES = st.one_of(st.integers(-3, 40), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.text(max_size=6),
                       st.lists(st.one_of(st.text(max_size=3), st.booleans(), st.lists(st.integers(), max_size=2)), max_size=3),
                       st.just("linspace:1:2:1000000000"), st.just([]), st.builds(dict))


@st.composite
def study_documents(draw):
    """A study file with at most a couple of faulty parts (a third of them none), the rest valid: names, counts and
    a grid over real keys; so that most examples reach the expansion and the dry run."""
    faults = set(draw(st.lists(st.sampled_from(["problems", "variants", "seeds", "iterations", "set", "grid", "variant",
                                                "extra"]), max_size=2)))

    def part(name, good, bad):
        return draw(bad if name in faults else good)

    doc = {"problems": part("problems", st.just([str(PUSHING)]),
                            st.sampled_from([[], ["nope.toml"], [str(PUSHING)] * 2, 3, [""], ["\x00"]])),
           "variants": part("variants", st.lists(st.sampled_from(NAMES[:5]), min_size=1, max_size=3, unique=True),
                            st.lists(st.sampled_from(NAMES), min_size=1, max_size=3))}
    doc["seeds"] = part("seeds", st.integers(1, 2), st.one_of(st.integers(-1, 0), st.lists(st.integers(-1, 3), max_size=3),
                                                              st.text(max_size=3), st.just(10**6)))
    doc["iterations"] = part("iterations", st.integers(1, 3), st.one_of(st.just(0), st.floats(0, 3), st.just(10**12)))
    doc["set"] = {"task.horizon": 6}
    if "set" in faults:
        doc["set"][draw(st.sampled_from(KEYS))] = draw(st.one_of(st.integers(2, 12), BAD_VALUES))
    doc["grid"] = {draw(st.sampled_from(KEYS if "grid" in faults else KEYS[:6])): part("grid", GOOD_VALUES, BAD_VALUES)
                   for _ in range(draw(st.integers(0, 2)))}
    if "variant" in faults or draw(st.booleans()):
        doc["variant"] = {draw(st.sampled_from(NAMES)) if "variant" in faults else doc["variants"][0]:
                          {"oracle": part("variant", st.sampled_from(["fobg", "zobg"]), st.sampled_from(["bogus", 3, "cem"]))}}
    if "extra" in faults:
        doc[draw(st.sampled_from(["title", "resources", "bogus", "description"]))] = draw(
            st.one_of(st.text(max_size=8), BAD_VALUES, st.just({"num_cpus": 1, "retries": -1})))
    elif draw(st.booleans()):
        doc["title"] = draw(st.text(max_size=8))
    return doc


def _check_study_document(doc, monkeypatch_estimate) -> None:
    import tempfile

    import tomli_w

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzzed.toml"
        try:
            path.write_text(tomli_w.dumps(doc), encoding="utf-8")
        except (TypeError, ValueError):  # a value TOML cannot hold (a NaN key...): nothing to test
            return
        result = runner.invoke(app, ["study", str(path), "--dry-run", "--json", "--out", str(Path(tmp) / "out")])
        assert not (Path(tmp) / "out").exists()
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    if result.exit_code == 2:
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
        assert "fuzzed.toml" in result.stderr or "pushing_stiff.toml" in result.stderr, result.stderr
    else:
        assert result.exit_code == 0, (result.exit_code, result.output)
        json.loads(result.stdout)


@pytest.fixture
def cheap_estimate(monkeypatch):
    """The dry run's cost estimate compiles a step per configuration: replaced by zeros (the fuzzing is about the
    study file, not the counts)."""
    import trajopt.cli.study as cli_study

    monkeypatch.setattr(cli_study, "_estimate", lambda e, s, stop=None: ([{"cell": c, "per_step": 0, "total": 0}
                                                                           for c in e.cells], 0))


@settings(max_examples=max(3, EXAMPLES // 3), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(study_documents())
def test_fuzzed_study_files_are_accepted_or_refused_in_one_line(cheap_estimate, doc):
    _check_study_document(doc, cheap_estimate)


@pytest.mark.slow
@settings(max_examples=EXAMPLES * 10, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(study_documents())
def test_fuzzed_study_files_many(cheap_estimate, doc):
    _check_study_document(doc, cheap_estimate)


# ------------------------------------------------------------------------------- 11. signals (slow)


SIGNAL_STUDY = f"""
problems = ["{PUSHING}"]
variants = ["fobg"]
seeds = 1
iterations = 30
[set]
"task.horizon" = 20
[grid]
"system.stiffness" = [10.0, 100.0]
"""


def _study_command(study: Path, out: Path) -> list[str]:
    return [sys.executable, "-c", "from trajopt._entry import main; main()", "study", str(study), "--out", str(out),
            "--quiet"]


def _check_signalled_study(out: Path, rc: int, sig: int, stderr: str) -> str:
    """A study folder after a signal: none, or complete (study.json and study.csv read back and agree with each
    other and with the cells' markers; the report written; no temporaries), its status agreeing with the exit."""
    if not out.exists() or not any(out.iterdir()):
        assert rc in (130, -sig), (rc, stderr)
        return "nothing written"
    assert not list(out.rglob(".*.tmp")) and not list(out.glob(".history-*")), stderr
    meta = store.read_meta(out)
    rows = read_table(out)
    finished = [c for c in meta["cells"] if c["status"] in ("ok", "failed")]
    assert len(rows) == len(finished)  # one seed each
    for c in finished:
        assert (out / c["folder"] / "cell.json").is_file()
    assert (out / "report.html").is_file() and (out / "study_system_stiffness.png").is_file(), stderr
    if rc == 130:
        assert meta["status"] == "interrupted", (meta["status"], stderr)
        return f"interrupted: complete folder, {len(finished)} of {len(meta['cells'])} cells"
    if rc == 0:
        assert meta["status"] == "complete" and len(finished) == len(meta["cells"])
        return "complete"
    assert rc == -sig, (rc, stderr)  # the interpreter's teardown, after the last byte
    assert meta["status"] == "complete"
    return "killed during teardown: complete"


@pytest.mark.slow
def test_signals_at_random_moments_leave_a_complete_study_folder_or_none(tmp_path):
    """SIGINT or SIGTERM at 8 random moments of `trajopt study` (one in each eighth of its measured duration:
    start-up, expansion, compilation, the cells, the table, the figures): each time a complete folder whose status
    agrees with the exit status (130 interrupted, 0 complete), or no folder; a rerun completes an interrupted one."""
    import subprocess

    import numpy as np

    study = write(tmp_path, SIGNAL_STUDY)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for i in range(2):  # the first fills the compilation cache; the second is the run's full duration
        started = time.monotonic()
        done = subprocess.run(_study_command(study, tmp_path / f"full{i}"), cwd=tmp_path, env=env, capture_output=True,
                              timeout=600)
        full = time.monotonic() - started
        assert done.returncode == 0, done.stderr.decode()
    rng = np.random.default_rng(20240930)
    edges = np.linspace(0.05, full, 9)
    delays = rng.uniform(edges[:-1], edges[1:])
    signals = rng.choice([signal.SIGINT, signal.SIGTERM], size=len(delays))
    outcomes = []
    for i, (delay, sig) in enumerate(zip(delays, signals)):
        out = tmp_path / f"run{i}"
        proc = subprocess.Popen(_study_command(study, out), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(int(sig))
            _, stderr = proc.communicate(timeout=300)
        finally:
            proc.kill()
            proc.wait()
        outcome = _check_signalled_study(out, proc.returncode, int(sig), stderr.decode(errors="replace"))
        outcomes.append((round(float(delay), 2), signal.Signals(int(sig)).name, outcome))
        resumed = any(o[2].startswith("interrupted: complete") for o in outcomes[:-1])
        if outcome.startswith("interrupted: complete") and not resumed:  # the first one resumes to the full table
            again = subprocess.run(_study_command(study, out), cwd=tmp_path, env=env, capture_output=True, timeout=600)
            assert again.returncode == 0, again.stderr.decode()
            assert store.read_meta(out)["status"] == "complete" and len(read_table(out)) == 2
    print(f"full run {full:.2f} s; outcomes: {outcomes}")
    assert any(o[2].startswith("interrupted: complete") for o in outcomes), outcomes
