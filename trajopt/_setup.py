"""Process-wide JAX settings, applied once when `trajopt` is first imported.

* float64 on by default (`jax_enable_x64`): stiff contact needs it. Set ``TRAJOPT_X64=0`` before import
  (or call ``jax.config.update("jax_enable_x64", False)``) to run in float32.
* XLA's CPU backend only fuses a ``while`` loop into one kernel below a small byte threshold; a vmapped
  ``lax.scan`` carry is above it, and every op then becomes a separate thunk (10-15x slower). The flag
  below lifts the threshold. It must be in ``XLA_FLAGS`` before JAX creates its first backend, so it is
  appended here, after any flags the user already set, and never replaces them.
"""

from __future__ import annotations

import os

_CPU_WHILE_FLAG = "--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold=1000000000"


def configure() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_small_while_loop_byte_threshold" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " " + _CPU_WHILE_FLAG).strip()

    import jax

    if os.environ.get("TRAJOPT_X64", "1") != "0":
        jax.config.update("jax_enable_x64", True)
