"""Process-wide JAX settings, applied once when `trajopt` is first imported. These are the only global
changes trajopt makes:

* float64 on by default: ``JAX_ENABLE_X64=1`` is put in the environment before JAX is imported (or, when the
  user imported JAX first, ``jax.config.update("jax_enable_x64", True)``): stiff contact needs it. Set
  ``TRAJOPT_X64=0`` before importing trajopt to run in float32.
* XLA's CPU backend only fuses a ``while`` loop into one kernel below a small byte threshold; a vmapped
  ``lax.scan`` carry is above it, and every op then becomes a separate thunk (10-15x slower). The flag
  below lifts the threshold. It must be in ``XLA_FLAGS`` before JAX creates its first backend, so it is
  appended here, after any flags the user already set, and never replaces them. When JAX has already run
  a computation before trajopt is imported, the flag cannot take effect any more: trajopt then warns once
  (`SlowLoopWarning`) and says how to get the speed back (import trajopt first, or set the flag yourself).

* A persistent compilation cache (JAX's own), **on in the command line, off in the library unless asked for**:
  compiled programs are kept on disk in ``$TRAJOPT_CACHE_DIR``, else ``$XDG_CACHE_HOME/trajopt/jax``, else
  ``~/.cache/trajopt/jax``, so a run that was compiled before (same problem, method, shapes, JAX version and
  flags) loads its programs instead of compiling them again. Only programs that took at least 0.1 s to compile
  are stored, and the directory is capped at 1 GiB (least recently used entries go first). Beside it, under the same
  switch, trajopt keeps the step costs it measured (`trajopt.step_costs`) and the loops it traced
  (`trajopt.traces`, capped at 256 MiB), so a repeated run neither measures nor traces again. A cache directory the
  user gave JAX (``JAX_COMPILATION_CACHE_DIR`` or ``jax_compilation_cache_dir``) is left as it is. The cache is
  trusted code: do not point it at a directory that others can write to.

  Why the split: a library that is imported into someone else's program must not write into their home or share
  state between their processes unasked (the README promises that the library writes no files), and a cache
  directory is both. The command line is an application whose runs compile the same programs again and again,
  so it keeps them: `trajopt._entry` (the ``trajopt`` command and ``python -m trajopt``) calls `cli_defaults`,
  which turns the cache on unless ``TRAJOPT_CACHE=0`` and leaves ``TRAJOPT_CACHE=1`` in its environment, so the
  processes it starts (a study's workers) use it too. From Python, opt in once per process with
  `enable_compilation_cache` (``trajopt.enable_compilation_cache()``, or a directory of your choice), or with
  ``TRAJOPT_CACHE=1`` in the environment before importing trajopt. ``TRAJOPT_CACHE=0`` turns it off everywhere.

Importing trajopt does not import JAX by itself (the CLI starts in a fraction of a second); the first
module that computes does.
"""

from __future__ import annotations

import os
import sys
import warnings

_CPU_WHILE_FLAG = "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1000000000"


_CACHE_MIN_COMPILE_SECONDS = 0.1
_CACHE_MAX_BYTES = 1 << 30


_OFF = ("0", "false", "no", "off")


def cache_requested() -> bool:
    """Whether ``TRAJOPT_CACHE`` asks for the cache: set, and not one of 0, false, no, off (what the library reads;
    the CLI sets it to 1 when it is unset, `cli_defaults`)."""
    value = os.environ.get("TRAJOPT_CACHE", "").strip().lower()
    return bool(value) and value not in _OFF


def default_cache_dir() -> str:
    """Where the cache goes: ``$TRAJOPT_CACHE_DIR``, else ``$XDG_CACHE_HOME/trajopt/jax``, else
    ``~/.cache/trajopt/jax`` (an absolute path)."""
    explicit = os.environ.get("TRAJOPT_CACHE_DIR")
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "trajopt", "jax")


def cache_dir() -> str | None:
    """The persistent compilation cache directory trajopt uses when the cache is on (`default_cache_dir`), or None
    when ``TRAJOPT_CACHE=0``."""
    if os.environ.get("TRAJOPT_CACHE", "").strip().lower() in _OFF:
        return None
    return default_cache_dir()


_CACHE_ENV = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "JAX_COMPILATION_CACHE_MAX_SIZE")
_CACHE_MARK = "_TRAJOPT_JAX_CACHE_DIR"  # what trajopt itself put in JAX_COMPILATION_CACHE_DIR (a parent process's)


