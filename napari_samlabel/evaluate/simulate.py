"""Weak labels simulated from ground truth, written in the formats the readers read.

This reruns the seed paper's Table 1 protocol on any dataset with dense labels: derive points,
scribbles or boxes from the ground truth, pseudo-label from them, evaluate against the same
ground truth.

Objects
-------
With an instance map (VOC ``SegmentationObject``: instance number per pixel, 0 background,
255 void) every instance is an object, its class the majority ground-truth class under it.
Without one, every 8-connected component of a class is an object. Objects smaller than
``min_area`` pixels (default 20: VOC's void border band cuts slivers off objects) are skipped.
Within a class, objects are ranked by instance number, or by decreasing area for components.

What is simulated
-----------------
- points: one click per object at the pixel farthest from the object's border (maximum of the
  Euclidean distance transform, the middle of the ridge when it is not unique;
  ``point_mode="random"`` picks a uniformly random pixel of the
  object instead), plus ``background_points`` random background clicks (default 0, as in
  "What's the point"). Written as one dataset file ``points.json`` in the "What's the point"
  layout ``{id: [{"x", "y", "cls", "rank"}]}``.
- scribbles: the object's skeleton (:func:`skimage.morphology.skeletonize`) cut into pixel
  chains (chains shorter than 8 pixels, the skeleton's spurs into corners, are dropped, the
  longest chain is always kept) and subsampled to every ``step``-th pixel (default 4) as
  polylines; with ``background=True`` (default) the background's skeleton too, as class 0
  scribbles. Written as ``<id>.txt``, one ``cls,x1,y1,x2,y2,...`` line per polyline.
- boxes: the tight box of each object, written as ``<id>.json``
  ``{"image", "index_base": 1, "objects": [{"name", "bbox_xyxy"}]}`` in VOC's 1-based
  inclusive convention (see :mod:`napari_samlabel.io.weak.boxes`).
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_samlabel.core.classes import VOID, ClassTable, as_class_table
from napari_samlabel.core.coords import box_rc_to_xyxy, rc_to_xy
from napari_samlabel.core.fsutil import (
    atomic_write_text,
    make_temp_dir,
    remove_leftovers,
    write_error,
)
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.core.prompts import Box, ObjectPrompts, Point, Scribble
from napari_samlabel.io.voc.labelpng import read_label_png
from napari_samlabel.io.weak import WeakLabels, mask_to_polylines, renumber

from .metrics import EvaluationError, voc_label_folder

SIM_KINDS = ("points", "scribbles", "boxes")
MIN_AREA = 20
SCRIBBLE_STEP = 4
SPUR_LENGTH = 8


@dataclass(frozen=True)
class GTObject:
    """One ground-truth object: class, rank in its class, and its mask cropped to its box.

    ``offset`` is the ``(row, col)`` of ``mask[0, 0]`` in the image; ``bbox`` is
    ``(r0, c0, r1, c1)`` with inclusive 0-based ends.
    """

    class_id: int
    rank: int
    mask: np.ndarray
    offset: tuple[int, int]

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """Tight box ``(r0, c0, r1, c1)``, ends inclusive."""
        rows = np.flatnonzero(self.mask.any(axis=1))
        cols = np.flatnonzero(self.mask.any(axis=0))
        r, c = self.offset
        return (r + int(rows[0]), c + int(cols[0]), r + int(rows[-1]), c + int(cols[-1]))


def gt_objects(label_map: np.ndarray, instance_map: np.ndarray | None = None,
               min_area: int = MIN_AREA) -> list[GTObject]:
    """Split a ground-truth label map into objects (rules in the module doc).

    Returns
    -------
    list of GTObject
        Sorted by class, then rank (1-based).
    """
    from skimage.measure import label, regionprops

    label_map = np.asarray(label_map)
    found: list[tuple[int, float, GTObject]] = []
    if instance_map is not None:
        instance_map = np.asarray(instance_map)
        if instance_map.shape != label_map.shape:
            raise ValueError(f"instance map is {instance_map.shape}, label map "
                             f"{label_map.shape}")
        inst = np.where(instance_map == VOID, 0, instance_map).astype(np.int32)
        for region in regionprops(inst):
            r0, c0 = region.bbox[:2]
            classes = label_map[region.coords[:, 0], region.coords[:, 1]]
            classes = classes[(classes != 0) & (classes != VOID)]
            if region.area < min_area or classes.size == 0:
                continue
            cid = int(np.bincount(classes).argmax())
            found.append((cid, float(region.label), GTObject(cid, 0, region.image, (r0, c0))))
    else:
        for cid in np.unique(label_map):
            if cid in (0, VOID):
                continue
            for region in regionprops(label(label_map == cid, connectivity=2)):
                if region.area < min_area:
                    continue
                r0, c0 = region.bbox[:2]
                found.append((int(cid), -float(region.area),
                              GTObject(int(cid), 0, region.image, (r0, c0))))
    found.sort(key=lambda t: (t[0], t[1]))
    out: list[GTObject] = []
    rank: dict[int, int] = {}
    for cid, _, obj in found:
        rank[cid] = rank.get(cid, 0) + 1
        out.append(GTObject(cid, rank[cid], obj.mask, obj.offset))
    return out


def _centre_point(obj: GTObject, rng: np.random.Generator | None) -> tuple[int, int]:
    """The object's innermost pixel, or a random one when ``rng`` is given."""
    if rng is not None:
        rows, cols = np.nonzero(obj.mask)
        k = int(rng.integers(len(rows)))
        r, c = int(rows[k]), int(cols[k])
    else:
        from scipy.ndimage import distance_transform_edt

        # Pad so that the crop border counts as the object's border.
        dist = distance_transform_edt(np.pad(obj.mask, 1))[1:-1, 1:-1]
        # The maximum is often a ridge (a rectangle's mid-line): take its middle pixel.
        ridge = np.argwhere(dist >= dist.max())
        k = int(np.argmin(((ridge - ridge.mean(axis=0)) ** 2).sum(axis=1)))
        r, c = (int(v) for v in ridge[k])
    return r + obj.offset[0], c + obj.offset[1]


