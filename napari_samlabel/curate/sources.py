"""Where curation reads its images from: a project, a pseudo-label output, a VOC tree.

:func:`open_source` opens a folder as one of three sources, each yielding a
:class:`CurationItem` (image id, size, objects with their masks, prompts and SAM scores,
status) per image and loading an image with its objects again for the report:

- :class:`ProjectSource`: the annotated images of a project folder
  (:mod:`napari_samlabel.io.project`), with prompts, SAM scores and stored signals;
- :class:`PseudoSource`: the output folder of ``samlabel pseudo-label``
  (:mod:`napari_samlabel.pseudo.store`), with SAM scores and, given the weak labels the run
  used, the prompts;
- :class:`VocSource`: a VOC tree (ground truth or pseudo labels), masks only, turned into
  objects by the rule of ``samlabel import-voc``.

:class:`GroundTruthFolder` reads the ground truth to compare with (a VOC tree or a folder of
class maps) as :class:`~napari_samlabel.curate.matching.GroundTruth` by image id.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.curate.matching import GroundTruth


@dataclass
class CurationItem:
    """One image to assess: its objects (masks, prompts, scores) and status."""

    image_id: str
    shape: tuple[int, int]
    objects: list[AnnotatedObject]
    status: str | None = None


class ProjectSource:
    """The annotated images of a project folder (:mod:`napari_samlabel.io.project`).

    Images with status ``new`` and no saved object are not annotated yet and are skipped.
    Objects carry their prompts, SAM score and stored signals.
    """

    kind = "project"

    def __init__(self, folder: Path) -> None:
        from napari_samlabel.io.project import Project

        self.project = Project.open(folder)
        self.folder = self.project.folder
        self.classes = self.project.classes

    def __len__(self) -> int:
        return len(self.project)

    def items(self) -> Iterator[CurationItem | tuple[str, Exception]]:
        """Yield an item per annotated image, or ``(image_id, error)`` for a broken one."""
        from napari_samlabel.core.document import ImageStatus
        from napari_samlabel.io.project_schema import ProjectError

        for entry in self.project:
            try:
                objects = self.project.read_objects(entry.image_id)
            except (ProjectError, OSError) as exc:
                yield entry.image_id, exc
                continue
            if entry.status == ImageStatus.NEW and not objects:
                yield CurationItem(entry.image_id, entry.shape, [], None)
                continue
            yield CurationItem(entry.image_id, entry.shape, objects, entry.status.value)

    def load(self, image_id: str) -> tuple[np.ndarray, Sequence[AnnotatedObject]]:
        """Image and objects of ``image_id`` (for the report)."""
        from napari_samlabel.io.images import load_image

        return load_image(self.project.image_path(image_id)), \
            self.project.read_objects(image_id)


def import_voc_min_area() -> int:
    """The ``min_area`` that ``samlabel import-voc`` uses by default (pixels).

    Read from :func:`napari_samlabel.io.voc_project.import_voc` itself, so that curation and
    import turn a class map into the same objects, whatever that default becomes.
    """
    from napari_samlabel.io.voc_project import import_voc

    return int((import_voc.__kwdefaults__ or {})["min_area"])


class VocSource:
    """The images of a VOC tree (ground truth or pseudo labels, :mod:`napari_samlabel.io.voc`).

    Each instance (``SegmentationObject``, else each connected class region of at least
    ``min_area`` pixels: VOC's class maps have specks of 1-5 pixels between their void bands)
    becomes one object; its class is its ``Annotations`` entry's, else the majority class of
    its pixels. That is the rule of ``samlabel import-voc``, with its default ``min_area``
    (:func:`import_voc_min_area`). Without prompts and SAM scores only the mask-based
    signals apply.
    """

    kind = "voc"

    def __init__(self, folder: Path, min_area: int | None = None) -> None:
        from napari_samlabel.io.voc import VocError
        from napari_samlabel.io.voc.reader import find_voc_root, read_voc_classes

        self.min_area = import_voc_min_area() if min_area is None else int(min_area)
        self.folder = find_voc_root(folder)
        self.classes = read_voc_classes(self.folder)
        seg = self.folder / "SegmentationClass"
        if not seg.is_dir():
            raise VocError(f"{self.folder} has no SegmentationClass folder")
        self.ids = sorted(p.stem for p in seg.glob("*.png") if not p.name.startswith("."))

    def __len__(self) -> int:
        return len(self.ids)

    def _read(self, image_id: str) -> tuple[Path, tuple[int, int], list[AnnotatedObject]]:
        """Image path, shape and objects of one image, read the way ``read_voc`` reads them.

        Read image by image (not through the ``read_voc`` generator) so that one broken file
        skips one image instead of ending the run.
        """
        from napari_samlabel.io.images import image_size
        from napari_samlabel.io.voc import VocError
        from napari_samlabel.io.voc.annotations import parse_annotation
        from napari_samlabel.io.voc.components import instances_from_components
        from napari_samlabel.io.voc.labelpng import read_label_png
        from napari_samlabel.io.voc.reader import find_image
        from napari_samlabel.io.voc_project import objects_from_maps

        png = self.folder / "SegmentationClass" / f"{image_id}.png"
        semantic = read_label_png(png)
        image = find_image(self.folder / "JPEGImages", image_id)
        size = image_size(image)
        if size != semantic.shape:
            raise VocError(f"{png} is {semantic.shape[0]}x{semantic.shape[1]} but its image "
                           f"{image} is {size[0]}x{size[1]} (HxW)")
        obj_png = self.folder / "SegmentationObject" / png.name
        xml = self.folder / "Annotations" / f"{image_id}.xml"
        infos: list[Any] = []
        if obj_png.is_file():
            instance = read_label_png(obj_png)
            if instance.shape != semantic.shape:
                raise VocError(f"{obj_png} is {instance.shape} but {png} is {semantic.shape}")
            if xml.is_file():
                infos = parse_annotation(xml, self.classes)[1]
        else:
            # XML order would not match the components, so the XML is not read.
            instance = instances_from_components(semantic, self.min_area)
        # The VOC -> objects rule of `samlabel import-voc`, so that both agree.
        objects = objects_from_maps(semantic, instance, infos, self.classes, image_id)
        return image, (int(semantic.shape[0]), int(semantic.shape[1])), objects

    def items(self) -> Iterator[CurationItem | tuple[str, Exception]]:
        """Yield an item per image with a ``SegmentationClass`` PNG (sorted by id)."""
        for iid in self.ids:
            try:
                _, shape, objects = self._read(iid)
            except (ValueError, OSError) as exc:
                yield iid, exc
                continue
            yield CurationItem(iid, shape, objects, None)

    def load(self, image_id: str) -> tuple[np.ndarray, Sequence[AnnotatedObject]]:
        """Image and objects of ``image_id`` (for the report)."""
        from napari_samlabel.io.images import load_image

        image, _, objects = self._read(image_id)
        return load_image(image), objects


class PseudoSource:
    """The output folder of ``samlabel pseudo-label`` (:mod:`napari_samlabel.pseudo.store`).

    Reads ``scores/<id>.json`` (one record per segmented unit: class, SAM's predicted IoU
    ``score``, the predicted IoUs of all candidate masks ``ious``, and when the run stored
    them ``stability``, ``disagreement`` and ``iou_spread``) and the unit map
    ``SegmentationObject/<id>.png`` (unit ``k`` has value ``k``): each unit becomes one object
    whose mask is the pixels it kept after composition. With ``weak`` (the weak labels the
    run used) each unit also gets its prompts: its own positive prompts (all prompts of its
    class for a run by class, its own for a run by object) plus, as negatives, the
    background prompts and the other classes' points and scribbles, whether or not the
    policy fed them to SAM: another class's click inside the mask is a failure either way.
    """

    kind = "pseudo"

    def __init__(self, folder: Path, weak: str | os.PathLike[str] | None = None) -> None:
        from napari_samlabel.core.classes import ClassTable
        from napari_samlabel.pseudo.store import SCORES_DIR, ResultStore

        self.folder = Path(folder).absolute()
        self.store = ResultStore(self.folder)
        run_file = self.folder / "run.json"
        try:
            run = json.loads(run_file.read_text(encoding="utf-8"))
            names = run["classes"]
            self.classes = ClassTable(tuple(names))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{run_file}: cannot read the run settings ({exc})") from None
        self.weak_kind = run.get("kind")
        self.ids = sorted(p.stem for p in (self.folder / SCORES_DIR).glob("*.json")
                          if not p.name.startswith("."))
        self.weak: dict[str, Any] | None = None
        if weak is not None:
            from napari_samlabel.io.weak import read_weak_labels

            if self.weak_kind is None:
                raise ValueError(f"{run_file} does not say which kind of weak labels the "
                                 "run used (field 'kind')")
            self.weak = read_weak_labels(Path(weak), self.weak_kind, self.classes)

    @staticmethod
    def is_pseudo(folder: str | os.PathLike[str]) -> bool:
        """True when ``folder`` looks like a pseudo-label output folder."""
        from napari_samlabel.pseudo.store import CLASS_DIR, OBJECT_DIR, SCORES_DIR

        f = Path(folder)
        return all((f / d).is_dir() for d in (CLASS_DIR, OBJECT_DIR, SCORES_DIR)) and \
            (f / "run.json").is_file()

    def __len__(self) -> int:
        return len(self.ids)

    def _prompts(self, image_id: str, rec: Mapping[str, Any], unit: str) -> tuple:
        from napari_samlabel.core.prompts import ObjectPrompts

        weak = (self.weak or {}).get(image_id)
        if weak is None:
            return ()
        cid = int(rec["class_id"])
        if unit == "class":
            own: ObjectPrompts | None = weak.by_class().get(cid)
        else:
            own = next((o for o in weak.objects if o.object_id == int(rec["object_id"])), None)
        positives = own.prompts if own is not None else ()
        return tuple(positives) + tuple(weak.negatives_for(cid))

    def _read(self, image_id: str) -> tuple[dict[str, Any], list[AnnotatedObject]]:
        rec = self.store.read_record(image_id)
        where = self.store.record_path(image_id)
        if rec is None:
            raise ValueError(f"{where}: missing or not JSON")
        semantic, instance = self.store.read_maps(image_id)
        unit = str(rec.get("unit", "object"))
        objects = []
        units = rec.get("objects")
        if not isinstance(units, list):
            raise ValueError(f"{where}: field 'objects' must be a list")
        for n, u in enumerate(units):
            try:
                k = int(u["unit"])
                score = u.get("score")
                ious = [float(v) for v in u.get("ious") or []]
                # Signals a run may store per unit are used as given.
                signals = {name: float(u[name])
                           for name in ("stability", "disagreement", "iou_spread")
                           if isinstance(u.get(name), (int, float))
                           and not isinstance(u.get(name), bool)}
                if len(ious) > 1:
                    signals.setdefault("iou_spread", max(ious) - min(ious))
                if u.get("mask_pixels"):
                    signals["overlap_lost"] = 1.0 - float(u.get("pixels", 0)) / float(
                        u["mask_pixels"])
                objects.append(AnnotatedObject(
                    k, int(u["class_id"]), instance == k, self._prompts(image_id, u, unit),
                    None if score is None else float(score), rec.get("model_id"), signals))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{where}: objects[{n}]: {exc}") from None
        return rec, objects

    def items(self) -> Iterator[CurationItem | tuple[str, Exception]]:
        """Yield an item per finished image."""
        for iid in self.ids:
            try:
                rec, objects = self._read(iid)
                shape = tuple(int(v) for v in rec.get("shape") or objects[0].mask.shape)
            except (ValueError, OSError, IndexError) as exc:
                yield iid, exc
                continue
            yield CurationItem(iid, (shape[0], shape[1]), objects, None)

    def load(self, image_id: str) -> tuple[np.ndarray, Sequence[AnnotatedObject]]:
        """Image and objects of ``image_id`` (for the report)."""
        from napari_samlabel.io.images import load_image

        rec, objects = self._read(image_id)
        return load_image(rec["image"]), objects


def open_source(path: str | os.PathLike[str], weak: str | os.PathLike[str] | None = None,
                min_area: int | None = None) -> ProjectSource | PseudoSource | VocSource:
    """Open ``path`` as a project folder, a pseudo-label output folder, or a VOC tree.

    ``weak`` (the weak labels of a pseudo-label run) applies to a pseudo-label folder only;
    ``min_area`` to a VOC tree only (see :class:`VocSource`).

    Raises
    ------
    ValueError
        If ``path`` is neither (the message says what was looked for).
    """
    from napari_samlabel.io.project import Project
    from napari_samlabel.io.voc import VocError

    folder = Path(path)
    if not folder.exists():
        raise ValueError(f"{folder} not found")
    if PseudoSource.is_pseudo(folder):
        return PseudoSource(folder, weak)
    if weak is not None:
        raise ValueError(f"weak labels apply to the output folder of samlabel pseudo-label "
                         f"(with run.json and scores/), and {folder} is not one")
    if Project.is_project(folder):
        return ProjectSource(folder)
    try:
        return VocSource(folder, min_area)
    except VocError as exc:
        raise ValueError(f"{folder} is neither a napari-samlabel project (no "
                         f"samlabel-project.json), nor a pseudo-label output (no run.json and "
                         f"scores/), nor a VOC tree: {exc}") from None


class GroundTruthFolder:
    """Ground-truth label PNGs by image id.

    ``path`` is a VOC tree (``SegmentationClass/`` and, when present, ``SegmentationObject/``
    for instances) or a plain folder of ``<id>.png`` class maps (compared with whole class
    regions then).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from napari_samlabel.io.voc import VocError
        from napari_samlabel.io.voc.reader import find_voc_root

        folder = Path(path)
        if not folder.is_dir():
            raise ValueError(f"ground-truth folder not found: {folder}")
        self.semantic_dir = folder
        self.instance_dir: Path | None = None
        try:
            voc = find_voc_root(folder)
        except VocError:
            voc = None
        if voc is not None and (voc / "SegmentationClass").is_dir():
            self.semantic_dir = voc / "SegmentationClass"
            if (voc / "SegmentationObject").is_dir():
                self.instance_dir = voc / "SegmentationObject"
        if not any(self.semantic_dir.glob("*.png")):
            raise ValueError(f"no ground-truth PNGs in {self.semantic_dir}")

    def get(self, image_id: str, shape: tuple[int, int]) -> GroundTruth | None:
        """Ground truth of ``image_id`` (None when it has none).

        Raises
        ------
        ValueError
            If a PNG is unreadable or its size differs from ``shape`` (names the file).
        """
        from napari_samlabel.io.voc.labelpng import read_label_png

        png = self.semantic_dir / f"{image_id}.png"
        if not png.is_file():
            return None
        semantic = read_label_png(png)
        instance = None
        if self.instance_dir is not None and (self.instance_dir / png.name).is_file():
            instance = read_label_png(self.instance_dir / png.name)
        for p, arr in ((png, semantic), (self.instance_dir and self.instance_dir / png.name,
                                         instance)):
            if arr is not None and arr.shape != tuple(shape):
                raise ValueError(f"ground truth {p} is {arr.shape[0]}x{arr.shape[1]} but the "
                                 f"image is {shape[0]}x{shape[1]} (HxW)")
        return GroundTruth(semantic, instance)


__all__ = [
    "CurationItem", "GroundTruthFolder", "ProjectSource", "PseudoSource", "VocSource",
    "import_voc_min_area", "open_source",
]
