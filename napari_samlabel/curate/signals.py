"""Failure signals of an object mask: how each is measured, scored and flagged.

SAM pseudo labels fail in recognisable ways: a mask that grabs a neighbour, a part instead of
the whole, a speckle of fragments, a mask that ignores the annotator's own clicks. The
functions below measure such symptoms of one mask from plain arrays and prompts (numpy and
scikit-image only, no file formats, no Qt). SAM's own quality measures (predicted IoU,
stability score, disagreement of the candidate masks) come from
:mod:`napari_samlabel.engine.quality`, the ground-truth signals from
:mod:`napari_samlabel.curate.matching`; :mod:`napari_samlabel.curate.assessment` gathers them
all for one object and one image.

Every signal has a raw value, a *badness* in ``[0, 1]`` (0 = looks fine, 1 = looks broken;
its :class:`SignalSpec` in :data:`SIGNAL_SPECS`), and a flag with a documented threshold
(:class:`Thresholds`). The combined object score is a noisy-OR of the weighted badness values
(see :func:`combine`). Badness and flags are tied together: a signal at its flag threshold
contributes exactly :data:`FLAG_LEVEL` to the score, and an object whose signals add up to
:data:`FLAG_LEVEL` without any of them crossing its threshold is flagged ``borderline``. So
every score of :data:`FLAG_LEVEL` or more comes with a flag that explains it, and every
flagged object scores at least that much. ``docs/curation.md`` explains each signal and every
number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from napari_samlabel.core.prompts import Box, Point, Prompt, Scribble

#: Weighted badness of a signal exactly at its flag threshold, and the score from which an
#: object without any other flag is flagged ``borderline``: scores below it mean "no flag".
FLAG_LEVEL = 0.25


# --------------------------------------------------------------------------------------------
# Signal definitions: how a raw value becomes a badness, and when it raises a flag
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignalSpec:
    """How one signal is scored and flagged.

    Badness is 0 at ``good`` and 1 at ``bad`` (either direction) and clipped to ``[0, 1]``.
    With a flag threshold it is piecewise linear through three points: 0 at ``good``,
    ``FLAG_LEVEL / weight`` at the threshold (so that the *weighted* badness there is exactly
    :data:`FLAG_LEVEL`), 1 at ``bad``. A threshold on the good side of ``good`` makes every
    value better than it 0; one beyond ``bad`` makes every value from it 1. ``weight`` in
    ``[FLAG_LEVEL, 1]`` is how much a fully bad value of this signal alone says "this object
    failed" (see :func:`combine`).

    Attributes
    ----------
    good, bad : float
        The values of badness 0 and 1.
    weight : float
        Weight in the noisy-OR.
    flag : str or None
        The flag this signal raises; also the name of its threshold in :class:`Thresholds`.
    inclusive : bool
        The flag fires at the threshold itself too (not only beyond it).
    """

    good: float
    bad: float
    weight: float
    flag: str | None = None
    inclusive: bool = False

    def __post_init__(self) -> None:
        if self.good == self.bad:
            raise ValueError(f"signal spec {self}: good and bad must differ")
        if self.flag is not None and not FLAG_LEVEL <= self.weight <= 1.0:
            raise ValueError(f"signal spec {self}: a flagged signal needs a weight in "
                             f"[{FLAG_LEVEL}, 1] so that its flag always scores "
                             f"{FLAG_LEVEL} or more")

    def _sign(self) -> float:
        return 1.0 if self.bad > self.good else -1.0

    def fires(self, value: float, threshold: float) -> bool:
        """True when ``value`` is beyond ``threshold`` (or at it, ``inclusive``)."""
        if not math.isfinite(value):
            return True
        s = self._sign()
        return s * value >= s * threshold if self.inclusive else s * value > s * threshold

    def badness(self, value: float, threshold: float | None = None) -> float:
        """Badness of ``value`` in ``[0, 1]`` (with the knee at ``threshold`` when given)."""
        if not math.isfinite(value):
            return 1.0
        s = self._sign()
        x, g, b = s * value, s * self.good, s * self.bad  # larger x is worse
        if threshold is None:
            return float(np.clip((x - g) / (b - g), 0.0, 1.0))
        t = s * threshold
        knee = min(1.0, FLAG_LEVEL / self.weight)
        if not self.fires(value, threshold):
            if t <= g:
                return 0.0
            return float(np.clip(knee * (x - g) / (t - g), 0.0, knee))
        if b <= t:
            return 1.0
        return float(np.clip(knee + (1.0 - knee) * (x - t) / (b - t), knee, 1.0))


#: Scored signals, by the signal name in ``signals``. ``area_fraction`` is two-sided and
#: scored by :data:`AREA_TINY_SPEC` and :data:`AREA_HUGE_SPEC` (badness key ``area``).
#: ``iou_spread`` and the counts ``components`` and ``holes`` are reported but not scored.
SIGNAL_SPECS: dict[str, SignalSpec] = {
    "predicted_iou": SignalSpec(good=0.95, bad=0.60, weight=0.6, flag="low_iou"),
    "stability": SignalSpec(good=0.95, bad=0.60, weight=0.6, flag="unstable"),
    "disagreement": SignalSpec(good=0.20, bad=0.90, weight=0.3, flag="ambiguous"),
    "positive_outside": SignalSpec(good=0.0, bad=0.5, weight=0.9, flag="positive_outside"),
    "negative_inside": SignalSpec(good=0.0, bad=0.5, weight=1.0, flag="negative_inside"),
    "box_fill": SignalSpec(good=0.40, bad=0.05, weight=0.9, flag="box_underfilled"),
    "box_gap": SignalSpec(good=0.05, bad=0.50, weight=0.7, flag="box_partial"),
    "outside_box": SignalSpec(good=0.02, bad=0.30, weight=0.7, flag="outside_box"),
    "fragment_fraction": SignalSpec(good=0.01, bad=0.30, weight=0.5, flag="fragmented"),
    "hole_fraction": SignalSpec(good=0.02, bad=0.30, weight=0.3, flag="holes"),
    "overlap_lost": SignalSpec(good=0.05, bad=0.60, weight=0.5, flag="overlapped"),
    "gt_iou": SignalSpec(good=0.90, bad=0.0, weight=1.0, flag="gt_mismatch", inclusive=True),
    "gt_merge": SignalSpec(good=0.20, bad=1.0, weight=0.9, flag="gt_merged"),
}
AREA_TINY_SPEC = SignalSpec(good=0.003, bad=0.0002, weight=0.6, flag="tiny")
AREA_HUGE_SPEC = SignalSpec(good=0.70, bad=0.98, weight=0.6, flag="huge")
#: Image-level: the fraction of ground-truth objects that no mask matches. Any miss flags
#: ``gt_missed`` and raises the image score to ``FLAG_LEVEL + (1 - FLAG_LEVEL) * fraction``.
GT_MISSED_SPEC = SignalSpec(good=0.0, bad=1.0, weight=1.0, flag="gt_missed")
#: Weight of "the matched ground-truth object has another class" (badness 0 or 1).
GT_CLASS_WEIGHT = 0.8

#: Image score given to an annotated image without any object (suspicious, not certain).
NO_OBJECTS_SCORE = 0.5


@dataclass(frozen=True)
class Thresholds:
    """Flag thresholds (a flag fires when the value is beyond its threshold).

    Each threshold is also where its signal's badness ramp has its knee (see
    :class:`SignalSpec`), so moving a threshold moves the score with it.

    Attributes
    ----------
    low_iou : float
        ``low_iou`` when SAM's predicted IoU is below it. SAM's automatic mask generator
        keeps masks at >= 0.88; a prompted mask has the prompt to pick the object, so 0.80.
    unstable : float
        ``unstable`` when the stability score is below it (the generator keeps >= 0.95).
    ambiguous : float
        ``ambiguous`` when the three multimask outputs disagree more than this.
    positive_outside, negative_inside : float
        When more than this fraction of positive prompt pixels lie outside the mask, or of
        negative ones inside it. One click of up to nine is enough.
    box_underfilled : float
        ``box_underfilled`` when the mask covers less than this fraction of its box.
    box_partial : float
        ``box_partial`` when the mask stays farther than this fraction of its box's height
        (width) from the box's top or bottom (left or right) side: a tight box touches its
        object on all four sides.
    outside_box : float
        ``outside_box`` when more than this fraction of the mask lies outside its box.
    fragmented : float
        ``fragmented`` when more than this fraction of the mask lies outside its largest
        connected component.
    holes : float
        ``holes`` when enclosed holes make up more than this fraction of the filled mask.
    overlapped : float
        ``overlapped`` when more than this fraction of the object's own mask went to
        overlapping objects with a higher predicted IoU when the label map was composed.
    tiny, huge : float
        ``tiny`` / ``huge`` when the mask covers less / more than this fraction of the image.
    gt_mismatch : float
        ``gt_mismatch`` when the IoU with the ground-truth object matched to the mask is at
        or below it (0.5: not a match by PASCAL's rule).
    gt_merged : float
        ``gt_merged`` when the mask covers more than this fraction of a second ground-truth
        object besides its own (the mask grabbed the neighbour).
    gt_match : float
        A ground-truth object counts as found when the mask matched to it has an IoU above
        this (PASCAL: 0.5).
    """

    low_iou: float = 0.80
    unstable: float = 0.85
    ambiguous: float = 0.60
    positive_outside: float = 0.10
    negative_inside: float = 0.10
    box_underfilled: float = 0.15
    box_partial: float = 0.20
    outside_box: float = 0.10
    fragmented: float = 0.05
    holes: float = 0.10
    overlapped: float = 0.30
    tiny: float = 0.001
    huge: float = 0.90
    gt_mismatch: float = 0.50
    gt_merged: float = 0.50
    gt_match: float = 0.50


#: Every flag an object or image can carry, with a one-line meaning (the report shows it).
FLAGS: dict[str, str] = {
    "empty": "the mask has no pixel",
    "low_iou": "SAM's own predicted IoU is low",
    "unstable": "the mask changes a lot when the logit threshold moves by +-1",
    "ambiguous": "SAM's three candidate masks disagree",
    "positive_outside": "positive prompts lie outside the mask",
    "negative_inside": "negative prompts lie inside the mask",
    "box_underfilled": "the mask fills little of its box",
    "box_partial": "the mask does not reach all four sides of its box (part of the object?)",
    "outside_box": "part of the mask lies outside its box",
    "fragmented": "the mask is in several pieces",
    "holes": "the mask has enclosed holes",
    "overlapped": "much of the mask went to overlapping objects with a higher predicted IoU",
    "tiny": "the mask is tiny relative to the image",
    "huge": "the mask covers almost the whole image",
    "gt_mismatch": "the mask matches no ground-truth object (IoU 0.5 or less)",
    "gt_merged": "the mask also covers most of another ground-truth object",
    "gt_duplicate": "the ground-truth object this mask fits is already matched by another mask",
    "gt_wrong_class": "the matched ground-truth object has another class",
    "borderline": "no single signal crosses its threshold, but together they score like a "
                  "flagged failure",
    "gt_missed": "some ground-truth objects are matched by no mask",
    "no_objects": "the image has no object",
    "flagged": "an annotator flagged the image",
}

#: What each badness key means, for reasons in the report (``area``: the area fraction,
#: either side; ``gt_class``: the class check).
SIGNAL_TEXT: dict[str, str] = {
    "predicted_iou": "SAM's predicted IoU",
    "stability": "stability score",
    "disagreement": "disagreement of SAM's candidate masks",
    "positive_outside": "positive prompts outside the mask",
    "negative_inside": "negative prompts inside the mask",
    "box_fill": "share of its box the mask fills",
    "box_gap": "gap between the mask and a side of its box",
    "outside_box": "share of the mask outside its box",
    "fragment_fraction": "share of the mask in stray pieces",
    "hole_fraction": "share of the mask in holes",
    "overlap_lost": "share of the mask lost to overlapping objects",
    "area": "area (share of the image)",
    "gt_iou": "IoU with the matched ground-truth object",
    "gt_merge": "share of a second ground-truth object inside the mask",
    "gt_class": "class differs from the matched ground-truth object",
    "empty": "empty mask",
    "gt_missed": "ground-truth objects matched by no mask",
    "no_objects": "no object in the image",
    "flagged": "flagged by an annotator",
}
#: The raw signal each badness key is read from (when it differs from the key).
BADNESS_SIGNAL = {"area": "area_fraction"}

# --------------------------------------------------------------------------------------------
# Individual signals (plain arrays)
# --------------------------------------------------------------------------------------------
def _prompt_pixels(prompts: Iterable[Prompt], shape: tuple[int, int],
                   positive: bool) -> np.ndarray:
    """``(M, 2)`` integer pixels of the prompts of one sign, in the image.

    Points and scribbles of that sign; negative boxes (exclusion regions) count with all
    the pixels they cover, positive boxes not at all (they bound the object, see
    :func:`box_region`).
    """
    parts: list[np.ndarray] = []
    for p in prompts:
        if isinstance(p, Point) and p.positive == positive:
            parts.append(np.rint(np.asarray(p.rc, dtype=np.float64)).astype(np.int64)[None])
        elif isinstance(p, Scribble) and p.positive == positive:
            parts.append(p.pixels(shape))
        elif isinstance(p, Box) and not p.positive and not positive:
            parts.append(np.argwhere(p.pixel_region(shape)))
    if not parts:
        return np.zeros((0, 2), dtype=np.int64)
    pix = np.concatenate(parts)
    inside = ((pix[:, 0] >= 0) & (pix[:, 0] < shape[0])
              & (pix[:, 1] >= 0) & (pix[:, 1] < shape[1]))
    return pix[inside]


def _box_bounds(box: Box, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Inclusive ``(r0, c0, r1, c1)`` pixel bounds of a box in the image (None if outside)."""
    r0 = max(0, math.floor(box.top_left[0]))
    c0 = max(0, math.floor(box.top_left[1]))
    r1 = min(shape[0] - 1, math.ceil(box.bottom_right[0]))
    c1 = min(shape[1] - 1, math.ceil(box.bottom_right[1]))
    return (r0, c0, r1, c1) if r1 >= r0 and c1 >= c0 else None


def box_region(boxes: Sequence[Box], shape: tuple[int, int]) -> np.ndarray | None:
    """Boolean union of the pixels the boxes cover (None without boxes).

    A box covers rows ``floor(r0) .. ceil(r1)`` and columns ``floor(c0) .. ceil(c1)``
    inclusive, clipped to the image: generous by up to one pixel, so that boxes given as
    inclusive pixel indices and as exclusive edges both hold a tight mask entirely.
    """
    if not boxes:
        return None
    region = np.zeros(shape, dtype=bool)
    for b in boxes:
        bounds = _box_bounds(b, shape)
        if bounds is not None:
            r0, c0, r1, c1 = bounds
            region[r0:r1 + 1, c0:c1 + 1] = True
    return region


def box_gap(mask: np.ndarray, boxes: Sequence[Box]) -> float | None:
    """How far the mask stays from the sides of its box(es), as a share of the box size.

    A tight box touches its object on all four sides, so a mask that covers only part of
    the object (the top of a table instead of the table) leaves a gap on some side. For
    each box (pixels as in :func:`box_region`), the part of the mask inside it is measured
    from each side: the top and bottom gaps are divided by the box's height, the left and
    right ones by its width, after one pixel of slack (a box given by its outer edges is one
    pixel larger than its object). The result is the largest gap over the sides and boxes:
    0 when the mask touches every side, 1 when it misses a box. None without a box inside
    the image.
    """
    mask = np.asarray(mask, dtype=bool)
    shape = (int(mask.shape[0]), int(mask.shape[1]))
    worst: float | None = None
    for b in boxes:
        bounds = _box_bounds(b, shape)
        if bounds is None:
            continue
        r0, c0, r1, c1 = bounds
        crop = mask[r0:r1 + 1, c0:c1 + 1]
        rows = np.flatnonzero(crop.any(axis=1))
        if rows.size == 0:
            return 1.0
        cols = np.flatnonzero(crop.any(axis=0))
        h, w = crop.shape
        gaps = [(rows[0], h), (h - 1 - rows[-1], h), (cols[0], w), (w - 1 - cols[-1], w)]
        g = max(max(0, int(px) - 1) / size for px, size in gaps)
        worst = g if worst is None else max(worst, g)
    return worst


def prompt_consistency(mask: np.ndarray, prompts: Sequence[Prompt]) -> dict[str, float]:
    """How well a mask agrees with the weak labels (prompts) that produced it.

    Returns only the signals the prompts allow:

    - ``positive_outside``: fraction of positive prompt pixels (a point is one pixel, a
      scribble all the pixels it covers) outside the mask;
    - ``negative_inside``: fraction of negative prompt pixels inside the mask (the pixels of
      a negative box, an exclusion region, included);
    - ``box_fill``: mask area inside the positive box(es) / box area;
    - ``box_gap``: the largest gap between a box side and the mask (see :func:`box_gap`);
    - ``outside_box``: fraction of the mask's area outside the box(es).

    Prompts outside the image are ignored.
    """
    mask = np.asarray(mask, dtype=bool)
    shape = (int(mask.shape[0]), int(mask.shape[1]))
    out: dict[str, float] = {}
    for positive, name in ((True, "positive_outside"), (False, "negative_inside")):
        pix = _prompt_pixels(prompts, shape, positive)
        if len(pix):
            hit = mask[pix[:, 0], pix[:, 1]]
            out[name] = float(np.mean(~hit if positive else hit))
    boxes = [p for p in prompts if isinstance(p, Box) and p.positive]
    region = box_region(boxes, shape)
    if region is not None:
        box_area = np.count_nonzero(region)
        area = np.count_nonzero(mask)
        inside = np.count_nonzero(mask & region)
        out["box_fill"] = inside / box_area if box_area else 0.0
        out["outside_box"] = (area - inside) / area if area else 0.0
        gap = box_gap(mask, boxes)
        if gap is not None:
            out["box_gap"] = gap
    return out


def fragmentation(mask: np.ndarray) -> dict[str, float]:
    """Connected pieces and enclosed holes of a mask.

    Returns ``components`` (8-connected pieces), ``fragment_fraction`` (share of the area
    outside the largest piece), ``holes`` (4-connected background regions the mask
    encloses) and ``hole_fraction`` (hole area / area of the mask with its holes filled).
    Computed on the mask's bounding box, which gives the same answer faster.
    """
    from scipy import ndimage as ndi
    from skimage.measure import label

    mask = np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return {"components": 0.0, "fragment_fraction": 0.0, "holes": 0.0,
                "hole_fraction": 0.0}
    cols = np.flatnonzero(mask.any(axis=0))
    crop = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    comp, n = label(crop, connectivity=2, return_num=True)
    sizes = np.bincount(comp.ravel())[1:]
    area = int(sizes.sum())
    filled = ndi.binary_fill_holes(crop)
    hole_pixels = filled & ~crop
    _, n_holes = label(hole_pixels, connectivity=1, return_num=True)
    return {
        "components": float(n),
        "fragment_fraction": 1.0 - float(sizes.max()) / area,
        "holes": float(n_holes),
        "hole_fraction": float(np.count_nonzero(hole_pixels)) / float(np.count_nonzero(filled)),
    }


# --------------------------------------------------------------------------------------------
# Combining
# --------------------------------------------------------------------------------------------
def combine(badness: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """Noisy-OR of weighted badness values: ``1 - prod(1 - w_i * b_i)``.

    Reads each weighted badness as an independent chance that the object failed: one strong
    signal is enough for a high score, several mild ones add up, and a signal that could not
    be measured simply drops out (no renormalisation). The result is in ``[0, 1]``.
    """
    keep = 1.0
    for name, b in badness.items():
        keep *= 1.0 - float(np.clip(weights.get(name, 1.0) * b, 0.0, 1.0))
    return 1.0 - keep


def signal_weight(name: str) -> float:
    """Noisy-OR weight of a badness key (``area`` and ``gt_class`` included)."""
    if name in SIGNAL_SPECS:
        return SIGNAL_SPECS[name].weight
    if name == "area":
        return AREA_TINY_SPEC.weight
    if name == "gt_class":
        return GT_CLASS_WEIGHT
    return 1.0


__all__ = [
    "AREA_HUGE_SPEC", "AREA_TINY_SPEC", "BADNESS_SIGNAL", "FLAGS", "FLAG_LEVEL",
    "GT_CLASS_WEIGHT", "GT_MISSED_SPEC", "NO_OBJECTS_SCORE", "SIGNAL_SPECS", "SIGNAL_TEXT",
    "SignalSpec", "Thresholds", "box_gap", "box_region", "combine", "fragmentation",
    "prompt_consistency", "signal_weight",
]
