"""Layer data <-> core prompts, without napari: plain arrays in, prompts out, and back.

The prompt layers hold ``(row, col)`` data, the core's convention, so no coordinate
conversion happens here (that is :mod:`napari_samlabel.core.coords`'s job, for SAM). What
happens here:

- a point is a :class:`~napari_samlabel.core.prompts.Point`; its polarity comes from the
  layer's ``positive`` feature (never from its colour);
- a rectangle (or an ellipse, by its bounding box) is a
  :class:`~napari_samlabel.core.prompts.Box` with the shape's polarity (a negative box is an
  exclusion region, see :mod:`napari_samlabel.engine.policies`); a path, line, polyline or
  polygon is a :class:`~napari_samlabel.core.prompts.Scribble` whose width is the shape's
  edge width; boxes come back with :data:`EDGE_WIDTH` (a box has no width of its own);
- the document keeps prompts in the order they were given (iterative policies feed them in
  that order), while layers keep them per layer: :func:`merge_order` keeps the document's
  order for prompts still present and appends new ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from napari_samlabel.core.prompts import Box, Point, Prompt, Scribble

EDGE_WIDTH = 3.0   # edge width of new shapes (the scribble brush) and of boxes shown again
BOX_TYPES = frozenset({"rectangle", "ellipse"})
PATH_TYPES = frozenset({"path", "line", "polyline", "polygon"})


def points_to_prompts(data: np.ndarray, positive: Sequence[bool] | np.ndarray) -> list[Point]:
    """Points layer data ``(N, 2)`` and its ``positive`` feature -> points."""
    data = np.asarray(data, dtype=float).reshape(-1, 2)
    if len(positive) != len(data):
        raise ValueError(f"{len(data)} points but {len(positive)} polarity values")
    return [Point((float(r), float(c)), bool(p)) for (r, c), p in zip(data, positive,
                                                                      strict=True)]


def shapes_to_prompts(data: Sequence[np.ndarray], shape_types: Sequence[str],
                      positive: Sequence[bool] | np.ndarray,
                      widths: Sequence[float] | np.ndarray) -> list[Prompt]:
    """Shapes layer data -> boxes and scribbles (in layer order).

    Rectangles and ellipses become boxes with the shape's polarity; paths, lines,
    polylines and polygons become scribbles with the shape's polarity and edge width.
    """
    out: list[Prompt] = []
    for verts, kind, pos, width in zip(data, shape_types, positive, widths, strict=True):
        verts = np.asarray(verts, dtype=float).reshape(-1, 2)
        if kind in BOX_TYPES:
            out.append(Box(tuple(verts.min(axis=0)), tuple(verts.max(axis=0)), bool(pos)))
        elif kind in PATH_TYPES:
            out.append(Scribble(verts, bool(pos), float(width)))
        else:
            raise ValueError(f"unsupported shape type {kind!r} in the prompt layer")
    return out


@dataclass(frozen=True)
class PointsData:
    """What a Points layer shows for a list of prompts."""

    data: np.ndarray       # (N, 2) row, col
    positive: np.ndarray   # (N,) bool


@dataclass(frozen=True)
class ShapesData:
    """What a Shapes layer shows for a list of prompts."""

    data: list[np.ndarray]
    shape_types: list[str]
    positive: np.ndarray
    widths: np.ndarray


def prompts_to_points(prompts: Sequence[Prompt]) -> PointsData:
    """The points among ``prompts`` as Points layer data."""
    pts = [p for p in prompts if isinstance(p, Point)]
    data = np.array([p.rc for p in pts], dtype=float).reshape(-1, 2)
    return PointsData(data, np.array([p.positive for p in pts], dtype=bool))


def prompts_to_shapes(prompts: Sequence[Prompt]) -> ShapesData:
    """The boxes and scribbles among ``prompts`` as Shapes layer data."""
    data: list[np.ndarray] = []
    types: list[str] = []
    pos: list[bool] = []
    widths: list[float] = []
    for p in prompts:
        if isinstance(p, Box):
            (r0, c0), (r1, c1) = p.top_left, p.bottom_right
            data.append(np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]], dtype=float))
            types.append("rectangle")
            pos.append(p.positive)
            widths.append(EDGE_WIDTH)
        elif isinstance(p, Scribble):
            data.append(np.asarray(p.path, dtype=float))
            types.append("path")
            pos.append(p.positive)
            widths.append(p.width)
    return ShapesData(data, types, np.array(pos, dtype=bool), np.array(widths, dtype=float))


def merge_order(previous: Sequence[Prompt], now: Sequence[Prompt]) -> tuple[Prompt, ...]:
    """Order the prompts in ``now`` as the annotator gave them.

    Prompts also in ``previous`` keep their place (as often as they occur in both); new
    ones (added or moved) follow in layer order.
    """
    left = Counter(now)
    kept: list[Prompt] = []
    for p in previous:
        if left[p] > 0:
            kept.append(p)
            left[p] -= 1
    for p in now:
        if left[p] > 0:
            kept.append(p)
            left[p] -= 1
    return tuple(kept)


def degenerate(prompt: Prompt) -> bool:
    """True for a box without area or a scribble that never left its first vertex."""
    if isinstance(prompt, Box):
        (r0, c0), (r1, c1) = prompt.top_left, prompt.bottom_right
        return r1 - r0 < 1 or c1 - c0 < 1
    if isinstance(prompt, Scribble):
        path = np.asarray(prompt.path, dtype=float)
        return bool(np.all(np.abs(path - path[0]) < 1))
    return False


def same_prompts(a: Sequence[Prompt], b: Sequence[Prompt]) -> bool:
    """True when ``a`` and ``b`` hold the same prompts, in any order."""
    return Counter(a) == Counter(b)
