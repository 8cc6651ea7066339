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
set), so every verb refuses it before anything compiles.

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
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import math
import os
from dataclasses import dataclass, fields
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from trajopt.tomlio import SpecError

EXTRA_HINT = "the mjx system needs the [mjx] extra: pip install -e '.[mjx]'"
GRADIENT_MODES = ("auto", "reverse", "forward")


class ModelError(ValueError):
    """A bad MJX system parameter: ``key`` is the [system] key, ``message`` says what is wrong."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"{key}: {message}")


def _import_mujoco():
    """(mujoco, mujoco.mjx), imported on first use; mjx's import chatter about Warp is swallowed."""
    try:
        import mujoco
        with contextlib.redirect_stdout(io.StringIO()):
            from mujoco import mjx
    except ImportError as e:
        raise ImportError(f"{EXTRA_HINT} ({e})") from None
    return mujoco, mjx


@dataclass(frozen=True, eq=False)
class MJX:
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

    def default_x0(self) -> np.ndarray:
        """[nq + nv]: qpos0 and zero qvel, or the keyframe's qpos and qvel."""
        return self._x0.copy()

    def step(self, x: Array, u: Array) -> Array:
        """One control step (``substeps`` mjx.step calls, or mj_step on backend "mujoco"): x [nq + nv], u [nu] ->
        x' [nq + nv]."""
        return self._step(x, u)

    def simulate(self, x0: Array, U: Array) -> Array:
        """X [T+1, nq + nv]: the states from x0 [nq + nv] under U [T, nu] (X[0] = x0, X[t+1] = step(X[t], U[t])).
        On backend "mujoco" the C simulator's rollout of the whole horizon (one host call per vmapped batch, no
        derivatives); on "mjx" the scan of ``step`` (`trajopt.problem.rollout`, the same program as without it)."""
        if self._simulate is None:
            from trajopt.problem import rollout

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

    # ------------------------------------------------------------------ the plant's physics (trajopt.closedloop.plant)

    # [plant.scale] keys that scale the model's physics for the plant only: parameter -> the element a name refers to
    PHYSICS = {"body_mass": "body", "dof_damping": "joint", "geom_friction": "geom"}
    # the ones a per-seed draw may scale (read by mjx.step at run time; a body's mass also sets derived constants)
    PHYSICS_PER_SEED = ("dof_damping", "geom_friction")

    def physics_names(self, parameter: str) -> tuple[str, ...]:
        """The names ``parameter`` (a key of `PHYSICS`) may scale one by one: the model's named bodies (but the
        world), joints or geoms, in MuJoCo's order."""
        mujoco, _ = _import_mujoco()
        kind = self.PHYSICS[parameter]
        obj = getattr(mujoco.mjtObj, f"mjOBJ_{kind.upper()}")
        count = {"body": self.mj_model.nbody, "joint": self.mj_model.njnt, "geom": self.mj_model.ngeom}[kind]
        names = [mujoco.mj_id2name(self.mj_model, obj, i) for i in range(1 if kind == "body" else 0, count)]
        return tuple(n for n in names if n)

    def with_physics(self, factors) -> "MJX":
        """A copy of this system whose model has its physics scaled, for a plant (this system unchanged).

        factors: (parameter, name or None, f) triples: ``body_mass`` multiplies the named body's (None: every
        body's) mass and rotational inertia by f (its density scaled) and MuJoCo's derived constants are computed
        again (``mj_setConst``: subtree masses, inverse weights); ``dof_damping`` the named joint's (None: every
        joint's) damping of each of its dofs; ``geom_friction`` the named geom's (None: every geom's) three
        friction coefficients (sliding, torsional, rolling) and those of every ``<pair>`` naming it."""
        import copy

        mujoco, mjx = _import_mujoco()
        mm = copy.deepcopy(self.mj_model)
        for parameter, name, f in factors:
            mask, pairs = _physics_mask(mujoco, mm, parameter, name)
            if parameter == "body_mass":
                mm.body_mass[mask] *= f
                mm.body_inertia[mask] *= f
            elif parameter == "dof_damping":
                mm.dof_damping[mask] *= f
            else:
                mm.geom_friction[mask] *= f
                if mm.npair:
                    mm.pair_friction[pairs] *= f
        if any(p == "body_mass" for p, _, _ in factors):
            mujoco.mj_setConst(mm, mujoco.MjData(mm))
        with contextlib.redirect_stdout(io.StringIO()):
            m = mjx.put_model(mm)
            d0 = mjx.make_data(m)
        out = copy.copy(self)
        object.__setattr__(out, "mj_model", mm)
        object.__setattr__(out, "mjx_model", m)
        object.__setattr__(out, "_step", _make_step(mjx, m, d0, mm.nq, self.substeps, self.gradient_mode))
        object.__setattr__(out, "physics_factors", tuple(getattr(self, "physics_factors", ())) + tuple(factors))
        bind = getattr(out, "_bind_backend", None)  # another simulator of mj_model, if the system has one: rebound
        if callable(bind):
            bind()
        return out

    def physics_step(self, targets):
        """``step(x, u, factors) -> x'``: one control step with the physics scaled by factors traced at run time (a
        plant drawn per seed). targets: (parameter, name or None) pairs, parameter in `PHYSICS_PER_SEED`; factors:
        [len(targets)], each scaling its target as `with_physics` does. Not differentiated (a plant's step)."""
        mujoco, mjx = _import_mujoco()
        m, mm = self.mjx_model, self.mj_model
        masks = []
        for parameter, name in targets:
            if parameter not in self.PHYSICS_PER_SEED:
                raise ValueError(f"{parameter}: not scaled per seed; allowed: {', '.join(self.PHYSICS_PER_SEED)}")
            mask, pairs = _physics_mask(mujoco, mm, parameter, name)
            masks.append((parameter, mask.astype(float), pairs.astype(float)))
        if self.backend == "mujoco":  # MuJoCo's C simulator: each row of a batch on its own scaled copy of the model
            from trajopt.systems.mujoco_c import scaled_step_function

            return scaled_step_function(self._simulator, lambda model, factors: _scale_c_model(model, masks, factors))
        with jax.ensure_compile_time_eval():
            d0 = mjx.make_data(m)
        physics = _physics(mjx, d0, int(mm.nq), int(self.substeps))

        def step(x: Array, u: Array, factors: Array) -> Array:
            mp = m
            for (parameter, mask, pairs), f in zip(masks, factors):
                if parameter == "dof_damping":
                    mp = mp.replace(dof_damping=mp.dof_damping * (1 + mask * (f - 1)).astype(mp.dof_damping.dtype))
                else:
                    g = (1 + mask * (f - 1)).astype(mp.geom_friction.dtype)
                    mp = mp.replace(geom_friction=mp.geom_friction * g[:, None])
                    if mm.npair:
                        p = (1 + pairs * (f - 1)).astype(mp.pair_friction.dtype)
                        mp = mp.replace(pair_friction=mp.pair_friction * p[:, None])
            return physics(mp, x, u)

        return step


