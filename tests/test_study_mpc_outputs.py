"""A closed-loop study's outputs state their configuration and carry the plant's per-seed draws (#28).

A plant that draws a factor per seed (a ``[plant.scale]`` range ``[low, high]``) is an MJX system's in the shipped
problems; the draw contract is the system's (``PHYSICS``, ``PHYSICS_PER_SEED``, ``physics_names``, ``physics_step``),
so a user system that provides it runs the same code path without MuJoCo: here test_study_mpc's small cart-pole whose
plant scales the cart's damping by a factor drawn per seed from [0.5, 2]. One 2-cell study (CEM, ``mpc.iterations``
1 and 2, 2 seeds, 6-step episodes) through `trajopt study`; the step costs given, as in test_study_mpc.

* study.csv (and study.parquet) hold each seed's drawn factor as ``plant_dof_damping``, equal to what the cell's
  result.json records (read here as JSON), different between the seeds, the same for a seed in both cells (a paired
  draw); a cell whose plant draws nothing leaves the column empty.
* A resumed study gives the same table, from its markers or, for a marker written before the columns existed, from
  result.json; a marker whose factors contradict result.json is run again.
* Every figure of a closed-loop study states under its title the episode, horizon, replan period, K, seeds and the
  plant's difference from the model, and names the setting that varies between its cells.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from test_study_mpc import PROBLEM, given_step_costs, invoke, write  # tests/ is on the path

from trajopt.studies import load_study, store
from trajopt.studies.figures import study_figures

MODULE = "drawn_cartpole_plant"  # the user system's module, written into the fixture's folder
SYSTEM = '''"""test_study_mpc_outputs' cart-pole whose plant may scale the cart's damping per seed."""
import copy

from trajopt.systems.cartpole import CartPole


class DrawnCartPole(CartPole):
    PHYSICS = {"dof_damping": "joint"}
    PHYSICS_PER_SEED = ("dof_damping",)

    def physics_names(self, parameter):
        return ("cart",)

    def physics_step(self, targets):
        def step(x, u, factors):  # the cart's damping times the seed's factor
            scaled = copy.copy(self)
            object.__setattr__(scaled, "cart_damping", self.cart_damping * factors[0])
            return CartPole.step(scaled, x, u)
        return step
'''
DRAWN = PROBLEM.replace('name = "cartpole"', f'name = "{MODULE}:DrawnCartPole"').replace(
    "[plant]\ncart_damping = 0.3\n", "[plant]\ncart_damping = 0.3\n[plant.scale]\ndof_damping = [0.5, 2.0]\n")
assert DRAWN.count("DrawnCartPole") == 1 and DRAWN.count("dof_damping") == 1
STUDY = 'verb = "mpc"\nproblems = ["drawn.toml"]\nvariants = ["cem"]\nseeds = 2\n[grid]\n"mpc.iterations" = [1, 2]\n'
COLUMN = "plant_dof_damping"


def _texts(fig) -> str:
    """A figure's title, axes titles and texts, whitespace-normalised (the title is wrapped to the figure's width)."""
    texts = [fig._suptitle.get_text()] if fig._suptitle is not None else []
    texts += [ax.get_title() for ax in fig.axes] + [t.get_text() for t in fig.texts]
    return " ".join(" ".join(texts).split())


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("drawn_study")
    write(tmp, f"{MODULE}.py", SYSTEM)
    write(tmp, "drawn.toml", DRAWN)
    study = write(tmp, "study.toml", STUDY)
    folder = tmp / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(tmp))
        given_step_costs(mp)
        r = invoke("study", study, "--out", folder, "--json")
        assert r.exit_code == 0, r.output
        rows = list(csv.DictReader((folder / "study.csv").open()))
        yield tmp, study, folder, rows, mp
    sys.modules.pop(MODULE, None)


def _cells(folder: Path) -> dict:
    """{K: result.json} of the study's two cells, read as JSON."""
    return {k: json.loads((folder / "cells" / "drawn" / "cem" / f"mpc.iterations={k}" / "result.json").read_text())
            for k in (1, 2)}


def test_rows_carry_each_seeds_drawn_factor_as_result_json_records_it(drawn):
    _, _, folder, rows, _ = drawn
    header = (folder / "study.csv").read_text().splitlines()[0].split(",")
    assert COLUMN in header and header[-1] == "error"
    for k, result in _cells(folder).items():
        drawn_per_seed = result["plant"]["per_seed"]["dof_damping"]
        assert drawn_per_seed["range"] == [0.5, 2.0] and result["seeds"] == [0, 1]
        mine = [r for r in rows if r["mpc.iterations"] == str(k)]
        assert [int(r["seed"]) for r in mine] == [0, 1]
        assert [float(r[COLUMN]) for r in mine] == drawn_per_seed["factors"]  # bit for bit
    factors = [float(r[COLUMN]) for r in rows if r["mpc.iterations"] == "1"]
    assert factors[0] != factors[1] and all(0.5 <= f <= 2.0 for f in factors)
    # a seed's plant is the same whatever the cell (a paired comparison): K = 2's factors are K = 1's
    assert [float(r[COLUMN]) for r in rows if r["mpc.iterations"] == "2"] == factors
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(folder / "study.parquet").to_pydict()
    assert table[COLUMN] == [float(r[COLUMN]) for r in rows]


