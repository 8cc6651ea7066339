"""The backward-pass cost ρ_b of MJX problems, as `trajopt.compute.measure_step_costs` times it, for the equal-compute
runs of docs/contact_gradients.md (which fix it with TRAJOPT_STEP_COSTS).

    python benchmarks/contact_gradients_step_costs.py problems/mjx_push_stiff.toml problems/mjx_cube_toss.toml ...

The same method as `measure_step_costs` (16 rollouts of 64 steps from N(0, 0.1²) states and controls, each operation
in a compiled fori_loop, the fastest of 7 interleaved runs, the median ratio of 3 rounds; one repetition per run,
as an MJX program takes far longer than its 5 ms target) without its linearisation
program: ``jax.jacfwd`` of an MJX step in forward gradient mode (iterations > 1, the step a jax.custom_vjp) raises
TypeError, so `measure_step_costs` (and with it ``trajopt compare --budget`` and ``trajopt mpc`` without
TRAJOPT_STEP_COSTS) fails on such a system. A one-step system (the cube toss: one "step" is the whole simulation)
is timed on 2 rollouts of that one step from the file's u_init. Prints one line per file: ρ_b and each round's ratio.
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import trajopt
from trajopt.compute import _fastest_seconds, system_step


def rho_backward(path: str) -> tuple[float, list[float], float]:
    loaded = trajopt.load(path)
    step, n, m = system_step(loaded.spec.system)
    kx, ku = jax.random.split(jax.random.PRNGKey(0))
    one_step = getattr(loaded.spec.system, "one_step", False)
    batch, length = (2, 1) if one_step else (16, 64)
    X0 = 0.1 * jax.random.normal(kx, (batch, n))
    if one_step:
        U = jnp.broadcast_to(jnp.asarray(loaded.problem.U0).reshape(1, 1, m), (batch, length, m))
    else:
        U = 0.1 * jax.random.normal(ku, (batch, length, m))

    def final(x0, us):
        return jnp.sum(jax.lax.scan(lambda x, u: (step(x, u), None), x0, us)[0])

    def forward_once(x0):
        return jnp.sum(jax.vmap(final)(x0, U))

    def backward_once(x0):
        values, grads = jax.vmap(jax.value_and_grad(final, argnums=1))(x0, U)
        return jnp.sum(values) + jnp.sum(grads)

    def repeated(once):
        @jax.jit
        def program(x0, reps):
            def body(_, carry):
                x, acc = carry
                r = once(x)
                return x + 0.0 * r, acc + r
            return jax.lax.fori_loop(0, reps, body, (x0, jnp.zeros(())))[1]
        return program

    t0 = time.perf_counter()
    forward, backward = repeated(forward_once), repeated(backward_once)
    jax.block_until_ready(forward(X0, 1))
    jax.block_until_ready(backward(X0, 1))
    compile_s = time.perf_counter() - t0
    ratios = []
    for _ in range(3):
        t_f, t_fb = _fastest_seconds([lambda: forward(X0, 1), lambda: backward(X0, 1)], 7)
        ratios.append(max(t_fb - t_f, 0.0) / t_f)
    return float(np.median(ratios)), ratios, compile_s


if __name__ == "__main__":
    for path in sys.argv[1:]:
        rho, ratios, compile_s = rho_backward(path)
        print(f"{path}: rho_b = {rho:.1f} (rounds {', '.join(f'{r:.1f}' for r in ratios)}; compiled in {compile_s:.0f} s)",
              flush=True)
