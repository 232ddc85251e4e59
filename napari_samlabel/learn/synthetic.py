"""Synthetic segmentation data for tests and benchmarks: coloured shapes on noise.

Class 1 is a square, class 2 a disc, class 3 (when ``num_classes = 4``) a triangle, each drawn
with a colour of its own plus noise on a noisy grey background, so a small network can learn
it in a CPU-minute while an untrained one scores near chance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_samlabel.core.classes import ClassTable

COLOURS = ((0, 0, 0), (200, 60, 60), (60, 60, 200), (60, 180, 60))
NAMES = ("background", "square", "disc", "triangle")


def shapes_image(rng: np.random.Generator, size: int = 64,
                 num_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """One ``size x size x 3`` uint8 image and its ``uint8`` label map (0 background)."""
    if not 2 <= num_classes <= len(COLOURS):
        raise ValueError(f"num_classes must be in 2..{len(COLOURS)}, got {num_classes}")
    img = rng.normal(120, 30, (size, size, 3))
    lab = np.zeros((size, size), np.uint8)
    rr, cc = np.mgrid[:size, :size]
    for cls in rng.permutation(np.arange(1, num_classes)):
        r = int(rng.integers(size // 8, size // 4))
        r0, c0 = (int(v) for v in rng.integers(r, size - r, 2))
        if cls == 1:
            m = (abs(rr - r0) <= r) & (abs(cc - c0) <= r)
        elif cls == 2:
            m = (rr - r0) ** 2 + (cc - c0) ** 2 <= r * r
        else:
            m = (rr >= r0 - r) & (rr - (r0 - r) >= 2 * abs(cc - c0))
            m &= rr <= r0 + r
        lab[m] = cls
        img[m] = np.asarray(COLOURS[int(cls)]) + rng.normal(0, 25, (int(m.sum()), 3))
    return np.clip(img, 0, 255).astype(np.uint8), lab


def shapes_classes(num_classes: int = 3) -> ClassTable:
    """The class table of :func:`shapes_image`."""
    return ClassTable(tuple(NAMES[:num_classes]))


def write_shapes_voc(root: str | Path, count: int, *, size: int = 64, num_classes: int = 3,
                     seed: int = 0, labels: str = "SegmentationClass") -> Path:
    """Write ``count`` shapes images as a VOC tree under ``root`` (returns the VOC folder).

    ``labels`` names the label folder (``SegmentationClass``; a second call with another name
    and the same seed writes the same images' labels elsewhere, e.g. ground truth).
    """
    from PIL import Image

    from napari_samlabel.core.fsutil import atomic_write_text
    from napari_samlabel.io.voc.annotations import labelmap_text
    from napari_samlabel.io.voc.labelpng import write_label_png

    voc = Path(root) / "VOCdevkit" / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (voc / labels).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(count):
        img, lab = shapes_image(rng, size, num_classes)
        # PNG, not JPEG: the test compares against exact labels and JPEG would blur edges.
        Image.fromarray(img).save(voc / "JPEGImages" / f"s{k:04d}.png")
        write_label_png(voc / labels / f"s{k:04d}.png", lab)
    atomic_write_text(voc / "labelmap.txt", labelmap_text(shapes_classes(num_classes)))
    return voc
