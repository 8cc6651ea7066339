"""Receding-horizon MPC over the method contract: one compiled episode per method.

    mpc(problem, {name: method}, settings=MPCSettings(...), plant=Plant(...), key=..., seeds=[...]) -> {name: MPCResult}

Replanning step i = 0, 1, ..., R-1 (R = ceil(N / r); N = ``episode`` plant steps, r = ``replan_every``) happens at
plant step t_i = i r:

1. **Measure**: y_i = x_{t_i} + s ⊙ ε_i (the plant's state with its measurement noise, `trajopt.closedloop.plant`).
2. **Plan** on the model (never the plant): the horizon problem P_i is

       minimise over U [H, m]:  Σ_{h<H} stage(x̂_h, u_h) + terminal(x̂_H),   x̂_0 = y_i,  x̂_{h+1} = model.step(x̂_h, u_h)

   (the file's ``[task]`` cost, H = ``horizon``). The method starts from the guess Ū_i (i = 0: ``init(key_0, P_0,
   Ū_0)``; later its warm start, `warm_start`) and takes K = ``iterations`` steps; the plan is its decision.
3. **Apply** the plan's first r controls to the plant (fewer in the last replan if r does not divide N).
4. **Shift**: Ū_{i+1} = [plan[r:], fill] with ``warm_start`` = ``hold`` (the plan's last control repeated),
   ``zero``, or ``initial`` (the problem's own initial guess U0 at those absolute times; its last row beyond them).

The whole episode is one compiled program: ``lax.scan`` over replanning steps, the method's K steps a ``lax.scan``
inside, ``vmap`` over seeds. **Keys**: seed s has key_0 = fold_in(key, s); replan 0 is ``init(key_0, ...)`` and its
step k uses fold_in(key_0, k), exactly as `trajopt.solve`, so with r = H = N (one replan) and no plant changes a
closed-loop run is the open-loop run: the same iterates and cost. Replan i > 0 uses key_i = fold_in(fold_in(key_0,
REPLAN_TAG), i) and the measurement noise of replan i fold_in(fold_in(key_0, NOISE_TAG), i): a seed draws the same
noise alone or in a batch.

**What a method carries from one replan to the next** (its optional ``warm_start(key, problem, state, U, shift)``;
without one, ``init(key, problem, U)``: everything but the shifted plan resets). See `warm_start`; the methods table
in `trajopt.methods` says what each method carries.

**Counted compute** per replan: the K steps' ``rollouts``, ``gradients`` and ``linearizations`` (horizon-H rollouts,
backward passes and linearisations, as every method counts them; 0 for a count a method's info lacks). The planned cost f_{P_i}(plan) is evaluated once per replan for the record (not
counted, as solve's final evaluation is not).

**Blow-ups**: a method step whose value or new state is not finite is not taken (the method keeps its last finite
state, as solve stops a seed there); if the plan itself is not finite, the shifted guess is applied instead and the
replan is counted in ``plan_failures``. A seed whose realised episode is not finite (a plant state, an applied
control, or its closed-loop cost: a stage cost, or their sum, that overflows) has status ``non_finite``, its
closed-loop cost NaN and ``failed_at`` the first plant step t whose state x_t, control u_t or cost so far
(Σ_{s<=t} stage(x_s, u_s), the terminal cost added at t = N) is not finite. The episode still runs to its end (one
compiled program), so the records after ``failed_at`` are what the plant produced (inf or NaN once a state is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from trajopt import checks
from trajopt.closedloop.plant import Plant
from trajopt.compute import COUNT_FIELDS
from trajopt.methods.base import all_finite, state_decision
from trajopt.oracles.base import gaussian_noise
from trajopt.problem import trajectory_problem

FILL_RULES = ("hold", "zero", "initial")
REPLAN_TAG = 0x6D706331  # "mpc1": replan keys
NOISE_TAG = 0x6D706332   # "mpc2": measurement noise keys

STATUS_OK, STATUS_NON_FINITE = "ok", "non_finite"


@dataclass(frozen=True)
class MPCSettings:
    """episode: N plant steps; horizon: H planning steps; replan_every: r plant steps between replans
    (1 <= r <= H); iterations: K method steps per replan; warm_start: the fill rule of the shifted plan's tail
    (hold | zero | initial)."""

    episode: int
    horizon: int
    replan_every: int = 1
    iterations: int = 1
    warm_start: str = "hold"

    def __post_init__(self):
        for name in ("episode", "horizon", "replan_every", "iterations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise checks.FieldError(name, value, "an integer >= 1")
            checks.at_least(name, int(value), 1)
        if self.replan_every > self.horizon:
            raise checks.FieldError("replan_every", self.replan_every,
                                    f"an integer in 1..{self.horizon} (at most the horizon: a replan applies controls "
                                    "from its own plan only)")
        if self.replan_every > self.episode:
            raise checks.FieldError("replan_every", self.replan_every, f"an integer in 1..{self.episode} (the episode)")
        checks.one_of("warm_start", self.warm_start, FILL_RULES)

    @property
    def replans(self) -> int:
        """R = ceil(N / r), the number of replanning steps."""
        return -(-self.episode // self.replan_every)


def warm_start(method: Any, key, problem, state, U, shift: int):
    """The method's state for the next replan: its own ``warm_start(key, problem, state, U, shift)`` when it has one
    (what it carries over: CEM's spread, iLQR's regulariser), else ``init(key, problem, U)`` (only the shifted plan
    carries over). ``U`` is the shifted plan [H, m], ``shift`` the r plant steps executed since ``state``'s plan (U[t]
    = plan[t + r] before the fill). The returned state's decision is U, or for a method sampled on knots the spline
    through U's values at its knot times (`trajopt.methods._sampling`: the last spline time-shifted)."""
    hook = getattr(method, "warm_start", None)
    if callable(hook):
        return hook(key, problem, state, U, shift)
    return method.init(key, problem, U)


