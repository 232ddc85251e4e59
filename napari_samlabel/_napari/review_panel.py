"""The Review tab: walk a curation queue worst first, see why each image is there, decide.

A view of :class:`~napari_samlabel.annotate.review.ReviewController`, which does the work
(walk, decisions saved to the project, rescoring) headless. The panel shows the queue, the
current image's signals and its worst objects, and passes clicks on: a queue row opens that
image in the annotator (whose prompting tools fix it), an object row selects that accepted
object (the annotator outlines it; class keys and Delete act on it), a double-click reopens
it with its prompts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_samlabel._napari.annotator import Annotator
from napari_samlabel.annotate.review import ReviewController
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.io.project_schema import REVIEW_REASONS

#: Objects listed in the table (worst first); the rest are in queue.csv and the report.
TABLE_ROWS = 8
_ID_ROLE = Qt.ItemDataRole.UserRole


class ReviewPanel(QWidget):
    """Queue, signals of the current image, decision buttons with a reason tag and a note."""

    def __init__(self, annotator: Annotator, parent: QWidget | None = None,
                 controller: ReviewController | None = None) -> None:
        super().__init__(parent)
        self.annotator = annotator
        self.viewer = annotator.viewer
        session = annotator.session
        self.controller = controller or ReviewController.for_session(session)
        annotator.review = self.controller  # the review shortcuts act on it

        load = QPushButton("Load queue…")
        menu = QMenu(load)
        menu.addAction("queue.json…", self._choose_file)
        menu.addAction("curate output folder…", self._choose_folder)
        load.setMenu(menu)
        self.source = QLabel("")
        self.source.setWordWrap(True)
        self.position = QLabel("")
        self.queue = QListWidget()
        self.queue.setMaximumHeight(130)
        self.queue.itemClicked.connect(self._queue_clicked)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["obj", "class", "score", "flags — why"])
        header, row_header = self.table.horizontalHeader(), self.table.verticalHeader()
        assert header is not None and row_header is not None  # a table has both headers
        row_header.setVisible(False)
        self.table.setWordWrap(True)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setToolTip("Click: select the object (outlined; class keys and Delete "
                              "act on it); double-click: reopen it with its prompts")
        for col in range(3):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        # rows as tall as their wrapped reasons, whatever the column width becomes
        row_header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemSelectionChanged.connect(self._row_selected)
        self.table.cellDoubleClicked.connect(self._cell_double_clicked)

        self.decision = QLabel("")
        self.decision.setWordWrap(True)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Forget this image's decision (undecided again)")
        self.clear_button.clicked.connect(self._clear)
        decision_row = QHBoxLayout()
        decision_row.addWidget(self.decision, 1)
        decision_row.addWidget(self.clear_button)
        self.reason = QComboBox()
        self.reason.setEditable(True)
        self.reason.addItems(["", *REVIEW_REASONS])
        line = self.reason.lineEdit()
        if line is not None:  # an editable combo box has one
            line.setPlaceholderText("reason tag (pick or type)")
        self.reason.editTextChanged.connect(lambda text: setattr(self.controller, "reason",
                                                                 text))
        self.note = QLineEdit()
        self.note.setPlaceholderText("note (optional)")
        self.note.textChanged.connect(lambda text: setattr(self.controller, "note", text))
        self.buttons: dict[str, QPushButton] = {}
        decide_row = QHBoxLayout()
        for decision, text, tip in (
                ("accepted", "Accept  ⇧A", "the labels are right (Shift+A)"),
                ("rejected", "Reject  ⇧R", "leave the image out of train and val (Shift+R)"),
                ("needs_work", "Needs work  ⇧W", "keep it out of train until fixed "
                                                 "(Shift+W)")):
            b = QPushButton(text)
            b.setToolTip(tip + "; saved at once, then the next undecided image")
            b.clicked.connect(lambda _=False, d=decision: self._decide(d))
            self.buttons[decision] = b
            decide_row.addWidget(b)
        self.prev_button = QPushButton("◀ Prev")
        self.prev_button.clicked.connect(self._previous)
        self.next_button = QPushButton("Next ▶")
        self.next_button.clicked.connect(self._next)
        self.include_decided = QCheckBox("include decided")
        self.include_decided.setToolTip("Next visits decided images too, to revise them")
        self.include_decided.toggled.connect(
            lambda on: setattr(self.controller, "include_decided", bool(on)))
        nav = QHBoxLayout()
        nav.addWidget(self.prev_button)
        nav.addWidget(self.next_button)
        nav.addWidget(self.include_decided)
        #: The last message (also shown on the dock widget's status line).
        self.message = ""

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for part in (load, self.source, self.position, self.queue, self.info, self.table,
                     decision_row, self.reason, self.note, decide_row, nav):
            if isinstance(part, QHBoxLayout):
                lay.addLayout(part)
            else:
                lay.addWidget(part, 1 if part is self.table else 0)

        ev = self.controller.events
        ev.loaded.connect(self._fill_queue)
        ev.current_changed.connect(self.refresh)
        ev.decided.connect(self._mark)
        ev.message.connect(self._on_message)
        sev = session.events
        sev.image_changed.connect(self._on_image)
        sev.objects_changed.connect(self._on_objects)
        self.refresh()
        # A reopened project goes on with the queue it was reviewing, at the open image.
        self.controller.resume(at=session.image_id(session.target_index))

    # -- buttons and clicks --------------------------------------------------------------------
    def _queue_clicked(self, item: QListWidgetItem) -> None:
        self.controller.go_to(item.data(_ID_ROLE))

    def _cell_double_clicked(self, row: int, _column: int) -> None:
        self.reopen_row(row)

    def _decide(self, decision: str) -> None:
        self.controller.decide(decision)

    def _clear(self) -> None:
        self.controller.clear()

    def _previous(self) -> None:
        self.controller.previous()

    def _next(self) -> None:
        self.controller.next()

    # -- loading -------------------------------------------------------------------------------
    def load(self, path: str | Path) -> bool:
        """Load a ``queue.json`` (or its folder) and open its worst undecided image."""
        return self.controller.load(path)

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Curation queue", "",
                                              "Curation queue (queue.json *.json)")
        if path:
            self.load(path)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Output folder of samlabel curate")
        if folder:
            self.load(folder)

    # -- rendering -----------------------------------------------------------------------------
    def _fill_queue(self) -> None:
        self.queue.clear()
        for image_id, label in self.controller.queue_rows():
            item = QListWidgetItem(label)
            item.setData(_ID_ROLE, image_id)
            self.queue.addItem(item)
        path = self.controller.queue_path
        self.source.setText("" if path is None else f"Queue: {path.parent.name}/{path.name}")
        self.source.setToolTip("" if path is None else str(path))

    def _mark(self, image_id: str) -> None:
        rows = dict(self.controller.queue_rows())
        for k in range(self.queue.count()):
            item = self.queue.item(k)
            if item is not None and item.data(_ID_ROLE) == image_id:
                item.setText(rows[image_id])

    def refresh(self, *_: Any) -> None:
        """Show the controller's current image, its signals, objects and decision."""
        c = self.controller
        item = c.current
        self.position.setText(c.position_text())
        self.info.setText("\n".join(c.item_lines()))
        rows = c.object_rows(TABLE_ROWS)
        self.table.blockSignals(True)  # a rebuilt table selects nothing: keep the selection
        self.table.clearSelection()
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            cells = (str(row.object_id), row.class_name, f"{row.score:.2f}", row.why)
            for col, text in enumerate(cells):
                cell = QTableWidgetItem(text)
                cell.setData(_ID_ROLE, row.object_id)
                cell.setToolTip(row.signals)
                self.table.setItem(r, col, cell)
        self.table.blockSignals(False)
        self.decision.setText(c.decision_text())
        self.clear_button.setEnabled(c.decision is not None)
        for b in self.buttons.values():
            b.setEnabled(item is not None)
        for b in (self.prev_button, self.next_button):
            b.setEnabled(c.walk is not None)
        if self.reason.currentText() != c.reason:
            self.reason.setEditText(c.reason)
        if self.note.text() != c.note:
            self.note.setText(c.note)
        self.queue.blockSignals(True)
        position = None if item is None or c.walk is None else c.walk.position
        self.queue.setCurrentRow(-1 if position is None else position)
        self.queue.blockSignals(False)

    def _on_message(self, text: str) -> None:
        # on the widget's status line, visible from every tab (the review keys work there)
        self.message = text
        self.annotator.session.notify(text)

    # -- following the annotator ---------------------------------------------------------------
    def _on_image(self, _index: int) -> None:
        self.controller.follow(self.annotator.session.image_id())

    def _on_objects(self) -> None:
        doc = self.annotator.session.doc
        if doc is not None:
            self.controller.rescore_document(doc)

    # -- objects of the table ------------------------------------------------------------------
    def _row_object(self, row: int) -> int | None:
        cell = self.table.item(row, 0)
        return None if cell is None else int(cell.data(_ID_ROLE))

    def _accepted(self, object_id: int) -> AnnotatedObject | None:
        doc = self.annotator.session.doc
        obj = next((o for o in doc.objects if o.object_id == object_id), None) if doc else None
        if obj is None:
            self._on_message(f"object {object_id} is not an accepted object of this image "
                             "(any more)")
        return obj

    def _row_selected(self) -> None:
        selection = self.table.selectionModel()
        rows = selection.selectedRows() if selection is not None else []
        oid = self._row_object(rows[0].row()) if rows else None
        if oid is not None:
            self.select_object(oid)

    def select_object(self, object_id: int) -> bool:
        """Select accepted object ``object_id`` (outlined; class keys and Delete act on it)."""
        if self._accepted(object_id) is None:
            return False
        self.annotator.session.select_object(object_id)
        return True

    def reopen_row(self, row: int) -> None:
        """Reopen the object of table row ``row`` with its prompts, to refine it."""
        oid = self._row_object(row)
        if oid is None or self._accepted(oid) is None:
            return
        self.annotator.session.reopen(oid)
        self.annotator.points_mode()
        self._on_message(f"object {oid} reopened with its prompts: refine it, then accept "
                         "(a) or put it back (Escape)")
