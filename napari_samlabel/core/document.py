"""The per-image annotation document: accepted objects, the object being prompted, undo/redo.

A document holds one immutable :class:`DocumentState` at a time; every user action builds a
new state and pushes the old one on the undo stack. States share their (read-only) mask and
logits arrays, so an undo step costs a few references, never a copy of a label map.

What a state contains:

- ``objects``: the accepted objects, in accept order
  (:class:`~napari_samlabel.core.objects.AnnotatedObject`).
- ``current``: the object being prompted (:class:`~napari_samlabel.core.current.
  CurrentObject`): its class, its prompts in
  the order given, and SAM's latest answer for exactly those prompts (mask, score, low-res
  logits). The logits belong to this object only: accepting or discarding it starts the next
  object without logits, and undo restores the logits that belonged to the restored state.
- ``status``: :class:`ImageStatus` of the image.

Predictions arrive asynchronously (the GUI decodes off its thread). :meth:`set_prediction`
takes the prompts the prediction was computed for and is ignored when they are no longer the
current prompts ("latest request wins"); it updates the current state in place of pushing an
undo step, because a prediction is a consequence of a prompt edit, not an edit of its own.

Listeners subscribe to :attr:`AnnotationDocument.events` (psygnal, no Qt):
``objects_changed()``, ``current_changed()``, ``status_changed(str)``.

Parts
-----
A document given its class table (``classes=``) knows the object -> part hierarchy: an
accepted object whose class is a part class (``dog/head``, ``ClassTable.parent`` is not
None) is a *part*, every other object a *whole*. A part belongs to a whole of its parent
class, its ``parent_id``: by default the whole of that class sharing the most pixels with the
part (:func:`napari_samlabel.core.compose.containing_object`; None while there is none),
re-resolved on every change of the objects (a parent deleted, reopened, re-accepted with a
new mask, its class changed); or set explicitly with :meth:`AnnotationDocument.set_parent`
(an undoable step), which holds as long as that whole exists with the parent class (see
:func:`napari_samlabel.core.objects.resolve_parents`). Parts
never compete with wholes for pixels: :meth:`AnnotationDocument.label_maps` holds the wholes
only, :meth:`AnnotationDocument.part_maps` the parts only.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np
from psygnal import Signal, SignalGroup

from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.compose import LevelMaps, MaskEntry, compose_levels
from napari_samlabel.core.current import CurrentObject
from napari_samlabel.core.objects import (
    MAX_OBJECTS,
    AnnotatedObject,
    read_only,
    resolve_parents,
)
from napari_samlabel.core.prompts import Prompt


class ImageStatus(StrEnum):
    """Where an image stands in the annotation workflow."""

    NEW = "new"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    FLAGGED = "flagged"


@dataclass(frozen=True, eq=False)
class DocumentState:
    """One immutable snapshot of a document."""

    objects: tuple[AnnotatedObject, ...]
    current: CurrentObject
    status: ImageStatus = ImageStatus.NEW


class DocumentEvents(SignalGroup):
    """Signals a document emits after its state changed."""

    objects_changed = Signal()
    current_changed = Signal()
    status_changed = Signal(str)


class AnnotationDocument:
    """The annotation of one image, with undo/redo.

    Parameters
    ----------
    image_id : str
        Identifier of the image (file stem).
    shape : tuple of int
        Image ``(height, width)``.
    objects : iterable of AnnotatedObject, optional
        Accepted objects to start from (e.g. loaded from a project).
    status : ImageStatus
        Initial status.
    class_id : int
        Class of the first object to prompt.
    max_undo : int
        Number of undo steps kept.
    classes : ClassTable, optional
        The class table, which says which classes are parts. Without it every object is a
        whole (no part maps, no parent resolution).
    """

    def __init__(
        self,
        image_id: str,
        shape: tuple[int, int],
        objects: Iterable[AnnotatedObject] = (),
        status: ImageStatus | str = ImageStatus.NEW,
        class_id: int = 1,
        max_undo: int = 200,
        classes: ClassTable | None = None,
    ) -> None:
        self.image_id = image_id
        self.classes = classes
        self.shape = (int(shape[0]), int(shape[1]))
        objs = tuple(objects)
        ids = [o.object_id for o in objs]
        if len(set(ids)) != len(ids):
            raise ValueError(f"image {image_id}: duplicate object ids {sorted(ids)}")
        for o in objs:
            self._check_mask(o.mask)
        objs = resolve_parents(objs, classes)
        self._state = DocumentState(objs, CurrentObject(class_id), ImageStatus(status))
        self._undo: list[DocumentState] = []
        self._redo: list[DocumentState] = []
        self._max_undo = max_undo
        self._maps_cache: tuple[tuple[AnnotatedObject, ...], LevelMaps] | None = None
        self.events = DocumentEvents()

    # -- reading ---------------------------------------------------------------------------
    @property
    def state(self) -> DocumentState:
        """The current snapshot."""
        return self._state

    @property
    def objects(self) -> tuple[AnnotatedObject, ...]:
        """Accepted objects in accept order."""
        return self._state.objects

    @property
    def current(self) -> CurrentObject:
        """The object being prompted."""
        return self._state.current

    @property
    def status(self) -> ImageStatus:
        """The image's status."""
        return self._state.status

    def get(self, object_id: int) -> AnnotatedObject:
        """Return the accepted object with ``object_id`` (``KeyError`` if absent)."""
        for o in self._state.objects:
            if o.object_id == object_id:
                return o
        raise KeyError(f"image {self.image_id} has no object {object_id}")

    def label_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(semantic, instance)`` ``uint8`` maps of the accepted whole objects.

        Parts are left out (see :meth:`part_maps`): these are the object-level maps the
        accepted layers, the VOC export and the evaluation use. Composed with the overlap
        rule of :mod:`napari_samlabel.core.compose`; cached until the objects change. The
        arrays are read-only.
        """
        maps = self._level_maps()
        return maps.semantic, maps.instance

    def part_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(part_semantic, part_instance)`` ``uint8`` maps of the accepted parts.

        ``part_semantic`` holds the part class index (same class table as
        :meth:`label_maps`), ``part_instance`` the part's object id; 0 where no part is.
        Parts are composed among themselves with the overlap rule, never against wholes.
        All zero without a class table or without parts. Cached and read-only like
        :meth:`label_maps`.
        """
        maps = self._level_maps()
        return maps.part_semantic, maps.part_instance

    def _level_maps(self) -> LevelMaps:
        objs = self._state.objects
        if self._maps_cache is None or self._maps_cache[0] is not objs:
            maps = compose_levels(self.shape, [
                MaskEntry(o.class_id, o.object_id, o.mask, o.score) for o in objs],
                self.classes)
            for arr in (maps.semantic, maps.instance, maps.part_semantic, maps.part_instance):
                arr.setflags(write=False)
            self._maps_cache = (objs, maps)
        return self._maps_cache[1]

    def is_part(self, object_id: int) -> bool:
        """True when accepted object ``object_id`` is a part (its class is a part class)."""
        obj = self.get(object_id)
        return self.classes is not None and self.classes.is_part(obj.class_id)

    @property
    def wholes(self) -> tuple[AnnotatedObject, ...]:
        """The accepted objects that are not parts, in accept order."""
        if self.classes is None:
            return self._state.objects
        return tuple(o for o in self._state.objects if not self.classes.is_part(o.class_id))

    @property
    def parts(self) -> tuple[AnnotatedObject, ...]:
        """The accepted parts, in accept order (empty without a class table)."""
        if self.classes is None:
            return ()
        return tuple(o for o in self._state.objects if self.classes.is_part(o.class_id))

    def parent_of(self, object_id: int) -> int | None:
        """The id of the whole the part ``object_id`` belongs to (None: none, or a whole).

        While that whole is reopened for refinement, this names it although it is not
        among :attr:`objects` (it counts as accepted until discarded or accepted again).
        """
        return self.get(object_id).parent_id

    def parts_of(self, object_id: int) -> tuple[int, ...]:
        """Ids of the accepted parts that belong to the whole ``object_id``, in accept order."""
        return tuple(o.object_id for o in self._state.objects if o.parent_id == object_id)

    def part_at(self, row: int, col: int) -> int | None:
        """Return the id of the accepted part visible at pixel ``(row, col)``, if any."""
        if not (0 <= row < self.shape[0] and 0 <= col < self.shape[1]):
            return None
        value = int(self.part_maps()[1][int(row), int(col)])
        return value or None

    def object_at(self, row: int, col: int) -> int | None:
        """Return the id of the accepted whole visible at pixel ``(row, col)``, if any.

        Parts are not in the instance map; :meth:`part_at` finds them.
        """
        if not (0 <= row < self.shape[0] and 0 <= col < self.shape[1]):
            return None
        value = int(self.label_maps()[1][int(row), int(col)])
        return value or None

    @property
    def can_undo(self) -> bool:
        """True when there is a step to undo."""
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        """True when there is a step to redo."""
        return bool(self._redo)

    def next_object_id(self) -> int:
        """The id the next accepted object gets: one above the highest, else the lowest free."""
        used = {o.object_id for o in self._state.objects}
        if self._state.current.object_id is not None:
            used.add(self._state.current.object_id)
        top = max(used, default=0) + 1
        if top <= MAX_OBJECTS:
            return top
        free = sorted(set(range(1, MAX_OBJECTS + 1)) - used)
        if not free:
            raise ValueError(f"image {self.image_id} already has {MAX_OBJECTS} objects, "
                             "the most an 8-bit instance map can hold")
        return free[0]

    # -- editing the current object --------------------------------------------------------
    def set_prompts(self, prompts: Iterable[Prompt]) -> None:
        """Replace the current object's prompts (one undo step); its prediction is kept.

        The previous mask and logits stay until a prediction for the new prompts arrives,
        because SAM's next call takes those logits as ``mask_input``. Removing every prompt
        clears them, so an emptied object starts afresh.
        """
        prompts = tuple(prompts)
        cur = self._state.current
        if prompts == cur.prompts:
            return
        if prompts:
            new = replace(cur, prompts=prompts)
        else:
            new = replace(cur, prompts=(), mask=None, score=None, logits=None,
                          mask_prompts=None, ious=None)
        self._push(replace(self._state, current=new), current=True)

    def add_prompt(self, prompt: Prompt) -> None:
        """Append one prompt to the current object."""
        self.set_prompts(self._state.current.prompts + (prompt,))

    def set_prediction(
        self,
        prompts: Iterable[Prompt],
        mask: np.ndarray | None,
        score: float | None,
        logits: np.ndarray | None,
        model_id: str | None = None,
        ious: np.ndarray | None = None,
    ) -> bool:
        """Attach a prediction computed for ``prompts`` to the current object.

        ``ious``: the predicted IoUs of all candidate masks of that decode (optional).
        Returns False (and changes nothing) when ``prompts`` are no longer the current
        prompts: a stale answer to an older request.
        """
        cur = self._state.current
        if tuple(prompts) != cur.prompts:
            return False
        if mask is not None:
            self._check_mask(mask)
        new = replace(cur, mask=read_only(mask, bool),
                      score=None if score is None else float(score),
                      logits=read_only(logits, np.float32), model_id=model_id,
                      mask_prompts=cur.prompts, ious=read_only(ious, np.float32))
        # In place: the prediction belongs to the state that holds these prompts.
        self._state = replace(self._state, current=new)
        self.events.current_changed.emit()
        return True

    def invalidate_prediction(self) -> None:
        """Mark the current mask as no answer to the current prompts (e.g. another model).

        The mask stays on screen until a new prediction arrives; like :meth:`set_prediction`
        this changes the current state in place (no undo step).
        """
        cur = self._state.current
        if cur.mask_prompts is not None:
            self._state = replace(self._state, current=replace(cur, mask_prompts=None))
            self.events.current_changed.emit()

    def set_current_class(self, class_id: int) -> None:
        """Change the class of the object being prompted."""
        cur = self._state.current
        if cur.class_id != class_id:
            self._push(replace(self._state, current=replace(cur, class_id=int(class_id))),
                       current=True)

    def discard(self) -> None:
        """Drop the current object's prompts and prediction (Escape).

        A reopened object goes back to the accepted objects unchanged.
        """
        cur = self._state.current
        if cur.original is None and not cur.prompts and cur.mask is None:
            return
        objects = self._state.objects
        if cur.original is not None:
            objects = objects + (cur.original,)
        self._push(replace(self._state, objects=objects, current=CurrentObject(cur.class_id)),
                   current=True, objects=cur.original is not None)

    def accept(self, signals: Mapping[str, float] | None = None) -> AnnotatedObject | None:
        """Commit the current object into the accepted objects; return it.

        Returns None when there is no non-empty mask to accept. The next object starts with
        the same class, no prompts and no logits.
        """
        cur = self._state.current
        if cur.mask is None or not cur.mask.any():
            return None
        now = time.time()
        oid = cur.object_id if cur.object_id is not None else self.next_object_id()
        created = now if cur.original is None else cur.original.created
        attributes = {} if cur.original is None else cur.original.attributes
        signals = dict(signals or {})
        if cur.candidate is not None:  # refined from a proposal: keep where it came from
            attributes = {**attributes, "source": cur.candidate.source}
            signals.setdefault("candidate_score", float(cur.candidate.score))
        obj = AnnotatedObject(oid, cur.class_id, cur.mask, cur.prompts, cur.score,
                              cur.model_id, signals, cur.logits, created, now,
                              attributes)
        if cur.original is not None:  # a re-accepted part keeps the parent it was given
            obj = replace(obj, parent_id=cur.original.parent_id,
                          parent_fixed=cur.original.parent_fixed)
        status = self._state.status
        if status == ImageStatus.NEW:
            status = ImageStatus.IN_PROGRESS
        self._push(DocumentState(self._state.objects + (obj,), CurrentObject(cur.class_id),
                                 status), current=True, objects=True,
                   status=status != self._state.status)
        return obj

    def set_current(self, current: CurrentObject) -> None:
        """Make ``current`` the object being prompted (one undo step).

        For an object that starts with a mask and logits of its own (a proposal taken for
        refinement): the unaccepted current object is dropped, a reopened one goes back to
        the accepted objects first. ``current.original`` must be None.
        """
        if current.original is not None:
            raise ValueError("set_current takes a new object; reopen an accepted one "
                             "with reopen()")
        if current.mask is not None:
            self._check_mask(current.mask)
        old = self._state.current
        objects = self._state.objects
        if old.original is not None:
            objects = objects + (old.original,)
        self._push(replace(self._state, objects=objects, current=current), current=True,
                   objects=old.original is not None)

    def add_objects(self, objects: Iterable[AnnotatedObject]) -> tuple[AnnotatedObject, ...]:
        """Add accepted objects at once, as one undo step; return them as added.

        For objects made elsewhere (proposals accepted without prompting): each gets the
        next free object id in turn (the ids given are ignored). The object being prompted
        is left as it is. A new image becomes in progress.

        Raises
        ------
        ValueError
            On a mask of another shape, or more objects than an image can hold (nothing is
            changed).
        """
        added: list[AnnotatedObject] = []
        used = {o.object_id for o in self._state.objects}
        if self._state.current.object_id is not None:
            used.add(self._state.current.object_id)
        for obj in objects:
            self._check_mask(obj.mask)
            oid = max(used, default=0) + 1  # as next_object_id: above the highest, else free
            if oid > MAX_OBJECTS:
                oid = next((i for i in range(1, MAX_OBJECTS + 1) if i not in used), 0)
            if not oid:
                raise ValueError(f"image {self.image_id} cannot hold more than {MAX_OBJECTS} "
                                 "objects")
            used.add(oid)
            added.append(replace(obj, object_id=oid))
        if not added:
            return ()
        status = self._state.status
        if status == ImageStatus.NEW:
            status = ImageStatus.IN_PROGRESS
        self._push(replace(self._state, objects=self._state.objects + tuple(added),
                           status=status), objects=True, status=status != self._state.status)
        return tuple(o for o in self._state.objects if any(
            o.object_id == a.object_id for a in added))

    # -- editing accepted objects -----------------------------------------------------------
    def reopen(self, object_id: int) -> CurrentObject:
        """Take an accepted object back into prompting, with its prompts, mask and logits.

        Any unaccepted current object is discarded. Accepting it again keeps its id;
        discarding it puts it back unchanged.
        """
        obj = self.get(object_id)
        objects = tuple(o for o in self._state.objects if o.object_id != object_id)
        if self._state.current.original is not None:
            # Reopening while another reopened object is open puts that one back first.
            objects = objects + (self._state.current.original,)
        current = CurrentObject(obj.class_id, obj.prompts, obj.mask, obj.score, obj.logits,
                                obj.model_id, original=obj, mask_prompts=obj.prompts)
        self._push(replace(self._state, objects=objects, current=current),
                   current=True, objects=True)
        return current

    def remove_object(self, object_id: int) -> None:
        """Delete an accepted object."""
        self.get(object_id)
        objects = tuple(o for o in self._state.objects if o.object_id != object_id)
        self._push(replace(self._state, objects=objects), objects=True)

    def set_object_class(self, object_id: int, class_id: int) -> None:
        """Change the class of an accepted object."""
        obj = self.get(object_id)
        if obj.class_id == class_id:
            return
        new = replace(obj, class_id=int(class_id), modified=time.time())
        objects = tuple(new if o.object_id == object_id else o for o in self._state.objects)
        self._push(replace(self._state, objects=objects), objects=True)

    def replace_objects(self, objects: Iterable[AnnotatedObject]) -> None:
        """Replace every accepted object with ``objects``, as one undoable step.

        For results computed from the whole label map at once (the refiners of
        :mod:`napari_samlabel.pseudo.refine`): undo brings every previous object back. The
        object being prompted is dropped (a reopened one with the old objects it belonged
        to), so the refined map is the whole annotation; its class is kept for the next
        object. A new image becomes in progress when objects remain.

        Raises
        ------
        ValueError
            On duplicate object ids or a mask of another shape (nothing is changed).
        """
        # The constructor's checks (ids, mask shapes), without copying any mask.
        objs = AnnotationDocument(self.image_id, self.shape, objects).objects
        status = self._state.status
        if status == ImageStatus.NEW and objs:
            status = ImageStatus.IN_PROGRESS
        cur = self._state.current
        self._push(DocumentState(objs, CurrentObject(cur.class_id), status), objects=True,
                   current=cur.prompts != () or cur.mask is not None or cur.original is not None,
                   status=status != self._state.status)

    def set_status(self, status: ImageStatus | str) -> None:
        """Set the image's status."""
        status = ImageStatus(status)
        if status != self._state.status:
            self._push(replace(self._state, status=status), status=True)

    def set_parent(self, object_id: int, parent_id: int | None) -> None:
        """Make the part ``object_id`` belong to the whole ``parent_id`` (one undo step).

        The link holds until that whole is deleted or stops being of the part's parent
        class; then the part's parent is found from the pixels again. ``parent_id`` None
        goes back to that automatic choice.

        Raises
        ------
        KeyError
            If either object is not an accepted object.
        ValueError
            If ``object_id`` is not a part (or the document has no class table), or
            ``parent_id`` is not a whole of the part's parent class.
        """
        obj = self.get(object_id)
        parent_class = None if self.classes is None else self.classes.parent(obj.class_id)
        if parent_class is None:
            raise ValueError(f"image {self.image_id}: object {object_id} is not a part (its "
                             "class has no parent class), so it cannot be given a parent")
        if parent_id is not None:
            parent = self.get(parent_id)
            if parent.class_id != parent_class:
                names = self.classes.names  # type: ignore[union-attr]
                raise ValueError(
                    f"image {self.image_id}: object {parent_id} is a {names[parent.class_id]!r}, "
                    f"but the parent of a {names[obj.class_id]!r} must be a "
                    f"{names[parent_class]!r}")
        fixed = parent_id is not None
        if obj.parent_fixed == fixed and (not fixed or obj.parent_id == parent_id):
            return
        new = replace(obj, parent_id=parent_id if fixed else obj.parent_id,
                      parent_fixed=fixed, modified=time.time())
        objects = tuple(new if o.object_id == object_id else o for o in self._state.objects)
        self._push(replace(self._state, objects=objects), objects=True)

    # -- history ------------------------------------------------------------------------------
    def undo(self) -> bool:
        """Go back one step; return False when there is nothing to undo."""
        if not self._undo:
            return False
        self._redo.append(self._state)
        self._restore(self._undo.pop())
        return True

    def redo(self) -> bool:
        """Redo one undone step; return False when there is nothing to redo."""
        if not self._redo:
            return False
        self._undo.append(self._state)
        self._restore(self._redo.pop())
        return True

    def _restore(self, state: DocumentState) -> None:
        old = self._state
        self._state = state
        self._emit(current=old.current is not state.current,
                   objects=old.objects is not state.objects,
                   status=old.status != state.status)

    def _push(self, state: DocumentState, *, current: bool = False, objects: bool = False,
              status: bool = False) -> None:
        self._undo.append(self._state)
        del self._undo[:-self._max_undo]
        self._redo.clear()
        if objects:  # every change of the objects may change which whole a part belongs to
            state = replace(state, objects=resolve_parents(
                state.objects, self.classes, state.current.original))
        self._state = state
        self._emit(current=current, objects=objects, status=status)

    def _emit(self, *, current: bool, objects: bool, status: bool) -> None:
        if objects:
            self.events.objects_changed.emit()
        if current:
            self.events.current_changed.emit()
        if status:
            self.events.status_changed.emit(self._state.status.value)

    def _check_mask(self, mask: np.ndarray) -> None:
        if tuple(np.shape(mask)) != self.shape:
            raise ValueError(f"image {self.image_id}: mask shape {np.shape(mask)} does not "
                             f"match the image shape {self.shape}")
