"""Negative boxes: exclusion regions, since SAM has no negative box.

A negative box is never given to SAM. Instead, after the decode, the object's mask is
cleared in the pixels whose centres lie in the box (:meth:`Box.pixel_region
<napari_samlabel.core.prompts.Box.pixel_region>`), and its low-res logits (the next call's
``mask_input``) are set to :data:`EXCLUDED_LOGIT` in the cells over the box
(:func:`exclude_logits`); the incoming ``mask_input`` gets the same treatment before the
call, so SAM's own refinement starts from the cut mask. The policies
(:mod:`napari_samlabel.engine.policies`) apply both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_samlabel.core.prompts import Box, ObjectPrompts, Prompt
from napari_samlabel.engine.protocol import LOW_RES_SHAPE

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
    return slice(max(0, start), min(LOW_RES_SHAPE[1], max(0, stop)))


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
