"""Where each compiled program came from, as a run folder records it (``program.compilation_cache``,
`trajopt.compiler.CACHE_STATUSES`): XLA with the persistent compilation cache asked ("miss"), the cache ("hit"), no
cache ("off"), or this process's own programs ("memory"). Checked against what the cache folder itself shows:
an entry written for the loop on a miss, none written on a hit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

from trajopt import runs, traces
from trajopt.compiler import CACHE_STATUSES, compile_cached

ROOT = Path(__file__).resolve().parent.parent
STIFF = str(ROOT / "problems" / "pushing_stiff.toml")
SMALL = ["--variants", "zobg", "--iterations", "5", "--seeds", "2", "--set", "task.horizon=30"]


def _compare(out: Path, cache: Path, **env_extra):
    """`trajopt compare` in a process of its own (JAX sets its cache folder once per process): its exit status,
    its printed table, and the zobg variant's result.json entry."""
    env = {**os.environ, "TRAJOPT_CACHE": "1", "TRAJOPT_CACHE_DIR": str(cache), "COLUMNS": "250", **env_extra}
    for name in (traces.ENV, "JAX_COMPILATION_CACHE_DIR", "_TRAJOPT_JAX_CACHE_DIR"):
        if name not in env_extra:
            env.pop(name, None)
    p = subprocess.run([sys.executable, "-m", "trajopt", "compare", STIFF, *SMALL, "--out", str(out)],
                       env=env, capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    return p.stdout, json.loads((out / "result.json").read_text())["variants"]["zobg"]


def _loop_entries(cache: Path) -> set[str]:
    """The compilation cache's entries for the fused loop (JAX names an entry after the program)."""
    return {p.name for p in cache.glob("jit_fused_chunk-*-cache")} if cache.exists() else set()


def test_a_run_folder_records_whether_the_compilation_cache_had_its_loop(tmp_path):
    cache = tmp_path / "cache" / "jax"
    out_a, a = _compare(tmp_path / "a", cache)
    written = _loop_entries(cache)
    assert a["program"]["compilation_cache"] == "miss" and len(written) == 1  # XLA compiled it, then kept it
    assert "read from the compilation cache" not in out_a

    out_b, b = _compare(tmp_path / "b", cache)
    assert b["program"]["compilation_cache"] == "hit" and _loop_entries(cache) == written  # nothing compiled anew
    assert "read from the compilation cache" in out_b  # the table marks it and says why
    assert b["final_cost"] == a["final_cost"]

    # traced directly (no kept trace): another program text (not lowered from an export), another entry
    _, c = _compare(tmp_path / "c", cache, **{traces.ENV: "0"})
    direct = _loop_entries(cache)
    assert c["program"]["compilation_cache"] == "miss" and len(direct - written) == 1
    _, c2 = _compare(tmp_path / "c2", cache, **{traces.ENV: "0"})
    assert c2["program"]["compilation_cache"] == "hit" and _loop_entries(cache) == direct
    assert not c2["program"]["trace_reused"] and c2["final_cost"] == a["final_cost"]

    _, d = _compare(tmp_path / "d", cache, TRAJOPT_CACHE="0")
    assert d["program"]["compilation_cache"] == "off" and _loop_entries(cache) == direct

    # read back from the folder as written
    assert runs.read_run(tmp_path / "b").results["zobg"].compilation_cache == "hit"


def test_a_program_compiled_before_in_this_process_is_from_memory():
    lowered = jax.jit(lambda x: jnp.sin(x) * 3.0 + 0.25).lower(jnp.ones(7))
    first = compile_cached(lowered)
    second = compile_cached(jax.jit(lambda x: jnp.sin(x) * 3.0 + 0.25).lower(jnp.ones(7)))
    assert first.cache in CACHE_STATUSES and first.cache != "memory" and not first.reused
    assert second.cache == "memory" and second.reused and second.program is first.program
    assert float(second.program(jnp.ones(7))[0]) == float(jnp.sin(1.0) * 3.0 + 0.25)


def test_an_mpc_run_folder_records_each_program_of_a_closed_loop(tmp_path):
    """The batched episode and the timing pass's start, plan and advance, each by name: compiled on a cold cache,
    read from it on a warm one (the episode; a program that compiled in under JAX's threshold is not written)."""
    cache = tmp_path / "cache" / "jax"
    env = {**os.environ, "TRAJOPT_CACHE": "1", "TRAJOPT_CACHE_DIR": str(cache), "COLUMNS": "250"}
    for name in (traces.ENV, "JAX_COMPILATION_CACHE_DIR", "_TRAJOPT_JAX_CACHE_DIR"):
        env.pop(name, None)
    small = ["--seeds", "2", "--set", "mpc.episode=20", "--set", "success.hold=5", "--set", "mpc.horizon=10",
             "--set", "mpc.iterations=2", "--set", 'mpc.variants=["mppi"]']
    seen = []
    for out in ("a", "b"):
        p = subprocess.run([sys.executable, "-m", "trajopt", "mpc", str(ROOT / "problems" / "pendulum_swingup.toml"),
                            *small, "--out", str(tmp_path / out)], env=env, capture_output=True, text=True, cwd=ROOT)
        assert p.returncode == 0, p.stderr
        seen.append((p.stdout, json.loads((tmp_path / out / "result.json").read_text())["variants"]["mppi"]))
    (out_a, a), (out_b, b) = seen
    assert set(a["program"]["compilation_cache"]) == {"episode", "start", "plan", "advance"}
    assert a["program"]["compilation_cache"]["episode"] == "miss" and b["program"]["compilation_cache"]["episode"] == "hit"
    assert "read from the compilation cache" not in out_a and "read from the compilation cache" in out_b
    assert a["closed_loop_cost"] == b["closed_loop_cost"]
