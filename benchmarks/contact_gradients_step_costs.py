"""The backward-pass cost ρ_b of MJX problems, measured by `trajopt.compute.measure_step_costs`, for the equal-compute
runs of docs/contact_gradients.md (which fix it with TRAJOPT_STEP_COSTS), and, with ``--cfd``, the backward pass of
the `cfd` oracle beside it (what its equal-compute rows undercharge).

    python benchmarks/contact_gradients_step_costs.py [--cfd] problems/mjx_push_stiff.toml problems/mjx_cube_toss.toml ...

`measure_step_costs` at its defaults (16 rollouts of 64 steps from N(0, 0.1²) states and controls, each operation
in a compiled fori_loop, the fastest of 7 interleaved runs, the median ratio of 3 rounds), with one repetition per
run (an MJX program takes far longer than its 5 ms target). An MJX step in forward gradient mode (iterations > 1)
refuses ``jax.jacfwd``, so its linearisation is not measured (ρ_l = 0, no method linearises it). A one-step system
(the cube toss: one "step" is the whole simulation) is timed on 2 rollouts of that one step. Prints one line per
file: ρ_b and the measurement's source.

``--cfd`` times instead, interleaved in one sitting (a ratio between two separate measurements moved by a factor
of 2 with the host's load), three programs over the same batch: the forward rollouts, the same with exact's backward
pass, and the same with `cfd`'s (`trajopt.systems.mjx_contact.straight_through` of the system's step and `cfd_step`
at the oracle's default margin, acceleration and power: the true step forward, the contacts-from-distance model's
VJP backward). Each round takes the fastest of 7 runs of each, rounds the median: ρ_b = (t_exact - t_fwd) / t_fwd,
ρ_cfd = (t_cfd - t_fwd) / t_fwd. `cfd` reports itself as one backward pass, charged ρ_b, so its forward-step
equivalents per estimate (1 + ρ_b per step) are off by (ρ_cfd - ρ_b) / (1 + ρ_b). A time-stepped mjx problem only.
"""

import sys
import time

import trajopt
from trajopt.compute import measure_step_costs, system_step


def step_costs(path: str):
    loaded = trajopt.load(path)
    step, n, m = system_step(loaded.spec.system)
    one_step = getattr(loaded.spec.system, "one_step", False)
    t0 = time.perf_counter()
    costs = measure_step_costs(step, n, m, batch=2 if one_step else 16, length=1 if one_step else 64, max_reps=1)
    return costs, time.perf_counter() - t0


def cfd_costs(path: str, batch: int = 16, length: int = 64, repeats: int = 7, rounds: int = 5):
    """(ρ_b, ρ_cfd, their rounds, seconds) from one interleaved sitting (the module docstring)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from trajopt.oracles.cfd import CFD
    from trajopt.systems.mjx_contact import cfd_step, straight_through

    system = trajopt.load(path).spec.system
    if getattr(system, "one_step", False):
        raise SystemExit(f"{path}: --cfd times a time-stepped mjx problem's step; this one's step is its whole "
                         "simulation")
    o = CFD()
    exact = system.step
    through = straight_through(exact, cfd_step(system, o.margin, o.acceleration, o.power))
    n, m = int(system.state_size), int(system.control_size)
    kx, ku = jax.random.split(jax.random.PRNGKey(0))
    X0 = 0.1 * jax.random.normal(kx, (batch, n))
    U = 0.1 * jax.random.normal(ku, (batch, length, m))

    def total(step):
        def final(x0, us):
            return jnp.sum(jax.lax.scan(lambda x, u: (step(x, u), None), x0, us)[0])
        return final

    def with_backward(step):
        def run(x0):
            values, grads = jax.vmap(jax.value_and_grad(total(step), argnums=1))(x0, U)
            return jnp.sum(values) + jnp.sum(grads)
        return jax.jit(run)

    t0 = time.perf_counter()
    programs = [jax.jit(lambda x0: jnp.sum(jax.vmap(total(exact))(x0, U))), with_backward(exact), with_backward(through)]
    for p in programs:
        jax.block_until_ready(p(X0))  # compile
    ratios = []
    for _ in range(rounds):
        times = [[] for _ in programs]
        for _ in range(repeats):
            for i, p in enumerate(programs):
                t = time.perf_counter()
                jax.block_until_ready(p(X0))
                times[i].append(time.perf_counter() - t)
        t_f, t_exact, t_cfd = (min(t) for t in times)
        ratios.append(((t_exact - t_f) / t_f, (t_cfd - t_f) / t_f))
    rho_b, rho_cfd = np.median(np.asarray(ratios), axis=0)
    return float(rho_b), float(rho_cfd), ratios, time.perf_counter() - t0


if __name__ == "__main__":
    args = sys.argv[1:]
    with_cfd = "--cfd" in args
    for path in [a for a in args if a != "--cfd"]:
        if with_cfd:
            rho_b, rho_cfd, ratios, seconds = cfd_costs(path)
            print(f"{path}: rho_b = {rho_b:.1f}, cfd's rho_cfd = {rho_cfd:.1f} (interleaved, median of "
                  f"{len(ratios)} rounds: " + ", ".join(f"{b:.1f}/{c:.1f}" for b, c in ratios)
                  + f"; {seconds:.0f} s): cfd's estimate costs {(1 + rho_cfd) / (1 + rho_b):.2f} x exact's",
                  flush=True)
            continue
        costs, seconds = step_costs(path)
        print(f"{path}: rho_b = {costs.backward:.1f}, rho_l = {costs.linearization:g} ({costs.source}; "
              f"{seconds:.0f} s)", flush=True)