def _subsample(chain: np.ndarray, step: int) -> np.ndarray:
    keep = list(range(0, len(chain), step))
    if keep[-1] != len(chain) - 1:
        keep.append(len(chain) - 1)
    return chain[keep]


def _skeleton_polylines(mask: np.ndarray, offset: tuple[int, int], step: int,
                        min_length: int = SPUR_LENGTH) -> list[np.ndarray]:
    from skimage.morphology import skeletonize

    skel = skeletonize(np.pad(mask, 1))[1:-1, 1:-1]
    chains = sorted(mask_to_polylines(skel), key=len, reverse=True)
    # Short chains are spurs of the skeleton running into corners; keep at least the longest.
    chains = chains[:1] + [ch for ch in chains[1:] if len(ch) >= min_length]
    off = np.asarray(offset)
    return [_subsample(ch, step) + off for ch in chains]


def simulate_weak_labels(label_map: np.ndarray, kind: str, *, image_id: str = "",
                         instance_map: np.ndarray | None = None,
                         rng: np.random.Generator | None = None, point_mode: str = "center",
                         background_points: int = 0, step: int = SCRIBBLE_STEP,
                         background: bool = True, min_area: int = MIN_AREA) -> WeakLabels:
    """Simulate the weak labels of one image from its ground truth.

    Parameters
    ----------
    label_map : numpy.ndarray
        ``H x W`` class indices (0 background, 255 void).
    kind : str
        ``"points"``, ``"scribbles"`` or ``"boxes"``.
    image_id : str
        Stored in the result.
    instance_map : numpy.ndarray, optional
        ``H x W`` instance numbers (VOC ``SegmentationObject``).
    rng : numpy.random.Generator, optional
        Randomness for ``point_mode="random"`` and background points; default seed 0.
    point_mode : {"center", "random"}
        Where the click of an object goes (module doc).
    background_points : int
        Random background clicks to add (points only).
    step : int
        Keep every ``step``-th skeleton pixel as a scribble vertex (scribbles only).
    background : bool
        Add background scribbles (scribbles only).
    min_area : int
        Skip objects smaller than this many pixels.

    Returns
    -------
    WeakLabels
    """
    if kind not in SIM_KINDS:
        raise ValueError(f"cannot simulate {kind!r}; expected one of {', '.join(SIM_KINDS)}")
    if point_mode not in ("center", "random"):
        raise ValueError(f"point_mode must be 'center' or 'random', got {point_mode!r}")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    rng = rng if rng is not None else np.random.default_rng(0)
    label_map = np.asarray(label_map)
    objs = gt_objects(label_map, instance_map, min_area)
    objects: list[ObjectPrompts] = []
    negatives: list[Point | Scribble] = []
    for obj in objs:
        if kind == "points":
            r, c = _centre_point(obj, rng if point_mode == "random" else None)
            prompts: tuple = (Point((float(r), float(c))),)
        elif kind == "boxes":
            r0, c0, r1, c1 = obj.bbox
            prompts = (Box((float(r0), float(c0)), (float(r1), float(c1))),)
        else:
            prompts = tuple(Scribble(p) for p in
                            _skeleton_polylines(obj.mask, obj.offset, step))
        objects.append(ObjectPrompts(0, obj.class_id, prompts))
    if kind == "points" and background_points > 0:
        rows, cols = np.nonzero(label_map == 0)
        if len(rows):
            picks = rng.choice(len(rows), size=min(background_points, len(rows)), replace=False)
            negatives = [Point((float(rows[k]), float(cols[k])), positive=False)
                         for k in sorted(picks)]
    if kind == "scribbles" and background:
        from skimage.measure import label, regionprops

        for region in regionprops(label(label_map == 0, connectivity=2)):
            if region.area >= min_area:
                negatives.extend(Scribble(p, positive=False) for p in _skeleton_polylines(
                    region.image, region.bbox[:2], step))
    return WeakLabels(image_id, kind, renumber(objects), tuple(negatives), "simulated",
                      (int(label_map.shape[0]), int(label_map.shape[1])))


