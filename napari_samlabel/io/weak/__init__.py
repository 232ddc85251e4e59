"""Weak-label readers: points, scribbles, boxes and CAMs as core prompts.

Every reader returns ``{image_id: WeakLabels}`` with prompts in napari ``(row, col)`` pixels,
classes resolved with a :class:`~napari_samlabel.core.classes.ClassTable` (VOC by default),
and raises :class:`WeakLabelError` (a ``ValueError``) naming the file and the line or element
on bad content. :func:`read_weak_labels` picks the reader from the kind and the file suffix,
for one file or a whole directory.

=========  ==========================================  =====================================
kind       files                                       reader
=========  ==========================================  =====================================
points     ``.json`` (dataset or per image)            :func:`read_points_json`
scribbles  ``.txt``, ``.xml`` (ScribbleSup), ``.png``  :func:`read_scribbles_txt` / ``_xml``
                                                       / ``_png``
boxes      ``.xml`` (VOC Annotations), ``.json``       :func:`read_boxes_voc_xml` / ``_json``
cams       ``.npy`` (+ ``<id>.json`` class list)       :func:`read_cam_npy`
tags       a VOC root (``ImageSets/Main``), ``.json``,  :func:`read_tags_voc` / ``_json`` /
           ``.csv``                                    ``_csv`` (:mod:`.tags`)
=========  ==========================================  =====================================

Kind ``text`` has no file: every class of the class list prompts every image
(:func:`~napari_samlabel.io.weak.tags.text_labels`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_samlabel.core.classes import ClassTable, as_class_table

from ._files import image_id_from_path
from ._types import KINDS, WeakLabelError, WeakLabels, renumber
from .boxes import read_boxes_json, read_boxes_voc_xml
from .cams import cam_peak_points, read_cam_npy
from .points import read_points_json
from .scribbles import (
    mask_to_polylines,
    read_scribbles_png,
    read_scribbles_txt,
    read_scribbles_xml,
)
from .tags import read_tags_csv, read_tags_json, read_tags_voc

__all__ = [
    "KINDS", "ErrorHandler", "WeakLabelError", "WeakLabels", "cam_peak_points", "mask_to_polylines",
    "read_boxes_json", "read_boxes_voc_xml", "read_cam_npy", "read_points_json",
    "read_scribbles_png", "read_scribbles_txt", "read_scribbles_xml", "read_tags_csv",
    "read_tags_json", "read_tags_voc", "read_weak_labels", "renumber",
]

Reader = Callable[..., dict[str, WeakLabels]]
#: Readers of files that can hold many images; they report a bad image and go on.
_DATASET_READERS = (read_points_json, read_boxes_json, read_tags_json)
#: Called with each file's (or, in a dataset file, each image's) error when reading goes on.
ErrorHandler = Callable[[WeakLabelError], None]

READERS: dict[str, dict[str, Reader]] = {
    "points": {".json": read_points_json},
    "scribbles": {".txt": read_scribbles_txt, ".xml": read_scribbles_xml,
                  ".png": read_scribbles_png},
    "boxes": {".xml": read_boxes_voc_xml, ".json": read_boxes_json},
    "cams": {".npy": read_cam_npy},
    "tags": {".json": read_tags_json, ".csv": read_tags_csv},
}


def read_weak_labels(path: str | Path, kind: str,
                     classes: ClassTable | list[str] | None = None, *,
                     on_error: ErrorHandler | None = None, **options: Any
                     ) -> dict[str, WeakLabels]:
    """Read the weak labels of a file or of every matching file in a directory.

    Parameters
    ----------
    path : str or pathlib.Path
        A weak-label file, or a directory whose files of the kind's suffixes are read (not
        recursively; other files, such as images next to scribbles or the class-list
        sidecars of CAMs, are skipped). For boxes, a VOC root means its ``Annotations/``.
    kind : str
        ``"points"``, ``"scribbles"``, ``"boxes"`` or ``"cams"``.
    classes : ClassTable or list of str, optional
        The class table; VOC by default.
    on_error : callable, optional
        Without it the first bad file raises. With it, a bad file (or, in a dataset file
        holding many images, one image's bad entries) is handed to ``on_error`` as a
        :class:`WeakLabelError` whose ``image_id`` says which image it concerns (the id in
        a dataset file, else the file's stem without a kind suffix), and reading goes on
        with the other files: one bad file must not stop a dataset run. Such an image is
        left out of the result even when another file gave it labels, since its labels
        would be incomplete.
    **options
        Passed to the CAM reader: ``cam_classes``, ``threshold``, ``min_distance``,
        ``max_points``, ``fallback_to_max``; to the VOC tag reader: ``split``.

    Returns
    -------
    dict of str to WeakLabels
        Sorted by image id. Labels of the same image found in several files are merged.

    Raises
    ------
    WeakLabelError
        On bad content (without ``on_error``), an unsupported file suffix, or a directory
        with no matching file.
    FileNotFoundError
        When ``path`` does not exist.
    """
    if kind == "text":
        raise ValueError("kind 'text' has no weak-label file: every class of the class list "
                         "prompts every image (io.weak.tags.text_labels)")
    if kind not in READERS:
        raise ValueError(f"unknown weak-label kind {kind!r}; expected one of {', '.join(KINDS)}")
    if options and kind not in ("cams", "tags"):
        raise TypeError(f"options {sorted(options)} apply to kinds 'cams' and 'tags' only")
    table = as_class_table(classes)
    path = Path(path)
    readers = READERS[kind]
    if not path.exists():
        raise FileNotFoundError(f"weak labels not found: {path}")
    if kind == "tags" and path.is_dir():  # a VOC root or its ImageSets/Main
        return read_tags_voc(path, table, **options)
    if kind == "tags" and options:
        raise TypeError("option 'split' applies to a VOC root's tag files only")
    if path.is_dir() and kind == "boxes" and (path / "Annotations").is_dir():
        path = path / "Annotations"  # a VOC root
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and p.suffix.lower() in readers
                       and not p.name.startswith("."))
        if not files:
            raise WeakLabelError(path, f"no {kind} files ({', '.join(readers)}) in this folder")
    else:
        if path.suffix.lower() not in readers:
            raise WeakLabelError(path, f"unsupported file type for {kind}; expected "
                                 f"{', '.join(readers)}")
        files = [path]
    result: dict[str, WeakLabels] = {}
    failed: set[str] = set()

    def handle(exc: WeakLabelError) -> None:
        failed.add(str(exc.image_id))
        assert on_error is not None
        on_error(exc)

    for f in files:
        reader = readers[f.suffix.lower()]
        try:
            if on_error is not None and reader in _DATASET_READERS:
                got = reader(f, table, on_error=handle, **options)
            else:
                got = reader(f, table, **options)
        except WeakLabelError as exc:
            # A single input file that is unreadable as a whole (bad JSON, not UTF-8) is
            # the whole input, not one failed image named after the file.
            if on_error is None or (f == path and exc.image_id is None):
                raise
            if exc.image_id is None:
                exc.image_id = image_id_from_path(f)
            handle(exc)
            continue
        for image_id, labels in got.items():
            result[image_id] = (result[image_id].merged_with(labels) if image_id in result
                                else labels)
    return {k: v for k, v in sorted(result.items()) if k not in failed}
