"""trajopt.solve: the fused loop's noise contract (seed alone = seed in a batch, any chunking), determinism,
non-finite handling, interruption, the Result layout, and the paper's headline comparison (slow).
"""

from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from builders import pushing_problem, random_quadratic

from trajopt.optim import SGD
from trajopt.oracles import AoBG, Exact, FoBG, ZoBG
from trajopt.oracles.base import INFO_FIELDS, make_info
from trajopt.problem import Problem
from trajopt.methods import GradientMethod
from trajopt.solver import STATUS_INTERRUPTED, STATUS_NON_FINITE, STATUS_OK
from trajopt.solver import solve as solve_method


def solve(problem, oracle, optimizer, *, skip_non_finite=False, **kwargs):
    """The paper's loop: a gradient method of this oracle and optimiser."""
    return solve_method(problem, GradientMethod(oracle, optimizer, skip_non_finite=skip_non_finite), **kwargs)

KEY = jax.random.PRNGKey(0)


def quadratic_problem():
    """f(U) = 1/2 u^T A u + b^T u, u = vec(U), U: [3, 2] (no scan: cheap to compile)."""
    return random_quadratic((3, 2), 0)


@pytest.fixture(scope="module")
def soft_pushing():
    # The soft pushing system (k = 10, d = 0.998) on a shorter horizon, to keep compile and run times small.
    return pushing_problem(10.0, 0.998, 100)


# ---------------------------------------------------------------------------------------------------------
# The noise contract: seed s sees the same noise alone or inside a vmapped batch


@pytest.fixture(scope="module")
def seed3_alone_and_batched(soft_pushing):
    oracle, opt = AoBG(samples=5, sigma=0.1, gamma=1e8, L=100.0), SGD(1e-3).build()
    alone = solve(soft_pushing, oracle, opt, key=KEY, iterations=50, seeds=[3])
    batch = solve(soft_pushing, oracle, opt, key=KEY, iterations=50, seeds=[0, 1, 2, 3, 4])
    return alone, batch


def test_seed_alone_matches_seed_in_batch(seed3_alone_and_batched):
    alone, batch = seed3_alone_and_batched
    assert list(batch.seeds) == [0, 1, 2, 3, 4] and list(alone.seeds) == [3]
    # Different compiled programs (S = 1 against S = 5): equal to round-off, not necessarily bit for bit.
    for f in alone.history:
        np.testing.assert_allclose(alone.history[f][0], batch.history[f][3], rtol=1e-10, atol=0, err_msg=f)
    np.testing.assert_allclose(alone.cost[0], batch.cost[3], rtol=1e-10)
    np.testing.assert_allclose(alone.final_cost[0], batch.final_cost[3], rtol=1e-10)
    np.testing.assert_allclose(alone.U[0], batch.U[3], rtol=1e-10, atol=1e-12)
    # ... while the other seeds really draw different noise.
    assert not np.allclose(batch.history["var_zero"][0], batch.history["var_zero"][3])
    assert len(set(np.round(batch.final_cost, 6))) == 5


def test_result_layout(soft_pushing, seed3_alone_and_batched):
    _, r = seed3_alone_and_batched
    S, K = 5, 50
    T = soft_pushing.shape[0]
    assert r.name == "aobg" and r.iterations == K
    assert r.cost.shape == (S, K + 1)
    assert r.U.shape == (S, T, 1) and r.X.shape == (S, T + 1, 4)
    assert set(INFO_FIELDS) <= set(r.history)
    assert all(v.shape == (S, K) for v in r.history.values())
    assert r.status == [STATUS_OK] * S and np.all(r.failed_at == -1)
    # cost[:, 0] = f(U0); cost[:, k] is the oracle's reported value at iterate k; cost[:, K] = f(U*).
    f0 = float(soft_pushing.objective(soft_pushing.U0))
    np.testing.assert_allclose(r.cost[:, 0], f0, rtol=1e-12)
    np.testing.assert_array_equal(r.cost[:, :K], r.history["value"])
    fU = np.asarray(jax.vmap(soft_pushing.objective)(jnp.asarray(r.U)))
    np.testing.assert_allclose(r.cost[:, K], fU, rtol=1e-12)
    np.testing.assert_allclose(r.final_cost, fU, rtol=1e-12)
    np.testing.assert_allclose(r.X, np.asarray(jax.vmap(soft_pushing.trajectory)(jnp.asarray(r.U))), rtol=1e-12)
    np.testing.assert_array_equal(r.history["rollouts"], 2 * 5 + 1)
    np.testing.assert_array_equal(r.history["gradients"], 5)
    assert np.all(r.best_cost <= r.cost.min(axis=1) + 1e-12)
    # Fixed-step descent on the soft problem makes progress.
    assert np.all(r.final_cost < 0.95 * f0)
    assert r.compile_seconds > 0 and r.run_seconds > 0


