"""`ilqr`: Gauss–Newton iLQR (iterative LQR) with Levenberg–Marquardt regularisation and box limits.

One step, from the iterate Ū (shape [T, m]) of a time-stepped problem (``problem.step``, ``x0``, ``cost``):

1. Nominal trajectory: X̄ = rollout(step, x0, Ū) ([T+1, n]), J = Σ_t stage(x̄_t, ū_t) + terminal(x̄_T): the
   accepted line-search trial of the previous step *is* that rollout (step 4 rolls the new Ū out), so it is kept
   in the state and reused; only a step whose Ū has not been rolled out (the first, and the first after a warm
   start) rolls it out.                                                              (0 or 1 rollout)
2. Linearisation: A_t = ∂step/∂x, B_t = ∂step/∂u at (x̄_t, ū_t) by ``jax.jacfwd`` ([T, n, n], [T, n, m]);
   cost gradients l_x, l_u and Hessians l_xx, l_uu, l_ux of ``cost.stage`` / ``cost.terminal`` by JAX.
   The gradient of J, ∇_U J (adjoint recursion λ_T = ∂terminal, λ_t = l_x + A_tᵀ λ_{t+1},
   ∇_{u_t} J = l_u + B_tᵀ λ_{t+1}), costs no further simulator calls.
3. Backward pass (Gauss–Newton: the second derivatives of the dynamics are dropped), from V_x = ∂terminal,
   V_xx = ∂²terminal:

       Q_x = l_x + Aᵀ V_x,    Q_u = l_u + Bᵀ V_x,
       Q_xx = l_xx + Aᵀ V_xx A,   Q_uu = l_uu + Bᵀ V_xx B,   Q_ux = l_ux + Bᵀ V_xx A,
       k = −(Q_uu + μ I)⁻¹ Q_u,   K = −(Q_uu + μ I)⁻¹ Q_ux,
       V_x = Q_x + Kᵀ Q_uu k + Kᵀ Q_u + Q_uxᵀ k,   V_xx = Q_xx + Kᵀ Q_uu K + Kᵀ Q_ux + Q_uxᵀ K

   (Tassa, Erez & Todorov 2012, eq. 11, which hold for any (k, K), so also for the clamped ones below).
   If Q_uu + μ I is not positive definite (its Cholesky factor is not finite), μ is increased and the
   backward pass repeated, without simulator calls, until it is or μ exceeds ``mu_max``.
4. Line search on the true cost: for α = 1, β, β², ... (β = ``backtrack``, at most ``line_search_steps``
   trials) roll out the feedback law

       x̂_0 = x0,   û_t = clip(ū_t + α k_t + K_t (x̂_t − x̄_t), u_min, u_max),   x̂_{t+1} = step(x̂_t, û_t)

   and accept the first trial whose cost Ĵ = Σ stage(x̂_t, û_t) + terminal(x̂_T) (= problem.objective(Û)) is
   finite and strictly below J. Each trial is one rollout.

**Regularisation** (Tassa et al. 2012, §II-F, the rule of their iLQG code and of trajax's constrained
solver): with δ₀ = ``mu_factor``,

    increase:  δ ← max(δ₀, δ δ₀),   μ ← max(μ_min, μ δ)
    decrease:  δ ← min(1/δ₀, δ/δ₀), μ ← μ δ if μ δ ≥ μ_min else 0

μ increases after a non-positive-definite backward pass or a failed line search and decreases after an
accepted step. μ starts at ``mu_init`` (default 0: plain Gauss–Newton iLQR, trajax's default which has no
regulariser, so a linear-quadratic problem is solved exactly in one step).

**Box limits** (``u_min``, ``u_max``, the same for every control coordinate; default ±inf): Box-DDP
(Tassa, Mansard & Todorov 2014). In the backward pass the feedforward step solves the box-QP

    k_t = argmin ½ kᵀ(Q_uu + μ I)k + Q_uᵀ k   subject to  u_min <= ū_t + k <= u_max

by projected Newton (`_box_qp`, 10 iterations with an Armijo search each); the feedback rows of the
coordinates held at a bound are zero and the free rows are K_f = −(Q_uu + μ I)_ff⁻¹ Q_ux,f. The forward pass
clamps û_t again (the feedback term may leave the box), so every iterate lies in the box; ``init`` projects
U0 into the box. Without finite limits the box-QP is skipped (plain Cholesky solve).

**Stopping** (the state keeps a flag; a stopped state is returned unchanged, with rollouts = gradients =
0, value = the cost recorded when it stopped). ``info.stop_reason`` codes:

    0  running
    1  gradient tolerance: ‖∇_U J(Ū)‖₂ ≤ ``grad_tol`` at the start of a step (trajax's
       grad_norm_threshold, default 1e-4); with box limits the projected gradient (components that push
       out of an active bound dropped); Ū is kept
    2  relative cost change: an accepted step changed the cost by |J − Ĵ| ≤ ``cost_rtol`` |J|; the new
       iterate is kept
    3  regularisation exhausted: μ > ``mu_max`` after a failed backward pass or line search; Ū is kept

The iteration limit is `trajopt.solve`'s ``iterations``.

**Counts per step**: ``rollouts`` = the line-search trials spent (0 when the step stopped before the line
search), + 1 on a step that rolls Ū out (the first; a rejected step keeps Ū and its rollout, so the next step does
not roll it out again either: trajax's count, 1 + Σ trials); ``linearizations`` = 1: the Jacobians ∂step/∂x, ∂step/∂u at the T points of
the rollout (``jacfwd``: n + m forward-mode directional derivatives through each step), converted into forward
steps with the system's measured ρ_l (`trajopt.compute`); ``gradients`` = 0 (no backward pass). The cost
derivatives are analytic in the cost (no simulator call) and not counted. A stopped state spends nothing
(``stopped``: `trajopt.solve` then stops stepping it).

Defaults: ``line_search_steps`` = 10 halvings from α = 1 (trajax backtracks by halving from alpha_0 = 1);
``grad_tol`` = 1e-4 (trajax); ``mu_min`` = 1e-6, ``mu_factor`` = 2, ``mu_max`` = 1e10 (Tassa et al.'s
iLQG: lambdaMin 1e-6, lambdaMax 1e10, factor 1.6; trajax's constrained iLQR uses 2).

**Against trajax's iLQR** (``trajax.optimizers.ilqr``, google/trajax at its current main, run on the same problems
with its rollouts counted by host callbacks in its ``_rollout`` and ``ddp_rollout``), from U0 = 0:

| problem | trajax: cost, iterations, rollouts | here: cost, steps to the stop, rollouts (before reuse) |
|---|---|---|
| `pendulum_trajax` (RK4, T = 300) | 19155.971903, 66, 67 (1 + 66 trials) | 19155.971904, 60 (relative cost change), 61 (120) |
| `acrobot` (Euler, T = 50) | 44.513285, 62, 84 (1 + 83 trials) | 44.513285, 56 (relative cost change), 78 (133) |

trajax stops on ‖∇J‖ <= 1e-4; here the relative cost change (1e-9) stops a few steps earlier at the same cost.
Every step also spends one linearisation (trajax's too).

**Batching**: the step runs one seed (or MultiStart start) at a time under ``vmap``
(`trajopt.methods._batching.per_element`): a seed's iterates are the same alone and in a batch, and its loops
(regularisation, line search) and its stopped branch take their own course instead of the batch's longest.

**Closed loop** (`trajopt.closedloop`): ``warm_start`` keeps the regulariser (μ, δ) of the last replan (the
problem is the last one shifted by the executed steps, its curvature much the same) and resets the stop flag; the
shifted plan is rolled out afresh by the first step (a new start state).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from trajopt import checks
from trajopt.checks import FieldError
from trajopt.methods._batching import per_element
from trajopt.methods.base import as_count, as_float, problem_kind

_BOUND_TOL = 1e-9  # a control within this (relative) distance of a bound counts as at the bound



def _bound_tol(bound: float) -> float:
    return _BOUND_TOL * (1.0 + abs(bound)) if math.isfinite(bound) else 0.0


STOP_RUNNING, STOP_GRADIENT, STOP_COST_CHANGE, STOP_REGULARISATION = 0, 1, 2, 3


class ILQRState(NamedTuple):
    """U: [T, m] the iterate; X: [T+1, n] its rollout and value: f(U), both valid when ``fresh``; mu, delta: the
    regulariser and its factor; stop: int32 stop reason (0 running, see the module docstring); fresh: bool, X and
    value are U's (False after init and a warm start: the next step rolls U out, and counts it)."""

    U: Array
    value: Array
    mu: Array
    delta: Array
    stop: Array
    X: Array
    fresh: Array


