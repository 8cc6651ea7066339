"""`trajopt validate` and `trajopt list`: look at problem files and registries without running anything."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

import trajopt
from trajopt.cli._common import JsonOpt, ProblemArg, SetOpt, app, fail, fmt, load_spec, out


@app.command()
def validate(
    problem: Path = ProblemArg,
    set_: Optional[List[str]] = SetOpt,
    json_out: bool = JsonOpt,
):
    """Check PROBLEM and print its sizes, horizon, stability margin and initial cost J(U0)."""
    import math

    spec = load_spec(problem, list(set_ or []))
    prob = spec.problem()
    import jax

    j0 = float(jax.jit(prob.objective)(prob.U0))
    system = spec.system
    dt = getattr(system, "dt", math.nan)
    stable = float(system.stable_dt()) if hasattr(system, "stable_dt") else math.inf
    info = {
        "problem": str(problem), "title": spec.title, "system": spec.system_name,
        "state_size": int(system.state_size), "control_size": int(system.control_size),
        "horizon": spec.task.horizon, "decision_size": prob.dimension, "dt": dt,
        "stable_dt": stable, "stability_margin": (stable / dt) if math.isfinite(stable) and dt > 0 else None,
        "initial_cost": j0, "oracles": list(spec.solve.oracles), "variants": list(spec.variants),
        "iterations": spec.solve.iterations,
        "seeds": list(spec.solve.seeds),
    }
    if json_out:
        from trajopt.runs import dumps_json

        sys.stdout.write(dumps_json(info))
        return
    table = Table(title=f"{problem}: valid", title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    margin = info["stability_margin"]
    rows = [
        ("title", spec.title), ("system", spec.system_name),
        ("state / control size", f"{info['state_size']} / {info['control_size']}"),
        ("horizon T", str(info["horizon"])), ("decision size d = T·m", str(info["decision_size"])),
        ("dt", fmt(dt)),
        ("stability margin", "no explicit limit" if margin is None else f"{margin:.2f}× (largest stable dt {fmt(stable, 4)})"),
        ("J(U0)", f"{j0:.4f}" if math.isfinite(j0) else f"{j0} (not finite: the initial guess already blows up)"), ("variants (compare)", ", ".join(
            f"{n} ({v.base})" if n != v.base else n for n, v in spec.variants.items())),
        ("iterations × seeds", f"{spec.solve.iterations} × {len(spec.solve.seeds)}"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    out.print(table)


def problem_files() -> list[Path]:
    """Shipped problem files: ./problems and the source tree's problems/ folder."""
    roots = [Path.cwd() / "problems", Path(trajopt.__file__).resolve().parent.parent / "problems"]
    seen, files = set(), []
    for root in roots:
        if root.is_dir():
            for f in sorted(root.glob("*.toml")):
                if f.resolve() not in seen:
                    seen.add(f.resolve())
                    files.append(f)
    return files


@app.command("list")
def list_(what: str = typer.Argument("problems", help="problems, systems, oracles, methods or optimizers.")):
    """List shipped problems, systems, oracles, methods or optimizers."""
    import inspect

    kinds = ("systems", "oracles", "methods", "optimizers")
    if what == "problems":  # no JAX: the file titles only
        from trajopt import tomlio

        table = Table(title="Shipped problems", title_justify="left")
        table.add_column("file")
        table.add_column("title")
        for f in problem_files():
            try:
                title = tomlio.read_toml(f).get("title", "")
            except tomlio.TomlError as e:
                title = f"[red]{e.message}[/]"
            try:
                shown = str(f.relative_to(Path.cwd()))
            except ValueError:
                shown = str(f)
            table.add_row(shown, str(title))
        out.print(table)
        return
    if what not in kinds:
        raise fail(f"list: found {what!r}, allowed: problems, {', '.join(kinds)}")
    from trajopt.methods import METHODS
    from trajopt.optim import OPTIMIZERS
    from trajopt.oracles import ORACLES
    from trajopt.systems import SYSTEMS

    reg = {"systems": SYSTEMS, "oracles": ORACLES, "methods": METHODS, "optimizers": OPTIMIZERS}[what]
    table = Table(title=what.capitalize(), title_justify="left")
    table.add_column("name")
    table.add_column("description")
    for name in reg:
        entry = reg.get(name)
        # each entry's own line: its module's summary when the module holds just it, else the class's docstring
        own = inspect.getdoc(entry) if entry.__doc__ else None
        module_doc = inspect.getdoc(sys.modules[entry.__module__]) or ""
        doc = module_doc if sum(1 for n in reg if reg.get(n).__module__ == entry.__module__) == 1 and module_doc else own or ""
        first = doc.strip().split("\n\n")[0].replace("\n", " ")
        table.add_row(escape(name), escape(first))
    out.print(table)
