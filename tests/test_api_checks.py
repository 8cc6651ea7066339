"""The Python API checks what a problem file is checked for, before anything compiles (`trajopt.solver.check_run`);
user code that fails later is one `trajopt.SolveError` naming the variant; a seed whose every update was skipped
is not "ok". Small problems without a scan: each compile is a fraction of a second."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import trajopt
from trajopt import limits, solver
from trajopt.methods.base import as_count
from trajopt.oracles.base import make_info
from trajopt.solver import STATUS_ALL_SKIPPED, STATUS_OK, SolveError

ROOT = Path(__file__).resolve().parent.parent
KEY = jax.random.PRNGKey(0)


def quadratic(U0=None) -> trajopt.Problem:
    return trajopt.Problem("quad", jnp.ones((3, 2)) if U0 is None else U0, lambda U: jnp.sum(U**2))


GOOD = trajopt.GradientMethod(trajopt.Exact(), trajopt.SGD(0.1))


@pytest.fixture
def nothing_compiles(monkeypatch):
    """Any trace or compile of a loop fails the test: a refusal must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("a loop was traced before the arguments were refused")

    monkeypatch.setattr(solver, "_lower_checked", refuse)


# ------------------------------------------------------------------------------------------ arguments


BAD = [  # (what is changed, the error type, what the message says: the argument and what was found)
    ({"seeds": [2**32]}, ValueError, "seeds: found seed 4294967296, allowed: .* 0..4294967295"),
    ({"seeds": [3, 2**32 + 3]}, ValueError, "seeds: found seed 4294967299"),  # would repeat seed 3's noise
    ({"seeds": [-1]}, ValueError, "seeds: found seed -1"),
    ({"seeds": [0, 1, 0]}, ValueError, "seeds: found seed 0 twice"),
    ({"seeds": [0, 1.0]}, TypeError, r"seeds: found 1.0 \(float\) at position 1"),
    ({"seeds": [True]}, TypeError, r"seeds: found True \(bool\)"),
    ({"seeds": np.array([0.0, 1.0])}, TypeError, "seeds: found an array of shape .2. and dtype float64"),
    ({"seeds": []}, ValueError, "seeds: found none"),
    ({"seeds": [jax.random.key(1)]}, TypeError, "seeds: found Array.* at position 0"),  # its repr spans lines
    ({"seeds": 3}, TypeError, r"seeds: found 3 \(int\), .*range\(3\) for 3 seeds"),
    ({"seeds": range(limits.MAX_SEEDS + 1)}, ValueError, "seeds: found more than 100,000"),
    ({"iterations": -1}, ValueError, "iterations: found -1, allowed: an integer in 0..10,000,000"),
    ({"iterations": limits.MAX_ITERATIONS + 1}, ValueError, "iterations: found 10000001"),
    ({"iterations": 5.0}, TypeError, r"iterations: found 5.0 \(float\)"),
    ({"iterations": 2000, "seeds": range(50_001)}, ValueError, "iterations x seeds <= 100,000,000"),
    ({"chunk": 0}, ValueError, "chunk: found 0, allowed: None .* or an integer in 1..10,000,000"),
    ({"chunk": -3}, ValueError, "chunk: found -3"),
    ({"chunk": 2.5}, TypeError, r"chunk: found 2.5 \(float\)"),
    ({"key": 0}, TypeError, r"key: found 0 \(int\), allowed: one PRNG key"),
    ({"key": jnp.zeros((3, 2), jnp.uint32)}, TypeError, "key: found an array of shape .3, 2."),
    ({"problem": quadratic(jnp.array([[1.0, jnp.nan]]))}, ValueError, r"problem.U0: found nan at index \[0, 1\]"),
    ({"problem": quadratic(jnp.array([[1.0, jnp.inf]]))}, ValueError, "problem.U0: found inf"),
    ({"problem": quadratic(jnp.ones((2, 2), jnp.int32))}, TypeError, "problem.U0: found an array of dtype int32"),
    ({"problem": quadratic(jnp.ones((0, 2)))}, ValueError, r"problem.U0: found an array of shape \[0, 2\]"),
    ({"problem": quadratic([[1.0]])}, TypeError, r"problem.U0: found \[\[1.0\]\] \(list\)"),
    ({"problem": "pushing"}, TypeError, "problem: found 'pushing' .*allowed: a trajopt.Problem"),
    ({"method": trajopt.Exact()}, TypeError, "method: found .*allowed: a method with init.* and step"),
    ({"on_chunk": "print"}, TypeError, "on_chunk: found 'print'"),
    ({"name": 3}, TypeError, r"name: found 3 \(int\), allowed: None or a string"),
]


