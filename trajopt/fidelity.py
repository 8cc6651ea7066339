"""Gradient fidelity: how close each oracle's gradient is to a reference, as the time step and the contact stiffness
vary. Pure library code (no printing, no files); the verb `trajopt fidelity` calls it.

**Cells.** A cell is the problem with one time step h and one contact stiffness (solref) in place of the file's
(`cell_overrides`). For an ``mjx`` system the control period P = substeps x timestep is kept (substeps = P / h,
which must be an integer), so every cell decides the same controls U [T, m] over the same seconds; an ``mjx_toss``
system keeps its duration. A time step above MuJoCo's rule for soft constraints (timeconst >= 2 h) is refused by the
mjx system itself when the cell's problem is loaded (`trajopt.systems.mjx.stable_timestep`), as in every verb.

**References**, both deterministic, at the point U:

* ``fd``: central finite differences of the noise-free cost at the cell's own time step, in float64, coordinate by
  coordinate (`trajopt.oracles.fd`: h_j = eps * max(1, |U_j|)). The rule for the step: eps = FD_STEP = (float64
  machine epsilon)^(1/3) ≈ 6.1e-6, the step that balances the O(eps²) truncation error of a central difference
  against its O(machine eps / eps) rounding error for a cost and third derivative of order one. It is checked
  against the same differences at FD_CHECK x eps: the reference is *trusted* when the two agree,
  ||g(eps) - g(10 eps)|| <= FD_AGREE ||g(eps)|| (1%); where they do not, f is not resolved at that scale (a
  contact event, a solver's early exit, a kink within 10 eps of U), and the table says so.
* ``fine``: the exact gradient (autodiff, as the system differentiates itself) of the same motion simulated at a
  much finer time step h_ref (the caller's: `trajopt fidelity` defaults to the finest cell's step / 4), itself
  checked against its own finite differences by the same rule.

**Metrics.** For an estimate g and a reference r (flattened): cosine similarity g.r / (|g| |r|) (the sign of a
one-dimensional gradient), relative error |g - r| / |r|. A stochastic oracle is drawn ``repeats`` times (keys
fold_in(key, r)); a deterministic one once. `spread` gives the median and the quartiles over the repeats.

**The grid.** `measure` computes a grid's rows and references (what ``trajopt fidelity`` prints and writes, and what
a ``verb = "fidelity"`` study cell computes for its grid point, `trajopt.studies.cells.run_fidelity_cell`), compiling
each estimate once (`timed`: its compile and run seconds are in the rows). A grid's cell is `grid_cell` of a problem
spec loaded with `cell_overrides`; `fine_timestep` is the fine reference's step; `flat_row` and `csv_text` are the
table's rows as fidelity.csv holds them (`CSV_COLUMNS`).

**Memory.** `working_set` bounds the bytes one estimate holds: the rollouts it runs side by side times their states
(T x (n + m) x 8 bytes each), plus, for every rollout it differentiates, the per-step Jacobians [n, n + m] a
forward-mode MJX step keeps for the backward pass, or, in reverse mode, the step's saved mjx.Data per physics step;
`memory_needs` lists it for each estimate of a cell (the command and a study refuse a cell over
`trajopt.preflight.MAX_WORKING_SET`).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from trajopt.oracles import ORACLES
from trajopt.registry import UnknownName

FD_STEP = float(np.finfo(np.float64).eps) ** (1.0 / 3.0)  # ≈ 6.06e-6
FD_CHECK = 10.0  # the check step is FD_CHECK x the reference step
FD_AGREE = 0.01  # the two must agree to 1% (relative) for the reference to be trusted
PERIOD_RTOL = 1e-9  # P / h within this relative distance of an integer counts as an integer
METRICS = ("cos_fd", "rel_fd", "cos_fine", "rel_fine")
CSV_COLUMNS = (("point", "solref", "timestep", "steps", "oracle", "repeats", "value", "gradient")
               + tuple(f"{m}_{s}" for m in METRICS for s in ("median", "q25", "q75"))
               + ("fd_agreement", "fd_trusted", "fine_fd_agreement", "compile_seconds", "run_seconds"))
MAX_SHOWN = 4  # a gradient of at most this many entries is written into the table as numbers


class CellError(ValueError):
    """A grid value that cannot make a cell: ``key`` is the flag or key, ``message`` what was found and allowed."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}")


# ------------------------------------------------------------------------------------------------- cells


