"""Superpixel snapping of coarse labels (SLIC) and the adaptive-ratio confidence threshold.

Two independent steps, both optional parts of :func:`slic_refine`:

**Snapping** (:func:`snap_to_superpixels`). The image is cut into SLIC superpixels
(:func:`skimage.segmentation.slic`, scikit-image's defaults: ``n_segments=100``,
``compactness=10``, ``sigma=0``). A superpixel takes a class only where the coarse map covers
it, decided on the superpixel's non-void coarse pixels (background 0 counts as a class):

- ``rule="majority"`` (default): the label covering strictly more than half of them;
- ``rule="all"``: the label covering all of them.

The whole superpixel gets that label. A superpixel where no label qualifies (a mixed
region), or whose coarse pixels are all void, becomes void (255): it is a boundary the
coarse map does not settle.

**Confidence threshold** (:func:`adaptive_threshold`). Given a per-pixel confidence of the
prediction, all confidences are sorted in ascending order and the value at position
``floor(ratio * n)`` (0-based, clipped to the last) is the threshold; pixels whose
confidence is strictly below it become void (255). The method description gives no ratio;
the default ``ratio = 0.2`` voids about the least confident fifth of the pixels (fewer when
confidences tie at the threshold).

:func:`label_confidence` turns CAMs (or network scores) into the confidence of a label map:
the max-normalised map of the pixel's class for foreground pixels, ``1 - max`` over the
classes for background pixels. :func:`object_confidence` is the other source, for coarse
labels made by SAM (pseudo labels, or the objects of an annotated image): each object's
pixels get the object's predicted IoU, so the least trusted masks are voided; background
pixels, and objects without a score, get ``+inf`` (nothing to rank them by: they are left out
of the sort and kept).
Without any confidence no pixel is voided by confidence (snapping alone); the command line
says so when it happens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from napari_samlabel.pseudo.refine.record import RefineInputs, Refiner, RefinerParams, param
from napari_samlabel.pseudo.refine.sepl import IGNORE_INDEX, check_label_map

#: scikit-image's SLIC defaults, used as the product's defaults.
N_SEGMENTS = 100
COMPACTNESS = 10.0
SIGMA = 0.0
RULE = "majority"
#: No published value: about the least confident 20 % of pixels become void.
IGNORE_RATIO = 0.2


def superpixels(image: np.ndarray, *, n_segments: int = N_SEGMENTS,
                compactness: float = COMPACTNESS, sigma: float = SIGMA) -> np.ndarray:
    """SLIC superpixels of an RGB (``H x W x 3``) or grey (``H x W``) image, labels from 1."""
    from skimage.segmentation import slic

    img = np.asarray(image)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise ValueError(f"the image must be H x W or H x W x 3, got shape {img.shape}")
    if n_segments < 1:
        raise ValueError(f"n_segments must be >= 1, got {n_segments}")
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    return slic(img, n_segments=n_segments, compactness=compactness, sigma=sigma,
                start_label=1, channel_axis=-1 if img.ndim == 3 else None)


def snap_to_superpixels(coarse: np.ndarray, segments: np.ndarray, *, rule: str = RULE,
                        ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Give each superpixel the coarse label that covers it (see the module docstring).

    Parameters
    ----------
    coarse : numpy.ndarray
        ``H x W`` ``uint8`` label map (``ignore_index`` void).
    segments : numpy.ndarray
        ``H x W`` integer superpixel ids (any non-negative ids).
    rule : {"majority", "all"}
        How much of a superpixel's labelled pixels one label must cover.
    ignore_index : int
        Void label.

    Returns
    -------
    numpy.ndarray
        ``H x W`` ``uint8`` snapped label map.
    """
    coarse = check_label_map(coarse)
    seg = np.asarray(segments)
    if seg.shape != coarse.shape:
        raise ValueError(f"superpixels {seg.shape} and coarse map {coarse.shape} differ in size")
    if not np.issubdtype(seg.dtype, np.integer) or (seg.size and seg.min() < 0):
        raise ValueError("superpixel ids must be non-negative integers")
    if rule not in ("majority", "all"):
        raise ValueError(f"rule must be 'majority' or 'all', got {rule!r}")
    _, seg_idx = np.unique(seg.reshape(-1), return_inverse=True)
    n_seg = int(seg_idx.max()) + 1 if seg_idx.size else 0
    lab = coarse.reshape(-1).astype(np.int64)
    valid = lab != ignore_index
    # counts[s, l]: pixels of superpixel s with coarse label l (void left out).
    counts = np.zeros((n_seg, 256), dtype=np.int64)
    np.add.at(counts, (seg_idx[valid], lab[valid]), 1)
    labelled = counts.sum(axis=1)
    best = counts.argmax(axis=1)
    top = counts[np.arange(n_seg), best]
    if rule == "majority":
        ok = 2 * top > labelled
    else:
        ok = (top == labelled) & (labelled > 0)
    per_segment = np.where(ok, best, ignore_index).astype(np.uint8)
    return per_segment[seg_idx].reshape(coarse.shape)


