"""Refining the open image of an annotation session: run, preview, accept (Qt-free).

The napari plugin's Refine tab (:mod:`napari_samlabel._napari.refine_panel`) is a form over
:class:`RefineController`; everything it does is here, so it runs and is tested headless.

- **Coarse labels** are the image's accepted objects composed into a class map (an object
  being refined again counts as accepted), exactly what the semantic layer shows.
- **Run** (:meth:`RefineController.run`) queues one job of kind ``"refine"`` on the
  session's engine lane, so it never overlaps an encode or a decode on the same engine and
  never blocks the GUI thread. The job snapshots the document when it starts, computes the
  refined map with :func:`refine_image` (SEPL and SAMS reuse the session's engine: its
  embedding cache, and the automatic-mask cache on disk, so a second run with other voting
  parameters costs no SAM call), and hands back a :class:`RefinePreview`.
- **Accept** (:meth:`RefineController.accept`) replaces the accepted objects with the objects
  of the refined map (:func:`~napari_samlabel.pseudo.objects.objects_from_labels`) through
  :meth:`~napari_samlabel.core.document.AnnotationDocument.replace_objects`: one undo step,
  saved by the session like any accept. It is refused when the image or its objects changed
  since the job started (the preview would overwrite that work).
- **Discard** drops the preview; opening another image drops it too.

Inputs per method:

- ``sepl``: the coarse map and SAM's automatic masks;
- ``sams``: automatic masks and class maps: a CAM ``.npy`` of the image (with its class list,
  :func:`~napari_samlabel.pseudo.refine.inputs.load_class_maps`), or, without one, the coarse
  map's classes as one-hot score maps (each quasi-superpixel then takes the class that
  covers the largest share of it, relative to the other quasi-superpixels);
- ``slic``: the coarse map; the adaptive threshold's confidence comes from a CAM when given,
  else from the objects' predicted IoUs
  (:func:`~napari_samlabel.pseudo.refine.slic.object_confidence`; objects without a score
  are kept).

Void (255) pixels of a refined map are left unlabelled: the document holds objects, not a
void class.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal import Signal, SignalGroup

from napari_samlabel.core.classes import VOID, ClassTable
from napari_samlabel.core.compose import MaskEntry, compose_label_maps
from napari_samlabel.core.document import AnnotationDocument
from napari_samlabel.core.objects import MAX_OBJECTS, AnnotatedObject
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.engine.protocol import Engine
from napari_samlabel.pseudo.objects import objects_from_labels
from napari_samlabel.pseudo.refine import slic
from napari_samlabel.pseudo.refine.api import METHODS, get_refiner, refine_labels
from napari_samlabel.pseudo.refine.automask import AutoMaskCache, AutoMaskParams, is_mask_engine
from napari_samlabel.pseudo.refine.record import Refiner, RefinerParams

if TYPE_CHECKING:
    from napari_samlabel.annotate.session import AnnotationSession


class RefineError(ValueError):
    """The open image cannot be refined as asked (the message says why)."""


@dataclass(frozen=True, init=False)
class RefineSettings:
    """A refiner, its parameters and an optional CAM of the open image.

    The parameters are the method's record's
    (:attr:`napari_samlabel.pseudo.refine.record.Refiner.params`): given by name, with the
    record's defaults for the rest, and read back as attributes (``settings.class_ratio``).

    Parameters
    ----------
    method : {"sepl", "sams", "slic"}
        A key of :data:`napari_samlabel.pseudo.refine.api.REFINERS`.
    cam : str or None
        Path of a CAM / score-map ``.npy`` of the open image (with its ``.json`` class list).
    params : RefinerParams, optional
        The method's parameters as one object, instead of ``**values``.
    **values
        The method's parameters by name.

    Raises
    ------
    ValueError
        An unknown method, or a value out of its bounds.
    TypeError
        A parameter the method does not have.
    """

    method: str
    cam: str | None
    params: RefinerParams

    def __init__(self, method: str = METHODS[0], cam: str | None = None,
                 params: RefinerParams | None = None, **values: Any) -> None:
        refiner = get_refiner(method)
        if params is None:
            params = refiner.params(**values)
        elif values or not isinstance(params, refiner.params):
            raise TypeError(f"{method} takes its parameters as one "
                            f"{refiner.params.__name__} or by name, not both")
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "cam", cam)
        object.__setattr__(self, "params", params)

    def __getattr__(self, name: str) -> Any:
        # Only for names not found otherwise: the method's parameters.
        if name.startswith("_") or name == "params":
            raise AttributeError(name)
        return getattr(self.params, name)

    @property
    def refiner(self) -> Refiner[Any]:
        """The method's record."""
        return get_refiner(self.method)

    def automask_params(self) -> AutoMaskParams:
        """Automatic-mask parameters (SAMS keeps its whole-level offsets)."""
        return self.params.automask_params()


def accepted_state(doc: AnnotationDocument) -> tuple[AnnotatedObject, ...]:
    """The objects that make the image's annotation (a reopened object included)."""
    original = doc.current.original
    return doc.objects + ((original,) if original is not None else ())


