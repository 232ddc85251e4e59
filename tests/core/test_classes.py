"""Class tables: finding a class by name."""

from __future__ import annotations

from napari_samlabel.core.classes import ClassTable, match_classes


def test_class_search_by_name():
    assert match_classes(ClassTable.voc(), "pers") == [15]
    parts = ClassTable(("dog", "hotdog", "dog/head"))
    assert match_classes(parts, "HEAD") == [3]
    assert match_classes(parts, "dog") == [1, 3, 2]      # prefix matches first
    assert match_classes(parts, "") == [1, 2, 3]
    assert match_classes(parts, "zebra") == []

