"""MuJoCo MJX: any MJCF model as a trajopt system (the optional ``[mjx]`` extra: ``pip install -e ".[mjx]"``).

A problem file names the model and how to step it::

    [system]
    name = "mjx"
    model = "models/push.xml"   # relative to the problem file (absolute paths as they are), or a file inside an
                                 # installed package: { package = "gymnasium", path = "envs/mujoco/assets/hopper.xml" }
    substeps = 5                 # physics steps (mjx.step) per control step
    keyframe = ""                # x0 default: the model's qpos0 and zero qvel, or this named <key>
    timestep = 0.01              # overrides <option timestep>; default: the model's
    iterations = 1               # overrides <option iterations> (constraint solver); default: the model's
    ls_iterations = 4            # overrides <option ls_iterations>; default: the model's
    solref = [0.02, 1.0]         # overrides solref of every geom, joint limit and contact pair; default: the model's
    gradient = "auto"            # "auto", "reverse" or "forward" (see below)
    backend = "mjx"              # "mjx" (MuJoCo MJX, JAX) or "mujoco" (MuJoCo's C simulator, forward-only methods)

State and control (what ``[task]`` x0, goal, Q, R, Qf and u_init refer to):

* ``x = [qpos (nq), qvel (nv)]`` flattened, n = nq + nv, in MuJoCo's joint order. A free or ball joint's
  quaternion occupies 4 entries of qpos and the cost treats them as plain coordinates (a goal quaternion is
  compared entry by entry; MuJoCo renormalises it at every step, so keep goal quaternions unit-norm and their
  weights small, or leave them at 0). qvel has 3 angular entries per ball joint, as in MuJoCo.
* ``u = ctrl`` (nu entries, one per actuator, in MuJoCo's actuator order: the order of ``<actuator>``'s
  children). Where the model limits an
  actuator (``ctrllimited``/``ctrlrange``), MuJoCo clamps ctrl to the range inside the step, so controls
  beyond the range act as the bound and their gradient is 0. Actuators with internal state (activation
  dynamics, na > 0) are refused: the state would not be (qpos, qvel).
* ``dt`` (the control period) = substeps * timestep. Every control step starts the constraint solver cold
  (qacc_warmstart = 0); substeps within a control step warm-start from the previous substep, as mj_step does.
* ``default_x0()``: qpos0 and zero qvel, or the keyframe's qpos and qvel.
* ``state_names`` [n] and ``control_names`` [m] (the labels of every figure's state and control axes): per
  joint, its qpos entries (a hinge or slide joint: its name; a ball joint: "NAME qw" .. "NAME qz"; a free
  joint: "NAME x", "NAME y", "NAME z", then its quaternion), then its qvel entries ("NAME vel"; a ball joint's
  "NAME wx" .. "NAME wz"; a free joint's "NAME vx" .. "NAME vz", "NAME wx" .. "NAME wz"); per actuator, its
  name. An unnamed joint is "joint<i>", an unnamed actuator "u<i>".

Models in installed packages. ``model = { package = "gymnasium", path = "envs/mujoco/assets/hopper.xml" }`` names
a file inside an installed Python package, found without importing the package (`trajopt.systems.mjcf.
package_model`); an optional ``version = "1.4.0"`` must be the installed one. After construction ``model`` holds
that table with the installed version filled in (so a recorded config re-loads only against the same version).
Refused, at ``model.package``, ``model.path`` or ``model.version``: a package that is not installed (the message
gives the pip command), a path outside the package or missing, another version than the installed one; at
``model``, a model that names a file (an include, a mesh, ...) outside its own folder, which the package and
version would not identify. ``model_source`` is what a run records of the model: the package, distribution and
version for a package model, and for every model its file and the sha256 of the file and of each file it reads.

Refused at load time (a `ModelError` at ``model``, so a problem file's ``system.model``, naming the element):
a model file, or a file it reads (``<include file>``, a mesh, texture, height field or skin, wherever MuJoCo
looks for it: `trajopt.systems.mjcf`), that is not a regular file (a FIFO or a device would block the reader); an
``<option>`` solver, integrator, cone or Jacobian, or an enabled ``<flag>``, that MJX does not implement (the
message lists what it does), and the implicitfast integrator with fluid drag; an actuator with activation state
(its ``dyntype``: the state would not be (qpos, qvel)); a geom pair that can collide and for which MJX has no
collision function (e.g. cylinder-box; the message names both geoms, their bodies and the types each collides
with), or a mesh or height-field pair with a margin; an actuator transmission, gain or bias, an equality or a
sensor of a type MJX does not implement; flex bodies (each named); anything else MJX's
``put_model`` refuses, with MJX's reason. The rules are read from MJX's own tables (its enums, its collision
driver's pair list), so a newer MJX that implements more is followed. A time step beyond MuJoCo's rule for
soft constraints, timestep > min(timeconst) / 2 over the model's standard-form solrefs (`stable_timestep`: above
it MuJoCo either softens the contact to timeconst = 2 x timestep, ignoring the solref written, or with refsafe
disabled integrates it unstably), is refused at ``timestep`` (or ``solref``, or ``model``: whichever the table
set), so every verb refuses it before anything compiles; a model whose own file is beyond the rule, with refsafe on
and neither set by the table, runs as MuJoCo runs it (an installed model as its authors wrote it).

Differentiation. MJX's constraint solver (mujoco-mjx 3.17) runs ``lax.while_loop`` when ``iterations > 1``,
which reverse-mode autodiff cannot go through (MuJoCo issue #2259); with ``iterations = 1`` it runs one solver
iteration (its line search is a fixed-length scan) and reverse mode works. ``gradient`` chooses:

* ``"reverse"``: plain ``jax.grad`` through ``mjx.step``; needs ``iterations = 1`` (refused otherwise).
* ``"forward"``: each control step's Jacobians d x'/d x [n, n] and d x'/d u [n, m] are computed in forward
  mode (``jax.jacfwd``, n + m tangents; a while_loop has a forward-mode derivative) and a ``jax.custom_vjp``
  hands them to reverse mode. Works at any ``iterations``; costs about n + m extra tangent passes per step.
* ``"auto"`` (default): reverse when ``iterations == 1``, forward otherwise.

Zeroth-order oracles never differentiate and work with every setting. See docs/mjx.md for the accuracy of
one solver iteration against a converged solve, and the cost of each mode.

Backend. ``backend = "mjx"`` (default) steps the model with MuJoCo MJX: JAX code, traced and compiled into every
program that runs it, differentiable as above. ``backend = "mujoco"`` simulates the same model (the same
``mj_model``, with the settings above) with MuJoCo's C library instead (`trajopt.systems.mujoco_c`: ``mujoco.
rollout``, multi-threaded, nothing for XLA to compile): ``simulate(x0, U)``, the whole horizon of a batch of
control sequences in one ``jax.pure_callback``, is what a problem's rollout runs (`trajopt.problem.
trajectory_problem`), and ``step`` is one control step of it. It has no derivatives, so only methods that roll out
without differentiating run on it (the samplers: cem, mppi, ps, dial, evosax; the gradient method with the zobg
oracle): ``check_method`` refuses every other before anything compiles (`trajopt.methods.base.check_applicable`
asks it), naming the methods that run. The states agree with MJX's to the constraint solver's tolerance (docs/
mjx.md: measured on the shipped models); the model's refusals above apply to both backends, so a model runs on
either. The name is the package whose simulator runs (``mujoco``), as ``mjx`` is.

MuJoCo's warnings while it compiles the model (e.g. a deprecated attribute) are kept in ``load_warnings`` (a tuple
of strings) rather than printed and written to MUJOCO_LOG.TXT in the working directory, as MuJoCo does by default.

The dataclass fields are the TOML-level parameters only (the path is stored resolved, so a recorded config
re-loads); the loaded ``mujoco.MjModel``/``mjx.Model`` live in non-field attributes. Equality and hashing
are by identity (``eq=False``), so the system can be closed over in ``jit``.

Where it lives: this module holds the system (construction, the contract, ``check_method``);
`trajopt.systems.mjx_model` the model's load-time checks and names (`ModelError`, `stable_timestep`);
`trajopt.systems.mjx_physics` the physics step (`differentiable`) and the plant's scaling (`PlantPhysics`,
a base of `MJX`). The names other modules import from here are re-exported.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import io
import math
import os
from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from trajopt.systems.mjx_model import (
    ModelError, _import_mujoco, _mjx_version, _model_names, _model_source, _package_model, _refuse_escaping_files,
    _refuse_special_files, _refuse_unstable_timestep, _refuse_unsupported_elements, _refuse_unsupported_options,
    _warnings_collected,
)
from trajopt.systems.mjx_model import stable_timestep as stable_timestep  # re-exported: its callers' name
from trajopt.systems.mjx_physics import PlantPhysics, _make_step
from trajopt.systems.mjx_physics import _like as _like, _physics as _physics  # re-exported
from trajopt.systems.mjx_physics import differentiable as differentiable  # re-exported
from trajopt.tomlio import SpecError

GRADIENT_MODES = ("auto", "reverse", "forward")


@dataclass(frozen=True, eq=False)
class MJX(PlantPhysics):
    """An MJCF model stepped by MuJoCo MJX. x: [nq + nv] = (qpos, qvel); u: [nu] = ctrl. See the module doc.

    Zero / empty defaults mean "the model's own": ``timestep = 0``, ``iterations = 0``, ``ls_iterations = 0``,
    ``solref = ()``;
    after construction they hold the values in effect (so a recorded config shows them).
    """

    model: Any  # a path (str), or {package, path[, version]}: a file inside an installed package
    substeps: int = 1
    keyframe: str = ""
    timestep: float = 0.0
    iterations: int = 0
    ls_iterations: int = 0
    solref: tuple = ()
    gradient: str = "auto"
    backend: str = "mjx"

    one_step = False

    # ------------------------------------------------------------------ construction

    def __post_init__(self):
        mujoco, mjx = _import_mujoco()
        self._check_scalars()
        package = None
        if isinstance(self.model, Mapping):
            package = _package_model(self.model)
            object.__setattr__(self, "model", package.table())
            path = package.file
        else:
            path = self.model
        if not os.path.exists(path):
            raise ModelError("model", f"{path}: no such file (an MJCF .xml file; a relative path is read relative to the problem file)")
        _refuse_special_files(path)
        if package is not None:
            _refuse_escaping_files(path, package)
        warnings: list[str] = []
        try:
            with _warnings_collected(mujoco, warnings):
                mm = mujoco.MjModel.from_xml_path(path)
        except Exception as e:  # mujoco raises ValueError with the parser's message
            raise ModelError("model", f"{path}: not a valid MJCF model: {str(e).strip()}") from None
        object.__setattr__(self, "load_warnings", tuple(warnings))
        _refuse_unsupported_options(mujoco, mjx, mm, path)
        if mm.nu == 0:
            raise ModelError("model", f"{path} has no actuators (<actuator>); the mjx system's controls are the actuators' ctrl")
        _refuse_unsupported_elements(mujoco, mjx, mm, path)
        key_id = -1
        if self.keyframe:
            key_id = mujoco.mj_name2id(mm, mujoco.mjtObj.mjOBJ_KEY, self.keyframe)
            if key_id < 0:
                names = [mujoco.mj_id2name(mm, mujoco.mjtObj.mjOBJ_KEY, i) for i in range(mm.nkey)]
                known = ", ".join(repr(n) for n in names if n) or "none"
                raise ModelError("keyframe", f"{self.keyframe!r} is not a keyframe of {path}; its keyframes: {known}")
        given_timestep = self.timestep > 0
        if given_timestep:
            mm.opt.timestep = self.timestep
        if self.iterations > 0:
            mm.opt.iterations = self.iterations
        if self.ls_iterations > 0:
            mm.opt.ls_iterations = self.ls_iterations
        if self.solref:
            mm.geom_solref[:] = self.solref
            mm.jnt_solref[:] = self.solref
            if mm.npair:
                mm.pair_solref[:] = self.solref
        object.__setattr__(self, "timestep", float(mm.opt.timestep))
        object.__setattr__(self, "iterations", int(mm.opt.iterations))
        object.__setattr__(self, "ls_iterations", int(mm.opt.ls_iterations))
        if self.gradient == "reverse" and self.iterations > 1:
            raise ModelError("gradient", f"'reverse' needs iterations = 1 (iterations in effect: {self.iterations}): MJX's "
                             "solver while_loop has no reverse-mode derivative; use gradient = 'forward' or 'auto'")
        object.__setattr__(self, "solref", tuple(float(v) for v in self.solref))
        _refuse_unstable_timestep(mujoco, mm, path, "timestep" if given_timestep else "solref" if self.solref else "model")
        if key_id >= 0:
            x0 = np.concatenate([mm.key_qpos[key_id], mm.key_qvel[key_id]])
        else:
            x0 = np.concatenate([mm.qpos0, np.zeros(mm.nv)])
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                m = mjx.put_model(mm)
                d0 = mjx.make_data(m)
        except NotImplementedError as e:  # what MJX refuses beyond the options checked above
            why = str(e).strip().rstrip(".") or type(e).__name__
            raise ModelError("model", f"{path}: found a feature that MJX (mujoco-mjx {_mjx_version()}) does not "
                             f"implement: {why}; allowed: models within MJX's feature set (MuJoCo's MJX "
                             "documentation, 'Feature parity')") from None
        names = _model_names(mujoco, mm)
        object.__setattr__(self, "_source", _model_source(path, package))
        object.__setattr__(self, "mj_model", mm)
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "mjx_model", m)
        object.__setattr__(self, "_x0", np.asarray(x0, float))
        object.__setattr__(self, "_step", _make_step(mjx, m, d0, mm.nq, self.substeps, self.gradient_mode))
        self._bind_backend()

    def _bind_backend(self) -> None:
        """On backend "mujoco": the C simulator of ``mj_model`` (`trajopt.systems.mujoco_c`) behind ``simulate`` and
        ``step``; on "mjx" nothing (``step`` is MJX's, ``simulate`` its scan)."""
        if self.backend != "mujoco":
            object.__setattr__(self, "_simulate", None)
            return
        from trajopt.systems.mujoco_c import Simulator, rollout_function, step_function

        simulator = Simulator(self.mj_model, self.substeps)
        simulate = rollout_function(simulator)
        object.__setattr__(self, "_simulator", simulator)
        object.__setattr__(self, "_simulate", simulate)
        object.__setattr__(self, "_step", step_function(simulate))

    def _check_scalars(self) -> None:
        def integer(key, value, lo):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < lo:
                raise ModelError(key, f"found {value!r}, allowed: an integer >= {lo}")

        if not isinstance(self.model, Mapping) and (not isinstance(self.model, str) or not self.model):
            raise ModelError("model", f"found {self.model!r}, allowed: the path of an MJCF .xml file, or a table "
                             "{ package = NAME, path = PATH } naming a file inside an installed package")
        integer("substeps", self.substeps, 1)
        integer("iterations", self.iterations, 0)
        integer("ls_iterations", self.ls_iterations, 0)
        if not isinstance(self.keyframe, str):
            raise ModelError("keyframe", f"found {self.keyframe!r}, allowed: a keyframe name (a string; '' for qpos0)")
        ts = self.timestep
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts) or ts < 0:
            raise ModelError("timestep", f"found {ts!r}, allowed: a number > 0 (0: the model's)")
        sr = self.solref
        ok = isinstance(sr, (list, tuple)) and (len(sr) == 0 or (
            len(sr) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in sr)
            and ((sr[0] > 0 and sr[1] > 0) or (sr[0] < 0 and sr[1] <= 0))))
        if not ok:
            raise ModelError("solref", f"found {sr!r}, allowed: [timeconst, dampratio] (both > 0) or "
                             "[-stiffness, -damping] (MuJoCo's direct form), or [] for the model's")
        if self.gradient not in GRADIENT_MODES:
            raise ModelError("gradient", f"found {self.gradient!r}, allowed: {', '.join(GRADIENT_MODES)}")
        from trajopt.systems.mujoco_c import BACKEND_DOC, BACKENDS

        if self.backend not in BACKENDS:
            raise ModelError("backend", f"found {self.backend!r}, allowed: "
                             + "; ".join(f"{b!r}: {BACKEND_DOC[b]}" for b in BACKENDS))

    @classmethod
    def from_table(cls, params: Mapping[str, Any], source: str) -> "MJX":
        """Build from a problem file's [system] table (without ``name``); ``model`` is read relative to ``source``.

        Raises trajopt.tomlio.SpecError naming ``source`` and the key (``system.model``, ``system.keyframe``, ...).
        """
        allowed = [f.name for f in fields(cls)]
        for key in params:
            if key not in allowed:
                raise SpecError(source, f"system.{key}", f"unknown key for the mjx system; allowed: {', '.join(allowed)}")
        if "model" not in params:
            raise SpecError(source, "system.model", "missing; allowed: the path of an MJCF .xml file (relative to the problem file)")
        table = dict(params)
        model = table["model"]
        if isinstance(model, Mapping):  # a package model: checked by the system (keys at system.model.KEY)
            table["model"] = dict(model)
        elif isinstance(model, str) and model and not os.path.isabs(model):
            base = os.path.dirname(source) if source and not source.startswith("<") else ""
            table["model"] = os.path.abspath(os.path.join(base, model))
        if isinstance(table.get("solref"), list):
            table["solref"] = tuple(table["solref"])
        try:
            return cls(**table)
        except ModelError as e:
            raise SpecError(source, f"system.{e.key}", e.message) from None
        except ImportError as e:
            raise SpecError(source, "system.name", str(e)) from None

    # ------------------------------------------------------------------ the system contract

    @property
    def gradient_mode(self) -> str:
        """"reverse" or "forward": the mode ``gradient`` resolves to."""
        if self.gradient == "auto":
            return "reverse" if self.iterations == 1 else "forward"
        return self.gradient

    @property
    def model_file(self) -> str:
        """The absolute path of the MJCF file loaded (for a package model, the file inside the package)."""
        return self._source["file"]

    @property
    def model_source(self) -> dict:
        """What a run records of the model: {"package", "path", "distribution", "version"} for a package model, then
        for every model "file" (absolute), "sha256" (of the file) and "files" ({path relative to the model's
        folder: sha256} of each other file MuJoCo reads for it: includes, meshes, textures); on backend "mujoco" also
        "simulator" (`simulator`: the C library and its version, which ran instead of MJX). A new dict each call."""
        out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in self._source.items()}
        if self.backend != "mjx":
            out["simulator"] = self.simulator
        return out

    @property
    def state_size(self) -> int:
        return int(self.mj_model.nq + self.mj_model.nv)

    @property
    def control_size(self) -> int:
        return int(self.mj_model.nu)

    @property
    def state_names(self) -> tuple[str, ...]:
        """[nq + nv] labels: each joint's qpos entries, then each joint's qvel entries (module doc)."""
        return self._names[0]

    @property
    def control_names(self) -> tuple[str, ...]:
        """[nu] labels: the actuators' names in MuJoCo's actuator order ("u<i>" for an unnamed one)."""
        return self._names[1]

    @property
    def dt(self) -> float:
        """The control period: substeps * timestep (s)."""
        return self.substeps * self.timestep

    @property
    def step_program(self) -> Optional[str]:
        """How trajopt's program for this model's step differs from ``mjx.step``'s, where it does: "rk4 in one loop"
        for an RK4 model on backend "mjx" (`mjx_physics.mjx_step`), else None. Kept step costs are keyed by it
        (`trajopt.step_costs.system_identity`), so ratios timed on another program are measured again."""
        from trajopt.systems.mjx_physics import steps_in_one_loop

        _, mjx = _import_mujoco()
        return "rk4 in one loop" if self.backend == "mjx" and steps_in_one_loop(mjx, self.mjx_model) else None

    def content_digest(self) -> str:
        """sha256 (hex) of the compiled model as MuJoCo saves it (MJB: ``mj_saveModel``), the table's settings
        applied: it changes with the model file and with every file MuJoCo read for it (includes, meshes), which
        the resolved ``[system]`` table only names. What a kept trace is keyed by besides the spec
        (`trajopt.traces.problem_identity`)."""
        mujoco, _ = _import_mujoco()
        buffer = np.zeros(mujoco.mj_sizeModel(self.mj_model), np.uint8)
        mujoco.mj_saveModel(self.mj_model, None, buffer)
        return hashlib.sha256(buffer.tobytes()).hexdigest()

    def default_x0(self) -> np.ndarray:
        """[nq + nv]: qpos0 and zero qvel, or the keyframe's qpos and qvel."""
        return self._x0.copy()

    def step(self, x: Array, u: Array) -> Array:
        """One control step (``substeps`` mjx.step calls, an RK4 model's in one loop: `mjx_physics.mjx_step`; or
        mj_step on backend "mujoco"): x [nq + nv], u [nu] -> x' [nq + nv]."""
        return self._step(x, u)

    def simulate(self, x0: Array, U: Array) -> Array:
        """X [T+1, nq + nv]: the states from x0 [nq + nv] under U [T, nu] (X[0] = x0, X[t+1] = step(X[t], U[t])).
        On backend "mujoco" the C simulator's rollout of the whole horizon (one host call per vmapped batch, no
        derivatives); on "mjx" the scan of ``step`` (`trajopt.problem.rollout`).

        Under ``jax.vmap`` over U (an oracle's samples, the seeds) x0 is made batched too, as ``where(u == u, x0,
        x0)`` with u the first control: x0 exactly, NaN or not. JAX batches a scan whose carry starts unbatched twice,
        once to find that the carry becomes batched and once more with it batched, and each pass batches MJX's whole
        step again; starting batched saves that pass (in tracing; at run time it is one select of x0 per
        rollout)."""
        if self._simulate is None:
            from trajopt.problem import rollout

            if U.size:  # x0 batched wherever U is, the same values exactly (the docstring)
                first = U.reshape(-1)[0]
                x0 = jnp.where(first == first, x0, x0)
            return rollout(self._step, x0, U)
        return self._simulate(x0, U)

    @property
    def differentiable(self) -> bool:
        """Whether ``step`` and ``simulate`` have derivatives: True on backend "mjx", False on "mujoco"."""
        return self.backend == "mjx"

    @property
    def simulator(self) -> str:
        """Which simulator runs, for a run's output: "MuJoCo MJX <version>" or "MuJoCo <version> (C)"."""
        if self.backend == "mujoco":
            mujoco, _ = _import_mujoco()
            return f"MuJoCo {mujoco.__version__} (C)"
        return f"MuJoCo MJX {_mjx_version()}"

    def check_method(self, method: Any, problem: Any) -> None:
        """Raise ValueError (one sentence) when ``method`` (a method, or an oracle) needs derivatives of this system
        and the backend has none ("mujoco"): found by tracing one ``init`` and ``step`` (an oracle: one estimate)
        abstractly on ``problem`` (`jax.eval_shape`; on this backend nothing of the physics is traced), which raises
        `trajopt.systems.mujoco_c.NotDifferentiable` where it differentiates. Nothing on backend "mjx"; other
        errors of the trace are left to the method's own checks and run."""
        if self.backend != "mujoco" or _CHECKING.get():
            return
        from trajopt.systems.mujoco_c import NotDifferentiable

        if not _differentiates(method, problem, NotDifferentiable):
            return
        allowed = [label for label, m in _forward_only_candidates()
                   if not _differentiates(m, problem, NotDifferentiable, refused_too=True)]
        raise ValueError(f"{_method_label(method)} needs derivatives of the simulator, which system.backend = "
                         f"\"mujoco\" ({self.simulator}) does not give: it runs forward rollouts only; allowed on it: "
                         f"{', '.join(allowed)} (or system.backend = \"mjx\" for every method)")

    def stable_dt(self) -> float:
        return math.inf


