"""``samlabel predict``: label images with a model trained by ``samlabel train``."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_samlabel.cli import CLIError
from napari_samlabel.cli._grammar import add_device, add_out
from napari_samlabel.cli._progress import tqdm_progress


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` sub-command."""
    p = subparsers.add_parser(
        "predict", help="label images with a trained segmenter (VOC label PNGs)",
        description="Write OUT/<id>.png, the trained model's label map of each image "
                    "(palette PNG, VOC colour map).")
    p.add_argument("images", type=Path, metavar="IMAGES", help="image folder or one image")
    p.add_argument("--model", type=Path, required=True, metavar="DIR",
                   help="model folder written by samlabel train")
    add_out(p, "output folder (<id>.png label maps)")
    p.add_argument("--batch-size", type=int, default=4, help="images per batch")
    add_device(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``samlabel predict``."""
    from napari_samlabel.engine.device import choose_device
    from napari_samlabel.io.images import list_images
    from napari_samlabel.learn.data import DataError
    from napari_samlabel.learn.predict import predict_images
    from napari_samlabel.learn.segmenter import SegmenterError

    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.images.is_file():
        images = [args.images]
    elif args.images.is_dir():
        images = list_images(args.images)
    else:
        raise CLIError(f"images not found: {args.images}")
    if not images:
        raise CLIError(f"no images in {args.images}")
    try:
        device = str(choose_device(args.device))
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    try:
        with tqdm_progress("predict") as progress:
            written = predict_images(args.model, images, args.out, device=device,
                                     batch_size=args.batch_size, progress=progress)
    except (DataError, SegmenterError) as exc:
        raise CLIError(str(exc)) from None
    print(f"{len(written)} label maps written to {args.out}")
    return 0
