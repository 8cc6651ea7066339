"""The paper's tennis experiment (Suh et al. 2022, Fig. 8 columns 2-4) as a library.

`tennis_problem` builds the closed-loop problem with the paper's settings (from the authors' code):

* system `trajopt.systems.tennis.Tennis` (dt 0.05, restitution 1, damping 0.999), H = 200;
* linear policy u = K x without bias, K: [3, 7], d = 21, theta0 = 0;
* cost Q = 0, R = 0.001 I_3, terminal Q_d = 100 diag(1, 1, 0.1, 0.1, 0, 0, 0), target x_g = (0, 2.5, 0, ...);
* x_1 ~ `trajopt.policies.initial.TennisInitial` (fresh states for every estimate: ``resample = true``);
* sigma = 0.01 on the actions, N = 1000 samples per estimate, 200 iterations of gradient descent with the
  step 1e-6 * k^(-0.1) at iteration k = 1, 2, ... (`PowerDecaySGD`);
* AoBG with gamma = 1000, L = 1000, delta = 0.95 (the code's convention).

`success_rate` (the share of balls that end within a radius of the target, from held-aside initial
states) and `rollouts_figure` (closed-loop ball paths from many initial states per variant, start in black,
end in colour, like the paper's columns 3-4) read a run's result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import Array

from trajopt import checks
from trajopt.policies.initial import TennisInitial
from trajopt.policies.oracles import PolicyAoBG, PolicyFoBG, PolicyZoBG
from trajopt.policies.policies import Linear
from trajopt.policies.problem import PolicyProblem, trajectories
from trajopt.problem import QuadraticCost
from trajopt.systems.tennis import Tennis

TARGET = (0.0, 2.5)


@dataclass(frozen=True)
class PowerDecaySGD:
    """Gradient descent with the step step_k = step * k^(-decay), k = 1, 2, ... (the tennis code's schedule,
    1e-6 k^-0.1). ``build()`` gives the optax transformation, so `GradientMethod` takes it as an optimiser."""

    step: float = 1e-6
    decay: float = 0.1
    name: ClassVar[str] = "sgd_power"

    def __post_init__(self):
        checks.positive("step", self.step)
        checks.non_negative("decay", self.decay)

    def schedule(self, count: Array) -> Array:
        """step_k for optax's 0-based update count (count = k - 1)."""
        return self.step * (count + 1.0) ** (-self.decay)

    def build(self) -> optax.GradientTransformation:
        return optax.sgd(self.schedule)


PAPER = dict(horizon=200, sigma=0.01, samples=1000, iterations=200, step=1e-6, decay=0.1, gamma=1000.0, L=1000.0,
             delta=0.95, n_eval=100, n_init=0, resample=True, restitution=1.0)


def tennis_problem(**overrides):
    """The tennis problem, its oracles and optimiser with the paper's settings (module docstring).

    Keyword overrides (any of ``PAPER``'s keys): horizon, sigma, samples, iterations, step, decay, gamma, L,
    delta, n_eval, n_init, resample, restitution.

    Returns:
        (problem, oracles, settings): the `PolicyProblem`; {"fobg", "zobg", "aobg": oracle config}; and
        {"optimizer": PowerDecaySGD, "iterations": int}.
    """
    unknown = set(overrides) - set(PAPER)
    if unknown:
        raise checks.FieldError(sorted(unknown)[0], overrides[sorted(unknown)[0]], "one of " + ", ".join(PAPER))
    cfg = {**PAPER, **overrides}
    system = Tennis(restitution=cfg["restitution"])
    goal = jnp.array([TARGET[0], TARGET[1], 0.0, 0.0, 0.0, 0.0, 0.0])
    cost = QuadraticCost(Q=jnp.zeros((7, 7)), R=0.001 * jnp.eye(3),
                         Qf=100.0 * jnp.diag(jnp.array([1.0, 1.0, 0.1, 0.1, 0.0, 0.0, 0.0])), goal=goal)
    problem = PolicyProblem(name="tennis", system=system, policy=Linear(), task_cost=cost, initial=TennisInitial(),
                            horizon=cfg["horizon"], sigma=cfg["sigma"], n_init=cfg["n_init"], resample=cfg["resample"],
                            n_eval=cfg["n_eval"])
    n = cfg["samples"]
    oracles = {
        "fobg": PolicyFoBG(samples=n),
        "zobg": PolicyZoBG(samples=n),
        "aobg": PolicyAoBG(samples=n, gamma=cfg["gamma"], L=cfg["L"], delta=cfg["delta"]),
    }
    settings = {"optimizer": PowerDecaySGD(step=cfg["step"], decay=cfg["decay"]), "iterations": cfg["iterations"]}
    return problem, oracles, settings


