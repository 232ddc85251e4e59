"""``samlabel export``: write a project as a PASCAL VOC 2012-style or COCO dataset."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from napari_samlabel.cli import CLIError
from napari_samlabel.cli._grammar import add_border, add_out, add_split, deprecated_alias
from napari_samlabel.cli._progress import tqdm_progress

if TYPE_CHECKING:
    from napari_samlabel.io.coco import CocoReport
    from napari_samlabel.io.voc_project import ExportReport


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` sub-command."""
    p = subparsers.add_parser(
        "export", help="write a project as a VOC (default) or COCO dataset",
        description="Write the annotated images of a project to OUT. --format voc (default): "
                    "OUT/VOCdevkit/VOC2012 with JPEGImages, SegmentationClass and "
                    "SegmentationObject (palette PNGs, 255 void), Annotations (XML with boxes "
                    "from the masks), ImageSets lists and labelmap.txt. --format coco: "
                    "OUT/annotations/instances_<split>.json (RLE masks; parts are categories "
                    "of their own, their whole in 'supercategory' and 'part_of') and "
                    "OUT/images/. Exported: every image with accepted objects (marked done or "
                    "not; --only-done: only images marked done); new images never. An image "
                    "keeps the train/val split stored in the project (an imported VOC set's) "
                    "unless --fresh-split; the others get a seeded split (--split, --seed). "
                    "Written but kept out of train and val (VOC: listed in "
                    "ImageSets/Segmentation/excluded.txt; COCO: instances_excluded.json): "
                    "images reviewed as 'rejected' (always), images in an --exclude list "
                    "(always), flagged images and images reviewed as 'needs_work' (unless "
                    "--include-flagged). When no image would go into train or val, nothing is "
                    "written and the command says why (exit 2). The dataset is built in a "
                    "temporary folder and moved to OUT at the end.")
    p.add_argument("project", metavar="PROJECT", type=Path, help="project folder")
    add_out(p, "output folder: VOC writes VOCdevkit/ into it (torchvision's root), COCO "
               "annotations/ and images/")
    add_split(p, "fraction of the images without a stored split that go to train, the rest "
                 "to val (default 0.8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    add_border(p)
    p.add_argument("--exclude", action="append", default=[], type=Path, metavar="FILE",
                   help="an ImageSets-style id list (one id per line, e.g. the failures.txt "
                        "of samlabel curate) of images to keep out of train and val; may be "
                        "given several times")
    p.add_argument("--fresh-split", action="store_true",
                   help="ignore the splits stored in the project and split every image with "
                        "--split and --seed")
    p.add_argument("--include-flagged", action="store_true",
                   help="put flagged and 'needs_work' images into the train/val split too "
                        "(never 'rejected' ones)")
    p.add_argument("--format", choices=("voc", "coco"), default="voc",
                   help="voc: PASCAL VOC 2012 layout (default); coco: COCO instance "
                        "segmentation (annotations/instances_<split>.json and images/)")
    p.add_argument("--only-done", action="store_true",
                   help="export only images marked done (and flagged ones, kept out of "
                        "train/val); by default images in progress with accepted objects are "
                        "exported too")
    deprecated_alias(p, "--include-unfinished", "images in progress with accepted objects are "
                     "exported by default now", dest="include_unfinished", nargs=0)
    p.add_argument("--overwrite", action="store_true",
                   help="replace a previous export in OUT (a folder holding nothing but "
                        "VOCdevkit/, or annotations/ and images/ for coco; any other content "
                        "is never deleted)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``samlabel export``."""
    from napari_samlabel.io.coco import CocoError, export_coco
    from napari_samlabel.io.project import Project
    from napari_samlabel.io.project_schema import ProjectError
    from napari_samlabel.io.voc import VocError
    from napari_samlabel.io.voc.annotations import read_image_set
    from napari_samlabel.io.voc_project import export_project

    if not 0.0 <= args.split <= 1.0:
        raise CLIError(f"--split must be between 0 and 1, got {args.split}")
    if args.border < 0:
        raise CLIError(f"--border must be >= 0, got {args.border}")
    try:
        exclude = [i for f in args.exclude for i in read_image_set(f)]
        project = Project.open(args.project)
        options = dict(train_fraction=args.split, seed=args.seed,
                       include_flagged=args.include_flagged, only_done=args.only_done,
                       overwrite=args.overwrite, fresh_split=args.fresh_split, exclude=exclude)
        with tqdm_progress("export") as progress:
            if args.format == "coco":
                if args.border:
                    raise CLIError("--border applies to --format voc only (COCO has no void)")
                report: ExportReport | CocoReport = export_coco(project, args.out,
                                                                progress=progress, **options)
            else:
                report = export_project(project, args.out, border=args.border,
                                        progress=progress, **options)
    except (ProjectError, VocError, CocoError, FileExistsError, OSError) as exc:
        raise CLIError(str(exc)) from exc
    print(report.summary())
    for old, new in sorted(getattr(report, "renamed", {}).items()):
        print(f"  id {old!r} written as {new!r}")
    if report.skipped.get("in_progress"):
        print(f"  {len(report.skipped['in_progress'])} images in progress were left out "
              "(--only-done)")
    if report.unknown_excluded:
        shown = ", ".join(report.unknown_excluded[:5])
        more = "..." if len(report.unknown_excluded) > 5 else ""
        print(f"  warning: {len(report.unknown_excluded)} ids of --exclude are not images of "
              f"the project ({shown}{more})")
    for iid, oid in report.dropped_objects:
        print(f"  {iid}: object {oid} is hidden under other objects and was left out")
    return 0
