"""napari's own hints and tools, made to agree with the annotator's keys.

napari puts a layer's mode shortcuts in its status bar ("use <3> for select points", "use <4>
for move camera"), while 1-0 pick classes here; and the Shapes layer's controls offer a dozen
tools (ellipse, polygon, lasso, line, vertex edits...) of which SAM prompts use two. This
module replaces those hints with the annotator's own (:func:`prompt_help`) and hides the tools
that mean nothing for SAM prompts, keeping box, scribble, select, delete and pan/zoom.
"""

from __future__ import annotations

from typing import Any

#: Buttons of napari's Shapes controls hidden for the prompt layer (napari attribute names;
#: those missing in a napari version are skipped).
HIDDEN_SHAPE_BUTTONS = ("ellipse_button", "line_button", "polyline_button", "polygon_button",
                        "polygon_lasso_button", "vertex_insert_button", "vertex_remove_button",
                        "direct_button", "move_front_button", "move_back_button")


def prompt_help(layer_mode: str, is_shapes: bool) -> str:
    """The status-bar hint of a prompt layer in ``layer_mode``, in the annotator's keys."""
    if is_shapes and layer_mode == "add_rectangle":
        tool = "drag: box (Shift: negative), click: point"
    elif is_shapes and layer_mode == "add_path":
        tool = "drag: scribble (Shift: negative), click: point"
    elif not is_shapes and layer_mode == "add":
        tool = "click: point (Shift: negative)"
    else:
        tool = f"napari's {layer_mode.replace('_', ' ')} mode"
    return (f"{tool} · p points, r box, t scribble · 1-0 class · a accept · Esc discard · "
            "./, images · Keys tab: all keys")


class HelpOverride:
    """Keeps napari's mode hints of ``layers`` replaced by :func:`prompt_help`."""

    def __init__(self, viewer: Any, layers: tuple[Any, ...], shapes: Any) -> None:
        self.viewer = viewer
        self.layers = layers
        self.shapes = shapes
        for layer in layers:
            layer.events.help.connect(self._on_help)
            self._apply(layer)

    def text(self, layer: Any) -> str:
        """The hint ``layer`` should show now."""
        return prompt_help(str(layer.mode), layer is self.shapes)

    def _apply(self, layer: Any) -> None:
        text = self.text(layer)
        if layer.help != text:
            layer.help = text  # emits again, then equal: no loop
        if self.viewer.layers.selection.active is layer:
            self.viewer.help = text

    def _on_help(self, event: Any) -> None:
        self._apply(event.source)

    def close(self) -> None:
        """Stop replacing the hints."""
        for layer in self.layers:
            layer.events.help.disconnect(self._on_help)


def hide_shape_tools(viewer: Any, shapes: Any) -> list[str]:
    """Hide napari's Shapes tools that mean nothing for prompts; returns the hidden names."""
    qt_viewer = getattr(viewer.window, "_qt_viewer", None)
    controls = getattr(getattr(qt_viewer, "controls", None), "widgets", {}).get(shapes)
    if controls is None:
        return []
    hidden = []
    for name in HIDDEN_SHAPE_BUTTONS:
        button = getattr(controls, name, None)
        if button is not None:
            button.setVisible(False)
            hidden.append(name)
    for name, tip in (("rectangle_button", "SAM box (r)"), ("path_button", "SAM scribble (t)")):
        button = getattr(controls, name, None)
        if button is not None:
            button.setToolTip(tip)
    return hidden