@contextlib.contextmanager
def _warnings_collected(mujoco, into: list):
    """MuJoCo's warnings (e.g. a deprecated compiler attribute in gymnasium's half_cheetah.xml) appended to ``into``
    instead of printed and appended to MUJOCO_LOG.TXT in the working directory (MuJoCo's default handler); the
    previous handler is restored on exit."""
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(lambda message: into.append(str(message).strip()))
    try:
        yield into
    finally:
        mujoco.set_mju_user_warning(previous)


def _mjx_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("mujoco-mjx")
    except metadata.PackageNotFoundError:
        return "?"


def _refuse_special_files(path: str) -> None:
    """Refuse a model whose file, or a file it names (`trajopt.systems.mjcf.model_files`: includes at any depth,
    meshes, textures, height fields, skins, at every place MuJoCo looks), exists but is not a regular file:
    MuJoCo's reader would block on a FIFO (or read a device forever). Checked with ``os.stat`` before MuJoCo
    opens anything. Raises ModelError at ``model``."""
    from trajopt.systems.mjcf import model_files, special_file

    for f in model_files(path):
        what = special_file(f.path)
        if what is None:
            continue
        if not f.named_by:
            raise ModelError("model", f"{path}: found {what}, allowed: a regular file (an MJCF .xml file)")
        raise ModelError("model", f"{path}: {f.element} (in {f.named_by}) names {f.path}, found {what}, allowed: a "
                         "regular file (MuJoCo's reader would block on it)")


