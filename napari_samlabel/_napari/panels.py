"""Small Qt panels of the dock widget: classes, images (navigator), shortcuts (help).

The objects panel is in :mod:`napari_samlabel._napari.objects_panel`.

Each panel renders the session and calls the annotator's actions; none holds state of its
own beyond what it shows.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_samlabel._napari.annotator import CLASS_KEYS, MOUSE_HELP, SHORTCUTS, Annotator
from napari_samlabel.annotate.display import (
    class_label,
    display_palette,
    highlighted_class,
    image_label,
)
from napari_samlabel.annotate.session import STATUSES
from napari_samlabel.core.classes import match_classes
from napari_samlabel.core.document import ImageStatus


def swatch(rgb: Any) -> QIcon:
    """A small square icon of colour ``rgb``."""
    pix = QPixmap(14, 14)
    pix.fill(QColor(int(rgb[0]), int(rgb[1]), int(rgb[2])))
    return QIcon(pix)


def focus_canvas(annotator: Annotator) -> None:
    """Give the keyboard back to the viewer's canvas (so the shortcuts work again)."""
    qt_viewer = getattr(annotator.viewer.window, "_qt_viewer", None)
    if qt_viewer is not None:
        qt_viewer.canvas.native.setFocus()


class ClassPanel(QWidget):
    """The class list: click, number keys or the filter box pick a class.

    The pick goes to the selected accepted object when there is one, else to the current
    object (and the objects that follow).
    """

    def __init__(self, annotator: Annotator, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.annotator = annotator
        session = annotator.session
        keys = {cid: key.replace("Alt-", "Alt+") for key, cid in CLASS_KEYS.items()}
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Find a class (/), Enter picks it")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._filter)
        self.filter.returnPressed.connect(self._pick_first)
        self.list = QListWidget()
        colors = display_palette(len(session.classes))
        for i, name in enumerate(session.classes.names):
            if i == 0:
                continue
            label = class_label(session.classes, i, keys.get(i, ""))
            item = QListWidgetItem(swatch(colors[i]), label)
            item.setData(Qt.ItemDataRole.UserRole, i)
            item.setToolTip(name)
            self.list.addItem(item)
        self.list.itemClicked.connect(self._clicked)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.filter)
        lay.addWidget(self.list)
        annotator.find_class_hook = self.start_filter
        for signal in (session.events.current_changed, session.events.image_changed,
                       session.events.selection_changed, session.events.objects_changed):
            signal.connect(self.refresh)
        self.refresh()

    def _clicked(self, item: QListWidgetItem) -> None:
        self.annotator.pick_class(int(item.data(Qt.ItemDataRole.UserRole)))

    def start_filter(self) -> None:
        """Focus the filter box (the "/" key)."""
        self.filter.setFocus()
        self.filter.selectAll()

    def _filter(self, text: str) -> None:
        shown = set(match_classes(self.annotator.session.classes, text))
        for item in self._items():
            item.setHidden(int(item.data(Qt.ItemDataRole.UserRole)) not in shown)

    def _items(self) -> list[QListWidgetItem]:
        items = (self.list.item(row) for row in range(self.list.count()))
        return [item for item in items if item is not None]

    def _pick_first(self) -> None:
        found = match_classes(self.annotator.session.classes, self.filter.text())
        if found:
            self.annotator.pick_class(found[0])
        self.filter.clear()
        focus_canvas(self.annotator)

    def refresh(self, *_: Any) -> None:
        """Highlight the class of the selected accepted object, else the picked class."""
        row = highlighted_class(self.annotator.session) - 1
        if 0 <= row < self.list.count() and self.list.currentRow() != row:
            self.list.setCurrentRow(row)


class NavigatorPanel(QWidget):
    """The image list with statuses; double-click opens an image."""

    def __init__(self, annotator: Annotator, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.annotator = annotator
        session = annotator.session
        self.list = QListWidget()
        for i in range(len(session)):
            self.list.addItem(QListWidgetItem(""))
            self._label(i)
        self.list.itemDoubleClicked.connect(self._double_clicked)
        buttons = QHBoxLayout()
        for text, action in (("◀ Prev", annotator.previous_image),
                             ("Next ▶", annotator.next_image),
                             ("Next unfinished", annotator.next_unfinished)):
            b = QPushButton(text)
            b.clicked.connect(action)
            buttons.addWidget(b)
        self.status = QComboBox()
        self.status.addItems([s.value.replace("_", " ") for s in STATUSES])
        self.status.activated.connect(lambda i: session.set_status(STATUSES[i]))
        row = QHBoxLayout()
        row.addWidget(QLabel("Status:"))
        row.addWidget(self.status, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.list)
        lay.addLayout(buttons)
        lay.addLayout(row)
        session.events.image_changed.connect(self._on_image)
        session.events.status_changed.connect(self._on_status)
        if session.index >= 0:
            self._on_image(session.index)

    def _double_clicked(self, item: QListWidgetItem) -> None:
        self.annotator.session.open_image(self.list.row(item))

    def _label(self, i: int) -> None:
        item = self.list.item(i)
        if item is not None:
            item.setText(image_label(self.annotator.session, i))

    def _on_image(self, index: int) -> None:
        self.list.setCurrentRow(index)
        self._on_status(index, self.annotator.session.status_of(index).value)

    def _on_status(self, index: int, status: str) -> None:
        self._label(index)
        if index == self.annotator.session.index:
            self.status.setCurrentIndex(STATUSES.index(ImageStatus(status)))


def help_text() -> str:
    """The shortcut table as rich text (from :data:`SHORTCUTS`, the bindings' source)."""
    rows = [f"<tr><td><b>{' / '.join(sc.keys)}</b></td><td>{sc.help}</td></tr>"
            for sc in SHORTCUTS]
    rows += [f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in MOUSE_HELP]
    return ("<table cellspacing='4'>" + "".join(rows) + "</table>"
            "<p><b>Negative boxes</b> (magenta) are exclusion regions: SAM has no negative "
            "box, so the object's mask is cut out of the box, and the low-res logits handed "
            "to the next decode are set strongly negative there.</p>"
            "<p>Every accept, delete, class change and status change is saved at once.</p>")


class HelpPanel(QLabel):
    """The shortcuts."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(help_text(), parent)
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setAlignment(Qt.AlignmentFlag.AlignTop)
