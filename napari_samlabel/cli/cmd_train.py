"""``samlabel train``: train a segmentation network on pseudo labels, with self-training rounds.

``SOURCE`` is a VOC tree (``SegmentationClass`` + ``JPEGImages``, e.g. the output of
``samlabel pseudo-label`` or ``export``) or a napari-samlabel project (its annotated images).
Each round trains, predicts the training images and refines the labels with the adaptive
threshold (optionally snapped to SLIC superpixels); see
:mod:`napari_samlabel.learn.selftrain`. Running again with the same ``--out`` resumes.

Several GPUs: ``torchrun --nproc_per_node=4 -m napari_samlabel train SOURCE --out M``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path

from napari_samlabel.cli import CLIError
from napari_samlabel.cli._grammar import add_device, add_out
from napari_samlabel.cli._progress import tqdm_progress
from napari_samlabel.learn.losses import WEIGHTINGS
from napari_samlabel.learn.segmenter import ARCHS, PRETRAINED
from napari_samlabel.learn.selftrain import IGNORE_RATIO, TrainConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command."""
    p = subparsers.add_parser(
        "train", help="train a segmentation network on pseudo labels (self-training)",
        description="Train a torchvision segmentation network on a VOC tree or a project, "
                    "with rounds of train -> predict -> refine (adaptive threshold). Under "
                    "torchrun (WORLD_SIZE > 1) it trains with DistributedDataParallel.")
    p.add_argument("source", type=Path, metavar="SOURCE", help="VOC tree or project folder")
    add_out(p, "model folder (model.pt, model.json, rounds/); resumed when it exists")
    d = TrainConfig()
    p.add_argument("--arch", choices=ARCHS, default=d.arch,
                   help="deeplabv3 (ResNet50, default) or lraspp (MobileNetV3, for CPUs)")
    p.add_argument("--pretrained", metavar="WEIGHTS",
                   help=f"{' or '.join(PRETRAINED)} (torchvision's weights, if already in "
                        "torch's hub cache) or a state dict file (default: random weights)")
    p.add_argument("--rounds", type=int, default=d.rounds, help="self-training rounds")
    p.add_argument("--epochs", type=int, default=d.epochs, help="epochs per round")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per batch")
    p.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate (cosine decay)")
    p.add_argument("--size", type=int, default=d.size,
                   help="images are resized to SIZE x SIZE for the network")
    p.add_argument("--ratio", type=float, default=IGNORE_RATIO,
                   help="share of least confident pixels voided after each round")
    p.add_argument("--snap", action="store_true",
                   help="snap each round's labels to SLIC superpixels before the threshold")
    p.add_argument("--weighting", choices=WEIGHTINGS, default=d.weighting,
                   help="loss weights: distance (pseudo labels), boundary (clean labels), none")
    p.add_argument("--gt", type=Path, metavar="DIR",
                   help="ground-truth label PNGs (or VOC root): each round's mIoU is reported")
    add_device(p)
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``samlabel train``."""
    from napari_samlabel.core.progress import no_progress
    from napari_samlabel.engine.device import choose_device
    from napari_samlabel.learn.data import DataError, load_samples
    from napari_samlabel.learn.segmenter import SegmenterError
    from napari_samlabel.learn.selftrain import self_train

    try:
        config = TrainConfig(arch=args.arch, rounds=args.rounds, epochs=args.epochs,
                             batch_size=args.batch_size, lr=args.lr, size=args.size,
                             ratio=args.ratio, snap=args.snap, weighting=args.weighting,
                             pretrained=args.pretrained, seed=args.seed)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    try:
        device = str(choose_device(args.device))
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    main = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 talks
    say = print if main else (lambda *a, **k: None)
    try:
        samples, classes = load_samples(args.source)
        say(f"training {args.arch} on {len(samples)} images, {len(classes)} classes, {device}")
        bar = tqdm_progress("train", unit="epoch") if main else contextlib.nullcontext(None)
        with bar as progress:
            state = self_train(samples, classes, args.out, config, gt=args.gt, device=device,
                               progress=progress or no_progress, log=say)
    except (DataError, SegmenterError) as exc:
        raise CLIError(str(exc)) from None
    if not main:
        return 0
    if state.get("initial_miou") is not None:
        print(f"input labels mIoU {state['initial_miou']:.3f}")
    print(f"model written to {args.out}")
    return 0
