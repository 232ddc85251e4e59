"""The Refine tab: refine the open image's labels with SEPL, SAMS or SLIC, preview, accept.

A form over :class:`~napari_samlabel.annotate.refine.RefineController`, which does
the work (on the session's engine lane, off the GUI thread) and keeps the preview; this file
only shows the settings, a napari progress bar, and the preview as a Labels layer.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_samlabel._napari.annotator import Annotator
from napari_samlabel._napari.bridge import class_colormap
from napari_samlabel.annotate.refine import RefineController, RefineSettings
from napari_samlabel.pseudo.refine.api import METHODS

PREVIEW_NAME = "refine preview"
#: The form's rows per method: (setting, label, minimum, maximum, step).
ROWS: dict[str, tuple[tuple[str, str, float, float, float], ...]] = {
    "sepl": (("segment_ratio", "mask share in class >", 0, 1, 0.05),
             ("class_ratio", "or class share in mask >", 0, 1, 0.05)),
    "sams": (("occupation_ratio", "occupation t_r <", 0, 1, 0.05),
             ("alpha", "background alpha", 0.05, 5, 0.05)),
    "slic": (("n_segments", "superpixels", 1, 10000, 10),
             ("compactness", "compactness", 0.01, 1000, 1),
             ("ignore_ratio", "void least confident", 0, 1, 0.05)),
}
SAM_ROWS = (("points_per_side", "points per side", 1, 128, 1),
            ("pred_iou_thresh", "predicted IoU >", 0, 1, 0.01),
            ("stability_score_thresh", "stability >=", 0, 1, 0.01),
            ("box_nms_thresh", "box NMS IoU", 0, 1, 0.05))


class _Relay(QObject):
    """Carries progress from the worker thread to the GUI thread (queued signal)."""

    progress = Signal(int, int, str)


class RefinePanel(QWidget):
    """Method, parameters, optional CAM, Run / Accept / Discard, and the preview layer."""

    def __init__(self, annotator: Annotator, parent: QWidget | None = None,
                 controller: RefineController | None = None) -> None:
        super().__init__(parent)
        self.annotator = annotator
        self.viewer = annotator.viewer
        self.controller = controller or RefineController(annotator.session)
        self.layer: Any = None
        self._bar: Any = None
        self._relay = _Relay()
        self._relay.progress.connect(self._on_progress)
        defaults = RefineSettings()
        self.method = QComboBox()
        self.method.addItems(list(METHODS))
        self.method.currentTextChanged.connect(self._show_rows)
        self.fields: dict[str, Any] = {}
        form = QFormLayout()
        form.addRow("method", self.method)
        self._rows: dict[str, list[str]] = {}
        for group, rows in (*ROWS.items(), ("sam", SAM_ROWS)):
            self._rows[group] = [name for name, *_ in rows]
            for name, label, lo, hi, step in rows:
                box = QSpinBox() if isinstance(getattr(defaults, name), int) \
                    else QDoubleSpinBox()
                box.setRange(lo, hi)
                box.setSingleStep(step)
                if isinstance(box, QDoubleSpinBox):
                    box.setDecimals(3)
                box.setValue(getattr(defaults, name))
                self.fields[name] = box
                form.addRow(label, box)
        self._form = form
        self.cam = QLineEdit()
        self.cam.setPlaceholderText("optional CAM .npy of this image")
        browse = QPushButton("…")
        browse.clicked.connect(self._browse)
        cam_row = QHBoxLayout()
        cam_row.addWidget(self.cam, 1)
        cam_row.addWidget(browse)
        form.addRow("CAM", cam_row)
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.accept_button = QPushButton("Accept")
        self.accept_button.clicked.connect(self.controller.accept)
        self.discard_button = QPushButton("Discard")
        self.discard_button.clicked.connect(self.controller.discard)
        buttons = QHBoxLayout()
        for b in (self.run_button, self.accept_button, self.discard_button):
            buttons.addWidget(b)
        self.status = QLabel("Refine the accepted objects of this image.")
        self.status.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addWidget(self.status)
        lay.addStretch(1)
        ev = self.controller.events
        ev.running.connect(self._on_running)
        ev.preview_changed.connect(self._on_preview)
        ev.message.connect(self._on_message)
        self._show_rows(self.method.currentText())
        self._on_preview()

    def settings(self) -> RefineSettings:
        """The form as :class:`RefineSettings`."""
        values = {name: box.value() for name, box in self.fields.items()}
        names = {f.name for f in fields(RefineSettings)}
        return RefineSettings(method=self.method.currentText(), cam=self.cam.text().strip()
                              or None, **{k: v for k, v in values.items() if k in names})

    def run(self) -> bool:
        """Queue the refinement of the open image (the result comes back as a preview)."""
        return self.controller.run(self.settings(), progress=self._relay.progress.emit)

    def _on_message(self, text: str) -> None:
        self.status.setText(text)

    def _show_rows(self, method: str) -> None:
        shown = set(self._rows[method]) | (set(self._rows["sam"]) if method != "slic" else set())
        for name, box in self.fields.items():
            box.setVisible(name in shown)
            self._form.labelForField(box).setVisible(name in shown)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "CAM of this image", "", "NumPy (*.npy)")
        if path:
            self.cam.setText(path)

    def _on_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        if running:
            from napari.utils import progress

            self.status.setText(f"refining ({self.method.currentText()}) …")
            self._bar = progress(total=0, desc=f"Refine ({self.method.currentText()})")
        elif self._bar is not None:
            self._bar.close()
            self._bar = None

    def _on_progress(self, done: int, total: int, message: str) -> None:
        bar = self._bar
        if bar is None:
            return
        if total and bar.total != total:
            bar.total = total
        bar.set_description(f"Refine: {message}")
        if done > bar.n:
            bar.update(done - bar.n)

    def _on_preview(self) -> None:
        p = self.controller.preview
        for b in (self.accept_button, self.discard_button):
            b.setEnabled(p is not None)
        if p is None:
            if self.layer is not None and self.layer in self.viewer.layers:
                self.viewer.layers.remove(self.layer)
            self.layer = None
            return
        if self.layer is None or self.layer not in self.viewer.layers:
            from napari.layers import Labels
            from napari.utils.colormaps import DirectLabelColormap

            colors = dict(class_colormap(self.annotator.session.classes).color_dict)
            colors[255] = (0.6, 0.6, 0.6, 0.8)  # void: where the refiner is unsure
            self.layer = self.viewer.add_layer(Labels(
                np.asarray(p.labels), name=PREVIEW_NAME, opacity=0.6,
                colormap=DirectLabelColormap(color_dict=colors)))
            self.layer.editable = False
            bridge = self.annotator.bridge
            bridge.owned = (*bridge.owned, self.layer)  # removed with the annotator's layers
        else:
            self.layer.data = np.asarray(p.labels)
        self.viewer.layers.selection.active = self.annotator.bridge.points_layer
