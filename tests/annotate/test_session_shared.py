"""The annotation session on a project another session writes too (issue 15)."""

from __future__ import annotations

import errno

import numpy as np

from napari_samlabel.annotate.session import session_for_project
from napari_samlabel.core.fsutil import WriteError
from napari_samlabel.core.prompts import Point
from napari_samlabel.io import project_store
from napari_samlabel.io.folder import project_for_folder
from napari_samlabel.io.project import Project
from napari_samlabel.testing.fakes import DiskEngine


def test_a_conflicting_save_is_a_notice_and_both_versions_are_kept(image_folder):
    s = session_for_project(project_for_folder(image_folder), engine=DiskEngine(),
                            prefetch=False)
    messages: list[str] = []
    s.events.message.connect(messages.append)
    s.open_image(0)
    other = Project.open(image_folder)              # a second annotator, same image
    theirs = other.load_document(s.image_id())
    theirs.set_prompts([Point((5, 5))])
    theirs.set_prediction(theirs.current.prompts, _square(s.doc.shape), 0.9,
                          np.zeros((256, 256), np.float32), "x")
    theirs.accept()
    other.save_document(theirs)
    s.set_prompts([Point((20, 30))])
    s.accept()                                      # autosave: refused, no traceback
    assert messages and "another session" in messages[-1] and "kept in" in messages[-1]
    stored = Project.open(image_folder)
    assert len(stored.read_objects(s.image_id())) == 1          # theirs, untouched
    copies = list((stored.annotation_dir(s.image_id()) / "conflicts").iterdir())
    assert len(copies) == 1 and (copies[0] / "objects.json").is_file()   # ours, kept


def test_a_failed_save_is_a_notice_and_the_work_stays_open(image_folder, monkeypatch):
    s = session_for_project(project_for_folder(image_folder), engine=DiskEngine(),
                            prefetch=False)
    messages: list[str] = []
    s.events.message.connect(messages.append)
    s.open_image(0)

    def full(path, text):
        raise WriteError(f"cannot write {path}: No space left on device", errno.ENOSPC)

    monkeypatch.setattr(project_store, "atomic_write_text", full)
    s.set_prompts([Point((20, 30))])
    obj = s.accept()
    assert obj is not None and len(s.doc.objects) == 1
    assert "was not saved" in messages[-1] and "No space left" in messages[-1]


def _square(shape):
    m = np.zeros(shape, bool)
    m[2:9, 2:9] = True
    return m
