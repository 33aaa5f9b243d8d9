"""The layout stays true: imports point one way, no module imports itself back, and
every package the product imports is declared."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.paths import PROJECT_ROOT

PACKAGES = ("sandbox", "scanner", "service", "workers", "review_ui", "rules")
# Who may import whom, by top-level package (itself always allowed).
ALLOWED = {
    "rules": set(),
    "sandbox": set(),
    "scanner": {"sandbox", "rules"},
    "service": {"scanner", "sandbox", "rules"},
    "workers": {"service", "scanner", "sandbox"},
    "review_ui": {"service", "scanner", "sandbox"},
}
# The WSGI composition root builds the Celery job queue; nothing else in the web app
# knows the workers exist.
COMPOSITION_ROOTS = {("review_ui.wsgi", "workers")}
# Frameworks that belong to one side only.
FORBIDDEN_THIRD_PARTY = {
    "sandbox": {"flask", "werkzeug", "celery", "kombu", "sqlalchemy", "gunicorn"},
    "scanner": {"flask", "werkzeug", "celery", "kombu", "gunicorn"},
    "service": {"flask", "werkzeug", "celery", "kombu", "gunicorn"},
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PROJECT_ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (PROJECT_ROOT / package).rglob("*.py"):
            found[_module_name(path)] = path
    return found


def _imports(path: Path, name: str, modules: dict[str, Path]) -> Iterator[str]:
    """Every module this file imports, wherever the statement is (functions and
    TYPE_CHECKING blocks included): a deferred import is still a dependency."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield candidate if candidate in modules else base


def _resolve(target: str, modules: dict[str, Path]) -> list[str]:
    """The product modules an import runs: the module and every package above it."""
    parts = target.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in modules]


def import_graph() -> dict[str, set[str]]:
    modules = product_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for target in _imports(path, name, modules):
            edges.update(_resolve(target, modules))
        edges.discard(name)
        # A module's own parent packages run first anyway; importing them is no cycle.
        graph[name] = {e for e in edges if not name.startswith(e + ".")}
    return graph


def third_party_imports() -> dict[str, set[str]]:
    """Top-level names of non-product, non-stdlib imports, per product package."""
    modules = product_modules()
    out: dict[str, set[str]] = {}
    for name, path in modules.items():
        for target in _imports(path, name, modules):
            top = target.split(".")[0]
            if top and top not in PACKAGES and top not in sys.stdlib_module_names:
                out.setdefault(name.split(".")[0], set()).add(top)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
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
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_one_that_imports_it_back() -> None:
    assert cycles(import_graph()) == []


def test_imports_point_one_way() -> None:
    wrong = []
    for module, targets in import_graph().items():
        home = module.split(".")[0]
        for target in targets:
            there = target.split(".")[0]
            if there == home or there in ALLOWED[home] or (module, there) in COMPOSITION_ROOTS:
                continue
            wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_the_analysis_side_imports_no_web_or_queue_framework() -> None:
    imports = third_party_imports()
    wrong = {
        package: sorted(imports.get(package, set()) & forbidden)
        for package, forbidden in FORBIDDEN_THIRD_PARTY.items()
    }
    assert wrong == {package: [] for package in FORBIDDEN_THIRD_PARTY}


def test_importing_the_whole_scanner_loads_no_service_flask_or_celery() -> None:
    scanner_modules = sorted(
        m
        for m in product_modules()
        if m.split(".")[0] in ("scanner", "sandbox") and ".migrations" not in m
    )
    probe = (
        "import importlib, sys\n"
        f"for m in {scanner_modules!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('service', 'review_ui', 'workers', 'flask', 'celery', 'kombu', 'werkzeug'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=PROJECT_ROOT
    )
    assert out.stdout.strip() == ""


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_package_is_declared() -> None:
    requirements = importlib.metadata.requires("gatehouse") or []
    declared = {_normalise(re.split(r"[\s;\[<>=!~]", r, maxsplit=1)[0]) for r in requirements}
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for package, names in third_party_imports().items():
        for name in sorted(names):
            dists = {_normalise(d) for d in providers.get(name, [])}
            if not dists:
                missing[name] = f"imported by {package}, no installed distribution provides it"
            elif not dists & declared:
                missing[name] = f"imported by {package}, provided by {sorted(dists)}, not declared"
    assert missing == {}


@pytest.mark.parametrize("package", ["scanner", "sandbox", "service", "workers", "review_ui"])
def test_each_package_says_what_it_is(package: str) -> None:
    init = PROJECT_ROOT / package / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
    assert doc, f"{package}/__init__.py needs a docstring saying what the package holds"