def timestep_system(system: Any) -> Optional[str]:
    """"mjx" or "mjx_toss" when the system has an MJX time step the grid can change, else None."""
    from trajopt.systems.mjx_contact import mjx_system

    sim = mjx_system(system)
    if sim is None:
        return None
    return "mjx" if sim is system else "mjx_toss"


def cell_overrides(system: Any, timestep: Optional[float], solref: Optional[Sequence[float]]) -> list[str]:
    """The ``--set`` items that make the cell (timestep h, solref) of a problem over ``system`` (the file's, as
    loaded): system.timestep = h and, for an ``mjx`` system, system.substeps = P / h keeping the control period P;
    system.solref = [a, b]. CellError when h does not divide P or the system has no MJX time step."""
    kind = timestep_system(system)
    out: list[str] = []
    if timestep is not None:
        if kind is None:
            raise CellError("--timesteps", f"found a time-step grid for the system {type(system).__name__}, allowed: a "
                            "system with an MJX time step (mjx, mjx_toss); `trajopt sweep` varies another system's dt")
        if kind == "mjx":
            period = float(system.substeps) * float(system.timestep)
            k = period / timestep
            if abs(k - round(k)) > PERIOD_RTOL * k or round(k) < 1:
                raise CellError("--timesteps", f"found {timestep:g}, which does not divide the control period "
                                f"{period:g} s (substeps {system.substeps} x timestep {system.timestep:g}); allowed: "
                                f"{period:g} / k for an integer k (the cells keep the control period, so that every "
                                "cell decides the same controls)")
            out += [f"system.timestep={timestep!r}", f"system.substeps={int(round(k))}"]
        else:
            out.append(f"system.timestep={timestep!r}")
    if solref is not None:
        if kind is None:
            raise CellError("--solrefs", f"found a stiffness grid for the system {type(system).__name__}, allowed: a "
                            "system with an MJX solref (mjx, mjx_toss); `trajopt sweep` varies another system's "
                            "stiffness")
        out.append(f"system.solref=[{float(solref[0])!r}, {float(solref[1])!r}]")
    return out


def solref_label(system: Any) -> str:
    """The system's contact stiffness as a table shows it: its solref "timeconst,dampratio" (``%g``), or "model"
    (the model's own, or a system without an MJX solref)."""
    from trajopt.systems.mjx_contact import mjx_system

    sim = mjx_system(system)
    if sim is None or not sim.solref:
        return "model"
    return ",".join(f"{v:g}" for v in sim.solref)


def system_timestep(system: Any) -> float:
    """The MJX time step of the system (its simulator's), else its ``dt`` (NaN without one)."""
    from trajopt.systems.mjx_contact import mjx_system

    sim = mjx_system(system)
    return float(sim.timestep) if sim is not None else float(getattr(system, "dt", math.nan))


def grid_cell(spec: Any, problem: Any) -> dict:
    """A cell of `measure`'s grid: {spec, problem, label, timestep, solref, steps} of a problem spec (loaded with
    the cell's `cell_overrides`) and its problem; ``steps`` the physics steps of one rollout."""
    T, substeps, _, _ = rollout_shape(problem, spec.system)
    h, sr = system_timestep(spec.system), solref_label(spec.system)
    return {"spec": spec, "problem": problem, "label": f"timestep {h:g}, solref {sr}", "timestep": h, "solref": sr,
            "steps": T * substeps}


def oracle_refusal(name: str) -> Optional[str]:
    """Why ``name`` cannot be measured (one sentence: found, allowed), or None: a registered oracle or a
    module:Class one, not ``fd`` (finite differences are the reference every oracle is measured against)."""
    if name == "fd":
        return ("found 'fd', allowed: the other oracles (finite differences are the reference every oracle is "
                "measured against)")
    try:
        ORACLES.get(name)
    except UnknownName as e:
        return str(e)
    return None


def fine_timestep(reference: Optional[float], timesteps: Sequence[float]) -> Optional[float]:
    """The fine reference's time step: None for none, the finest of ``timesteps`` / 4 for "auto" (``reference`` < 0,
    as ``--reference-timestep auto``), else ``reference``."""
    if reference is None:
        return None
    return reference if reference > 0 else min(timesteps) / 4


