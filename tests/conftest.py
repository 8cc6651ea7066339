import atexit
import os
import shutil
import tempfile

# The test suite never writes to the user's compilation cache: a throw-away one for this session (processes the
# tests start inherit it), unless the cache is turned off (TRAJOPT_CACHE=0). The xdist workers share the one their
# controller made (they inherit its environment); the controller removes it when it exits. The library uses the
# cache only when asked (TRAJOPT_CACHE=1, as the CLI does): the suite asks, unless TRAJOPT_CACHE says otherwise.
os.environ.setdefault("TRAJOPT_CACHE", "1")
if os.environ.get("PYTEST_XDIST_WORKER") and os.environ.get("_TRAJOPT_TEST_CACHE"):
    os.environ["TRAJOPT_CACHE_DIR"] = os.environ["_TRAJOPT_TEST_CACHE"]
else:
    # the compilation cache in a folder of its own: what the library keeps beside it (the measured step costs,
    # trajopt.step_costs: step_costs.json in the cache folder's parent) stays inside the throw-away folder too, never
    # in the system's temporary directory, where it outlived the session and hid the measurements from later runs
    _TEST_CACHE = tempfile.mkdtemp(prefix="trajopt-test-cache-")
    os.environ["TRAJOPT_CACHE_DIR"] = os.environ["_TRAJOPT_TEST_CACHE"] = os.path.join(_TEST_CACHE, "jax")
    atexit.register(shutil.rmtree, _TEST_CACHE, ignore_errors=True)
# The step costs every compare, mpc and study of the suite converts its counts with are GIVEN (ρ_b = 2, ρ_l = 3;
# trajopt.compute.given_step_costs), not measured: a measurement compiles and times three programs, seconds for each
# distinct system a test runs (about 20 s of a 2-core run), and no test but those about measuring depends on its
# value. Those tests unset it (monkeypatch.delenv("TRAJOPT_STEP_COSTS")): tests/test_step_costs.py, the slow
# measured-source test of tests/test_study_mpc.py, and tests/test_mujoco_backend.py's forward-only run (ρ = 0).
os.environ["TRAJOPT_STEP_COSTS"] = "2,3"

# Every program the suite compiles is compiled with XLA's older CPU emitter, the option trajopt's own programs are
# compiled with on a CPU (trajopt.compiler.CPU_COMPILER_OPTIONS: the fused loop, the closed-loop episodes, the
# benchmarks' reference programs). The tests' own `jax.jit` programs and JAX's op-by-op dispatch (every operation run
# eagerly compiles a small program per shape: about 3,000 of the 3,700 compilations of the default run) would
# otherwise use XLA's newer emitter, which compiles them about a third slower: measured, the default run took 5:45
# with this and 6:13 without, on the same 2-core host. trajopt's programs compile as they always do; the one test
# about XLA's default emitter asks for it by name (per-compilation options take precedence over XLA_FLAGS). Set in
# the controller, before JAX starts its CPU client; the xdist workers and the processes the tests start inherit it.
# An XLA_FLAGS that already names the option is left as it is (XLA_FLAGS=--xla_cpu_use_fusion_emitters=true runs
# the suite on XLA's defaults), and a jaxlib that does not know the option (an unknown XLA flag aborts the process)
# gets none: a child process is asked first.
_EMITTER_FLAG = "--xla_cpu_use_fusion_emitters"
if not os.environ.get("PYTEST_XDIST_WORKER") and _EMITTER_FLAG not in os.environ.get("XLA_FLAGS", ""):
    import subprocess
    import sys

    _flags = f"{os.environ.get('XLA_FLAGS', '')} {_EMITTER_FLAG}=false".strip()
    _probe = subprocess.run([sys.executable, "-c", "import jax; jax.numpy.zeros(1).block_until_ready()"],
                            env={**os.environ, "XLA_FLAGS": _flags, "JAX_PLATFORMS": "cpu"}, capture_output=True)
    if _probe.returncode == 0:
        os.environ["XLA_FLAGS"] = _flags

import jax  # noqa: E402  (after the environment above: JAX reads it when it starts its CPU client)

import trajopt  # noqa: E402, F401  (turns on float64)

jax.config.update("jax_enable_x64", True)


def pytest_xdist_auto_num_workers(config):
    """Workers for ``-n auto`` (pyproject's addopts): one per CPU this process may run on, at most 8. The suite is
    mostly compiling small programs, one CPU each; every worker holds its own JAX (up to about 1.6 GiB seen on
    this suite), so more workers than 8 cost memory for little time. The workers share one compilation cache (above)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, 8))
