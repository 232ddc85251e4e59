"""SAMS: seeds from class activation maps and SAM's automatic masks.

Yang & Gong, "Foundation Model Assisted Weakly Supervised Semantic Segmentation" (the SAMS
module). Three steps, each a function here, :func:`sams_seeds` runs all three:

1. **Quasi-superpixels** (:func:`select_quasi_superpixels`). Automatic masks generated with
   the whole level preferred (:data:`~napari_samlabel.pseudo.refine.automask.SAMS_PARAMS`:
   lower IoU threshold for whole masks, whole masks first in NMS). Levels are visited from
   whole (2) to sub-part (0); every whole mask is kept; a mask of a lower level is kept only
   if ``|mask ∩ U| / |mask| < t_r`` (strict, ``t_r = 0.3``), where ``U`` is the union of the
   masks kept at *higher* levels (masks of the same level do not filter each other, so the
   result does not depend on the order of masks). The authors' public code compares with
   the single kept mask that covers the most (``occupation="max"``); ``"union"`` (default)
   is the rule as the product's method reference states it.
2. **Classification** (:func:`classify_quasi_superpixels`). For each quasi-superpixel ``Q``
   and each class ``c`` given, ``score_c(Q)`` is the mean of ``c``'s map over ``Q``,
   min-max normalised over all quasi-superpixels of the image (per class). When every
   quasi-superpixel has the same mean for ``c`` (for example only one quasi-superpixel) the
   min-max range is zero; the raw mean clipped to [0, 1] is used instead. The background
   score is ``(1 - max_c score_c(Q)) ** alpha`` with ``alpha = 0.6``; the label is the argmax
   over background and classes (a tie goes to background, then to the class listed first).
3. **Seed map** (:func:`paint_seeds`). Each quasi-superpixel paints its label; where they
   overlap, the higher level wins, then the higher score of the winning label, then the
   mask listed first. Pixels no quasi-superpixel covers are background (0).

The maps can be CAMs or a trained segmentation network's class scores (softmax
probabilities or logits): ``C x H x W`` float, one channel per foreground class, with the
list of class indices. A network's background channel must be left out, since SAMS computes
the background score itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from napari_samlabel.pseudo.refine._ratio import as_fraction, ratio_below
from napari_samlabel.pseudo.refine.automask import (
    LEVEL_WHOLE,
    SAMS_PARAMS,
    AutoMask,
    AutoMaskParams,
    stack_masks,
)
from napari_samlabel.pseudo.refine.record import AutoMaskOptions, RefineInputs, Refiner, param

#: Published values (Yang & Gong): occupation ratio of the level filter and background power.
OCCUPATION_RATIO = 0.3
ALPHA = 0.6
#: The rule of the level filter's coverage (see step 1).
OCCUPATION = "union"


@dataclass(frozen=True)
class SamsResult:
    """What :func:`sams_seeds` computed.

    Attributes
    ----------
    seeds : numpy.ndarray
        ``H x W`` ``uint8`` seed label map (0 background).
    kept : numpy.ndarray
        ``(K,)`` indices into the input masks of the quasi-superpixels.
    labels : numpy.ndarray
        ``(K,)`` label of each quasi-superpixel (0 background).
    scores : numpy.ndarray
        ``(K, 1 + C)`` background and class scores of each quasi-superpixel.
    """

    seeds: np.ndarray
    kept: np.ndarray
    labels: np.ndarray
    scores: np.ndarray


def check_score_maps(maps: np.ndarray, class_ids: Sequence[int] | np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``C x H x W`` maps and their class indices; return them as arrays."""
    arr = np.asarray(maps)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"score maps must be a numeric C x H x W array, got {arr.dtype} "
                         f"{arr.shape}")
    ids = np.asarray(list(class_ids), dtype=np.int64)
    if ids.shape != (arr.shape[0],):
        raise ValueError(f"{arr.shape[0]} score maps but {ids.size} class indices")
    if ids.size and (ids.min() < 1 or ids.max() > 254):
        raise ValueError(f"class indices must be foreground classes 1..254, got {ids.tolist()} "
                         "(leave a network's background channel out)")
    if len(set(ids.tolist())) != ids.size:
        raise ValueError(f"class indices repeat: {ids.tolist()}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("score maps contain NaN or infinite values")
    return arr.astype(np.float64, copy=False), ids


def _levels(masks: Sequence[AutoMask] | np.ndarray, levels: Sequence[int] | np.ndarray | None,
            n: int) -> np.ndarray:
    if levels is None:
        if isinstance(masks, np.ndarray):
            raise ValueError("levels are needed when masks are given as an array")
        levels = [m.level for m in masks]
    lv = np.asarray(list(levels), dtype=np.int64)
    if lv.shape != (n,):
        raise ValueError(f"{n} masks but {lv.size} levels")
    return lv


def select_quasi_superpixels(masks: Sequence[AutoMask] | np.ndarray,
                             levels: Sequence[int] | np.ndarray | None = None, *,
                             occupation_ratio: float = OCCUPATION_RATIO,
                             occupation: str = OCCUPATION,
                             shape: tuple[int, int] | None = None) -> np.ndarray:
    """Indices of the masks kept as quasi-superpixels (step 1 of the module docstring).

    Parameters
    ----------
    masks : sequence of AutoMask or numpy.ndarray
        Automatic masks (an ``N x H x W`` array needs ``levels``).
    levels : sequence of int, optional
        Level of each mask (0 sub-part, 1 part, 2 whole); default: ``mask.level``.
    occupation_ratio : float
        ``t_r``: a lower-level mask is kept only if the share of it already covered is
        below this (0.3).
    occupation : {"union", "max"}
        Covered by the union of the kept higher-level masks, or by the one that covers most.
    shape : tuple, optional
        ``(H, W)``; taken from the masks when omitted.

    Returns
    -------
    numpy.ndarray
        Sorted indices of the kept masks.
    """
    if occupation not in ("union", "max"):
        raise ValueError(f"occupation must be 'union' or 'max', got {occupation!r}")
    t_r = as_fraction(occupation_ratio, "occupation_ratio")
    if shape is None:
        if isinstance(masks, np.ndarray):
            shape = tuple(masks.shape[-2:])
        elif len(masks):
            shape = tuple(masks[0].segmentation.shape)
        else:
            return np.zeros(0, dtype=np.int64)
    stacked = stack_masks(masks, shape)
    n = stacked.shape[0]
    lv = _levels(masks, levels, n)
    flat = stacked.reshape(n, stacked.shape[1] * stacked.shape[2])
    areas = flat.sum(axis=1, dtype=np.int64)
    kept: list[int] = []
    union = np.zeros(flat.shape[1], dtype=bool)
    for level in sorted(set(lv.tolist()), reverse=True):
        idx = np.flatnonzero((lv == level) & (areas > 0))
        if kept and idx.size:
            if occupation == "union":
                covered = np.count_nonzero(flat[idx] & union, axis=1)
            else:
                covered = np.zeros(idx.size, dtype=np.int64)
                for j in kept:
                    np.maximum(covered, np.count_nonzero(flat[idx] & flat[j], axis=1),
                               out=covered)
            idx = idx[ratio_below(covered, areas[idx], t_r)]
        kept.extend(idx.tolist())
        if idx.size:
            union |= flat[idx].any(axis=0)
    return np.array(sorted(kept), dtype=np.int64)


def classify_quasi_superpixels(maps: np.ndarray, class_ids: Sequence[int] | np.ndarray,
                               masks: np.ndarray, *, alpha: float = ALPHA
                               ) -> tuple[np.ndarray, np.ndarray]:
    """Label each quasi-superpixel (step 2 of the module docstring).

    Parameters
    ----------
    maps : numpy.ndarray
        ``C x H x W`` class activation maps or network scores.
    class_ids : sequence of int
        Class index of each map (foreground classes only).
    masks : numpy.ndarray
        ``K x H x W`` ``bool`` quasi-superpixels.
    alpha : float
        Exponent of the background score (0.6).

    Returns
    -------
    labels : numpy.ndarray
        ``(K,)`` ``int64`` label (0 background or a class index).
    scores : numpy.ndarray
        ``(K, 1 + C)`` background score then the normalised class scores.
    """
    arr, ids = check_score_maps(maps, class_ids)
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    masks = np.asarray(masks, dtype=bool)
    k = masks.shape[0]
    if masks.ndim != 3 or masks.shape[1:] != arr.shape[1:]:
        raise ValueError(f"quasi-superpixels {masks.shape} and score maps {arr.shape} differ "
                         "in size")
    if k == 0:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 1 + ids.size))
    flat = masks.reshape(k, -1).astype(np.float64)
    areas = flat.sum(axis=1)
    if np.any(areas == 0):
        raise ValueError("a quasi-superpixel is empty")
    means = (flat @ arr.reshape(arr.shape[0], -1).T) / areas[:, None]  # K x C
    lo, hi = means.min(axis=0), means.max(axis=0)
    span = hi - lo
    fg = np.where(span > 0, (means - lo) / np.where(span > 0, span, 1.0),
                  np.clip(means, 0.0, 1.0))
    best = fg.max(axis=1) if ids.size else np.zeros(k)
    bg = np.clip(1.0 - best, 0.0, 1.0) ** alpha
    scores = np.concatenate([bg[:, None], fg], axis=1)
    winner = np.argmax(scores, axis=1)  # first maximum: background, then the first class
    labels = np.concatenate([[0], ids])[winner]
    return labels.astype(np.int64), scores


