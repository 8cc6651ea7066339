"""Independent counts: every registered method's simulator calls against host callbacks in the one-step map.

Each problem's one-step map is wrapped so that every evaluation calls back to the host (`jax.debug.callback`):

* ``forward``: one evaluation of step(x, u), a plain call or the forward pass of a differentiated one;
* ``backward``: one vector-Jacobian product through one step (reverse mode: the rule of a ``jax.custom_vjp``);
* ``linear``: one directional derivative of one step (forward mode: the rule of a ``jax.custom_jvp``, which
  computes the primal it linearises without counting it as a forward evaluation): what iLQR's ``jacfwd`` spends,
  T (n + m) of them for one linearisation (the map's Jacobians at the T points of a rollout).

A method that differentiates in forward mode (iLQR) gets the ``custom_jvp`` map, every other the ``custom_vjp``
one (chosen by trying: a ``custom_vjp`` cannot be differentiated forwards). Under ``vmap`` a callback fires once
per element of its batched arguments (checked below), so each callback takes the step's inputs (and its tangent
or cotangent). One rollout is T step evaluations and one backward pass T step VJPs (or T directional
derivatives), so over ONE jitted ``step``:

    forward / T             ==  info.rollouts + reports × objective_rollouts
    backward / T            ==  info.gradients
    linear / (T (n + m))    ==  info.linearizations   (an info without that field: (backward + linear) / T)

``reports`` is what the method contract lets a method evaluate without counting: f(U) for its reported
``value``, once per step on an open-loop problem unless the method says its counted rollouts include it
(``value_in_calls``: the test holds the flag to that), and on a policy problem, whose reported cost is the
evaluation batch's and never what a method decides with, once per step (once per start for MultiStart), at
``n_eval`` rollouts each. ``init`` may evaluate f(U0) once for the record, and nothing else. The policy problem's
evaluation batch (5) and training batch (2) differ, so a method that decided on the wrong one, or counted the
wrong one, cannot match; and on the policy problem the same compiled step runs again with a reported objective
changed by a U-dependent term (`Poisoned`): the next iterate must not move (no method decides with the
evaluation batch). Wherever a method states ``calls(problem)`` (what ``--budget`` divides by), it must be the
counted numbers.

The cases come from the registries (`trajopt.methods.METHODS`, the gradient method with every oracle of
`trajopt.oracles.ORACLES` on the open-loop problem and of `trajopt.policies.POLICY_ORACLES` on the policy one,
their options that change the counts, and MultiStart over a stochastic and a deterministic method), so a new
method or oracle is counted without editing this file; a method whose ``check`` refuses the problem is checked to
refuse it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trajopt.methods import METHODS, GradientMethod, MultiStart, check_applicable
from trajopt.oracles import ORACLES
from trajopt.policies import POLICY_ORACLES, Linear, PolicyProblem, Uniform
from trajopt.problem import QuadraticCost, trajectory_problem
from trajopt.systems.pushing import Pushing

T = 4  # the horizon of both problems
N_EVAL, N_INIT = 5, 2  # the policy problem's evaluation and training batches (distinct on purpose)
SMALL = {"samples": 4, "population": 10}  # small batches for every method or oracle that has these fields
KEY = jax.random.PRNGKey(3)


class Tally:
    """Host-side counters of one-step evaluations (tests only: the library never calls back)."""

    def __init__(self):
        self.forward = self.backward = self.linear = 0

    def reset(self):
        self.forward = self.backward = self.linear = 0

    def bump(self, field: str):
        def callback(*_):
            setattr(self, field, getattr(self, field) + 1)

        return callback


def counted_steps(step: Callable, tally: Tally) -> tuple[Callable, Callable]:
    """(reverse, forward): ``step`` wrapped in a ``custom_vjp`` (forward and backward callbacks) and in a
    ``custom_jvp`` (forward and linear callbacks)."""

    @jax.custom_vjp
    def reverse(x, u):
        jax.debug.callback(tally.bump("forward"), x, u)
        return step(x, u)

    def fwd(x, u):
        jax.debug.callback(tally.bump("forward"), x, u)
        return step(x, u), (x, u)

    def bwd(res, g):
        x, u = res
        jax.debug.callback(tally.bump("backward"), x, u, g)
        return jax.vjp(step, x, u)[1](g)

    reverse.defvjp(fwd, bwd)

    @jax.custom_jvp
    def forward(x, u):
        jax.debug.callback(tally.bump("forward"), x, u)
        return step(x, u)

    @forward.defjvp
    def jvp(primals, tangents):
        y, dy = jax.jvp(step, primals, tangents)
        jax.debug.callback(tally.bump("linear"), *primals, dy)
        return y, dy

    return reverse, forward


@dataclass(frozen=True, eq=False)
class CountedSystem:
    """A system for a policy problem whose one-step map is a counted one."""

    state_size: int
    control_size: int
    step: Callable


SYSTEM = Pushing(stiffness=1000.0, damping=0.99, mass=0.1, dt=0.005)
WEIGHTS = jnp.diag(jnp.array([0.1, 10.0, 0.1, 0.1]))
COST = QuadraticCost(Q=WEIGHTS, R=jnp.eye(1), Qf=WEIGHTS, goal=jnp.array([1.0, 2.0, 0.0, 0.0]))


def open_loop(step):
    return trajectory_problem("pushing_counted", step, jnp.array([0.0, 1.0, 0.0, 0.0]), COST, jnp.full((T, 1), 0.1))


def policy(step):
    return PolicyProblem(
        name="pushing_policy_counted", system=CountedSystem(4, 1, step), policy=Linear(bias=True, init_scale=0.1),
        task_cost=COST, initial=Uniform(low=(-0.1, 0.9, -0.1, -0.1), high=(0.1, 1.1, 0.1, 0.1)), horizon=T,
        sigma=0.1, n_init=N_INIT, resample=True, n_eval=N_EVAL, eval_seed=1, train_seed=0, test_seed=2)


class Poisoned:
    """A policy problem whose reported objective is f(U) + poison * 1000 * |U - U0 - 0.05|^2 (``poison`` a traced scalar):
    everything else, the decision objective included, is the problem's own. A method that decided with the
    reported objective would move elsewhere with poison = 1 than with poison = 0."""

    def __init__(self, problem, poison):
        self._problem, self._poison = problem, poison

    def __getattr__(self, name):
        return getattr(self._problem, name)

    def objective(self, U):
        return self._problem.objective(U) + self._poison * 1000.0 * jnp.sum((U - self._problem.U0 - 0.05) ** 2)


KINDS = {"open": open_loop, "policy": policy}
# These programs are compiled once and run once or twice: the least XLA optimisation compiles them in about half
# the time (the counts do not depend on it).
FAST_COMPILE = {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 0,
                "xla_llvm_disable_expensive_passes": True}


def small(cls, **options):
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in SMALL.items() if k in names and k not in options}, **options)


def cases(kind: str) -> dict[str, Callable[[], Any]]:
    """label -> a builder of the method: every registered method (small), the gradient method with every oracle of
    the kind's registry and the options that change its counts or its value_in_calls, and MultiStart."""
    out = {}
    for name in METHODS:
        if name != "gradient":
            out[name] = lambda name=name: small(METHODS.get(name))
    oracles = ORACLES if kind == "open" else POLICY_ORACLES
    for name in oracles:
        if getattr(oracles.get(name), "applies_to", ()):  # an oracle for some systems only (cfd: MJX, counted there)
            continue
        out[f"gradient:{name}"] = lambda name=name: GradientMethod(small(oracles.get(name)))
    if kind == "open":
        out["gradient:zobg(two_sided)"] = lambda: GradientMethod(small(ORACLES.get("zobg"), estimator="two_sided"))
        out["gradient:zobg(antithetic)"] = lambda: GradientMethod(small(ORACLES.get("zobg"), antithetic=True))
        # deterministic: exact gradients (its starts one vmap batch), L-BFGS and iLQR (their starts mapped one at a
        # time, `trajopt.methods._batching`: each start's line search runs its own trials, which are what it counts)
        out["multistart:exact"] = lambda: MultiStart(GradientMethod(ORACLES.get("exact")()), starts=2, start_spread=0.01)
        out["multistart:lbfgs"] = lambda: MultiStart(METHODS.get("lbfgs")(), starts=2, start_spread=0.3)
        out["multistart:ilqr"] = lambda: MultiStart(METHODS.get("ilqr")(), starts=2, start_spread=0.3)
    for split in ("halves", "shared"):
        out[f"gradient:aobg({split})"] = lambda split=split: GradientMethod(small(oracles.get("aobg"), split=split))
    out["multistart:zobg"] = lambda: MultiStart(GradientMethod(small(oracles.get("zobg"))), starts=3)
    out["multistart:cem"] = lambda: MultiStart(small(METHODS.get("cem")), starts=2)
    return out


