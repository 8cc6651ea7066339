"""The program of the fused loop: one chunk of iterations for every seed (``lax.scan`` over the chunk's iterations,
``vmap`` over seeds), and the decision it returns (evaluated by a program of its own, `make_finish`, or for a
study grid's loop in the same program: `with_finish`). `trajopt.solver` traces, compiles and runs it.

    chunk(carry, seed_keys [S, 2], ks [C], last) -> (carry, outputs, (final, U), over)

Iteration k of seed s draws its noise from ``fold_in(fold_in(key, s), k)`` (``seed_keys[s]`` is
``fold_in(key, s)``), so seed s sees the same noise alone or inside a batch, and any chunking gives the same
iterates; past the run's ``total`` iterations (the last chunk padded) nothing is recorded. The carry is (method
state [S, ...], alive [S], failed_at [S], the last iterate with a finite cost [S, ...]) and, under a compute budget
(`make_budget_chunk`), each seed's spend [S]. A seed whose cost or next state is not finite stops there (alive
False, ``failed_at`` k); a seed over its budget takes no further step. `Layout` packs each iteration's info fields
into a few outputs; `default_chunk` says how many iterations a chunk holds when the caller does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import jaxpr_as_fun

from trajopt.compute import StepCosts, method_costs
from trajopt.methods.base import Method, all_finite, state_decision
from trajopt.problem import Problem

def info_fields(problem: Problem, method: Method) -> tuple[str, ...]:
    """The names of a method's info fields (traced abstractly, nothing is computed)."""
    key = jax.random.PRNGKey(0)
    state = jax.eval_shape(lambda: method.init(key, problem, problem.U0))
    _, info = jax.eval_shape(lambda s: method.step(key, problem, s), state)
    return tuple(info._fields)


def _where_tree(pred, new, old):
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), new, old)


def _blank(v):
    """What a stopped seed records for an info field: NaN for floats, zero (no calls spent) otherwise."""
    return jnp.nan if jnp.issubdtype(v.dtype, jnp.floating) else jnp.zeros_like(v)


class Layout:
    """How the info fields of one iteration travel out of the loop: the scalar fields of each dtype stacked into
    one vector (one scan output per dtype instead of one per field: fewer ops in the loop body); other fields
    as they are. Filled while the chunk is traced."""

    def __init__(self):
        self.where: dict[str, tuple[str, Optional[int]]] = {}  # field -> (output name, column or None)
        self.fields: dict[str, tuple[np.dtype, tuple]] = {}  # field -> (dtype, shape of one iteration's value)
        # dtype of the final evaluation f(U), set by `with_finish` (fused) or by the solver's own program of it
        self.final_dtype = None

    def pack(self, info, record, value_only=None):
        """The outputs of one step: every field where ``record``, else blank (`_blank`); with ``value_only`` (a seed
        held at its iterate: over its compute budget), ``value`` is kept there too and every other field is blank."""
        groups: dict[str, list] = {}
        out = {}
        for name, v in zip(info._fields, info):
            v = jnp.asarray(v)
            self.fields[name] = (np.dtype(v.dtype), tuple(v.shape))
            keep = record if value_only is None or name != "value" else record | value_only
            if v.ndim == 0:
                group = groups.setdefault(str(v.dtype), [])
                self.where[name] = (str(v.dtype), len(group))
                group.append((v, keep))
            else:
                self.where[name] = (name, None)
                out[name] = jnp.where(keep, v, _blank(v))
        for dtype, vs in groups.items():
            packed = jnp.stack([v for v, _ in vs])
            # after a seed stops (or past the last iteration) it records NaN and spends no simulator calls
            keep = record if value_only is None else jnp.stack([k for _, k in vs])
            out[dtype] = jnp.where(keep, packed, _blank(packed))
        return out

    def recorded(self) -> dict:
        """What tracing filled in (plain data), for `restore` in a process that reads the trace back instead of
        tracing (`trajopt.traces`)."""
        return {"where": dict(self.where), "fields": dict(self.fields), "final_dtype": self.final_dtype}

    def restore(self, recorded: dict) -> None:
        """Fill this layout in as the trace that `recorded` it did."""
        self.where, self.fields = dict(recorded["where"]), dict(recorded["fields"])
        self.final_dtype = recorded["final_dtype"]

    def unpack(self, host: dict, take: int) -> dict[str, np.ndarray]:
        """{field: [S, take]} from the host copy of one chunk's outputs."""
        return {name: (host[out][:, :take] if col is None else host[out][:, :take, col])
                for name, (out, col) in self.where.items()}


