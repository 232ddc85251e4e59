"""Tests of the session file: where the annotator was, and the last review queue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from napari_samlabel.io import project_session as session_mod
from napari_samlabel.io.project import Project
from napari_samlabel.io.project_schema import (
    PROJECT_FILE,
)


def test_last_position_is_a_small_separate_file(project: Project, tmp_path: Path,
                                                monkeypatch):
    folder = tmp_path / "proj"
    assert project.last_position() == (None, None)  # no file: no position, no warning
    before = (folder / PROJECT_FILE).read_bytes()
    writes = []
    real = session_mod.atomic_write_text
    monkeypatch.setattr(session_mod, "atomic_write_text",
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
