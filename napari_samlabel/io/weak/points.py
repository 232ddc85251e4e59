"""Point (click) labels from JSON, in the "What's the point" layout.

Accepted layouts
----------------
Dataset file (the upstream layout of Bearman et al., "What's the point")::

    {"2008_000003": [{"x": 179.8, "y": 266.3, "cls": 8, "rank": 1}, ...], ...}

Per-image file, the image id taken from ``"image"`` or else from the file stem::

    {"image": "2008_000003", "points": [{"x": ..., "y": ..., "cls": ...}, ...]}
    [{"x": ..., "y": ..., "cls": ...}, ...]

``x`` is the column and ``y`` the row, in pixels (0-based, continuous); they are converted to
napari ``(row, col)`` with :func:`napari_samlabel.core.coords.xy_to_rc`. ``cls`` is a class
index of the class table (VOC: 1..20) or a class name; ``0`` / ``"background"`` marks a
background point, read as a negative prompt. ``rank`` is optional.

How points map to objects
-------------------------
In "What's the point" every object instance gets one click and ``rank`` numbers the
instances of a class in the order they were clicked. Points with the same ``(cls, rank)``
therefore form one object; a point without ``rank`` is an object of its own. Objects are
ordered by class, then rank (then file order). For semantic pseudo-labelling the seed paper
feeds all labelled points of a class iteratively into one prediction:
:meth:`WeakLabels.by_class` gives exactly that "class object", its points in rank order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.coords import xy_to_rc
from napari_samlabel.core.prompts import ObjectPrompts, Point

from ._files import image_id_from_path, normalise_image_id, read_utf8
from ._types import WeakLabelError, WeakLabels, per_image, renumber, resolve_class


def _load_json(path: Path) -> Any:
    text = read_utf8(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise WeakLabelError(path, f"not valid JSON: {exc.msg}",
                             f"line {exc.lineno}, column {exc.colno}") from exc


def _number(value: Any, key: str, path: Path, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WeakLabelError(path, f"{key!r} must be a number, got {value!r}", where)
    if not math.isfinite(value) or value < 0:
        raise WeakLabelError(path, f"{key!r} must be a finite pixel coordinate >= 0, "
                             f"got {value!r}", where)
    return float(value)


def points_from_entries(entries: Any, image_id: str, classes: ClassTable,
                        path: Path) -> WeakLabels:
    """Build the :class:`WeakLabels` of one image from its list of point records.

    Raises
    ------
    WeakLabelError
        On a malformed record, naming the file, image and entry number (0-based).
    """
    if not isinstance(entries, list):
        raise WeakLabelError(path, f"the points of an image must be a list, got "
                             f"{type(entries).__name__}", f"image {image_id!r}")
    if not entries:
        # Nothing says what is in the image: labelling it all background would be a lie.
        raise WeakLabelError(path, "the image has no points; it is skipped",
                             f"image {image_id!r}", image_id=image_id)
    groups: dict[tuple[int, float, int], list[Point]] = {}
    entry_of: dict[tuple[int, float, int], list[int]] = {}
    background: list[Point] = []
    background_at: list[str] = []
    for i, entry in enumerate(entries):
        where = f"image {image_id!r}, entry {i}"
        if not isinstance(entry, dict):
            raise WeakLabelError(path, f"a point must be an object with x, y, cls; got "
                                 f"{entry!r}", where)
        missing = [k for k in ("x", "y", "cls") if k not in entry]
        if missing:
            raise WeakLabelError(path, f"point is missing {', '.join(missing)}", where)
        x = _number(entry["x"], "x", path, where)
        y = _number(entry["y"], "y", path, where)
        cid = resolve_class(classes, entry["cls"], path, where)
        rc = xy_to_rc(np.array([x, y]))
        if cid == 0:
            background.append(Point((float(rc[0]), float(rc[1])), positive=False))
            background_at.append(where)
            continue
        rank = entry.get("rank")
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, (int, float))):
            raise WeakLabelError(path, f"'rank' must be a number, got {rank!r}", where)
        # No rank: the point is its own object, ordered after the ranked ones by file order.
        key = (cid, float(rank), -1) if rank is not None else (cid, math.inf, i)
        groups.setdefault(key, []).append(Point((float(rc[0]), float(rc[1]))))
        entry_of.setdefault(key, []).append(i)
    keys = sorted(groups)
    objects = renumber(ObjectPrompts(0, key[0], tuple(groups[key])) for key in keys)
    origins = tuple(f"image {image_id!r}, entr{'y' if len(entry_of[k]) == 1 else 'ies'} "
                    + ", ".join(map(str, entry_of[k])) for k in keys)
    return WeakLabels(image_id, "points", objects, tuple(background), str(path),
                      origins=origins, background_origins=tuple(background_at))


def read_points_json(path: str | Path, classes: ClassTable | None = None, *,
                     on_error: Callable[[WeakLabelError], None] | None = None
                     ) -> dict[str, WeakLabels]:
    """Read point labels from a dataset or per-image JSON file (layouts in the module doc).

    Parameters
    ----------
    path : str or pathlib.Path
        The JSON file.
    classes : ClassTable, optional
        Resolves class indices and names; VOC by default.
    on_error : callable, optional
        In a dataset file, an image with bad entries is handed to ``on_error`` (its
        ``image_id`` set) and left out, and the other images are read; without it the
        first bad entry raises.

    Returns
    -------
    dict of str to WeakLabels
        One entry per image, in file order.
    """
    path = Path(path)
    classes = classes or ClassTable.voc()
    data = _load_json(path)
    if isinstance(data, list):
        if not data:
            raise WeakLabelError(path, "the file holds an empty list: no points")
        stem = image_id_from_path(path)
        return {stem: points_from_entries(data, stem, classes, path)}
    if not isinstance(data, dict):
        raise WeakLabelError(path, "expected a JSON object {image_id: [points]} or a list of "
                             f"points, got {type(data).__name__}")
    if isinstance(data.get("points"), list):
        image_id = normalise_image_id(data.get("image") or image_id_from_path(path))
        return {image_id: points_from_entries(data["points"], image_id, classes, path)}
    fields = sorted(k for k in data if k in _PER_IMAGE_FIELDS)
    if fields:
        raise WeakLabelError(path, f"the keys {fields} look like the fields of one image, not "
                             "image ids: a dataset file maps image ids to point lists "
                             "({\"2008_000003\": [{\"x\": .., \"y\": .., \"cls\": ..}]}); "
                             "a per-image file is {\"image\": id, \"points\": [...]} or a "
                             "list of points")
    return per_image(data, lambda k, v: points_from_entries(v, k, classes, path), on_error)


#: Keys of per-image layouts of other tools; never image ids in a dataset file.
_PER_IMAGE_FIELDS = frozenset({"fg_points", "bg_points", "points", "image", "clicks",
                               "positive_points", "negative_points", "labels", "boxes",
                               "shapes", "annotations", "imagePath"})
