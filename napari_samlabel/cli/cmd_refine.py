"""``samlabel refine``: refine coarse label maps with SAM (SEPL, SAMS) or superpixels (SLIC).

Inputs are matched by image id (file name without extension):

- ``--images DIR``: the images;
- ``--coarse DIR``: ``<id>.png`` coarse label maps (palette or grey indices, 255 void), for
  ``sepl`` and ``slic``;
- ``--cams DIR``: ``<id>.npy`` class maps (CAMs or network scores, ``C x H x W``) with a
  ``<id>.json`` class list beside each, required by ``sams``; with ``slic`` they give the
  per-pixel confidence of the adaptive threshold;
- ``--confidence DIR`` (``slic``, instead of ``--cams``): ``<id>.npy`` ``H x W`` per-pixel
  confidence maps, or the ``OUT`` folder of ``samlabel pseudo-label`` (each pixel then has
  SAM's predicted IoU of its mask; background is kept). Without either, ``slic`` only snaps
  to superpixels and voids no pixel by confidence; it says so.

The result is a VOC tree in ``OUT`` (``OUT/VOCdevkit/VOC2012``). Automatic masks are cached
in ``<cache root>/automasks`` and embeddings in ``<cache root>/embeddings``, so a second run
with other voting parameters does not run SAM again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from napari_samlabel.cli import CLIError
from napari_samlabel.cli._progress import tqdm_progress
from napari_samlabel.pseudo.refine.api import METHODS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``refine`` sub-command."""
    p = subparsers.add_parser(
        "refine", help="refine coarse label maps with SAM automatic masks or superpixels",
        description="Refine coarse pseudo labels and write a VOC tree. sepl: vote SAM's "
                    "automatic masks into the classes of the coarse maps (Chen et al.). "
                    "sams: classify SAM quasi-superpixels with CAMs or network scores (Yang & "
                    "Gong). slic: snap the coarse maps to SLIC superpixels and void the least "
                    "confident pixels.")
    p.add_argument("--method", choices=METHODS, required=True, help="refiner")
    p.add_argument("--images", metavar="DIR", type=Path, required=True, help="image folder")
    p.add_argument("--coarse", metavar="DIR", type=Path,
                   help="folder of <id>.png coarse label maps (sepl, slic)")
    p.add_argument("--cams", metavar="DIR", type=Path,
                   help="folder of <id>.npy class maps + <id>.json class lists (sams; optional "
                        "confidence for slic)")
    p.add_argument("--out", metavar="OUT", type=Path, required=True,
                   help="output folder (gets VOCdevkit/VOC2012)")
    p.add_argument("--classes", metavar="FILE", type=Path,
                   help="class list, one name per line (default: the 21 PASCAL VOC classes)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    p.add_argument("--border", type=int, default=0,
                   help="width of the void band along object borders (default 0: none)")
    p.add_argument("--train-fraction", type=float, default=0.8,
                   help="share of images in the train split (default 0.8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val split")

    g = p.add_argument_group("SAM (sepl, sams)")
    g.add_argument("--model", default="vit_b", help="SAM model type (default vit_b)")
    g.add_argument("--checkpoint", metavar="PATH", type=Path,
                   help="checkpoint file (default: the cached official one, downloaded once)")
    g.add_argument("--device", help="torch device (default: cuda > mps > cpu)")
    g.add_argument("--cache-dir", metavar="DIR", type=Path,
                   help="cache root for checkpoints, embeddings and automatic masks "
                        "(default $SAMLABEL_CACHE_DIR or the user cache folder)")
    g.add_argument("--no-cache", action="store_true",
                   help="do not read or write cached embeddings and automatic masks")
    g.add_argument("--no-download", action="store_true", help="never download a checkpoint")
    g.add_argument("--points-per-side", type=int, default=32,
                   help="automatic-mask point grid (default 32)")
    g.add_argument("--points-per-batch", type=int, default=None,
                   help="points decoded together (speed only; default 4 on CPU, 64 on GPU)")
    g.add_argument("--pred-iou-thresh", type=float, default=0.88,
                   help="predicted-IoU threshold (default 0.88)")
    g.add_argument("--stability-score-thresh", type=float, default=0.95,
                   help="stability-score threshold (default 0.95)")
    g.add_argument("--box-nms-thresh", type=float, default=0.7,
                   help="box NMS IoU threshold (default 0.7)")

    g = p.add_argument_group("sepl")
    g.add_argument("--segment-ratio", type=float, default=0.5,
                   help="a mask votes for a class if more than this share of it is the "
                        "class (default 0.5)")
    g.add_argument("--class-ratio", type=float, default=0.85,
                   help="... or if it holds more than this share of the class (default 0.85)")

    g = p.add_argument_group("sams")
    g.add_argument("--occupation-ratio", type=float, default=0.3,
                   help="t_r: keep a lower-level mask only if less than this share of it is "
                        "covered by higher-level masks (default 0.3)")
    g.add_argument("--occupation", choices=("union", "max"), default="union",
                   help="covered by the union of kept masks, or by the one covering most")
    g.add_argument("--alpha", type=float, default=0.6,
                   help="background score (1 - max score) ** alpha (default 0.6)")
    g.add_argument("--whole-iou-offset", type=float, default=0.1,
                   help="lowers the whole level's IoU threshold by this (default 0.1)")
    g.add_argument("--whole-nms-offset", type=float, default=1.0,
                   help="added to whole masks' NMS score (default 1.0: whole masks first)")

    g = p.add_argument_group("slic")
    g.add_argument("--n-segments", type=int, default=100, help="SLIC segments (default 100)")
    g.add_argument("--compactness", type=float, default=10.0,
                   help="SLIC compactness (default 10)")
    g.add_argument("--sigma", type=float, default=0.0, help="SLIC smoothing (default 0)")
    g.add_argument("--rule", choices=("majority", "all"), default="majority",
                   help="a superpixel takes the label covering more than half (majority) or "
                        "all of its labelled pixels; otherwise it becomes void")
    g.add_argument("--ignore-ratio", type=float, default=0.2,
                   help="position of the confidence threshold in the sorted confidences "
                        "(needs --cams or --confidence; default 0.2)")
    g.add_argument("--confidence", metavar="DIR", type=Path,
                   help="per-pixel confidence: <id>.npy H x W maps, or the OUT folder of "
                        "'samlabel pseudo-label' (SAM's predicted IoU of each mask)")
    p.set_defaults(func=run)


