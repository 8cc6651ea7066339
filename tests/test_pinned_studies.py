"""A study's table, pinned against what its cells did: per-seed rows when seeds stop at different iterations
(checked against an independent replay of the documented keys), and the Parquet table equal to the CSV one
column by column and value by value, with the documented column types.

The study runs a method written here (registered for the module, as a user would): it moves U by 0.01 per step
and blows up (a NaN iterate) at the first step k whose key draws uniform(key) < P, so each seed's stopping step
follows from the key scheme of `trajopt.solver` (step k of seed s: fold_in(fold_in(PRNGKey(key), s), k)) alone."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import pytest

from trajopt.methods import METHODS
from trajopt.methods.base import as_count, as_float
from trajopt.studies import LocalExecutor, expand, load_study, prepare, read_table, run_study

PUSHING = Path(__file__).resolve().parent.parent / "problems" / "pushing_stiff.toml"
P, ITERATIONS, SEEDS, STEP = 0.2, 6, 5, 0.01


class FlakyState(NamedTuple):
    U: jax.Array


class FlakyInfo(NamedTuple):
    value: jax.Array
    rollouts: jax.Array
    gradients: jax.Array


@dataclass(frozen=True)
class Flaky:
    """U <- U + step, or NaN when uniform(key) < p; 3 rollouts and 2 backward passes a step (numbers no built-in
    method spends)."""

    p: float = P
    step_size: float = STEP
    name: ClassVar[str] = "flaky_pinned_test"

    def init(self, key, problem, U0):
        return FlakyState(U=U0)

    def step(self, key, problem, state):
        U = state.U + self.step_size
        blown = jax.random.uniform(key) < self.p
        return FlakyState(U=jnp.where(blown, jnp.nan, U)), FlakyInfo(
            value=as_float(problem.objective(state.U)), rollouts=as_count(3), gradients=as_count(2))


STUDY = f"""
title = "pinned"
problems = ["{PUSHING}"]
variants = ["flaky"]
seeds = {SEEDS}
iterations = {ITERATIONS}
[set]
"task.horizon" = 10
[grid]
"system.stiffness" = [10.0, 10000.0]
[variant.flaky]
method = "{Flaky.name}"
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The study run once through the Python path: (its folder, the expansion). Cell 0 runs; cell 1 (stiffness
    10^4, unstable at the file's dt) is an invalid cell: failed rows with an error message."""
    METHODS.register(Flaky.name, Flaky)
    try:
        tmp = tmp_path_factory.mktemp("pinned_study")
        (tmp / "study.toml").write_text(STUDY)
        spec = load_study(tmp / "study.toml")
        e = expand(spec)
        folder = tmp / "out"
        prepare(folder, fresh=False)
        run_study(spec, e, folder, LocalExecutor())
        yield folder, e
    finally:
        METHODS._entries.pop(Flaky.name, None)


def stopping_step(root_key: int, seed: int):
    """The step at which the seed blows up (None: it runs every iteration), from the documented keys."""
    seed_key = jax.random.fold_in(jax.random.PRNGKey(root_key), seed)
    for k in range(ITERATIONS):
        if float(jax.random.uniform(jax.random.fold_in(seed_key, k))) < P:
            return k
    return None


def test_per_seed_rows_when_seeds_stop_at_different_iterations(study):
    """Each seed's row has its own status, its own simulator calls (3 rollouts and 2 backward passes per step it
    ran, the step that blew up included, nothing after), the cost of its last finite iterate U0 + 0.01 k, its best and initial costs."""
    folder, e = study
    spec = e.specs[0]
    problem = spec.problem()
    f = jax.jit(problem.objective)
    stops = [stopping_step(spec.solve.key, s) for s in range(SEEDS)]
    assert None in stops and len({s for s in stops if s is not None}) >= 2, stops  # the case is exercised
    rows = [r for r in read_table(folder) if r["system.stiffness"] == 10.0]
    assert [r["seed"] for r in rows] == list(range(SEEDS))
    for row, stop in zip(rows, stops):
        last = ITERATIONS if stop is None else stop  # the iterate the seed returns: U0 + 0.01 * last
        U, costs = problem.U0, []
        for _ in range(last):
            costs.append(float(f(U)))
            U = U + STEP
        costs.append(float(f(U)))
        assert row["status"] == ("ok" if stop is None else "non_finite"), (row, stop)
        steps = ITERATIONS if stop is None else stop + 1
        assert (row["rollouts"], row["gradients"]) == (3 * steps, 2 * steps), (row, stop)
        assert row["final_cost"] == pytest.approx(costs[-1], rel=1e-12)
        assert row["best_cost"] == pytest.approx(min(costs), rel=1e-12)
        assert row["initial_cost"] == pytest.approx(costs[0], rel=1e-12)
        assert row["error"] is None
    failed = [r for r in read_table(folder) if r["system.stiffness"] == 10000.0]
    assert [r["status"] for r in failed] == ["failed"] * SEEDS and all(r["error"] for r in failed)
    assert all(r[k] is None for r in failed for k in ("final_cost", "rollouts", "run_seconds"))


INT64 = ("seed", "rollouts", "gradients")
FLOAT64 = ("final_cost", "best_cost", "initial_cost", "run_seconds", "compile_seconds")
STRING = ("problem", "variant", "status", "error")


def test_parquet_equals_csv_column_by_column(study):
    """Every column of study.parquet holds the CSV's values, row by row (a float to the last bit, an empty CSV
    field as a null), with the documented types: integer counts and seeds, float costs and seconds, strings, and
    a grid key in its values' own type."""
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    folder, _ = study
    with open(folder / "study.csv", encoding="utf-8", newline="") as fh:
        text_rows = list(csv.reader(fh))
    header, body = text_rows[0], text_rows[1:]
    table = pq.read_table(folder / "study.parquet")
    assert table.column_names == header and table.num_rows == len(body) == 2 * SEEDS
    for j, name in enumerate(header):
        column = table.column(name)
        expected_type = (pa.int64() if name in INT64 else pa.float64() if name in FLOAT64 or name == "system.stiffness"
                         else pa.string() if name in STRING else None)
        assert column.type == expected_type, (name, column.type)
        for i, value in enumerate(column.to_pylist()):
            text = body[i][j]
            if value is None:
                assert text == "", (name, i, text)
            elif isinstance(value, float):
                assert math.isfinite(value) and float(text) == value and text == repr(value), (name, i, text, value)
            elif isinstance(value, int):
                assert text == str(value), (name, i, text, value)
            else:
                assert text == value, (name, i, text, value)
    # the documented reader gives the same numbers
    for row, values in zip(read_table(folder), table.to_pylist()):
        assert row == values


def test_the_parquet_schema_does_not_depend_on_which_cells_failed():
    """A table whose every row failed (every cost, count and second empty) keeps the documented column types, so
    tables of two studies concatenate: the same schema as the study above, whatever failed."""
    pq = pytest.importorskip("pyarrow.parquet")
    import io

    from trajopt.studies import store

    cols = ["problem", "variant", "system.stiffness", "seed", "status", "final_cost", "best_cost", "initial_cost",
            "rollouts", "gradients", "run_seconds", "compile_seconds", "error"]
    rows = [{"problem": "p", "variant": "v", "system.stiffness": s, "seed": seed, "status": "failed",
             "error": "SpecError: p.toml: system.dt: found 0.01, allowed: a number <= 0.005"}
            for s in (10.0, 100.0) for seed in (0, 1)]
    csv_bytes, parquet = store.table_bytes(rows, cols)
    table = pq.read_table(io.BytesIO(parquet))
    types = {name: str(table.schema.field(name).type) for name in cols}
    assert types == {**{k: "int64" for k in INT64}, **{k: "double" for k in (*FLOAT64, "system.stiffness")},
                     **{k: "string" for k in STRING}}
    assert table.column("final_cost").null_count == 4 and table.column("error").to_pylist() == [rows[0]["error"]] * 4
    assert csv_bytes.decode().splitlines()[1] == 'p,v,10.0,0,failed,,,,,,,,"SpecError: p.toml: system.dt: found 0.01, ' \
                                                'allowed: a number <= 0.005"'
