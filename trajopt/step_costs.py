"""The step costs of a problem's system on this host, measured once and kept: what `trajopt mpc` and a closed-loop
study (`trajopt.studies`) convert their counts with.

    step_costs_for(spec, problem) -> trajopt.compute.StepCosts

`trajopt.compute.measure_step_costs` times the system's backward pass and linearisation in units of its forward step
on this host (a second or two of compiling and timing for the paper's systems; 15 and 26 s for MJX's pendulum
between walls and soft pushing and 97 s for gymnasium's hopper on a 2-core CPU, most of it compiling:
benchmarks/bench_step_costs.txt). The ratios are kept in ``step_costs.json`` beside the compilation cache
(``<cache>/../step_costs.json``), keyed by the system's resolved ``[system]`` table, its state and control sizes,
the version of the measuring method (`trajopt.compute.MEASUREMENT`: a ratio kept by another is measured again) and
the host (`host`: the CPU model and count, JAX's backend and version), so that every run of a system on a host
converts with the same numbers. An oracle that declares its own backward map (``backward_step``,
`trajopt.oracles.base`: `cfd` on an MJX system) has its ratio measured in the same rounds as ρ_b, only when a run
asks for it (`step_costs_for`'s ``oracles``: by default those of the spec's variants, so a problem whose variants
declare none compiles nothing more), and kept in the same entry (``oracles``); an entry kept without it gains it
from a new measurement of both, as the kept ρ_b times the new ρ_o / ρ_b (their relation, measured interleaved, is
what survives the host's load; the kept ρ_b stays what every run converts with). The file is read and written only
when the compilation cache is asked for (`trajopt._setup.cache_requested`: the command line asks, the library asks
only when told, ``TRAJOPT_CACHE=1``); otherwise the ratios are measured on every call. A cache that cannot be read
is measured again; one that cannot be written is not kept. Processes keeping ratios at once (two runs, a study's
workers) read the file again under a lock (``step_costs.json.lock``) before writing it, so none drops another's
entries, and the first ratios kept for a system are the ones every run converts with, the run that measured second
included.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from trajopt.runs_files import atomic_write_bytes

STEP_COSTS_FILE = "step_costs.json"


def host() -> str:
    """The CPU this process runs on (its model name and count) and JAX's backend: what a timing depends on."""
    import platform

    import jax

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model} x{cpus}, {jax.default_backend()}, jax {jax.__version__}"


def system_identity(spec) -> dict:
    """What the step costs of ``spec``'s system depend on besides the host: its resolved ``[system]`` table, its
    state and control sizes (n, m) and, for a system whose step program trajopt changed from its first (an MJX RK4
    model's, `MJX.step_program`), which program: a ratio timed on the old program is measured again."""
    system = spec.system
    ident = {"system": spec.resolved()["system"], "n": int(system.state_size), "m": int(system.control_size)}
    program = getattr(system, "step_program", None)
    return {**ident, "program": program} if program is not None else ident


def _cache_path():
    from trajopt import _setup

    if not _setup.cache_requested():
        return None
    folder = _setup.cache_dir()
    return Path(os.path.dirname(folder)) / STEP_COSTS_FILE if folder else None


def variant_oracles(spec) -> list:
    """The oracles of ``spec``'s variants (`trajopt.compute.oracle_of` each variant's method; none for a method
    without one), in run order."""
    from trajopt.compute import oracle_of

    found = (oracle_of(getattr(v, "method", None)) for v in getattr(spec, "variants", {}).values())
    return [o for o in found if o is not None]