@pytest.fixture(scope="module")
def zobg_runs(soft_pushing):
    """The same ZoBG run three times: in one chunk, again identically, and in chunks of 6 (with a progress log)."""
    oracle, opt = ZoBG(samples=5, sigma=0.1), SGD(1e-3).build()
    kwargs = dict(key=KEY, iterations=20, seeds=[0, 7])
    calls = []
    whole = solve(soft_pushing, oracle, opt, chunk=20, **kwargs)
    again = solve(soft_pushing, oracle, opt, chunk=20, **kwargs)
    log = lambda done, total: calls.append((done, total))  # noqa: E731
    pieces = solve(soft_pushing, oracle, opt, chunk=6, on_chunk=log, **kwargs)
    return whole, again, pieces, calls


def test_same_call_twice_is_bit_identical(zobg_runs):
    a, b, _, _ = zobg_runs
    np.testing.assert_array_equal(a.U, b.U)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.cost, b.cost)
    np.testing.assert_array_equal(a.failed_at, b.failed_at)
    assert a.history.keys() == b.history.keys()
    for f in a.history:
        np.testing.assert_array_equal(a.history[f], b.history[f])
    assert not np.allclose(a.cost[0], a.cost[1])  # the two seeds are different runs


def test_chunk_size_does_not_change_the_iterates(zobg_runs):
    whole, _, pieces, calls = zobg_runs
    # 20 = 6 + 6 + 6 + 2 (the last chunk padded and masked).
    assert calls == [(6, 20), (12, 20), (18, 20), (20, 20)]
    assert pieces.chunk_ends == [6, 12, 18, 20] and pieces.iterations == 20
    assert whole.chunk_ends == [20]
    assert pieces.cost.shape == whole.cost.shape == (2, 21)
    assert pieces.status == whole.status == [STATUS_OK, STATUS_OK]
    np.testing.assert_allclose(pieces.cost, whole.cost, rtol=1e-12)
    np.testing.assert_allclose(pieces.U, whole.U, rtol=1e-12, atol=1e-14)
    for f in whole.history:
        np.testing.assert_allclose(pieces.history[f], whole.history[f], rtol=1e-12, atol=0, err_msg=f)


# ---------------------------------------------------------------------------------------------------------
# The loop against a hand-written one (cheap, no scan in the problem)


def test_solve_matches_a_python_loop_with_the_documented_keys():
    problem, *_ = quadratic_problem()
    oracle, step, K, seeds = FoBG(samples=4, sigma=0.2), 0.05, 12, [2, 5]
    r = solve(problem, oracle, SGD(step).build(), key=KEY, iterations=K, seeds=seeds, chunk=5)
    estimate = jax.jit(lambda k, U: oracle.estimate(k, problem, U))
    for i, s in enumerate(seeds):
        U = problem.U0
        seed_key = jax.random.fold_in(KEY, s)
        for k in range(K):
            g, info = estimate(jax.random.fold_in(seed_key, k), U)
            assert r.history["value"][i, k] == pytest.approx(float(info.value), rel=1e-12)
            assert r.history["var_first"][i, k] == pytest.approx(float(info.var_first), rel=1e-10)
            U = U - step * g
        np.testing.assert_allclose(r.U[i], np.asarray(U), rtol=1e-11, atol=1e-13)
    # A different root key draws different noise.
    other = solve(problem, oracle, SGD(step).build(), key=jax.random.PRNGKey(1), iterations=K, seeds=seeds, chunk=5)
    assert not np.allclose(other.U, r.U)


def test_exact_sgd_on_quadratic_matches_closed_form():
    # U_{k+1} = U_k - eta (A U_k + b)  =>  U_K + A^{-1} b = (I - eta A)^K (U_0 + A^{-1} b).
    problem, A, b = quadratic_problem()
    eta, K = 0.1, 30
    r = solve(problem, Exact(), SGD(eta).build(), key=KEY, iterations=K, seeds=[0])
    u_star = -np.linalg.solve(np.asarray(A), np.asarray(b))
    M = np.linalg.matrix_power(np.eye(6) - eta * np.asarray(A), K)
    expected = M @ (np.asarray(problem.U0).reshape(-1) - u_star) + u_star
    np.testing.assert_allclose(r.U[0].reshape(-1), expected, rtol=1e-10, atol=1e-12)
    assert r.X is None
    assert np.all(np.diff(r.cost[0]) < 0)  # monotone descent (eta < 2 / lambda_max)


