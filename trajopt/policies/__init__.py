"""Closed-loop policy optimisation: feedback policies, initial-state distributions, policy problems and the
policy-gradient oracles of Suh et al. 2022 (§2, Eq. 1; the AoBG of §4), and the paper's tennis experiment (Fig. 8).

* `POLICIES` (``linear``, ``mlp``): policies u = pi(theta, x) (`trajopt.policies.policies`).
* `INITIAL_STATES` (``point``, ``uniform``, ``gaussian``, ``tennis``): x_1 ~ rho (`trajopt.policies.initial`).
* `PolicyProblem`: F(theta) = E_{x_1 ~ rho} E_w V_1(x_1, w, theta) with the decision stored as [1, d]
  (`trajopt.policies.problem`).
* `POLICY_ORACLES` (``exact``, ``fobg``, ``zobg``, ``aobg``, ``ivw``, ``stepwise``): the open-loop oracle
  contract for policy problems (`trajopt.policies.oracles`); `GradientMethod` and `solve` run them.
* `static_gain_problem` and its closed-form `expected_cost` (`trajopt.policies.linear_quadratic`).
* `tennis_problem`, `success_rate`, `rollouts_figure` (`trajopt.policies.tennis`).

Every registry takes ``package.module:Class`` for a user's own entry.
"""

from trajopt.policies.initial import Gaussian, Point, TennisInitial, Uniform
from trajopt.policies.linear_quadratic import static_gain_problem
from trajopt.policies.oracles import PolicyAoBG, PolicyExact, PolicyFoBG, PolicyIVW, PolicyStepwise, PolicyZoBG
from trajopt.policies.policies import MLP, Linear
from trajopt.policies.problem import PolicyProblem, held_out_states, policy_problem
from trajopt.registry import Registry, oracle_contract, policy_contract

POLICIES: Registry[type] = Registry("policy", check=policy_contract)
for _cls in (Linear, MLP):
    POLICIES.register(_cls.name, _cls)

INITIAL_STATES: Registry[type] = Registry("initial state distribution")
for _cls in (Point, Uniform, Gaussian, TennisInitial):
    INITIAL_STATES.register(_cls.name, _cls)

POLICY_ORACLES: Registry[type] = Registry("policy oracle", check=oracle_contract)
for _cls in (PolicyExact, PolicyFoBG, PolicyZoBG, PolicyAoBG, PolicyIVW, PolicyStepwise):
    POLICY_ORACLES.register(_cls.name, _cls)

__all__ = [
    "POLICIES", "INITIAL_STATES", "POLICY_ORACLES", "Linear", "MLP", "Point", "Uniform", "Gaussian", "TennisInitial",
    "PolicyProblem", "policy_problem", "held_out_states", "static_gain_problem", "PolicyExact", "PolicyFoBG",
    "PolicyZoBG", "PolicyAoBG", "PolicyIVW", "PolicyStepwise",
]