def paint_seeds(masks: np.ndarray, labels: np.ndarray, levels: np.ndarray,
                confidences: np.ndarray) -> np.ndarray:
    """Paint quasi-superpixels into a seed map (step 3 of the module docstring).

    Parameters
    ----------
    masks : numpy.ndarray
        ``K x H x W`` ``bool``.
    labels, levels, confidences : numpy.ndarray
        ``(K,)`` label, level and score of the label of each mask.

    Returns
    -------
    numpy.ndarray
        ``H x W`` ``uint8`` seed map, 0 where no mask lies.
    """
    k = masks.shape[0]
    seeds = np.zeros(masks.shape[1:], dtype=np.uint8)
    # Paint lowest priority first so that higher level, then higher score, then the earlier
    # mask ends on top.
    order = np.lexsort((-np.arange(k), np.asarray(confidences), np.asarray(levels)))
    for i in order:
        seeds[masks[i]] = labels[i]
    return seeds


def sams_seeds(maps: np.ndarray, class_ids: Sequence[int],
               masks: Sequence[AutoMask] | np.ndarray, levels: Sequence[int] | None = None,
               *, occupation_ratio: float = OCCUPATION_RATIO, occupation: str = OCCUPATION,
               alpha: float = ALPHA) -> SamsResult:
    """Seed label map from score maps and automatic masks (all three SAMS steps).

    Parameters
    ----------
    maps : numpy.ndarray
        ``C x H x W`` CAMs or network scores at the masks' resolution.
    class_ids : sequence of int
        Class index of each map.
    masks : sequence of AutoMask or numpy.ndarray
        Automatic masks, ideally made with ``SAMS_PARAMS``.
    levels : sequence of int, optional
        Levels when ``masks`` is an array.
    occupation_ratio, occupation, alpha
        See :func:`select_quasi_superpixels` and :func:`classify_quasi_superpixels`.

    Returns
    -------
    SamsResult
    """
    arr, ids = check_score_maps(maps, class_ids)
    shape = arr.shape[1:]
    stacked = stack_masks(masks, shape)
    lv = _levels(masks, levels, stacked.shape[0])
    kept = select_quasi_superpixels(stacked, lv, occupation_ratio=occupation_ratio,
                                    occupation=occupation, shape=shape)
    qs = stacked[kept]
    labels, scores = classify_quasi_superpixels(arr, ids, qs, alpha=alpha)
    conf = scores.max(axis=1) if len(kept) else np.zeros(0)
    seeds = paint_seeds(qs, labels, lv[kept], conf)
    return SamsResult(seeds, kept, labels, scores)


