"""Prompt policies: how core prompts become SAM decoder calls.

This module is the only place that turns core prompts (:mod:`napari_samlabel.core.prompts`,
napari ``(row, col)``) into :class:`~napari_samlabel.engine.protocol.SamInputs` (SAM's
``(x, y)`` points and XYXY box); the conversion itself goes through
:mod:`napari_samlabel.core.coords`.

The policies restate the seed paper (Jiang & Yang 2023, arXiv 2305.01275; see
ALGORITHMS.md). A :class:`Policy` says:

- **scribble sampling** — a scribble becomes its pixels (:meth:`Scribble.pixels`) and a
  random ``sample_fraction`` of them (default 20 %, at least one pixel) becomes point
  prompts. The sample is seeded by ``seed`` *and the scribble itself*, so the same scribble
  always gives the same points, whatever other scribbles exist (stable while annotating).
- **iterative input** — the positive points are fed in steps; each call gives every point
  so far and the previous call's chosen low-res logits as ``mask_input``. With
  ``group_size = g``, consecutive clicked points are fed ``g`` at a time, and the sample of
  each scribble is cut into ``ceil(n / g)`` groups of at most ``g`` points taken at a stride
  along the stroke (group ``j`` holds sample points ``j, j + k, j + 2k, ...``), so that every
  step, the first included, spans the whole stroke instead of one end of it. ``group_size =
  None``: one step per source prompt (all sampled pixels of one scribble, or one click).
  ``iterative=False`` gives everything in one call ("one-shot").
- **negatives** — points and scribble pixels of other classes in the same image, and
  background (class 0) prompts, are added as negative points (label 0) to every call.
  Which negatives exist is the caller's business (the pipeline uses
  ``WeakLabels.negatives_for``); the policy's flags say whether the pipeline gathers them.
- **multimask choice** — SAM returns three masks (sub-part, part, whole): ``"whole"``
  (index 2, the paper's choice and the default of every paper preset), ``"best"`` (highest
  predicted IoU: the interactive default, and selectable for batch runs), ``0``/``1``/``2``,
  or ``"single"`` (``multimask_output=False``: SAM's single-mask head).

Presets (:data:`PRESETS`) follow the paper's settings: ``scribbles`` samples 20 % of each
scribble, feeds the sample iteratively in groups of :data:`SCRIBBLE_GROUP_SIZE` (5) points and
adds the other classes' (and background) scribble pixels as negatives; ``points`` feeds the
clicks of a class one at a time without negatives (the paper's points row adds none;
``background_negatives=True`` adds background clicks as an option); ``boxes`` decodes one box
per object without negatives; ``cams`` feeds the peak points of a class at once with the other
classes' peaks as negatives. ``interactive`` (the GUI) keeps the highest-IoU mask.

Corner cases (decided here, tested in ``tests/engine/test_policies.py``)
-----------------------------------------------------------------------
- **No positive prompt** (only negatives, or nothing): the result is an empty mask with
  score 0, ``index=-1``, no logits and ``n_calls=0``; the engine is not called, because SAM
  given only negative points still returns a (meaningless) foreground mask.
- **Points outside the image are rejected** with ``ValueError`` naming the point and the
  image size: an out-of-image click almost always means swapped axes or the wrong image,
  and moving it silently would hide that. A point within half a pixel of the border counts
  as inside. Scribble pixels outside the image are dropped (a stroke may run past the edge).
- **Boxes are clipped** to the image (a box dragged past the edge is normal); a box wholly
  outside is rejected.
- **Negative boxes are exclusion regions.** SAM has no negative box, so a negative box is
  never given to SAM. Instead, after the decode, the object's mask is cleared in the pixels
  whose centres lie in the box (:meth:`Box.pixel_region`), and its low-res logits (the next
  call's ``mask_input``) are set to :data:`EXCLUDED_LOGIT` in the cells over the box; the
  incoming ``mask_input`` gets the same treatment before the call, so SAM's own refinement
  starts from the cut mask. An object with only negative prompts stays empty (see above).
  :func:`to_sam_inputs` (SAM's inputs only) leaves negative boxes out.
- **Several boxes in one object**: SAM takes one box per call, so each box is decoded on
  its own (with the object's points and negatives), the masks are united, the score is the
  lowest of the boxes' predicted IoUs (the union is only as good as its worst part), and
  the logits are the element-wise maximum (the low-res logits of the union mask).
- **mask_input** must be ``(1, 256, 256)`` (or ``(256, 256)``) finite floats, else
  ``ValueError``.

Logits state is per object: nothing here is cached between calls or objects; callers keep
an object's logits (in :class:`ObjectResult`) and hand them back for the same object only.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from napari_samlabel.core.coords import box_rc_to_xyxy, rc_to_xy
from napari_samlabel.core.prompts import Box, ObjectPrompts, Point, Prompt, Scribble
from napari_samlabel.engine.protocol import Prediction, SamInputs

MULTIMASK_CHOICES = ("best", "whole", "single", 0, 1, 2)
UNITS = ("class", "object")
LOW_RES = (1, 256, 256)
#: Points per step when a scribble's sample is fed iteratively (the ``scribbles`` presets).
#: The paper feeds prompts "one at a time (or in small groups)"; 5 points per step costs a
#: 250-pixel scribble (50 sampled points) 10 decoder calls.
SCRIBBLE_GROUP_SIZE = 5


@dataclass(frozen=True)
class Policy:
    """How the prompts of one object are fed to the engine.

    Attributes
    ----------
    name : str
        Preset name (for provenance).
    sample_fraction : float
        Fraction of scribble pixels used as points, in ``(0, 1]`` (at least one pixel).
    iterative : bool
        Feed positive points step by step with the previous logits (else all at once).
    group_size : int or None
        Positive points per step (clicks grouped in order; a scribble's sample in groups
        spread along the stroke); None: one step per source prompt.
    negatives_from_other_classes : bool
        Whether the pipeline adds other classes' points/scribble pixels as negatives.
    multimask_choice : str or int
        ``"whole"`` (default: the paper's third mask), ``"best"``, ``"single"``, or a mask
        index 0-2.
    seed : int
        Seed of the scribble sampling.
    background_negatives : bool
        Whether the pipeline adds background (class 0) prompts as negatives.
    unit : str
        ``"class"``: the prompts of all objects of a class make one mask (the paper's points,
        scribbles, CAMs); ``"object"``: one mask per object (boxes).
    """

    name: str = "custom"
    sample_fraction: float = 0.2
    iterative: bool = True
    group_size: int | None = 1
    negatives_from_other_classes: bool = True
    multimask_choice: str | int = "whole"
    seed: int = 0
    background_negatives: bool = True
    unit: str = "class"

    def __post_init__(self) -> None:
        if not 0.0 < float(self.sample_fraction) <= 1.0:
            raise ValueError(f"policy {self.name!r}: sample_fraction must be in (0, 1], "
                             f"got {self.sample_fraction}")
        if self.group_size is not None and int(self.group_size) < 1:
            raise ValueError(f"policy {self.name!r}: group_size must be >= 1 or None, "
                             f"got {self.group_size}")
        if self.multimask_choice not in MULTIMASK_CHOICES or isinstance(
                self.multimask_choice, bool):
            raise ValueError(f"policy {self.name!r}: multimask_choice must be one of "
                             f"{MULTIMASK_CHOICES}, got {self.multimask_choice!r}")
        if self.unit not in UNITS:
            raise ValueError(f"policy {self.name!r}: unit must be one of {UNITS}, "
                             f"got {self.unit!r}")

    def with_options(self, **changes: Any) -> Policy:
        """Return a copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (provenance of a run)."""
        return {"name": self.name, "sample_fraction": float(self.sample_fraction),
                "iterative": bool(self.iterative), "group_size": self.group_size,
                "negatives_from_other_classes": bool(self.negatives_from_other_classes),
                "multimask_choice": self.multimask_choice, "seed": int(self.seed),
                "background_negatives": bool(self.background_negatives), "unit": self.unit}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        """Rebuild from :meth:`to_dict` output."""
        return cls(**data)


#: Named presets. The paper's best setting per weak-label kind (mIoU on VOC train in the
#: paper: scribbles 89.7, points 71.7, boxes 91.5, CAMs 61.9), plus the table's weaker
#: rows for comparison, all keeping SAM's third ("whole") mask as the paper does; and the
#: interactive default of the GUI, which keeps the mask of highest predicted IoU.
PRESETS: dict[str, Policy] = {p.name: p for p in (
    Policy("scribbles", sample_fraction=0.2, iterative=True, group_size=SCRIBBLE_GROUP_SIZE,
           negatives_from_other_classes=True),
    Policy("scribbles-sample", sample_fraction=0.2, iterative=False,
           negatives_from_other_classes=False, background_negatives=False),
    Policy("scribbles-sample-iterative", sample_fraction=0.2, iterative=True,
           group_size=SCRIBBLE_GROUP_SIZE, negatives_from_other_classes=False,
           background_negatives=False),
    Policy("points", sample_fraction=1.0, iterative=True, group_size=1,
           negatives_from_other_classes=False, background_negatives=False),
    Policy("boxes", sample_fraction=1.0, iterative=False, group_size=None,
           negatives_from_other_classes=False, background_negatives=False, unit="object"),
    Policy("cams", sample_fraction=1.0, iterative=False, group_size=None,
           negatives_from_other_classes=True),
    Policy("one-shot", sample_fraction=1.0, iterative=False, group_size=None,
           negatives_from_other_classes=False, background_negatives=False),
    Policy("interactive", sample_fraction=0.2, iterative=False, group_size=None,
           negatives_from_other_classes=False, multimask_choice="best"),
)}

#: The preset used for each weak-label kind when none is given.
DEFAULT_POLICY_FOR_KIND = {"points": "points", "scribbles": "scribbles", "boxes": "boxes",
                           "cams": "cams"}


def get_policy(name: str | Policy | None = None, kind: str | None = None,
               **overrides: Any) -> Policy:
    """Return a preset by name (or the default of ``kind``), with optional field overrides.

    Raises
    ------
    KeyError
        For an unknown preset name; the message lists the known ones.
    """
    if isinstance(name, Policy):
        base = name
    else:
        if name is None:
            name = DEFAULT_POLICY_FOR_KIND.get(kind or "", "interactive")
        try:
            base = PRESETS[name]
        except KeyError:
            raise KeyError(f"unknown policy {name!r}; known policies: "
                           f"{', '.join(PRESETS)}") from None
    return base.with_options(**overrides) if overrides else base


@dataclass(frozen=True, eq=False)
class ObjectResult:
    """The mask of one object and the state its next decode needs.

    Attributes
    ----------
    mask : numpy.ndarray
        ``H x W`` bool.
    score : float
        Predicted IoU of the chosen mask (0 for an empty result without a decode).
    index : int
        Index of the chosen mask among the engine's outputs (-1: no decode).
    ious : numpy.ndarray
        Predicted IoUs of all masks of the last decode (empty without a decode).
    logits : numpy.ndarray or None
        ``(1, 256, 256)`` low-res logits of the chosen mask: the ``mask_input`` of the next
        decode of this object only.
    n_calls : int
        Number of decoder calls made.
    n_positive, n_negative : int
        Point prompts given in the last call (boxes not counted).
    """

    mask: np.ndarray
    score: float
    index: int
    ious: np.ndarray
    logits: np.ndarray | None
    n_calls: int
    n_positive: int = 0
    n_negative: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when the mask has no pixel."""
        return not bool(self.mask.any())


# -- prompts -> (row, col) point arrays ----------------------------------------------------------

def sample_scribble(scribble: Scribble, image_shape: tuple[int, int], fraction: float,
                    seed: int = 0) -> np.ndarray:
    """Random ``fraction`` of a scribble's pixels, in drawing order, at least one pixel.

    The generator is seeded with ``seed`` and the scribble's own content, so a scribble's
    sample does not change when other scribbles are added or removed.

    Returns
    -------
    numpy.ndarray
        ``(M, 2)`` ``float32`` ``(row, col)``; empty when the scribble lies outside the image.
    """
    pix = scribble.pixels(tuple(image_shape[:2]))
    if len(pix) == 0 or fraction >= 1.0:
        return pix.astype(np.float32)
    n = max(1, int(round(fraction * len(pix))))
    content = zlib.crc32(np.ascontiguousarray(scribble.path).tobytes()
                         + np.float64(scribble.width).tobytes())
    rng = np.random.default_rng([int(seed), content])
    keep = np.sort(rng.choice(len(pix), size=n, replace=False))
    return pix[keep].astype(np.float32)


def _check_point(rc: tuple[float, float], shape: tuple[int, int], what: str) -> None:
    r, c = float(rc[0]), float(rc[1])
    h, w = shape
    if not (np.isfinite(r) and np.isfinite(c)):
        raise ValueError(f"{what} at (row, col) = ({r}, {c}) is not finite")
    if not (-0.5 <= r <= h - 0.5 and -0.5 <= c <= w - 0.5):
        raise ValueError(f"{what} at (row, col) = ({r:g}, {c:g}) is outside the {h} x {w} "
                         "image (rows 0..H-1, cols 0..W-1); are x and y swapped?")


def _prompt_points(prompt: Prompt, shape: tuple[int, int], policy: Policy, what: str
                   ) -> np.ndarray:
    """``(M, 2)`` ``(row, col)`` points of a point or scribble prompt."""
    if isinstance(prompt, Point):
        _check_point(prompt.rc, shape, what)
        return np.asarray([prompt.rc], dtype=np.float32)
    if isinstance(prompt, Scribble):
        return sample_scribble(prompt, shape, policy.sample_fraction, policy.seed)
    raise TypeError(f"{what}: expected a point or a scribble, got {type(prompt).__name__}")


def _clip_box(box: Box, shape: tuple[int, int]) -> np.ndarray:
    """The box as XYXY, clipped to the image; raises if it lies wholly outside."""
    h, w = shape
    (r0, c0), (r1, c1) = box.top_left, box.bottom_right
    if r1 < -0.5 or c1 < -0.5 or r0 > h - 0.5 or c0 > w - 0.5:
        raise ValueError(f"box (row, col) {box.top_left}-{box.bottom_right} lies outside the "
                         f"{h} x {w} image")
    a = (min(max(r0, 0.0), h - 1.0), min(max(c0, 0.0), w - 1.0))
    b = (min(max(r1, 0.0), h - 1.0), min(max(c1, 0.0), w - 1.0))
    return box_rc_to_xyxy(np.asarray(a), np.asarray(b))


@dataclass(frozen=True)
class _Plan:
    """The SAM-side view of one object: positive steps, negatives, boxes (XYXY)."""

    steps: list[np.ndarray]
    negatives: np.ndarray
    boxes: list[np.ndarray]

    @property
    def positives(self) -> np.ndarray:
        return (np.concatenate(self.steps) if self.steps
                else np.zeros((0, 2), dtype=np.float32))


def _plan(prompts: ObjectPrompts | Sequence[Prompt], image_shape: tuple[int, int],
          policy: Policy, negatives: Sequence[Prompt]) -> _Plan:
    shape = (int(image_shape[0]), int(image_shape[1]))
    items = prompts.prompts if isinstance(prompts, ObjectPrompts) else tuple(prompts)
    pos_groups: list[tuple[Prompt, np.ndarray]] = []
    neg_parts: list[np.ndarray] = []
    boxes: list[np.ndarray] = []
    for k, p in enumerate(items):
        what = f"prompt {k} ({type(p).__name__.lower()})"
        if isinstance(p, Box):
            if p.positive:
                boxes.append(_clip_box(p, shape))
            continue
        pts = _prompt_points(p, shape, policy, what)
        if len(pts) == 0:
            continue
        if p.positive:
            pos_groups.append((p, pts))
        else:
            neg_parts.append(pts)
    for k, p in enumerate(negatives):
        if isinstance(p, Box):
            raise ValueError(f"negative {k} is a box: SAM has no negative boxes")
        pts = _prompt_points(p, shape, policy, f"negative {k} ({type(p).__name__.lower()})")
        if len(pts):
            neg_parts.append(pts)
    neg = (np.concatenate(neg_parts) if neg_parts else np.zeros((0, 2), dtype=np.float32))
    if not pos_groups:
        steps: list[np.ndarray] = []
    elif not policy.iterative:
        steps = [np.concatenate([pts for _, pts in pos_groups])]
    elif policy.group_size is None:
        steps = [pts for _, pts in pos_groups]
    else:
        steps = _grouped_steps(pos_groups, int(policy.group_size))
    return _Plan(steps, neg, boxes)


def _grouped_steps(sources: list[tuple[Prompt, np.ndarray]], g: int) -> list[np.ndarray]:
    """Steps of at most ``g`` points: clicks in order, each scribble's sample spread out."""
    steps: list[np.ndarray] = []
    clicks: list[np.ndarray] = []

    def flush() -> None:
        if clicks:
            steps.append(np.concatenate(clicks))
            clicks.clear()

    for prompt, pts in sources:
        if isinstance(prompt, Scribble):
            flush()
            k = -(-len(pts) // g)  # groups; group j takes every k-th point from j
            steps.extend(pts[j::k] for j in range(k))
        else:
            clicks.append(pts)
            if sum(len(c) for c in clicks) >= g:
                flush()
    flush()
    return steps


# -- SamInputs ------------------------------------------------------------------------------

def check_mask_input(mask_input: np.ndarray | None) -> np.ndarray | None:
    """Validate low-res logits for ``mask_input``; return them as ``(1, 256, 256)`` float32.

    Raises
    ------
    ValueError
        On another shape or non-finite values.
    """
    if mask_input is None:
        return None
    arr = np.asarray(mask_input, dtype=np.float32)
    if arr.shape == LOW_RES[1:]:
        arr = arr[None]
    if arr.shape != LOW_RES:
        raise ValueError(f"mask_input must be (1, 256, 256) low-res logits (SAM's "
                         f"low_res_logits of the same object), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("mask_input contains NaN or infinite values")
    return arr


def _inputs(pos_rc: np.ndarray, neg_rc: np.ndarray, box_xyxy: np.ndarray | None,
            mask_input: np.ndarray | None, multimask: bool) -> SamInputs:
    rc = np.concatenate([pos_rc, neg_rc]).astype(np.float32)
    labels = np.concatenate([np.ones(len(pos_rc), np.int32), np.zeros(len(neg_rc), np.int32)])
    return SamInputs(
        point_coords=rc_to_xy(rc) if len(rc) else None,
        point_labels=labels if len(rc) else None,
        box=box_xyxy,
        mask_input=mask_input,
        multimask_output=multimask,
    )


def to_sam_inputs(prompts: ObjectPrompts | Sequence[Prompt], image_shape: tuple[int, int], *,
                  negatives: Sequence[Prompt] = (), mask_input: np.ndarray | None = None,
                  multimask_output: bool = True, sample_fraction: float = 1.0,
                  seed: int = 0) -> SamInputs:
    """All prompts of one object as one :class:`SamInputs` (one-shot; no engine call).

    Points are ``(x, y)`` (positives in prompt order, then negatives, labels 1/0); a box
    becomes XYXY. Scribbles give a ``sample_fraction`` of their pixels. Negative boxes are
    not SAM inputs and are left out (:func:`segment_object` applies them to the mask).

    Raises
    ------
    ValueError
        With more than one box (use :func:`segment_object`), points outside the image, or a
        bad ``mask_input``.
    """
    policy = Policy("to_sam_inputs", sample_fraction=sample_fraction, iterative=False,
                    group_size=None, seed=seed)
    plan = _plan(prompts, image_shape, policy, negatives)
    if len(plan.boxes) > 1:
        raise ValueError(f"{len(plan.boxes)} boxes in one object: SAM takes one box per call; "
                         "use segment_object(), which decodes each box separately")
    return _inputs(plan.positives, plan.negatives, plan.boxes[0] if plan.boxes else None,
                   check_mask_input(mask_input), multimask_output)


# -- decoding -------------------------------------------------------------------------------

def choose_mask(pred: Prediction, choice: str | int) -> int:
    """Index of the mask to keep from ``pred`` under a multimask ``choice``."""
    k = len(pred.iou_predictions)
    if k == 1:
        return 0
    if choice == "best":
        return int(np.argmax(pred.iou_predictions))
    if choice == "whole":
        return k - 1
    if choice == "single":
        return 0
    idx = int(choice)
    if not 0 <= idx < k:
        raise ValueError(f"mask index {idx} but the engine returned {k} masks")
    return idx


def _empty(shape: tuple[int, int], n_negative: int = 0) -> ObjectResult:
    return ObjectResult(mask=np.zeros(shape, dtype=bool), score=0.0, index=-1,
                        ious=np.zeros(0, np.float32), logits=None, n_calls=0,
                        n_positive=0, n_negative=n_negative)


def _decode(engine: Any, inputs: SamInputs, policy: Policy, shape: tuple[int, int]
            ) -> tuple[np.ndarray, float, int, np.ndarray, np.ndarray]:
    pred = engine.predict(inputs)
    idx = choose_mask(pred, policy.multimask_choice)
    mask = np.asarray(pred.masks[idx], dtype=bool)
    if mask.shape != shape:
        raise ValueError(f"engine returned a {mask.shape} mask for a {shape} image; was "
                         "set_image() called with this image?")
    logits = np.asarray(pred.low_res_logits[idx:idx + 1], dtype=np.float32)
    ious = np.asarray(pred.iou_predictions, dtype=np.float32)
    return mask, float(ious[idx]), idx, ious, logits


# -- negative boxes -------------------------------------------------------------------------

#: Low-res logit put over a negative box (SAM's logits rarely go below -20).
EXCLUDED_LOGIT = -40.0


def negative_boxes(prompts: ObjectPrompts | Sequence[Prompt]) -> tuple[Box, ...]:
    """The negative boxes (exclusion regions) among ``prompts``."""
    items = prompts.prompts if isinstance(prompts, ObjectPrompts) else tuple(prompts)
    return tuple(p for p in items if isinstance(p, Box) and not p.positive)


def _lowres_span(lo: float, hi: float, scale: float) -> slice:
    """Low-res cells (of 4 encoder pixels) whose centres fall on image pixels ``lo..hi``."""
    first, last = int(np.ceil(lo)), int(np.floor(hi)) + 1   # pixel edges, in image pixels
    start = int(np.ceil((first * scale - 2.0) / 4.0))
    stop = int(np.floor((last * scale - 2.0) / 4.0)) + 1
    return slice(max(0, start), min(LOW_RES[1], max(0, stop)))


def exclude_logits(logits: np.ndarray | None, boxes: Sequence[Box],
                   image_shape: tuple[int, int], frame: str = "pad") -> np.ndarray | None:
    """A copy of ``(1, 256, 256)`` low-res logits with :data:`EXCLUDED_LOGIT` over ``boxes``.

    ``frame`` is the engine's ``logits_frame``: ``"pad"`` (SAM, MobileSAM, SAM-HQ: the image
    resized so its long side is 1024, in the top-left corner) or ``"stretch"`` (SAM 2: the
    whole image stretched to 1024 x 1024); either is seen at a quarter of the resolution.
    """
    if logits is None or not boxes:
        return logits
    out = np.array(logits, dtype=np.float32)
    h, w = int(image_shape[0]), int(image_shape[1])
    if frame == "stretch":
        rscale, cscale = 1024.0 / h, 1024.0 / w
    elif frame == "pad":
        rscale = cscale = 1024.0 / max(h, w)
    else:
        raise ValueError(f"unknown logits frame {frame!r}; expected 'pad' or 'stretch'")
    for b in boxes:
        rows = _lowres_span(b.top_left[0], b.bottom_right[0], rscale)
        cols = _lowres_span(b.top_left[1], b.bottom_right[1], cscale)
        out[..., rows, cols] = EXCLUDED_LOGIT
    return out


def apply_exclusions(result: ObjectResult, boxes: Sequence[Box],
                     image_shape: tuple[int, int], frame: str = "pad") -> ObjectResult:
    """``result`` with its mask cleared and its logits lowered inside negative ``boxes``."""
    if not boxes:
        return result
    shape = (int(image_shape[0]), int(image_shape[1]))
    keep = ~np.logical_or.reduce([b.pixel_region(shape) for b in boxes])
    return replace(result, mask=result.mask & keep,
                   logits=exclude_logits(result.logits, boxes, shape, frame),
                   extra={**result.extra, "excluded_boxes": len(boxes)})


def _run_plan(engine: Any, plan: _Plan, shape: tuple[int, int], policy: Policy,
              mask_input: np.ndarray | None, steps: list[np.ndarray]) -> ObjectResult:
    """Decode ``steps`` (cumulative) for each box (or once without a box)."""
    multimask = policy.multimask_choice != "single"
    results = []
    calls = 0
    for box in plan.boxes or [None]:
        logits = mask_input
        given = np.zeros((0, 2), dtype=np.float32)
        out = None
        for step in steps or [given]:
            given = np.concatenate([given, step])
            out = _decode(engine, _inputs(given, plan.negatives, box, logits, multimask),
                          policy, shape)
            calls += 1
            logits = out[4]
        assert out is not None
        results.append(out)
    n_pos = sum(len(s) for s in steps)
    if len(results) == 1:
        mask, score, idx, ious, logits = results[0]
    else:
        mask = np.logical_or.reduce([r[0] for r in results])
        score = min(r[1] for r in results)
        idx = results[-1][2]
        ious = results[-1][3]
        logits = np.maximum.reduce([r[4] for r in results])
    return ObjectResult(mask=mask, score=score, index=idx, ious=ious, logits=logits,
                        n_calls=calls, n_positive=n_pos, n_negative=len(plan.negatives),
                        extra={"boxes": len(plan.boxes)})


def segment_object(engine: Any, prompts: ObjectPrompts | Sequence[Prompt],
                   image_shape: tuple[int, int], policy: Policy | str | None = None,
                   negatives: Sequence[Prompt] = (), mask_input: np.ndarray | None = None
                   ) -> ObjectResult:
    """Segment one object from all its prompts under ``policy`` (batch use).

    The engine must already hold the image (``engine.set_image``).

    Parameters
    ----------
    engine : Engine
        Any engine implementing :class:`~napari_samlabel.engine.protocol.Engine`.
    prompts : ObjectPrompts or sequence of Prompt
        The object's prompts, in the order given (iterative policies keep it).
    image_shape : tuple of int
        ``(height, width)`` of the image set on the engine.
    policy : Policy, str or None
        A policy or preset name (None: ``"interactive"``).
    negatives : sequence of Prompt
        Extra negative prompts (other classes, background); points and scribbles only.
    mask_input : numpy.ndarray, optional
        Logits of a previous prediction of this same object, for the first call.

    Returns
    -------
    ObjectResult
        Empty, without any engine call, when there is no positive point or box.
    """
    policy = get_policy(policy)
    shape = (int(image_shape[0]), int(image_shape[1]))
    mask_input = check_mask_input(mask_input)
    plan = _plan(prompts, shape, policy, negatives)
    if not plan.steps and not plan.boxes:
        return _empty(shape, len(plan.negatives))
    excluded = negative_boxes(prompts)
    frame = getattr(engine, "logits_frame", "pad")
    mask_input = exclude_logits(mask_input, excluded, shape, frame)
    return apply_exclusions(_run_plan(engine, plan, shape, policy, mask_input, plan.steps),
                            excluded, shape, frame)


def refine_object(engine: Any, prompts: ObjectPrompts | Sequence[Prompt],
                  image_shape: tuple[int, int], prev_logits: np.ndarray | None,
                  policy: Policy | str | None = None, negatives: Sequence[Prompt] = ()
                  ) -> ObjectResult:
    """One decode with all current prompts of an object and its previous logits (GUI use).

    Called on every prompt change of the object being annotated: the engine sees every
    prompt so far at once (scribbles sampled per ``policy``), plus ``prev_logits`` (the
    ``logits`` of this object's previous :class:`ObjectResult`, or None for a new object).
    Several boxes still cost one decode per box (see the module notes).

    Returns
    -------
    ObjectResult
        Empty, without an engine call, when no positive prompt is left.
    """
    policy = get_policy(policy)
    shape = (int(image_shape[0]), int(image_shape[1]))
    prev = check_mask_input(prev_logits)
    plan = _plan(prompts, shape, policy, negatives)
    if not plan.steps and not plan.boxes:
        return _empty(shape, len(plan.negatives))
    excluded = negative_boxes(prompts)
    frame = getattr(engine, "logits_frame", "pad")
    prev = exclude_logits(prev, excluded, shape, frame)
    return apply_exclusions(_run_plan(engine, plan, shape, policy, prev, [plan.positives]),
                            excluded, shape, frame)
