"""The layout section of the development page (docs/development.md) matches the tracked files
(`git ls-files`): every module of model/ and service/ is listed once, at its path, in folders that
match it (an `__init__.py` where it holds code), every listed module and folder exists, and every
top-level folder is listed (weights/: each model folder)."""

from __future__ import annotations

import ast
import re
import subprocess
from collections import Counter
from pathlib import Path, PurePosixPath

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "development.md"
PACKAGES = ("model", "service")
# An entry: two spaces per level, a file or a folder name, then its description.
ENTRY = re.compile(r"^(?P<indent>(  )*)(?P<name>[^\s]+?(\.py|/))(\s{2,}\S.*)?$")
# Lines indented this far continue the description above them.
CONTINUATION_INDENT = 20


@pytest.fixture(scope="module")
def tracked() -> list[PurePosixPath]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    return [PurePosixPath(line) for line in out.stdout.splitlines() if (REPO / line).exists()]


def layout_block(text: str) -> list[str]:
    start = text.index("## Layout")
    opening = text.index("```", start)
    block = text[text.index("\n", opening) + 1 : text.index("```", opening + 3)]
    return block.splitlines()


def listed(lines: list[str]) -> list[str]:
    """Every path the block lists (folders end with /), its folders' names joined to it."""
    stack: list[str] = []
    paths = []
    for line in lines:
        if not line.strip() or len(line) - len(line.lstrip()) >= CONTINUATION_INDENT:
            continue
        match = ENTRY.match(line)
        assert match, f"not a layout entry: {line!r}"
        depth = len(match["indent"]) // 2
        assert depth <= len(stack), f"{line!r} is indented deeper than its folder"
        stack = stack[:depth]
        path = "".join(stack) + match["name"]
        paths.append(path)
        if path.endswith("/"):
            stack.append(match["name"])
    return paths


def holds_code(path: Path) -> bool:
    """Whether a module holds more than its docstring."""
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body)


def expected_modules(tracked: list[PurePosixPath]) -> set[str]:
    return {
        str(p)
        for p in tracked
        if p.parts[0] in PACKAGES and p.suffix == ".py" and (p.name != "__init__.py" or holds_code(REPO / p))
    }


def test_every_module_is_listed_once_at_its_path(tracked: list[PurePosixPath]) -> None:
    paths = listed(layout_block(PAGE.read_text()))
    twice = [p for p, n in Counter(paths).items() if n > 1]
    assert not twice, f"listed more than once: {twice}"
    modules = {p for p in paths if p.endswith(".py")}
    expected = expected_modules(tracked)
    assert not expected - modules, f"not listed: {sorted(expected - modules)}"
    assert not modules - expected, f"listed, but not a module with code: {sorted(modules - expected)}"


def test_every_package_folder_is_listed_and_every_listed_folder_exists(tracked: list[PurePosixPath]) -> None:
    folders = {p for p in listed(layout_block(PAGE.read_text())) if p.endswith("/")}
    packages = {f"{p.parent}/" for p in tracked if p.name == "__init__.py" and p.parts[0] in PACKAGES}
    assert not packages - folders, f"packages not listed: {sorted(packages - folders)}"
    missing = [f for f in folders if not (REPO / f).is_dir()]
    assert not missing, f"listed folders that do not exist: {missing}"


def test_every_top_level_folder_is_listed(tracked: list[PurePosixPath]) -> None:
    top = {p.split("/")[0] + "/" for p in listed(layout_block(PAGE.read_text())) if p.count("/") == 1}
    top |= {p for p in listed(layout_block(PAGE.read_text())) if p.startswith("weights/")}
    folders = {p.parts[0] for p in tracked if len(p.parts) > 1 and not p.parts[0].startswith(".")}
    folders = {f"{f}/" for f in folders if f != "weights"} | {
        "/".join(p.parts[:2]) + "/" for p in tracked if p.parts[0] == "weights"
    }
    assert top == folders


def test_the_reader_catches_a_module_listed_in_the_wrong_folder() -> None:
    """The parse follows indentation: a module indented under the wrong folder gets that folder's path."""
    lines = [
        "model/        the network",
        "  tools/      tools",
        "    vae.py    misplaced",
        "  hparams.py  ok",
    ]
    assert listed(lines) == ["model/", "model/tools/", "model/tools/vae.py", "model/hparams.py"]
