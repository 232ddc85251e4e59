"""Pseudo-labelling throughput (images per minute) with the real ViT-B architecture.

Random weights (no pretrained checkpoint exists here): the network does the real model's
work, so times are representative; mask quality is not (see the oracle check below for the
pipeline's correctness).

What it prints
--------------
1. Per weak-label kind (points, scribbles, boxes, CAMs) on the first ``--images`` VOC sample
   images: the encoder time per image (measured once, cold) and the rest of the pipeline per
   image (decoding under the kind's default policy, composition, writing) with the embedding
   already in memory, and images per minute = 60 / (encode + rest).
2. A local dask cluster of 1 and of 2 worker processes (1 thread each; dask sets
   ``OMP_NUM_THREADS=1`` in its workers) labelling the same images with points, wall time
   from submission to the last result, model loading in the workers included.
3. The ground-truth oracle on all sample images (points and boxes as given, and weak labels
   simulated from the ground truth): mIoU of the pseudo labels; checks the pipeline around
   SAM (coordinates, classes, composition), not SAM.

Weak labels: "What's the point" clicks and the sample's boxes as shipped; scribbles simulated
from the ground truth (object skeletons); CAMs made from the ground truth (each class mask
blurred) with a sidecar class list.

Run::

    .venv/bin/python benchmarks/bench_pseudo.py               # 4 images, dask 1 and 2 workers
    .venv/bin/python benchmarks/bench_pseudo.py --images 2 --workers 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

SAMPLE = Path("/work/shared/data/voc-sample")
VOC = SAMPLE / "VOC2012"


def make_cams(ids: list[str], out: Path) -> Path:
    """CAM-like maps from the ground truth: blurred class masks, one channel per class."""
    from scipy.ndimage import gaussian_filter

    from napari_samlabel.io.voc.labelpng import read_label_png

    out.mkdir(parents=True, exist_ok=True)
    for image_id in ids:
        gt = read_label_png(VOC / "SegmentationClass" / f"{image_id}.png")
        classes = [int(c) for c in np.unique(gt) if c not in (0, 255)]
        cams = np.stack([gaussian_filter((gt == c).astype(np.float32), 15) for c in classes])
        np.save(out / f"{image_id}.npy", cams)
        (out / f"{image_id}.json").write_text(json.dumps(classes))
    return out


def weak_sets(ids: list[str], tmp: Path) -> dict[str, dict]:
    from napari_samlabel.evaluate.simulate import simulate_weak_dir
    from napari_samlabel.io.weak import read_weak_labels

    simulate_weak_dir(VOC, "scribbles", tmp / "scribbles", ids=ids)
    sets = {
        "points": read_weak_labels(SAMPLE / "weak" / "points" / "whats_the_point.json",
                                   "points"),
        "scribbles": read_weak_labels(tmp / "scribbles", "scribbles"),
        "boxes": read_weak_labels(SAMPLE / "weak" / "boxes", "boxes"),
        "cams": read_weak_labels(make_cams(ids, tmp / "cams"), "cams"),
    }
    return {k: {i: v[i] for i in ids if i in v} for k, v in sets.items()}


def random_checkpoint(model: str, tmp: Path) -> Path:
    import torch

    from napari_samlabel.engine.registry import get_model_spec

    torch.manual_seed(0)
    path = tmp / f"random_{model}.pth"
    torch.save(get_model_spec(model).build().state_dict(), path)
    return path


def bench_kinds(ckpt: Path, model: str, ids: list[str], weak: dict, tmp: Path) -> None:
    from napari_samlabel.engine.loader import load_engine
    from napari_samlabel.io.images import load_image
    from napari_samlabel.pseudo.pipeline import pseudo_label

    t0 = time.perf_counter()
    engine = load_engine(model, checkpoint=ckpt, cache=None)  # memory-only embedding cache
    print(f"model load {time.perf_counter() - t0:.1f} s; {engine!r}")
    encode = []
    for image_id in ids:
        image = load_image(VOC / "JPEGImages" / f"{image_id}.jpg")
        t0 = time.perf_counter()
        engine.set_image(image)  # cold encode; later set_image calls hit the memory cache
        encode.append(time.perf_counter() - t0)
    enc = statistics.mean(encode)
    print(f"encode per image: mean {enc:.2f} s (min {min(encode):.2f}, max {max(encode):.2f})")
    print(f"{'kind':<10} {'imgs':>4} {'units':>5} {'decodes':>7} {'rest s/img':>10} "
          f"{'imgs/min':>8}")
    for kind, labels in weak.items():
        if not labels:
            print(f"{kind:<10} no weak labels for these images")
            continue
        out = tmp / f"out-{kind}"
        t0 = time.perf_counter()
        report = pseudo_label(VOC / "JPEGImages", labels, out, engine, kind=kind)
        rest = (time.perf_counter() - t0) / len(labels)
        units = sum(o.objects for o in report.outcomes)
        calls = sum(o.decoder_calls for o in report.outcomes)
        print(f"{kind:<10} {len(labels):>4} {units:>5} {calls:>7} {rest:>10.2f} "
              f"{60.0 / (enc + rest):>8.2f}"
              + (f"  failed: {report.failed}" if report.failed else ""))


def bench_dask(ckpt: Path, model: str, weak: dict, workers: list[int], tmp: Path) -> None:
    from distributed import Client, LocalCluster

    from napari_samlabel.pseudo.engines import EngineSpec
    from napari_samlabel.pseudo.pipeline import pseudo_label

    spec = EngineSpec.sam(model, ckpt, cache=None)
    for n in workers:
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            out = tmp / f"dask-{n}"
            t0 = time.perf_counter()
            report = pseudo_label(VOC / "JPEGImages", weak, out, spec, kind="points",
                                  scheduler=client, export=False)
            wall = time.perf_counter() - t0
            per = [o.seconds for o in report.outcomes]
            print(f"dask {n} worker(s): {len(report.done)} images in {wall:.1f} s wall = "
                  f"{60.0 * len(report.done) / wall:.2f} imgs/min (model load included); "
                  f"per-image task {statistics.mean(per):.1f} s mean"
                  + (f"; failed {report.failed}" if report.failed else ""))


def oracle_check(tmp: Path) -> None:
    from napari_samlabel.evaluate.metrics import evaluate_dirs
    from napari_samlabel.evaluate.simulate import simulate_weak_dir
    from napari_samlabel.io.weak import read_weak_labels
    from napari_samlabel.pseudo.pipeline import pseudo_label
    from napari_samlabel.testing.oracle import oracle_from_voc

    engine = oracle_from_voc(VOC, overlap=3)
    runs = [("points", SAMPLE / "weak" / "points" / "whats_the_point.json", "as shipped"),
            ("boxes", SAMPLE / "weak" / "boxes", "as shipped (animals only)")]
    for kind in ("points", "boxes", "scribbles"):
        simulate_weak_dir(VOC, kind, tmp / f"sim-{kind}")
        runs.append((kind, tmp / f"sim-{kind}", "simulated from GT"))
    for kind, src, what in runs:
        weak = read_weak_labels(src, kind)
        out = tmp / f"oracle-{kind}-{src.name}"
        report = pseudo_label(VOC / "JPEGImages", weak, out, engine, kind=kind, export=False)
        scores = evaluate_dirs(out, VOC, ids=report.finished)
        print(f"oracle {kind:<9} {what:<26} {len(report.finished):>2} images  "
              f"mIoU {scores.miou:.4f}  pixel acc {scores.pixel_accuracy:.4f}")


def main() -> None:
    from napari_samlabel.engine.device import tune_memory

    tune_memory()  # as the samlabel command does, before torch is imported
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--skip-kinds", action="store_true")
    args = parser.parse_args()
    if not VOC.is_dir():
        raise SystemExit(f"the VOC sample is needed: {VOC}")

    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} "
          f"CPUs, load average {os.getloadavg()[0]:.1f} (shared machine)")
    ids = sorted(p.stem for p in (VOC / "JPEGImages").glob("*.jpg"))[:args.images]
    with tempfile.TemporaryDirectory(prefix="bench_pseudo_") as d:
        tmp = Path(d)
        oracle_check(tmp)
        weak = weak_sets(ids, tmp)
        ckpt = random_checkpoint(args.model, tmp)
        if not args.skip_kinds:
            bench_kinds(ckpt, args.model, ids, weak, tmp)
        if args.workers:
            bench_dask(ckpt, args.model, weak["points"], args.workers, tmp)
        print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
