"""Class names: the built-in lists, labels given by name, and the errors for names that fit none or
several classes."""

from __future__ import annotations

import pytest

from model.classes import ClassNames, UnknownClass, resolve_label


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
