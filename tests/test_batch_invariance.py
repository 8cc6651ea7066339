"""A seed alone and the same seed in a batch give the same iterates (issue #26): `trajopt.methods._batching`.

XLA compiles a batched cost and gradient with other summation orders than the unbatched ones, so before the fix a
deterministic method's seed drifted apart alone and in a batch (on stiff pushing with T = 20, after 4 steps, for
exact gradients, L-BFGS and iLQR). The deterministic methods now run one seed at a time under vmap (`per_element`);
the samplers' steps are batches of rollouts already and are the same alone and in a batch as they are.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trajopt import spec
from trajopt.methods import METHODS, GradientMethod, MultiStart, check_applicable
from trajopt.methods._batching import per_element, vectorised
from trajopt.oracles import ORACLES
from trajopt.optim import Adam
from trajopt.solver import solve

PROBLEMS = Path(__file__).resolve().parent.parent / "problems"
KEY = jax.random.PRNGKey(0)


def deterministic_cases() -> dict:
    """Every deterministic method: the registered ones with the flag, and the gradient method of every deterministic
    oracle (a new one is covered by registering it)."""
    out = {}
    for name in METHODS:
        cls = METHODS.get(name)
        if name != "gradient" and getattr(cls, "deterministic", False):
            out[name] = cls
    for name in ORACLES:  # an oracle for some systems only (applies_to: cfd, MJX) cannot run on pushing
        if getattr(ORACLES.get(name), "deterministic", False) and not getattr(ORACLES.get(name), "applies_to", ()):
            out[f"gradient:{name}"] = lambda name=name: GradientMethod(ORACLES.get(name)(), Adam(step=0.1))
    return out


DETERMINISTIC = deterministic_cases()
SLOW = {"ilqr", "lbfgs", "gradient:fd"}  # 10 s and more to compile each here: the slow job (exact gradients stay)


@pytest.fixture(scope="module")
def stiff_pushing():
    """Stiff pushing over 20 steps: long enough that the batched cost's round-off differs from the unbatched one."""
    return spec.load(PROBLEMS / "pushing_stiff.toml", ["task.horizon=20"]).problem()


def test_the_deterministic_cases_cover_the_known_ones():
    assert {"ilqr", "lbfgs", "gradient:exact", "gradient:fd"} <= set(DETERMINISTIC)


def steps_alone_and_in_a_batch(method, problem, key, steps: int = 4):
    """The iterates of ``steps`` steps of one seed alone and as element 1 of a batch of three copies, each as
    `trajopt.solve` runs seeds (``vmap`` of the step over a batch of 1 or of 3): ([steps, T, m], [steps, T, m])."""
    state = method.init(key, problem, problem.U0)
    step = jax.jit(jax.vmap(lambda k, s: method.step(k, problem, s)))
    one, three = (jax.tree_util.tree_map(lambda a: jnp.stack([a] * n), state) for n in (1, 3))
    alone, batched = [], []
    for k in range(steps):
        key_k = jax.random.fold_in(key, k)
        one, _ = step(key_k[None], one)
        three, _ = step(jnp.stack([key_k] * 3), three)
        alone.append(np.asarray(one.U[0]))
        batched.append(np.asarray(three.U[1]))
    return np.stack(alone), np.stack(batched)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in DETERMINISTIC])
def test_a_deterministic_method_gives_the_same_iterates_alone_and_in_a_batch(name, stiff_pushing):
    """Bit for bit: 4 steps of one seed alone and in a batch of three (the same run three times). Without
    `per_element` every case here differs after 4 steps (checked by replacing it with the identity); under `solve`
    too (seed 1 alone against seeds 0, 1, 2: the last test)."""
    method = DETERMINISTIC[name]()
    try:
        check_applicable(method, stiff_pushing)
    except ValueError as e:  # an oracle for other systems (cfd: MJX contacts only)
        pytest.skip(str(e))
    alone, batched = steps_alone_and_in_a_batch(method, stiff_pushing, KEY)
    np.testing.assert_array_equal(alone, batched)


