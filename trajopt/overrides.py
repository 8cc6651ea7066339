"""Command-line overrides of a problem file: ``--set KEY.PATH=VALUE`` (and what ``--iterations`` implies).

`apply_overrides` writes each ``KEY.PATH=VALUE`` into the decoded document before it is validated (the value read
as TOML by `parse_value`; a bare word is a string); `key_type` says what type a key takes (the sweeps build their
values with it). An override that reaches nothing the command runs (an oracle key when only methods are selected, a
variant's key that its own table shadows) would be a silent no-op: `unreached_override` says why, and
`check_override` refuses it. `iteration_overrides` carries ``solve.iterations`` given as an override to the
variants that set their own.
"""

from __future__ import annotations

import copy
import sys
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from trajopt.methods import METHODS
from trajopt.optim import OPTIMIZERS
from trajopt.oracles import ORACLES
from trajopt.registry import UnknownName
from trajopt.systems import SYSTEMS
from trajopt.tables import describe, fields_of, parameter_types
from trajopt.tomlio import MAX_DEPTH, SpecError, check_depth

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

if TYPE_CHECKING:  # annotations only: the spec module imports this one
    from trajopt.spec import Spec

USES = ("variants", "oracles", "all", "none")
RUN_KEYS = ("iterations", "seeds", "chunk", "on_non_finite", "variants")  # [solve] keys only runs read
CLOSED_LOOP_ONLY = ("mpc", "plant", "success")  # read by closed-loop runs only (a policy problem's [success] aside)


def key_type(raw: Mapping, key: str) -> type:
    """The Python type a dotted key takes in a problem file (float for vectors and unknown keys)."""
    parts = key.split(".")
    try:
        if parts[0] == "task":
            return int if parts[1:] == ["horizon"] else float
        if parts[0] == "system" and len(parts) == 2:
            return parameter_types(SYSTEMS.get(raw["system"]["name"])).get(parts[1], float)
        if parts[0] == "oracle" and len(parts) == 3:
            return parameter_types(ORACLES.get(parts[1])).get(parts[2], float)
        if parts[0] == "oracle" and len(parts) == 2:
            for name in ORACLES:
                types = parameter_types(ORACLES.get(name))
                if parts[1] in types:
                    return types[parts[1]]
        if parts[0] == "method" and len(parts) == 3:  # a [method.NAME] table's key: the method's own field
            return parameter_types(METHODS.get(parts[1])).get(parts[2], float)
        if parts[0] == "variants" and len(parts) == 3:
            if parts[2] in ("iterations", "starts"):
                return int
            table = raw.get("variants", {}).get(parts[1], {})
            base = table.get("oracle") or table.get("method") or parts[1]
            registry = METHODS if ("method" in table or (base in METHODS and base not in ORACLES)) else ORACLES
            return parameter_types(registry.get(base)).get(parts[2], float)
        if parts[0] == "solve" and len(parts) == 3 and parts[1] == "optimizer":
            return parameter_types(OPTIMIZERS.get(raw["solve"]["optimizer"].get("name", "sgd"))).get(parts[2], float)
        if parts[0] == "solve" and len(parts) == 2:
            return int if parts[1] in ("iterations", "seeds", "key", "chunk") else str
    except (KeyError, TypeError, UnknownName, AttributeError):
        pass
    return float


