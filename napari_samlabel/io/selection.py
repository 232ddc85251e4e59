"""Which images of a project an export writes, and which of them go into train and val.

The rules, for every export format (by status, see :class:`napari_samlabel.core.document.
ImageStatus`):

- ``done``: written and put into train or val: the split stored in the project
  (:meth:`Project.split <napari_samlabel.io.project.Project.split>`, e.g. from an imported
  VOC set) when there is one, otherwise the export's seeded split (``fresh_split`` ignores
  the stored splits).
- ``in_progress`` (or ``new``) with accepted objects: written like ``done`` by default, what
  an annotator who accepted objects but never pressed "done" expects; left out with
  ``only_done`` (the strict mode: only images marked done or flagged). Without accepted
  objects an image is never written (nothing is annotated: it would teach all background).
- ``flagged`` (a failure the annotator or the curation queue marked): written, but kept out
  of train and val (*excluded*), unless ``include_flagged``.

Review decisions (:meth:`Project.set_review <napari_samlabel.io.project.Project.
set_review>`) and an exclude list narrow this down: an image whose decision is ``rejected``
or whose id is in ``exclude`` is written but excluded, whatever the other options;
``needs_work`` is treated like ``flagged``.

:func:`select_images` applies these rules once; an export format only writes what the
:class:`Selection` says (see :func:`napari_samlabel.io.voc_project.export_project` and
:func:`napari_samlabel.io.coco.export_coco`), and refuses before writing anything when
:meth:`Selection.check_not_empty` finds no image for train or val.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from napari_samlabel.core.document import ImageStatus
from napari_samlabel.io.project import Project
from napari_samlabel.io.project_schema import OBJECTS_FILE, ProjectError, read_json

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
        ``{status: [image ids]}`` of the images not written: every :class:`ImageStatus`
        value (``new`` / ``in_progress`` ones only with ``only_done``), and
        ``"unannotated"``: images not marked done without an accepted object.
    unknown_excluded : list of str
        Ids of the exclude list that name no image of the project (sorted).
    stored_splits : int
        Number of images whose split comes from the project rather than the seeded split.
    only_done : bool
        Whether the strict mode chose (see :func:`select_images`).
    """

    written: tuple[str, ...] = ()
    splits: dict[str, str | None] = field(default_factory=dict)
    excluded: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, list[str]] = field(default_factory=dict)
    unknown_excluded: list[str] = field(default_factory=list)
    stored_splits: int = 0
    only_done: bool = False

    def is_excluded(self, image_id: str) -> bool:
        """True if ``image_id`` is written but kept out of train and val."""
        return image_id not in self.splits and image_id in self.written

    def check_not_empty(self, project: Project) -> None:
        """Raise :class:`NothingToExport` when no image would go into train or val.

        Called by every export before it writes anything, so that an export of an
        unfinished folder says why it is empty instead of writing an empty skeleton.
        """
        if self.splits:
            return
        why = []
        if self.skipped.get("unannotated"):
            why.append(f"{len(self.skipped['unannotated'])} images have no accepted object")
        unfinished = self.skipped.get("new", []) + self.skipped.get("in_progress", [])
        if unfinished:
            why.append(f"{len(unfinished)} images are not marked done (--only-done leaves "
                       "them out)")
        for reason, ids in self.excluded.items():
            if ids:
                what = "in the --exclude list" if reason == "exclude list" else reason
                hint = (" (--include-flagged puts them into train/val)"
                        if reason in ("flagged", "needs_work") else "")
                why.append(f"{len(ids)} images are {what}{hint}")
        if not why:
            why.append("the project has no images")
        lines = [f"nothing to export from {project.folder}: no image would go into train or "
                 "val", *why]
        raise NothingToExport("; ".join(lines))


class NothingToExport(ProjectError):
    """No image of the project would be exported into train or val (nothing is written)."""


def select_images(
    project: Project,
    *,
    include_flagged: bool = False,
    only_done: bool = False,
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
    only_done : bool
        The strict mode: write only images marked ``done`` or ``flagged``; by default
        ``in_progress`` (and ``new``) images with accepted objects are written too.
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
    skipped["unannotated"] = []
    excluded: dict[str, list[str]] = {r: [] for r in EXCLUDE_REASONS}
    stored = 0
    for entry in project:
        status = entry.status
        if status in (ImageStatus.NEW, ImageStatus.IN_PROGRESS):
            if only_done:
                skipped[status.value].append(entry.image_id)
                continue
            if not has_accepted_objects(project, entry.image_id):
                skipped["unannotated"].append(entry.image_id)
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
                     stored, only_done)


def has_accepted_objects(project: Project, image_id: str) -> bool:
    """True when ``image_id`` has at least one accepted object saved (reads no mask)."""
    path = project.annotation_dir(image_id) / OBJECTS_FILE
    if not path.is_file():
        return False
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("objects"), list):
        raise ProjectError(f"{path}: field 'objects' must be a list")
    return bool(data["objects"])


def selection_notes(stored_splits: int, skipped: Mapping[str, Sequence[str]],
                    dropped_objects: Sequence[Any]) -> str:
    """What an export's summary line says about the selection, in every format alike.

    ``"; 2 images kept their stored split; skipped 3 without accepted objects; ..."``
    (empty when there is nothing to say).
    """
    out = ""
    if stored_splits:
        out += f"; {stored_splits} images kept their stored split"
    for status, ids in skipped.items():
        if ids:
            what = "without accepted objects" if status == "unannotated" else status
            out += f"; skipped {len(ids)} {what}"
    if dropped_objects:
        out += f"; {len(dropped_objects)} fully hidden objects left out"
    return out
