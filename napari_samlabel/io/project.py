"""The project folder: the annotation state on disk, autosaved after every change.

Layout (format documented in ``docs/project-format.md``)::

    PROJECT/
        samlabel-project.json          schema version, classes, images (relative paths,
                                       size, status, split, review decision)
        samlabel-session.json          where the annotator was (image, class); disposable
        annotations/<image_id>/
            objects.json               accepted objects: ids, classes, prompts, model, scores,
                                       timestamps, mask file names
            obj-<id>-<hash>.png        one 1-bit PNG per object mask

Why one PNG per object (and not one instance PNG per image): accepting an object writes one
small new PNG and rewrites one short JSON file, whatever the number of objects; the masks
keep their overlapping parts (a composed instance map would lose the part of an object hidden
under another, which reopening the object needs); and the mask files are named by their
content hash, so ``objects.json`` switches from the old set of masks to the new one in a single
atomic rename. A crash at any moment leaves either the previous or the new annotation,
never a JSON pointing at a half-written mask. Unreferenced mask files (left by a crash between
the two renames, or replaced by an edit) are removed after the next successful save.

All writes go through :mod:`napari_samlabel.core.fsutil` (temporary file, fsync, rename).
Nothing is loaded with pickle: JSON and PNG only. Readers validate every field and raise
:class:`~napari_samlabel.io.project_schema.ProjectError` naming the file and the field.

Several sessions (processes, machines sharing the folder) may write one project at once:
per-image saves are a compare-and-swap on the revision in ``objects.json`` (see
:mod:`~napari_samlabel.io.project_store`), and the project and session files are merged on
write: under a short lock the file is re-read and only this writer's own changes (statuses,
splits, reviews, added images and classes) are applied to it, so nobody's decision made in
another session is reverted from a stale copy.

:class:`Project` is the one entry point; the files are handled by three modules beside it:
:mod:`~napari_samlabel.io.project_schema` (file names, schema versions and migrations,
validation), :mod:`~napari_samlabel.io.project_store` (the per-image object files) and
:mod:`~napari_samlabel.io.project_session` (where the annotator was).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_samlabel import __version__
from napari_samlabel.core.classes import ClassTable, as_class_table
from napari_samlabel.core.document import AnnotationDocument, ImageStatus
from napari_samlabel.core.filelock import FileLock
from napari_samlabel.core.fsutil import atomic_write_text
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.io.images import image_id as stem_of
from napari_samlabel.io.images import image_size, list_images
from napari_samlabel.io.project_schema import (
    ANNOTATIONS_DIR,
    OBJECTS_FILE,
    PROJECT_FILE,
    PROJECT_FORMAT,
    SCHEMA_VERSION,
    ImageEntry,
    ProjectError,
    Review,
    check_image_id,
    check_split,
    make_review,
    read_project_file,
)
from napari_samlabel.io.project_session import SessionFile
from napari_samlabel.io.project_store import ObjectStore


class Project:
    """An annotation project folder.

    Use :meth:`create` or :meth:`open`; do not call the constructor directly.
    """

    def __init__(self, folder: Path, classes: ClassTable, images: Iterable[ImageEntry],
                 created: float | None = None) -> None:
        self.folder = Path(folder).absolute()
        self.classes = classes
        self._images: dict[str, ImageEntry] = {}
        for entry in images:
            self._images[entry.image_id] = entry
        # The entries and classes as last read from or written to disk: what differs from
        # them in memory is this writer's own change, the only thing a write applies.
        self._base: dict[str, ImageEntry] = dict(self._images)
        self._base_classes: tuple[str, ...] = classes.names
        self._disk_stamp: tuple[int, int, int] | None = None  # project file after our write
        self.created = time.time() if created is None else created
        self._store = ObjectStore(self.folder / ANNOTATIONS_DIR)
        self._session = SessionFile(self.folder)
        self._batch_depth = 0
        self._dirty = False

    # -- creating and opening ---------------------------------------------------------------
    @staticmethod
    def is_project(folder: str | os.PathLike[str]) -> bool:
        """True if ``folder`` holds a ``samlabel-project.json``."""
        return (Path(folder) / PROJECT_FILE).is_file()

    @classmethod
    def create(
        cls,
        folder: str | os.PathLike[str],
        images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        classes: ClassTable | Sequence[str] | None = None,
    ) -> Project:
        """Create a new project in ``folder`` (created if needed).

        Parameters
        ----------
        folder : path
            Project folder. It may already hold other files, but not a project.
        images : path or sequence of paths
            A folder of images (see :func:`napari_samlabel.io.images.list_images`) or image
            files. Paths are stored relative to the project folder.
        classes : ClassTable, sequence of str or None
            Class list (None: the 21 VOC classes).

        Raises
        ------
        FileExistsError
            If ``folder`` already holds a project.
        ProjectError
            On duplicate image ids or unreadable images (named).
        """
        folder = Path(folder).absolute()
        if cls.is_project(folder):
            raise FileExistsError(f"{folder} already holds a project ({PROJECT_FILE})")
        project = cls(folder, as_class_table(classes), ())
        project._base_classes = ()
        if isinstance(images, (str, os.PathLike)):
            one = Path(images)
            paths = list_images(one) if one.is_dir() else [one]
        else:
            paths = [Path(p) for p in images]
        project._add(paths)
        folder.mkdir(parents=True, exist_ok=True)
        project._write_project_file()
        return project

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> Project:
        """Open the project in ``folder``.

        Raises
        ------
        ProjectError
            If the project file is missing, malformed or from a newer schema version; the
            message names the file and the field.
        """
        folder = Path(folder).absolute()
        path = folder / PROJECT_FILE
        if not path.is_file():
            raise ProjectError(f"{folder} is not a napari-samlabel project: {PROJECT_FILE} "
                               "not found")
        classes, entries, created = read_project_file(path)
        return cls(folder, classes, entries, created)

    @classmethod
    def open_or_create(
        cls,
        folder: str | os.PathLike[str],
        images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        classes: ClassTable | Sequence[str] | None = None,
    ) -> Project:
        """Open the project in ``folder``, or create it from ``images`` and ``classes``."""
        if cls.is_project(folder):
            return cls.open(folder)
        return cls.create(folder, images, classes)

    # -- images -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._images)

    def __iter__(self) -> Iterator[ImageEntry]:
        return iter(list(self._images.values()))

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._images

    @property
    def image_ids(self) -> list[str]:
        """Image ids in project order."""
        return list(self._images)

    def entry(self, image_id: str) -> ImageEntry:
        """The :class:`ImageEntry` of ``image_id`` (``KeyError`` naming the id if absent)."""
        try:
            return self._images[image_id]
        except KeyError:
            raise KeyError(f"image {image_id!r} is not in project {self.folder}") from None

    def image_path(self, image_id: str) -> Path:
        """Absolute path of the image file."""
        return (self.folder / self.entry(image_id).path).resolve()

    def status(self, image_id: str) -> ImageStatus:
        """Status of ``image_id``."""
        return self.entry(image_id).status

    def next_unfinished(self, after: str | None = None) -> str | None:
        """First image after ``after`` (wrapping around) whose status is new or in progress."""
        ids = self.image_ids
        start = ids.index(after) + 1 if after in self._images else 0
        for iid in ids[start:] + ids[:start]:
            if self._images[iid].status in (ImageStatus.NEW, ImageStatus.IN_PROGRESS):
                return iid
        return None

    def add_images(self, paths: Sequence[str | os.PathLike[str]]) -> list[str]:
        """Add image files; return their ids. Duplicate ids are an error (nothing added)."""
        ids = self._add([Path(p) for p in paths])
        self._write_project_file()
        return ids

    def add_new_images(self, folder: str | os.PathLike[str]) -> list[str]:
        """Add the images of ``folder`` that the project does not list yet; return their ids.

        For a folder that received new images since the project was made. A file whose id
        is already taken by another file is skipped with a warning (ids must be unique),
        so a stray ``x.png`` next to ``x.jpg`` does not stop the project from opening.
        """
        import warnings

        known = {self.image_path(i) for i in self._images}
        fresh: list[Path] = []
        for p in list_images(folder):
            if p.resolve() in known:
                continue
            iid = stem_of(p)
            if iid in self._images or iid in {stem_of(q) for q in fresh}:
                warnings.warn(f"{p} is not added: the id {iid!r} is already used by "
                              f"{self.image_path(iid) if iid in self._images else 'another file'}",
                              stacklevel=2)
                continue
            fresh.append(p)
        return self.add_images(fresh) if fresh else []

    def _add(self, paths: Sequence[Path]) -> list[str]:
        new: dict[str, ImageEntry] = {}
        origin: dict[str, Path] = {}
        for p in paths:
            iid = check_image_id(stem_of(p), f"image {p}")
            if iid in self._images or iid in new:
                other = origin.get(iid) or self.image_path(iid)
                raise ProjectError(f"two images have the id {iid!r}: {other} and {p}; image "
                                   "file names must be unique without their extension")
            try:
                shape = image_size(p)
            except ValueError as exc:
                raise ProjectError(str(exc)) from exc
            new[iid] = ImageEntry(iid, self._relative(p), shape)
            origin[iid] = p
        self._images.update(new)
        return list(new)

    def _relative(self, path: Path) -> str:
        path = Path(path).absolute()
        try:
            return Path(os.path.relpath(path, self.folder)).as_posix()
        except ValueError:  # another drive on Windows
            return path.as_posix()

    # -- classes -------------------------------------------------------------------------------
    def add_class(self, name: str) -> int:
        """Append a class (existing indices keep their meaning); return its index."""
        if name in self.classes:
            return self.classes.index(name)
        self.classes = ClassTable(self.classes.names + (name,))
        self._write_project_file()  # may merge classes another session added meanwhile
        return self.classes.index(name)

    # -- status ---------------------------------------------------------------------------------
    def set_status(self, image_id: str, status: ImageStatus | str) -> None:
        """Set and save the status of ``image_id``."""
        entry = self.entry(image_id)
        status = ImageStatus(status)
        if entry.status != status:
            self._images[image_id] = replace(entry, status=status)
            self._write_project_file()

    # -- split ----------------------------------------------------------------------------------
    def split(self, image_id: str) -> str | None:
        """The split fixed for ``image_id`` (``"train"``, ``"val"``), or None (seeded at export)."""
        return self.entry(image_id).split

    def set_split(self, image_id: str, split: str | None) -> None:
        """Fix (or with None, release) the split of ``image_id`` and save.

        Raises
        ------
        KeyError
            If the image is not in the project.
        ProjectError
            If ``split`` is not ``"train"``, ``"val"`` or None.
        """
        entry = self.entry(image_id)
        check_split(split, f"image {image_id}")
        if entry.split != split:
            self._images[image_id] = replace(entry, split=split)
            self._write_project_file()

    # -- review decisions -----------------------------------------------------------------------
    def review(self, image_id: str) -> Review | None:
        """The review decision of ``image_id``, or None if it has not been reviewed."""
        return self.entry(image_id).review

    def set_review(self, image_id: str, decision: str, reason: str = "",
                   note: str = "") -> Review:
        """Record a review decision for ``image_id`` (time: now) and save it; return it.

        Parameters
        ----------
        image_id : str
            An image of the project.
        decision : {"accepted", "rejected", "needs_work"}
            What the reviewer decided. An export leaves ``rejected`` images out of train and
            val and ``needs_work`` images out of train and val unless ``include_flagged``.
        reason : str
            A short single-line tag (at most 100 characters), e.g. one of
            :data:`REVIEW_REASONS`; free text is allowed.
        note : str
            Free text.

        Raises
        ------
        KeyError
            If the image is not in the project.
        ProjectError
            If the decision is unknown or the reason is not one short line; nothing is
            saved then.
        """
        entry = self.entry(image_id)
        review = make_review(decision, reason, note, where=f"image {image_id}")
        self._images[image_id] = replace(entry, review=review)
        self._write_project_file()
        return review

    def clear_review(self, image_id: str) -> None:
        """Remove the review decision of ``image_id`` (if any) and save."""
        entry = self.entry(image_id)
        if entry.review is not None:
            self._images[image_id] = replace(entry, review=None)
            self._write_project_file()

    def reviews(self) -> dict[str, Review]:
        """``{image_id: Review}`` of every reviewed image, in project order."""
        return {i: e.review for i, e in self._images.items() if e.review is not None}

    # -- where the annotator was ------------------------------------------------------------------
    def last_position(self) -> tuple[str | None, int | None]:
        """``(image_id, class_id)`` saved by :meth:`set_last_position`, or ``(None, None)``.

        The position lives in ``samlabel-session.json``, apart from the project file. A
        missing file means no position; an unreadable or malformed one, or one naming an
        image or class the project no longer has, gives a warning and None for that part:
        losing the position must never stop a project from opening.
        """
        state = self._session.state()
        iid, cid = state.get("image_id"), state.get("class_id")
        path = self._session.path
        if iid is not None and (not isinstance(iid, str) or iid not in self._images):
            warnings.warn(f"{path}: image {iid!r} is not in the project; ignoring it",
                          stacklevel=2)
            iid = None
        if cid is not None and (isinstance(cid, bool) or not isinstance(cid, int)
                                or not 0 < cid < len(self.classes)):
            warnings.warn(f"{path}: class {cid!r} is not a class of the project; ignoring it",
                          stacklevel=2)
            cid = None
        return iid, cid

    def set_last_position(self, image_id: str | None, class_id: int | None) -> None:
        """Remember where the annotator is (image and class) in ``samlabel-session.json``.

        Cheap enough to call on every image or class change: it writes a file of about 150
        bytes (atomically) and never the project file; an unchanged position is not
        rewritten.

        Raises
        ------
        KeyError
            If ``image_id`` is not an image of the project.
        ValueError
            If ``class_id`` is not a class index of the project (1..n-1).
        """
        if image_id is not None:
            self.entry(image_id)
        if class_id is not None:
            if isinstance(class_id, bool) or not isinstance(class_id, (int, np.integer)) \
                    or not 0 < int(class_id) < len(self.classes):
                raise ValueError(f"class {class_id!r} is not a class of this project "
                                 f"(1..{len(self.classes) - 1})")
            class_id = int(class_id)
        self._session.update(image_id=image_id, class_id=class_id)

    def last_review_queue(self) -> Path | None:
        """The curation queue last loaded for review (:meth:`set_last_review_queue`), or None.

        The path as saved, made absolute against the project folder; it may no longer exist
        (the caller checks). A value that is not a string gives a warning and None.
        """
        value = self._session.state().get("review_queue")
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            warnings.warn(f"{self._session.path}: review_queue {value!r} is not a "
                          "path; ignoring it", stacklevel=2)
            return None
        return self.folder / value

    def set_last_review_queue(self, path: str | os.PathLike[str] | None) -> None:
        """Remember ``path`` (a ``queue.json``), or forget it with None, in the session file.

        Saved relative to the project folder when it lies inside it (the project can move),
        absolute otherwise.
        """
        value = None
        if path is not None:
            full = Path(path).absolute()
            try:
                value = full.relative_to(self.folder.absolute()).as_posix()
            except ValueError:
                value = str(full)
        self._session.update(review_queue=value)

    # -- documents ------------------------------------------------------------------------------
    def annotation_dir(self, image_id: str) -> Path:
        """Folder of the annotation files of ``image_id``."""
        self.entry(image_id)
        return self._store.image_dir(image_id)

    def load_document(self, image_id: str, **kwargs: Any) -> AnnotationDocument:
        """Load the annotation of ``image_id`` as a fresh :class:`AnnotationDocument`.

        ``kwargs`` go to :class:`AnnotationDocument` (``class_id``, ``max_undo``); the
        document gets the project's class table, so it knows which objects are parts. An
        image without saved objects gives an empty document.

        Raises
        ------
        ProjectError
            On a malformed ``objects.json`` or mask PNG (file and field named).
        """
        entry = self.entry(image_id)
        objects = self._store.read(image_id, entry.shape, self.classes)
        status = entry.status
        if objects and status == ImageStatus.NEW:
            status = ImageStatus.IN_PROGRESS  # a crash between the two saves of an accept
        kwargs.setdefault("classes", self.classes)
        try:
            return AnnotationDocument(image_id, entry.shape, objects, status, **kwargs)
        except ValueError as exc:
            raise ProjectError(f"{self.annotation_dir(image_id) / OBJECTS_FILE}: {exc}") from exc

    def read_objects(self, image_id: str) -> list[AnnotatedObject]:
        """The accepted objects of ``image_id`` as stored (without building a document).

        A read to look, not to edit: a later :meth:`save_document` of a document loaded
        before still detects another session's save in between.
        """
        return self._store.read(image_id, self.entry(image_id).shape, self.classes,
                                track=False)

    def save_document(self, doc: AnnotationDocument) -> None:
        """Save the accepted objects and status of ``doc`` (atomic; cheap for one accept).

        Writes the PNG of every mask not saved before, then ``objects.json`` in one atomic
        rename, then the project file if the status changed, then deletes mask files no
        longer referenced. The current (unaccepted) object is not saved. Parent links of
        parts are written as :func:`napari_samlabel.core.objects.resolve_parents` gives
        them under the project's class table.
        """
        entry = self.entry(doc.image_id)
        if tuple(doc.shape) != entry.shape:
            raise ProjectError(f"image {doc.image_id}: document shape {doc.shape} does not "
                               f"match the project's image size {entry.shape}")
        self._store.write(doc, self.classes)
        if doc.status != entry.status:
            self.set_status(doc.image_id, doc.status)

    # -- the project file -----------------------------------------------------------------------
    @contextlib.contextmanager
    def batch(self) -> Iterator[Project]:
        """Defer writing ``samlabel-project.json`` to the end of the block.

        For bulk changes (importing thousands of images, setting many statuses): each
        change would otherwise rewrite the whole project file. Annotation files are still
        written immediately. If the block raises, the project file is not written (the
        in-memory project keeps the changes).
        """
        self._batch_depth += 1
        try:
            yield self
        except BaseException:
            self._batch_depth -= 1
            raise
        self._batch_depth -= 1
        if self._batch_depth == 0 and self._dirty:
            self._write_project_file()

    def _write_project_file(self) -> None:
        if self._batch_depth:
            self._dirty = True
            return
        self._dirty = False
        path = self.folder / PROJECT_FILE
        with FileLock(path.with_name(PROJECT_FILE + ".lock"), what=f"project file {path}"):
            self._merge_disk(path)
            payload = {
                "format": PROJECT_FORMAT,
                "schema_version": SCHEMA_VERSION,
                "written_by": f"napari-samlabel {__version__}",
                "created": self.created,
                "modified": time.time(),
                "classes": self.classes.to_list(),
                "images": [e.to_dict() for e in self._images.values()],
            }
            atomic_write_text(path, json.dumps(payload, indent=1) + "\n")
            self._base = dict(self._images)
            self._base_classes = self.classes.names
            self._disk_stamp = _stamp(path)

    def _merge_disk(self, path: Path) -> None:
        """Re-read the project file and apply only this writer's changes to it (lock held).

        A field (status, split, review) of an image is taken from memory only if this writer
        changed it since its last read or write; images and classes this writer added are
        appended. Everything else is as on disk, so another session's decisions survive.
        """
        stamp = _stamp(path)
        if stamp is None or stamp == self._disk_stamp:
            return  # absent, or as this writer left it: nothing to merge
        classes, entries, created = read_project_file(path)
        merged = {e.image_id: e for e in entries}
        for iid, mine in self._images.items():
            base = self._base.get(iid)
            theirs = merged.get(iid)
            if theirs is None or base is None:
                merged.setdefault(iid, mine)
                continue
            for field in ("status", "split", "review"):
                if getattr(mine, field) != getattr(base, field):
                    theirs = replace(theirs, **{field: getattr(mine, field)})
            merged[iid] = theirs
        names = list(classes.names)
        names += [n for n in self.classes.names if n not in names
                  and n not in self._base_classes]
        if tuple(names) != self.classes.names:
            self.classes = ClassTable(tuple(names))
        self._images = merged
        if created is not None:
            self.created = created


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """``(inode, size, mtime_ns)`` of ``path`` (every save is a rename: a new inode), or None."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns
