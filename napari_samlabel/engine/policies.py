"""Prompt policies: how core prompts become SAM decoder calls.

Core prompts (:mod:`napari_samlabel.core.prompts`, napari ``(row, col)``) become
:class:`~napari_samlabel.engine.protocol.SamInputs` only in
:mod:`napari_samlabel.engine.prompt_plan` (sampling, checks, the per-object plan); negative
boxes are applied by :mod:`napari_samlabel.engine.exclusions`. This module decides how a
plan is fed to the engine and which mask is kept.

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

Corner cases (decided here and in the two modules above, tested in
``tests/engine/test_policies.py``)
-----------------------------------------------------------------------------------------
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
  call's ``mask_input``) are set to
  :data:`~napari_samlabel.engine.exclusions.EXCLUDED_LOGIT` in the cells over the box; the
  incoming ``mask_input`` gets the same treatment before the call, so SAM's own refinement
  starts from the cut mask. An object with only negative prompts stays empty (see above).
  :func:`~napari_samlabel.engine.prompt_plan.to_sam_inputs` (SAM's inputs only) leaves
  negative boxes out.
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

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from napari_samlabel.core.prompts import Box, ObjectPrompts, Prompt
from napari_samlabel.engine.exclusions import exclude_logits, negative_boxes
from napari_samlabel.engine.prompt_plan import Plan, check_mask_input, plan_object, sam_inputs
from napari_samlabel.engine.protocol import Engine, Prediction, SamInputs

MULTIMASK_CHOICES = ("best", "whole", "single", 0, 1, 2)
UNITS = ("class", "object", "concept")
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
        scribbles, CAMs); ``"object"``: one mask per object (boxes); ``"concept"``: each
        class's phrase is a concept prompt and every instance found is an object (image
        tags and class names with SAM 3, ``ConceptEngine.find_all``).
    score_threshold : float
        ``"concept"`` units: instances scoring below it are dropped.
    phrases : tuple of (str, str)
        ``"concept"`` units: ``(class name, phrase)`` overrides of the phrase that prompts a
        class (default: :func:`napari_samlabel.core.classes.name_phrase`).
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
    score_threshold: float = 0.5
    phrases: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "phrases", tuple((str(k), str(v)) for k, v in (
            self.phrases.items() if isinstance(self.phrases, dict) else self.phrases)))
        if not 0.0 <= float(self.score_threshold) <= 1.0:
            raise ValueError(f"policy {self.name!r}: score_threshold must be in [0, 1], "
                             f"got {self.score_threshold}")
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
                "background_negatives": bool(self.background_negatives), "unit": self.unit,
                # concept fields only where they apply, so older runs keep their fingerprint
                **({"score_threshold": float(self.score_threshold),
                    "phrases": [list(p) for p in self.phrases]}
                   if self.unit == "concept" else {})}

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
    # Concept prompts (SAM 3): the tagged classes' phrases, or every class's.
    Policy("tags", sample_fraction=1.0, iterative=False, group_size=None,
           negatives_from_other_classes=False, background_negatives=False, unit="concept"),
    Policy("text", sample_fraction=1.0, iterative=False, group_size=None,
           negatives_from_other_classes=False, background_negatives=False, unit="concept"),
)}

#: The preset used for each weak-label kind when none is given.
DEFAULT_POLICY_FOR_KIND = {"points": "points", "scribbles": "scribbles", "boxes": "boxes",
                           "cams": "cams", "tags": "tags", "text": "text"}


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


def _decode(engine: Engine, inputs: SamInputs, policy: Policy, shape: tuple[int, int]
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


def _run_plan(engine: Engine, plan: Plan, shape: tuple[int, int], policy: Policy,
              mask_input: np.ndarray | None, steps: list[np.ndarray]) -> ObjectResult:
    """Decode ``steps`` (cumulative) for each box (or once without a box)."""
    multimask = policy.multimask_choice != "single"
    results = []
    calls = 0
    boxes: list[np.ndarray | None] = [*plan.boxes] or [None]
    for box in boxes:
        logits = mask_input
        given = np.zeros((0, 2), dtype=np.float32)
        out = None
        for step in steps or [given]:
            given = np.concatenate([given, step])
            out = _decode(engine, sam_inputs(given, plan.negatives, box, logits, multimask),
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


def segment_object(engine: Engine, prompts: ObjectPrompts | Sequence[Prompt],
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
    plan = plan_object(prompts, shape, policy, negatives)
    if not plan.steps and not plan.boxes:
        return _empty(shape, len(plan.negatives))
    excluded = negative_boxes(prompts)
    frame = engine.logits_frame
    mask_input = exclude_logits(mask_input, excluded, shape, frame)
    return apply_exclusions(_run_plan(engine, plan, shape, policy, mask_input, plan.steps),
                            excluded, shape, frame)


def refine_object(engine: Engine, prompts: ObjectPrompts | Sequence[Prompt],
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
    plan = plan_object(prompts, shape, policy, negatives)
    if not plan.steps and not plan.boxes:
        return _empty(shape, len(plan.negatives))
    excluded = negative_boxes(prompts)
    frame = engine.logits_frame
    prev = exclude_logits(prev, excluded, shape, frame)
    return apply_exclusions(_run_plan(engine, plan, shape, policy, prev, [plan.positives]),
                            excluded, shape, frame)