def parse_value(text: str, source: str = "<--set>", key: str = "") -> Any:
    """A ``--set`` value as TOML (``1e-3``, ``true``, ``[1, 2]``, ``"sgd"``); bare words are strings. A value nested
    thousands deep is a SpecError (``source``, ``key``), not the parser's RecursionError."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    except RecursionError:
        raise SpecError(source, key, f"found nesting deeper than {MAX_DEPTH} levels, allowed: tables and arrays "
                        f"nested at most {MAX_DEPTH} deep") from None


def apply_overrides(raw: dict, overrides: Sequence[str], source: str) -> dict:
    """Apply ``key.path=value`` assignments to a decoded document (a deep copy is returned)."""
    out = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise SpecError(source, f"--set {item}", "found no '=', allowed: KEY.PATH=VALUE, e.g. oracle.aobg.gamma=0.01")
        path, _, text = item.partition("=")
        keys = [k.strip() for k in path.strip().split(".")]
        if not all(keys):
            raise SpecError(source, f"--set {item}", "found an empty key, allowed: KEY.PATH=VALUE")
        value = parse_value(text.strip(), source, f"--set {path.strip()}")
        check_depth(value, source, f"--set {path.strip()}", start=len(keys))  # the key path nests too
        table = out
        for i, k in enumerate(keys[:-1]):
            nxt = table.setdefault(k, {})
            if not isinstance(nxt, dict):
                raise SpecError(source, ".".join(keys[: i + 1]), f"is {describe(nxt)}, not a table; cannot set {path}")
            table = nxt
        table[keys[-1]] = value
    return out


def unreached_override(spec: "Spec", item: str, use: str = "variants", verb: str = "this command",
                       closed_loop: Optional[bool] = None) -> Optional[str]:
    """Why a command-line override ``KEY.PATH=VALUE`` reaches nothing the command runs; None when it reaches something.

    Only the keys that configure what is run are checked: shared ``[oracle]`` keys, ``[oracle.NAME]``,
    ``[method.NAME]``, ``[variants.NAME]`` and ``[solve.optimizer]``; problem keys (system, task, ...) and the rest of
    ``[solve]`` always apply. ``use`` says what the command runs: "variants" (solve, compare: the selected
    variants), "oracles" (diagnose, sweep, landscape: ``solve.oracles``), "all" (validate: either) or "none" (a
    command that runs no oracle, method or optimiser). A file's own tables are not checked here (an unused
    ``[oracle.NAME]`` table or a shared ``[oracle]`` default is validated and kept): an override given on the
    command line that reaches nothing would be a silent no-op, and is refused instead.

    The closed-loop tables (``[mpc]``, ``[plant]``, and ``[success]`` of a time-stepped problem: `CLOSED_LOOP_ONLY`)
    reach only a closed-loop run: ``closed_loop`` (default: ``verb == "mpc"``; a study says whether its cells are)
    or ``use = "all"`` (validate). A policy problem's ``[success]`` is its held-aside success rate, which solve and
    compare report.
    """
    if use not in USES:
        raise ValueError(f"use: found {use!r}, allowed: {', '.join(USES)}")
    path, _, text = item.partition("=")
    parts = [k.strip() for k in path.strip().split(".")]
    value = parse_value(text.strip())
    variants = dict(spec.variants) if use in ("variants", "all") else {}
    oracles = dict(spec.oracles) if use in ("oracles", "all") else {}
    for v in variants.values():
        if v.kind == "oracle":
            oracles.setdefault(v.base, v.oracle)
    methods = {v.base for v in variants.values() if v.kind == "method"}
    if use == "variants":
        selected = list(variants)
    elif use == "oracles":
        selected = list(oracles)
    else:
        selected = list(dict.fromkeys([*variants, *spec.oracles]))

    def through(kind: str, bases) -> list[str]:  # the file's variants that take a key of these oracles or methods
        return [n for n, (k, b, _) in spec.defined_variants.items() if k == kind and b in bases and n not in bases]

    def shadowed(kind: str, bases, field: str, shared: bool = False) -> Optional[str]:
        """Why the override of ``field`` reaches none of the selected variants (or studied oracles) of these bases
        although some are selected: each sets the field in a table that wins, its own [variants.NAME] table or,
        for a ``shared`` [oracle] key, its oracle's [oracle.NAME] table (in the file or another override)."""
        if use == "oracles":
            winners = [f"oracle.{n}.{field}" for n in bases if shared and field in spec.oracle_keys.get(n, ())]
            if shared and bases and len(winners) == len(bases):
                return (f"reaches no studied oracle: {', '.join(winners)} set{'s' if len(winners) == 1 else ''} it "
                        "in the file or another override (an [oracle.NAME] key wins over the shared one; set that "
                        "key instead)")
            return None
        reached = [n for n in variants if spec.defined_variants.get(n, (None,))[0] == kind
                   and spec.defined_variants[n][1] in bases]
        winners = []
        for n in reached:
            base = spec.defined_variants[n][1]
            if field in spec.defined_variants[n][2]:
                winners.append(f"variants.{n}.{field}")
            elif shared and kind == "oracle" and field in spec.oracle_keys.get(base, ()):
                winners.append(f"oracle.{base}.{field}")
        if reached and use == "variants" and len(winners) == len(reached):
            winners = list(dict.fromkeys(winners))
            return (f"reaches no selected variant: {', '.join(winners)} set{'s' if len(winners) == 1 else ''} it "
                    "in the file or another override (set that key instead)")
        return None

    head = parts[0]
    closed_loop = verb == "mpc" if closed_loop is None else closed_loop
    if (head in CLOSED_LOOP_ONLY and not closed_loop and use != "all"
            and not (head == "success" and spec.policy is not None)):
        return f"is read by closed-loop runs only (trajopt mpc, or a study with verb = \"mpc\"); {verb} runs none"
    if head == "oracle" and len(parts) == 2 and not isinstance(value, dict):  # a shared key: every oracle with it
        field = parts[1]
        having = {n for n, o in oracles.items() if field in fields_of(o)}
        if having:
            return shadowed("oracle", having, field, shared=True)
        bases = [n for n in ORACLES.names() if field in fields_of(ORACLES.get(n))]
        targets = bases + through("oracle", set(bases))
    elif head in ("oracle", "method", "variants") and len(parts) >= 2:
        name = parts[1]
        if name in {"oracle": oracles, "method": methods, "variants": variants}[head]:
            return shadowed(head, {name}, parts[2]) if head != "variants" and len(parts) == 3 else None
        targets = [name] + (through(head, {name}) if head != "variants" else [])
    elif parts[:2] == ["solve", "optimizer"]:
        own = getattr(spec.solve.optimizer, "name", None)
        under = [n for n, v in variants.items() if v.kind == "oracle" and getattr(v.optimizer, "name", None) == own]
        # a key the variant's own optimizer table sets wins over the file's (trajopt.methods.variants)
        setting = [n for n in under if len(parts) == 3 and f"optimizer.{parts[2]}" in
                   spec.defined_variants.get(n, (None, None, ()))[2]]
        if under and len(setting) == len(under) and use == "variants":
            return (f"reaches no selected variant: {', '.join(f'variants.{n}.optimizer.{parts[2]}' for n in setting)} "
                    f"set{'s' if len(setting) == 1 else ''} it in the file or another override (set that key instead)")
        if under:
            return None
        what = f"applies to variants of an oracle under the file's optimiser ({own})"
        if use in ("oracles", "none"):
            return f"{what}, in solve and compare; {verb} runs no optimiser"
        return f"{what} (none selected: each selected variant is a method or has an optimiser of its own); " \
               f"selected: {', '.join(selected) or 'none'}"
    elif head == "solve" and len(parts) == 2 and use != "all":
        return _unreached_solve_key(spec, parts[1], value, use, verb, variants)
    elif head == "success" and use in ("oracles", "none") and spec.policy is not None:
        return f"applies to the held-aside success rate that solve and compare report; {verb} computes none"
    else:
        return None
    shown = ", ".join(targets) or "nothing registered"
    if use == "none":
        return f"applies to {shown}; {verb} runs no oracle, method or variant"
    return f"applies to {shown} (not selected); selected: {', '.join(selected) or 'none'}"


