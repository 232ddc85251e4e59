"""``samlabel embed``: precompute SAM image embeddings into the embedding cache.

Later runs (the napari widget, ``samlabel pseudo``, ``refine``...) that use the same model
and cache find the embeddings and skip the expensive encoder. Images whose embedding is
already cached are skipped. The cache root is ``--cache DIR``, else
``$SAMLABEL_CACHE_DIR``, else the user cache directory; embeddings live in
``<cache root>/embeddings`` and downloaded checkpoints in ``<cache root>/checkpoints``.

``torch.compile`` costs a one-off compilation at the first encode (10-70 s); on CPU the
engine's eager path is faster than the compiled one (``benchmarks/README.md``), so
``--compile auto`` (the default) compiles only on a GPU and for at least
:data:`COMPILE_MIN_IMAGES` images.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_samlabel.cli import CLIError
from napari_samlabel.cli._grammar import add_cache, add_checkpoint, add_device
from napari_samlabel.cli._progress import tqdm_progress

if TYPE_CHECKING:  # the engine is imported when the command runs, not at CLI start-up
    from napari_samlabel.engine.base import CachedEngine

#: With ``--compile auto``, compile the encoder (on a GPU) for at least this many images.
COMPILE_MIN_IMAGES = 20
#: ``--check-precision`` compares this many images (a float32 encode each).
CHECK_IMAGES = 4


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``embed`` sub-command."""
    p = subparsers.add_parser(
        "embed",
        help="precompute SAM image embeddings (skips cached ones)",
        description="Encode images with SAM's image encoder and store the embeddings in the "
        "embedding cache, so that labelling and batch commands start instantly.",
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGES_OR_FOLDER",
                   help="image files and/or folders of images (not recursive)")
    p.add_argument("--model", default="vit_b",
                   help="SAM model type: vit_b (default), vit_l, vit_h")
    add_checkpoint(p)
    add_cache(p)
    p.add_argument("--precise", action="store_true",
                   help="encode in float32 (default: bfloat16 where the CPU/GPU supports it, "
                        "int8 linears on CPUs with VNNI and no bfloat16)")
    p.add_argument("--check-precision", action="store_true",
                   help=f"also encode the first {CHECK_IMAGES} images in float32 and print "
                        "how close the faster mode is (embedding cosine, mask IoU on the "
                        "same prompts); exit status 1 if below the accuracy guard")
    add_device(p)
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help=f"torch.compile the encoder (auto: on a GPU for >= "
                        f"{COMPILE_MIN_IMAGES} images; on CPU the eager encoder is faster)")
    p.add_argument("--max-cache-gb", type=float, default=None,
                   help="bound of the embedding cache on disk (default 4 GB; oldest "
                        "evicted first)")
    p.add_argument("--no-download", action="store_true", help="never download a checkpoint")
    p.set_defaults(func=run)


def _load_rgb(path: Path) -> np.ndarray:
    """Load ``path`` as RGB ``uint8`` (the shared image loader of ``napari_samlabel.io``)."""
    from napari_samlabel.io.images import load_image

    return load_image(path)