def test_zero_iterations():
    problem, *_ = quadratic_problem()
    r = solve(problem, Exact(), SGD(0.1).build(), key=KEY, iterations=0, seeds=[0, 1])
    assert r.iterations == 0 and r.cost.shape == (2, 1)
    np.testing.assert_allclose(r.cost[:, 0], float(problem.objective(problem.U0)), rtol=1e-14)
    np.testing.assert_array_equal(r.U, np.broadcast_to(np.asarray(problem.U0), (2, 3, 2)))
    assert r.status == [STATUS_OK, STATUS_OK]


def test_invalid_arguments():
    problem, *_ = quadratic_problem()
    with pytest.raises(ValueError):
        solve(problem, Exact(), SGD(0.1).build(), key=KEY, iterations=-1, seeds=[0])
    with pytest.raises(ValueError):
        solve(problem, Exact(), SGD(0.1).build(), key=KEY, iterations=5, seeds=[])


# ---------------------------------------------------------------------------------------------------------
# Non-finite seeds and interruption


@dataclass(frozen=True)
class FlakyOracle:
    """Gradient of all ones, except NaN with probability p per call, decided by the call's key."""

    p: float = 0.04
    name: ClassVar[str] = "flaky"

    def estimate(self, key, problem, U):
        bad = jax.random.uniform(key) < self.p
        grad = jnp.where(bad, jnp.nan, 1.0) * jnp.ones_like(U)
        return grad, make_info(problem.objective(U), rollouts=1)


def test_non_finite_seed_is_frozen_and_others_run_on():
    problem, *_ = quadratic_problem()
    oracle, step, K, seeds = FlakyOracle(), 0.01, 40, list(range(8))
    # Which seeds fail, and when, follows from the documented key scheme fold_in(fold_in(key, s), k).
    expected = []
    for s in seeds:
        u = [float(jax.random.uniform(jax.random.fold_in(jax.random.fold_in(KEY, s), k))) for k in range(K)]
        expected.append(next((k for k in range(K) if u[k] < oracle.p), -1))
    expected = np.array(expected)
    assert (expected >= 0).any() and (expected == -1).any()  # this key gives both kinds of seed

    r = solve(problem, oracle, SGD(step).build(), key=KEY, iterations=K, seeds=seeds, chunk=7)
    np.testing.assert_array_equal(r.failed_at, expected)
    U0 = np.asarray(problem.U0)
    for i, k in enumerate(expected):
        assert np.all(np.isfinite(r.U[i]))
        if k >= 0:
            assert r.status[i] == STATUS_NON_FINITE
            # Frozen at the last finite iterate: k steps of U <- U - step * 1.
            np.testing.assert_allclose(r.U[i], U0 - step * k, rtol=1e-12)
            assert np.all(np.isfinite(r.cost[i, : k + 1]))
            assert r.cost[i, k] == pytest.approx(float(problem.objective(jnp.asarray(r.U[i]))), rel=1e-12)
            assert np.all(np.isnan(r.cost[i, k + 1 :]))
            assert np.all(np.isnan(r.history["value"][i, k + 1 :]))
            assert r.final_cost[i] == pytest.approx(r.cost[i, k])
        else:
            assert r.status[i] == STATUS_OK
            np.testing.assert_allclose(r.U[i], U0 - step * K, rtol=1e-12)
            assert np.all(np.isfinite(r.cost[i]))
    assert np.all(np.isfinite(r.best_cost))


