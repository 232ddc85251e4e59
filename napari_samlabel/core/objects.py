"""Accepted objects: :class:`AnnotatedObject` and the part -> whole links between them.

An accepted object is immutable and owns read-only arrays (its mask and logits), so
documents and undo steps share them without copying.

Parts
-----
An accepted object whose class is a part class (``dog/head``, ``ClassTable.parent`` is not
None) is a *part*, every other object a *whole*. A part belongs to a whole of its parent
class, its ``parent_id``: by default the whole of that class sharing the most pixels with the
part (:func:`napari_samlabel.core.compose.containing_object`; None while there is none), or a
whole set explicitly (``parent_fixed``), which holds as long as that whole exists with the
parent class. :func:`resolve_parents` keeps these links.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

from napari_samlabel.core.classes import VOID, ClassTable
from napari_samlabel.core.compose import containing_object
from napari_samlabel.core.prompts import ObjectPrompts, Prompt

MAX_OBJECTS = VOID - 1  # instance ids 1..254 fit an 8-bit instance map; 255 is void


def read_only(array: np.ndarray | None, dtype: Any = None) -> np.ndarray | None:
    """Return a read-only view (no copy when the dtype matches).

    The document takes ownership of arrays handed to it: callers must not write to them
    afterwards (engines return fresh arrays, so nothing is copied per click).
    """
    if array is None:
        return None
    out = np.asarray(array, dtype=dtype).view()
    out.setflags(write=False)
    return out

@dataclass(frozen=True, eq=False)
class AnnotatedObject:
    """An accepted object.

    Attributes
    ----------
    object_id : int
        Instance index in ``1..254``, unique within the image.
    class_id : int
        Class index (see :class:`napari_samlabel.core.classes.ClassTable`).
    mask : numpy.ndarray
        ``H x W`` read-only ``bool`` mask.
    prompts : tuple
        The prompts that produced the mask, in order (provenance; reopening uses them).
    score : float or None
        SAM's predicted IoU of the mask (the overlap rule uses it).
    model_id : str or None
        Identity of the model that produced the mask.
    signals : Mapping[str, float]
        Extra per-object scores (stability, curation signals ...).
    logits : numpy.ndarray or None
        Low-res logits of the last prediction; kept in memory only, so a reopened object
        continues refining where it stopped within a session.
    created, modified : float
        POSIX timestamps.
    attributes : Mapping[str, str | bool | int | float]
        Facts about the object rather than its mask (VOC's ``pose``, ``truncated``,
        ``difficult``); they survive reopening and re-accepting the object.
    parent_id : int or None
        For a part (its class is a part class): the id of the whole it belongs to, None
        while it has none. Always None for a whole. A document with a class table keeps it
        resolved (see the module docstring).
    parent_fixed : bool
        True when ``parent_id`` was set explicitly
        (:meth:`~napari_samlabel.core.document.AnnotationDocument.set_parent`) rather than
        found from the pixels.
    """

    object_id: int
    class_id: int
    mask: np.ndarray
    prompts: tuple[Prompt, ...] = ()
    score: float | None = None
    model_id: str | None = None
    signals: Mapping[str, float] = field(default_factory=dict)
    logits: np.ndarray | None = None
    created: float = field(default_factory=time.time)
    modified: float = field(default_factory=time.time)
    attributes: Mapping[str, Any] = field(default_factory=dict)
    parent_id: int | None = None
    parent_fixed: bool = False

    def __post_init__(self) -> None:
        if not 0 < int(self.object_id) <= MAX_OBJECTS:
            raise ValueError(f"object id {self.object_id} is outside 1..{MAX_OBJECTS}")
        object.__setattr__(self, "object_id", int(self.object_id))
        object.__setattr__(self, "class_id", int(self.class_id))
        object.__setattr__(self, "mask", read_only(self.mask, bool))
        object.__setattr__(self, "logits", read_only(self.logits, np.float32))
        object.__setattr__(self, "prompts", tuple(self.prompts))
        object.__setattr__(self, "signals", MappingProxyType(dict(self.signals)))
        object.__setattr__(self, "attributes", MappingProxyType(dict(self.attributes)))
        if self.parent_id is not None:
            pid = int(self.parent_id)
            if not 0 < pid <= MAX_OBJECTS or pid == self.object_id:
                raise ValueError(f"object {self.object_id}: parent id {pid} is not another "
                                 f"object's id (1..{MAX_OBJECTS})")
            object.__setattr__(self, "parent_id", pid)
        elif self.parent_fixed:
            raise ValueError(f"object {self.object_id}: a fixed parent needs a parent id")
        object.__setattr__(self, "parent_fixed", bool(self.parent_fixed))

    @property
    def object_prompts(self) -> ObjectPrompts:
        """The prompts as an :class:`ObjectPrompts` record."""
        return ObjectPrompts(self.object_id, self.class_id, self.prompts)

    @property
    def area(self) -> int:
        """Mask area in pixels."""
        return int(np.count_nonzero(self.mask))

def resolve_parents(objects: tuple[AnnotatedObject, ...], classes: ClassTable | None,
                    reopened: AnnotatedObject | None = None) -> tuple[AnnotatedObject, ...]:
    """Give every part its whole, every whole no parent; return the (possibly new) objects.

    A part whose ``parent_fixed`` link names a whole of its parent class keeps it; any
    other part gets the whole of its parent class sharing the most of its pixels
    (:func:`napari_samlabel.core.compose.containing_object`), or None. ``reopened`` (the
    object being refined) counts as present: its parts stay with it meanwhile. Objects
    whose link does not change are returned as they are, and the tuple itself when
    nothing changes, so composed maps cached for it stay valid. Without ``classes``
    nothing changes.
    """
    if classes is None:
        return objects
    pool = objects if reopened is None else objects + (reopened,)
    out = []
    changed = False
    for obj in objects:
        parent_class = classes.parent(obj.class_id) if 0 <= obj.class_id < len(classes) \
            else None
        if parent_class is None:
            link: tuple[int | None, bool] = (None, False)
        else:
            wholes = [(o.object_id, o.mask) for o in pool
                      if o.class_id == parent_class and o.object_id != obj.object_id]
            if obj.parent_fixed and any(i == obj.parent_id for i, _ in wholes):
                link = (obj.parent_id, True)
            else:
                link = (containing_object(obj.mask, wholes), False)
        if link != (obj.parent_id, obj.parent_fixed):
            obj = replace(obj, parent_id=link[0], parent_fixed=link[1])
            changed = True
        out.append(obj)
    return tuple(out) if changed else objects