def _collect(inputs: list[str]) -> list[Path]:
    from napari_samlabel.io.images import list_images

    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = list_images(p)
            if not found:
                raise CLIError(f"no images found in folder {p}")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        else:
            raise CLIError(f"no such file or folder: {p}")
    # Keep order, drop duplicates (a file given twice, or also inside a given folder).
    seen: set[Path] = set()
    unique = []
    for p in paths:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def _load_engine(args: argparse.Namespace, n_images: int) -> CachedEngine:
    from napari_samlabel.core.progress import no_progress
    from napari_samlabel.engine.cache import DEFAULT_MAX_DISK_BYTES
    from napari_samlabel.engine.checkpoint import CheckpointError
    from napari_samlabel.engine.device import choose_device
    from napari_samlabel.engine.loader import default_embedding_cache, load_engine

    try:
        device = choose_device(args.device)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if args.compile == "auto":
        compile_ = device.type == "cuda" and n_images >= COMPILE_MIN_IMAGES
    else:
        compile_ = args.compile == "on"
    if args.max_cache_gb is not None and args.max_cache_gb <= 0:
        raise CLIError(f"--max-cache-gb must be > 0, got {args.max_cache_gb}")
    max_bytes = (DEFAULT_MAX_DISK_BYTES if args.max_cache_gb is None
                 else int(args.max_cache_gb * 1024**3))
    cache = default_embedding_cache(args.cache_dir, max_disk_bytes=max_bytes, memory_items=0)
    # A download bar only when a download can happen (no local file given).
    bar = (contextlib.nullcontext(no_progress) if args.checkpoint is not None
           else tqdm_progress("checkpoint", unit="B"))
    try:
        with bar as progress:
            return load_engine(args.model, args.checkpoint, device=str(device),
                               precise=args.precise, compile=compile_, cache=cache,
                               cache_dir=args.cache_dir, download=not args.no_download,
                               progress=progress)
    except (CheckpointError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    except KeyError as exc:
        raise CLIError(str(exc.args[0])) from None


def run(args: argparse.Namespace) -> int:
    """Encode every image not yet cached; print a summary."""
    from napari_samlabel.io.images import ImageReadError

    paths = _collect(args.inputs)
    engine = _load_engine(args, len(paths))
    _check_cache_writable(engine)
    encoded = cached = 0
    failed: list[str] = []
    not_cached: list[str] = []
    encode_seconds: list[float] = []
    start = time.perf_counter()
    with tqdm_progress(f"embed ({args.model})") as progress:
        progress(0, len(paths), "")
        for i, path in enumerate(paths):
            try:
                image = _load_rgb(path)
            except ImageReadError as exc:
                failed.append(str(exc))
                progress(i + 1, len(paths), "unreadable")
                continue
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                _, from_cache = engine.encode(image)
            stored = True
            for w in caught:  # the cache reports a failed write (disk full) as a warning
                if "cannot write embedding cache file" in str(w.message):
                    not_cached.append(f"{path}: {w.message}")
                    stored = False
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            if from_cache:
                cached += 1
            elif stored:
                encoded += 1
                encode_seconds.append(time.perf_counter() - t0)
            progress(i + 1, len(paths), f"{path.name}: {'cached' if from_cache else 'encoded'}")
    total = time.perf_counter() - start
    print(f"embed: {len(paths)} image(s): {encoded} encoded, {cached} already cached, "
          f"{len(failed)} unreadable"
          + (f", {len(not_cached)} NOT cached (write failed)" if not_cached else "")
          + f", in {total:.1f} s")
    if encode_seconds:
        note = " (first includes compilation)" if engine.compiled else ""
        print(f"  encode time per image: median {np.median(encode_seconds):.2f} s, first "
              f"{encode_seconds[0]:.2f} s{note}; {engine!r}")
    if engine.cache is not None and engine.cache.directory is not None:
        print(f"  cache: {engine.cache.directory}")
    for msg in failed:
        print(f"  unreadable: {msg}")
    for msg in not_cached:
        print(f"  not cached: {msg}", file=sys.stderr)
    status = 1 if failed or not_cached else 0
    if args.check_precision:
        status = max(status, _check_precision(args, engine, paths))
    return status


def _check_precision(args: argparse.Namespace, engine: CachedEngine, paths: list[Path]) -> int:
    """``--check-precision``: the fast mode against float32 on the first images; 1 if short."""
    from napari_samlabel.engine.precision import (
        COSINE_MIN,
        MASK_IOU_MIN,
        PrecisionCheck,
        check_precision,
        guard_met,
    )
    from napari_samlabel.io.images import ImageReadError

    if engine.precision == "float32":
        print("check-precision: the encoder runs in float32, the reference itself: "
              "nothing to check")
        return 0
    print(f"check-precision: {engine.precision} against float32 (loading a float32 encoder "
          "of the same weights)")
    ns = argparse.Namespace(**{**vars(args), "precise": True, "compile": "off"})
    precise = _load_engine(ns, 0)
    precise.cache = None  # the reference's embeddings are not worth keeping
    checks: list[PrecisionCheck] = []
    for path in paths:
        if len(checks) == CHECK_IMAGES:
            break
        try:
            image = _load_rgb(path)
        except ImageReadError:
            continue  # reported above
        check = check_precision(engine, precise, image)
        checks.append(check)
        print(f"  {path.name}: embedding cosine {check.cosine:.5f}, mask IoU "
              f"{check.mask_iou:.4f} (min {min(check.mask_ious):.3f}, "
              f"{len(check.mask_ious)} prompts)")
    if not checks:
        return 0
    if guard_met(checks):
        print(f"  {engine.precision} meets the accuracy guard (cosine >= {COSINE_MIN}, mask "
              f"IoU >= {MASK_IOU_MIN}) on these images")
        return 0
    print(f"  {engine.precision} is BELOW the accuracy guard (cosine >= {COSINE_MIN}, mask "
          f"IoU >= {MASK_IOU_MIN}) with these weights: encode with --precise "
          "(or SAMLABEL_PRECISION=float32)", file=sys.stderr)
    return 1


def _check_cache_writable(engine: CachedEngine) -> None:
    """Refuse to start when the cache folder cannot take a file (read-only, missing rights).

    Filling the cache is what ``embed`` is for: encoding without storing would report
    success with nothing cached.
    """
    import tempfile

    cache = getattr(engine, "cache", None)
    folder = getattr(cache, "directory", None)
    if folder is None:
        return
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise CLIError(f"cannot write to the embedding cache {folder}: "
                       f"{exc.strerror or exc}; nothing was encoded") from None
