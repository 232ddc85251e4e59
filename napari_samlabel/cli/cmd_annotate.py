"""``samlabel annotate``: open napari with the annotator on a folder of images."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_samlabel.cli import CLIError
from napari_samlabel.cli._grammar import add_cache, add_checkpoint, add_classes


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``annotate`` sub-command."""
    p = subparsers.add_parser(
        "annotate",
        help="annotate a folder of images in napari with live SAM prompts",
        description=(
            "Open napari with the SAM label annotator on FOLDER. The folder becomes a "
            "project (samlabel-project.json and annotations/ are written inside it); every "
            "accept is saved at once and reopening the folder resumes. Without FOLDER the "
            "bundled sample images open."),
    )
    p.add_argument("folder", nargs="?", type=Path, help="folder of images (default: samples)")
    add_classes(p, default="the 20 PASCAL VOC classes")
    p.add_argument("--model", default="vit_b",
                   help="model type: vit_b (default), vit_l, vit_h, vit_t (MobileSAM), "
                        "sam_hq_vit_b ..., sam2.1_hiera_tiny ... ('samlabel models' lists "
                        "them); the Model tab switches later")
    add_checkpoint(p)
    add_cache(p)
    p.add_argument("--precise", action="store_true",
                   help="encode in float32 (slower) instead of bfloat16 where supported")
    p.add_argument("--review", type=Path, metavar="QUEUE",
                   help="walk a curation queue (queue.json, or the output folder of "
                        "'samlabel curate FOLDER') worst first in the Review tab, starting "
                        "at its worst undecided image")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the arguments, then hand over to the napari launcher."""
    from napari_samlabel.core.classes import ClassTable

    if args.folder is not None and not args.folder.is_dir():
        raise CLIError(f"not a folder of images: {args.folder}")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise CLIError(f"checkpoint file not found: {args.checkpoint}")
    from napari_samlabel.engine.errors import ModelUnavailableError
    from napari_samlabel.engine.families import require_family
    from napari_samlabel.engine.registry import get_model_spec

    try:  # an unknown model or a missing package is said before any window opens
        require_family(get_model_spec(args.model).family, args.model)
    except KeyError as exc:
        raise CLIError(str(exc.args[0])) from exc
    except ModelUnavailableError as exc:
        raise CLIError(str(exc)) from exc
    if args.review is not None:
        from napari_samlabel.curate.queue import read_queue

        if args.folder is None:
            raise CLIError("--review needs FOLDER, the project the queue was curated from")
        try:
            read_queue(args.review)
        except ValueError as exc:
            raise CLIError(str(exc)) from exc
    classes = None
    if args.classes is not None:
        try:
            classes = ClassTable.from_file(args.classes)
        except ValueError as exc:
            raise CLIError(str(exc)) from exc
    # The one place the CLI reaches up into the GUI layer: imported only when the command runs
    # (a declared exception in the import-linter contracts of pyproject.toml).
    from napari_samlabel._napari.launch import launch

    try:
        launch(args.folder, classes, args.model,
               None if args.checkpoint is None else str(args.checkpoint),
               args.precise, review=args.review,
               cache_dir=None if args.cache_dir is None else str(args.cache_dir))
    except (ValueError, OSError) as exc:
        raise CLIError(str(exc)) from exc
    return 0
