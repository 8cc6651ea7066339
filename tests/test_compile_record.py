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

from trajopt import runs, traces

ROOT = Path(__file__).resolve().parent.parent
STIFF = str(ROOT / "problems" / "pushing_stiff.toml")
SMALL = ["--iterations", "5", "--seeds", "2", "--set", "task.horizon=30"]


def _env(cache: Path, **extra) -> dict:
    """A command's environment with the cache folder ``cache`` of its own (none of the suite's JAX cache settings;
    the traces kept unless ``extra`` says otherwise)."""
    env = {**os.environ, "TRAJOPT_CACHE": "1", "TRAJOPT_CACHE_DIR": str(cache), "COLUMNS": "250", **extra}
    for name in (traces.ENV, "JAX_COMPILATION_CACHE_DIR", "_TRAJOPT_JAX_CACHE_DIR"):
        if name not in extra:
            env.pop(name, None)
    return env


def _compare(out: Path, cache: Path, variants: str = "zobg", **env_extra):
    """`trajopt compare` of ``variants`` in a process of its own (JAX sets its cache folder once per process): its
    printed table (whitespace collapsed) and its result.json's variants (the zobg entry alone when it ran alone)."""
    env = _env(cache, **env_extra)
    p = subprocess.run([sys.executable, "-m", "trajopt", "compare", STIFF, "--variants", variants, *SMALL,
                        "--out", str(out)], env=env, capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    entries = json.loads((out / "result.json").read_text())["variants"]
    # the printed text with its line breaks as spaces: where rich wraps the caption depends on the console's width
    return " ".join(p.stdout.split()), entries["zobg"] if variants == "zobg" else entries


def _loop_entries(cache: Path) -> set[str]:
    """The compilation cache's entries for the fused loop (JAX names an entry after the program)."""
    return {p.name for p in cache.glob("jit_fused_chunk-*-cache")} if cache.exists() else set()


def test_a_run_folder_records_whether_the_compilation_cache_had_its_loop(tmp_path):
    cache = tmp_path / "cache" / "jax"
    out_a, a = _compare(tmp_path / "a", cache)
    written = _loop_entries(cache)
    assert a["program"]["compilation_cache"] == "miss" and len(written) == 1  # XLA compiled it, then kept it
    assert a["program"]["final_evaluation"] == "miss"
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

    # two variants compiled at once on the CLI's two threads: each its own status
    out_e, e = _compare(tmp_path / "e", cache, "zobg,fobg,aobg")
    assert {k: v["program"]["compilation_cache"] for k, v in e.items()} == {"zobg": "hit", "fobg": "miss",
                                                                           "aobg": "miss"}
    # their final evaluation is one program (the one the runs before compiled: read from the cache), compiled once
    # for the three: the same status and the same seconds in each, held apart from theirs; the command's total and
    # its table count it once
    final = {(v["program"]["final_evaluation"], v["program"]["final_evaluation_seconds"]) for v in e.values()}
    assert len(final) == 1 and next(iter(final))[0] == "hit", final
    shared = next(iter(final))[1]
    top = json.loads((tmp_path / "e" / "result.json").read_text())
    assert top["final_evaluation_seconds"] == shared > 0
    assert abs(top["compile_seconds"] - sum(v["compile_seconds"] for v in e.values()) - shared) < 1e-9
    assert f"the final evaluation, one program for the variants: {shared:.1f} s" in out_e
    back = runs.read_run(tmp_path / "e").results["fobg"]
    assert (back.final_evaluation, back.final_evaluation_seconds) == ("hit", shared)


PROBE = """
import trajopt
import jax, jax.numpy as jnp, numpy as np
from trajopt import programs
from trajopt.compiler import compile_cached

def f(x):
    return jnp.cumsum(jnp.sin(x) * 3.0) + 0.25

def g(x):  # calls back into Python: never kept in the persistent cache
    return jax.pure_callback(lambda a: np.asarray(a) * 2, jax.ShapeDtypeStruct(x.shape, x.dtype), x) + 1.0

lowered = jax.jit(f).lower(jnp.ones(64))
out = [compile_cached(lowered).cache, compile_cached(lowered).cache]
programs.CACHE.clear()
out.append(compile_cached(lowered).cache)  # trajopt's cache emptied: JAX's own in-memory one has it
out += [compile_cached(jax.jit(g).lower(jnp.ones(5))).cache]
print(" ".join(out))
"""


def test_each_status_as_jax_compiled_the_program(tmp_path):
    """Two processes on one cache folder: a program XLA compiled ("miss"), the same one again in the process
    ("memory": trajopt's programs, or JAX's own once trajopt's are cleared), read in the next process ("hit"); a
    program calling back into Python is never in the persistent cache ("off")."""
    env = _env(tmp_path / "jax", JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")  # keep even a quick program
    seen = []
    for _ in range(2):
        p = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, cwd=ROOT)
        assert p.returncode == 0, p.stderr
        seen.append(p.stdout.split())
    assert seen == [["miss", "memory", "memory", "off"], ["hit", "memory", "memory", "off"]]


def test_an_mpc_run_folder_records_each_program_of_a_closed_loop(tmp_path):
    """The batched episode and the timing pass's start, plan and advance, each by name: compiled on a cold cache,
    read from it on a warm one (the episode; a program that compiled in under JAX's threshold is not written)."""
    env = _env(tmp_path / "cache" / "jax")
    small = ["--seeds", "2", "--set", "mpc.episode=20", "--set", "success.hold=5", "--set", "mpc.horizon=10",
             "--set", "mpc.iterations=2", "--set", 'mpc.variants=["mppi"]']
    seen = []
    for out in ("a", "b"):
        p = subprocess.run([sys.executable, "-m", "trajopt", "mpc", str(ROOT / "problems" / "pendulum_swingup.toml"),
                            *small, "--out", str(tmp_path / out)], env=env, capture_output=True, text=True, cwd=ROOT)
        assert p.returncode == 0, p.stderr
        seen.append((" ".join(p.stdout.split()), json.loads((tmp_path / out / "result.json").read_text())["variants"]["mppi"]))
    (out_a, a), (out_b, b) = seen
    assert set(a["program"]["compilation_cache"]) == {"episode", "start", "plan", "advance"}
    assert a["program"]["compilation_cache"]["episode"] == "miss" and b["program"]["compilation_cache"]["episode"] == "hit"
    assert "read from the compilation cache" not in out_a and "read from the compilation cache" in out_b
    assert a["closed_loop_cost"] == b["closed_loop_cost"]
