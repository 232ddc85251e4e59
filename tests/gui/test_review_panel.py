"""The Review tab in a real viewer with the tiny SAM: curate, walk, fix, decide, restart, export."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_samlabel._napari.review_panel import ReviewPanel
from napari_samlabel.cli import main
from napari_samlabel.core.document import ImageStatus
from napari_samlabel.io.project import Project
from napari_samlabel.io.voc_project import export_project

from .conftest import wait_idle
from .test_navigation import _accept_at

pytestmark = pytest.mark.gui


def _annotate_all(a, qtbot) -> None:
    """One accepted object on every image, each image marked done."""
    s = a.session
    for i in range(len(s)):
        s.open_image(i)
        wait_idle(qtbot, s)
        _accept_at(a, qtbot, (20 + 5 * i, 30), 8)
        s.set_status(ImageStatus.DONE)


def _split(voc, name):
    return (voc / "ImageSets" / "Segmentation" / f"{name}.txt").read_text().split()


def test_review_walk_decide_restart_and_export(annotate, image_folder, qtbot, tiny_engine,
                                               tmp_path, monkeypatch):
    from qtpy.QtCore import Qt

    monkeypatch.setenv("SAMLABEL_CACHE_DIR", str(tmp_path / "cache"))
    viewer, widget, a = annotate(image_folder, engine=tiny_engine)
    s = a.session
    _annotate_all(a, qtbot)
    queue = tmp_path / "review"
    assert main(["curate", str(image_folder), "--out", str(queue), "--top", "3"]) == 0
    order = [r["image_id"] for r in json.loads((queue / "queue.json").read_text())["images"]]
    assert sorted(order) == sorted(s.image_id(i) for i in range(len(s)))

    assert widget.open_review(queue)
    panel = widget.review_panel
    assert isinstance(panel, ReviewPanel) and widget.tabs.currentWidget() is panel
    wait_idle(qtbot, s)
    # The worst image is open in the annotator, with its signals and objects in the tab.
    assert s.image_id() == order[0]
    assert panel.position.text() == "1 of 3 · 3 undecided"
    assert panel.queue.count() == 3 and panel.queue.currentRow() == 0
    assert panel.info.text().startswith(f"{order[0]}: rank 1, score ")
    assert panel.table.rowCount() == 1 and panel.table.item(0, 1).text() == "cat"
    assert not panel.clear_button.isEnabled()

    # Clicking the object row selects that accepted object: outlined, class keys act on it.
    (obj,) = s.doc.objects
    panel.table.selectRow(0)
    assert s.selected == obj.object_id
    layer = a.bridge.selection_layer
    assert layer.visible
    np.testing.assert_array_equal(layer.data.astype(bool), obj.mask)
    # Double-click reopens it with its prompts; one more click refines it; 'a' accepts.
    panel.table.cellDoubleClicked.emit(0, 0)
    assert s.doc.current.original == obj and s.doc.current.prompts == obj.prompts
    assert s.selected is None and not layer.visible
    a.bridge.points_layer.add([40, 60])
    qtbot.waitUntil(lambda: s.doc.current.has_mask and s.lane.idle
                    and len(s.doc.current.prompts) == 2, timeout=20000)
    keys = viewer.window._qt_viewer._key_map_handler
    keys.press_key("a")
    assert [o.object_id for o in s.doc.objects] == [obj.object_id]
    assert len(s.doc.objects[0].prompts) == 2
    assert "now: score" in panel.info.text()  # rescored from the fixed objects

    # Reject with a reason tag, from the keyboard: saved at once, on to the next image.
    panel.reason.setEditText("wrong object")
    panel.note.setText("grabbed the background")
    keys.press_key("Shift-R")
    wait_idle(qtbot, s)
    review = Project.open(image_folder).review(order[0])
    assert (review.decision, review.reason, review.note) == (
        "rejected", "wrong object", "grabbed the background")
    assert s.image_id() == order[1] and panel.position.text() == "2 of 3 · 2 undecided"
    assert panel.reason.currentText() == "" and panel.note.text() == ""
    assert panel.queue.item(0).text().startswith("\u2717")
    # Shift+A from a real key press on the canvas: accepted, and the image (put back in
    # progress here) is marked done, in the navigator and the project.
    s.set_status(ImageStatus.IN_PROGRESS)
    second = s.index
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_A, Qt.KeyboardModifier.ShiftModifier)
    wait_idle(qtbot, s)
    assert Project.open(image_folder).review(order[1]).decision == "accepted"
    assert s.status_of(second) == ImageStatus.DONE
    assert Project.open(image_folder).status(order[1]) == ImageStatus.DONE
    assert s.image_id() == order[2]
    # Prev goes back to the accepted image and shows its decision, which can be cleared.
    panel.prev_button.click()
    wait_idle(qtbot, s)
    assert s.image_id() == order[1] and panel.decision.text() == "Decision: accepted"
    panel.clear_button.click()
    assert Project.open(image_folder).review(order[1]) is None
    panel.buttons["accepted"].click()
    wait_idle(qtbot, s)
    assert s.image_id() == order[2]
    # Navigating the annotator elsewhere is followed: a queued image becomes the reviewed one.
    s.open_image(s.images.index(s.project.image_path(order[0])))
    wait_idle(qtbot, s)
    assert panel.controller.current.image_id == order[0] and panel.queue.currentRow() == 0

    # Restart: a new viewer on the same folder resumes at the next undecided image.
    widget.shutdown()
    viewer2, widget2, a2 = annotate(image_folder, engine=tiny_engine)
    wait_idle(qtbot, a2.session)
    # The Review tab has the last queue back by itself, at the image the annotator left on.
    panel2 = widget2.review_panel
    assert panel2.controller.queue_path == queue / "queue.json" and panel2.queue.count() == 3
    assert a2.session.image_id() == order[0] and panel2.controller.current.image_id == order[0]
    assert widget2.open_review(queue / "queue.json")
    wait_idle(qtbot, a2.session)
    assert a2.session.image_id() == order[2]
    assert widget2.review_panel.position.text() == "3 of 3 · 1 undecided"
    assert {i: r.decision for i, r in Project.open(image_folder).reviews().items()} == {
        order[0]: "rejected", order[1]: "accepted"}

    # The export honours the decisions: the rejected image is in neither train nor val.
    report = export_project(image_folder, tmp_path / "voc")
    voc = tmp_path / "voc" / "VOCdevkit" / "VOC2012"
    train, val = _split(voc, "train"), _split(voc, "val")
    assert order[0] not in train + val
    assert order[1] in train + val and order[2] in train + val
    assert report.excluded["rejected"] == [order[0]]


def test_review_errors_are_shown_and_keys_without_a_queue(annotate, image_folder, qtbot,
                                                          tmp_path):
    viewer, widget, a = annotate(image_folder)
    panel = widget.review_panel
    keys = viewer.window._qt_viewer._key_map_handler
    keys.press_key("Shift-A")                  # nothing loaded: a message, no decision
    assert "load a curation queue first" in widget.status_line.text()
    assert panel.message.startswith("load a curation queue first")
    assert not Project.open(image_folder).reviews()
    assert not widget.open_review(tmp_path / "missing")
    assert "curation queue not found" in panel.message
    assert "curation queue not found" in widget.status_line.text()
    assert not panel.buttons["accepted"].isEnabled() and not panel.next_button.isEnabled()


def test_help_lists_the_review_keys():
    from napari_samlabel._napari.annotator import SHORTCUTS
    from napari_samlabel._napari.panels import help_text

    keys = [k for sc in SHORTCUTS for k in sc.keys]
    assert len(keys) == len(set(keys))          # no key bound twice
    for key in ("Shift-A", "Shift-R", "Shift-W"):
        assert key in help_text()


def test_annotate_review_option_reaches_the_launcher(monkeypatch, image_folder, tmp_path,
                                                     capsys):
    import importlib

    launch = importlib.import_module("napari_samlabel._napari.launch")
    seen = {}
    monkeypatch.setattr(launch, "launch", lambda *a, **kw: seen.update(args=a, kw=kw))
    project = Project.create(image_folder, image_folder)
    project.set_status("a_cat", ImageStatus.FLAGGED)
    queue = tmp_path / "review"
    assert main(["curate", str(image_folder), "--out", str(queue)]) == 0
    assert main(["annotate", str(image_folder), "--review", str(queue)]) == 0
    # No --cache given: the launcher gets the queue and the default cache.
    assert seen["args"][0] == image_folder
    assert seen["kw"] == {"review": queue, "cache_dir": None}
    capsys.readouterr()
    for argv, message in (
            (["annotate", str(image_folder), "--review", str(tmp_path / "nope")],
             "curation queue not found"),
            (["annotate", str(image_folder), "--review", str(image_folder / "a_cat.png")],
             "cannot read curation queue"),
            (["annotate", "--review", str(queue)], "--review needs FOLDER")):
        assert main(argv) == 2
        assert message in capsys.readouterr().err


def test_open_annotator_with_a_review_queue(make_napari_viewer, qtbot, image_folder, tmp_path):
    from napari_samlabel._napari.launch import open_annotator
    from napari_samlabel.testing.fakes import DiskEngine

    project = Project.create(image_folder, image_folder)
    project.set_status("c_astronaut", ImageStatus.FLAGGED)   # the worst: score 1
    project.set_status("b_coffee", ImageStatus.DONE)         # no objects: score 0.5
    queue = tmp_path / "review"
    assert main(["curate", str(image_folder), "--out", str(queue)]) == 0
    viewer = make_napari_viewer()
    widget = open_annotator(viewer, image_folder, engine=DiskEngine(), review=queue)
    try:
        s = widget.annotator.session
        wait_idle(qtbot, s)
        assert widget.tabs.currentWidget() is widget.review_panel
        assert s.image_id() == "c_astronaut"
        assert widget.review_panel.info.text().splitlines()[1] == "flags: no_objects, flagged"
    finally:
        widget.shutdown()
    other = json.loads((queue / "queue.json").read_text())
    for rec in other["images"]:
        rec["image_id"] = "elsewhere_" + rec["image_id"]
    (tmp_path / "other.json").write_text(json.dumps(other))
    viewer = make_napari_viewer()
    with pytest.raises(ValueError, match="none of the queue's 2 images is in the project"):
        open_annotator(viewer, image_folder, engine=DiskEngine(), review=tmp_path / "other.json")
