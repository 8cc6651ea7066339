"""One compute currency and a solver that stops work that is done (issue #25 item 0, #26 item 1).

* Budgets in forward-step equivalents (`trajopt.compute`): a fixed-cost method runs floor(B / its cost per step)
  steps and never passes B; a variable-cost one (iLQR) runs until its spend reaches B, at most one step over. The
  spend is counted independently: a one-step map that calls back to the host on every evaluation (forward) and on
  every directional derivative (iLQR's Jacobians, a ``custom_jvp``), run step by step in a Python loop (no vmap,
  so only the work a step does fires), converted with the same ratios by hand.
* A seed stopped by its method (a converged iLQR) or by the budget spends nothing more; when every seed has, no
  further chunk runs and the rest of the history is what the steps would have recorded.
* A deterministic method runs once per `trajopt.compare`, its result every seed's.
* The ``compute`` axis of the convergence figure is T (rollouts + ρ_b gradients + ρ_l linearizations).
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import trajopt
from trajopt.compute import StepCosts, budget_iterations, given_step_costs, step_equivalents
from trajopt.methods import GradientMethod, MultiStart
from trajopt.methods.ilqr import ILQR
from trajopt.oracles import Exact, ZoBG
from trajopt.optim import SGD, Adam
from trajopt.problem import QuadraticCost, trajectory_problem
from trajopt.solver import prepare, solve

KEY = jax.random.PRNGKey(7)
T = 6
COSTS = StepCosts(backward=2.0, linearization=3.0)  # given, so that every number below is exact


class Tally:
    """Host-side counts of one-step evaluations (forward) and of directional derivatives of one (linear)."""

    def __init__(self):
        self.forward = self.linear = 0

    def bump(self, field):
        def callback(*_):
            setattr(self, field, getattr(self, field) + 1)
        return callback


def pendulum(x, u):
    """A pendulum, explicit Euler at dt = 0.1 (nonlinear: iLQR takes several steps to swing it up)."""
    return jnp.array([x[0] + 0.1 * x[1], x[1] + 0.1 * (-9.81 * jnp.sin(x[0]) + u[0])])


COST = QuadraticCost(Q=jnp.diag(jnp.array([1.0, 0.1])), R=0.01 * jnp.eye(1), Qf=jnp.diag(jnp.array([100.0, 10.0])),
                     goal=jnp.array([jnp.pi, 0.0]))


def pendulum_problem(step=pendulum):
    return trajectory_problem("pendulum", step, jnp.zeros(2), COST, jnp.full((T, 1), 0.1))


def counted_problem(tally: Tally):
    """The pendulum whose one-step map calls back on every evaluation and on every derivative direction."""
    step = pendulum

    @jax.custom_jvp
    def counted(x, u):
        jax.debug.callback(tally.bump("forward"), x, u)
        return step(x, u)

    @counted.defjvp
    def jvp(primals, tangents):
        y, dy = jax.jvp(step, primals, tangents)
        jax.debug.callback(tally.bump("linear"), *primals, dy)
        return y, dy

    return pendulum_problem(counted)


N, M = 2, 1  # the state and control sizes: a Jacobian of one step is n + m directional derivatives


def true_spend(tally: Tally) -> float:
    """Forward-step equivalents of what the tally saw: each forward evaluation is one step, each step's Jacobian
    (n + m directions) is ρ_l steps."""
    return tally.forward + COSTS.linearization * tally.linear / (N + M)


def counted_steps(method, steps: int, seed: int = 0):
    """The method's first ``steps`` steps from U0 by hand, one seed (each step jitted alone, its evaluations counted
    by the tally: no vmap, so only the work a step does fires). Returns (the decisions U_0..U_steps, the true spend
    of each step in forward-step equivalents)."""
    tally = Tally()
    problem = counted_problem(tally)
    seed_key = jax.random.fold_in(KEY, seed)
    state = jax.jit(lambda k: method.init(k, problem, problem.U0))(seed_key)
    step = jax.jit(lambda k, s: method.step(k, problem, s))
    decisions, spends = [np.asarray(state.U)], []
    for k in range(steps):
        jax.effects_barrier()
        tally.forward = tally.linear = 0
        state, _ = step(jax.random.fold_in(seed_key, k), state)
        jax.block_until_ready(state)
        jax.effects_barrier()
        spends.append(true_spend(tally))
        decisions.append(np.asarray(state.U))
    return decisions, spends


def test_a_variable_cost_method_runs_until_its_spend_reaches_the_budget_at_most_one_step_over():
    method = ILQR()
    decisions, spends = counted_steps(method, 3)
    # the rule: a step is taken while the spend is under the budget; a budget inside the third step's spend takes
    # three steps and ends over it by less than that step's spend
    budget = spends[0] + spends[1] + 0.5 * spends[2]
    assert spends[0] + spends[1] < budget <= sum(spends)
    problem = counted_problem(Tally())
    r = solve(problem, method, key=KEY, iterations=budget_iterations(method, problem, budget, COSTS), seeds=[0, 1],
              budget=budget, step_costs=COSTS, chunk=4)
    assert r.status == ["ok", "ok"] and r.stopped == ["budget", "budget"] and list(r.stopped_at) == [3, 3]
    np.testing.assert_allclose(r.seed_forward_equivalents(), [sum(spends)] * 2, rtol=1e-12)  # what it counted ...
    np.testing.assert_allclose(r.U[0], decisions[3], rtol=1e-9, atol=1e-12)  # ... is what it did
    # after the stop the seed holds its iterate: its cost repeats and it spends nothing
    np.testing.assert_allclose(r.cost[0, 3:], r.cost[0, -1], rtol=1e-12)
    assert np.all(r.history["rollouts"][:, 3:] == 0) and np.all(r.history["linearizations"][:, 3:] == 0)
    assert r.settled_at is not None and r.settled_at < r.iterations  # the chunks after were not run


def test_a_fixed_cost_method_runs_floor_budget_over_its_step_and_never_passes_it():
    method = GradientMethod(ZoBG(samples=3, sigma=0.05), SGD(1e-3))  # N + 1 rollouts a step, no backward pass
    one = counted_steps(method, 1)[1][0]
    assert one == T * (3 + 1)  # by hand: four rollouts of T steps
    problem = pendulum_problem()
    assert step_equivalents(method, problem, COSTS) == one
    for budget in (one * 7 - 1e-9, one * 7, one * 8 - 1e-9):
        K = budget_iterations(method, problem, budget, COSTS)
        assert K == math.floor(budget / one) and K * one <= budget < (K + 1) * one
    r = solve(problem, method, key=KEY, iterations=7, seeds=[0], budget=one * 7, step_costs=COSTS)
    assert r.seed_forward_equivalents()[0] == 7 * one and r.stopped == [None]  # the budget exactly, never more
    exact = GradientMethod(Exact(), Adam(0.1))  # one rollout and one backward pass: T (1 + ρ_b)
    assert step_equivalents(exact, problem, COSTS) == T * (1 + 2.0)


def test_under_a_budget_a_seed_alone_and_in_a_batch_stop_at_the_same_step_with_the_same_iterates():
    # MultiStart over iLQR with a spread: a stochastic method of variable cost (each seed's starts differ)
    problem = pendulum_problem()
    method = MultiStart(ILQR(), starts=2, start_spread=0.3)
    budget = 9.5 * T * 2
    K = budget_iterations(method, problem, budget, COSTS)
    batch = solve(problem, method, key=KEY, iterations=K, seeds=[0, 1, 2], budget=budget, step_costs=COSTS, chunk=3)
    assert batch.stopped == ["budget"] * 3
    spent = batch.seed_forward_equivalents()
    assert np.all(spent >= budget)
    for i, seed in [(1, 1)]:  # one seed alone (each run compiles)
        alone = solve(problem, method, key=KEY, iterations=K, seeds=[seed], budget=budget, step_costs=COSTS)
        assert alone.stopped_at[0] == batch.stopped_at[i] and alone.seed_forward_equivalents()[0] == spent[i]
        # bit for bit is not promised across batch sizes (XLA vectorises a batch of 1 and of 3 differently)
        np.testing.assert_allclose(alone.cost[0], batch.cost[i], rtol=1e-10)
        np.testing.assert_allclose(alone.U[0], batch.U[i], rtol=1e-9, atol=1e-12)


def test_a_converged_ilqr_stops_early_with_what_the_full_run_records():
    problem = pendulum_problem()
    method = ILQR()
    K = 40
    # chunks of one step: the step that stops the method ends a chunk, so the rows filled in repeat a stopped row
    r = solve(problem, method, key=KEY, iterations=K, seeds=[0, 1], chunk=1)
    assert r.stopped == ["converged", "converged"] and r.settled_at is not None and r.settled_at < K
    stop = int(r.stopped_at[0])
    assert 0 < stop < r.settled_at <= stop + 2  # the chunk it stopped in and the one queued behind, no more
    # the full run, step by step in Python: the same iterates and the same rows, including the stopped ones
    state = method.init(KEY, problem, problem.U0)
    step = jax.jit(lambda s: method.step(KEY, problem, s))
    rows = []
    for _ in range(K):
        state, info = step(state)
        rows.append(info)
    np.testing.assert_allclose(r.U[1], np.asarray(state.U), rtol=1e-10, atol=1e-12)
    for f in ("value", "rollouts", "linearizations", "stop_reason", "mu", "step_length"):
        expected = np.array([float(getattr(row, f)) for row in rows])
        np.testing.assert_allclose(r.history[f][1].astype(float), expected, rtol=1e-10, err_msg=f)
    assert np.all(np.isnan(r.history["grad_norm"][1, stop + 1:]))  # what a stopped iLQR reports, kept
    assert r.final_cost[0] == r.cost[0, -1] and np.all(r.history["rollouts"][:, stop + 1:] == 0)


def test_a_run_whose_every_seed_blew_up_stops_running_chunks():
    problem = pendulum_problem()
    r = solve(problem, GradientMethod(Exact(), SGD(1e300)), key=KEY, iterations=60, seeds=[0, 1], chunk=5)
    assert r.status == ["non_finite"] * 2 and r.settled_at is not None and r.settled_at <= 10
    after = int(r.failed_at.max()) + 1
    assert np.all(np.isnan(r.cost[:, after:])) and np.all(r.history["rollouts"][:, after:] == 0)


def test_a_deterministic_method_runs_once_per_compare_and_is_each_seeds_run():
    problem = pendulum_problem()
    variants = {"exact": GradientMethod(Exact(), Adam(0.1)), "zobg": GradientMethod(ZoBG(samples=3), Adam(0.1))}
    results = trajopt.compare(problem, variants, key=KEY, iterations=6, seeds=[0, 5, 9])
    assert results["exact"].ran_once and not results["zobg"].ran_once
    for i, seed in enumerate([0, 5, 9]):
        alone = solve(problem, variants["exact"], key=KEY, iterations=6, seeds=[seed])
        np.testing.assert_array_equal(results["exact"].cost[i], alone.cost[0])  # bit for bit
        np.testing.assert_array_equal(results["exact"].U[i], alone.U[0])
        for f, values in alone.history.items():
            np.testing.assert_array_equal(results["exact"].history[f][i], values[0])
    assert not prepare(problem, variants["exact"], key=KEY, iterations=2, seeds=[0, 1]).run().ran_once  # solve: all


def test_the_compute_axis_is_forward_step_equivalents():
    from trajopt.plots import convergence_figure, x_values

    problem = pendulum_problem()
    r = solve(problem, ILQR(), key=KEY, iterations=4, seeds=[0], step_costs=COSTS)
    by_hand = T * np.concatenate([[0], np.cumsum(r.history["rollouts"][0] + 3.0 * r.history["linearizations"][0])])
    np.testing.assert_array_equal(x_values(r, "compute"), by_hand)
    assert np.array_equal(r.forward_equivalents(StepCosts(0.0, 0.0)), T * r.counts("rollouts"))
    fig = convergence_figure({"ilqr": r}, x="compute")
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_xdata(), by_hand)
    label = fig.axes[-1].get_xlabel()  # the axis states the step costs that converted the counts
    assert "forward-step equivalents" in label and f"ρ_l = {COSTS.linearization:.3g}" in label, label
    assert f"ρ_b = {COSTS.backward:.3g}" in label, label
    with pytest.raises(ValueError, match="step_costs"):  # a run given no step costs cannot convert (the run above
        solve(problem, ILQR(), key=KEY, iterations=4, seeds=[0]).forward_equivalents()  # without them: its program)


def test_bad_budgets_and_step_costs_are_refused_before_anything_compiles(monkeypatch):
    problem = pendulum_problem()
    m = ILQR()
    for budget, error, match in ((0, ValueError, "budget: found 0.0"), (math.inf, ValueError, "budget: found inf"),
                                 (True, TypeError, "budget: found True"), ("5", TypeError, "budget: found '5'")):
        with pytest.raises(error, match=match):
            solve(problem, m, key=KEY, iterations=1, budget=budget, step_costs=COSTS)
    with pytest.raises(TypeError, match="step_costs: found None with a budget"):
        solve(problem, m, key=KEY, iterations=1, budget=10.0)
    with pytest.raises(TypeError, match="step_costs: found"):
        solve(problem, m, key=KEY, iterations=1, step_costs=(1.0, 1.0))
    with pytest.raises(TypeError, match="iterations: found None"):
        trajopt.compare(problem, {"m": m}, key=KEY, iterations=None)
    monkeypatch.setenv("TRAJOPT_STEP_COSTS", "1.5, 2")
    assert given_step_costs() == StepCosts(1.5, 2.0, "given by TRAJOPT_STEP_COSTS")
    for bad in ("1", "a,b", "-1,2", "1,nan", "1,2,3"):
        monkeypatch.setenv("TRAJOPT_STEP_COSTS", bad)
        with pytest.raises(ValueError, match="TRAJOPT_STEP_COSTS: found"):
            given_step_costs()


TINY_PUSHING = """title = "tiny"
[system]
name = "pushing"
stiffness = 10.0
[task]
horizon = 5
x0 = [0.0, 1.0, 0.0, 0.0]
goal = [1.0, 2.0, 0.0, 0.0]
Q = [0.1, 10.0, 0.1, 0.1]
R = [1.0]
u_init = 0.1
[solve]
iterations = 4
seeds = 2
variants = ["ilqr", "zobg"]
[oracle]
samples = 3
"""


def test_compare_with_a_budget_records_forward_step_equivalents_everywhere(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from trajopt import runs
    from trajopt.cli import app

    monkeypatch.setenv("TRAJOPT_STEP_COSTS", "2,3")
    problem = tmp_path / "p.toml"
    problem.write_text(TINY_PUSHING)
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["compare", str(problem), "--budget", "130", "--out", str(out), "--x", "compute", "-q"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    result = json.loads((out / "result.json").read_text())
    assert result["budget"] == 130 and result["step_costs"] == {"backward": 2.0, "linearization": 3.0,
                                                                "source": "given by TRAJOPT_STEP_COSTS", "horizon": 5}
    zobg, ilqr = result["variants"]["zobg"], result["variants"]["ilqr"]
    assert zobg["iterations"] == 130 // (5 * 4) and zobg["forward_equivalents"] == 6 * 20  # never over
    assert ilqr["ran_once"] and not zobg["ran_once"] and ilqr["stopped"] in (["budget"] * 2, ["converged"] * 2)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for row in rows:  # every row: its counts in forward-step equivalents
        assert row["forward_equivalents"] == 5 * (row["rollouts"] + 2 * row["gradients"] + 3 * row["linearizations"])
    last = max(row["forward_equivalents"] for row in rows if row["variant"] == "ilqr")
    steps = [5 * (row["rollouts"] + 3 * row["linearizations"]) for row in rows if row["variant"] == "ilqr"
             and row["seed"] == 0]
    spent = np.diff(steps)
    assert last == ilqr["forward_equivalents"] and (last >= 130 or ilqr["stopped"][0] == "converged")
    assert last - spent[spent > 0][-1] < 130  # its last step began under the budget
    run = runs.read_run(out)  # read back: the same conversion
    assert run.results["ilqr"].forward_equivalents()[-1] == last and run.results["ilqr"].ran_once
    assert (out / "convergence.png").stat().st_size > 0


def test_a_run_folder_and_its_table_say_when_each_seed_stopped(tmp_path, monkeypatch):
    """A seed that stopped before the variant's last iteration (a converged iLQR): result.json's ``stopped_at`` is
    the number of iterations it ran, counted here independently as those whose spend grew in metrics.jsonl; read
    back as `Result.stopped_at`; the table's iterations say "k of K" for it and K for a variant that ran them all."""
    from typer.testing import CliRunner

    from trajopt import runs
    from trajopt.cli import app

    monkeypatch.setenv("TRAJOPT_STEP_COSTS", "2,3")
    monkeypatch.setenv("COLUMNS", "250")
    problem = tmp_path / "p.toml"
    problem.write_text(TINY_PUSHING)
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["compare", str(problem), "--iterations", "60", "--out", str(out)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    result = json.loads((out / "result.json").read_text())
    ilqr, zobg = result["variants"]["ilqr"], result["variants"]["zobg"]
    assert ilqr["stopped"] == ["converged"] * 2 and zobg["stopped_at"] == [None, None]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # the iterations that spent anything: rollouts, backward passes or linearisations (an iLQR's last one only
    # linearises, finds no step and stops)
    spent_by = {row["iteration"]: row["forward_equivalents"] for row in rows if row["variant"] == "ilqr"
                and row["seed"] == 0}
    spent = [i for i in sorted(spent_by) if i > 0 and spent_by[i] > spent_by[i - 1]]
    k = len(spent)
    assert spent == list(range(1, k + 1)) and 0 < k < 60 and ilqr["stopped_at"] == [k, k]
    assert list(runs.read_run(out).results["ilqr"].stopped_at) == [k, k]
    table = " ".join(r.output.split())
    assert f"│ {k} of 60 │" in table and "│ 60 │" in table and 'iterations "k of K"' in table
    # iLQR ran once for both seeds, ZoBG for each: two final evaluations (1 and 2 seeds), each counted once
    shared = {v["program"]["final_evaluation_seconds"] for v in (ilqr, zobg)}
    assert len(shared) == 2 and abs(result["final_evaluation_seconds"] - sum(shared)) < 1e-12
    assert result["final_evaluation_programs"] == 2
    assert "the final evaluation, 2 programs for the variants (one per number of seeds run)" in table
