"""One compute currency: forward-step equivalents.

Every method counts what it spends in simulator calls of three kinds (`trajopt.methods.base`): forward
``rollouts`` (T steps of the one-step map each), backward passes (``gradients``: a vector-Jacobian product through
a rollout, T step VJPs) and ``linearizations`` (the Jacobians ∂step/∂x, ∂step/∂u at the T points of a rollout,
iLQR's). They cost different amounts, so they are converted into one unit, the **forward-step equivalent** (FSE):
the cost of one forward step of the model,

    FSE = T (rollouts + ρ_b gradients + ρ_l linearizations)

with ρ_b = cost(one step's VJP) / cost(one forward step) and ρ_l = cost(one step's Jacobians) / cost(one forward
step), the `StepCosts` of the system. T is the problem's horizon (1 for a one-step problem, whose "step" is its cost
function; a policy problem's closed-loop horizon H).

**An oracle's own backward pass.** An oracle whose backward pass differentiates another one-step map than the
system's step (`cfd`: the true step forward, a contacts-from-distance model's VJP backward) declares that map, its
optional ``backward_step(system)`` (`trajopt.oracles.base`), and is charged its own ratio ρ_o = cost(that map's VJP) /
cost(one forward step) per backward pass: ``StepCosts.oracles`` holds (name, ρ_o) pairs, `StepCosts.backward_of`
reads one (ρ_b for any other oracle), and every conversion of a method's counts charges the ratio of the method's
oracle (`method_oracle`: a gradient method's, or that of the method MultiStart runs; ρ_b for every other method):
FSE = T (rollouts + ρ_o gradients + ρ_l linearizations). `measure_step_costs` times each declared map in the same
interleaved rounds as ρ_b (`declared_backward_steps` gathers them), so their relation survives the host's load.

`measure_step_costs` measures ρ_b and ρ_l on this host by timing three compiled programs over the same batch of
states and controls (a batch of rollouts; the same rollouts with their backward pass; the Jacobians at the same
points), interleaved and repeated, the median of each: ρ_b = (t_forward+backward − t_forward) / t_forward,
ρ_l = (t_rollout+jacobians − t_forward) / t_forward. A timing depends on the host: the command line measures once
per system and host, keeps the ratios (`trajopt.step_costs`), and records them in every run (result.json's
``step_costs``); from Python, pass the `StepCosts` you want (or measure them) to whatever converts
(`trajopt.solve`'s ``step_costs``, `trajopt.solver.Result.forward_equivalents`).

**Budgets** (``trajopt.solve(..., budget=B, step_costs=...)``, ``trajopt compare --budget B``) are in this unit and
admit every method. A method whose step costs a fixed amount (its ``calls(problem)``: `fixed_counts`,
`step_equivalents`) runs floor(B / its FSE per step) steps and never passes B; any other (iLQR, L-BFGS, MultiStart
over them: their line searches vary) runs until its spend reaches B, the solver stopping each seed there, so it ends
at most one step's spend over B (`budget_iterations` gives the iterations either is run for).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

COUNT_FIELDS = ("rollouts", "gradients", "linearizations")


@dataclass(frozen=True)
class StepCosts:
    """backward: ρ_b, a step's VJP in forward steps; linearization: ρ_l, a step's Jacobians in forward steps; source:
    how they were obtained ("measured ..." or "given"); oracles: ((name, ρ_o), ...), sorted by name, the backward
    ratio of each oracle whose backward pass differentiates another map than the system's step (its
    ``backward_step``, `trajopt.oracles.base`), in forward steps: what `backward_of` charges that oracle instead of
    ρ_b."""

    backward: float = 1.0
    linearization: float = 1.0
    source: str = "given"
    oracles: tuple = ()

    def __post_init__(self):
        for name in ("backward", "linearization"):
            _check_ratio(f"StepCosts.{name}", getattr(self, name))
        pairs = []
        for pair in self.oracles:
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], str) and pair[0]):
                raise ValueError(f"StepCosts.oracles: found {pair!r}, allowed: (oracle name, ratio) pairs")
            _check_ratio(f"StepCosts.oracles[{pair[0]!r}]", pair[1])
            pairs.append((pair[0], float(pair[1])))
        names = [n for n, _ in pairs]
        if len(set(names)) != len(names):
            raise ValueError(f"StepCosts.oracles: found {names!r}, allowed: each oracle once")
        object.__setattr__(self, "oracles", tuple(sorted(pairs)))

    def backward_of(self, oracle: Optional[str]) -> float:
        """ρ of one backward pass of ``oracle`` (a name, or None for a method without an oracle): its own ratio
        where ``oracles`` has one, else ρ_b."""
        return dict(self.oracles).get(oracle, self.backward) if oracle is not None else self.backward

    def charged(self, oracle: Optional[str]) -> "StepCosts":
        """These step costs with ``backward`` = `backward_of` ``oracle``: what a run of that oracle converts with."""
        rho = self.backward_of(oracle)
        return self if rho == self.backward else replace(self, backward=rho)

    def as_dict(self) -> dict:
        """{backward, linearization, source} and, where there are any, ``oracles`` {name: ρ_o}."""
        d = {"backward": self.backward, "linearization": self.linearization, "source": self.source}
        if self.oracles:
            d["oracles"] = dict(self.oracles)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StepCosts":
        """The inverse of `as_dict`; a dict without ``oracles`` (written before oracles had ratios) reads as none."""
        oracles = d.get("oracles") or {}
        return cls(backward=float(d["backward"]), linearization=float(d["linearization"]),
                   source=str(d.get("source", "given")), oracles=tuple((str(k), float(v)) for k, v in oracles.items()))


def _check_ratio(what: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{what}: found {v!r}, allowed: a finite number >= 0")


def oracle_of(method):
    """The oracle whose backward passes ``method`` counts: a gradient method's ``oracle``, that of the method a
    MultiStart runs (its ``method``), else None (a method without an oracle)."""
    for _ in range(8):  # a MultiStart over a MultiStart ... (bounded: a configuration is a finite tree)
        if method is None:
            return None
        oracle = getattr(method, "oracle", None)
        if oracle is not None:
            return oracle
        method = getattr(method, "method", None)
    return None


def method_oracle(method) -> Optional[str]:
    """The name of `oracle_of` ``method`` (what `StepCosts.backward_of` looks up), or None: a method without an
    oracle is charged ρ_b."""
    name = getattr(oracle_of(method), "name", None)
    return name if isinstance(name, str) else None


def declared_backward_steps(system, oracles) -> dict:
    """{name: map} of the ``oracles`` (configurations) that declare their own backward map on ``system``: each
    one's ``backward_step(system)`` (`trajopt.oracles.base`) when it has one and it is not None, in the form
    `system_step` gives the system's (a one-step system's map of one state). An oracle without it, or one that
    differentiates the system's own step there, is absent: it is charged ρ_b, and nothing more is measured."""
    out = {}
    for oracle in oracles:
        hook = getattr(oracle, "backward_step", None)
        name = getattr(oracle, "name", None)
        if not callable(hook) or not isinstance(name, str) or name in out:
            continue
        step = hook(system)
        if step is not None:
            out[name] = step
    return out


