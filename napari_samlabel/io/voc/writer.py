"""The VOC dataset writer: :class:`VocWriter` builds a VOC 2012 tree, atomically.

The layout and conventions it follows are in :mod:`napari_samlabel.io.voc`.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from napari_samlabel.core.classes import BACKGROUND, VOID, ClassTable, as_class_table
from napari_samlabel.core.fsutil import make_temp_dir, remove_leftovers, write_error
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.io.images import (
    ImageReadError,
    is_plain_jpeg,
    load_image,
    to_rgb_uint8,
)
from napari_samlabel.io.voc import DEVKIT, EXCLUDED, SPLITS, VocError
from napari_samlabel.io.voc.annotations import ObjectInfo, labelmap_text, xml_text
from napari_samlabel.io.voc.components import (
    consistent_instances,
    draw_band,
    instances_from_components,
    majority_class,
    mask_bbox,
)
from napari_samlabel.io.voc.labelpng import encode_label_png

_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


def check_output_folder(out: Path, overwrite: bool) -> None:
    """Raise ``FileExistsError`` if a VOC export may not go to ``out`` (before any work).

    ``out`` may be missing or empty; with ``overwrite`` it may hold a previous export (a
    folder with nothing but ``VOCdevkit``), never other files.
    """
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"output {out} exists and is not a folder")
        if not overwrite and not _dir_is_empty(out):
            raise FileExistsError(f"output folder {out} is not empty; choose another "
                                  "folder or allow overwriting (--overwrite)")
        # Overwriting replaces a previous export, never anything else: a mistyped OUT
        # (the project, the image folder, a home directory) must not be deleted.
        foreign = sorted(p.name for p in out.iterdir()
                         if p.name != DEVKIT and not p.name.startswith("."))
        if foreign:
            raise FileExistsError(
                f"output folder {out} holds files that are not a VOC export "
                f"({', '.join(foreign[:3])}{'...' if len(foreign) > 3 else ''}); "
                "overwriting only replaces a folder that contains nothing but VOCdevkit. "
                "Choose another folder")


def split_ids(ids: Sequence[str], train_fraction: float, seed: int) -> dict[str, str]:
    """Assign ``train`` / ``val`` to ``ids`` with a seeded shuffle.

    The ids are sorted first, so the split depends only on the set of ids, the fraction and
    the seed. ``round(fraction * n)`` ids go to train; with ``0 < fraction < 1`` and at
    least two ids, each split gets at least one.
    """
    if not 0.0 <= train_fraction <= 1.0:
        raise ValueError(f"train fraction {train_fraction} is outside 0..1")
    ordered = sorted(ids)
    n = len(ordered)
    n_train = int(round(train_fraction * n))
    if 0.0 < train_fraction < 1.0 and n >= 2:
        n_train = min(max(n_train, 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    return {ordered[i]: ("train" if rank < n_train else "val") for rank, i in enumerate(order)}


def _jpeg_depth(data: bytes) -> int:
    """Channels of an encoded JPEG (1 grey, 3 colour): ``<depth>`` describes the file written."""
    with Image.open(io.BytesIO(data)) as im:
        return len(im.getbands())


def _write_file(path: Path, data: bytes) -> None:
    """Write one output file (inside the writer's temporary tree; tests patch this)."""
    path.write_bytes(data)


def _dir_is_empty(path: Path) -> bool:
    return not any(path.iterdir())


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------
class VocWriter:
    """Build a VOC 2012-style dataset in a temporary folder and move it to ``out`` at the end.

    Use as a context manager; leaving the block normally calls :meth:`finish`, leaving it
    with an exception deletes the temporary folder, so ``out`` is never half written and an
    existing ``out`` is left untouched::

        with VocWriter(out, classes, border=4) as w:
            for rec in records:
                w.add(rec.id, rec.image_path, rec.semantic, rec.instance)

    Parameters
    ----------
    out : path
        Folder that will contain ``VOCdevkit/VOC2012`` (torchvision's ``root``).
    classes : ClassTable or sequence of str or None
        Class names, index 0 background (None: the 21 VOC classes). More than 255 classes
        raise ``ValueError``.
    border : int
        Width in pixels of the void band along object borders (0: none).
    train_fraction, seed : float, int
        Seeded split of the images added with ``split=None`` (see :func:`split_ids`).
    overwrite : bool
        Replace an existing non-empty ``out`` that holds a previous export (nothing but
        ``VOCdevkit`` and hidden files). Without it, or when ``out`` holds anything else, a
        non-empty ``out`` raises ``FileExistsError`` up front (and again at :meth:`finish`
        if it changed meanwhile).
    progress : callable
        ``progress(done, total, message)`` after each image (see core/progress.py).
    total : int, optional
        Number of images expected, for the progress callback.
    jpeg_quality : int
        Quality of re-encoded JPEGs.
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        classes: ClassTable | Sequence[str] | None = None,
        *,
        border: int = 0,
        train_fraction: float = 0.8,
        seed: int = 0,
        overwrite: bool = False,
        progress: ProgressCallback = no_progress,
        total: int | None = None,
        jpeg_quality: int = 95,
    ) -> None:
        # ClassTable refuses more than 255 classes (indices 0..254; 255 is void).
        self.classes = as_class_table(classes)
        if border < 0:
            raise ValueError(f"border must be >= 0, got {border}")
        if not 0.0 <= train_fraction <= 1.0:
            raise ValueError(f"train fraction {train_fraction} is outside 0..1")
        self.out = Path(out).absolute()
        self.border = int(border)
        self.train_fraction = float(train_fraction)
        self.seed = int(seed)
        self.overwrite = overwrite
        self.progress = progress
        self.total = total
        self.jpeg_quality = int(jpeg_quality)
        self._check_out()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        # Hidden trees of an export that was killed (a SIGKILL cannot clean up).
        remove_leftovers(self.out.parent, f".{self.out.name}.", (".voc-tmp", ".old"))
        try:
            self._tmp = make_temp_dir(self.out.parent, f".{self.out.name}.", ".voc-tmp")
        except OSError as exc:
            raise write_error(self.out, exc, self._nothing_changed()) from exc
        self.root = self._tmp / DEVKIT / "VOC2012"
        try:
            for sub in ("JPEGImages", "SegmentationClass", "SegmentationObject", "Annotations",
                        "ImageSets/Segmentation", "ImageSets/Main"):
                (self.root / sub).mkdir(parents=True)
        except OSError as exc:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise write_error(self.out / (self.root / sub).relative_to(self._tmp), exc,
                              self._nothing_changed()) from exc
        self._splits: dict[str, str | None] = {}
        self._classes_in: dict[str, set[int]] = {}
        self._difficult: dict[str, set[int]] = {}
        self._shapes: dict[str, tuple[int, int]] = {}
        self._with_parts: set[str] = set()
        self.dropped_objects: list[tuple[str, int]] = []
        #: ``(image_id, part instance id)`` of parts with no visible pixels (left out).
        self.dropped_parts: list[tuple[str, int]] = []
        #: ``(image_id, part instance id)`` of parts without a written parent object: in the
        #: part maps, not in the XML.
        self.orphan_parts: list[tuple[str, int]] = []
        self.n_parts = 0
        self._done = False

    # -- context manager ------------------------------------------------------------------
    def __enter__(self) -> VocWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None and not self._done:
            self.finish()
        else:
            self.abort()

    def abort(self) -> None:
        """Delete the temporary tree; ``out`` is untouched."""
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._done = True

    def _check_out(self) -> None:
        check_output_folder(self.out, self.overwrite)

    # -- adding images ----------------------------------------------------------------------
    @property
    def image_ids(self) -> list[str]:
        """Ids added so far, in order."""
        return list(self._splits)

    def add(
        self,
        image_id: str,
        image: str | os.PathLike[str] | np.ndarray,
        semantic: np.ndarray,
        instance: np.ndarray | None = None,
        objects: Sequence[ObjectInfo] | None = None,
        split: str | None = None,
        part_semantic: np.ndarray | None = None,
        part_instance: np.ndarray | None = None,
        parts: Sequence[ObjectInfo] | None = None,
    ) -> None:
        """Add one image and its label maps.

        Parameters
        ----------
        image_id : str
            File stem in the dataset (letters, digits, ``_.+-``; unique).
        image : path or numpy.ndarray
            The image file (copied as is when it is an upright JPEG) or an RGB array.
        semantic : numpy.ndarray
            ``H x W`` ``uint8`` class indices (0 background, 255 void).
        instance : numpy.ndarray, optional
            ``H x W`` ``uint8`` instance ids (0 none, 255 void). None: instances are the
            8-connected components of each class in ``semantic``. The semantic map is
            authoritative: instance pixels on background or void follow it, and class pixels
            no instance covers become extra instances (their connected components).
        objects : sequence of ObjectInfo, optional
            Metadata per instance id (pose, difficult, ...); instances without an entry get
            the defaults.
        split : {"train", "val", "excluded", None}
            Fixed split; None joins the seeded split at :meth:`finish`; ``"excluded"`` writes
            the files but lists the id only in ``ImageSets/Segmentation/excluded.txt``.
        part_semantic, part_instance : numpy.ndarray, optional
            The part maps (part class index, part instance id; 0 none, 255 void), kept out of
            ``semantic`` / ``instance``. ``part_instance`` None: the connected components
            of each part class. Only part classes (``ClassTable.parent`` not None) may
            appear in ``part_semantic``.
        parts : sequence of ObjectInfo, optional
            Per part instance id: its parent (``ObjectInfo.parent``, an instance id of
            ``instance``) and optionally class and box. A part whose parent is None or not
            written is in the part maps only (:attr:`orphan_parts`).

        Raises
        ------
        VocError
            On a bad id, duplicate id, shape mismatch, unknown class, inconsistent maps or an
            unreadable image; nothing is written for this image in that case.
        """
        if self._done:
            raise RuntimeError("this VocWriter is finished")
        if not isinstance(image_id, str) or not _ID_RE.match(image_id):
            raise VocError(f"image id {image_id!r} is not usable as a VOC file name (letters, "
                           "digits and _.+- only, no spaces or path separators)")
        if image_id in self._splits:
            raise VocError(f"image id {image_id!r} is given twice")
        if split not in (None, "train", "val", EXCLUDED):
            raise VocError(f"image {image_id}: split {split!r} is not train, val, excluded "
                           "or None")
        sem = self._check_map(image_id, "semantic", semantic)
        shape = sem.shape
        bad = np.setdiff1d(np.unique(sem), [VOID])
        bad = bad[bad >= len(self.classes)]
        if bad.size:
            raise VocError(f"image {image_id}: class indices {bad.tolist()} are not in the "
                           f"class list (0..{len(self.classes) - 1}, 255 void)")
        if instance is None:
            inst = instances_from_components(sem)
        else:
            inst = self._check_map(image_id, "instance", instance)
            if inst.shape != shape:
                raise VocError(f"image {image_id}: instance map shape {inst.shape} does not "
                               f"match the semantic map shape {shape}")
            inst = consistent_instances(image_id, sem, inst)
        infos = self._infos(image_id, "objects", objects)
        has_parts = part_semantic is not None or part_instance is not None or bool(parts)
        if has_parts:
            psem, pinst = self._part_maps(image_id, shape, part_semantic, part_instance)
        part_infos = self._infos(image_id, "parts", parts)
        # Image first: it is the most likely to fail (unreadable, wrong size).
        jpeg_bytes = self._jpeg_bytes(image_id, image, shape)

        classes_here: set[int] = set()
        difficult_here: set[int] = set()
        xml_objects, new_inst, renumbered, dropped = self._instances(
            image_id, sem, inst, infos, "object", classes_here, difficult_here)
        self.dropped_objects += [(image_id, k) for k in dropped]
        xml_parts: dict[int, list[tuple[str, tuple[int, int, int, int]]]] = {}
        if has_parts:
            part_xml, new_pinst, part_ids, dropped = self._instances(
                image_id, psem, pinst, part_infos, "part", classes_here, difficult_here)
            self.dropped_parts += [(image_id, k) for k in dropped]
            for (name, _, bbox, _), k in zip(part_xml, part_ids, strict=True):
                parent = part_infos.get(k, ObjectInfo(k)).parent
                owner = renumbered.get(parent) if parent is not None else None
                if owner is None:
                    self.orphan_parts.append((image_id, k))
                    continue
                cls, parent_cls = self.classes.index(name), xml_objects[owner - 1][0]
                whole = self.classes.parent(cls)  # not None: _part_maps let parts only in
                if whole is None or self.classes.names[whole] != parent_cls:
                    raise VocError(f"image {image_id}: part {k} is a {name!r}, which cannot "
                                   f"belong to object {parent}, a {parent_cls!r}")
                xml_parts.setdefault(owner, []).append((self.classes.part_name(cls), bbox))
            self.n_parts += len(part_ids)
        sem, new_inst = draw_band(sem, new_inst, self.border)

        self._write(self.root / "JPEGImages" / f"{image_id}.jpg", jpeg_bytes)
        self._write(self.root / "SegmentationClass" / f"{image_id}.png", encode_label_png(sem))
        self._write(self.root / "SegmentationObject" / f"{image_id}.png",
                    encode_label_png(new_inst))
        if has_parts:
            self._write_part_pngs(image_id, *draw_band(psem, new_pinst, self.border))
            self._with_parts.add(image_id)
        self._write(self.root / "Annotations" / f"{image_id}.xml",
                    xml_text(image_id, shape, xml_objects, _jpeg_depth(jpeg_bytes), xml_parts)
                    .encode("utf-8"))
        self._splits[image_id] = split
        self._shapes[image_id] = shape
        self._classes_in[image_id] = classes_here
        self._difficult[image_id] = difficult_here - classes_here
        self.progress(len(self._splits), self.total, image_id)

    @staticmethod
    def _infos(image_id: str, what: str,
               infos: Sequence[ObjectInfo] | None) -> dict[int, ObjectInfo]:
        out: dict[int, ObjectInfo] = {}
        for info in infos or ():
            if info.instance_id in out:
                raise VocError(f"image {image_id}: two {what} have instance id "
                               f"{info.instance_id}")
            out[info.instance_id] = info
        return out

    def _part_maps(self, image_id: str, shape: tuple[int, int], part_semantic: Any,
                   part_instance: Any) -> tuple[np.ndarray, np.ndarray]:
        """Checked part maps: part classes only, instances consistent with the classes."""
        if part_semantic is None:
            raise VocError(f"image {image_id}: parts need a part class map (part_semantic)")
        psem = self._check_map(image_id, "part class", part_semantic)
        if psem.shape != shape:
            raise VocError(f"image {image_id}: part class map shape {psem.shape} does not "
                           f"match the semantic map shape {shape}")
        present = np.setdiff1d(np.unique(psem), [BACKGROUND, VOID])
        wrong = [int(c) for c in present if not self.classes.is_part(int(c))]
        if wrong:
            names = [self.classes.names[c] if c < len(self.classes) else str(c) for c in wrong]
            raise VocError(f"image {image_id}: the part class map holds "
                           f"{', '.join(map(repr, names))}, "
                           "which are not part classes of the class list (a part class is "
                           "'object/part' with 'object' listed)")
        if part_instance is None:
            return psem, instances_from_components(psem)
        pinst = self._check_map(image_id, "part instance", part_instance)
        if pinst.shape != shape:
            raise VocError(f"image {image_id}: part instance map shape {pinst.shape} does "
                           f"not match the semantic map shape {shape}")
        return psem, consistent_instances(image_id, psem, pinst)

    def _instances(self, image_id: str, sem: np.ndarray, inst: np.ndarray,
                   infos: dict[int, ObjectInfo], what: str, classes_here: set[int],
                   difficult_here: set[int]
                   ) -> tuple[list[tuple[str, ObjectInfo, tuple[int, int, int, int], bool]],
                              np.ndarray, dict[int, int], list[int]]:
        """Number the instances ``1..N`` in ascending id; their XML entries.

        Returns the XML entries, the renumbered map, ``{given id: new id}`` and the given
        ids of ``infos`` with no visible pixels (warned about).
        """
        shape = sem.shape
        ids = [int(v) for v in np.unique(inst) if v not in (0, VOID)]
        missing = sorted(set(infos) - set(ids))
        if missing:
            warnings.warn(f"image {image_id}: {what}s {missing} have no visible pixels and "
                          "are left out", stacklevel=3)
        xml_objects = []
        new_inst = np.zeros(shape, dtype=np.uint8)
        for new_id, k in enumerate(ids, 1):
            mask = inst == k
            info = infos.get(k, ObjectInfo(k))
            cls = majority_class(sem, mask)
            if cls is None:
                if info.class_id is None:
                    raise VocError(f"image {image_id}: {what} instance {k} covers no class "
                                   "pixels in its class map")
                cls = info.class_id
            elif info.class_id is not None and info.class_id != cls:
                raise VocError(f"image {image_id}: {what} instance {k} is given class "
                               f"{self.classes.name(info.class_id)!r} but its pixels are "
                               f"{self.classes.name(cls)!r}")
            if not 0 < cls < len(self.classes):
                raise VocError(f"image {image_id}: {what} instance {k} has unknown class {cls}")
            bbox = info.bbox or mask_bbox(mask)
            truncated = info.truncated
            if truncated is None:
                truncated = bool(mask[0].any() or mask[-1].any() or mask[:, 0].any()
                                 or mask[:, -1].any())
            new_inst[mask] = new_id
            xml_objects.append((self.classes.name(cls), info, bbox, truncated))
            (difficult_here if info.difficult else classes_here).add(cls)
        new_inst[inst == VOID] = VOID
        return xml_objects, new_inst, {k: n for n, k in enumerate(ids, 1)}, missing

    def _write_part_pngs(self, image_id: str, psem: np.ndarray, pinst: np.ndarray) -> None:
        for sub, labels in (("SegmentationPart", psem), ("SegmentationPartObject", pinst)):
            folder = self.root / sub
            if not folder.is_dir():
                try:
                    folder.mkdir()
                except OSError as exc:
                    raise write_error(self.out / folder.relative_to(self._tmp), exc,
                                      self._nothing_changed()) from exc
            self._write(folder / f"{image_id}.png", encode_label_png(labels))

    def _write(self, path: Path, data: bytes) -> None:
        try:
            _write_file(path, data)
        except OSError as exc:
            # Name the file as it would have been in OUT: the temporary tree is deleted.
            raise write_error(self.out / path.relative_to(self._tmp), exc,
                              self._nothing_changed()) from exc

    def _write_missing_part_pngs(self) -> None:
        """Once one image has parts, every image gets part maps (all zero: no part)."""
        if not self._with_parts:
            return
        for iid, shape in self._shapes.items():
            if iid not in self._with_parts:
                empty = np.zeros(shape, dtype=np.uint8)
                self._write_part_pngs(iid, empty, empty)

    def _nothing_changed(self) -> str:
        state = "is as it was" if self.out.exists() else "was not created"
        return f"the export stopped and nothing was changed ({self.out} {state})"

    def _check_map(self, image_id: str, what: str, labels: np.ndarray) -> np.ndarray:
        arr = np.asarray(labels)
        if arr.ndim != 2:
            raise VocError(f"image {image_id}: {what} map must be 2-D, got shape {arr.shape}")
        if arr.dtype != np.uint8:
            if arr.size and (not np.issubdtype(arr.dtype, np.integer)
                             or arr.min() < 0 or arr.max() > 255):
                raise VocError(f"image {image_id}: {what} map must hold integers 0..255, got "
                               f"{arr.dtype}")
            arr = arr.astype(np.uint8)
        return arr

    def _jpeg_bytes(self, image_id: str, image: Any, shape: tuple[int, int]) -> bytes:
        if isinstance(image, np.ndarray):
            arr = image
            if arr.ndim < 2 or arr.shape[:2] != shape:
                raise VocError(f"image {image_id}: image shape {arr.shape[:2]} does not match "
                               f"the label map shape {shape}")
            arr = to_rgb_uint8(arr)
        else:
            path = Path(image)
            # Decode every pixel, even of a JPEG copied as is: the header of a truncated
            # file reads fine, and its broken bytes would go into the dataset unnoticed.
            try:
                arr = load_image(path)
            except ImageReadError as exc:
                raise VocError(f"image {image_id}: {exc}") from exc
            if arr.shape[:2] != shape:
                raise VocError(f"image {image_id}: {path} is {arr.shape[0]}x{arr.shape[1]} "
                               f"(HxW) but the label map is {shape[0]}x{shape[1]}")
            if is_plain_jpeg(path):
                return path.read_bytes()
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=self.jpeg_quality)
        return buf.getvalue()

    # -- finishing -----------------------------------------------------------------------------
    def finish(self) -> Path:
        """Write the image sets and ``labelmap.txt``, then move the tree to ``out``.

        Returns the ``VOCdevkit/VOC2012`` folder inside ``out``.

        With ``overwrite``, an existing ``out`` is first renamed aside and deleted only after
        the new tree is in place.
        """
        if self._done:
            raise RuntimeError("this VocWriter is finished")
        try:
            self._write_missing_part_pngs()
            self._write_sets()
            self._write(self._tmp / DEVKIT / "VOC2012" / "labelmap.txt",
                        labelmap_text(self.classes).encode("utf-8"))
            self._check_out()
            try:
                self._move_into_place()
            except OSError as exc:
                raise write_error(self.out, exc, self._nothing_changed()) from exc
        except BaseException:
            self.abort()
            raise
        self._done = True
        return self.out / DEVKIT / "VOC2012"

    def _write_sets(self) -> None:
        auto = [i for i, s in self._splits.items() if s is None]
        assigned = split_ids(auto, self.train_fraction, self.seed)
        final = {i: (s if s is not None else assigned[i]) for i, s in self._splits.items()}
        lists = {s: sorted(i for i, v in final.items() if v == s) for s in SPLITS}
        lists["trainval"] = sorted(lists["train"] + lists["val"])
        seg = self.root / "ImageSets" / "Segmentation"
        main = self.root / "ImageSets" / "Main"
        for name, ids in lists.items():
            text = "".join(f"{i}\n" for i in ids).encode()
            self._write(seg / f"{name}.txt", text)
            self._write(main / f"{name}.txt", text)
        excluded = sorted(i for i, v in final.items() if v == EXCLUDED)
        self._write(seg / f"{EXCLUDED}.txt", "".join(f"{i}\n" for i in excluded).encode())
        # Per-class Main lists: 1 present, 0 only difficult instances, -1 absent.
        for c in range(1, len(self.classes)):
            safe = self.classes.names[c].replace("/", "-")
            for name, ids in lists.items():
                rows = []
                for i in ids:
                    flag = 1 if c in self._classes_in[i] else 0 if c in self._difficult[i] else -1
                    rows.append(f"{i} {flag:2d}\n")
                self._write(main / f"{safe}_{name}.txt", "".join(rows).encode())
        self.splits = final

    def _move_into_place(self) -> None:
        aside = None
        if self.out.exists():
            if _dir_is_empty(self.out):
                self.out.rmdir()
            else:
                aside = make_temp_dir(self.out.parent, f".{self.out.name}.", ".old")
                aside.rmdir()
                os.replace(self.out, aside)
        try:
            os.replace(self._tmp, self.out)
        except BaseException:
            if aside is not None:
                os.replace(aside, self.out)  # put the old output back
            raise
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
