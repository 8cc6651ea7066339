"""Traced loops kept on disk (trajopt.traces): a second `trajopt compare` reads its loops back instead of tracing
them, gives the run traced directly bit for bit, and keeps nothing it cannot key soundly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from trajopt import runs, solver, traces
from trajopt.cli import app

PROBLEMS = Path(__file__).resolve().parent.parent / "problems"
STIFF = str(PROBLEMS / "pushing_stiff.toml")
SMALL = ["--iterations", "40", "--seeds", "2", "--set", "task.horizon=60"]

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A traces folder of this test's own (the compilation cache folder's parent is the test's folder), and a count of
    the loop's traces: one entry each time a fused loop's Python runs (`trajopt.loop.with_finish`'s program, which
    nothing but tracing calls)."""
    monkeypatch.setenv("TRAJOPT_CACHE_DIR", str(tmp_path / "cache" / "jax"))
    monkeypatch.delenv(traces.ENV, raising=False)
    calls = []
    real = solver.with_finish

    def counted(*args, **kwargs):
        fused = real(*args, **kwargs)

        def traced(*a):
            calls.append(1)
            return fused(*a)

        return traced

    monkeypatch.setattr(solver, "with_finish", counted)
    return tmp_path / "cache" / "traces", calls


@pytest.fixture
def finish_traces(monkeypatch) -> list:
    """One entry each time the final evaluation's Python runs (`trajopt.loop.make_finish`'s function, which only
    tracing calls): the program every variant of a run shares."""
    calls = []
    real = solver.make_finish

    def counted(problem):
        finish = real(problem)

        def traced(U):
            calls.append(1)
            return finish(U)

        return traced

    monkeypatch.setattr(solver, "make_finish", counted)
    return calls


def _run(out, *extra, small=SMALL):
    invoke("compare", STIFF, *small, *extra, "--out", out, "--quiet")
    result = json.loads((out / "result.json").read_text())
    metrics = [{k: v for k, v in json.loads(line).items() if k not in runs.TIMING_FIELDS}
               for line in (out / "metrics.jsonl").read_text().splitlines()]
    return result, metrics


def _reused(result) -> list[bool]:
    return [v["program"]["trace_reused"] for v in result["variants"].values()]


def test_a_second_compare_reads_its_loops_back_untraced_and_runs_them_the_same(own_cache, finish_traces, tmp_path):
    folder, calls = own_cache
    first, m1 = _run(tmp_path / "a")
    assert len(calls) == 3 and _reused(first) == [False] * 3  # fobg, zobg, aobg: each traced once
    assert len(finish_traces) == 1  # their final evaluation: one program, traced for the first and read back after
    assert len(list(folder.glob("*.trace"))) == 4
    second, m2 = _run(tmp_path / "b")
    assert len(calls) == 3, "the second compare traced a loop again"
    assert len(finish_traces) == 1, "the second compare traced the final evaluation again"
    assert _reused(second) == [True] * 3
    assert m1 == m2  # every iteration's cost, α, counts: the layout read back unpacks the same fields
    for name in first["variants"]:
        assert first["variants"][name]["final_cost"] == second["variants"][name]["final_cost"]


def test_the_kept_trace_runs_bit_for_bit_as_the_loop_traced_directly(own_cache, tmp_path, monkeypatch):
    """Stiff pushing (k = 1000) amplifies a last bit over its iterations: the exported program must be the same
    computation, not only a close one."""
    folder, _ = own_cache
    monkeypatch.setenv(traces.ENV, "0")
    direct, m_direct = _run(tmp_path / "direct")
    assert not folder.exists() and _reused(direct) == [False] * 3
    monkeypatch.delenv(traces.ENV)
    cold, m_cold = _run(tmp_path / "cold")
    warm, m_warm = _run(tmp_path / "warm")
    assert _reused(cold) == [False] * 3 and _reused(warm) == [True] * 3
    assert m_direct == m_cold == m_warm
    for name in direct["variants"]:
        assert direct["variants"][name]["final_cost"] == cold["variants"][name]["final_cost"] \
            == warm["variants"][name]["final_cost"]


