"""The package's import graph: every module imports on its own in a fresh interpreter, and no two trajopt modules
import each other, directly or round a longer circle, at module level (read from the sources with `ast`, so a
circle is found even where Python would tolerate it today by the order modules happen to load in).

A function-level import of a trajopt module is allowed where it defers a heavy dependency (JAX on the CLI's
start-up path, matplotlib, mujoco, ray); it is not counted as an edge. Imports under ``if TYPE_CHECKING:`` are
annotations only and not counted either.
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "trajopt"


def module_names() -> dict[str, Path]:
    """{dotted module name: file} of every module of the package (a package is its __init__.py)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return "TYPE_CHECKING" in ast.unparse(test)


def module_level_imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The trajopt modules ``name`` imports when it is imported: its import statements outside functions (and
    outside ``if TYPE_CHECKING:``), each target with the packages above it (importing ``a.b.c`` runs ``a`` and
    ``a.b`` first)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def target(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = name.split(".") if is_package else name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue  # runs when called, not when the module is imported
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = target(child)
                for a in child.names:  # `from trajopt import spec` imports the module trajopt.spec
                    found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    edges = set()
    for t in found:
        while t and t not in modules:  # `import trajopt.x.Name`-style targets: the module that holds them
            t = t.rpartition(".")[0]
        parts = t.split(".")
        for i in range(1, len(parts) + 1):
            above = ".".join(parts[:i])
            if above in modules and above != name and not name.startswith(above + "."):
                edges.add(above)  # a package's own submodules run after it: their parent is no edge of theirs
    return edges


@functools.lru_cache(maxsize=None)
def import_graph() -> dict[str, set[str]]:
    """{module: the trajopt modules it imports at module level} for the whole package (read once per session)."""
    modules = module_names()
    return {name: module_level_imports(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def connect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_the_graph_reader_finds_a_planted_circle_and_skips_deferred_and_annotation_imports(tmp_path):
    """The reader itself: a circle through a package's __init__ is found; a function-level and a TYPE_CHECKING
    import are not edges."""
    files = {
        "trajopt/__init__.py": "",
        "trajopt/a.py": "from trajopt.sub.b import thing\n",
        "trajopt/sub/__init__.py": "from trajopt.sub import b\n",
        "trajopt/sub/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from trajopt import c\n"
                            "def f():\n    from trajopt import a\nthing = 1\n",
        "trajopt/c.py": "import trajopt.a\n",
        "trajopt/d.py": "from . import a\nfrom .sub import b\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    modules = {}
    for rel in files:
        parts = rel[:-3].split("/")
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = tmp_path / rel
    graph = {n: module_level_imports(n, p, modules) for n, p in modules.items()}
    assert graph["trajopt.a"] == {"trajopt.sub", "trajopt.sub.b"}  # the package above b too; a's own is no edge
    assert graph["trajopt.sub.b"] == set()  # neither the deferred import nor the annotation-only one
    assert graph["trajopt.d"] == {"trajopt.a", "trajopt.sub", "trajopt.sub.b"}  # relative imports
    assert cycles(graph) == []
    (tmp_path / "trajopt/sub/b.py").write_text("from trajopt.c import x\nthing = 1\n")  # b -> c -> a -> b
    graph = {n: module_level_imports(n, p, modules) for n, p in modules.items()}
    assert cycles(graph) == [["trajopt.a", "trajopt.c", "trajopt.sub", "trajopt.sub.b"]]
    assert shortest_circle(graph, cycles(graph)[0]) == ["trajopt.a", "trajopt.sub.b", "trajopt.c", "trajopt.a"]


def shortest_circle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One shortest circle through the first module of a component, as a path that ends where it starts."""
    start, inside = component[0], set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & inside):
                if w == start:
                    return paths[v] + [start]
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    nxt.append(w)
        frontier = nxt
    return component


def test_no_module_of_the_package_imports_itself_round_a_circle():
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import circles among trajopt modules (module-level imports): " + "; ".join(
        " -> ".join(shortest_circle(graph, c)) + f" ({len(c)} modules in the knot)" for c in found)


def test_the_entry_point_and_the_cli_do_not_import_each_other():
    graph = import_graph()
    assert "trajopt._entry" not in graph["trajopt.cli"] and "trajopt.cli" not in graph["trajopt._entry"]
    cli_source = (PACKAGE / "cli" / "__init__.py").read_text(encoding="utf-8")
    assert "_entry" not in cli_source.split('"""', 2)[-1]  # not even deferred: the console script calls the app


def test_the_ground_floor_imports_no_jax_and_nothing_above_it():
    """The file format's ground floor (SpecError, FieldError, the table checks, the bounds) imports no other trajopt
    module but each other and the registry's error type, so that every owner of a table can use it."""
    graph = import_graph()
    floor = {"trajopt", "trajopt.tomlio", "trajopt.checks", "trajopt.limits", "trajopt.registry", "trajopt.tables",
             "trajopt._setup"}
    for name in ("trajopt.tomlio", "trajopt.checks", "trajopt.limits", "trajopt.tables"):
        assert graph[name] <= floor, (name, graph[name] - floor)
    code = "import sys, trajopt.tables; print(sorted(m for m in ('jax', 'optax', 'matplotlib') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", (done.stdout, done.stderr[-2000:])


@pytest.mark.slow  # about 6 s on 2 cores: JAX, matplotlib, pyarrow and every module once
def test_every_module_imports_in_a_fresh_interpreter():
    """Every module, in one new interpreter, in name order. Modules of optional extras import their extra only when
    used (mujoco, ray), so every module imports with the [test] extra alone."""
    names = [n for n in sorted(module_names()) if n != "trajopt.__main__"]  # __main__ runs the CLI
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    done = subprocess.run([sys.executable, "-c", code, *names], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
