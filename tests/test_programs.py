"""Compile once (trajopt.programs): a loop whose constants are inputs computes what the constant loop computes, at
any values of them, and runs that differ only in them share one compilation; a study grid compiles once."""

import csv
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from builders import xla_compiles
from trajopt import programs, solver
from trajopt import spec as spec_mod

SMALL = ["task.horizon=20"]


def _run(sets, variant="aobg"):
    spec = spec_mod.load("problems/pushing_stiff.toml", SMALL + list(sets))
    return spec.problem(), spec.variants[variant].method


def _solve(problem, method, lift=None, iterations=12):
    return solver.prepare(problem, method, key=jax.random.PRNGKey(3), iterations=iterations, seeds=[0, 1],
                          lift=lift).run()


def _study_both_ways(tmp_path, monkeypatch, text: str) -> dict:
    """{mode: (study folder, rows of study.csv, XLA compilations)} of the study ``text`` run with compile once on
    ("1") and off ("0"), each from an empty cache of compiled programs."""
    from typer.testing import CliRunner

    from trajopt.cli import app

    study = tmp_path / "study.toml"
    study.write_text(text)
    out = {}
    for mode in ("1", "0"):
        monkeypatch.setenv(programs.ENV, mode)
        programs.CACHE.clear()
        compiles = xla_compiles(monkeypatch)
        folder = tmp_path / f"out{mode}"
        result = CliRunner().invoke(app, ["study", str(study), "--out", str(folder), "--quiet"])
        assert result.exit_code == 0, result.output
        out[mode] = (folder, list(csv.DictReader(open(folder / "study.csv"))), len(compiles))
    return out


def test_lifted_function_reads_its_constants_from_inputs():
    """Every literal and array constant read from the inputs: other input values give what the function traced
    at those values gives (a literal wired to the wrong input would not)."""

    def make(k, c, a):
        def f(x):
            y = jax.lax.fori_loop(0, 3, lambda i, y: jax.lax.cond(y[0] > 0.5, lambda y: y * k, lambda y: y + c, y), x)
            z = jax.lax.scan(lambda cr, v: (cr * c + v, cr), 0.25, x)[0]
            w = jax.lax.while_loop(lambda s: s[0] < 3.0, lambda s: (s[0] + c, s[1] * k), (0.0, 1.0))[1]
            return jnp.sum(jax.jit(lambda q: jnp.sin(q * k) @ a)(y)) + z + w

        return f

    x = jnp.linspace(0.1, 0.9, 3)
    a1, a2 = jnp.array([1.0, 2.0, 3.0]), jnp.array([0.5, -1.0, 2.0])
    one, other = make(0.3, 1.5, a1), make(0.7, 0.9, a2)
    lifted = programs.lift(one, x)
    probe = programs.constants(one, x).differing(programs.constants(other, x))
    assert probe is not None and len(probe.indices) >= 3  # k, c and the array a (written into the jaxpr) vary
    lifted_at = programs.lift(one, x, positions=probe)
    theirs = programs.lift(other, x, positions=probe)
    compiled = jax.jit(lifted_at.fn).lower(lifted_at.inputs, x).compile()
    assert float(compiled(lifted_at.inputs, x)) == pytest.approx(float(one(x)), rel=1e-12)
    assert float(compiled(theirs.inputs, x)) == pytest.approx(float(other(x)), rel=1e-12)  # one program, their numbers
    assert float(jax.jit(lifted.fn)(lifted.inputs, x)) == pytest.approx(float(one(x)), rel=1e-12)
    assert lifted.n_lifted > lifted_at.n_lifted > 0


def test_a_compiled_program_is_shared_only_with_the_same_structures():
    """Two methods' states can be the same arrays in other classes (MPPI's and predictive sampling's): the same text,
    but a compiled program takes and returns only its own structures, so they must not share one."""
    from collections import namedtuple

    A, B = namedtuple("A", "x"), namedtuple("B", "x")
    identity = lambda s: s  # noqa: E731
    la, lb = jax.jit(identity).lower(A(jnp.ones(2))), jax.jit(identity).lower(B(jnp.ones(2)))
    assert la.as_text() == lb.as_text()
    programs.CACHE.clear()
    programs.compile(la, lambda lowered: lowered.compile())
    again, reused = programs.compile(jax.jit(identity).lower(A(jnp.ones(2))), lambda lowered: lowered.compile())
    other, reused_other = programs.compile(lb, lambda lowered: lowered.compile())
    assert reused and not reused_other
    assert type(other(B(jnp.ones(2)))) is B