def adaptive_threshold(confidence: np.ndarray, ratio: float = IGNORE_RATIO) -> float:
    """The confidence at position ``floor(ratio * n)`` of the ascending sorted finite values."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    vals = np.asarray(confidence, dtype=np.float64).reshape(-1)
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        raise ValueError("no finite confidence values")
    k = min(int(np.floor(ratio * vals.size)), vals.size - 1)
    return float(np.partition(vals, k)[k])


def mark_low_confidence(labels: np.ndarray, confidence: np.ndarray,
                        ratio: float = IGNORE_RATIO,
                        ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Set pixels whose confidence is below :func:`adaptive_threshold` to ``ignore_index``.

    NaN confidences (no prediction) are left out of the sort and become void too; ``+inf``
    (certain, e.g. background of :func:`object_confidence`) is left out of the sort and kept.
    """
    labels = check_label_map(labels, "label map")
    conf = np.asarray(confidence, dtype=np.float64)
    if conf.shape != labels.shape:
        raise ValueError(f"confidence {conf.shape} and label map {labels.shape} differ in size")
    out = labels.copy()
    if not np.isfinite(conf).any():  # nothing to rank: only pixels without a prediction go
        out[np.isnan(conf)] = ignore_index
        return out
    thr = adaptive_threshold(conf, ratio)
    with np.errstate(invalid="ignore"):
        out[~(conf >= thr)] = ignore_index
    return out


def label_confidence(labels: np.ndarray, maps: np.ndarray, class_ids: Sequence[int],
                     ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Per-pixel confidence of ``labels`` from class maps (CAMs or network scores).

    Each map is divided by its maximum (when positive) and clipped to [0, 1]. A pixel of
    class ``c`` gets ``c``'s map; a background pixel gets ``1 - max`` over the maps (1 when
    there are none); a void pixel or a class without a map gets NaN.
    """
    labels = check_label_map(labels, "label map")
    arr = np.asarray(maps, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != labels.shape:
        raise ValueError(f"maps {arr.shape} do not match the label map {labels.shape}")
    ids = list(class_ids)
    if len(ids) != arr.shape[0]:
        raise ValueError(f"{arr.shape[0]} maps but {len(ids)} class indices")
    peak = arr.reshape(arr.shape[0], -1).max(axis=1) if arr.shape[0] else np.zeros(0)
    norm = np.clip(arr / np.where(peak > 0, peak, 1.0)[:, None, None], 0.0, 1.0)
    conf = np.full(labels.shape, np.nan)
    bg = labels == 0
    conf[bg] = 1.0 - (norm.max(axis=0)[bg] if len(ids) else 0.0)
    for k, c in enumerate(ids):
        here = labels == c
        conf[here] = norm[k][here]
    conf[labels == ignore_index] = np.nan
    return conf


def object_confidence(instance: np.ndarray, scores: Mapping[int, float | None],
                      ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Per-pixel confidence from per-object scores (SAM's predicted IoU of each mask).

    Parameters
    ----------
    instance : numpy.ndarray
        ``H x W`` object ids (0 background, ``ignore_index`` void).
    scores : mapping of int to float or None
        Score of each object id. An object without a score (None, not finite, or missing:
        imported or already refined objects) gets ``+inf`` like the background: there is
        nothing to rank it by, and voiding it would throw labels away on no evidence.

    Returns
    -------
    numpy.ndarray
        ``H x W`` ``float64``: the object's score on its pixels, ``+inf`` on background and
        unscored objects (kept, not ranked), NaN on void.
    """
    inst = np.asarray(instance)
    if inst.ndim != 2 or not np.issubdtype(inst.dtype, np.integer):
        raise ValueError(f"the object map must be a 2-D integer array, got {inst.dtype} "
                         f"{inst.shape}")
    lut = np.full(int(inst.max(initial=0)) + 1, np.inf)
    for oid, score in scores.items():
        if 0 < int(oid) < lut.size and score is not None and np.isfinite(score):
            lut[int(oid)] = float(score)
    conf = lut[inst]
    conf[inst == ignore_index] = np.nan
    return conf


