"""Benchmark the SAM engine on this machine (prints figures; not a test).

Real ViT-B architecture with random weights (no checkpoint download needed: the random
weights are saved to a temporary checkpoint and loaded through the real loader), one
500 x 375 RGB image (scikit-image's astronaut, resized). Reports:

- stock ``SamPredictor.set_image`` time (float32, segment-anything as shipped);
- our encode time per mode: precise float32, bfloat16 autocast, torch.compile + bfloat16
  (first call, which includes compilation, reported separately);
- cosine of each mode's embedding to the stock float32 embedding;
- decode latency p50/p95 over ~30 clicks (points added one by one, previous logits fed back);
- cache-hit time of ``set_image`` on an already encoded image: memory and disk;
- peak RSS of the process.

Random weights: the relative-position tables are drawn at random too (segment-anything
initialises them to zero), so the attention path is exercised as with trained weights.

Usage: ``python benchmarks/bench_engine.py [--repeats 2] [--no-compile] [--no-stock]``
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def _image() -> np.ndarray:
    from skimage import data
    from skimage.transform import resize

    img = resize(data.astronaut(), (375, 500), anti_aliasing=True, preserve_range=True)
    return img.astype(np.uint8)


def _decode_ms(engine, image: np.ndarray, clicks: int) -> np.ndarray:
    """Decode latencies (ms): clicks added one at a time, the previous logits fed back."""
    from napari_samlabel.engine.protocol import SamInputs

    engine.set_image(image)
    rng = np.random.default_rng(0)
    pts, labels, lat, prev = [], [], [], None
    for i in range(clicks):
        if i % 5 == 0:
            pts, labels, prev = [], [], None  # a new object every 5 clicks
        pts.append([rng.uniform(0, 500), rng.uniform(0, 375)])
        labels.append(1 if rng.random() < 0.7 else 0)
        inputs = SamInputs(point_coords=np.array(pts, np.float32),
                           point_labels=np.array(labels, np.int32), mask_input=prev,
                           multimask_output=len(pts) == 1)
        t = time.perf_counter()
        pred = engine.predict(inputs)
        lat.append(time.perf_counter() - t)
        prev = pred.low_res_logits[[int(np.argmax(pred.iou_predictions))]]
    return np.array(lat) * 1000


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


CPU_SECONDS: list[float] = []  # process CPU time of each _timed call, in order


def _timed(fn, repeats: int) -> list[float]:
    """Wall times of ``repeats`` calls; the CPU time of the fastest goes to CPU_SECONDS."""
    out, cpu = [], []
    for _ in range(repeats):
        c, t = time.process_time(), time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    CPU_SECONDS.append(cpu[int(np.argmin(out))])
    return out


def main() -> None:
    from napari_samlabel.engine.device import enable_huge_pages

    enable_huge_pages()  # as the samlabel command does, before torch is imported
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2, help="timed encodes per mode")
    ap.add_argument("--clicks", type=int, default=30, help="decodes for the latency figures")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile mode")
    ap.add_argument("--no-stock", action="store_true", help="skip stock SamPredictor")
    args = ap.parse_args()

    import torch
    from segment_anything import SamPredictor
    from segment_anything.modeling.image_encoder import Attention

    from napari_samlabel.engine.cache import EmbeddingCache
    from napari_samlabel.engine.checkpoint import load_sam
    from napari_samlabel.engine.device import cpu_supports_bf16
    from napari_samlabel.engine.registry import get_model_spec
    from napari_samlabel.engine.sam import SamEngine

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_supports_bf16()}")
    print(f"load average before: {os.getloadavg()}")
    image = _image()

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        sam = get_model_spec("vit_b").build()
        with torch.no_grad():
            for m in sam.image_encoder.modules():
                if isinstance(m, Attention):
                    m.rel_pos_h.normal_(0, 0.02)
                    m.rel_pos_w.normal_(0, 0.02)
        ckpt = Path(tmp) / "vit_b_random.pth"
        torch.save(sam.state_dict(), ckpt)
        del sam

        # Stock segment-anything (float32) and our modes. Timed round-robin, one encode
        # per mode per round, so that load from other processes hits all modes alike.
        stock = SamPredictor(load_sam("vit_b", ckpt))
        stock.set_image(image)
        ref = stock.features.numpy().copy()

        def engine(precise: bool, compile_: bool, cache_dir: str | None) -> SamEngine:
            return SamEngine(load_sam("vit_b", ckpt), model_id="vit_b:bench", device="cpu",
                             precise=precise, compile=compile_,
                             cache=EmbeddingCache(cache_dir, memory_items=0))

        fns: dict[str, object] = {}
        first: dict[str, str] = {}
        cos: dict[str, str] = {}
        if not args.no_stock:
            fns["stock SamPredictor fp32"] = lambda s=stock: s.set_image(image)
            first["stock SamPredictor fp32"], cos["stock SamPredictor fp32"] = "-", "1.000000"
        modes = [("ours precise fp32", True, False), ("ours bf16 (default)", False, False)]
        if not args.no_compile:
            modes.append(("ours compile + bf16", False, True))
        fast = None
        for name, precise, compile_ in modes:
            eng = engine(precise, compile_, None)
            t = time.perf_counter()
            emb, _ = eng.encode(image)
            first[name] = f"{time.perf_counter() - t:.2f}"
            cos[name] = f"{_cos(emb.features, ref):.6f}"
            fns[name] = lambda eng=eng: eng._run_encoder(image)
            if not precise and not compile_:
                fast = eng
        best: dict[str, float] = {n: float("inf") for n in fns}
        cpu: dict[str, float] = {}
        for _ in range(args.repeats):
            for name, fn in fns.items():
                wall = _timed(fn, 1)[0]
                if wall < best[name]:
                    best[name], cpu[name] = wall, CPU_SECONDS[-1]

        print(f"\nencode, 500 x 375 image, ViT-B (best of {args.repeats} round-robin rounds, s)")
        print("(cpu s: process CPU time of that encode; on 2 idle cores wall ~ cpu s / 2)")
        print(f"{'mode':28s} {'encode':>7s} {'x stock':>8s} {'1st call':>9s} {'cos fp32':>9s} "
              f"{'cpu s':>6s}")
        base = best.get("stock SamPredictor fp32")
        for name in fns:
            ratio = f"{base / best[name]:.2f}" if base else "-"
            print(f"{name:28s} {best[name]:7.2f} {ratio:>8s} {first[name]:>9s} "
                  f"{cos[name]:>9s} {cpu[name]:6.1f}")
        del stock

        assert fast is not None
        lat_ms = _decode_ms(fast, image, args.clicks)
        print(f"\ndecode ({args.clicks} clicks): p50 {np.percentile(lat_ms, 50):.1f} ms, "
              f"p95 {np.percentile(lat_ms, 95):.1f} ms")

        # Cache hits.
        encode_s = best["ours bf16 (default)"]
        mem = engine(False, False, None)
        mem.cache = EmbeddingCache(None, memory_items=4)
        mem.set_image(image)
        mem_hit = min(_timed(lambda: mem.set_image(image), 20))
        disk_dir = Path(tmp) / "emb"
        writer = engine(False, False, str(disk_dir))
        writer.set_image(image)
        reader = engine(False, False, str(disk_dir))  # memory_items=0: always from disk
        disk_hit = min(_timed(lambda: reader.set_image(image), 20))
        assert reader.encode_count == 0
        size = sum(p.stat().st_size for p in disk_dir.rglob("*.npz"))
        print(f"cache hit (set_image of an encoded image): memory {mem_hit * 1000:.1f} ms, "
              f"disk {disk_hit * 1000:.1f} ms = {100 * disk_hit / encode_s:.2f} % of a bf16 "
              f"encode; {size / 1e6:.1f} MB per image on disk")

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
