"""`trajopt validate` and `trajopt list`: look at problem files and registries without running anything."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.text import Text
from rich.table import Table

import trajopt
from trajopt.cli._common import (
    JsonOpt, ProblemArg, SetOpt, app, check_sets, fail, fmt, load_spec, out, preflight, title_text,
)


@app.command()
def validate(
    problem: Path = ProblemArg,
    set_: Optional[List[str]] = SetOpt,
    json_out: bool = JsonOpt,
):
    """Check PROBLEM and print its sizes, horizon, stability margin and initial cost J(U0)."""
    import math

    spec = load_spec(problem, list(set_ or []))
    check_sets(spec, set_, "all", "validate")  # an override that neither compare nor diagnose would use: exit 2
    prob = spec.problem()
    preflight(spec, prob)  # what compare would refuse: a variant that cannot run, user code that does not trace
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
    table = Table(title=title_text(f"{problem}: valid"), title_justify="left", show_header=False)
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
    for k, v in rows:  # user text (title, names) shown as written, never as rich markup: a Text is never parsed
        table.add_row(k, Text(v))  # (rich's escape() drops the backslash of "\[[x]]" and doubles a trailing one)
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
def list_(what: str = typer.Argument("problems", help="problems, systems, oracles, methods, optimizers or policies.")):
    """List shipped problems, systems, oracles, methods, optimizers or policies."""
    kinds = ("systems", "oracles", "methods", "optimizers", "policies")
    if what == "problems":  # no JAX: the file titles only
        from trajopt import tomlio

        table = Table(title="Shipped problems", title_justify="left")
        table.add_column("file")
        table.add_column("title")
        for f in problem_files():
            try:  # a file's title is shown as written, never as rich markup
                cell = Text(str(tomlio.read_toml(f).get("title", "")))
            except tomlio.TomlError as e:
                cell = f"[red]{escape(e.message)}[/]"
            try:
                shown = str(f.relative_to(Path.cwd()))
            except ValueError:
                shown = str(f)
            table.add_row(escape(shown), cell)
        out.print(table)
        return
    if what not in kinds:
        raise fail(f"list: found {what!r}, allowed: problems, {', '.join(kinds)}")
    rows = static_registry_rows(what) or registry_rows(what)
    table = Table(title=what.capitalize(), title_justify="left")
    table.add_column("name")
    table.add_column("description")
    for name, first in rows:
        table.add_row(escape(name), escape(first))
    out.print(table)


# ------------------------------------------------------------------------- registry listings (with and without JAX)

_REGISTRY_SOURCES = {"systems": "systems/__init__.py", "oracles": "oracles/__init__.py",
                     "methods": "methods/__init__.py", "optimizers": "optim.py"}


def _first_paragraph(doc: str) -> str:
    return doc.strip().split("\n\n")[0].replace("\n", " ")


def registry_rows(what: str) -> list[tuple[str, str]]:
    """(name, description) of each registered entry, read from the imported registry (imports JAX): its module's
    summary when the module holds just it, else the class's docstring."""
    import inspect

    from trajopt.methods import METHODS
    from trajopt.optim import OPTIMIZERS
    from trajopt.oracles import ORACLES
    from trajopt.policies import POLICIES
    from trajopt.systems import SYSTEMS

    reg = {"systems": SYSTEMS, "oracles": ORACLES, "methods": METHODS, "optimizers": OPTIMIZERS, "policies": POLICIES}[what]
    rows = []
    for name in reg:
        entry = reg.get(name)
        own = inspect.getdoc(entry) if entry.__doc__ else None
        module_doc = inspect.getdoc(sys.modules[entry.__module__]) or ""
        doc = module_doc if sum(1 for n in reg if reg.get(n).__module__ == entry.__module__) == 1 and module_doc else own or ""
        rows.append((name, _first_paragraph(doc)))
    return rows


