"""``samlabel import-voc``: turn a PASCAL VOC dataset into a project."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_samlabel.cli import CLIError
from napari_samlabel.cli._grammar import add_classes
from napari_samlabel.cli._progress import tqdm_progress


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``import-voc`` sub-command."""
    p = subparsers.add_parser(
        "import-voc", help="make a project from a VOC dataset, to continue or fix it",
        description="Read SegmentationClass (and SegmentationObject when present; otherwise "
                    "each connected region of a class is one object) of a VOC dataset and "
                    "write a new project whose objects are its instances, marked done. Void "
                    "(255) pixels belong to no object unless --fill-void gives them to the "
                    "nearest label. Images are referred to where they are unless "
                    "--copy-images.")
    p.add_argument("voc_root", metavar="VOC", type=Path,
                   help="VOC dataset: the folder holding VOCdevkit/ (what samlabel export "
                        "writes), VOCdevkit/ or VOC2012/ itself")
    p.add_argument("--out", dest="project", metavar="DIR", type=Path, required=True,
                   help="new project folder (must not exist or be empty)")
    add_classes(p, default="the dataset's labelmap.txt, else the 21 VOC classes")
    p.add_argument("--copy-images", action="store_true",
                   help="copy the images into PROJECT/images")
    p.add_argument("--fill-void", type=int, default=0, metavar="PX",
                   help="give void pixels within PX pixels of a label to the nearest label "
                        "(3 undoes VOC's 4-pixel border band; default 0)")
    p.add_argument("--min-area", type=int, default=10, metavar="PX",
                   help="without SegmentationObject, class regions smaller than PX pixels are "
                        "not made objects of their own but join the nearest object of their "
                        "class (reported per image; default 10, 0 keeps every region as an "
                        "object; VOC's ground truth has 1-5 pixel specks between its void "
                        "bands)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``samlabel import-voc``."""
    from napari_samlabel.core.classes import ClassTable
    from napari_samlabel.io.project_schema import ProjectError
    from napari_samlabel.io.voc import VocError
    from napari_samlabel.io.voc_project import ImportReport, import_voc

    if args.min_area < 0:
        raise CLIError(f"--min-area must be >= 0, got {args.min_area}")
    if args.fill_void < 0:
        raise CLIError(f"--fill-void must be >= 0, got {args.fill_void}")
    try:
        classes = ClassTable.from_file(args.classes) if args.classes else None
        report = ImportReport()
        with tqdm_progress("import") as progress:
            import_voc(args.voc_root, args.project, classes=classes,
                       copy_images=args.copy_images, fill_void=args.fill_void,
                       min_area=args.min_area, progress=progress, report=report)
    except (ProjectError, VocError, FileExistsError, OSError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    print(report.summary())
    return 0
