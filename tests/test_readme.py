"""The README's layout section names every module of the packages, and only modules that exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def layout_block() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("### Layout")
    return text[start : text.index("```", text.index("```", start) + 3)]


def modules(package: str) -> set[str]:
    return {p.name for p in (REPO / package).glob("*.py") if p.name != "__init__.py"}


def listed_under(block: str, package: str) -> set[str]:
    """The `name.py` entries of one package's part of the layout block."""
    part = block[block.index(f"\n{package}/") :]
    part = part[: re.search(r"\n\S", part[1:]).start() + 1] if re.search(r"\n\S", part[1:]) else part
    return set(re.findall(r"^\s+(\w+\.py)\b", part, flags=re.MULTILINE))


def test_every_module_is_listed_and_every_listed_module_exists() -> None:
    block = layout_block()
    for package in ("model", "service"):
        assert listed_under(block, package) == modules(package), package


def test_subpackages_name_all_their_modules() -> None:
    block = layout_block()
    for package in ("model/training", "model/tools", "service/client", "service/cli"):
        for name in modules(package):
            assert Path(name).stem in block, f"{package}/{name} is not in the README's layout"
