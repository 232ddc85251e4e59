"""The annotation session of one viewer: images, the open document, the engine, autosave.

Qt-free and napari-free, so the whole annotate-accept-save loop runs headless (scripts, the
kill test) and the GUI is a thin layer over it (:mod:`napari_samlabel._napari.bridge` turns
layer events into :meth:`AnnotationSession.set_prompts` and renders the session's events).

What the session does, and what it leaves to the layers below:

- the image list and the project folder are :mod:`napari_samlabel.io.project`'s; every accept,
  class change and status change is saved through it at once (atomic writes there);
- undo/redo, the current object and its logits are the
  :class:`~napari_samlabel.core.document.AnnotationDocument`'s;
- SAM inputs are built only by :func:`napari_samlabel.engine.policies.refine_object`;
- engine work runs on an :class:`~napari_samlabel.annotate.lane.EngineLane`: encoding the
  image, decoding the newest prompts (older waiting requests are dropped, stale answers are
  refused by ``set_prediction``), and prefetching the next image's embedding when idle (the
  prefetch also reads the next image and its saved annotation, so moving on is instant);
- with a ``loader`` runner, images and documents are read off the GUI thread too (the old
  image stays until the new one is read; a newer request wins);
- the annotator's choices that are not document state: the polarity of the next prompt,
  the selected accepted object (picking a class then re-classes it; it can be deleted), and
  which prompts are accepted at all (prompts outside the image are dropped with a notice).

The engine side (encoding, prefetching, decoding, prompting) is in the base class,
:class:`~napari_samlabel.annotate.decoding.DecodingSession`; this module adds opening and
reading images, navigation and statuses, the object actions and autosave.

One session per viewer; nothing here is global.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_samlabel.annotate.decoding import DecodingSession
from napari_samlabel.annotate.lane import ThreadedRunner
from napari_samlabel.core.document import AnnotationDocument, ImageStatus
from napari_samlabel.core.prompts import in_image
from napari_samlabel.engine.quality import accept_signals
from napari_samlabel.io.drafts import Draft, DraftStore
from napari_samlabel.io.project_schema import ImageConflictError

if TYPE_CHECKING:
    from napari_samlabel.annotate.proposals import ProposalController
    from napari_samlabel.core.objects import AnnotatedObject
    from napari_samlabel.io.project import Project

#: Statuses the navigator cycles through, in menu order.
STATUSES: tuple[ImageStatus, ...] = (ImageStatus.NEW, ImageStatus.IN_PROGRESS,
                                     ImageStatus.DONE, ImageStatus.FLAGGED)


class AnnotationSession(DecodingSession):
    """Images, the open document, the engine and autosave of one viewer.

    Parameters
    ----------
    images : sequence of Path
        The images to annotate, in navigator order.
    project : Project, optional
        The :class:`napari_samlabel.io.project.Project`; documents are loaded from and saved
        to it. Without one nothing is saved (a scratch session).
    engine : Engine, optional
        The mask engine; can be set later with :meth:`set_engine` (loading takes a while).
    classes : ClassTable, optional
        Class table (VOC by default).
    runner : Runner, optional
        Where engine jobs run (inline by default; the GUI passes a worker-thread runner).
    policy : Policy or str, optional
        Prompt policy (or its name) handed to ``refine_object`` (its default when None).
    prefetch : bool
        Compute the next image's embedding while the annotator works.
    prefetch_runner : Runner, optional
        Where prefetch jobs run when the engine can encode without changing its current
        image (default: ``runner``).
    image_loader : callable, optional
        ``path -> RGB uint8 array`` (``napari_samlabel.io.images.load_image`` by default).
    loader : Runner, optional
        Where images and documents are read when an image is opened (default: at once, on
        the calling thread, so :meth:`open_image` returns the document).
    """

    def status_of(self, index: int) -> ImageStatus:
        """Status of image ``index``."""
        return self._statuses[index]

    def open_image(self, index: int) -> AnnotationDocument | None:
        """Open image ``index``: read it and its saved annotation, start encoding it.

        The object in progress on the image being left (prompts not yet accepted) is kept as
        a draft in the project and restored when that image opens again (accepted objects
        are already saved). Returns the new document, or None while it is being read by an
        asynchronous ``loader`` (``image_changed`` tells when it is open).
        """
        if not 0 <= index < len(self.images):
            raise IndexError(f"image index {index} is outside 0..{len(self.images) - 1}")
        pre = self._preloaded.pop(index, None)
        if pre is not None:
            return self._show(index, *pre)
        if not self._async_load:
            return self._show(index, *self._read(index))
        self._opening = index

        def factory() -> Callable[[], Any] | None:
            if self._opening != index:
                return None
            return lambda: (index, *self._read(index))

        self.load_lane.submit("load", factory, self._loaded,
                              label=f"Loading {self.image_id(index)}")
        return self.doc if self.index == index and self._opening is None else None

    def _read(self, index: int) -> tuple[np.ndarray, AnnotationDocument]:
        path = self.images[index]
        image = self._load(path)
        return image, self._load_document(path, image.shape[:2])

    def _loaded(self, result: tuple[int, np.ndarray, AnnotationDocument]) -> None:
        index, image, doc = result
        if index == self._opening:
            self._show(index, image, doc)

    def _show(self, index: int, image: np.ndarray, doc: AnnotationDocument
              ) -> AnnotationDocument:
        self._opening = None
        if self._notice_shown or self._note_shown:
            self._notice_shown = self._note_shown = False
            self.events.message.emit("")  # about the image being left
        if self.doc is not None:
            self._keep_draft()
            self._disconnect(self.doc)
        self.index, self.image, self.doc = index, image, doc
        self.selected = None
        self._prompted_at = None
        self._statuses[index] = doc.status
        if doc.current.class_id != self.current_class:
            doc.set_current_class(self.current_class)
        self._restore_draft(doc)
        doc.events.current_changed.connect(self._on_current_changed)
        doc.events.objects_changed.connect(self._on_objects_changed)
        doc.events.status_changed.connect(self._on_status_changed)
        pending = self._pending_status.pop(index, None)
        if pending is not None and doc.status != pending:
            doc.set_status(pending)
        self.lane.cancel("decode")
        self._remember_position()
        self.events.image_changed.emit(index)
        self.events.selection_changed.emit(0)
        self._request_encode()
        return doc

    # -- drafts: objects in progress survive leaving the image ----------------------------
    @property
    def drafts(self) -> DraftStore | None:
        """The project's drafts (None without a project)."""
        return None if self.project is None else DraftStore(self.project.folder)

    def _keep_draft(self) -> None:
        """Keep the open image's object in progress as a draft (the image is being left).

        Never silent: the annotator is told what was kept, or why it could not be.
        """
        doc = self.doc
        if doc is None:
            return
        cur, store = doc.current, self.drafts
        if cur.original is not None:  # a reopened object: its accepted version is saved
            if cur.prompts != cur.original.prompts:
                self.notify(f"object #{cur.original.object_id} on {doc.image_id} stays as "
                            "it was accepted; its changes were not accepted and are not kept")
            return
        if not cur.prompts:
            if store is not None:
                store.remove(doc.image_id)
            return
        if store is None:
            self.notify(f"the object in progress on {doc.image_id} was dropped: there is "
                        "no project to keep it in")
            return
        current = cur.prediction_is_current
        draft = Draft(cur.class_id, cur.prompts, cur.mask if current else None,
                      cur.score if current else None, cur.logits if current else None,
                      cur.model_id if current else None)
        try:
            store.save(doc.image_id, draft)
        except OSError as exc:
            self.notify(f"could not keep the object in progress on {doc.image_id}: {exc}")
            return
        self.note(f"kept the object in progress on {doc.image_id} as a draft (it is back "
                    "when you return to that image)")

    def _restore_draft(self, doc: AnnotationDocument) -> None:
        """Give ``doc`` its draft back as the object in progress, if it has one."""
        store = self.drafts
        if store is None or doc.current.prompts:
            return
        try:
            draft = store.load(doc.image_id)
        except ValueError as exc:
            self.notify(f"could not restore the object in progress: {exc}")
            return
        if draft is None:
            return
        if 0 <= draft.class_id < len(self.classes):
            doc.set_current_class(draft.class_id)
            self.current_class = draft.class_id
        kept = tuple(p for p in draft.prompts if in_image(p, doc.shape))
        doc.set_prompts(kept)
        if kept and draft.mask is not None and draft.mask.shape == doc.shape:
            doc.set_prediction(kept, draft.mask, draft.score, draft.logits, draft.model_id)
        if kept:
            n = len(kept)
            self.note(f"restored the object in progress on {doc.image_id} "
                        f"({n} prompt{'s' * (n > 1)}): accept it with a, or Escape")

    def _drop_draft(self) -> None:
        store, doc = self.drafts, self.doc
        if store is not None and doc is not None:
            store.remove(doc.image_id)

    def _remember_position(self) -> None:
        """Save the open image and the picked class, so reopening resumes exactly here."""
        if self.project is None or self.index < 0:
            return
        try:
            self.project.set_last_position(self.image_id(), self.current_class or None)
        except (OSError, KeyError, ValueError) as exc:  # a convenience: never stop work
            self.notify(f"could not remember the position: {exc}")

    @property
    def target_index(self) -> int:
        """The image being opened, else the open one (navigation counts from it)."""
        return self.index if self._opening is None else self._opening

    def resume_index(self) -> int:
        """Index of the image to open first.

        The image that was open when the project was last left, else the first image in
        progress, else the first new one, else 0.
        """
        if self._resume_at is not None:
            return self._resume_at
        for wanted in (ImageStatus.IN_PROGRESS, ImageStatus.NEW):
            for i, status in enumerate(self._statuses):
                if status == wanted:
                    return i
        return 0

    def next_image(self) -> bool:
        """Open the next image; False at the end."""
        nxt = self.target_index + 1
        if nxt >= len(self.images):
            return False
        self.open_image(nxt)
        return True

    def previous_image(self) -> bool:
        """Open the previous image; False at the start."""
        prev = self.target_index - 1
        if prev < 0:
            return False
        self.open_image(prev)
        return True

    def next_unfinished(self) -> bool:
        """Open the next image (wrapping around) that is neither done nor flagged."""
        n = len(self.images)
        here = self.target_index
        for step in range(1, n + 1):
            i = (here + step) % n
            if self._statuses[i] in (ImageStatus.NEW, ImageStatus.IN_PROGRESS) and i != here:
                self.open_image(i)
                return True
        return False

    def mark_done(self) -> None:
        """Mark the open image done and open the next unfinished one."""
        self.set_status(ImageStatus.DONE)
        self.next_unfinished()

    def toggle_flag(self) -> None:
        """Flag the open image as a failure case, or unflag it.

        Unflagged, it is in progress again when it has objects, else new.
        """
        flagged = self.status_of(self.index) == ImageStatus.FLAGGED
        has_objects = bool(self.doc and self.doc.objects)
        back = ImageStatus.IN_PROGRESS if has_objects else ImageStatus.NEW
        self.set_status(back if flagged else ImageStatus.FLAGGED)

    def set_status(self, status: ImageStatus | str) -> None:
        """Set the open image's status (saved at once)."""
        self._require_doc().set_status(status)

    def set_status_of(self, index: int, status: ImageStatus | str) -> None:
        """Set the status of image ``index`` (saved at once), open or not.

        The open image's goes through its document (one undo step); any other's is written
        to the project and taken over by its document when it opens.

        Raises
        ------
        ValueError
            For an image that is not open when there is no project to save it to.
        """
        status = ImageStatus(status)
        doc = self.doc
        if doc is not None and index == self.index and self._opening != index:
            doc.set_status(status)
            return
        if self.project is None:
            raise ValueError(f"image {self.image_id(index)} is not open and there is no "
                             "project to save its status to")
        self.project.set_status(self.image_id(index), status)
        self._pending_status[index] = status
        if self._statuses[index] != status:
            self._statuses[index] = status
            self.events.status_changed.emit(index, status.value)

    # -- object actions --------------------------------------------------------------------
    def select_class(self, class_id: int) -> None:
        """Pick the class of the current object (and of the objects that follow)."""
        self.classes.index(int(class_id))
        self.current_class = int(class_id)
        if self.doc is not None:
            self.doc.set_current_class(class_id)
        self._remember_position()

    def pick_class(self, class_id: int) -> None:
        """A class key or click: re-class the selected accepted object, else the current one."""
        if self.selected is not None:
            self.set_object_class(self.selected, class_id)
        else:
            self.select_class(class_id)

    def set_object_class(self, object_id: int, class_id: int) -> None:
        """Change the class of an accepted object (saved at once)."""
        self.classes.index(int(class_id))
        self._require_doc().set_object_class(object_id, class_id)

    def accept(self) -> AnnotatedObject | None:
        """Accept the current object (saved at once); returns it, or None without a mask.

        Its ``signals`` get the stability and candidate-IoU spread (:func:`accept_signals`).
        """
        doc = self._require_doc()
        if not doc.current.has_mask:
            return None
        obj = doc.accept(accept_signals(doc.current, doc.shape))
        self._drop_draft()
        return obj

    def discard(self) -> None:
        """Drop the current object (a reopened object goes back unchanged); deselect."""
        self.select_object(None)
        self._require_doc().discard()
        self._drop_draft()

    def reopen(self, object_id: int) -> None:
        """Take accepted object ``object_id`` back into prompting, with its prompts."""
        doc = self._require_doc()
        self.select_object(None)
        doc.reopen(object_id)
        self.current_class = doc.current.class_id

    def delete_selected(self) -> bool:
        """Delete the selected accepted object (undoable, saved at once); False if none."""
        if self.selected is None:
            return False
        self.remove_object(self.selected)
        return True

    def object_at(self, row: float, col: float) -> int | None:
        """Accepted object visible at ``(row, col)`` of the open image (a part first).

        Parts are drawn over their wholes, so a click on a dog's head finds the head.
        """
        doc = self._require_doc()
        return doc.part_at(int(row), int(col)) or doc.object_at(int(row), int(col))

    def remove_object(self, object_id: int) -> None:
        """Delete accepted object ``object_id`` (saved at once)."""
        self._require_doc().remove_object(object_id)

    def undo(self) -> bool:
        """Undo one step (prompt edit, accept, class or status change)."""
        done = self._require_doc().undo()
        self._request_decode()
        return done

    def redo(self) -> bool:
        """Redo one undone step."""
        done = self._require_doc().redo()
        self._request_decode()
        return done

    def save(self) -> None:
        """Write the open document to the project (atomic; autosave calls this).

        Never raises for a failed save: if another session saved the image since it was
        opened, its version is kept and this one goes to the image's ``conflicts/`` folder;
        a write error (disk full, read-only folder) keeps the document open and unsaved.
        Either way the user gets a notice (:meth:`notify`).

        A reopened object counts as accepted until it is accepted again or discarded, so a
        crash while refining it never loses it.
        """
        doc = self.doc
        if doc is None or self.project is None:
            return
        self._preloaded.pop(self.index, None)
        original = doc.current.original
        try:
            if original is not None:
                snapshot = AnnotationDocument(doc.image_id, doc.shape,
                                              doc.objects + (original,), doc.status,
                                              classes=doc.classes)
                self.project.save_document(snapshot)
            else:
                self.project.save_document(doc)
        except ImageConflictError as exc:  # another session saved it: theirs is kept
            self.notify(str(exc))
            return
        except (OSError, ValueError) as exc:  # disk full, lock held, bad file: keep working
            self.notify(f"image {doc.image_id} was not saved (it stays open here): {exc}")
            return
        self.events.saved.emit(doc.image_id)

    # -- event plumbing ---------------------------------------------------------------------------
    def _on_current_changed(self) -> None:
        doc = self.doc
        if doc is not None:
            self.current_class = doc.current.class_id
        self.events.current_changed.emit()

    def _on_objects_changed(self) -> None:
        doc = self.doc
        if self.selected is not None and doc is not None and \
                all(o.object_id != self.selected for o in doc.objects):
            self.select_object(None)   # deleted, reopened or undone away
        self.save()
        self.events.objects_changed.emit()

    def _on_status_changed(self, status: str) -> None:
        self._statuses[self.index] = ImageStatus(status)
        self.save()
        self.events.status_changed.emit(self.index, status)

    def _disconnect(self, doc: AnnotationDocument) -> None:
        doc.events.current_changed.disconnect(self._on_current_changed)
        doc.events.objects_changed.disconnect(self._on_objects_changed)
        doc.events.status_changed.disconnect(self._on_status_changed)

    def stop_jobs(self, timeout_ms: int = 60000) -> bool:
        """Drop the waiting jobs, let the running ones finish, and close threaded runners.

        Each :class:`~napari_samlabel.annotate.lane.ThreadedRunner` is waited for (up to
        ``timeout_ms``) and closed once, whichever lanes share it. Returns False when a job
        was still running at the timeout (an encode cannot be interrupted).
        """
        lanes = (self.lane, self.prefetch_lane, self.load_lane)
        if self._proposals is not None:
            self._proposals.cancel()  # a running search stops at its next progress report
        for lane in lanes:
            for kind in ("load", "encode", "decode", "propose", "prefetch"):
                if kind in lane.kinds:
                    lane.cancel(kind)
        finished = True
        for runner in {id(lane.runner): lane.runner for lane in lanes}.values():
            if isinstance(runner, ThreadedRunner):
                finished = runner.wait(timeout_ms) and finished
                runner.close()
        return finished

    _proposals: ProposalController | None = None

    @property
    def proposals(self) -> ProposalController:
        """The candidate lists of this session's images (made on first use)."""
        if self._proposals is None:
            from napari_samlabel.annotate.proposals import ProposalController

            self._proposals = ProposalController(self)
        return self._proposals

    def close(self) -> None:
        """Keep the object in progress as a draft; disconnect from the open document.

        (The views disconnect themselves.)
        """
        if self.doc is not None:
            self._keep_draft()
            self._disconnect(self.doc)
        self.doc = None




def session_for_project(project: Project, **kwargs: Any) -> AnnotationSession:
    """An :class:`AnnotationSession` over every image of ``project``."""
    images = [project.image_path(i) for i in project.image_ids]
    return AnnotationSession(images, project=project, classes=project.classes, **kwargs)
