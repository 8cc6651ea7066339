"""What a run of the solver produced: `Result` (host numpy arrays: the final decision, the cost and every info field
at each iteration, each seed's status, timings) and the properties that read it, a block of iterations at a time
(its history may be files mapped into memory, `trajopt.runs.DiskHistory`). `trajopt.solver` makes one
(`trajopt.solver.Prepared.run`); `trajopt.runs` reads one back from a run folder.

A seed's status is one of `STATUSES`: ``ok``, ``non_finite`` (its cost or next state was not finite: it stopped
there), ``all_skipped`` (every update was skipped for a non-finite estimate: it never left U0) or ``interrupted``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import numpy as np

from trajopt.compute import forward_equivalents, method_oracle
from trajopt.stats import column_blocks

STATUS_OK = "ok"
STATUS_NON_FINITE = "non_finite"
STATUS_ALL_SKIPPED = "all_skipped"
"""Every update of the seed was skipped for a non-finite estimate (``skip_non_finite``): it never left U0."""
STATUS_INTERRUPTED = "interrupted"
STATUSES = (STATUS_OK, STATUS_NON_FINITE, STATUS_ALL_SKIPPED, STATUS_INTERRUPTED)


@dataclass(frozen=True, eq=False)
class Result:
    """What one method's run over several seeds produced (host numpy arrays).

    Attributes:
        name: the label of the run (a variant's name; by default the method's or its oracle's name).
        method: the method configuration that was run.
        seeds: [S] seed numbers.
        U: [S, T, m] final decision; for a failed seed, its last iterate with a finite cost.
        X: [S, T+1, n] states under U (time-stepped problems), else None.
        cost: [S, K+1] noise-free cost f(U_k) of iterate k = 0..K (K = iterations done); NaN after a failure.
        history: {field: [S, K]} every field of the method's info at each iteration (``value``, ``rollouts``,
            ``gradients`` and the method's own; for `GradientMethod` the oracle's diagnostics, ``grad_norm``
            and ``skipped``). ``history["value"]`` is a view of ``cost[:, :K]``. Both come from the run's
            `HistoryStore` (memory by default; files mapped into memory with `trajopt.runs.DiskHistory`), so the
            properties below read them a block of iterations at a time.
        status: [S] "ok", "non_finite" (stopped at ``failed_at``), "all_skipped" (ran every iteration, but every
            update was skipped for a non-finite estimate: U is U0) or "interrupted" (`STATUSES`).
        failed_at: [S] iteration at which a seed went non-finite, -1 if it did not.
        iterations: K, the number of updates done (less than asked for when interrupted).
        run_seconds: wall time of the compiled loop, from its first chunk to its final evaluation (compilation
            excluded; the host's recording between chunks overlaps the next chunk).
        compile_seconds: time to trace and compile the loop and compute its initial state (its own programs: not
            the final evaluation's, ``final_evaluation_seconds``).
        chunk_ends: iteration counts at the end of each chunk; chunk_seconds: cumulative run seconds there.
        horizon: T, the steps of one rollout of the problem (`trajopt.compute.problem_horizon`): what converts
            counts into forward-step equivalents.
        step_costs: the `trajopt.compute.StepCosts` the run was given (a budget's), or None; what
            `forward_equivalents` converts with when it is given none (charging the method's oracle its own backward
            ratio where they hold one, `trajopt.compute.method_costs`).
        budget: the compute budget per seed in forward-step equivalents, or None.
        stopped: [S] why a seed stopped before the last iteration while still finite: "converged" (its method said
            so: ``stopped(state)``), "budget" (its spend reached ``budget``) or None (it ran every iteration, or
            is non-finite: see ``status``). A stopped seed spends nothing more; its rows repeat its last.
        stopped_at: [S] the iteration at which it stopped (-1: it did not).
        ran_once: the method is deterministic and `trajopt.compare` ran it once for every seed (each seed's row is
            that one run's).
        settled_at: the iterations the loop ran when every seed had stopped before its end (the rest of the history
            was filled in, not run), or None when it ran them all.
        lifted: how many constants of the loop were its inputs (`trajopt.programs`: a run that differs only in them
            reuses the compiled loop), or None when it was compiled with its constants.
        reused: the compiled loop was reused (`trajopt.programs.CACHE`): ``compile_seconds`` is tracing and
            lowering only.
        trace_reused: the loop's trace was read back from the traces folder (`trajopt.traces`), not traced:
            ``compile_seconds`` is then its lowering and compilation (or loading from the compilation cache).
        compilation_cache: where the compiled loop came from (`trajopt.compiler.CACHE_STATUSES`): "memory" (this
            process compiled it before: ``reused``, or JAX's own in-memory cache), "hit" (JAX's persistent
            compilation cache), "miss" (XLA compiled it; the cache did not have it) or "off" (XLA compiled it
            without the cache); None when not known (a result read back from a run folder written before this
            was recorded).
        final_evaluation: where the program evaluating the final decision came from: "loop" (the loop evaluated
            it itself: a study grid's), else as ``compilation_cache``, for its own program, which every run of the
            problem with as many seeds shares (`trajopt.solver.prepare_each` compiles it once, for all of them,
            while the first run is traced); None when not known (a run folder written before this was recorded).
        final_evaluation_seconds: the seconds that program took to trace, lower and compile, once: the same
            number in every run sharing it (`trajopt.runs.final_evaluation_seconds` counts it once); None for
            "loop" (in ``compile_seconds``) and for a run folder written before this was recorded.
        oracle: the name of the oracle whose backward passes the counts hold, for a result without its ``method``
            (one read back from a run folder: its variant's ``oracle``), else None (the method says: `oracle_name`).
    """

    name: str
    method: Any
    seeds: np.ndarray
    U: np.ndarray
    X: Optional[np.ndarray]
    cost: np.ndarray
    history: dict[str, np.ndarray]
    status: list[str]
    failed_at: np.ndarray
    iterations: int
    run_seconds: float
    compile_seconds: float
    chunk_ends: list[int] = field(default_factory=list)
    chunk_seconds: list[float] = field(default_factory=list)
    horizon: Optional[int] = None
    step_costs: Any = None
    budget: Optional[float] = None
    stopped: Optional[list] = None
    stopped_at: Optional[np.ndarray] = None
    ran_once: bool = False
    settled_at: Optional[int] = None
    lifted: Optional[int] = None
    reused: bool = False
    trace_reused: bool = False
    compilation_cache: Optional[str] = None
    final_evaluation: Optional[str] = None
    final_evaluation_seconds: Optional[float] = None
    oracle: Optional[str] = None

    @property
    def oracle_name(self) -> Optional[str]:
        """The oracle whose backward passes the counts hold (`trajopt.compute.method_oracle` of ``method``, else
        ``oracle``): what decides their ratio (`trajopt.compute.StepCosts.backward_of`)."""
        return method_oracle(self.method) if self.method is not None else self.oracle

    @property
    def final_cost(self) -> np.ndarray:
        """[S] f(U) of the returned U: the final iterate, or for a failed seed its last finite-cost iterate."""
        return self.cost[np.arange(len(self.seeds)), self.last_index]

    @property
    def last_index(self) -> np.ndarray:
        """[S] index into ``cost`` of the returned U: K, or for a failed seed its last finite-cost iterate."""
        rows = np.arange(len(self.seeds))
        at = np.clip(self.failed_at, 0, None)
        finite_there = np.isfinite(self.cost[rows, at])
        failed = np.where(finite_there, at, np.maximum(at - 1, 0))
        return np.where(self.failed_at >= 0, failed, self.iterations)

    @property
    def skipped(self) -> np.ndarray:
        """[S] number of updates skipped for a non-finite gradient (``skip_non_finite``; a failed seed's failing
        iteration is not one); 0 for methods without.
        A seed whose every update was skipped has status "all_skipped". Read in blocks of iterations (the history
        may be a file mapped into memory)."""
        return skipped_counts(self.history, len(self.seeds), self.failed_at)

    @property
    def first_order_fallbacks(self) -> np.ndarray:
        """[S] estimates whose first-order batch was not finite, so that the α rule gave the ZoBG alone (α = 0,
        `trajopt.oracles._mixing`): recorded iterations with a finite α and a NaN ``var_first`` (a batch with an
        inf or NaN sample has a NaN variance; a finite batch whose variance overflows has inf, and its α is the rule's
        own), less a failed seed's failing iteration and skipped updates (no estimate was used); 0 for a method that
        chooses no α. Read in blocks of iterations."""
        return fallback_counts(self.history, self.failed_at)

    def counts(self, field: str = "rollouts") -> np.ndarray:
        """[K+1] simulator calls (``rollouts``, ``gradients`` or ``linearizations``: 0 for a method that reports
        none) spent before iterate k: the most any seed spent (the same for every seed still running, except
        where a method's own spending varies: a converged iLQR, a line search, starts that stopped; a stopped seed
        spends nothing more). The maximum over seeds is taken in blocks of iterations, so no full-size copy of the
        [S, K] history is made."""
        h = self.history.get(field)
        if h is None:
            return np.zeros(self.iterations + 1)
        per_iter = np.zeros(h.shape[1] if h.ndim > 1 else 0)
        if h.size:
            for cols in column_blocks(h):
                per_iter[cols] = np.nanmax(np.asarray(h[:, cols], float), axis=0)
        return np.concatenate([[0.0], np.cumsum(np.nan_to_num(per_iter))])

    def _costs(self, step_costs):
        """The step costs the counts convert with: ``step_costs`` or the run's own, with ρ_b replaced by the ratio of
        the method's oracle where they hold one (`trajopt.compute.method_costs`: `cfd`'s own backward pass)."""
        costs = step_costs if step_costs is not None else self.step_costs
        if costs is None:
            raise ValueError("step_costs: found None, allowed: a trajopt.compute.StepCosts (this run was given none: "
                             "pass the system's, e.g. trajopt.compute.measure_step_costs(system.step, n, m))")
        return costs.charged(self.oracle_name)

    def forward_equivalents(self, step_costs=None) -> np.ndarray:
        """[K+1] forward-step equivalents spent before iterate k, T (rollouts + ρ gradients + ρ_l linearizations)
        of `counts` (`trajopt.compute.forward_equivalents`), with ``step_costs`` (default: the run's own, a
        ValueError when it has none) and the run's ``horizon`` T; ρ is ρ_b, or the method's oracle's own ratio where
        the step costs hold one (`trajopt.compute.method_costs`)."""
        return forward_equivalents(self.horizon or 1, self._costs(step_costs), self.counts("rollouts"),
                                   self.counts("gradients"), self.counts("linearizations"))

    def seed_forward_equivalents(self, step_costs=None) -> np.ndarray:
        """[S] the forward-step equivalents each seed spent over the whole run (its own counts; what a budget
        bounds), read in blocks of iterations."""
        totals = []
        for name in ("rollouts", "gradients", "linearizations"):
            h = self.history.get(name)
            total = np.zeros(len(self.seeds))
            if h is not None and h.size:
                for cols in column_blocks(h):
                    total += np.nansum(np.asarray(h[:, cols], float), axis=1)
            totals.append(total)
        return forward_equivalents(self.horizon or 1, self._costs(step_costs), *totals)

    def iteration_seconds(self) -> np.ndarray:
        """[K+1] run seconds at iterate k, interpolated linearly inside each compiled chunk."""
        ends = np.concatenate([[0], self.chunk_ends])
        secs = np.concatenate([[0.0], self.chunk_seconds])
        return np.interp(np.arange(self.iterations + 1), ends, secs)

    @property
    def best_cost(self) -> np.ndarray:
        """[S] lowest finite cost seen along the run (read in blocks of iterations)."""
        best = None
        with np.errstate(all="ignore"):
            for cols in column_blocks(self.cost):
                block = self.cost[:, cols]
                low = np.where(np.isfinite(block), block, np.inf).min(axis=1)
                best = low if best is None else np.minimum(best, low)
        return np.where(np.isfinite(best), best, np.nan)


def skipped_counts(history: Mapping[str, np.ndarray], n_seeds: int, failed_at=None) -> np.ndarray:
    """[S] the sum over iterations of ``history["skipped"]`` (zeros without it), read a block of columns at a time;
    with ``failed_at`` ([S], -1: none) a failed seed's failing iteration is left out: its non-finite estimate ended
    the seed (``on_non_finite = "stop"``, or a non-finite cost), it was not skipped."""
    if "skipped" not in history:
        return np.zeros(n_seeds, int)
    h = history["skipped"]
    failed = np.full(h.shape[0], -1) if failed_at is None else np.asarray(failed_at)
    total = 0
    for cols in column_blocks(h):
        k = np.arange(h.shape[1])[cols]
        total = total + np.where(k[None, :] == failed[:, None], 0, np.nan_to_num(h[:, cols])).sum(axis=1)
    return np.broadcast_to(total, (h.shape[0],)).astype(int)


def fallback_counts(history: Mapping[str, np.ndarray], failed_at: np.ndarray) -> np.ndarray:
    """[S] `Result.first_order_fallbacks` of a history ({field: [S, K]}) and its seeds' ``failed_at`` ([S], -1:
    none), read a block of columns at a time."""
    failed_at = np.asarray(failed_at)
    alpha, var_first, skipped = history.get("alpha"), history.get("var_first"), history.get("skipped")
    if alpha is None or var_first is None:
        return np.zeros(len(failed_at), int)
    total = np.zeros(len(failed_at), int)
    for cols in column_blocks(alpha):
        a, v = np.asarray(alpha[:, cols], float), np.asarray(var_first[:, cols], float)
        k = np.arange(alpha.shape[1])[cols]
        fell_back = np.isfinite(a) & np.isnan(v) & (k[None, :] != failed_at[:, None])
        if skipped is not None:
            fell_back &= ~(np.nan_to_num(np.asarray(skipped[:, cols], float)) > 0)
        total += fell_back.sum(axis=1)
    return total
