"""Benchmark of the WPS-SAM prompter on the CPU: training epochs and proposals.

Training: seconds per epoch per 100 images, on cached ViT-B-shaped embeddings (random
256 x 64 x 64 float16 arrays, 1-3 random teacher boxes each: speed does not depend on the
values), for the default prompter (2 + 2 layers of width 128) and, with ``--paper``, the
paper's (6 + 6 layers of width 256).

Proposals: seconds per image for the prompter's forward pass and for SAM's mask decoder on
the kept queries (5 and all 25). The tiny test SAM's prompt encoder and mask decoder are SAM
ViT-B's own (256 channels, the same layers), so the decoder time is ViT-B's; the image
encoder is not timed (it runs once per image in any case and is cached).

    python benchmarks/bench_prompter.py [--images 100] [--paper] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_samlabel.learn.prompter import Prompter, PrompterConfig, decode_tokens
from napari_samlabel.learn.train_prompter import Sample, TrainConfig, train


def fake_samples(n: int, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(1, 4))
        out.append(Sample(f"im{i}", "train", torch.as_tensor(rng.integers(0, 3, k)),
                          torch.randn(k, 2, 256), f"key{i}",
                          rng.standard_normal((1, 256, 64, 64)).astype(np.float16)))
    return out


class _Engine:
    model_id = "vit_b:benchmark"
    device = "cpu"


def epoch_seconds(samples: list[Sample], pcfg: PrompterConfig, epochs: int = 1) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        rep = train(_Engine(), samples, ["background", "a", "b", "c"], Path(tmp) / "p.pt",
                    TrainConfig(epochs=epochs, val_fraction=0.0), pcfg, device="cpu")
    return float(np.mean([h["seconds"] for h in rep.history]))


def proposal_seconds(pcfg: PrompterConfig, repeats: int = 3) -> dict[str, float]:
    from napari_samlabel.engine.loader import load_engine
    from napari_samlabel.testing.models import save_tiny_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        engine = load_engine("vit_tiny_test", save_tiny_checkpoint(Path(tmp) / "t.pt"),
                             device="cpu", cache=None)
    model = Prompter(pcfg).eval()
    feats = torch.randn(1, 256, 64, 64)
    out: dict[str, float] = {}
    for name, fn in (
        ("prompter forward", lambda: model(feats)),
        ("decoder, 5 queries", lambda: decode_tokens(engine, feats, torch.randn(5, 2, 256))),
        ("decoder, 25 queries", lambda: decode_tokens(engine, feats, torch.randn(25, 2, 256))),
    ):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            with torch.no_grad():
                fn()
            times.append(time.perf_counter() - t0)
        out[name] = min(times)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--paper", action="store_true", help="also the paper's 6 + 6 layers")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    samples = fake_samples(args.images)
    configs = {"default (2+2 layers, width 128)": PrompterConfig(3)}
    if args.paper:
        configs["paper (6+6 layers, width 256)"] = PrompterConfig.paper(3)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    per100 = {}
    for name, cfg in configs.items():
        s = epoch_seconds(samples, cfg)
        per100[name] = s * 100 / args.images
        print(f"training, {name}: {per100[name]:.1f} s per epoch per 100 images")
    if len(per100) == 2:
        a, b = per100.values()
        print(f"  paper / default: {b / a:.1f} x")
    times = proposal_seconds(PrompterConfig(3))
    for name, s in times.items():
        print(f"proposal, {name}: {s * 1000:.0f} ms")
    total5 = times["prompter forward"] + times["decoder, 5 queries"]
    print(f"proposal per image (forward + 5 kept queries): {total5:.2f} s; the decoder is "
          f"{times['decoder, 5 queries'] / times['prompter forward']:.1f} x the forward")


if __name__ == "__main__":
    main()