def test_a_program_asked_for_by_two_threads_at_once_is_compiled_once():
    """The CLI compiles two variants at once: their shared final evaluation (the same text) is compiled by the first
    thread to ask for it, and the second waits for that program instead of compiling it again; a compile that fails
    lets the waiting thread compile it itself."""
    import threading
    import time

    lowered = jax.jit(lambda x: jnp.sin(x) * 3.0).lower(jnp.ones(4))
    programs.CACHE.clear()
    compiled, started = [], threading.Event()

    def slow(lowered):
        compiled.append(1)
        started.set()
        time.sleep(0.3)  # the second thread asks while this one compiles
        return lowered.compile()

    out = []
    first = threading.Thread(target=lambda: out.append(programs.compile(lowered, slow)))
    first.start()
    started.wait()
    second = programs.compile(lowered, slow)
    first.join()
    assert len(compiled) == 1 and second[1] and not out[0][1] and second[0] is out[0][0]

    programs.CACHE.clear()
    other = jax.jit(lambda x: jnp.cos(x) * 3.0).lower(jnp.ones(4))
    failing, errors = threading.Event(), []

    def fails(lowered):
        failing.set()
        time.sleep(0.3)
        raise RuntimeError("no")

    def first_try():
        try:
            programs.compile(other, fails)
        except RuntimeError as e:
            errors.append(e)

    thread = threading.Thread(target=first_try)
    thread.start()
    failing.wait()
    program, reused = programs.compile(other, lambda lowered: lowered.compile())
    thread.join()
    assert len(errors) == 1 and not reused and float(program(jnp.zeros(4))[0]) == 3.0


def test_runs_differing_in_parameters_share_one_compilation(monkeypatch):
    """Stiffness and σ as inputs: the second run reuses the first's compiled loop (one XLA compilation between them,
    counted at XLA), and computes its own numbers (equal to its constant loop's up to the last bits at a soft
    stiffness)."""
    base, k_other, s_other = _run(["system.stiffness=30"]), _run(["system.stiffness=60"]), _run(["oracle.sigma=0.2"])
    consts = [solver.loop_constants(p, m, key=jax.random.PRNGKey(3), iterations=12, seeds=[0, 1])
              for p, m in (base, k_other, s_other)]
    positions = consts[0].differing(consts[1]) | consts[0].differing(consts[2])
    assert positions.indices
    programs.CACHE.clear()
    compiles = xla_compiles(monkeypatch)
    first = _solve(*base, lift=positions)
    both = _run(["system.stiffness=60", "oracle.sigma=0.2"])
    second = _solve(*both, lift=positions)
    assert (first.reused, second.reused) == (False, True) and len(compiles) == 1
    assert first.compilation_cache != "memory" and second.compilation_cache == "memory"  # one compile: the first
    assert first.lifted == second.lifted == len(positions.indices)
    alone = _solve(*both)  # its constants baked in
    assert alone.lifted is None and not alone.reused
    np.testing.assert_allclose(second.cost, alone.cost, rtol=1e-11)
    assert not np.allclose(second.cost, first.cost)  # its own stiffness and σ, not the first run's


def test_a_shape_is_not_a_parameter_and_compile_once_can_be_off(monkeypatch):
    base, more = _run([]), _run(["oracle.samples=12"])
    a = solver.loop_constants(*base, key=jax.random.PRNGKey(3), iterations=12, seeds=[0, 1])
    b = solver.loop_constants(*more, key=jax.random.PRNGKey(3), iterations=12, seeds=[0, 1])
    assert a.differing(b) is None  # another sample count is another program
    monkeypatch.setenv(programs.ENV, "0")
    positions = programs.Positions(frozenset({0}))
    assert _solve(*base, lift=positions).lifted is None


