"""The prompt tool in use, always visible in the dock: Points (p), Box (r), Scribble (t).

Three exclusive buttons that show which tool the prompt layers are in and switch it; any
other napari mode (pan/zoom, select...) leaves none of them checked and says so.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QButtonGroup, QHBoxLayout, QLabel, QPushButton, QWidget

#: (label, annotator action, layer: "points" or "shapes", napari mode)
TOOLS = (("Points (p)", "points_mode", "points", "add"),
         ("Box (r)", "box_mode", "shapes", "add_rectangle"),
         ("Scribble (t)", "scribble_mode", "shapes", "add_path"))


def current_tool(annotator: Any) -> str | None:
    """The label of the prompt tool in use, or None when no prompt tool is."""
    b = annotator.bridge
    active = annotator.viewer.layers.selection.active
    for label, _, which, mode in TOOLS:
        layer = b.points_layer if which == "points" else b.shapes_layer
        if active is layer and str(layer.mode) == mode:
            return label
    return None


class ToolBar(QWidget):
    """The prompt tools of an annotator, as checkable buttons that follow the layers."""

    def __init__(self, annotator: Any) -> None:
        super().__init__()
        self.annotator = annotator
        self.group = QButtonGroup(self)
        self.group.setExclusive(False)  # none checked in napari's other modes
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(QLabel("Tool:"))
        self.buttons: dict[str, QPushButton] = {}
        for label, action, _, _ in TOOLS:
            button = QPushButton(label)
            button.setCheckable(True)
            button.clicked.connect(lambda _=False, a=action: self._pick(a))
            self.group.addButton(button)
            lay.addWidget(button)
            self.buttons[label] = button
        self.other = QLabel("")
        lay.addWidget(self.other, 1)
        b = annotator.bridge
        self._sources = (b.points_layer.events.mode, b.shapes_layer.events.mode,
                         annotator.viewer.layers.selection.events.active)
        for source in self._sources:
            source.connect(self.refresh)
        self.refresh()

    def _pick(self, action: str) -> None:
        getattr(self.annotator, action)()
        self.refresh()

    def refresh(self, *_: Any) -> None:
        """Check the button of the tool in use (none in another napari mode)."""
        tool = current_tool(self.annotator)
        for label, button in self.buttons.items():
            button.setChecked(label == tool)
        if tool is None:
            active = self.annotator.viewer.layers.selection.active
            mode = "" if active is None else str(getattr(active, "mode", ""))
            self.other.setText(f"(napari: {mode.replace('_', ' ') or 'no layer'})")
        else:
            self.other.setText("")

    def close_tools(self) -> None:
        """Stop following the layers."""
        for source in self._sources:
            source.disconnect(self.refresh)
