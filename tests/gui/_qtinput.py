"""Real Qt input on napari's canvas: mouse clicks and drags, keys, at image coordinates.

The events go through Qt, vispy and napari exactly as a user's do (``QApplication.sendEvent``
on the canvas widget), so modifiers arrive as napari passes them (vispy ``Key`` objects).
"""

from __future__ import annotations

from collections.abc import Sequence

from qtpy.QtCore import QEvent, QPoint, QPointF, Qt
from qtpy.QtGui import QKeyEvent, QMouseEvent
from qtpy.QtWidgets import QApplication

_MODS = {"Shift": Qt.KeyboardModifier.ShiftModifier,
         "Control": Qt.KeyboardModifier.ControlModifier,
         "Alt": Qt.KeyboardModifier.AltModifier}


def canvas(viewer):
    """The canvas widget of ``viewer``."""
    return viewer.window._qt_viewer.canvas.native


def to_screen(viewer, rc: Sequence[float]) -> QPoint:
    """Canvas pixel of image coordinate ``(row, col)`` (2D view, no layer transform)."""
    widget = canvas(viewer)
    scene = getattr(viewer, "scene", None)   # napari >= 0.9 moved the camera there
    cam = scene.camera if scene is not None else viewer.camera
    cy, cx = cam.center[-2:]
    return QPoint(int(round(widget.width() / 2 + (rc[1] - cx) * cam.zoom)),
                  int(round(widget.height() / 2 + (rc[0] - cy) * cam.zoom)))


def _mods(names: Sequence[str]):
    m = Qt.KeyboardModifier.NoModifier
    for n in names:
        m |= _MODS[n]
    return m


def _send(viewer, kind, pt: QPoint, buttons, mods) -> None:
    widget = canvas(viewer)
    button = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseMove else Qt.MouseButton.LeftButton
    local = QPointF(pt)
    event = QMouseEvent(kind, local, QPointF(widget.mapToGlobal(pt)), button, buttons, mods)
    QApplication.sendEvent(widget, event)
    QApplication.processEvents()


def press(viewer, rc, mods: Sequence[str] = ()) -> None:
    """Move to ``rc`` and press the left button."""
    pt, m = to_screen(viewer, rc), _mods(mods)
    _send(viewer, QEvent.Type.MouseMove, pt, Qt.MouseButton.NoButton, m)
    _send(viewer, QEvent.Type.MouseButtonPress, pt, Qt.MouseButton.LeftButton, m)


def move(viewer, rc, mods: Sequence[str] = (), held: bool = True) -> None:
    """Move to ``rc`` (with the left button held unless ``held`` is False)."""
    buttons = Qt.MouseButton.LeftButton if held else Qt.MouseButton.NoButton
    _send(viewer, QEvent.Type.MouseMove, to_screen(viewer, rc), buttons, _mods(mods))


def release(viewer, rc, mods: Sequence[str] = ()) -> None:
    """Release the left button at ``rc``."""
    _send(viewer, QEvent.Type.MouseButtonRelease, to_screen(viewer, rc),
          Qt.MouseButton.NoButton, _mods(mods))


def click(viewer, rc, mods: Sequence[str] = ()) -> None:
    """A left click at image coordinate ``rc`` with modifier names (Shift, Control, Alt)."""
    press(viewer, rc, mods)
    release(viewer, rc, mods)


def drag(viewer, path: Sequence[Sequence[float]], mods: Sequence[str] = ()) -> None:
    """Press at ``path[0]``, move through the rest, release at the end."""
    press(viewer, path[0], mods)
    for rc in path[1:]:
        move(viewer, rc, mods)
    release(viewer, path[-1], mods)


def key(viewer, qt_key, mods: Sequence[str] = (), text: str = "") -> None:
    """Press and release ``qt_key`` on the canvas (e.g. ``Qt.Key.Key_Escape``)."""
    widget = canvas(viewer)
    for kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
        QApplication.sendEvent(widget, QKeyEvent(kind, qt_key, _mods(mods), text))
    QApplication.processEvents()
