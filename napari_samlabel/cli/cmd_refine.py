"""``samlabel refine``: refine coarse label maps with SAM (SEPL, SAMS) or superpixels (SLIC).

Inputs are matched by image id (file name without extension):

- ``IMAGES`` (positional): the folder of images;
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
from napari_samlabel.cli._grammar import (
    add_border,
    add_cache,
    add_checkpoint,
    add_classes,
    add_device,
    add_out,
    add_split,
    deprecated_alias,
)
from napari_samlabel.cli._progress import tqdm_progress
from napari_samlabel.pseudo.refine.api import METHODS, REFINERS, all_parameters, get_refiner
from napari_samlabel.pseudo.refine.record import MASKS_GROUP, ParamInfo, RefinerParams


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``refine`` sub-command (the refiners' options come from their records)."""
    p = subparsers.add_parser(
        "refine", help="refine coarse label maps with SAM automatic masks or superpixels",
        description="Refine coarse pseudo labels and write a VOC tree. " + " ".join(
            f"{r.name}: {r.title}." for r in REFINERS.values()))
    p.add_argument("--method", choices=METHODS, required=True, help="refiner")
    p.add_argument("images", metavar="IMAGES", type=Path,
                   help="folder of images (ids = file names without extension)")
    p.add_argument("--coarse", metavar="DIR", type=Path,
                   help=f"folder of <id>.png coarse label maps ({_users('coarse')})")
    p.add_argument("--cams", metavar="DIR", type=Path,
                   help="folder of <id>.npy class maps + <id>.json class lists "
                        f"({_users('maps', needed=True)}; optional confidence for "
                        f"{_users('confidence')})")
    add_out(p, "output folder (gets VOCdevkit/VOC2012)")
    add_classes(p)
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    add_border(p)
    add_split(p)
    deprecated_alias(p, "--train-fraction", "use --split", dest="split", type=float)
    p.add_argument("--seed", type=int, default=0, help="seed of the train/val split")

    sam_group = f"SAM ({_users('masks')})"
    g = p.add_argument_group(sam_group)
    g.add_argument("--model", default="vit_b", help="SAM model type (default vit_b)")
    add_checkpoint(g)
    add_device(g)
    add_cache(g)
    g.add_argument("--no-cache", action="store_true",
                   help="do not read or write cached embeddings and automatic masks")
    g.add_argument("--no-download", action="store_true", help="never download a checkpoint")
    groups = {sam_group: g}

    def group(title: str) -> Any:
        if title not in groups:
            groups[title] = p.add_argument_group(title)
        return groups[title]

    for info, owner in _parameter_owners():
        add_parameter(group(sam_group if info.group == MASKS_GROUP else owner), info)
    group(_users("confidence").split(", ")[0]).add_argument(
        "--confidence", metavar="DIR", type=Path,
        help="per-pixel confidence: <id>.npy H x W maps, or the OUT folder of "
             "'samlabel pseudo-label' (SAM's predicted IoU of each mask)")
    p.set_defaults(func=run)


def _users(name: str, needed: bool = False) -> str:
    """The refiners that take input ``name`` (only those that need it with ``needed``)."""
    return ", ".join(r.name for r in REFINERS.values()
                     if name in r.needs or (not needed and name in r.accepts))


def _parameter_owners() -> list[tuple[ParamInfo, str]]:
    """Every refiner parameter once, with the first refiner that declares it."""
    all_parameters()  # a name declared twice must mean the same parameter
    seen: dict[str, tuple[ParamInfo, str]] = {}
    for refiner in REFINERS.values():
        for info in refiner.parameters():
            seen.setdefault(info.name, (info, refiner.name))
    return list(seen.values())


def add_parameter(group: Any, info: ParamInfo) -> None:
    """Add one refiner parameter as an option: its type, default, choices and help."""
    group.add_argument(info.flag, type=info.kind, default=info.default, choices=info.choices,
                       help=info.describe().replace("%", "%%"))


def refiner_settings(args: argparse.Namespace) -> RefinerParams:
    """The chosen method's parameters from the command line."""
    refiner = get_refiner(args.method)
    return refiner.params(**{i.name: getattr(args, i.name) for i in refiner.parameters()})


def _check_inputs(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """Validate folders and file pairs up front, before any model is loaded."""
    from napari_samlabel.io.images import image_id, list_images

    refiner = get_refiner(args.method)
    if "coarse" in refiner.needs and args.coarse is None:
        raise CLIError(f"--method {args.method} needs --coarse DIR")
    if "maps" in refiner.needs and args.cams is None:
        raise CLIError(f"--method {args.method} needs --cams DIR (class activation maps or "
                       "scores)")
    if args.confidence is not None and ("confidence" not in refiner.accepts
                                        or args.cams is not None):
        users = "/".join(r.name for r in REFINERS.values() if "confidence" in r.accepts)
        raise CLIError(f"--confidence is for --method {users}, instead of --cams")
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
        if args.coarse is not None and _reads_coarse(args.method):
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
    for info in all_parameters().values():
        problem = info.check(getattr(args, info.name))
        if problem:
            raise CLIError(f"{info.flag} {problem}")
    if not 0.0 <= args.split <= 1.0:
        raise CLIError(f"--split must be in [0, 1], got {args.split}")
    if args.border < 0:
        raise CLIError(f"--border must be >= 0, got {args.border}")
    return list(items.items())


def _reads_coarse(method: str) -> bool:
    refiner = get_refiner(method)
    return "coarse" in refiner.needs + refiner.accepts


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
    from napari_samlabel.io.voc import VocError
    from napari_samlabel.io.voc.labelpng import read_label_png
    from napari_samlabel.io.voc.writer import VocWriter
    from napari_samlabel.pseudo import refine
    from napari_samlabel.pseudo.objects import instances_for

    items = _check_inputs(args)
    try:
        classes = ClassTable.from_file(args.classes) if args.classes else ClassTable.voc()
    except ValueError as exc:
        raise CLIError(str(exc)) from None

    refiner = get_refiner(args.method)
    try:
        settings = refiner_settings(args)
        params = settings.automask_params() if refiner.uses_masks else None
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    engine = cache = None
    if refiner.uses_masks:
        engine = _load_engine(args)
        if not args.no_cache:
            from napari_samlabel.engine.checkpoint import cache_root

            cache = refine.AutoMaskCache(cache_root(args.cache_dir) / "automasks")

    if "confidence" in refiner.accepts and args.cams is None and args.confidence is None:
        print(f"{args.method}: no confidence source (--cams or --confidence), so no pixel is "
              "voided by confidence: the labels are only snapped to superpixels",
              file=sys.stderr)
    hits = 0
    try:
        with tqdm_progress(f"refine ({args.method})") as progress, VocWriter(
                args.out, classes, border=args.border, train_fraction=args.split,
                seed=args.seed, overwrite=args.overwrite, progress=progress,
                total=len(items)) as writer:
            for iid, path in items:
                image = load_image(path)
                coarse = maps = class_ids = confidence = None
                if _reads_coarse(args.method):
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
                if args.confidence is not None:
                    confidence = refine.load_confidence(args.confidence, iid, image.shape[:2])
                if engine is not None and cache is not None and params is not None:
                    hits += cache.path_for(engine.model_id, image, params).is_file()
                labels = refine.refine_labels(
                    args.method, image, coarse=coarse, maps=maps, class_ids=class_ids,
                    confidence=confidence, sam=engine, params=params, cache=cache,
                    settings=settings)
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

