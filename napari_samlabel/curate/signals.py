"""Failure signals for object masks, a combined badness score, and the ranked image queue.

SAM pseudo labels fail in recognisable ways: a mask that grabs a neighbour, a part instead of
the whole, a speckle of fragments, a mask that ignores the annotator's own clicks. Each
function below measures one such symptom from plain arrays and prompts (numpy and
scikit-image only, no file formats, no Qt). :func:`assess_object` gathers them for one object,
:func:`assess_image` for one image, and :func:`rank_images` orders images worst first.

Every signal has a raw value (``signals``), a *badness* in ``[0, 1]`` (``badness``; 0 = looks
fine, 1 = looks broken), and a flag with a documented threshold. The combined object score is
a noisy-OR of the weighted badness values (see :func:`combine`); an image's score is the
highest score of its objects. Badness and flags are tied together: a signal at its flag
threshold contributes exactly :data:`FLAG_LEVEL` to the score, and an object whose signals
add up to :data:`FLAG_LEVEL` without any of them crossing its threshold is flagged
``borderline``. So every score of :data:`FLAG_LEVEL` or more comes with a flag that explains
it, and every flagged object scores at least that much. ``docs/curation.md`` explains each
signal and every number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_samlabel.core.classes import BACKGROUND, VOID
from napari_samlabel.core.document import ImageStatus
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.prompts import Box, Point, Prompt, Scribble
from napari_samlabel.engine.quality import (  # noqa: F401  (part of this module's API)
    ENCODER_SIZE,
    logits_to_image,
    mask_iou,
    multimask_disagreement,
    stability_score,
)

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
    "negative_inside": SignalSpec(good=0.0, bad=0.5, weight=0.9, flag="negative_inside"),
    "box_fill": SignalSpec(good=0.40, bad=0.05, weight=0.5, flag="box_underfilled"),
    "box_gap": SignalSpec(good=0.05, bad=0.50, weight=0.7, flag="box_partial"),
    "outside_box": SignalSpec(good=0.02, bad=0.30, weight=0.7, flag="outside_box"),
    "fragment_fraction": SignalSpec(good=0.01, bad=0.30, weight=0.5, flag="fragmented"),
    "hole_fraction": SignalSpec(good=0.02, bad=0.30, weight=0.3, flag="holes"),
    "overlap_lost": SignalSpec(good=0.05, bad=0.60, weight=0.5, flag="overlapped"),
    "gt_iou": SignalSpec(good=0.90, bad=0.30, weight=1.0, flag="gt_mismatch", inclusive=True),
    "gt_merge": SignalSpec(good=0.20, bad=0.80, weight=0.9, flag="gt_merged"),
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
# Ground truth
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GtMatch:
    """How one mask compares with the ground truth of its image.

    Attributes
    ----------
    iou : float
        ``gt_iou``: IoU with the ground-truth object matched to the mask (0 when none is).
    class_id : int or None
        Class of that object (None when none is matched).
    merge : float
        ``gt_merge``: the share of a second ground-truth object inside the mask (see
        :class:`GroundTruth`).
    duplicate : bool
        The mask would match an object (IoU above ``match``) that another mask took.
    """

    iou: float
    class_id: int | None
    merge: float = 0.0
    duplicate: bool = False


@dataclass(frozen=True)
class GtResult:
    """The masks of one image against its ground truth (see :meth:`GroundTruth.compare`)."""

    matches: list[GtMatch]
    objects: int
    missed: int


class GroundTruth:
    """Ground truth of one image, and how the masks of the image are matched against it.

    Two modes, after what the ground truth holds:

    - **Instances** (``instance`` given, e.g. VOC ``SegmentationObject``): masks and
      ground-truth instances are matched one to one, greedily by IoU (highest pair first,
      as COCO's evaluation does). A mask's ``gt_iou`` is its IoU with the instance matched
      to it (0 when none is: a second mask on an already matched instance is a duplicate);
      the class of that instance is the matched class. An instance of at least
      ``min_area`` of the image is *found* when its mask's IoU is above ``match`` (PASCAL:
      0.5), else *missed*. A mask's ``gt_merge`` is the largest share of any *other* such
      instance (not its matched one) that lies inside it: a mask that grabs the neighbour
      covers most of two instances and scores high.
    - **Class regions** (``instance`` None): several objects of a class share one region,
      so a mask is compared with the part of a class region it belongs to. The matched class
      is the majority ground-truth class under the mask (background and void aside), and the
      region is the union of that class's 8-connected components the mask overlaps
      (``gt_iou`` 0 for a mask on background only). Two touching objects of one class form
      one component, so a mask that covers only one of them scores low. The ground-truth
      objects are the connected components of at least ``min_area`` of the image; one is
      *missed* when all masks together cover no more than ``match`` of it. Separate
      components of one class may be one occluded object, so ``gt_merge`` counts only
      components of other classes than the matched one.

    Void (255) pixels count in neither intersection nor union nor object size.

    Parameters
    ----------
    semantic : numpy.ndarray
        ``H x W`` class indices, 0 background, 255 void.
    instance : numpy.ndarray, optional
        ``H x W`` instance indices, 0 none, 255 void.
    """

    def __init__(self, semantic: np.ndarray, instance: np.ndarray | None = None) -> None:
        self.semantic = np.asarray(semantic)
        self.instance = None if instance is None else np.asarray(instance)
        if self.semantic.ndim != 2:
            raise ValueError(f"ground truth must be an H x W label map, got shape "
                             f"{self.semantic.shape}")
        if self.instance is not None and self.instance.shape != self.semantic.shape:
            raise ValueError(f"ground-truth instances {self.instance.shape} and classes "
                             f"{self.semantic.shape} differ in size")
        self.valid = self.semantic != VOID
        self._instances: tuple[list[int], list[int]] | None = None
        self._components: dict[int, np.ndarray] = {}

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (int(self.semantic.shape[0]), int(self.semantic.shape[1]))

    def _majority_class(self, mask: np.ndarray) -> int | None:
        vals = self.semantic[mask]
        vals = vals[(vals != BACKGROUND) & (vals != VOID)]
        return int(np.bincount(vals).argmax()) if vals.size else None

    def instances(self) -> list[tuple[int, np.ndarray]]:
        """``(class_id, mask)`` of every ground-truth instance (empty in class-region mode)."""
        if self.instance is None:
            return []
        return [(c, self.instance == k) for k, c in zip(*self._instance_table(), strict=True)]

    def _instance_table(self) -> tuple[list[int], list[int]]:
        """Instance labels (with valid pixels) and their majority classes."""
        if self._instances is None:
            assert self.instance is not None
            labels, classes = [], []
            for k in np.unique(self.instance[self.valid]):
                if k in (0, VOID):
                    continue
                labels.append(int(k))
                classes.append(self._majority_class(self.instance == k) or BACKGROUND)
            self._instances = (labels, classes)
        return self._instances

    def components(self, class_id: int) -> np.ndarray:
        """8-connected component labels of ``class_id``'s ground-truth pixels (0 elsewhere)."""
        if class_id not in self._components:
            from skimage.measure import label

            self._components[class_id] = label(self.semantic == class_id, connectivity=2)
        return self._components[class_id]

    def _regions(self, min_area: float) -> tuple[np.ndarray, list[int]]:
        """Label map ``1..R`` of the class regions of at least ``min_area``, and their classes.

        The regions are the 8-connected components of each class; 0 elsewhere.
        """
        min_pixels = min_area * self.semantic.size
        labels = np.zeros(self.shape, dtype=np.int32)
        classes: list[int] = []
        for c in np.unique(self.semantic):
            if c in (BACKGROUND, VOID):
                continue
            comp = self.components(int(c))
            sizes = np.bincount(comp.ravel())
            keep = np.flatnonzero(sizes >= max(min_pixels, 1))
            keep = keep[keep > 0]
            lut = np.zeros(len(sizes), dtype=np.int32)
            lut[keep] = np.arange(len(classes) + 1, len(classes) + 1 + len(keep))
            labels = np.where(lut[comp] > 0, lut[comp], labels)
            classes.extend([int(c)] * len(keep))
        return labels, classes

    def compare(self, masks: Sequence[np.ndarray], match: float = 0.5,
                min_area: float = 0.0) -> GtResult:
        """Match the masks of one image with the ground truth (see the class doc).

        Parameters
        ----------
        masks : sequence of numpy.ndarray
            The image's object masks.
        match : float
            An object is found when its IoU (instances) or coverage (class regions) is above
            this.
        min_area : float
            Ground-truth objects smaller than this fraction of the image count neither as
            found nor as missed, nor as the second object of a merge (VOC's class maps, and
            instance maps made from them, have specks of a few pixels). Instances of any
            size are still matched.
        """
        masks = [np.asarray(m, dtype=bool) & self.valid for m in masks]
        if self.instance is not None:
            return self._compare_instances(masks, match, min_area)
        return self._compare_regions(masks, match, min_area)

    @staticmethod
    def _counts(label_map: np.ndarray, where: np.ndarray, ids: Sequence[int]) -> np.ndarray:
        """Pixels of each label of ``ids`` inside ``where``."""
        top = max(ids, default=0)
        counts = np.bincount(label_map[where].ravel().astype(np.int64), minlength=top + 1)
        return counts[np.asarray(ids, dtype=np.int64)].astype(np.float64)

    def _compare_instances(self, masks: list[np.ndarray], match: float,
                           min_area: float) -> GtResult:
        assert self.instance is not None
        labels, classes = self._instance_table()
        n, m = len(masks), len(labels)
        sizes = self._counts(self.instance, self.valid, labels)
        counted = sizes >= min_area * self.semantic.size
        inter = np.array([self._counts(self.instance, mk, labels) for mk in masks]
                         ).reshape(n, m)
        areas = np.array([np.count_nonzero(mk) for mk in masks], dtype=np.float64)
        union = areas[:, None] + sizes[None, :] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        cover = np.divide(inter, sizes[None, :], out=np.zeros_like(inter),
                          where=sizes[None, :] > 0)
        # Greedy one-to-one assignment, best pair first (ties: lower mask, then instance).
        assigned: dict[int, int] = {}
        pairs = sorted((-iou[i, j], i, j) for i in range(n) for j in range(m) if iou[i, j] > 0)
        for _, i, j in pairs:
            if i not in assigned and j not in assigned.values():
                assigned[i] = j
        matches = []
        for i in range(n):
            j = assigned.get(i)
            # A duplicate's own object is the one it fits best, though another mask took it.
            own = j if j is not None else (int(np.argmax(iou[i])) if m else None)
            others = cover[i][counted & (np.arange(m) != own)]
            merge = float(others.max()) if others.size else 0.0
            if j is None:
                matches.append(GtMatch(0.0, None, merge, bool(m and iou[i].max() > match)))
            else:
                matches.append(GtMatch(float(iou[i, j]), classes[j], merge))
        found = sum(1 for i, j in assigned.items() if iou[i, j] > match and counted[j])
        return GtResult(matches, int(counted.sum()), int(counted.sum()) - found)

    def _compare_regions(self, masks: list[np.ndarray], match: float,
                         min_area: float) -> GtResult:
        labels, classes = self._regions(min_area)
        ids = list(range(1, len(classes) + 1))
        sizes = self._counts(labels, labels > 0, ids)
        region_class = np.asarray(classes)
        matches = []
        for mask in masks:
            cls = self._majority_class(mask)
            cover = self._counts(labels, mask, ids) / np.maximum(sizes, 1.0)
            others = cover[region_class != cls] if cls is not None else cover
            merge = float(others.max()) if others.size else 0.0
            if cls is None:
                matches.append(GtMatch(0.0, None, merge))
                continue
            comp = self.components(cls)
            touched = np.unique(comp[mask])
            touched = touched[touched > 0]
            matches.append(GtMatch(mask_iou(mask, np.isin(comp, touched), self.valid), cls,
                                   merge))
        covered = np.zeros(self.shape, dtype=bool)
        for mask in masks:
            covered |= mask
        cover_all = self._counts(labels, covered, ids) / np.maximum(sizes, 1.0)
        return GtResult(matches, len(ids), int(np.count_nonzero(cover_all <= match)))

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