class ILQRInfo(NamedTuple):
    """value f(Ū); rollouts, gradients, linearizations (simulator calls, see the module docstring); grad_norm ‖∇_U J(Ū)‖
    (projected on the box; NaN once stopped);
    mu: the regulariser used by the backward pass; step_length: the accepted line-search step (0 if none; named
    apart from the oracles' α, the FoBG weight, which figures and tables show);
    expected: the predicted decrease −(α kᵀQ_u + α²/2 kᵀQ_uu k) of the accepted step (0 if none);
    stop_reason: 0 running, 1 gradient tolerance, 2 relative cost change, 3 regularisation exhausted."""

    value: Array
    rollouts: Array
    gradients: Array
    linearizations: Array
    grad_norm: Array
    mu: Array
    step_length: Array
    expected: Array
    stop_reason: Array


def _linearise(problem, X: Array, U: Array):
    """A: [T, n, n], B: [T, n, m]; stage derivatives lx [T, n], lu [T, m], lxx [T, n, n], luu [T, m, m],
    lux [T, m, n]; terminal derivatives px [n], pxx [n, n]."""
    step, cost = problem.step, problem.cost
    A, B = jax.vmap(jax.jacfwd(step, argnums=(0, 1)))(X[:-1], U)
    lx, lu = jax.vmap(jax.grad(cost.stage, argnums=(0, 1)))(X[:-1], U)
    (lxx, lxu), (lux, luu) = jax.vmap(jax.hessian(cost.stage, argnums=(0, 1)))(X[:-1], U)
    del lxu
    px = jax.grad(cost.terminal)(X[-1])
    pxx = jax.hessian(cost.terminal)(X[-1])
    return A, B, lx, lu, lxx, luu, lux, px, pxx


