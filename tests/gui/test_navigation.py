"""Navigator, statuses, resume after a restart, and the prefetch of the next embedding."""

from __future__ import annotations

import numpy as np
import pytest

from napari_samlabel.annotate.session import session_for_project
from napari_samlabel.core.document import ImageStatus
from napari_samlabel.io.images import load_image
from napari_samlabel.io.project import Project

from .conftest import wait_idle

pytestmark = pytest.mark.gui


def _accept_at(a, qtbot, rc, class_id):
    a.pick_class(class_id)
    a.bridge.points_layer.add(list(rc))
    qtbot.waitUntil(lambda: a.session.doc.current.has_mask and a.session.lane.idle,
                    timeout=20000)
    return a.accept()


def test_navigation_statuses_and_resume_keep_every_object(annotate, image_folder, qtbot):
    viewer, widget, a = annotate(image_folder)
    s = a.session
    keys = viewer.window._qt_viewer._key_map_handler
    assert s.index == 0 and s.status_of(0) == ImageStatus.NEW
    kept = {}
    kept[s.image_id()] = [_accept_at(a, qtbot, (20, 30), 8), _accept_at(a, qtbot, (50, 80), 12)]
    a.bridge.points_layer.add([5, 5])          # an unaccepted object is not kept
    keys.press_key(".")                        # next image
    wait_idle(qtbot, s)
    assert s.index == 1 and len(a.bridge.points_layer.data) == 0
    assert not a.bridge.semantic_layer.data.any()
    kept[s.image_id()] = [_accept_at(a, qtbot, (30, 40), 15)]
    keys.press_key("d")                        # done, and on to the next unfinished
    wait_idle(qtbot, s)
    assert s.index == 2 and s.status_of(1) == ImageStatus.DONE
    keys.press_key("f")                        # flag image 2
    assert s.status_of(2) == ImageStatus.FLAGGED
    keys.press_key("u")                        # next unfinished: image 0 (in progress)
    wait_idle(qtbot, s)
    assert s.index == 0 and len(s.doc.objects) == 2
    nav = widget.navigator_panel
    assert "done" in nav.list.item(1).text() and "flagged" in nav.list.item(2).text()
    widget.shutdown()

    # A new viewer on the same folder resumes with every accepted object and status.
    _, widget2, b = annotate(image_folder)
    s2 = b.session
    assert s2.index == 0                                    # first image in progress
    assert [s2.status_of(i) for i in range(3)] == [ImageStatus.IN_PROGRESS, ImageStatus.DONE,
                                                   ImageStatus.FLAGGED]
    for index in (0, 1):
        s2.open_image(index)
        wait_idle(qtbot, s2)
        objs = kept[s2.image_id()]
        got = s2.doc.objects
        assert [(o.object_id, o.class_id, o.prompts) for o in got] == \
            [(o.object_id, o.class_id, o.prompts) for o in objs]
        for mine, theirs in zip(got, objs, strict=True):
            np.testing.assert_array_equal(mine.mask, theirs.mask)
        sem, inst = s2.doc.label_maps()
        np.testing.assert_array_equal(b.bridge.semantic_layer.data, sem)
        np.testing.assert_array_equal(b.bridge.instance_layer.data, inst)
    assert s2.doc.current.prompts == ()


def test_prefetch_computes_the_next_embedding(annotate, image_folder, qtbot, tiny_checkpoint,
                                              tmp_path):
    from napari_samlabel.engine.loader import load_engine

    engine = load_engine("vit_tiny_test", tiny_checkpoint, device="cpu", cache=tmp_path / "emb")
    _, widget, a = annotate(image_folder, engine=engine)
    s = a.session
    paths = s.images
    assert s.is_encoded(1)
    assert engine.is_cached(load_image(paths[1]))          # computed ahead, on disk too
    assert engine.encode_count == 2
    s.next_image()
    wait_idle(qtbot, s)
    # Opening the prefetched image encoded nothing new for it; image 2 got prefetched.
    assert engine.encode_count == 3
    assert engine.is_cached(load_image(paths[2]))
    assert "encode" in widget.status_line.text()
    widget.shutdown()
    # A fresh engine on the same disk cache reopens every image without encoding.
    engine2 = load_engine("vit_tiny_test", tiny_checkpoint, device="cpu",
                          cache=tmp_path / "emb")
    s2 = session_for_project(Project.open(image_folder), engine=engine2)
    for index in range(3):
        s2.open_image(index)
    assert engine2.encode_count == 0 and all(s2.is_encoded(i) for i in range(3))
