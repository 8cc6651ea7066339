"""The ``evosax`` method (`trajopt.methods.evolution`, the optional ``[evosax]`` extra): skipped without evosax.

CI's extra step: ``pip install -e ".[evosax]" && pytest -n 0 tests/test_evosax.py``. With evosax installed the
registry-wide tests cover the method too (tests/test_counts.py's independent host-callback count, the batch
invariance and the method contract iterate `trajopt.methods.METHODS`).

* CMA-ES, Sep-CMA-ES, OpenAI-ES and SNES through ``trajopt compare`` on a small problem: exit 0, the counts
  population x B per step, every strategy lowers the cost; MultiStart over one (K x the method's calls + K to
  compare the starts);
* a closed-loop episode (`trajopt.closedloop.mpc`): the counts per replan, and the warm start carrying the
  strategy's state with its mean at the shifted plan's knots;
* an unknown strategy, and a population a strategy refuses: exit 2, one line naming the key and what is allowed.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("evosax", reason="the optional [evosax] extra is not installed (pip install -e '.[evosax]')")

from trajopt.cli import app  # noqa: E402
from trajopt.closedloop import mpc  # noqa: E402
from trajopt.closedloop.episode import warm_start  # noqa: E402
from trajopt.methods import METHODS, Evosax  # noqa: E402
from trajopt.problem import QuadraticCost, trajectory_problem  # noqa: E402

SOFT = str(Path(__file__).resolve().parent.parent / "problems" / "pushing_soft.toml")
STRATEGIES = ("CMA_ES", "Sep_CMA_ES", "Open_ES", "SNES")
POP, ITERATIONS, HORIZON = 8, 4, 12


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def variant(name: str, **keys) -> list[str]:
    out = ["--set", f'variants.{name}.method="evosax"']
    for k, v in keys.items():
        out += ["--set", f"variants.{name}.{k}={json.dumps(v)}"]
    return out


@pytest.fixture(scope="module")
def compare_summary(tmp_path_factory):
    """One compare: the four strategies (population 8, 4 knots, step size 0.3) and MultiStart over CMA-ES (2 starts),
    2 seeds, 12 steps of the soft pushing task."""
    out = tmp_path_factory.mktemp("evosax") / "run"
    args = []
    for s in STRATEGIES:
        args += variant(s.lower(), strategy=s, population=POP, knots=4, sigma_init=0.3)
    args += variant("cma_x2", strategy="CMA_ES", population=POP, knots=4, sigma_init=0.3, starts=2, start_spread=0.1)
    names = [s.lower() for s in STRATEGIES] + ["cma_x2"]
    result = invoke("compare", SOFT, "--iterations", ITERATIONS, "--seeds", 2, "--set", f"task.horizon={HORIZON}",
                    *args, "--set", f"solve.variants={json.dumps(names)}", "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return json.loads((out / "result.json").read_text())


def test_registered():
    assert METHODS.get("evosax") is Evosax


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_runs_through_compare_and_counts_population_rollouts(compare_summary, strategy):
    """Exit 0; rollouts = iterations x population (B = 1 open loop), no backward passes; both seeds' best cost finite
    and below the initial cost (each strategy lowers it, if only a little: 12 steps of pushing barely reach)."""
    v = compare_summary["variants"][strategy.lower()]
    assert v["status"] == ["ok", "ok"]
    assert v["rollouts"] == ITERATIONS * POP and v["gradients"] == 0
    assert all(np.isfinite(v["best_cost"])) and max(v["best_cost"]) < v["initial_cost"]


def test_multistart_over_evosax(compare_summary):
    """2 starts of CMA-ES: 2 x population per step, plus 2 evaluations to compare the starts (evosax does not count
    f of its mean)."""
    v = compare_summary["variants"]["cma_x2"]
    assert v["status"] == ["ok", "ok"]
    assert v["rollouts"] == ITERATIONS * (2 * POP + 2)


def test_unknown_strategy_is_refused_with_the_key_and_the_names(tmp_path):
    out = tmp_path / "out"
    result = invoke("compare", SOFT, "--iterations", 2, "--seeds", 1, "--set", "task.horizon=8",
                    *variant("e", strategy="CMA"), "--set", 'solve.variants=["e"]', "--out", out)
    assert result.exit_code == 2, result.output
    line = " ".join(result.stderr.split())
    assert "variants.e.strategy: found 'CMA', allowed: one of" in line
    assert all(name in line for name in STRATEGIES) and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_a_population_the_strategy_refuses_is_refused(tmp_path):
    """OpenAI-ES samples antithetic pairs: an odd population is refused at the key, before anything runs."""
    result = invoke("compare", SOFT, "--iterations", 2, "--seeds", 1, "--set", "task.horizon=8",
                    *variant("e", strategy="Open_ES", population=7), "--set", 'solve.variants=["e"]',
                    "--out", tmp_path / "out")
    assert result.exit_code == 2 and "variants.e.population: found 7" in " ".join(result.stderr.split())


# ------------------------------------------------------------------------------------------------- closed loop

A = jnp.array([[1.0, 0.1], [0.0, 1.0]])
B = jnp.array([[0.0], [0.1]])
H = 6


def lin_problem():
    cost = QuadraticCost(Q=jnp.eye(2), R=0.1 * jnp.eye(1), Qf=10.0 * jnp.eye(2), goal=jnp.array([1.0, 0.0]))
    return trajectory_problem("double_integrator", lambda x, u: A @ x + B @ u, jnp.zeros(2), cost, jnp.zeros((H, 1)))


def test_a_closed_loop_episode_counts_population_per_step():
    """trajopt.closedloop.mpc with CMA-ES: 8 plant steps, horizon 6, a replan every 2 steps, 3 generations each:
    every replan spends 3 x population rollouts; the episode is finite and ends nearer the goal than it started."""
    method = Evosax(strategy="CMA_ES", population=POP, knots=3, u_min=-5.0, u_max=5.0)
    res = mpc(lin_problem(), {"cma": method}, episode=8, horizon=H, replan_every=2, iterations=3,
              key=jax.random.PRNGKey(0), seeds=(0, 1), time_plans=False)["cma"]
    assert res.rollouts.shape == (2, 4) and np.all(res.rollouts == 3 * POP) and np.all(res.gradients == 0)
    assert list(res.status) == ["ok", "ok"] and np.all(np.isfinite(res.closed_loop_cost))
    assert np.all(np.abs(res.X[:, -1, 0] - 1.0) < 1.0)


def test_warm_start_carries_the_strategy_state_with_the_mean_at_the_shifted_knots():
    """After two generations, a replan shifted by r = 2: the step size, covariance and paths are the strategy's own,
    the mean is the shifted plan's knots (U at the knot times 0, 3, 5 of 6 steps: the plan at 2, 5, 5 held), the
    controls their spline. Catches: the strategy re-initialised (sigma and C back to their start), the mean left at
    the old plan."""
    problem = lin_problem()
    method = Evosax(strategy="CMA_ES", population=POP, knots=3)
    key = jax.random.PRNGKey(1)
    step = jax.jit(lambda k, s: method.step(k, problem, s))
    state = method.init(key, problem, problem.U0)
    for k in range(2):
        state, _ = step(jax.random.fold_in(key, k), state)
    P = np.asarray(state.U)
    U = jnp.asarray(np.concatenate([P[2:], np.repeat(P[-1:], 2, axis=0)]))
    new = warm_start(method, jax.random.fold_in(key, 99), problem, state, U, 2)
    np.testing.assert_array_equal(new.knots, P[[2, 5, 5]])
    np.testing.assert_array_equal(np.asarray(new.es.mean).reshape(3, 1), P[[2, 5, 5]])
    fresh = method.init(key, problem, problem.U0).es
    for field in ("std", "C", "p_std", "p_c"):
        np.testing.assert_array_equal(getattr(new.es, field), getattr(state.es, field))
        assert not np.array_equal(getattr(state.es, field), getattr(fresh, field))  # they had moved
    next_state, info = step(jax.random.fold_in(key, 100), new)
    assert int(info.rollouts) == POP and np.all(np.isfinite(next_state.U))