def _is_part(doc: AnnotationDocument, obj: AnnotatedObject) -> bool:
    return doc.classes is not None and doc.classes.is_part(obj.class_id)


def coarse_maps(doc: AnnotationDocument
                ) -> tuple[np.ndarray, np.ndarray, dict[int, float | None]]:
    """``(semantic, instance, scores)`` of the accepted whole objects.

    Parts (``dog/head``) are left out: the refiners work on object-level maps, and parts go
    through a refinement unchanged (:func:`keep_parts`).
    """
    objs = [o for o in accepted_state(doc) if not _is_part(doc, o)]
    semantic, instance = compose_label_maps(doc.shape, [
        MaskEntry(o.class_id, o.object_id, o.mask, o.score) for o in objs])
    return semantic, instance, {o.object_id: o.score for o in objs}


def refine_image(image: np.ndarray, semantic: np.ndarray, instance: np.ndarray,
                 scores: Mapping[int, float | None], settings: RefineSettings, *,
                 engine: Engine | None = None, cache: AutoMaskCache | None = None,
                 classes: ClassTable | None = None,
                 progress: ProgressCallback = no_progress) -> np.ndarray:
    """Refine one image's coarse labels (inputs per method in the module notes).

    Returns
    -------
    numpy.ndarray
        ``H x W`` ``uint8`` refined class map (255 void).

    Raises
    ------
    RefineError
        Nothing to refine, a CAM of another size, or no engine able to make automatic masks.
    napari_samlabel.pseudo.refine.RefineInputError
        An unreadable CAM file (the message names it).
    """
    from napari_samlabel.pseudo.refine.inputs import load_class_maps

    method, refiner = settings.method, settings.refiner
    present = [int(c) for c in np.unique(semantic) if c not in (0, VOID)]
    maps: np.ndarray | None = None
    class_ids: list[int] | None = None
    if settings.cam:
        maps, class_ids = load_class_maps(settings.cam, classes)
        if maps.shape[1:] != semantic.shape:
            raise RefineError(f"{settings.cam}: the class maps are {maps.shape[1]}x"
                              f"{maps.shape[2]} but the image is {semantic.shape[0]}x"
                              f"{semantic.shape[1]}")
    if not present and maps is None:
        raise RefineError("nothing to refine: accept some objects first (or give a CAM for "
                          "sams)" if method == "sams" else
                          "nothing to refine: accept some objects first")
    confidence = None
    if "maps" in refiner.needs and maps is None:  # the objects' classes as one-hot scores
        maps = np.stack([(semantic == c).astype(np.float32) for c in present])
        class_ids = present
    if "confidence" in refiner.accepts and maps is None:
        confidence = slic.object_confidence(instance, scores)
    model_id = engine.model_id if engine is not None else None
    params = settings.automask_params()
    if refiner.uses_masks:
        cached = (cache is not None and model_id is not None
                  and cache.path_for(model_id, image, params).is_file())
        if not cached and not is_mask_engine(engine):
            raise RefineError(f"{method} needs SAM's automatic masks; the engine "
                              f"({model_id or type(engine).__name__}) cannot make them. "
                              "Wait for the model to load, or use slic.")
    progress(0, 0, f"refine ({method})")
    return refine_labels(method, image, coarse=semantic, maps=maps, class_ids=class_ids,
                         confidence=confidence, sam=engine if refiner.uses_masks else None,
                         params=params, cache=cache if refiner.uses_masks else None,
                         model_id=model_id, progress=progress, settings=settings.params)


def keep_parts(doc: AnnotationDocument, refined: list[AnnotatedObject]
               ) -> list[AnnotatedObject]:
    """``refined`` wholes followed by the document's parts, renumbered after them.

    The wholes a part was linked to are gone, so every part's parent is found again from
    the pixels (an explicit link cannot survive its whole).

    Raises
    ------
    RefineError
        If wholes and parts together exceed the 254 objects an image can hold.
    """
    parts = [o for o in accepted_state(doc) if _is_part(doc, o)]
    first = max((o.object_id for o in refined), default=0) + 1
    if first - 1 + len(parts) > MAX_OBJECTS:
        raise RefineError(f"the refined map has {first - 1} objects and the image "
                          f"{len(parts)} parts: more than the {MAX_OBJECTS} an image can hold")
    return refined + [replace(p, object_id=first + k, parent_id=None,
                                     parent_fixed=False) for k, p in enumerate(parts)]


@dataclass(frozen=True, eq=False)
class RefinePreview:
    """A refined map waiting to be accepted or discarded.

    Attributes
    ----------
    doc : AnnotationDocument
        The document it was computed from.
    base : tuple of AnnotatedObject
        The accepted objects it replaces (as they were when the job started).
    labels : numpy.ndarray
        ``H x W`` ``uint8`` refined class map (255 void).
    objects : list of AnnotatedObject
        What Accept puts in the document.
    settings : RefineSettings
    seconds : float
        Wall time of the job.
    """

    doc: AnnotationDocument
    base: tuple[AnnotatedObject, ...]
    labels: np.ndarray
    objects: list[AnnotatedObject]
    settings: RefineSettings
    seconds: float = 0.0
    changed: int = field(default=0)

    def summary(self) -> str:
        """One line for the user."""
        void = int(np.count_nonzero(self.labels == VOID))
        text = (f"{self.settings.method}: {len(self.objects)} objects, {self.changed} pixels "
                f"changed")
        return text + (f", {void} void" if void else "") + f" ({self.seconds:.1f} s)"


