"""Box labels: VOC ``Annotations/*.xml`` and JSON.

Coordinate convention
---------------------
PASCAL VOC numbers pixels from 1 and its ``bndbox`` is inclusive: ``xmin=1`` is the first
column, ``xmax=width`` the last. A :class:`~napari_samlabel.core.prompts.Box` holds 0-based
pixel indices of the first and last row/column the object covers (the convention of SAM's own
mask-to-box helper), so a VOC box becomes ``x - 1`` / ``y - 1`` on every corner, converted to
``(row, col)`` corners with :func:`napari_samlabel.core.coords.xyxy_to_box_rc`. A coordinate of
0 (written by tools that count from 0 in VOC files) is clipped to the first pixel, and boxes
reaching past ``<size>`` are clipped to the image.

JSON layouts (``index_base`` defaults to 1, the VOC convention, because such files are usually
converted from VOC XML; write ``"index_base": 0`` for 0-based pixel indices)::

    {"image": "2007_004856", "index_base": 1,
     "objects": [{"name": "cat", "bbox_xyxy": [28, 1, 335, 496]}]}
    [{"cls": 8, "bbox": [28, 1, 335, 496]}, ...]          # image id = file stem
    [["cat", 28, 1, 335, 496], [8, 40, 10, 90, 60]]       # [cls, xmin, ymin, xmax, ymax]
    {"2007_004856": [ ...objects as above... ], ...}       # several images in one file

An object's class is ``name``, ``cls`` or ``class`` (index or name); its box is
``bbox_xyxy``, ``bbox`` or ``box``. Each box is one object (the seed paper: one box per object,
no negative points).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.coords import xyxy_to_box_rc
from napari_samlabel.core.prompts import Box, ObjectPrompts

from ._files import (
    image_id_from_path,
    normalise_image_id,
    parse_xml,
    xml_image_size,
    xml_number,
)
from ._types import WeakLabelError, WeakLabels, per_image, renumber, resolve_class
from .points import _load_json

_CLASS_KEYS = ("name", "cls", "class")
_BOX_KEYS = ("bbox_xyxy", "bbox", "box")


def box_from_xyxy(xyxy: Any, index_base: int, path: Path, where: str,
                  shape: tuple[int, int] | None = None) -> Box:
    """Validate ``[xmin, ymin, xmax, ymax]`` (``index_base`` 0 or 1) and build a Box.

    Raises
    ------
    WeakLabelError
        On a wrong length, non-numbers, swapped corners or a box outside the image.
    """
    if not isinstance(xyxy, (list, tuple)) or len(xyxy) != 4:
        raise WeakLabelError(path, f"a box must be [xmin, ymin, xmax, ymax], got {xyxy!r}",
                             where)
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
           for v in xyxy):
        raise WeakLabelError(path, f"box values must be finite numbers, got {xyxy!r}", where)
    v = np.asarray(xyxy, dtype=np.float64) - index_base
    if v[2] < v[0] or v[3] < v[1]:
        raise WeakLabelError(path, f"box corners are swapped (xmax < xmin or ymax < ymin): "
                             f"{list(xyxy)}", where)
    v = np.maximum(v, 0.0)
    if shape is not None:
        h, w = shape
        if v[0] > w - 1 or v[1] > h - 1:
            raise WeakLabelError(path, f"box {list(xyxy)} starts outside the {w} x {h} image",
                                 where)
        v = np.minimum(v, [w - 1, h - 1, w - 1, h - 1])
    top_left, bottom_right = xyxy_to_box_rc(v)
    return Box((float(top_left[0]), float(top_left[1])),
               (float(bottom_right[0]), float(bottom_right[1])))


def read_boxes_voc_xml(path: str | Path, classes: ClassTable | None = None
                       ) -> dict[str, WeakLabels]:
    """Read a VOC ``Annotations/<id>.xml``: one box object per ``<object>``.

    Part boxes nested in an object (VOC person layout) are not read. ``difficult`` objects are
    kept: VOC segmentation ground truth labels them too.

    Raises
    ------
    WeakLabelError
        Naming the file and ``<object> #k`` (1-based) on an unknown class or a bad box.
    """
    path = Path(path)
    classes = classes or ClassTable.voc()
    root = parse_xml(path)
    filename = (root.findtext("filename") or "").strip()
    image_id = normalise_image_id(filename) if filename else image_id_from_path(path)
    shape = xml_image_size(root, path)
    objects, origins = [], []
    for k, obj in enumerate(root.findall("object"), start=1):
        where = f"<object> #{k}"
        name = obj.findtext("name")
        if name is None or not name.strip():
            raise WeakLabelError(path, "missing <name> (the class)", where)
        cid = resolve_class(classes, name, path, where)
        if cid == 0:
            raise WeakLabelError(path, "a box cannot be background", where)
        bnd = obj.find("bndbox")
        if bnd is None:
            raise WeakLabelError(path, "missing <bndbox>", where)
        xyxy = [xml_number(bnd, t, path, f"{where} <bndbox>")
                for t in ("xmin", "ymin", "xmax", "ymax")]
        objects.append(ObjectPrompts(0, cid, (box_from_xyxy(xyxy, 1, path, where, shape),)))
        origins.append(where)
    return {image_id: WeakLabels(image_id, "boxes", renumber(objects), (), str(path), shape,
                                 tuple(origins))}


def _object_from_json(entry: Any, index_base: int, classes: ClassTable, path: Path,
                      where: str) -> ObjectPrompts:
    if isinstance(entry, (list, tuple)):
        if len(entry) != 5:
            raise WeakLabelError(path, f"a box list must be [cls, xmin, ymin, xmax, ymax], "
                                 f"got {entry!r}", where)
        cls_value, xyxy = entry[0], list(entry[1:])
    elif isinstance(entry, dict):
        cls_key = next((k for k in _CLASS_KEYS if k in entry), None)
        box_key = next((k for k in _BOX_KEYS if k in entry), None)
        if cls_key is None or box_key is None:
            raise WeakLabelError(path, "a box object needs a class (name/cls/class) and a box "
                                 f"(bbox_xyxy/bbox/box); got keys {sorted(entry)}", where)
        cls_value, xyxy = entry[cls_key], entry[box_key]
    else:
        raise WeakLabelError(path, f"a box must be an object or a list, got {entry!r}", where)
    cid = resolve_class(classes, cls_value, path, where)
    if cid == 0:
        raise WeakLabelError(path, "a box cannot be background", where)
    return ObjectPrompts(0, cid, (box_from_xyxy(xyxy, index_base, path, where),))


def _boxes_from_list(entries: Any, image_id: str, index_base: int, classes: ClassTable,
                     path: Path) -> WeakLabels:
    if not isinstance(entries, list):
        raise WeakLabelError(path, f"the boxes of an image must be a list, got "
                             f"{type(entries).__name__}", f"image {image_id!r}")
    origins = tuple(f"image {image_id!r}, object {i}" for i in range(len(entries)))
    objects = [_object_from_json(e, index_base, classes, path, where)
               for e, where in zip(entries, origins, strict=True)]
    return WeakLabels(image_id, "boxes", renumber(objects), (), str(path), origins=origins)


def read_boxes_json(path: str | Path, classes: ClassTable | None = None, *,
                    on_error: Callable[[WeakLabelError], None] | None = None
                    ) -> dict[str, WeakLabels]:
    """Read box labels from JSON (layouts and the ``index_base`` rule in the module doc).

    ``on_error``: as in :func:`~napari_samlabel.io.weak.points.read_points_json` (a bad
    image of a file holding several images is reported and left out).

    Raises
    ------
    WeakLabelError
        Naming the file, image and object number (0-based) on bad content.
    """
    path = Path(path)
    classes = classes or ClassTable.voc()
    data = _load_json(path)
    if isinstance(data, list):
        stem = image_id_from_path(path)
        return {stem: _boxes_from_list(data, stem, 1, classes, path)}
    if not isinstance(data, dict):
        raise WeakLabelError(path, f"expected a JSON object or list, got {type(data).__name__}")
    index_base = data.get("index_base", 1)
    if index_base not in (0, 1) or isinstance(index_base, bool):
        raise WeakLabelError(path, f"'index_base' must be 0 or 1, got {index_base!r}")
    if "objects" in data:
        image_id = normalise_image_id(data.get("image") or image_id_from_path(path))
        return {image_id: _boxes_from_list(data["objects"], image_id, index_base, classes,
                                           path)}
    images = {k: v for k, v in data.items() if k != "index_base"}
    return per_image(images, lambda k, v: _boxes_from_list(v, k, index_base, classes, path),
                     on_error)