STEP_COSTS_ENV = "TRAJOPT_STEP_COSTS"


def given_step_costs() -> Optional[StepCosts]:
    """The step costs ``TRAJOPT_STEP_COSTS`` gives, or None when it is unset or empty: "B,L" (ρ_b = B and ρ_l = L,
    finite numbers >= 0), optionally followed by an oracle's own backward ratio per oracle, "B,L,cfd=X" (``oracles``:
    what that oracle is charged per backward pass instead of ρ_b); source "given by TRAJOPT_STEP_COSTS". A ValueError
    naming the variable, what was found and what is allowed otherwise. The command line uses it instead of measuring
    (`trajopt.step_costs.step_costs_for`): for runs that must convert with known numbers (tests, a comparison
    across hosts)."""
    import os

    text = os.environ.get(STEP_COSTS_ENV, "")
    if not text.strip():
        return None
    parts = [p.strip() for p in text.split(",")]
    values, oracles = [], []
    try:
        values = [float(p) for p in parts[:2]]
        for part in parts[2:]:
            name, eq, value = part.partition("=")
            if not eq or not name.strip().isidentifier() or name.strip() in dict(oracles):
                raise ValueError(part)
            oracles.append((name.strip(), float(value)))
    except ValueError:
        values = []
    ratios = values + [v for _, v in oracles]
    if len(values) != 2 or not all(math.isfinite(v) and v >= 0 for v in ratios):
        raise ValueError(f"{STEP_COSTS_ENV}: found {text!r}, allowed: two finite numbers >= 0, 'B,L' (a step's "
                         "backward pass and its linearisation, in forward steps), each optionally followed by "
                         "',ORACLE=X' (an oracle's own backward pass, e.g. 'B,L,cfd=X'), or unset to measure them")
    return StepCosts(values[0], values[1], f"given by {STEP_COSTS_ENV}", tuple(oracles))


