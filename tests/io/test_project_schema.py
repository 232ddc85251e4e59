"""Tests of the project schema: versions, migrations and the validation of the project file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.core.document import ImageStatus
from napari_samlabel.core.prompts import Point
from napari_samlabel.io.project import Project
from napari_samlabel.io.project_schema import (
    OBJECTS_FILE,
    PROJECT_FILE,
    SCHEMA_VERSION,
    ProjectError,
)
from tests.io.projects import H, W, rect


def test_newer_schema_is_refused(project: Project, tmp_path: Path):
    path = tmp_path / "proj" / PROJECT_FILE
    raw = json.loads(path.read_text())
    raw["schema_version"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(raw))
    with pytest.raises(ProjectError, match="newer napari-samlabel.*Upgrade"):
        Project.open(tmp_path / "proj")


def test_bad_project_file(project: Project, tmp_path: Path):
    path = tmp_path / "proj" / PROJECT_FILE
    raw = json.loads(path.read_text())
    raw["images"][1]["status"] = "finished"
    path.write_text(json.dumps(raw))
    with pytest.raises(ProjectError, match=r"images\[1\]: field 'status' is 'finished'"):
        Project.open(tmp_path / "proj")
    raw["images"][1]["status"] = "new"
    raw["images"][1]["id"] = "a"
    path.write_text(json.dumps(raw))
    with pytest.raises(ProjectError, match=r"images\[1\]: duplicate image id 'a'"):
        Project.open(tmp_path / "proj")
    raw["images"][1]["id"] = "../evil"
    path.write_text(json.dumps(raw))
    with pytest.raises(ProjectError, match="not a valid image id"):
        Project.open(tmp_path / "proj")
    with pytest.raises(ProjectError, match="not a napari-samlabel project"):
        Project.open(tmp_path)


# -- schema version 2: splits, reviews, object attributes, the session file ----------------
V1_PROJECT = {
    "format": "samlabel-project", "schema_version": 1, "written_by": "napari-samlabel 0.1.0",
    "created": 1795327790.47, "modified": 1795327790.48,
    "classes": ["background", "cat", "dog"],
    "images": [{"id": "a", "path": "../images/a.jpg", "height": H, "width": W,
                "status": "done"},
               {"id": "b", "path": "../images/b.png", "height": H, "width": W,
                "status": "new"}],
}
V1_OBJECTS = {
    "format": "samlabel-annotation", "schema_version": 1, "image_id": "a", "shape": [H, W],
    "saved": 1795327790.48,
    "objects": [{"object_id": 1, "class_id": 2, "class_name": "dog", "mask": "obj-001-x.png",
                 "area": 200, "prompts": {"object_id": 1, "class_id": 2, "prompts": [
                     {"type": "point", "rc": [5.0, 6.0], "positive": True}]},
                 "score": 0.9, "model_id": "vit_b", "signals": {"stability": 0.5},
                 "created": 1795327790.47, "modified": 1795327790.47}],
}


def test_version_1_project_reads_unchanged_and_is_written_in_the_current_version(
        tmp_path: Path, images: Path):
    folder = tmp_path / "proj"
    (folder / "annotations" / "a").mkdir(parents=True)
    (folder / PROJECT_FILE).write_text(json.dumps(V1_PROJECT))
    (folder / "annotations/a" / OBJECTS_FILE).write_text(json.dumps(V1_OBJECTS))
    Image.fromarray(rect(0, 10, 0, 20)).save(folder / "annotations/a/obj-001-x.png")
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    project = Project.open(folder)
    assert project.classes.names == ("background", "cat", "dog")
    assert [(e.image_id, e.status, e.split, e.review) for e in project] == [
        ("a", ImageStatus.DONE, None, None), ("b", ImageStatus.NEW, None, None)]
    [obj] = project.read_objects("a")
    assert (obj.object_id, obj.class_id, obj.score, obj.model_id) == (1, 2, 0.9, "vit_b")
    assert dict(obj.attributes) == {} and obj.prompts == (Point((5.0, 6.0)),)
    np.testing.assert_array_equal(obj.mask, rect(0, 10, 0, 20))
    assert project.reviews() == {} and project.last_position() == (None, None)
    # Reading changed nothing on disk; the next write is the current version.
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    project.set_status("b", "in_progress")
    project.save_document(project.load_document("a"))
    assert json.loads((folder / PROJECT_FILE).read_text())["schema_version"] == SCHEMA_VERSION
    assert json.loads((folder / "annotations/a" / OBJECTS_FILE).read_text())[
        "schema_version"] == SCHEMA_VERSION == 3
    assert Project.open(folder).read_objects("a")[0].class_id == 2


@pytest.mark.parametrize("edit, match", [
    (lambda im: im.update(split="test"), r"images\[0\]: split 'test' is not one of"),
    (lambda im: im.update(review={"decision": "maybe", "time": 1.0}),
     r"images\[0\]: review: decision 'maybe'"),
    (lambda im: im.update(review={"decision": "accepted"}),
     r"images\[0\]: review: missing field 'time'"),
    (lambda im: im.update(review="rejected"), r"images\[0\]: review: expected an object"),
])
def test_bad_split_or_review_in_the_file_names_field(project: Project, tmp_path: Path, edit,
                                                     match):
    path = tmp_path / "proj" / PROJECT_FILE
    raw = json.loads(path.read_text())
    edit(raw["images"][0])
    path.write_text(json.dumps(raw))
    with pytest.raises(ProjectError, match=match) as info:
        Project.open(tmp_path / "proj")
    assert str(path) in str(info.value)


def test_version_2_parts_are_linked_from_the_pixels(tmp_path: Path, images: Path):
    folder = tmp_path / "proj"
    (folder / "annotations" / "a").mkdir(parents=True)
    v2 = dict(V1_PROJECT, schema_version=2, classes=["background", "cat", "dog", "dog/head"])
    (folder / PROJECT_FILE).write_text(json.dumps(v2))
    head = json.loads(json.dumps(V1_OBJECTS["objects"][0]))
    head.update(object_id=2, class_id=3, class_name="dog/head", mask="obj-002-x.png")
    objects = dict(V1_OBJECTS, schema_version=2, objects=[V1_OBJECTS["objects"][0], head])
    (folder / "annotations/a" / OBJECTS_FILE).write_text(json.dumps(objects))
    Image.fromarray(rect(0, 10, 0, 20)).save(folder / "annotations/a/obj-001-x.png")
    Image.fromarray(rect(2, 5, 2, 5)).save(folder / "annotations/a/obj-002-x.png")
    project = Project.open(folder)
    assert [o.parent_id for o in project.read_objects("a")] == [None, None]  # as stored
    doc = project.load_document("a")
    assert doc.parent_of(2) == 1 and not doc.get(2).parent_fixed
    project.save_document(doc)
    raw = json.loads((folder / "annotations/a" / OBJECTS_FILE).read_text())
    assert raw["schema_version"] == 3 and raw["objects"][1]["parent_id"] == 1
