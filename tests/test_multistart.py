"""`MultiStart` (a variant's ``starts``): K starts of one method side by side, the lowest cost kept."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import trajopt
from trajopt import spec
from trajopt.checks import FieldError
from trajopt.methods import GradientMethod, MultiStart
from trajopt.optim import SGD, Adam
from trajopt.oracles import Exact, FoBG
from trajopt.problem import one_step_problem
from trajopt.solver import method_label, solve

# a double well: a shallow minimum near u = +1 (f ~ +0.3) and a deep one near u = -1 (f ~ -0.3)
WELL = lambda U: jnp.sum((U**2 - 1.0) ** 2 + 0.3 * U)


def well(u0: float = 0.5):
    return one_step_problem("well", WELL, jnp.full((1,), u0))


def test_each_start_is_the_method_alone_and_the_decision_is_the_lowest_cost():
    # start i runs exactly what the method runs from U0_i with keys fold_in(key_k, i); after step k the decision
    # is the iterate with the lowest cost compared at step k; each step reports f of the decision it began from
    problem = well()
    inner = GradientMethod(FoBG(samples=2, sigma=0.05), Adam(0.05))
    ms = MultiStart(inner, starts=4, start_spread=0.8)
    key = jax.random.PRNGKey(3)
    state = ms.init(key, problem, problem.U0)
    assert np.array_equal(state.U, problem.U0)  # U0 itself until the first step
    alone = [jax.tree_util.tree_map(lambda x: x[i], state.starts) for i in range(4)]
    assert len(np.unique(np.array([s.U for s in alone]).round(12), axis=0)) == 4  # spread: four different starts
    step = jax.jit(lambda k, s: ms.step(k, problem, s))
    # the method alone and f, each compiled once (eagerly, every operation compiles on its own)
    inner_step, f = jax.jit(lambda k, s: inner.step(k, problem, s)[0]), jax.jit(problem.objective)
    for k in range(6):
        key_k = jax.random.fold_in(key, k)
        entry = state
        state, info = step(key_k, state)
        np.testing.assert_allclose(info.value, f(entry.U), rtol=1e-12)
        costs = np.array([float(f(s.U)) for s in alone])
        chosen = alone[int(np.argmin(costs))]
        alone = [inner_step(jax.random.fold_in(key_k, i), s) for i, s in enumerate(alone)]
        for i in range(4):
            np.testing.assert_allclose(state.starts.U[i], alone[i].U, rtol=1e-12)
        assert int(info.start) == int(np.argmin(costs))
        np.testing.assert_array_equal(state.U, chosen.U)  # the iterate whose cost was compared
        np.testing.assert_allclose(state.value, costs.min(), rtol=1e-12)
        assert int(info.running) == 4
        assert (int(info.rollouts), int(info.gradients)) == ms.calls(problem) == (4 * (2 + 1), 4 * 2)


def test_eight_starts_find_the_deep_well_that_one_start_misses():
    problem = well(0.5)
    exact = GradientMethod(Exact(), SGD(0.05))
    one = solve(problem, exact, key=jax.random.PRNGKey(0), iterations=200, seeds=range(10))
    assert np.all(one.U[:, 0] > 0.9)  # one start from 0.5 slides into the shallow well
    many = solve(problem, MultiStart(exact, starts=8, start_spread=1.0), key=jax.random.PRNGKey(0), iterations=200,
                 seeds=range(10))
    assert np.all(many.U[:, 0] < -0.9) and np.all(many.final_cost < one.final_cost - 0.5)
    assert many.status == ["ok"] * 10
    # exact gradients compute f(U) in their own rollout: 8 rollouts and 8 backward passes per step, no more
    assert many.counts("rollouts")[-1] == many.counts("gradients")[-1] == 8 * 200
    assert np.all((many.history["start"] >= 0) & (many.history["start"] < 8))


def test_a_start_that_blows_up_stops_and_the_others_go_on():
    # f is NaN beyond u = 2: the starts drawn there stop at once, the seed goes on with the rest
    nan_beyond = lambda U: jnp.where(U[0] > 2.0, jnp.nan, (U[0] - 1.0) ** 2)
    problem = one_step_problem("edge", nan_beyond, jnp.zeros(1))
    ms = MultiStart(GradientMethod(Exact(), SGD(0.1)), starts=16, start_spread=4.0)
    r = solve(problem, ms, key=jax.random.PRNGKey(1), iterations=50, seeds=range(4))
    assert r.status == ["ok"] * 4
    running = r.history["running"]
    assert np.all(running[:, -1] < 16) and np.all(running[:, -1] >= 1)  # some stopped, some ran on
    np.testing.assert_allclose(r.U[:, 0], 1.0, atol=1e-3)
    # a stopped start spends nothing: the step's counts are the starts running when it began
    began = np.concatenate([np.full((4, 1), 16), running[:, :-1]], axis=1)
    np.testing.assert_array_equal(r.history["rollouts"], began)
    # every start blowing up is a blow-up of the seed, reported as one
    everywhere = one_step_problem("nan", lambda U: jnp.where(jnp.abs(U[0]) > 0.0, jnp.nan, 1.0), jnp.zeros(1))
    r = solve(everywhere, MultiStart(GradientMethod(Exact(), SGD(0.1)), starts=3, start_spread=1.0),
              key=jax.random.PRNGKey(0), iterations=5, seeds=[0])
    assert r.status == ["non_finite"] and np.isfinite(r.final_cost[0])


class _Climb(NamedTuple):
    U: jax.Array


class _ClimbInfo(NamedTuple):
    value: jax.Array
    rollouts: jax.Array
    gradients: jax.Array


@dataclass(frozen=True)
class Climb:
    """U <- U + 1 each step, one rollout: on f = -U below 3 and NaN from 3 on, the start with the lowest cost is
    always the next to blow up."""

    name: ClassVar[str] = "climb"

    def init(self, key, problem, U0):
        return _Climb(U=U0)

    def step(self, key, problem, state):
        return _Climb(U=state.U + 1.0), _ClimbInfo(value=problem.objective(state.U), rollouts=jnp.int32(1),
                                                   gradients=jnp.int32(0))


def test_on_a_policy_problem_the_starts_are_compared_on_one_training_batch():
    # four identical starts (a method that ignores its key) compared on one training batch per step tie, so the
    # first is kept; each on a batch of its own would differ by the batches' draws. Each step: four starts x (one
    # rollout + one comparison on n_init = 2 states); the evaluation batch (n_eval = 5) is never compared
    from trajopt.policies import static_gain_problem

    problem = static_gain_problem(size=1, horizon=3, n_init=2, n_eval=5)
    ms = MultiStart(Climb(), starts=4)
    key = jax.random.PRNGKey(0)
    state = ms.init(key, problem, problem.U0)
    step = jax.jit(lambda k, s: ms.step(k, problem, s))
    for k in range(6):
        state, info = step(jax.random.fold_in(key, k), state)
        assert int(info.start) == 0 and int(info.rollouts) == 4 * (1 + 2) and int(info.running) == 4


def test_when_the_chosen_start_blows_up_the_others_go_on():
    cliff = one_step_problem("cliff", lambda U: jnp.where(U[0] < 3.0, -U[0], jnp.nan), jnp.zeros(1))
    ms = MultiStart(Climb(), starts=4, start_spread=0.4)
    r = solve(cliff, ms, key=jax.random.PRNGKey(0), iterations=4, seeds=[0])
    assert r.status == ["ok"] and np.isfinite(r.final_cost[0])
    assert r.history["running"][0].tolist()[:2] == [4, 4] and r.history["running"][0, -1] < 4
    # the decision is always an iterate whose cost was compared: finite, and the lowest of the running starts'
    assert np.all(np.isfinite(r.cost[0]))
    r = solve(cliff, ms, key=jax.random.PRNGKey(0), iterations=12, seeds=[0])  # until every start has fallen
    assert r.status == ["non_finite"] and np.isfinite(r.final_cost[0])


def test_deterministic_methods_need_a_spread_and_the_fields_are_checked():
    with pytest.raises(FieldError, match="start_spread.*a number > 0 for 4 starts of 'exact'"):
        MultiStart(GradientMethod(Exact()), starts=4)
    MultiStart(GradientMethod(Exact()), starts=1)  # one start is the method itself
    MultiStart(GradientMethod(FoBG()), starts=4)  # a stochastic method differs through its keys
    for bad in (0, 2000, 1.5, True):
        with pytest.raises(FieldError, match="starts"):
            MultiStart(GradientMethod(FoBG()), starts=bad)
    with pytest.raises(FieldError, match="start_spread.*>= 0"):
        MultiStart(GradientMethod(FoBG()), starts=2, start_spread=-1.0)
    with pytest.raises(TypeError, match="init and step"):
        MultiStart(object(), starts=2)
    assert method_label(MultiStart(GradientMethod(Exact()), starts=8, start_spread=0.1)) == "exact_x8"
    assert trajopt.MultiStart is MultiStart


PUSHING = """
[system]
name = "pushing"
stiffness = 10.0
[task]
horizon = 20
x0 = [0.0, 1.0, 0.0, 0.0]
goal = [1.0, 2.0, 0.0, 0.0]
Q = [0.1, 10.0, 0.1, 0.1]
R = [1.0]
u_init = 0.1
[solve]
iterations = 4
seeds = 2
variants = ["multi"]
[variants.multi]
oracle = "exact"
optimizer = { name = "adam", step = 0.1 }
starts = 3
start_spread = 0.01
"""


def test_a_variants_starts_keys_build_multistart_and_are_validated(tmp_path):
    s = spec.loads(PUSHING, "p.toml")
    v = s.variants["multi"]
    assert isinstance(v.method, MultiStart) and v.method.starts == 3 and v.method.start_spread == 0.01
    assert v.table["starts"] == 3 and v.table["start_spread"] == 0.01 and v.oracle.name == "exact"
    assert v.optimizer.name == "adam" and v.each_start is v.method.method
    # starts = 1 without a spread is the method itself, bit for bit
    one = spec.loads(PUSHING, "p.toml", overrides=["variants.multi.starts=1", "variants.multi.start_spread=0.0"])
    plain = spec.loads(PUSHING.replace("starts = 3\nstart_spread = 0.01\n", ""), "p.toml")
    assert one.variants["multi"].method == plain.variants["multi"].method
    for item, words in [
        ("variants.multi.starts=0", "variants.multi.starts: found 0, allowed: an integer in 1..1024"),
        ("variants.multi.starts=2.5", "variants.multi.starts: found 2.5"),
        ("variants.multi.start_spread=-0.1", "variants.multi.start_spread: found -0.1, allowed: a number >= 0"),
        ("variants.multi.start_spread=0.0",
         "variants.multi.start_spread: found 0.0, allowed: a number > 0 for 3 starts of 'exact', a deterministic method"),
    ]:
        with pytest.raises(spec.SpecError) as e:
            spec.loads(PUSHING, "p.toml", overrides=[item])
        assert words in str(e.value) and "p.toml" in str(e.value)
    # a method variant takes them too; an unknown key lists them among the allowed
    s = spec.loads(PUSHING + '[variants.cem3]\nmethod = "cem"\nstarts = 2\n', "p.toml",
                   overrides=['solve.variants=["cem3"]'])
    assert isinstance(s.variants["cem3"].method, MultiStart) and s.variants["cem3"].table["starts"] == 2
    with pytest.raises(spec.SpecError, match=r"variants\.multi\.start: .*starts"):
        spec.loads(PUSHING, "p.toml", overrides=["variants.multi.start=2"])


def test_compare_runs_and_records_the_starts(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from trajopt.cli import app

    problem = tmp_path / "p.toml"
    problem.write_text(PUSHING)
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["compare", str(problem), "--out", str(out), "-q"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    entry = json.loads((out / "result.json").read_text())["variants"]["multi"]
    assert entry["config"]["starts"] == 3 and entry["config"]["start_spread"] == 0.01
    assert "starts = 3" in (out / "config.toml").read_text()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["rollouts"] for row in rows if row["seed"] == 0] == [0, 3, 6, 9, 12]  # 3 starts x 1 rollout
    assert {row["start"] for row in rows if row["iteration"] < 4} <= {0, 1, 2} and {row["running"] for row in rows} <= {3, None}
    # an equal budget divides by the starts' spend per step, in forward-step equivalents (T = 20 steps per rollout;
    # a backward pass given as 1 forward step): 3 starts x (1 rollout + 1 backward pass) = 120, 1,200 // 120 = 10 steps
    monkeypatch.setenv("TRAJOPT_STEP_COSTS", "1,1")
    r = CliRunner().invoke(app, ["compare", str(problem), "--budget", "1200", "--out", str(tmp_path / "b"), "-q"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "b" / "result.json").read_text())["variants"]["multi"]["iterations"] == 10


@pytest.mark.slow  # 10 s compiling a policy problem: CI's slow job runs it
def test_on_a_policy_problem_comparing_starts_costs_a_training_batch_each():
    # on a policy problem the starts are compared on a training batch of closed-loop rollouts (n_init = 0: as many
    # as the evaluation batch, n_eval = 10): comparing K starts costs K of them
    from pathlib import Path

    problem_file = Path(__file__).resolve().parent.parent / "problems" / "pendulum_wall_policy.toml"
    loaded = trajopt.load(problem_file, ["task.n_eval=10", "oracle.samples=4", 'solve.variants=["fobg"]',
                                         "variants.fobg.starts=3", "variants.fobg.start_spread=0.1"])
    r = loaded.compare(iterations=2, seeds=[0])["fobg"]
    assert isinstance(r.method, MultiStart)
    assert r.history["rollouts"].tolist() == [[3 * (4 + 10)] * 2] and r.history["gradients"].tolist() == [[12, 12]]
