"""The Refine tab in a real viewer with the tiny SAM: run off the GUI thread, preview, accept."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest

from napari_samlabel._napari.refine_panel import PREVIEW_NAME, RefinePanel
from napari_samlabel.annotate.refine import RefineSettings
from napari_samlabel.io.project import Project
from napari_samlabel.pseudo.refine import (
    REFINERS,
    SAMS_PARAMS,
    AutoMaskParams,
    all_parameters,
    api,
    param,
    sams,
    sepl,
    slic,
)

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


@dataclass(frozen=True)
class _Knobbed(slic.SlicParams):
    extra_knob: int = param(7, "a new knob", label="new knob", low=2, high=9, step=1)


def test_controls_are_generated_from_the_records(annotate, image_folder, tmp_path,
                                                 monkeypatch):
    monkeypatch.setenv("SAMLABEL_CACHE_DIR", str(tmp_path / "cache"))
    viewer, widget, a = annotate(image_folder)
    panel = _panel(widget)
    params = all_parameters()
    assert set(panel.widgets) == set(params)
    for name, info in params.items():
        w = panel.widgets[name]
        assert w.value == info.default and w.label == info.label
        assert w.tooltip == info.describe() and panel.fields[name] is w.native
        if info.choices is None:
            assert (w.min, w.max, w.step) == (info.low, info.high, info.step)
        else:
            assert tuple(w.choices) == info.choices
    # each method shows its own parameters, with the record's defaults
    for method, refiner in REFINERS.items():
        panel.method.setCurrentText(method)
        shown = {n for n, f in panel.fields.items() if f.isVisibleTo(panel)}
        assert shown == {i.name for i in refiner.parameters()}
        assert panel.settings() == RefineSettings(method)
    # ... which are the module constants (also the CLI's, see tests/cli)
    panel.method.setCurrentText("sepl")
    s = panel.settings()
    assert (s.segment_ratio, s.class_ratio) == (sepl.SEGMENT_RATIO, sepl.CLASS_RATIO)
    assert s.automask_params() == AutoMaskParams()
    panel.method.setCurrentText("sams")
    s = panel.settings()
    assert (s.occupation_ratio, s.occupation, s.alpha) == (sams.OCCUPATION_RATIO,
                                                           sams.OCCUPATION, sams.ALPHA)
    assert s.automask_params() == SAMS_PARAMS
    panel.method.setCurrentText("slic")
    s = panel.settings()
    assert (s.n_segments, s.compactness, s.sigma, s.rule, s.ignore_ratio) == (
        slic.N_SEGMENTS, slic.COMPACTNESS, slic.SIGMA, slic.RULE, slic.IGNORE_RATIO)
    # a parameter added to a record gets its control, default and bounds
    monkeypatch.setitem(api.REFINERS, "slic", replace(slic.REFINER, params=_Knobbed))
    extra = RefinePanel(a)
    try:
        w = extra.widgets["extra_knob"]
        assert (w.value, w.min, w.max, w.label) == (7, 2, 9, "new knob")
        extra.method.setCurrentText("sepl")
        assert not extra.fields["extra_knob"].isVisibleTo(extra)
        extra.method.setCurrentText("slic")
        assert extra.fields["extra_knob"].isVisibleTo(extra)
        extra.fields["extra_knob"].setValue(4)
        assert extra.settings().extra_knob == 4
        assert isinstance(extra.settings().params, _Knobbed)
    finally:
        extra.controller.close()
        extra.deleteLater()
