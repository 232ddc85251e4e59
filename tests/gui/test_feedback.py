"""The window explains itself: drafts, the tool in use, napari's hints, the status line."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_samlabel.core.prompts import Point

from . import _qtinput as qi
from .conftest import SlowDiskEngine, wait_idle

pytestmark = pytest.mark.gui


def test_object_in_progress_survives_navigation_and_reopening_the_folder(
        annotate, image_folder, qtbot):
    viewer, widget, a = annotate(image_folder, show=True)
    s = a.session
    qi.click(viewer, (40, 50))
    wait_idle(qtbot, s)
    first = s.image_id()
    a.next_image()
    wait_idle(qtbot, s)
    assert s.image_id() != first and len(a.bridge.points_layer.data) == 0
    assert "kept the object in progress" in widget.status_line.text()
    a.previous_image()
    wait_idle(qtbot, s)
    [p] = s.doc.current.prompts
    assert isinstance(p, Point) and np.allclose(p.rc, (40, 50), atol=1.5)
    assert len(a.bridge.points_layer.data) == 1 and a.bridge.preview_layer.visible
    assert "restored the object in progress" in widget.status_line.text()
    # Opening the folder again (as after closing the window) brings it back too.
    a = widget.open_folder(image_folder, engine=s.engine)
    wait_idle(qtbot, a.session)
    assert a.session.image_id() == first and len(a.session.doc.current.prompts) == 1
    assert len(a.bridge.points_layer.data) == 1


def test_tool_in_use_is_shown_and_napari_hints_follow_the_plugin_keys(
        annotate, image_folder, qtbot):
    from napari_samlabel._napari.chrome import HIDDEN_SHAPE_BUTTONS

    viewer, widget, a = annotate(image_folder, show=True)
    bar = widget.toolbar
    checked = lambda: [k for k, b in bar.buttons.items() if b.isChecked()]  # noqa: E731
    assert checked() == ["Points (p)"]
    a.box_mode()
    assert checked() == ["Box (r)"]
    assert "drag: box" in viewer.help and "<3>" not in viewer.help and "<4>" not in viewer.help
    bar.buttons["Scribble (t)"].click()
    assert a.bridge.shapes_layer.mode == "add_path" and checked() == ["Scribble (t)"]
    a.bridge.shapes_layer.mode = "pan_zoom"
    assert checked() == [] and "pan zoom" in bar.other.text()
    a.points_mode()
    assert "click: point" in viewer.help and "1-0 class" in viewer.help
    controls = viewer.window._qt_viewer.controls.widgets[a.bridge.shapes_layer]
    assert not controls.ellipse_button.isVisible() and not controls.polygon_button.isVisible()
    assert len(HIDDEN_SHAPE_BUTTONS) > 5


def test_status_line_is_current(annotate, image_folder, qtbot):
    viewer, widget, a = annotate(image_folder, show=True)
    s = a.session
    qi.click(viewer, (40, 50))
    wait_idle(qtbot, s)
    a.accept()
    text = widget.status_line.text()
    assert "· 1 object\n" in text and "saved" in text
    a.mark_done()                                # saves the image it leaves
    wait_idle(qtbot, s)
    assert "saved" not in widget.status_line.text()
    assert "prefetching " + s.image_id() not in widget.status_line.text()


def test_closing_the_window_keeps_the_draft_without_waiting_for_the_engine(
        annotate, image_folder, qtbot):
    engine = SlowDiskEngine(radius=5)
    viewer, widget, a = annotate(image_folder, engine=engine, show=True)
    s = a.session
    qi.click(viewer, (40, 50))
    wait_idle(qtbot, s)
    engine.delay = 4.0
    qi.click(viewer, (60, 70))                      # a decode that runs for 4 s
    qtbot.waitUntil(lambda: s.lane.running == "decode", timeout=5000)
    from qtpy.QtGui import QCloseEvent

    t0 = time.perf_counter()
    # The main window's close event, as the dock widget's filter sees it (closing the window
    # itself would leave napari's test fixture a viewer it cannot clean up).
    widget.eventFilter(viewer.window._qt_window, QCloseEvent())
    assert time.perf_counter() - t0 < 3.0 and widget.jobs_left   # not held by the decode
    assert widget.annotator is None
    draft = s.drafts.load(s.image_id())
    assert draft is not None and len(draft.prompts) == 2
