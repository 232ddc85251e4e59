"""The self-training seed's spatially weighted cross-entropy.

Two ways to weigh the pixels of a label map (see ``ALGORITHMS.md``, "Superpixel refinement and
self-training"):

- **pseudo labels** (:func:`distance_weights`): each pixel's distance to the edge of its
  label's region (:func:`scipy.ndimage.distance_transform_edt` of each class mask) goes
  through a sigmoid, ``w = 1 / (1 + exp(-(d - shift) / scale))``, so pixels deep inside a mask
  count more than pixels near its edge, where pseudo labels are least reliable;
- **clean or rendered labels** (:func:`boundary_weights`): edges of the label map from
  :func:`skimage.feature.canny`, dilated by a disk, weigh ``boundary`` (default 2) and the
  rest 1, so the network is pushed to get the (trusted) borders right.

Void pixels (255) weigh 0 in both. The method description gives no numbers; ``shift = 3``,
``scale = 1.5`` (a pixel on the edge weighs about 0.2, five pixels in about 0.8) and a
boundary band of radius 2 weighing 2 are the product's defaults.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:  # torch stays a lazy import for the numpy helpers
    import torch

IGNORE_INDEX = 255
#: Sigmoid of the distance transform: w = sigmoid((d - SHIFT) / SCALE).
DISTANCE_SHIFT = 3.0
DISTANCE_SCALE = 1.5
#: Canny on the label map, edges dilated by a disk of this radius, weighing BOUNDARY_WEIGHT.
BOUNDARY_RADIUS = 2
BOUNDARY_WEIGHT = 2.0
CANNY_SIGMA = 1.0

Weighting = Literal["distance", "boundary", "none"]
WEIGHTINGS: tuple[str, ...] = ("distance", "boundary", "none")


def _check(labels: np.ndarray) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"a label map must be a 2-D integer array, got {arr.dtype} {arr.shape}")
    return arr


def distance_weights(labels: np.ndarray, *, shift: float = DISTANCE_SHIFT,
                     scale: float = DISTANCE_SCALE,
                     ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Per-pixel weights from each label region's distance transform through a sigmoid.

    Parameters
    ----------
    labels : numpy.ndarray
        ``H x W`` integer label map (``ignore_index`` void).
    shift, scale : float
        ``w = sigmoid((d - shift) / scale)`` with ``d`` the Euclidean distance (in pixels) to
        the nearest pixel of another label; an edge pixel has ``d = 1``.
    ignore_index : int
        Void label: weight 0.

    Returns
    -------
    numpy.ndarray
        ``H x W`` ``float32`` weights in ``[0, 1)``.
    """
    from scipy.ndimage import distance_transform_edt

    arr = _check(labels)
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    dist = np.zeros(arr.shape, dtype=np.float64)
    for value in np.unique(arr):
        if value == ignore_index:
            continue
        mask = arr == value
        # The image border is not an edge: a region cut by it is not less certain there.
        dist[mask] = distance_transform_edt(mask)[mask]
    w = 1.0 / (1.0 + np.exp(-(dist - shift) / scale))
    w[arr == ignore_index] = 0.0
    return w.astype(np.float32)


def boundary_weights(labels: np.ndarray, *, radius: int = BOUNDARY_RADIUS,
                     boundary: float = BOUNDARY_WEIGHT, sigma: float = CANNY_SIGMA,
                     ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Per-pixel weights that favour the borders of clean labels (Canny edges, dilated).

    Parameters
    ----------
    labels : numpy.ndarray
        ``H x W`` integer label map.
    radius : int
        Radius of the disk the edges are dilated by (0: the edges alone).
    boundary : float
        Weight of the boundary band; other labelled pixels weigh 1.
    sigma : float
        Canny's Gaussian smoothing.
    ignore_index : int
        Void label: weight 0 (the edge between a class and void is not a boundary).

    Returns
    -------
    numpy.ndarray
        ``H x W`` ``float32`` weights.
    """
    from scipy.ndimage import binary_dilation
    from skimage.feature import canny
    from skimage.morphology import disk

    arr = _check(labels)
    void = arr == ignore_index
    edges = np.zeros(arr.shape, dtype=bool)
    # One binary map per label: a class step of any size is an edge of the same strength.
    for value in np.unique(arr):
        if value == ignore_index:
            continue
        mask = (arr == value).astype(np.float64)
        edges |= canny(mask, sigma=sigma, low_threshold=0.1, high_threshold=0.2,
                       mask=~void if void.any() else None)
    if radius > 0 and edges.any():
        edges = binary_dilation(edges, structure=disk(radius))
    w = np.where(edges, np.float32(boundary), np.float32(1.0))
    w[void] = 0.0
    return w.astype(np.float32)


def pixel_weights(labels: np.ndarray, weighting: str = "distance",
                  ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Weights of one label map by ``weighting``.

    ``"distance"`` for pseudo labels, ``"boundary"`` for clean labels, ``"none"`` for 1
    everywhere except void.
    """
    if weighting == "distance":
        return distance_weights(labels, ignore_index=ignore_index)
    if weighting == "boundary":
        return boundary_weights(labels, ignore_index=ignore_index)
    if weighting == "none":
        arr = _check(labels)
        return (arr != ignore_index).astype(np.float32)
    raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor,
                           weights: torch.Tensor,
                           ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Cross-entropy weighted per pixel, normalised by the total weight.

    Parameters
    ----------
    logits : torch.Tensor
        ``N x C x H x W`` scores.
    target : torch.Tensor
        ``N x H x W`` long labels (``ignore_index`` void).
    weights : torch.Tensor
        ``N x H x W`` float weights (0 on void).

    Returns
    -------
    torch.Tensor
        The scalar loss ``sum(w * ce) / sum(w)`` (0 when every weight is 0).
    """
    import torch.nn.functional as F

    ce = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")
    w = weights * (target != ignore_index)
    return (ce * w).sum() / w.sum().clamp_min(1e-8)

