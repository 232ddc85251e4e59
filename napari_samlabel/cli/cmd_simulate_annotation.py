"""``samlabel simulate-annotation``: how many clicks and seconds a labelled dataset costs.

A simulated annotator (:mod:`napari_samlabel.annotate.effort`) annotates every labelled
image of ``DATASET`` (a VOC tree as ``samlabel export`` writes it, or a project with
accepted objects) with ``--model``, through the annotator's own session code, and writes
NoC@85 / NoC@90, failures, the mIoU-against-clicks curve and seconds per image into
``--out`` (per object, per image, per run). Runs with other models or settings into the
same ``--out`` add rows to ``OUT/summary.md`` / ``summary.csv`` and lines to
``OUT/curve.png``. Rerunning a killed command resumes it. Exit code 1 when every image
failed, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_samlabel.cli import CLIError
from napari_samlabel.cli._grammar import add_cache, add_checkpoint, add_device, add_out
from napari_samlabel.cli._progress import tqdm_progress

if TYPE_CHECKING:
    from napari_samlabel.engine.protocol import ProposalSource

MAX_LISTED = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate-annotation`` sub-command."""
    from napari_samlabel.annotate.effort.clicker import PROMPT_KINDS
    from napari_samlabel.engine.policies import PRESETS

    p = subparsers.add_parser(
        "simulate-annotation",
        help="measure annotation effort (clicks to 85/90 %% IoU, seconds per image) of a "
             "model and prompt kind on a labelled dataset",
        description="Annotate a labelled dataset with a simulated annotator (the standard "
        "clicker) through the annotator's own session, and report NoC@85/NoC@90, IoU after "
        "k clicks, failures and an effort estimate in seconds. Reruns resume; runs of other "
        "models or settings into the same --out are tabulated side by side.")
    p.add_argument("dataset", type=Path, metavar="DATASET",
                   help="VOC tree (as 'samlabel export' writes it) or a samlabel project")
    add_out(p, "output folder (per-run results, summary.csv/.md, curve.png)")
    p.add_argument("--model", default="vit_b", help="model type (default vit_b)")
    add_checkpoint(p)
    p.add_argument("--prompt", choices=PROMPT_KINDS, default="points",
                   help="first interaction: a click at the object's deepest point (points), "
                        "its box (box), both (box+points) or a stroke (scribble); "
                        "corrections are clicks (strokes with scribble). Default points")
    p.add_argument("--max-clicks", type=int, default=20, metavar="N",
                   help="interactions per object at most (default 20)")
    p.add_argument("--proposals", choices=("none", "concept", "prompter"), default="none",
                   help="decide on proposals before clicking: concept (SAM 3 concept "
                        "prompts of the class names) or prompter (default none)")
    p.add_argument("--prompter", type=Path, metavar="PATH",
                   help="with --proposals prompter: the folder 'samlabel train-prompter' "
                        "wrote (or its prompter file), trained against --model")
    p.add_argument("--concept-threshold", type=float, default=0.5, metavar="T",
                   help="score threshold of concept proposals (default 0.5)")
    p.add_argument("--policy", choices=sorted(PRESETS),
                   help="prompt policy of the session (default: the annotator's, "
                        "'interactive')")
    p.add_argument("--costs", type=Path, metavar="FILE",
                   help="YAML/JSON of seconds per action overriding the defaults "
                        "(click 1.5, box 3, scribble 3, decision 1, class_choice 1)")
    p.add_argument("--ids", nargs="+", metavar="ID", help="only these image ids")
    add_device(p)
    p.add_argument("--precise", action="store_true", help="encode in float32")
    add_cache(p)
    p.add_argument("--no-download", action="store_true", help="never download a checkpoint")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run one image per task on this dask.distributed scheduler; the "
                        "output folder must be reachable from the workers")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the command; return the exit code."""
    from napari_samlabel.annotate.effort import (
        ConceptProposals,
        CostError,
        DatasetError,
        Settings,
        load_costs,
        open_dataset,
        simulate_annotation,
    )
    from napari_samlabel.engine.checkpoint import CheckpointError
    from napari_samlabel.pseudo.engines import EngineSpec

    if args.max_clicks < 1:
        raise CLIError(f"--max-clicks must be >= 1, got {args.max_clicks}")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise CLIError(f"checkpoint file not found: {args.checkpoint}")
    source: ProposalSource | None = None
    proposals = args.proposals
    if args.proposals == "prompter":
        source, proposals = _prompter_source(args)
    elif args.prompter is not None:
        raise CLIError("--prompter goes with --proposals prompter")
    try:
        costs = load_costs(args.costs)
        dataset = open_dataset(args.dataset)
    except (CostError, DatasetError) as exc:
        raise CLIError(str(exc)) from None
    kwargs: dict[str, Any] = {"precise": bool(args.precise), "download": not args.no_download}
    if args.device:
        kwargs["device"] = args.device
    if args.cache_dir:
        kwargs["cache_dir"] = str(args.cache_dir)
    spec = EngineSpec.sam(args.model, args.checkpoint, **kwargs)
    if args.proposals == "concept":
        source = ConceptProposals(args.concept_threshold)
    try:
        # the spec's identity is the loaded engine's (model type + checkpoint SHA-256);
        # the model is loaded only when an image is left to simulate
        settings = Settings(spec.model_id(), args.prompt, args.max_clicks, proposals,
                            args.policy)
        with tqdm_progress("simulate-annotation") as progress:
            report = simulate_annotation(dataset, spec, args.out, settings, source=source,
                                         costs=costs, scheduler=args.scheduler,
                                         ids=args.ids, progress=progress)
    except (CheckpointError, DatasetError, KeyError, FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc.args[0] if isinstance(exc, KeyError) else exc)) from None
    except OSError as exc:  # scheduler unreachable, output not writable
        raise CLIError(f"{type(exc).__name__}: {exc}") from None
    s = report.summary
    print(f"{len(report.done)} image(s) simulated, {len(report.skipped)} already done, "
          f"{len(report.failed)} failed; {s.get('objects', 0)} objects: NoC@85 "
          f"{s.get('NoC@85', 0):.2f}, NoC@90 {s.get('NoC@90', 0):.2f}, "
          f"{s.get('failures@90', 0)} failure(s) at 90 %, "
          f"{s.get('seconds_per_image', 0):.1f} s per image")
    print(f"results: {report.folder}; table: {args.out / 'summary.md'}")
    if report.failed:
        print(f"{len(report.failed)} image(s) failed:", file=sys.stderr)
        for image_id, reason in list(report.failed.items())[:MAX_LISTED]:
            print(f"  {image_id}: {reason}", file=sys.stderr)
    return 1 if report.failed and not (report.done or report.skipped) else 0


def _prompter_source(args: argparse.Namespace) -> tuple[ProposalSource, str]:
    """The learned prompter of ``--prompter``, and the run's proposals label.

    The label names the prompter file's SHA-256, so runs with other prompters never resume
    each other's results.
    """
    from napari_samlabel.learn import PROMPTER_FILE
    from napari_samlabel.learn.prompter import PrompterError
    from napari_samlabel.learn.propose import PrompterSource

    if args.prompter is None:
        raise CLIError("--proposals prompter needs --prompter PATH (the folder "
                       "'samlabel train-prompter' wrote)")
    path = args.prompter / PROMPTER_FILE if args.prompter.is_dir() else args.prompter
    if not path.is_file():
        raise CLIError(f"no prompter at {path} (train one with 'samlabel train-prompter')")
    try:
        source = PrompterSource.from_file(path, args.device or "cpu")
    except (PrompterError, ValueError, OSError) as exc:
        raise CLIError(f"{path}: {exc}") from None
    return source, f"prompter-{hashlib.sha256(path.read_bytes()).hexdigest()[:10]}"