def _package_model(table: Mapping):
    """The `trajopt.systems.mjcf.PackageModel` of a model table {package, path[, version]}; ModelError at
    ``model.<key>`` otherwise."""
    from trajopt.systems.mjcf import PACKAGE_KEYS, PackageModelError, package_model

    for key in table:
        if key not in PACKAGE_KEYS:
            raise ModelError(f"model.{key}", f"unknown key of a package model; allowed: {', '.join(PACKAGE_KEYS)} "
                             "(package and path required)")
    for key in ("package", "path"):
        if key not in table:
            raise ModelError(f"model.{key}", "missing; a package model is { package = NAME, path = PATH } (e.g. "
                             "{ package = \"gymnasium\", path = \"envs/mujoco/assets/hopper.xml\" })")
    try:
        return package_model(table["package"], table["path"], table.get("version"))
    except PackageModelError as e:
        raise ModelError(f"model.{e.key}", e.message) from None


def _refuse_escaping_files(path: str, package) -> None:
    """Refuse a package model that names a file outside its own folder (the package and version would not identify
    what is simulated). Raises ModelError at ``model``."""
    from trajopt.systems.mjcf import escaping_file

    f = escaping_file(path)
    if f is not None:
        raise ModelError("model", f"{path}: {f.element} (in {f.named_by}) names {f.path}, which is outside the model's "
                         f"folder {os.path.dirname(path)}; allowed: files inside that folder (a model from the "
                         f"package {package.package} is identified by the package's version, which does not cover "
                         "a file outside it)")


def _model_source(path: str, package) -> dict:
    """`MJX.model_source`'s content for the model file ``path`` (and its `PackageModel`, or None)."""
    from trajopt.systems.mjcf import model_hashes

    digest, others = model_hashes(path)
    out = {}
    if package is not None:
        out.update(package=package.package, path=package.path, distribution=package.distribution,
                   version=package.version)
    out.update(file=os.path.abspath(path), sha256=digest, files=others)
    return out


# <option> attributes MJX implements, as MJCF spells them; `mjx.step` (mujoco-mjx 3.17) integrates with these three
# of the integrators its IntegratorType lists (IMPLICIT is not listed; DISCRETE is listed but step refuses it)
_STEP_INTEGRATORS = ("EULER", "RK4", "IMPLICITFAST")
_MJCF_SPELLING = {"NEWTON": "Newton", "EULER": "Euler", "RK4": "RK4"}


def _spelled(member_name: str) -> str:
    """An enum member's MJCF keyword: mjSOL_NEWTON -> "Newton", mjINT_IMPLICITFAST -> "implicitfast"."""
    word = member_name.split("_", 1)[-1]
    return _MJCF_SPELLING.get(word, word if word in ("PGS", "CG") else word.lower())