def _cache_settings() -> dict[str, str]:
    """JAX options (environment names) for the persistent cache; empty when off or when the user set one.

    Settings a parent trajopt process put in the environment are not the user's: they are recomputed here (so
    a child started with TRAJOPT_CACHE_DIR or TRAJOPT_CACHE=0 gets what it asked for)."""
    if os.environ.get(_CACHE_MARK) and os.environ.get(_CACHE_ENV[0]) == os.environ[_CACHE_MARK]:
        for name in (*_CACHE_ENV, _CACHE_MARK):
            os.environ.pop(name, None)
    path = cache_dir() if cache_requested() else None
    if path is None or os.environ.get(_CACHE_ENV[0]):
        return {}
    return dict(zip(_CACHE_ENV, (path, str(_CACHE_MIN_COMPILE_SECONDS), str(_CACHE_MAX_BYTES))))


class SlowLoopWarning(UserWarning):
    """JAX's CPU backend started before trajopt could set its while-loop flag: fused loops run slower."""


def _backends_started() -> bool:
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - a JAX without the private module
        return False
    check = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(check()) if check is not None else False


def configure() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    had_flag = "xla_cpu_small_while_loop_byte_threshold" in flags
    if not had_flag:
        os.environ["XLA_FLAGS"] = (flags + " " + _CPU_WHILE_FLAG).strip()
    x64 = os.environ.get("TRAJOPT_X64", "1") != "0"
    cache = _cache_settings()
    if "jax" not in sys.modules:
        if x64:
            os.environ["JAX_ENABLE_X64"] = "1"
        for name, value in cache.items():
            os.environ.setdefault(name, value)
        if cache:
            os.environ[_CACHE_MARK] = cache[_CACHE_ENV[0]]
        return
    import jax

    if x64:
        jax.config.update("jax_enable_x64", True)
    if cache and jax.config.jax_compilation_cache_dir is None:  # takes effect unless JAX already compiled something
        jax.config.update("jax_compilation_cache_dir", cache["JAX_COMPILATION_CACHE_DIR"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", _CACHE_MIN_COMPILE_SECONDS)
        jax.config.update("jax_compilation_cache_max_size", _CACHE_MAX_BYTES)
    if not had_flag and _backends_started():
        warnings.warn(
            "JAX ran a computation before trajopt was imported, so trajopt could not set XLA's CPU while-loop flag; "
            "fused loops on the CPU will run several times slower. To get the speed back, import trajopt before "
            "running anything with JAX, or start Python with "
            f"XLA_FLAGS='{_CPU_WHILE_FLAG}'.", SlowLoopWarning, stacklevel=3)


def cli_defaults() -> None:
    """What the command line turns on and the library does not (see the module docstring): the compilation cache,
    unless ``TRAJOPT_CACHE=0``. ``TRAJOPT_CACHE=1`` is put in the environment when it is unset (so the processes
    the CLI starts keep the cache), and the settings are applied again. Called by `trajopt._entry` before anything
    imports JAX."""
    if not os.environ.get("TRAJOPT_CACHE", "").strip():
        os.environ["TRAJOPT_CACHE"] = "1"
    configure()


def enable_compilation_cache(path: str | os.PathLike | None = None) -> str:
    """Keep the programs trajopt (and JAX) compiles in a persistent cache on disk, from the next compile on; returns
    the directory (created when the first program is stored).

    The library does not do this unless asked (it writes no files by itself; the ``trajopt`` command does it
    for you): call this once per process, preferably before the first compile, to make a later session that
    compiles the same programs (same problem, method, shapes, JAX version and flags) load them instead. Only
    programs that took at least 0.1 s to compile are stored; the directory is capped at 1 GiB (least recently
    used first). The cache is trusted code: do not use a directory that others can write to.

    Args:
        path: the cache directory; default ``$TRAJOPT_CACHE_DIR``, else ``$XDG_CACHE_HOME/trajopt/jax``, else
            ``~/.cache/trajopt/jax``.

    This sets JAX's ``jax_compilation_cache_dir`` (and its minimum compile time and size) and resets JAX's
    record of whether this process uses a cache (``jax.experimental.compilation_cache.compilation_cache
    .reset_cache``), so it takes effect even after something was compiled. ``TRAJOPT_CACHE=1`` in the
    environment before importing trajopt does the same at the default directory.
    """
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: found {path!r:.60} ({type(path).__name__}), allowed: None (the default directory) "
                        "or a directory path")
    target = default_cache_dir() if path is None else os.path.abspath(os.path.expanduser(os.fspath(path)))
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    jax.config.update("jax_compilation_cache_dir", target)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", _CACHE_MIN_COMPILE_SECONDS)
    jax.config.update("jax_compilation_cache_max_size", _CACHE_MAX_BYTES)
    compilation_cache.reset_cache()  # JAX decides at its first compile whether a cache is used: decide again
    return target
