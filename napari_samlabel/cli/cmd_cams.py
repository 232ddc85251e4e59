"""``samlabel cams``: class activation maps from image-level tags with CLIP learned prompts.

Writes ``OUT/<id>.npy`` + ``OUT/<id>.json`` (the CAM format ``pseudo-label --kind cams`` and
``refine --method sams --cams`` read) and ``OUT/prompts.pt`` (the learned contexts). See
:mod:`napari_samlabel.learn.clip_cams`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_samlabel.cli import CLIError
from napari_samlabel.cli._grammar import add_classes, add_out
from napari_samlabel.cli._progress import tqdm_progress
from napari_samlabel.learn.clip_cams import BATCH_SIZE, EPOCHS, LR, MODEL_NAME, N_CTX


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``cams`` sub-command."""
    p = subparsers.add_parser(
        "cams", help="CAMs from image-level tags with CLIP and learned prompts (SAMS)",
        description="Learn CLIP context prompts from image-level tags and write "
                    "Softmax-GradCAM class activation maps for the present classes.")
    p.add_argument("images", type=Path, metavar="IMAGES", help="image folder")
    p.add_argument("--tags", type=Path, required=True, metavar="FILE",
                   help="image-level labels, as pseudo-label --kind tags reads them: JSON "
                        "{id: [class, ...]}, CSV rows id,class, or a VOC root "
                        "(ImageSets/Main/<class>_<split>.txt)")
    add_out(p, "output folder (<id>.npy CAMs with their <id>.json, prompts.pt)")
    add_classes(p)
    p.add_argument("--model", default=MODEL_NAME, help=f"open_clip model (default {MODEL_NAME})")
    p.add_argument("--pretrained", type=Path, metavar="FILE",
                   help="local open_clip weights file (default: random weights)")
    p.add_argument("--epochs", type=int, default=EPOCHS, help="epochs per stream")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="images per batch")
    p.add_argument("--lr", type=float, default=LR, help="SGD learning rate (CoOp's 0.002)")
    p.add_argument("--n-ctx", type=int, default=N_CTX, help="context tokens")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``samlabel cams``."""
    from napari_samlabel.core.classes import ClassTable
    from napari_samlabel.io.images import image_id, list_images
    from napari_samlabel.io.weak import WeakLabelError, read_weak_labels
    from napari_samlabel.learn import clip_cams as cc
    from napari_samlabel.learn.data import DataError, read_image

    try:
        config = cc.CamConfig(n_ctx=args.n_ctx, epochs=args.epochs,
                              batch_size=args.batch_size, lr=args.lr)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if not args.images.is_dir():
        raise CLIError(f"image folder not found: {args.images}")
    try:
        classes = (ClassTable.from_file(args.classes) if args.classes is not None
                   else ClassTable.voc())
        # the tags readers of pseudo-label --kind tags: JSON, CSV rows or a VOC root
        tags = {iid: [o.class_id for o in weak.objects]
                for iid, weak in read_weak_labels(args.tags, "tags", classes).items()}
        paths = [p for p in list_images(args.images) if image_id(p) in tags]
        if not paths:
            raise CLIError(f"no image in {args.images} has tags in {args.tags}")
        images = [read_image(p) for p in paths]
        present = [[k - 1 for k in tags[image_id(p)]] for p in paths]
        clip = cc.build_clip(args.model, args.pretrained)
        learner = cc.PromptLearner(clip, args.model, classes.names[1:], config.n_ctx,
                                   config.seed)
        with tqdm_progress("prompts", unit="epoch") as progress:
            history = cc.learn_prompts(learner, images, present, config, progress)
        args.out.mkdir(parents=True, exist_ok=True)
        cc.save_prompts(args.out / "prompts.pt", learner, args.model, history)
        text = cc.cam_texts(learner, "seg")
        with tqdm_progress("cams") as progress:
            for n, (p, im, ks) in enumerate(zip(paths, images, present, strict=True), 1):
                cams = cc.image_cams(learner, im, ks, text)
                cc.write_cams(args.out, image_id(p), cams, [classes.names[k + 1] for k in ks])
                progress(n, len(paths), image_id(p))
    except (cc.ClipCamError, DataError, WeakLabelError, OSError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    print(f"CAMs of {len(paths)} images written to {args.out}")
    return 0