def _gradient(A, B, lx, lu, px) -> Array:
    """∇_U J: [T, m] by the adjoint recursion λ_t = l_x + A_tᵀ λ_{t+1}, ∇_{u_t} J = l_u + B_tᵀ λ_{t+1}."""

    def body(lam, inputs):
        A_t, B_t, lx_t, lu_t = inputs
        return lx_t + A_t.T @ lam, lu_t + B_t.T @ lam

    _, g = jax.lax.scan(body, px, (A, B, lx, lu), reverse=True)
    return g


def _box_qp(H: Array, g: Array, lo: Array, hi: Array, iterations: int = 10):
    """min_x ½ xᵀH x + gᵀx subject to lo <= x <= hi (lo <= 0 <= hi), by projected Newton (Tassa, Mansard &
    Todorov 2014, "Control-limited differential dynamic programming", Algorithm 3), a fixed number of
    iterations, each with an Armijo search over the steps 0.6^j (j = 0..9) evaluated at once.

    H: [m, m] positive definite; g, lo, hi: [m]. Returns (x: [m], free: [m] bool, the coordinates not held at
    a bound by a gradient pointing out of the box)."""
    m = g.shape[0]
    eye = jnp.eye(m, dtype=H.dtype)
    steps = 0.6 ** jnp.arange(10, dtype=H.dtype)
    value = lambda x: 0.5 * x @ H @ x + g @ x  # noqa: E731

    def free_set(x, grad):
        return ~(((x <= lo) & (grad > 0)) | ((x >= hi) & (grad < 0)))

    def body(_, x):
        grad = g + H @ x
        free = free_set(x, grad)
        H_ff = jnp.where(free[:, None] & free[None, :], H, eye)
        search = -jnp.linalg.solve(H_ff, jnp.where(free, grad, 0.0))
        trials = jnp.clip(x[None] + steps[:, None] * search[None], lo, hi)  # [10, m]
        decrease = jax.vmap(value)(trials) - value(x)
        armijo = decrease <= 0.1 * (trials - x[None]) @ grad
        ok = armijo & (decrease < 0)
        best = jnp.argmax(ok)
        return jnp.where(ok[best], trials[best], x)

    x = jax.lax.fori_loop(0, iterations, body, jnp.clip(jnp.zeros_like(g), lo, hi))
    return x, free_set(x, g + H @ x)