def test_divergence_to_overflow_is_non_finite_with_a_finite_frozen_iterate():
    # f = sum(U^2), exact gradient, sgd step 10: U_{k+1} = -19 U_k; f overflows long before U does.
    # The returned U is the last iterate whose cost was finite (the one before the overflow).
    problem = Problem("blowup", jnp.ones((2, 1)), lambda U: jnp.sum(U**2))
    r = solve(problem, Exact(), SGD(10.0).build(), key=KEY, iterations=200, seeds=[0, 1])
    with np.errstate(over="ignore"):
        f = 2.0 * np.float64(19.0) ** (2.0 * np.arange(200))
    first_inf = int(np.argmax(~np.isfinite(f)))
    assert 100 < first_inf < 200
    assert r.status == [STATUS_NON_FINITE, STATUS_NON_FINITE]
    np.testing.assert_array_equal(r.failed_at, first_inf)
    assert np.all(np.isfinite(r.U))
    np.testing.assert_allclose(np.abs(r.U), 19.0 ** (first_inf - 1), rtol=1e-12)
    assert np.all(np.isfinite(r.cost[:, :first_inf]))
    assert np.all(np.isnan(r.cost[:, first_inf + 1 :]))
    assert np.all(np.isfinite(r.best_cost))


def test_final_cost_of_a_diverged_seed_is_its_last_finite_cost():
    # Result.last_index is documented as "each seed's last finite-cost iterate"; when the failure is the cost
    # itself overflowing, final_cost should then be finite (the cost of the iterate before).
    problem = Problem("blowup", jnp.ones((2, 1)), lambda U: jnp.sum(U**2))
    r = solve(problem, Exact(), SGD(10.0).build(), key=KEY, iterations=200, seeds=[0])
    assert np.all(np.isfinite(r.cost[0, r.last_index]))
    assert np.all(np.isfinite(r.final_cost))
    np.testing.assert_allclose(r.final_cost, np.sum(r.U**2, axis=(1, 2)))  # the returned U is that iterate


def test_should_stop_after_the_first_chunk_interrupts():
    problem, *_ = quadratic_problem()
    polls = []

    def should_stop():
        polls.append(True)
        return True

    r = solve(problem, Exact(), SGD(0.05).build(), key=KEY, iterations=30, seeds=[0, 1], chunk=10,
              should_stop=should_stop)
    assert len(polls) == 1
    assert r.iterations == 10 < 30
    assert r.status == [STATUS_INTERRUPTED, STATUS_INTERRUPTED]
    assert r.cost.shape == (2, 11) and all(v.shape == (2, 10) for v in r.history.values())
    assert np.all(np.isfinite(r.cost)) and np.all(r.failed_at == -1)
    # The interrupted run is the first 10 iterations of the full one.
    full = solve(problem, Exact(), SGD(0.05).build(), key=KEY, iterations=30, seeds=[0, 1], chunk=10)
    assert full.status == [STATUS_OK, STATUS_OK]
    np.testing.assert_allclose(r.cost, full.cost[:, :11], rtol=1e-13)


def test_should_stop_is_not_polled_after_the_last_chunk():
    problem, *_ = quadratic_problem()
    r = solve(problem, Exact(), SGD(0.05).build(), key=KEY, iterations=10, seeds=[0], chunk=10,
              should_stop=lambda: True)
    assert r.status == [STATUS_OK] and r.iterations == 10


