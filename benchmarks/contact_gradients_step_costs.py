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

``--cfd`` measures `cfd`'s own backward ratio beside ρ_b, as the command line does for a run with a `cfd` variant:
`measure_step_costs` with the oracle's declared backward map (``CFD().backward_step(system)``: the true step
forward, the contacts-from-distance model's VJP backward, at the oracle's default margin, acceleration and power)
as one more program timed in the same interleaved rounds (a ratio between two separate measurements moved by a
factor of 2 with the host's load), 5 rounds of the fastest of 7: ρ_b = (t_exact - t_fwd) / t_fwd, ρ_cfd = (t_cfd -
t_fwd) / t_fwd. A `cfd` estimate (one rollout, one backward pass per step) costs (1 + ρ_cfd) / (1 + ρ_b) x exact's,
and is charged ρ_cfd per backward pass (`trajopt.compute.StepCosts.oracles`). A one-step problem (the cube toss) is
timed on 2 rollouts of its one step, as above.
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


def cfd_costs(path: str, rounds: int = 5):
    """(StepCosts with ρ_b and cfd's ρ in ``oracles``, seconds) from one interleaved sitting (the module docstring)."""
    from trajopt.compute import declared_backward_steps
    from trajopt.oracles.cfd import CFD

    system = trajopt.load(path).spec.system
    step, n, m = system_step(system)
    one_step = getattr(system, "one_step", False)
    own = declared_backward_steps(system, [CFD()])
    if not own:
        raise SystemExit(f"{path}: cfd declares no backward map on this system (not an MJX system)")
    t0 = time.perf_counter()
    costs = measure_step_costs(step, n, m, batch=2 if one_step else 16, length=1 if one_step else 64, max_reps=1,
                               rounds=rounds, backward_steps=own)
    return costs, time.perf_counter() - t0


if __name__ == "__main__":
    args = sys.argv[1:]
    with_cfd = "--cfd" in args
    for path in [a for a in args if a != "--cfd"]:
        if with_cfd:
            costs, seconds = cfd_costs(path)
            rho_b, rho_cfd = costs.backward, costs.backward_of("cfd")
            print(f"{path}: rho_b = {rho_b:.1f}, cfd's rho_cfd = {rho_cfd:.1f} (rho_cfd / rho_b = "
                  f"{rho_cfd / rho_b:.3f}; {costs.source}; {seconds:.0f} s): cfd's estimate costs "
                  f"{(1 + rho_cfd) / (1 + rho_b):.2f} x exact's", flush=True)
            continue
        costs, seconds = step_costs(path)
        print(f"{path}: rho_b = {costs.backward:.1f}, rho_l = {costs.linearization:g} ({costs.source}; "
              f"{seconds:.0f} s)", flush=True)
