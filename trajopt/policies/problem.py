"""Policy problems: the decision is a feedback policy's parameter vector theta, the cost the closed loop's.

Suh et al. 2022, §2 (Eq. 1). A policy pi(x, theta), theta in R^d, acts on a system x_{h+1} = phi(x_h, u_h) with noise on
its output, u_h = pi(x_h, theta) + w_h, w_h ~ N(0, sigma^2 I_m) i.i.d., from x_1 ~ rho. The cost-to-go of
one closed-loop trajectory is

    V_1(x_1, w_{1:H}, theta) = sum_{h<H} c(x_h, u_h) + c_H(x_H)          (``cost.stage``, ``cost.terminal``)

(the toolkit's convention: H stage terms and a terminal term, as in `trajopt.problem.QuadraticCost`), and
the objective, minimised, is Eq. 1:

    F(theta) = E_{x_1 ~ rho} E_{w ~ N(0, sigma^2 I)} [ V_1(x_1, w, theta) ]

`PolicyProblem` plugs into trajopt's Problem interface with the decision stored as U = theta[None]: [1, d]
(``U0``, ``shape``, ``dimension``, ``objective``), so `trajopt.methods.GradientMethod` and
`trajopt.solver.solve` run it unchanged with the policy oracles of `trajopt.policies.oracles`. It is *not*
time-stepped in the open-loop sense (``step``, ``x0``, ``cost`` and ``trajectory`` are None), so open-loop
methods (iLQR) do not mistake it for a trajectory problem; its own parts are ``system``, ``policy``,
``task_cost``, ``initial`` and ``horizon``.

``objective(U)`` is the *noise-free* expected closed-loop cost over a FIXED evaluation batch of ``n_eval``
initial states drawn once from ``PRNGKey(eval_seed)``: a deterministic monitor of progress (the ``value``
every method reports, not counted). No method decides with it: the gradient estimates draw their own initial
states, and the methods that compare or descend costs (CEM, MPPI, PS, DIAL, L-BFGS, MultiStart's choice of a
start) use ``decision_objective(key)`` (the Problem contract of `trajopt.problem`), the noise-free mean
closed-loop cost over a TRAINING batch of ``decision_rollouts`` initial states, never the evaluation batch:

* ``resample = false``: the fixed training set (``n_init`` states; ``key`` is not used);
* ``resample = true``: a fresh batch drawn from ``fold_in(key, DECISION_SALT)`` (a key of its own, so it does
  not alias the noise a method draws from the same step key), of ``n_init`` states, or ``n_eval`` states when
  ``n_init = 0``; with ``key = None`` (a deterministic method such as L-BFGS, whose line search needs one fixed
  function) a fixed batch of that size drawn once from ``PRNGKey(train_seed)`` (``decision_states``).

Each evaluation of the decision objective is ``decision_rollouts`` closed-loop rollouts, and a method counts
them. The gradient estimates use their own initial states:

* ``resample = true`` (the authors' code): every estimate draws fresh initial states from rho with the
  estimate's key; with ``n_init = 0`` (default) each sample i gets its own x_1^i (N samples, N initial
  states), with ``n_init = k`` the estimate draws k states and sample i starts from state i mod k.
* ``resample = false``: a fixed training set of ``n_init`` states drawn once from ``PRNGKey(train_seed)``;
  sample i starts from training state i mod n_init. The estimates are then unbiased for the training-set
  objective (1/n_init) sum_j E_w V(x_j, w, theta) when N is a multiple of n_init.

Held-aside states for success rates come from ``PRNGKey(test_seed)`` (`held_out_states`); the three seeds
must differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

import jax
import jax.numpy as jnp
from jax import Array

from trajopt import checks
from trajopt.oracles.base import gaussian_noise


@dataclass(frozen=True, eq=False)
class PolicyProblem:
    """A closed-loop policy optimisation problem (see the module docstring).

    Attributes:
        name: a label.
        system: anything with ``state_size`` n, ``control_size`` m and a pure ``step(x: [n], u: [m]) -> [n]``.
        policy: ``param_size(n, m)``, ``init_params(n, m)``, ``__call__(theta: [p], x: [n]) -> [m]``
            (`trajopt.policies.POLICIES`).
        task_cost: anything with ``stage(x: [n], u: [m]) -> scalar`` and ``terminal(x: [n]) -> scalar``
            (e.g. `trajopt.problem.QuadraticCost`).
        initial: the initial-state distribution rho, ``sample(key, count) -> [count, n]``
            (`trajopt.policies.INITIAL_STATES`).
        horizon: H, the number of closed-loop steps.
        sigma: the action-noise standard deviation of F (Eq. 1); the policy oracles use it unless they set
            their own ``sigma``.
        n_init, resample: how an estimate gets its initial states (module docstring).
        n_eval, eval_seed: size and key of the fixed evaluation batch behind ``objective``.
        train_seed: key of the fixed training set (``resample = false``) and of the fixed decision batch
            (``decision_states``).
        test_seed: key of the held-aside states (`held_out_states`).
        theta0: optional initial theta [p]; default ``policy.init_params(n, m)``.
    """

    name: str
    system: Any
    policy: Any
    task_cost: Any
    initial: Any
    horizon: int
    sigma: float = 0.01
    n_init: int = 0
    resample: bool = True
    n_eval: int = 100
    eval_seed: int = 1
    train_seed: int = 0
    test_seed: int = 2
    theta0: Optional[Any] = None
    U0: Array = field(init=False)
    eval_states: Array = field(init=False)
    train_states: Optional[Array] = field(init=False)
    decision_states: Array = field(init=False)

    # The open-loop Problem interface: a policy problem is not a trajectory problem.
    trajectory: ClassVar[None] = None
    step: ClassVar[None] = None
    x0: ClassVar[None] = None
    cost: ClassVar[None] = None
    time_stepped: ClassVar[bool] = False
    kind: ClassVar[str] = "policy"  # for messages: its decision is a policy's parameters
    decision_is_objective: ClassVar[bool] = False  # methods decide on a training batch, never the evaluation batch

    def __post_init__(self):
        checks.at_least("horizon", self.horizon, 1)
        checks.positive("sigma", self.sigma)
        checks.at_least("n_init", self.n_init, 0)
        checks.at_least("n_eval", self.n_eval, 1)
        if not self.resample and self.n_init < 1:
            raise checks.FieldError("n_init", self.n_init, "an integer >= 1 with resample = false (the training set size)")
        if len({self.eval_seed, self.train_seed, self.test_seed}) < 3:
            raise checks.FieldError("test_seed", self.test_seed, "three distinct seeds for eval_seed, train_seed, test_seed")
        n, m = self.state_size, self.control_size
        state_size = getattr(self.initial, "state_size", n)
        if state_size != n:
            raise checks.FieldError("initial_state", state_size, f"a distribution over states of size {n} (the system's)")
        p = self.policy.param_size(n, m)
        theta0 = self.policy.init_params(n, m) if self.theta0 is None else jnp.asarray(self.theta0, jnp.result_type(float))
        if theta0.shape != (p,):
            raise checks.FieldError("theta0", list(theta0.shape), f"a vector of {p} numbers (the policy's size)")
        object.__setattr__(self, "U0", theta0[None])
        object.__setattr__(self, "eval_states", self.initial.sample(jax.random.PRNGKey(self.eval_seed), self.n_eval))
        train = self.initial.sample(jax.random.PRNGKey(self.train_seed), self.n_init) if not self.resample else None
        object.__setattr__(self, "train_states", train)
        fixed = train if train is not None else self.initial.sample(jax.random.PRNGKey(self.train_seed),
                                                                    self.decision_rollouts)
        object.__setattr__(self, "decision_states", fixed)

    # ------------------------------------------------------------------ Problem interface

    @property
    def state_size(self) -> int:
        return int(self.system.state_size)

    @property
    def control_size(self) -> int:
        return int(self.system.control_size)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.U0.shape)

    @property
    def dimension(self) -> int:
        """d, the size of theta."""
        return int(self.U0.size)

    @property
    def objective_rollouts(self) -> int:
        """Closed-loop rollouts one evaluation of ``objective`` costs: n_eval (one per evaluation state)."""
        return self.n_eval

    def objective(self, U: Array) -> Array:
        """Noise-free expected closed-loop cost over the fixed evaluation batch: U = theta[None]: [1, d] -> scalar.

            objective(U) = (1/n_eval) sum_j V_1(x_j, 0, theta),   x_j = eval_states[j]

        What every method reports (``value``); no method decides with it (``decision_objective``).
        """
        return expected_cost(self, U[0], self.eval_states)

    @property
    def decision_rollouts(self) -> int:
        """B, the size of the training batch behind ``decision_objective`` (closed-loop rollouts per evaluation):
        n_init, or n_eval when resample = true and n_init = 0."""
        return self.n_init if self.n_init or not self.resample else self.n_eval

    def decision_states_for(self, key: Optional[Array] = None) -> Array:
        """The training batch a method decides on: [B, n] (module docstring). ``decision_states`` with
        resample = false or ``key = None``, else B fresh draws from ``fold_in(key, DECISION_SALT)``."""
        if not self.resample or key is None:
            return self.decision_states
        return self.initial.sample(jax.random.fold_in(key, DECISION_SALT), self.decision_rollouts)

    def decision_objective(self, key: Optional[Array] = None):
        """The cost a method may compare or descend: U = theta[None]: [1, d] -> scalar,

            f_key(U) = (1/B) sum_b V_1(x_b, 0, theta),   x_b = decision_states_for(key)[b]

        (noise-free, as ``objective``, over a training batch instead of the evaluation batch; B =
        ``decision_rollouts`` rollouts per call). The batch is drawn once per call of this function, so every
        candidate a method evaluates with the returned function sees the same states (common random numbers)."""
        states = self.decision_states_for(key)

        def f(U: Array) -> Array:
            return expected_cost(self, U[0], states)

        return f


DECISION_SALT = 0xDEC15
"""``decision_objective(key)`` draws its batch from ``fold_in(key, DECISION_SALT)``: a stream apart from the noise a
method draws from ``key`` itself and from MultiStart's per-start keys ``fold_in(key, i)``, i < 1024."""