@pytest.mark.parametrize("change, error, message", BAD, ids=[f"{next(iter(c))}{i}" for i, (c, _, _) in enumerate(BAD)])
def test_solve_refuses_each_bad_argument_before_anything_compiles(nothing_compiles, change, error, message):
    args = {"problem": quadratic(), "method": GOOD, "key": KEY, "iterations": 3, "seeds": [0]} | change
    with pytest.raises(error, match=message) as e:
        trajopt.solve(args.pop("problem"), args.pop("method"), **args)
    text = str(e.value)
    assert "\n" not in text and ": found " in text and "allowed: " in text  # argument: found X, allowed: Y


def test_the_bounds_are_the_files_and_their_edges_are_allowed():
    from trajopt import spec

    assert (spec.MAX_SEED, spec.MAX_ITERATIONS, spec.MAX_HISTORY, spec.MAX_SEEDS) == \
        (limits.MAX_SEED, limits.MAX_ITERATIONS, limits.MAX_HISTORY, limits.MAX_SEEDS)
    assert solver.check_seeds([0, 2**32 - 1]).tolist() == [0, 4294967295]
    assert solver.check_seeds(np.array([5, 2], np.uint64)).tolist() == [5, 2]
    assert solver.check_seeds([jnp.int32(3), np.int64(4), 5]).tolist() == [3, 4, 5]  # integer scalars of any kind
    assert solver.check_seeds(range(limits.MAX_SEEDS)).size == limits.MAX_SEEDS
    assert solver.check_iterations(0) == 0 and solver.check_iterations(np.int64(10**7)) == 10**7
    assert solver.check_chunk(1) == 1 and solver.check_chunk(None) is None
    solver.check_key(jax.random.key(3))  # a typed key is one key too
    iterations, seeds, _ = solver.check_run(quadratic(), GOOD, key=KEY, iterations=1000, seeds=range(100_000))
    assert iterations * seeds.size == limits.MAX_HISTORY  # at the bound: allowed


def test_seeds_past_uint32_would_have_repeated_another_seeds_noise():
    # why seeds stop at 2**32 - 1: the key scheme folds a seed in as uint32, so 2**32 + 3 draws seed 3's noise
    a = jax.random.fold_in(KEY, 3)
    b = jax.random.fold_in(KEY, np.uint32((2**32 + 3) % 2**32))
    np.testing.assert_array_equal(a, b)


def test_compare_checks_every_variant_before_the_first_compiles(nothing_compiles):
    variants = {"a": GOOD, "b": trajopt.GradientMethod(trajopt.FoBG(samples=2, sigma=0.1), trajopt.SGD(0.1))}
    with pytest.raises(ValueError, match=r"iterations\['b'\]: found -2"):
        trajopt.compare(quadratic(), variants, key=KEY, iterations={"a": 3, "b": -2})
    with pytest.raises(TypeError, match=r"iterations\['b'\]: found 2.5 \(float\)"):
        trajopt.compare(quadratic(), variants, key=KEY, iterations={"a": 3, "b": 2.5})
    with pytest.raises(ValueError, match="iterations: found steps for 'c', which is not a variant"):
        trajopt.compare(quadratic(), variants, key=KEY, iterations={"a": 3, "b": 2, "c": 1})
    with pytest.raises(ValueError, match="iterations x seeds"):  # the second variant's own iterations x seeds
        trajopt.compare(quadratic(), variants, key=KEY, iterations={"a": 3, "b": 10**7}, seeds=range(11))
    with pytest.raises(ValueError, match="seeds: found seed 4294967296"):
        trajopt.compare(quadratic(), variants, key=KEY, iterations=3, seeds=[0, 2**32])
    with pytest.raises(TypeError, match=r"variants\['b'\]: found .*allowed: a method with init"):
        trajopt.compare(quadratic(), {"a": GOOD, "b": trajopt.FoBG()}, key=KEY, iterations=3)
    with pytest.raises(TypeError, match="variants: found the name 3"):
        trajopt.compare(quadratic(), {3: GOOD}, key=KEY, iterations=3)
    with pytest.raises(ValueError, match="variants: found none"):
        trajopt.compare(quadratic(), {}, key=KEY, iterations=3)
    with pytest.raises(ValueError, match="chunk: found 0"):
        trajopt.compare(quadratic(), variants, key=KEY, iterations=3, chunk=0)
    with pytest.raises(TypeError, match="compile_ahead: found 'yes'"):
        trajopt.compare(quadratic(), variants, key=KEY, iterations=3, compile_ahead="yes")


