"""The per-image object store of a project: ``annotations/<image_id>/``.

One ``objects.json`` per image (the accepted objects: ids, classes, prompts, model, scores,
timestamps, attributes, parent links, mask file names) and one 1-bit PNG per object mask,
named by its content hash, so that ``objects.json`` switches from the old set of masks to
the new one in a single atomic rename (see :mod:`napari_samlabel.io.project` for why).

Several sessions may share a project (``docs/project-format.md``, "Concurrent writers"):
``objects.json`` carries a ``revision`` that every save increments, and a save is a
compare-and-swap under a short per-image lock (``objects.json.lock``): if the revision on disk
is not the one this store last read or wrote, another session saved the image in between, and
the save writes this session's version to ``conflicts/<host>-<pid>/`` instead of over theirs
(:class:`~napari_samlabel.io.project_schema.ImageConflictError`). Temporary files carry the
writer's pid, and a cleanup removes only its own (or ones older than an hour).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from napari_samlabel.core.classes import ClassTable
from napari_samlabel.core.document import (
    MAX_OBJECTS,
    AnnotatedObject,
    AnnotationDocument,
    resolve_parents,
)
from napari_samlabel.core.filelock import FileLock, holder_text, me
from napari_samlabel.core.fsutil import atomic_write_bytes, atomic_write_text, is_own_temp
from napari_samlabel.core.prompts import ObjectPrompts
from napari_samlabel.io.images import open_image_file
from napari_samlabel.io.project_schema import (
    ANNOTATION_FORMAT,
    OBJECTS_FILE,
    SCHEMA_VERSION,
    ImageConflictError,
    ProjectError,
    check_attributes,
    check_schema,
    finite_or_none,
    read_json,
    require_field,
)

#: Images whose mask file names :class:`ObjectStore` remembers (the last loaded or saved).
MASK_CACHE_IMAGES = 4
#: The per-image lock file, held for the few milliseconds of one save.
LOCK_FILE = "objects.json.lock"
#: Folder (inside the image's) receiving a session's version that lost a save conflict.
CONFLICTS_DIR = "conflicts"
#: Temporary files of another writer older than this (seconds) are leftovers of a crash.
STALE_TEMP_S = 3600.0


def mask_png(mask: np.ndarray) -> bytes:
    """A boolean mask as a 1-bit PNG."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(mask, dtype=bool)).save(buf, format="PNG")  # mode "1"
    return buf.getvalue()


def mask_digest(mask: np.ndarray) -> str:
    """Content hash of a mask (shape and pixels) for its file name."""
    h = hashlib.sha1(usedforsecurity=False)
    h.update(np.asarray(mask.shape, dtype=np.int64).tobytes())
    h.update(np.packbits(mask, axis=None).tobytes())
    return h.hexdigest()[:16]