def _refuse_unsupported_options(mujoco, mjx, mm, path: str) -> None:
    """Refuse an ``<option>`` that MJX does not implement, naming it and what MJX allows (from MJX's own enums,
    so a newer MJX that implements more is followed). Raises ModelError at ``model``."""
    checks = (("solver", mujoco.mjtSolver, getattr(mjx, "SolverType", None), None),
              ("integrator", mujoco.mjtIntegrator, getattr(mjx, "IntegratorType", None), _STEP_INTEGRATORS),
              ("cone", mujoco.mjtCone, getattr(mjx, "ConeType", None), None),
              ("jacobian", mujoco.mjtJacobian, getattr(mjx, "JacobianType", None), None))
    for attr, mj_enum, mjx_enum, only in checks:
        if mjx_enum is None:
            continue
        allowed = [m for m in mjx_enum if only is None or m.name in only]
        value = int(getattr(mm.opt, attr))
        if value not in {int(m) for m in allowed}:
            found = _spelled(mj_enum(value).name)
            raise ModelError("model", f"{path}: found <option {attr}=\"{found}\">, which MJX (mujoco-mjx "
                             f"{_mjx_version()}) does not implement; allowed: {attr} = "
                             + ", ".join(f'"{_spelled(mj_enum(int(m)).name)}"' for m in allowed))
    fluid = mm.opt.density > 0 or mm.opt.viscosity > 0 or bool(np.any(mm.opt.wind))
    if fluid and int(mm.opt.integrator) == int(mujoco.mjtIntegrator.mjINT_IMPLICITFAST):
        wind = " ".join(f"{w:g}" for w in mm.opt.wind)
        raise ModelError("model", f"{path}: found <option integrator=\"implicitfast\"> with fluid drag (density "
                         f"{mm.opt.density:g}, viscosity {mm.opt.viscosity:g}, wind \"{wind}\"), which MJX "
                         f"(mujoco-mjx {_mjx_version()}) does not implement; allowed: integrator \"Euler\" or "
                         "\"RK4\" with fluid drag, or no fluid (density = viscosity = 0, no wind)")
    enabled = getattr(mjx, "EnableBit", None)
    if enabled is not None:
        supported = {int(m) for m in enabled}
        for bit in range(int(mujoco.mjtEnableBit.mjNENABLE)):
            if mm.opt.enableflags & (1 << bit) and (1 << bit) not in supported:
                flag = mujoco.mjtEnableBit(1 << bit).name.split("_", 1)[-1].lower()
                raise ModelError("model", f"{path}: found <flag {flag}=\"enable\">, which MJX (mujoco-mjx "
                                 f"{_mjx_version()}) does not implement; allowed: enabling only "
                                 + (", ".join(m.name.lower() for m in enabled) or "none"))


def stable_timestep(mujoco, mm) -> tuple[float, str]:
    """MuJoCo's time-step rule for its soft constraints, on a loaded ``mm``: (min(timeconst) / 2, the element that
    sets it) over every geom, contact pair, limited joint and equality whose solref is in the standard form
    (timeconst > 0); (inf, "") when there is none (every solref in the direct form, [-stiffness, -damping]).

    A constraint's reference dynamics are integrated explicitly, and MuJoCo needs timeconst >= 2 x timestep. Above
    the limit, with ``refsafe`` on (MuJoCo's default) it simulates timeconst = 2 x timestep instead (the contact
    is softer than written, and the solref has no effect: measured bit-identical trajectories,
    docs/contact_gradients.md); with refsafe disabled it integrates the constraint unstably (measured: the
    contact gains energy at each impact and throws the body)."""
    candidates = [("geom", np.asarray(mm.geom_solref)[:, 0], np.arange(mm.ngeom))]
    if mm.npair:
        candidates.append(("pair", np.asarray(mm.pair_solref)[:, 0], np.arange(mm.npair)))
    if mm.njnt:  # a joint's solref acts only at its limits
        limited = np.flatnonzero(np.asarray(mm.jnt_limited, bool))
        candidates.append(("joint", np.asarray(mm.jnt_solref)[limited, 0], limited))
    if mm.neq:
        candidates.append(("equality", np.asarray(mm.eq_solref)[:, 0], np.arange(mm.neq)))
    best, where = math.inf, ""
    for obj, consts, ids in candidates:
        for c, i in zip(consts, ids):
            if 0 < c < 2 * best:
                best, where = float(c) / 2, f"{_named(mujoco, mm, obj, i)}'s timeconst {float(c):g}"
    return best, where


def _refuse_unstable_timestep(mujoco, mm, path: str, key: str) -> None:
    """ModelError at ``key`` (``timestep`` when the table sets it, else ``solref``, else ``model``: whichever put the
    time step beyond the soft constraints' rule, `stable_timestep`) when timestep > min(timeconst) / 2."""
    h = float(mm.opt.timestep)
    limit, where = stable_timestep(mujoco, mm)
    if not h > limit * (1 + 1e-12):  # equality is allowed: MuJoCo's default solref 0.02 at timestep 0.01
        return
    refsafe = not (int(mm.opt.disableflags) & int(mujoco.mjtDisableBit.mjDSBL_REFSAFE))
    why = ("with refsafe on, MuJoCo would simulate timeconst = 2 x timestep instead, so the solref written would "
           "have no effect" if refsafe else
           "with refsafe disabled (this model's <flag refsafe=\"disable\">), MuJoCo would integrate the contact "
           "unstably")
    raise ModelError(key, f"found timestep {h:g} with {where} ({path}): MuJoCo's soft constraints need timeconst >= "
                     f"2 x timestep ({why}), so the largest stable timestep here is {limit:g}; allowed: timestep <= "
                     f"{limit:g}, or a solref whose timeconst is >= {2 * h:g}")


