"""The README's layout section matches the tracked files (`git ls-files`): every module of model/
and service/ is named under its package (and nothing else is listed there), every module of a
subpackage in its subpackage's entry, and every top-level folder (weights/: each model folder)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parents[1]

PACKAGES = ("model", "service")


@pytest.fixture(scope="module")
def tracked() -> list[PurePosixPath]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    return [PurePosixPath(line) for line in out.stdout.splitlines()]


def layout_block() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("### Layout")
    opening = text.index("```", start)
    return text[opening : text.index("```", opening + 3)]


def modules(tracked: list[PurePosixPath], folder: str) -> set[str]:
    """The .py files directly in `folder`, but its __init__.py."""
    return {
        p.name for p in tracked if str(p.parent) == folder and p.suffix == ".py" and p.name != "__init__.py"
    }


def entry(block: str, name: str, indent: int) -> str:
    """The lines of one entry of the block: `name` at `indent` spaces, and its continuation lines
    (indented deeper), up to the next line at that indent or less."""
    match = re.search(rf"^ {{{indent}}}{re.escape(name)}\s.*?(?=^ {{0,{indent}}}\S|\Z)", block, re.M | re.S)
    assert match, f"{name} is not in the README's layout"
    return match.group(0)


def listed_under(block: str, package: str) -> set[str]:
    """The `name.py` entries of one package's part of the layout block."""
    part = entry(block, f"{package}/", 0)
    return set(re.findall(r"^  (\w+\.py)\s", part, flags=re.MULTILINE))


def test_every_module_is_listed_and_every_listed_module_exists(tracked: list[PurePosixPath]) -> None:
    block = layout_block()
    for package in PACKAGES:
        assert listed_under(block, package) == modules(tracked, package), package


def test_each_subpackage_entry_names_its_modules(tracked: list[PurePosixPath]) -> None:
    block = layout_block()
    subpackages = sorted(
        {str(p.parent) for p in tracked if p.name == "__init__.py" and p.parts[0] in PACKAGES}
    )
    subpackages = [s for s in subpackages if s.count("/") == 1]
    assert {"model/training", "model/tools", "service/client", "service/cli"} <= set(subpackages)
    for sub in subpackages:
        text = entry(entry(block, sub.split("/")[0] + "/", 0), sub.split("/")[1] + "/", 2)
        for name in modules(tracked, sub):
            assert re.search(rf"\b{re.escape(PurePosixPath(name).stem)}\b", text), (
                f"{sub}/{name} is not in its entry"
            )


def test_every_top_level_folder_is_listed_and_every_listed_folder_exists(
    tracked: list[PurePosixPath],
) -> None:
    block = layout_block()
    folders = {p.parts[0] for p in tracked if len(p.parts) > 1 and not p.parts[0].startswith(".")}
    folders = {f for f in folders if f != "weights"} | {
        "/".join(p.parts[:2]) for p in tracked if p.parts[0] == "weights"
    }
    listed = {m.rstrip("/") for m in re.findall(r"^(\S+/)\s", block, flags=re.MULTILINE)}
    assert listed == folders