def slic_refine(image: np.ndarray, coarse: np.ndarray, confidence: np.ndarray | None = None, *,
                maps: np.ndarray | None = None, class_ids: Sequence[int] | None = None,
                n_segments: int = N_SEGMENTS, compactness: float = COMPACTNESS,
                sigma: float = SIGMA, rule: str = RULE, ignore_ratio: float = IGNORE_RATIO,
                ignore_index: int = IGNORE_INDEX,
                segments: np.ndarray | None = None) -> np.ndarray:
    """Snap ``coarse`` to SLIC superpixels, then void the least confident pixels.

    Parameters
    ----------
    image : numpy.ndarray
        The image (``H x W x 3`` RGB or ``H x W``).
    coarse : numpy.ndarray
        ``H x W`` ``uint8`` coarse label map.
    confidence : numpy.ndarray, optional
        ``H x W`` confidence of each pixel's label (a network's confidence map, or
        :func:`object_confidence` of SAM masks' predicted IoUs).
    maps, class_ids : numpy.ndarray and sequence of int, optional
        Instead of ``confidence``: class maps (CAMs or network scores) and their class
        indices; the confidence is then :func:`label_confidence` of the *snapped* labels.
        Without ``confidence`` and ``maps`` no pixel is voided by confidence (snapping only).
    n_segments, compactness, sigma
        SLIC parameters.
    rule : {"majority", "all"}
        Snapping rule.
    ignore_ratio : float
        Position of the threshold in the sorted confidences.
    ignore_index : int
        Void label.
    segments : numpy.ndarray, optional
        Precomputed superpixels (skips SLIC).

    Returns
    -------
    numpy.ndarray
        ``H x W`` ``uint8`` refined label map.
    """
    coarse = check_label_map(coarse)
    if confidence is not None and maps is not None:
        raise ValueError("give either confidence or maps, not both")
    if maps is not None and class_ids is None:
        raise ValueError("maps need their class_ids")
    img = np.asarray(image)
    if img.shape[:2] != coarse.shape:
        raise ValueError(f"image {img.shape[:2]} and coarse map {coarse.shape} differ in size")
    if segments is None:
        segments = superpixels(img, n_segments=n_segments, compactness=compactness, sigma=sigma)
    out = snap_to_superpixels(coarse, segments, rule=rule, ignore_index=ignore_index)
    if maps is not None and class_ids is not None:
        confidence = label_confidence(out, maps, class_ids, ignore_index)
    if confidence is not None:
        out = mark_low_confidence(out, confidence, ignore_ratio, ignore_index)
    return out


@dataclass(frozen=True)
class SlicParams(RefinerParams):
    """SLIC's superpixels, the snapping rule and the confidence threshold's ratio."""

    n_segments: int = param(N_SEGMENTS, "SLIC segments", label="superpixels", low=1,
                            high=100000, step=10)
    compactness: float = param(COMPACTNESS, "SLIC compactness", label="compactness",
                               low=0.01, high=1000.0, step=1.0)
    sigma: float = param(SIGMA, "SLIC smoothing", label="smoothing sigma", low=0.0,
                         high=100.0, step=0.5)
    rule: Literal["majority", "all"] = param(
        RULE, "a superpixel takes the label covering more than half (majority) or all of its "
        "labelled pixels; otherwise it becomes void", label="snapping rule")
    ignore_ratio: float = param(
        IGNORE_RATIO, "position of the confidence threshold in the sorted confidences; needs "
        "a confidence (CAMs or a confidence map)", label="void least confident", low=0.0,
        high=1.0, step=0.05)


def _run(inputs: RefineInputs, p: SlicParams) -> np.ndarray:
    assert inputs.coarse is not None  # needs, checked by the caller
    return slic_refine(inputs.image, inputs.coarse, inputs.confidence, maps=inputs.maps,
                       class_ids=inputs.class_ids, n_segments=p.n_segments,
                       compactness=p.compactness, sigma=p.sigma, rule=p.rule,
                       ignore_ratio=p.ignore_ratio)


REFINER = Refiner(
    "slic", "snap the coarse maps to SLIC superpixels and void the least confident pixels",
    needs=("coarse",), accepts=("maps", "confidence"), params=SlicParams, run=_run)
