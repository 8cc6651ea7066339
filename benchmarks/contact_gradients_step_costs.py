"""The backward-pass cost ρ_b of MJX problems, measured by `trajopt.compute.measure_step_costs`, for the equal-compute
runs of docs/contact_gradients.md (which fix it with TRAJOPT_STEP_COSTS).

    python benchmarks/contact_gradients_step_costs.py problems/mjx_push_stiff.toml problems/mjx_cube_toss.toml ...

`measure_step_costs` at its defaults (16 rollouts of 64 steps from N(0, 0.1²) states and controls, each operation
in a compiled fori_loop, the fastest of 7 interleaved runs, the median ratio of 3 rounds), with one repetition per
run (an MJX program takes far longer than its 5 ms target). An MJX step in forward gradient mode (iterations > 1)
refuses ``jax.jacfwd``, so its linearisation is not measured (ρ_l = 0, no method linearises it). A one-step system
(the cube toss: one "step" is the whole simulation) is timed on 2 rollouts of that one step. Prints one line per
file: ρ_b and the measurement's source.
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


if __name__ == "__main__":
    for path in sys.argv[1:]:
        costs, seconds = step_costs(path)
        print(f"{path}: rho_b = {costs.backward:.1f}, rho_l = {costs.linearization:g} ({costs.source}; "
              f"{seconds:.0f} s)", flush=True)
