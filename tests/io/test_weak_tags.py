"""Image-level tags: VOC ImageSets/Main files, JSON and CSV, and the phrase of each class."""

from __future__ import annotations

import json

import pytest

from napari_samlabel.core.classes import ClassTable, name_phrase
from napari_samlabel.io.weak import WeakLabelError, read_weak_labels
from napari_samlabel.io.weak.tags import (
    phrase_key,
    read_phrases,
    read_tags_csv,
    text_labels,
)

VOC = ClassTable.voc()
CAT, DOG, PLANT = VOC.index("cat"), VOC.index("dog"), VOC.index("pottedplant")


def _main(tmp_path):
    main = tmp_path / "VOC2012" / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "cat_train.txt").write_text("a  1\nb -1\nc  0\n")
    (main / "dog_train.txt").write_text("a -1\nb  1\nc -1\n")
    (main / "dog_val.txt").write_text("d  1\n")
    (main / "train.txt").write_text("a\nb\nc\n")  # the split list: not a tag file
    return tmp_path / "VOC2012", main


def test_voc_tag_files(tmp_path):
    root, main = _main(tmp_path)
    got = read_weak_labels(root, "tags")
    assert {i: w.class_ids for i, w in got.items()} == {
        "a": [CAT], "b": [DOG], "c": [CAT], "d": [DOG]}  # 0 (difficult) is present
    assert got["a"].kind == "tags" and got["a"].objects[0].prompts == ()
    assert got["c"].origins == ("cat_train.txt line 3",)
    train = read_weak_labels(main, "tags", split="train")
    assert sorted(train) == ["a", "b", "c"]
    (main / "cat_train.txt").write_text("a 1\nb 1\nc -1\n")
    (main / "dog_train.txt").write_text("a -1\nb -1\nc -1\n")
    none = read_weak_labels(root, "tags", split="train")
    assert none["c"].class_ids == []  # listed, nothing present: background only


def test_voc_tag_errors_name_the_file_and_line(tmp_path):
    root, main = _main(tmp_path)
    (main / "dog_train.txt").write_text("a -1\nb yes\n")
    with pytest.raises(WeakLabelError, match=r"dog_train.txt \(line 2\).*<1\|0\|-1>"):
        read_weak_labels(root, "tags")
    with pytest.raises(WeakLabelError, match="no <class>_test.txt"):
        read_weak_labels(root, "tags", split="test")
    with pytest.raises(WeakLabelError, match=r"ImageSets: no <class>_<split>.txt tag files"):
        read_weak_labels(tmp_path / "VOC2012" / "ImageSets", "tags")


def test_json_tags(tmp_path):
    path = tmp_path / "tags.json"
    path.write_text(json.dumps({"a.jpg": ["cat", "pottedplant"], "b": [12], "c": "cat"}))
    got = read_weak_labels(path, "tags")
    assert {i: w.class_ids for i, w in got.items()} == {
        "a": [CAT, PLANT], "b": [DOG], "c": [CAT]}
    path.write_text(json.dumps({"a": ["cat"], "b": ["unicorn"]}))
    with pytest.raises(WeakLabelError, match=r"tags.json \(image 'b', entry 0\)"):
        read_weak_labels(path, "tags")
    errors = []
    got = read_weak_labels(path, "tags", on_error=errors.append)
    assert list(got) == ["a"] and errors[0].image_id == "b"
    path.write_text("[1, 2]")
    with pytest.raises(WeakLabelError, match="expected an object"):
        read_weak_labels(path, "tags")


def test_csv_tags(tmp_path):
    path = tmp_path / "tags.csv"
    path.write_text("image_id,class\na,cat\na,dog\n\nb,Dog\n")
    got = read_tags_csv(path)
    assert {i: w.class_ids for i, w in got.items()} == {"a": [CAT, DOG], "b": [DOG]}
    assert got["a"].origins == ("line 2", "line 3")
    path.write_text("a,cat\nb\n")
    with pytest.raises(WeakLabelError, match=r"tags.csv \(line 2\).*image_id,class"):
        read_weak_labels(path, "tags")
    path.write_text("a,background\n")
    with pytest.raises(WeakLabelError, match="background is not a tag"):
        read_weak_labels(path, "tags")
    with pytest.raises(TypeError, match="split"):
        read_weak_labels(path, "tags", split="train")


def test_phrases(tmp_path):
    assert name_phrase("pottedplant") == "potted plant"
    assert name_phrase("tvmonitor") == "tv monitor"
    assert name_phrase("diningtable") == "dining table"
    assert name_phrase("traffic_light") == "traffic light"
    assert name_phrase("cat", {"cat": "house cat"}) == "house cat"
    assert phrase_key("Potted  plant") == phrase_key("pottedplant")
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text("pottedplant: plant in a pot\nCat: kitty\n")
    assert read_phrases(yaml_file, VOC) == {"pottedplant": "plant in a pot", "cat": "kitty"}
    json_file = tmp_path / "p.json"
    json_file.write_text('{"unicorn": "horn"}')
    with pytest.raises(WeakLabelError, match="p.json"):
        read_phrases(json_file, VOC)
    json_file.write_text('["cat"]')
    with pytest.raises(WeakLabelError, match="mapping"):
        read_phrases(json_file)


def test_text_kind_has_every_class_and_no_file():
    got = text_labels(["b", "a"], VOC)
    assert list(got) == ["a", "b"] and got["a"].class_ids == list(range(1, 21))
    with pytest.raises(ValueError, match="no weak-label file"):
        read_weak_labels("anything", "text")