# ---------------------------------------------------------------------- closed loop


def rollout(problem: PolicyProblem, theta: Array, x1: Array, w: Array) -> tuple[Array, Array]:
    """One closed-loop trajectory (``lax.scan`` over H).

    Args:
        theta: [d]; x1: [n] the initial state; w: [H, m] the action noise.

    Returns:
        X: [H+1, n] with X[0] = x1, X[h+1] = step(X[h], U[h]); U: [H, m] with U[h] = pi(X[h], theta) + w[h].
    """

    def body(x, w_h):
        u = problem.policy(theta, x) + w_h
        x_next = problem.system.step(x, u)
        return x_next, (x_next, u)

    _, (xs, us) = jax.lax.scan(body, x1, w)
    return jnp.concatenate([x1[None], xs], axis=0), us


def trajectory_cost(problem: PolicyProblem, X: Array, U: Array) -> Array:
    """V_1 of a trajectory: sum_{h<H} stage(X[h], U[h]) + terminal(X[H]), X: [H+1, n], U: [H, m] -> scalar."""
    stages = jax.vmap(problem.task_cost.stage)(X[:-1], U)
    return jnp.sum(stages) + problem.task_cost.terminal(X[-1])


def value(problem: PolicyProblem, theta: Array, x1: Array, w: Array) -> Array:
    """V_1(x_1, w_{1:H}, theta) (Suh et al. 2022, §2): theta [d], x1 [n], w [H, m] -> scalar."""
    X, U = rollout(problem, theta, x1, w)
    return trajectory_cost(problem, X, U)


