"""Drawing with real mouse events: Escape mid-stroke, negative boxes, clicks off the image."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_samlabel._napari.bridge import NEGATIVE_COLOR, POSITIVE_COLOR
from napari_samlabel._napari.convert import EDGE_WIDTH
from napari_samlabel.core.prompts import Box, Point, Scribble

from . import _qtinput as qi
from .conftest import wait_idle

pytestmark = pytest.mark.gui


def _rgba(name):
    from napari.utils.colormaps.standardize_color import transform_color

    return transform_color(name)[0]


def test_escape_mid_stroke_cancels_only_that_stroke(annotate, image_folder, qtbot):
    viewer, _, a = annotate(image_folder, show=True)
    s, b = a.session, a.bridge
    qi.click(viewer, (40, 50))                              # the object so far: one point
    wait_idle(qtbot, s)
    a.scribble_mode()
    sh = b.shapes_layer
    stroke = [(20.0, 20.0 + 3 * k) for k in range(12)]
    qi.press(viewer, stroke[0])
    for rc in stroke[1:6]:
        qi.move(viewer, rc)
    assert sh._is_creating                                  # mid-stroke
    qi.key(viewer, Qt.Key.Key_Escape)
    for rc in stroke[6:]:                                   # the hand goes on, then lets go
        qi.move(viewer, rc)
    qi.release(viewer, stroke[-1])
    wait_idle(qtbot, s)
    [point] = s.doc.current.prompts                         # the point is kept ...
    assert isinstance(point, Point) and np.allclose(point.rc, (40, 50), atol=1)
    assert sh.nshapes == 0                                  # ... the stroke is not
    assert not sh._is_creating and sh.mode == "add_path"
    # The next stroke is one scribble, with no ghost of the cancelled one.
    qi.drag(viewer, [(60.0, 20.0 + 3 * k) for k in range(12)])
    wait_idle(qtbot, s)
    scribbles = [p for p in s.doc.current.prompts if isinstance(p, Scribble)]
    assert len(scribbles) == 1 and sh.nshapes == 1
    assert np.all(np.abs(scribbles[0].path[:, 0] - 60) < 1.5)
    # Without a stroke in progress, Escape discards the object as before.
    qi.key(viewer, Qt.Key.Key_Escape)
    assert s.doc.current.prompts == () and sh.nshapes == 0


def test_shift_drag_draws_a_negative_box_that_cuts_the_mask(annotate, image_folder, qtbot):
    viewer, _, a = annotate(image_folder, show=True)
    s, b = a.session, a.bridge
    engine = s.engine
    qi.click(viewer, (40, 50))
    wait_idle(qtbot, s)
    assert s.doc.current.mask[40, 52]
    a.box_mode()
    qi.drag(viewer, [(30.0, 51.0), (40.0, 60.0), (50.0, 70.0)], ["Shift"])
    wait_idle(qtbot, s)
    box = next(p for p in s.doc.current.prompts if isinstance(p, Box))
    assert not box.positive
    assert engine.last.box is None                          # SAM was given no box
    region = box.pixel_region(s.doc.shape)
    assert region[40, 55] and not (s.doc.current.mask & region).any()
    assert s.doc.current.mask[40, 47]                       # the rest of the disk stays
    np.testing.assert_allclose(b.shapes_layer.edge_color[0], _rgba(NEGATIVE_COLOR))
    # Accepted and reopened, the box comes back magenta and as wide as it was drawn.
    width = float(b.shapes_layer.edge_width[0])
    obj = a.accept()
    assert obj is not None and b.shapes_layer.nshapes == 0
    s.reopen(obj.object_id)
    assert b.shapes_layer.nshapes == 1
    np.testing.assert_allclose(b.shapes_layer.edge_color[0], _rgba(NEGATIVE_COLOR))
    assert float(b.shapes_layer.edge_width[0]) == width == EDGE_WIDTH
    assert b.shapes_layer.features["positive"].tolist() == [False]
    # A plain drag draws a positive (lime) box.
    qi.drag(viewer, [(5.0, 5.0), (15.0, 15.0)])
    wait_idle(qtbot, s)
    np.testing.assert_allclose(b.shapes_layer.edge_color[-1], _rgba(POSITIVE_COLOR))
    assert [p.positive for p in s.doc.current.prompts if isinstance(p, Box)] == [False, True]


def test_click_outside_the_image_is_dropped_and_the_notice_clears(annotate, image_folder,
                                                                   qtbot):
    viewer, widget, a = annotate(image_folder, show=True)
    s, b = a.session, a.bridge
    h, w = s.doc.shape
    qi.click(viewer, (h / 2, w + 15.0))                    # right of the image
    qtbot.waitUntil(lambda: len(b.points_layer.data) == 0, timeout=5000)
    assert s.doc.current.prompts == ()
    assert "outside" in widget.status_line.text()
    qi.click(viewer, (h / 2, w / 2))                       # the next click decodes fine
    qtbot.waitUntil(lambda: s.doc.current.has_mask and s.idle, timeout=20000)
    assert len(b.points_layer.data) == 1 and len(s.doc.current.prompts) == 1
    assert "outside" not in widget.status_line.text()
    assert "failed" not in widget.status_line.text()


def test_a_click_is_decoded_from_its_release_and_a_drag_adds_nothing(annotate, image_folder,
                                                                      qtbot):
    viewer, _, a = annotate(image_folder, show=True)
    s, b = a.session, a.bridge
    wait_idle(qtbot, s)
    started = []
    real = s.anticipate
    s.anticipate = lambda prompts: started.append(
        (tuple(prompts), len(b.points_layer.data))) or real(prompts)
    calls = len(s.engine.calls)
    qi.click(viewer, (40, 50))
    wait_idle(qtbot, s)
    # Anticipated at the release, before napari had added the point ...
    [(prompts, points_then)] = started
    assert points_then == 0 and prompts == s.doc.current.prompts
    [point] = prompts
    assert np.allclose(point.rc, (40, 50), atol=1) and point.positive
    # ... and that one decode answered the point the layer then reported.
    assert len(s.engine.calls) == calls + 1 and s.doc.current.prediction_is_current
    # A Shift+click: anticipated with the negative polarity it gets.
    qi.click(viewer, (20, 30), ["Shift"])
    wait_idle(qtbot, s)
    assert started[-1][0] == s.doc.current.prompts and not s.doc.current.prompts[-1].positive
    assert len(s.engine.calls) == calls + 2
    # A drag in add mode pans: no point, nothing anticipated, nothing decoded.
    qi.drag(viewer, [(60.0, 60.0), (60.0, 80.0), (60.0, 100.0)])
    wait_idle(qtbot, s)
    assert len(started) == 2 and len(b.points_layer.data) == 2
    assert len(s.engine.calls) == calls + 2


@pytest.mark.parametrize("mode", ["box_mode", "scribble_mode"])
def test_a_plain_click_after_a_box_or_scribble_is_a_point(annotate, image_folder, qtbot, mode):
    """No mode trap: in box or scribble mode a click without a drag adds a point."""
    viewer, _, a = annotate(image_folder, show=True)
    s, b = a.session, a.bridge
    getattr(a, mode)()
    if mode == "box_mode":
        qi.drag(viewer, [(20.0, 20.0), (30.0, 35.0), (50.0, 60.0)])
    else:
        qi.drag(viewer, [(20.0, 20.0 + 3 * k) for k in range(12)])
    wait_idle(qtbot, s)
    [shape] = s.doc.current.prompts
    qi.click(viewer, (70, 80))                                # a plain click, same mode
    qtbot.waitUntil(lambda: len(s.doc.current.prompts) == 2, timeout=5000)
    wait_idle(qtbot, s)
    first, point = s.doc.current.prompts
    assert first == shape and isinstance(point, Point) and point.positive
    assert np.allclose(point.rc, (70, 80), atol=1.5)
    assert b.shapes_layer.nshapes == 1 and len(b.points_layer.data) == 1  # no zero-size box
    assert not b.shapes_layer._is_creating and s.doc.current.has_mask
    qi.click(viewer, (60, 30), mods=("Shift",))               # Shift: a negative point
    qtbot.waitUntil(lambda: len(s.doc.current.prompts) == 3, timeout=5000)
    assert s.doc.current.prompts[-1].positive is False
    assert b.shapes_layer.nshapes == 1


def test_a_scribble_shows_its_mask_while_it_is_drawn(annotate, image_folder, qtbot):
    viewer, _, a = annotate(image_folder, show=True)
    s, b = a.session, a.bridge
    a.scribble_mode()
    previews = []
    s.events.stroke_preview.connect(previews.append)
    stroke = [(30.0, 20.0 + 4 * k) for k in range(15)]
    qi.press(viewer, stroke[0])
    for rc in stroke[1:]:
        qi.move(viewer, rc)
        qtbot.wait(20)
    qtbot.waitUntil(lambda: bool(previews), timeout=5000)   # the button is still down
    assert b.shapes_layer._is_creating and not s.doc.current.prompts
    assert b.preview_layer.visible and b.preview_layer.data.any()
    qi.release(viewer, stroke[-1])
    wait_idle(qtbot, s)
    [scribble] = s.doc.current.prompts
    assert isinstance(scribble, Scribble) and s.doc.current.has_mask