# ----------------------------------------------------------------------------- writers

def _num(v: float) -> int | float:
    return int(v) if float(v).is_integer() else round(float(v), 3)


def points_records(labels: WeakLabels) -> list[dict[str, Any]]:
    """The "What's the point" records of one image (rank = object order within its class)."""
    records = []
    rank: dict[int, int] = {}
    for obj in labels.objects:
        rank[obj.class_id] = rank.get(obj.class_id, 0) + 1
        for p in obj.points:
            x, y = rc_to_xy(np.array(p.rc))
            records.append({"x": _num(x), "y": _num(y), "cls": obj.class_id,
                            "rank": rank[obj.class_id]})
    for q in labels.background:  # points and scribbles: only the points are written here
        if isinstance(q, Point):
            x, y = rc_to_xy(np.array(q.rc))
            records.append({"x": _num(x), "y": _num(y), "cls": 0})
    return records


def scribbles_text(labels: WeakLabels) -> str:
    """The text scribble file of one image: ``cls,x1,y1,...`` per scribble."""
    lines = []
    items = [(o.class_id, s) for o in labels.objects for s in o.scribbles]
    items += [(0, s) for s in labels.background if isinstance(s, Scribble)]
    for cid, s in items:
        xy = rc_to_xy(s.path)
        lines.append(",".join([str(cid)] + [str(_num(v)) for v in xy.ravel()]))
    return "\n".join(lines) + ("\n" if lines else "")


def boxes_document(labels: WeakLabels, classes: ClassTable) -> dict[str, Any]:
    """The box JSON document of one image, VOC 1-based coordinates."""
    objects = []
    for obj in labels.objects:
        for b in obj.boxes:
            xyxy = box_rc_to_xyxy(np.array(b.top_left), np.array(b.bottom_right)) + 1
            objects.append({"name": classes.name(obj.class_id),
                            "bbox_xyxy": [_num(v) for v in xyxy]})
    return {"image": labels.image_id, "index_base": 1, "objects": objects}


# ----------------------------------------------------------------------------- datasets

def _image_rng(seed: int, image_id: str) -> np.random.Generator:
    # Seeded by image id, so a subset of a dataset gets the same labels as the whole.
    return np.random.default_rng([int(seed), zlib.crc32(image_id.encode("utf-8"))])


def _label_folder(folder: Path, sub: str) -> Path | None:
    return voc_label_folder(folder, sub)


