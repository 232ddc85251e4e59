"""Weak boxes and points for the prompter: from a project folder and from a VOC tree."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.document import ImageStatus
from napari_samlabel.core.prompts import Point
from napari_samlabel.io.project import Project
from napari_samlabel.learn.prompter_data import read_weak_dataset, split_of
from tests.io.projects import H, W, accept, rect


def test_project_objects_give_mask_boxes_and_clicks(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(images / f"{name}.png")
    project = Project.create(tmp_path / "proj", images, ["background", "dog", "dog/head"])
    doc = project.load_document("a")
    accept(doc, rect(5, 20, 10, 30), 1, prompts=[Point((12.0, 15.0))])
    accept(doc, rect(5, 9, 10, 16), 2)
    project.save_document(doc)
    project.set_status("b", ImageStatus.DONE)  # done without objects: a negative image
    data = read_weak_dataset(tmp_path / "proj")
    assert data.kind == "project" and [i.image_id for i in data.images] == ["a", "b"]
    a = data.images[0]
    np.testing.assert_array_equal(a.boxes[0], [10, 5, 29, 19])  # x0, y0, x1, y1 of the mask
    np.testing.assert_array_equal(a.points[0], [15, 12])         # its click as (x, y)
    assert a.labels.tolist() == [1, 2] and len(data.images[1].labels) == 0
    parts = read_weak_dataset(tmp_path / "proj", level="parts")
    assert parts.images[0].labels.tolist() == [2]


def test_voc_boxes_and_parts(tmp_path):
    voc = tmp_path / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "Annotations").mkdir()
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(voc / "JPEGImages" / "x.jpg")
    (voc / "Annotations" / "x.xml").write_text(
        "<annotation><object><name>dog</name><bndbox><xmin>3</xmin><ymin>5</ymin>"
        "<xmax>30</xmax><ymax>35</ymax></bndbox><part><name>head</name><bndbox><xmin>3</xmin>"
        "<ymin>5</ymin><xmax>11</xmax><ymax>13</ymax></bndbox></part><part><name>hand</name>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></part>"
        "</object></annotation>")
    (voc / "Annotations" / "y.xml").write_text("<annotation></annotation>")  # no image
    table = ClassTable(("background", "dog", "dog/head"))
    data = read_weak_dataset(voc, table)
    (img,) = data.images
    np.testing.assert_array_equal(img.boxes, [[2, 4, 29, 34], [2, 4, 10, 12]])  # 0-based
    assert img.labels.tolist() == [1, 2]  # "hand" is not a listed part: left out
    np.testing.assert_array_equal(img.points[1], [6, 8])
    assert "y" in data.skipped
    with pytest.raises(ValueError, match="no weak object"):
        read_weak_dataset(voc, ClassTable(("background", "dog", "cat")), level="parts")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="neither a napari-samlabel project nor a VOC"):
        read_weak_dataset(tmp_path / "plain")


def test_split_is_stable_and_near_the_fraction():
    ids = [f"im{i}" for i in range(400)]
    val = [i for i in ids if split_of(i, 0.25) == "val"]
    assert [i for i in ids if split_of(i, 0.25) == "val"] == val
    assert 0.18 < len(val) / len(ids) < 0.32