def final_distances(X: Array, goal: Array, positions: Sequence[int] = (0, 1)) -> np.ndarray:
    """Distance of each trajectory's final position to the goal's: X [B, H+1, n] -> [B]."""
    idx = np.asarray(positions)
    X = np.asarray(X)
    return np.linalg.norm(X[:, -1, idx] - np.asarray(goal)[idx], axis=-1)


def trajectory_success(X: Array, goal: Array, radius: float, positions: Sequence[int] = (0, 1)) -> float:
    """Share of trajectories X [B, H+1, n] whose final position (coordinates ``positions``) lies within
    ``radius`` of the goal's (inclusive)."""
    return float(np.mean(final_distances(X, goal, positions) <= radius))


def success_rate(problem: PolicyProblem, theta: Array, init_states: Array, radius: float,
                 positions: Sequence[int] = (0, 1)) -> float:
    """Share of noise-free closed-loop rollouts from ``init_states`` [B, n] under theta ([d] or [1, d]) whose
    final ball position is within ``radius`` of the target (``problem.task_cost.goal`` at ``positions``).

    Use held-aside states (`trajopt.policies.problem.held_out_states`: ``PRNGKey(test_seed)``), not the
    training or evaluation ones."""
    theta = jnp.asarray(theta).reshape(-1)
    X = _trajectories(problem, theta, jnp.asarray(init_states))
    return trajectory_success(X, problem.task_cost.goal, radius, positions)


# one compiled rollout per problem (hashed by identity) and shape, shared by every seed and the figure
_trajectories = jax.jit(trajectories, static_argnums=0)


def rollouts_figure(problem: PolicyProblem, thetas: Mapping[str, Array], init_states: Array, *,
                    radius: Optional[float] = None, positions: Sequence[int] = (0, 1), panel_size: float = 3.2,
                    notes: Optional[Mapping[str, str]] = None):
    """Closed-loop paths from many initial states in the plane of two state coordinates, one panel per variant
    (the paper's Fig. 8, columns 3-4).

    Each path is drawn thin and grey, its start as a black dot and its end as a coloured dot (green within
    ``radius`` of the target, red otherwise; all blue without a radius); the target is a star. The axes are the
    state coordinates ``positions`` (x, y), labelled with the system's own names (`trajopt.systems.state_names`:
    "ball x" for tennis, "theta" for a pendulum). A panel's title is the variant's name, then ``notes[NAME]``
    if given (e.g. which seed the policy is and the run table's success rate), then what the panel draws: with a
    radius, "shown: k/B within r (share)", the share of THESE B starts (``init_states``).
    Returns a ``matplotlib.figure.Figure`` (no pyplot state, no backend switch).
    """
    from matplotlib.figure import Figure

    from trajopt.plots import set_title
    from trajopt.systems import state_names

    names = list(thetas)
    notes = dict(notes or {})
    lines = 1 + max((notes[n].count("\n") + 1 for n in names if notes.get(n)), default=0)
    fig = Figure(figsize=(panel_size * max(1, len(names)), panel_size * 1.1 + 0.15 * (lines - 1)),
                 constrained_layout=True)
    axes = fig.subplots(1, max(1, len(names)), squeeze=False)[0]
    goal = np.asarray(problem.task_cost.goal)
    i, j = positions
    labels = state_names(problem.system)
    for ax, name in zip(axes, names):
        X = np.asarray(_trajectories(problem, jnp.asarray(thetas[name]).reshape(-1), jnp.asarray(init_states)))
        for path in X:
            ax.plot(path[:, i], path[:, j], color="0.6", lw=0.5, alpha=0.6)
        ax.scatter(X[:, 0, i], X[:, 0, j], s=6, color="black", label="start", zorder=3)
        if radius is None:
            ax.scatter(X[:, -1, i], X[:, -1, j], s=8, color="tab:blue", label="end", zorder=3)
            shown = f"{len(X)} starts shown"
        else:
            ok = final_distances(X, goal, positions) <= radius
            ax.scatter(X[ok, -1, i], X[ok, -1, j], s=8, color="tab:green", label=f"end within {radius:g}", zorder=3)
            ax.scatter(X[~ok, -1, i], X[~ok, -1, j], s=8, color="tab:red", label=f"end beyond {radius:g}", zorder=3)
            shown = f"shown: {int(ok.sum())}/{len(X)} within {radius:g} ({ok.mean():.1%})"
        title = "\n".join([name, *([notes[name]] if notes.get(name) else []), shown])
        ax.plot(goal[i], goal[j], marker="*", ms=12, color="gold", mec="black", zorder=4)
        set_title(ax, title, 8)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xlabel(labels[i])
    axes[0].set_ylabel(labels[j])
    axes[0].legend(fontsize=7, loc="lower left")
    return fig
