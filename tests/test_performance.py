"""The persistent compilation cache (`trajopt._setup`): where it lives, how to turn it off, and that a second run
in a fresh process loads its programs from it instead of compiling them. No timing asserts: hits are counted with
JAX's own monitoring events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trajopt import _setup

ROOT = Path(__file__).resolve().parent.parent

_CHILD = r"""
import json, sys
import trajopt, jax
hits = []
jax.monitoring.register_event_listener(lambda event, **kw: hits.append(event))
loaded = trajopt.load(sys.argv[1], ["solve.iterations=20"])
method = loaded.variants["zobg"]
r = trajopt.solve(loaded.problem, method, key=jax.random.PRNGKey(0), iterations=20, seeds=[0])
print(json.dumps({"compile_seconds": r.compile_seconds, "U": r.U.ravel().tolist(),
                  "hits": hits.count("/jax/compilation_cache/cache_hits"),
                  "misses": hits.count("/jax/compilation_cache/cache_misses"),
                  "cache_dir": jax.config.jax_compilation_cache_dir}))
"""


def _child(env_extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", "_TRAJOPT_JAX"))}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", _CHILD, str(ROOT / "problems/pushing_stiff.toml")], env=env,
                         cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _entries(path: Path) -> list[str]:
    return sorted(p.name for p in path.glob("*-cache")) if path.exists() else []


def test_second_run_in_a_fresh_process_compiles_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    first = _child({"TRAJOPT_CACHE_DIR": str(cache), "TRAJOPT_CACHE": "1"})
    assert first["cache_dir"] == str(cache)
    assert first["hits"] == 0 and first["misses"] >= 1
    written = _entries(cache)
    assert any(name.startswith("jit_fused_chunk") for name in written)  # the fused chunk program is stored
    second = _child({"TRAJOPT_CACHE_DIR": str(cache), "TRAJOPT_CACHE": "1"})
    # the stored programs are loaded, not recompiled: hits, and no new entry written. (Programs that compile in less
    # than the cache's minimum time, 0.1 s, are never stored, so they miss on every run: misses are not all 0.)
    assert second["hits"] >= 1
    assert _entries(cache) == written
    assert second["U"] == first["U"]  # a cached program computes the same numbers


def test_cache_can_be_turned_off(tmp_path):
    cache = tmp_path / "cache"
    out = _child({"TRAJOPT_CACHE_DIR": str(cache), "TRAJOPT_CACHE": "0"})
    assert out["cache_dir"] is None and out["hits"] == 0
    assert not cache.exists()


def test_cache_directory_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("TRAJOPT_CACHE_DIR", raising=False)
    monkeypatch.delenv("TRAJOPT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _setup.cache_dir() == os.path.join(str(tmp_path), "trajopt", "jax")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _setup.cache_dir() == os.path.join(str(tmp_path / "home"), ".cache", "trajopt", "jax")
    monkeypatch.setenv("TRAJOPT_CACHE", "0")
    assert _setup.cache_dir() is None


def test_the_test_suite_uses_a_temporary_cache():
    import jax

    path = jax.config.jax_compilation_cache_dir
    if path is None:  # the cache is off for this session, or the user gave JAX a cache of their own
        pytest.skip("no trajopt cache in this session")
    assert Path(path).resolve() == Path(os.environ["TRAJOPT_CACHE_DIR"]).resolve()
    assert not Path(path).resolve().is_relative_to(Path.home() / ".cache")


@pytest.mark.parametrize("what", ["systems", "oracles", "methods", "optimizers"])
def test_listing_without_jax_matches_the_imported_registry(what):
    from trajopt.cli import info

    assert info.static_registry_rows(what) == info.registry_rows(what)


def test_list_imports_no_jax():
    code = ("import sys; from trajopt.cli import info; "
            "rows = [info.static_registry_rows(w) for w in ('systems', 'oracles', 'methods', 'optimizers')]; "
            "print(all(rows), 'jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]