@pytest.mark.slow
def test_a_study_grid_compiles_once(tmp_path, monkeypatch):
    """A 2 x 2 grid over stiffness and σ: one XLA compilation (counted at XLA, not by the cache), three cells
    reusing it (result.json says so), each cell's numbers those of its own constant loop up to the last bits
    (TRAJOPT_COMPILE_ONCE=0: one compilation each, and the final evaluation once per stiffness: σ does not change
    the problem)."""
    runs = _study_both_ways(tmp_path, monkeypatch, f'''title = "2 x 2"
problems = ["{Path("problems/pushing_stiff.toml").resolve().as_posix()}"]
variants = ["aobg"]
seeds = 2
iterations = 12
[set]
"task.horizon" = 20
[grid]
"system.stiffness" = [30.0, 60.0]
"oracle.sigma" = [0.1, 0.2]
''')
    folder, rows, compiles = runs["1"]
    programs_ = [json.loads(p.read_text())["variants"]["aobg"]["program"]
                 for p in sorted(folder.glob("cells/**/result.json"))]
    assert sorted(p["reused"] for p in programs_) == [False, True, True, True] and compiles == 1
    assert [p["final_evaluation"] for p in programs_] == ["loop"] * 4  # in the group's one program
    assert runs["0"][2] == 4 + 2  # each cell's loop, and the final evaluation of each of the two problems
    for a, b in zip(rows, runs["0"][1]):
        assert (a["system.stiffness"], a["oracle.sigma"], a["seed"]) == (b["system.stiffness"], b["oracle.sigma"],
                                                                         b["seed"])
        assert float(a["final_cost"]) == pytest.approx(float(b["final_cost"]), rel=1e-11)


@pytest.mark.slow
def test_a_sweep_compiles_each_oracle_once(tmp_path, monkeypatch):
    """A sweep over the stiffness: each oracle's estimate compiles once for the three points (counted by the cache),
    and every point's statistics are those of its own constant program up to the last bits."""
    from typer.testing import CliRunner

    from trajopt.cli import app

    tables = {}
    for mode in ("1", "0"):
        monkeypatch.setenv(programs.ENV, mode)
        programs.CACHE.clear()
        compiles = xla_compiles(monkeypatch)
        out = tmp_path / f"sweep{mode}"
        r = CliRunner().invoke(app, ["sweep", "problems/pushing_stiff.toml", "--over", "system.stiffness=10,30,100",
                                     "--set", "task.horizon=20", "--oracles", "fobg,zobg,aobg", "--repeats", "4",
                                     "--out", str(out), "--quiet"])
        assert r.exit_code == 0, r.output
        tables[mode] = json.loads((out / "sweep.json").read_text())
        if mode == "1":
            lifted = tables[mode]["lifted_constants"]
            assert set(lifted) == {"fobg", "zobg", "aobg"} and all(n for n in lifted.values())
            assert len(compiles) == 3  # one XLA compilation per oracle, not per point (counted at XLA)
    assert tables["0"]["lifted_constants"] is None
    rows1, rows0 = tables["1"]["rows"], tables["0"]["rows"]
    assert len(rows1) == len(rows0) == 9
    for a, b in zip(rows1, rows0):
        assert (a["oracle"], a["system.stiffness"]) == (b["oracle"], b["system.stiffness"])
        for k, v in b.items():
            if isinstance(v, float):
                assert a[k] == pytest.approx(v, rel=1e-10, nan_ok=True), k


@pytest.mark.slow
def test_a_closed_loop_grid_shares_its_programs(tmp_path, monkeypatch):
    """A closed-loop study over the plant's mass: the second cell reuses the first's four programs (the batched
    episode and the timing pass's start, plan and advance: 4 XLA compilations for 2 cells, counted at XLA), and its
    numbers are those of its own constant programs."""
    monkeypatch.setenv("TRAJOPT_STEP_COSTS", "2,3")
    runs = _study_both_ways(tmp_path, monkeypatch, f'''title = "closed loop, 1 x 2"
verb = "mpc"
problems = ["{Path("problems/suite/pushing_stiff.toml").resolve().as_posix()}"]
variants = ["mppi"]
seeds = 2
[set]
"mpc.episode" = 220
"mpc.iterations" = 2
[grid]
"plant.scale.mass" = [1.5, 2.0]
''')
    # with compile once, only the first cell's four; without, the programs the mass reaches compile again
    assert runs["1"][2] == 4 and runs["0"][2] > 4
    costs = [[float(r["closed_loop_cost"]) for r in runs[m][1]] for m in ("1", "0")]
    assert costs[0] == pytest.approx(costs[1], rel=1e-10) and len(set(costs[0])) == 4
