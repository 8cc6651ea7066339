"""The README's "From Python" walk-through: a small system defined in Python, two variants, one figure.
No TOML and no files: `python examples/python_api.py` prints the medians; pass a path to also save the figure."""

import sys

import jax
import jax.numpy as jnp

import trajopt


def step(x, u):  # a block pushed towards a stiff wall at position 1 (penalty contact, semi-implicit Euler)
    vel = x[1] + 0.05 * (u[0] - 300.0 * jnp.maximum(x[0] - 1.0, 0.0))
    return jnp.array([x[0] + 0.05 * vel, vel])


cost = trajopt.QuadraticCost(Q=jnp.diag(jnp.array([1.0, 0.1])), R=0.01 * jnp.eye(1),
                             Qf=jnp.diag(jnp.array([100.0, 10.0])), goal=jnp.array([0.95, 0.0]))
problem = trajopt.trajectory_problem("block", step, jnp.zeros(2), cost, U0=jnp.zeros((60, 1)))
variants = {"fobg": trajopt.GradientMethod(trajopt.FoBG(), trajopt.SGD(step=1e-2)),
            "aobg_adam": trajopt.GradientMethod(trajopt.AoBG(), trajopt.Adam(step=0.05))}
results = trajopt.compare(problem, variants, key=jax.random.PRNGKey(0), iterations=300, seeds=range(4))
for name, r in results.items():
    print(f"{name}: median final cost {float(jnp.median(r.final_cost)):.3f} from {float(r.cost[0, 0]):.3f}")
fig = trajopt.convergence_figure(results, x="rollouts", title="A block against a wall (k = 300)")

if __name__ == "__main__" and len(sys.argv) > 1:
    fig.savefig(sys.argv[1])
