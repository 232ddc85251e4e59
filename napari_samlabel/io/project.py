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
:class:`ProjectError` naming the file and the field. One process writes a project at a time.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from napari_samlabel import __version__
from napari_samlabel.core.classes import ClassTable, as_class_table
from napari_samlabel.core.document import AnnotationDocument, ImageStatus
from napari_samlabel.core.fsutil import atomic_write_bytes, atomic_write_text
from napari_samlabel.core.objects import MAX_OBJECTS, AnnotatedObject, resolve_parents
from napari_samlabel.core.prompts import ObjectPrompts
from napari_samlabel.io.images import image_id as stem_of
from napari_samlabel.io.images import image_size, list_images

#: Current on-disk schema version of the project and annotation files. Bump on incompatible
#: changes and add a migration to :data:`_MIGRATIONS`. History: 1 first version; 2 adds
#: ``images[].split``, ``images[].review`` and ``objects[].attributes``; 3 adds
#: ``objects[].parent_id`` and ``objects[].parent_fixed`` (object -> part links).
SCHEMA_VERSION = 3
PROJECT_FILE = "samlabel-project.json"
SESSION_FILE = "samlabel-session.json"
ANNOTATIONS_DIR = "annotations"
OBJECTS_FILE = "objects.json"
PROJECT_FORMAT = "samlabel-project"
ANNOTATION_FORMAT = "samlabel-annotation"
SESSION_FORMAT = "samlabel-session"
SESSION_SCHEMA_VERSION = 1
_MASK_CACHE_IMAGES = 4

#: Dataset splits an image can be given (``None``: join the seeded split at export).
SPLITS = ("train", "val")
#: Review decisions of the curation workflow (see :meth:`Project.set_review`).
REVIEW_DECISIONS = ("accepted", "rejected", "needs_work")
#: Suggested reason tags for a review; any other short single-line text is allowed too.
REVIEW_REASONS = ("wrong object", "missed object", "boundary", "wrong class", "other")
MAX_REASON_CHARS = 100
MAX_NOTE_CHARS = 10_000
#: Object attributes with a fixed type (VOC's per-object flags); others may hold any
#: JSON scalar.
OBJECT_ATTRIBUTES: dict[str, type] = {"pose": str, "truncated": bool, "difficult": bool}


class ProjectError(ValueError):
    """A project file is missing, malformed, or from a newer version; names file and field."""


