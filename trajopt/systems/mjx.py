"""MuJoCo MJX: any MJCF model as a trajopt system (the optional ``[mjx]`` extra: ``pip install -e ".[mjx]"``).

A problem file names the model and how to step it::

    [system]
    name = "mjx"
    model = "models/push.xml"   # relative to the problem file (absolute paths as they are)
    substeps = 5                 # physics steps (mjx.step) per control step
    keyframe = ""                # x0 default: the model's qpos0 and zero qvel, or this named <key>
    timestep = 0.01              # overrides <option timestep>; default: the model's
    iterations = 1               # overrides <option iterations> (constraint solver); default: the model's
    ls_iterations = 4            # overrides <option ls_iterations>; default: the model's
    solref = [0.02, 1.0]         # overrides solref of every geom, joint limit and contact pair; default: the model's
    gradient = "auto"            # "auto", "reverse" or "forward" (see below)

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

Refused at load time (a `ModelError` at ``model``, so a problem file's ``system.model``, naming the element):
a model file, or a file it reads (``<include file>``, a mesh, texture, height field or skin, wherever MuJoCo
looks for it: `trajopt.systems.mjcf`), that is not a regular file (a FIFO or a device would block the reader); an ``<option>`` solver, integrator, cone or
Jacobian, or an enabled ``<flag>``, that MJX does not implement (the message lists what it does); anything
else MJX's ``put_model`` refuses (a geom pair without a collision function, flex bodies, ...), with MJX's
reason.

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

The dataclass fields are the TOML-level parameters only (the path is stored resolved, so a recorded config
re-loads); the loaded ``mujoco.MjModel``/``mjx.Model`` live in non-field attributes. Equality and hashing
are by identity (``eq=False``), so the system can be closed over in ``jit``.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from dataclasses import dataclass, field, fields
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

    model: str
    substeps: int = 1
    keyframe: str = ""
    timestep: float = 0.0
    iterations: int = 0
    ls_iterations: int = 0
    solref: tuple = ()
    gradient: str = "auto"

    one_step = False

    # ------------------------------------------------------------------ construction

    def __post_init__(self):
        mujoco, mjx = _import_mujoco()
        self._check_scalars()
        path = self.model
        if not os.path.exists(path):
            raise ModelError("model", f"{path}: no such file (an MJCF .xml file; a relative path is read relative to the problem file)")
        _refuse_special_files(path)
        try:
            mm = mujoco.MjModel.from_xml_path(path)
        except Exception as e:  # mujoco raises ValueError with the parser's message
            raise ModelError("model", f"{path}: not a valid MJCF model: {str(e).strip()}") from None
        _refuse_unsupported_options(mujoco, mjx, mm, path)
        if mm.nu == 0:
            raise ModelError("model", f"{path} has no actuators (<actuator>); the mjx system's controls are the actuators' ctrl")
        if mm.na > 0:
            raise ModelError("model", f"{path} has actuators with internal state (na = {mm.na}); only stateless actuators "
                             "(dyntype none) are supported, so that the state is (qpos, qvel)")
        key_id = -1
        if self.keyframe:
            key_id = mujoco.mj_name2id(mm, mujoco.mjtObj.mjOBJ_KEY, self.keyframe)
            if key_id < 0:
                names = [mujoco.mj_id2name(mm, mujoco.mjtObj.mjOBJ_KEY, i) for i in range(mm.nkey)]
                known = ", ".join(repr(n) for n in names if n) or "none"
                raise ModelError("keyframe", f"{self.keyframe!r} is not a keyframe of {path}; its keyframes: {known}")
        if self.timestep > 0:
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
        object.__setattr__(self, "mj_model", mm)
        object.__setattr__(self, "_names", names)
        object.__setattr__(self, "mjx_model", m)
        object.__setattr__(self, "_x0", np.asarray(x0, float))
        object.__setattr__(self, "_step", _make_step(mjx, m, d0, mm.nq, self.substeps, self.gradient_mode))

    def _check_scalars(self) -> None:
        def integer(key, value, lo):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < lo:
                raise ModelError(key, f"found {value!r}, allowed: an integer >= {lo}")

        if not isinstance(self.model, str) or not self.model:
            raise ModelError("model", f"found {self.model!r}, allowed: the path of an MJCF .xml file")
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
        if isinstance(model, str) and model and not os.path.isabs(model):
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
        """One control step (``substeps`` mjx.step calls): x [nq + nv], u [nu] -> x' [nq + nv]."""
        return self._step(x, u)

    def stable_dt(self) -> float:
        return math.inf


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
    enabled = getattr(mjx, "EnableBit", None)
    if enabled is not None:
        supported = {int(m) for m in enabled}
        for bit in range(int(mujoco.mjtEnableBit.mjNENABLE)):
            if mm.opt.enableflags & (1 << bit) and (1 << bit) not in supported:
                flag = mujoco.mjtEnableBit(1 << bit).name.split("_", 1)[-1].lower()
                raise ModelError("model", f"{path}: found <flag {flag}=\"enable\">, which MJX (mujoco-mjx "
                                 f"{_mjx_version()}) does not implement; allowed: enabling only "
                                 + (", ".join(m.name.lower() for m in enabled) or "none"))


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


def _make_step(mjx, m, d0, nq: int, substeps: int, mode: str):
    """The pure one-step map, with a forward-mode Jacobian custom_vjp when ``mode == "forward"``."""

    def physics(x: Array, u: Array) -> Array:
        dtype = d0.qpos.dtype
        d = d0.replace(qpos=x[:nq].astype(dtype), qvel=x[nq:].astype(dtype), ctrl=u.astype(dtype))
        d = jax.lax.fori_loop(0, substeps, lambda _, d: mjx.step(m, d), d)
        return jnp.concatenate([d.qpos, d.qvel]).astype(x.dtype)

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
