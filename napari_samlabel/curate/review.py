"""Walking a curation queue over a project, worst first: the Qt-free half of the review panel.

:class:`ReviewWalk` reads a ``queue.json`` (:func:`~napari_samlabel.curate.queue.read_queue`),
maps its entries to the image ids of a project, and steps through them worst first,
skipping the images that already have a review decision. It knows the signals, flags and main
reason of the current image (as an
:class:`~napari_samlabel.curate.assessment.ImageAssessment`), so a panel only has to show them
and pass the annotator's decision on.

Decisions are not stored here: the walk asks ``decided(image_id)`` every time it moves, so it
always sees the project's current decisions (made in this panel, another window or an earlier
session) without caching them.

Queue ids are matched to project ids exactly first; an entry that matches no project id
exactly is matched through :func:`napari_samlabel.io.voc_project.voc_id` (the queue of an
exported project, whose ids were made VOC-safe), when that is unambiguous. A project made by
``samlabel import-voc`` has the VOC ids themselves.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_samlabel.curate.assessment import ImageAssessment, ObjectAssessment
from napari_samlabel.curate.signals import SIGNAL_SPECS


@dataclass(frozen=True)
class ReviewItem:
    """One queue entry mapped to a project image."""

    image_id: str
    """The project's image id."""
    assessment: ImageAssessment
    """The queue's record of the image (its ``image_id`` is the queue's id)."""

    @property
    def rank(self) -> int:
        """Rank in the queue (1 = worst)."""
        return int(self.assessment.rank or 0)

    @property
    def score(self) -> float:
        """The image's score."""
        return self.assessment.score

    @property
    def flags(self) -> list[str]:
        """The image's flags (its own, then its objects')."""
        return self.assessment.flags

    @property
    def main_reason(self) -> dict[str, Any] | None:
        """What set the image's score (see :class:`ImageAssessment`)."""
        return self.assessment.main_reason

    def object(self, object_id: int) -> ObjectAssessment | None:
        """The assessment of one of the image's objects, by id (None when not in the queue)."""
        return next((o for o in self.assessment.objects if o.object_id == object_id), None)

    @property
    def headline(self) -> str:
        """The flag that says most: the main reason's own flag, else the first flag, or ``""``.

        Image-level reasons (``flagged``, ``gt_missed``, ``no_objects``) are flags
        themselves.
        """
        name = (self.main_reason or {}).get("signal")
        spec = SIGNAL_SPECS.get(str(name))
        flag = spec.flag if spec is not None else name
        if flag in self.flags:
            return str(flag)
        return self.flags[0] if self.flags else ""

    def worst_objects(self) -> list[ObjectAssessment]:
        """The image's objects, worst first."""
        return sorted(self.assessment.objects, key=lambda o: (-o.score, o.object_id))


class ReviewWalk:
    """Step through a curation queue worst first, skipping decided images.

    Parameters
    ----------
    queue : mapping or path
        A ``queue.json`` as read by :func:`~napari_samlabel.curate.queue.read_queue`, or its
        path (or folder).
    image_ids : iterable of str
        The project's image ids.
    decided : callable, optional
        ``decided(image_id) -> bool`` for a project image id: True when the image already has
        a review decision (accepted, rejected, needs work). Asked afresh at every move.
    only_flagged : bool
        Walk only the images with at least one flag (the ``failures.txt`` images).

    Attributes
    ----------
    items : list of ReviewItem
        The queue entries that match a project image, worst first.
    unmatched : list of str
        Queue ids that match no project image (or more than one).
    """

    def __init__(self, queue: Mapping[str, Any] | str | os.PathLike[str],
                 image_ids: Iterable[str],
                 decided: Callable[[str], bool] | None = None,
                 only_flagged: bool = False) -> None:
        from napari_samlabel.curate.queue import read_queue
        from napari_samlabel.io.voc_project import voc_id

        data = read_queue(Path(queue)) if isinstance(queue, (str, os.PathLike)) else queue
        ids = list(image_ids)
        exact = set(ids)
        by_voc: dict[str, list[str]] = {}
        for iid in ids:
            by_voc.setdefault(voc_id(iid), []).append(iid)
        self._decided = decided or (lambda _iid: False)
        self.items: list[ReviewItem] = []
        self.unmatched: list[str] = []
        taken: set[str] = set()
        records = sorted(data.get("images") or [],
                         key=lambda r: (r.get("rank") is None, r.get("rank") or 0))
        for rec in records:
            a = ImageAssessment.from_dict(rec)
            if only_flagged and not a.flags:
                continue
            if a.image_id in exact:
                target: str | None = a.image_id
            else:
                candidates = by_voc.get(a.image_id, [])
                target = candidates[0] if len(candidates) == 1 else None
            if target is None or target in taken:
                self.unmatched.append(a.image_id)
                continue
            taken.add(target)
            self.items.append(ReviewItem(target, a))
        self._pos: int | None = None

    def __len__(self) -> int:
        return len(self.items)

    @property
    def position(self) -> int | None:
        """Index of the current image in :attr:`items` (0 = worst), None without one."""
        return self._pos

    def index_of(self, image_id: str) -> int | None:
        """Index in :attr:`items` of the project image ``image_id`` (None: not queued)."""
        return next((k for k, it in enumerate(self.items) if it.image_id == image_id), None)

    @property
    def current(self) -> ReviewItem | None:
        """The image under review (None before the first move and after the last)."""
        return None if self._pos is None else self.items[self._pos]

    def is_decided(self, item: ReviewItem) -> bool:
        """True when the project has a decision for ``item``'s image."""
        return bool(self._decided(item.image_id))

    def remaining(self) -> int:
        """Images without a decision yet."""
        return sum(1 for it in self.items if not self.is_decided(it))

    def next(self, skip_decided: bool = True) -> ReviewItem | None:
        """Move to the next image (worst first); None, and no current image, at the end.

        With ``skip_decided``, images that have a decision are passed over.
        """
        start = 0 if self._pos is None else self._pos + 1
        for k in range(start, len(self.items)):
            if not (skip_decided and self.is_decided(self.items[k])):
                self._pos = k
                return self.items[k]
        self._pos = None
        return None

    def previous(self, skip_decided: bool = False) -> ReviewItem | None:
        """Move back one image (decided ones included, to revise them); None at the start.

        At the start the current image stays where it is.
        """
        end = len(self.items) if self._pos is None else self._pos
        for k in range(end - 1, -1, -1):
            if not (skip_decided and self.is_decided(self.items[k])):
                self._pos = k
                return self.items[k]
        return None

    def go_to(self, image_id: str) -> ReviewItem:
        """Make the project image ``image_id`` current.

        Raises
        ------
        KeyError
            If the queue has no entry for it.
        """
        k = self.index_of(image_id)
        if k is None:
            raise KeyError(f"image {image_id!r} is not in the curation queue")
        self._pos = k
        return self.items[k]

    def restart(self) -> ReviewItem | None:
        """Go back to the worst undecided image (after a restart of the session, say)."""
        self._pos = None
        return self.next()
