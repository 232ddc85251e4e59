"""Shared fixtures: the tiny random-weight SAM checkpoint and small images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint file of the tiny test SAM (segment-anything modules, random weights)."""
    from napari_samlabel.testing.models import save_tiny_checkpoint

    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "sam_tiny_test.pth")


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real RGB test image from scikit-image, downscaled to 128 x 128 (uint8)."""
    from skimage import data
    from skimage.transform import resize

    img = resize(data.astronaut(), (128, 128), anti_aliasing=True, preserve_range=True)
    return img.astype(np.uint8)


@pytest.fixture()
def rect_image() -> np.ndarray:
    """A 96 x 128 RGB image: dark background with a bright rectangle (rows 20-59, cols 30-89)."""
    img = np.full((96, 128, 3), 20, dtype=np.uint8)
    img[20:60, 30:90] = (220, 200, 40)
    return img


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


@pytest.fixture()
def tiny_engine(tiny_checkpoint: Path):
    """The tiny random-weight SAM through the real loader, memory-only embedding cache."""
    from napari_samlabel.engine.loader import load_engine

    return load_engine("vit_tiny_test", tiny_checkpoint, device="cpu", cache=None)
