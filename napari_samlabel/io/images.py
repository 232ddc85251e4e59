"""Image loading: any common format in, RGB ``uint8`` ``(H, W, 3)`` out.

Every image the product works on goes through :func:`load_image`, so that SAM, the label
maps and the exported dataset all see the same pixels in the same orientation.

Conversions (documented in one place):

- **Orientation**: the EXIF ``Orientation`` tag is applied (a phone photo stored sideways is
  returned upright), so masks drawn on the returned array match what viewers show.
- **Grey** (``L``, ``1``, ``I;16``...) is repeated into three channels.
- **Alpha** (``RGBA``, ``LA``, palette with transparency) is composited **on white**:
  fully transparent pixels become white, half transparent ones are blended. Dropping the
  alpha instead would expose whatever colour the encoder left under transparent pixels.
- **More than 8 bits** (16-bit / 32-bit integer, e.g. microscopy TIFF or 16-bit PNG) is
  stretched linearly from the image's own minimum to ``0`` and its maximum to ``255``
  (a constant image becomes ``0``). 12-bit data in a 16-bit container would otherwise look
  black.
- **Float** images whose values all lie in ``[0, 1]`` are multiplied by 255 (the usual
  convention for float images); any other float image is stretched min/max like above.
  NaN becomes ``0``.
- Multi-frame files (GIF, multi-page TIFF) give their first frame.

TIFF files are read with ``tifffile`` (first page) when it is installed, because Pillow
silently reduces multi-channel 16-bit TIFF to 8 bits by dropping the low byte and misreads
planar (``C, H, W``) storage; Pillow is the fallback for TIFF variants tifffile rejects.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Extensions (lower case) that :func:`list_images` picks up.
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset({
    ".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm",
    ".pbm", ".pnm",
})

_TIFF_EXTENSIONS = frozenset({".tif", ".tiff"})
_JPEG_EXTENSIONS = frozenset({".jpg", ".jpeg"})
# EXIF tag 0x0112: image orientation (1 = as stored).
_EXIF_ORIENTATION = 0x0112


class ImageReadError(ValueError):
    """An image file is missing, empty, unreadable or has an unsupported layout.

    The message always names the file.
    """


def image_id(path: str | os.PathLike[str]) -> str:
    """Return the id of an image: its file name without the extension (``a/b/x.jpg`` -> ``x``)."""
    return Path(path).stem


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """List the images directly inside ``folder``, sorted by file name.

    Extensions are matched case-insensitively against :data:`SUPPORTED_EXTENSIONS`; hidden
    files (name starting with ``.``) and sub-folders are skipped.

    Raises
    ------
    FileNotFoundError
        If ``folder`` does not exist.
    NotADirectoryError
        If ``folder`` is a file.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder: {folder}")
    found = [p for p in folder.iterdir()
             if not p.name.startswith(".") and p.suffix.lower() in SUPPORTED_EXTENSIONS
             and p.is_file()]
    return sorted(found, key=lambda p: p.name)


def pixel_limit() -> int:
    """Most pixels an image file may claim (Pillow's decompression-bomb error threshold).

    Pillow warns above half of it (89 Mpx: a 12000x9000 photo) and refuses above it; below,
    the readers here load quietly, above they raise :class:`ImageReadError` with a sentence.
    """
    return 2 * int(Image.MAX_IMAGE_PIXELS or 89_478_485)


