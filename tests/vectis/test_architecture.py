"""The house rules of the layout (README "Layout"), checked on the source so they cannot
quietly regress: imports point one way, there is no import circle, product modules import
at module level, and the vendor's name stays in its provider's rooms."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A -> the apps A may import (A imports B). vectis composes everything; nothing imports it.
ALLOWED: dict[str, set[str]] = {
    "access": {"integrations"},  # (integrations.crypto: second factors encrypted at rest)
    "customers": set(),
    "integrations": {"customers"},
    "backups": {"integrations", "customers"},
    "keepit": {"backups", "integrations", "customers"},
    "alerts": {"backups", "integrations", "customers"},
    "keepit_sandbox": {"keepit", "backups", "alerts", "integrations", "customers"},
    "vectis": {"access", "customers", "integrations", "backups", "alerts"},
}
APPS = set(ALLOWED)
# Where the vendor may be named: its provider, its simulator, and the settings that list
# the provider and its options.
VENDOR_ROOMS = {"keepit", "keepit_sandbox"}


def product_modules() -> Iterator[tuple[str, Path]]:
    for app in sorted(APPS):
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" not in path.parts:
                yield app, path


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(app: str, path: Path, tree: ast.Module) -> Iterator[tuple[str, ast.stmt]]:
    package = (
        module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else (module_name(path))
    )
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, node.module] if node.module else base)
            elif node.module:
                target = node.module
            else:
                continue
            # `from x import y`: y may be a module of package x.
            for alias in node.names:
                yield f"{target}.{alias.name}", node


def parsed() -> list[tuple[str, Path, ast.Module]]:
    return [(app, path, ast.parse(path.read_text())) for app, path in product_modules()]


def test_imports_point_one_way() -> None:
    wrong = []
    for app, path, tree in parsed():
        for target, node in imported_modules(app, path, tree):
            top = target.split(".")[0]
            if top in APPS and top != app and top not in ALLOWED[app]:
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {target}")
    assert wrong == []


def test_there_is_no_import_circle_between_modules() -> None:
    modules = {module_name(path): (app, path, tree) for app, path, tree in parsed()}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (app, path, tree) in modules.items():
        for target, _node in imported_modules(app, path, tree):
            # `from x import y` names either module x.y or a name in module x.
            for candidate in (target, target.rsplit(".", 1)[0]):
                if candidate in modules and candidate != name:
                    graph[name].add(candidate)
                    break
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    assert cycles == []


def test_product_modules_import_at_module_level() -> None:
    """Only an AppConfig.ready() may import inside a function (Django asks for it there),
    or a line that says why (`# local import: <why>`)."""
    local = []
    for _app, path, tree in parsed():
        lines = path.read_text().splitlines()
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if node.name == "ready" and path.name == "apps.py":
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    if "# local import: " in lines[inner.lineno - 1]:
                        continue
                    local.append(f"{path.relative_to(ROOT)}:{inner.lineno} in {node.name}()")
    assert local == []


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def test_the_vendor_is_named_only_in_its_provider() -> None:
    """Code, strings the user may see and templates outside keepit/ and keepit_sandbox/
    name a vendor by its provider's label, never "Keepit" (docstrings may cite it as an
    example; the settings list the provider and its options)."""
    found = []
    for app, path, tree in parsed():
        if app in VENDOR_ROOMS or path.name.startswith("settings"):
            continue
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            text = ""
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) in docstrings:
                    continue
                text = node.value
            elif isinstance(node, ast.Name):
                text = node.id
            elif isinstance(node, ast.Attribute):
                text = node.attr
            if "keepit" in text.lower():
                found.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)} {text[:60]!r}")
    for template in sorted((ROOT / "templates").rglob("*")):
        if template.is_file() and "keepit" in template.read_text().lower():
            found.append(str(template.relative_to(ROOT)))
    assert found == []


@pytest.mark.parametrize("app", sorted(APPS - {"vectis", "keepit_sandbox"}))
def test_no_app_imports_the_project_package(app: str) -> None:
    for path in (ROOT / app).rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for target, node in imported_modules(app, path, ast.parse(path.read_text())):
            assert target.split(".")[0] != "vectis", f"{path.relative_to(ROOT)}:{node.lineno}"
