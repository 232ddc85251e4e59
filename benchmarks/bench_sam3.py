"""Benchmark SAM 3 on this machine's CPU (prints figures; not a test).

SAM 3's real architecture (``Sam3Model`` + ``Sam3TrackerModel`` at their ``facebook/sam3``
sizes: a 1024-wide, 32-layer ViT at 1008 x 1008, the CLIP-L-sized text encoder, the DETR
detector and SAM 2's decoder), random weights (speed does not depend on weight values),
wrapped by :class:`~napari_samlabel.engine.families.sam3.Sam3Engine` as ``load_engine``
wraps the real checkpoint. One 500 x 375 RGB image. Reports:

- the ViT encode (the one cached per image) in float32 or at the engine's default
  precision (``--precision default``: bfloat16 autocast where the CPU has it natively,
  also for the necks and the detector), best of ``--repeats``;
- the two FPN necks run when an image becomes current (``set_embedding``);
- the text path: ``find_all("potted plant")`` with the phrase new (text encoder + detector)
  and remembered (detector only);
- one point refinement (tracker) and one with the previous logits as ``mask_input``;
- per ViT layer (one windowed, one global), float32 with SDPA attention (transformers'
  default), float32 eager attention and bfloat16 autocast, extrapolated to the 32 layers
  (28 windowed + 4 global), as same-run ratios: the precision and attention choice.

Usage::

    python benchmarks/bench_sam3.py [--repeats 1] [--layer-repeats 2] [--skip-full]
        [--skip-layers] [--precision float32|default]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
from bench_engine import _image  # the benchmarks' common 500 x 375 test image


def _best(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _set_attention(module: Any, impl: str) -> None:
    if hasattr(module, "set_attn_implementation"):
        module.set_attn_implementation(impl)
    else:
        module.config._attn_implementation = impl


def _layer_times(engine: Any, repeats: int) -> dict[str, dict[str, float]]:
    """Seconds of one windowed and one global ViT layer per (precision, attention)."""
    import torch

    backbone = engine.model.detector.vision_encoder.backbone
    cfg = backbone.config
    side = cfg.image_size // cfg.patch_size
    glob = int(cfg.global_attn_indexes[0])
    win = 0 if glob != 0 else 1
    x = torch.randn(1, side, side, cfg.hidden_size)
    out: dict[str, dict[str, float]] = {}
    for name, impl, dtype in (("fp32 sdpa", "sdpa", None), ("fp32 eager", "eager", None),
                              ("bf16 sdpa", "sdpa", torch.bfloat16)):
        _set_attention(backbone, impl)
        row = {}
        for kind, idx in (("window", win), ("global", glob)):
            layer = backbone.layers[idx]

            def run(layer: Any = layer, dtype: Any = dtype) -> None:
                with torch.inference_mode():
                    if dtype is None:
                        layer(x)
                    else:
                        with torch.autocast("cpu", dtype=dtype):
                            layer(x)

            run()  # warm-up
            row[kind] = _best(run, repeats)
        n_global = len(cfg.global_attn_indexes)
        row["encoder_est"] = (cfg.num_hidden_layers - n_global) * row["window"] + (
            n_global * row["global"])
        out[name] = row
        print(f"  {name:11s} window layer {row['window']:.2f} s, global layer "
              f"{row['global']:.2f} s -> 32 layers ~{row['encoder_est']:.0f} s", flush=True)
    _set_attention(backbone, "sdpa")
    return out


def main() -> None:
    from napari_samlabel.engine.device import cpu_supports_bf16, tune_memory

    tune_memory()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--layer-repeats", type=int, default=2)
    ap.add_argument("--skip-full", action="store_true", help="per-layer figures only")
    ap.add_argument("--skip-layers", action="store_true", help="no per-layer comparison")
    ap.add_argument("--precision", choices=("float32", "default"), default="float32",
                    help="engine precision of the full path: float32 (--precise) or the "
                         "default choice (bfloat16 where the CPU has it natively)")
    args = ap.parse_args()

    import torch

    from napari_samlabel.core.prompts import Box
    from napari_samlabel.engine.cache import EmbeddingCache
    from napari_samlabel.engine.families.sam3 import Sam3Engine
    from napari_samlabel.engine.protocol import SamInputs
    from napari_samlabel.engine.registry import get_model_spec

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16: "
          f"{cpu_supports_bf16()}", flush=True)
    t = time.perf_counter()
    torch.manual_seed(0)
    model = get_model_spec("sam3").build()
    build_s = time.perf_counter() - t
    params = sum(p.numel() for p in model.parameters())
    print(f"built SAM 3 (random weights, {params / 1e6:.0f}M parameters) in {build_s:.0f} s",
          flush=True)
    engine = Sam3Engine(model, "sam3:bench", device="cpu",
                        precise=args.precision == "float32",
                        cache=EmbeddingCache(None, memory_items=0))
    print(f"engine precision: {engine.precision}", flush=True)
    image = _image()
    res: dict[str, Any] = {"threads": torch.get_num_threads(), "precision": engine.precision,
                           "native_bf16": cpu_supports_bf16(), "params_M": params / 1e6}
    if not args.skip_layers:
        print("per ViT layer (1008 x 1008 input, 72 x 72 tokens):", flush=True)
        res["layers"] = _layer_times(engine, args.layer_repeats)
    if not args.skip_full:
        emb = None

        def encode() -> None:
            nonlocal emb
            emb = engine._run_encoder(image)

        res["encode_s"] = _best(encode, args.repeats)
        print(f"ViT encode, {engine.precision}: {res['encode_s']:.1f} s", flush=True)
        assert emb is not None
        res["necks_s"] = _best(lambda: engine.set_embedding(emb), 2)
        print(f"necks (set_embedding): {res['necks_s']:.2f} s", flush=True)
        engine._text.clear()
        res["text_new_s"] = _best(lambda: engine.find_all("potted plant", threshold=0.5), 1)
        res["text_cached_s"] = _best(lambda: engine.find_all("potted plant", threshold=0.5),
                                     2)
        res["exemplar_s"] = _best(lambda: engine.find_all(
            exemplars=[Box((100, 100), (250, 300))], threshold=0.5), 1)
        print(f"find_all text: {res['text_new_s']:.2f} s new phrase, "
              f"{res['text_cached_s']:.2f} s remembered; exemplar box "
              f"{res['exemplar_s']:.2f} s", flush=True)
        click = SamInputs(point_coords=np.array([[250, 180]], np.float32),
                          point_labels=np.array([1]))
        first = engine.predict(click)
        prev = first.low_res_logits[[int(np.argmax(first.iou_predictions))]]
        res["point_s"] = _best(lambda: engine.predict(click), 3)
        res["point_mask_input_s"] = _best(lambda: engine.predict(SamInputs(
            point_coords=np.array([[250, 180], [300, 200]], np.float32),
            point_labels=np.array([1, 0]), mask_input=prev, multimask_output=False)), 3)
        print(f"point refinement: {res['point_s'] * 1e3:.0f} ms, with mask_input "
              f"{res['point_mask_input_s'] * 1e3:.0f} ms", flush=True)
    if "layers" in res:
        lay = res["layers"]
        base = lay["fp32 sdpa"]["encoder_est"]
        print("same-run ratios (per-layer estimate, lower is faster): "
              + ", ".join(f"{k} {v['encoder_est'] / base:.2f}x" for k, v in lay.items()))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