def test_another_parameter_value_is_another_trace(own_cache, tmp_path):
    """The key holds the spec's values, not only its shapes: a stiffness baked into the loop as a constant must
    not be read back for another stiffness."""
    folder, calls = own_cache
    base, _ = _run(tmp_path / "a")
    other, _ = _run(tmp_path / "b", "--set", "system.stiffness=500.0")
    assert _reused(other) == [False] * 3 and len(calls) == 6
    assert other["variants"]["fobg"]["final_cost"] != base["variants"]["fobg"]["final_cost"]
    again, _ = _run(tmp_path / "c")
    assert _reused(again) == [True] * 3 and len(calls) == 6
    assert again["variants"]["fobg"]["final_cost"] == base["variants"]["fobg"]["final_cost"]
    more_seeds, _ = _run(tmp_path / "d", "--seeds", "3")  # another shape: another program
    # three loops and their final evaluation for each of the three problems
    assert _reused(more_seeds) == [False] * 3 and len(list(folder.glob("*.trace"))) == 12


def test_an_entry_that_does_not_read_back_is_traced_again_and_replaced(own_cache, tmp_path):
    folder, calls = own_cache
    first, m1 = _run(tmp_path / "a")
    for p in folder.glob("*.trace"):
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])  # a process killed while writing, say
    second, m2 = _run(tmp_path / "b")
    assert _reused(second) == [False] * 3 and len(calls) == 6 and m1 == m2
    third, _ = _run(tmp_path / "c")
    assert _reused(third) == [True] * 3 and len(calls) == 6


def test_nothing_is_kept_without_the_compilation_cache(own_cache, tmp_path, monkeypatch):
    folder, _ = own_cache
    monkeypatch.setenv("TRAJOPT_CACHE", "0")
    result, _ = _run(tmp_path / "a")
    assert not folder.exists() and _reused(result) == [False] * 3


def test_a_spec_naming_user_code_is_not_kept(own_cache):
    """Its Python is not in the key: an edit to the user's class must not run a stale trace."""
    from trajopt.spec import load

    root = Path(__file__).resolve().parent.parent
    user = load(root / "examples" / "user_system" / "cart.toml")
    assert "examples.user_system.cart:" in json.dumps(user.resolved())
    assert traces.problem_identity(user) is None
    assert traces.problem_identity(load(STIFF)) is not None


def test_a_spec_naming_a_user_oracle_is_not_kept(own_cache):
    """The rule is by the name: any ``package.module:Class`` (here trajopt's own FoBG, named as a user would name
    theirs) in any table, not only [system], keeps nothing."""
    from trajopt.spec import load

    named = load(STIFF, ['variants.mine.oracle="trajopt.oracles.fobg:FoBG"', 'solve.variants=["mine"]'])
    assert traces.problem_identity(named) is None


def test_a_name_registered_from_python_to_a_users_class_is_not_kept(own_cache, monkeypatch):
    """A plain name is not trajopt's own when Python registered a user's class under it: the key holds the name, not
    that class's code, so nothing is kept (`trajopt.registry.foreign_names`)."""
    from trajopt.oracles import ORACLES
    from trajopt.oracles.zobg import ZoBG
    from trajopt.spec import load

    class MyZoBG(ZoBG):  # defined here, outside trajopt; an edit to it must not run a stale trace
        pass

    named = ['variants.mine.oracle="my_zobg"', 'solve.variants=["mine"]']
    monkeypatch.setitem(ORACLES._entries, "my_zobg", MyZoBG)
    assert traces.problem_identity(load(STIFF, named)) is None
    assert traces.problem_identity(load(STIFF)) is not None  # a file that does not name it
    monkeypatch.setitem(ORACLES._entries, "my_zobg", ZoBG)  # trajopt's own class under the name: keyed as usual
    assert traces.problem_identity(load(STIFF, named)) is not None


def test_a_budgets_step_costs_are_in_the_key(own_cache, tmp_path, monkeypatch):
    """iLQR under a budget stops inside the loop where its spend, T (1 + ρ_b + ρ_l) per step, reaches it: ρ_l is a
    constant of the loop, not of the spec, so a trace kept under one ρ_l must not run under another."""
    _, calls = own_cache
    budget = ["--variants", "ilqr", "--budget", "20000", "--seeds", "2", "--set", "task.horizon=60"]
    monkeypatch.setenv("TRAJOPT_STEP_COSTS", "2,3")
    first, _ = _run(tmp_path / "a", small=budget)
    monkeypatch.setenv("TRAJOPT_STEP_COSTS", "2,6")
    second, _ = _run(tmp_path / "b", small=budget)
    assert first["variants"]["ilqr"]["iterations"] == second["variants"]["ilqr"]["iterations"]  # the same spec
    assert _reused(second) == [False] and len(calls) == 2
    assert first["variants"]["ilqr"]["final_cost"] != second["variants"]["ilqr"]["final_cost"]


