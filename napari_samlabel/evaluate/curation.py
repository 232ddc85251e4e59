"""Failure signals for object masks, a combined badness score, and the ranked image queue.

SAM pseudo labels fail in recognisable ways: a mask that grabs a neighbour, a part instead of
the whole, a speckle of fragments, a mask that ignores the annotator's own clicks. Each
function below measures one such symptom from plain arrays and prompts (numpy and
scikit-image only, no file formats, no Qt). :func:`assess_object` gathers them for one object,
:func:`assess_image` for one image, and :func:`rank_images` orders images worst first.

Every signal has a raw value (``signals``), a *badness* in ``[0, 1]`` (``badness``; 0 = looks
fine, 1 = looks broken), and a flag with a documented threshold. The combined object score is
a noisy-OR of the weighted badness values (see :func:`combine`); an image's score is the
highest score of its objects. ``docs/curation.md`` explains each signal and every number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_samlabel.core.classes import BACKGROUND, VOID
from napari_samlabel.core.document import AnnotatedObject, ImageStatus
from napari_samlabel.core.prompts import Box, Point, Prompt, Scribble
from napari_samlabel.engine.quality import (  # noqa: F401  (part of this module's API)
    ENCODER_SIZE,
    logits_to_image,
    mask_iou,
    multimask_disagreement,
    stability_score,
)


# --------------------------------------------------------------------------------------------
# Signal definitions: how a raw value becomes a badness, and when it raises a flag
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignalSpec:
    """How one signal is scored.

    Badness ramps linearly from 0 at ``good`` to 1 at ``bad`` (either direction) and is
    clipped to ``[0, 1]``. ``weight`` in ``(0, 1]`` is how much a fully bad value of this
    signal alone says "this object failed" (see :func:`combine`).
    """

    good: float
    bad: float
    weight: float

    def badness(self, value: float) -> float:
        """Badness of ``value`` in ``[0, 1]``."""
        if not math.isfinite(value):
            return 1.0
        return float(np.clip((value - self.good) / (self.bad - self.good), 0.0, 1.0))


#: Scored signals. ``area_fraction`` is two-sided and scored by :data:`AREA_TINY_SPEC` and
#: :data:`AREA_HUGE_SPEC` instead.
SIGNAL_SPECS: dict[str, SignalSpec] = {
    "predicted_iou": SignalSpec(good=0.95, bad=0.60, weight=0.6),
    "stability": SignalSpec(good=0.95, bad=0.60, weight=0.6),
    "disagreement": SignalSpec(good=0.20, bad=0.90, weight=0.3),
    "positive_outside": SignalSpec(good=0.0, bad=0.5, weight=0.9),
    "negative_inside": SignalSpec(good=0.0, bad=0.5, weight=0.9),
    "box_fill": SignalSpec(good=0.40, bad=0.05, weight=0.5),
    "outside_box": SignalSpec(good=0.02, bad=0.30, weight=0.7),
    "fragment_fraction": SignalSpec(good=0.01, bad=0.30, weight=0.5),
    "hole_fraction": SignalSpec(good=0.02, bad=0.30, weight=0.3),
    "overlap_lost": SignalSpec(good=0.05, bad=0.60, weight=0.5),
    "gt_iou": SignalSpec(good=0.90, bad=0.30, weight=1.0),
}
AREA_TINY_SPEC = SignalSpec(good=0.01, bad=0.0005, weight=0.6)
AREA_HUGE_SPEC = SignalSpec(good=0.70, bad=0.98, weight=0.6)
#: Image-level: the fraction of ground-truth objects no mask matches (IoU >= ``gt_match``).
GT_MISSED_SPEC = SignalSpec(good=0.0, bad=1.0, weight=1.0)
#: Weight of "the best-matching ground-truth object has another class" (badness 0 or 1).
GT_CLASS_WEIGHT = 0.8

#: Image score given to an annotated image without any object (suspicious, not certain).
NO_OBJECTS_SCORE = 0.5


@dataclass(frozen=True)
class Thresholds:
    """Flag thresholds (a flag fires when the value is beyond its threshold).

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
        ``gt_mismatch`` when the IoU with the best-matching ground-truth object is below it.
    gt_match : float
        A ground-truth object counts as found when some mask reaches this IoU with it.
    """

    low_iou: float = 0.80
    unstable: float = 0.85
    ambiguous: float = 0.60
    positive_outside: float = 0.10
    negative_inside: float = 0.10
    box_underfilled: float = 0.15
    outside_box: float = 0.10
    fragmented: float = 0.05
    holes: float = 0.10
    overlapped: float = 0.30
    tiny: float = 0.001
    huge: float = 0.90
    gt_mismatch: float = 0.50
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
    "outside_box": "part of the mask lies outside its box",
    "fragmented": "the mask is in several pieces",
    "holes": "the mask has enclosed holes",
    "overlapped": "much of the mask went to overlapping objects with a higher predicted IoU",
    "tiny": "the mask is tiny relative to the image",
    "huge": "the mask covers almost the whole image",
    "gt_mismatch": "the mask overlaps little with any ground-truth object",
    "gt_wrong_class": "the best-matching ground-truth object has another class",
    "gt_missed": "some ground-truth objects are matched by no mask",
    "no_objects": "the image has no object",
    "flagged": "an annotator flagged the image",
}


# --------------------------------------------------------------------------------------------
# Individual signals (plain arrays)
# --------------------------------------------------------------------------------------------
def _prompt_pixels(prompts: Iterable[Prompt], shape: tuple[int, int],
                   positive: bool) -> np.ndarray:
    """``(M, 2)`` integer pixels of the point and scribble prompts of one sign, in the image."""
    parts: list[np.ndarray] = []
    for p in prompts:
        if isinstance(p, Point) and p.positive == positive:
            parts.append(np.rint(np.asarray(p.rc, dtype=np.float64)).astype(np.int64)[None])
        elif isinstance(p, Scribble) and p.positive == positive:
            parts.append(p.pixels(shape))
    if not parts:
        return np.zeros((0, 2), dtype=np.int64)
    pix = np.concatenate(parts)
    inside = ((pix[:, 0] >= 0) & (pix[:, 0] < shape[0])
              & (pix[:, 1] >= 0) & (pix[:, 1] < shape[1]))
    return pix[inside]


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
        r0 = max(0, math.floor(b.top_left[0]))
        c0 = max(0, math.floor(b.top_left[1]))
        r1 = min(shape[0] - 1, math.ceil(b.bottom_right[0]))
        c1 = min(shape[1] - 1, math.ceil(b.bottom_right[1]))
        if r1 >= r0 and c1 >= c0:
            region[r0:r1 + 1, c0:c1 + 1] = True
    return region


def prompt_consistency(mask: np.ndarray, prompts: Sequence[Prompt]) -> dict[str, float]:
    """How well a mask agrees with the weak labels (prompts) that produced it.

    Returns only the signals the prompts allow:

    - ``positive_outside``: fraction of positive prompt pixels (a point is one pixel, a
      scribble all the pixels it covers) outside the mask;
    - ``negative_inside``: fraction of negative prompt pixels inside the mask;
    - ``box_fill``: mask area inside the box(es) / box area;
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
    region = box_region([p for p in prompts if isinstance(p, Box)], shape)
    if region is not None:
        box_area = np.count_nonzero(region)
        area = np.count_nonzero(mask)
        inside = np.count_nonzero(mask & region)
        out["box_fill"] = inside / box_area if box_area else 0.0
        out["outside_box"] = (area - inside) / area if area else 0.0
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


