"""The refiners' registry and one entry point for them (command line, napari plugin).

:data:`REFINERS` lists one :class:`~napari_samlabel.pseudo.refine.record.Refiner` record per
method; :func:`refine_labels` checks a record's inputs, gets SAM's automatic masks when it
needs them, and runs it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.pseudo.refine import sams, sepl, slic
from napari_samlabel.pseudo.refine.automask import (
    AutoMask,
    AutoMaskCache,
    AutoMaskParams,
    automatic_masks,
)
from napari_samlabel.pseudo.refine.record import (
    ParamInfo,
    RefineInputs,
    Refiner,
    RefinerParams,
)

#: Every refiner, by method name.
REFINERS: dict[str, Refiner[Any]] = {r.name: r for r in (sepl.REFINER, sams.REFINER,
                                                         slic.REFINER)}
METHODS = tuple(REFINERS)


def get_refiner(method: str) -> Refiner[Any]:
    """The record of ``method``.

    Raises
    ------
    ValueError
        An unknown method (the message lists the known ones).
    """
    try:
        return REFINERS[method]
    except KeyError:
        raise ValueError(f"unknown refine method {method!r}; choose one of "
                         f"{', '.join(METHODS)}") from None


def all_parameters() -> dict[str, ParamInfo]:
    """Every refiner's parameters by name, each once (for the command line and the GUI).

    Raises
    ------
    ValueError
        Two refiners declare a parameter of the same name differently.
    """
    out: dict[str, ParamInfo] = {}
    for refiner in REFINERS.values():
        for info in refiner.parameters():
            if out.setdefault(info.name, info) != info:
                raise ValueError(f"refiner {refiner.name}: parameter {info.name} differs from "
                                 "the one of the same name of another refiner")
    return out


def default_params(method: str) -> AutoMaskParams:
    """Automatic-mask parameters a method uses by default (SAMS prefers whole masks)."""
    return get_refiner(method).params().automask_params()


def refine_labels(method: str, image: np.ndarray, *, coarse: np.ndarray | None = None,
                  maps: np.ndarray | None = None, class_ids: Sequence[int] | None = None,
                  masks: Sequence[AutoMask] | None = None,
                  confidence: np.ndarray | None = None, sam: Any = None,
                  params: AutoMaskParams | None = None,
                  cache: AutoMaskCache | str | os.PathLike[str] | None = None,
                  model_id: str | None = None, progress: ProgressCallback = no_progress,
                  settings: RefinerParams | None = None, **options: Any) -> np.ndarray:
    """Refine one image's labels with ``method``.

    Parameters
    ----------
    method : {"sepl", "sams", "slic"}
        The refiner (a key of :data:`REFINERS`).
    image : numpy.ndarray
        ``H x W x 3`` ``uint8`` RGB image.
    coarse : numpy.ndarray, optional
        ``H x W`` ``uint8`` coarse label map (``sepl``, ``slic``).
    maps, class_ids : numpy.ndarray and sequence of int, optional
        ``C x H x W`` CAMs or network scores and their classes (``sams``; optional
        confidence for ``slic``).
    masks : sequence of AutoMask, optional
        Automatic masks already computed; otherwise they come from ``sam`` (and ``cache``).
    confidence : numpy.ndarray, optional
        ``H x W`` per-pixel confidence (``slic``, instead of ``maps``).
    sam : Sam or SamEngine, optional
        Model or engine for the automatic masks (``sepl``, ``sams``).
    params : AutoMaskParams, optional
        Automatic-mask parameters (default: those of ``settings``).
    cache, model_id, progress
        See :func:`~napari_samlabel.pseudo.refine.automask.automatic_masks`.
    settings : RefinerParams, optional
        The method's parameters (an instance of its record's ``params``).
    **options
        Instead of ``settings``: the method's parameters by name (the fields of its
        ``params``; the defaults for the others).

    Returns
    -------
    numpy.ndarray
        ``H x W`` ``uint8`` refined label map (0 background, 255 void).

    Raises
    ------
    ValueError
        Unknown method, a missing input, inputs of different sizes, or a parameter out of
        its bounds.
    TypeError
        An option or input the method does not take, or settings of another method.
    """
    refiner = get_refiner(method)
    if settings is None:
        settings = refiner.params(**options)
    elif options or not isinstance(settings, refiner.params):
        raise TypeError(f"{method} takes its settings as one {refiner.params.__name__}")
    if "coarse" in refiner.needs and coarse is None:
        raise ValueError(f"{method} needs a coarse label map")
    if "maps" in refiner.needs and (maps is None or class_ids is None):
        raise ValueError(f"{method} needs class maps (CAMs or scores) and their class ids")
    if maps is not None and class_ids is None:
        raise ValueError("class maps need their class ids")
    if refiner.uses_masks and masks is None:
        if sam is None and cache is None:
            raise ValueError(f"{method} needs automatic masks or a SAM model to make them")
        masks = automatic_masks(sam, image, params or settings.automask_params(), cache=cache,
                                model_id=model_id, progress=progress)
    if confidence is not None and "confidence" not in refiner.accepts:
        raise TypeError(f"{method} takes no confidence map")
    return refiner.run(RefineInputs(image, coarse, maps, class_ids, masks, confidence), settings)
