"""``samlabel train-prompter``: learn a WPS-SAM prompter from a project's or a VOC tree's boxes.

SOURCE is a project folder (its accepted objects: their boxes, or their first clicks with
``--prompt point``) or a VOC tree (``Annotations`` boxes; part boxes from ``<part>``
elements when the class list names the parts, ``dog/head``). The images are encoded once
through the embedding cache (``--cache``); every epoch prints its training and validation
loss. The best prompter goes to ``--out``; the state after each epoch to ``OUT.resume``, so
running the same command again after a kill continues where it stopped (``--restart``
starts over). See :mod:`napari_samlabel.learn.train_prompter`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from napari_samlabel.cli import CLIError
from napari_samlabel.cli._grammar import add_cache, add_checkpoint, add_classes, add_device, add_out
from napari_samlabel.cli._progress import tqdm_progress
from napari_samlabel.learn import PROMPTER_FILE

PAPER_FIELDS = ("d_model", "encoder_layers", "decoder_layers", "feedforward")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train-prompter`` sub-command."""
    p = subparsers.add_parser(
        "train-prompter",
        help="learn a prompter (WPS-SAM) that proposes objects and parts from weak boxes",
        description="Train a query transformer on SAM's frozen image embedding to emit the "
        "prompts and classes of the objects (and parts) of SOURCE's weak boxes or points. "
        "Rerunning the same command resumes an interrupted run.",
    )
    p.add_argument("source", type=Path, metavar="SOURCE",
                   help="project folder or VOC tree with Annotations")
    add_out(p, f"output folder: the best prompter ({PROMPTER_FILE}) and its resume state")
    p.add_argument("--model", default="vit_b", help="SAM model type (default vit_b)")
    add_checkpoint(p)
    add_device(p)
    add_cache(p)
    p.add_argument("--no-download", action="store_true", help="never download a checkpoint")
    p.add_argument("--prompt", choices=("box", "point"), default="box",
                   help="weak prompt the prompter imitates (default box; points are "
                        "clearly worse in the paper)")
    p.add_argument("--level", choices=("all", "objects", "parts"), default="all",
                   help="learn objects, parts (dog/head classes) or both (default)")
    add_classes(p, "a VOC tree's labelmap.txt, else the 21 PASCAL VOC classes")
    p.add_argument("--epochs", type=int, default=50, help="epochs (default 50; paper 150)")
    p.add_argument("--batch-size", type=int, default=8, help="images per step (default 8)")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4)")
    p.add_argument("--val-fraction", type=float, default=0.2,
                   help="share of images held out for validation (default 0.2)")
    p.add_argument("--queries", type=int, default=25, help="queries S (default 25)")
    p.add_argument("--layers", type=int, metavar="N",
                   help="encoder and decoder layers each (default 2; the paper 6)")
    p.add_argument("--width", type=int, metavar="D", help="transformer width (default 128)")
    p.add_argument("--paper", action="store_true",
                   help="the paper's size: 6 + 6 layers of width 256 (slow on a CPU)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, split and order")
    p.add_argument("--restart", action="store_true",
                   help="ignore OUT.resume and start over")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the command; return the exit code."""
    from napari_samlabel.core.classes import ClassTable
    from napari_samlabel.engine.checkpoint import CheckpointError
    from napari_samlabel.engine.loader import load_engine
    from napari_samlabel.learn.prompter import PrompterConfig, PrompterError, config_for
    from napari_samlabel.learn.prompter_data import read_weak_dataset
    from napari_samlabel.learn.train_prompter import TrainConfig, train_prompter

    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise CLIError(f"checkpoint file not found: {args.checkpoint}")
    try:
        classes = ClassTable.from_file(args.classes) if args.classes else None
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             val_fraction=args.val_fraction, seed=args.seed,
                             prompt=args.prompt)
        data = read_weak_dataset(args.source, classes, args.level)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    print(f"{args.source}: {len(data.images)} images, {data.objects} weak objects of "
          f"{len(data.classes) - 1} classes ({data.kind})")
    try:
        engine = load_engine(args.model, args.checkpoint, device=args.device,
                             cache_dir=args.cache_dir,
                             download=not args.no_download)
    except (CheckpointError, KeyError, ValueError) as exc:
        raise CLIError(str(exc.args[0] if isinstance(exc, KeyError) else exc)) from None
    shape: dict[str, int] = {"queries": args.queries}
    if args.layers is not None:
        shape["encoder_layers"] = shape["decoder_layers"] = args.layers
    if args.width is not None:
        shape["d_model"] = args.width
    try:
        pconfig = config_for(engine, len(data.classes) - 1, **shape)
        if args.paper:
            paper = PrompterConfig.paper(pconfig.num_classes)
            pconfig = replace(pconfig, **{**{k: getattr(paper, k) for k in PAPER_FIELDS},
                                          **shape})
        with tqdm_progress("encode") as enc, tqdm_progress("train", unit="epoch") as prog:
            report = train_prompter(data, engine, args.out / PROMPTER_FILE, config,
                                    prompter_config=pconfig,
                                    device=args.device, resume=not args.restart,
                                    encode_progress=enc, progress=prog,
                                    log=lambda m: print(m, file=sys.stderr))
    except (PrompterError, ValueError, OSError) as exc:
        raise CLIError(str(exc)) from None
    for h in report.history[report.resumed_from:]:
        print(f"epoch {int(h['epoch'])}: loss {h['train_loss']:.4f}, "
              f"validation {h['val_loss']:.4f} ({h['seconds']:.1f} s)")
    print(f"best epoch {report.best_epoch} (validation loss {report.best_loss:.4f}) -> "
          f"{args.out / PROMPTER_FILE}; {report.train_images} training, "
          f"{report.val_images} validation images")
    for image_id, reason in list(report.failed.items())[:20]:
        print(f"  skipped {image_id}: {reason}", file=sys.stderr)
    return 0