def make_chunk(problem: Problem, method: Method, total: int, layout: Optional[Layout] = None):
    """chunk(carry, seed_keys: [S, 2], ks: [C]) -> (carry, outputs), the method's info fields packed by
    ``layout`` ({field: [S, C]} through `Layout.unpack`)."""
    layout = layout if layout is not None else Layout()

    def one_seed(carry, seed_key, ks):
        def body(carry, k):
            state, alive, failed_at, last_good = carry
            valid = k < total
            new_state, info = method.step(jax.random.fold_in(seed_key, k), problem, state)
            finite = jnp.isfinite(info.value) & all_finite(new_state)
            proceed = alive & valid & finite
            failed_now = alive & valid & ~finite
            record = alive & valid
            out = layout.pack(info, record)
            U = state_decision(state)
            carry = (
                _where_tree(proceed, new_state, state),
                alive & ~failed_now,
                jnp.where(failed_now, k, failed_at),
                jnp.where(record & jnp.isfinite(info.value), U, last_good),  # the latest iterate with a finite cost
            )
            return carry, out

        return jax.lax.scan(body, carry, ks)

    return jax.vmap(one_seed, in_axes=(0, 0, None))


@dataclass(frozen=True)
class StopRule:
    """When a seed stops being stepped, besides a non-finite step: its method says so (``stopped(state)``,
    `trajopt.methods.base`) or its spend reached ``budget`` forward-step equivalents (T (rollouts + ρ_b gradients
    + ρ_l linearizations) per step, `trajopt.compute`; None: no budget)."""

    budget: Optional[float]
    horizon: int
    costs: Any  # trajopt.compute.StepCosts
    stopped: Optional[Callable] = field(default=None, compare=False)  # the method's stopped(state), if it has one

    def converged(self, state) -> jax.Array:
        """Whether the method says ``state`` (one seed's) has stopped (False for a method without ``stopped``)."""
        return jnp.asarray(self.stopped(state), bool) if self.stopped is not None else jnp.asarray(False)


def stop_rule(method: Method, budget: Optional[float], step_costs, horizon: int) -> StopRule:
    stopped = getattr(method, "stopped", None)
    # the method's oracle's own backward ratio where the step costs hold one (trajopt.compute.method_costs: cfd's)
    return StopRule(budget=None if budget is None else float(budget), horizon=int(horizon),
                     costs=method_costs(step_costs if step_costs is not None else StepCosts(), method),
                     stopped=stopped if callable(stopped) else None)


def _info_count(info, name: str, dtype) -> jax.Array:
    return jnp.asarray(getattr(info, name, 0), dtype)


def make_budget_chunk(problem: Problem, method: Method, total: int, layout: Layout, rule: StopRule):
    """The loop of `make_chunk` under a compute budget: the carry adds each seed's spend ([S] forward-step
    equivalents, T (rollouts + ρ_b gradients + ρ_l linearizations) per step). A seed whose spend has reached the
    budget takes no further step (its state, and so its iterate, stays); it records its ``value`` (f of the iterate
    it holds, which the discarded step computed) and blank fields (no calls spent)."""
    T, rb, rl, limit = rule.horizon, float(rule.costs.backward), float(rule.costs.linearization), float(rule.budget)

    def one_seed(carry, seed_key, ks):
        def body(carry, k):
            state, alive, failed_at, last_good, spent = carry
            valid = k < total
            over = spent >= limit
            new_state, info = method.step(jax.random.fold_in(seed_key, k), problem, state)
            finite = jnp.isfinite(info.value) & all_finite(new_state)
            record = alive & valid & ~over
            proceed = record & finite
            failed_now = record & ~finite
            out = layout.pack(info, record, value_only=alive & valid & over)
            U = state_decision(state)
            fse = T * (_info_count(info, "rollouts", spent.dtype) + rb * _info_count(info, "gradients", spent.dtype)
                       + rl * _info_count(info, "linearizations", spent.dtype))
            carry = (
                _where_tree(proceed, new_state, state),
                alive & ~failed_now,
                jnp.where(failed_now, k, failed_at),
                jnp.where(record & jnp.isfinite(info.value), U, last_good),  # the latest iterate with a finite cost
                spent + jnp.where(record, fse, 0.0),
            )
            return carry, out

        return jax.lax.scan(body, carry, ks)

    return jax.vmap(one_seed, in_axes=(0, 0, None))