def _check_problem(problem) -> None:
    if not getattr(problem, "time_stepped", False) or getattr(problem, "step", None) is None:
        kind = "a policy problem (its decision is a policy's parameters, already closed loop)" \
            if hasattr(problem, "policy") else "a one-step problem"
        raise ValueError(f"closed-loop MPC needs a time-stepped open-loop problem (a one-step map, a start and a stage "
                         f"cost); {getattr(problem, 'name', 'this')} is {kind}")


def initial_guess(problem, settings: MPCSettings) -> jnp.ndarray:
    """Ū_0: [H, m], the problem's initial guess U0 for the first H steps (its last row repeated beyond T)."""
    U0 = jnp.asarray(problem.U0)
    idx = np.minimum(np.arange(settings.horizon), U0.shape[0] - 1)
    return U0[idx]


def planning_problem(problem, settings: MPCSettings):
    """The first replan's problem P_0: the model's H-step problem from the problem's x0 with `initial_guess` as its U0
    (every later replan has the same shapes): what a method is checked against before an episode compiles (a
    sampler's ``knots`` must fit H, not the task's T)."""
    return trajectory_problem(problem.name, problem.step, problem.x0, problem.cost, initial_guess(problem, settings))


def _fill(settings: MPCSettings, plan, U0, start) -> jnp.ndarray:
    """The r rows appended to the shifted plan, for absolute plant steps start .. start + r - 1 (start traced)."""
    r = settings.replan_every
    if settings.warm_start == "hold":
        return jnp.broadcast_to(plan[-1], (r, plan.shape[1]))
    if settings.warm_start == "zero":
        return jnp.zeros((r, plan.shape[1]), plan.dtype)
    idx = jnp.minimum(start + jnp.arange(r), U0.shape[0] - 1)
    return U0[idx].astype(plan.dtype)


