"""The method contract, checked over every registered method (a new method is covered by registering it), plus a
method written here, the way a user would: a random search in one class and one registry line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trajopt.methods import CEM, ILQR, METHODS, GradientMethod, MultiStart, check_info
from trajopt.methods.base import as_count, as_float
from trajopt.oracles import FoBG
from trajopt.problem import QuadraticCost, trajectory_problem
from trajopt.solver import solve


class RandomSearchState(NamedTuple):
    U: jax.Array
    value: jax.Array


class RandomSearchInfo(NamedTuple):
    value: jax.Array
    rollouts: jax.Array
    gradients: jax.Array
    accepted: jax.Array


@dataclass(frozen=True)
class RandomSearch:
    """Try U + sigma * w, keep it if f decreases: one rollout per step."""

    sigma: float = 0.05
    name: ClassVar[str] = "random_search_test"

    def init(self, key, problem, U0):
        return RandomSearchState(U=U0, value=problem.objective(U0))

    def step(self, key, problem, state):
        trial = state.U + self.sigma * jax.random.normal(key, state.U.shape, state.U.dtype)
        f = problem.objective(trial)
        better = f < state.value
        new = RandomSearchState(U=jnp.where(better, trial, state.U), value=jnp.where(better, f, state.value))
        return new, RandomSearchInfo(value=as_float(state.value), rollouts=as_count(1), gradients=as_count(0),
                                     accepted=as_float(better))


@pytest.fixture
def registered_random_search():
    """The one registry line a new method needs, undone afterwards (the registry is process-wide)."""
    METHODS.register(RandomSearch.name, RandomSearch)
    try:
        yield RandomSearch
    finally:
        METHODS._entries.pop(RandomSearch.name, None)


# Methods that cannot be built from defaults alone: how the contract test builds them. The method written here
# joins every registered one (in a user's package it would be one module and one METHODS.register line).
NEEDS_ARGUMENTS = {"gradient": lambda: GradientMethod(FoBG(samples=4, sigma=0.1)), RandomSearch.name: RandomSearch,
                   # K starts of a method (a variant's `starts`): the same contract
                   "starts_fobg": lambda: MultiStart(GradientMethod(FoBG(samples=2, sigma=0.1)), starts=3),
                   "starts_ilqr": lambda: MultiStart(ILQR(), starts=2, start_spread=0.1),
                   "starts_cem": lambda: MultiStart(CEM(), starts=2, start_spread=0.01)}
CASES = [*METHODS.names(), RandomSearch.name, "starts_fobg",
         *(pytest.param(n, marks=pytest.mark.slow) for n in ("starts_ilqr", "starts_cem"))]  # 20 s: CI's slow job


def build(name: str):
    return NEEDS_ARGUMENTS.get(name, METHODS.get(name) if name in METHODS else None)()


def small_problem():
    """A 2-state linear system with a quadratic cost: every method applies (iLQR too)."""
    A = jnp.array([[1.0, 0.1], [0.0, 1.0]])
    B = jnp.array([[0.0], [0.1]])
    cost = QuadraticCost(Q=jnp.eye(2), R=0.1 * jnp.eye(1), Qf=10 * jnp.eye(2), goal=jnp.array([1.0, 0.0]))
    return trajectory_problem("lq", lambda x, u: A @ x + B @ u, jnp.zeros(2), cost, jnp.zeros((8, 1)))


@pytest.mark.parametrize("name", CASES)
def test_method_contract(name):
    method = build(name)
    problem = small_problem()
    # immutable and hashable configuration
    hash(method)
    if dataclasses.is_dataclass(method):
        field = dataclasses.fields(method)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(method, field, getattr(method, field))
    key = jax.random.PRNGKey(1)
    state = method.init(key, problem, problem.U0)
    assert state.U.shape == problem.U0.shape and state.U.dtype == problem.U0.dtype
    new_state, info = jax.jit(lambda s: method.step(jax.random.fold_in(key, 0), problem, s))(state)
    check_info(info, name)
    assert jnp.issubdtype(info.rollouts.dtype, jnp.integer) and jnp.issubdtype(info.gradients.dtype, jnp.integer)
    assert int(info.rollouts) >= 0 and int(info.gradients) >= 0
    assert int(info.rollouts) + int(info.gradients) > 0, "a step that moves must spend simulator calls"
    # value is f of the iterate the step started from
    np.testing.assert_allclose(float(info.value), float(problem.objective(state.U)), rtol=1e-12)
    assert new_state.U.shape == problem.U0.shape
    assert jax.tree_util.tree_structure(new_state) == jax.tree_util.tree_structure(state)


@pytest.mark.parametrize("name", CASES)
def test_method_under_solve_seed_and_chunk_invariance(name):
    method = build(name)
    problem = small_problem()
    key = jax.random.PRNGKey(7)
    batch = solve(problem, method, key=key, iterations=6, seeds=[0, 1, 2], chunk=4)
    alone = solve(problem, method, key=key, iterations=6, seeds=[2], chunk=1)
    np.testing.assert_allclose(alone.cost[0], batch.cost[2], rtol=1e-10, atol=1e-12)
    assert batch.status == ["ok"] * 3
    assert set(batch.history) >= {"value", "rollouts", "gradients"}
    assert all(v.shape == (3, 6) for v in batch.history.values())
    # every method's history records f of each iterate; the last entry is f of the returned U
    np.testing.assert_allclose(batch.cost[:, :-1], batch.history["value"])
    np.testing.assert_allclose(batch.final_cost, [float(problem.objective(jnp.asarray(u))) for u in batch.U], rtol=1e-12)
    assert batch.counts("rollouts")[-1] == np.sum(np.max(batch.history["rollouts"], axis=0))


def test_user_method_runs_from_a_problem_file(tmp_path, registered_random_search):
    """A method registered by name runs as a variant of a problem file, with its keys validated."""
    from trajopt import spec

    problem = tmp_path / "p.toml"
    problem.write_text((
        "[system]\nname = \"pushing\"\nstiffness = 10.0\n[task]\nhorizon = 20\nx0 = [0.0, 1.0, 0.0, 0.0]\n"
        "goal = [1.0, 2.0, 0.0, 0.0]\nQ = [0.1, 10.0, 0.1, 0.1]\nR = [1.0]\nu_init = 0.1\n"
        "[solve]\niterations = 5\nseeds = 2\nvariants = [\"rs\", \"fobg\"]\n"
        "[variants.rs]\nmethod = \"random_search_test\"\nsigma = 0.02\n"))
    s = spec.load(problem)
    assert s.variants["rs"].method == RandomSearch(sigma=0.02)
    assert s.variants["fobg"].kind == "oracle"
    with pytest.raises(spec.SpecError, match=r"variants\.rs\.sigm.*did you mean 'sigma'"):
        spec.load(problem, ["variants.rs.sigm=0.1"])
