"""Objects in progress survive leaving the image and closing the session (io.drafts)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_samlabel.annotate.session import session_for_project
from napari_samlabel.core.prompts import Box, Point
from napari_samlabel.io.drafts import Draft, DraftStore
from napari_samlabel.io.folder import project_for_folder
from napari_samlabel.testing.fakes import DiskEngine


def _session(folder, **kwargs):
    s = session_for_project(project_for_folder(folder), engine=DiskEngine(radius=4),
                            prefetch=False, **kwargs)
    s.open_image(0)
    return s


def test_draft_store_round_trip_and_bad_file(tmp_path):
    store = DraftStore(tmp_path)
    assert store.load("a") is None and "a" not in store
    mask = np.zeros((5, 7), bool)
    mask[1:3, 2:6] = True
    logits = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    prompts = (Point((1.5, 2.0)), Point((3.0, 4.0), positive=False),
               Box((0.0, 0.0), (4.0, 6.0)))
    store.save("a", Draft(3, prompts, mask, 0.75, logits, "m1"))
    got = store.load("a")
    assert got.class_id == 3 and got.prompts == prompts and got.score == 0.75
    assert got.model_id == "m1"
    np.testing.assert_array_equal(got.mask, mask)
    np.testing.assert_array_equal(got.logits, logits)
    store.path("b").write_bytes(b"not a draft")
    with pytest.raises(ValueError, match=r"b\.npz"):
        store.load("b")
    assert store.remove("a") and not store.remove("a")


def test_object_in_progress_survives_next_and_previous_image(image_folder):
    s = _session(image_folder)
    messages = []
    s.events.message.connect(messages.append)
    s.select_class(5)
    s.set_prompts([Point((20, 30)), Point((25, 35))])
    mask = s.doc.current.mask.copy()
    s.next_image()
    assert s.index == 1 and not s.doc.current.prompts
    assert any("kept the object in progress on a_cat" in m for m in messages)
    s.previous_image()
    cur = s.doc.current
    assert cur.prompts == (Point((20, 30)), Point((25, 35))) and cur.class_id == 5
    np.testing.assert_array_equal(cur.mask, mask)        # back as it was, no decode needed
    assert cur.prediction_is_current and s.current_class == 5
    assert any("restored the object in progress on a_cat (2 prompts)" in m for m in messages)
    s.accept()                                            # accepted: no draft any more
    assert s.image_id() not in s.drafts
    s.next_image()
    s.previous_image()
    assert not s.doc.current.prompts and len(s.doc.objects) == 1


def test_object_in_progress_survives_closing_and_reopening_the_folder(image_folder):
    s = _session(image_folder)
    s.set_prompts([Point((40, 50))])
    s.close()
    again = _session(image_folder)
    assert again.doc.current.prompts == (Point((40, 50)),)
    assert again.doc.current.has_mask
    again.discard()                                       # Escape: the draft goes too
    again.close()
    assert not _session(image_folder).doc.current.prompts


def test_without_a_project_the_dropped_object_is_named(image_folder):
    from napari_samlabel.annotate.session import AnnotationSession

    s = AnnotationSession(sorted(image_folder.glob("*.png")), engine=DiskEngine(),
                          prefetch=False)
    s.open_image(0)
    messages = []
    s.events.message.connect(messages.append)
    s.set_prompts([Point((10, 10))])
    s.next_image()
    assert any("was dropped" in m for m in messages)
