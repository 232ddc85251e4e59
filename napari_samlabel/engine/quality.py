"""Mask-quality measures computed from what SAM returns: stability, candidate agreement.

They live in ``engine`` (not ``evaluate``) so that whoever produces a mask can store them
with it: the batch pipeline and the annotator at accept time (:func:`accept_signals`), the
curation queue when ranking.
Plain numpy, no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from napari_samlabel.core.current import CurrentObject

ENCODER_SIZE = 1024  # SAM's square encoder input side


def stability_score(logits: np.ndarray, offset: float = 1.0,
                    threshold: float = 0.0) -> float | np.ndarray:
    """SAM's stability score: IoU of the mask at ``threshold + offset`` and ``threshold - offset``.

    As ``segment_anything.utils.amg.calculate_stability_score``: the high-threshold mask is
    inside the low-threshold one, so the IoU is ``count(logits > t + o) / count(logits > t - o)``.
    A mask that is empty even at the low threshold scores 0 (SAM gets NaN there, which its
    generator's ``>=`` filter drops, i.e. treats as failing).

    Parameters
    ----------
    logits : numpy.ndarray
        ``(H, W)`` logits, or ``(..., H, W)`` for several masks.
    offset : float
        Threshold offset (SAM: 1.0).
    threshold : float
        Mask threshold (SAM: 0.0).

    Returns
    -------
    float or numpy.ndarray
        A float for one ``(H, W)`` map, else an array of the leading shape.
    """
    arr = np.asarray(logits, dtype=np.float32)
    if arr.ndim < 2:
        raise ValueError(f"logits must be at least 2-D (H, W), got shape {arr.shape}")
    inter = np.count_nonzero(arr > threshold + offset, axis=(-2, -1))
    union = np.count_nonzero(arr > threshold - offset, axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return float(score) if arr.ndim == 2 else score.astype(np.float64)


def _linear_taps(n_out: int, step: float, n_in: int) -> tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray]:
    """Source indices and weights of a 1-D linear resampling (pixel centres aligned).

    Output pixel ``i`` samples the input at ``(i + 0.5) * step - 0.5``, clamped to the input,
    as ``torch.nn.functional.interpolate(..., align_corners=False)`` does.
    """
    pos = np.clip((np.arange(n_out) + 0.5) * step - 0.5, 0.0, n_in - 1.0)
    i0 = np.floor(pos).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (pos - i0).astype(np.float32)


LOGITS_FRAMES = ("pad", "stretch")


def logits_to_image(logits: np.ndarray, image_shape: tuple[int, int],
                    encoder_size: int = ENCODER_SIZE, frame: str = "pad") -> np.ndarray:
    """Upsample low-resolution logits to the image, as the model's post-processing does.

    ``frame="pad"`` (SAM, MobileSAM, SAM-HQ): the ``256 x 256`` logits cover the padded
    ``encoder_size`` square into which the image was resized (long side to
    ``encoder_size``, ``int(side * scale + 0.5)``); the image occupies its top-left corner.
    SAM upsamples bilinearly to the square, crops that corner and resizes it bilinearly to
    the image; this samples the low-resolution logits bilinearly at the same positions in
    one pass.

    ``frame="stretch"`` (SAM 2): the logits cover the whole image stretched to the square;
    SAM 2 resizes them bilinearly straight to the image, as this does.

    Logits already at ``image_shape`` are returned as they are.

    Parameters
    ----------
    logits : numpy.ndarray
        ``(h, w)`` or ``(1, h, w)`` logits.
    image_shape : tuple of int
        ``(height, width)`` of the image.
    encoder_size : int
        Side of the square encoder input.
    frame : str
        ``"pad"`` or ``"stretch"`` (an engine's ``logits_frame``).

    Returns
    -------
    numpy.ndarray
        ``float32`` logits of shape ``image_shape``.
    """
    if frame not in LOGITS_FRAMES:
        raise ValueError(f"frame must be one of {LOGITS_FRAMES}, got {frame!r}")
    arr = np.asarray(logits, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"logits must be (h, w) or (1, h, w), got shape {np.shape(logits)}")
    h, w = int(image_shape[0]), int(image_shape[1])
    if arr.shape == (h, w):
        return arr
    if frame == "stretch":
        newh, neww = encoder_size, encoder_size
    else:
        scale = encoder_size / max(h, w)
        newh, neww = int(h * scale + 0.5), int(w * scale + 0.5)  # ResizeLongestSide
    # Low-res pixels per image pixel along each axis.
    r0, r1, fr = _linear_taps(h, newh / h * arr.shape[0] / encoder_size, arr.shape[0])
    c0, c1, fc = _linear_taps(w, neww / w * arr.shape[1] / encoder_size, arr.shape[1])
    rows = arr[r0] * (1.0 - fr)[:, None] + arr[r1] * fr[:, None]
    return (rows[:, c0] * (1.0 - fc) + rows[:, c1] * fc).astype(np.float32)


def mask_iou(a: np.ndarray, b: np.ndarray, valid: np.ndarray | None = None) -> float:
    """IoU of two boolean masks, counting only ``valid`` pixels; two empty masks give 1."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    if valid is not None:
        a = a & valid
        b = b & valid
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def multimask_disagreement(masks: np.ndarray) -> float | None:
    """``1 -`` the mean pairwise IoU of SAM's candidate masks (None for fewer than two).

    SAM's three outputs (sub-part, part, whole) agree when the prompt names one object
    unambiguously; a high value means the prompt could mean several things.
    """
    arr = np.asarray(masks, dtype=bool)
    if arr.ndim != 3:
        raise ValueError(f"multimask outputs must be (K, H, W), got shape {arr.shape}")
    k = arr.shape[0]
    if k < 2:
        return None
    ious = [mask_iou(arr[i], arr[j]) for i in range(k) for j in range(i + 1, k)]
    return 1.0 - float(np.mean(ious))


def accept_signals(current: CurrentObject, shape: tuple[int, int]) -> dict[str, float]:
    """Quality signals of the object about to be accepted (curation ranks objects by them).

    ``stability``: IoU of the mask thresholded at logit +1 and -1 (SAM's stability score,
    on the logits upsampled to the image); ``iou_spread``: highest minus lowest predicted
    IoU of SAM's candidate masks (a wide spread: the prompts were ambiguous). Signals
    describe a mask: a reopened object accepted with its mask unchanged keeps its signals,
    a new mask gets new ones.
    """
    if current.original is not None and current.mask is current.original.mask:
        return dict(current.original.signals)
    out: dict[str, float] = {}
    if current.logits is not None:
        out["stability"] = float(stability_score(logits_to_image(current.logits, shape)))
    if current.ious is not None and len(current.ious) > 1:
        out["iou_spread"] = float(np.max(current.ious) - np.min(current.ious))
    return out