_CHECKING = contextvars.ContextVar("trajopt_mjx_check_method", default=False)


def _differentiates(method: Any, problem: Any, error: type, refused_too: bool = False) -> bool:
    """Whether one ``init`` and ``step`` of ``method`` (an oracle: one ``estimate``) at ``problem.U0``, traced
    abstractly (`jax.eval_shape`), raises ``error`` (a derivative of the C simulator). With ``refused_too``, the
    method's own ``check`` runs first and a method it refuses, or whose trace fails otherwise, counts as True (it
    does not run here). A check nested in this trace (a method's init asking `check_applicable` again) is skipped."""
    token = _CHECKING.set(True)
    try:
        if refused_too and callable(getattr(method, "check", None)):
            method.check(problem)
        key = jax.random.PRNGKey(0)
        if callable(getattr(method, "estimate", None)) and not callable(getattr(method, "step", None)):
            jax.eval_shape(lambda k: method.estimate(k, problem, problem.U0), key)
        else:
            def one(k):
                state = method.init(k, problem, problem.U0)
                return method.step(jax.random.fold_in(k, 1), problem, state)

            jax.eval_shape(one, key)
    except error:
        return True
    except Exception:  # noqa: BLE001  not this rule's business: the method's own checks and run report it
        return refused_too
    finally:
        _CHECKING.reset(token)
    return False