def _named(mujoco, mm, obj: str, i: int, tag: str = "") -> str:
    """An element as MJCF shows it: <geom name="foot">, or 'geom 3 (unnamed)'."""
    name = mujoco.mj_id2name(mm, getattr(mujoco.mjtObj, f"mjOBJ_{obj.upper()}"), int(i))
    return f'<{tag or obj} name="{name}">' if name else f"{tag or obj} {int(i)} (unnamed)"


def _kind(enum_member_name: str) -> str:
    """mjGEOM_CYLINDER -> "cylinder", mjDYN_FILTEREXACT -> "filterexact"."""
    return enum_member_name.split("_", 1)[-1].lower()


def _refuse_unsupported_elements(mujoco, mjx, mm, path: str) -> None:
    """Refuse, naming the element, what trajopt's state or MJX (its enums and collision driver, so a newer MJX that
    implements more is followed) cannot simulate: an actuator with activation state; a geom pair that can collide
    and has no MJX collision function, or a mesh / height-field pair with a margin; an actuator transmission, gain
    or bias, an equality or a sensor of a type MJX lacks; flex bodies. Raises ModelError at
    ``model``; what MJX's put_model refuses beyond these keeps MJX's own reason (the caller)."""
    version = f"MJX (mujoco-mjx {_mjx_version()})"
    actnum = getattr(mm, "actuator_actnum", None)
    for i in range(mm.nu):
        stateful = int(actnum[i]) > 0 if actnum is not None else int(mm.actuator_dyntype[i]) != 0
        if stateful:
            dyn = _kind(mujoco.mjtDyn(int(mm.actuator_dyntype[i])).name)
            raise ModelError("model", f"{path}: found {_named(mujoco, mm, 'actuator', i)} with dyntype=\"{dyn}\", an "
                             f"actuator with activation state (the model's na = {mm.na}), which trajopt's mjx state "
                             "x = [qpos, qvel] does not hold; allowed: stateless actuators (dyntype=\"none\": motor, "
                             "or position/velocity without a time constant)")
    if mm.nflex:
        raise ModelError("model", f"{path}: found {_named(mujoco, mm, 'flex', 0)}, a flex body, which {version} does "
                         "not implement (its JAX backend has no flex); allowed: rigid bodies only")
    enum_checks = (
        ("actuator", mm.actuator_trntype, "TrnType", mujoco.mjtTrn, "transmission"),
        ("actuator", mm.actuator_gaintype, "GainType", mujoco.mjtGain, "gaintype"),
        ("actuator", mm.actuator_biastype, "BiasType", mujoco.mjtBias, "biastype"),
        ("equality", mm.eq_type, "EqType", mujoco.mjtEq, "type"),
        ("sensor", mm.sensor_type, "SensorType", mujoco.mjtSensor, "type"),
    )
    for obj, values, mjx_enum, mj_enum, what in enum_checks:
        allowed = getattr(mjx, mjx_enum, None)
        if allowed is None:
            continue
        ok = {int(m) for m in allowed}
        for i, v in enumerate(values):
            if int(v) not in ok:
                raise ModelError("model", f"{path}: found {_named(mujoco, mm, obj, i)} of {what} "
                                 f"\"{_kind(mj_enum(int(v)).name)}\", which {version} does not implement; allowed: "
                                 + ", ".join(_kind(mj_enum(int(m)).name) for m in allowed))
    _refuse_unsupported_geom_pairs(mujoco, mm, path, version)


