"""Class names of a class-conditional model, and labels given by name.

A model folder's config.json may carry its classes ("classes": one list of names per class, the
first the one shown); ImageNet-1k's 1,000 classes (WordNet lemmas, in the standard index order:
0 tench, 1 goldfish, ...) and CIFAR-10's ten ship with the package (model/data). A label can then be
given as an index or as any of a class's names: the exact spelling first, else ignoring case. A
name that fits several classes ("crane": the bird and the machine) or none is an error that lists
the candidates or the closest names. An index in text is ASCII digits ("7", "007").

`label_pattern` is the regular expression of exactly the label texts a model accepts, for a schema
that states them (the service's OpenAPI document).
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
BUILTIN = ("imagenet1k", "cifar10")


class UnknownClass(ValueError):
    """A label name that fits no class, or several; the message says which would."""


@dataclass(frozen=True)
class ClassNames:
    names: tuple[tuple[str, ...], ...]  # per class its names, the first the one shown

    @classmethod
    def builtin(cls, name: str) -> ClassNames:
        """The class names shipped with the package: imagenet1k or cifar10."""
        if name not in BUILTIN:
            raise ValueError(f"no built-in class list {name!r}; built in: {', '.join(BUILTIN)}")
        lines = (DATA / f"{name}.txt").read_text().splitlines()
        return cls(tuple(tuple(n.strip() for n in line.split(", ")) for line in lines if line.strip()))

    @classmethod
    def from_json(cls, value: Any) -> ClassNames:
        """config.json's "classes": one entry per class, a list of names or one name."""
        if not isinstance(value, list) or not value:
            raise ValueError('"classes" must be a non-empty list with one entry per class')
        out = []
        for i, entry in enumerate(value):
            names = [entry] if isinstance(entry, str) else entry
            if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
                raise ValueError(f'"classes" entry {i} must be a name or a non-empty list of names')
            out.append(tuple(names))
        return cls(tuple(out))

    @classmethod
    def from_lines(cls, text: str) -> ClassNames:
        """A text file of class names, one class per line, a class's names separated by ", "."""
        return cls.from_json([line.split(", ") for line in text.splitlines() if line.strip()])

    def to_json(self) -> list[list[str]]:
        return [list(n) for n in self.names]

    def __len__(self) -> int:
        return len(self.names)

    @property
    def shown(self) -> list[str]:
        """Each class's first name."""
        return [n[0] for n in self.names]

    def index(self, label: str) -> int:
        """The class a name (any of its names) or a decimal index stands for; UnknownClass if none or
        several do."""
        text = label.strip()
        for fold in (False, True):
            key = text.casefold() if fold else text
            found = [
                i
                for i, names in enumerate(self.names)
                if key in ((n.casefold() for n in names) if fold else names)
            ]
            if len(found) == 1:
                return found[0]
            if found:
                listed = "; ".join(f"{i} ({', '.join(self.names[i])})" for i in found)
                raise UnknownClass(
                    f"{label!r} names {len(found)} classes: {listed}; give the index or another name"
                )
        if is_index(text):
            return int(text)
        every = {n.casefold(): n for names in self.names for n in names}
        close = difflib.get_close_matches(text.casefold(), list(every), n=5, cutoff=0.6)
        hint = f"; close: {', '.join(repr(every[c]) for c in close)}" if close else ""
        raise UnknownClass(f"no class named {label!r}{hint}")


def resolve_label(label: int | str, classes: ClassNames | None, num_classes: int) -> int:
    """A request's label (an index, a decimal string, or a class name) as an index; ValueError
    (UnknownClass for names) says what would fit. The range is the caller's to check."""
    if isinstance(label, bool):
        raise ValueError(f"a label is a class index or name, got {label!r}")
    if isinstance(label, int):
        return label
    if classes is not None:
        return classes.index(label)
    if is_index(label.strip()):
        return int(label.strip())
    raise UnknownClass(
        f"no class named {label!r}: this model has no class names; give an index 0..{num_classes - 1}"
    )


def is_index(text: str) -> bool:
    """Whether a label text is a class index: ASCII digits only (str.isdigit also takes "²", which
    int() refuses, and other scripts' digits)."""
    return text.isascii() and text.isdigit()


def label_pattern(classes: ClassNames | None, num_classes: int) -> str:
    """A regular expression (of the syntax JSON Schema and Python share) matching the label texts
    `resolve_label` turns into a class of this model: surrounding whitespace, then one of its names
    that fits one class (exactly as spelt, or in any case when its case-folded form fits one class),
    or an index below num_classes in ASCII digits."""
    names = []
    if classes is not None:
        exact = Counter(n for names in classes.names for n in set(names))
        folded = Counter(f for names in classes.names for f in {n.casefold() for n in names})
        for n in sorted({n for names in classes.names for n in names}):
            if folded[n.casefold()] == 1:
                names.append(any_case(n))
            elif exact[n] == 1:
                names.append(re.escape(n))
    indices = "0*(?:" + "|".join(str(i) for i in range(num_classes)) + ")"
    return r"^\s*(?:" + "|".join([*names, indices]) + r")\s*$"


def any_case(name: str) -> str:
    """`name` as a pattern that ignores case, letter by letter (JSON Schema's patterns take no flags)."""
    out = []
    for c in name:
        cases = {c, *(v for v in (c.lower(), c.upper()) if len(v) == 1 and v.casefold() == c.casefold())}
        out.append(f"[{''.join(re.escape(v) for v in sorted(cases))}]" if len(cases) > 1 else re.escape(c))
    return "".join(out)


def check_classes(classes: ClassNames, num_classes: int, where: str) -> None:
    """A model's class names must name each of its classes."""
    if len(classes) != num_classes:
        raise ValueError(f"{where}: {len(classes)} class names for a model with {num_classes} classes")


def names_of(labels: Sequence[int | None], classes: ClassNames | None) -> list[str | None]:
    """The shown name of each label (None for the null label or a model without names)."""
    if classes is None:
        return [None] * len(labels)
    return [None if y is None or y < 0 else classes.shown[y] for y in labels]