class _Episode:
    """The traced pieces of one method's closed-loop episode (see the module docstring); every function is pure.

    * ``start(seed_key, x0=None) -> carry``: (x_0, Ū_0, the method's state, plan failures 0, the seed's plant factors
      `Plant.factors`), x_0 the problem's start or the seed's own ``x0``;
    * ``plan(seed_key, carry, i) -> planned``: measure, warm-start and take K steps: (plan, state, the counts spent
      (`COUNT_FIELDS`: rollouts, gradients, linearizations), planned cost, failed);
    * ``advance(carry, planned, i) -> (carry, out)``: apply the plan's first r controls to the plant and shift;
    * ``finish(x_0, outs) -> dict``: the realised X, U, the closed-loop cost and the per-replan records (``one_seed``
      adds the seed's plant factors);
    * ``run(key, seeds, x0s=None)``: the whole batched episode (``lax.scan`` over replans, ``vmap`` over seeds).
    """

    def __init__(self, problem, method, settings: MPCSettings, plant: Plant, name: str = "mpc"):
        _check_problem(problem)
        self.method, self.settings, self.name = method, settings, name
        self.model_step, self.cost = problem.step, problem.cost
        self.plant = plant
        self.plant_step = plant.step_fn(problem.step)  # (x, u, the seed's plant factors) -> x'
        self.x0 = jnp.asarray(problem.x0)
        self.n = int(self.x0.shape[0])
        self.U0 = jnp.asarray(problem.U0)
        self.guess0 = initial_guess(problem, settings)
        self.D = plant.increments(self.n, settings.episode, self.x0.dtype)
        self.noise_scale = plant.noise_scale(self.n, self.x0.dtype)
        self.noisy = plant.noisy

    def horizon_problem(self, x_meas, guess):
        """P_i: the model's horizon problem from the measured state, with the guess as its U0."""
        return trajectory_problem(self.name, self.model_step, x_meas, self.cost, guess)

    def start(self, seed_key, x0=None):
        x_start = (self.x0 if x0 is None else x0) + self.D[0]
        # the method state's structure for the carry; replan 0 initialises it again (lax.cond's init branch)
        mstate = self.method.init(seed_key, self.horizon_problem(x_start, self.guess0), self.guess0)
        return x_start, self.guess0, mstate, jnp.asarray(0, jnp.int32), self.plant.factors(seed_key).astype(x_start.dtype)

    def plan(self, seed_key, carry, i):
        x, guess, mstate = carry[:3]
        method, K = self.method, self.settings.iterations
        if self.noisy:
            key_noise = jax.random.fold_in(jax.random.fold_in(seed_key, NOISE_TAG), i)
            x_meas = x + self.noise_scale * gaussian_noise(key_noise, 1, (self.n,), 1.0, x.dtype)[0]
        else:
            x_meas = x
        prob = self.horizon_problem(x_meas, guess)
        key_i = jnp.where(i == 0, seed_key, jax.random.fold_in(jax.random.fold_in(seed_key, REPLAN_TAG), i))
        state = jax.lax.cond(i == 0, lambda: method.init(key_i, prob, guess),
                             lambda: warm_start(method, key_i, prob, mstate, guess, self.settings.replan_every))

        def body(carry, k):
            state, alive, spent = carry
            new, info = method.step(jax.random.fold_in(key_i, k), prob, state)
            finite = jnp.isfinite(info.value) & all_finite(new)
            on = alive.astype(jnp.int32)  # a step is recorded (and spends) while the replan's steps stay finite
            counts = tuple(jnp.asarray(getattr(info, f, 0), jnp.int32) for f in COUNT_FIELDS)
            return (jax.tree_util.tree_map(lambda a, b: jnp.where(alive & finite, a, b), new, state),
                    alive & finite, tuple(s + on * c for s, c in zip(spent, counts))), None

        zero = tuple(jnp.asarray(0, jnp.int32) for _ in COUNT_FIELDS)
        (state, _, spent), _ = jax.lax.scan(body, (state, jnp.asarray(True), zero), jnp.arange(K, dtype=jnp.int32))
        plan = state_decision(state)
        ok = all_finite(plan)
        plan = jnp.where(ok, plan, guess)
        planned = prob.objective(plan)  # for the record (not counted)
        return plan, state, spent, planned, ~ok

    def advance(self, carry, planned, i):
        x, _, _, failures, factors = carry
        plan, state, spent, cost, failed = planned
        N, H, r = self.settings.episode, self.settings.horizon, self.settings.replan_every
        start = i * r

        def apply(x, j):
            t = start + j
            x_next = self.plant_step(x, plan[j], factors) + self.D[jnp.minimum(t + 1, N)]
            x_next = jnp.where(t < N, x_next, x)
            return x_next, (x_next, plan[j])

        x_end, (xs, us) = jax.lax.scan(apply, x, jnp.arange(r))
        guess = jnp.concatenate([plan[r:], _fill(self.settings, plan, self.U0, start + H)], axis=0)
        out = dict(xs=xs, us=us, planned=cost, failed=failed, **dict(zip(COUNT_FIELDS, spent)))
        return (x_end, guess, state, failures + failed.astype(jnp.int32), factors), out

    def finish(self, x_start, out):
        N, r, R = self.settings.episode, self.settings.replan_every, self.settings.replans
        X = jnp.concatenate([x_start[None], out["xs"].reshape(R * r, self.n)[:N]], axis=0)
        U = out["us"].reshape(R * r, -1)[:N]
        J = self.cost(X, U)
        bad = self._non_finite_steps(X, U, J)
        J = jnp.where(jnp.any(bad), jnp.nan, J)
        return dict(X=X, U=U, cost=J, failed_at=jnp.where(jnp.any(bad), jnp.argmax(bad), -1).astype(jnp.int32),
                    plan_failures=jnp.sum(out["failed"].astype(jnp.int32)), planned=out["planned"],
                    **{f: out[f] for f in COUNT_FIELDS})

    def _non_finite_steps(self, X, U, J):
        """[N+1] bool: plant step t's record is not finite: its state x_t, its control u_t (t < N) or the cost so far
        (Σ_{s<=t} stage(x_s, u_s), at t = N with the terminal cost added); the last step also whenever the episode's
        cost J is not finite (for a cost without ``stage`` and ``terminal``, the only sign of its blow-up)."""
        N = U.shape[0]
        bad = ~jnp.all(jnp.isfinite(X), axis=1)
        bad = bad.at[:N].set(bad[:N] | ~jnp.all(jnp.isfinite(U), axis=1))
        stage, terminal = getattr(self.cost, "stage", None), getattr(self.cost, "terminal", None)
        if callable(stage) and callable(terminal):
            parts = jnp.concatenate([jax.vmap(stage)(X[:-1], U), terminal(X[-1])[None]])
            bad = bad | ~jnp.isfinite(jnp.cumsum(parts))
        return bad.at[N].set(bad[N] | ~jnp.isfinite(J))

    def one_seed(self, seed_key, x0=None):
        carry = self.start(seed_key, x0)

        def replan(carry, i):
            return self.advance(carry, self.plan(seed_key, carry, i), i)

        _, out = jax.lax.scan(replan, carry, jnp.arange(self.settings.replans, dtype=jnp.int32))
        return {**self.finish(carry[0], out), "plant_factors": carry[4]}

    def run(self, key, seeds, x0s=None):
        """The batched episode; ``x0s`` [S, n]: each seed's own start (None: the problem's x0 for every seed)."""
        seed_keys = jax.vmap(lambda s: jax.random.fold_in(key, s))(seeds)
        if x0s is None:
            return jax.vmap(self.one_seed)(seed_keys)
        return jax.vmap(self.one_seed)(seed_keys, x0s)



