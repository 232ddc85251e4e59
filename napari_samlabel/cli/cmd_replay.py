"""``samlabel replay``: regenerate every mask of a project from its stored prompts."""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_samlabel.cli import CLIError
from napari_samlabel.cli._grammar import add_cache, add_checkpoint, add_device, add_out
from napari_samlabel.cli._progress import tqdm_progress


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``replay`` sub-command."""
    p = subparsers.add_parser(
        "replay", help="regenerate a project's masks from its stored prompts with another model",
        description="Decode every accepted object's stored prompts again with MODEL "
                    "(provenance: the prompts and the model identity are stored per object). "
                    "Writes a new project to --out, or rewrites PROJECT with --in-place.")
    p.add_argument("project", type=Path, metavar="PROJECT", help="project folder")
    p.add_argument("--model", default="vit_b", help="model type (default: vit_b)")
    add_checkpoint(p)
    add_cache(p)
    add_device(p)
    p.add_argument("--precise", action="store_true", help="encode in float32 (no bf16)")
    dest = p.add_mutually_exclusive_group(required=True)
    add_out(dest, "folder of the new project", required=False)
    dest.add_argument("--in-place", action="store_true", help="rewrite PROJECT's masks")
    p.add_argument("--one-shot", action="store_true",
                   help="decode all prompts of an object at once instead of prompt by prompt")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``samlabel replay``."""
    from napari_samlabel.engine.checkpoint import CheckpointError
    from napari_samlabel.engine.loader import load_engine
    from napari_samlabel.io.project import Project
    from napari_samlabel.io.project_schema import ProjectError
    from napari_samlabel.pseudo.replay import replay_project

    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise CLIError(f"checkpoint file not found: {args.checkpoint}")
    try:
        project = Project.open(args.project)
    except (ProjectError, FileNotFoundError) as exc:
        raise CLIError(str(exc)) from None
    try:
        engine = load_engine(args.model, checkpoint=args.checkpoint, device=args.device,
                             precise=args.precise, cache_dir=args.cache_dir)
    except (CheckpointError, KeyError) as exc:
        raise CLIError(str(exc.args[0] if isinstance(exc, KeyError) else exc)) from None
    with tqdm_progress("replay") as progress:
        try:
            report = replay_project(project, engine, out=args.out, in_place=args.in_place,
                                    incremental=not args.one_shot, progress=progress)
        except (ValueError, FileExistsError) as exc:
            raise CLIError(str(exc)) from None
    print(report.summary())
    return 1 if report.failed else 0
