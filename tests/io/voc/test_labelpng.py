"""Tests of the palette label PNGs: indices kept, VOC palette, colour PNGs refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.core.classes import voc_colormap
from napari_samlabel.io.voc import VocError
from napari_samlabel.io.voc.labelpng import encode_label_png, read_label_png
from tests.io.voc.scenes import (
    H,
    W,
    scene,
)


def test_label_png_keeps_indices_and_uses_voc_palette(tmp_path: Path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 40, size=(H, W)).astype(np.uint8)
    labels[::7] = 255
    p = tmp_path / "l.png"
    p.write_bytes(encode_label_png(labels))
    with Image.open(p) as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(np.asarray(im), labels)
        palette = np.asarray(im.getpalette(), dtype=np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(palette[:256], voc_colormap(256))
    assert tuple(palette[15]) == (192, 128, 128)  # person
    assert tuple(palette[255]) == (224, 224, 192)  # void
    np.testing.assert_array_equal(read_label_png(p), labels)


def test_read_label_png_rejects_colour_pngs(tmp_path: Path):
    colours = voc_colormap(256)[scene()[0]]
    Image.fromarray(colours).save(tmp_path / "rgb.png")
    with pytest.raises(VocError, match=r"rgb\.png is a RGB colour image.*indices"):
        read_label_png(tmp_path / "rgb.png")
    Image.fromarray(scene()[0]).save(tmp_path / "grey.png")  # mode L: indices
    np.testing.assert_array_equal(read_label_png(tmp_path / "grey.png"), scene()[0])
    with pytest.raises(VocError, match="not found"):
        read_label_png(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"\x89PNG junk")
    with pytest.raises(VocError, match="junk.png"):
        read_label_png(tmp_path / "junk.png")
