"""The window around the annotator: its size on opening, refitting the image on resize.

napari opens a window of about 1066 x 804 px; with the layer list on the left and the
annotator's dock on the right the canvas was 280 px wide. :func:`fit_window` sizes the window
to most of the screen instead, and :class:`RefitOnResize` fits the image to the canvas again
after the canvas changes size, unless the annotator has zoomed or panned since the last fit.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QEvent, QObject, QTimer

#: Share of the screen's free area the window takes on opening.
SCREEN_SHARE = 0.9
#: Smallest window that leaves the canvas room next to the docks (px; capped by the screen).
MIN_SIZE = (1400, 900)


def fit_window(viewer: Any) -> tuple[int, int]:
    """Size ``viewer``'s window to most of its screen; returns the new (width, height)."""
    win = viewer.window._qt_window
    screen = win.screen()
    if screen is None:
        return win.width(), win.height()
    free = screen.availableGeometry()
    w = min(free.width(), max(MIN_SIZE[0], int(free.width() * SCREEN_SHARE)))
    h = min(free.height(), max(MIN_SIZE[1], int(free.height() * SCREEN_SHARE)))
    win.resize(w, h)
    win.move(free.x() + (free.width() - w) // 2, free.y() + (free.height() - h) // 2)
    return w, h


class RefitOnResize(QObject):
    """Fit the image to the canvas after each resize, while the view is still the fitted one.

    A zoom or pan by the annotator is kept: the camera is compared with the one the last fit
    set. Resizes come in bursts while a window is dragged; the fit waits until they stop.
    """

    DELAY_MS = 150

    def __init__(self, viewer: Any) -> None:
        super().__init__()
        self.viewer = viewer
        self._canvas = viewer.window._qt_viewer.canvas.native
        self._fitted: tuple[Any, ...] | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.refit)
        self._canvas.installEventFilter(self)
        self.remember()

    def _camera(self) -> tuple[Any, ...]:
        scene = getattr(self.viewer, "scene", None)  # napari >= 0.9; .camera before
        cam = scene.camera if scene is not None else self.viewer.camera
        return float(cam.zoom), tuple(round(float(c), 3) for c in cam.center)

    def remember(self) -> None:
        """Take the camera as it is now as the fitted view."""
        self._fitted = self._camera()

    def eventFilter(self, obj: Any, event: Any) -> bool:  # noqa: N802 - Qt's name
        """Schedule a refit when the canvas is resized."""
        if event.type() == QEvent.Type.Resize:
            if self._fitted is None or self._camera() == self._fitted:
                self._timer.start(self.DELAY_MS)
            else:
                self._fitted = None  # the annotator moved the view: keep it from now on
        return False

    def refit(self) -> None:
        """Fit the image to the canvas (napari's reset view) and remember that view."""
        self.viewer.reset_view()
        self.remember()

    def close(self) -> None:
        """Stop watching the canvas."""
        self._timer.stop()
        self._canvas.removeEventFilter(self)


def refit_on_resize(viewer: Any) -> RefitOnResize | None:
    """A :class:`RefitOnResize` for ``viewer``, or None without a Qt window (tests)."""
    if getattr(getattr(viewer, "window", None), "_qt_viewer", None) is None:
        return None
    return RefitOnResize(viewer)