def _backward(lin, U: Array, mu: Array, u_min: float, u_max: float):
    """The Gauss–Newton backward pass with Q_uu + μ I (and box limits: Box-DDP's box-QP, `_box_qp`).

    Returns (k: [T, m], K: [T, m, n], dV1, dV2, ok) with the predicted change of the cost
    α dV1 + α²/2 dV2 (dV1 = Σ kᵀ Q_u, dV2 = Σ kᵀ Q_uu k) and ok = every Q_uu + μ I was positive definite."""
    A, B, lx, lu, lxx, luu, lux, px, pxx = lin
    m = U.shape[-1]
    eye = jnp.eye(m, dtype=U.dtype)
    boxed = math.isfinite(u_min) or math.isfinite(u_max)

    def body(carry, inputs):
        Vx, Vxx, dV1, dV2, ok = carry
        A_t, B_t, lx_t, lu_t, lxx_t, luu_t, lux_t, u_t = inputs
        Qx = lx_t + A_t.T @ Vx
        Qu = lu_t + B_t.T @ Vx
        Qxx = lxx_t + A_t.T @ Vxx @ A_t
        Quu = luu_t + B_t.T @ Vxx @ B_t
        Qux = lux_t + B_t.T @ Vxx @ A_t
        Quu = 0.5 * (Quu + Quu.T)
        L = jnp.linalg.cholesky(Quu + mu * eye)
        ok_t = jnp.all(jnp.isfinite(L))
        L = jnp.where(ok_t, L, eye)  # keep the pass finite; the caller discards it when not ok
        if boxed:
            k, free = _box_qp(Quu + mu * eye, Qu, u_min - u_t, u_max - u_t)
            # feedback on the free coordinates only: K_f = -(H_ff)^-1 Q_ux,f, K_c = 0 (Box-DDP)
            both = free[:, None] & free[None, :]
            H_ff = jnp.where(both, Quu + mu * eye, eye)
            K = -jnp.linalg.solve(H_ff, jnp.where(free[:, None], Qux, 0.0))
        else:
            kK = -jax.scipy.linalg.cho_solve((L, True), jnp.concatenate([Qu[:, None], Qux], axis=1))
            k, K = kK[:, 0], kK[:, 1:]
        Vx = Qx + K.T @ Quu @ k + K.T @ Qu + Qux.T @ k
        Vxx = Qxx + K.T @ Quu @ K + K.T @ Qux + Qux.T @ K
        Vxx = 0.5 * (Vxx + Vxx.T)
        return (Vx, Vxx, dV1 + k @ Qu, dV2 + k @ Quu @ k, ok & ok_t), (k, K)

    zero = jnp.zeros((), U.dtype)
    (_, _, dV1, dV2, ok), (k, K) = jax.lax.scan(
        body, (px, pxx, zero, zero, jnp.asarray(True)), (A, B, lx, lu, lxx, luu, lux, U), reverse=True)
    return k, K, dV1, dV2, ok


