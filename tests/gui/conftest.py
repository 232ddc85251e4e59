"""Fixtures for the napari plugin tests: a folder of small real images, the tiny SAM."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest


def _small(image: np.ndarray, step: int) -> np.ndarray:
    return np.ascontiguousarray(image[::step, ::step])


@pytest.fixture()
def image_folder(tmp_path: Path) -> Path:
    """Three small real RGB images (skimage samples, downsampled) as PNG files."""
    from PIL import Image
    from skimage import data

    folder = tmp_path / "images"
    folder.mkdir()
    for name, image in (("a_cat", data.chelsea()), ("b_coffee", data.coffee()),
                        ("c_astronaut", data.astronaut())):
        Image.fromarray(_small(image, 4)).save(folder / f"{name}.png")
    return folder


@pytest.fixture(autouse=True, scope="session")
def _no_triton_after_gl():
    """The GUI's guard against triton's LLVM clashing with Mesa's (see torch_guard)."""
    from napari_samlabel._napari.torch_guard import keep_triton_out

    keep_triton_out()


@pytest.fixture()
def tiny_engine(tiny_checkpoint: Path):
    """The tiny random-weight SAM through the real loader, memory-only embedding cache."""
    from napari_samlabel.engine.sam import load_engine

    return load_engine("vit_tiny_test", tiny_checkpoint, device="cpu", cache=None)


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
    from napari_samlabel.engine.fakes import DiskEngine

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
