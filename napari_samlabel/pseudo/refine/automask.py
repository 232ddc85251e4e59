"""SAM's automatic ("everything") masks, tagged with their multimask level, cached on disk.

SAM's :class:`segment_anything.SamAutomaticMaskGenerator` prompts the decoder with a grid
of single points, keeps the three multimask outputs of every point (sub-part, part, whole),
filters them by predicted IoU and stability score, and removes duplicates with box NMS. Its
records do not say which of the three outputs a mask was. The SAMS refiner needs that level
(it prefers whole masks), so :func:`generate_automasks` runs SAM's generator through a
small subclass that

- tags every mask with its level (0 sub-part, 1 part, 2 whole: the index of the output in
  the decoder's multimask result, which is what "level" means in SAM);
- optionally adds a per-level offset to the predicted IoU before ``pred_iou_thresh`` (a
  positive offset lowers the threshold of that level) and another to the NMS score (a large
  offset makes NMS prefer that level).

With zero offsets (:class:`AutoMaskParams` defaults) the masks are exactly those of SAM's own
generator with the same parameters. The subclass overrides two private methods of
segment-anything 1.0 (``_process_crop``, ``_process_batch``); their steps are unchanged
apart from the two additions above.

``min_mask_region_area`` (hole and island removal) needs OpenCV, which the product does not
depend on, so it is not offered.

Disk cache
----------
:class:`AutoMaskCache` keeps one ``.npz`` per image, model and parameter set:
``<directory>/<model dir>/<image key>-<params key>.npz`` (``<model dir>`` as in the embedding
cache; ``<image key>`` the SHA-256 of the pixels, :func:`napari_samlabel.engine.cache.
image_key`; ``<params key>`` 16 hex digits of the SHA-256 of the parameters that change the
result). Keys of format version 1 (plain ``numpy.load``, no pickles):

==================  ===================  ================================================
``masks``           uint8 ``(N, ceil(H*W/8))``  each mask's pixels, ``numpy.packbits`` of the
                                         row-major flattened bool mask
``shape``           int64 ``(3,)``       ``(N, H, W)``
``area``            int64 ``(N,)``       pixels in each mask
``predicted_iou``   float32 ``(N,)``     SAM's predicted IoU (without offsets)
``stability_score`` float32 ``(N,)``     SAM's stability score
``bbox``            float32 ``(N, 4)``   box ``[x, y, w, h]`` in pixels (SAM's XYWH)
``level``           uint8 ``(N,)``       0 sub-part, 1 part, 2 whole
``point``           float32 ``(N, 2)``   the grid point ``(x, y)`` that produced the mask
``model_id``        str                  identity of the weights
``params``          str                  the parameters as JSON
``format_version``  int64                1
==================  ===================  ================================================

Files are written atomically (:mod:`napari_samlabel.core.fsutil`); an unreadable file is
reported with a warning and recomputed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from napari_samlabel.core.fsutil import atomic_save
from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.engine.base import CachedEngine
from napari_samlabel.engine.cache import image_key

#: Multimask levels, in the order of SAM's three outputs.
LEVEL_SUBPART, LEVEL_PART, LEVEL_WHOLE = 0, 1, 2
LEVEL_NAMES = ("sub-part", "part", "whole")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class AutoMaskParams:
    """Parameters of the automatic mask generator (SAM's defaults unless stated).

    Attributes
    ----------
    points_per_side : int
        Grid of ``points_per_side ** 2`` single-point prompts (SAM: 32).
    points_per_batch : int or None
        Points decoded together; changes speed and memory, not the result. None (the
        default) picks by device: :data:`CPU_POINTS_PER_BATCH` on CPU, where SAM's 64 is
        1.8x slower per point (the decoder's batch-sized tensors outgrow the caches:
        113 ms per point at 64, 77 ms at 4, ViT-B on 2 cores), and SAM's 64 elsewhere.
    pred_iou_thresh : float
        Keep masks whose predicted IoU (plus the level's offset) is above this (SAM: 0.88).
    stability_score_thresh : float
        Keep masks whose stability score is at least this (SAM: 0.95).
    stability_score_offset : float
        Logit shift used to compute the stability score (SAM: 1.0).
    box_nms_thresh : float
        Box IoU above which NMS removes the lower-scored duplicate (SAM: 0.7).
    crop_n_layers, crop_nms_thresh, crop_overlap_ratio, crop_n_points_downscale_factor
        Extra passes on image crops, as in SAM (off by default: ``crop_n_layers = 0``).
    level_iou_offset : tuple of 3 float
        Added to the predicted IoU of (sub-part, part, whole) masks before the
        ``pred_iou_thresh`` test only; ``(0, 0, 0.1)`` lowers the whole level's threshold by
        0.1.
    level_nms_offset : tuple of 3 float
        Added to the NMS score of (sub-part, part, whole) masks; ``(0, 0, 1)`` makes NMS
        keep a whole mask over any overlapping part or sub-part mask.
    """

    points_per_side: int = 32
    points_per_batch: int | None = None
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    level_iou_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    level_nms_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if self.points_per_side < 1:
            raise ValueError(f"points_per_side must be >= 1, got {self.points_per_side}")
        if self.points_per_batch is not None and self.points_per_batch < 1:
            raise ValueError(f"points_per_batch must be >= 1, got {self.points_per_batch}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", "int | None") and value is not None and (
                    isinstance(value, bool) or float(value) != int(value)):
                raise ValueError(f"{f.name} must be a whole number, got {value!r}")
        if self.crop_n_layers < 0:
            raise ValueError(f"crop_n_layers must be >= 0, got {self.crop_n_layers}")
        for name in ("box_nms_thresh", "crop_nms_thresh"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("level_iou_offset", "level_nms_offset"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3:
                raise ValueError(f"{name} needs 3 values (sub-part, part, whole), got {value}")
            object.__setattr__(self, name, value)

    def normalised(self) -> dict[str, Any]:
        """The parameters with each value in its field's type (``0`` and ``0.0`` alike)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("level_"):
                out[f.name] = [float(v) for v in value]
            elif value is None:
                out[f.name] = None
            elif f.type in ("int", int, "int | None"):
                out[f.name] = int(value)
            else:
                out[f.name] = float(value)
        return out

    def key(self) -> str:
        """16 hex digits identifying the parameters that change the masks.

        Computed from :meth:`normalised` values, so ``pred_iou_thresh=1`` and ``1.0`` (or
        numpy scalars) share a cache entry.
        """
        fields = self.normalised()
        fields.pop("points_per_batch")  # speed only
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_json(self) -> str:
        """All parameters as a JSON object."""
        return json.dumps(self.normalised(), sort_keys=True)


#: Points decoded together on CPU when :attr:`AutoMaskParams.points_per_batch` is None.
CPU_POINTS_PER_BATCH = 4
#: ... and on a GPU (segment-anything's default).
GPU_POINTS_PER_BATCH = 64


def points_per_batch_for(device: Any) -> int:
    """The default batch of automatic-mask points for a torch ``device``."""
    return CPU_POINTS_PER_BATCH if str(device).split(":")[0] == "cpu" else GPU_POINTS_PER_BATCH


#: Level preference of the SAMS module (Yang & Gong): the whole level's IoU threshold is
#: lowered by 0.1 and NMS prefers whole masks. These are the offsets of the authors' public
#: configuration; the other values stay SAM's defaults (the authors additionally ran one
#: crop layer, a 0.86 / 0.92 IoU / stability threshold and OpenCV hole filling, which cost
#: about five times the time on a CPU).
SAMS_PARAMS = AutoMaskParams(level_iou_offset=(0.0, 0.0, 0.1), level_nms_offset=(0.0, 0.0, 1.0))


@dataclass(frozen=True, eq=False)
class AutoMask:
    """One automatic mask.

    Attributes
    ----------
    segmentation : numpy.ndarray
        ``H x W`` ``bool`` mask at image resolution.
    area : int
        Number of pixels in the mask.
    predicted_iou : float
        SAM's predicted IoU of the mask (without level offsets).
    stability_score : float
        SAM's stability score.
    bbox : tuple of 4 float
        ``(x, y, w, h)`` in pixels, as SAM reports it.
    level : int
        0 sub-part, 1 part, 2 whole (the index of SAM's multimask output).
    point : tuple of 2 float
        The grid point ``(x, y)`` that produced the mask.
    """

    segmentation: np.ndarray
    area: int
    predicted_iou: float
    stability_score: float
    bbox: tuple[float, float, float, float]
    level: int
    point: tuple[float, float]


def stack_masks(masks: Sequence[AutoMask] | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Return masks as an ``N x H x W`` ``bool`` array, checking they have ``shape``.

    Accepts a sequence of :class:`AutoMask` or an array already stacked.
    """
    if isinstance(masks, np.ndarray):
        arr = masks
        if arr.ndim == 2:
            arr = arr[None]
    elif len(masks) == 0:
        arr = np.zeros((0, *shape), dtype=bool)
    else:
        arr = np.stack([np.asarray(m.segmentation) for m in masks])
    if arr.ndim != 3 or tuple(arr.shape[1:]) != tuple(shape):
        raise ValueError(f"masks have shape {tuple(arr.shape)}, expected N x {shape[0]} x "
                         f"{shape[1]} (the size of the label map)")
    return arr.astype(bool, copy=False)


# --------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------
@functools.cache
def _generator_class() -> type:
    """Define the level-tagging subclass (segment_anything is imported only here)."""
    import torch
    from segment_anything import SamAutomaticMaskGenerator
    from segment_anything.utils.amg import (
        MaskData,
        batch_iterator,
        batched_mask_to_box,
        calculate_stability_score,
        is_box_near_crop_edge,
        mask_to_rle_pytorch,
        uncrop_boxes_xyxy,
        uncrop_masks,
        uncrop_points,
    )
    from torchvision.ops.boxes import batched_nms

    class LevelTaggingMaskGenerator(SamAutomaticMaskGenerator):
        """SAM's generator plus the multimask level of each mask and per-level offsets."""

        def __init__(self, model: Any, params: AutoMaskParams,
                     progress: ProgressCallback = no_progress,
                     engine: CachedEngine | None = None) -> None:
            batch = params.points_per_batch or points_per_batch_for(
                engine.predictor.device if engine is not None else model.device)
            super().__init__(
                model,
                points_per_side=params.points_per_side,
                points_per_batch=batch,
                pred_iou_thresh=params.pred_iou_thresh,
                stability_score_thresh=params.stability_score_thresh,
                stability_score_offset=params.stability_score_offset,
                box_nms_thresh=params.box_nms_thresh,
                crop_n_layers=params.crop_n_layers,
                crop_nms_thresh=params.crop_nms_thresh,
                crop_overlap_ratio=params.crop_overlap_ratio,
                crop_n_points_downscale_factor=params.crop_n_points_downscale_factor,
            )
            self.engine = engine
            if engine is not None:
                # Share the engine's predictor so the whole image comes from its
                # embedding cache instead of being encoded again.
                self.predictor = engine.predictor
            device = self.predictor.device
            self.level_iou_offset = torch.tensor(params.level_iou_offset, device=device)
            self.level_nms_offset = torch.tensor(params.level_nms_offset, device=device)
            self.progress = progress
            self.batches_total = sum(math.ceil(len(g) / self.points_per_batch)
                                     * (1 if i == 0 else 4 ** i)
                                     for i, g in enumerate(self.point_grids))
            self.batches_done = 0

        def _process_crop(self, image: np.ndarray, crop_box: list[int], crop_layer_idx: int,
                          orig_size: tuple[int, ...]) -> Any:
            x0, y0, x1, y1 = crop_box
            cropped = image[y0:y1, x0:x1, :]
            cropped_size = cropped.shape[:2]
            whole = cropped_size == image.shape[:2]
            if self.engine is not None and whole:
                self.engine.set_image(cropped)
            else:
                self.predictor.set_image(cropped)
            scale = np.array(cropped_size)[None, ::-1]
            points_for_image = self.point_grids[crop_layer_idx] * scale
            data = MaskData()
            for (points,) in batch_iterator(self.points_per_batch, points_for_image):
                data.cat(self._process_batch(points, cropped_size, crop_box, orig_size))
                self.batches_done += 1
                self.progress(self.batches_done, self.batches_total, "automatic masks")
            if self.engine is None or not whole:
                self.predictor.reset_image()
            if data["rles"] is None or len(data["rles"]) == 0:
                return _empty_mask_data(MaskData, torch)
            # Duplicates within the crop; the score carries the level preference.
            keep = batched_nms(data["boxes"].float(), data["nms_scores"],
                               torch.zeros_like(data["boxes"][:, 0]),
                               iou_threshold=self.box_nms_thresh)
            data.filter(keep)
            data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
            data["points"] = uncrop_points(data["points"], crop_box)
            data["crop_boxes"] = torch.tensor([crop_box for _ in range(len(data["rles"]))])
            return data

        def _process_batch(self, points: np.ndarray, im_size: tuple[int, ...],
                           crop_box: list[int], orig_size: tuple[int, ...]) -> Any:
            orig_h, orig_w = orig_size
            coords = self.predictor.transform.apply_coords(points, im_size)
            in_points = torch.as_tensor(coords, device=self.predictor.device)
            in_labels = torch.ones(in_points.shape[0], dtype=torch.int, device=in_points.device)
            masks, iou_preds, _ = self.predictor.predict_torch(
                in_points[:, None, :], in_labels[:, None], multimask_output=True,
                return_logits=True)
            # (B, 3) -> level of each output is its column index.
            levels = torch.arange(iou_preds.shape[1], device=iou_preds.device).expand_as(iou_preds)
            data = MaskData(
                masks=masks.flatten(0, 1),
                iou_preds=iou_preds.flatten(0, 1),
                thresh_scores=(iou_preds + self.level_iou_offset[None, :]).flatten(0, 1),
                nms_scores=(iou_preds + self.level_nms_offset[None, :]).flatten(0, 1),
                levels=levels.flatten(0, 1),
                points=torch.as_tensor(points.repeat(masks.shape[1], axis=0)),
            )
            del masks
            if self.pred_iou_thresh > 0.0:
                data.filter(data["thresh_scores"] > self.pred_iou_thresh)
            data["stability_score"] = calculate_stability_score(
                data["masks"], self.predictor.model.mask_threshold, self.stability_score_offset)
            if self.stability_score_thresh > 0.0:
                data.filter(data["stability_score"] >= self.stability_score_thresh)
            data["masks"] = data["masks"] > self.predictor.model.mask_threshold
            data["boxes"] = batched_mask_to_box(data["masks"])
            keep = ~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, orig_w, orig_h])
            if not torch.all(keep):
                data.filter(keep)
            data["masks"] = uncrop_masks(data["masks"], crop_box, orig_h, orig_w)
            data["rles"] = mask_to_rle_pytorch(data["masks"])
            del data["masks"]
            return data

    return LevelTaggingMaskGenerator


def _empty_mask_data(mask_data_cls: Any, torch: Any) -> Any:
    """MaskData with every key of a generator result and zero rows."""
    return mask_data_cls(
        rles=[], boxes=torch.zeros((0, 4)), iou_preds=torch.zeros(0),
        thresh_scores=torch.zeros(0), nms_scores=torch.zeros(0),
        levels=torch.zeros(0, dtype=torch.long), points=torch.zeros((0, 2)),
        stability_score=torch.zeros(0), crop_boxes=torch.zeros((0, 4)))


def _check_image(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"the image must be RGB uint8 (H x W x 3), got {arr.dtype} "
                         f"{arr.shape}")
    return np.ascontiguousarray(arr)


#: Model families whose predictor the level-tagging generator drives (segment-anything's API
#: with SAM's three mask levels).
AUTOMASK_FAMILIES = ("sam", "mobile_sam")


def is_mask_engine(sam: object) -> TypeGuard[CachedEngine]:
    """Whether ``sam`` is an engine (not a bare model) that may make automatic masks."""
    return isinstance(sam, CachedEngine)


def generate_automasks(sam: Any, image: np.ndarray, params: AutoMaskParams = AutoMaskParams(),
                       progress: ProgressCallback = no_progress) -> list[AutoMask]:
    """Run SAM's automatic mask generator on ``image`` and return level-tagged masks.

    Parameters
    ----------
    sam : segment_anything.modeling.Sam or napari_samlabel.engine.families.sam.SamEngine
        The model (on the device it should run on), or an engine: then the whole image's
        embedding comes from (and goes to) the engine's embedding cache, it is encoded with
        the engine's precision, and the image stays set in the engine afterwards.
    image : numpy.ndarray
        ``H x W x 3`` ``uint8`` RGB image.
    params : AutoMaskParams
        Generator parameters (SAM's defaults; :data:`SAMS_PARAMS` for the SAMS preference).
    progress : callable
        ``progress(done, total, message)`` after each batch of points.

    Returns
    -------
    list of AutoMask
        In the generator's order (by crop, then NMS order).
    """
    import torch
    from segment_anything.utils.amg import area_from_rle, box_xyxy_to_xywh, rle_to_mask

    image = _check_image(image)
    engine = sam if is_mask_engine(sam) else None
    family = engine.family if engine is not None else "sam"
    if family not in AUTOMASK_FAMILIES:
        # SAM 2's predictor has another API, SAM-HQ returns one mask per point: neither
        # gives the sub-part / part / whole levels SAMS ranks by.
        raise ValueError(
            f"automatic masks need a model of the SAM or MobileSAM family (vit_b, vit_l, "
            f"vit_h, vit_t); {sam.model_id.split(':')[0]!r} is {family}. Pass "
            "--model vit_b (or another of those) for SEPL/SAMS refinement")
    model = engine.predictor.model if engine is not None else sam
    generator = _generator_class()(model, params, progress, engine)
    with torch.no_grad():
        data = generator._generate_masks(image)
    if engine is not None and params.crop_n_layers > 0:
        engine.set_image(image)  # crops went through its predictor; the whole image is cached
    out = []
    for i, rle in enumerate(data["rles"]):
        mask = rle_to_mask(rle).astype(bool)
        out.append(AutoMask(
            segmentation=mask,
            area=int(area_from_rle(rle)),
            predicted_iou=float(data["iou_preds"][i]),
            stability_score=float(data["stability_score"][i]),
            bbox=_bbox(box_xyxy_to_xywh(data["boxes"][i]).tolist()),
            level=int(data["levels"][i]),
            point=(float(data["points"][i][0]), float(data["points"][i][1])),
        ))
    return out


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------
def _bbox(values: Sequence[float]) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in values)
    return x, y, w, h