@dataclass(frozen=True)
class Review:
    """A curation decision about one image (:meth:`Project.set_review`).

    Attributes
    ----------
    decision : {"accepted", "rejected", "needs_work"}
        ``rejected`` images never go into train or val; ``needs_work`` ones are kept out
        of train like flagged images (see :func:`napari_samlabel.io.voc_project.
        export_project`); ``accepted`` changes nothing in an export.
    reason : str
        A short single-line tag (:data:`REVIEW_REASONS` suggests some), or ``""``.
    note : str
        Free text, or ``""``.
    time : float
        POSIX time of the decision.
    """

    decision: str
    reason: str = ""
    note: str = ""
    time: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON record (``images[].review`` of ``samlabel-project.json``)."""
        return {"decision": self.decision, "reason": self.reason, "note": self.note,
                "time": self.time}


@dataclass(frozen=True)
class ImageEntry:
    """One image of a project."""

    image_id: str
    path: str  # as stored: relative to the project folder (POSIX separators) or absolute
    shape: tuple[int, int]
    status: ImageStatus = ImageStatus.NEW
    split: str | None = None  # "train" / "val" fixed by the user or an imported VOC set
    review: Review | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON record of ``samlabel-project.json``."""
        rec: dict[str, Any] = {"id": self.image_id, "path": self.path,
                               "height": self.shape[0], "width": self.shape[1],
                               "status": self.status.value}
        if self.split is not None:
            rec["split"] = self.split
        if self.review is not None:
            rec["review"] = self.review.to_dict()
        return rec


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------
def _field(data: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(data, dict):
        raise ProjectError(f"{where}: expected an object, got {type(data).__name__}")
    if key not in data:
        raise ProjectError(f"{where}: missing field '{key}'")
    value = data[key]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ProjectError(f"{where}: field '{key}' must be {_kind_name(kind)}, got {value!r}")
    if not isinstance(value, kind):
        raise ProjectError(f"{where}: field '{key}' must be {_kind_name(kind)}, got "
                           f"{type(value).__name__} {value!r:.60}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "an object", bool: "true/false", type(None): "null"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError(f"{path} not found") from None
    except OSError as exc:
        raise ProjectError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProjectError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: "
                           f"{exc.msg}") from exc


def _check_schema(data: Any, path: Path, fmt: str) -> dict[str, Any]:
    """Check format and version; return the content migrated to :data:`SCHEMA_VERSION`."""
    if not isinstance(data, dict):
        raise ProjectError(f"{path}: expected a JSON object at the top level")
    if data.get("format") != fmt:
        raise ProjectError(f"{path}: field 'format' is {data.get('format')!r}, expected {fmt!r}")
    version = _field(data, "schema_version", int, str(path))
    if version > SCHEMA_VERSION:
        raise ProjectError(
            f"{path} was written by a newer napari-samlabel (schema version {version}); this "
            f"version {__version__} reads schema versions up to {SCHEMA_VERSION}. Upgrade "
            "napari-samlabel to open it.")
    if version < 1:
        raise ProjectError(f"{path}: field 'schema_version' is {version}, expected >= 1")
    while version < SCHEMA_VERSION:
        data = _MIGRATIONS[(fmt, version)](data)
        version += 1
        data["schema_version"] = version
    return data


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    # Version 2 only adds optional fields (images[].split, images[].review,
    # objects[].attributes) whose absence means what version 1 meant: no fixed split, no
    # review, no attributes. A version 1 file therefore reads unchanged.
    return dict(data)


def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    # Version 3 adds objects[].parent_id / parent_fixed. Absent means "no explicit parent":
    # a part of a version 2 file is linked to its whole from the pixels when it is loaded,
    # as version 2 had no links to keep.
    return dict(data)


#: ``(format, version) -> function`` turning a file's content of ``version`` into
#: ``version + 1``; applied in a chain when an older file is read. Files are rewritten in the
#: current version only when something changes.
_MIGRATIONS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {
    (PROJECT_FORMAT, 1): _v1_to_v2,
    (ANNOTATION_FORMAT, 1): _v1_to_v2,
    (PROJECT_FORMAT, 2): _v2_to_v3,
    (ANNOTATION_FORMAT, 2): _v2_to_v3,
}


def check_image_id(image_id: str, where: str = "image id") -> str:
    """Validate an image id as a single, visible path component; return it.

    Raises
    ------
    ProjectError
        If the id is empty, hidden, ``.``/``..`` or contains a path separator or NUL.
    """
    if (not isinstance(image_id, str) or not image_id or image_id.startswith(".")
            or any(c in image_id for c in "/\\\0")):
        raise ProjectError(f"{where}: {image_id!r} is not a valid image id (it must be a "
                           "file stem without path separators, not starting with '.')")
    return image_id


def check_split(split: Any, where: str = "split") -> str | None:
    """Validate a stored split: ``"train"``, ``"val"`` or None; return it."""
    if split is not None and split not in SPLITS:
        raise ProjectError(f"{where}: split {split!r} is not one of {list(SPLITS)} or null")
    return split


def make_review(decision: Any, reason: Any = "", note: Any = "", when: Any = None,
                where: str = "review") -> Review:
    """Build a validated :class:`Review` (``when`` None: now).

    Raises
    ------
    ProjectError
        On an unknown decision, a reason that is not one short line, or a note that is not
        text; the message starts with ``where``.
    """
    if decision not in REVIEW_DECISIONS:
        raise ProjectError(f"{where}: decision {decision!r} is not one of "
                           f"{list(REVIEW_DECISIONS)}")
    if not isinstance(reason, str):
        raise ProjectError(f"{where}: reason must be a string, got {type(reason).__name__}")
    reason = reason.strip()
    if "\n" in reason or "\r" in reason or len(reason) > MAX_REASON_CHARS:
        raise ProjectError(f"{where}: reason must be one line of at most {MAX_REASON_CHARS} "
                           f"characters (a tag such as {REVIEW_REASONS[0]!r}); put longer "
                           "text in the note")
    if not isinstance(note, str):
        raise ProjectError(f"{where}: note must be a string, got {type(note).__name__}")
    if len(note) > MAX_NOTE_CHARS:
        raise ProjectError(f"{where}: note is {len(note)} characters, at most "
                           f"{MAX_NOTE_CHARS} are kept")
    if when is None:
        when = time.time()
    when = _finite_or_none(when, where, "time")
    if when is None:
        raise ProjectError(f"{where}: field 'time' must be a number")
    return Review(decision, reason, note, when)


def check_attributes(attributes: Any, where: str) -> dict[str, Any]:
    """Validate object attributes (a JSON object of scalars; see :data:`OBJECT_ATTRIBUTES`).

    Raises
    ------
    ProjectError
        Naming ``where`` and the attribute.
    """
    if not isinstance(attributes, Mapping):
        raise ProjectError(f"{where}: field 'attributes' must be an object")
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if not isinstance(key, str) or not key:
            raise ProjectError(f"{where}: attribute names must be non-empty strings")
        kind = OBJECT_ATTRIBUTES.get(key)
        if kind is not None:
            ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
            if not ok:
                raise ProjectError(f"{where}: attribute '{key}' must be {_kind_name(kind)}, "
                                   f"got {value!r:.60}")
        elif not isinstance(value, (str, bool, int, float)) or (
                isinstance(value, float) and not math.isfinite(value)):
            raise ProjectError(f"{where}: attribute '{key}' must be a string, number or "
                               f"true/false, got {value!r:.60}")
        out[key] = value
    return out


def _mask_png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(mask, dtype=bool)).save(buf, format="PNG")  # mode "1"
    return buf.getvalue()


