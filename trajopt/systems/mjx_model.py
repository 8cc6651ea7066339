"""The MJCF model as the mjx system (`trajopt.systems.mjx.MJX`) loads it: `ModelError` (a bad [system] parameter),
importing MuJoCo and MJX (`_import_mujoco`: the ``[mjx]`` extra), and what is checked and read at load time: the
refusals (a model file or a file it reads that is not a regular file, a package model naming a file outside its
folder, an ``<option>``, ``<flag>``, element or geom pair MJX does not implement, a time step beyond MuJoCo's rule
for soft constraints: `stable_timestep`), MuJoCo's warnings while it compiles the model, the state and control
names, and what a run records of the model (`_model_source`). The module doc of `trajopt.systems.mjx` states the
rules; `trajopt.systems.mjx` re-exports these names.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from typing import Mapping

import numpy as np

EXTRA_HINT = "the mjx system needs the [mjx] extra: pip install -e '.[mjx]'"


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
    time step beyond the soft constraints' rule, `stable_timestep`) when timestep > min(timeconst) / 2: always with
    refsafe disabled (unstable), and with refsafe on (MuJoCo softens the constraint to timeconst = 2 x timestep)
    where the table set the time step or the solref (a value that would have no effect). A model as its authors
    wrote it, with refsafe on, runs as MuJoCo runs it (gymnasium's inverted pendulum: timestep 0.02, its rail's
    timeconst 0.02)."""
    h = float(mm.opt.timestep)
    limit, where = stable_timestep(mujoco, mm)
    if not h > limit * (1 + 1e-12):  # equality is allowed: MuJoCo's default solref 0.02 at timestep 0.01
        return
    refsafe = not (int(mm.opt.disableflags) & int(mujoco.mjtDisableBit.mjDSBL_REFSAFE))
    if refsafe and key == "model":
        return
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
