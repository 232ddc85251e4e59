"""The project folder: the annotation state on disk, autosaved after every change.

Layout (format documented in ``docs/project-format.md``)::

    PROJECT/
        samlabel-project.json          schema version, classes, images (relative paths,
                                       size, status)
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
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from napari_samlabel import __version__
from napari_samlabel.core.classes import ClassTable, as_class_table
from napari_samlabel.core.document import (
    MAX_OBJECTS,
    AnnotatedObject,
    AnnotationDocument,
    ImageStatus,
)
from napari_samlabel.core.fsutil import atomic_write_bytes, atomic_write_text
from napari_samlabel.core.prompts import ObjectPrompts
from napari_samlabel.io.images import image_id as stem_of
from napari_samlabel.io.images import image_size, list_images

#: Current on-disk schema version. Bump on incompatible changes and add a migration.
SCHEMA_VERSION = 1
PROJECT_FILE = "samlabel-project.json"
ANNOTATIONS_DIR = "annotations"
OBJECTS_FILE = "objects.json"
PROJECT_FORMAT = "samlabel-project"
ANNOTATION_FORMAT = "samlabel-annotation"
_MASK_CACHE_IMAGES = 4


class ProjectError(ValueError):
    """A project file is missing, malformed, or from a newer version; names file and field."""


@dataclass(frozen=True)
class ImageEntry:
    """One image of a project."""

    image_id: str
    path: str  # as stored: relative to the project folder (POSIX separators) or absolute
    shape: tuple[int, int]
    status: ImageStatus = ImageStatus.NEW

    def to_dict(self) -> dict[str, Any]:
        """JSON record of ``samlabel-project.json``."""
        return {"id": self.image_id, "path": self.path, "height": self.shape[0],
                "width": self.shape[1], "status": self.status.value}


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


def _check_schema(data: Any, path: Path, fmt: str) -> int:
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
    return version


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
        data = _read_json(path)
        _check_schema(data, path, PROJECT_FORMAT)
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
            entries.append(ImageEntry(iid, _field(rec, "path", str, where), (h, w), status))
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
            self._images[image_id] = ImageEntry(entry.image_id, entry.path, entry.shape, status)
            self._write_project_file()

    # -- documents ------------------------------------------------------------------------------
    def annotation_dir(self, image_id: str) -> Path:
        """Folder of the annotation files of ``image_id``."""
        self.entry(image_id)
        return self.folder / ANNOTATIONS_DIR / image_id

    def load_document(self, image_id: str, **kwargs: Any) -> AnnotationDocument:
        """Load the annotation of ``image_id`` as a fresh :class:`AnnotationDocument`.

        ``kwargs`` go to :class:`AnnotationDocument` (``class_id``, ``max_undo``). An image
        without saved objects gives an empty document.

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
        data = _read_json(path)
        _check_schema(data, path, ANNOTATION_FORMAT)
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
        for k, rec in enumerate(_field(data, "objects", list, where)):
            obj = self._read_object(folder, rec, f"{path}: objects[{k}]", shape, seen)
            objects.append(obj)
            names[obj.object_id] = (obj.mask, rec["mask"])
        self._remember(image_id, names)
        return objects

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
        obj = AnnotatedObject(
            oid, cid, mask, prompts.prompts, _finite_or_none(rec.get("score"), where, "score"),
            model_id, {k: v for k, v in signals.items() if v is not None}, None,
            created if created is not None else time.time(),
            modified if modified is not None else time.time())
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
        longer referenced. The current (unaccepted) object is not saved.
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
        for obj in doc.objects:
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