def _unreached_solve_key(spec: "Spec", key: str, value: Any, use: str, verb: str, variants: dict) -> Optional[str]:
    """`unreached_override` for a ``solve.KEY`` (the optimiser aside): ``key`` (the root PRNG key) reaches every
    command; the run keys (`RUN_KEYS`) only solve and compare; ``oracles`` the oracle-level studies' oracles (which
    they set themselves) and compare's variants where ``solve.variants`` is not set; ``on_non_finite = "skip"``
    only gradient variants (a method's seed stops at a non-finite cost)."""
    if use in ("oracles", "none"):
        if key in RUN_KEYS:
            return f"applies to the runs of solve and compare (variants, iterations, seeds); {verb} runs none"
        if key == "oracles":
            return (f"{verb} runs no oracle" if use == "none" else
                    f"{verb} sets the oracles it studies itself (--oracles where it has one)")
        return None
    if key == "oracles" and tuple(spec.solve.variants) != tuple(spec.solve.oracles):
        return (f"names the variants only where solve.variants is not set; solve.variants is set "
                f"({', '.join(spec.solve.variants)}) and {verb} runs those (--variants or --set solve.variants "
                "chooses them)")
    if key == "on_non_finite" and value == "skip" and variants and all(v.kind != "oracle" for v in variants.values()):
        return (f"'skip' skips a gradient variant's update at a non-finite gradient (oracle = ...); none is selected "
                f"({', '.join(variants)}: a method's seed stops at a non-finite cost)")
    return None


def check_override(spec: "Spec", item: str, use: str = "variants", verb: str = "this command",
                   label: Optional[str] = None) -> None:
    """`unreached_override` as a SpecError naming the file and the override (``--set KEY.PATH``, or ``label``)."""
    why = unreached_override(spec, item, use, verb)
    if why is not None:
        raise SpecError(spec.source, label or f"--set {item.partition('=')[0].strip()}", why)


def iteration_overrides(spec: "Spec", overrides: Sequence[str]) -> list[str]:
    """``variants.NAME.iterations=N`` items that carry ``solve.iterations=N`` given as an override (``--iterations``
    on the command line, ``Loaded.compare(iterations=N)``) to every selected variant that sets its own
    ``iterations`` in the file: an explicit override reaches them too instead of being silently outweighed by
    the file. A variant whose own iterations are also among ``overrides`` keeps those. Load the file again with
    ``overrides + iteration_overrides(spec, overrides)`` (their step and σ schedules then span N)."""
    keys = [str(item).split("=", 1)[0].strip() for item in overrides]
    if "solve.iterations" not in keys:
        return []
    n = spec.solve.iterations
    return [f"variants.{name}.iterations={n}" for name, v in spec.variants.items()
            if v.iterations is not None and v.iterations != n and f"variants.{name}.iterations" not in keys]
