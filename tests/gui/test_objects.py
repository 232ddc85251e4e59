"""The Objects tab and the display of accepted objects: select, re-class, delete, reopen."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_samlabel._napari.objects_panel import ObjectsPanel
from napari_samlabel.io.project import Project

from . import _qtinput as qi
from .conftest import wait_idle

pytestmark = pytest.mark.gui


def _accept_at(a, qtbot, rc, class_id):
    a.pick_class(class_id)
    a.bridge.points_layer.add(list(rc))
    qtbot.waitUntil(lambda: a.session.doc.current.has_mask and a.session.idle, timeout=20000)
    return a.accept()


def _panel(widget) -> ObjectsPanel:
    assert isinstance(widget.objects_panel, ObjectsPanel)
    return widget.objects_panel


def test_objects_panel_lists_selects_reclasses_deletes_and_reopens(annotate, image_folder,
                                                                  qtbot):
    viewer, widget, a = annotate(image_folder, show=True)
    s, b = a.session, a.bridge
    panel = _panel(widget)
    cat = _accept_at(a, qtbot, (20, 30), 8)
    person = _accept_at(a, qtbot, (60, 90), 15)
    tree = panel.tree
    assert tree.topLevelItemCount() == 2
    row = [tree.topLevelItem(1).text(c) for c in range(4)]
    assert row == ["person", str(person.object_id), str(person.area), f"{person.score:.2f}"]
    # Selecting a row selects the object: outlined in the viewer, named on the status line.
    tree.setCurrentItem(tree.topLevelItem(0))
    assert s.selected == cat.object_id
    assert b.selection_layer.visible and b.selection_layer.contour > 0
    np.testing.assert_array_equal(b.selection_layer.data > 0, cat.mask)
    assert f"selected #{cat.object_id} cat" in widget.status_line.text()
    # A number key now re-classes it (Alt+digit: classes 11-20, here 12 = dog) ...
    qi.key(viewer, Qt.Key.Key_2, ["Alt"])
    assert s.doc.get(cat.object_id).class_id == 12 and tree.topLevelItem(0).text(0) == "dog"
    assert tree.currentItem().text(1) == str(cat.object_id)        # still selected
    # ... and the Delete key deletes it (saved), Ctrl+Z brings it back (saved).
    qi.key(viewer, Qt.Key.Key_Delete)
    assert [o.object_id for o in s.doc.objects] == [person.object_id]
    assert tree.topLevelItemCount() == 1 and s.selected is None
    assert not b.selection_layer.visible
    assert len(Project.open(image_folder).read_objects(s.image_id())) == 1
    qi.key(viewer, Qt.Key.Key_Z, ["Control"])
    assert tree.topLevelItemCount() == 2
    assert {o.class_id for o in Project.open(image_folder).read_objects(s.image_id())} == \
        {12, 15}
    # Delete in the table itself (keyboard focus in the dock).
    tree.setCurrentItem(tree.topLevelItem(panel.row_of(person.object_id)))
    qtbot.keyClick(tree, Qt.Key.Key_Backspace)
    assert [o.object_id for o in s.doc.objects] == [cat.object_id]
    # Double-click reopens with its prompts.
    item = tree.topLevelItem(0)
    tree.itemDoubleClicked.emit(item, 0)
    assert s.doc.current.original is not None and s.doc.current.prompts == cat.prompts
    assert tree.topLevelItemCount() == 0
    wait_idle(qtbot, s)


def test_outlines_and_hiding_accepted_objects(annotate, image_folder, qtbot):
    viewer, widget, a = annotate(image_folder)
    b = a.bridge
    _accept_at(a, qtbot, (40, 50), 8)
    keys = viewer.window._qt_viewer._key_map_handler
    assert b.semantic_layer.contour == 0
    keys.press_key("o")
    assert b.semantic_layer.contour > 0 and b.semantic_layer.opacity == 1.0
    keys.press_key("o")
    assert b.semantic_layer.contour == 0 and b.semantic_layer.opacity < 1.0
    keys.press_key("h")
    assert not b.semantic_layer.visible
    keys.press_key("h")
    assert b.semantic_layer.visible
    tabs = widget.tabs
    (shortcuts,) = [tabs.widget(i) for i in range(tabs.count()) if tabs.tabText(i) == "Keys"]
    text = shortcuts.text()
    for key in ("<b>o</b>", "<b>h</b>", "<b>Delete / Backspace</b>", "<b>/</b>"):
        assert key in text


def test_class_filter_and_alt_digits_reach_every_class(annotate, image_folder, qtbot):
    viewer, widget, a = annotate(image_folder, show=True)
    s = a.session
    panel = widget.class_panel
    qi.key(viewer, Qt.Key.Key_5, ["Alt"])                  # Alt+5: class 15, person
    assert s.current_class == 15
    assert "class person (15)" in widget.status_line.text()
    qi.key(viewer, Qt.Key.Key_Slash, text="/")             # "/" focuses the filter box
    assert panel.window().focusWidget() is panel.filter
    qtbot.keyClicks(panel.filter, "tv")
    shown = [panel.list.item(r).toolTip() for r in range(panel.list.count())
             if not panel.list.item(r).isHidden()]
    assert shown == ["tvmonitor"]
    qtbot.keyClick(panel.filter, Qt.Key.Key_Return)
    assert s.current_class == 20 and panel.filter.text() == ""
    assert not panel.list.item(0).isHidden()
    # The polarity shows on the status line.
    assert "next prompt positive" in widget.status_line.text()
    a.toggle_polarity()
    assert "next prompt NEGATIVE" in widget.status_line.text()


def test_delete_without_a_selected_object_deletes_the_selected_prompts(annotate, image_folder,
                                                                       qtbot):
    viewer, _, a = annotate(image_folder)
    s, pts = a.session, a.bridge.points_layer
    pts.add([20, 30])
    pts.add([40, 50])
    wait_idle(qtbot, s)
    pts.selected_data = {0}
    viewer.layers.selection.active = pts
    viewer.window._qt_viewer._key_map_handler.press_key("Delete")
    wait_idle(qtbot, s)
    assert [p.rc for p in s.doc.current.prompts] == [(40.0, 50.0)]