@contextlib.contextmanager
def open_image_file(path: str | os.PathLike[str], what: str = "image") -> Iterator[Image.Image]:
    """``Image.open(path)`` without Pillow's decompression-bomb warning, size checked.

    Raises
    ------
    ImageReadError
        If the header claims more than :func:`pixel_limit` pixels (a decompression bomb:
        a small file that would take gigabytes once decoded); the message names the file.
    """
    limit = pixel_limit()

    def too_large(size: str) -> ImageReadError:
        return ImageReadError(
            f"{what} {path} claims {size}, more than the {limit:,} pixels this reads "
            "safely: a corrupt or malicious file (decompression bomb), or an image to "
            "downscale first")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(path)
        except Image.DecompressionBombError as exc:
            # Pillow refuses before giving the size; its message has the pixel count.
            found = re.search(r"\((\d+) pixels\)", str(exc))
            raise too_large(f"{int(found.group(1)):,} pixels" if found
                            else "too many pixels") from None
        with im:
            w, h = im.size
            if w * h > limit:
                raise too_large(f"{w}x{h} = {w * h:,} pixels")
            yield im


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(f"image file not found: {path}")
    if not path.is_file():
        raise ImageReadError(f"not a file: {path}")
    if path.stat().st_size == 0:
        raise ImageReadError(f"image file is empty (0 bytes): {path}")


def exif_orientation(path: str | os.PathLike[str]) -> int:
    """Return the EXIF orientation tag of an image (1, "as stored", when absent or unreadable)."""
    try:
        with open_image_file(path) as im:
            value = im.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, UnidentifiedImageError, ValueError):
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def is_plain_jpeg(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a JPEG whose stored pixels are already upright (no EXIF rotation).

    Such a file's original bytes decode to exactly the orientation :func:`load_image`
    returns, so an exporter may copy it as is; any other image has to be re-encoded.
    Only the header is read: a truncated file passes, so decode it (:func:`load_image`)
    before copying its bytes.
    """
    path = Path(path)
    if path.suffix.lower() not in _JPEG_EXTENSIONS:
        return False
    try:
        with open_image_file(path) as im:
            if im.format != "JPEG":
                return False
            mode = im.mode
    except (OSError, UnidentifiedImageError, ValueError):
        return False
    return mode in ("RGB", "L") and exif_orientation(path) == 1


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Return ``(height, width)`` of an image as :func:`load_image` would return it.

    Reads only the header (EXIF rotation by 90 degrees swaps the two), so a truncated
    file gets a size; :func:`load_image` is what finds it broken.

    Raises
    ------
    ImageReadError
        If the file is missing, empty or not an image.
    """
    path = Path(path)
    _check_file(path)
    try:
        with open_image_file(path) as im:
            width, height = im.size
            # Pillow's TIFF reader applies the orientation tag itself (size included).
            oriented = im.format == "TIFF"
    except ImageReadError:
        raise
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        if path.suffix.lower() in _TIFF_EXTENSIONS:
            return load_image(path).shape[:2]  # type: ignore[return-value]
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc
    if not oriented and exif_orientation(path) in (5, 6, 7, 8):  # transposing orientations
        width, height = height, width
    return height, width


def to_rgb_uint8(array: np.ndarray) -> np.ndarray:
    """Convert an image array to RGB ``uint8`` ``(H, W, 3)`` with the module's documented rules.

    Accepts ``(H, W)``, ``(H, W, 1)``, ``(H, W, 2)`` (grey + alpha), ``(H, W, 3)`` and
    ``(H, W, 4)`` (RGBA) arrays of any integer, boolean or float dtype.

    Raises
    ------
    ValueError
        If the array does not have one of these shapes or is empty.
    """
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 1-4) image, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image has no pixels (shape {arr.shape})")
    channels = arr.shape[2]
    alpha = None
    if channels in (2, 4):
        alpha = _scale_to_unit(arr[:, :, -1])
        arr = arr[:, :, :-1]
    if arr.dtype == np.uint8:
        unit = arr.astype(np.float32) / 255.0 if alpha is not None else None
    else:
        unit = _scale_to_unit(arr)
    if alpha is not None:
        assert unit is not None
        # Composite on white: out = a * colour + (1 - a) * 1.
        unit = unit * alpha[:, :, None] + (1.0 - alpha[:, :, None])
    if unit is None:
        out = arr
    else:
        out = np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return np.ascontiguousarray(out)


