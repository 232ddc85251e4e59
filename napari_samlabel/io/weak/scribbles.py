"""Scribble labels: text polylines, ScribbleSup-style XML and scribble PNGs.

Formats
-------
Text (one scribble per line, as ScribbleSup's scribbles are commonly shipped)::

    15,74,195,74,196,74,198
    0,12,300,40,310

The first value is the class (index or name; ``0`` = background), then ``x, y`` vertex pairs
in pixels (``x`` = column, ``y`` = row). Commas and/or whitespace separate values; blank lines
and lines starting with ``#`` are skipped. The image id is the file stem without a
``_scribble`` suffix.

XML (ScribbleSup)::

    <annotation>
      <filename>2008_000003.jpg</filename>
      <size><width>500</width><height>375</height></size>
      <polygon><tag>person</tag><point><X>74</X><Y>195</Y></point>...</polygon>
    </annotation>

``<tag>`` is a class name or index. The image id comes from ``<filename>`` (else the stem);
the image size from ``<size>`` (VOC style) or ``<imagesize>`` (LabelMe style) when present.

PNG: one class index per pixel, ``255`` = unlabelled, ``0`` = background. Every pixel of a
class becomes part of a scribble: the pixels are cut into 8-connected chains
(:func:`mask_to_polylines`) so that :meth:`Scribble.pixels` gives back exactly the labelled
pixels; each 8-connected stroke of a class is one object.

Background scribbles (class 0) become negative prompts in ``WeakLabels.background``; every
other scribble is one object with one positive :class:`~napari_samlabel.core.prompts.Scribble`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from napari_samlabel.core.classes import VOID, ClassTable
from napari_samlabel.core.coords import xy_to_rc
from napari_samlabel.core.prompts import ObjectPrompts, Scribble

from ._files import (
    image_id_from_path,
    normalise_image_id,
    parse_xml,
    read_index_png,
    read_utf8,
    xml_image_size,
    xml_number,
)
from ._types import WeakLabelError, WeakLabels, renumber, resolve_class

_SEP = re.compile(r"[,\s]+")
# 4-neighbours first so chains follow straight runs before cutting corners.
_NEIGHBOURS = ((0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))


def _build(image_id: str, items: list[tuple[int, np.ndarray, str]], path: Path,
           shape: tuple[int, int] | None = None) -> WeakLabels:
    """Turn ``(class_id, (N, 2) row-col path, where)`` items into WeakLabels."""
    objects, origins = [], []
    background, background_at = [], []
    for cid, rc, where in items:
        if cid == 0:
            background.append(Scribble(rc, positive=False))
            background_at.append(where)
        else:
            objects.append(ObjectPrompts(0, cid, (Scribble(rc),)))
            origins.append(where)
    return WeakLabels(image_id, "scribbles", renumber(objects), tuple(background), str(path),
                      shape, tuple(origins), tuple(background_at))


def read_scribbles_txt(path: str | Path, classes: ClassTable | None = None
                       ) -> dict[str, WeakLabels]:
    """Read a text scribble file (``cls,x1,y1,x2,y2,...`` per line).

    Returns
    -------
    dict of str to WeakLabels
        One entry, keyed by the image id.

    Raises
    ------
    WeakLabelError
        Naming the file and line on a bad class, an odd number of coordinates, a
        non-number or a negative coordinate.
    """
    path = Path(path)
    classes = classes or ClassTable.voc()
    text = read_utf8(path)
    items = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"line {lineno}"
        fields = [f for f in _SEP.split(line) if f]
        if not fields:
            raise WeakLabelError(path, f"line holds only separators ({line!r}); expected "
                                 "cls followed by x,y pairs", where)
        cid = resolve_class(classes, fields[0], path, where)
        coords = fields[1:]
        if not coords or len(coords) % 2:
            raise WeakLabelError(path, f"expected cls followed by x,y pairs, got "
                                 f"{len(coords)} coordinate values", where)
        try:
            xy = np.array([float(v) for v in coords], dtype=np.float64).reshape(-1, 2)
        except ValueError as exc:
            raise WeakLabelError(path, f"coordinate is not a number ({exc})", where) from None
        if not np.isfinite(xy).all() or (xy < 0).any():
            raise WeakLabelError(path, "coordinates must be finite and >= 0", where)
        items.append((cid, xy_to_rc(xy), where))
    image_id = image_id_from_path(path)
    return {image_id: _build(image_id, items, path)}


def read_scribbles_xml(path: str | Path, classes: ClassTable | None = None
                       ) -> dict[str, WeakLabels]:
    """Read a ScribbleSup-style XML file (``<polygon>`` with ``<tag>`` and ``<point>``s).

    Raises
    ------
    WeakLabelError
        Naming the file and the ``<polygon>``/``<point>`` (1-based) on bad content.
    """
    path = Path(path)
    classes = classes or ClassTable.voc()
    root = parse_xml(path)
    filename = (root.findtext("filename") or "").strip()
    image_id = normalise_image_id(filename) if filename else image_id_from_path(path)
    shape = xml_image_size(root, path)
    items = []
    for k, poly in enumerate(root.iter("polygon"), start=1):
        where = f"<polygon> #{k}"
        tag = poly.findtext("tag")
        if tag is None or not tag.strip():
            raise WeakLabelError(path, "missing <tag> (the class)", where)
        cid = resolve_class(classes, tag, path, where)
        xy = []
        for j, pt in enumerate(poly.findall("point"), start=1):
            pwhere = f"{where}, <point> #{j}"
            x = xml_number(pt, "X", path, pwhere)
            y = xml_number(pt, "Y", path, pwhere)
            if x < 0 or y < 0:
                raise WeakLabelError(path, f"negative coordinate ({x}, {y})", pwhere)
            xy.append((x, y))
        if not xy:
            raise WeakLabelError(path, "polygon has no <point>", where)
        items.append((cid, xy_to_rc(np.array(xy)), where))
    return {image_id: _build(image_id, items, path, shape)}


def mask_to_polylines(mask: np.ndarray) -> list[np.ndarray]:
    """Cut the pixels of a mask into 8-connected pixel chains.

    Every pixel of ``mask`` belongs to exactly one chain, and consecutive vertices of a
    chain are 8-neighbours, so drawing the chains as polylines covers exactly the mask's
    pixels. Chains start at pixels with the fewest neighbours (stroke ends) so a thin
    stroke becomes one long chain.

    Parameters
    ----------
    mask : numpy.ndarray
        2-D boolean mask.

    Returns
    -------
    list of numpy.ndarray
        ``(N, 2)`` ``int64`` ``(row, col)`` chains.
    """
    from scipy.ndimage import convolve

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return []
    counts = convolve(mask.astype(np.uint8), np.ones((3, 3), np.uint8), mode="constant")
    rows, cols = np.nonzero(mask)
    order = np.lexsort((cols, rows, counts[rows, cols]))
    remaining = set(zip(rows.tolist(), cols.tolist(), strict=True))
    chains: list[np.ndarray] = []
    for idx in order:
        start = (int(rows[idx]), int(cols[idx]))
        if start not in remaining:
            continue
        remaining.discard(start)
        chain = [start]
        r, c = start
        while True:
            for dr, dc in _NEIGHBOURS:
                nxt = (r + dr, c + dc)
                if nxt in remaining:
                    remaining.discard(nxt)
                    chain.append(nxt)
                    r, c = nxt
                    break
            else:
                break
        chains.append(np.array(chain, dtype=np.int64))
    return chains


def read_scribbles_png(path: str | Path, classes: ClassTable | None = None
                       ) -> dict[str, WeakLabels]:
    """Read a scribble PNG (class index per pixel, 255 unlabelled, 0 background).

    Raises
    ------
    WeakLabelError
        When the PNG is not an index image or holds a value outside the class table.
    """
    from scipy.ndimage import find_objects
    from skimage.measure import label

    path = Path(path)
    classes = classes or ClassTable.voc()
    arr = read_index_png(path)
    if arr.ndim != 2:
        raise WeakLabelError(path, f"expected a 2-D index image, got shape {arr.shape}")
    values = [int(v) for v in np.unique(arr) if v != VOID]
    bad = [v for v in values if v >= len(classes)]
    if bad:
        raise WeakLabelError(path, f"pixel values {bad} are not classes of the table "
                             f"(0..{len(classes) - 1}, 255 = unlabelled)")
    objects: list[ObjectPrompts] = []
    origins: list[str] = []
    background: list[Scribble] = []
    background_at: list[str] = []
    for cid in values:
        strokes = label(arr == cid, connectivity=2)
        # Work on each stroke's bounding box, not the whole image, per stroke.
        for k, sl in enumerate(find_objects(strokes), start=1):
            if sl is None:
                continue
            offset = np.array([sl[0].start, sl[1].start])
            scribbles = tuple(Scribble((ch + offset).astype(np.float32), positive=cid != 0)
                              for ch in mask_to_polylines(strokes[sl] == k))
            where = (f"value {cid}, stroke {k} (rows {sl[0].start}-{sl[0].stop - 1}, "
                     f"cols {sl[1].start}-{sl[1].stop - 1})")
            if cid == 0:
                background.extend(scribbles)
                background_at.extend([where] * len(scribbles))
            else:
                objects.append(ObjectPrompts(0, cid, scribbles))
                origins.append(where)
    image_id = image_id_from_path(path)
    return {image_id: WeakLabels(image_id, "scribbles", renumber(objects), tuple(background),
                                 str(path), (int(arr.shape[0]), int(arr.shape[1])),
                                 tuple(origins), tuple(background_at))}
