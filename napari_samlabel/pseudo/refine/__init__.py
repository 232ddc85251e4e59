"""Refining coarse labels: SAM automatic masks, SEPL voting, SAMS seeds, SLIC snapping.

- :mod:`.automask`: SAM's automatic masks with their multimask level, cached on disk;
- :mod:`.sepl`: SEPL voting of automatic masks into the classes of a coarse map;
- :mod:`.sams`: SAMS quasi-superpixels classified by CAMs (or network scores) into seeds;
- :mod:`.slic`: SLIC superpixel snapping and the adaptive-ratio confidence threshold;
- :mod:`.inputs`: reading per-image class maps;
- :mod:`.record`: one :class:`Refiner` record per method (inputs, parameter dataclass with
  defaults, bounds and help, run function), from which the CLI and the GUI are generated;
- :mod:`.api`: the registry :data:`REFINERS` and :func:`refine_labels`, one entry point for
  the three methods (CLI, napari plugin).

torch and segment_anything are imported only when automatic masks are generated.
"""

from napari_samlabel.pseudo.refine.api import (
    METHODS,
    REFINERS,
    all_parameters,
    default_params,
    get_refiner,
    refine_labels,
)
from napari_samlabel.pseudo.refine.automask import (
    LEVEL_NAMES,
    LEVEL_PART,
    LEVEL_SUBPART,
    LEVEL_WHOLE,
    SAMS_PARAMS,
    AutoMask,
    AutoMaskCache,
    AutoMaskParams,
    automatic_masks,
    generate_automasks,
    stack_masks,
)
from napari_samlabel.pseudo.refine.inputs import (
    RefineInputError,
    load_class_maps,
    load_confidence,
)
from napari_samlabel.pseudo.refine.record import (
    AutoMaskOptions,
    ParamInfo,
    RefineInputs,
    Refiner,
    RefinerParams,
    param,
    parameters,
)
from napari_samlabel.pseudo.refine.sams import (
    SamsParams,
    SamsResult,
    classify_quasi_superpixels,
    paint_seeds,
    sams_seeds,
    select_quasi_superpixels,
)
from napari_samlabel.pseudo.refine.sepl import SeplParams, sepl_refine, sepl_votes
from napari_samlabel.pseudo.refine.slic import (
    SlicParams,
    adaptive_threshold,
    label_confidence,
    mark_low_confidence,
    object_confidence,
    slic_refine,
    snap_to_superpixels,
    superpixels,
)

__all__ = [
    "LEVEL_NAMES",
    "LEVEL_PART",
    "LEVEL_SUBPART",
    "LEVEL_WHOLE",
    "METHODS",
    "REFINERS",
    "SAMS_PARAMS",
    "AutoMask",
    "AutoMaskCache",
    "AutoMaskOptions",
    "AutoMaskParams",
    "ParamInfo",
    "RefineInputError",
    "RefineInputs",
    "Refiner",
    "RefinerParams",
    "SamsParams",
    "SamsResult",
    "SeplParams",
    "SlicParams",
    "adaptive_threshold",
    "all_parameters",
    "automatic_masks",
    "classify_quasi_superpixels",
    "default_params",
    "generate_automasks",
    "get_refiner",
    "label_confidence",
    "load_class_maps",
    "load_confidence",
    "mark_low_confidence",
    "object_confidence",
    "paint_seeds",
    "param",
    "parameters",
    "refine_labels",
    "sams_seeds",
    "select_quasi_superpixels",
    "sepl_refine",
    "sepl_votes",
    "slic_refine",
    "snap_to_superpixels",
    "stack_masks",
    "superpixels",
]
