"""trajopt: trajectory optimisation through contact with pluggable gradient oracles and methods.

The public face (names load on first use, so ``import trajopt`` and the CLI start fast)::

    import jax, trajopt
    problem = trajopt.trajectory_problem("cart", step, x0, trajopt.QuadraticCost(Q, R, Qf, goal), U0)
    results = trajopt.compare(problem, {"fobg": trajopt.GradientMethod(trajopt.FoBG()),
                                        "aobg_adam": trajopt.GradientMethod(trajopt.AoBG(), trajopt.Adam(0.1))},
                              key=jax.random.PRNGKey(0), iterations=200, seeds=range(5))
    fig = trajopt.convergence_figure(results, x="rollouts")

Problems: `Problem`, `QuadraticCost`, `trajectory_problem`, `one_step_problem`. Systems: `SYSTEMS` and the
system classes (`Pushing`, `Chain`, ...). Oracles: `ORACLES`, `Exact`, `FoBG`, `ZoBG`, `AoBG`, `IVW`, `DDCG`,
`Stepwise`, `FixedAlpha`, `FD`. Optimisers: `OPTIMIZERS`, `SGD`, `Adam`. Methods: `METHODS`, `Method`,
`GradientMethod` (and the registered baselines), `MultiStart` (K starts of one, the best kept). Running: `solve`, `compare`, `Result`, `SolveError` (a
variant's own code failed; bad arguments are a ValueError or TypeError before anything compiles). Closed loop: `mpc` (methods as receding-horizon controllers on a plant that need not be
the model), `MPCResult`, `Plant`, `Disturbance`, `Success`. Files: `load` (a
TOML problem file to a ready problem and its variants), `SpecError`. Figures: `convergence_figure`,
`variance_figure`, `trajectory_figure` (matplotlib `Figure` objects; nothing is written or shown).
`enable_compilation_cache` keeps compiled programs on disk between sessions (off unless asked for).

Importing trajopt turns on float64 and a CPU compiler setting (see `trajopt._setup`); the library writes no files
(the compilation cache only when `enable_compilation_cache` or ``TRAJOPT_CACHE=1`` asks for it; the CLI does).
"""

from __future__ import annotations

import importlib

from trajopt import _setup

_setup.configure()

__version__ = "0.1.0"

_EXPORTS = {
    # problems
    "Problem": "trajopt.problem", "QuadraticCost": "trajopt.problem", "trajectory_problem": "trajopt.problem",
    "one_step_problem": "trajopt.problem",
    # systems
    "SYSTEMS": "trajopt.systems", "Pushing": "trajopt.systems", "Chain": "trajopt.systems",
    "Friction": "trajopt.systems", "SpringWall": "trajopt.systems", "Pendulum": "trajopt.systems",
    "PendulumBlock": "trajopt.systems", "DoublePendulum": "trajopt.systems", "BallWithWall": "trajopt.systems",
    "Pivot": "trajopt.systems", "Heaviside": "trajopt.systems", "SoftHeaviside": "trajopt.systems",
    # oracles
    "ORACLES": "trajopt.oracles", "Oracle": "trajopt.oracles", "OracleInfo": "trajopt.oracles",
    "Exact": "trajopt.oracles", "FoBG": "trajopt.oracles", "ZoBG": "trajopt.oracles", "AoBG": "trajopt.oracles",
    "IVW": "trajopt.oracles", "DDCG": "trajopt.oracles", "Stepwise": "trajopt.oracles",
    "FixedAlpha": "trajopt.oracles", "FD": "trajopt.oracles",
    # optimisers
    "OPTIMIZERS": "trajopt.optim", "SGD": "trajopt.optim", "Adam": "trajopt.optim",
    # methods
    "METHODS": "trajopt.methods", "Method": "trajopt.methods", "GradientMethod": "trajopt.methods",
    "MultiStart": "trajopt.methods",
    # running
    "solve": "trajopt.solver", "Result": "trajopt.result", "compare": "trajopt.api", "load": "trajopt.api",
    # closed loop
    "mpc": "trajopt.closedloop", "MPCResult": "trajopt.closedloop", "Plant": "trajopt.closedloop",
    "Disturbance": "trajopt.closedloop", "Success": "trajopt.closedloop",
    "Loaded": "trajopt.api", "SpecError": "trajopt.tomlio", "SolveError": "trajopt.solve_checks",
    "enable_compilation_cache": "trajopt._setup",
    # figures
    "convergence_figure": "trajopt.plots", "variance_figure": "trajopt.plots", "trajectory_figure": "trajopt.plots",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trajopt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