# --------------------------------------------------------------------------------------------
# Per object and per image
# --------------------------------------------------------------------------------------------
@dataclass
class ObjectAssessment:
    """The signals, badness values, flags and combined score of one object."""

    object_id: int
    class_id: int
    area: int
    signals: dict[str, float] = field(default_factory=dict)
    badness: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    score: float = 0.0

    def contributions(self) -> dict[str, float]:
        """Weighted badness of each signal (what it adds to the noisy-OR), largest first."""
        c = {k: signal_weight(k) * b for k, b in self.badness.items()}
        return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def main_reason(self) -> dict[str, Any] | None:
        """The signal that adds most to the score: ``{"signal", "value", "contribution"}``.

        ``signal`` is a badness key (see :data:`SIGNAL_TEXT`), ``value`` its raw value (None
        for ``gt_class``). ``empty`` for an empty mask; None when nothing is suspicious.
        """
        if self.area == 0:
            return {"signal": "empty", "value": 0.0, "contribution": 1.0}
        for name, c in self.contributions().items():
            if c <= 0:
                break
            value = self.signals.get(BADNESS_SIGNAL.get(name, name))
            return {"signal": name, "value": value, "contribution": c}
        return None

    @classmethod
    def from_dict(cls, rec: Mapping[str, Any]) -> ObjectAssessment:
        """Rebuild from a :meth:`to_dict` record (``null`` signals become NaN)."""
        return cls(int(rec["object_id"]), int(rec["class_id"]), int(rec["area"]),
                   _floats(rec.get("signals")), _floats(rec.get("badness")),
                   [str(f) for f in rec.get("flags") or []], float(rec.get("score") or 0.0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {"object_id": self.object_id, "class_id": self.class_id, "area": self.area,
                "score": round(self.score, 6), "flags": list(self.flags),
                "main_reason": _json_reason(self.main_reason),
                "signals": {k: _json_float(v) for k, v in self.signals.items()},
                "badness": {k: round(v, 6) for k, v in self.badness.items()}}


@dataclass
class ImageAssessment:
    """The assessment of one image: its objects, image-level signals, flags and score.

    ``main_reason`` says what set the score: ``{"signal", "object_id", "value",
    "contribution"}`` with the image-level cause (``flagged``, ``gt_missed``, ``no_objects``,
    ``object_id`` None) or the main reason of the worst object; None for a clean image.
    """

    image_id: str
    shape: tuple[int, int]
    objects: list[ObjectAssessment] = field(default_factory=list)
    signals: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    score: float = 0.0
    status: str | None = None
    rank: int | None = None
    main_reason: dict[str, Any] | None = None

    @property
    def mean_object_score(self) -> float:
        """Mean of the object scores (0 without objects); breaks ties in the ranking."""
        return float(np.mean([o.score for o in self.objects])) if self.objects else 0.0

    def sort_key(self) -> tuple[float, float, str]:
        """Worst first: higher score, then higher mean object score, then image id."""
        return (-self.score, -self.mean_object_score, self.image_id)

    @classmethod
    def from_dict(cls, rec: Mapping[str, Any]) -> ImageAssessment:
        """Rebuild from a :meth:`to_dict` record (a ``queue.json`` image).

        Raises
        ------
        ValueError
            If a required field is missing or has the wrong type.
        """
        try:
            return cls(str(rec["image_id"]), (int(rec["height"]), int(rec["width"])),
                       [ObjectAssessment.from_dict(o) for o in rec.get("objects") or []],
                       _floats(rec.get("signals")), [str(f) for f in rec.get("flags") or []],
                       float(rec.get("score") or 0.0), rec.get("status"),
                       None if rec.get("rank") is None else int(rec["rank"]),
                       dict(rec["main_reason"]) if rec.get("main_reason") else None)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"image record {rec.get('image_id')!r}: {exc!r}") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {"rank": self.rank, "image_id": self.image_id, "score": round(self.score, 6),
                "status": self.status, "height": self.shape[0], "width": self.shape[1],
                "flags": list(self.flags), "main_reason": _json_reason(self.main_reason),
                "signals": {k: _json_float(v) for k, v in self.signals.items()},
                "objects": [o.to_dict() for o in self.objects]}


def _floats(values: Mapping[str, Any] | None) -> dict[str, float]:
    return {str(k): math.nan if v is None else float(v) for k, v in (values or {}).items()}


def _json_float(v: float) -> float | None:
    v = float(v)
    return round(v, 6) if math.isfinite(v) else None


def _json_reason(reason: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if reason is None:
        return None
    return {k: (_json_float(v) if isinstance(v, float) else v) for k, v in reason.items()}


def _given(signals: Mapping[str, float], name: str) -> float | None:
    v = signals.get(name)
    if v is None:
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def assess_object(
    obj: AnnotatedObject,
    image_shape: tuple[int, int],
    *,
    multimask: np.ndarray | None = None,
    gt: GroundTruth | GtMatch | None = None,
    thresholds: Thresholds = Thresholds(),
    stability_offset: float = 1.0,
) -> ObjectAssessment:
    """Measure every signal that the available data allows for one object.

    Parameters
    ----------
    obj : AnnotatedObject
        The object: its mask, prompts, ``score`` (SAM's predicted IoU) and ``logits``
        (low-res ``256 x 256`` or full-res ``H x W``) when known. Values already in
        ``obj.signals`` under a signal's name (``predicted_iou``, ``stability``,
        ``disagreement``, ``iou_spread`` ...) are used as given; the others are computed.
    image_shape : tuple of int
        ``(height, width)`` of the image.
    multimask : numpy.ndarray, optional
        ``(K, H, W)`` SAM candidate masks of the object's last prediction.
    gt : GroundTruth or GtMatch, optional
        Ground truth of the image (the object is then matched on its own), or its match
        among all the image's objects (what :func:`assess_image` passes).
    thresholds : Thresholds
        Flag thresholds.
    stability_offset : float
        Logit offset of the stability score.

    Returns
    -------
    ObjectAssessment
    """
    shape = (int(image_shape[0]), int(image_shape[1]))
    mask = np.asarray(obj.mask, dtype=bool)
    if mask.shape != shape:
        raise ValueError(f"object {obj.object_id}: mask shape {mask.shape} does not match the "
                         f"image shape {shape}")
    given = dict(obj.signals)
    area = int(np.count_nonzero(mask))
    sig: dict[str, float] = {"area": float(area), "area_fraction": area / float(mask.size)}

    iou = _given(given, "predicted_iou")
    if iou is None and obj.score is not None and math.isfinite(obj.score):
        iou = float(obj.score)
    if iou is not None:
        sig["predicted_iou"] = iou
    stab = _given(given, "stability")
    if stab is None and obj.logits is not None:
        stab = float(stability_score(logits_to_image(obj.logits, shape), stability_offset))
    if stab is not None:
        sig["stability"] = stab
    dis = _given(given, "disagreement")
    if dis is None and multimask is not None:
        dis = multimask_disagreement(multimask)
    if dis is not None:
        sig["disagreement"] = dis
    # Other stored values (``overlap_lost``, ``iou_spread`` of a pseudo-label run or of the
    # GUI at accept time) are kept as given.
    for name in given:
        v = _given(given, name)
        if v is not None:
            sig.setdefault(name, v)
    if area or obj.prompts:
        sig.update(prompt_consistency(mask, obj.prompts))
    if area:
        sig.update(fragmentation(mask))
    match = gt.compare([mask], thresholds.gt_match, thresholds.tiny).matches[0] \
        if isinstance(gt, GroundTruth) else gt
    if match is not None:
        sig["gt_iou"] = match.iou
        sig["gt_merge"] = match.merge

    t = thresholds
    bad: dict[str, float] = {}
    flags: list[str] = []
    if area == 0:
        flags.append("empty")
    for name, spec in SIGNAL_SPECS.items():
        if name in sig:
            assert spec.flag is not None
            limit = getattr(t, spec.flag)
            bad[name] = spec.badness(sig[name], limit)
            if spec.fires(sig[name], limit):
                flags.append(spec.flag)
    frac = sig["area_fraction"]
    bad["area"] = max(AREA_TINY_SPEC.badness(frac, t.tiny) if area else 0.0,
                      AREA_HUGE_SPEC.badness(frac, t.huge))
    if area and AREA_TINY_SPEC.fires(frac, t.tiny):
        flags.append("tiny")
    if AREA_HUGE_SPEC.fires(frac, t.huge):
        flags.append("huge")
    if match is not None:
        if match.duplicate:
            flags.append("gt_duplicate")
        wrong = (match.class_id is not None and match.class_id != obj.class_id
                 and "gt_mismatch" not in flags)
        bad["gt_class"] = 1.0 if wrong else 0.0
        if wrong:
            flags.append("gt_wrong_class")

    score = 1.0 if area == 0 else combine(bad, {k: signal_weight(k) for k in bad})
    if not flags and score >= FLAG_LEVEL:
        flags.append("borderline")
    return ObjectAssessment(obj.object_id, obj.class_id, area, sig, bad, flags, score)


def assess_image(
    image_id: str,
    image_shape: tuple[int, int],
    objects: Sequence[AnnotatedObject],
    *,
    gt: GroundTruth | None = None,
    multimasks: Mapping[int, np.ndarray] | None = None,
    status: ImageStatus | str | None = None,
    thresholds: Thresholds = Thresholds(),
    stability_offset: float = 1.0,
    parts: Iterable[int] = (),
) -> ImageAssessment:
    """Assess every object of one image and score the image.

    The image score is the highest object score (the worst object decides: one broken mask
    makes the image worth a look), raised to :data:`NO_OBJECTS_SCORE` for an image without
    objects, to ``FLAG_LEVEL + (1 - FLAG_LEVEL) * fraction missed`` when ground truth is
    given and some of its objects are missed, and to 1 for an image an annotator flagged
    (status ``flagged``).

    Parameters
    ----------
    image_id : str
        Image identifier.
    image_shape : tuple of int
        ``(height, width)``.
    objects : sequence of AnnotatedObject
        The image's objects.
    gt : GroundTruth, optional
        Ground truth; the objects are matched with it together (one to one for instances),
        adding ``gt_iou`` and ``gt_merge`` per object and ``gt_objects`` and ``gt_missed``
        per image.
    multimasks : mapping, optional
        ``object_id -> (K, H, W)`` SAM candidate masks.
    status : ImageStatus or str, optional
        The image's annotation status.
    thresholds : Thresholds
        Flag thresholds.
    stability_offset : float
        Logit offset of the stability score.
    parts : iterable of int
        Ids of the objects that are parts (``dog/head``): ground truth holds objects whole,
        so parts are assessed without it and never matched against it.
    """
    shape = (int(image_shape[0]), int(image_shape[1]))
    if gt is not None and gt.shape != shape:
        raise ValueError(f"image {image_id}: ground truth is {gt.shape} but the image is "
                         f"{shape} (HxW)")
    multimasks = multimasks or {}
    compared = None
    part_ids = set(parts)
    wholes = [o for o in objects if o.object_id not in part_ids]
    gt_of: dict[int, GtMatch] = {}
    if gt is not None:
        try:
            compared = gt.compare([o.mask for o in wholes], thresholds.gt_match,
                                  thresholds.tiny)
        except ValueError as exc:
            raise ValueError(f"image {image_id}: {exc}") from exc
        gt_of = {o.object_id: m for o, m in zip(wholes, compared.matches, strict=True)}
    assessed = []
    for obj in objects:
        try:
            assessed.append(assess_object(
                obj, shape, multimask=multimasks.get(obj.object_id),
                gt=gt_of.get(obj.object_id),
                thresholds=thresholds, stability_offset=stability_offset))
        except ValueError as exc:
            raise ValueError(f"image {image_id}: {exc}") from exc

    signals: dict[str, float] = {"objects": float(len(assessed))}
    flags: list[str] = []
    worst = max(assessed, key=lambda o: o.score, default=None)
    score = 0.0 if worst is None else worst.score
    reason = None
    if worst is not None and worst.main_reason is not None:
        reason = {"object_id": worst.object_id, **worst.main_reason}

    def raise_to(value: float, why: str, signal_value: float | None) -> None:
        nonlocal score, reason
        if value >= score:
            score = value
            reason = {"object_id": None, "signal": why, "value": signal_value,
                      "contribution": value}

    if not assessed:
        flags.append("no_objects")
        raise_to(NO_OBJECTS_SCORE, "no_objects", 0.0)
    if compared is not None:
        signals["gt_objects"] = float(compared.objects)
        signals["gt_missed"] = float(compared.missed)
        if compared.missed:
            flags.append("gt_missed")
            raise_to(GT_MISSED_SPEC.badness(compared.missed / compared.objects, 0.0),
                     "gt_missed", float(compared.missed))
    status_value = None if status is None else ImageStatus(status).value
    if status_value == ImageStatus.FLAGGED.value:
        flags.append("flagged")
        raise_to(1.0, "flagged", None)
    for o in assessed:
        flags.extend(f for f in o.flags if f not in flags)
    return ImageAssessment(image_id, shape, assessed, signals, flags, float(score),
                           status_value, main_reason=reason)


def rank_images(assessments: Iterable[ImageAssessment]) -> list[ImageAssessment]:
    """Sort worst first (see :meth:`ImageAssessment.sort_key`) and number the ranks from 1."""
    ranked = sorted(assessments, key=ImageAssessment.sort_key)
    for i, a in enumerate(ranked, 1):
        a.rank = i
    return ranked


__all__ = [
    "AREA_HUGE_SPEC", "AREA_TINY_SPEC", "BADNESS_SIGNAL", "FLAGS", "FLAG_LEVEL",
    "GT_CLASS_WEIGHT", "GT_MISSED_SPEC", "NO_OBJECTS_SCORE", "SIGNAL_SPECS", "SIGNAL_TEXT",
    "GroundTruth", "GtMatch", "GtResult", "ImageAssessment", "ObjectAssessment", "SignalSpec",
    "Thresholds", "assess_image", "assess_object", "box_gap", "box_region", "combine",
    "fragmentation", "logits_to_image", "mask_iou", "multimask_disagreement",
    "prompt_consistency", "rank_images", "signal_weight", "stability_score",
]