def test_the_key_is_the_same_in_another_process(tmp_path):
    """Nothing of one process (an object's id, Python's string hashing) is in the key: a second `trajopt compare`
    process reads the first one's trace."""
    import subprocess
    import sys

    env = {**os.environ, "TRAJOPT_CACHE": "1", "TRAJOPT_CACHE_DIR": str(tmp_path / "cache" / "jax"),
           "PYTHONHASHSEED": "random"}
    env.pop(traces.ENV, None)
    small = ["--variants", "zobg", "--iterations", "5", "--seeds", "2", "--set", "task.horizon=30", "--quiet"]
    for out in ("a", "b"):
        p = subprocess.run([sys.executable, "-m", "trajopt", "compare", STIFF, *small, "--out", str(tmp_path / out)],
                           env=env, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
        assert p.returncode == 0, p.stderr
    reused = [json.loads((tmp_path / out / "result.json").read_text())["variants"]["zobg"]["program"]["trace_reused"]
              for out in ("a", "b")]
    assert reused == [False, True]


def test_a_program_jax_cannot_export_is_traced_directly_and_not_tried_again(own_cache):
    """A host callback (MuJoCo's C simulator calls back into Python) cannot be exported: None, and the key
    remembers it, so the next run does not trace the function twice (once to try, once directly)."""
    folder, _ = own_cache
    python_calls = []

    def fn(x):
        python_calls.append(1)
        return jax.pure_callback(lambda a: np.asarray(a) * 2, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    args = (jnp.ones(3),)
    assert traces.lower(fn, args, "k" * 64, record=dict, restore=lambda r: None) is None
    assert len(python_calls) == 1 and len(list(folder.glob("*.trace"))) == 1
    assert traces.lower(fn, args, "k" * 64, record=dict, restore=lambda r: None) is None
    assert len(python_calls) == 1


def test_the_folder_is_trimmed_least_recently_used_first(tmp_path):
    for i, name in enumerate(["old", "mid", "new"]):
        p = tmp_path / f"{name}.trace"
        p.write_bytes(b"x" * 100)
        os.utime(p, (1000 + i, 1000 + i))
    traces._trim(tmp_path, limit=250)
    assert sorted(p.stem for p in tmp_path.glob("*.trace")) == ["mid", "new"]
    traces._trim(tmp_path, limit=100)
    assert [p.stem for p in tmp_path.glob("*.trace")] == ["new"]


def test_the_library_keeps_nothing_unless_the_cache_is_asked_for(monkeypatch):
    """The library writes no files unasked: with ``TRAJOPT_CACHE`` unset (the CLI sets it; a Python program
    importing trajopt does not), nothing is kept even where a caller passes an identity."""
    monkeypatch.delenv("TRAJOPT_CACHE", raising=False)
    assert not traces.enabled() and traces.folder() is None
    from trajopt.spec import load

    assert traces.problem_identity(load(STIFF)) is None


SWINGUP = str(PROBLEMS / "pendulum_swingup.toml")
MPC_SMALL = ["--seeds", "2", "--set", "mpc.episode=30", "--set", "success.hold=10", "--set", "mpc.horizon=20",
             "--set", "mpc.iterations=3", "--set", 'mpc.variants=["fobg_adam", "ilqr", "mppi"]']


def _mpc(out, *extra):
    invoke("mpc", SWINGUP, *MPC_SMALL, *extra, "--out", out, "--quiet")
    result = json.loads((out / "result.json").read_text())
    with np.load(out / "trajectory.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return result["variants"], arrays


def test_a_second_mpc_reads_its_episodes_back_and_runs_them_bit_for_bit(own_cache, tmp_path, monkeypatch):
    """The closed loop's programs (the batched episode, and one seed's start, plan and advance for the timing
    pass) are kept together per method; read back, the realised trajectories are those traced directly. An
    independent count of the batched episode's traces: its Python (`_Episode.run`) runs only when it is traced."""
    from trajopt.closedloop.episode import _Episode

    folder, _ = own_cache
    episodes = []
    real_run = _Episode.run

    def counted(self, *args, **kwargs):
        episodes.append(self.name)
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(_Episode, "run", counted)
    monkeypatch.setenv(traces.ENV, "0")
    direct, x_direct = _mpc(tmp_path / "direct")
    assert len(episodes) == 3
    monkeypatch.delenv(traces.ENV)
    cold, x_cold = _mpc(tmp_path / "cold")
    assert len(list(folder.glob("*.trace"))) == 3 and len(episodes) == 6  # one entry per method, its four programs
    warm, x_warm = _mpc(tmp_path / "warm")
    assert len(episodes) == 6, "the second mpc traced an episode again"
    assert [v["program"]["trace_reused"] for v in direct.values()] == [False] * 3
    assert [v["program"]["trace_reused"] for v in cold.values()] == [False] * 3
    assert [v["program"]["trace_reused"] for v in warm.values()] == [True] * 3
    assert x_direct.keys() == x_warm.keys() and x_direct
    for k in x_direct:
        np.testing.assert_array_equal(x_direct[k], x_cold[k], err_msg=k)
        np.testing.assert_array_equal(x_direct[k], x_warm[k], err_msg=k)
    for name in direct:
        assert direct[name]["closed_loop_cost"] == warm[name]["closed_loop_cost"]
        assert warm[name]["plan_seconds"]["p50"] > 0  # the timing pass ran the read-back plan program
    other, _ = _mpc(tmp_path / "other", "--set", "mpc.replan_every=2")  # another setting: another trace
    assert [v["program"]["trace_reused"] for v in other.values()] == [False] * 3
    # one method of the three, other seeds: its kept episode (a method's key holds its own table, seeds are arguments)
    one, x_one = _mpc(tmp_path / "one", "--set", 'mpc.variants=["mppi"]', "--seeds", "3,4")
    assert [v["program"]["trace_reused"] for v in one.values()] == [True] and len(episodes) == 9
    monkeypatch.setenv(traces.ENV, "0")
    one_direct, x_one_direct = _mpc(tmp_path / "one_direct", "--set", 'mpc.variants=["mppi"]', "--seeds", "3,4")
    assert one["mppi"]["closed_loop_cost"] == one_direct["mppi"]["closed_loop_cost"] != warm["mppi"]["closed_loop_cost"]
    for k in x_one:
        np.testing.assert_array_equal(x_one[k], x_one_direct[k], err_msg=k)


def test_a_run_of_some_variants_reads_the_traces_a_run_of_all_kept(own_cache, tmp_path):
    """Each run's key holds its own variant's table, not which variants run: ``--variants zobg`` after the file's
    three reads zobg's loop back, and runs it as the first run did."""
    _, calls = own_cache
    every, m_every = _run(tmp_path / "all")
    one, m_one = _run(tmp_path / "one", "--variants", "zobg")
    assert len(calls) == 3 and _reused(one) == [True]
    assert one["variants"]["zobg"]["final_cost"] == every["variants"]["zobg"]["final_cost"]
    assert m_one == [m for m in m_every if m["variant"] == "zobg"]
    # its own table is in its key: another sigma for zobg is another trace, and leaves fobg's where it was
    both, _ = _run(tmp_path / "both", "--variants", "zobg,fobg", "--set", "oracle.zobg.sigma=0.05")
    assert _reused(both) == [False, True] and len(calls) == 4


def test_seeds_reach_the_loop_as_arguments_so_other_seeds_read_the_same_trace(own_cache, tmp_path, monkeypatch):
    """The seeds' values are not in the key (their count is, as shapes): seeds 7 and 9 read back the loop kept for
    seeds 0 and 1, and give exactly what the loop traced directly for 7 and 9 gives, not the first run's numbers."""
    _, calls = own_cache
    first, _ = _run(tmp_path / "a")
    other, m_other = _run(tmp_path / "b", small=[*SMALL[:2], "--seeds", "7,9", *SMALL[4:]])
    assert _reused(other) == [True] * 3 and len(calls) == 3
    monkeypatch.setenv(traces.ENV, "0")
    direct, m_direct = _run(tmp_path / "c", small=[*SMALL[:2], "--seeds", "7,9", *SMALL[4:]])
    assert _reused(direct) == [False] * 3 and m_other == m_direct
    for name in first["variants"]:
        assert other["variants"][name]["final_cost"] == direct["variants"][name]["final_cost"]
        assert other["variants"][name]["final_cost"] != first["variants"][name]["final_cost"]


def _from_variant_tables(spec):
    """``spec`` written out without what a kept trace's key leaves out of each run (`traces.UNREAD_KEYS`: the
    [oracle] tables, which variants run besides, and [solve.optimizer]'s place: every option must be in the
    variant's own resolved table) and loaded again."""
    import tomli_w

    from trajopt.spec import loads

    resolved = spec.resolved()
    doc = {k: v for k, v in resolved.items() if k not in ("oracle", "method")}
    doc["solve"] = {k: v for k, v in resolved["solve"].items() if k not in ("optimizer", "oracles")}
    return loads(tomli_w.dumps(doc), source="tables")


OWN_TABLES = ['method.cem.population=32', 'variants.ms.oracle="zobg"', 'variants.ms.starts=3',
              'variants.ms.start_spread=0.1', 'variants.ms.sigma_schedule="linear"', 'variants.ms.sigma_final=0.01',
              'variants.ms.iterations=7', 'oracle.sigma=0.2', 'oracle.aobg.gamma=3.0', 'solve.optimizer.name="adam"',
              'solve.optimizer.step=0.01', 'variants.c.method="cem"', 'variants.c.starts=2',
              'solve.variants=["ms", "c", "aobg", "ilqr", "mppi"]']


def _table_cases() -> list:
    """Every shipped problem file; an MJCF one (its system builds a MuJoCo model) marked as the MJX tests are."""
    import tomllib

    from trajopt.studies.sources import MJCF_SYSTEMS

    try:
        import mujoco.mjx  # noqa: F401
        have_mjx = True
    except ImportError:
        have_mjx = False
    marks = [pytest.mark.mjx, pytest.mark.skipif(not have_mjx, reason="the [mjx] extra is not installed")]
    cases = []
    for p in sorted([*PROBLEMS.glob("*.toml"), *PROBLEMS.glob("suite/*.toml")]):
        name = str(p.relative_to(PROBLEMS))
        mjcf = tomllib.loads(p.read_text()).get("system", {}).get("name") in MJCF_SYSTEMS
        cases.append(pytest.param(name, id=name, marks=marks) if mjcf else pytest.param(name, id=name))
    return cases


@pytest.mark.parametrize("path", _table_cases())
def test_a_variants_own_table_builds_its_method(path):
    """What lets a run's key hold only its own variant's table (`traces.for_variant`): each variant's resolved table,
    with none of the [oracle], [method] and [solve.optimizer] tables it was merged from, builds the same method
    (compared by its repr, every field; a NaN sigma is a policy file's). Every shipped file, and on stiff pushing
    shared and per-oracle options, a method's defaults, a file optimiser, K starts, a σ schedule and own iterations."""
    from trajopt.spec import load

    spec = load(PROBLEMS / path, OWN_TABLES if path == "pushing_stiff.toml" else ())
    again = _from_variant_tables(spec)
    assert list(again.variants) == list(spec.variants)
    for name, v in spec.variants.items():
        assert repr(again.variants[name].method) == repr(v.method), name


def test_the_python_face_keeps_the_loops_of_a_loaded_file_and_of_nothing_else(own_cache, monkeypatch):
    """`trajopt.load(...).compare()` with the compilation cache asked for keeps its loops as the CLI does. A copy
    with another problem, or a method put into its variants, is not the file any more: it must not read the file's
    loop back (a stiffness is a constant of the loop), and runs as traced directly."""
    import dataclasses

    import trajopt

    _, calls = own_cache
    monkeypatch.setenv("TRAJOPT_CACHE", "1")
    small = ["solve.iterations=20", "solve.seeds=2", "task.horizon=60", 'solve.variants=["zobg", "fobg"]']
    loaded = trajopt.load(STIFF, small)
    first = loaded.compare()
    again = trajopt.load(STIFF, small).compare()
    assert len(calls) == 2 and [r.trace_reused for r in again.values()] == [True, True]
    for name in first:
        np.testing.assert_array_equal(first[name].cost, again[name].cost)

    softer = trajopt.load(STIFF, [*small, "system.stiffness=500.0"])
    swapped = dataclasses.replace(loaded, problem=softer.problem)
    got = swapped.compare()
    assert [r.trace_reused for r in got.values()] == [False, False] and len(calls) == 4
    direct = softer.compare()  # the softer file's own loops, traced and kept now
    for name in got:
        np.testing.assert_array_equal(got[name].cost, direct[name].cost)
        assert not np.array_equal(got[name].cost, first[name].cost)

    mine = trajopt.load(STIFF, small)
    mine.variants["zobg"] = softer.variants["fobg"]  # another method under the name
    assert [r.trace_reused for r in mine.compare(["zobg"]).values()] == [False]


def test_the_python_face_keeps_a_files_closed_loop(own_cache, monkeypatch):
    """`Loaded.mpc` builds everything from the file: its episodes are kept and read back."""
    import trajopt

    monkeypatch.setenv("TRAJOPT_CACHE", "1")
    items = ["mpc.episode=30", "success.hold=10", "mpc.horizon=20", "mpc.iterations=3", "mpc.seeds=2"]
    first = trajopt.load(SWINGUP, items).mpc(["mppi"])
    second = trajopt.load(SWINGUP, items).mpc(["mppi"])
    assert (first["mppi"].trace_reused, second["mppi"].trace_reused) == (False, True)
    np.testing.assert_array_equal(first["mppi"].X, second["mppi"].X)
