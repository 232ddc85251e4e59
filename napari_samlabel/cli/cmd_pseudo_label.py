"""``samlabel pseudo-label``: weak labels + SAM -> a pseudo-label VOC dataset.

Reads the weak labels (:func:`napari_samlabel.io.weak.read_weak_labels`), runs the batch
pipeline (:func:`napari_samlabel.pseudo.pipeline.pseudo_label`) locally or on a
dask.distributed cluster (``--scheduler``), and writes ``OUT`` (layout in
:mod:`napari_samlabel.pseudo.store`; the VOC tree is ``OUT/voc``). Rerunning the same command
skips finished images. Failing images, including those whose weak-label file could not be
read (the other files are still used), are listed at the end (and in ``OUT/failures.json``);
the exit code is 1 only when every image failed, 2 on usage errors.

Kinds ``tags`` (image-level class labels: a VOC root's ``ImageSets/Main`` files, a JSON or
a CSV) and ``text`` (every class of the class list, no ``--weak``) prompt SAM 3 with each
class's phrase (``--phrases`` overrides them) and keep every instance above
``--score-threshold``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_samlabel.cli import CLIError, one_line
from napari_samlabel.cli._grammar import (
    add_border,
    add_cache,
    add_checkpoint,
    add_classes,
    add_device,
    add_out,
)
from napari_samlabel.cli._progress import tqdm_progress

if TYPE_CHECKING:  # imported when the command runs, not at CLI start-up
    from napari_samlabel.pseudo.engines import EngineSpec

KINDS = ("points", "scribbles", "boxes", "cams", "tags", "text")
CONCEPT_KINDS = ("tags", "text")
MAX_LISTED = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``pseudo-label`` sub-command."""
    from napari_samlabel.engine.policies import DEFAULT_POLICY_FOR_KIND, PRESETS

    defaults = ", ".join(f"{k}: {v}" for k, v in DEFAULT_POLICY_FOR_KIND.items())
    p = subparsers.add_parser(
        "pseudo-label",
        help="turn weak labels (points, scribbles, boxes, CAMs, image tags, class names) into "
             "a VOC pseudo-label dataset",
        description="Prompt SAM with weak labels and write pseudo labels as a VOC dataset "
        "(OUT/voc) plus per-image label PNGs and per-object scores. Reruns skip finished "
        "images.",
    )
    p.add_argument("images", type=Path, metavar="IMAGES",
                   help="folder of images (ids = file names without extension)")
    p.add_argument("--weak", type=Path, metavar="DIR_OR_FILE",
                   help="weak-label file or folder of files (kind tags: a VOC root with "
                        "ImageSets/Main/<class>_<split>.txt, a JSON {image_id: [class, ...]} "
                        "or a CSV image_id,class; not for kind text)")
    p.add_argument("--kind", required=True, choices=KINDS, help="kind of weak labels")
    add_out(p, "output folder (rerunning into it skips finished images)")
    p.add_argument("--policy", choices=sorted(PRESETS),
                   help=f"prompt policy (default per kind: {defaults})")
    p.add_argument("--multimask", choices=("best", "whole", "single"),
                   help="which of SAM's masks to keep (default: 'whole', the third mask, "
                        "as the paper does; 'best' = highest predicted IoU)")
    p.add_argument("--group-size", type=int, metavar="N",
                   help="points per iterative step (default: the policy's; scribbles 5, "
                        "points 1)")
    p.add_argument("--background-negatives", action=argparse.BooleanOptionalAction,
                   help="add background (class 0) prompts as negative points (default: the "
                        "policy's; on for scribbles and CAMs, off for points and boxes, as "
                        "in the paper)")
    p.add_argument("--sample-fraction", type=float, metavar="F",
                   help="fraction of scribble pixels used as points (default: policy's, 0.2)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of scribble sampling and of the train/val split")
    add_classes(p)
    p.add_argument("--model", help="SAM model type (default vit_b; sam3 for kinds tags and "
                                    "text, which need concept prompts)")
    add_checkpoint(p)
    p.add_argument("--phrases", type=Path, metavar="FILE",
                   help="kinds tags/text: YAML or JSON {class name: phrase} overriding the "
                        "phrase that prompts a class (default: the name, with VOC's "
                        "pottedplant -> 'potted plant', tvmonitor -> 'tv monitor', ...)")
    p.add_argument("--score-threshold", type=float, metavar="F",
                   help="kinds tags/text: keep instances scoring at least F (default 0.5)")
    p.add_argument("--image-set", dest="tags_split", metavar="NAME",
                   help="kind tags with a VOC root: read ImageSets/Main/<class>_NAME.txt only "
                        "(default: every image set found)")
    add_device(p)
    p.add_argument("--precise", action="store_true", help="encode in float32")
    add_cache(p)
    p.add_argument("--no-download", action="store_true", help="never download a checkpoint")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on this dask.distributed scheduler (e.g. tcp://host:8786); the "
                        "output folder must be reachable from the workers")
    add_border(p)
    p.add_argument("--no-export", action="store_true",
                   help="write per-image results only, no VOC tree")
    p.add_argument("--cam-threshold", type=float, help="CAM peak threshold (kind cams)")
    p.add_argument("--cam-max-points", type=int, metavar="N",
                   help="keep only the N highest CAM peaks per class (kind cams; default: "
                        "every peak above the threshold, as in the paper)")
    p.add_argument("--cam-fallback-to-max", action="store_true",
                   help="a class whose CAM has no peak above the threshold gets its maximum "
                        "as one point (kind cams; default: no point, as in the paper)")
    p.set_defaults(func=run)


