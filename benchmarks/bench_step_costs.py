"""What measuring a system's step costs (rho_b, rho_l: `trajopt.compute.measure_step_costs`, which `trajopt compare`,
`trajopt mpc` and a closed-loop study do once per system and host before anything else) costs a user, where a step
is expensive: the seconds to the first timed forward run (tracing and compiling the forward program), to the end of
compiling the others, and in the timing rounds, with the ratios found.

    python benchmarks/bench_step_costs.py > benchmarks/bench_step_costs.txt     # about 3-5 minutes on 2 cores
    python benchmarks/bench_step_costs.py hopper                               # only the rows whose label has this

Each row runs in a fresh process on an empty compilation cache (a user's first run on the system). Rows: MJX's
pendulum with walls and soft pushing (shipped), and gymnasium's hopper (n = 12, m = 3, floor contact, 4 substeps: a
problem file written to a temporary folder, not shipped). Needs the [suite] extra (mujoco-mjx and gymnasium). Run it on
a quiet host: the load average is printed per row.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOPPER = """title = "gymnasium's hopper (a measurement of step costs only)"

[system]
name = "mjx"
model = { package = "gymnasium", path = "envs/mujoco/assets/hopper.xml" }
substeps = 4

[task]
horizon = 30
x0 = [0.0, 1.25, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
goal = [1.0, 1.25, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
Q = [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
R = [0.01, 0.01, 0.01]
Qf = [10.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
u_init = 0.0

[solve]
iterations = 10
seeds = 5
oracles = ["fobg"]
optimizer = { name = "sgd", step = 0.01 }

[oracle]
samples = 10
sigma = 0.1
"""

# one measurement, in the child process: when each timed call of the programs starts and ends (the first is the
# forward program's first timed run, after its compile; the first over several programs follows every compile)
CHILD = r"""
import sys, time
t0 = time.perf_counter()
import jax
jax.config.update("jax_enable_x64", True)
from trajopt import compute
from trajopt.spec import load
step, n, m = compute.system_step(load(sys.argv[1]).system)
calls, fastest = [], compute._fastest_seconds
def timed(fns, k):
    begin = time.perf_counter() - t0
    out = fastest(fns, k)
    calls.append((begin, time.perf_counter() - t0, len(fns)))
    return out
compute._fastest_seconds = timed
start = time.perf_counter() - t0
c = compute.measure_step_costs(step, n, m)
end = time.perf_counter() - t0
compiled = next(b for b, _, k in calls if k > 1)
print(f"{start:.1f}|{calls[0][1]:.1f}|{compiled:.1f}|{end:.1f}|{c.backward}|{c.linearization}|{c.source}")
"""


def main(only: str = "") -> None:
    import jax
    import mujoco

    print(f"# bench_step_costs: jax {jax.__version__}, mujoco {mujoco.__version__}, {os.cpu_count()} CPUs; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("# seconds from the measurement's start: 'forward' to the forward program's first timed run (its trace and "
          "compile); 'compiled' to the first timed pass over every program (after the others' compile and a "
          "warm-up run of each); 'rounds' the timing from there (since the timing budget, its sizing pass too); "
          "'total' the whole measurement")
    print(f"{'row':28s} {'forward s':>9s} {'compiled s':>10s} {'rounds s':>8s} {'total s':>8s} {'rho_b':>7s} "
          f"{'rho_l':>6s} {'load':>5s}  source")
    with tempfile.TemporaryDirectory() as tmp:
        hopper = os.path.join(tmp, "hopper.toml")
        with open(hopper, "w", encoding="utf-8") as f:
            f.write(HOPPER)
        rows = [("mjx_pendulum_wall", os.path.join(ROOT, "problems", "mjx_pendulum_wall.toml")),
                ("mjx_push_soft", os.path.join(ROOT, "problems", "mjx_push_soft.toml")),
                ("gymnasium hopper (MJX)", hopper)]
        for label, path in rows:
            if only and only not in label:
                continue
            load = os.getloadavg()[0]
            env = {**os.environ, "TRAJOPT_CACHE": "0"}  # no compilation cache: a first run on the system
            out = subprocess.run([sys.executable, "-c", CHILD, path], capture_output=True, text=True, env=env,
                                 cwd=ROOT)
            if out.returncode != 0:
                print(f"{label:28s} failed: {(out.stderr.strip().splitlines() or ['exit status %d' % out.returncode])[-1]}")
                continue
            start, forward, compiled, end, b, lin, source = out.stdout.strip().splitlines()[-1].split("|", 6)
            s0 = float(start)
            print(f"{label:28s} {float(forward) - s0:9.1f} {float(compiled) - s0:10.1f} "
                  f"{float(end) - float(compiled):8.1f} {float(end) - s0:8.1f} {float(b):7.3g} {float(lin):6.3g} "
                  f"{load:5.2f}  {source}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
