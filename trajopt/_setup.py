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

Importing trajopt does not import JAX by itself (the CLI starts in a fraction of a second); the first
module that computes does.
"""

from __future__ import annotations

import os
import sys
import warnings

_CPU_WHILE_FLAG = "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1000000000"


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
    if "jax" not in sys.modules:
        if x64:
            os.environ["JAX_ENABLE_X64"] = "1"
        return
    import jax

    if x64:
        jax.config.update("jax_enable_x64", True)
    if not had_flag and _backends_started():
        warnings.warn(
            "JAX ran a computation before trajopt was imported, so trajopt could not set XLA's CPU while-loop flag; "
            "fused loops on the CPU will run several times slower. To get the speed back, import trajopt before "
            "running anything with JAX, or start Python with "
            f"XLA_FLAGS='{_CPU_WHILE_FLAG}'.", SlowLoopWarning, stacklevel=3)
