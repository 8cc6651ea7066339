"""How trajopt compiles a lowered program: with `CPU_COMPILER_OPTIONS` on the CPU (`compile_lowered`), and once per
program text, argument types and options in a process (`compile_cached`, through `trajopt.programs.CACHE`). The
solver's fused loop is compiled here, and so are the closed-loop episodes and the benchmarks' reference programs,
so that all of them see the same XLA options.
"""

from __future__ import annotations

import os
from typing import Any

import jax

from trajopt import programs

CPU_COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}
"""XLA options the fused loop is compiled with on the CPU. XLA's CPU backend emits a fused kernel either
through its newer MLIR "fusion emitters" (the default since 2025) or through its older elemental emitter; for
these loops (small scalar-heavy while-loop bodies) the older one compiles about a third faster and runs at the
same speed (benchmarks/RESULTS.md, "Compilation"; MJX programs also run about a third faster). Results are not
bit-identical to XLA's defaults in general: a sum may be reduced in another order, so a last bit can differ
(a reported ``var_zero``, and AoBG's ``radius`` built on it; a one-seed ZoBG or AoBG run on stiff pushing; MJX
programs), and chaotic problems amplify it. The iterates and costs were bit-identical on 30 shipped problem and
oracle pairs run with 3 seeds, and on the README's main job. A jaxlib that does not know an
option gets none of them (the first compile says so by an error, and the loop is compiled without them).
``TRAJOPT_XLA_OPTIONS=0`` in the environment, or clearing this dict, compiles with XLA's defaults. They are
options of these compilations only (``Lowered.compile(compiler_options=...)``): no global XLA flag is set."""

_options_refused: list = []  # the options a jaxlib refused (then never asked for again in this process)


def compile_options() -> dict:
    """The options `compile_lowered` asks XLA for now: `CPU_COMPILER_OPTIONS` on the CPU, unless refused or turned
    off."""
    if (not CPU_COMPILER_OPTIONS or _options_refused or jax.default_backend() != "cpu"
            or os.environ.get("TRAJOPT_XLA_OPTIONS", "1").strip() in ("0", "false", "off")):
        return {}
    return dict(CPU_COMPILER_OPTIONS)


def compile_cached(lowered) -> tuple[Any, bool]:
    """(``compile_lowered(lowered)``, False), or a program with the same text, argument types and compile options that
    this process compiled before (`trajopt.programs.CACHE`) and True."""
    return programs.compile(lowered, compile_lowered, compile_options())


def compile_lowered(lowered) -> Any:
    """``lowered.compile()`` with `CPU_COMPILER_OPTIONS` when the program is for the CPU (see there)."""
    options = compile_options()
    if not options:
        return lowered.compile()
    try:
        return lowered.compile(compiler_options=options)
    except Exception as e:  # noqa: BLE001 - jaxlib's error type moves between versions; only this one is handled
        if "compile option" not in str(e):
            raise
        _options_refused.append(options)
        return lowered.compile()