def step_costs_for(spec, problem, oracles=None, *, measuring=None):
    """The system's `trajopt.compute.StepCosts` on this host: read from the cache of measurements (see the module
    docstring), or measured now (the system's one-step map, `trajopt.compute.system_step`, and the own backward map
    of each of ``oracles`` that declares one, `trajopt.compute.declared_backward_steps`; default: `variant_oracles`
    of ``spec``) and kept there; ``TRAJOPT_STEP_COSTS="B,L[,ORACLE=X...]"`` in the environment gives the ratios
    instead (`trajopt.compute.given_step_costs`: nothing measured or kept). ``measuring``: a context manager
    entered around a measurement, only when one runs (the CLI's status line: a large model's takes minutes)."""
    from trajopt.compute import (MEASUREMENT, StepCosts, declared_backward_steps, given_step_costs,
                                 measure_step_costs, system_step)

    given = given_step_costs()  # TRAJOPT_STEP_COSTS="B,L": the ratios given, nothing measured or kept
    if given is not None:
        return given
    ident = system_identity(spec)
    where = host()
    own = declared_backward_steps(spec.system, variant_oracles(spec) if oracles is None else oracles)
    # the measuring method's version too: a ratio kept by another version is measured again, not trusted
    key = json.dumps({**ident, "host": where, "measurement": MEASUREMENT}, sort_keys=True, default=str)
    path = _cache_path()
    if path is not None and key in (known := _read_all(path)):
        try:
            kept = StepCosts.from_dict(known[key])
            if set(own) <= set(dict(kept.oracles)):
                return kept
        except (ValueError, KeyError, TypeError, AttributeError):
            pass  # an entry that does not read back is measured again (and not kept: the first one stays)
    # a one-step system's cost function as its "step"
    with measuring if measuring is not None else contextlib.nullcontext():
        costs = measure_step_costs(*system_step(spec.system), backward_steps=own)
    costs = StepCosts(costs.backward, costs.linearization, f"{costs.source}, on {where}", costs.oracles)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with _locked(path):
                # read again under the lock: another process may have kept this system's ratios (or another
                # system's) since; the first measurement kept is the one every later run converts with
                known = _read_all(path)
                if key in known:
                    costs = with_oracles(StepCosts.from_dict(known[key]), costs)
                    if costs.as_dict() == known[key]:
                        return costs
                known[key] = costs.as_dict()
                atomic_write_bytes(path, json.dumps(known, indent=1, sort_keys=True).encode())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # a cache that cannot be written is measured again next time
    return costs


def with_oracles(kept, new):
    """``kept`` (a `trajopt.compute.StepCosts` kept earlier) with the oracle ratios of ``new`` (a measurement of ρ_b
    and those ratios in the same rounds) it lacks, each as kept ρ_b x (new ρ_o / new ρ_b): the interleaved relation
    carried to the kept ρ_b, which stays what every run converts with (new ρ_o as measured when the new ρ_b is 0).
    The source says which ratios were added so."""
    from dataclasses import replace

    have = dict(kept.oracles)
    added = [(n, r) for n, r in new.oracles if n not in have]
    if not added:
        return kept
    scale = kept.backward / new.backward if new.backward > 0 else 1.0
    pairs = tuple(kept.oracles) + tuple((n, round(r * scale, 3)) for n, r in added)
    note = (f"; {', '.join(n for n, _ in added)}'s ratio measured later in the same rounds as a new ρ_b "
            f"({new.backward:g}) and scaled to the kept one (x{scale:.3g})")
    return replace(kept, oracles=pairs, source=kept.source + note)


def _read_all(path: Path) -> dict:
    """The kept ratios ({key: StepCosts as a dict}); {} for a missing or unreadable file."""
    try:
        known = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


class _locked:
    """An exclusive lock on ``<path>.lock`` (``fcntl.flock``) while the file is read and written again, so that two
    processes keeping ratios at once (two runs, a study's workers, pytest's workers) do not drop each other's
    entries; where ``fcntl`` is missing (Windows) no lock is taken."""

    def __init__(self, path: Path):
        self.path = path.with_name(path.name + ".lock")
        self.handle = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:
            return self
        self.handle = open(self.path, "a")
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.handle is not None:
            import fcntl

            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
        return False


def costs_text(d: dict, digits: int = 6) -> str:
    """A step-cost record (`trajopt.compute.StepCosts.as_dict`, result.json's ``step_costs``) in words, what every table, report and
    page states: "backward = 24.3, linearisation = 24.3 forward steps; cfd's backward = 27.7" (an oracle's own ratio,
    where the record holds one)."""
    own = "".join(f"; {name}'s backward = {float(v):.{digits}g}" for name, v in sorted((d.get("oracles") or {}).items()))
    return (f"backward = {float(d['backward']):.{digits}g}, linearisation = {float(d['linearization']):.{digits}g} "
            f"forward steps{own}")
