"""Fixtures of the io tests: a folder of three small images and a project made from it."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from napari_samlabel.io.project import Project
from tests.io.projects import H, W


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    base = data.astronaut()[: H * 8 : 8, : W * 8 : 8]
    for name in ("a.jpg", "b.png", "c.jpg"):
        Image.fromarray(base).save(folder / name)
    return folder


@pytest.fixture()
def project(tmp_path: Path, images: Path) -> Project:
    return Project.create(tmp_path / "proj", images, ["cat", "dog", "dog/head"])
