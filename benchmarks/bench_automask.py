"""Time SAM's automatic mask generator per image with the real ViT-B architecture.

The whole image goes through the engine (our encoder, bfloat16 on CPUs that support it) as in
``samlabel refine``; the figures are the encode once plus the generator's decoding and
filtering. Random weights (no pretrained checkpoint exists here): the network does exactly
the work of the real model, so the time is representative; only the number of masks that
survive the quality filters differs (few do with random weights, so RLE encoding and NMS,
which are cheap, are under-represented).

Run::

    .venv/bin/python benchmarks/bench_automask.py                  # 500 x 375, 32 and 16
    .venv/bin/python benchmarks/bench_automask.py --points 32 8 --repeat 2

The image is ``2007_009724.jpg`` of the VOC sample (500 x 375) when present, otherwise
scikit-image's astronaut resized to 500 x 375.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

SAMPLE = Path("/work/shared/data/voc-sample/VOC2012/JPEGImages/2007_009724.jpg")


def load_test_image() -> tuple[np.ndarray, str]:
    if SAMPLE.is_file():
        from napari_samlabel.io.images import load_image

        return load_image(SAMPLE), SAMPLE.name
    from skimage import data
    from skimage.transform import resize

    img = resize(data.astronaut(), (375, 500), anti_aliasing=True, preserve_range=True)
    return img.astype(np.uint8), "skimage astronaut resized"


def main() -> None:
    from napari_samlabel.engine.device import tune_memory

    tune_memory()  # as the samlabel command does, before torch is imported
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b")
    parser.add_argument("--points", type=int, nargs="+", default=[32, 16],
                        help="points_per_side values to time")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--precise", action="store_true",
                        help="encode in float32 instead of bfloat16")
    parser.add_argument("--points-per-batch", type=int, default=None,
                        help="default: 4 on CPU, 64 on GPU (as samlabel refine)")
    args = parser.parse_args()

    import torch

    from napari_samlabel.engine.registry import get_model_spec
    from napari_samlabel.pseudo.refine import AutoMaskParams, generate_automasks

    image, name = load_test_image()
    print(f"image: {name}, {image.shape[1]} x {image.shape[0]} (W x H)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    t0 = time.perf_counter()
    sam = get_model_spec(args.model).build()
    print(f"built {args.model} (random weights) in {time.perf_counter() - t0:.1f} s")

    from napari_samlabel.engine.families.sam import SamEngine

    # The product's path: `samlabel refine` hands the generator an engine, so the whole
    # image is encoded by the engine's encoder (bfloat16 where supported, unless --precise).
    engine = SamEngine(sam, f"{args.model}:random", device="cpu", precise=args.precise)
    with torch.no_grad():
        engine.set_image(np.ascontiguousarray(image[::-1]))  # warm-up on another image
        t0 = time.perf_counter()
        engine.set_image(image)
    encode = time.perf_counter() - t0
    print(f"image encoder ({engine.precision}): {encode:.2f} s")

    rows = []
    for pps in args.points:
        params = AutoMaskParams(points_per_side=pps, points_per_batch=args.points_per_batch)
        times, counts = [], []
        for _ in range(args.repeat):
            # the image is set in the engine: this is the decoding and filtering alone
            t0 = time.perf_counter()
            masks = generate_automasks(engine, image, params)
            times.append(time.perf_counter() - t0)
            counts.append(len(masks))
        decode = statistics.median(times)
        rows.append((pps, pps * pps, encode + decode, decode, counts[-1]))
        print(f"points_per_side={pps:3d}: {encode + decode:7.2f} s per image = encode "
              f"{encode:.2f} + decode and filter {decode:.2f} "
              f"(runs: {', '.join(f'{t:.2f}' for t in times)})")

    print()
    print("| points_per_side | prompts | s / image | of which decoding + filtering | masks kept |")
    print("| --- | --- | --- | --- | --- |")
    for pps, n, total, dec, kept in rows:
        print(f"| {pps} | {n} | {total:.1f} | {dec:.1f} | {kept} |")


if __name__ == "__main__":
    main()
