"""A problem file's ``[oracle]`` tables: the oracles' parameters.

    [oracle]                # scalar keys: defaults for every oracle that has that parameter
    sigma = 0.1
    samples = 100
    [oracle.aobg]           # one oracle's own parameters (they win over the shared ones)
    gamma = 0.01

Every ``[oracle.NAME]`` table in the file is validated, used or not; a shared key must be a parameter of some
registered oracle. The oracles built are those of ``solve.oracles`` (`build_oracles`); a variant of an oracle
starts from the same parameters (`oracle_params`) and may override them in its own table
(`trajopt.methods.variants`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Container, Mapping, Sequence

from trajopt.oracles import ORACLES
from trajopt.registry import UnknownName
from trajopt.tables import build_config, parameter_types, unknown
from trajopt.tomlio import SpecError


def oracle_fields(registry: Any = ORACLES) -> set[str]:
    """Every parameter name of every oracle in ``registry``: the keys the shared [oracle] table may set."""
    fields: set[str] = set()
    for name in registry:
        cls = registry.get(name)
        if dataclasses.is_dataclass(cls):
            fields.update(parameter_types(cls))
    return fields


def oracle_params(raw: Mapping, cls: type, name: str) -> dict:
    """An oracle's parameters from the [oracle] table: the shared scalars it has, then its own table."""
    own = parameter_types(cls) if dataclasses.is_dataclass(cls) else {}
    params = {k: v for k, v in raw.items() if not isinstance(v, dict) and k in own}
    table = raw.get(name, {})
    params.update(table if isinstance(table, dict) else {})
    return params


def build_oracles(raw: Mapping, names: Sequence[str], source: str, registry: Any = ORACLES,
                  methods: Container[str] = ()) -> dict:
    """The oracles named in ``solve.oracles`` ({name: config}); every ``[oracle.<name>]`` table in the file is
    validated, used or not. ``methods``: the registered method names, so that a method named among the oracles
    is refused with where it belongs."""
    shared = {k: v for k, v in raw.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in raw.items() if isinstance(v, dict)}
    known_fields = sorted(oracle_fields(registry))
    for k in shared:
        if k not in known_fields:
            allowed = known_fields + [f"[oracle.<name>] tables for {', '.join(registry.names())}"]
            raise unknown(source, f"oracle.{k}", allowed)
    for k in tables:
        if k not in registry and ":" not in k:
            raise unknown(source, f"oracle.{k}", registry.names(), what="oracle")
    oracles = {}
    for name in list(names) + [t for t in tables if t not in names]:
        try:
            cls = registry.get(name)
        except UnknownName as e:
            hint = (f"; {name!r} is a method: name it in solve.variants (--variants), not solve.oracles (--oracles)"
                    if name in methods else "")
            raise SpecError(source, "solve.oracles" if name in names else f"oracle.{name}", str(e) + hint) from None
        try:
            built = build_config(cls, oracle_params(raw, cls, name), source, f"oracle.{name}.")
        except SpecError as e:  # a shared [oracle] key is named as written (oracle.sigma), not as it landed
            field = e.key.rpartition(".")[2]
            own = tables.get(name, {})
            if e.key == f"oracle.{name}.{field}" and field in shared and field not in own:
                raise SpecError(source, f"oracle.{field}", f"{e.message} (the shared key, as {name}'s {field})") from None
            raise
        if name in names:
            oracles[name] = built
    return oracles
