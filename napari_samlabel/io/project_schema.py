"""The on-disk schema of a project: file names, versions, migrations and validation.

The records of ``samlabel-project.json`` (:class:`ImageEntry`, :class:`Review`), the checks
every reader applies to a field (:func:`require_field` and the ``check_*`` functions, which
raise :class:`ProjectError` naming the file and the field), and the chain of migrations that
brings an older file to :data:`SCHEMA_VERSION` (:func:`check_schema`). The format is
documented in ``docs/project-format.md``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_samlabel import __version__
from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.document import ImageStatus

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


#: Dataset splits an image can be given (``None``: join the seeded split at export).
SPLITS = ("train", "val")
#: Review decisions of the curation workflow (see
#: :meth:`napari_samlabel.io.project.Project.set_review`).
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


class ImageConflictError(ProjectError):
    """Another session saved the image after this one read it; nothing was written over it.

    Attributes
    ----------
    image_id : str
        The image.
    copy : pathlib.Path or None
        Where this session's version was saved instead (a folder with an ``objects.json``).
    """

    def __init__(self, message: str, image_id: str, copy: Path | None = None) -> None:
        super().__init__(message)
        self.image_id = image_id
        self.copy = copy


@dataclass(frozen=True)
class Review:
    """A curation decision about one image (:meth:`~napari_samlabel.io.project.Project.set_review`).

    Attributes
    ----------
    decision : {"accepted", "rejected", "needs_work"}
        ``rejected`` images never go into train or val; ``needs_work`` ones are kept out
        of train like flagged images (see :func:`napari_samlabel.io.selection.
        select_images`); ``accepted`` changes nothing in an export.
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


def require_field(data: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``data[key]``, checked to be a ``kind`` (a bool is not an int); ``where`` names it."""
    if not isinstance(data, dict):
        raise ProjectError(f"{where}: expected an object, got {type(data).__name__}")
    if key not in data:
        raise ProjectError(f"{where}: missing field '{key}'")
    value = data[key]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ProjectError(f"{where}: field '{key}' must be {kind_name(kind)}, got {value!r}")
    if not isinstance(value, kind):
        raise ProjectError(f"{where}: field '{key}' must be {kind_name(kind)}, got "
                           f"{type(value).__name__} {value!r:.60}")
    return value


def kind_name(kind: type | tuple[type, ...]) -> str:
    """How an error message names a JSON type (``"an integer or null"``)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "an object", bool: "true/false", type(None): "null"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def read_json(path: Path) -> Any:
    """The JSON content of ``path`` (:class:`ProjectError` naming the line on bad JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError(f"{path} not found") from None
    except OSError as exc:
        raise ProjectError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ProjectError(f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
                           f"offset {exc.start}); save it as UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProjectError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: "
                           f"{exc.msg}") from exc


def check_schema(data: Any, path: Path, fmt: str) -> dict[str, Any]:
    """Check format and version; return the content migrated to :data:`SCHEMA_VERSION`."""
    if not isinstance(data, dict):
        raise ProjectError(f"{path}: expected a JSON object at the top level")
    if data.get("format") != fmt:
        raise ProjectError(f"{path}: field 'format' is {data.get('format')!r}, expected {fmt!r}")
    version = require_field(data, "schema_version", int, str(path))
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
    when = finite_or_none(when, where, "time")
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
                raise ProjectError(f"{where}: attribute '{key}' must be {kind_name(kind)}, "
                                   f"got {value!r:.60}")
        elif not isinstance(value, (str, bool, int, float)) or (
                isinstance(value, float) and not math.isfinite(value)):
            raise ProjectError(f"{where}: attribute '{key}' must be a string, number or "
                               f"true/false, got {value!r:.60}")
        out[key] = value
    return out


def finite_or_none(value: Any, where: str, key: str) -> float | None:
    """A finite number as a float, or None; anything else is a :class:`ProjectError`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProjectError(f"{where}: field '{key}' must be a finite number or null, got "
                           f"{value!r}")
    return float(value)


def read_project_file(path: Path) -> tuple[ClassTable, list[ImageEntry], float | None]:
    """Read and validate ``samlabel-project.json``: ``(classes, images, created)``.

    Raises
    ------
    ProjectError
        If the file is missing, malformed or from a newer schema version; the message names
        the file and the field.
    """
    data = check_schema(read_json(path), path, PROJECT_FORMAT)
    names = require_field(data, "classes", list, str(path))
    if not all(isinstance(n, str) for n in names):
        raise ProjectError(f"{path}: field 'classes' must be a list of strings")
    try:
        classes = ClassTable(tuple(names))
    except ValueError as exc:
        raise ProjectError(f"{path}: field 'classes': {exc}") from exc
    entries = []
    seen: set[str] = set()
    for k, rec in enumerate(require_field(data, "images", list, str(path))):
        where = f"{path}: images[{k}]"
        iid = check_image_id(require_field(rec, "id", str, where), where)
        if iid in seen:
            raise ProjectError(f"{where}: duplicate image id {iid!r}")
        seen.add(iid)
        h = require_field(rec, "height", int, where)
        w = require_field(rec, "width", int, where)
        if h <= 0 or w <= 0:
            raise ProjectError(f"{where}: image size {h}x{w} is not positive")
        status = require_field(rec, "status", str, where)
        try:
            status = ImageStatus(status)
        except ValueError:
            raise ProjectError(f"{where}: field 'status' is {status!r}, expected one of "
                               f"{[s.value for s in ImageStatus]}") from None
        split = check_split(rec.get("split"), where)
        review = rec.get("review")
        if review is not None:
            rw = f"{where}: review"
            review = make_review(require_field(review, "decision", str, rw),
                                 review.get("reason", ""), review.get("note", ""),
                                 require_field(review, "time", (int, float), rw), rw)
        entries.append(ImageEntry(iid, require_field(rec, "path", str, where), (h, w), status,
                                  split, review))
    created = data.get("created")
    return classes, entries, float(created) if isinstance(created, (int, float)) else None