@dataclass(frozen=True)
class _Failed:
    error: BaseException


class RefineEvents(SignalGroup):
    """What the controller tells its view."""

    running = Signal(bool)     # a job was queued (True) or has ended (False)
    preview_changed = Signal()  # a preview arrived or was dropped
    message = Signal(str)      # results, refusals and errors, for the user


def default_automask_cache() -> AutoMaskCache:
    """``<cache root>/automasks``, the cache ``samlabel refine`` uses."""
    from napari_samlabel.engine.checkpoint import cache_root

    return AutoMaskCache(cache_root() / "automasks")


class RefineController:
    """Run a refiner on a session's open image, keep the preview, accept or discard it.

    Parameters
    ----------
    session : AnnotationSession
        Its open image is refined; jobs go to its engine lane.
    cache : AutoMaskCache, path, "auto" or None
        Automatic-mask cache; ``"auto"`` (default): :func:`default_automask_cache`; None: no
        cache.
    """

    def __init__(self, session: AnnotationSession,
                 cache: AutoMaskCache | str | os.PathLike[str] | None = "auto") -> None:
        self.session = session
        if isinstance(cache, str) and cache == "auto":
            cache = default_automask_cache()
        elif cache is not None and not isinstance(cache, AutoMaskCache):
            cache = AutoMaskCache(Path(cache))
        self.cache: AutoMaskCache | None = cache
        self.events = RefineEvents()
        self.preview: RefinePreview | None = None
        self.running = False
        session.events.image_changed.connect(self._on_image_changed)

    def run(self, settings: RefineSettings, progress: ProgressCallback = no_progress) -> bool:
        """Queue a refinement of the open image; False when one is queued or running.

        ``progress`` is called from the worker thread (the view marshals it).
        """
        s = self.session
        if self.running:
            self.events.message.emit("a refinement is already running")
            return False
        doc = s.doc
        if doc is None:
            self.events.message.emit("no image is open")
            return False
        self.running = True
        self.events.running.emit(True)

        def factory() -> Callable[[], RefinePreview | _Failed] | None:
            if s.doc is not doc or s.image is None:
                self._end("the image changed before the refinement started; run it again")
                return None
            image, classes = s.image, s.classes
            engine: Engine | None = s.engine
            semantic, instance, scores = coarse_maps(doc)
            base = accepted_state(doc)
            cache = self.cache

            def job() -> RefinePreview | _Failed:
                t0 = time.perf_counter()
                try:
                    labels = refine_image(image, semantic, instance, scores, settings,
                                          engine=engine, cache=cache, classes=classes,
                                          progress=progress)
                    tag = settings.method
                    if settings.refiner.uses_masks and engine is not None:
                        tag += f":{engine.model_id}"  # the masks came from this model
                    objects = keep_parts(doc, objects_from_labels(labels, tag))
                except Exception as exc:  # handed to the GUI thread as a result
                    return _Failed(exc)
                changed = int(np.count_nonzero(labels != semantic))
                return RefinePreview(doc, base, labels, objects, settings,
                                     time.perf_counter() - t0, changed)
            return job

        s.lane.submit("refine", factory, self._done, label=f"Refining ({settings.method})")
        return True

    def _end(self, message: str | None) -> None:
        self.running = False
        self.events.running.emit(False)
        if message:
            self.events.message.emit(message)

    def _done(self, result: RefinePreview | _Failed) -> None:
        if isinstance(result, _Failed):
            exc = result.error
            self._end(f"refine failed: {exc}" if isinstance(exc, ValueError)
                      else f"refine failed ({type(exc).__name__}): {exc}")
            return
        if result.doc is not self.session.doc:
            self._end("the image changed while refining; the result was dropped")
            return
        self.preview = result
        self._end(result.summary() + " — Accept to keep it")
        self.events.preview_changed.emit()

    def accept(self) -> bool:
        """Replace the image's accepted objects with the preview's (one undo step)."""
        p, doc = self.preview, self.session.doc
        if p is None:
            return False
        if doc is not p.doc or accepted_state(doc) != p.base:
            self.events.message.emit("the objects changed since this refinement was "
                                     "computed; run it again")
            return False
        doc.replace_objects(p.objects)
        self.preview = None
        self.events.preview_changed.emit()
        self.events.message.emit(f"refined ({p.settings.method}): {len(p.objects)} objects "
                                 "(undo brings the previous ones back)")
        return True

    def discard(self) -> None:
        """Drop the preview."""
        if self.preview is not None:
            self.preview = None
            self.events.preview_changed.emit()

    def _on_image_changed(self, _index: int) -> None:
        self.discard()

    def close(self) -> None:
        """Stop listening to the session."""
        self.discard()
        self.session.events.image_changed.disconnect(self._on_image_changed)