def static_registry_rows(what: str) -> Optional[list[tuple[str, str]]]:
    """`registry_rows` without importing anything: the registrations (``REG.register("name", Class)``, or a loop
    ``for c in (A, B): REG.register(c.name, c)`` with ``name: ClassVar[str] = "..."``, either under
    ``if find_spec("extra") is not None:``) and the docstrings are read
    from the package's source with `ast`. None when the source holds anything else (the caller then imports);
    tests/test_performance.py checks it against `registry_rows`."""
    import ast

    root = Path(trajopt.__file__).resolve().parent
    try:
        source = root / _REGISTRY_SOURCES[what]
        tree = ast.parse(source.read_text())
        modules: dict[str, Path] = {}  # class name -> the file defining it
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("trajopt."):
                path = root.joinpath(*node.module.split(".")[1:]).with_suffix(".py")
                for alias in node.names:
                    modules[alias.asname or alias.name] = path
            elif isinstance(node, ast.ClassDef):
                modules[node.name] = source
        parsed: dict[Path, ast.Module] = {}

        def klass(name):
            path = modules[name]
            if path not in parsed:
                parsed[path] = ast.parse(path.read_text())
            for node in parsed[path].body:
                if isinstance(node, ast.ClassDef) and node.name == name:
                    return path, node
            raise LookupError(name)

        def class_name_attr(node: ast.ClassDef) -> str:
            for item in node.body:
                target = item.target if isinstance(item, ast.AnnAssign) else (
                    item.targets[0] if isinstance(item, ast.Assign) and len(item.targets) == 1 else None)
                if isinstance(target, ast.Name) and target.id == "name" and isinstance(item.value, ast.Constant):
                    return item.value.value
            raise LookupError(node.name)

        entries: list[tuple[str, str]] = []  # (registered name, class name)

        def registration(call, loop_var=None, loop_class=None):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "register"):
                return False
            key, value = call.args
            if isinstance(key, ast.Constant) and isinstance(value, ast.Name):
                entries.append((key.value, value.id))
            elif (loop_var and isinstance(key, ast.Attribute) and isinstance(key.value, ast.Name) and key.value.id == loop_var
                  and key.attr == "name" and isinstance(value, ast.Name) and value.id == loop_var):
                entries.append((class_name_attr(klass(loop_class)[1]), loop_class))
            else:
                raise LookupError("register")
            return True

        def installed(test) -> bool:
            """``find_spec("pkg") is not None`` (a registration under an optional extra), evaluated without importing
            the package; any other condition is left to the import."""
            if (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.IsNot)
                    and isinstance(test.comparators[0], ast.Constant) and test.comparators[0].value is None
                    and isinstance(test.left, ast.Call) and isinstance(test.left.func, ast.Name)
                    and test.left.func.id == "find_spec" and len(test.left.args) == 1
                    and isinstance(test.left.args[0], ast.Constant) and isinstance(test.left.args[0].value, str)):
                from importlib.util import find_spec
                return find_spec(test.left.args[0].value) is not None
            raise LookupError("condition")

        body = list(tree.body)
        while body:
            node = body.pop(0)
            if isinstance(node, ast.If):  # registered only where an optional extra is installed
                body[:0] = node.body if installed(node.test) else node.orelse
            elif isinstance(node, ast.Expr):
                registration(node.value)
            elif isinstance(node, ast.For) and isinstance(node.target, ast.Name) and isinstance(node.iter, ast.Tuple):
                calls = [b.value for b in node.body if isinstance(b, ast.Expr)]
                if len(calls) == len(node.body) == 1 and all(isinstance(e, ast.Name) for e in node.iter.elts):
                    for elt in node.iter.elts:
                        registration(calls[0], node.target.id, elt.id)
        if not entries:
            return None
        paths = {cls: klass(cls)[0] for _, cls in entries}
        rows = []
        for name, cls in entries:
            path, node = klass(cls)
            module_doc = ast.get_docstring(parsed[path]) or ""
            if sum(1 for p in paths.values() if p == path) == 1 and module_doc:
                doc = module_doc
            else:
                doc = ast.get_docstring(node)
                if doc is None:  # a dataclass's generated or an inherited docstring: leave it to the import
                    return None
            rows.append((name, _first_paragraph(doc)))
        return rows
    except (OSError, SyntaxError, LookupError, ValueError, KeyError):
        return None