class GroundTruth:
    """Ground truth of one image, and how a mask is matched against it.

    Two modes, after what the ground truth holds:

    - **Instances** (``instance`` given, e.g. VOC ``SegmentationObject``): a mask's
      ``gt_iou`` is its best IoU with any ground-truth instance; the class of that instance
      is the matched class. A ground-truth instance is *missed* when no mask reaches IoU
      ``gt_match`` with it.
    - **Class regions** (``instance`` None): several objects of a class share one region,
      so a mask is compared with the part of a class region it belongs to. The matched class
      is the majority ground-truth class under the mask (background and void aside), and the
      region is the union of that class's 8-connected components the mask overlaps
      (``gt_iou`` 0 for a mask on background only). Two touching objects of one class form
      one component, so a mask that covers only one of them scores low.
      A connected component (at least ``min_area`` of the image) is *missed* when all
      masks together cover less than ``gt_match`` of it.

    Void (255) pixels count in neither intersection nor union.

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
        self._instances: list[tuple[int, np.ndarray]] | None = None
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
        if self._instances is None:
            self._instances = []
            for k in np.unique(self.instance):
                if k in (0, VOID):
                    continue
                m = self.instance == k
                self._instances.append((self._majority_class(m) or BACKGROUND, m))
        return self._instances

    def components(self, class_id: int) -> np.ndarray:
        """8-connected component labels of ``class_id``'s ground-truth pixels (0 elsewhere)."""
        if class_id not in self._components:
            from skimage.measure import label

            self._components[class_id] = label(self.semantic == class_id, connectivity=2)
        return self._components[class_id]

    def match(self, mask: np.ndarray) -> tuple[float, int | None]:
        """``(gt_iou, matched ground-truth class)`` of an object's mask (see the class doc)."""
        mask = np.asarray(mask, dtype=bool)
        if self.instance is not None:
            best, cls = 0.0, None
            for c, region in self.instances():
                iou = mask_iou(mask, region, self.valid)
                if iou > best:
                    best, cls = iou, c
            return best, cls
        cls = self._majority_class(mask)
        if cls is None:
            return 0.0, None
        comp = self.components(cls)
        touched = np.unique(comp[mask])
        touched = touched[touched > 0]
        return mask_iou(mask, np.isin(comp, touched), self.valid), cls

    def missed(self, masks: Sequence[np.ndarray], match: float,
               min_area: float = 0.0) -> tuple[int, int]:
        """``(ground-truth objects, how many of them no mask matches)`` (see the class doc)."""
        if self.instance is not None:
            regions = [r for _, r in self.instances()]
            missed = sum(1 for r in regions
                         if max((mask_iou(m, r, self.valid) for m in masks), default=0.0)
                         < match)
            return len(regions), missed
        covered = np.zeros(self.shape, dtype=bool)
        for m in masks:
            covered |= np.asarray(m, dtype=bool)
        total = missed = 0
        min_pixels = min_area * self.semantic.size
        for c in np.unique(self.semantic):
            if c in (BACKGROUND, VOID):
                continue
            comp = self.components(int(c))
            sizes = np.bincount(comp.ravel())
            hits = np.bincount(comp[covered], minlength=len(sizes))
            for k in range(1, len(sizes)):
                if sizes[k] and sizes[k] >= min_pixels:
                    total += 1
                    missed += int(hits[k] / sizes[k] < match)
        return total, missed


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


