"""Fixtures for the napari plugin tests (the image folder and tiny SAM are in tests/conftest.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from napari_samlabel.testing.fakes import DiskEngine


@pytest.fixture(autouse=True, scope="session")
def _no_triton_after_gl():
    """The GUI's guard against triton's LLVM clashing with Mesa's (see torch_guard)."""
    from napari_samlabel._napari.torch_guard import keep_triton_out

    keep_triton_out()


class SlowDiskEngine(DiskEngine):
    """The disk fake, each decode taking ``delay`` seconds (set it when the test needs it)."""

    delay = 0.0

    def predict(self, inputs):
        time.sleep(self.delay)
        return super().predict(inputs)


def wait_idle(qtbot, session, timeout: int = 20000) -> None:
    """Wait until the session's engine and loading lanes have nothing running or waiting."""
    qtbot.waitUntil(lambda: session.idle, timeout=timeout)
    time.sleep(0)  # let queued signals land


@pytest.fixture()
def annotate(make_napari_viewer, qtbot):
    """Factory: a viewer with the dock widget annotating ``folder``.

    The engine is the deterministic disk fake unless one is given (tests of engine features
    pass the tiny SAM).
    """
    from napari_samlabel._napari.widget import SamLabelWidget
    from napari_samlabel.testing.fakes import DiskEngine

    widgets = []

    def make(folder: Path, engine=None, **kwargs):
        viewer = make_napari_viewer(**kwargs)
        widget = SamLabelWidget(viewer)
        widgets.append(widget)
        viewer.window.add_dock_widget(widget, name="SAM label")
        annotator = widget.open_folder(folder, engine=engine or DiskEngine(radius=5))
        wait_idle(qtbot, annotator.session)
        return viewer, widget, annotator

    yield make
    for widget in widgets:  # let running workers finish before napari tears the viewer down
        widget.shutdown()