def rollout_shape(problem: Any, system: Any) -> tuple[int, int, int, int]:
    """(control steps T, physics steps per control step, n, m) of one rollout of the problem's simulation."""
    from trajopt.systems.mjx_contact import mjx_system

    sim = mjx_system(system)
    if sim is not None and sim is not system:  # the toss: its own steps of the simulator
        return int(system.steps), 1, int(sim.state_size), int(sim.control_size)
    if getattr(problem, "time_stepped", False):
        T = int(problem.shape[0])
        substeps = int(getattr(system, "substeps", 1)) if sim is not None else 1
        return T, substeps, int(system.state_size), int(system.control_size)
    return 1, 1, 0, int(problem.dimension)


def data_bytes(system: Any) -> int:
    """Bytes of one mjx.Data of the system's model (what reverse mode keeps per physics step), 0 for a non-MJX one."""
    from trajopt.systems.mjx_contact import mjx_system

    sim = mjx_system(system)
    if sim is None:
        return 0
    from trajopt.systems.mjx import _import_mujoco

    _, mjx = _import_mujoco()
    d = jax.eval_shape(lambda: mjx.make_data(sim.mjx_model))
    return int(sum(np.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize for leaf in jax.tree_util.tree_leaves(d)))


def working_set(problem: Any, system: Any, rollouts: int, backward: int) -> int:
    """Bytes one estimate holds at once (module doc): ``rollouts`` rollouts side by side, ``backward`` of them
    differentiated."""
    from trajopt.systems.mjx_contact import mjx_system

    T, substeps, n, m = rollout_shape(problem, system)
    states = rollouts * T * (n + m + 1) * 8
    sim = mjx_system(system)
    if backward == 0:
        return states
    if sim is not None and sim.gradient_mode == "reverse":
        kept = backward * T * substeps * data_bytes(system)
    else:
        kept = backward * T * max(n, 1) * (n + m) * 8
    return states + kept


def oracle_batch(oracle: Any, problem: Any, repeats: int) -> tuple[int, int]:
    """(rollouts, backward passes) one `oracle_gradients` call runs side by side: the oracle's calls per estimate
    (its ``calls``; 1, 1 without) times the repeats it is drawn (1 for a deterministic oracle)."""
    calls = getattr(oracle, "calls", None)
    try:
        rollouts, backward = calls(problem) if callable(calls) else (1, 1)
    except (TypeError, ValueError, AttributeError):
        rollouts, backward = 1, 1
    r = 1 if getattr(oracle, "deterministic", False) else repeats
    return r * int(rollouts), r * int(backward)


def memory_needs(problem: Any, system: Any, oracles: Mapping[str, Any], repeats: int) -> dict[str, int]:
    """{what: bytes} one estimate of a cell holds at once (`working_set`): the finite-difference reference (4 d
    rollouts: the reference and its check) and each oracle's ``repeats`` draws (`oracle_batch`)."""
    needs = {"the finite-difference reference (4 x d rollouts)": working_set(problem, system, 4 * problem.dimension, 0)}
    for name, o in oracles.items():
        rollouts, backward = oracle_batch(o, problem, repeats)
        needs[f"oracle {name} ({rollouts:,} rollouts, {backward:,} differentiated)"] = working_set(
            problem, system, rollouts, backward)
    return needs


def oracle_config(oracle: Any) -> dict:
    """An oracle's fields (its dataclass's), as fidelity.json's ``oracle_config`` records them."""
    return {f.name: getattr(oracle, f.name) for f in dataclasses.fields(oracle)} if dataclasses.is_dataclass(oracle) else {}


# ------------------------------------------------------------------------------------------------- estimates


def fd_gradient(problem: Any, U: Array, step: float) -> Array:
    """Central finite differences of ``problem.objective`` at U, h_j = step * max(1, |U_j|) (`trajopt.oracles.fd`)."""
    from trajopt.oracles.fd import FD

    return FD(step=step).estimate(None, problem, U)[0]


def fd_reference(problem: Any, U: Array, step: float = FD_STEP, check: float = FD_CHECK) -> tuple[Array, Array]:
    """(g(step), g(check x step)): the reference and its check (both [T, m]); one jittable function."""
    return fd_gradient(problem, U, step), fd_gradient(problem, U, check * step)


def exact_gradient(problem: Any, U: Array) -> tuple[Array, Array]:
    """(f(U), grad f(U)): plain autodiff of the noise-free cost."""
    return jax.value_and_grad(problem.objective)(U)


