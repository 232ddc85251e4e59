"""The Objects tab: the open image's accepted objects, to select, re-class, reopen or delete.

A row shows the class (colour swatch and name; a part also names the object it belongs to,
``dog/head (of #3)``), the instance id, the area in pixels and SAM's predicted IoU. The
panel only mirrors the session's selection (:meth:`AnnotationSession.select_object`):
selecting a row selects the object (the viewer outlines it, a class pick re-classes it),
double-click reopens it, Delete or Backspace deletes it (undoable with Ctrl+Z, saved at
once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtGui import QKeyEvent
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_samlabel._napari.annotator import Annotator
from napari_samlabel._napari.panels import swatch
from napari_samlabel.annotate.display import accepted_rows, display_palette

COLUMNS = ("class", "id", "area", "score")
_ID = Qt.ItemDataRole.UserRole


class _ObjectTree(QTreeWidget):
    """The table; Delete and Backspace delete the selected object while it has focus."""

    def __init__(self, on_delete: Callable[[], None]) -> None:
        super().__init__()
        self._on_delete = on_delete

    def keyPressEvent(self, event: QKeyEvent | None) -> None:  # noqa: N802 - Qt's name
        """Delete the selected object on Delete/Backspace."""
        if event is not None and event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self._on_delete()
            return
        super().keyPressEvent(event)


class ObjectsPanel(QWidget):
    """The accepted objects of the open image."""

    def __init__(self, annotator: Annotator, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.annotator = annotator
        self._filling = False
        session = annotator.session
        self.tree = _ObjectTree(self.delete_selected)
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.itemSelectionChanged.connect(self._on_row_selected)
        self.tree.itemDoubleClicked.connect(self._on_double_click)
        reopen = QPushButton("Reopen")
        reopen.setToolTip("Refine the selected object with its prompts (double-click, Ctrl+click)")
        reopen.clicked.connect(self.reopen_selected)
        delete = QPushButton("Delete")
        delete.setToolTip("Delete the selected object (Delete / Backspace; Ctrl+Z undoes)")
        delete.clicked.connect(self.delete_selected)
        buttons = QHBoxLayout()
        buttons.addWidget(reopen)
        buttons.addWidget(delete)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.tree)
        lay.addLayout(buttons)
        ev = session.events
        ev.objects_changed.connect(self.refresh)
        ev.image_changed.connect(self.refresh)
        ev.selection_changed.connect(self._show_selection)
        self.refresh()

    def refresh(self, *_: Any) -> None:
        """Rebuild the rows from the open document."""
        s = self.annotator.session
        self._filling = True
        try:
            self.tree.clear()
            if s.doc is None:
                return
            colors = display_palette(len(s.classes))
            for row in accepted_rows(s):
                item = QTreeWidgetItem(list(row.cells))
                item.setIcon(0, swatch(colors[row.class_id]))
                item.setData(0, _ID, row.object_id)
                for col in (1, 2, 3):
                    item.setTextAlignment(col, Qt.AlignmentFlag.AlignRight)
                self.tree.addTopLevelItem(item)
            self.tree.resizeColumnToContents(0)
        finally:
            self._filling = False
        self._show_selection(s.selected or 0)

    def row_of(self, object_id: int) -> int:
        """Row of ``object_id`` in the table, -1 if absent."""
        for row in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(row)
            if item is not None and item.data(0, _ID) == object_id:
                return row
        return -1

    def _show_selection(self, object_id: int) -> None:
        self._filling = True
        try:
            row = self.row_of(object_id) if object_id else -1
            if row < 0:
                self.tree.clearSelection()
            else:
                item = self.tree.topLevelItem(row)
                self.tree.setCurrentItem(item)
                self.tree.scrollToItem(item)
        finally:
            self._filling = False

    def _selected_id(self) -> int | None:
        items = self.tree.selectedItems()
        return int(items[0].data(0, _ID)) if items else None

    def _on_row_selected(self) -> None:
        if not self._filling:
            self.annotator.session.select_object(self._selected_id())

    def _on_double_click(self, item: QTreeWidgetItem, _column: int) -> None:
        self.annotator.session.reopen(int(item.data(0, _ID)))

    def reopen_selected(self) -> None:
        """Reopen the selected object for refinement."""
        oid = self.annotator.session.selected
        if oid is not None:
            self.annotator.session.reopen(oid)

    def delete_selected(self) -> None:
        """Delete the selected object."""
        self.annotator.session.delete_selected()