def _forward(problem, X: Array, U: Array, k: Array, K: Array, alpha, u_min: float, u_max: float):
    """Roll out the feedback law; returns (Û: [T, m], X̂: [T+1, n], Ĵ = cost(X̂, Û)), X̂ the rollout of Û (the next
    nominal trajectory when the trial is accepted)."""
    step = problem.step

    def body(x, inputs):
        x_bar, u_bar, k_t, K_t = inputs
        u = jnp.clip(u_bar + alpha * k_t + K_t @ (x - x_bar), u_min, u_max)
        x_next = step(x, u)
        return x_next, (x_next, u)

    _, (xs, U_new) = jax.lax.scan(body, problem.x0, (X[:-1], U, k, K))
    X_new = jnp.concatenate([problem.x0[None], xs], axis=0)
    return U_new, X_new, problem.cost(X_new, U_new)


@dataclass(frozen=True)
class ILQR:
    """Gauss–Newton iLQR (see the module docstring for the formulas, counts and stop codes).

    line_search_steps: the most trials per step (α = 1, backtrack, backtrack², ...); backtrack: the
    step-size factor β in (0, 1); mu_init: the initial Levenberg–Marquardt weight on Q_uu (0 = none);
    mu_min, mu_max: its floor (below it μ drops to 0) and ceiling (beyond it the method stops, code 3);
    mu_factor: δ₀ > 1, the base of the increase/decrease rule; grad_tol: stop when ‖∇_U J‖ ≤ grad_tol
    (code 1); cost_rtol: stop after an accepted step with |ΔJ| ≤ cost_rtol |J| (code 2); u_min, u_max:
    box limits on every control coordinate (projected iLQR)."""

    line_search_steps: int = 10
    backtrack: float = 0.5
    mu_init: float = 0.0
    mu_min: float = 1e-6
    mu_max: float = 1e10
    mu_factor: float = 2.0
    grad_tol: float = 1e-4
    cost_rtol: float = 1e-9
    u_min: float = -math.inf
    u_max: float = math.inf
    name: ClassVar[str] = "ilqr"
    value_in_calls: ClassVar[bool] = True  # its value is the counted nominal rollout's (or the stored one once converged)
    deterministic: ClassVar[bool] = True  # its steps use no key (`trajopt.methods.multistart`)

    def __post_init__(self):
        checks.at_least("line_search_steps", self.line_search_steps, 1)
        checks.in_interval("backtrack", self.backtrack, 0.0, 1.0, closed=False)
        checks.non_negative("mu_init", self.mu_init)
        checks.positive("mu_min", self.mu_min)
        checks.positive("mu_max", self.mu_max)
        if not self.mu_max > max(self.mu_min, self.mu_init):
            raise FieldError("mu_max", self.mu_max, f"a number > mu_min ({self.mu_min}) and mu_init ({self.mu_init})")
        if not (self.mu_factor > 1 and math.isfinite(self.mu_factor)):
            raise FieldError("mu_factor", self.mu_factor, "a finite number > 1")
        checks.non_negative("grad_tol", self.grad_tol)
        checks.non_negative("cost_rtol", self.cost_rtol)
        if math.isnan(self.u_min) or self.u_min == math.inf:
            raise FieldError("u_min", self.u_min, "a number or -inf")
        if math.isnan(self.u_max) or self.u_max == -math.inf:
            raise FieldError("u_max", self.u_max, "a number or inf")
        if not self.u_min < self.u_max:
            raise FieldError("u_max", self.u_max, f"a number > u_min ({self.u_min})")

    def _check_kind(self, problem) -> None:
        if getattr(problem, "time_stepped", False):
            return
        what = {"policy": "a policy problem (its decision is a policy's parameters)"}.get(
            problem_kind(problem), "a one-step problem (an objective only)")
        raise ValueError(f"ilqr needs a time-stepped problem (a one-step map, a start and a stage cost); "
                         f"{getattr(problem, 'name', 'the problem')} is {what}")

    def check(self, problem) -> None:
        """Raise ValueError unless the problem is time-stepped (a one-step map, a start and a stage cost) and its map
        takes forward-mode derivatives: iLQR linearises the one-step map along the rollout of an open-loop control
        sequence with ``jax.jacfwd`` (a map that differentiates only through a custom VJP refuses it; traced
        abstractly, nothing is computed)."""
        self._check_kind(problem)
        try:
            jax.eval_shape(jax.jacfwd(problem.step, argnums=(0, 1)), problem.x0, problem.U0[0])
        except TypeError as e:
            if "forward-mode" not in str(e):
                raise
            reason = str(e).splitlines()[0].rstrip(".")
            raise ValueError(f"ilqr linearises the one-step map with forward-mode derivatives (jax.jacfwd); "
                             f"{getattr(problem, 'name', 'the problem')}'s map refuses them ({reason})") from None

    def init(self, key: Array, problem, U0: Array) -> ILQRState:
        del key
        self.check(problem)
        U0 = jnp.clip(U0, self.u_min, self.u_max)
        X = jnp.zeros((U0.shape[0] + 1, jnp.shape(problem.x0)[0]), jnp.result_type(U0, problem.x0))
        return ILQRState(U=U0, value=as_float(0.0), mu=as_float(self.mu_init), delta=as_float(1.0),
                         stop=as_count(STOP_RUNNING), X=X, fresh=jnp.asarray(False))

    def warm_start(self, key: Array, problem, state: ILQRState, U: Array, shift: int = 0) -> ILQRState:
        """The next replan's state (`trajopt.closedloop`): the regulariser (mu, delta) carries over, the stop flag
        resets (a new problem: another start, the shifted plan), and U (projected into the box) is rolled out afresh
        by the first step; ``shift`` (the steps executed) is not needed."""
        del shift
        new = self.init(key, problem, U)
        return new._replace(mu=as_float(state.mu), delta=as_float(state.delta))

    def _increase(self, mu, delta):
        delta = jnp.maximum(self.mu_factor, delta * self.mu_factor)
        return jnp.maximum(self.mu_min, mu * delta), delta

    def _decrease(self, mu, delta):
        delta = jnp.minimum(1.0 / self.mu_factor, delta / self.mu_factor)
        mu = mu * delta
        return jnp.where(mu >= self.mu_min, mu, 0.0), delta

    def _active_step(self, problem, state: ILQRState):
        U = state.U
        if problem.trajectory is None:  # pragma: no cover - time-stepped problems always have a trajectory
            raise ValueError("ilqr needs problem.trajectory")

        def roll(_):
            X = problem.trajectory(U)
            return X.astype(state.X.dtype), as_float(problem.cost(X, U))

        # the nominal trajectory: the accepted line-search rollout kept by the last step, else one rollout (counted)
        X, J = jax.lax.cond(state.fresh, lambda _: (state.X, state.value), roll, None)
        lin = _linearise(problem, X, U)
        A, B, lx, lu, _, _, _, px, _ = lin
        g = _gradient(A, B, lx, lu, px)
        at_min = U <= self.u_min + _bound_tol(self.u_min)  # at a bound, up to round-off
        at_max = U >= self.u_max - _bound_tol(self.u_max)
        g = jnp.where((at_min & (g > 0)) | (at_max & (g < 0)), 0.0, g)  # the projected gradient
        grad_norm = jnp.linalg.norm(g)
        at_tol = grad_norm <= self.grad_tol

        # backward pass, raising mu until Q_uu + mu I is positive definite (no simulator calls)
        def bp_cond(c):
            mu, delta, out = c
            return (~at_tol) & (~out[-1]) & (mu <= self.mu_max)

        def bp_body(c):
            mu, delta, _ = c
            mu, delta = self._increase(mu, delta)
            return mu, delta, _backward(lin, U, mu, self.u_min, self.u_max)

        mu0 = state.mu
        mu, delta, (k, K, dV1, dV2, bp_ok) = jax.lax.while_loop(
            bp_cond, bp_body, (mu0, state.delta, _backward(lin, U, mu0, self.u_min, self.u_max)))
        bp_ok = bp_ok & (mu <= self.mu_max)
        search = (~at_tol) & bp_ok

        # line search on the true cost: the first finite decrease among alpha = 1, beta, beta^2, ...
        def ls_cond(c):
            i, accepted = c[0], c[1]
            return search & (~accepted) & (i < self.line_search_steps)

        def ls_body(c):
            i = c[0]
            alpha = jnp.asarray(self.backtrack, U.dtype) ** i
            U_new, X_new, J_new = _forward(problem, X, U, k, K, alpha, self.u_min, self.u_max)
            return i + 1, jnp.isfinite(J_new) & (J_new < J), U_new, X_new, as_float(J_new), alpha

        trials, accepted, U_new, X_new, J_new, alpha = jax.lax.while_loop(
            ls_cond, ls_body, (as_count(0), jnp.asarray(False), U, X, J, jnp.zeros((), U.dtype)))
        alpha = jnp.where(accepted, alpha, 0.0)
        expected = jnp.where(accepted, -(alpha * dV1 + 0.5 * alpha**2 * dV2), 0.0)

        mu_up, delta_up = self._increase(mu, delta)
        mu_down, delta_down = self._decrease(mu, delta)
        mu_next = jnp.where(accepted, mu_down, jnp.where(search, mu_up, mu))
        delta_next = jnp.where(accepted, delta_down, jnp.where(search, delta_up, delta))
        exhausted = (~at_tol) & ((~bp_ok) | ((~accepted) & (mu_next > self.mu_max)))
        small_change = accepted & (jnp.abs(J - J_new) <= self.cost_rtol * jnp.abs(J))
        stop = jnp.where(at_tol, STOP_GRADIENT,
                         jnp.where(exhausted, STOP_REGULARISATION, jnp.where(small_change, STOP_COST_CHANGE, STOP_RUNNING)))
        # the accepted trial's rollout is the next nominal trajectory; a rejected step keeps U's own (no re-roll)
        new = ILQRState(U=jnp.where(accepted, U_new, U), value=jnp.where(accepted, J_new, J),
                        mu=jnp.minimum(mu_next, self.mu_max), delta=jnp.minimum(delta_next, 1e30),
                        stop=as_count(stop), X=jnp.where(accepted, X_new, X), fresh=jnp.asarray(True))
        rolled = 1 - state.fresh.astype(jnp.int32)
        info = ILQRInfo(value=as_float(J), rollouts=as_count(rolled + trials), gradients=as_count(0), linearizations=as_count(1),
                        grad_norm=as_float(grad_norm), mu=as_float(mu), step_length=as_float(alpha),
                        expected=as_float(expected), stop_reason=as_count(stop))
        return new, info

    def stopped(self, state: ILQRState) -> Array:
        """Whether the state has stopped (a stop code is set): its steps return it unchanged and spend nothing."""
        return state.stop != STOP_RUNNING

    def step(self, key: Array, problem, state: ILQRState) -> tuple[ILQRState, ILQRInfo]:
        del key
        self._check_kind(problem)

        def stopped(state):
            nan = as_float(jnp.nan)
            return state, ILQRInfo(value=as_float(state.value), rollouts=as_count(0), gradients=as_count(0),
                                   linearizations=as_count(0),
                                   grad_norm=nan, mu=as_float(state.mu), step_length=as_float(0.0), expected=as_float(0.0),
                                   stop_reason=as_count(state.stop))

        # one seed at a time under vmap (`trajopt.methods._batching`): the same iterates alone and in a batch, and
        # each seed's loops (regularisation, line search) and its stopped branch run its own course
        return per_element(lambda state: jax.lax.cond(state.stop == STOP_RUNNING,
                                                      lambda s: self._active_step(problem, s), stopped, state))(state)