def final_decision(carry):
    """[S, ...] the decision each seed returns: its current one, or for a failed seed its last with a finite cost."""
    state, alive, last_good = carry[0], carry[1], carry[3]
    U = state_decision(state)
    return jnp.where(alive.reshape((-1,) + (1,) * (U.ndim - 1)), U, last_good)


def make_finish(problem: Problem):
    """finish(U: [S, T, m]) -> (f(U): [S], X: [S, T+1, n] or None): the final evaluation of every seed."""

    def finish(U):
        X = jax.vmap(problem.trajectory)(U) if problem.trajectory is not None else None
        return jax.vmap(problem.objective)(U), X

    return finish


def with_finish(problem: Problem, run_chunk, layout: Optional[Layout] = None, rule: Optional[StopRule] = None, *,
                fused: bool = True):
    """chunk(carry, seed_keys, ks, last) -> (carry, outputs, (final, U), over): ``run_chunk`` followed, in the same
    program, by the seeds whose spend has reached the budget (``over`` [S]; none without a budget) and the decision
    each seed returns (``U`` [S, ...], `final_decision`).

    ``fused``: the chunk also evaluates that decision when ``last`` is true (the last chunk, or the one after which
    every seed had stopped) or every seed is over its budget or not finite (nothing can change its decision any
    more; ``final`` = (f(U), X), ``lax.cond``; NaN otherwise), and ``layout`` records the final cost's dtype while
    it is traced: what a study's group of cells runs (their problems' constants are the group's inputs).
    Otherwise ``final`` is None and the caller evaluates U with `make_finish`'s program, which is the same for
    every method of a problem and seed count: compiled once for all the variants of a run, where the fused
    evaluation was compiled into each one's loop (for an MJX model a third copy of its physics in a ZoBG loop,
    about a third of its compile seconds)."""
    finish = make_finish(problem)
    rule = rule if rule is not None else StopRule(budget=None, horizon=1, costs=None)

    def fused_chunk(carry, seed_keys, ks, last):  # its name names the program (and its compilation-cache entry)
        carry, out = run_chunk(carry, seed_keys, ks)
        # the method's own `stopped` is asked apart (`Prepared.stopped_fn`): used here, on the carry, it changed how
        # XLA compiled the loop's body (iLQR on friction.toml, one seed: the last bit from the second iterate on)
        over = carry[4] >= rule.budget if rule.budget is not None else jnp.zeros(carry[1].shape, bool)
        if not fused:
            return carry, out, (None, final_decision(carry)), over
        settled = jnp.all(~carry[1] | over)
        U = final_decision(carry)
        # traced once (the rollouts in it are the slowest thing to trace) and evaluated as that jaxpr in the
        # branch: the NaN branch needs its shapes before lax.cond traces the other
        jaxpr, shapes = jax.make_jaxpr(finish, return_shape=True)(U)
        if layout is not None:
            layout.final_dtype = np.dtype(shapes[0].dtype)
        tree = jax.tree_util.tree_structure(shapes)
        evaluate = lambda U: jax.tree_util.tree_unflatten(tree, jaxpr_as_fun(jaxpr)(U))
        blank = lambda U: jax.tree_util.tree_map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), shapes)
        return carry, out, (jax.lax.cond(last | settled, evaluate, blank, U), U), over

    return fused_chunk


CHUNK_ENTRIES = 1 << 19
"""The most seed-iterations one default chunk records: about 16 info fields x 8 bytes x 2**19 = 64 MiB of outputs,
held twice (XLA's buffer and its host copy) for the chunk being recorded and the one queued behind it."""


STOPPING_CHUNKS = 40
"""Chunks of a run whose seeds may stop before its last iteration (a method with ``stopped``, a budget): the loop
learns that every seed has stopped at the end of a chunk, so finer chunks waste less (at most the chunk that is
running and the one queued behind it)."""


def default_chunk(iterations: int, n_seeds: int, stops: bool = False) -> int:
    """Iterations per compiled chunk when none is given: about a tenth of the run (progress ten times, a stop
    within a tenth; a `STOPPING_CHUNKS`-th when ``stops``: the seeds may all stop early), but never more than
    `CHUNK_ENTRIES` seed-iterations, so the outputs of the chunks in flight stay bounded however long the run
    (smaller only past iterations x seeds = 2**19 x 10, about 5e6)."""
    parts = STOPPING_CHUNKS if stops else 10
    return max(1, min(math.ceil(iterations / parts), CHUNK_ENTRIES // max(n_seeds, 1)))

