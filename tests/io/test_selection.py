"""The export's image-selection rules, checked without writing any dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.io.project import Project
from napari_samlabel.io.selection import EXCLUDE_REASONS, Selection, select_images

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
    sel = select_images(project)
    assert sel.written == ("a", "b", "e", "f", "g")
    assert sel.splits == {"a": "val", "g": None}  # stored split, seeded split
    assert sel.excluded == {"rejected": ["e"], "exclude list": [], "flagged": ["b"],
                            "needs_work": ["f"]}
    assert list(sel.excluded) == list(EXCLUDE_REASONS)
    assert sel.skipped == {"new": ["d"], "in_progress": ["c"], "done": [], "flagged": []}
    assert sel.stored_splits == 1 and sel.unknown_excluded == []
    assert [i for i in sel.written if sel.is_excluded(i)] == ["b", "e", "f"]
    assert not sel.is_excluded("c")  # not written at all


def test_options_widen_the_selection_but_never_rescue_a_rejected_image(project: Project):
    sel = select_images(project, include_flagged=True, include_unfinished=True,
                        fresh_split=True)
    assert sel.written == ("a", "b", "c", "e", "f", "g")
    assert sel.splits == {"a": None, "b": None, "c": None, "f": None, "g": None}
    assert sel.excluded["rejected"] == ["e"] and sel.stored_splits == 0
    assert sel.skipped["new"] == ["d"]


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
        {s: [] for s in ("new", "in_progress", "done", "flagged")}, [], 0)
