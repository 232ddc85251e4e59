"""``samlabel propose``: a trained prompter proposes objects on images, for curation.

IMAGES is a folder of images, or a project folder (then only its images not yet annotated,
unless ``--all``: "train on what I have done, propose on the rest"). The output folder has
the layout of ``samlabel pseudo-label`` (:mod:`napari_samlabel.pseudo.store`): label PNGs,
``scores/<id>.json`` with each proposal's class probability as ``score``, and the VOC tree
``OUT/voc``; ``samlabel curate OUT`` ranks it for review. Reruns skip finished images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_samlabel.cli import CLIError
from napari_samlabel.cli._grammar import add_cache, add_checkpoint, add_device, add_out
from napari_samlabel.cli._progress import tqdm_progress
from napari_samlabel.learn import PROMPTER_FILE


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``propose`` sub-command."""
    p = subparsers.add_parser(
        "propose",
        help="propose objects with a trained prompter; write pseudo labels with scores",
        description="Run a prompter (samlabel train-prompter) with its SAM on every image "
        "and write the proposals as a pseudo-label folder with a VOC tree (OUT/voc) and "
        "per-object scores, which samlabel curate reads.",
    )
    p.add_argument("images", type=Path, metavar="IMAGES",
                   help="folder of images, or a project folder (its unannotated images)")
    p.add_argument("--prompter", required=True, type=Path, metavar="FILE",
                   help="the folder samlabel train-prompter wrote (or its prompter file)")
    add_out(p, "output folder (per-image scores and a pseudo-label VOC tree)")
    p.add_argument("--model", default="vit_b",
                   help="SAM model type the prompter was trained with (default vit_b)")
    add_checkpoint(p)
    add_device(p)
    add_cache(p)
    p.add_argument("--no-download", action="store_true", help="never download a checkpoint")
    p.add_argument("--min-score", type=float, default=0.5,
                   help="lowest class probability of a proposal (default 0.5)")
    p.add_argument("--nms-iou", type=float, default=0.7,
                   help="drop a proposal overlapping a likelier one of its class by more "
                        "than this mask IoU (default 0.7)")
    p.add_argument("--all", action="store_true",
                   help="for a project: propose on annotated images too")
    p.add_argument("--no-export", action="store_true", help="no VOC tree, per-image files only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the command; return the exit code."""
    from napari_samlabel.engine.checkpoint import CheckpointError
    from napari_samlabel.engine.loader import load_engine
    from napari_samlabel.learn.prompter import PrompterError
    from napari_samlabel.learn.propose import PrompterSource, images_to_propose, propose_images

    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise CLIError(f"checkpoint file not found: {args.checkpoint}")
    if args.prompter.is_dir():
        args.prompter = args.prompter / PROMPTER_FILE
    try:
        images = images_to_propose(args.images, include_annotated=args.all)
        source = PrompterSource.from_file(args.prompter, args.device or "cpu",
                                          min_score=args.min_score, nms_iou=args.nms_iou)
    except (PrompterError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    if not images:
        print(f"nothing to propose: every image of {args.images} is annotated (--all "
              "proposes on them too)")
        return 0
    try:
        engine = load_engine(args.model, args.checkpoint, device=args.device,
                             cache_dir=args.cache_dir,
                             download=not args.no_download)
    except (CheckpointError, KeyError, ValueError) as exc:
        raise CLIError(str(exc.args[0] if isinstance(exc, KeyError) else exc)) from None
    try:
        with tqdm_progress("propose") as progress:
            report = propose_images(source, engine, images, args.out,
                                    prompter_file=args.prompter, export=not args.no_export,
                                    progress=progress)
    except (PrompterError, OSError) as exc:
        raise CLIError(str(exc)) from None
    print(f"{report.summary()} in {report.seconds:.1f} s")
    if report.voc_root is not None:
        print(f"VOC dataset: {report.voc_root}; review with: samlabel curate {args.out}")
    for image_id, reason in list(report.failed.items())[:20]:
        print(f"  {image_id}: {reason}", file=sys.stderr)
    return 1 if report.failed and not (report.done or report.skipped) else 0
