"""The review workflow of one project, headless: the Review tab is a view of it.

:class:`ReviewController` walks a curation queue (a :class:`~napari_samlabel.curate.review.
ReviewWalk`) through the annotator's session and saves the reviewer's decisions to the
project.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psygnal import Signal, SignalGroup

from napari_samlabel.core.document import AnnotationDocument, ImageStatus
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.curate.assessment import ImageAssessment
from napari_samlabel.curate.review import ReviewItem, ReviewWalk
from napari_samlabel.curate.signals import Thresholds
from napari_samlabel.io.project import Project
from napari_samlabel.io.project_schema import REVIEW_DECISIONS, Review

if TYPE_CHECKING:
    from napari_samlabel.annotate.session import AnnotationSession


@dataclass(frozen=True)
class ObjectRow:
    """One row of the review panel's object table (an object of the queue, worst first)."""

    object_id: int
    class_name: str
    score: float
    flags: tuple[str, ...]
    reason: str
    """The object's main reason in words (``""`` when nothing is suspicious)."""
    signals: str
    """Every raw signal, one ``name value`` per line (the row's tooltip)."""

    @property
    def why(self) -> str:
        """Flags and reason in one line, ``"fine"`` when there is neither."""
        return " — ".join(p for p in (", ".join(self.flags), self.reason) if p) or "fine"


class ReviewEvents(SignalGroup):
    """What a :class:`ReviewController` tells its panel."""

    loaded = Signal()           # a queue was loaded (the walk was replaced)
    current_changed = Signal()  # the image under review changed (or the walk ended)
    decided = Signal(str)       # the decision of this project image id was saved or cleared
    message = Signal(str)       # notices and errors, shown as text (never a traceback)


def _thresholds(data: Mapping[str, Any]) -> Thresholds:
    """The queue's flag thresholds (unknown or malformed entries fall back to defaults)."""
    names = {f.name for f in fields(Thresholds)}
    given = {}
    for k, v in (data.get("thresholds") or {}).items():
        if k in names and isinstance(v, (int, float)) and math.isfinite(v):
            given[k] = float(v)
    return Thresholds(**given)


