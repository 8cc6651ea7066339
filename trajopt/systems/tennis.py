"""Tennis (breakout-like): a kinematic paddle bounces a ball towards a target (Suh et al. 2022, Fig. 8).

Authors' code ``examples/breakout/breakout_dynamics_toi.py``. State
``x = [ball x, ball y, ball v_x, ball v_y, paddle x, paddle y, paddle psi]`` (n = 7); control
``u = [paddle xdot, ydot, psidot]`` (m = 3): the paddle is kinematic, its pose integrates u. The ball flies
without gravity. One step of length h = ``dt``:

1. Free motion: ball_free = b + h v, paddle' = P + h u (pose (p_x, p_y, psi)).
2. Paddle frame: with R = R(psi') the paddle's rotation, q = R^T (b - p') and q_free = R^T (ball_free - p')
   are the ball's pre- and post-step positions in the moved paddle's frame, v_P = R^T v its velocity.
3. Collision test (a real branch, the geometric discontinuity the paper is about):
   hit = |q_free,x| <= pad_width + r  and  |q_free,y| <= pad_height + r   (r = ``ball_radius``; the code's test,
   with pad_width and pad_height the half-extents it uses there).
4. Velocity: every step both paddle-frame components are multiplied by ``damping`` (0.999), except that on a
   hit the normal component is reflected instead: v_P,y <- -restitution * v_P,y. Back to the world: v' = R v_P'.
5. Time of impact: the ball reaches the face on the side it came from, y_f = sign(q_y) (pad_height + r), at

       toi = h (q_y - y_f) / (q_y - q_free,y)        [the code's h (1 - (pad_height + r - y+) / (y - y+)) for y_f > 0]

   clipped to [0, h] (OUR choice: a ball that enters through a side face, or starts inside, is reflected at
   once rather than moved by a negative or over-long time). The ball then moves toi with its old velocity
   and h - toi with the new one: b' = b + toi v + (h - toi) v'. Without a hit toi = 0 and b' = b + h v'.
6. On a hit the paddle is frozen for the step (P' = P), as in the code.

Where this differs from the code: the code tests the ball against the *old* paddle position with the *new*
angle; here the moved pose (position and angle) is used throughout, so the test, the time of impact and the
reflection see one consistent paddle. Restitution defaults to 1.0 (the authors' code; one version of it
used 0.8). The dynamics are smooth away from the collision boundary and jump across it: autodiff through a
rollout sees only the branch taken (``jnp.where``), which is why the FoBG misses balls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax.numpy as jnp
from jax import Array

from trajopt import checks


@dataclass(frozen=True)
class Tennis:
    """dt: step h; pad_width, pad_height: the paddle's half-extents in the collision test; ball_radius: r;
    restitution: normal velocity kept on impact; damping: per-step velocity factor."""

    dt: float = 0.05
    pad_width: float = 0.8
    pad_height: float = 0.05
    ball_radius: float = 0.15
    restitution: float = 1.0
    damping: float = 0.999
    state_size = 7
    control_size = 3
    state_names = ("ball x", "ball y", "ball vx", "ball vy", "paddle x", "paddle y", "paddle psi")
    control_names = ("paddle vx", "paddle vy", "paddle psi rate")

    def __post_init__(self):
        checks.positive("dt", self.dt)
        checks.positive("pad_width", self.pad_width)
        checks.positive("pad_height", self.pad_height)
        checks.non_negative("ball_radius", self.ball_radius)
        checks.in_interval("restitution", self.restitution, 0.0, 1.0)
        checks.fraction("damping", self.damping)

    def stable_dt(self) -> float:
        """inf: ballistic flight and kinematic paddle, no stiffness."""
        return math.inf

    @staticmethod
    def rotation(psi: Array) -> Array:
        """R(psi): [2, 2], paddle frame -> world."""
        c, s = jnp.cos(psi), jnp.sin(psi)
        return jnp.array([[c, -s], [s, c]])

    def in_collision(self, q: Array) -> Array:
        """The code's test on a paddle-frame ball position q: [2] -> bool."""
        return (jnp.abs(q[0]) <= self.pad_width + self.ball_radius) & (jnp.abs(q[1]) <= self.pad_height + self.ball_radius)

    def time_of_impact(self, q_y: Array, q_next_y: Array) -> Array:
        """toi in [0, h]: when the ball (paddle-frame heights q_y before, q_next_y after a free step) reaches
        the face on the side it came from."""
        face = jnp.where(q_y >= 0, 1.0, -1.0) * (self.pad_height + self.ball_radius)
        dy = q_y - q_next_y
        safe = jnp.where(dy != 0, dy, 1.0)
        frac = jnp.where(dy != 0, (q_y - face) / safe, 0.0)
        return self.dt * jnp.clip(frac, 0.0, 1.0)

    def step(self, x: Array, u: Array) -> Array:
        """One step: x [7], u [3] -> x' [7] (module docstring)."""
        h = self.dt
        ball, vel, pad = x[0:2], x[2:4], x[4:7]
        pad_next = pad + h * u
        R = self.rotation(pad_next[2])
        q = R.T @ (ball - pad_next[0:2])
        q_free = R.T @ (ball + h * vel - pad_next[0:2])
        v_P = R.T @ vel
        hit = self.in_collision(q_free)
        v_P_next = jnp.stack([self.damping * v_P[0], jnp.where(hit, -self.restitution * v_P[1], self.damping * v_P[1])])
        vel_next = R @ v_P_next
        toi = jnp.where(hit, self.time_of_impact(q[1], q_free[1]), 0.0)
        ball_next = ball + toi * vel + (h - toi) * vel_next
        pad_out = jnp.where(hit, pad, pad_next)
        return jnp.concatenate([ball_next, vel_next, pad_out])