def forward_equivalents(horizon: int, costs: StepCosts, rollouts=0, gradients=0, linearizations=0):
    """T (rollouts + ρ_b gradients + ρ_l linearizations): counts (numbers or arrays) -> forward-step equivalents.
    For a method's counts pass ``costs.charged(method_oracle(method))`` (`method_costs`): its oracle's ρ."""
    return horizon * (np.asarray(rollouts, float) + costs.backward * np.asarray(gradients, float)
                      + costs.linearization * np.asarray(linearizations, float))


def counts_of(info_or_history: Any) -> dict:
    """{rollouts, gradients, linearizations} of an info NamedTuple, a history dict or a mapping (0 where absent)."""
    get = (info_or_history.get if isinstance(info_or_history, dict)
           else (lambda k, d=0: getattr(info_or_history, k, d)))
    return {k: get(k, 0) for k in COUNT_FIELDS}


def fixed_counts(method, problem) -> Optional[tuple[int, int, int]]:
    """(rollouts, backward passes, linearizations) one step of ``method`` spends when that is fixed (its optional
    ``calls(problem)``, `trajopt.methods.base`: two numbers, or three with linearizations), else None: a method
    without ``calls`` (iLQR, L-BFGS, MultiStart over them: their line searches vary) or a gradient method whose
    oracle has no fixed count."""
    calls = getattr(method, "calls", None)
    if not callable(calls):
        return None
    try:
        counts = calls(problem)
    except (AttributeError, TypeError, NotImplementedError):  # an oracle without a fixed count
        return None
    if counts is None:
        return None
    counts = tuple(int(c) for c in counts)
    return (counts + (0, 0, 0))[:3]


def method_costs(costs: StepCosts, method) -> StepCosts:
    """The step costs ``method``'s counts convert with: ``costs`` with ρ_b replaced by its oracle's own ratio where
    ``costs.oracles`` has one (`method_oracle`, `StepCosts.charged`), else ``costs``."""
    return costs.charged(method_oracle(method))


def step_equivalents(method, problem, costs: StepCosts) -> Optional[float]:
    """The forward-step equivalents one step of ``method`` spends on ``problem`` when that is fixed (`fixed_counts`),
    else None: T (rollouts + ρ gradients + ρ_l linearizations), ρ its oracle's (`method_costs`)."""
    counts = fixed_counts(method, problem)
    if counts is None:
        return None
    return float(forward_equivalents(problem_horizon(problem), method_costs(costs, method), *counts))


def budget_iterations(method, problem, budget: float, costs: StepCosts) -> int:
    """The iterations a run of ``method`` under a compute ``budget`` (forward-step equivalents per seed) is given:
    for a method of fixed cost per step c (`step_equivalents`) floor(budget / c), so it never passes the budget;
    for any other, ceil(budget / T), T the problem's horizon: every step of a seed still running spends at least one
    rollout (T forward steps), so the budget stops it first (`trajopt.solve`'s ``budget``: it stops a seed once its
    spend reaches the budget, at most one step over). 0 when one fixed-cost step is over the budget."""
    per = step_equivalents(method, problem, costs)
    if per is not None:
        return int(math.floor(budget / per)) if per > 0 else 0
    return max(1, int(math.ceil(budget / problem_horizon(problem))))