def _weight(name: str) -> float:
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {"object_id": self.object_id, "class_id": self.class_id, "area": self.area,
                "score": round(self.score, 6), "flags": list(self.flags),
                "signals": {k: _json_float(v) for k, v in self.signals.items()},
                "badness": {k: round(v, 6) for k, v in self.badness.items()}}


@dataclass
class ImageAssessment:
    """The assessment of one image: its objects, image-level signals, flags and score."""

    image_id: str
    shape: tuple[int, int]
    objects: list[ObjectAssessment] = field(default_factory=list)
    signals: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    score: float = 0.0
    status: str | None = None
    rank: int | None = None

    @property
    def mean_object_score(self) -> float:
        """Mean of the object scores (0 without objects); breaks ties in the ranking."""
        return float(np.mean([o.score for o in self.objects])) if self.objects else 0.0

    def sort_key(self) -> tuple[float, float, str]:
        """Worst first: higher score, then higher mean object score, then image id."""
        return (-self.score, -self.mean_object_score, self.image_id)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {"rank": self.rank, "image_id": self.image_id, "score": round(self.score, 6),
                "status": self.status, "height": self.shape[0], "width": self.shape[1],
                "flags": list(self.flags),
                "signals": {k: _json_float(v) for k, v in self.signals.items()},
                "objects": [o.to_dict() for o in self.objects]}


