"""Reading the refiners' per-image inputs: class maps (CAMs or network scores).

File convention (the same as the CAM weak labels of :mod:`napari_samlabel.io.weak.cams`):
``<id>.npy`` holds a ``C x H x W`` float array (``H x W`` for one class) at image resolution,
one channel per foreground class present; the class of each channel comes from the
``cam_classes`` argument or from a sidecar ``<id>.json`` beside it (a list of names or
indices, or ``{"classes": [...]}``). The object may also list the image-level labels,
``{"classes": [every channel], "labels": ["cat"]}``: only the channels of the labelled
classes are then returned (the refiners work on the classes present in the image). Arrays
are read with ``allow_pickle=False``.
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
