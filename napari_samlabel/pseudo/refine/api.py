"""One entry point for the three refiners, for the command line and the napari plugin."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.pseudo.refine.automask import (
    SAMS_PARAMS,
    AutoMask,
    AutoMaskCache,
    AutoMaskParams,
    automatic_masks,
)
from napari_samlabel.pseudo.refine.sams import sams_seeds
from napari_samlabel.pseudo.refine.sepl import sepl_refine
from napari_samlabel.pseudo.refine.slic import slic_refine

METHODS = ("sepl", "sams", "slic")
#: Which inputs each method needs (besides the image).
NEEDS = {"sepl": ("coarse", "masks"), "sams": ("maps", "masks"), "slic": ("coarse",)}


def default_params(method: str) -> AutoMaskParams:
    """Automatic-mask parameters a method uses by default (SAMS prefers whole masks)."""
    return SAMS_PARAMS if method == "sams" else AutoMaskParams()


def refine_labels(method: str, image: np.ndarray, *, coarse: np.ndarray | None = None,
                  maps: np.ndarray | None = None, class_ids: Sequence[int] | None = None,
                  masks: Sequence[AutoMask] | None = None, sam: Any = None,
                  params: AutoMaskParams | None = None,
                  cache: AutoMaskCache | str | os.PathLike[str] | None = None,
                  model_id: str | None = None, progress: ProgressCallback = no_progress,
                  **options: Any) -> np.ndarray:
    """Refine one image's labels with ``method``.

    Parameters
    ----------
    method : {"sepl", "sams", "slic"}
        The refiner.
    image : numpy.ndarray
        ``H x W x 3`` ``uint8`` RGB image.
    coarse : numpy.ndarray, optional
        ``H x W`` ``uint8`` coarse label map (``sepl``, ``slic``).
    maps, class_ids : numpy.ndarray and sequence of int, optional
        ``C x H x W`` CAMs or network scores and their classes (``sams``; optional
        confidence for ``slic``).
    masks : sequence of AutoMask, optional
        Automatic masks already computed; otherwise they come from ``sam`` (and ``cache``).
    sam : Sam or SamEngine, optional
        Model or engine for the automatic masks (``sepl``, ``sams``).
    params : AutoMaskParams, optional
        Automatic-mask parameters (default: :func:`default_params`).
    cache, model_id, progress
        See :func:`~napari_samlabel.pseudo.refine.automask.automatic_masks`.
    **options
        The method's own parameters: ``segment_ratio``, ``class_ratio`` (sepl);
        ``occupation_ratio``, ``occupation``, ``alpha`` (sams); ``n_segments``,
        ``compactness``, ``sigma``, ``rule``, ``ignore_ratio`` (slic).

    Returns
    -------
    numpy.ndarray
        ``H x W`` ``uint8`` refined label map (0 background, 255 void).

    Raises
    ------
    ValueError
        Unknown method, a missing input, or inputs of different sizes.
    TypeError
        An option the method does not have.
    """
    if method not in METHODS:
        raise ValueError(f"unknown refine method {method!r}; choose one of {', '.join(METHODS)}")
    if "coarse" in NEEDS[method] and coarse is None:
        raise ValueError(f"{method} needs a coarse label map")
    if "maps" in NEEDS[method] and (maps is None or class_ids is None):
        raise ValueError(f"{method} needs class maps (CAMs or scores) and their class ids")
    if "masks" in NEEDS[method] and masks is None:
        if sam is None and cache is None:
            raise ValueError(f"{method} needs automatic masks or a SAM model to make them")
        masks = automatic_masks(sam, image, params or default_params(method), cache=cache,
                                model_id=model_id, progress=progress)
    if method == "sepl":
        return sepl_refine(coarse, masks, **options)
    if method == "sams":
        return sams_seeds(maps, class_ids, masks, **options).seeds
    if maps is not None and class_ids is None:
        raise ValueError("class maps need their class ids")
    return slic_refine(image, coarse, maps=maps, class_ids=class_ids, **options)