def _forward_only_candidates():
    """(label, method) for every registered method with its defaults, the gradient method once per registered
    oracle: what `MJX.check_method` tries when it names the methods that run without derivatives."""
    from trajopt.methods import METHODS, GradientMethod
    from trajopt.oracles import ORACLES

    for name in [n for n in METHODS if n != "gradient"] + [f"oracle {o}" for o in ORACLES]:
        try:
            if name.startswith("oracle "):
                yield name, GradientMethod(ORACLES.get(name.split(" ", 1)[1])())
            else:
                yield name, METHODS.get(name)()
        except Exception:  # noqa: BLE001  a method that needs options to be built: not listed
            continue


def _method_label(method: Any) -> str:
    """"oracle 'fobg'" (the gradient method or an oracle), "method 'ilqr'", "method 'ilqr' (3 starts)"."""
    inner = getattr(method, "method", None)
    if inner is not None and hasattr(method, "starts"):
        return f"{_method_label(inner)} ({method.starts} starts)"
    oracle = getattr(method, "oracle", None)
    if oracle is not None:
        return f"oracle {getattr(oracle, 'name', type(oracle).__name__)!r}"
    kind = "oracle" if callable(getattr(method, "estimate", None)) else "method"
    return f"{kind} {getattr(method, 'name', type(method).__name__)!r}"
