"""The service's layers: no module imports from a layer above its own, and the server never imports
the tools beside it (the command, the client, the benchmarks).

Read from the source (ast), so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"

# Bottom to top: a module may import from its own layer and the layers below it.
LAYERS = [
    (
        "foundation",
        ["service.settings", "service.errors", "service.metrics", "service.wire", "service.runtime"],
    ),
    ("registry", ["service.registry"]),
    ("http", ["service.http"]),
    ("batching", ["service.batching"]),
    ("inputs", ["service.inputs"]),
    ("state", ["service.state"]),
    ("api", ["service.api"]),
    ("app", ["service.app", "service.__main__", "service"]),
]
# Beside the server, never imported by it: each may use the server, the server none of them.
TOOLS = ["service.cli", "service.client", "service.bench", "service.healthcheck"]


def module_name(path: Path) -> str:
    parts = path.relative_to(SERVICE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(name: str) -> int | None:
    """The index of the layer `name` belongs to (the most specific prefix), None for a tool."""
    if any(within(name, tool) for tool in TOOLS):
        return None
    best, found = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if within(name, prefix) and len(prefix) > best:
                best, found = len(prefix), i
    assert found is not None, f"{name} is in no layer: add it to LAYERS or TOOLS"
    return found


def imported(path: Path) -> set[str]:
    """The service modules `path` imports (absolute, or relative resolved against its package)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            out.add(base)
            out |= {f"{base}.{alias.name}" for alias in node.names}  # `from . import x` imports x
    return {m for m in out if within(m, "service")}


def real_modules(names: set[str]) -> set[str]:
    """Of dotted names, those that are modules or packages of the service (not functions in one)."""
    found = set()
    for name in names:
        rel = Path(*name.split("."))
        if (SERVICE.parent / rel).with_suffix(".py").is_file() or (
            SERVICE.parent / rel / "__init__.py"
        ).is_file():
            found.add(name)
    return found


def sources() -> list[Path]:
    return sorted(p for p in SERVICE.rglob("*.py") if "static" not in p.parts)


def test_every_module_is_in_a_layer_or_a_tool() -> None:
    for path in sources():
        layer_of(module_name(path))  # asserts


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = []
    for path in sources():
        name = module_name(path)
        own = layer_of(name)
        if own is None:
            continue
        for target in real_modules(imported(path)):
            if target == "service" and own == len(LAYERS) - 1:
                continue
            theirs = layer_of(target)
            if theirs is None:
                upward.append(f"{name} imports the tool {target}")
            elif theirs > own:
                upward.append(f"{name} ({LAYERS[own][0]}) imports {target} ({LAYERS[theirs][0]})")
    assert not upward, "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The import reader resolves relative imports, so an upward one cannot slip through."""
    probe = SERVICE / "http" / "server.py"
    assert "service.connections" not in imported(probe)
    assert "service.http.connections" in imported(probe)
    assert layer_of("service.http.server") < layer_of("service.state") < layer_of("service.api.routing")
