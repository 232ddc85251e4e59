"""A synthetic weak-box dataset: coloured shapes of three classes on textured noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Class table of the synthetic data (background first).
CLASSES = ("background", "red_square", "green_disc", "blue_bar")
_COLOURS = {1: (220, 40, 40), 2: (40, 210, 60), 3: (50, 70, 230)}


def shape_image(rng: np.random.Generator, size: int = 64
                ) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """One image with a random non-empty set of classes, one shape each.

    Returns the RGB image and ``[(class index, [x0, y0, x1, y1])]``.
    """
    img = rng.integers(60, 140, (size, size, 3)).astype(np.uint8)  # textured grey noise
    present = [c for c in (1, 2, 3) if rng.random() < 0.5] or [int(rng.integers(1, 4))]
    rr, cc = np.mgrid[:size, :size]
    objects = []
    for cls in present:
        s = int(rng.integers(size // 5, size // 3))
        r0, c0 = (int(v) for v in rng.integers(0, size - s, 2))
        if cls == 1:
            mask = (rr >= r0) & (rr < r0 + s) & (cc >= c0) & (cc < c0 + s)
        elif cls == 2:
            mask = (rr - r0 - s / 2) ** 2 + (cc - c0 - s / 2) ** 2 < (s / 2) ** 2
        else:
            mask = (rr >= r0) & (rr < r0 + s) & (cc >= c0) & (cc < c0 + max(3, s // 3))
        img[mask] = _COLOURS[cls]
        ys, xs = np.nonzero(mask)
        objects.append((cls, np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float32)))
    return img, objects


def write_voc(root: Path, n: int, seed: int = 0, size: int = 64) -> Path:
    """A VOC tree of ``n`` synthetic images with ``Annotations`` boxes and a labelmap."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "Annotations").mkdir()
    (voc / "labelmap.txt").write_text("".join(f"{c}:0,0,0::\n" for c in CLASSES))
    for i in range(n):
        img, objects = shape_image(rng, size)
        iid = f"img{i:03d}"
        Image.fromarray(img).save(voc / "JPEGImages" / f"{iid}.png")
        objs = "".join(
            f"<object><name>{CLASSES[c]}</name><bndbox><xmin>{int(b[0]) + 1}</xmin>"
            f"<ymin>{int(b[1]) + 1}</ymin><xmax>{int(b[2]) + 1}</xmax>"
            f"<ymax>{int(b[3]) + 1}</ymax></bndbox></object>" for c, b in objects)
        (voc / "Annotations" / f"{iid}.xml").write_text(
            f"<annotation><size><width>{size}</width><height>{size}</height>"
            f"<depth>3</depth></size>{objs}</annotation>")
    return voc