def budget_steps(problem, methods, budget: float, costs: StepCosts, seeds: int = 1) -> dict:
    """{name: iterations} of an equal-budget run of the ``methods`` ({name: method}) on ``problem`` with a compute
    ``budget`` (forward-step equivalents per seed) and ``seeds`` seeds: `budget_iterations` of each, what
    ``trajopt compare --budget`` and a study's ``budget`` give every variant (the solver then stops a seed whose
    spend reaches the budget). A ValueError, its message "found B, allowed: ..." naming the variant, when one step
    of a variant is over the budget (0 iterations) or the iterations would pass the bounds of a run
    (`trajopt.limits`: MAX_ITERATIONS, and iterations x seeds <= MAX_HISTORY)."""
    from trajopt.limits import MAX_HISTORY, MAX_ITERATIONS

    steps = {}
    for name, method in methods.items():
        n = budget_iterations(method, problem, float(budget), costs)
        per = step_equivalents(method, problem, costs)
        if n < 1:
            raise ValueError(f"found {budget:,}, allowed: at least one step of every variant ({name!r} spends "
                             f"{per:,.6g} forward-step equivalents per step)")
        if n > MAX_ITERATIONS or n * seeds > MAX_HISTORY:
            what = f"{per:,.6g} forward-step equivalents per step" if per is not None else \
                "at least one rollout per step, its spend varies"
            raise ValueError(f"found {budget:,}, allowed: a budget of at most {MAX_ITERATIONS:,} steps of every "
                             f"variant and iterations x seeds <= {MAX_HISTORY:,} ({name!r} would be given {n:,} "
                             f"steps: {what})")
        steps[name] = n
    return steps


def problem_horizon(problem) -> int:
    """T of a problem, as a rollout counts steps: a time-stepped problem's U rows, a policy problem's H, 1 otherwise."""
    if getattr(problem, "time_stepped", False):
        return int(problem.U0.shape[0])
    horizon = getattr(problem, "horizon", None)
    if isinstance(horizon, int):
        return horizon
    return 1


def system_step(system) -> tuple[Callable, int, int]:
    """(step, n, m): the one-step map whose cost `measure_step_costs` measures for ``system``: a time-stepped
    system's ``step(x, u)`` (n, m its sizes); for a one-step system (``one_step``: an objective ``cost(theta)`` and no
    dynamics, T = 1) its cost function as a map of one state, ``x' = x + cost(u)`` (n = 1)."""
    m = int(system.control_size)
    if getattr(system, "one_step", False):
        cost = system.cost
        return (lambda x, u: x + cost(u)), 1, m
    return system.step, int(system.state_size), m