def test_prepare_checks_too(nothing_compiles):
    with pytest.raises(ValueError, match="seeds: found seed -5"):
        solver.prepare(quadratic(), GOOD, key=KEY, iterations=3, seeds=[-5])


def test_loaded_compare_checks_its_arguments_before_anything_compiles(nothing_compiles):
    loaded = trajopt.load(ROOT / "problems" / "pushing_stiff.toml", ["solve.iterations=5", "solve.seeds=2"])
    with pytest.raises(ValueError, match="variants: found 'aobg' twice"):
        loaded.compare(["aobg", "aobg"])
    with pytest.raises(TypeError, match=r"variants: found 3 \(int\)"):
        loaded.compare(["aobg", 3])
    with pytest.raises(TypeError, match=r"iterations: found 2.5 \(float\)"):
        loaded.compare(iterations=2.5)
    with pytest.raises(ValueError, match="iterations: found 0, allowed: an integer in 1.."):
        loaded.compare(iterations=0)
    with pytest.raises(ValueError, match="seeds: found seed 4294967296"):
        loaded.compare(seeds=[2**32])
    with pytest.raises(ValueError, match="chunk: found 0"):
        loaded.compare(["aobg"], chunk=0)


def test_a_chunk_longer_than_the_run_is_the_runs_length():
    # a chunk of 10**6 for a 4-iteration run used to compile (and allocate) outputs for 10**6 iterations
    loop = solver.prepare(quadratic(), GOOD, key=KEY, iterations=4, seeds=[0, 1], chunk=10**6)
    assert loop.chunk == 4
    r = loop.run()
    np.testing.assert_array_equal(r.cost, trajopt.solve(quadratic(), GOOD, key=KEY, iterations=4, seeds=[0, 1],
                                                        chunk=1).cost)


# ------------------------------------------------------------------------------------------ user code that fails


class HalvingState(NamedTuple):
    U: jax.Array


class HalvingInfo(NamedTuple):
    value: jax.Array
    rollouts: jax.Array
    gradients: jax.Array


@dataclass(frozen=True)
class Halving:
    """U <- U / 2 per step; the step asks the host for its rollout count, and the host raises once U[0, 0] is
    below ``raise_below`` (an error at run time, in a compiled chunk: XLA's runtime error)."""

    raise_below: float = -1.0
    name: ClassVar[str] = "halving"

    def init(self, key, problem, U0):
        return HalvingState(U0)

    def step(self, key, problem, state):
        def host(u):
            if u < self.raise_below:
                raise RuntimeError(f"u = {float(u):g} is below {self.raise_below:g}\nsecond line")
            return np.asarray(1, np.int32)

        calls = jax.pure_callback(host, jax.ShapeDtypeStruct((), jnp.int32), state.U[0, 0], vmap_method="sequential")
        return HalvingState(state.U / 2), HalvingInfo(problem.objective(state.U), as_count(calls), as_count(0))