class ReviewController:
    """The review workflow of one project, headless: the Review tab is a view of it.

    Loads a curation queue, walks it worst first (a :class:`ReviewWalk`), opens each image
    through ``open_image`` (the annotator's session, where the normal prompting tools fix
    it), and saves the reviewer's decisions to the project at once
    (:meth:`~napari_samlabel.io.project.Project.set_review`, an atomic write), moving on to
    the next undecided image. Every failure (a bad queue file, a reason that is not a short
    tag, an image that cannot be opened) becomes a :attr:`ReviewEvents.message`, not an
    exception.

    Parameters
    ----------
    project : Project or None
        The project under review; decisions are read from and written to it. Share the
        annotator's own instance, so both write one project file. Without one (images that
        are not a project) nothing can be loaded.
    open_image : callable, optional
        ``open_image(image_id)``: show that project image (the panel passes the session's
        ``open_image``). May raise ``OSError`` or ``ValueError``; the message is shown.
    set_status : callable, optional
        ``set_status(image_id, status)``: how an *accepted* decision marks its image
        ``done`` (the reviewer vouches that its labels are complete and right, so the export
        puts it in train or val even when it was flagged or in progress). The panel passes
        one that goes through the annotator's open document, so the navigator and undo see
        it; the default is :meth:`Project.set_status`. Rejected and needs-work decisions
        leave the status alone: the export reads them from the decision itself.

    Attributes
    ----------
    walk : ReviewWalk or None
        The loaded queue.
    include_decided : bool
        :meth:`next` visits decided images too (to revise them); by default it skips them.
    reason, note : str
        The draft reason tag and note of the next decision (the panel's combo and note
        field). Moving to an image loads its saved decision's reason and note, or clears
        them.
    now : ImageAssessment or None
        The current image rescored from its objects as they are now (:meth:`rescore`), after
        edits in the annotator; None until the objects change.
    """

    def __init__(self, project: Project | None, open_image: Callable[[str], Any] | None = None,
                 set_status: Callable[[str, ImageStatus], Any] | None = None) -> None:
        self.project = project
        self.open_image = open_image or (lambda _iid: None)
        self.set_status = set_status or (
            lambda iid, status: self._project.set_status(iid, status))
        self.events = ReviewEvents()
        self.walk: ReviewWalk | None = None
        self.queue_path: Path | None = None
        self.include_decided = False
        self.reason = ""
        self.note = ""
        self.now: ImageAssessment | None = None
        self.away: str | None = None  # the open image when the annotator left the queue
        self._thresholds = Thresholds()
        self._with_gt = False

    @classmethod
    def for_session(cls, session: AnnotationSession) -> ReviewController:
        """A controller reviewing ``session``'s project through the session itself.

        Images open in the session (the annotator's tools then fix them; an image that is
        open already is left as it is), and an accepted decision marks its image done
        through :meth:`AnnotationSession.set_status_of` (so the navigator and undo see it).
        """
        index = {session.image_id(k): k for k in range(len(session))}

        def open_image(image_id: str) -> None:
            k = index.get(image_id)
            if k is None:
                raise ValueError(f"image {image_id} is not among the annotator's images")
            if k != session.index:
                session.open_image(k)

        def set_status(image_id: str, status: ImageStatus) -> None:
            session.set_status_of(index[image_id], status)

        return cls(session.project, open_image, set_status)

    @property
    def _project(self) -> Project:
        """The project; only used once a queue is loaded, which needs one."""
        if self.project is None:
            raise RuntimeError("no project to review")
        return self.project

    # -- loading -------------------------------------------------------------------------------
    def load(self, path: str | os.PathLike[str], at: str | None = None) -> bool:
        """Load a queue and open its worst undecided image.

        ``path`` is a ``queue.json`` or the ``samlabel curate`` output folder holding it.
        With ``at`` (the image the annotator has open, when a reopened project resumes its
        last queue) nothing is opened: the review follows that image (:meth:`follow`). The
        queue is remembered in the project's session file
        (:meth:`~napari_samlabel.io.project.Project.set_last_review_queue`). Returns False
        (and emits a message) when the queue cannot be used.
        """
        from napari_samlabel.curate.queue import read_queue

        if self.project is None:
            self.events.message.emit("nothing to review: these images are not a project")
            return False
        try:
            data = read_queue(Path(path))
            walk = ReviewWalk(data, self._project.image_ids, decided=self.is_decided)
        except ValueError as exc:
            self.events.message.emit(str(exc))
            return False
        if not walk.items:
            self.events.message.emit(
                f"{path}: none of the queue's {len(walk.unmatched)} images is in the project "
                f"{self.project.folder}; curate this project to make its queue")
            return False
        p = Path(path)
        self.walk, self.queue_path = walk, p / "queue.json" if p.is_dir() else p
        self._thresholds = _thresholds(data)
        self._with_gt = bool(data.get("ground_truth"))
        extra = (f"; {len(walk.unmatched)} queued images are not in this project"
                 if walk.unmatched else "")
        self.events.message.emit(f"queue of {len(walk)} images, {walk.remaining()} "
                                 f"undecided{extra}")
        try:
            self._project.set_last_review_queue(self.queue_path)
        except OSError as exc:  # a convenience: the review goes on
            self.events.message.emit(f"could not remember the queue: {exc}")
        self.events.loaded.emit()
        self.away = None
        if at is None:
            self._show(walk.restart())
        elif walk.index_of(at) is None:
            self.follow(at)
        else:
            self._show(walk.go_to(at), open_it=False)
        return True

    def resume(self, at: str | None = None) -> bool:
        """Load the queue last loaded for this project, if it still exists (see :meth:`load`).

        False, quietly, when there is none or it is gone; False with a message when it can
        no longer be used (the remembered queue is then forgotten).
        """
        if self.project is None:
            return False
        path = self._project.last_review_queue()
        if path is None or not path.is_file():
            return False
        if self.load(path, at=at):
            return True
        with contextlib.suppress(OSError):
            self._project.set_last_review_queue(None)
        return False

    # -- where we are --------------------------------------------------------------------------
    def is_decided(self, image_id: str) -> bool:
        """True when the project has a review decision for ``image_id``."""
        return self._project.review(image_id) is not None

    @property
    def current(self) -> ReviewItem | None:
        """The image under review.

        None without a queue, at the end, or when the annotator opened an image that is not
        in the queue (:attr:`away`).
        """
        if self.walk is None or self.away is not None:
            return None
        return self.walk.current

    @property
    def decision(self) -> Review | None:
        """The saved decision of the current image."""
        item = self.current
        return None if item is None else self._project.review(item.image_id)

    def decision_text(self) -> str:
        """The saved decision of the current image in words (``""`` without an image)."""
        if self.current is None:
            return ""
        review = self.decision
        if review is None:
            return "Decision: none yet"
        tag = f" — {review.reason}" if review.reason else ""
        note = f" ({review.note})" if review.note else ""
        return f"Decision: {review.decision.replace('_', ' ')}{tag}{note}"

    def counts(self) -> dict[str, int]:
        """Images of the queue per decision, and ``undecided``."""
        out = dict.fromkeys((*REVIEW_DECISIONS, "undecided"), 0)
        for it in self.walk.items if self.walk is not None else ():
            r = self._project.review(it.image_id)
            out["undecided" if r is None else r.decision] += 1
        return out

    def position_text(self) -> str:
        """``"3 of 12 · 9 undecided"`` (and where the walk is when not on a queued image)."""
        walk = self.walk
        if walk is None:
            return "No queue loaded."
        left = f"{walk.remaining()} undecided"
        if self.away is not None:
            return f"{self.away} is not in the queue · {left}"
        if walk.position is None:
            return f"End of the queue ({len(walk)} images) · {left}"
        return f"{walk.position + 1} of {len(walk)} · {left}"

    def item_lines(self) -> list[str]:
        """The current image in lines of text.

        Id, rank and score; flags; the main reason in words; and, after edits, its score now.
        """
        from napari_samlabel.curate.report import describe_reason

        item = self.current
        if item is None:
            return []
        a = item.assessment
        lines = [f"{item.image_id}: rank {item.rank}, score {item.score:.2f}",
                 "flags: " + (", ".join(item.flags) or "none"),
                 "why: " + describe_reason(item.main_reason, a, self._project.classes)]
        if self.now is not None:
            gt = " (without ground truth)" if self._with_gt else ""
            lines.append(f"now{gt}: score {self.now.score:.2f}, flags: "
                         + (", ".join(self.now.flags) or "none"))
        return lines

    def object_rows(self, limit: int | None = None) -> list[ObjectRow]:
        """The current image's objects as the queue assessed them, worst first."""
        from napari_samlabel.curate.queue import class_name
        from napari_samlabel.curate.report import describe_reason, format_value

        item = self.current
        if item is None:
            return []
        rows = []
        for o in item.worst_objects()[:limit]:
            reason = ""
            if o.main_reason is not None:
                text = describe_reason({"object_id": o.object_id, **o.main_reason})
                reason = text.removeprefix(f"object {o.object_id}: ")
            signals = "\n".join(f"{k}: {format_value(k, v)}" for k, v in o.signals.items())
            rows.append(ObjectRow(o.object_id, class_name(self._project.classes, o.class_id),
                                  o.score, tuple(o.flags), reason, signals))
        return rows

    def queue_rows(self) -> list[tuple[str, str]]:
        """``(image_id, label)`` of every queued image, worst first.

        The label has the decision mark, rank, id, score and :attr:`ReviewItem.headline`.
        """
        if self.walk is None:
            return []
        rows = []
        for it in self.walk.items:
            r = self._project.review(it.image_id)
            mark = DECISION_MARK.get(r.decision if r is not None else "", "·")
            rows.append((it.image_id, f"{mark} {it.rank:>3}  {it.image_id}  "
                                      f"{it.score:.2f}  {it.headline}".rstrip()))
        return rows

    # -- moving --------------------------------------------------------------------------------
    def next(self) -> ReviewItem | None:
        """Move to the next image, worst first; None at the end.

        That is the next undecided one, wrapping round to undecided images passed over, or
        with :attr:`include_decided` simply the next one.
        """
        walk = self._need_walk()
        if walk is None:
            return None
        self.away = None  # off the queue: go on from where the walk was
        if self.include_decided:
            return self._show(walk.next(skip_decided=False))
        item = walk.next()
        if item is None and walk.remaining():
            item = walk.restart()
        return self._show(item)

    def previous(self) -> ReviewItem | None:
        """Back one image, decided ones included (to revise a decision)."""
        walk = self._need_walk()
        if walk is None:
            return None
        self.away = None
        item = walk.previous()
        if item is None:
            self.events.message.emit("this is the worst image of the queue")
            return self._show(walk.current)
        return self._show(item)

    def go_to(self, image_id: str) -> ReviewItem | None:
        """Review the queued image ``image_id`` (clicked in the panel's list)."""
        walk = self._need_walk()
        if walk is None:
            return None
        try:
            item = walk.go_to(image_id)
        except KeyError as exc:
            self.events.message.emit(str(exc.args[0]))
            return None
        self.away = None
        return self._show(item)

    def restart(self) -> ReviewItem | None:
        """Go to the worst undecided image."""
        walk = self._need_walk()
        if walk is None:
            return None
        self.away = None
        return self._show(walk.restart())

    def follow(self, image_id: str) -> None:
        """Follow the annotator to ``image_id``, opened by other means (navigator, keys).

        A queued image becomes the one under review; for any other the controller notes
        that the open image is not in the queue (:attr:`away`).
        """
        walk = self.walk
        if walk is None:
            return
        item = self.current
        if item is not None and item.image_id == image_id:
            return
        if walk.index_of(image_id) is None:
            self.away = image_id
            self.now = None
            self.events.current_changed.emit()
            return
        self.away = None
        self._show(walk.go_to(image_id), open_it=False)

    # -- deciding ------------------------------------------------------------------------------
    def decide(self, decision: str) -> bool:
        """Save ``decision`` for the current image and move to the next undecided one.

        The draft :attr:`reason` and :attr:`note` go with it; ``accepted`` also marks the
        image ``done`` (see :attr:`set_status`). Returns False, with a message, when it is
        refused (no image under review, a reason that is not one short line).
        """
        item = self._need_item()
        if item is None:
            return False
        from napari_samlabel.io.project_schema import ProjectError

        try:
            review = self._project.set_review(item.image_id, decision, self.reason, self.note)
        except (ProjectError, KeyError, OSError) as exc:
            self.events.message.emit(f"not saved: {exc}")
            return False
        tag = f" ({review.reason})" if review.reason else ""
        done = ""
        if decision == "accepted" and self._project.status(item.image_id) != ImageStatus.DONE:
            try:
                self.set_status(item.image_id, ImageStatus.DONE)
                done = ", marked done"
            except (OSError, ValueError, KeyError) as exc:
                done = f"; its status is not saved: {exc}"
        self.events.message.emit(
            f"{item.image_id}: {decision.replace('_', ' ')}{tag}, saved{done}")
        self.events.decided.emit(item.image_id)
        self.next()
        return True

    def clear(self) -> bool:
        """Remove the current image's decision (it becomes undecided again); stay on it."""
        item = self._need_item()
        if item is None:
            return False
        try:
            self._project.clear_review(item.image_id)
        except OSError as exc:
            self.events.message.emit(f"not saved: {exc}")
            return False
        self.reason = self.note = ""
        self.events.message.emit(f"{item.image_id}: decision cleared")
        self.events.decided.emit(item.image_id)
        self.events.current_changed.emit()
        return True

    def rescore(self, objects: Sequence[AnnotatedObject],
                status: str | None = None) -> ImageAssessment | None:
        """Assess the current image again from ``objects`` (its objects after edits).

        With the queue's thresholds and without ground truth; the result is kept in
        :attr:`now`.
        """
        item = self.current
        if item is None:
            return None
        from napari_samlabel.curate.assessment import assess_image

        classes = self._project.classes
        parts = [o.object_id for o in objects if classes.is_part(o.class_id)]
        try:
            self.now = assess_image(item.image_id, item.assessment.shape, objects,
                                    status=status, thresholds=self._thresholds, parts=parts)
        except ValueError as exc:
            self.now = None
            self.events.message.emit(f"cannot rescore {item.image_id}: {exc}")
        self.events.current_changed.emit()
        return self.now

    def rescore_document(self, doc: AnnotationDocument) -> ImageAssessment | None:
        """:meth:`rescore` from ``doc`` when it is the image under review (else nothing).

        An object being refined (reopened) still counts as accepted.
        """
        item = self.current
        if item is None or item.image_id != doc.image_id:
            return None
        original = doc.current.original
        objects = (*doc.objects, original) if original is not None else doc.objects
        return self.rescore(objects, doc.status.value)

    # -- plumbing ------------------------------------------------------------------------------
    def _need_walk(self) -> ReviewWalk | None:
        if self.walk is None:
            self.events.message.emit("load a curation queue first (queue.json or its folder)")
        return self.walk

    def _need_item(self) -> ReviewItem | None:
        if self._need_walk() is None:
            return None
        item = self.current
        if item is None:
            self.events.message.emit(
                f"{self.away} is not in the queue: go back with Next or Prev"
                if self.away is not None else "no image under review (end of the queue)")
        return item

    def _show(self, item: ReviewItem | None, open_it: bool = True) -> ReviewItem | None:
        self.now = None
        review = None if item is None else self._project.review(item.image_id)
        self.reason = review.reason if review is not None else ""
        self.note = review.note if review is not None else ""
        if item is None:
            c = self.counts()
            if not c["undecided"]:
                self.events.message.emit(
                    f"all {len(self.walk or ())} images decided: {c['accepted']} accepted, "
                    f"{c['rejected']} rejected, {c['needs_work']} need work")
        elif open_it:
            try:
                self.open_image(item.image_id)
            except (OSError, ValueError, IndexError) as exc:
                self.events.message.emit(f"cannot open {item.image_id}: {exc}")
        self.events.current_changed.emit()
        return item


#: How the panel's queue list marks each decision (undecided: ``·``).
DECISION_MARK = {"accepted": "\u2713", "rejected": "\u2717", "needs_work": "\u270e"}


__all__ = ["DECISION_MARK", "ObjectRow", "ReviewController", "ReviewEvents"]
