"""Tests of the per-image object store: round trips, cheap crash-safe autosave, validation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.core.document import AnnotationDocument, ImageStatus
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.prompts import Box, Point, Scribble
from napari_samlabel.io import project_store as store_mod
from napari_samlabel.io.project import Project
from napari_samlabel.io.project_schema import (
    OBJECTS_FILE,
    ProjectError,
)
from tests.io.projects import H, W, accept, assert_edit_refused, files, rect, saved_project


def test_document_round_trip_keeps_everything(project: Project, tmp_path: Path):
    doc = project.load_document("a")
    assert doc.objects == () and doc.status == ImageStatus.NEW
    prompts = [Point((5.5, 6.0)), Point((1, 2), positive=False), Box((3, 4), (20, 30)),
               Scribble(np.array([[1, 1], [10, 12.5]]), positive=False, width=3)]
    o1 = accept(doc, rect(2, 20, 3, 30), 2, 0.91, prompts)
    o2 = accept(doc, rect(10, 40, 20, 60), 3, 0.75)  # overlaps o1: both full masks kept
    project.save_document(doc)
    loaded = Project.open(tmp_path / "proj").load_document("a")
    assert loaded.status == ImageStatus.IN_PROGRESS
    assert [o.object_id for o in loaded.objects] == [o1.object_id, o2.object_id]
    for a, b in zip(doc.objects, loaded.objects, strict=True):
        np.testing.assert_array_equal(a.mask, b.mask)
        assert (a.class_id, a.score, a.model_id, a.prompts) == (b.class_id, b.score,
                                                               b.model_id, b.prompts)
        assert dict(a.signals) == dict(b.signals)
        assert (a.created, a.modified) == (b.created, b.modified)
    np.testing.assert_array_equal(loaded.label_maps()[0], doc.label_maps()[0])


def test_one_accept_writes_one_mask_and_edits_replace_files(project: Project):
    doc = project.load_document("b")
    for k in range(3):
        accept(doc, rect(5 * k, 5 * k + 4, 0, 10))
    project.save_document(doc)
    folder = project.annotation_dir("b")
    before = files(folder)
    assert len(before) == 4  # 3 masks + objects.json
    accept(doc, rect(30, 40, 30, 40))
    project.save_document(doc)
    after = files(folder)
    new = set(after) - set(before)
    assert len(new) == 1 and next(iter(new)).startswith("obj-004-")
    for name, mtime in before.items():
        if name != OBJECTS_FILE:
            assert after[name] == mtime  # untouched
    # Reopen object 2 with a new mask: its old PNG goes, a new one replaces it.
    doc.reopen(2)
    doc.set_prompts(doc.current.prompts + (Point((20, 20)),))
    doc.set_prediction(doc.current.prompts, rect(15, 25, 15, 25), 0.8, None, "tiny")
    doc.accept()
    project.save_document(doc)
    final = files(folder)
    assert len(final) == 5
    assert not any(n.startswith("obj-002-") and n in before for n in final)
    reloaded = project.load_document("b")
    np.testing.assert_array_equal(reloaded.get(2).mask, rect(15, 25, 15, 25))


def test_crash_during_save_keeps_previous_state(project: Project, tmp_path: Path,
                                                monkeypatch):
    doc = project.load_document("a")
    accept(doc, rect(0, 10, 0, 10))
    project.save_document(doc)
    accept(doc, rect(20, 30, 20, 30))

    def crash(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_mod, "atomic_write_text", crash)
    with pytest.raises(OSError):
        project.save_document(doc)
    monkeypatch.undo()
    folder = project.annotation_dir("a")
    assert len([p for p in folder.iterdir() if p.name.startswith("obj-")]) == 2  # orphan PNG
    reopened = Project.open(tmp_path / "proj").load_document("a")
    assert [o.object_id for o in reopened.objects] == [1]
    # The next successful save removes the orphan, this writer's temporary files and other
    # writers' ones left by a crash (old); another writer's fresh one may be in flight.
    old = folder / ".objects.json.x.tmp"
    old.write_text("half")
    os.utime(old, (time.time() - 2 * store_mod.STALE_TEMP_S,) * 2)
    (folder / f".obj-002-x.png.{os.getpid()}-abc.tmp").write_text("mine")
    (folder / ".obj-003-y.png.999999-abc.tmp").write_text("in flight")
    project.save_document(reopened)
    assert sorted(p.name[:7] for p in folder.iterdir()) == [".obj-00", "obj-001", "objects"]
    assert (folder / ".obj-003-y.png.999999-abc.tmp").is_file()


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["objects"][0].update(class_id="dog"),
     r"objects\[0\]: field 'class_id' must be an integer"),
    (lambda d: d["objects"][1].update(class_id=9), r"objects\[1\]: field 'class_id' 9"),
    (lambda d: d["objects"][1].update(object_id=1), r"objects\[1\]: duplicate object_id 1"),
    (lambda d: d["objects"][0].pop("mask"), r"objects\[0\]: missing field 'mask'"),
    (lambda d: d["objects"][0].update(mask="../../x.png"), "must be a file name"),
    (lambda d: d["objects"][0].update(mask="obj-nope.png"), r"mask file .*obj-nope\.png"),
    (lambda d: d["objects"][0].update(class_name="cat"), "the class list was changed"),
    (lambda d: d["objects"][0].update(score="high"), "field 'score' must be a finite"),
    (lambda d: d["objects"][0]["prompts"]["prompts"].append({"type": "lasso"}),
     "field 'prompts': unknown prompt type 'lasso'"),
    (lambda d: d.update(shape=[10, 10]), "field 'shape' is"),
    (lambda d: d.update(schema_version=99), "newer napari-samlabel"),
])
def test_bad_annotation_files_name_file_and_field(project: Project, edit, match):
    assert_edit_refused(project, saved_project(project), edit, match)


def test_bad_json_and_bad_masks(project: Project):
    path = saved_project(project)
    good = path.read_text()
    path.write_text(good[:-20])
    with pytest.raises(ProjectError, match=r"objects\.json: invalid JSON at line \d+"):
        project.load_document("a")
    path.write_text(good)
    mask = next(project.annotation_dir("a").glob("obj-001-*.png"))
    Image.fromarray(np.zeros((H, W + 2), bool)).save(mask)
    with pytest.raises(ProjectError, match=r"is 48x66 but the image is 48x64"):
        project.load_document("a")
    mask.write_bytes(b"garbage")
    with pytest.raises(ProjectError, match="cannot read mask"):
        project.load_document("a")


def test_only_json_and_png_on_disk(project: Project, tmp_path: Path):
    saved_project(project)
    suffixes = {p.suffix for p in (tmp_path / "proj").rglob("*") if p.is_file()}
    assert suffixes == {".json", ".png"}


def test_mask_name_cache_is_bounded(tmp_path: Path, images: Path):
    for k in range(6):
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(images / f"x{k}.png")
    project = Project.create(tmp_path / "p", images)
    for iid in project.image_ids:
        doc = project.load_document(iid)
        accept(doc, rect(0, 5, 0, 5))
        project.save_document(doc)
    assert len(project._store._mask_names) <= 4  # a long session keeps a handful of masks alive
    assert [len(project.read_objects(i)) for i in project.image_ids] == [1] * 9


CHILD = r"""
import sys, numpy as np
from napari_samlabel.core.document import AnnotationDocument
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.io.project import Project
project = Project.open(sys.argv[1])
h, w = int(sys.argv[2]), int(sys.argv[3])
objects = []
for k in range(1, 250):
    m = np.zeros((h, w), bool)
    m[k % 40:k % 40 + 5, k % 60:k % 60 + 5] = True
    objects.append(AnnotatedObject(k, 1 + k % 3, m))
    project.save_document(AnnotationDocument("a", (h, w), objects, "in_progress"))
    print(k, flush=True)
