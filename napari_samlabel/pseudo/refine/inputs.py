"""Reading the refiners' per-image inputs: class maps (CAMs or network scores).

File convention (the same as the CAM weak labels of :mod:`napari_samlabel.io.weak.cams`):
``<id>.npy`` holds a ``C x H x W`` float array (``H x W`` for one class) at image resolution,
one channel per foreground class present; the class of each channel comes from the
``cam_classes`` argument or from a sidecar ``<id>.json`` beside it (a list of names or
indices, or ``{"classes": [...]}``). The object may also list the image-level labels,
``{"classes": [every channel], "labels": ["cat"]}``: only the channels of the labelled
classes are then returned (the refiners work on the classes present in the image). Arrays
are read with ``allow_pickle=False``.

Per-pixel confidence for SLIC's adaptive threshold (:func:`load_confidence`) comes from a
folder of ``<id>.npy`` ``H x W`` float maps, or from the output folder of ``samlabel
pseudo-label`` (recognised by its ``scores/``): there each pixel's confidence is SAM's
predicted IoU of the mask it belongs to (``SegmentationObject/<id>.png`` and
``scores/<id>.json``), see :func:`napari_samlabel.pseudo.refine.slic.object_confidence`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_samlabel.core.classes import ClassTable


class RefineInputError(ValueError):
    """A refiner input file is missing or malformed; the message names the file."""


def _class_index(classes: ClassTable, value: object, path: Path, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise RefineInputError(f"{path}: {where}: class must be a name or an index, got "
                               f"{value!r}")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    try:
        idx = classes.index(value.strip() if isinstance(value, str) else value)
    except KeyError as exc:
        raise RefineInputError(f"{path}: {where}: {exc.args[0]}") from None
    if idx == 0:
        raise RefineInputError(f"{path}: {where}: background cannot have a class map "
                               "(leave a network's background channel out)")
    return idx


def load_class_maps(path: str | Path, classes: ClassTable | None = None, *,
                    cam_classes: Sequence[int | str] | None = None
                    ) -> tuple[np.ndarray, list[int]]:
    """Read ``<id>.npy`` class maps and the class index of each channel.

    Returns
    -------
    maps : numpy.ndarray
        ``C x H x W`` ``float32``.
    class_ids : list of int
        Class index of each channel.

    Raises
    ------
    RefineInputError
        Missing or unreadable file, pickled content, wrong shape or type, non-finite values,
        no or mismatching class list, unknown or repeated classes.
    """
    path = Path(path)
    classes = classes or ClassTable.voc()
    if not path.is_file():
        raise RefineInputError(f"class map file not found: {path}")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise RefineInputError(f"{path}: holds pickled objects or is not a .npy array; save "
                               "the maps as a plain C x H x W float array with a sidecar "
                               "class list") from exc
    except OSError as exc:
        raise RefineInputError(f"{path}: cannot read as a .npy array: {exc}") from exc
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or not np.issubdtype(arr.dtype, np.number):
        raise RefineInputError(f"{path}: expected a numeric C x H x W array, got {arr.dtype} "
                               f"of shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise RefineInputError(f"{path}: contains NaN or infinite values")
    labels = None
    if cam_classes is not None:
        names = list(cam_classes)
        source = path
    else:
        source = path.with_suffix(".json")
        if not source.is_file():
            raise RefineInputError(f"{path}: no class list; add {source.name} (the class of "
                                   "each channel) or pass the classes explicitly")
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise RefineInputError(f"{source}: cannot read the class list: {exc}") from exc
        if isinstance(data, dict):
            labels = data.get("labels")
            if labels is not None and not isinstance(labels, list):
                raise RefineInputError(f"{source}: \"labels\" must be a list of classes")
            data = data.get("classes")
        if not isinstance(data, list):
            raise RefineInputError(f"{source}: the class list must be a list or "
                                   "{\"classes\": [...]}")
        names = data
    if len(names) != arr.shape[0]:
        raise RefineInputError(f"{path}: {arr.shape[0]} channels but {len(names)} classes "
                               f"listed in {source.name}")
    ids = [_class_index(classes, n, source, f"channel {i}") for i, n in enumerate(names)]
    if len(set(ids)) != len(ids):
        raise RefineInputError(f"{source}: a class is listed twice: {names}")
    if labels is not None:
        present = {_class_index(classes, n, source, "labels") for n in labels}
        keep = [i for i, c in enumerate(ids) if c in present]
        arr, ids = arr[keep], [ids[i] for i in keep]
    return arr.astype(np.float32, copy=False), ids


def is_pseudo_label_output(folder: str | Path) -> bool:
    """True for the output folder of a pseudo-label run (it has ``scores/``)."""
    from napari_samlabel.pseudo.store import OBJECT_DIR, SCORES_DIR

    folder = Path(folder)
    return (folder / SCORES_DIR).is_dir() and (folder / OBJECT_DIR).is_dir()


def confidence_path(folder: str | Path, image_id: str) -> Path:
    """The file :func:`load_confidence` reads for ``image_id`` (to check inputs up front)."""
    from napari_samlabel.pseudo.store import ResultStore

    folder = Path(folder)
    if is_pseudo_label_output(folder):
        return ResultStore(folder).record_path(image_id)
    return folder / f"{image_id}.npy"


def load_confidence(folder: str | Path, image_id: str, shape: tuple[int, int]) -> np.ndarray:
    """The ``H x W`` per-pixel confidence of ``image_id`` (sources in the module notes).

    Raises
    ------
    RefineInputError
        Missing or unreadable files, another size than ``shape``, pickled content.
    """
    from napari_samlabel.io.voc import VocError
    from napari_samlabel.io.voc.labelpng import read_label_png
    from napari_samlabel.pseudo.refine.slic import object_confidence
    from napari_samlabel.pseudo.store import ResultStore

    folder = Path(folder)
    path = confidence_path(folder, image_id)
    if not path.is_file():
        raise RefineInputError(f"confidence file not found: {path}")
    if is_pseudo_label_output(folder):
        store = ResultStore(folder)
        rec = store.read_record(image_id)
        if rec is None or not isinstance(rec.get("objects"), list):
            raise RefineInputError(f"{path}: not a pseudo-label record (no 'objects' list)")
        try:
            inst = read_label_png(store.object_png(image_id))
        except VocError as exc:
            raise RefineInputError(str(exc)) from None
        scores = {int(o["unit"]): o.get("score") for o in rec["objects"]
                  if isinstance(o, dict) and "unit" in o}
        conf = object_confidence(inst, scores)
    else:
        try:
            conf = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise RefineInputError(f"{path}: cannot read as a plain .npy array: {exc}") from exc
        if conf.ndim != 2 or not np.issubdtype(conf.dtype, np.number):
            raise RefineInputError(f"{path}: expected an H x W numeric confidence map, got "
                                   f"{conf.dtype} of shape {conf.shape}")
        conf = conf.astype(np.float64)
    if conf.shape != tuple(shape):
        raise RefineInputError(f"{path}: confidence is {conf.shape[0]}x{conf.shape[1]} but "
                               f"the image is {shape[0]}x{shape[1]} (H x W)")
    return conf