CASES = [(kind, label) for kind in KINDS for label in cases(kind)]


def compile_fast(lowered):
    try:
        return lowered.compile(compiler_options=FAST_COMPILE)
    except Exception:  # a jaxlib that does not know an option: its defaults
        return lowered.compile()


def compiled_case(method, build: Callable, step: Callable, mode: int, poisoned: bool):
    """(program, init tally, step tally, the step's problem): ``program(key, poison) -> (new state, info)`` runs the
    method's init and one step, each on its own problem ``build(counted step)`` (custom_vjp for mode 0, custom_jvp
    for mode 1); with ``poisoned`` their reported objective is `Poisoned`."""
    tallies = Tally(), Tally()
    init_problem, step_problem = (build(counted_steps(step, t)[mode]) for t in tallies)

    def program(key, poison):
        first, then = (Poisoned(p, poison) for p in (init_problem, step_problem)) if poisoned else \
            (init_problem, step_problem)
        state = method.init(key, first, first.U0)
        return method.step(jax.random.fold_in(key, 1), then, state)

    lowered = jax.jit(program).lower(KEY, jnp.zeros(()))
    return compile_fast(lowered), *tallies, step_problem


def assert_counts(method, build: Callable, step: Callable, horizon: int, directions: int, closed_loop: bool):
    """The module docstring's checks of one method on ``build(step)``, a problem of ``horizon`` steps whose map takes
    ``directions`` = n + m inputs; ``closed_loop``: a policy problem (its reported objective costs N_EVAL rollouts)."""
    try:
        program, at_init, at_step, problem = compiled_case(method, build, step, 0, closed_loop)
    except (TypeError, ValueError) as e:  # forward-mode derivatives (iLQR's jacfwd) cannot go through a custom_vjp
        assert "custom_vjp" in str(e), str(e)  # (iLQR's own check says so, as a ValueError)
        program, at_init, at_step, problem = compiled_case(method, build, step, 1, closed_loop)
    new, info = jax.block_until_ready(program(KEY, jnp.zeros(())))
    jax.effects_barrier()
    H = horizon
    assert at_step.forward % H == 0 and at_step.backward % H == 0, vars(at_step)
    rollouts = at_step.forward // H
    objective_rollouts = N_EVAL if closed_loop else 1
    if closed_loop:
        reports = getattr(method, "starts", 1)
    else:
        reports = 0 if getattr(method, "value_in_calls", False) else 1
    assert rollouts == int(info.rollouts) + reports * objective_rollouts, (rollouts, int(info.rollouts), reports)
    # a linearisation is the Jacobian of the map at the H points of a rollout: H (n + m) directional derivatives;
    # an info without a linearizations field counts one as n + m backward passes
    if "linearizations" in info._fields:
        assert at_step.backward == H * int(info.gradients), (vars(at_step), int(info.gradients))
        assert at_step.linear == H * directions * int(info.linearizations), (vars(at_step), int(info.linearizations))
    else:
        assert at_step.backward + at_step.linear == H * int(info.gradients), (vars(at_step), int(info.gradients))
    assert int(info.rollouts) > 0
    # init evaluates at most f(U0) once, for the record, and no derivative
    assert at_init.forward in (0, H * objective_rollouts) and at_init.backward + at_init.linear == 0, vars(at_init)
    calls = getattr(method, "calls", None)
    if calls is not None:
        try:
            planned = calls(problem)
        except AttributeError:  # an oracle without a fixed count
            planned = None
        if planned is not None:  # (rollouts, backward passes[, linearizations])
            counted = tuple(int(getattr(info, f, 0)) for f in ("rollouts", "gradients", "linearizations"))
            assert tuple(planned) == counted[: len(planned)], (planned, counted)
    if closed_loop:  # the decision never depends on the reported objective (the evaluation batch) ...
        poisoned, poisoned_info = jax.block_until_ready(program(KEY, jnp.ones(())))
        np.testing.assert_array_equal(np.asarray(poisoned.U), np.asarray(new.U))
        assert float(poisoned_info.value) != float(info.value)  # ... which the poison does change