def test_a_cell_that_draws_nothing_leaves_the_columns_empty(drawn):
    _, study_file, _, rows, _ = drawn
    study = load_study(study_file)
    plain = [{**{k: v for k, v in r.items() if k != COLUMN}, "problem": "plain"} for r in rows[:2]]
    mixed = [*rows[:2], *plain]
    cols = store.columns(study, mixed)
    assert cols.count(COLUMN) == 1 and cols.index(COLUMN) == len(cols) - 2  # before error
    assert COLUMN not in store.columns(study, plain)  # no cell draws: no column
    table = list(csv.DictReader(store.table_bytes(mixed, cols, parquet=False)[0].decode().splitlines()))
    assert [r[COLUMN] for r in table] == [rows[0][COLUMN], rows[1][COLUMN], "", ""]


def test_resume_gives_the_same_columns_from_markers_and_from_result_json(drawn):
    _, study_file, folder, rows, _ = drawn
    before = (folder / "study.csv").read_bytes()
    (folder / "study.csv").unlink()
    (folder / "study.parquet").unlink(missing_ok=True)
    r = invoke("study", study_file, "--out", folder, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["ran"] == 0 and (folder / "study.csv").read_bytes() == before
    assert COLUMN in json.loads((folder / "study.json").read_text())["columns"]
    # a marker written before the columns existed: its rows are completed from result.json, the cell is not run again
    marker_path = folder / "cells" / "drawn" / "cem" / "mpc.iterations=1" / "cell.json"
    marker = json.loads(marker_path.read_text())
    for row in marker["rows"]:
        del row[COLUMN]
    marker_path.write_text(json.dumps(marker))
    (folder / "study.csv").unlink()
    r = invoke("study", study_file, "--out", folder, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["ran"] == 0 and (folder / "study.csv").read_bytes() == before
    # a marker whose factor contradicts result.json is not reused (checked without running the cell again)
    study = load_study(study_file)
    from trajopt.studies import expand

    cell = next(c for c in expand(study).cells if dict(c.point)["mpc.iterations"] == 1)
    assert store.check_cell(folder, cell)[0] is not None
    marker["rows"][0][COLUMN] = 1.0
    marker_path.write_text(json.dumps(marker))
    found, note = store.check_cell(folder, cell)
    assert found is None and "plant.per_seed factors differ" in note, note
    marker["rows"][0][COLUMN] = None  # a cell that draws, with a row that lost its factor
    marker_path.write_text(json.dumps(marker))
    assert store.check_cell(folder, cell)[0] is None
    for row, factor in zip(marker["rows"], _cells(folder)[1]["plant"]["per_seed"]["dof_damping"]["factors"]):
        row[COLUMN] = factor
    marker_path.write_text(json.dumps(marker))
    assert store.check_cell(folder, cell)[0] is not None


def test_every_figure_states_the_settings_of_its_cells(drawn):
    _, study_file, folder, rows, _ = drawn
    study = load_study(study_file)
    meta = store.read_meta(folder)
    settings = store.cell_settings(folder, meta)
    figures = study_figures(store.read_table(folder), study, settings)
    assert set(figures) == {"study_mpc_iterations", "study_mpc_iterations_compute"}
    for name, fig in figures.items():
        text = _texts(fig)
        # episode 6, horizon 4, a replan every 2 steps of dt 0.02, K = 1 in one cell and 2 in the other, 2 seeds
        assert "MPC: episode 6, horizon 4, replan every 2, 1/2 iterations per replan, 2 seeds, control period 40 ms" \
            in text, (name, text)
        assert "varies between cells: iterations per replan" in text, (name, text)
        assert "plant ≠ model (cart_damping; dof_damping (x U[0.5, 2] per seed); 1 disturbance)" in text, (name, text)
    # one cell: its own K, nothing varies
    one = [r for r in store.read_table(folder) if r["mpc.iterations"] == 2]
    only = {"drawn": [e for e in settings["drawn"] if e["mpc"]["iterations"] == 2]}
    text = _texts(study_figures(one, study, only)["study_mpc_iterations"])
    assert "replan every 2, 2 iterations per replan, 2 seeds" in text and "varies" not in text, text
    # cells with different plants: the plant is said to vary, never stated as one cell's
    other = {**only["drawn"][0], "plant": {"overrides": {}, "state_noise": 0.0, "disturbances": []}}
    text = _texts(study_figures(rows, study, {"drawn": [only["drawn"][0], other]})["study_mpc_iterations"])
    assert "plant varies between cells" in text and "plant ≠ model" not in text and "plant = model" not in text, text
    text = _texts(study_figures(rows, study, {"drawn": [other]})["study_mpc_iterations"])
    assert "plant = model" in text, text
    # a closed-loop study without a grid: its one figure states them too
    import dataclasses

    text = _texts(study_figures(one, dataclasses.replace(study, grid=()), only)["study_variants"])
    assert "MPC: episode 6, horizon 4, replan every 2, 2 iterations per replan, 2 seeds" in text, text