def _mask_digest(mask: np.ndarray) -> str:
    h = hashlib.sha1(usedforsecurity=False)
    h.update(np.asarray(mask.shape, dtype=np.int64).tobytes())
    h.update(np.packbits(mask, axis=None).tobytes())
    return h.hexdigest()[:16]


def _finite_or_none(value: Any, where: str, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProjectError(f"{where}: field '{key}' must be a finite number or null, got "
                           f"{value!r}")
    return float(value)


# --------------------------------------------------------------------------------------------
# The project
# --------------------------------------------------------------------------------------------
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
        self.created = time.time() if created is None else created
        # Mask file names of the objects of the last few images loaded or saved, with the
        # mask array they hold, so that saving after one accept hashes and writes only the
        # new mask. Bounded: a session over thousands of images keeps a handful of masks.
        self._mask_names: OrderedDict[str, dict[int, tuple[np.ndarray, str]]] = OrderedDict()
        self._batch_depth = 0
        self._dirty = False
        # samlabel-session.json as last read or written (None: not read yet)
        self._session_state: dict[str, Any] | None = None

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
        data = _check_schema(_read_json(path), path, PROJECT_FORMAT)
        names = _field(data, "classes", list, str(path))
        if not all(isinstance(n, str) for n in names):
            raise ProjectError(f"{path}: field 'classes' must be a list of strings")
        try:
            classes = ClassTable(tuple(names))
        except ValueError as exc:
            raise ProjectError(f"{path}: field 'classes': {exc}") from exc
        entries = []
        seen: set[str] = set()
        for k, rec in enumerate(_field(data, "images", list, str(path))):
            where = f"{path}: images[{k}]"
            iid = check_image_id(_field(rec, "id", str, where), where)
            if iid in seen:
                raise ProjectError(f"{where}: duplicate image id {iid!r}")
            seen.add(iid)
            h = _field(rec, "height", int, where)
            w = _field(rec, "width", int, where)
            if h <= 0 or w <= 0:
                raise ProjectError(f"{where}: image size {h}x{w} is not positive")
            status = _field(rec, "status", str, where)
            try:
                status = ImageStatus(status)
            except ValueError:
                raise ProjectError(f"{where}: field 'status' is {status!r}, expected one of "
                                   f"{[s.value for s in ImageStatus]}") from None
            split = check_split(rec.get("split"), where)
            review = rec.get("review")
            if review is not None:
                rw = f"{where}: review"
                review = make_review(_field(review, "decision", str, rw),
                                     review.get("reason", ""), review.get("note", ""),
                                     _field(review, "time", (int, float), rw), rw)
            entries.append(ImageEntry(iid, _field(rec, "path", str, where), (h, w), status,
                                      split, review))
        created = data.get("created")
        return cls(folder, classes, entries,
                   float(created) if isinstance(created, (int, float)) else None)

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
        self._write_project_file()
        return len(self.classes) - 1

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
    def _session(self) -> dict[str, Any]:
        """The fields of ``samlabel-session.json`` (read once; ``{}`` if absent or bad).

        The file is disposable: an unreadable or malformed one gives a warning and ``{}``,
        never an error, since losing it must never stop a project from opening.
        """
        if self._session_state is not None:
            return self._session_state
        path = self.folder / SESSION_FILE
        state: dict[str, Any] = {}
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(data, dict) or data.get("format") != SESSION_FORMAT:
                    raise ValueError(f"field 'format' is not {SESSION_FORMAT!r}")
                version = data.get("schema_version")
                if not isinstance(version, int) or not 1 <= version <= SESSION_SCHEMA_VERSION:
                    raise ValueError(f"schema version {version!r} is not one this version "
                                     f"reads (1..{SESSION_SCHEMA_VERSION})")
                state = {k: data.get(k) for k in ("image_id", "class_id", "review_queue")}
            except (OSError, ValueError) as exc:  # JSONDecodeError, UnicodeError: ValueErrors
                warnings.warn(f"{path}: {exc}; starting without a saved position",
                              stacklevel=3)
        self._session_state = state
        return state

    def _write_session(self, **changes: Any) -> None:
        """Save ``changes`` with the other fields of the session file (if anything changed)."""
        old = self._session()
        state = {**old, **changes}
        if state == old and (self.folder / SESSION_FILE).is_file():
            return
        payload = {"format": SESSION_FORMAT, "schema_version": SESSION_SCHEMA_VERSION,
                   "image_id": state.get("image_id"), "class_id": state.get("class_id")}
        if state.get("review_queue") is not None:
            payload["review_queue"] = state["review_queue"]
        payload["saved"] = time.time()
        atomic_write_text(self.folder / SESSION_FILE, json.dumps(payload) + "\n")
        self._session_state = state

    def last_position(self) -> tuple[str | None, int | None]:
        """``(image_id, class_id)`` saved by :meth:`set_last_position`, or ``(None, None)``.

        The position lives in ``samlabel-session.json``, apart from the project file. A
        missing file means no position; an unreadable or malformed one, or one naming an
        image or class the project no longer has, gives a warning and None for that part:
        losing the position must never stop a project from opening.
        """
        state = self._session()
        iid, cid = state.get("image_id"), state.get("class_id")
        path = self.folder / SESSION_FILE
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
        self._write_session(image_id=image_id, class_id=class_id)

    def last_review_queue(self) -> Path | None:
        """The curation queue last loaded for review (:meth:`set_last_review_queue`), or None.

        The path as saved, made absolute against the project folder; it may no longer exist
        (the caller checks). A value that is not a string gives a warning and None.
        """
        value = self._session().get("review_queue")
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            warnings.warn(f"{self.folder / SESSION_FILE}: review_queue {value!r} is not a "
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
        self._write_session(review_queue=value)

    # -- documents ------------------------------------------------------------------------------
    def annotation_dir(self, image_id: str) -> Path:
        """Folder of the annotation files of ``image_id``."""
        self.entry(image_id)
        return self.folder / ANNOTATIONS_DIR / image_id

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
        objects = self._read_objects(image_id, entry.shape)
        status = entry.status
        if objects and status == ImageStatus.NEW:
            status = ImageStatus.IN_PROGRESS  # a crash between the two saves of an accept
        kwargs.setdefault("classes", self.classes)
        try:
            return AnnotationDocument(image_id, entry.shape, objects, status, **kwargs)
        except ValueError as exc:
            raise ProjectError(f"{self.annotation_dir(image_id) / OBJECTS_FILE}: {exc}") from exc

    def read_objects(self, image_id: str) -> list[AnnotatedObject]:
        """The accepted objects of ``image_id`` as stored (without building a document)."""
        return self._read_objects(image_id, self.entry(image_id).shape)

    def _read_objects(self, image_id: str, shape: tuple[int, int]) -> list[AnnotatedObject]:
        folder = self.annotation_dir(image_id)
        path = folder / OBJECTS_FILE
        if not path.is_file():
            return []
        data = _check_schema(_read_json(path), path, ANNOTATION_FORMAT)
        where = str(path)
        if _field(data, "image_id", str, where) != image_id:
            raise ProjectError(f"{path}: field 'image_id' is {data['image_id']!r}, expected "
                               f"{image_id!r}")
        stored_shape = _field(data, "shape", list, where)
        if [int(v) for v in stored_shape if isinstance(v, int)] != list(shape):
            raise ProjectError(f"{path}: field 'shape' is {stored_shape}, but the image is "
                               f"{list(shape)} (HxW)")
        objects = []
        names: dict[int, tuple[np.ndarray, str]] = {}
        seen: set[int] = set()
        records = _field(data, "objects", list, where)
        for k, rec in enumerate(records):
            obj = self._read_object(folder, rec, f"{path}: objects[{k}]", shape, seen)
            objects.append(obj)
            names[obj.object_id] = (obj.mask, rec["mask"])
        self._check_parents(objects, path)
        self._remember(image_id, names)
        return objects

    def _check_parents(self, objects: Sequence[AnnotatedObject], path: Path) -> None:
        """A stored parent must be an object of the same image of the part's parent class."""
        by_id = {o.object_id: o for o in objects}
        names = self.classes.names
        for k, obj in enumerate(objects):
            if obj.parent_id is None:
                continue
            where = f"{path}: objects[{k}]"
            parent_class = self.classes.parent(obj.class_id)
            if parent_class is None:
                raise ProjectError(f"{where}: field 'parent_id' is {obj.parent_id}, but class "
                                   f"{names[obj.class_id]!r} is not a part class (no listed "
                                   "parent class), so the object cannot have a parent")
            parent = by_id.get(obj.parent_id)
            if parent is None:
                raise ProjectError(f"{where}: field 'parent_id' {obj.parent_id} is not an "
                                   "object of this image")
            if parent.class_id != parent_class:
                raise ProjectError(f"{where}: field 'parent_id' {obj.parent_id} is a "
                                   f"{names[parent.class_id]!r}, but the parent of a "
                                   f"{names[obj.class_id]!r} must be a "
                                   f"{names[parent_class]!r}")

    def _remember(self, image_id: str, names: dict[int, tuple[np.ndarray, str]]) -> None:
        self._mask_names.pop(image_id, None)
        self._mask_names[image_id] = names
        while len(self._mask_names) > _MASK_CACHE_IMAGES:
            self._mask_names.popitem(last=False)

    def _read_object(self, folder: Path, rec: Any, where: str, shape: tuple[int, int],
                     seen: set[int]) -> AnnotatedObject:
        oid = _field(rec, "object_id", int, where)
        if not 0 < oid <= MAX_OBJECTS:
            raise ProjectError(f"{where}: field 'object_id' {oid} is outside 1..{MAX_OBJECTS}")
        if oid in seen:
            raise ProjectError(f"{where}: duplicate object_id {oid}")
        seen.add(oid)
        cid = _field(rec, "class_id", int, where)
        if not 0 < cid < len(self.classes):
            raise ProjectError(f"{where}: field 'class_id' {cid} is not a class of this project "
                               f"(1..{len(self.classes) - 1})")
        name = rec.get("class_name")
        if name is not None and name != self.classes.names[cid]:
            raise ProjectError(f"{where}: class_id {cid} is {self.classes.names[cid]!r} in the "
                               f"project's class list but the object was saved as {name!r}; "
                               "the class list was changed")
        mask_name = _field(rec, "mask", str, where)
        if Path(mask_name).name != mask_name or mask_name.startswith("."):
            raise ProjectError(f"{where}: field 'mask' {mask_name!r} must be a file name")
        mask = self._read_mask(folder / mask_name, shape, where)
        try:
            prompts = ObjectPrompts.from_dict(rec.get("prompts") or {"object_id": oid,
                                                                     "class_id": cid})
        except ValueError as exc:
            raise ProjectError(f"{where}: field 'prompts': {exc}") from exc
        signals = rec.get("signals") or {}
        if not isinstance(signals, dict):
            raise ProjectError(f"{where}: field 'signals' must be an object")
        signals = {str(k): _finite_or_none(v, where, f"signals.{k}") for k, v in signals.items()}
        model_id = rec.get("model_id")
        if model_id is not None and not isinstance(model_id, str):
            raise ProjectError(f"{where}: field 'model_id' must be a string or null")
        created = _finite_or_none(rec.get("created"), where, "created")
        modified = _finite_or_none(rec.get("modified"), where, "modified")
        attributes = check_attributes(rec.get("attributes") or {}, where)
        parent_id = rec.get("parent_id")
        if parent_id is not None and (isinstance(parent_id, bool) or not isinstance(parent_id, int)
                                      or not 0 < parent_id <= MAX_OBJECTS or parent_id == oid):
            raise ProjectError(f"{where}: field 'parent_id' must be null or the id of another "
                               f"object (1..{MAX_OBJECTS}), got {parent_id!r:.60}")
        parent_fixed = rec.get("parent_fixed", False)
        if not isinstance(parent_fixed, bool):
            raise ProjectError(f"{where}: field 'parent_fixed' must be true/false, got "
                               f"{parent_fixed!r:.60}")
        if parent_fixed and parent_id is None:
            raise ProjectError(f"{where}: field 'parent_fixed' is true but 'parent_id' is null")
        obj = AnnotatedObject(
            oid, cid, mask, prompts.prompts, _finite_or_none(rec.get("score"), where, "score"),
            model_id, {k: v for k, v in signals.items() if v is not None}, None,
            created if created is not None else time.time(),
            modified if modified is not None else time.time(), attributes,
            parent_id, parent_fixed)
        return obj

    @staticmethod
    def _read_mask(path: Path, shape: tuple[int, int], where: str) -> np.ndarray:
        try:
            with Image.open(path) as im:
                im.load()
                arr = np.asarray(im)
        except FileNotFoundError:
            raise ProjectError(f"{where}: mask file {path} not found") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise ProjectError(f"{where}: cannot read mask {path}: {exc}") from exc
        if arr.ndim != 2:
            raise ProjectError(f"{where}: mask {path} is not a single-channel image")
        if arr.shape != tuple(shape):
            raise ProjectError(f"{where}: mask {path} is {arr.shape[0]}x{arr.shape[1]} but the "
                               f"image is {shape[0]}x{shape[1]} (HxW)")
        return arr.astype(bool)

    def save_document(self, doc: AnnotationDocument) -> None:
        """Save the accepted objects and status of ``doc`` (atomic; cheap for one accept).

        Writes the PNG of every mask not saved before, then ``objects.json`` in one atomic
        rename, then the project file if the status changed, then deletes mask files no
        longer referenced. The current (unaccepted) object is not saved. Parent links of
        parts are written as :func:`napari_samlabel.core.document.resolve_parents` gives
        them under the project's class table.
        """
        entry = self.entry(doc.image_id)
        if tuple(doc.shape) != entry.shape:
            raise ProjectError(f"image {doc.image_id}: document shape {doc.shape} does not "
                               f"match the project's image size {entry.shape}")
        folder = self.annotation_dir(doc.image_id)
        folder.mkdir(parents=True, exist_ok=True)
        records = []
        keep: set[str] = set()
        saved: dict[int, tuple[np.ndarray, str]] = {}
        known = self._mask_names.get(doc.image_id, {})
        # The project's class table decides which objects are parts; a document built
        # without one (a snapshot, an import) still gets valid, resolved parent links.
        for obj in resolve_parents(doc.objects, self.classes):
            cached = known.get(obj.object_id)
            if cached is not None and cached[0] is obj.mask and (folder / cached[1]).is_file():
                name = cached[1]
            else:
                name = f"obj-{obj.object_id:03d}-{_mask_digest(obj.mask)}.png"
                if not (folder / name).is_file():
                    atomic_write_bytes(folder / name, _mask_png(obj.mask))
            saved[obj.object_id] = (obj.mask, name)
            keep.add(name)
            records.append(self._object_record(obj, name))
        payload = {"format": ANNOTATION_FORMAT, "schema_version": SCHEMA_VERSION,
                   "image_id": doc.image_id, "shape": list(doc.shape), "saved": time.time(),
                   "objects": records}
        atomic_write_text(folder / OBJECTS_FILE, json.dumps(payload, indent=1) + "\n")
        self._remember(doc.image_id, saved)
        if doc.status != entry.status:
            self.set_status(doc.image_id, doc.status)
        for p in folder.iterdir():
            if p.name != OBJECTS_FILE and p.name not in keep and (
                    p.name.startswith("obj-") or p.name.startswith(".")):
                with contextlib.suppress(OSError):
                    p.unlink()

    def _object_record(self, obj: AnnotatedObject, mask_name: str) -> dict[str, Any]:
        if not 0 < obj.class_id < len(self.classes):
            raise ProjectError(f"object {obj.object_id}: class id {obj.class_id} is not a "
                               f"class of this project (1..{len(self.classes) - 1})")
        return {
            "object_id": obj.object_id,
            "class_id": obj.class_id,
            "class_name": self.classes.names[obj.class_id],
            "mask": mask_name,
            "area": obj.area,
            "prompts": obj.object_prompts.to_dict(),
            "score": obj.score,
            "model_id": obj.model_id,
            "signals": {k: float(v) for k, v in obj.signals.items()},
            "created": obj.created,
            "modified": obj.modified,
            "attributes": check_attributes(obj.attributes, f"object {obj.object_id}"),
            "parent_id": obj.parent_id,
            "parent_fixed": obj.parent_fixed,
        }

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
        payload = {
            "format": PROJECT_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "written_by": f"napari-samlabel {__version__}",
            "created": self.created,
            "modified": time.time(),
            "classes": self.classes.to_list(),
            "images": [e.to_dict() for e in self._images.values()],
        }
        atomic_write_text(self.folder / PROJECT_FILE, json.dumps(payload, indent=1) + "\n")
