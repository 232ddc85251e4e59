"""Class tables: names, indices, colours, background aliases, finding a class by name."""

from __future__ import annotations

import pytest

from napari_samlabel.core.classes import VOC_CLASSES, ClassTable, match_classes, voc_colormap


def test_class_search_by_name():
    assert match_classes(ClassTable.voc(), "pers") == [15]
    parts = ClassTable(("dog", "hotdog", "dog/head"))
    assert match_classes(parts, "HEAD") == [3]
    assert match_classes(parts, "dog") == [1, 3, 2]      # prefix matches first
    assert match_classes(parts, "") == [1, 2, 3]
    assert match_classes(parts, "zebra") == []


def test_voc_colormap_known_values():
    cmap = voc_colormap()
    assert cmap[0].tolist() == [0, 0, 0]
    assert cmap[1].tolist() == [128, 0, 0]
    assert cmap[15].tolist() == [192, 128, 128]  # person
    assert cmap[255].tolist() == [224, 224, 192]  # void
    assert len({tuple(c) for c in cmap}) == 256


def test_class_table(tmp_path):
    voc = ClassTable.voc()
    assert voc.names == VOC_CLASSES and voc.index("dog") == 12 and voc.name(255) == "void"
    with pytest.raises(KeyError, match="unknown class"):
        voc.index("unicorn")
    f = tmp_path / "classes.txt"
    f.write_text("# parts\ndog\ndog/head\ndog/tail\ncat\n")
    t = ClassTable.from_file(f)
    assert t.names[0] == "background" and t.parent(t.index("dog/head")) == t.index("dog")
    assert t.parts(t.index("dog")) == [2, 3]
    f.write_text("dog\ndog\n")
    with pytest.raises(ValueError, match=r"classes.txt.*twice"):
        ClassTable.from_file(f)
    with pytest.raises(ValueError, match="at most 255"):
        ClassTable(tuple(f"c{i}" for i in range(300)))


@pytest.mark.parametrize("first", ["background", "_background_", "__background__",
                                   "Background"])
def test_background_aliases_are_index_0_not_a_class(tmp_path, first):
    # labelme's class_names.txt starts with "_background_": it must not become class 1.
    f = tmp_path / "classes.txt"
    f.write_text(f"{first}\ncat\ndog\n")
    t = ClassTable.from_file(f)
    assert t.names == ("background", "cat", "dog")
    assert ClassTable(("cat", "dog")).names == ("background", "cat", "dog")


def test_from_indexed_takes_entry_0_as_background_whatever_its_name():
    t = ClassTable.from_indexed(["bg", "cat", "dog"])
    assert t.names == ("background", "cat", "dog") and t.index("dog") == 2
    assert ClassTable.from_indexed(["background", "cat"]).names == ("background", "cat")
    with pytest.raises(ValueError, match="index 0"):
        ClassTable.from_indexed([])


@pytest.mark.parametrize(("name", "text"), [
    ("classes.yaml", "- cat\n- dog/head\n- dog\n"),
    ("classes.yaml", "classes:\n  - cat\n  - dog/head\n  - dog\n"),
    ("classes.yml", "classes: [cat, dog/head, dog]\n"),
    ("data.yaml", "path: ../data\nnames:\n  0: cat\n  2: dog\n  1: dog/head\n"),
    ("colours.yaml", "cat: [64, 0, 0]\ndog/head: '#ff0000'\ndog: null\n"),
    ("classes.txt", "# a YAML list in a .txt file\nclasses:\n - cat\n - dog/head\n - dog\n"),
    ("classes.yaml", "- name: cat\n- name: dog/head\n- {name: dog, color: red}\n"),
])
def test_yaml_class_lists_in_the_layouts_users_write(tmp_path, name, text):
    f = tmp_path / name
    f.write_text(text)
    t = ClassTable.from_file(f)
    assert t.names == ("background", "cat", "dog/head", "dog")
    assert t.parent(2) == 3


@pytest.mark.parametrize(("text", "match"), [
    ("classes:\n  - cat\n - dog\n", r"bad\.yaml, line 3: not valid YAML"),
    ("- cat\n- [dog, cow]\n", r"bad\.yaml: entry 2 is not a class name"),
    ("just a sentence\n", r"bad\.yaml: expected a YAML list"),
    ("classes: []\n", r"bad\.yaml: it lists no class"),
])
def test_bad_yaml_class_list_names_file_and_line(tmp_path, text, match):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ValueError, match=match):
        ClassTable.from_file(f)


def test_bundled_class_lists_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no file called voc-parts here
    parts = ClassTable.from_file("voc-parts")
    assert parts.names[:21] == VOC_CLASSES and parts.is_part(parts.index("dog/head"))
    assert ClassTable.from_file("voc") == ClassTable.voc()
    (tmp_path / "voc-parts").write_text("zebra\n")  # a file of that name wins
    assert ClassTable.from_file("voc-parts").names == ("background", "zebra")