def value_and_states(problem: PolicyProblem, theta: Array, x1: Array, w: Array) -> tuple[Array, Array]:
    """(V_1, X [H+1, n]) of one noisy rollout (the ZoBG needs the visited states for its score)."""
    X, U = rollout(problem, theta, x1, w)
    return trajectory_cost(problem, X, U), X


def zero_noise(problem: PolicyProblem, count: Optional[int] = None) -> Array:
    """w = 0: [H, m], or [count, H, m]."""
    shape = (problem.horizon, problem.control_size)
    return jnp.zeros(shape if count is None else (count, *shape))


def expected_cost(problem: PolicyProblem, theta: Array, states: Array) -> Array:
    """Noise-free mean cost over initial states: theta [d], states [B, n] -> (1/B) sum_b V_1(x_b, 0, theta)."""
    w0 = zero_noise(problem)
    return jnp.mean(jax.vmap(lambda x1: value(problem, theta, x1, w0))(states))


def trajectories(problem: PolicyProblem, theta: Array, states: Array) -> Array:
    """Noise-free closed-loop states from each initial state: theta [d], states [B, n] -> X [B, H+1, n]."""
    w0 = zero_noise(problem)
    return jax.vmap(lambda x1: rollout(problem, theta, x1, w0)[0])(states)


# ---------------------------------------------------------------------- sampling


def initial_states(problem: PolicyProblem, key: Array, count: int) -> Array:
    """The initial states of ``count`` samples of one estimate: [count, n] (module docstring).

    resample, n_init = 0: ``count`` fresh draws from rho; resample, n_init = k: k fresh draws, sample i gets
    draw i mod k; no resample: sample i gets training state i mod n_init (the key is not used).
    """
    if problem.resample:
        k = problem.n_init or count
        states = problem.initial.sample(key, k)
    else:
        states, k = problem.train_states, problem.n_init
    if k == count:
        return states
    return states[jnp.arange(count) % k]


def draw_samples(problem: PolicyProblem, key: Array, count: int, sigma: float) -> tuple[Array, Array]:
    """Initial states and action noise of ``count`` samples: (X1 [count, n], W [count, H, m]).

    ``key`` splits into (initial-state key, noise key); W ~ N(0, sigma^2 I) is drawn in float32 and cast, as
    the open-loop oracles' perturbations are (`trajopt.oracles.base.gaussian_noise`).
    """
    k_init, k_noise = jax.random.split(key)
    X1 = initial_states(problem, k_init, count)
    W = gaussian_noise(k_noise, count, (problem.horizon, problem.control_size), sigma, X1.dtype)
    return X1, W


def held_out_states(problem: PolicyProblem, count: int) -> Array:
    """``count`` held-aside initial states from ``PRNGKey(test_seed)`` (neither the training set nor the
    evaluation batch): [count, n]."""
    return problem.initial.sample(jax.random.PRNGKey(problem.test_seed), count)


def policy_problem(name: str, system, policy, task_cost, initial, horizon: int, **options) -> PolicyProblem:
    """`PolicyProblem` by keyword (``options``: sigma, n_init, resample, n_eval, seeds, theta0)."""
    return PolicyProblem(name=name, system=system, policy=policy, task_cost=task_cost, initial=initial,
                         horizon=horizon, **options)
