"""The Refine tab: refine the open image's labels with SEPL, SAMS or SLIC, preview, accept.

A form over :class:`~napari_samlabel.annotate.refine.RefineController`, which does
the work (on the session's engine lane, off the GUI thread) and keeps the preview; this file
only shows the settings, a napari progress bar, and the preview as a Labels layer.

The parameter controls are built with magicgui from the refiners' records
(:mod:`napari_samlabel.pseudo.refine.record`): one control per parameter, with the record's
default, bounds, step, label and help, shown for the methods that have it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, create_widget
from magicgui.widgets.bases import ValueWidget
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_samlabel._napari.annotator import Annotator
from napari_samlabel._napari.bridge import class_colormap
from napari_samlabel.annotate.refine import RefineController, RefineSettings
from napari_samlabel.pseudo.refine.api import METHODS, REFINERS, all_parameters
from napari_samlabel.pseudo.refine.record import ParamInfo

PREVIEW_NAME = "refine preview"


def parameter_widget(info: ParamInfo) -> ValueWidget:
    """The magicgui control of one refiner parameter (default, bounds, step, help)."""
    options: dict[str, Any] = {"tooltip": info.describe()}
    if info.choices is not None:
        options["choices"] = info.choices
        widget = create_widget(info.default, name=info.name, label=info.label,
                               widget_type="ComboBox", options=options)
    else:
        options.update({k: v for k, v in (("min", info.low), ("max", info.high),
                                          ("step", info.step)) if v is not None})
        widget = create_widget(info.default, annotation=info.kind, name=info.name,
                               label=info.label, options=options)
    if isinstance(widget.native, QDoubleSpinBox):
        widget.native.setDecimals(3)  # thresholds such as 0.875
    assert isinstance(widget, ValueWidget)
    return widget


class _Relay(QObject):
    """Carries progress from the worker thread to the GUI thread (queued signal)."""

    progress = Signal(int, int, str)


class RefinePanel(QWidget):
    """Method, parameters, optional CAM, Run / Accept / Discard, and the preview layer.

    Attributes
    ----------
    params : magicgui.widgets.Container
        One control per refiner parameter (:func:`parameter_widget`).
    fields : dict of str to QWidget
        The Qt widget of each parameter's control, by name.
    """

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
        self._method = ComboBox(name="method", label="method", choices=METHODS,
                                value=METHODS[0], tooltip="; ".join(
                                    f"{r.name}: {r.title}" for r in REFINERS.values()))
        self._method.changed.connect(self._show_rows)
        self.method = self._method.native
        self.widgets = {name: parameter_widget(info) for name, info in all_parameters().items()}
        self.fields: dict[str, QWidget] = {n: w.native for n, w in self.widgets.items()}
        self.params = Container(widgets=[self._method, *self.widgets.values()])
        self.params.margins = (0, 0, 0, 0)
        self.cam = QLineEdit()
        self.cam.setPlaceholderText("optional CAM .npy of this image")
        browse = QPushButton("…")
        browse.clicked.connect(self._browse)
        cam_row = QHBoxLayout()
        cam_row.addWidget(self.cam, 1)
        cam_row.addWidget(browse)
        form = QFormLayout()
        form.addRow("CAM", cam_row)
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self._run_clicked)
        self.accept_button = QPushButton("Accept")
        self.accept_button.clicked.connect(self._accept_clicked)
        self.discard_button = QPushButton("Discard")
        self.discard_button.clicked.connect(self.controller.discard)
        buttons = QHBoxLayout()
        for b in (self.run_button, self.accept_button, self.discard_button):
            buttons.addWidget(b)
        self.status = QLabel("Refine the accepted objects of this image.")
        self.status.setWordWrap(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.params.native)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addWidget(self.status)
        lay.addStretch(1)
        ev = self.controller.events
        ev.running.connect(self._on_running)
        ev.preview_changed.connect(self._on_preview)
        ev.message.connect(self._on_message)
        self._show_rows(self._method.value)
        self._on_preview()

    def settings(self) -> RefineSettings:
        """The form as :class:`RefineSettings` (the chosen method's parameters)."""
        method = str(self._method.value)
        values = {i.name: self.widgets[i.name].value for i in REFINERS[method].parameters()}
        return RefineSettings(method, cam=self.cam.text().strip() or None, **values)

    def run(self) -> bool:
        """Queue the refinement of the open image (the result comes back as a preview)."""
        return self.controller.run(self.settings(), progress=self._relay.progress.emit)

    def _run_clicked(self) -> None:
        self.run()

    def _accept_clicked(self) -> None:
        self.controller.accept()

    def _on_message(self, text: str) -> None:
        self.status.setText(text)

    def _show_rows(self, method: str) -> None:
        shown = {i.name for i in REFINERS[method].parameters()}
        for name, widget in self.widgets.items():
            widget.visible = name in shown  # hides its label too

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
            owned: tuple[Any, ...] = (*bridge.owned, self.layer)
            bridge.owned = owned  # removed with the annotator's layers
        else:
            self.layer.data = np.asarray(p.labels)
        self.viewer.layers.selection.active = self.annotator.bridge.points_layer
