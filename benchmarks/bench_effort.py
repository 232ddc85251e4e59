"""The simulated annotator's own overhead per click, next to the decode it drives.

``samlabel simulate-annotation`` should cost what its decodes cost: the clicker (error
regions, distance transforms, IoU) must stay small against the decoder. This runs the
simulator (:func:`napari_samlabel.annotate.effort.simulate_image`, points, up to
``--max-clicks`` per object) on labelled images and splits the time of each click into:

- **decoder**: ``engine.predict`` itself (a timing proxy around the engine);
- **session**: the rest of ``AnnotationSession.set_prompts`` (policy, ``refine_object``,
  document, events) — the product's own path, not the simulator's;
- **clicker**: where the next click goes and the IoU after it (the simulator's overhead);
- **other**: the remainder of the wall time (accepting objects, result records).

Same run, same images, so the ratios hold whatever the host's load.

The engine is the tiny random-weight SAM of the tests by default (SAM's real prompt encoder
and mask decoder, a tiny image encoder), or ``--model vit_b`` with random weights (the real
ViT-B; encoding takes seconds per image). Random masks are poor, so most objects use every
click: the worst case for the simulator's share. Images: the VOC sample (12 images, objects
from the connected components of each class) when present, else synthetic scenes.

Run::

    python benchmarks/bench_effort.py [--max-clicks 5] [--images 4] [--model vit_b] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE = Path("/work/shared/data/voc-sample/VOC2012")


class TimedEngine:
    """Forwards to an engine and adds up the time spent in ``predict``."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.model_id = engine.model_id
        self.logits_frame = engine.logits_frame
        self.predict_s = 0.0
        self.predicts = 0

    def set_image(self, image: np.ndarray) -> None:
        self.engine.set_image(image)

    def predict(self, inputs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.engine.predict(inputs)
        finally:
            self.predict_s += time.perf_counter() - t0
            self.predicts += 1


def _engine(model: str, tmp: Path) -> Any:
    from napari_samlabel.engine.loader import load_engine

    if model == "tiny":
        from napari_samlabel.testing.models import save_tiny_checkpoint

        ckpt = save_tiny_checkpoint(tmp / "tiny.pth")
        return load_engine("vit_tiny_test", ckpt, device="cpu", cache=None)
    import torch

    from napari_samlabel.engine.cache import EmbeddingCache
    from napari_samlabel.engine.families import get_family
    from napari_samlabel.engine.registry import get_model_spec

    spec = get_model_spec(model)  # as bench_models.py builds it: random weights
    torch.manual_seed(0)
    net = spec.build()
    return get_family(spec.family).engine(net, model_id=f"{model}:bench", device="cpu",
                                          cache=EmbeddingCache(None))


def _items(n: int) -> list[tuple[np.ndarray, Any]]:
    from napari_samlabel.annotate.effort import load_ground_truth, open_dataset
    from napari_samlabel.io.images import load_image

    if (SAMPLE / "SegmentationClass").is_dir():
        ds = open_dataset(SAMPLE)
        return [(load_image(p), load_ground_truth(ds, i)) for i, p in ds.images[:n]]
    from napari_samlabel.annotate.effort import GroundTruth, GroundTruthObject

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        img = rng.integers(0, 60, (375, 500, 3), dtype=np.uint8)
        objs = []
        for k in range(1, 4):
            m = np.zeros((375, 500), bool)
            r, c = rng.integers(20, 250), rng.integers(20, 380)
            m[r:r + 100, c:c + 100] = True
            img[m] = 60 * k
            objs.append(GroundTruthObject(k, k, m))
        out.append((img, GroundTruth("synthetic", (375, 500), tuple(objs),
                                     np.zeros((375, 500), bool))))
    return out


def main() -> None:
    from napari_samlabel.annotate.effort import Settings, simulate_image
    from napari_samlabel.core.classes import ClassTable

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny (default) or a model type")
    parser.add_argument("--max-clicks", type=int, default=5)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (default: torch's; 1 helps on a crowded host)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        engine = TimedEngine(_engine(args.model, Path(tmp)))
    items = _items(args.images)
    settings = Settings(engine.model_id, "points", args.max_clicks)
    classes = ClassTable.voc()
    # warm-up: imports, first decode
    img, gt = items[0]
    simulate_image(engine, img, gt, Settings(engine.model_id, "points", 1), classes)
    engine.predict_s, engine.predicts = 0.0, 0
    clicks = 0
    session_ms = clicker_ms = wall_ms = encode_ms = 0.0
    for img, gt in items:
        t0 = time.perf_counter()
        engine.set_image(img)  # encode outside the clock of the clicks (a cache hit below)
        encode_ms += (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        res = simulate_image(engine, img, gt, settings, classes)
        wall_ms += (time.perf_counter() - t0) * 1e3
        clicks += sum(o.interactions for o in res.objects)
        session_ms += res.session_ms
        clicker_ms += res.clicker_ms
    decoder_ms = engine.predict_s * 1e3
    objects = sum(len(gt.objects) for _, gt in items)
    h, w = items[0][0].shape[:2]
    print(f"load average {os.getloadavg()[0]:.1f}; model {args.model}, {len(items)} images "
          f"({w} x {h}), {objects} objects, {clicks} clicks "
          f"({engine.predicts} decoder calls); encode {encode_ms / len(items):.0f} ms/image")
    rows = (("decoder (engine.predict)", decoder_ms),
            ("session (policy, document)", session_ms - decoder_ms),
            ("clicker (simulator)", clicker_ms),
            ("other (accept, records)", wall_ms - session_ms - clicker_ms))
    for name, ms in rows:
        print(f"  {name:28s} {ms / clicks:7.1f} ms/click")
    print(f"  simulator overhead / decoder: {clicker_ms / decoder_ms:.2f}; "
          f"everything but the decoder / decoder: {(wall_ms - decoder_ms) / decoder_ms:.2f}")


if __name__ == "__main__":
    main()
