"""Image-level labels with class activation maps (CAMs) -> peak points.

Files
-----
``<id>.npy``: a ``C x H x W`` float array (``H x W`` for one class), one channel per class
present in the image, at image resolution. Which class each channel is comes from, in order:

1. the ``cam_classes`` argument (one list for every file), or
2. a sidecar ``<id>.json`` beside the array: a list ``["cat", "dog"]`` / ``[8, 12]`` or an
   object ``{"classes": [...]}``. The object may also hold the image-level labels,
   ``{"classes": [all 20 channels], "labels": ["cat"]}``: channels of classes not in
   ``labels`` are then ignored (CAM codes that compute every class's map write this).

Arrays are loaded with ``allow_pickle=False``: the pickled dictionaries some CAM codes save
(``{"keys": ..., "high_res": ...}``) must be re-saved as plain arrays plus a sidecar, since
unpickling a file from outside can run code.

Peak-point policy
-----------------
The seed paper (Jiang & Yang 2023) prompts SAM with the local maxima of each class's CAM
that lie above a confidence threshold, and adds the other classes' points as negatives.
:func:`cam_peak_points` implements that with :func:`skimage.feature.peak_local_max`; the
negatives come from :meth:`WeakLabels.negatives_for`. By default every local maximum above the
threshold is a point, as the rule states. Two extensions beyond the paper are options, off by
default:

- ``max_points=N`` keeps only the ``N`` highest peaks of a class: a noisy CAM can have dozens
  of weak maxima, each a positive point that can pull SAM onto the background;
- ``fallback_to_max=True`` gives a class whose CAM has no peak above the threshold its
  global maximum as one point: the image-level label says the class is present, and without
  a point it gets no mask at all. (With ``normalize=True``, the default, every channel with a
  positive value peaks at 1.0, so this matters only for unnormalised maps or a threshold of 1.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.prompts import ObjectPrompts, Point

from ._files import read_utf8
from ._types import WeakLabelError, WeakLabels, renumber, resolve_class

#: Defaults of the peak-point policy (the paper gives no numbers; these suit max-normalised CAMs).
CAM_THRESHOLD = 0.5
CAM_MIN_DISTANCE = 10
#: No cap and no fallback by default: the rule as the paper states it (see the module notes).
CAM_MAX_POINTS: int | None = None
CAM_FALLBACK_TO_MAX = False


def cam_peak_points(cams: np.ndarray, classes: Sequence[int], threshold: float = CAM_THRESHOLD,
                    min_distance: int = CAM_MIN_DISTANCE, max_points: int | None = CAM_MAX_POINTS,
                    normalize: bool = True, fallback_to_max: bool = CAM_FALLBACK_TO_MAX
                    ) -> list[ObjectPrompts]:
    """Positive peak points per class from class activation maps.

    Parameters
    ----------
    cams : numpy.ndarray
        ``(C, H, W)`` activation maps (or ``(H, W)`` for one class).
    classes : sequence of int
        The class index of each channel (length ``C``). A channel of class 0 (background)
        gives no object.
    threshold : float
        A peak must exceed this value (after normalisation) to count. Default 0.5.
    min_distance : int
        Minimum distance in pixels between two peaks of a class (``peak_local_max``'s
        ``min_distance``). Default 10.
    max_points : int or None
        Keep at most this many peaks per class, highest first (an extension, see the
        module notes). Default None: every peak above the threshold.
    normalize : bool
        Clip negative activations to 0 and divide each channel by its maximum, as CAM
        methods do before thresholding. Default True.
    fallback_to_max : bool
        When no peak clears the threshold, use the channel's global maximum (the class is
        known to be present from the image-level label; an extension, see the module
        notes). Default False: such a class gets no point.

    Returns
    -------
    list of ObjectPrompts
        One object per class with at least one point (ids 1..N in channel order), its points
        in ``(row, col)`` ordered by decreasing activation, which is the order iterative
        prompt policies feed them in.
    """
    from skimage.feature import peak_local_max

    cams = np.asarray(cams, dtype=np.float32)
    if cams.ndim == 2:
        cams = cams[None]
    if cams.ndim != 3:
        raise ValueError(f"CAMs must be C x H x W, got shape {cams.shape}")
    if len(classes) != cams.shape[0]:
        raise ValueError(f"{cams.shape[0]} CAM channels but {len(classes)} classes given")
    if min_distance < 1:
        raise ValueError(f"min_distance must be >= 1, got {min_distance}")
    if max_points is not None and max_points < 1:
        raise ValueError(f"max_points must be >= 1 or None, got {max_points}")
    objects = []
    for cam, cid in zip(cams, classes, strict=True):
        if int(cid) == 0:
            continue
        cam = np.nan_to_num(cam, nan=0.0, posinf=0.0, neginf=0.0)
        if normalize:
            cam = np.clip(cam, 0.0, None)
            top = float(cam.max())
            if top > 0:
                cam = cam / top
        peaks = peak_local_max(cam, min_distance=min_distance, threshold_abs=threshold,
                               exclude_border=False,
                               num_peaks=max_points if max_points is not None else np.inf)
        # peak_local_max with plateaus or num_peaks returns peaks highest first; make sure.
        if len(peaks):
            peaks = peaks[np.argsort(-cam[peaks[:, 0], peaks[:, 1]], kind="stable")]
        elif fallback_to_max and cam.max() > 0:
            peaks = np.array([np.unravel_index(int(np.argmax(cam)), cam.shape)])
        if len(peaks):
            points = tuple(Point((float(r), float(c))) for r, c in peaks)
            objects.append(ObjectPrompts(0, int(cid), points))
    return list(renumber(objects))


def _sidecar(path: Path) -> tuple[list | None, list | None]:
    """The channel classes and, optionally, the image-level labels from ``<id>.json``."""
    side = path.with_suffix(".json")
    if not side.exists():
        return None, None
    try:
        data = json.loads(read_utf8(side))
    except json.JSONDecodeError as exc:
        raise WeakLabelError(side, f"cannot read the CAM class list: {exc}") from exc
    labels = None
    if isinstance(data, dict):
        labels = data.get("labels")
        data = data.get("classes")
        if labels is not None and not isinstance(labels, list):
            raise WeakLabelError(side, "'labels' (the image-level labels) must be a list")
    if not isinstance(data, list):
        raise WeakLabelError(side, "the CAM class list must be a list or {\"classes\": [...]}")
    return data, labels


def read_cam_npy(path: str | Path, classes: ClassTable | None = None, *,
                 cam_classes: Sequence[int | str] | None = None,
                 threshold: float = CAM_THRESHOLD, min_distance: int = CAM_MIN_DISTANCE,
                 max_points: int | None = CAM_MAX_POINTS,
                 fallback_to_max: bool = CAM_FALLBACK_TO_MAX) -> dict[str, WeakLabels]:
    """Read ``<id>.npy`` CAMs and turn them into peak points (see :func:`cam_peak_points`).

    Raises
    ------
    WeakLabelError
        When the array cannot be read, has the wrong shape or type, or its classes are
        unknown or do not match the number of channels.
    """
    path = Path(path)
    classes = classes or ClassTable.voc()
    try:
        cams = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise WeakLabelError(path, "holds pickled objects; save the CAMs as a plain C x H x W "
                             "float array with a sidecar class list") from exc
    except OSError as exc:
        raise WeakLabelError(path, f"cannot read as a .npy array: {exc}") from exc
    if cams.ndim == 2:
        cams = cams[None]
    if cams.ndim != 3 or not np.issubdtype(cams.dtype, np.number):
        raise WeakLabelError(path, f"expected a numeric C x H x W array, got {cams.dtype} "
                             f"of shape {cams.shape}")
    side_names, labels = _sidecar(path)
    names = list(cam_classes) if cam_classes is not None else side_names
    if names is None:
        raise WeakLabelError(path, f"no class list: add {path.with_suffix('.json').name} "
                             "(the class of each channel) or pass cam_classes")
    if len(names) != cams.shape[0]:
        raise WeakLabelError(path, f"{cams.shape[0]} channels but {len(names)} classes listed")
    ids = [resolve_class(classes, n, path, f"channel {i}") for i, n in enumerate(names)]
    channels = list(range(len(ids)))
    if labels is not None:
        # Image-level labels: CAMs of absent classes give no points.
        present = {resolve_class(classes, n, path, "labels") for n in labels}
        keep = [i for i, cid in enumerate(ids) if cid in present]
        cams, ids, channels = cams[keep], [ids[i] for i in keep], keep
    try:
        objects = cam_peak_points(cams, ids, threshold=threshold, min_distance=min_distance,
                                  max_points=max_points, fallback_to_max=fallback_to_max)
    except ValueError as exc:
        raise WeakLabelError(path, str(exc)) from None
    image_id = path.stem
    channel = {cid: ch for ch, cid in reversed(list(zip(channels, ids, strict=True)))}
    origins = tuple(f"channel {channel[o.class_id]}" for o in objects)
    return {image_id: WeakLabels(image_id, "cams", tuple(objects), (), str(path),
                                 (int(cams.shape[1]), int(cams.shape[2])), origins)}
