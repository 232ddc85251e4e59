"""The Refine tab in a real viewer with the tiny SAM: run off the GUI thread, preview, accept."""

from __future__ import annotations

import numpy as np
import pytest

from napari_samlabel._napari.refine_panel import PREVIEW_NAME, RefinePanel
from napari_samlabel.io.project import Project

from .conftest import wait_idle
from .test_navigation import _accept_at

pytestmark = pytest.mark.gui


def _panel(widget) -> RefinePanel:
    tabs = widget.tabs
    (index,) = [i for i in range(tabs.count()) if tabs.tabText(i) == "Refine"]
    return tabs.widget(index)


def test_refine_tab_previews_accepts_and_undoes(annotate, image_folder, qtbot, tiny_engine,
                                                tmp_path, monkeypatch):
    monkeypatch.setenv("SAMLABEL_CACHE_DIR", str(tmp_path / "cache"))
    viewer, widget, a = annotate(image_folder, engine=tiny_engine)
    s = a.session
    _accept_at(a, qtbot, (20, 30), 8)
    _accept_at(a, qtbot, (50, 70), 12)
    before = s.doc.objects
    panel = _panel(widget)
    panel.method.setCurrentText("sepl")
    # the SAM rows are shown for sepl, the SLIC rows are not
    assert panel.fields["points_per_side"].isVisibleTo(panel)
    assert not panel.fields["n_segments"].isVisibleTo(panel)
    for name, value in (("points_per_side", 4), ("pred_iou_thresh", 0.0),
                        ("stability_score_thresh", 0.0)):
        panel.fields[name].setValue(value)
    assert panel.settings().points_per_side == 4
    assert panel.run()
    assert not panel.run_button.isEnabled()      # returned at once: the GUI stays live
    qtbot.waitUntil(lambda: panel.controller.preview is not None or not
                    panel.controller.running, timeout=60000)
    preview = panel.controller.preview
    assert preview is not None, panel.status.text()
    layer = viewer.layers[PREVIEW_NAME]
    np.testing.assert_array_equal(layer.data, preview.labels)
    assert panel.accept_button.isEnabled() and panel.run_button.isEnabled()
    assert s.doc.objects == before                # nothing changed before Accept
    # the automatic masks were cached where `samlabel refine` keeps them
    assert list((tmp_path / "cache" / "automasks").rglob("*.npz"))
    panel.accept_button.click()
    assert PREVIEW_NAME not in [lyr.name for lyr in viewer.layers]
    sem = a.bridge.semantic_layer.data
    np.testing.assert_array_equal(sem, np.where(preview.labels == 255, 0, preview.labels))
    stored = Project.open(image_folder).read_objects(s.image_id())
    assert len(stored) == len(s.doc.objects) and s.doc.objects != before
    a.undo()                                       # one step back: the old objects
    assert s.doc.objects == before
    assert len(Project.open(image_folder).read_objects(s.image_id())) == 2
    wait_idle(qtbot, s)


def test_slic_preview_discard_and_image_change(annotate, image_folder, qtbot, tmp_path,
                                               monkeypatch):
    monkeypatch.setenv("SAMLABEL_CACHE_DIR", str(tmp_path / "cache"))
    viewer, widget, a = annotate(image_folder)       # the disk fake: slic needs no SAM
    _accept_at(a, qtbot, (20, 30), 8)
    panel = _panel(widget)
    panel.method.setCurrentText("slic")
    assert panel.fields["n_segments"].isVisibleTo(panel)
    assert not panel.fields["points_per_side"].isVisibleTo(panel)
    panel.fields["n_segments"].setValue(50)
    panel.run()
    qtbot.waitUntil(lambda: panel.controller.preview is not None, timeout=20000)
    assert PREVIEW_NAME in [lyr.name for lyr in viewer.layers]
    panel.discard_button.click()
    assert PREVIEW_NAME not in [lyr.name for lyr in viewer.layers]
    assert not panel.accept_button.isEnabled()
    panel.run()
    qtbot.waitUntil(lambda: panel.controller.preview is not None, timeout=20000)
    a.next_image()                                   # the preview belongs to image 0
    wait_idle(qtbot, a.session)
    assert panel.controller.preview is None
    assert PREVIEW_NAME not in [lyr.name for lyr in viewer.layers]
    # sepl with the fake engine: a message, not a crash
    _accept_at(a, qtbot, (20, 30), 8)
    panel.method.setCurrentText("sepl")
    panel.run()
    qtbot.waitUntil(lambda: not panel.controller.running, timeout=20000)
    assert "cannot make them" in panel.status.text()
    widget.shutdown()
    assert PREVIEW_NAME not in [lyr.name for lyr in viewer.layers]
