"""How trajopt compiles a lowered program: with `CPU_COMPILER_OPTIONS` on the CPU (`compile_lowered`), and once per
program text, argument types and options in a process (`compile_cached`, through `trajopt.programs.CACHE`). The
solver's fused loop is compiled here, and so are the closed-loop episodes and the benchmarks' reference programs,
so that all of them see the same XLA options.

`compile_cached` also says where each compiled program came from (`Compiled.cache`, `CACHE_STATUSES`): this
process's memory, JAX's persistent compilation cache, or XLA. Beyond `trajopt.programs.CACHE` it learns it from
the events JAX raises while it compiles (``/jax/core/compile/backend_compile_duration``: JAX went to XLA or its
cache; ``/jax/compilation_cache/compile_requests_use_cache`` and ``.../cache_hits``): the first such compile
registers one listener with `jax.monitoring` for the process (events and durations), which notes those events only
in a thread that is compiling here (its other events and threads it leaves alone).
"""

from __future__ import annotations

import os
import threading
from typing import Any, NamedTuple

import jax

from trajopt import programs

CACHE_STATUSES = ("memory", "hit", "miss", "off")
"""Where a compiled program came from (`Compiled.cache`; a run folder's ``program.compilation_cache``):

* ``"memory"``: a program this process compiled before (`trajopt.programs.CACHE`, or JAX's own in-memory
  cache of compiled programs): nothing was compiled or read;
* ``"hit"``: read from JAX's persistent compilation cache (a run before this one compiled it): XLA did not run;
* ``"miss"``: compiled by XLA; the persistent cache was asked first and did not have it (the program is written
  there when it took at least ``jax_persistent_cache_min_compile_time_secs`` to compile);
* ``"off"``: compiled by XLA without the persistent cache: turned off (``TRAJOPT_CACHE=0``, the library without
  ``TRAJOPT_CACHE=1``), or a program JAX never keeps there (one that calls back into Python: MuJoCo's C
  simulator)."""

_COMPILE = "/jax/core/compile/backend_compile_duration"  # JAX went to XLA or to its persistent cache
_ASKED = "/jax/compilation_cache/compile_requests_use_cache"
_HIT = "/jax/compilation_cache/cache_hits"
_seen = threading.local()  # .events: the set of those events in this thread while `_compile_noting` runs, else unset
_listening_lock = threading.Lock()
_registered: list = []  # whether `_listen` registered (for a JAX without the lists of listeners to look in)


class Compiled(NamedTuple):
    """A compiled program and where it came from (`compile_cached`)."""

    program: Any
    reused: bool  # from `trajopt.programs.CACHE` (this process compiled it before)
    cache: str  # one of `CACHE_STATUSES`


def _note(event: str, *duration, **kwargs) -> None:
    events = getattr(_seen, "events", None)
    if events is not None and event in (_COMPILE, _ASKED, _HIT):
        events.add(event)


def _listen() -> None:
    """Register `_note` with `jax.monitoring` for events and durations, once (again if JAX's listeners were
    cleared since: its ``clear_event_listeners``)."""
    from jax._src import monitoring as _monitoring  # where JAX lists its listeners (registration is public)

    with _listening_lock:
        events = getattr(_monitoring, "get_event_listeners", None)
        durations = getattr(_monitoring, "get_event_duration_listeners", None)
        if events is None or durations is None:
            if not _registered:
                jax.monitoring.register_event_listener(_note)
                jax.monitoring.register_event_duration_secs_listener(_note)
                _registered.append(True)
            return
        if _note not in events():
            jax.monitoring.register_event_listener(_note)
        if _note not in durations():
            jax.monitoring.register_event_duration_secs_listener(_note)


def _compile_noting(lowered) -> tuple[Any, str]:
    """(``compile_lowered(lowered)``, one of `CACHE_STATUSES`: what JAX did, from the events it raised in this thread
    meanwhile). JAX asks its persistent cache whenever it is enabled (its default), a folder set or not: without a
    folder (``jax_compilation_cache_dir``) nothing can be read, "off"; nor can a program with host callbacks be
    written there, "off" too. No compile event at all: JAX had the program in memory."""
    _listen()
    _seen.events = set()
    try:
        program = compile_lowered(lowered)
        events = _seen.events
    finally:
        del _seen.events
    if _HIT in events:
        return program, "hit"
    if _COMPILE not in events:
        return program, "memory"
    cached = (_ASKED in events and getattr(jax.config, "jax_compilation_cache_dir", None)
              and not programs.host_callbacks(lowered))
    return program, "miss" if cached else "off"


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


def compile_cached(lowered) -> Compiled:
    """``compile_lowered(lowered)``, or a program with the same text, argument types and compile options that this
    process compiled before (`trajopt.programs.CACHE`; ``reused``), and where it came from (``cache``: one of
    `CACHE_STATUSES`)."""
    status: list[str] = []

    def compile_(lowered):
        program, cache = _compile_noting(lowered)
        status.append(cache)
        return program

    program, reused = programs.compile(lowered, compile_, compile_options())
    return Compiled(program, reused, "memory" if reused else status[0])


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