def _fastest_seconds(fns: list[Callable[[], Any]], repeats: int) -> list[float]:
    """The shortest wall time of each function over ``repeats`` rounds, measured interleaved (one call of each per
    round): on a shared machine the fastest run is the least disturbed estimate of a program's own cost."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            jax.block_until_ready(f())
            times[i].append(time.perf_counter() - t0)
    return [float(np.min(t)) for t in times]


MEASUREMENT = 2
"""The version of `measure_step_costs`' method: a kept measurement (`trajopt.step_costs`) made by another version is
measured again (version 1 timed call by call, and on a busy host read a cheap step's backward pass as free). The
oracles' own ratios (``StepCosts.oracles``) did not change what ρ_b and ρ_l are: a kept entry without them still
converts every oracle that declares none, and one that lacks a declaring oracle's ratio gains it
(`trajopt.step_costs`). Nor did the timing budget (``max_timing_seconds``, added later within version 2): it changes
how many runs an expensive step's rounds take, not what a ratio is, so ratios kept before it are still used."""


def measure_step_costs(step: Callable, n: int, m: int, *, batch: int = 16, length: int = 64, repeats: int = 7,
                       rounds: int = 3, key: Optional[jax.Array] = None, scale: float = 0.1,
                       target_seconds: float = 5e-3, max_reps: int = 4096, max_forward_seconds: float = 0.25,
                       max_timing_seconds: float = 30.0,
                       backward_steps: Optional[Mapping[str, Callable]] = None) -> StepCosts:
    """ρ_b and ρ_l of a one-step map ``step(x: [n], u: [m]) -> [n]`` on this host (see the module docstring), and
    ρ_o of each oracle's own backward map in ``backward_steps`` ({oracle name: map of the same signature whose value
    is ``step``'s and whose VJP is the oracle's backward pass}, `declared_backward_steps`; ``StepCosts.oracles``).

    Three operations on ``batch`` rollouts of ``length`` steps from small random states and controls (N(0, scale²),
    fixed by ``key``), as the methods run them: the forward rollouts (the sum of their final states), the same with
    their backward pass (``value_and_grad`` of that sum with respect to the controls), and the Jacobians of the step
    at the rollouts' batch x length points (``jacfwd``, iLQR's linearisation). Each is timed inside a compiled
    ``fori_loop`` of R repetitions chained through the start state (so nothing is hoisted), R chosen once (x2 at a
    time, at most ``max_reps``) until the forward program takes ``target_seconds``: what is timed is the operations'
    own work, not a call's fixed overhead (timed call by call, a cheap step's backward pass looked free). The time per
    repetition of each, in ``rounds`` rounds of the fastest of ``repeats`` interleaved runs, gives the rounds'
    ratios, and their median is returned. Each map of ``backward_steps`` adds one more program, the backward one with
    that map in place of ``step``, timed in the same rounds (interleaved with the others, so a host's load moves
    it with ρ_b): ρ_o = (t_o − t_forward) / t_forward, the median over the rounds.

    An expensive step (one forward run of ``batch`` x ``length`` steps over twice ``max_forward_seconds``: a large
    model, or a one-step system whose "step" is its whole cost, the cube toss's 1,000 physics steps) is timed on fewer
    steps, about ``batch x length x max_forward_seconds / t`` of them (t that first run's seconds; at least 2), so that
    a measurement takes minutes, not hours; one run of them still takes about ``max_forward_seconds``, far above any
    call's overhead. (A run under twice the bound keeps its size: the smaller programs would be compiled again,
    which costs more than the runs save.) The timing rounds are held to about ``max_timing_seconds``: after one
    interleaved pass of every program (t_pass seconds), each round takes the fastest of
    ``max(1, min(repeats, max_timing_seconds // (rounds x t_pass)))`` runs, so a step whose backward pass alone takes
    seconds (gymnasium's hopper on MJX: 5 s a run, ρ_b about 20) is timed on a few runs, each far above the host's
    jitter, not on 21 of every program. The source states the sizes and repetitions used.

    A map that refuses forward-mode derivatives (an MJX step: its Jacobian is a custom VJP) has no linearisation
    timed: no method can linearise it (iLQR refuses it), so ρ_l = 0, and the source says so. A map whose system has
    no derivatives (its ``differentiable`` is False: an mjx system on MuJoCo's C simulator) is not timed: no backward pass or linearisation can run on it, so ρ_b = ρ_l = 0 (a forward-step equivalent is
    then T × rollouts), with a source that says so."""
    if getattr(getattr(step, "__self__", None), "differentiable", True) is False:
        return StepCosts(backward=0.0, linearization=0.0, source="not measured: the system has no derivatives (no "
                         "backward pass or linearisation runs on it)")
    key = jax.random.PRNGKey(0) if key is None else key
    kx, ku = jax.random.split(key)
    dtype = jnp.result_type(float)
    X0 = scale * jax.random.normal(kx, (batch, n), dtype)
    U = scale * jax.random.normal(ku, (batch, length, m), dtype)

    def final(x0, us):
        return jnp.sum(jax.lax.scan(lambda x, u: (step(x, u), None), x0, us)[0])

    def states(x0, us):
        def body(x, u):
            return step(x, u), x
        return jax.lax.scan(body, x0, us)[1]

    def forward_once(x0):
        return jnp.sum(jax.vmap(final)(x0, U))

    def backward_once(x0):
        values, grads = jax.vmap(jax.value_and_grad(final, argnums=1))(x0, U)
        return jnp.sum(values) + jnp.sum(grads)

    def jacobians_once(x0):
        A, B = jax.vmap(jax.vmap(jax.jacfwd(step, argnums=(0, 1))))(jax.vmap(states)(x0, U), U)
        return jnp.sum(A) + jnp.sum(B)

    def repeated(once):
        @jax.jit
        def program(x0, reps):
            # each repetition starts from a state that depends on the last one's result (by 0 x result: the same
            # numbers, but no repetition can be hoisted out of the loop or dropped)
            def body(_, carry):
                x, acc = carry
                r = once(x)
                return x + 0.0 * r, acc + r
            return jax.lax.fori_loop(0, reps, body, (x0, jnp.zeros((), dtype)))[1]
        return program

    def backward_with(other):
        def final_other(x0, us):
            return jnp.sum(jax.lax.scan(lambda x, u: (other(x, u), None), x0, us)[0])

        def once(x0):
            values, grads = jax.vmap(jax.value_and_grad(final_other, argnums=1))(x0, U)
            return jnp.sum(values) + jnp.sum(grads)
        return once

    own = sorted((backward_steps or {}).items())
    linearizes = _takes_forward_mode(step, X0[0], U[0, 0])

    def build():  # the programs on the current X0 and U (each traced at its first call, with the U it sees then)
        return [repeated(f) for f in (forward_once, backward_once, *([jacobians_once] if linearizes else []),
                                      *(backward_with(other) for _, other in own))]

    programs = build()
    reps = 1
    jax.block_until_ready(programs[0](X0, reps))  # compile (reps is a traced bound: one program for every R)
    first = _fastest_seconds([lambda: programs[0](X0, reps)], 1)[0]
    if first > 2 * max_forward_seconds and batch * length > 2:  # an expensive step: time fewer of them
        steps = max(2, int(batch * length * max_forward_seconds / first))
        length = max(1, min(length, steps // 2))
        batch = max(1, min(batch, steps // length))
        X0, U = X0[:batch], U[:batch, :length]
        programs = build()
        jax.block_until_ready(programs[0](X0, reps))
    while reps < max_reps and _fastest_seconds([lambda: programs[0](X0, reps)], 3)[0] < target_seconds:
        reps *= 2
    fns = [lambda p=p: p(X0, reps) for p in programs]
    for f in fns:
        jax.block_until_ready(f())
    asked = repeats
    per_pass = sum(_fastest_seconds(fns, 1))  # one run of every program, compiled: what a repetition of a round costs
    if rounds * repeats * per_pass > max_timing_seconds:  # (an infinite budget: every repetition asked)
        repeats = max(1, min(repeats, int(max_timing_seconds // max(rounds * per_pass, 1e-12))))
    ratios = []
    for _ in range(rounds):
        t_f, t_fb, *t_rest = _fastest_seconds(fns, repeats)
        t_l, t_own = (t_rest[0], t_rest[1:]) if linearizes else (t_f, t_rest)
        t_f = max(t_f, 1e-12)
        # the backward program also rolls out forward: its extra time is the backward pass; the Jacobians' rollout
        # to reach their points is one forward rollout too, taken off likewise (and each oracle's program's)
        ratios.append([max(t - t_f, 0.0) / t_f for t in (t_fb, t_l, *t_own)])
    backward_ratio, linearization_ratio, *own_ratios = np.median(np.asarray(ratios), axis=0)
    held = (f" (of {asked} asked: one pass of the programs takes {per_pass:.3g} s, and the rounds are held to about "
            f"{max_timing_seconds:g} s)" if repeats < asked else "")
    return StepCosts(backward=round(float(backward_ratio), 3),
                     linearization=round(float(linearization_ratio), 3) if linearizes else 0.0,
                     source=f"measured: {batch} rollouts x {length} steps, {reps} repetitions per program, median of "
                            f"{rounds} rounds, each the fastest of {repeats}{held}"
                            + (f"; {', '.join(n for n, _ in own)}'s own backward pass in the same rounds" if own
                               else "")
                            + ("" if linearizes else "; linearisation not measured (ρ_l = 0): the map refuses "
                               "forward-mode derivatives, so no method linearises it"),
                     oracles=tuple((name, round(float(r), 3)) for (name, _), r in zip(own, own_ratios, strict=True)))


def _takes_forward_mode(step: Callable, x, u) -> bool:
    """Whether ``jax.jacfwd`` goes through the map (traced abstractly, nothing computed): a map differentiated only
    through a custom VJP (an MJX step's forward-mode Jacobian, `trajopt.systems.mjx.differentiable`) refuses it, as
    it refuses iLQR (`trajopt.methods.ilqr`)."""
    try:
        jax.eval_shape(jax.jacfwd(step, argnums=(0, 1)), x, u)
    except TypeError as e:
        if "forward-mode" not in str(e):
            raise
        return False
    return True