@pytest.mark.slow
def test_lbfgs_seed_alone_and_in_a_batch_under_solve(stiff_pushing):
    """The issue's case: L-BFGS under `trajopt.solve`, seed 1 alone and beside seeds 0 and 2, every recorded row."""
    from trajopt.methods.lbfgs import LBFGS

    alone = solve(stiff_pushing, LBFGS(), key=KEY, iterations=8, seeds=[1])
    batch = solve(stiff_pushing, LBFGS(), key=KEY, iterations=8, seeds=[0, 1, 2])
    np.testing.assert_array_equal(alone.U[0], batch.U[1])
    np.testing.assert_array_equal(alone.cost[0], batch.cost[1])
    for field in ("rollouts", "gradients"):
        np.testing.assert_array_equal(alone.history[field][0], batch.history[field][1])


@pytest.mark.slow  # every stochastic method and oracle on stiff pushing: about a minute
@pytest.mark.parametrize("name", [n for n in METHODS if n != "gradient" and n not in DETERMINISTIC]
                         + [f"gradient:{n}" for n in ORACLES if f"gradient:{n}" not in DETERMINISTIC
                            and not getattr(ORACLES.get(n), "applies_to", ())] + ["multistart:exact"])
def test_a_stochastic_method_gives_a_seed_the_same_iterates_alone_and_in_a_batch(name, stiff_pushing):
    if name == "multistart:exact":
        method = MultiStart(GradientMethod(ORACLES.get("exact")(), Adam(step=0.1)), starts=3, start_spread=0.01)
    elif name.startswith("gradient:"):
        method = GradientMethod(ORACLES.get(name.split(":")[1])(samples=4), Adam(step=0.1))
    else:
        cls = METHODS.get(name)
        small = {k: v for k, v in {"samples": 16, "population": 16, "sigma": 0.05}.items() if k in cls.__dataclass_fields__}
        method = cls(**small)
    try:
        check_applicable(method, stiff_pushing)
    except ValueError as e:  # an oracle for other systems
        pytest.skip(str(e))
    alone = solve(stiff_pushing, method, key=KEY, iterations=4, seeds=[2])
    batch = solve(stiff_pushing, method, key=KEY, iterations=4, seeds=[0, 1, 2])
    np.testing.assert_array_equal(alone.U[0], batch.U[2])
    np.testing.assert_array_equal(alone.cost[0], batch.cost[2])
    assert any(not np.array_equal(h[0], h[2]) for h in batch.history.values())  # the seeds do draw differently


def test_per_element_runs_each_element_its_own_course():
    """Under vmap, a while loop inside `per_element` runs each element's own trip count (host callbacks count the
    trips: 1 + 2 + 3, not 3 x 3), closes over a batched value, nests under two vmaps, and inside `vectorised` a
    ``vectorise_ok`` function is batched as usual (every element runs the longest trip count)."""
    trips = []

    def halve_until_small(x, scale):
        def body(c):
            jax.debug.callback(lambda c: trips.append(1), c)  # once per element of a batched c
            return c / 2.0

        return jax.lax.while_loop(lambda c: c > 1.0, body, x * scale)

    x = jnp.array([1.5, 3.0, 6.0])  # 1, 2 and 3 halvings to reach <= 1
    scales = jnp.ones(3)

    def run(fn, *args):
        trips.clear()
        out = jax.block_until_ready(jax.jit(fn)(*args))
        jax.effects_barrier()
        return np.asarray(out), len(trips)

    mapped = jax.vmap(lambda x, s: per_element(lambda x: halve_until_small(x, s))(x))  # closes over a batched s
    out, n = run(mapped, x, scales)
    np.testing.assert_array_equal(out, [0.75, 0.75, 0.75])
    assert n == 1 + 2 + 3
    out, n = run(jax.vmap(jax.vmap(lambda x, s: per_element(lambda x: halve_until_small(x, s))(x))),
                 jnp.stack([x, 2 * x]), jnp.ones((2, 3)))
    assert n == (1 + 2 + 3) + (2 + 3 + 4)
    out, n = run(jax.vmap(lambda x, s: halve_until_small(x, s)), x, scales)  # plain vmap: lockstep
    assert n == 3 * 3

    def in_vectorised(x, s):
        with vectorised():
            return jax.vmap(lambda x, s: per_element(lambda x: halve_until_small(x, s), vectorise_ok=True)(x))(x, s)

    out, n = run(in_vectorised, x, scales)
    assert n == 3 * 3
    np.testing.assert_array_equal(out, [0.75, 0.75, 0.75])
