"""Tests of the project folder: creating, opening, images, statuses, reviews, splits."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.core.document import ImageStatus
from napari_samlabel.io import project as project_mod
from napari_samlabel.io.project import Project
from napari_samlabel.io.project_schema import (
    PROJECT_FILE,
    SCHEMA_VERSION,
    ProjectError,
)
from tests.io.projects import H, W, accept, rect, saved_project


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


@pytest.fixture()
def umask_027():

    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def test_files_get_the_permissions_open_would_give(tmp_path: Path, images: Path, umask_027):

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
