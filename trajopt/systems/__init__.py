"""Physical systems, one module each, registered by the name used in a problem file's ``[system] name``.

| name            | module             | what it is |
|-----------------|--------------------|------------|
| pushing         | pushing.py         | two blocks, penalty contact (the paper's pushing / "curling" example) |
| chain           | chain.py           | N blocks pushed in a row through penalty / softplus / bilateral contacts (stiff chain) |
| friction        | friction.py        | two stacked blocks, saturated-linear friction, contact lost at the edge (discontinuous) |
| spring_wall     | spring_wall.py     | one mass between two penalty walls with contact damping (discontinuous) |
| pendulum        | pendulum.py        | the reference torque pendulum, optional joint-limit walls (three wall laws) |
| pendulum_block  | pendulum_block.py  | a pendulum pushing a free block through penalty contact |
| double_pendulum | double_pendulum.py | textbook double pendulum with two joint torques (smooth, chaotic) |
| ball_with_wall  | ball_with_wall.py  | one-step: launch angle over a wall, cost -distance^2 (discontinuous) |
| pivot           | pivot.py           | one-step: -sin^2(theta) inside |theta| <= pi/4, 0 beyond (a cliff) |
| heaviside       | heaviside.py       | one-step: d-dimensional step, 1 if all theta_i >= 0 (FoBG = 0) |
| soft_heaviside  | soft_heaviside.py  | one-step: -1 / linear ramp of width nu / +1 (relaxed Coulomb friction) |
| mjx             | mjx.py             | any MJCF model stepped by MuJoCo MJX (the optional [mjx] extra; mujoco imported lazily) |
| mjx_toss        | mjx_toss.py        | one-step: an MJCF body thrown with the decision as its initial velocity, scored by one position after a fixed time (MJX) |
| torque_pendulum | torque_pendulum.py | trajax's pendulum: continuous dynamics, RK4 (or Euler), u held over the step |
| acrobot         | acrobot.py         | trajax's Sutton–Barto acrobot, torque on joint 2, Euler (or RK4) |
| tennis          | tennis.py          | breakout-like: a kinematic paddle bounces a ball, paddle-frame collision with time of impact (discontinuous) |
| cartpole        | cartpole.py        | a pole on a cart pushed along a rail (swing-up), optional force limit, damping, RK4 (smooth) |

Time-stepped systems provide ``state_size``, ``control_size``, ``dt``, ``step(x, u)`` and ``stable_dt()``
(see `base.System`), and optionally ``state_names`` / ``control_names`` (the figures' axis labels; read them
with `state_names(system)` / `control_names(system)`, which default to "x0".. / "u0.."). One-step systems set
``one_step = True``, ``state_size = 0``, ``dt = nan``, ``control_size`` = d, and provide
``cost(theta: [d]) -> scalar`` instead of ``step``: the problem is F(theta) = E c(theta + w), a decision of
shape [1, d].
"""

from trajopt.registry import Registry, system_contract
from trajopt.systems.acrobot import Acrobot
from trajopt.systems.cartpole import CartPole
from trajopt.systems.ball_with_wall import BallWithWall
from trajopt.systems.base import System, control_names, parameter_types, state_names
from trajopt.systems.chain import Chain
from trajopt.systems.double_pendulum import DoublePendulum
from trajopt.systems.friction import Friction
from trajopt.systems.heaviside import Heaviside
from trajopt.systems.mjx import MJX
from trajopt.systems.mjx_toss import MJXToss
from trajopt.systems.pendulum import Pendulum
from trajopt.systems.pendulum_block import PendulumBlock
from trajopt.systems.pivot import Pivot
from trajopt.systems.pushing import Pushing
from trajopt.systems.soft_heaviside import SoftHeaviside
from trajopt.systems.spring_wall import SpringWall
from trajopt.systems.tennis import Tennis
from trajopt.systems.torque_pendulum import TorquePendulum

SYSTEMS: Registry[type] = Registry("system", check=system_contract)
SYSTEMS.register("pushing", Pushing)
SYSTEMS.register("chain", Chain)
SYSTEMS.register("friction", Friction)
SYSTEMS.register("spring_wall", SpringWall)
SYSTEMS.register("pendulum", Pendulum)
SYSTEMS.register("pendulum_block", PendulumBlock)
SYSTEMS.register("double_pendulum", DoublePendulum)
SYSTEMS.register("ball_with_wall", BallWithWall)
SYSTEMS.register("pivot", Pivot)
SYSTEMS.register("heaviside", Heaviside)
SYSTEMS.register("soft_heaviside", SoftHeaviside)
SYSTEMS.register("mjx", MJX)
SYSTEMS.register("mjx_toss", MJXToss)
SYSTEMS.register("torque_pendulum", TorquePendulum)
SYSTEMS.register("acrobot", Acrobot)
SYSTEMS.register("tennis", Tennis)
SYSTEMS.register("cartpole", CartPole)

__all__ = [
    "SYSTEMS",
    "System",
    "parameter_types",
    "state_names",
    "control_names",
    "Pushing",
    "Chain",
    "Friction",
    "SpringWall",
    "Pendulum",
    "PendulumBlock",
    "DoublePendulum",
    "BallWithWall",
    "Pivot",
    "Heaviside",
    "SoftHeaviside",
    "TorquePendulum",
    "Acrobot",
    "CartPole",
]
