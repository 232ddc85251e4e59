"""The accuracy guard of the fast encoder precisions (bfloat16, int8) against float32.

A faster encoder mode is only worth having if the masks do not change: the mode keeps an
image embedding within cosine :data:`COSINE_MIN` of the float32 embedding, and the masks the
(float32) decoder draws from it on the same prompts within IoU :data:`MASK_IOU_MIN` of
float32's. ``benchmarks/bench_engine.py`` measures both on the VOC sample photographs for
every mode this CPU has, and ``samlabel embed --check-precision`` on the user's own weights
and images (:func:`check_precision`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_samlabel.engine.cache import Embedding
from napari_samlabel.engine.protocol import SamInputs

#: Lowest cosine between a fast mode's image embedding and float32's.
COSINE_MIN = 0.995
#: Lowest mean IoU between the masks decoded from both embeddings on the same prompts.
MASK_IOU_MIN = 0.98


@dataclass(frozen=True)
class PrecisionCheck:
    """How close one image's embedding in a fast precision is to float32's.

    Attributes
    ----------
    precision : str
        The fast mode (``"bfloat16"``, ``"int8"``).
    cosine : float
        Cosine of the two image embeddings (feature maps and extras, flattened together).
    mask_ious : tuple of float
        IoU of the float32 decoder's masks from both embeddings, one per prompt.
    """

    precision: str
    cosine: float
    mask_ious: tuple[float, ...]

    @property
    def mask_iou(self) -> float:
        """Mean IoU over the prompts."""
        return float(np.mean(self.mask_ious)) if self.mask_ious else 1.0

    @property
    def ok(self) -> bool:
        """Whether both figures meet the guard."""
        return self.cosine >= COSINE_MIN and self.mask_iou >= MASK_IOU_MIN


def guard_met(checks: Sequence[PrecisionCheck]) -> bool:
    """The guard over several images: every cosine, and the IoU over all prompts."""
    if not checks:
        return True
    ious = [iou for c in checks for iou in c.mask_ious]
    return (min(c.cosine for c in checks) >= COSINE_MIN
            and (not ious or float(np.mean(ious)) >= MASK_IOU_MIN))


def check_prompts(shape: tuple[int, ...], points: int = 8, seed: int = 0) -> list[SamInputs]:
    """The prompts both embeddings are decoded with: single points and one box.

    ``points`` positive clicks spread over the image (a jittered grid, reproducible by
    ``seed``), each decoded alone (one mask), and a box over the image's central half.
    """
    h, w = int(shape[0]), int(shape[1])
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(points)))
    prompts = []
    for k in range(points):
        r, c = divmod(k, side)
        y = (r + rng.uniform(0.2, 0.8)) / side * h
        x = (c + rng.uniform(0.2, 0.8)) / side * w
        prompts.append(SamInputs(point_coords=np.array([[x, y]], np.float32),
                                 point_labels=np.array([1], np.int32),
                                 multimask_output=False))
    prompts.append(SamInputs(box=np.array([w / 4, h / 4, 3 * w / 4, 3 * h / 4], np.float32),
                             multimask_output=False))
    return prompts


def _cosine(a: Embedding, b: Embedding) -> float:
    xs = [a.features, *(a.extras[k] for k in sorted(b.extras))]
    ys = [b.features, *(b.extras[k] for k in sorted(b.extras))]
    x = np.concatenate([v.astype(np.float64).ravel() for v in xs])
    y = np.concatenate([v.astype(np.float64).ravel() for v in ys])
    denom = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y / denom) if denom else float(np.array_equal(x, y))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def compare(fast: Embedding, reference: Embedding, decoder: Any,
            prompts: Sequence[SamInputs]) -> PrecisionCheck:
    """Compare ``fast`` with the float32 ``reference`` embedding of the same image.

    ``decoder`` is a float32 engine of the same weights (its current image is replaced):
    both embeddings are decoded with each of ``prompts``.
    """
    decoder.set_embedding(fast)
    masks = [decoder.predict(inputs).masks[0] for inputs in prompts]
    decoder.set_embedding(reference)
    ious = [_iou(m, decoder.predict(inputs).masks[0]) for m, inputs in zip(masks, prompts,
                                                                          strict=True)]
    return PrecisionCheck(fast.precision, _cosine(fast, reference), tuple(ious))


def check_precision(fast: Any, precise: Any, image: np.ndarray,
                    points: int = 8) -> PrecisionCheck:
    """Encode ``image`` with both engines and :func:`compare` (the decoder: ``precise``'s).

    Parameters
    ----------
    fast, precise : CachedEngine
        Engines of the same weights, ``precise`` in float32.
    image : ndarray
        ``H x W x 3`` uint8 RGB.
    points : int
        Single-point prompts (plus one box).

    Raises
    ------
    ValueError
        If ``precise`` is not float32 or the engines hold different weights.
    """
    if precise.precision != "float32":
        raise ValueError(f"the reference engine must encode in float32, not "
                         f"{precise.precision}")
    if fast.model_id != precise.model_id:
        raise ValueError(f"different weights: {fast.model_id!r} and {precise.model_id!r}")
    emb_fast, _ = fast.encode(image)
    emb_ref, _ = precise.encode(image)
    return compare(emb_fast, emb_ref, precise, check_prompts(image.shape, points))


__all__ = ["COSINE_MIN", "MASK_IOU_MIN", "PrecisionCheck", "check_precision", "check_prompts",
           "compare", "guard_met"]