class ObjectStore:
    """Read and write the object files of the images of one project.

    Parameters
    ----------
    folder : pathlib.Path
        The ``annotations`` folder of the project.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        # Mask file names of the objects of the last few images loaded or saved, with the
        # mask array they hold, so that saving after one accept hashes and writes only the
        # new mask. Bounded: a session over thousands of images keeps a handful of masks.
        self._mask_names: OrderedDict[str, dict[int, tuple[np.ndarray, str]]] = OrderedDict()
        # The revision of objects.json as this store last read or wrote it (0: no file).
        self._revisions: dict[str, int] = {}

    def image_dir(self, image_id: str) -> Path:
        """Folder of the object files of ``image_id``."""
        return self.folder / image_id

    def read(self, image_id: str, shape: tuple[int, int],
             classes: ClassTable, track: bool = True) -> list[AnnotatedObject]:
        """The objects saved for ``image_id`` (``[]`` if none), checked against ``classes``.

        With ``track`` (reading to edit), the revision read is what this store's next save of
        the image expects on disk; a read just to look (an export) leaves that alone.

        Raises
        ------
        ProjectError
            On a malformed ``objects.json`` or mask PNG (file and field named).
        """
        path = self.image_dir(image_id) / OBJECTS_FILE
        for _ in range(3):
            try:
                before = path.stat()
            except FileNotFoundError:
                if track:
                    self._revisions[image_id] = 0
                return []
            except OSError as exc:
                raise ProjectError(f"cannot read {path}: {exc.strerror}") from exc
            try:
                return self._read(image_id, shape, classes, track)
            except ProjectError:
                # Another session saved the image while this one read it (its cleanup may
                # have removed a mask the old objects.json named): read the new version.
                try:
                    after = path.stat()
                except OSError:
                    continue
                if (after.st_mtime_ns, after.st_size, after.st_ino) == \
                        (before.st_mtime_ns, before.st_size, before.st_ino):
                    raise
        return self._read(image_id, shape, classes, track)

    def _read(self, image_id: str, shape: tuple[int, int], classes: ClassTable,
              track: bool) -> list[AnnotatedObject]:
        folder = self.image_dir(image_id)
        path = folder / OBJECTS_FILE
        if not path.is_file():
            if track:
                self._revisions[image_id] = 0
            return []
        data = check_schema(read_json(path), path, ANNOTATION_FORMAT)
        where = str(path)
        revision = data.get("revision", 1)
        if require_field(data, "image_id", str, where) != image_id:
            raise ProjectError(f"{path}: field 'image_id' is {data['image_id']!r}, expected "
                               f"{image_id!r}")
        stored_shape = require_field(data, "shape", list, where)
        if [int(v) for v in stored_shape if isinstance(v, int)] != list(shape):
            raise ProjectError(f"{path}: field 'shape' is {stored_shape}, but the image is "
                               f"{list(shape)} (HxW)")
        objects = []
        names: dict[int, tuple[np.ndarray, str]] = {}
        seen: set[int] = set()
        records = require_field(data, "objects", list, where)
        for k, rec in enumerate(records):
            obj = self._read_object(folder, rec, f"{path}: objects[{k}]", shape, seen,
                                   classes)
            objects.append(obj)
            names[obj.object_id] = (obj.mask, rec["mask"])
        self._check_parents(objects, path, classes)
        if track:
            self._remember(image_id, names)
            self._revisions[image_id] = revision if isinstance(revision, int) else 1
        return objects

    @staticmethod
    def _check_parents(objects: Sequence[AnnotatedObject], path: Path,
                       classes: ClassTable) -> None:
        """A stored parent must be an object of the same image of the part's parent class."""
        by_id = {o.object_id: o for o in objects}
        names = classes.names
        for k, obj in enumerate(objects):
            if obj.parent_id is None:
                continue
            where = f"{path}: objects[{k}]"
            parent_class = classes.parent(obj.class_id)
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
        while len(self._mask_names) > MASK_CACHE_IMAGES:
            self._mask_names.popitem(last=False)

    def _read_object(self, folder: Path, rec: Any, where: str, shape: tuple[int, int],
                     seen: set[int], classes: ClassTable) -> AnnotatedObject:
        oid = require_field(rec, "object_id", int, where)
        if not 0 < oid <= MAX_OBJECTS:
            raise ProjectError(f"{where}: field 'object_id' {oid} is outside 1..{MAX_OBJECTS}")
        if oid in seen:
            raise ProjectError(f"{where}: duplicate object_id {oid}")
        seen.add(oid)
        cid = require_field(rec, "class_id", int, where)
        if not 0 < cid < len(classes):
            raise ProjectError(f"{where}: field 'class_id' {cid} is not a class of this project "
                               f"(1..{len(classes) - 1})")
        name = rec.get("class_name")
        if name is not None and name != classes.names[cid]:
            raise ProjectError(f"{where}: class_id {cid} is {classes.names[cid]!r} in the "
                               f"project's class list but the object was saved as {name!r}; "
                               "the class list was changed")
        mask_name = require_field(rec, "mask", str, where)
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
        signals = {str(k): finite_or_none(v, where, f"signals.{k}") for k, v in signals.items()}
        model_id = rec.get("model_id")
        if model_id is not None and not isinstance(model_id, str):
            raise ProjectError(f"{where}: field 'model_id' must be a string or null")
        created = finite_or_none(rec.get("created"), where, "created")
        modified = finite_or_none(rec.get("modified"), where, "modified")
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
            oid, cid, mask, prompts.prompts, finite_or_none(rec.get("score"), where, "score"),
            model_id, {k: v for k, v in signals.items() if v is not None}, None,
            created if created is not None else time.time(),
            modified if modified is not None else time.time(), attributes,
            parent_id, parent_fixed)
        return obj

    @staticmethod
    def _read_mask(path: Path, shape: tuple[int, int], where: str) -> np.ndarray:
        try:
            with open_image_file(path, "mask") as im:  # a bomb is refused, named
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

    def write(self, doc: AnnotationDocument, classes: ClassTable) -> set[str]:
        """Write the masks not saved before, then ``objects.json`` in one atomic rename.

        A compare-and-swap under the image's lock: if another session saved the image since
        this store last read or wrote it, nothing is written over that; this session's
        version goes to ``conflicts/<host>-<pid>/`` and :class:`ImageConflictError` says so.
        Mask files no longer referenced are removed under the same lock. Parent links of
        parts are written as :func:`napari_samlabel.core.document.resolve_parents` gives
        them under ``classes``. Returns the mask file names ``objects.json`` now refers to.

        Raises
        ------
        ImageConflictError
            If another session saved the image in between (this version is kept aside).
        napari_samlabel.core.filelock.LockTimeout
            If another live session holds the image's lock for too long.
        """
        folder = self.image_dir(doc.image_id)
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(folder / LOCK_FILE, what=f"image {doc.image_id}"):
            disk, saved_by = self._disk_revision(folder / OBJECTS_FILE)
            expected = self._revisions.get(doc.image_id)
            if expected is not None and disk != expected:
                writer = me()
                copy = folder / CONFLICTS_DIR / f"{writer['host']}-{writer['pid']}"
                keep = self._write_files(copy, doc, classes, {}, disk)
                self.prune_folder(copy, keep)
                by = f" ({holder_text(saved_by, 'at')})" if saved_by else ""
                raise ImageConflictError(
                    f"image {doc.image_id} was saved by another session{by} after this one "
                    f"opened it; its version was not overwritten. This session's version is "
                    f"kept in {copy}; reopen the image to see the other version",
                    doc.image_id, copy)
            known = self._mask_names.get(doc.image_id, {})
            saved: dict[int, tuple[np.ndarray, str]] = {}
            keep = self._write_files(folder, doc, classes, known, disk + 1, saved)
            self._revisions[doc.image_id] = disk + 1
            self._remember(doc.image_id, saved)
            self.prune_folder(folder, keep)
        return keep

    @staticmethod
    def _disk_revision(path: Path) -> tuple[int, dict[str, Any] | None]:
        """``(revision, saved_by)`` of ``objects.json`` (0 if absent, 1 if it has none)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return 0, None
        except (OSError, ValueError):
            return -1, None  # unreadable: differs from whatever this store expected
        if not isinstance(data, dict):
            return -1, None
        rev = data.get("revision", 1)
        by = data.get("saved_by")
        return (rev if isinstance(rev, int) else -1), (by if isinstance(by, dict) else None)

    def _write_files(self, folder: Path, doc: AnnotationDocument, classes: ClassTable,
                     known: dict[int, tuple[np.ndarray, str]], revision: int,
                     saved: dict[int, tuple[np.ndarray, str]] | None = None) -> set[str]:
        folder.mkdir(parents=True, exist_ok=True)
        records = []
        keep: set[str] = set()
        # The project's class table decides which objects are parts; a document built
        # without one (a snapshot, an import) still gets valid, resolved parent links.
        for obj in resolve_parents(doc.objects, classes):
            cached = known.get(obj.object_id)
            if cached is not None and cached[0] is obj.mask and (folder / cached[1]).is_file():
                name = cached[1]
            else:
                name = f"obj-{obj.object_id:03d}-{mask_digest(obj.mask)}.png"
                if not (folder / name).is_file():
                    atomic_write_bytes(folder / name, mask_png(obj.mask))
            if saved is not None:
                saved[obj.object_id] = (obj.mask, name)
            keep.add(name)
            records.append(self._object_record(obj, name, classes))
        payload = {"format": ANNOTATION_FORMAT, "schema_version": SCHEMA_VERSION,
                   "image_id": doc.image_id, "shape": list(doc.shape), "saved": time.time(),
                   "revision": revision, "saved_by": me(), "objects": records}
        atomic_write_text(folder / OBJECTS_FILE, json.dumps(payload, indent=1) + "\n")
        return keep

    def prune(self, image_id: str, keep: set[str]) -> None:
        """Delete the mask files of ``image_id`` not in ``keep`` and stale temporary files."""
        folder = self.image_dir(image_id)
        with FileLock(folder / LOCK_FILE, what=f"image {image_id}"):
            self.prune_folder(folder, keep)

    @staticmethod
    def prune_folder(folder: Path, keep: set[str]) -> None:
        """Delete mask files not in ``keep``, this process's temporary files and old ones.

        Another writer's temporary file is left alone unless older than
        :data:`STALE_TEMP_S` (it may be in flight). Call with the folder's lock held.
        """
        now = time.time()
        for p in folder.iterdir():
            name = p.name
            if name.startswith("obj-") and name not in keep:
                with contextlib.suppress(OSError):
                    p.unlink()
            elif name.startswith(".") and name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    if is_own_temp(name) or now - os.stat(p).st_mtime > STALE_TEMP_S:
                        p.unlink()

    @staticmethod
    def _object_record(obj: AnnotatedObject, mask_name: str,
                       classes: ClassTable) -> dict[str, Any]:
        if not 0 < obj.class_id < len(classes):
            raise ProjectError(f"object {obj.object_id}: class id {obj.class_id} is not a "
                               f"class of this project (1..{len(classes) - 1})")
        return {
            "object_id": obj.object_id,
            "class_id": obj.class_id,
            "class_name": classes.names[obj.class_id],
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
