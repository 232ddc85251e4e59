"""``samlabel curate``: rank the images of a project or VOC tree, most likely failures first."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from napari_samlabel.cli import CLIError
from napari_samlabel.cli._grammar import DOCS_URL
from napari_samlabel.cli._progress import tqdm_progress
from napari_samlabel.core.progress import ProgressCallback

if TYPE_CHECKING:  # imported lazily at run time, so that `samlabel --help` stays quick
    from napari_samlabel.curate.signals import Thresholds


#: What curate writes into OUT (checked before any work, replaced only with --overwrite).
OUTPUTS = ("report.html", "queue.csv", "queue.json", "failures.txt", "thumbnails")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``curate`` sub-command."""
    p = subparsers.add_parser(
        "curate", help="rank images worst first and write a review queue and HTML report",
        description="Measure failure signals of every mask (SAM's predicted IoU, stability, "
                    "prompts outside the mask, a mask short of its box's sides, fragments, "
                    "holes, extreme areas, IoU against ground truth and masks merging two "
                    "ground-truth objects when given), rank the images worst first, and write "
                    "queue.csv, queue.json, failures.txt (flagged image ids, ImageSets style) "
                    "and report.html with overlay thumbnails of the worst images into OUT. "
                    "Exits with 1 when some images had to be skipped (listed at the end). "
                    f"Signals, scores and thresholds: {DOCS_URL}curation.md")
    p.add_argument("source", metavar="PROJECT_OR_VOC", type=Path,
                   help="a napari-samlabel project folder, the output folder of samlabel "
                        "pseudo-label (with run.json and scores/: SAM scores are used), or a "
                        "VOC tree (VOCdevkit/VOC2012, its parent, or a folder with "
                        "SegmentationClass/: mask signals only)")
    p.add_argument("--gt", metavar="DIR", type=Path,
                   help="ground truth: a VOC tree (instances from SegmentationObject/ when "
                        "present, matched one to one) or a folder of <id>.png class maps")
    p.add_argument("--weak", metavar="PATH", type=Path,
                   help="with a pseudo-label output folder: the weak labels the run used (same "
                        "file or folder as its --weak; the kind is read from run.json), so "
                        "that prompts outside / inside the masks are checked")
    p.add_argument("--out", metavar="DIR", type=Path, required=True,
                   help="output folder (created; only the files curate writes are replaced)")
    p.add_argument("--top", metavar="N", type=int, default=50,
                   help="number of worst images shown in report.html (default 50)")
    p.add_argument("--thumb-size", metavar="PX", type=int, default=320,
                   help="longest side of the report thumbnails (default 320)")
    p.add_argument("--min-area", metavar="PX", type=int, default=None,
                   help="VOC trees without SegmentationObject: class regions smaller than PX "
                        "pixels are not objects (default: the default of samlabel import-voc "
                        "--min-area, so both make the same objects)")
    p.add_argument("--threshold", metavar="NAME=VALUE", action="append", default=[],
                   help="override a flag threshold, e.g. --threshold low_iou=0.85 "
                        f"(repeatable; names in {DOCS_URL}curation.md)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files of an earlier run in OUT (queue.csv, queue.json, "
                        "failures.txt, report.html, thumbnails/); default: refuse")
    p.set_defaults(func=run)


def parse_thresholds(items: list[str]) -> Thresholds:
    """Build :class:`Thresholds` from ``NAME=VALUE`` strings; CLIError on a bad one."""
    from napari_samlabel.curate.signals import Thresholds

    names = {f.name for f in dataclasses.fields(Thresholds)}
    values: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in names:
            raise CLIError(f"--threshold {item!r}: expected NAME=VALUE with NAME one of "
                           f"{', '.join(sorted(names))}")
        try:
            values[name] = float(value)
        except ValueError:
            raise CLIError(f"--threshold {item!r}: {value!r} is not a number") from None
    return Thresholds(**values)


def run(args: argparse.Namespace) -> int:
    """Assess, rank and write the queue and report."""
    from napari_samlabel.curate.run import curate

    if args.top < 0:
        raise CLIError(f"--top must be 0 or more, got {args.top}")
    if args.min_area is not None and args.min_area < 0:
        raise CLIError(f"--min-area must be >= 0, got {args.min_area}")
    if args.thumb_size < 16:
        raise CLIError(f"--thumb-size must be at least 16, got {args.thumb_size}")
    thresholds = parse_thresholds(args.threshold)
    if args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out {args.out} exists and is not a folder")
    existing = [args.out / n for n in OUTPUTS if (args.out / n).exists()]
    if existing and not args.overwrite:
        raise CLIError(f"{existing[0]} exists; pass --overwrite to replace the files curate "
                       f"writes in {args.out}")
    try:
        with contextlib.ExitStack() as stack:
            progress = stack.enter_context(tqdm_progress("curate"))
            bars: list[ProgressCallback] = []

            def report_progress(done: int, total: int | None, message: str = "") -> None:
                if not bars:  # the second bar appears when the report starts
                    bars.append(stack.enter_context(tqdm_progress("report", unit="thumb")))
                bars[0](done, total, message)

            result = curate(args.source, args.out, gt=args.gt, weak=args.weak, top=args.top,
                            thresholds=thresholds, max_side=args.thumb_size,
                            min_area=args.min_area,
                            progress=progress, report_progress=report_progress)
    except (ValueError, OSError) as exc:
        raise CLIError(str(exc)) from None
    print(result.summary())
    return 1 if result.skipped else 0
