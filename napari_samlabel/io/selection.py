"""Which images of a project an export writes, and which of them go into train and val.

The rules, for every export format (by status, see :class:`napari_samlabel.core.document.
ImageStatus`):

- ``done``: written and put into train or val: the split stored in the project
  (:meth:`Project.split <napari_samlabel.io.project.Project.split>`, e.g. from an imported
  VOC set) when there is one, otherwise the export's seeded split (``fresh_split`` ignores
  the stored splits).
- ``flagged`` (a failure the annotator or the curation queue marked): written, but kept out
  of train and val (*excluded*), unless ``include_flagged``.
- ``in_progress``: left out (its label map is incomplete: unlabelled objects would be
  taught as background) unless ``include_unfinished``.
- ``new``: never written (nothing annotated).

Review decisions (:meth:`Project.set_review <napari_samlabel.io.project.Project.
set_review>`) and an exclude list narrow this down: an image whose decision is ``rejected``
or whose id is in ``exclude`` is written but excluded, whatever the other options;
``needs_work`` is treated like ``flagged``.

:func:`select_images` applies these rules once; an export format only writes what the
:class:`Selection` says (see :func:`napari_samlabel.io.voc_project.export_project`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from napari_samlabel.core.document import ImageStatus
from napari_samlabel.io.project import Project

#: Why a written image is kept out of train and val (keys of :attr:`Selection.excluded`),
#: in the order the rules are tried: the first that applies is the reason.
EXCLUDE_REASONS = ("rejected", "exclude list", "flagged", "needs_work")


@dataclass(frozen=True)
class Selection:
    """The images an export writes, and where each goes.

    Attributes
    ----------
    written : tuple of str
        Every image to write, in project order (those of :attr:`splits` and of
        :attr:`excluded`).
    splits : dict
        ``{image_id: split}`` of the written images that go into train or val: the stored
        split (``"train"`` / ``"val"``), or None for the export's seeded split.
    excluded : dict
        ``{reason: [image ids]}`` (every reason of :data:`EXCLUDE_REASONS`, in that order)
        of the images written but kept out of train and val.
    skipped : dict
        ``{status: [image ids]}`` (every :class:`ImageStatus` value) of the images not
        written.
    unknown_excluded : list of str
        Ids of the exclude list that name no image of the project (sorted).
    stored_splits : int
        Number of images whose split comes from the project rather than the seeded split.
    """

    written: tuple[str, ...] = ()
    splits: dict[str, str | None] = field(default_factory=dict)
    excluded: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    unknown_excluded: list[str] = field(default_factory=list)
    stored_splits: int = 0

    def is_excluded(self, image_id: str) -> bool:
        """True if ``image_id`` is written but kept out of train and val."""
        return image_id not in self.splits and image_id in self.written


def select_images(
    project: Project,
    *,
    include_flagged: bool = False,
    include_unfinished: bool = False,
    fresh_split: bool = False,
    exclude: Iterable[str] = (),
    alias: Callable[[str], str] | None = None,
) -> Selection:
    """Apply the export rules (module docstring) to the images of ``project``.

    Parameters
    ----------
    project : Project
        The project; only its image entries (status, split, review) are read.
    include_flagged : bool
        Put ``flagged`` and ``needs_work`` images into train and val too.
    include_unfinished : bool
        Write ``in_progress`` images too.
    fresh_split : bool
        Ignore the stored splits: every image that goes into train or val gets None (the
        seeded split).
    exclude : iterable of str
        Image ids to keep out of train and val.
    alias : callable, optional
        Another name an image may be listed under in ``exclude`` (an export format's file
        id, e.g. :func:`napari_samlabel.io.voc_project.voc_id`).

    Returns
    -------
    Selection
    """
    exclude_set = set(exclude)
    name = alias or (lambda image_id: image_id)
    known = set(project.image_ids) | {name(i) for i in project.image_ids}
    written: list[str] = []
    splits: dict[str, str | None] = {}
    skipped: dict[str, list[str]] = {s.value: [] for s in ImageStatus}
    excluded: dict[str, list[str]] = {r: [] for r in EXCLUDE_REASONS}
    stored = 0
    for entry in project:
        status = entry.status
        if status == ImageStatus.NEW or (status == ImageStatus.IN_PROGRESS
                                         and not include_unfinished):
            skipped[status.value].append(entry.image_id)
            continue
        written.append(entry.image_id)
        decision = entry.review.decision if entry.review is not None else None
        reason = None
        if decision == "rejected":
            reason = "rejected"
        elif entry.image_id in exclude_set or name(entry.image_id) in exclude_set:
            reason = "exclude list"
        elif status == ImageStatus.FLAGGED and not include_flagged:
            reason = "flagged"
        elif decision == "needs_work" and not include_flagged:
            reason = "needs_work"
        if reason is not None:
            excluded[reason].append(entry.image_id)
        elif entry.split is not None and not fresh_split:
            stored += 1
            splits[entry.image_id] = entry.split
        else:
            splits[entry.image_id] = None
    return Selection(tuple(written), splits, excluded, skipped, sorted(exclude_set - known),
                     stored)