@pytest.mark.parametrize("kind, label", CASES, ids=[f"{k}-{lab}" for k, lab in CASES])
def test_counts_match_the_callbacks(kind, label):
    method = cases(kind)[label]()
    try:
        check_applicable(method, KINDS[kind](SYSTEM.step))
    except ValueError as e:  # a refusal names the problem's kind (the checks' own test is below)
        assert kind == "policy" and "policy problem" in str(e), str(e)
        return
    assert_counts(method, KINDS[kind], SYSTEM.step, T, SYSTEM.state_size + SYSTEM.control_size, kind == "policy")


def test_callbacks_fire_once_per_evaluation_under_vmap_and_in_both_modes():
    """The instrument itself: a batch of B rollouts under vmap (and vmap of vmap) fires B × T forward callbacks;
    B value-and-gradients fire B × T forward and B × T backward; iLQR's linearisation (vmap over T points of
    jacfwd) fires T × (n + m) linear callbacks and no forward one."""
    tally = Tally()
    reverse, forward = counted_steps(SYSTEM.step, tally)
    U = jnp.full((3, T, 1), 0.1) + jnp.arange(3.0)[:, None, None]

    def count(fn, *args):
        tally.reset()
        jax.block_until_ready(compile_fast(jax.jit(fn).lower(*args))(*args))
        jax.effects_barrier()
        return tally.forward, tally.backward, tally.linear

    f = open_loop(reverse).objective
    assert count(jax.vmap(f), U) == (3 * T, 0, 0)
    assert count(jax.vmap(jax.vmap(f)), jnp.stack([U, U])) == (6 * T, 0, 0)
    assert count(jax.vmap(jax.value_and_grad(f)), U) == (3 * T, 3 * T, 0)
    X, Uf = jnp.ones((T, 4)), jnp.ones((T, 1))
    assert count(jax.vmap(jax.jacfwd(forward, argnums=(0, 1))), X, Uf) == (0, 0, T * (4 + 1))
    assert count(open_loop(forward).objective, U[0]) == (T, 0, 0)


