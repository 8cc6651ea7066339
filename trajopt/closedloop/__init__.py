"""Closed loop: receding-horizon MPC for every method, on a plant that need not be the model.

* `mpc` (runner.py): run methods as controllers over seeds, each one compiled episode, with plan times measured.
* `MPCSettings`, `MPCResult`, `warm_start` (episode.py): one replan's rule, the episode program and what it returns.
* `Plant`, `Disturbance`, `Draw`, `with_overrides` (plant.py): the simulated plant, measurement noise, pushes and
  per-seed parameter draws.
* `Success` (success.py): the goal-tolerance predicate of an episode.
"""

from trajopt.closedloop.episode import FILL_RULES, MPCResult, MPCSettings, warm_start
from trajopt.closedloop.plant import Disturbance, Draw, Plant, with_overrides
from trajopt.closedloop.runner import mpc
from trajopt.closedloop.success import Success

__all__ = ["mpc", "MPCSettings", "MPCResult", "warm_start", "FILL_RULES", "Plant", "Disturbance", "Draw", "with_overrides",
           "Success"]
