"""Tests of image loading: modes, orientation, bit depths and bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from skimage import data

from napari_samlabel.io.images import (
    ImageReadError,
    image_id,
    image_size,
    is_plain_jpeg,
    list_images,
    load_image,
    to_rgb_uint8,
)


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return data.astronaut()[::8, ::4].copy()  # 64 x 128, not square: catches transposes


def test_rgb_png_round_trips_exactly(tmp_path: Path, rgb: np.ndarray):
    p = tmp_path / "a.png"
    Image.fromarray(rgb).save(p)
    out = load_image(p)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    np.testing.assert_array_equal(out, rgb)


def test_grey_becomes_three_equal_channels(tmp_path: Path):
    grey = data.camera()[::8, ::8]
    p = tmp_path / "g.png"
    Image.fromarray(grey, mode="L").save(p)
    out = load_image(p)
    assert out.shape == grey.shape + (3,)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], grey)


def test_rgba_is_composited_on_white(tmp_path: Path, rgb: np.ndarray):
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:10, :, 3] = 0        # transparent rows -> white
    rgba[10:20, :, 3] = 128    # half transparent -> halfway to white
    p = tmp_path / "t.png"
    Image.fromarray(rgba, mode="RGBA").save(p)
    out = load_image(p)
    assert (out[:10] == 255).all()
    np.testing.assert_array_equal(out[20:], rgb[20:])
    expected = np.rint(rgb[10:20].astype(float) * (128 / 255) + 255 * (1 - 128 / 255))
    assert np.abs(out[10:20].astype(int) - expected).max() <= 1


def test_16bit_is_stretched_min_max(tmp_path: Path):
    ramp = np.linspace(1000, 4095, 64 * 32).reshape(64, 32).astype(np.uint16)  # 12-bit data
    p = tmp_path / "deep.png"
    Image.fromarray(ramp).save(p)
    assert Image.open(p).mode.startswith("I")
    out = load_image(p)
    assert out[..., 0].min() == 0 and out[..., 0].max() == 255
    expected = np.rint((ramp - 1000.0) / (4095 - 1000) * 255)
    assert np.abs(out[..., 0].astype(int) - expected).max() <= 1


def test_16bit_tiff_rgb_and_planar(tmp_path: Path):
    tifffile = pytest.importorskip("tifffile")
    arr = (data.astronaut()[::16, ::16].astype(np.uint16) * 256)
    tifffile.imwrite(tmp_path / "rgb16.tif", arr)
    out = load_image(tmp_path / "rgb16.tif")
    assert out.shape == arr.shape
    # Stretch over all channels together keeps the colours' order.
    assert np.abs(out.astype(int) - (arr >> 8).astype(int)).max() <= 2
    tifffile.imwrite(tmp_path / "planar.tiff", np.moveaxis(arr, -1, 0), photometric="rgb",
                     planarconfig="separate")
    np.testing.assert_array_equal(load_image(tmp_path / "planar.tiff"), out)


def test_float_unit_range_scales_by_255():
    f = np.array([[0.0, 0.5], [1.0, np.nan]], dtype=np.float32)
    out = to_rgb_uint8(f)
    np.testing.assert_array_equal(out[..., 0], [[0, 128], [255, 0]])
    wide = np.array([[-2.0, 0.0], [2.0, 2.0]])
    np.testing.assert_array_equal(to_rgb_uint8(wide)[..., 1], [[0, 128], [255, 255]])


def test_exif_orientation_is_applied(tmp_path: Path, rgb: np.ndarray):
    # Store the image rotated so that orientation 6 ("rotate 90 CW to view") makes it upright.
    stored = np.rot90(rgb, k=1)  # what a camera held sideways stores
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(p, exif=exif, quality=95)
    out = load_image(p)
    assert out.shape == rgb.shape
    assert image_size(p) == rgb.shape[:2]
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() < 8  # JPEG loss only
    assert not is_plain_jpeg(p)
    plain = tmp_path / "plain.jpg"
    Image.fromarray(rgb).save(plain)
    assert is_plain_jpeg(plain)


def test_palette_and_bilevel(tmp_path: Path, rgb: np.ndarray):
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").shape == rgb.shape
    Image.fromarray(data.camera()[::8, ::8] > 128).save(tmp_path / "b.png")
    out = load_image(tmp_path / "b.png")
    assert set(np.unique(out)) <= {0, 255}


@pytest.mark.parametrize("content, match", [
    (None, "not found"),
    (b"", "empty"),
    (b"this is not a png at all", "cannot read image"),
])
def test_bad_files_name_the_file(tmp_path: Path, content: bytes | None, match: str):
    p = tmp_path / "bad.png"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(ImageReadError, match=match) as info:
        load_image(p)
    assert str(p) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_truncated_jpeg_is_an_error(tmp_path: Path, rgb: np.ndarray):
    p = tmp_path / "cut.jpg"
    Image.fromarray(rgb).save(p)
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(ImageReadError, match="cut.jpg"):
        load_image(p)


def test_list_images_sorted_case_insensitive_no_hidden(tmp_path: Path, rgb: np.ndarray):
    for name in ("b.JPG", "a.png", ".hidden.png", "c.TiFf", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG", "c.TiFf"]
    assert image_id(tmp_path / "b.JPG") == "b"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_images(tmp_path / "nowhere")


@pytest.mark.parametrize("orientation", [1, 3, 6, 7, 8])
def test_tiff_orientation_matches_pillow_and_header(tmp_path: Path, rgb: np.ndarray,
                                                    orientation: int):
    tifffile = pytest.importorskip("tifffile")
    p = tmp_path / "o.tif"
    tifffile.imwrite(p, rgb, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    with Image.open(p) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    out = load_image(p)
    np.testing.assert_array_equal(out, expected)
    assert image_size(p) == out.shape[:2]
