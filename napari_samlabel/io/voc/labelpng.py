"""Palette label PNGs: class or instance indices in an 8-bit PNG with the VOC colour map.

The indices are the labels; the palette (:func:`napari_samlabel.core.classes.voc_colormap`)
is for display only. This is the one label-PNG reader and writer of the package.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from napari_samlabel.core.classes import voc_colormap
from napari_samlabel.core.fsutil import atomic_write_bytes
from napari_samlabel.io.voc import VocError


def _palette_bytes() -> list[int]:
    return voc_colormap(256).reshape(-1).tolist()


def encode_label_png(labels: np.ndarray) -> bytes:
    """Encode an ``H x W`` ``uint8`` label map as a palette PNG with the VOC colour map."""
    arr = np.asarray(labels)
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError(f"a label map must be a 2-D uint8 array, got {arr.dtype} {arr.shape}")
    im = Image.fromarray(np.ascontiguousarray(arr))  # mode "L"
    im.putpalette(_palette_bytes())  # "L" + palette -> "P", indices kept as they are
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def write_label_png(path: str | os.PathLike[str], labels: np.ndarray) -> None:
    """Write a label map as a palette PNG (atomically, see :mod:`napari_samlabel.core.fsutil`)."""
    atomic_write_bytes(path, encode_label_png(labels))


def read_label_png(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a label PNG and return its label *indices* as an ``H x W`` ``uint8`` array.

    Palette (``P``) and grey (``L``) PNGs are read as indices. 16-bit grey PNGs are accepted
    when every value fits 0..255.

    Raises
    ------
    VocError
        If the file is missing or unreadable, or holds colours (RGB/RGBA) rather than
        indices: colours would have to be mapped back to classes, which this reader refuses
        to guess.
    """
    path = Path(path)
    if not path.is_file():
        raise VocError(f"label PNG not found: {path}")
    from napari_samlabel.io.images import ImageReadError, open_image_file

    try:
        with open_image_file(path, "label PNG") as im:
            im.load()
            mode = im.mode
            arr = np.asarray(im)
    except ImageReadError as exc:
        raise VocError(str(exc)) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise VocError(f"cannot read label PNG {path}: {exc}") from exc
    if mode in ("P", "L"):
        return np.array(arr, dtype=np.uint8)  # a writable copy
    if mode.startswith("I") and arr.ndim == 2:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise VocError(f"label PNG {path} holds values {int(arr.min())}..{int(arr.max())}; "
                           "labels must fit 0..255")
        return arr.astype(np.uint8)
    raise VocError(f"label PNG {path} is a {mode} colour image; label PNGs must store class "
                   "indices (palette 'P' or grey 'L' mode), not colours")
