"""Speed of the main job and of the fused solver.

    python benchmarks/bench_compare.py [--out benchmarks/results.md]

1. The README's main job, `trajopt compare problems/pushing_stiff.toml` (3 oracles x 5 seeds x 500
   iterations), as a user runs it: a fresh process, wall-clock time including imports and compilation.
   Target: under 60 s on a 2-core CPU.
2. The fused loop alone (`trajopt.solve.solve`) per oracle and seed count: compile seconds and run seconds,
   and the cost of one update (run seconds / (iterations x seeds)).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main_job() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "trajopt", "compare", str(ROOT / "problems/pushing_stiff.toml"),
                        "--out", str(Path(tmp) / "run"), "--quiet"], check=True)
        return time.perf_counter() - t0


def fused(seed_counts=(1, 5, 10), iterations=500):
    import jax

    from trajopt import spec
    from trajopt.solve import solve

    s = spec.load(ROOT / "problems/pushing_stiff.toml")
    problem, optimizer = s.problem(), s.solve.optimizer.build()
    rows = []
    for name in s.solve.oracles:
        for n in seed_counts:
            r = solve(problem, s.oracles[name], optimizer, key=jax.random.PRNGKey(0), iterations=iterations,
                      seeds=range(n), chunk=iterations)
            rows.append((name, n, r.compile_seconds, r.run_seconds, 1e3 * r.run_seconds / (iterations * n)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import jax

    import trajopt

    wall = [main_job() for _ in range(2)]
    rows = fused()
    lines = [
        "# Benchmark: compare on stiff pushing",
        "",
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"jax {jax.__version__} ({jax.default_backend()}), trajopt {trajopt.__version__}, "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}",
        "",
        "## The README's main job (fresh process, imports + compile + 3 oracles x 5 seeds x 500 iterations)",
        "",
        "| run | wall seconds |",
        "|---|---|",
        *[f"| {i + 1} | {w:.1f} |" for i, w in enumerate(wall)],
        "",
        "Target: under 60 s on a 2-core CPU.",
        "",
        "## The fused solver (500 iterations, one compiled chunk)",
        "",
        "| oracle | seeds | compile s | run s | ms per update per seed |",
        "|---|---|---|---|---|",
        *[f"| {o} | {n} | {c:.2f} | {r:.3f} | {u:.3f} |" for o, n, c, r, u in rows],
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