"""


@pytest.mark.parametrize("kill_after", [5, 23])
def test_sigkill_during_autosave_loses_nothing_saved(project: Project, tmp_path: Path,
                                                     kill_after: int):
    import signal

    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "proj"), str(H), str(W)],
                             stdout=subprocess.PIPE, text=True)
    try:
        last = 0
        while last < kill_after:
            line = child.stdout.readline()
            assert line, "the child process stopped early"
            last = int(line)
        child.send_signal(signal.SIGKILL)  # most likely in the middle of the next save
    finally:
        child.wait(timeout=30)
        child.stdout.close()
    doc = Project.open(tmp_path / "proj").load_document("a")
    ids = [o.object_id for o in doc.objects]
    assert ids[:last] == list(range(1, last + 1)) and len(ids) in (last, last + 1)
    assert all(o.mask.sum() == 25 for o in doc.objects)


def test_object_attributes_round_trip_and_survive_reopen(project: Project, tmp_path: Path):
    obj = AnnotatedObject(1, 2, rect(0, 10, 0, 10), (Point((2, 2)),), 0.9, "tiny",
                          attributes={"pose": "Left", "truncated": True, "difficult": False,
                                      "occluded": 1})
    project.save_document(AnnotationDocument("a", (H, W), [obj], "done"))
    doc = Project.open(tmp_path / "proj").load_document("a")
    assert dict(doc.get(1).attributes) == {"pose": "Left", "truncated": True,
                                           "difficult": False, "occluded": 1}
    # Refining the object (reopen, new mask, accept) keeps what is known about it.
    doc.reopen(1)
    doc.set_prediction(doc.current.prompts, rect(0, 12, 0, 12), 0.95, None, "tiny")
    doc.accept()
    project.save_document(doc)
    again = Project.open(tmp_path / "proj").load_document("a").get(1)
    assert again.area == 144 and dict(again.attributes)["pose"] == "Left"
    path = project.annotation_dir("a") / OBJECTS_FILE
    for bad, match in [({"difficult": "yes"}, "attribute 'difficult' must be true/false"),
                       ({"pose": 3}, "attribute 'pose' must be a string"),
                       ({"x": [1]}, "attribute 'x' must be a string, number"),
                       ("Left", "field 'attributes' must be an object")]:
        raw = json.loads(path.read_text())
        raw["objects"][0]["attributes"] = bad
        path.write_text(json.dumps(raw))
        with pytest.raises(ProjectError, match=match) as info:
            project.load_document("a")
        assert str(path) in str(info.value)
    with pytest.raises(ProjectError, match="attribute 'truncated'"):
        project.save_document(AnnotationDocument("b", (H, W), [
            AnnotatedObject(1, 1, rect(0, 5, 0, 5), attributes={"truncated": "no"})]))


# -- schema version 3: parent links of parts ---------------------------------------------------
CAT, DOG, HEAD = 1, 2, 3  # the ``project`` fixture's classes: cat, dog, dog/head


def parts_project(project: Project) -> AnnotationDocument:
    doc = project.load_document("a")
    accept(doc, rect(0, 40, 0, 30), DOG, 0.5)  # 1
    accept(doc, rect(0, 40, 30, 64), DOG, 0.5)  # 2
    accept(doc, rect(5, 15, 5, 15), HEAD, 0.99)  # 3: inside dog 1
    accept(doc, rect(5, 15, 40, 50), HEAD, 0.99)  # 4: inside dog 2, given dog 1 below
    accept(doc, rect(42, 48, 0, 5), HEAD, 0.99)  # 5: no dog under it
    accept(doc, rect(40, 48, 40, 64), CAT)  # 6
    doc.set_parent(4, 1)
    project.save_document(doc)
    return doc


def test_parent_links_round_trip(project: Project, tmp_path: Path):
    doc = parts_project(project)
    raw = json.loads((project.annotation_dir("a") / OBJECTS_FILE).read_text())
    links = {r["object_id"]: (r["parent_id"], r["parent_fixed"]) for r in raw["objects"]}
    assert links == {1: (None, False), 2: (None, False), 3: (1, False), 4: (1, True),
                     5: (None, False), 6: (None, False)}
    loaded = Project.open(tmp_path / "proj").load_document("a")
    assert loaded.classes == project.classes
    assert [(o.parent_id, o.parent_fixed) for o in loaded.objects] == list(links.values())
    for mine, theirs in zip(loaded.label_maps() + loaded.part_maps(),
                            doc.label_maps() + doc.part_maps(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert not (loaded.label_maps()[0] == HEAD).any()  # parts are not in the object maps
    assert loaded.part_at(10, 10) == 3 and loaded.object_at(10, 10) == 1
    # The explicit link survives editing in the reloaded document.
    loaded.remove_object(6)
    assert loaded.parent_of(4) == 1


def test_a_document_without_classes_is_saved_with_resolved_links(project: Project):
    flat = AnnotationDocument("a", (H, W), [
        AnnotatedObject(1, DOG, rect(0, 40, 0, 30)),
        AnnotatedObject(2, HEAD, rect(5, 10, 5, 10)),
        AnnotatedObject(3, CAT, rect(0, 5, 40, 50), parent_id=1)])  # stale: a cat has none
    project.save_document(flat)
    assert [o.parent_id for o in project.read_objects("a")] == [None, 1, None]


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["objects"][2].update(parent_id=9),
     r"objects\[2\]: field 'parent_id' 9 is not an object of this image"),
    (lambda d: d["objects"][2].update(parent_id=6),
     r"objects\[2\]: field 'parent_id' 6 is a 'cat', but the parent of a 'dog/head' must "
     r"be a 'dog'"),
    (lambda d: d["objects"][5].update(parent_id=1),
     r"objects\[5\]: field 'parent_id' is 1, but class 'cat' is not a part class"),
    (lambda d: d["objects"][2].update(parent_id="1"), r"objects\[2\]: field 'parent_id' must be"),
    (lambda d: d["objects"][2].update(parent_id=3), r"objects\[2\]: field 'parent_id' must be"),
    (lambda d: d["objects"][4].update(parent_fixed=True),
     r"objects\[4\]: field 'parent_fixed' is true but 'parent_id' is null"),
    (lambda d: d["objects"][3].update(parent_fixed="yes"),
     r"objects\[3\]: field 'parent_fixed' must be true/false"),
])
def test_bad_parent_links_name_file_and_field(project: Project, edit, match):
    parts_project(project)
    assert_edit_refused(project, project.annotation_dir("a") / OBJECTS_FILE, edit, match)
