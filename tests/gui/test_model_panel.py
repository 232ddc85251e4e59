"""The Model tab: list every model family, switch models without losing accepted objects."""

from __future__ import annotations

import importlib.util

import pytest

from napari_samlabel.core.prompts import Point
from napari_samlabel.io.project import Project

from .conftest import wait_idle

pytestmark = pytest.mark.gui


def _widget(make_napari_viewer, model, checkpoint, folder, qtbot):
    from napari_samlabel._napari.widget import SamLabelWidget
    from napari_samlabel.annotate.model import EngineOptions

    viewer = make_napari_viewer()
    widget = SamLabelWidget(viewer, EngineOptions(model, str(checkpoint)))
    viewer.window.add_dock_widget(widget, name="SAM label")
    annotator = widget.open_folder(folder)        # loads the model in a worker
    qtbot.waitUntil(lambda: annotator.session.engine is not None, timeout=60000)
    wait_idle(qtbot, annotator.session)
    return widget, annotator.session


def test_switching_models_keeps_accepted_objects(make_napari_viewer, qtbot, image_folder,
                                                 tiny_checkpoint, tmp_path):
    from napari_samlabel.annotate.model import EngineOptions
    from napari_samlabel.testing.models import SAM2_TINY_MODEL_TYPE, save_tiny_checkpoint

    widget, s = _widget(make_napari_viewer, "vit_tiny_test", tiny_checkpoint, image_folder,
                        qtbot)
    panel = widget.model_panel
    assert widget.tabs.tabText(widget.tabs.indexOf(panel)) == "Model"
    names = [panel.combo.itemData(i) for i in range(panel.combo.count())]
    assert names[:4] == ["vit_b", "vit_l", "vit_h", "vit_t"]
    assert "sam2.1_hiera_tiny" in names and "sam_hq_vit_b" in names
    assert panel.selected() == "vit_tiny_test"     # the command line's model, listed too
    assert "loaded: vit_tiny_test:" in panel.state.text()
    sam2_row = names.index("sam2.1_hiera_tiny")
    assert panel.combo.model().item(sam2_row).isEnabled()
    assert "SAM 2" in panel.combo.itemText(sam2_row)

    s.set_prompts([Point((20, 30))])
    wait_idle(qtbot, s)
    kept = s.accept()
    s.set_prompts([Point((40, 60))])
    wait_idle(qtbot, s)
    old_id = s.engine.model_id

    ckpt = save_tiny_checkpoint(tmp_path / "sam2.pt", model_type=SAM2_TINY_MODEL_TYPE)
    widget.switch_model(EngineOptions(SAM2_TINY_MODEL_TYPE, str(ckpt)))
    assert "loading sam2_tiny_test" in panel.state.text()
    qtbot.waitUntil(lambda: getattr(s.engine, "family", None) == "sam2", timeout=60000)
    wait_idle(qtbot, s)
    assert s.doc.objects == (kept,) and kept.model_id == old_id
    assert s.doc.current.model_id == s.engine.model_id   # the current object re-decoded
    assert s.doc.current.mask.shape == s.doc.shape
    assert "loaded: sam2_tiny_test:" in panel.state.text()
    assert Project.open(image_folder).read_objects(s.image_id())[0].model_id == old_id
    widget.shutdown()


def test_a_model_that_fails_to_load_leaves_the_previous_one(make_napari_viewer, qtbot,
                                                            image_folder, tiny_checkpoint,
                                                            tmp_path):

    widget, s = _widget(make_napari_viewer, "vit_tiny_test", tiny_checkpoint, image_folder,
                        qtbot)
    engine = s.engine
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not weights")
    widget.model_panel.checkpoint.setText(str(bad))
    widget.model_panel.apply()                        # the selected model, another file
    qtbot.waitUntil(lambda: widget.loading_model is None, timeout=60000)
    assert s.engine is engine
    text = widget.status_line.text()
    assert "not loaded" in text and "previous model stays in use" in text
    assert "broken.pt" not in text          # the detail goes to the notification and the log
    widget.model_panel.checkpoint.setText(str(tiny_checkpoint))
    widget.model_panel.apply()                        # a model loads: the line goes
    qtbot.waitUntil(lambda: widget.loading_model is None, timeout=60000)
    assert s.engine is not engine and "not loaded" not in widget.status_line.text()
    widget.shutdown()


def test_models_without_their_package_are_listed_disabled(make_napari_viewer, qtbot,
                                                          image_folder, tiny_checkpoint,
                                                          monkeypatch):
    from napari_samlabel._napari.model_panel import ModelPanel

    widget, _ = _widget(make_napari_viewer, "vit_tiny_test", tiny_checkpoint, image_folder,
                        qtbot)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "segment_anything_hq" else real(name, *a))
    panel = ModelPanel(widget)
    names = [panel.combo.itemData(i) for i in range(panel.combo.count())]
    row = names.index("sam_hq_vit_b")
    assert not panel.combo.model().item(row).isEnabled()
    from qtpy.QtCore import Qt

    tip = panel.combo.itemData(row, Qt.ItemDataRole.ToolTipRole)
    assert 'pip install "napari-samlabel[hq]"' in tip
    assert panel.combo.model().item(names.index("vit_b")).isEnabled()
    widget.shutdown()