def _refuse_unsupported_geom_pairs(mujoco, mm, path: str, version: str) -> None:
    """A geom pair MJX's collision driver would collide (its own ``geom_pairs``: contype/conaffinity, <exclude>,
    parent filtering, <pair>) with no collision function for the two types (``has_collision_fn``), or a mesh or
    height-field pair with a margin. Skipped when MJX's collision driver cannot be read (put_model still refuses)."""
    try:
        from mujoco.mjx._src import collision_driver as driver
        pairs, has_fn = driver.geom_pairs, driver.has_collision_fn
        table = list(getattr(driver, "_COLLISION_FUNC", {}))
    except (ImportError, AttributeError):
        return
    geom = mujoco.mjtGeom
    no_margin = {int(geom.mjGEOM_MESH), int(geom.mjGEOM_HFIELD)}

    def describe(g: int) -> str:
        body = _named(mujoco, mm, "body", int(mm.geom_bodyid[g]))
        return f"{_named(mujoco, mm, 'geom', g)} ({_kind(geom(int(mm.geom_type[g])).name)}, in {body})"

    def partners(t: int) -> str:
        found = sorted({int(b) for a, b in table if int(a) == t} | {int(a) for a, b in table if int(b) == t})
        return ", ".join(_kind(geom(k).name) for k in found) or "nothing"

    for g1, g2, ip in pairs(mm):
        t1, t2 = int(mm.geom_type[g1]), int(mm.geom_type[g2])
        how = "named together in <contact><pair>" if ip != -1 else "which can collide"
        if not has_fn(t1, t2):
            k1, k2 = _kind(geom(t1).name), _kind(geom(t2).name)
            raise ModelError("model", f"{path}: found {describe(g1)} and {describe(g2)}, {how}, and {version} has no "
                             f"{k1}-{k2} collision function; allowed: geom types MJX collides (a {k1} collides with: "
                             f"{partners(t1)}; a {k2} with: {partners(t2)}), or keep the two from colliding "
                             "(contype/conaffinity, <contact><exclude>)")
        if no_margin & {t1, t2}:
            margin = mm.pair_margin[ip] if ip != -1 else mm.geom_margin[g1] + mm.geom_margin[g2]
            if np.any(margin):
                raise ModelError("model", f"{path}: found {describe(g1)} and {describe(g2)}, {how}, with margin "
                                 f"{float(np.max(margin)):g}, and {version} does not implement a margin for mesh and "
                                 "height-field collisions; allowed: margin = 0 on these geoms (or their <pair>)")


def _model_names(mujoco, mm) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(state_names [nq + nv], control_names [nu]) from the model's joints and actuators (module doc)."""
    qpos, qvel = [""] * mm.nq, [""] * mm.nv
    jt = mujoco.mjtJoint
    for j in range(mm.njnt):
        name = mujoco.mj_id2name(mm, mujoco.mjtObj.mjOBJ_JOINT, j) or f"joint{j}"
        kind = int(mm.jnt_type[j])
        if kind == int(jt.mjJNT_FREE):
            pos = [f"{name} {c}" for c in ("x", "y", "z", "qw", "qx", "qy", "qz")]
            vel = [f"{name} {c}" for c in ("vx", "vy", "vz", "wx", "wy", "wz")]
        elif kind == int(jt.mjJNT_BALL):
            pos = [f"{name} {c}" for c in ("qw", "qx", "qy", "qz")]
            vel = [f"{name} {c}" for c in ("wx", "wy", "wz")]
        else:  # hinge, slide
            pos, vel = [name], [f"{name} vel"]
        a, b = int(mm.jnt_qposadr[j]), int(mm.jnt_dofadr[j])
        qpos[a:a + len(pos)] = pos
        qvel[b:b + len(vel)] = vel
    controls = tuple(mujoco.mj_id2name(mm, mujoco.mjtObj.mjOBJ_ACTUATOR, i) or f"u{i}" for i in range(mm.nu))
    return tuple(qpos) + tuple(qvel), controls


def _scale_c_model(model, masks, factors) -> None:
    """Scale a copy of the C model in place as `MJX.physics_step` scales the MJX model: each (parameter, mask, pairs)
    of ``masks`` by its factor (dof_damping; geom_friction and the <pair>s naming a scaled geom)."""
    for (parameter, mask, pairs), f in zip(masks, factors):
        if parameter == "dof_damping":
            model.dof_damping[:] = model.dof_damping * (1 + mask * (f - 1))
        else:
            model.geom_friction[:] = model.geom_friction * (1 + mask * (f - 1))[:, None]
            if model.npair:
                model.pair_friction[:] = model.pair_friction * (1 + pairs * (f - 1))[:, None]