def _check_inputs(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """Validate folders and file pairs up front, before any model is loaded."""
    from napari_samlabel.io.images import image_id, list_images

    if args.method in ("sepl", "slic") and args.coarse is None:
        raise CLIError(f"--method {args.method} needs --coarse DIR")
    if args.method == "sams" and args.cams is None:
        raise CLIError("--method sams needs --cams DIR (class activation maps or scores)")
    if args.confidence is not None and (args.method != "slic" or args.cams is not None):
        raise CLIError("--confidence is for --method slic, instead of --cams")
    for flag, folder in (("--coarse", args.coarse), ("--cams", args.cams),
                         ("--confidence", args.confidence)):
        if folder is not None and not folder.is_dir():
            raise CLIError(f"{flag} folder not found: {folder}")
    try:
        paths = list_images(args.images)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise CLIError(str(exc)) from None
    if not paths:
        raise CLIError(f"no images in {args.images}")
    items: dict[str, Path] = {}
    for path in paths:
        iid = image_id(path)
        if iid in items:
            raise CLIError(f"two images have the id {iid!r}: {items[iid].name} and {path.name}")
        items[iid] = path
    missing = []
    for iid in items:
        if args.coarse is not None and args.method != "sams":
            if not (args.coarse / f"{iid}.png").is_file():
                missing.append(str(args.coarse / f"{iid}.png"))
        if args.cams is not None and not (args.cams / f"{iid}.npy").is_file():
            missing.append(str(args.cams / f"{iid}.npy"))
        if args.confidence is not None:
            from napari_samlabel.pseudo.refine.inputs import confidence_path

            if not confidence_path(args.confidence, iid).is_file():
                missing.append(str(confidence_path(args.confidence, iid)))
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise CLIError(f"missing input files: {', '.join(missing[:5])}{more}")
    for name in ("ignore_ratio", "segment_ratio", "class_ratio", "occupation_ratio",
                 "train_fraction"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise CLIError(f"--{name.replace('_', '-')} must be in [0, 1], got "
                           f"{getattr(args, name)}")
    if args.alpha <= 0:
        raise CLIError(f"--alpha must be > 0, got {args.alpha}")
    if args.n_segments < 1 or args.points_per_side < 1 or (
            args.points_per_batch is not None and args.points_per_batch < 1):
        raise CLIError("--n-segments, --points-per-side and --points-per-batch must be >= 1")
    if args.border < 0:
        raise CLIError(f"--border must be >= 0, got {args.border}")
    return list(items.items())


def _load_engine(args: argparse.Namespace) -> Any:
    import contextlib

    from napari_samlabel.core.progress import no_progress
    from napari_samlabel.engine.checkpoint import CheckpointError
    from napari_samlabel.engine.loader import load_engine

    # A download bar only when a download can happen (no local file given).
    bar = (contextlib.nullcontext(no_progress) if args.checkpoint is not None
           else tqdm_progress("checkpoint", unit="B"))
    try:
        with bar as progress:
            return load_engine(args.model, args.checkpoint, device=args.device,
                               cache=None if args.no_cache else "auto",
                               cache_dir=args.cache_dir, download=not args.no_download,
                               progress=progress)
    except (CheckpointError, KeyError, ValueError) as exc:
        raise CLIError(str(exc.args[0] if isinstance(exc, KeyError) else exc)) from None


def run(args: argparse.Namespace) -> int:
    """Refine every image and write the VOC tree."""
    from napari_samlabel.core.classes import ClassTable
    from napari_samlabel.io.images import ImageReadError, load_image
    from napari_samlabel.io.voc import VocError, VocWriter, read_label_png
    from napari_samlabel.pseudo import refine
    from napari_samlabel.pseudo.objects import instances_for

    items = _check_inputs(args)
    try:
        classes = ClassTable.from_file(args.classes) if args.classes else ClassTable.voc()
    except ValueError as exc:
        raise CLIError(str(exc)) from None

    engine = cache = None
    params = None
    if args.method in ("sepl", "sams"):
        try:
            params = refine.AutoMaskParams(
                points_per_side=args.points_per_side, points_per_batch=args.points_per_batch,
                pred_iou_thresh=args.pred_iou_thresh,
                stability_score_thresh=args.stability_score_thresh,
                box_nms_thresh=args.box_nms_thresh,
                **({"level_iou_offset": (0.0, 0.0, args.whole_iou_offset),
                    "level_nms_offset": (0.0, 0.0, args.whole_nms_offset)}
                   if args.method == "sams" else {}))
        except ValueError as exc:
            raise CLIError(str(exc)) from None
        engine = _load_engine(args)
        if not args.no_cache:
            from napari_samlabel.engine.checkpoint import cache_root

            cache = refine.AutoMaskCache(cache_root(args.cache_dir) / "automasks")

    if args.method == "slic" and args.cams is None and args.confidence is None:
        print("slic: no confidence source (--cams or --confidence), so no pixel is voided "
              "by confidence: the labels are only snapped to superpixels", file=sys.stderr)
    hits = 0
    try:
        with tqdm_progress(f"refine ({args.method})") as progress, VocWriter(
                args.out, classes, border=args.border, train_fraction=args.train_fraction,
                seed=args.seed, overwrite=args.overwrite, progress=progress,
                total=len(items)) as writer:
            for iid, path in items:
                image = load_image(path)
                coarse = maps = class_ids = None
                if args.method != "sams":
                    coarse = read_label_png(args.coarse / f"{iid}.png")
                    if coarse.shape != image.shape[:2]:
                        raise CLIError(f"{args.coarse / f'{iid}.png'} is {coarse.shape[0]}x"
                                       f"{coarse.shape[1]} but image {path.name} is "
                                       f"{image.shape[0]}x{image.shape[1]} (H x W)")
                if args.cams is not None:
                    maps, class_ids = refine.load_class_maps(args.cams / f"{iid}.npy", classes)
                    if maps.shape[1:] != image.shape[:2]:
                        raise CLIError(f"{args.cams / f'{iid}.npy'} maps are {maps.shape[1]}x"
                                       f"{maps.shape[2]} but image {path.name} is "
                                       f"{image.shape[0]}x{image.shape[1]}; class maps must "
                                       "be at image resolution")
                options = _options(args)
                if args.confidence is not None:
                    options["confidence"] = refine.load_confidence(args.confidence, iid,
                                                                   image.shape[:2])
                if engine is not None and cache is not None and params is not None:
                    hits += cache.path_for(engine.model_id, image, params).is_file()
                labels = refine.refine_labels(
                    args.method, image, coarse=coarse, maps=maps, class_ids=class_ids,
                    sam=engine, params=params, cache=cache, **options)
                try:
                    # A fragmented refined map may have more than 254 components: then each
                    # class is one object, as in the pseudo-label export.
                    writer.add(iid, path, labels, instances_for(labels))
                except VocError as exc:
                    raise CLIError(f"image {iid} ({path}): {exc}") from None
    except (ImageReadError, VocError, refine.RefineInputError, FileExistsError) as exc:
        raise CLIError(str(exc)) from None
    if engine is not None:
        print(f"automatic masks: {hits} of {len(items)} images from the cache")
    print(f"wrote {len(items)} refined label maps ({args.method}) to "
          f"{args.out / 'VOCdevkit' / 'VOC2012'}")
    return 0


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The chosen method's own parameters from the command line."""
    names = {"sepl": ("segment_ratio", "class_ratio"),
             "sams": ("occupation_ratio", "occupation", "alpha"),
             "slic": ("n_segments", "compactness", "sigma", "rule", "ignore_ratio")}
    return {n: getattr(args, n) for n in names[args.method]}