def simulate_weak_dir(gt_dir: str | Path, kind: str, out_dir: str | Path, *,
                      instance_dir: str | Path | None = None,
                      classes: ClassTable | Sequence[str] | None = None, seed: int = 0,
                      ids: Sequence[str] | None = None,
                      progress: ProgressCallback = no_progress, overwrite: bool = False,
                      **options: Any) -> dict[str, Any]:
    """Simulate weak labels for every ground-truth PNG of a folder and write them.

    All or nothing: the files are written to a hidden folder in ``out_dir`` and moved into
    place at the end, so an error (a bad label map, a full disk) leaves no partial output.

    Parameters
    ----------
    gt_dir : str or pathlib.Path
        Folder of ``<id>.png`` label maps, or a VOC dataset in any layout
        :func:`~napari_samlabel.evaluate.metrics.voc_label_folder` accepts (``VOC2012``, or
        the output folder of ``samlabel export``): its ``SegmentationClass/``, and its
        ``SegmentationObject/`` as instance maps when present.
    kind : str
        ``"points"``, ``"scribbles"`` or ``"boxes"``.
    out_dir : str or pathlib.Path
        Where the files go (layout in the module doc); created if needed.
    instance_dir : str or pathlib.Path, optional
        Folder of ``<id>.png`` instance maps; images without one use connected components.
    classes : ClassTable or list of str, optional
        Class table (VOC by default), for box names and value checks.
    seed : int
        Seed of the random choices (random points, background points).
    ids : sequence of str, optional
        Only these images.
    progress : callable
        ``progress(done, total, image_id)`` after each image.
    **options
        Passed to :func:`simulate_weak_labels` (``point_mode``, ``background_points``,
        ``step``, ``background``, ``min_area``).
    overwrite : bool
        Replace output files that exist; without it an existing one is an error (checked
        before any work).

    Returns
    -------
    dict
        ``{"images": n, "objects": n, "files": [paths], "kind": kind}``.
    """
    if kind not in SIM_KINDS:
        raise ValueError(f"cannot simulate {kind!r}; expected one of {', '.join(SIM_KINDS)}")
    table = as_class_table(classes)
    gt_dir = Path(gt_dir)
    seg = _label_folder(gt_dir, "SegmentationClass")
    if seg is not None and instance_dir is None:
        instance_dir = _label_folder(gt_dir, "SegmentationObject")
    gt_dir = seg or gt_dir
    if not gt_dir.is_dir():
        raise EvaluationError(f"ground-truth folder not found: {gt_dir}")
    gts = {p.stem: p for p in sorted(gt_dir.glob("*.png")) if not p.name.startswith(".")}
    wanted = list(ids) if ids is not None else list(gts)
    missing = [i for i in wanted if i not in gts]
    if missing:
        raise EvaluationError(f"no ground truth in {gt_dir} for {', '.join(missing[:5])}")
    if not wanted:
        raise EvaluationError(f"no ground-truth PNGs in {gt_dir}")
    out = Path(out_dir)
    names = (["points.json"] if kind == "points" else
             [f"{i}.txt" if kind == "scribbles" else f"{i}.json" for i in wanted])
    existing = [out / n for n in names if (out / n).exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise FileExistsError(f"{existing[0]} exists{more}; pass --overwrite to replace it")
    try:
        out.mkdir(parents=True, exist_ok=True)
        remove_leftovers(out, ".simulate-", (".tmp",))  # of a killed run
        tmp = make_temp_dir(out, ".simulate-", ".tmp")
    except OSError as exc:
        raise write_error(out, exc, "nothing was written") from exc
    try:
        summary = _simulate_into(tmp, out, gts, wanted, kind, table, instance_dir, seed,
                                 progress, options)
        for name in os.listdir(tmp):
            os.replace(tmp / name, out / name)
    except OSError as exc:
        raise write_error(out, exc, "nothing was written") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _simulate_into(tmp: Path, out: Path, gts: dict[str, Path], wanted: list[str], kind: str,
                   table: ClassTable, instance_dir: str | Path | None, seed: int,
                   progress: ProgressCallback, options: dict[str, Any]) -> dict[str, Any]:
    """Write the weak labels of ``wanted`` into ``tmp``; the summary names them in ``out``."""
    files: list[str] = []
    all_points: dict[str, list[dict[str, Any]]] = {}
    n_objects = 0
    for k, image_id in enumerate(wanted, start=1):
        label_map = read_label_png(gts[image_id])
        bad = np.unique(label_map[(label_map >= len(table)) & (label_map != VOID)])
        if bad.size:
            raise EvaluationError(f"{gts[image_id]}: values {bad.tolist()[:10]} outside the "
                                  f"{len(table)} classes")
        inst = None
        if instance_dir is not None and (Path(instance_dir) / f"{image_id}.png").exists():
            inst = read_label_png(Path(instance_dir) / f"{image_id}.png")
            if inst.shape != label_map.shape:
                raise EvaluationError(f"{Path(instance_dir) / f'{image_id}.png'}: instance map "
                                      f"is {inst.shape}, label map {label_map.shape}")
        labels = simulate_weak_labels(label_map, kind, image_id=image_id, instance_map=inst,
                                      rng=_image_rng(seed, image_id), **options)
        n_objects += len(labels.objects)
        if kind == "points":
            all_points[image_id] = points_records(labels)
        elif kind == "scribbles":
            atomic_write_text(tmp / f"{image_id}.txt", scribbles_text(labels))
            files.append(str(out / f"{image_id}.txt"))
        else:
            atomic_write_text(tmp / f"{image_id}.json",
                              json.dumps(boxes_document(labels, table), indent=1))
            files.append(str(out / f"{image_id}.json"))
        progress(k, len(wanted), image_id)
    if kind == "points":
        atomic_write_text(tmp / "points.json", json.dumps(all_points, indent=1))
        files.append(str(out / "points.json"))
    return {"kind": kind, "images": len(wanted), "objects": n_objects, "files": files}
