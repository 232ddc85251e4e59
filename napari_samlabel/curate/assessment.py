"""Per-object and per-image assessments of the failure signals, and the ranked queue.

:func:`assess_object` measures every signal that the available data allows for one object:
the mask and prompt signals of :mod:`napari_samlabel.curate.signals`, SAM's own quality
measures (:mod:`napari_samlabel.engine.quality`) and the ground-truth match
(:mod:`napari_samlabel.curate.matching`). It turns each into a badness and a flag after its
:class:`~napari_samlabel.curate.signals.SignalSpec` and combines them into one score (a
noisy-OR, see :func:`~napari_samlabel.curate.signals.combine`); an object scoring
:data:`~napari_samlabel.curate.signals.FLAG_LEVEL` or more without a flag is flagged
``borderline``. :func:`assess_image` does it for one image, whose score says how much of
the image is wrong: ``1 -`` its mIoU with ground truth, else :func:`estimated_error` (the
class-averaged object scores), 1 for an image an annotator flagged; :func:`rank_images`
orders images worst first. The assessments are the records of ``queue.json``
(:meth:`ImageAssessment.to_dict`, :meth:`ImageAssessment.from_dict`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_samlabel.core.classes import VOID
from napari_samlabel.core.compose import paint_order
from napari_samlabel.core.document import ImageStatus
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.curate.matching import GroundTruth, GtMatch
from napari_samlabel.curate.signals import (
    AREA_HUGE_SPEC,
    AREA_TINY_SPEC,
    BADNESS_SIGNAL,
    FLAG_LEVEL,
    GT_MISSED_SPEC,
    NO_OBJECTS_SCORE,
    SIGNAL_SPECS,
    Thresholds,
    combine,
    fragmentation,
    prompt_consistency,
    signal_weight,
)
from napari_samlabel.engine.quality import (
    logits_to_image,
    multimask_disagreement,
    stability_score,
)


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

        ``signal`` is a badness key (see :data:`~napari_samlabel.curate.signals.SIGNAL_TEXT`),
        ``value`` its raw value (None for ``gt_class``). ``empty`` for an empty mask; None when
        nothing is suspicious.
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
    thresholds: Thresholds = Thresholds(),  # noqa: B008 - frozen: one shared default is safe
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
    thresholds: Thresholds = Thresholds(),  # noqa: B008 - frozen: one shared default is safe
    stability_offset: float = 1.0,
    parts: Iterable[int] = (),
) -> ImageAssessment:
    """Assess every object of one image and score the image.

    The image score says how much of the image is wrong, in ``[0, 1]``:

    - with ground truth, ``1 - mIoU`` of the image's class map (its whole objects composed
      with the overlap rule of :mod:`napari_samlabel.core.compose`) against the ground
      truth, over the classes present, as VOC computes it (:meth:`GroundTruth.miou`); the
      image signal ``gt_miou`` holds the mIoU;
    - without, :func:`estimated_error` of its objects' scores (calibrated on degraded VOC
      labels: ``benchmarks/calibrate_curation.py``), at least
      :data:`~napari_samlabel.curate.signals.NO_OBJECTS_SCORE` for an image without objects;
    - 1 for an image an annotator flagged (status ``flagged``), either way.

    The flags and ``main_reason`` (the strongest evidence: the worst object's main reason, or
    an image-level cause that outweighs it) do not depend on the score's rule.

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
    strength = 0.0 if worst is None else worst.score
    reason = None
    if worst is not None and worst.main_reason is not None:
        reason = {"object_id": worst.object_id, **worst.main_reason}

    def outweigh(value: float, why: str, signal_value: float | None) -> None:
        """Make an image-level cause the main reason when it is the strongest evidence."""
        nonlocal strength, reason
        if value >= strength:
            strength = value
            reason = {"object_id": None, "signal": why, "value": signal_value,
                      "contribution": value}

    if gt is not None and compared is not None:
        whole = [o for o in objects if o.object_id not in part_ids]
        miou = gt.miou(class_map(shape, whole))
        signals["gt_miou"] = miou
        score = 1.0 - miou
    else:
        # Parts (``dog/head``) lie inside their wholes: the wholes say how much is wrong.
        score = estimated_error([a for a in assessed if a.object_id not in part_ids]
                                or assessed)
    if not assessed:
        flags.append("no_objects")
        outweigh(NO_OBJECTS_SCORE, "no_objects", 0.0)
        if compared is None:
            score = max(score, NO_OBJECTS_SCORE)
    if compared is not None:
        signals["gt_objects"] = float(compared.objects)
        signals["gt_missed"] = float(compared.missed)
        if compared.missed:
            flags.append("gt_missed")
            outweigh(GT_MISSED_SPEC.badness(compared.missed / compared.objects, 0.0),
                     "gt_missed", float(compared.missed))
    status_value = None if status is None else ImageStatus(status).value
    if status_value == ImageStatus.FLAGGED.value:
        flags.append("flagged")
        outweigh(1.0, "flagged", None)
        score = 1.0
    for o in assessed:
        flags.extend(f for f in o.flags if f not in flags)
    return ImageAssessment(image_id, shape, assessed, signals, flags, float(score),
                           status_value, main_reason=reason)


def class_map(shape: tuple[int, int], objects: Sequence[AnnotatedObject]) -> np.ndarray:
    """The ``uint8`` class map of ``objects`` (0 background).

    Composed with the overlap rule of :mod:`napari_samlabel.core.compose`: the higher
    predicted IoU on top, else the later object.
    """
    out = np.zeros(shape, dtype=np.uint8)
    for i in paint_order([o.score for o in objects]):
        o = objects[i]
        if not 0 < o.class_id < VOID:
            raise ValueError(f"object {o.object_id}: class index {o.class_id} is outside "
                             f"1..{VOID - 1}")
        out[np.asarray(o.mask, dtype=bool)] = o.class_id
    return out


def estimated_error(objects: Sequence[ObjectAssessment]) -> float:
    """How much of an image looks wrong, from its objects' scores (no ground truth).

    The mean over the classes present, background counted as one more class taken as
    right, of each class's area-weighted mean object score: what ``1 - mIoU`` would be if
    each object's score were its ``1 - IoU``. So a broken object counts as much as the share
    of the classes it stands for, and a broken large object of a class more than a broken
    small one. :func:`assess_image` passes the whole objects (parts lie inside them). Chosen
    for its rank correlation with true mIoU on degraded VOC labels
    (``benchmarks/calibrate_curation.py``, docs/curation.md). 0 without objects.
    """
    by_class: dict[int, list[tuple[float, float]]] = {}
    for o in objects:
        by_class.setdefault(o.class_id, []).append((max(float(o.area), 1.0), o.score))
    if not by_class:
        return 0.0
    total = 0.0
    for pairs in by_class.values():
        w = np.array([a for a, _ in pairs])
        total += float(np.dot(w, [s for _, s in pairs]) / w.sum())
    return total / (len(by_class) + 1)


def rank_images(assessments: Iterable[ImageAssessment]) -> list[ImageAssessment]:
    """Sort worst first (see :meth:`ImageAssessment.sort_key`) and number the ranks from 1."""
    ranked = sorted(assessments, key=ImageAssessment.sort_key)
    for i, a in enumerate(ranked, 1):
        a.rank = i
    return ranked


__all__ = ["ImageAssessment", "ObjectAssessment", "assess_image", "assess_object",
           "class_map", "estimated_error", "rank_images"]
