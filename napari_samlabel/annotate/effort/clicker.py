"""The standard clicker: where a simulated annotator puts its next prompt.

The rules (those of the interactive-segmentation literature, e.g. RITM's evaluation
clicker, restated so that they can be checked by hand):

- **Pixels that count.** Void pixels (255 in VOC ground truth) count neither for the IoU
  nor as errors.
- **Depth** of a pixel in a region: its Euclidean distance to the nearest pixel outside
  the region, the outside of the image counting as outside (the region is padded with one
  ring of background before :func:`scipy.ndimage.distance_transform_edt`).
- **The deepest point** of a region: a pixel of greatest depth; ties go to the first in
  row-major order (the smallest row, then the smallest column).
- **First click** (``points``): a positive click at the deepest point of the object.
  ``box``: the object's bounding box (first to last row and column of its pixels, void
  excluded). ``box+points``: the box and the positive click at the deepest point together,
  counted as two interactions. ``scribble``: a positive :func:`stroke` of the object.
- **Next click**: the error regions are the 8-connected components of the missed pixels
  (object, not in the mask) and of the false pixels (in the mask, not the object). The
  largest region (most pixels; a missed region wins a tie with a false one, then the first
  found in row-major order) gets a click at its deepest point: positive in a missed region,
  negative in a false one. In ``scribble`` mode it gets a :func:`stroke` of that sign.
- **Stroke** (the documented scribble rule): a straight line through the region's deepest
  point along the region's major axis (the principal axis of its pixel coordinates), run
  both ways pixel by pixel while the pixels stay in the region with a depth of at least
  :data:`STROKE_MARGIN` (a human keeps a scribble off the edge); a region too thin for that
  gets a one-vertex stroke at its deepest point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_samlabel.core.prompts import Box, Point, Prompt, Scribble

#: A scribble stays at least this many pixels inside the region it is drawn in.
STROKE_MARGIN = 2.0
PROMPT_KINDS = ("points", "box", "box+points", "scribble")


@dataclass(frozen=True)
class ErrorRegion:
    """The region the next click goes to.

    Attributes
    ----------
    mask : numpy.ndarray
        ``H x W`` bool pixels of the region.
    missed : bool
        True for object pixels the mask misses (a positive click), False for false ones.
    """

    mask: np.ndarray
    missed: bool

    @property
    def area(self) -> int:
        """Pixels in the region."""
        return int(self.mask.sum())


def _bbox(mask: np.ndarray, margin: int = 0) -> tuple[slice, slice]:
    """Slices of ``mask``'s bounding box grown by ``margin`` (clipped to the array)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (slice(max(rows[0] - margin, 0), min(rows[-1] + margin + 1, h)),
            slice(max(cols[0] - margin, 0), min(cols[-1] + margin + 1, w)))