def test_works_with_a_stateful_optax_optimiser():
    # The optimiser state (Adam moments) is carried per seed through the scan.
    problem, *_ = quadratic_problem()
    opt = optax.adam(0.05)
    r = solve(problem, Exact(), opt, key=KEY, iterations=40, seeds=[0, 1], chunk=15)
    U, state = problem.U0, opt.init(problem.U0)
    for _ in range(40):
        g = jax.grad(problem.objective)(U)
        upd, state = opt.update(g, state, U)
        U = optax.apply_updates(U, upd)
    np.testing.assert_allclose(r.U[0], np.asarray(U), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(r.U[0], r.U[1])  # the exact oracle ignores the key


# ---------------------------------------------------------------------------------------------------------
# The paper's headline result (Suh et al. 2022, pushing, Fig. 8 / §5.1)


def _median_final(problem, oracle):
    r = solve(problem, oracle, SGD(1e-3).build(), key=KEY, iterations=500, seeds=range(5))
    final = np.where(np.isfinite(r.final_cost), r.final_cost, np.inf)  # a diverged seed counts as worst
    return float(np.median(final)), r


ORACLES_HEADLINE = {
    "fobg": FoBG(samples=10, sigma=0.1),
    "zobg": ZoBG(samples=10, sigma=0.1),
    "aobg": AoBG(samples=10, sigma=0.1, gamma=1e8, L=100.0),
}


@pytest.mark.slow
def test_headline_stiff_pushing_zobg_and_aobg_beat_fobg():
    problem = pushing_problem(1000.0, 0.99, 200)
    med = {name: _median_final(problem, o)[0] for name, o in ORACLES_HEADLINE.items()}
    assert med["zobg"] < med["fobg"], med
    assert med["aobg"] < med["fobg"], med


@pytest.mark.slow
def test_headline_soft_pushing_fobg_and_aobg_beat_zobg():
    problem = pushing_problem(10.0, 0.998, 400)
    med, runs = {}, {}
    for name, o in ORACLES_HEADLINE.items():
        med[name], runs[name] = _median_final(problem, o)
    assert med["fobg"] < med["zobg"], med
    assert med["aobg"] < med["zobg"], med
    # Benign landscape: the FoBG's variance is far below the ZoBG's, so AoBG leans on it (alpha ~ 1).
    assert np.nanmedian(runs["aobg"].history["alpha"]) > 0.9


def test_a_step_that_overflows_the_iterate_stops_the_seed_there():
    # f = 100 sum(tanh(U)^2) is finite everywhere and so is its gradient (0 at +-inf): only the check on the
    # next iterate can see that a huge SGD step sent U to -inf. Without it the seed would run on "ok" with an
    # infinite decision (f(-inf) = 100 m T is finite).
    problem = Problem("overflow", jnp.ones((2, 1)), lambda U: 100.0 * jnp.sum(jnp.tanh(U) ** 2))
    g0 = 200.0 * np.tanh(1.0) / np.cosh(1.0) ** 2  # ~ 64.0
    with np.errstate(over="ignore"):
        assert np.isinf(np.float64(1.0) - 1e307 * g0)
    r = solve(problem, Exact(), SGD(1e307).build(), key=KEY, iterations=5, seeds=[0, 1])
    assert r.status == [STATUS_NON_FINITE, STATUS_NON_FINITE]
    np.testing.assert_array_equal(r.failed_at, 0)  # the step from U_0 overflowed
    np.testing.assert_array_equal(r.U, np.ones((2, 2, 1)))  # the returned U is U_0, the last finite iterate
    assert np.all(np.isnan(r.cost[:, 1:]))


# ---------------------------------------------------------------------------------------------------------
# prepare / prepare_each: compiling apart from (and ahead of) running changes no result


def test_prepare_each_gives_the_results_of_solve_one_by_one():
    from trajopt.solver import prepare, prepare_each

    problem, *_ = quadratic_problem()
    methods = [GradientMethod(Exact(), SGD(0.05)), GradientMethod(ZoBG(samples=4, sigma=0.1), SGD(0.02))]
    for ahead in (True, False):
        loops = list(prepare_each(problem, [(methods[0], 7), (methods[1], 12)], key=KEY, seeds=[0, 3], chunk=5,
                                  ahead=ahead))
        _same_as_solve(problem, loops, methods)
    # a prepared loop runs again from the same initial state, to the same result
    again = prepare(problem, methods[1], key=KEY, iterations=12, seeds=[0, 3], chunk=5)
    np.testing.assert_array_equal(again.run().cost, again.run().cost)


def test_the_variants_of_a_run_compile_their_final_evaluation_once(soft_pushing, monkeypatch):
    """The final evaluation f(U), X of a problem's seeds is one program for every method (an MJX model's physics
    compiled once, not again in each variant's loop): three variants, three loops and one final evaluation, counted
    at XLA, traced once; each variant's final cost is still the objective of its own returned decision."""
    from builders import xla_compiles

    from trajopt import programs
    from trajopt.solver import prepare_each

    from trajopt import solver

    problem = soft_pushing
    methods = [GradientMethod(o, SGD(0.01)) for o in (FoBG(samples=4, sigma=0.1), ZoBG(samples=4, sigma=0.1),
                                                       AoBG(samples=4, sigma=0.1))]
    traced, real = [], solver.make_finish
    monkeypatch.setattr(solver, "make_finish", lambda p: (traced.append(1), real(p))[1])
    programs.CACHE.clear()
    compiles = xla_compiles(monkeypatch)
    results = [loop.run() for loop in prepare_each(problem, [(m, 6) for m in methods], key=KEY, seeds=[0, 1])]
    assert len(compiles) == 4 and len(traced) == 1  # and traced once
    for r in results:
        np.testing.assert_allclose(r.cost[:, -1], jax.vmap(problem.objective)(jnp.asarray(r.U)), rtol=1e-12)
        assert r.X.shape == (2, problem.U0.shape[0] + 1, r.X.shape[-1])


def test_the_shared_final_evaluation_is_compiled_first_and_in_no_variants_seconds(soft_pushing, monkeypatch):
    """The variants of a run share one final evaluation (above): it is traced before the first variant's loop and
    compiled while that loop is traced (its compile starts before any loop's), and its seconds, recorded once for
    all of them (`Result.final_evaluation_seconds`, the same number in each), are in no variant's
    ``compile_seconds``: one that XLA takes 6 s longer to compile leaves every variant's seconds under 6 s."""
    import time

    from trajopt import programs, solver
    from trajopt.solver import prepare_each

    events, real = [], solver.compile_cached

    def slow_finish(lowered):  # the final evaluation's program is `make_finish`'s `finish`: module @jit_finish
        finish = "@jit_finish" in lowered.as_text()[:300]
        events.append(finish)
        if finish:
            time.sleep(6.0)
        return real(lowered)

    monkeypatch.setattr(solver, "compile_cached", slow_finish)
    programs.CACHE.clear()
    methods = [GradientMethod(o, SGD(0.01)) for o in (ZoBG(samples=4, sigma=0.1), FoBG(samples=4, sigma=0.1))]
    results = [loop.run() for loop in prepare_each(soft_pushing, [(m, 3) for m in methods], key=KEY, seeds=[0, 1])]
    assert events[0] is True and events.count(True) == 1, events  # compiled first, and once
    assert [r.final_evaluation_seconds for r in results] == [results[0].final_evaluation_seconds] * 2
    assert results[0].final_evaluation_seconds >= 6.0
    assert all(r.compile_seconds < 6.0 for r in results), [r.compile_seconds for r in results]


def _same_as_solve(problem, loops, methods):
    for loop, method, k in zip(loops, methods, (7, 12)):
        ahead = loop.run(name="x")
        alone = solve_method(problem, method, key=KEY, iterations=k, seeds=[0, 3], chunk=5)
        assert ahead.iterations == k and ahead.status == alone.status
        np.testing.assert_array_equal(ahead.cost, alone.cost)
        np.testing.assert_array_equal(ahead.U, alone.U)
        for f in alone.history:
            np.testing.assert_array_equal(ahead.history[f], alone.history[f], err_msg=f)


@dataclass(frozen=True)
class BranchyOracle:
    """An oracle with a Python ``if`` on the decision: fine to call eagerly, an error when traced."""

    name: ClassVar[str] = "branchy"

    def estimate(self, key, problem, U):
        grad = jnp.ones_like(U) if U[0, 0] > 0 else -jnp.ones_like(U)
        return grad, make_info(problem.objective(U), rollouts=1)


def test_prepare_each_checks_every_run_first_and_raises_a_failing_one_when_it_is_reached():
    from trajopt.solver import SolveError, prepare_each

    problem, *_ = quadratic_problem()
    good, branchy = GradientMethod(Exact(), SGD(0.05)), GradientMethod(BranchyOracle(), SGD(0.05))
    # a bad argument of any run is refused when prepare_each is called, before the first run is traced
    with pytest.raises(ValueError, match="iterations: found -1"):
        prepare_each(problem, [(good, 3), (good, -1)], key=KEY, seeds=[0])
    for ahead in (True, False):
        # code that fails only when traced is raised when its run is reached, after the runs before it
        loops = prepare_each(problem, [(good, 3), (branchy, 2)], key=KEY, seeds=[0], ahead=ahead,
                             names=["good", "mine"])
        first = next(loops)
        assert first.name == "good" and first.run().iterations == 3
        with pytest.raises(SolveError, match="variant 'mine' failed while tracing: TracerBoolConversionError") as e:
            next(loops)
        assert e.value.variant == "mine" and e.value.stage == "tracing"
        assert type(e.value.__cause__).__name__ == "TracerBoolConversionError"


def test_default_chunk_is_a_tenth_but_bounded_in_memory():
    from trajopt.solver import CHUNK_ENTRIES, default_chunk

    assert default_chunk(500, 5) == 50 and default_chunk(7, 1) == 1 and default_chunk(0, 3) == 1
    assert default_chunk(10**7, 1000) == CHUNK_ENTRIES // 1000  # not a million iterations x 1000 seeds per chunk
    assert default_chunk(10**6, 10**7) == 1  # at least one iteration
    for K, S in [(500, 5), (10**5, 100), (10**7, 10), (3, 10**5)]:
        assert default_chunk(K, S) * S <= max(CHUNK_ENTRIES, S) and default_chunk(K, S) <= max(1, -(-K // 10))