@dataclass(frozen=True)
class SamsParams(AutoMaskOptions):
    """SAMS's level filter and background score, and its automatic masks' level preference."""

    occupation_ratio: float = param(
        OCCUPATION_RATIO, "t_r: keep a lower-level mask only if less than this share of it is "
        "covered by higher-level masks", label="occupation t_r <", low=0.0, high=1.0, step=0.05)
    occupation: Literal["union", "max"] = param(
        OCCUPATION, "covered by the union of kept masks, or by the one covering most",
        label="occupation by")
    alpha: float = param(ALPHA, "background score (1 - max score) ** alpha",
                         label="background alpha", low=0.01, high=10.0, step=0.05)
    whole_iou_offset: float = param(
        SAMS_PARAMS.level_iou_offset[LEVEL_WHOLE],
        "lowers the whole level's predicted-IoU threshold by this",
        label="whole IoU offset", low=-1.0, high=1.0, step=0.05)
    whole_nms_offset: float = param(
        SAMS_PARAMS.level_nms_offset[LEVEL_WHOLE],
        "added to whole masks' NMS score; 1 puts whole masks first",
        label="whole NMS offset", low=-1.0, high=1.0, step=0.1)

    def automask_params(self) -> AutoMaskParams:
        """The generator parameters with the whole level's offsets."""
        base = super().automask_params()
        iou = list(SAMS_PARAMS.level_iou_offset)
        nms = list(SAMS_PARAMS.level_nms_offset)
        iou[LEVEL_WHOLE], nms[LEVEL_WHOLE] = self.whole_iou_offset, self.whole_nms_offset
        return dataclasses.replace(base, level_iou_offset=(iou[0], iou[1], iou[2]),
                                   level_nms_offset=(nms[0], nms[1], nms[2]))


def _run(inputs: RefineInputs, p: SamsParams) -> np.ndarray:
    # needs, checked by the caller
    assert inputs.maps is not None and inputs.class_ids is not None and inputs.masks is not None
    return sams_seeds(inputs.maps, inputs.class_ids, inputs.masks,
                      occupation_ratio=p.occupation_ratio, occupation=p.occupation,
                      alpha=p.alpha).seeds


REFINER = Refiner(
    "sams", "classify SAM quasi-superpixels with CAMs or network scores (Yang & Gong)",
    needs=("maps", "masks"), accepts=(), params=SamsParams, run=_run)