def oracle_gradients(key: Array, problem: Any, U: Array, oracle: Any, repeats: int) -> tuple[Array, Array]:
    """(grads [R, *U.shape], values [R]): the oracle's estimate at U with keys fold_in(key, r), r < R; R = 1 for a
    deterministic oracle, else ``repeats``. One vmap; jittable."""
    R = 1 if getattr(oracle, "deterministic", False) else int(repeats)
    keys = jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(R))
    grads, info = jax.vmap(lambda k: oracle.estimate(k, problem, U))(keys)
    return grads, info.value


# ------------------------------------------------------------------------------------------------- metrics


def agreement(a, b) -> float:
    """||a - b|| / max(||a||, ||b||) (0 when both are 0; NaN when either is not finite)."""
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return math.nan
    scale = max(float(np.linalg.norm(a)), float(np.linalg.norm(b)))
    return float(np.linalg.norm(a - b)) / scale if scale > 0 else 0.0


def compare(grads, reference) -> tuple[np.ndarray, np.ndarray]:
    """(cosine [R], relative error [R]) of each estimate (grads [R, ...]) against the reference: g.r / (|g| |r|)
    (NaN when either is 0) and |g - r| / |r| (inf when r = 0 and g is not)."""
    G = np.asarray(grads, float).reshape(np.shape(grads)[0], -1)
    r = np.asarray(reference, float).ravel()
    nr = float(np.linalg.norm(r))
    ng = np.linalg.norm(G, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.where((ng > 0) & (nr > 0), G @ r / (ng * nr), np.nan)
        err = np.linalg.norm(G - r, axis=1)
        rel = err / nr if nr > 0 else np.where(err > 0, np.inf, 0.0)
    return cos, rel


def spread(values) -> dict:
    """{median, q25, q75} of the finite values (NaN when none is)."""
    v = np.asarray(values, float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"median": math.nan, "q25": math.nan, "q75": math.nan}
    return {"median": float(np.median(v)), "q25": float(np.percentile(v, 25)), "q75": float(np.percentile(v, 75))}


def reference_entry(g, check, step: float) -> dict:
    """The JSON record of a finite-difference reference: its gradient (flattened), the check's agreement and
    whether it is trusted (agreement <= FD_AGREE)."""
    a = agreement(g, check)
    return {"gradient": np.asarray(g, float).ravel().tolist(), "step": step, "check_step": FD_CHECK * step,
            "agreement": a, "trusted": bool(a <= FD_AGREE)}


def oracle_row(grads, values, fd: Optional[Mapping], fine: Optional[Mapping]) -> dict:
    """The metrics of one oracle in one cell against each reference present (module doc): for ``fd`` and ``fine``
    (either may be None) cos_REF and rel_REF as `spread` dicts; the median gradient norm, the repeats, the value,
    and the median gradient itself (a list)."""
    G = np.asarray(grads, float).reshape(np.shape(grads)[0], -1)
    out = {"repeats": int(G.shape[0]), "value": float(np.asarray(values, float).ravel()[0]),
           "norm": spread(np.linalg.norm(G, axis=1)), "gradient": np.median(G, axis=0).tolist()}
    for name, ref in (("fd", fd), ("fine", fine)):
        if ref is None:
            continue
        cos, rel = compare(G, ref["gradient"])
        out[f"cos_{name}"], out[f"rel_{name}"] = spread(cos), spread(rel)
    return out


# ------------------------------------------------------------------------------------------------- the grid


def timed(fn: Callable, *args) -> tuple[Any, float, float]:
    """(outputs, compile seconds, run seconds) of one jitted call of ``fn(*args)``."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    t1 = time.perf_counter()
    outputs = jax.block_until_ready(compiled(*args))
    return outputs, t1 - t0, time.perf_counter() - t1


def measure(key: Array, grid: Sequence[Sequence[Mapping]], fines: Sequence[Optional[Mapping]],
            locations: Sequence[Mapping], repeats: int, eps: float = FD_STEP,
            should_stop: Optional[Callable[[], bool]] = None) -> tuple[list[dict], list[dict]]:
    """The fidelity table of a grid: (rows, references), what ``trajopt fidelity`` writes (a study cell would call
    this on one cell).

    ``grid``: one row per solref, each a list of cells (one per time step), a cell a mapping with ``spec`` (its
    problem spec: ``spec.oracles`` are measured), ``problem``, ``timestep``, ``solref`` (a label) and ``steps``;
    ``fines``: per grid row, the fine reference's cell (same keys) or None; ``locations``: the points, mappings with
    ``U`` [T, m] and ``oracle`` (None: the problem's U0, else the run variant whose final U it is). Rows: one per
    point, cell and oracle (`oracle_row`, with the point, cell, references' checks and the compile and run seconds;
    the cell's finite-difference reference as oracle "fd" where a fine reference exists). References: each fine
    reference and each cell's finite differences (`reference_entry`, with their timings). Stochastic oracles draw
    with keys fold_in(key, r). ``should_stop`` is asked between estimates; when it says so, what is done is
    returned."""
    def stop() -> bool:
        return should_stop is not None and bool(should_stop())

    rows: list[dict] = []
    references: list[dict] = []
    for loc in locations:
        point = "U0" if loc["oracle"] is None else f"{loc['oracle']} final U"
        for row, fine in zip(grid, fines):
            if stop():
                return rows, references
            U = jnp.asarray(loc["U"], row[0]["problem"].U0.dtype)
            fine_ref = None
            if fine is not None:
                (value, g), c_s, r_s = timed(lambda U: exact_gradient(fine["problem"], U), U)
                (f1, f2), fc_s, fr_s = timed(lambda U: fd_reference(fine["problem"], U, eps), U)
                fd_check = reference_entry(f1, f2, eps)
                fine_ref = {"gradient": np.asarray(g, float).ravel().tolist(), "value": float(value),
                            "timestep": fine["timestep"], "steps": fine["steps"], "solref": fine["solref"],
                            "fd": fd_check, "agreement_with_fd": compare(np.asarray(g)[None], f1)[1][0].item(),
                            "compile_seconds": c_s + fc_s, "run_seconds": r_s + fr_s}
                references.append({"point": point, "kind": "fine", **fine_ref})
            for c in row:
                if stop():
                    return rows, references
                prob = c["problem"]
                (f1, f2), fc_s, fr_s = timed(lambda U: fd_reference(prob, U, eps), U)
                fd = reference_entry(f1, f2, eps)
                references.append({"point": point, "kind": "fd", "timestep": c["timestep"], "solref": c["solref"],
                                   "steps": c["steps"], **fd, "compile_seconds": fc_s, "run_seconds": fr_s})
                common = {"point": point, "solref": c["solref"], "timestep": c["timestep"], "steps": c["steps"],
                          "fd_agreement": fd["agreement"], "fd_trusted": fd["trusted"],
                          "fine_fd_agreement": None if fine_ref is None else fine_ref["fd"]["agreement"]}
                if fine_ref is not None:
                    cos, rel = compare(np.asarray(f1)[None], fine_ref["gradient"])
                    rows.append({**common, "oracle": "fd", "repeats": 1, "value": float("nan"),
                                 "gradient": np.asarray(f1, float).ravel().tolist(),
                                 "norm": spread([np.linalg.norm(np.asarray(f1))]), "cos_fine": spread(cos),
                                 "rel_fine": spread(rel), "compile_seconds": fc_s, "run_seconds": fr_s})
                for name, oracle in c["spec"].oracles.items():
                    if stop():
                        return rows, references
                    (grads, values), c_s, r_s = timed(
                        lambda U, o=oracle: oracle_gradients(key, prob, U, o, repeats), U)
                    entry = oracle_row(grads, values, fd, fine_ref)
                    rows.append({**common, "oracle": name, **entry, "compile_seconds": c_s, "run_seconds": r_s})
    return rows, references


# ------------------------------------------------------------------------------------------------- the table


def flat_row(row: Mapping) -> dict:
    """A row of `measure` as fidelity.csv holds it (`CSV_COLUMNS`): each metric's median and quartiles as columns,
    the median gradient as numbers where it has at most `MAX_SHOWN` entries (None otherwise)."""
    out = {k: row.get(k) for k in CSV_COLUMNS if not any(k.startswith(m + "_") for m in METRICS)}
    for m in METRICS:
        for s in ("median", "q25", "q75"):
            out[f"{m}_{s}"] = row[m][s] if m in row else None
    g = row.get("gradient")
    out["gradient"] = " ".join(f"{v:.10g}" for v in g) if g is not None and len(g) <= MAX_SHOWN else None
    return out


def csv_text(rows: Sequence[Mapping]) -> str:
    """fidelity.csv's text: a header of `CSV_COLUMNS` and one line per row (`flat_row`; None as empty)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in flat_row(row).items()})
    return buffer.getvalue()
