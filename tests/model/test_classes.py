"""Class names: the built-in lists, labels given by name, the errors for names that fit none or
several classes, and the pattern of exactly the label texts a model takes."""

from __future__ import annotations

import re

import pytest

from model.classes import ClassNames, UnknownClass, label_pattern, resolve_label


@pytest.fixture(scope="module")
def imagenet():
    return ClassNames.builtin("imagenet1k")


def test_the_built_in_lists_are_in_the_standard_order(imagenet):
    assert len(imagenet) == 1000 and imagenet.shown[:2] == ["tench", "goldfish"]
    assert imagenet.shown[207] == "golden retriever" and imagenet.shown[999] == "toilet tissue"
    assert ClassNames.builtin("cifar10").shown == [
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    ]  # fmt: skip


def test_any_name_of_a_class_in_any_case(imagenet):
    assert imagenet.index("golden retriever") == 207
    assert imagenet.index("Golden Retriever") == 207
    assert imagenet.index("Carassius auratus") == 1
    assert imagenet.index(" 207 ") == 207  # no class is named "207": an index


def test_exact_spelling_settles_what_case_cannot(imagenet):
    assert imagenet.index("Cardigan") == 264  # the Welsh corgi
    assert imagenet.index("cardigan") == 474  # the sweater


def test_a_name_of_several_classes_lists_them(imagenet):
    with pytest.raises(UnknownClass, match=r"'crane' names 2 classes: 134 \(crane\); 517 \(crane\)"):
        imagenet.index("crane")


def test_an_unknown_name_suggests_close_ones(imagenet):
    with pytest.raises(UnknownClass, match=r"no class named 'golden retreiver'; close: 'golden retriever'"):
        imagenet.index("golden retreiver")


def test_resolving_labels_without_names():
    assert resolve_label(3, None, 10) == 3 and resolve_label("3", None, 10) == 3
    with pytest.raises(UnknownClass, match=r"this model has no class names; give an index 0..9"):
        resolve_label("cat", None, 10)
    with pytest.raises(ValueError, match="class index or name"):
        resolve_label(True, None, 10)


def test_json_forms():
    names = ClassNames.from_json(["a", ["b", "bee"]])
    assert names.to_json() == [["a"], ["b", "bee"]] and names.index("BEE") == 1
    with pytest.raises(ValueError, match="entry 1"):
        ClassNames.from_json(["a", []])


def test_an_index_is_ascii_digits():
    assert resolve_label(" 007 ", None, 10) == 7
    for text in ("²", "٣", "3.0", "-1"):  # str.isdigit takes the first two; int("²") fails
        with pytest.raises(UnknownClass):
            resolve_label(text, None, 10)


def candidates(classes: ClassNames | None) -> list[str]:
    """Texts around the names of some of the classes (each 25th: an unknown name costs a search for
    close ones), the names of several classes, and indices."""
    names = [n for names in (classes.names[::25] if classes else ()) for n in names]
    texts = ["", " ", "0", "9", "10", "007", "0010", "²", "٣", " 3 ", "3x", "crane", "CRANE"]
    texts += ["Cardigan", "cardigan", "CARDIGAN"]
    for n in names:
        texts += [n, n.upper(), n.title(), f" {n}\t", n + "s", n[:-1]]
    return texts


@pytest.mark.parametrize("which", ["imagenet1k", "cifar10", None])
def test_the_label_pattern_matches_exactly_the_texts_that_name_a_class(which):
    classes = ClassNames.builtin(which) if which else None
    n = len(classes) if classes else 10
    pattern = re.compile(label_pattern(classes, n))
    for text in candidates(classes):
        try:
            named = resolve_label(text, classes, n) < n
        except UnknownClass:
            named = False
        assert bool(pattern.match(text)) == named, repr(text)
