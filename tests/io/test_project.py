"""Tests of the project folder: round trips, cheap crash-safe autosave, validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from napari_samlabel.core.document import AnnotationDocument, ImageStatus
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.prompts import Box, Point, Scribble
from napari_samlabel.io import project as project_mod
from napari_samlabel.io.project import (
    OBJECTS_FILE,
    PROJECT_FILE,
    SCHEMA_VERSION,
    Project,
    ProjectError,
)

H, W = 48, 64


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    base = data.astronaut()[: H * 8 : 8, : W * 8 : 8]
    for name in ("a.jpg", "b.png", "c.jpg"):
        Image.fromarray(base).save(folder / name)
    return folder


@pytest.fixture()
def project(tmp_path: Path, images: Path) -> Project:
    return Project.create(tmp_path / "proj", images, ["cat", "dog", "dog/head"])


def rect(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[r0:r1, c0:c1] = True
    return m


def accept(doc: AnnotationDocument, mask: np.ndarray, class_id: int = 1, score: float = 0.9,
           prompts=None) -> AnnotatedObject:
    doc.set_current_class(class_id)
    doc.set_prompts(prompts or [Point((float(mask.nonzero()[0][0]), float(mask.nonzero()[1][0])))])
    doc.set_prediction(doc.current.prompts, mask, score, np.zeros((256, 256), np.float32), "tiny")
    obj = doc.accept(signals={"stability": 0.5})
    assert obj is not None
    return obj


def files(folder: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def test_create_and_open(project: Project, tmp_path: Path):
    assert project.image_ids == ["a", "b", "c"]
    assert project.entry("a").path == "../images/a.jpg"
    assert project.entry("b").shape == (H, W)
    assert project.image_path("b") == (tmp_path / "images" / "b.png").resolve()
    again = Project.open(tmp_path / "proj")
    assert again.image_ids == project.image_ids
    assert again.classes.names == ("background", "cat", "dog", "dog/head")
    assert [e.status for e in again] == [ImageStatus.NEW] * 3
    raw = json.loads((tmp_path / "proj" / PROJECT_FILE).read_text())
    assert raw["schema_version"] == SCHEMA_VERSION and raw["format"] == "samlabel-project"
    with pytest.raises(FileExistsError):
        Project.create(tmp_path / "proj", tmp_path / "images")
    assert Project.open_or_create(tmp_path / "proj", []).image_ids == ["a", "b", "c"]
    with pytest.raises(KeyError, match="'zzz' is not in project"):
        project.entry("zzz")


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

    monkeypatch.setattr(project_mod, "atomic_write_text", crash)
    with pytest.raises(OSError):
        project.save_document(doc)
    monkeypatch.undo()
    folder = project.annotation_dir("a")
    assert len([p for p in folder.iterdir() if p.name.startswith("obj-")]) == 2  # orphan PNG
    reopened = Project.open(tmp_path / "proj").load_document("a")
    assert [o.object_id for o in reopened.objects] == [1]
    # The next successful save removes the orphan and anything stale.
    (folder / ".objects.json.x.tmp").write_text("half")
    project.save_document(reopened)
    assert sorted(p.name[:7] for p in folder.iterdir()) == ["obj-001", "objects"]


def test_status_is_saved(project: Project, tmp_path: Path):
    project.set_status("c", "flagged")
    doc = project.load_document("a")
    doc.set_status(ImageStatus.DONE)
    project.save_document(doc)
    again = Project.open(tmp_path / "proj")
    assert [again.status(i) for i in again.image_ids] == [ImageStatus.DONE, ImageStatus.NEW,
                                                          ImageStatus.FLAGGED]
    assert again.next_unfinished() == "b" and again.next_unfinished("b") == "b"
    with pytest.raises(ValueError):
        project.set_status("a", "finished")


def test_duplicate_image_ids_refused(tmp_path: Path, images: Path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(images / "a.png")
    with pytest.raises(ProjectError, match=r"two images have the id 'a'.*a\.(jpg|png)"):
        Project.create(tmp_path / "p", images)
    assert not (tmp_path / "p" / PROJECT_FILE).exists()


def test_missing_image_at_create(tmp_path: Path):
    with pytest.raises(ProjectError, match=r"not found: .*nope\.jpg"):
        Project.create(tmp_path / "p", [tmp_path / "nope.jpg"])


def test_newer_schema_is_refused(project: Project, tmp_path: Path):
    path = tmp_path / "proj" / PROJECT_FILE
    raw = json.loads(path.read_text())
    raw["schema_version"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(raw))
    with pytest.raises(ProjectError, match="newer napari-samlabel.*Upgrade"):
        Project.open(tmp_path / "proj")


def saved_project(project: Project) -> Path:
    doc = project.load_document("a")
    accept(doc, rect(0, 10, 0, 10), 2)
    accept(doc, rect(20, 30, 20, 30), 1)
    project.save_document(doc)
    return project.annotation_dir("a") / OBJECTS_FILE


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


def assert_edit_refused(project: Project, path: Path, edit, match: str) -> None:
    """Edit the objects file at ``path``; loading must fail naming the file and ``match``."""
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))
    with pytest.raises(ProjectError, match=match) as info:
        project.load_document("a")
    assert str(path) in str(info.value)


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


def test_only_json_and_png_on_disk(project: Project, tmp_path: Path):
    saved_project(project)
    suffixes = {p.suffix for p in (tmp_path / "proj").rglob("*") if p.is_file()}
    assert suffixes == {".json", ".png"}


def test_add_class_keeps_indices(project: Project, tmp_path: Path):
    saved_project(project)
    assert project.add_class("bird") == 4
    again = Project.open(tmp_path / "proj")
    assert again.classes.names[-1] == "bird"
    assert [o.class_id for o in again.load_document("a").objects] == [2, 1]


def test_add_new_images_from_the_folder(project: Project, images: Path, tmp_path: Path):
    assert project.add_new_images(images) == []
    Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(images / "d.png")
    Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(images / "a.bmp")  # id taken
    with pytest.warns(UserWarning, match=r"a\.bmp is not added: the id 'a'"):
        assert project.add_new_images(images) == ["d"]
    again = Project.open(tmp_path / "proj")
    assert again.image_ids == ["a", "b", "c", "d"]
    assert again.entry("d").shape == (8, 9) and again.status("d") == ImageStatus.NEW


def test_mask_name_cache_is_bounded(tmp_path: Path, images: Path):
    for k in range(6):
        Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(images / f"x{k}.png")
    project = Project.create(tmp_path / "p", images)
    for iid in project.image_ids:
        doc = project.load_document(iid)
        accept(doc, rect(0, 5, 0, 5))
        project.save_document(doc)
    assert len(project._mask_names) <= 4  # a long session keeps a handful of masks alive
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
    import subprocess
    import sys

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


def test_batch_writes_the_project_file_once(project: Project, tmp_path: Path, monkeypatch):
    writes = []
    real = project_mod.atomic_write_text
    monkeypatch.setattr(project_mod, "atomic_write_text",
                        lambda path, text: (writes.append(Path(path).name), real(path, text)))
    with project.batch():
        for iid in project.image_ids:
            project.set_status(iid, "done")
        assert writes == []
        assert Project.open(tmp_path / "proj").status("a") == ImageStatus.NEW
    assert writes == [PROJECT_FILE]
    assert [e.status for e in Project.open(tmp_path / "proj")] == [ImageStatus.DONE] * 3


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


def test_reviews_persist_across_a_restart(project: Project, tmp_path: Path):
    assert project.review("a") is None and project.reviews() == {}
    r = project.set_review("a", "rejected", "wrong object", "grabbed the table")
    assert (r.decision, r.reason, r.note) == ("rejected", "wrong object", "grabbed the table")
    assert abs(r.time - __import__("time").time()) < 60
    project.set_review("c", "needs_work", " boundary ")
    again = Project.open(tmp_path / "proj")  # autosaved, no explicit save call
    assert again.review("a") == r
    assert again.review("c").reason == "boundary"  # tags are stripped
    assert list(again.reviews()) == ["a", "c"]
    raw = json.loads((tmp_path / "proj" / PROJECT_FILE).read_text())
    assert raw["images"][0]["review"] == {"decision": "rejected", "reason": "wrong object",
                                          "note": "grabbed the table", "time": r.time}
    assert "review" not in raw["images"][1]
    again.set_review("a", "accepted", "free text reason")  # replaces
    again.clear_review("c")
    final = Project.open(tmp_path / "proj")
    assert {k: v.decision for k, v in final.reviews().items()} == {"a": "accepted"}
    # Statuses and reviews are independent.
    assert final.status("a") == ImageStatus.NEW


@pytest.mark.parametrize("args, match", [
    (("a", "approved"), "decision 'approved' is not one of"),
    (("a", "rejected", "two\nlines"), "one line"),
    (("a", "rejected", "x" * 101), "at most 100"),
    (("a", "rejected", 3), "reason must be a string"),
    (("a", "rejected", "", None), "note must be a string"),
])
def test_bad_review_is_refused_and_nothing_saved(project: Project, tmp_path: Path, args,
                                                 match):
    before = (tmp_path / "proj" / PROJECT_FILE).read_bytes()
    with pytest.raises(ProjectError, match=match):
        project.set_review(*args)
    assert project.review("a") is None
    assert (tmp_path / "proj" / PROJECT_FILE).read_bytes() == before
    with pytest.raises(KeyError, match="'zz' is not in project"):
        project.set_review("zz", "accepted")


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


def test_split_is_stored_per_image(project: Project, tmp_path: Path):
    project.set_split("a", "val")
    project.set_split("b", "train")
    project.set_split("b", None)
    again = Project.open(tmp_path / "proj")
    assert [again.split(i) for i in again.image_ids] == ["val", None, None]
    with pytest.raises(ProjectError, match="split 'test'"):
        again.set_split("a", "test")
    project.set_status("a", "done")  # other changes keep the split
    assert Project.open(tmp_path / "proj").split("a") == "val"


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


def test_last_position_is_a_small_separate_file(project: Project, tmp_path: Path,
                                                monkeypatch):
    folder = tmp_path / "proj"
    assert project.last_position() == (None, None)  # no file: no position, no warning
    before = (folder / PROJECT_FILE).read_bytes()
    writes = []
    real = project_mod.atomic_write_text
    monkeypatch.setattr(project_mod, "atomic_write_text",
                        lambda path, text: (writes.append(Path(path).name), real(path, text)))
    project.set_last_position("b", 2)
    project.set_last_position("b", 2)  # unchanged: not rewritten
    project.set_last_position("c", None)
    assert writes == ["samlabel-session.json"] * 2
    assert (folder / PROJECT_FILE).read_bytes() == before
    assert Project.open(folder).last_position() == ("c", None)
    project.set_last_position("a", 3)
    assert Project.open(folder).last_position() == ("a", 3)
    assert (folder / "samlabel-session.json").stat().st_size < 200
    with pytest.raises(KeyError):
        project.set_last_position("zz", 1)
    with pytest.raises(ValueError, match="class 9 is not a class"):
        project.set_last_position("a", 9)
    assert Project.open(folder).last_position() == ("a", 3)


def test_last_review_queue_shares_the_session_file_with_the_position(project: Project,
                                                                       tmp_path: Path):
    folder = tmp_path / "proj"
    assert project.last_review_queue() is None
    project.set_last_position("b", 2)
    inside = folder / "review" / "queue.json"
    project.set_last_review_queue(inside)
    data = json.loads((folder / "samlabel-session.json").read_text())
    assert data["review_queue"] == "review/queue.json"  # relative: the project may move
    again = Project.open(folder)
    assert again.last_review_queue() == inside and again.last_position() == ("b", 2)
    again.set_last_position("c", None)                  # a position keeps the queue ...
    outside = tmp_path / "elsewhere" / "queue.json"
    assert Project.open(folder).last_review_queue() == inside
    again.set_last_review_queue(outside)                # ... and a queue keeps the position
    reopened = Project.open(folder)
    assert reopened.last_review_queue() == outside and reopened.last_position() == ("c", None)
    reopened.set_last_review_queue(None)
    assert "review_queue" not in json.loads((folder / "samlabel-session.json").read_text())
    assert Project.open(folder).last_review_queue() is None
    (folder / "samlabel-session.json").write_text(
        '{"format": "samlabel-session", "schema_version": 1, "review_queue": 7}')
    with pytest.warns(UserWarning, match="review_queue 7 is not a path"):
        assert Project.open(folder).last_review_queue() is None


@pytest.mark.parametrize("content, match", [
    ("{not json", "starting without a saved position"),
    ('{"format": "other"}', "format"),
    ('{"format": "samlabel-session", "schema_version": 7, "image_id": "a"}', "schema version 7"),
    ('{"format": "samlabel-session", "schema_version": 1, "image_id": "gone", "class_id": 2}',
     "image 'gone' is not in the project"),
])
def test_corrupt_session_file_means_no_position_with_a_warning(project: Project,
                                                               tmp_path: Path, content, match):
    (tmp_path / "proj" / "samlabel-session.json").write_text(content)
    with pytest.warns(UserWarning, match=match):
        iid, cid = Project.open(tmp_path / "proj").last_position()
    assert iid is None
    assert cid == (2 if "gone" in content else None)


@pytest.fixture()
def umask_027():
    import os

    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def test_files_get_the_permissions_open_would_give(tmp_path: Path, images: Path, umask_027):
    import os
    import stat

    from napari_samlabel.core import fsutil

    assert fsutil.current_umask() == 0o027
    project = Project.create(tmp_path / "proj", images, ["cat"])
    doc = project.load_document("a")
    accept(doc, rect(0, 10, 0, 10))
    project.save_document(doc)
    project.set_last_position("a", 1)
    modes = {p.relative_to(tmp_path / "proj").as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in (tmp_path / "proj").rglob("*")}
    assert modes and all(m == (0o750 if (tmp_path / "proj" / k).is_dir() else 0o640)
                         for k, m in modes.items()), modes
    # Replacing a file keeps the mode its owner gave it, as open("w") would.
    os.chmod(tmp_path / "proj" / PROJECT_FILE, 0o604)
    project.set_status("a", "done")
    assert stat.S_IMODE((tmp_path / "proj" / PROJECT_FILE).stat().st_mode) == 0o604


def test_failed_write_names_the_file_and_keeps_the_old_one(project: Project, tmp_path: Path,
                                                           monkeypatch):
    from napari_samlabel.core import fsutil

    path = tmp_path / "proj" / PROJECT_FILE
    before = path.read_bytes()

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fsutil.os, "fsync", full)
    with pytest.raises(OSError) as info:
        project.set_status("a", "done")
    assert str(info.value) == (f"cannot write {path}: No space left on device; the previous "
                               "version of the file is unchanged")
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []


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
