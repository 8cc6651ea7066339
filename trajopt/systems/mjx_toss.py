"""`mjx_toss`: a throw scored by where the body is after a fixed time (one-step; the [mjx] extra).

The decision is an initial velocity; the cost is one position coordinate after ``duration`` seconds of MuJoCo MJX
simulation with the actuators at rest (ctrl = 0):

    cost(theta) = qpos_T[position],   x_0 = (qpos_0, qvel_0 with qvel_0[velocity[i]] = theta_i),
    x_{t+1} = step(x_t, 0) for t < T = round(duration / timestep)

(qpos_0, qvel_0) is the model's start (qpos0 and zero qvel, or ``keyframe``'s qpos and qvel), ``step`` one physics
step of the model as the ``mjx`` system makes it (`trajopt.systems.mjx.MJX`, ``substeps = 1``: every model check,
override and differentiation mode of that system applies, and its ``mjx_system`` is that system). The time
simulated is T * timestep, within half a time step of ``duration`` (``simulated_time``). It is the
one-step problem of the DiffMJX time-step benchmark (problems/mjx_cube_toss.toml): the gradient of the landing
point with respect to the throw passes through the contact, and how well a fixed-step simulator's autodiff gets it
depends on the time step (docs/contact_gradients.md).

    [system]
    name = "mjx_toss"
    model = "models/cube_toss.xml"   # as for the mjx system; the model needs an actuator (MJX systems do)
    keyframe = "toss"                # the start: the keyframe's qpos and qvel (default: qpos0, zero qvel)
    timestep = 1e-3                  # overrides <option timestep>; also iterations, ls_iterations, solref, gradient
    duration = 1.0                   # seconds simulated
    velocity = [1]                   # the qvel entries the decision sets (a free joint's: vx vy vz wx wy wz)
    position = 1                     # the qpos entry scored (a free joint's: x y z qw qx qy qz)

The memory of a backward pass is T Jacobians of n x (n + m) entries (forward-mode steps; n = nq + nv, m = nu):
T * n * (n + m) * 8 bytes must stay within `MAX_BACKWARD_BYTES`, refused at ``duration`` otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Callable, ClassVar, Mapping

import jax
import jax.numpy as jnp
from jax import Array

MAX_BACKWARD_BYTES = 1 << 32  # 4 GiB of per-step Jacobians in one backward pass
MJX_KEYS = ("model", "keyframe", "timestep", "iterations", "ls_iterations", "solref", "gradient")


@dataclass(frozen=True, eq=False)
class MJXToss:
    """One-step: theta [d] initial velocities (qvel[velocity]) -> qpos[position] after ``duration`` s. Module doc."""

    model: Any
    keyframe: str = ""
    timestep: float = 0.0
    iterations: int = 0
    ls_iterations: int = 0
    solref: tuple = ()
    gradient: str = "auto"
    duration: float = 1.0
    velocity: tuple = (0,)
    position: int = 0

    one_step: ClassVar[bool] = True
    state_size: ClassVar[int] = 0
    dt: ClassVar[float] = math.nan

    def __post_init__(self):
        from trajopt.systems.mjx import MJX, ModelError

        sim = MJX(model=self.model, substeps=1, keyframe=self.keyframe, timestep=self.timestep,
                  iterations=self.iterations, ls_iterations=self.ls_iterations, solref=tuple(self.solref),
                  gradient=self.gradient)
        for key in MJX_KEYS:  # the values in effect (the resolved model, the model's own timestep, ...)
            object.__setattr__(self, key, getattr(sim, key))
        d = self.duration
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not math.isfinite(d) or d <= 0:
            raise ModelError("duration", f"found {d!r}, allowed: a number of seconds > 0")
        nq, nv = int(sim.mj_model.nq), int(sim.mj_model.nv)
        vel = self.velocity
        if isinstance(vel, (int,)) and not isinstance(vel, bool):
            vel = (vel,)
        ok = isinstance(vel, (list, tuple)) and len(vel) > 0 and all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < nv for i in vel) and len(set(vel)) == len(vel)
        if not ok:
            raise ModelError("velocity", f"found {self.velocity!r}, allowed: a list of distinct qvel indices in "
                             f"0..{nv - 1} (the model's nv = {nv}; the decision sets these initial velocities)")
        pos = self.position
        if isinstance(pos, bool) or not isinstance(pos, int) or not 0 <= pos < nq:
            raise ModelError("position", f"found {pos!r}, allowed: a qpos index in 0..{nq - 1} (the model's nq = {nq})")
        steps = max(1, round(d / sim.timestep))
        n, m = nq + nv, int(sim.mj_model.nu)
        size = steps * n * (n + m) * 8
        if size > MAX_BACKWARD_BYTES:
            raise ModelError("duration", f"found {d:g} s at timestep {sim.timestep:g} = {steps:,} steps, whose backward "
                             f"pass keeps {steps:,} x {n} x {n + m} Jacobian entries = {size:.3g} bytes; allowed: at "
                             f"most {MAX_BACKWARD_BYTES:.3g} bytes ({MAX_BACKWARD_BYTES >> 30} GiB): a shorter duration "
                             "or a larger timestep")
        object.__setattr__(self, "duration", float(d))
        object.__setattr__(self, "velocity", tuple(int(i) for i in vel))
        object.__setattr__(self, "_sim", sim)
        object.__setattr__(self, "_steps", int(steps))

    @classmethod
    def from_table(cls, params: Mapping[str, Any], source: str) -> "MJXToss":
        """Build from a problem file's [system] table (without ``name``); ``model`` is read relative to ``source`` as
        the mjx system reads it. Raises SpecError naming ``source`` and ``system.<key>``."""
        from trajopt.systems.mjx import MJX, ModelError
        from trajopt.tomlio import SpecError

        allowed = [f.name for f in fields(cls)]
        for key in params:
            if key not in allowed:
                raise SpecError(source, f"system.{key}", f"unknown key for the mjx_toss system; allowed: {', '.join(allowed)}")
        sim = MJX.from_table({k: v for k, v in params.items() if k in MJX_KEYS}, source)  # resolves model, checks keys
        table = {k: v for k, v in params.items() if k not in MJX_KEYS}
        if isinstance(table.get("velocity"), list):
            table["velocity"] = tuple(table["velocity"])
        try:
            return cls(model=sim.model, **{k: params[k] for k in MJX_KEYS if k in params and k != "model"}, **table)
        except ModelError as e:
            raise SpecError(source, f"system.{e.key}", e.message) from None

    # ------------------------------------------------------------------ the one-step contract

    @property
    def mjx_system(self):
        """The `trajopt.systems.mjx.MJX` system (substeps 1) whose step the toss runs."""
        return self._sim

    def content_digest(self) -> str:
        """The compiled model's digest (`trajopt.systems.mjx.MJX.content_digest`): what a kept trace is keyed by
        besides the spec, which only names the model file."""
        return self._sim.content_digest()

    @property
    def steps(self) -> int:
        """T = round(duration / timestep) physics steps (at least 1)."""
        return self._steps

    @property
    def simulated_time(self) -> float:
        """T * timestep (s): the time actually simulated."""
        return self._steps * self.timestep

    @property
    def control_size(self) -> int:
        return len(self.velocity)

    @property
    def control_names(self) -> tuple[str, ...]:
        """The decided velocities' names (the mjx system's qvel labels, e.g. "cube vz")."""
        nq = int(self._sim.mj_model.nq)
        return tuple(self._sim.state_names[nq + i] for i in self.velocity)

    @property
    def model_source(self) -> dict:
        return self._sim.model_source

    def start(self, theta: Array) -> Array:
        """x_0 [nq + nv]: the model's start with qvel[velocity] = theta."""
        x0 = jnp.asarray(self._sim.default_x0(), dtype=jnp.result_type(float))
        nq = int(self._sim.mj_model.nq)
        return x0.at[nq + jnp.asarray(self.velocity)].set(theta.astype(x0.dtype))

    def objective_with(self, step: Callable[[Array, Array], Array]) -> Callable[[Array], Array]:
        """The one-step objective U [1, d] -> qpos_T[position] with this one-step map in place of the model's step
        (what `trajopt.oracles.cfd` uses to swap in its straight-through step)."""
        zeros = jnp.zeros((self._steps, int(self._sim.mj_model.nu)), jnp.result_type(float))

        def objective(U: Array) -> Array:
            x, _ = jax.lax.scan(lambda x, u: (step(x, u), None), self.start(U[0]), zeros)
            return x[self.position]

        return objective

    def cost(self, theta: Array) -> Array:
        """qpos_T[position] for the initial velocities theta [d] (module doc)."""
        return self.objective_with(self._sim.step)(theta[None])