@dataclass(frozen=True, eq=False)
class MPCResult:
    """One method's closed-loop episodes over several seeds (host numpy arrays).

    Attributes:
        name, method: the label and the method run.
        settings: the `MPCSettings`; plant: the `Plant` (its ``describe()`` is what result.json records).
        seeds: [S]; X: [S, N+1, n] the realised (plant) states; U: [S, N, m] the applied controls.
        closed_loop_cost: [S] the task's cost of the realised trajectory, Σ_{t<N} stage(x_t, u_t) + terminal(x_N)
            (NaN for a seed whose episode went non-finite: status "non_finite").
        planned_cost: [S, R] the model's cost of each replan's plan from its measured state (the planner's prediction).
        rollouts, gradients, linearizations: [S, R] the simulator calls each replan spent (horizon-H rollouts, backward
            passes, linearisations).
        success: [S] 1.0 / 0.0 where the problem defines success (`trajopt.closedloop.success`), else None.
        status: [S] "ok" or "non_finite"; failed_at: [S] the first plant step t (0..N) whose state x_t, control u_t
            or cost so far (Σ_{s<=t} stage, the terminal added at N) is not finite, -1 if none;
        plan_failures: [S] replans whose plan was not finite (the shifted guess was applied instead).
        plant_factors: {label: [S]} each seed's factor of each of the plant's per-seed draws (`Plant.draws`; empty
            without draws).
        compile_seconds, run_seconds: the batched episode's compilation and run times.
        trace_reused: the episode's programs were read back from the traces folder (`trajopt.traces`), not traced.
        compilation_cache: {program: where it came from} for the batched episode ("episode") and the timing pass's
            programs ("start", "plan", "advance"): `trajopt.compiler.CACHE_STATUSES` ("memory", "hit", "miss" or
            "off").
        plan_seconds: [R] wall time of each replan of seed ``seeds[0]`` in a separate, timing-only pass (None if not
            measured); episode_seconds: that pass's whole wall time; dt: the control step of the system.
    """

    name: str
    method: Any
    settings: MPCSettings
    plant: Plant
    seeds: np.ndarray
    X: np.ndarray
    U: np.ndarray
    closed_loop_cost: np.ndarray
    planned_cost: np.ndarray
    rollouts: np.ndarray
    gradients: np.ndarray
    linearizations: np.ndarray
    status: list
    failed_at: np.ndarray
    plan_failures: np.ndarray
    compile_seconds: float
    run_seconds: float
    success: Optional[np.ndarray] = None
    plan_seconds: Optional[np.ndarray] = None
    episode_seconds: float = math.nan
    dt: float = math.nan
    plant_factors: Mapping = field(default_factory=dict)
    trace_reused: bool = False
    compilation_cache: Mapping = field(default_factory=dict)

    @property
    def closed_loop_cost_median(self) -> float:
        c = self.closed_loop_cost[np.isfinite(self.closed_loop_cost)]
        return float(np.median(c)) if c.size else math.nan

    @property
    def success_rate(self) -> Optional[float]:
        """The share of seeds that succeeded (None where no success is defined)."""
        return None if self.success is None else float(np.mean(self.success))

    def compute_per_step(self) -> dict:
        """Mean simulator calls per replan over seeds and replans: {rollouts, gradients, linearizations}."""
        return {"rollouts": float(np.mean(self.rollouts)), "gradients": float(np.mean(self.gradients)),
                "linearizations": float(np.mean(self.linearizations))}

    @property
    def control_period(self) -> float:
        """The time between replans, replan_every x dt (s)."""
        return self.settings.replan_every * self.dt

    def plan_seconds_summary(self) -> dict:
        """{p50, p95, max} of the timed replans (NaN if not timed)."""
        if self.plan_seconds is None or not len(self.plan_seconds):
            return {"p50": math.nan, "p95": math.nan, "max": math.nan}
        p = np.asarray(self.plan_seconds)
        return {"p50": float(np.percentile(p, 50)), "p95": float(np.percentile(p, 95)), "max": float(p.max())}

    @property
    def deadline_miss_rate(self) -> float:
        """The share of timed replans that took longer than the control period (NaN if not timed or no dt)."""
        if self.plan_seconds is None or not math.isfinite(self.control_period):
            return math.nan
        return float(np.mean(np.asarray(self.plan_seconds) > self.control_period))

    @property
    def realtime_factor(self) -> float:
        """Simulated time / wall time of the timed episode (N dt / episode_seconds; NaN if not timed)."""
        if not math.isfinite(self.episode_seconds) or not math.isfinite(self.dt) or self.episode_seconds <= 0:
            return math.nan
        return self.settings.episode * self.dt / self.episode_seconds