def _engine_spec(args: argparse.Namespace) -> EngineSpec:
    from napari_samlabel.pseudo.engines import EngineSpec

    kwargs: dict[str, Any] = {"precise": bool(args.precise), "download": not args.no_download}
    if args.device:
        kwargs["device"] = args.device
    if args.cache_dir:
        kwargs["cache_dir"] = str(args.cache_dir)
    model = args.model or ("sam3" if args.kind in CONCEPT_KINDS else "vit_b")
    return EngineSpec.sam(model, args.checkpoint, **kwargs)


def run(args: argparse.Namespace) -> int:
    """Run the command; return the exit code."""
    from napari_samlabel.core.classes import ClassTable
    from napari_samlabel.core.fsutil import WriteError
    from napari_samlabel.engine.policies import get_policy
    from napari_samlabel.io.voc import voc_id
    from napari_samlabel.io.weak import WeakLabelError, read_weak_labels
    from napari_samlabel.pseudo.pipeline import pseudo_label

    if not args.images.is_dir():
        raise CLIError(f"image folder not found: {args.images}")
    if args.sample_fraction is not None and not 0 < args.sample_fraction <= 1:
        raise CLIError(f"--sample-fraction must be in (0, 1], got {args.sample_fraction}")
    if args.checkpoint is not None and not args.checkpoint.exists():
        raise CLIError(f"checkpoint file not found: {args.checkpoint}")
    concept = args.kind in CONCEPT_KINDS
    if args.kind == "text" and args.weak is not None:
        raise CLIError("--kind text prompts every class of the class list: it takes no --weak")
    if args.kind != "text" and args.weak is None:
        raise CLIError(f"--kind {args.kind} needs --weak")
    if not concept and (args.phrases or args.score_threshold is not None):
        raise CLIError("--phrases/--score-threshold apply to --kind tags and text only")
    if args.tags_split and args.kind != "tags":
        raise CLIError("--image-set applies to --kind tags only")
    if args.score_threshold is not None and not 0 <= args.score_threshold <= 1:
        raise CLIError(f"--score-threshold must be in [0, 1], got {args.score_threshold}")
    try:
        classes = ClassTable.from_file(args.classes) if args.classes else ClassTable.voc()
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    options: dict[str, Any] = {}
    if args.kind == "cams":
        if args.cam_threshold is not None:
            options["threshold"] = args.cam_threshold
        if args.cam_max_points is not None:
            options["max_points"] = args.cam_max_points
        if args.cam_fallback_to_max:
            options["fallback_to_max"] = True
    elif args.kind == "tags" and args.tags_split:
        options["split"] = args.tags_split
    if args.kind != "cams" and (args.cam_threshold is not None or args.cam_max_points is not None
                                or args.cam_fallback_to_max):
        raise CLIError("--cam-threshold/--cam-max-points/--cam-fallback-to-max apply to "
                       "--kind cams only")
    bad_inputs: dict[str, str] = {}

    def bad_file(exc: WeakLabelError) -> None:  # reported per image at the end, not fatal
        bad_inputs[str(exc.image_id)] = str(exc)

    try:
        if args.kind == "text":
            from napari_samlabel.io.images import list_images
            from napari_samlabel.io.weak.tags import text_labels

            weak = text_labels((p.stem for p in list_images(args.images)), classes)
        else:
            weak = read_weak_labels(args.weak, args.kind, classes, on_error=bad_file,
                                    **options)
    except (WeakLabelError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from None
    if not weak and not bad_inputs:
        raise CLIError(f"no weak labels in {args.weak or args.images}")
    overrides: dict[str, Any] = {"seed": args.seed}
    if concept:
        from napari_samlabel.io.weak.tags import read_phrases

        if args.score_threshold is not None:
            overrides["score_threshold"] = args.score_threshold
        if args.phrases:
            try:
                overrides["phrases"] = tuple(read_phrases(args.phrases, classes).items())
            except WeakLabelError as exc:
                raise CLIError(str(exc)) from None
    if args.multimask:
        overrides["multimask_choice"] = args.multimask
    if args.sample_fraction is not None:
        overrides["sample_fraction"] = args.sample_fraction
    if args.group_size is not None:
        if args.group_size < 1:
            raise CLIError(f"--group-size must be >= 1, got {args.group_size}")
        overrides["group_size"] = args.group_size
    if args.background_negatives is not None:
        overrides["background_negatives"] = args.background_negatives
    policy = get_policy(args.policy, kind=args.kind, **overrides)
    if (policy.unit == "concept") != concept:
        raise CLIError(f"policy {policy.name!r} does not fit --kind {args.kind}: kinds tags and "
                       "text take the policies 'tags'/'text', the others prompt-based ones")

    from napari_samlabel.engine.checkpoint import CheckpointError

    spec = _engine_spec(args)
    try:
        with tqdm_progress("pseudo-label") as progress:
            report = pseudo_label(args.images, weak, args.out, spec, policy=policy,
                                  kind=args.kind, classes=classes, progress=progress,
                                  scheduler=args.scheduler, export=not args.no_export,
                                  border=args.border, seed=args.seed,
                                  input_errors=bad_inputs)
    except (CheckpointError, KeyError, FileNotFoundError, NotADirectoryError,
            FileExistsError) as exc:
        raise CLIError(str(exc.args[0] if isinstance(exc, KeyError) else exc)) from None
    except OSError as exc:  # scheduler unreachable, output not writable
        raise CLIError(one_line(exc) if exc.filename or isinstance(exc, WriteError)
                       else f"{type(exc).__name__}: {exc}") from None

    print(f"{report.summary()} in {report.seconds:.1f} s (policy {policy.name})")
    if report.voc_root is not None:
        print(f"VOC dataset: {report.voc_root}")
        renamed = {i: voc_id(i) for i in report.finished if voc_id(i) != i}
        if renamed:  # the rule of `samlabel export` (docs/project-format.md)
            print(f"{len(renamed)} image id(s) renamed in VOC (characters other than ASCII "
                  "letters, digits and _.+- become _): " + ", ".join(
                      f"{a!r} -> {b!r}" for a, b in list(renamed.items())[:MAX_LISTED]))
    if report.failed:
        print(f"{len(report.failed)} image(s) failed (see {args.out / 'failures.json'}):",
              file=sys.stderr)
        for image_id, reason in list(report.failed.items())[:MAX_LISTED]:
            print(f"  {image_id}: {reason}", file=sys.stderr)
        if len(report.failed) > MAX_LISTED:
            print(f"  ... and {len(report.failed) - MAX_LISTED} more", file=sys.stderr)
    for error in report.write_errors:
        print(f"error: {' '.join(error.split())}", file=sys.stderr)
    all_failed = bool(report.failed) and not report.finished
    return 1 if all_failed or report.write_errors else 0