def test_user_code_failing_when_traced_is_one_solve_error_naming_the_variant():
    def branchy(U):  # a Python `if` on a traced value: fine eagerly, an error under jit and grad
        return jnp.sum(U**2) if U[0, 0] > 0 else 0.0

    with pytest.raises(SolveError) as e:
        trajopt.solve(trajopt.Problem("branchy", jnp.ones((3, 2)), branchy), GOOD, key=KEY, iterations=3, name="mine")
    assert str(e.value).startswith("variant 'mine' failed while tracing: TracerBoolConversionError: Attempted boolean")
    assert "\n" not in str(e.value) and e.value.variant == "mine" and e.value.stage == "tracing"
    assert type(e.value.__cause__).__name__ == "TracerBoolConversionError"
    mismatch = trajopt.Problem("shapes", jnp.ones((3, 2)), lambda U: jnp.sum(U * jnp.ones(4)))
    with pytest.raises(SolveError, match="variant 'exact' failed while tracing: .*shapes") as e:  # default name
        trajopt.solve(mismatch, GOOD, key=KEY, iterations=3)
    assert isinstance(e.value.__cause__, (TypeError, ValueError))


def test_user_code_failing_while_running_keeps_the_variants_that_finished():
    # U halves each step from 1: below 0.1 at iteration 4 (U = 1/16), in the third chunk of two iterations
    variants = {"fine": Halving(), "breaks": Halving(raise_below=0.1), "after": Halving()}
    with pytest.raises(SolveError) as e:
        trajopt.compare(quadratic(), variants, key=KEY, iterations=6, seeds=[0, 1], chunk=2)
    err = e.value
    # XLA's runtime error carries the callback's traceback: the line shown is its header and the user's exception
    assert re.fullmatch(r"variant 'breaks' failed while running: \w+: .*callback: RuntimeError: u = 0\.0625 is below "
                        r"0\.1", str(err)), str(err)
    assert err.variant == "breaks" and err.stage == "running" and "\n" not in str(err)
    assert "RuntimeError: u = 0.0625 is below 0.1" in str(err.__cause__)
    assert list(err.results) == ["fine"]  # what finished is kept; the variant after it did not run
    fine = err.results["fine"]
    assert fine.status == [STATUS_OK] * 2 and fine.iterations == 6
    np.testing.assert_allclose(fine.cost[0], 6 * 0.25 ** np.arange(7), rtol=1e-14)  # f(U_k) = 6 / 4^k


# ------------------------------------------------------------------------------------------ skipped updates


@dataclass(frozen=True)
class UpTo:
    """Gradient -1 (SGD climbs by its step) while U[0, 0] < ``limit``; NaN from there on."""

    limit: float
    name: ClassVar[str] = "upto"

    def estimate(self, key, problem, U):
        grad = jnp.where(U[0, 0] < self.limit, -1.0, jnp.nan) * jnp.ones_like(U)
        return grad, make_info(problem.objective(U), rollouts=1)


def test_a_seed_whose_every_update_was_skipped_is_not_ok():
    method = trajopt.GradientMethod(UpTo(limit=0.25), trajopt.SGD(0.1), skip_non_finite=True)
    # from U = 0: updates at U00 = 0, 0.1, 0.2; U00 = 0.3 is past the limit: the last 2 of 5 updates are skipped
    some = trajopt.solve(quadratic(jnp.zeros((1, 1))), method, key=KEY, iterations=5, seeds=[0, 1])
    assert some.status == [STATUS_OK, STATUS_OK] and some.skipped.tolist() == [2, 2]
    np.testing.assert_allclose(some.U, 0.3, rtol=1e-12)
    # from U = 1, past the limit: every update skipped, the seed never left U0
    none = trajopt.solve(quadratic(jnp.ones((1, 1))), method, key=KEY, iterations=5, seeds=[0, 1])
    assert none.status == [STATUS_ALL_SKIPPED, STATUS_ALL_SKIPPED] and none.skipped.tolist() == [5, 5]
    assert none.failed_at.tolist() == [-1, -1]  # it did not stop: it ran every iteration without moving
    np.testing.assert_array_equal(none.U, 1.0)
    np.testing.assert_array_equal(none.final_cost, 1.0)
    assert STATUS_ALL_SKIPPED in solver.STATUSES
