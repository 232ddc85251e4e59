"""From core prompts to SAM's inputs: scribble sampling, the per-object plan, SamInputs.

This module is the only place that turns core prompts (:mod:`napari_samlabel.core.prompts`,
napari ``(row, col)``) into :class:`~napari_samlabel.engine.protocol.SamInputs` (SAM's
``(x, y)`` points and XYXY box); the conversion itself goes through
:mod:`napari_samlabel.core.coords`. The prompt policies
(:mod:`napari_samlabel.engine.policies`) decide how the plan is fed to the engine.

- A scribble becomes a seeded random ``sample_fraction`` of its pixels
  (:func:`sample_scribble`); the sample is seeded by ``seed`` and the scribble itself.
- Points outside the image are rejected with ``ValueError`` naming the point and the image
  size (a point within half a pixel of the border counts as inside); scribble pixels
  outside the image are dropped.
- Boxes are clipped to the image; a box wholly outside is rejected. Negative boxes are not
  SAM inputs (:mod:`napari_samlabel.engine.exclusions`).
- ``mask_input`` must be ``(1, 256, 256)`` (or ``(256, 256)``) finite floats
  (:func:`check_mask_input`).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from napari_samlabel.core.coords import box_rc_to_xyxy, rc_to_xy
from napari_samlabel.core.prompts import Box, ObjectPrompts, Point, Prompt, Scribble
from napari_samlabel.engine.protocol import LOW_RES_SHAPE, SamInputs


class Sampling(Protocol):
    """How prompts are sampled and grouped into steps.

    What a :class:`~napari_samlabel.engine.policies.Policy` says about it.
    """

    @property
    def sample_fraction(self) -> float:
        """Fraction of scribble pixels used as points, in ``(0, 1]``."""
        ...

    @property
    def seed(self) -> int:
        """Seed of the scribble sampling."""
        ...

    @property
    def iterative(self) -> bool:
        """Feed positive points step by step (else all at once)."""
        ...

    @property
    def group_size(self) -> int | None:
        """Positive points per step; None: one step per source prompt."""
        ...


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
    pix = scribble.pixels((int(image_shape[0]), int(image_shape[1])))
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


def _prompt_points(prompt: Prompt, shape: tuple[int, int], sampling: Sampling, what: str
                   ) -> np.ndarray:
    """``(M, 2)`` ``(row, col)`` points of a point or scribble prompt."""
    if isinstance(prompt, Point):
        _check_point(prompt.rc, shape, what)
        return np.asarray([prompt.rc], dtype=np.float32)
    if isinstance(prompt, Scribble):
        return sample_scribble(prompt, shape, sampling.sample_fraction, sampling.seed)
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
class Plan:
    """The SAM-side view of one object: positive steps, negatives, boxes (XYXY).

    Attributes
    ----------
    steps : list of numpy.ndarray
        ``(M, 2)`` ``(row, col)`` positive points fed per decoder call, in order.
    negatives : numpy.ndarray
        ``(K, 2)`` ``(row, col)`` negative points given to every call.
    boxes : list of numpy.ndarray
        Positive boxes as XYXY, clipped to the image; SAM takes one per call.
    """

    steps: list[np.ndarray]
    negatives: np.ndarray
    boxes: list[np.ndarray]

    @property
    def positives(self) -> np.ndarray:
        """All positive points, ``(M, 2)`` ``(row, col)``."""
        return (np.concatenate(self.steps) if self.steps
                else np.zeros((0, 2), dtype=np.float32))


def plan_object(prompts: ObjectPrompts | Sequence[Prompt], image_shape: tuple[int, int],
                sampling: Sampling, negatives: Sequence[Prompt]) -> Plan:
    """Split one object's prompts into decoder steps, negatives and boxes.

    Raises
    ------
    ValueError
        For points outside the image, a box wholly outside it, or a negative box among
        ``negatives``.
    """
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
        pts = _prompt_points(p, shape, sampling, what)
        if len(pts) == 0:
            continue
        if p.positive:
            pos_groups.append((p, pts))
        else:
            neg_parts.append(pts)
    for k, p in enumerate(negatives):
        if isinstance(p, Box):
            raise ValueError(f"negative {k} is a box: SAM has no negative boxes")
        pts = _prompt_points(p, shape, sampling, f"negative {k} ({type(p).__name__.lower()})")
        if len(pts):
            neg_parts.append(pts)
    neg = (np.concatenate(neg_parts) if neg_parts else np.zeros((0, 2), dtype=np.float32))
    if not pos_groups:
        steps: list[np.ndarray] = []
    elif not sampling.iterative:
        steps = [np.concatenate([pts for _, pts in pos_groups])]
    elif sampling.group_size is None:
        steps = [pts for _, pts in pos_groups]
    else:
        steps = _grouped_steps(pos_groups, int(sampling.group_size))
    return Plan(steps, neg, boxes)


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

@dataclass(frozen=True)
class _OneShot:
    """Every prompt in one call (the :class:`Sampling` of :func:`to_sam_inputs`)."""

    sample_fraction: float
    seed: int
    iterative: bool = False
    group_size: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.sample_fraction <= 1.0:
            raise ValueError("policy 'to_sam_inputs': sample_fraction must be in (0, 1], "
                             f"got {self.sample_fraction}")


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
    if arr.shape == LOW_RES_SHAPE[1:]:
        arr = arr[None]
    if arr.shape != LOW_RES_SHAPE:
        raise ValueError(f"mask_input must be (1, 256, 256) low-res logits (SAM's "
                         f"low_res_logits of the same object), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("mask_input contains NaN or infinite values")
    return arr


def sam_inputs(pos_rc: np.ndarray, neg_rc: np.ndarray, box_xyxy: np.ndarray | None,
               mask_input: np.ndarray | None, multimask: bool) -> SamInputs:
    """One decoder call's inputs: ``(row, col)`` positives then negatives as ``(x, y)``."""
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
    not SAM inputs and are left out
    (:func:`~napari_samlabel.engine.policies.segment_object` applies them to the mask).

    Raises
    ------
    ValueError
        With more than one box (use :func:`segment_object`), points outside the image, or a
        bad ``mask_input``.
    """
    sampling = _OneShot(float(sample_fraction), int(seed))
    plan = plan_object(prompts, image_shape, sampling, negatives)
    if len(plan.boxes) > 1:
        raise ValueError(f"{len(plan.boxes)} boxes in one object: SAM takes one box per call; "
                         "use segment_object(), which decodes each box separately")
    return sam_inputs(plan.positives, plan.negatives, plan.boxes[0] if plan.boxes else None,
                   check_mask_input(mask_input), multimask_output)