def _scale_to_unit(arr: np.ndarray) -> np.ndarray:
    """Map one array to float32 in [0, 1] following the rules in the module docstring."""
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    data = arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(data)
        data = np.where(finite, data, 0.0)
        if finite.any():
            lo, hi = float(data[finite].min()), float(data[finite].max())
            if lo >= 0.0 and hi <= 1.0:
                return data.astype(np.float32)
        else:
            return np.zeros(arr.shape, dtype=np.float32)
    lo, hi = float(data.min()), float(data.max())
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.float32)
    return ((data - lo) / (hi - lo)).astype(np.float32)


def _pil_to_array(im: Image.Image) -> np.ndarray:
    """Decode a Pillow image (already transposed) into an array for :func:`to_rgb_uint8`."""
    mode = im.mode
    if mode == "P" or mode == "PA":
        # Palette: transparency may live in the palette or in info["transparency"].
        im = im.convert("RGBA")
    elif mode in ("1",):
        im = im.convert("L")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif mode == "La":  # premultiplied alpha
        im = im.convert("LA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode.startswith("I;16") or mode in ("I", "F"):
        return np.asarray(im)
    elif mode not in ("L", "LA", "RGB", "RGBA", "RGBX"):
        im = im.convert("RGBA")
    arr = np.asarray(im)
    if im.mode == "RGBX":
        arr = arr[:, :, :3]
    return arr


def _read_tiff(path: Path) -> np.ndarray | None:
    """Read the first page of a TIFF with tifffile; None means "let Pillow do it"."""
    try:
        import tifffile
    except ImportError:  # pragma: no cover - tifffile comes with scikit-image setups
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            if not isinstance(page, tifffile.TiffPage) or \
                    page.photometric == tifffile.PHOTOMETRIC.PALETTE:
                return None  # tifffile returns the indices; Pillow applies the palette
            arr = np.asarray(page.asarray())
            tag = page.tags.get(274)  # Orientation, as Pillow's path applies it
            orientation = int(tag.value) if tag is not None else 1
    except Exception as exc:  # tifffile raises many types on bad files
        raise ImageReadError(f"cannot read TIFF {path}: {exc}") from exc
    arr = np.squeeze(arr)
    # Planar (C, H, W) storage: move the channels last.
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (1, 2, 3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim >= 2 and orientation in _ORIENT:
        arr = _ORIENT[orientation](arr)
    return arr


# The TIFF/EXIF orientations as array operations, matching PIL.ImageOps.exif_transpose.
_ORIENT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, -1)[::-1],
    8: lambda a: np.rot90(a, 1),
}


def _read_with_pillow(path: Path) -> np.ndarray:
    try:
        with open_image_file(path) as opened:
            opened.seek(0)
            upright = ImageOps.exif_transpose(opened)
            upright.load()
            return _pil_to_array(upright)
    except ImageReadError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from exc


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Load an image file as an RGB ``uint8`` array of shape ``(H, W, 3)``.

    See the module docstring for orientation, grey, alpha and bit-depth handling.

    Parameters
    ----------
    path : str or os.PathLike
        Any format Pillow reads (JPEG, PNG, BMP, TIFF, WebP, GIF, PNM...); TIFF through
        ``tifffile`` first.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` ``uint8``, C-contiguous.

    Raises
    ------
    ImageReadError
        If the file is missing, empty, truncated, not an image, or has a layout that is not
        an image (e.g. a 3-D stack); the message names the file.
    """
    path = Path(path)
    _check_file(path)
    arr = None
    if path.suffix.lower() in _TIFF_EXTENSIONS:
        try:
            arr = _read_tiff(path)
        except ImageReadError:
            arr = None  # let Pillow try, and report its error if it fails too
    if arr is None:
        arr = _read_with_pillow(path)
    try:
        return to_rgb_uint8(arr)
    except ValueError as exc:
        raise ImageReadError(f"image {path} is not a 2-D image: {exc}") from exc
