"""Compose object masks into one semantic and one instance label map.

The overlap rule (ALGORITHMS.md): pixels claimed by no object are background (0); where
objects overlap, the object with the higher predicted IoU (``score``) takes the pixel; on
equal scores (or no scores) the later object in the given order wins, so an object accepted
after another is drawn on top. Objects without a score rank below every scored object.

Parts never compete with wholes (:func:`compose_levels`): an object whose class is a part
class (``dog/head``, :meth:`napari_samlabel.core.classes.ClassTable.parent`) goes into a
separate pair of part maps, composed with the same rule among parts only, so a head neither
disappears under its dog nor punches a hole in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_samlabel.core.classes import VOID, ClassTable


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


def containing_object(mask: np.ndarray,
                      candidates: Sequence[tuple[int, np.ndarray]]) -> int | None:
    """The id of the candidate ``(id, mask)`` sharing the most pixels with ``mask``.

    This is how a part finds its whole: the ``dog`` object that contains most of the
    ``dog/head``'s pixels. None when no candidate overlaps ``mask`` at all; ties go to the
    lower id, so the answer does not depend on the candidates' order.
    """
    if not candidates:
        return None
    mask = np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    # Only the part's bounding box can overlap it: count there, not over the whole image.
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    inside = mask[box]
    best, best_count = None, 0
    for cid, cmask in sorted(candidates, key=lambda c: c[0]):
        count = int(np.count_nonzero(inside & np.asarray(cmask, dtype=bool)[box]))
        if count > best_count:
            best, best_count = int(cid), count
    return best


@dataclass(frozen=True)
class LevelMaps:
    """Object-level and part-level label maps of one image (all ``uint8``, ``H x W``).

    Attributes
    ----------
    semantic, instance : numpy.ndarray
        Class and instance index of the whole objects (parts left out): what
        ``SegmentationClass`` / ``SegmentationObject`` hold.
    part_semantic, part_instance : numpy.ndarray
        Part class index and part instance index of the parts only (0: no part).
    """

    semantic: np.ndarray
    instance: np.ndarray
    part_semantic: np.ndarray
    part_instance: np.ndarray


def split_levels(entries: Sequence[MaskEntry],
                 classes: ClassTable | None) -> tuple[list[MaskEntry], list[MaskEntry]]:
    """Split ``entries`` into ``(wholes, parts)`` by class, keeping their order.

    With ``classes`` None every entry is a whole (no hierarchy known).
    """
    if classes is None:
        return list(entries), []
    wholes: list[MaskEntry] = []
    parts: list[MaskEntry] = []
    for e in entries:
        (parts if classes.is_part(e.class_id) else wholes).append(e)
    return wholes, parts


def compose_levels(shape: tuple[int, int], entries: Sequence[MaskEntry],
                   classes: ClassTable | None) -> LevelMaps:
    """Compose wholes and parts separately, each with the overlap rule (see module docstring).

    Raises
    ------
    ValueError
        As :func:`compose_label_maps`.
    """
    wholes, parts = split_levels(entries, classes)
    semantic, instance = compose_label_maps(shape, wholes)
    part_semantic, part_instance = compose_label_maps(shape, parts)
    return LevelMaps(semantic, instance, part_semantic, part_instance)
