"""The Model tab: pick SAM, MobileSAM, SAM-HQ or SAM 2, see its CPU speed, switch.

The list comes from :func:`napari_samlabel.engine.catalogue.model_choices` (family,
measured CPU encode time, whether its package is installed and its checkpoint cached).
Models whose package is missing are listed but disabled, with the pip command as their
tooltip. Loading runs in a worker thread (the dock widget's :meth:`switch_model`); the
image's accepted objects stay as they are, and the object being prompted is decoded again
by the new model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtGui import QStandardItemModel
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_samlabel.annotate.model import EngineOptions, model_list, model_state_text

if TYPE_CHECKING:
    from napari_samlabel._napari.widget import SamLabelWidget


class ModelPanel(QWidget):
    """Model picker of one dock widget.

    Parameters
    ----------
    widget : SamLabelWidget
        The dock widget: its ``engine_options`` say what is loaded or loading, its
        ``switch_model(options)`` loads another model.
    """

    def __init__(self, widget: SamLabelWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.widget = widget
        current = widget.engine_options
        self.choices = model_list(current.model, current.cache_dir)
        self.combo = QComboBox()
        model = self.combo.model()
        for row, choice in enumerate(self.choices):
            self.combo.addItem(choice.label, choice.name)
            tip = choice.description if choice.installed else (
                f"{choice.description}\nNot installed: {choice.install_hint}")
            self.combo.setItemData(row, tip, Qt.ItemDataRole.ToolTipRole)
            if not choice.installed and isinstance(model, QStandardItemModel):
                item = model.item(row)  # a QComboBox's own model is a QStandardItemModel
                if item is not None:
                    item.setEnabled(False)
        names = [c.name for c in self.choices]
        if current.model in names:
            self.combo.setCurrentIndex(names.index(current.model))
        self.checkpoint = QLineEdit(current.checkpoint or "")
        self.checkpoint.setPlaceholderText("official checkpoint (cached or downloaded)")
        browse = QPushButton("…")
        browse.setToolTip("Use a local checkpoint file (fine-tuned weights, or offline)")
        browse.clicked.connect(self._browse)
        self.precise = QCheckBox("Precise (float32 encoder)")
        self.precise.setChecked(current.precise)
        self.precise.setToolTip("Off: the fastest precision within the accuracy guard: "
                                "bfloat16 where the CPU has it natively, int8 linears on "
                                "CPUs with VNNI; 2-5x faster than float32")
        self.load = QPushButton("Load model")
        self.load.clicked.connect(self.apply)
        self.state = QLabel()
        self.state.setWordWrap(True)
        ckpt = QHBoxLayout()
        ckpt.addWidget(self.checkpoint, 1)
        ckpt.addWidget(browse)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(QLabel("Model:"))
        lay.addWidget(self.combo)
        lay.addLayout(ckpt)
        lay.addWidget(self.precise)
        lay.addWidget(self.load)
        lay.addWidget(self.state)
        lay.addStretch(1)
        session = widget.annotator.session if widget.annotator is not None else None
        if session is not None:
            session.events.engine_changed.connect(self.refresh)
        self.refresh()

    def selected(self) -> str:
        """The model type selected in the list."""
        return str(self.combo.currentData())

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint file", "",
                                              "PyTorch weights (*.pth *.pt);;All files (*)")
        if path:
            self.checkpoint.setText(path)

    def apply(self) -> None:
        """Load the selected model (with the given checkpoint, if any)."""
        text = self.checkpoint.text().strip()
        self.widget.switch_model(EngineOptions(self.selected(), text or None,
                                               self.precise.isChecked(),
                                               self.widget.engine_options.cache_dir))

    def refresh(self, *_: Any) -> None:
        """Show which model is loaded."""
        a = self.widget.annotator
        engine = a.session.engine if a is not None else None
        self.state.setText(model_state_text(engine, self.widget.loading_model))