def test_check_applicable_says_why_in_one_sentence():
    tally = Tally()
    reverse, _ = counted_steps(SYSTEM.step, tally)
    pol, ol = policy(reverse), open_loop(reverse)
    from trajopt.problem import one_step_problem

    one = one_step_problem("pivot_like", lambda u: jnp.sum(u**2), jnp.ones(2))
    ilqr = METHODS.get("ilqr")()
    with pytest.raises(ValueError, match=r"^ilqr needs a time-stepped problem .*; pushing_policy_counted is a policy "
                                         r"problem \(its decision is a policy's parameters\)$"):
        check_applicable(ilqr, pol)
    with pytest.raises(ValueError, match=r"pivot_like is a one-step problem"):
        check_applicable(ilqr, one)
    # a map differentiated only through a custom VJP (an MJX system with several solver iterations) has no jacfwd
    with pytest.raises(ValueError, match=r"^ilqr linearises the one-step map with forward-mode derivatives .*; "
                                         r"pushing_counted's map refuses them \(.*custom_vjp"):
        check_applicable(ilqr, ol)
    check_applicable(ilqr, open_loop(counted_steps(SYSTEM.step, tally)[1]))  # a custom_jvp map: applies
    with pytest.raises(ValueError, match="policy problem"):  # MultiStart forwards to its method
        check_applicable(MultiStart(ilqr, starts=2, start_spread=0.1), pol)
    with pytest.raises(ValueError, match="open-loop oracle .* use the policy oracle 'fobg'"):
        check_applicable(GradientMethod(ORACLES.get("fobg")()), pol)
    with pytest.raises(ValueError, match="policy oracle .* use the open-loop oracle 'fobg'"):
        check_applicable(GradientMethod(POLICY_ORACLES.get("fobg")()), ol)
    with pytest.raises(ValueError, match="open-loop oracle"):  # init refuses too (the Python API)
        GradientMethod(ORACLES.get("fobg")()).init(KEY, pol, pol.U0)
    for method in (GradientMethod(ORACLES.get("fobg")()), METHODS.get("cem")()):
        check_applicable(method, ol)  # applies: no error
    check_applicable(METHODS.get("cem")(), pol)
    check_applicable(object(), pol)  # a method without a check applies everywhere


