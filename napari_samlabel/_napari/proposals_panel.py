"""The Proposals tab: find every instance of a class (or like a box), then accept, reject, refine.

"Propose with…" runs a trained prompter or segmenter (a path typed or browsed; Shift+P
runs the one loaded again on the next images) the same way.

A view over :class:`~napari_samlabel.annotate.proposals.ProposalController` (the session's
``proposals``), which does the work on the session's engine lane; this file shows the form
(magicgui: the phrase and the live confidence slider), the candidate list, a napari progress
bar with Cancel while a search runs, and the visible candidates as outlines in a Labels
layer (:data:`LAYER_NAME`; the highlighted one in yellow). Accepted candidates become
ordinary objects and show in the accepted layers like any other.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from magicgui.types import FileDialogMode
from magicgui.widgets import Container, FileEdit, FloatSlider, LineEdit, Widget
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_samlabel._napari.annotator import Annotator
from napari_samlabel._napari.panels import focus_canvas, swatch
from napari_samlabel.annotate.proposals import ProposalController
from napari_samlabel.core.candidates import CandidateSet
from napari_samlabel.engine.concept_source import class_phrase

LAYER_NAME = "proposals"
CANDIDATE_COLOR = (0.0, 1.0, 1.0, 1.0)
HIGHLIGHT_COLOR = (1.0, 1.0, 0.0, 1.0)
COLUMNS = ("#", "score", "class", "source", "area")
_INDEX = Qt.ItemDataRole.UserRole


class _Relay(QObject):
    """Carries progress from the worker thread to the GUI thread (queued signal)."""

    progress = Signal(int, object, str)


def outline_labels(candidates: CandidateSet, shown: list[int], shape: tuple[int, int]
                   ) -> np.ndarray:
    """``H x W`` ``uint16`` map of the shown candidates (value = index + 1), largest first.

    Smaller candidates are painted over larger ones, so an instance inside another keeps
    its own outline.
    """
    out = np.zeros(shape, np.uint16)
    for i in sorted(shown, key=lambda k: -candidates[k].area):
        out[candidates[i].mask] = i + 1
    return out


class ProposalsPanel(QWidget):
    """Phrase, Find all / Find similar / Cancel, the confidence slider, the candidates.

    Attributes
    ----------
    form : magicgui.widgets.Container
        The phrase field and the confidence slider.
    tree : QTreeWidget
        One row per visible candidate: index, score, class, source, area.
    layer : napari.layers.Labels or None
        The outlines of the visible candidates.
    """

    def __init__(self, annotator: Annotator, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.annotator = annotator
        self.viewer = annotator.viewer
        session = annotator.session
        self.controller: ProposalController = session.proposals
        self.layer: Any = None
        self._bar: Any = None
        self._filling = False
        self._relay = _Relay()
        self._relay.progress.connect(self._on_progress)
        annotator.proposal_progress = self._relay.progress.emit
        self.phrase = LineEdit(name="phrase", label="find", tooltip=(
            "A noun phrase, or empty for the selected class (Shift+F finds it)"))
        self.phrase.native.returnPressed.connect(self.find_all)
        self.threshold = FloatSlider(name="threshold", label="confidence", min=0.0, max=1.0,
                                     step=0.01, value=self.controller.threshold,
                                     tooltip="Candidates scoring less are hidden")
        self.threshold.changed.connect(self.controller.set_threshold)
        fields: list[Widget] = [self.phrase, self.threshold]
        self.form = Container(widgets=fields)
        self.form.margins = (0, 0, 0, 0)
        self.find_button = self._button("Find all", "Every instance of the phrase or the "
                                        "selected class (Shift+F)", self.find_all)
        self.similar_button = self._button(
            "Find similar", "Instances like the box you drew (r: box mode; Shift+drag: a "
            "box of what is not) (Shift+S)", self.find_similar)
        self.source_path = FileEdit(mode=FileDialogMode.EXISTING_DIRECTORY, label="", tooltip=(
            "A trained prompter (the folder of samlabel train-prompter, or its .pt file) or "
            "segmenter (the folder of samlabel train); typed or browsed"))
        self.source_path.line_edit.native.setPlaceholderText("prompter or segmenter folder")
        self.source_path.line_edit.native.returnPressed.connect(self.propose_with)
        self.propose_button = self._button(
            "Propose", "Propose on this image with the trained prompter / segmenter; it is "
            "remembered: Shift+P proposes with it on the next images", self.propose_with)
        self.cancel_button = self._button("Cancel", "Stop the search", self.controller.cancel)
        self.cancel_button.setEnabled(False)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.itemSelectionChanged.connect(self._on_row_selected)
        self.tree.itemDoubleClicked.connect(lambda *_: self.accept())
        self.accept_button = self._button("Accept", "Accept the highlighted candidate (y)",
                                          self.accept)
        self.accept_all_button = self._button("Accept all", "Accept every candidate shown, "
                                              "one undo step (Shift+Y)", self.accept_all)
        self.reject_button = self._button("Reject", "Hide the highlighted candidate (x)",
                                          self.reject)
        self.refine_button = self._button(
            "Refine", "Make the highlighted candidate the current object: ± points and "
            "scribbles refine it, a accepts it (e)", self.refine)
        self.status = QLabel("Find every instance of a class with a concept model (SAM 3).")
        self.status.setWordWrap(True)
        row0, row1, row2 = QHBoxLayout(), QHBoxLayout(), QHBoxLayout()
        row0.addWidget(QLabel("Propose with…"))
        row0.addWidget(self.source_path.native, 1)
        row0.addWidget(self.propose_button)
        for b in (self.find_button, self.similar_button, self.cancel_button):
            row1.addWidget(b)
        for b in (self.accept_button, self.accept_all_button, self.reject_button,
                  self.refine_button):
            row2.addWidget(b)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.form.native)
        lay.addLayout(row1)
        lay.addLayout(row0)
        lay.addWidget(self.tree, 1)
        lay.addLayout(row2)
        lay.addWidget(self.status)
        ev = self.controller.events
        ev.changed.connect(self.refresh)
        ev.selection_changed.connect(self._on_selection)
        ev.running.connect(self._on_running)
        ev.message.connect(self._on_message)
        for signal in (session.events.current_changed, session.events.image_changed):
            signal.connect(self._show_class)
        self._show_class()
        self.refresh()

    def _button(self, text: str, tip: str, action: Any) -> QPushButton:
        b = QPushButton(text)
        b.setToolTip(tip)

        def clicked(*_: Any) -> None:
            action()
            focus_canvas(self.annotator)  # the keys (y, x, e, j/k) work on at once
        b.clicked.connect(clicked)
        return b

    # -- actions -------------------------------------------------------------------------------
    def find_all(self) -> bool:
        """Find every instance of the typed phrase, else of the selected class."""
        return self.controller.find_all(self.phrase.value or None,
                                        progress=self._relay.progress.emit)

    def propose_with(self) -> bool:
        """Propose with the source at the path typed or browsed (empty: the one loaded)."""
        path = self.source_path.line_edit.value.strip()
        return self.controller.propose_with(path or None, progress=self._relay.progress.emit)

    def find_similar(self) -> bool:
        """Find instances like the box drawn; without one, switch to drawing boxes."""
        if self.controller.find_similar_to_current(progress=self._relay.progress.emit):
            return True
        self.annotator.box_mode()
        return False

    def accept(self) -> None:
        """Accept the highlighted candidate."""
        self.annotator.accept_candidate()

    def accept_all(self) -> None:
        """Accept every visible candidate."""
        self.annotator.accept_all_candidates()

    def reject(self) -> None:
        """Reject the highlighted candidate."""
        self.annotator.reject_candidate()

    def refine(self) -> None:
        """Refine the highlighted candidate as the current object."""
        self.annotator.refine_candidate()

    def _on_message(self, text: str) -> None:
        self.status.setText(text)

    # -- rendering -----------------------------------------------------------------------------
    def _show_class(self, *_: Any) -> None:
        s = self.annotator.session
        if s.current_class:
            self.phrase.native.setPlaceholderText(
                f"{class_phrase(s.classes, s.current_class)} (the selected class)")

    def refresh(self, *_: Any) -> None:
        """Rebuild the list and the outlines from the open image's candidates."""
        c = self.controller
        cands, shown = c.candidates, c.visible()
        s = self.annotator.session
        self._filling = True
        try:
            self.tree.clear()
            colors = s.classes.colors()
            for i in shown:
                cand = cands[i]
                cid = cand.class_id if cand.class_id is not None else s.current_class
                item = QTreeWidgetItem([str(i + 1), f"{cand.score:.2f}",
                                        s.classes.name(cid), cand.source, str(cand.area)])
                item.setIcon(2, swatch(colors[cid]))
                item.setData(0, _INDEX, i)
                self.tree.addTopLevelItem(item)
        finally:
            self._filling = False
        counts = cands.counts()
        if len(cands):
            self.status.setText(f"{len(shown)} shown · {counts['hidden']} below "
                                f"{c.threshold:.2f} · {counts['accepted']} accepted · "
                                f"{counts['rejected']} rejected")
        for b in (self.accept_button, self.reject_button, self.refine_button,
                  self.accept_all_button):
            b.setEnabled(bool(shown))
        if abs(self.threshold.value - c.threshold) > 1e-9:
            self.threshold.value = c.threshold
        self._render_layer(cands, shown)
        self._on_selection(-1 if c.selected is None else c.selected)

    def _render_layer(self, cands: CandidateSet, shown: list[int]) -> None:
        doc = self.annotator.session.doc
        if doc is None or not shown:
            if self.layer is not None:
                self.layer.visible = False
            return
        labels = outline_labels(cands, shown, doc.shape)
        if self.layer is None or self.layer not in self.viewer.layers:
            from napari.layers import Labels

            self.layer = self.viewer.add_layer(Labels(labels, name=LAYER_NAME, opacity=1.0))
            self.layer.contour = 2
            self.layer.editable = False
            bridge = self.annotator.bridge
            owned: tuple[Any, ...] = (*bridge.owned, self.layer)
            bridge.owned = owned  # removed with the annotator's layers
            self.viewer.layers.selection.active = bridge.points_layer
        else:
            self.layer.data = labels
        self._color_layer()
        self.layer.visible = True

    def _color_layer(self) -> None:
        from napari.utils.colormaps import DirectLabelColormap

        if self.layer is None:
            return
        colors: dict[Any, Any] = {None: CANDIDATE_COLOR, 0: (0, 0, 0, 0)}
        sel = self.controller.selected
        if sel is not None:
            colors[sel + 1] = HIGHLIGHT_COLOR
        self.layer.colormap = DirectLabelColormap(color_dict=colors)

    def _on_selection(self, index: int) -> None:
        self._filling = True
        try:
            for row in range(self.tree.topLevelItemCount()):
                item = self.tree.topLevelItem(row)
                if item is not None and item.data(0, _INDEX) == index:
                    self.tree.setCurrentItem(item)
                    self.tree.scrollToItem(item)
                    break
            else:
                self.tree.clearSelection()
        finally:
            self._filling = False
        self._color_layer()

    def _on_row_selected(self) -> None:
        if self._filling:
            return
        items = self.tree.selectedItems()
        self.controller.select(int(items[0].data(0, _INDEX)) if items else None)

    # -- running -------------------------------------------------------------------------------
    def _on_running(self, running: bool) -> None:
        for b in (self.find_button, self.similar_button, self.propose_button):
            b.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            from napari.utils import progress

            self._bar = progress(total=0, desc="Finding")
        elif self._bar is not None:
            self._bar.close()
            self._bar = None

    def _on_progress(self, done: int, total: int | None, message: str) -> None:
        bar = self._bar
        if bar is None:
            return
        if total and bar.total != total:
            bar.total = total
        if message:
            bar.set_description(f"Finding: {message}")
        if done > bar.n:
            bar.update(done - bar.n)
