"""The export's image-selection rules, checked without writing any dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.core.document import AnnotationDocument
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.io.project import Project
from napari_samlabel.io.selection import (
    EXCLUDE_REASONS,
    NothingToExport,
    Selection,
    select_images,
)

IDS = ("a", "b", "c", "d", "e", "f", "g")


@pytest.fixture()
def project(tmp_path: Path) -> Project:
    """Seven images: every status, a stored split, and review decisions."""
    folder = tmp_path / "images"
    folder.mkdir()
    for iid in IDS:
        Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(folder / f"{iid}.png")
    project = Project.create(tmp_path / "proj", folder, ["cat"])
    with project.batch():
        for iid, status in zip(IDS, ("done", "flagged", "in_progress", "new", "done", "done",
                                     "done"), strict=True):
            project.set_status(iid, status)
        project.set_split("a", "val")
        project.set_review("e", "rejected", "wrong object")
        project.set_review("f", "needs_work")
        project.set_review("g", "accepted")
    return project


def test_status_and_reviews_decide_what_is_written_and_where(project: Project):
    sel = select_images(project, only_done=True)
    assert sel.written == ("a", "b", "e", "f", "g")
    assert sel.splits == {"a": "val", "g": None}  # stored split, seeded split
    assert sel.excluded == {"rejected": ["e"], "exclude list": [], "flagged": ["b"],
                            "needs_work": ["f"]}
    assert list(sel.excluded) == list(EXCLUDE_REASONS)
    assert sel.skipped == {"new": ["d"], "in_progress": ["c"], "done": [], "flagged": [],
                           "unannotated": []}
    assert sel.stored_splits == 1 and sel.unknown_excluded == []
    assert [i for i in sel.written if sel.is_excluded(i)] == ["b", "e", "f"]
    assert not sel.is_excluded("c")  # not written at all


def test_options_widen_the_selection_but_never_rescue_a_rejected_image(project: Project):
    _accept_one(project, "c")
    sel = select_images(project, include_flagged=True, fresh_split=True)
    assert sel.written == ("a", "b", "c", "e", "f", "g")
    assert sel.splits == {"a": None, "b": None, "c": None, "f": None, "g": None}
    assert sel.excluded["rejected"] == ["e"] and sel.stored_splits == 0
    assert sel.skipped["unannotated"] == ["d"]


def test_exclude_list_takes_ids_or_their_alias_and_reports_unknown_ones(project: Project):
    sel = select_images(project, exclude=["A-file", "g", "zz"], alias=lambda i: f"{i.upper()}-file")
    assert sel.excluded["exclude list"] == ["a", "g"]
    assert sel.splits == {}
    assert sel.unknown_excluded == ["zz"]
    # a rejected image stays "rejected" even when it is on the list too
    assert select_images(project, exclude=["e"]).excluded["rejected"] == ["e"]


def test_an_empty_project_selects_nothing(tmp_path: Path):
    empty = Project.create(tmp_path / "p", [], ["cat"])
    assert select_images(empty) == Selection(
        (), {}, {r: [] for r in EXCLUDE_REASONS},
        {s: [] for s in ("new", "in_progress", "done", "flagged", "unannotated")}, [], 0)
    with pytest.raises(NothingToExport, match="the project has no images"):
        select_images(empty).check_not_empty(empty)


def _accept_one(project: Project, image_id: str) -> None:
    """Save one accepted object for ``image_id``, keeping its status."""
    status = project.status(image_id)
    mask = np.zeros((4, 6), bool)
    mask[1:3, 1:4] = True
    project.save_document(AnnotationDocument(image_id, (4, 6), [AnnotatedObject(1, 1, mask)],
                                             status))
    project.set_status(image_id, status)


def test_default_exports_images_with_accepted_objects_even_if_not_marked_done(project):
    """Issue 14 item 11: an annotator who never pressed "done" still gets a dataset."""
    assert select_images(project).skipped["unannotated"] == ["c", "d"]
    _accept_one(project, "c")
    assert project.status("c") == "in_progress"
    sel = select_images(project)
    assert "c" in sel.written and sel.splits["c"] is None
    assert sel.skipped["unannotated"] == ["d"]
    strict = select_images(project, only_done=True)
    assert "c" not in strict.written and strict.skipped["in_progress"] == ["c"]


def test_nothing_to_export_says_why_before_anything_is_written(tmp_path: Path):
    folder = tmp_path / "images"
    folder.mkdir()
    for iid in ("a", "b", "c"):
        Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(folder / f"{iid}.png")
    project = Project.create(tmp_path / "proj", folder, ["cat"])
    with pytest.raises(NothingToExport, match="3 images have no accepted object"):
        select_images(project).check_not_empty(project)
    project.set_status("a", "flagged")
    _accept_one(project, "b")
    with pytest.raises(NothingToExport, match=r"2 images are not marked done \(--only-done"):
        select_images(project, only_done=True).check_not_empty(project)
    with pytest.raises(NothingToExport, match=r"1 images are flagged \(--include-flagged"):
        select_images(project, exclude=["b"]).check_not_empty(project)
    select_images(project).check_not_empty(project)  # b goes into train/val: no error
