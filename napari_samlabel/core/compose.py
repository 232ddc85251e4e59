"""Compose object masks into one semantic and one instance label map.

The overlap rule (ALGORITHMS.md): pixels claimed by no object are background (0); where
objects overlap, the object with the higher predicted IoU (``score``) takes the pixel; on
equal scores (or no scores) the later object in the given order wins, so an object accepted
after another is drawn on top. Objects without a score rank below every scored object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_samlabel.core.classes import VOID


@dataclass(frozen=True)
class MaskEntry:
    """One object to compose: class index, instance index, mask and score."""

    class_id: int
    instance_id: int
    mask: np.ndarray
    score: float | None = None


def paint_order(scores: Sequence[float | None]) -> list[int]:
    """Return object indices in the order to paint them (last painted wins a pixel).

    Ascending by score (None lowest), stable, so that among equal scores the later object
    is painted last.
    """
    keyed = [(-np.inf if s is None or not np.isfinite(s) else float(s), i)
             for i, s in enumerate(scores)]
    return [i for _, i in sorted(keyed)]


def compose_label_maps(
    shape: tuple[int, int], entries: Sequence[MaskEntry]
) -> tuple[np.ndarray, np.ndarray]:
    """Compose ``entries`` into ``(semantic, instance)`` ``uint8`` label maps of ``shape``.

    Raises
    ------
    ValueError
        If a mask's shape differs from ``shape`` or an index does not fit ``1..254``.
    """
    semantic = np.zeros(shape, dtype=np.uint8)
    instance = np.zeros(shape, dtype=np.uint8)
    for i in paint_order([e.score for e in entries]):
        e = entries[i]
        if e.mask.shape != tuple(shape):
            raise ValueError(f"object {e.instance_id}: mask shape {e.mask.shape} does not "
                             f"match the image shape {tuple(shape)}")
        for name, value in (("class", e.class_id), ("instance", e.instance_id)):
            if not 0 < value < VOID:
                raise ValueError(f"object {e.instance_id}: {name} index {value} is outside "
                                 f"1..{VOID - 1}")
        m = e.mask.astype(bool, copy=False)
        semantic[m] = e.class_id
        instance[m] = e.instance_id
    return semantic, instance
