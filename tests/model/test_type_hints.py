"""Every public function and method of model/ says its argument and return types."""

from __future__ import annotations

import ast
from pathlib import Path

MODEL = Path(__file__).resolve().parents[2] / "model"


def unannotated(path: Path) -> list[str]:
    """`line name [missing]` for each public function of one module that lacks an annotation."""
    found: list[str] = []

    def visit(node: ast.AST, public: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, public and not child.name.startswith("_"))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) and public:
                if child.name.startswith("_") and child.name != "__init__":
                    continue
                a = child.args
                params = [*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, [a.vararg, a.kwarg])]
                missing = [p.arg for p in params if p.annotation is None and p.arg not in ("self", "cls")]
                if child.returns is None and child.name != "__init__":
                    missing.append("return")
                if missing:
                    found.append(f"{child.lineno} {child.name} {missing}")

    visit(ast.parse(path.read_text()), True)
    return found


def test_public_functions_of_model_have_type_hints() -> None:
    paths = sorted(MODEL.rglob("*.py"))
    assert len(paths) > 30
    assert [f"{p.relative_to(MODEL.parent)}:{line}" for p in paths for line in unannotated(p)] == []


def test_the_check_finds_a_missing_hint(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f(a: int, b) -> int:\n    return a\n\n"
        "class C:\n    def g(self):\n        pass\n\n    def _private(self, x):\n        pass\n"
    )
    assert unannotated(probe) == ["1 f ['b']", "5 g ['return']"]
