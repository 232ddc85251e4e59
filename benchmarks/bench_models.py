"""Benchmark every model family on this machine (prints figures; not a test).

For each model type: its real architecture with random weights (speed does not depend on
weight values), built from the family's own package and wrapped by our engine exactly as
``load_engine`` wraps a checkpoint. One 500 x 375 RGB image (scikit-image's astronaut).
Reports per model:

- encode time in float32 (``--precise``) and with the default encoder (bfloat16 where the
  CPU has it natively, int8 linears where it has VNNI; run under
  ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI`` to measure a CPU without bfloat16), best of
  ``--repeats`` round-robin rounds, and the cosine of the default embedding (every cached
  feature map) to the float32 one;
- decode latency p50/p95 over ``--clicks`` clicks (points added one by one, previous
  logits fed back as ``mask_input``);
- the embedding's size in the disk cache (float16).

The encode figures of the default column are the ones shown in the model picker
(``ModelSpec.cpu_encode_s``). Usage::

    python benchmarks/bench_models.py [--models vit_t sam2.1_hiera_tiny ...] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_engine import _cos, _decode_ms, _image  # as the ViT-B benchmark measures

DEFAULT_MODELS = ["vit_b", "vit_t", "sam_hq_vit_b", "sam_hq_vit_tiny", "sam2.1_hiera_tiny",
                  "sam2.1_hiera_small", "sam2.1_hiera_base_plus"]



def _engine(name: str, precise: bool):
    import torch

    from napari_samlabel.engine.cache import EmbeddingCache
    from napari_samlabel.engine.families import get_family
    from napari_samlabel.engine.registry import get_model_spec

    spec = get_model_spec(name)
    torch.manual_seed(0)  # same random weights for both precisions
    model = spec.build()
    with torch.no_grad():  # SAM initialises its relative-position tables to zero
        for p in model.parameters():
            if not p.any():
                p.normal_(0, 0.02)
    return get_family(spec.family).engine(model, model_id=f"{name}:bench", device="cpu",
                                          precise=precise,
                                          cache=EmbeddingCache(None, memory_items=0))


def main() -> None:
    from napari_samlabel.engine.device import tune_memory

    tune_memory()  # as the samlabel command does, before torch is imported
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--repeats", type=int, default=2, help="timed encodes per mode")
    ap.add_argument("--clicks", type=int, default=20, help="decodes for the latency figures")
    args = ap.parse_args()

    import torch

    from napari_samlabel.engine.cache import EmbeddingCache
    from napari_samlabel.engine.device import cpu_supports_bf16
    from napari_samlabel.engine.families import family_available
    from napari_samlabel.engine.registry import get_model_spec

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, native bf16: "
          f"{cpu_supports_bf16()}, ONEDNN_MAX_CPU_ISA="
          f"{os.environ.get('ONEDNN_MAX_CPU_ISA', '(unset)')}, load average before: "
          f"{os.getloadavg()}")
    image = _image()
    rows = []
    for name in args.models:
        spec = get_model_spec(name)
        if not family_available(spec.family):
            print(f"{name}: skipped, {spec.family} package not installed")
            continue
        precise, fast = _engine(name, True), _engine(name, False)
        ref, _ = precise.encode(image)  # also warms both up
        emb, _ = fast.encode(image)
        cos = min([_cos(emb.features, ref.features),
                   *(_cos(emb.extras[k], ref.extras[k]) for k in ref.extras)])
        best = {"fp32": float("inf"), "default": float("inf")}
        for _ in range(args.repeats):  # round-robin: other load hits both alike
            for mode, eng in (("fp32", precise), ("default", fast)):
                t = time.perf_counter()
                eng._run_encoder(image)
                best[mode] = min(best[mode], time.perf_counter() - t)
        fast.set_image(image)

        def predict(inputs, eng=fast):
            pred = eng.predict(inputs)
            return pred.iou_predictions, pred.low_res_logits

        lat = _decode_ms(predict, image.shape, args.clicks)
        with tempfile.TemporaryDirectory() as tmp:
            EmbeddingCache(tmp).put("k", emb)
            size = sum(p.stat().st_size for p in Path(tmp).rglob("*.npz"))
        rows.append((name, spec.family, best["fp32"], best["default"], fast.precision, cos,
                     np.percentile(lat, 50), np.percentile(lat, 95), size / 1e6))
        del precise, fast
        print(f"{name}: done ({best['default']:.2f} s default encode)", flush=True)

    print(f"\n500 x 375 image, random weights, best of {args.repeats} rounds")
    print(f"{'model':24s} {'family':10s} {'fp32 s':>7s} {'default s':>9s} {'prec':>8s} "
          f"{'cos':>8s} {'dec p50':>8s} {'dec p95':>8s} {'cache MB':>8s}")
    for r in rows:
        print(f"{r[0]:24s} {r[1]:10s} {r[2]:7.2f} {r[3]:9.2f} {r[4]:>8s} {r[5]:8.5f} "
              f"{r[6]:7.0f}ms {r[7]:7.0f}ms {r[8]:8.1f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB; load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
