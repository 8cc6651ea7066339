"""A problem file's variants: ``[variants.NAME]`` and ``[method.NAME]`` tables, and K starts of one.

    [method.cem]               # defaults of one method (any variant of it starts from these)
    samples = 64
    [variants.aobg_adam]       # a named method configuration: an oracle under an optimiser ...
    oracle = "aobg"            #   (the file's [oracle] options, overridable here)
    gamma = 0.01
    optimizer = { name = "adam", step = 0.1 }
    sigma_schedule = "cosine"  #   the oracle's sigma decayed to sigma_final over the run (`GradientMethod`)
    sigma_final = 0.01
    [variants.cem_wide]        # ... or a method (with [method.cem]'s options, overridable here)
    method = "cem"
    samples = 256
    starts = 4                 # any variant: K starts of its method, the best kept (`MultiStart`)
    start_spread = 0.1
    iterations = 200           # any variant: its own number of steps (an equal-budget comparison)

A name in ``solve.variants`` is looked up as a ``[variants.NAME]`` table first, then as an oracle (a
`GradientMethod` of it under the file's optimiser), then as a method (with its defaults): `build_variants`.
Every ``[variants.*]`` and ``[method.*]`` table of the file is validated, selected or not.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Optional

from trajopt.checks import FieldError
from trajopt.limits import MAX_HISTORY, MAX_ITERATIONS
from trajopt.methods import METHODS, GradientMethod, MultiStart
from trajopt.optim import DEFAULT_OPTIMIZER, build_optimizer
from trajopt.oracles import ORACLES
from trajopt.oracles.table import oracle_params
from trajopt.tables import build_config, check_keys, coerce, config_dict, describe, lookup, parameter_types, sub_table, unknown
from trajopt.tomlio import SpecError

if TYPE_CHECKING:  # annotations only: the spec module imports this one
    from trajopt.spec import SolveSpec

GRADIENT_KEYS = ("sigma_schedule", "sigma_final")  # keys of a gradient variant that belong to the method, not the oracle
START_KEYS = ("starts", "start_spread")  # keys of any variant: K starts of its method, best kept (`MultiStart`)
OWN_VARIANT_KEYS = ("oracle", "method", "optimizer", "iterations", *START_KEYS)  # not its oracle's or method's


@dataclass(frozen=True, eq=False)
class Variant:
    """A named method configuration, ready to run.

    Attributes:
        name: the variant's name (a ``[variants.NAME]`` table, or a bare oracle or method name).
        kind: "oracle" (a `GradientMethod` of that oracle and an optimiser) or "method".
        base: the oracle's or the method's registered name (or ``module:attribute``).
        method: the method object `trajopt.solve` runs.
        table: the resolved ``[variants.NAME]`` table (every default filled in), for config.toml.
        iterations: the variant's own number of steps (an equal-budget comparison), or None for ``solve.iterations``.
    """

    name: str
    kind: str
    base: str
    method: Any
    table: dict
    iterations: Optional[int] = None

    @property
    def oracle(self) -> Any:
        """The oracle of a gradient variant, else None."""
        return getattr(self.each_start, "oracle", None)

    @property
    def optimizer(self) -> Any:
        """The optimiser config of a gradient variant, else None."""
        return getattr(self.each_start, "optimizer", None)

    @property
    def each_start(self) -> Any:
        """The method one start runs: ``method`` itself, or what its `MultiStart` runs K times."""
        return self.method.method if isinstance(self.method, MultiStart) else self.method


def build_variant(name: str, table: Mapping, raw: Mapping, solve: "SolveSpec", source: str,
                  registry: Any = ORACLES) -> Variant:
    """One variant from its ``[variants.NAME]`` table (empty for a bare oracle or method name). ``raw``: the whole
    document (its [oracle], [method.NAME] and [solve.optimizer] tables give the defaults); ``solve``: the file's
    validated [solve] (iterations, seeds, on_non_finite); ``registry``: the oracles a gradient variant may name
    (a policy file's estimate through the closed loop)."""
    prefix = f"variants.{name}."
    if "oracle" in table and "method" in table:
        raise SpecError(source, f"variants.{name}", "found both 'oracle' and 'method', allowed: one of them")
    for k in ("oracle", "method"):
        if k in table and not (isinstance(table[k], str) and table[k]):
            raise SpecError(source, prefix + k, f"found {describe(table[k])}, allowed: a name")
    if "oracle" in table or ("method" not in table and (name in registry or (":" in name and name not in METHODS))):
        kind, base = "oracle", table.get("oracle", name)
    elif "method" in table or name in METHODS:
        kind, base = "method", table.get("method", name)
    else:
        known = list(raw.get("variants", {}) or {}) + registry.names() + [m for m in METHODS.names() if m != "gradient"]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SpecError(source, f"variants.{name}" if table else "solve.variants",
                        f"unknown variant {name!r}{hint}: not a [variants.{name}] table, an oracle or a method; "
                        f"known: {', '.join(known)}")
    params = {k: v for k, v in table.items() if k not in OWN_VARIANT_KEYS}
    own_iterations = None
    if "iterations" in table:
        own_iterations = coerce(table["iterations"], int, source, prefix + "iterations")
        if own_iterations < 1:
            raise SpecError(source, prefix + "iterations", f"found {own_iterations}, allowed: an integer >= 1")
        if own_iterations > MAX_ITERATIONS or own_iterations * len(solve.seeds) > MAX_HISTORY:
            # the caps of solve.iterations hold for a variant's own count (an equal-budget compare sets it)
            raise SpecError(source, prefix + "iterations", f"found {own_iterations} iterations x {len(solve.seeds)} "
                            f"seeds, allowed: an integer in 1..{MAX_ITERATIONS} with iterations x seeds <= "
                            f"{MAX_HISTORY} (the recorded history, about 100 bytes per iteration and seed, and 300 "
                            "in metrics.jsonl)")
    steps = own_iterations or solve.iterations
    gradient_params = {k: params.pop(k) for k in GRADIENT_KEYS if k in params and kind == "oracle"}
    if kind == "oracle":
        cls = lookup(registry, base, source, prefix + "oracle" if "oracle" in table else "solve.variants")
        own = list(parameter_types(cls)) if dataclasses.is_dataclass(cls) else []
        for k in params:
            if k not in own:
                raise unknown(source, prefix + k, [k for k in OWN_VARIANT_KEYS if k != "method"] + [*GRADIENT_KEYS, *own])
        merged = {**oracle_params(sub_table(raw, "oracle", source, "oracle"), cls, base), **params}
        oracle = build_config(cls, merged, source, prefix)
        file_opt = sub_table(raw.get("solve", {}) or {}, "optimizer", source, "solve.optimizer") if "optimizer" in (raw.get("solve") or {}) else dict(DEFAULT_OPTIMIZER)
        opt_table = table.get("optimizer", {})
        if not isinstance(opt_table, dict):
            raise SpecError(source, prefix + "optimizer", f"found {describe(opt_table)}, allowed: a table such as {{ name = \"adam\", step = 0.1 }}")
        if opt_table.get("name", file_opt.get("name", "sgd")) == file_opt.get("name", "sgd"):
            opt_table = {**file_opt, **opt_table}  # same optimiser: the variant overrides some of the file's keys
        optimizer = build_optimizer(opt_table, source, prefix + "optimizer", steps)
        schedule = coerce(gradient_params.get("sigma_schedule", "constant"), str, source, prefix + "sigma_schedule")
        final = coerce(gradient_params.get("sigma_final", 0.0), float, source, prefix + "sigma_final")
        if schedule != "constant" and "sigma_final" not in gradient_params:
            raise SpecError(source, prefix + "sigma_final", f"missing; allowed: the σ at the last iteration (a number > 0) for sigma_schedule = {schedule!r}")
        try:
            method = GradientMethod(oracle, optimizer, skip_non_finite=solve.on_non_finite == "skip",
                                    sigma_schedule=schedule, sigma_final=final,
                                    sigma_steps=steps if schedule != "constant" else 0)
        except FieldError as e:
            raise SpecError(source, prefix + e.field, f"found {e.found!r}, allowed: {e.allowed}") from None
        resolved = {"oracle": base, **{k: v for k, v in config_dict(oracle).items() if k != "name"},
                    "optimizer": config_dict(optimizer)}
        if schedule != "constant":
            resolved.update(sigma_schedule=schedule, sigma_final=final)
    else:
        variant_keys = [k for k in OWN_VARIANT_KEYS if k not in ("oracle", "optimizer")]
        if "optimizer" in table:
            known = METHODS.get(base) if base in METHODS else None
            raise unknown(source, prefix + "optimizer", variant_keys + (list(parameter_types(known)) if dataclasses.is_dataclass(known) else []))
        if base == "gradient":
            raise SpecError(source, prefix + "method", "'gradient' is built from an oracle: write oracle = \"<name>\" and an optimizer table instead")
        cls = lookup(METHODS, base, source, prefix + "method" if "method" in table else "solve.variants")
        defaults = sub_table(sub_table(raw, "method", source, "method"), base, source, f"method.{base}") if ":" not in base else {}
        if dataclasses.is_dataclass(cls):  # each key named where it is written: [method.NAME] or the variant's table
            fields = list(parameter_types(cls))
            check_keys(defaults, fields, source, f"method.{base}.")
            check_keys(params, variant_keys + fields, source, prefix)
        method = build_config(cls, {**defaults, **params}, source, prefix)
        resolved = {"method": base, **{k: v for k, v in config_dict(method).items() if k != "name"}}
    method, starts = with_starts(method, table, source, prefix)
    resolved.update(starts)
    if own_iterations is not None:
        resolved["iterations"] = own_iterations
    return Variant(name=name, kind=kind, base=base, method=method, table=resolved, iterations=own_iterations)


def with_starts(method: Any, table: Mapping, source: str, prefix: str) -> tuple[Any, dict]:
    """The variant's method as K starts, best kept (`MultiStart`), when its table sets ``starts`` > 1 or a
    ``start_spread``, with the resolved keys; else the method itself and no keys."""
    if not any(k in table for k in START_KEYS):
        return method, {}
    starts = coerce(table.get("starts", 1), int, source, prefix + "starts")
    spread = coerce(table.get("start_spread", 0.0), float, source, prefix + "start_spread")
    if starts == 1 and spread == 0:
        return method, {"starts": 1}
    try:
        return MultiStart(method, starts=starts, start_spread=spread), {"starts": starts, "start_spread": spread}
    except FieldError as e:
        raise SpecError(source, prefix + e.field, f"found {e.found!r}, allowed: {e.allowed}") from None


def build_variants(raw: Mapping, solve: "SolveSpec", source: str, registry: Any = ORACLES,
                   defined: Optional[dict] = None) -> dict:
    """The variants named in ``solve.variants`` (every ``[variants.*]`` and ``[method.*]`` table is validated);
    ``defined`` (if given) receives {name: (kind, base, own keys)} of every variant built, selected or not; the own
    keys are its oracle's or method's parameters its table sets, and ``optimizer.KEY`` for each key of its own
    optimizer table (which wins over ``solve.optimizer.KEY`` of the same optimiser)."""
    tables = sub_table(raw, "variants", source, "variants")
    for name, t in tables.items():
        if not isinstance(t, dict):
            raise SpecError(source, f"variants.{name}", f"found {describe(t)}, allowed: a table (oracle = ... or method = ...)")
    for name, t in sub_table(raw, "method", source, "method").items():
        if not isinstance(t, dict):
            raise SpecError(source, f"method.{name}", f"found {describe(t)}, allowed: a table of the method's parameters")
        if name not in METHODS and ":" not in name:
            raise unknown(source, f"method.{name}", [m for m in METHODS.names() if m != "gradient"], what="method")
    built = {}
    for name in list(solve.variants) + [n for n in tables if n not in solve.variants]:
        table = tables.get(name, {})
        v = build_variant(name, table, raw, solve, source, registry)
        if defined is not None:
            own_optimizer = table.get("optimizer") if isinstance(table.get("optimizer"), dict) else {}
            own = frozenset([*(k for k in table if k not in (*OWN_VARIANT_KEYS, *GRADIENT_KEYS)),
                             *(f"optimizer.{k}" for k in own_optimizer)])
            defined[name] = (v.kind, v.base, own)
        if name in solve.variants:
            built[name] = v
    return built
