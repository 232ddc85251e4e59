"""Objects and masks the curation tests share: a clean object and ways to break it."""

from __future__ import annotations

import numpy as np

from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.prompts import Box, Point
from napari_samlabel.curate.matching import GroundTruth

SHAPE = (100, 100)


def clean_mask() -> np.ndarray:
    m = np.zeros(SHAPE, dtype=bool)
    m[30:50, 30:60] = True  # 600 px, 6 % of the image
    return m


def clean_object(**changes) -> tuple[AnnotatedObject, dict]:
    """A mask that every signal finds fine, plus keyword arguments for assess_object."""
    mask = changes.pop("mask", clean_mask())
    logits = np.where(mask, 8.0, -8.0).astype(np.float32)
    fields = dict(object_id=1, class_id=1, mask=mask,
                  prompts=(Point((40, 45)), Point((35, 35)), Point((80, 80), positive=False),
                           Box((30, 30), (49, 59))),
                  score=0.97, logits=logits, signals={"overlap_lost": 0.0})
    extra = {"multimask": np.stack([mask, mask, mask]),
             "gt": GroundTruth(np.where(clean_mask(), 1, 0).astype(np.uint8))}
    for k in list(changes):
        if k in extra:
            extra[k] = changes.pop(k)
    fields.update(changes)
    return AnnotatedObject(**fields), extra


def _moved(mask: np.ndarray, dr: int, dc: int) -> np.ndarray:
    return np.roll(mask, (dr, dc), axis=(0, 1))


def _with(mask: np.ndarray, rows: slice, cols: slice, value: bool) -> np.ndarray:
    m = mask.copy()
    m[rows, cols] = value
    return m