def _model_dir_name(model_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_"
                   for ch in model_id.replace(":", "-"))


class AutoMaskCache:
    """Disk cache of automatic masks (see the module docstring for the file format).

    Parameters
    ----------
    directory : path
        Root folder of the cache (created on the first write).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"AutoMaskCache({str(self.directory)!r})"

    def path_for(self, model_id: str, image: np.ndarray, params: AutoMaskParams) -> Path:
        """The cache file of ``image`` with ``model_id`` and ``params``."""
        return (self.directory / _model_dir_name(model_id)
                / f"{image_key(np.asarray(image))}-{params.key()}.npz")

    def load(self, path: str | os.PathLike[str]) -> list[AutoMask] | None:
        """Read one cache file; None when it is missing or unreadable (with a warning)."""
        path = Path(path)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["format_version"]) != FORMAT_VERSION:
                    raise ValueError(f"format version {int(z['format_version'])}")
                n, h, w = (int(v) for v in z["shape"])
                bits = z["masks"]
                masks = np.unpackbits(bits, axis=1, count=h * w).reshape(n, h, w).astype(bool)
                area, iou, stab = z["area"], z["predicted_iou"], z["stability_score"]
                bbox, level, point = z["bbox"], z["level"], z["point"]
                if not all(len(a) == n for a in (area, iou, stab, bbox, level, point)):
                    raise ValueError("arrays of different lengths")
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            warnings.warn(f"automatic-mask cache file {path} is unreadable ({exc}); the masks "
                          "are computed again", stacklevel=2)
            return None
        return [AutoMask(masks[i], int(area[i]), float(iou[i]), float(stab[i]),
                         _bbox(bbox[i]), int(level[i]),
                         (float(point[i][0]), float(point[i][1])))
                for i in range(n)]

    def save(self, path: str | os.PathLike[str], masks: Sequence[AutoMask],
             shape: tuple[int, int], model_id: str, params: AutoMaskParams) -> None:
        """Write ``masks`` (of an ``H x W`` image) to ``path`` atomically."""
        stacked = stack_masks(masks, shape)
        n, h, w = stacked.shape
        arrays: dict[str, Any] = {
            "masks": np.packbits(stacked.reshape(n, h * w), axis=1),
            "shape": np.array([n, h, w], dtype=np.int64),
            "area": np.array([m.area for m in masks], dtype=np.int64),
            "predicted_iou": np.array([m.predicted_iou for m in masks], dtype=np.float32),
            "stability_score": np.array([m.stability_score for m in masks], dtype=np.float32),
            "bbox": np.array([m.bbox for m in masks], dtype=np.float32).reshape(n, 4),
            "level": np.array([m.level for m in masks], dtype=np.uint8),
            "point": np.array([m.point for m in masks], dtype=np.float32).reshape(n, 2),
            "model_id": np.array(model_id),
            "params": np.array(params.to_json()),
            "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        }
        atomic_save(path, lambda fh: np.savez_compressed(fh, **arrays))


def automatic_masks(sam: Any, image: np.ndarray, params: AutoMaskParams = AutoMaskParams(), *,
                    cache: AutoMaskCache | str | os.PathLike[str] | None = None,
                    model_id: str | None = None,
                    progress: ProgressCallback = no_progress) -> list[AutoMask]:
    """Automatic masks of ``image``, from the cache when present, else generated and cached.

    Parameters
    ----------
    sam : segment_anything.modeling.Sam or SamEngine or None
        The model or engine (see :func:`generate_automasks`); may be None when the masks
        are known to be cached.
    image : numpy.ndarray
        ``H x W x 3`` ``uint8`` RGB image.
    params : AutoMaskParams
        Generator parameters; part of the cache key.
    cache : AutoMaskCache or path or None
        Cache (or its folder); None disables caching.
    model_id : str, optional
        Identity of the weights (``ResolvedCheckpoint.model_id``); it keys the cache, since
        masks of different weights must never be mixed up. Default: an engine's
        ``model_id``; required with a cache and a bare model.
    progress : callable
        Passed to :func:`generate_automasks`.

    Raises
    ------
    ValueError
        A cache without ``model_id``, or no model when the masks are not cached.
    """
    image = _check_image(image)
    if cache is None:
        if sam is None:
            raise ValueError("a SAM model is needed to generate automatic masks")
        return generate_automasks(sam, image, params, progress)
    model_id = model_id or (sam.model_id if isinstance(sam, CachedEngine) else None)
    if not model_id:
        raise ValueError("model_id is required to cache automatic masks (it keys the cache)")
    if not isinstance(cache, AutoMaskCache):
        cache = AutoMaskCache(cache)
    path = cache.path_for(model_id, image, params)
    hit = cache.load(path)
    if hit is not None:
        return hit
    if sam is None:
        raise ValueError(f"automatic masks of this image are not cached ({path}) and no SAM "
                         "model was given")
    masks = generate_automasks(sam, image, params, progress)
    cache.save(path, masks, image.shape[:2], model_id, params)
    return masks
