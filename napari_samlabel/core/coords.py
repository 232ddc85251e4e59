"""The one place where napari's and SAM's coordinate conventions meet.

napari (and numpy) index images as ``(row, col)``: ``row`` grows downwards, ``col`` to the
right. SAM takes points as ``(x, y)`` with ``x = col`` and ``y = row``, and boxes as
``[x0, y0, x1, y1]`` (XYXY). Every prompt in :mod:`napari_samlabel.core` is stored in
napari's ``(row, col)`` convention; these functions are the only conversions to SAM's.
Coordinates are continuous pixel coordinates: pixel ``(r, c)`` covers ``[r, r+1) x [c, c+1)``
in napari's convention only up to a half-pixel shift that SAM ignores, so no offset is applied.
"""

from __future__ import annotations

import numpy as np


def rc_to_xy(points_rc: np.ndarray) -> np.ndarray:
    """Convert ``(N, 2)`` points from ``(row, col)`` to SAM's ``(x, y)``.

    Parameters
    ----------
    points_rc : numpy.ndarray
        Array of shape ``(N, 2)`` (or ``(2,)``) in ``(row, col)`` order.

    Returns
    -------
    numpy.ndarray
        ``float32`` array of the same shape in ``(x, y)`` order.
    """
    pts = np.asarray(points_rc, dtype=np.float32)
    return pts[..., ::-1].copy()


def xy_to_rc(points_xy: np.ndarray) -> np.ndarray:
    """Convert ``(N, 2)`` points from SAM's ``(x, y)`` to ``(row, col)``."""
    pts = np.asarray(points_xy, dtype=np.float32)
    return pts[..., ::-1].copy()


def box_rc_to_xyxy(corner_a_rc: np.ndarray, corner_b_rc: np.ndarray) -> np.ndarray:
    """Convert two opposite box corners in ``(row, col)`` to SAM's ``[x0, y0, x1, y1]``.

    The corners may be given in any order (a box dragged up-left works like one dragged
    down-right); the result is normalised so that ``x0 <= x1`` and ``y0 <= y1``.
    """
    a = np.asarray(corner_a_rc, dtype=np.float32)
    b = np.asarray(corner_b_rc, dtype=np.float32)
    r0, r1 = sorted((float(a[0]), float(b[0])))
    c0, c1 = sorted((float(a[1]), float(b[1])))
    return np.array([c0, r0, c1, r1], dtype=np.float32)


def xyxy_to_box_rc(box_xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Convert ``[x0, y0, x1, y1]`` to the ``(row, col)`` corners ``(top_left, bottom_right)``."""
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box_xyxy).ravel()[:4])
    return (
        np.array([min(y0, y1), min(x0, x1)], dtype=np.float32),
        np.array([max(y0, y1), max(x0, x1)], dtype=np.float32),
    )