def _physics_mask(mujoco, mm, parameter: str, name):
    """(mask, pairs): the bodies [nbody], dofs [nv] or geoms [ngeom] that ``parameter`` scales for ``name`` (None:
    all of them; for body_mass every body but the world), and the ``<pair>`` s [npair] naming a scaled geom (for
    geom_friction; empty otherwise). ValueError for a name the model lacks."""
    kind = MJX.PHYSICS[parameter]
    count = {"body": mm.nbody, "joint": mm.njnt, "geom": mm.ngeom}[kind]
    if name is None:
        chosen = np.ones(count, bool)
        if kind == "body":
            chosen[0] = False
    else:
        i = mujoco.mj_name2id(mm, getattr(mujoco.mjtObj, f"mjOBJ_{kind.upper()}"), name)
        if i < 0:
            raise ValueError(f"{name!r} is not a {kind} of the model")
        chosen = np.arange(count) == i
    pairs = np.zeros(mm.npair, bool)
    if kind == "joint":
        chosen = chosen[np.asarray(mm.dof_jntid)] if mm.nv else np.zeros(0, bool)
    if kind == "geom" and mm.npair:
        pairs = chosen[np.asarray(mm.pair_geom1)] | chosen[np.asarray(mm.pair_geom2)]
    return chosen, pairs


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


def _like(new, old):
    """``new`` (an mjx.Data) with every array in ``old``'s dtype. Under x64, mjx.step returns some integer index
    arrays of a model with tendons (ten_wrapadr, ten_wrapnum, wrap_obj) as int64 where make_data made them int32,
    which a loop carry refuses (mujoco-mjx 3.17; the values are indices, so the cast loses nothing)."""
    return jax.tree.map(lambda a, b: a.astype(b.dtype) if a.dtype != b.dtype else a, new, old)


def _make_step(mjx, m, d0, nq: int, substeps: int, mode: str):
    """The pure one-step map, with a forward-mode Jacobian custom_vjp when ``mode == "forward"``. (Not a ``jax.jit``
    of its own: that traces MJX once per shape instead of once per call site, but the compiled program grew by 7 %
    and its compile and run times moved by more than the shared host's noise in both directions: docs/mjx.md.)"""
    physics = _physics(mjx, d0, nq, substeps)
    return differentiable(lambda x, u: physics(m, x, u), mode)


def _physics(mjx, d0, nq: int, substeps: int):
    """``physics(m, x, u) -> x'``: ``substeps`` mjx.step calls of the mjx.Model ``m`` (a traced model for a plant whose
    parameters are drawn per seed, `MJX.physics_step`) from x = [qpos, qvel] with ctrl u."""

    def physics(m, x: Array, u: Array) -> Array:
        dtype = d0.qpos.dtype
        d = d0.replace(qpos=x[:nq].astype(dtype), qvel=x[nq:].astype(dtype), ctrl=u.astype(dtype))
        d = jax.lax.fori_loop(0, substeps, lambda _, d: _like(mjx.step(m, d), d), d)
        return jnp.concatenate([d.qpos, d.qvel]).astype(x.dtype)

    return physics


def differentiable(physics, mode: str):
    """``physics(x: [n], u: [m]) -> [n]`` as an MJX system differentiates it: as it is for "reverse"; for "forward", a
    custom_vjp whose forward pass computes the Jacobians [n, n] and [n, m] with ``jax.jacfwd`` (reverse mode through
    MJX's solver loop is then never traced). Shared by the system's own step and `trajopt.systems.mjx_contact`."""
    if mode == "reverse":
        return physics

    @jax.custom_vjp
    def step(x, u):
        return physics(x, u)

    def fwd(x, u):
        (jx, ju), y = jax.jacfwd(lambda x, u: (physics(x, u),) * 2, argnums=(0, 1), has_aux=True)(x, u)
        return y, (jx, ju)

    def bwd(res, g):
        jx, ju = res
        return g @ jx, g @ ju

    step.defvjp(fwd, bwd)
    return step
