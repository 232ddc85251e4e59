"""One record per refiner: its name, inputs, parameters and run function.

Everything that offers a refiner to a user is generated from its :class:`Refiner` record:
the options of ``samlabel refine``, the settings of the annotation layer
(:class:`napari_samlabel.annotate.refine.RefineSettings`) and the controls of the napari
Refine tab. A parameter added to a refiner's parameter dataclass therefore appears in all
three with the same default, bounds and help.

- A refiner's parameters are the fields of a frozen dataclass derived from
  :class:`RefinerParams`, each declared with :func:`param` (default, help, a short label,
  inclusive bounds and a step for the GUI); ``Literal`` fields are choices. The dataclass
  checks every value against its bounds when it is made.
- Refiners that vote or classify SAM's automatic masks derive their parameters from
  :class:`AutoMaskOptions`, the generator's user-facing parameters (the ``"masks"`` group),
  and turn them into :class:`~napari_samlabel.pseudo.refine.automask.AutoMaskParams`.
- A record lists the inputs the refiner needs and those it can use (names of
  :data:`INPUTS`); :func:`napari_samlabel.pseudo.refine.api.refine_labels` checks them and
  gets the automatic masks before it calls the record's ``run``.

Adding a refiner: a module with its function, its parameter dataclass and its ``REFINER``
record, and one entry in :data:`napari_samlabel.pseudo.refine.api.REFINERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Generic, Literal, TypeVar, get_args, get_origin, get_type_hints

import numpy as np

from napari_samlabel.pseudo.refine.automask import AutoMask, AutoMaskParams

#: The inputs a refiner can take besides the image.
INPUTS = {
    "coarse": "a coarse label map",
    "maps": "class maps (CAMs or network scores) with their class ids",
    "masks": "SAM's automatic masks",
    "confidence": "a per-pixel confidence map",
}
#: Group of the automatic-mask parameters (shared by the refiners that use SAM's masks).
MASKS_GROUP = "masks"


def param(default: Any, doc: str, *, label: str = "", low: float | None = None,
          high: float | None = None, step: float | None = None, group: str = "") -> Any:
    """Declare a refiner parameter (a dataclass field with its facts in the metadata).

    Parameters
    ----------
    default : int, float or str
        The default value (take it from the refiner module's constant).
    doc : str
        Help text (command-line help, GUI tooltip).
    label : str
        Short label of the GUI control (default: the name).
    low, high : float, optional
        Inclusive bounds of a number.
    step : float, optional
        Step of the GUI control.
    group : str
        ``"masks"`` for automatic-mask parameters; empty for the refiner's own.
    """
    return field(default=default, metadata={
        "doc": doc, "label": label, "low": low, "high": high, "step": step, "group": group})


@dataclass(frozen=True)
class ParamInfo:
    """What the command line and the GUI need to know about one parameter.

    Attributes
    ----------
    name : str
    kind : type
        ``int``, ``float`` or ``str``.
    default : int, float or str
    doc, label, group : str
        See :func:`param`.
    low, high, step : float or None
        See :func:`param`.
    choices : tuple of str or None
        The values of a ``Literal`` field.
    """

    name: str
    kind: type
    default: Any
    doc: str
    label: str
    low: float | None
    high: float | None
    step: float | None
    group: str
    choices: tuple[str, ...] | None

    @property
    def flag(self) -> str:
        """The command-line option, ``--segment-ratio``."""
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> str | None:
        """What is wrong with ``value`` (``"must be in [0, 1], got 2"``), or None."""
        if self.choices is not None:
            if value not in self.choices:
                return f"must be one of {', '.join(self.choices)}, got {value!r}"
            return None
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            return f"must be a number, got {value!r}"
        if self.kind is int and float(value) != int(value):
            return f"must be a whole number, got {value!r}"
        if not np.isfinite(value):
            return f"must be finite, got {value}"
        low = -np.inf if self.low is None else self.low
        high = np.inf if self.high is None else self.high
        if not low <= value <= high:
            return f"must be in [{_num(self.low)}, {_num(self.high)}], got {value}"
        return None

    def describe(self) -> str:
        """Help text with the default and the bounds."""
        if self.choices is not None:
            return f"{self.doc} (default {self.default})"
        return (f"{self.doc} (default {self.default}; {_num(self.low)} to "
                f"{_num(self.high)})")


def _num(value: float | None) -> str:
    return "any" if value is None else f"{value:g}"


_PARAMETERS: dict[type, tuple[ParamInfo, ...]] = {}


def parameters(cls: type) -> tuple[ParamInfo, ...]:
    """The parameters of a parameter dataclass, in field order."""
    if cls not in _PARAMETERS:
        _PARAMETERS[cls] = _parameters(cls)
    return _PARAMETERS[cls]


def _parameters(cls: type) -> tuple[ParamInfo, ...]:
    hints = get_type_hints(cls)
    out = []
    for f in fields(cls):
        hint = hints[f.name]
        choices = None
        if get_origin(hint) is Literal:
            choices = tuple(str(c) for c in get_args(hint))
            kind: type = str
        elif hint in (int, float, str):
            kind = hint
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: a refiner parameter is an int, float, "
                            f"str or Literal, not {hint}")
        if "doc" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name}: declare refiner parameters with param()")
        m = f.metadata
        out.append(ParamInfo(f.name, kind, f.default, m["doc"], m["label"] or f.name,
                             m["low"], m["high"], m["step"], m["group"], choices))
    return tuple(out)


@dataclass(frozen=True)
class RefinerParams:
    """Base of the refiners' parameter dataclasses: values are checked against their bounds.

    Raises
    ------
    ValueError
        A value outside its bounds or choices (the message names the parameter).
    """

    def __post_init__(self) -> None:
        for info in parameters(type(self)):
            problem = info.check(getattr(self, info.name))
            if problem:
                raise ValueError(f"{info.name} {problem}")

    def values(self) -> dict[str, Any]:
        """Every parameter by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def automask_params(self) -> AutoMaskParams:
        """Parameters of SAM's automatic masks (the defaults for refiners not using them)."""
        return AutoMaskParams()


_AMP = AutoMaskParams  # its field defaults are SAM's, the automatic masks' defaults


@dataclass(frozen=True)
class AutoMaskOptions(RefinerParams):
    """The automatic-mask parameters a user can set (the ``"masks"`` group).

    ``points_per_batch = 0`` picks the batch by device
    (:func:`~napari_samlabel.pseudo.refine.automask.points_per_batch_for`).
    """

    points_per_side: int = param(
        _AMP.points_per_side, "points per side of the automatic-mask point grid",
        label="points per side", low=1, high=256, step=1, group=MASKS_GROUP)
    points_per_batch: int = param(
        0, "points decoded together, speed only (0: 4 on CPU, 64 on GPU)",
        label="points per batch (0 auto)", low=0, high=1024, step=1, group=MASKS_GROUP)
    pred_iou_thresh: float = param(
        _AMP.pred_iou_thresh, "keep masks whose predicted IoU is above this",
        label="predicted IoU >", low=0.0, high=1.0, step=0.01, group=MASKS_GROUP)
    stability_score_thresh: float = param(
        _AMP.stability_score_thresh, "keep masks whose stability score is at least this",
        label="stability >=", low=0.0, high=1.0, step=0.01, group=MASKS_GROUP)
    box_nms_thresh: float = param(
        _AMP.box_nms_thresh, "box IoU above which NMS drops the lower-scored duplicate",
        label="box NMS IoU", low=0.0, high=1.0, step=0.05, group=MASKS_GROUP)

    def automask_params(self) -> AutoMaskParams:
        """These values as generator parameters (SAM's defaults for the rest)."""
        return AutoMaskParams(points_per_side=self.points_per_side,
                              points_per_batch=self.points_per_batch or None,
                              pred_iou_thresh=self.pred_iou_thresh,
                              stability_score_thresh=self.stability_score_thresh,
                              box_nms_thresh=self.box_nms_thresh)


@dataclass(frozen=True, eq=False)
class RefineInputs:
    """One image and the inputs a refiner takes (names as in :data:`INPUTS`).

    Attributes
    ----------
    image : numpy.ndarray
        ``H x W x 3`` ``uint8`` RGB.
    coarse : numpy.ndarray or None
        ``H x W`` ``uint8`` coarse label map (255 void).
    maps, class_ids : numpy.ndarray and sequence of int, or None
        ``C x H x W`` class maps and the class of each.
    masks : sequence of AutoMask or None
    confidence : numpy.ndarray or None
        ``H x W`` per-pixel confidence.
    """

    image: np.ndarray
    coarse: np.ndarray | None = None
    maps: np.ndarray | None = None
    class_ids: Sequence[int] | None = None
    masks: Sequence[AutoMask] | None = None
    confidence: np.ndarray | None = None


P = TypeVar("P", bound=RefinerParams)


@dataclass(frozen=True)
class Refiner(Generic[P]):
    """Everything about one refiner.

    Attributes
    ----------
    name : str
        Method name (``--method``), ``"sepl"``.
    title : str
        One sentence for help texts.
    needs : tuple of str
        Inputs it cannot run without (:data:`INPUTS`).
    accepts : tuple of str
        Inputs it uses when given.
    params : type
        Its frozen parameter dataclass (a :class:`RefinerParams`).
    run : callable
        ``run(inputs, params) -> H x W uint8`` refined label map (255 void); called with
        every input of ``needs`` present.
    """

    name: str
    title: str
    needs: tuple[str, ...]
    accepts: tuple[str, ...]
    params: type[P]
    run: Callable[[RefineInputs, P], np.ndarray]

    def __post_init__(self) -> None:
        unknown = set(self.needs + self.accepts) - set(INPUTS)
        if unknown:
            raise ValueError(f"refiner {self.name}: unknown inputs {sorted(unknown)}")
        parameters(self.params)  # fails early on a field declared without param()

    @property
    def uses_masks(self) -> bool:
        """Whether it needs SAM's automatic masks."""
        return "masks" in self.needs

    def parameters(self) -> tuple[ParamInfo, ...]:
        """Its parameters (:func:`parameters` of :attr:`params`)."""
        return parameters(self.params)
