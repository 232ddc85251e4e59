"""SEPL: refine a coarse label map by voting SAM's automatic masks into classes.

Chen et al., "Segment Anything Model (SAM) Enhanced Pseudo Labels for Weakly Supervised
Semantic Segmentation" (arXiv 2305.05803). For each class ``c`` present in the coarse map and
each automatic mask ``s``, with ``o = |s ∩ coarse_c|``: ``s`` is added to class ``c`` if
``o / |s| > 0.5`` or ``o / |coarse_c| > 0.85`` (both strict, as the paper writes them; a
ratio exactly at the threshold does not vote. The authors' code tests the class share with
``>= 0.85``, which differs only when exactly 85 % of a class lies in one mask). Ratios are
compared exactly, as fractions of integers.

The paper states only the vote. The rules for what the vote leaves open follow the authors'
public code (github.com/cskyl/SAM_WSSS, ``merge/max_iou_imp2.py``), except where noted:

1. **Order.** Classes are visited in ascending class index; background (0) and void (255)
   do not vote.
2. **A mask joins at most one class**: the first class, in that order, that it votes for.
3. **Class region** = the union of the masks that joined the class, plus the coarse pixels
   of the class that *no* automatic mask covers (SAM had no opinion there, so the coarse
   label is trusted). The authors' code counts only masks not yet taken by an earlier class
   for "covers"; we count every mask, so that a pixel's fallback does not depend on the
   order of classes.
4. **Overlaps between class regions** (two masks of different classes overlapping, or a mask
   overlapping another class's fallback pixels) go to the class visited later, i.e. the
   higher class index, as the authors' code paints classes in order.
5. **Pixels no class region claims** become background (0), including foreground pixels of
   the coarse map covered by masks that voted for no class; the exception (ours) are void
   pixels of the coarse map, which stay 255 unless a class region claims them, so that
   refinement never invents certainty the coarse map did not have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_samlabel.pseudo.refine._ratio import as_fraction, ratio_above
from napari_samlabel.pseudo.refine.automask import AutoMask, stack_masks
from napari_samlabel.pseudo.refine.record import AutoMaskOptions, RefineInputs, Refiner, param

#: Published thresholds (Chen et al.): mask share inside the class, class share inside the mask.
SEGMENT_RATIO = 0.5
CLASS_RATIO = 0.85
IGNORE_INDEX = 255


def check_label_map(labels: np.ndarray, name: str = "coarse label map") -> np.ndarray:
    """Return ``labels`` as a 2-D ``uint8`` array or raise ``ValueError``."""
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"the {name} must be 2-D (H x W), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0
                         or arr.max() > 255):
            raise ValueError(f"the {name} must hold integers 0..255, got {arr.dtype}")
        arr = arr.astype(np.uint8)
    return arr


def sepl_votes(coarse: np.ndarray, masks: Sequence[AutoMask] | np.ndarray, *,
               segment_ratio: float = SEGMENT_RATIO, class_ratio: float = CLASS_RATIO,
               ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """The class each mask joins (0 for none), following rules 1-2 of the module docstring.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` ``int64``: class index per mask, 0 when the mask joined no class.
    """
    coarse = check_label_map(coarse)
    stacked = stack_masks(masks, coarse.shape)
    seg_t = as_fraction(segment_ratio, "segment_ratio")
    cls_t = as_fraction(class_ratio, "class_ratio")
    n = stacked.shape[0]
    flat = stacked.reshape(n, stacked.shape[1] * stacked.shape[2])
    sizes = flat.sum(axis=1, dtype=np.int64)
    joined = np.zeros(n, dtype=np.int64)
    for c in _classes(coarse, ignore_index):
        region = (coarse == c).reshape(-1)
        overlap = np.count_nonzero(flat & region, axis=1).astype(np.int64)
        votes = (ratio_above(overlap, sizes, seg_t)
                 | ratio_above(overlap, np.full(n, region.sum(), dtype=np.int64), cls_t))
        joined[votes & (joined == 0)] = c
    return joined


def _classes(coarse: np.ndarray, ignore_index: int) -> list[int]:
    return [int(c) for c in np.unique(coarse) if c not in (0, ignore_index)]


def sepl_refine(coarse: np.ndarray, masks: Sequence[AutoMask] | np.ndarray, *,
                segment_ratio: float = SEGMENT_RATIO, class_ratio: float = CLASS_RATIO,
                ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Refine ``coarse`` with automatic ``masks`` by SEPL voting.

    Parameters
    ----------
    coarse : numpy.ndarray
        ``H x W`` ``uint8`` label map: 0 background, 1..254 classes, ``ignore_index`` void.
    masks : sequence of AutoMask or numpy.ndarray
        Automatic masks of the same image (or an ``N x H x W`` ``bool`` array).
    segment_ratio : float
        A mask votes for ``c`` if more than this share of it lies in ``coarse_c`` (0.5).
    class_ratio : float
        ... or if it holds more than this share of ``coarse_c`` (0.85).
    ignore_index : int
        Void label of the coarse map and of the result.

    Returns
    -------
    numpy.ndarray
        ``H x W`` ``uint8`` refined label map (rules in the module docstring).
    """
    coarse = check_label_map(coarse)
    stacked = stack_masks(masks, coarse.shape)
    joined = sepl_votes(coarse, stacked, segment_ratio=segment_ratio, class_ratio=class_ratio,
                        ignore_index=ignore_index)
    covered = stacked.any(axis=0)
    out = np.zeros(coarse.shape, dtype=np.uint8)
    claimed = np.zeros(coarse.shape, dtype=bool)
    for c in _classes(coarse, ignore_index):
        region = (coarse == c) & ~covered
        if np.any(joined == c):
            region |= stacked[joined == c].any(axis=0)
        out[region] = c  # later (higher) classes overwrite: rule 4
        claimed |= region
    out[~claimed & (coarse == ignore_index)] = ignore_index
    return out


@dataclass(frozen=True)
class SeplParams(AutoMaskOptions):
    """SEPL's vote thresholds (and the automatic masks' parameters)."""

    segment_ratio: float = param(
        SEGMENT_RATIO, "a mask votes for a class if more than this share of it is the class",
        label="mask share in class >", low=0.0, high=1.0, step=0.05)
    class_ratio: float = param(
        CLASS_RATIO, "... or if it holds more than this share of the class",
        label="or class share in mask >", low=0.0, high=1.0, step=0.05)


def _run(inputs: RefineInputs, p: SeplParams) -> np.ndarray:
    assert inputs.coarse is not None and inputs.masks is not None  # needs, checked by the caller
    return sepl_refine(inputs.coarse, inputs.masks, segment_ratio=p.segment_ratio,
                       class_ratio=p.class_ratio)


REFINER = Refiner(
    "sepl", "vote SAM's automatic masks into the classes of the coarse maps (Chen et al.)",
    needs=("coarse", "masks"), accepts=(), params=SeplParams, run=_run)