def _depth_crop(region: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Depth inside ``region``'s bounding box (+1 px), and the box's top-left corner.

    Exact: the ring around the box is outside the region, and clamping any farther outside
    pixel onto that ring brings it closer, so the nearest outside pixel is in the crop.
    """
    from scipy.ndimage import distance_transform_edt

    rs, cs = _bbox(region, 1)
    padded = np.pad(np.asarray(region[rs, cs], dtype=bool), 1)
    return np.asarray(distance_transform_edt(padded))[1:-1, 1:-1], rs.start, cs.start


def depth(region: np.ndarray) -> np.ndarray:
    """Distance of each pixel to the nearest pixel outside ``region`` (image border = outside)."""
    region = np.asarray(region, dtype=bool)
    out = np.zeros(region.shape)
    if region.any():
        d, r0, c0 = _depth_crop(region)
        out[r0:r0 + d.shape[0], c0:c0 + d.shape[1]] = d
    return out


def deepest_point(region: np.ndarray) -> tuple[int, int]:
    """``(row, col)`` of the deepest pixel of ``region`` (first in row-major order on ties).

    Raises
    ------
    ValueError
        For an empty region.
    """
    if not np.any(region):
        raise ValueError("an empty region has no deepest point")
    d, r0, c0 = _depth_crop(np.asarray(region, dtype=bool))
    # argmax: the first maximum in row-major order, which cropping preserves
    r, c = np.unravel_index(int(np.argmax(d)), d.shape)
    return int(r) + r0, int(c) + c0


def iou(mask: np.ndarray | None, target: np.ndarray, void: np.ndarray | None = None) -> float:
    """IoU of ``mask`` and ``target`` over the pixels that are not ``void``."""
    if mask is None:
        return 0.0
    keep = np.ones(target.shape, bool) if void is None else ~void
    inter = np.count_nonzero(mask & target & keep)
    union = np.count_nonzero((mask | target) & keep)
    return float(inter / union) if union else 1.0


def largest_error(mask: np.ndarray | None, target: np.ndarray,
                  void: np.ndarray | None = None) -> ErrorRegion | None:
    """The largest error region of ``mask`` against ``target`` (see the module rules)."""
    from skimage.measure import label

    pred = np.zeros(target.shape, bool) if mask is None else np.asarray(mask, bool)
    keep = np.ones(target.shape, bool) if void is None else ~void
    either = (pred | target) & keep
    if not either.any():
        return None
    rs, cs = _bbox(either)  # every error pixel is in here: label the crop only
    pred, target, keep = pred[rs, cs], target[rs, cs], keep[rs, cs]
    best: tuple[np.ndarray, bool] | None = None
    for missed, err in ((True, target & ~pred & keep), (False, pred & ~target & keep)):
        if not err.any():
            continue
        comps = label(err, connectivity=2)
        counts = np.bincount(comps.ravel())
        counts[0] = 0
        k = int(np.argmax(counts))  # first largest in label order = row-major first found
        if best is None or counts[k] > np.count_nonzero(best[0]):
            best = (comps == k, missed)
    if best is None:
        return None
    full = np.zeros(either.shape, bool)
    full[rs, cs] = best[0]
    return ErrorRegion(full, best[1])


def bounding_box(region: np.ndarray) -> Box:
    """The box from the first to the last row and column of ``region``'s pixels."""
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    return Box((float(rows[0]), float(cols[0])), (float(rows[-1]), float(cols[-1])))


def stroke(region: np.ndarray, positive: bool = True) -> Scribble:
    """A straight scribble through ``region`` (see the module rules)."""
    d = depth(region)
    r0, c0 = deepest_point(region)
    pts = np.argwhere(region).astype(float)
    if len(pts) < 2 or d[r0, c0] < STROKE_MARGIN:
        return Scribble(np.array([[r0, c0]], float), positive)
    cov = np.cov(pts.T)
    if not np.all(np.isfinite(cov)):
        return Scribble(np.array([[r0, c0]], float), positive)
    vals, vecs = np.linalg.eigh(cov)
    axis = vecs[:, int(np.argmax(vals))]
    ends = []
    h, w = region.shape
    for sign in (-1.0, 1.0):
        end = (float(r0), float(c0))
        t = 1.0
        while True:
            r, c = r0 + sign * t * axis[0], c0 + sign * t * axis[1]
            ri, ci = int(round(r)), int(round(c))
            if not (0 <= ri < h and 0 <= ci < w) or d[ri, ci] < STROKE_MARGIN:
                break
            end = (float(ri), float(ci))
            t += 1.0
        ends.append(end)
    path = np.array([ends[0], (r0, c0), ends[1]], float)
    return Scribble(path, positive)


def first_prompts(target: np.ndarray, kind: str) -> tuple[Prompt, ...]:
    """The first interaction(s) on an object ``target`` (counted one prompt each)."""
    if kind not in PROMPT_KINDS:
        raise ValueError(f"unknown prompt kind {kind!r}; expected one of {PROMPT_KINDS}")
    if kind == "box":
        return (bounding_box(target),)
    if kind == "box+points":
        return (bounding_box(target), Point(_rc(deepest_point(target)), True))
    if kind == "scribble":
        return (stroke(target, True),)
    return (Point(_rc(deepest_point(target)), True),)


def next_prompt(mask: np.ndarray | None, target: np.ndarray, kind: str,
                void: np.ndarray | None = None) -> Prompt | None:
    """The corrective prompt for ``mask`` (None when there is no error left)."""
    region = largest_error(mask, target, void)
    if region is None:
        return None
    if kind == "scribble":
        return stroke(region.mask, region.missed)
    return Point(_rc(deepest_point(region.mask)), region.missed)


def _rc(rc: tuple[int, int]) -> tuple[float, float]:
    return float(rc[0]), float(rc[1])
