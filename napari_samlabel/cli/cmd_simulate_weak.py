"""``samlabel simulate-weak``: weak labels derived from ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_samlabel.cli import CLIError
from napari_samlabel.cli._grammar import add_classes, add_out
from napari_samlabel.cli._progress import tqdm_progress


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate-weak`` sub-command."""
    p = subparsers.add_parser(
        "simulate-weak", help="derive points, scribbles or boxes from ground truth",
        description="Simulate weak labels from ground-truth label maps, in the formats "
                    "`samlabel pseudo-label --weak` reads: points (one click per object at its "
                    "innermost pixel) -> points.json; scribbles (object skeletons) -> <id>.txt; "
                    "boxes (tight box per instance) -> <id>.json.")
    p.add_argument("gt_dir", metavar="GT", type=Path,
                   help="ground truth: a folder of <id>.png label maps, or a VOC dataset "
                        "(the output folder of samlabel export, VOCdevkit/ or VOC2012/; its "
                        "SegmentationObject/ gives the instances when present)")
    p.add_argument("--kind", required=True, choices=("points", "scribbles", "boxes"),
                   help="kind of weak labels to write")
    add_out(p, "output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--instances", type=Path, metavar="DIR",
                   help="folder of <id>.png instance maps (default: connected components)")
    add_classes(p)
    p.add_argument("--random-points", action="store_true",
                   help="click a random pixel of each object instead of its innermost pixel")
    p.add_argument("--background-points", type=int, default=0, metavar="N",
                   help="add N random background clicks per image (points; default 0)")
    p.add_argument("--step", type=int, default=None, metavar="PX",
                   help="scribble vertex spacing along the skeleton in pixels (default 4)")
    p.add_argument("--min-area", type=int, default=None, metavar="PX",
                   help="skip objects smaller than this (default 20)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace output files that exist (default: refuse, before any work)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Simulate and write the weak labels."""
    from napari_samlabel.core.classes import ClassTable
    from napari_samlabel.evaluate.metrics import EvaluationError
    from napari_samlabel.evaluate.simulate import simulate_weak_dir

    try:
        classes = ClassTable.from_file(args.classes) if args.classes else ClassTable.voc()
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    options: dict = {}
    if args.kind == "points":
        options.update(point_mode="random" if args.random_points else "center",
                       background_points=args.background_points)
    if args.step is not None:
        if args.kind != "scribbles":
            raise CLIError("--step applies to --kind scribbles only")
        options["step"] = args.step
    if args.min_area is not None:
        options["min_area"] = args.min_area
    try:
        with tqdm_progress(f"simulate {args.kind}") as progress:
            summary = simulate_weak_dir(args.gt_dir, args.kind, args.out,
                                        instance_dir=args.instances, classes=classes,
                                        seed=args.seed, progress=progress,
                                        overwrite=args.overwrite, **options)
    except (EvaluationError, ValueError, FileExistsError) as exc:
        raise CLIError(str(exc)) from None
    print(f"{summary['objects']} objects in {summary['images']} images -> {args.out} "
          f"({len(summary['files'])} file(s))")
    return 0