def _json_float(v: float) -> float | None:
    v = float(v)
    return round(v, 6) if math.isfinite(v) else None


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
    gt: GroundTruth | None = None,
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
        ``disagreement`` ...) are used as given; the others are computed.
    image_shape : tuple of int
        ``(height, width)`` of the image.
    multimask : numpy.ndarray, optional
        ``(K, H, W)`` SAM candidate masks of the object's last prediction.
    gt : GroundTruth, optional
        Ground truth of the image (see :class:`GroundTruth` for how masks are matched).
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
    # Other stored values (e.g. ``overlap_lost`` of a pseudo-label run) are kept as given.
    for name in given:
        v = _given(given, name)
        if v is not None:
            sig.setdefault(name, v)
    if area:
        sig.update(prompt_consistency(mask, obj.prompts))
        sig.update(fragmentation(mask))
    elif obj.prompts:
        sig.update(prompt_consistency(mask, obj.prompts))
    wrong_class = False
    if gt is not None:
        best, matched = gt.match(mask)
        sig["gt_iou"] = best
        wrong_class = matched is not None and matched != obj.class_id

    bad: dict[str, float] = {}
    for name, spec in SIGNAL_SPECS.items():
        if name in sig:
            bad[name] = spec.badness(sig[name])
    bad["area"] = max(AREA_TINY_SPEC.badness(sig["area_fraction"]),
                      AREA_HUGE_SPEC.badness(sig["area_fraction"]))

    t = thresholds
    flags: list[str] = []

    def check(flag: str, name: str, fires: Any) -> None:
        if name in sig and fires(sig[name]):
            flags.append(flag)

    if area == 0:
        flags.append("empty")
    check("low_iou", "predicted_iou", lambda v: v < t.low_iou)
    check("unstable", "stability", lambda v: v < t.unstable)
    check("ambiguous", "disagreement", lambda v: v > t.ambiguous)
    check("positive_outside", "positive_outside", lambda v: v > t.positive_outside)
    check("negative_inside", "negative_inside", lambda v: v > t.negative_inside)
    check("box_underfilled", "box_fill", lambda v: v < t.box_underfilled)
    check("outside_box", "outside_box", lambda v: v > t.outside_box)
    check("fragmented", "fragment_fraction", lambda v: v > t.fragmented)
    check("holes", "hole_fraction", lambda v: v > t.holes)
    check("overlapped", "overlap_lost", lambda v: v > t.overlapped)
    if area:
        check("tiny", "area_fraction", lambda v: v < t.tiny)
    check("huge", "area_fraction", lambda v: v > t.huge)
    check("gt_mismatch", "gt_iou", lambda v: v < t.gt_mismatch)
    if wrong_class and sig.get("gt_iou", 0.0) >= t.gt_mismatch:
        flags.append("gt_wrong_class")

    if gt is not None:
        bad["gt_class"] = 1.0 if "gt_wrong_class" in flags else 0.0

    score = 1.0 if area == 0 else combine(bad, {k: _weight(k) for k in bad})
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
) -> ImageAssessment:
    """Assess every object of one image and score the image.

    The image score is the highest object score (the worst object decides: one broken mask
    makes the image worth a look), raised to :data:`NO_OBJECTS_SCORE` for an image without
    objects, to the ground-truth miss badness when ground truth is given, and to 1 for an
    image an annotator flagged (status ``flagged``).

    Parameters
    ----------
    image_id : str
        Image identifier.
    image_shape : tuple of int
        ``(height, width)``.
    objects : sequence of AnnotatedObject
        The image's objects.
    gt : GroundTruth, optional
        Ground truth; adds ``gt_iou`` per object and ``gt_missed`` per image.
    multimasks : mapping, optional
        ``object_id -> (K, H, W)`` SAM candidate masks.
    status : ImageStatus or str, optional
        The image's annotation status.
    thresholds : Thresholds
        Flag thresholds.
    stability_offset : float
        Logit offset of the stability score.
    """
    shape = (int(image_shape[0]), int(image_shape[1]))
    if gt is not None and gt.shape != shape:
        raise ValueError(f"image {image_id}: ground truth is {gt.shape} but the image is "
                         f"{shape} (HxW)")
    multimasks = multimasks or {}
    assessed = []
    for obj in objects:
        try:
            assessed.append(assess_object(
                obj, shape, multimask=multimasks.get(obj.object_id), gt=gt,
                thresholds=thresholds, stability_offset=stability_offset))
        except ValueError as exc:
            raise ValueError(f"image {image_id}: {exc}") from exc

    signals: dict[str, float] = {"objects": float(len(assessed))}
    flags: list[str] = []
    score = max((o.score for o in assessed), default=0.0)
    if not assessed:
        flags.append("no_objects")
        score = max(score, NO_OBJECTS_SCORE)
    if gt is not None:
        total, missed = gt.missed([o.mask for o in objects], thresholds.gt_match,
                                  min_area=thresholds.tiny)
        signals["gt_objects"] = float(total)
        signals["gt_missed"] = float(missed)
        if missed:
            flags.append("gt_missed")
            score = max(score, GT_MISSED_SPEC.weight * GT_MISSED_SPEC.badness(missed / total))
    status_value = None if status is None else ImageStatus(status).value
    if status_value == ImageStatus.FLAGGED.value:
        flags.append("flagged")
        score = 1.0
    for o in assessed:
        flags.extend(f for f in o.flags if f not in flags)
    return ImageAssessment(image_id, shape, assessed, signals, flags, float(score), status_value)


def rank_images(assessments: Iterable[ImageAssessment]) -> list[ImageAssessment]:
    """Sort worst first (see :meth:`ImageAssessment.sort_key`) and number the ranks from 1."""
    ranked = sorted(assessments, key=ImageAssessment.sort_key)
    for i, a in enumerate(ranked, 1):
        a.rank = i
    return ranked


__all__ = [
    "AREA_HUGE_SPEC", "AREA_TINY_SPEC", "FLAGS", "GT_CLASS_WEIGHT", "GT_MISSED_SPEC",
    "NO_OBJECTS_SCORE", "SIGNAL_SPECS", "GroundTruth", "ImageAssessment", "ObjectAssessment",
    "SignalSpec", "Thresholds", "assess_image", "assess_object", "box_region", "combine",
    "fragmentation", "logits_to_image", "mask_iou", "multimask_disagreement",
    "prompt_consistency", "rank_images", "stability_score",
]