# ------------------------------------------------------------------------------------------------- closed loop
# The closed loop (`trajopt.mpc`) sums each replan's K steps' counts. Over one episode of R replans, with the model's
# one-step map counted and the plant a separate, uncounted system: every backward pass and linearisation the
# episode runs is a counted one (backward / T == Σ gradients, linear / (T (n + m)) == Σ linearizations, exactly), and
# the forward evaluations are the counted rollouts plus what the contract lets go uncounted: per replan the planned
# cost's record (1 rollout), the method's init or warm start (at most 1), and a reported f(U) per step where the
# method's rollouts do not include it (value_in_calls), plus the carry's structural init (at most 1).
CL_EPISODE, CL_EVERY, CL_K = 6, 2, 3
CL_METHODS = {
    "gradient:exact": lambda: GradientMethod(ORACLES.get("exact")()),
    "gradient:fobg": lambda: GradientMethod(small(ORACLES.get("fobg"))),
    "ilqr": lambda: METHODS.get("ilqr")(),
    "mppi": lambda: small(METHODS.get("mppi")),
}


@pytest.mark.parametrize("label", list(CL_METHODS))
def test_closed_loop_counts_match_host_callbacks(label):
    from trajopt.closedloop import Plant, mpc

    method = CL_METHODS[label]()
    tally = Tally()
    mode = 1 if label == "ilqr" else 0  # iLQR differentiates forwards (custom_jvp), every other backwards
    problem = open_loop(counted_steps(SYSTEM.step, tally)[mode])
    res = mpc(problem, {label: method}, episode=CL_EPISODE, horizon=T, replan_every=CL_EVERY, iterations=CL_K,
              plant=Plant(system=SYSTEM), key=KEY, seeds=(0,), time_plans=False)[label]
    replans = CL_EPISODE // CL_EVERY
    R, G, L = (int(np.sum(getattr(res, f))) for f in ("rollouts", "gradients", "linearizations"))
    assert R > 0 and res.rollouts.shape[-1] == replans, res.rollouts
    assert tally.backward == T * G
    assert tally.linear == T * (4 + 1) * L and (L > 0) == (label == "ilqr")
    reports = 0 if getattr(method, "value_in_calls", False) else CL_K
    low, high = T * (R + replans), T * (R + replans * (2 + reports) + 1)
    assert low <= tally.forward <= high, (tally.forward, low, high)
