"""Benchmark the SAM engine on this machine (prints figures; not a test).

Real ViT-B architecture with random weights (no checkpoint download needed: the random
weights are saved to a temporary checkpoint and loaded through the real loader), one
500 x 375 RGB image (scikit-image's astronaut, resized). Reports:

- stock ``SamPredictor.set_image`` time (float32, segment-anything as shipped);
- our encode time per mode: precise float32, bfloat16 (the default), and optionally
  torch.compile + bfloat16 (first call, which includes compilation, reported separately);
- cosine of each mode's embedding to the stock float32 embedding;
- decode latency p50/p95 over ~30 clicks (points added one by one, previous logits fed back);
- cache-hit time of ``set_image`` on an already encoded image: memory and disk;
- peak RSS of each mode's process.

Each mode runs in its own worker process, as one engine runs in the plugin or the CLI: in
one process the modes slowed each other down (float32 by 40 % beside a bfloat16 engine).
The stock predictor's process gets PyTorch's default allocator settings; ours get the
transparent huge pages that ``samlabel`` asks for. The parent times one encode per mode
per round, round-robin, so that load from other processes hits all modes alike, and reports
each mode's fastest round with its CPU and system time, the CPU time of everything else on
the machine meanwhile (kernel threads returning freed memory to the host included) and the
steal time (CPU time the hypervisor gave to other guests, from ``/proc/stat``): when these
are not small, the figures are slow. Each timed encode waits ``--settle`` seconds first, so
that the kernel's work on the previous mode's freed memory is not charged to the next.

Random weights: the relative-position tables are drawn at random too (segment-anything
initialises them to zero), so the attention path is exercised as with trained weights.

Usage: ``python benchmarks/bench_engine.py [--repeats 3] [--compile] [--no-stock]``
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


def _cpu_totals() -> tuple[float, float]:
    """System-wide ``(busy, steal)`` CPU time so far (s), NaN where /proc/stat has none.

    busy: user + nice + system + irq + softirq of every process and kernel thread.
    """
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            f = [int(v) for v in fh.readline().split()[1:9]]
        hz = os.sysconf("SC_CLK_TCK")
        return (f[0] + f[1] + f[2] + f[5] + f[6]) / hz, f[7] / hz
    except (OSError, IndexError, ValueError):
        return float("nan"), float("nan")


MODES = {  # name: (precise, compile); "stock" is segment-anything's own predictor
    "stock SamPredictor fp32": None,
    "ours precise fp32": (True, False),
    "ours bf16 (default)": (False, False),
    "ours compile + bf16": (False, True),
}


def _npy(mode: str) -> str:
    """File name of ``mode``'s embedding in the shared temporary directory."""
    return "".join(c if c.isalnum() else "_" for c in mode) + ".npy"


def _worker(mode: str, ckpt: Path, out: Path) -> None:
    """One mode in this process: answer the parent's commands on stdin with JSON lines."""
    import json
    import sys

    import torch
    from segment_anything import SamPredictor

    from napari_samlabel.engine.cache import EmbeddingCache
    from napari_samlabel.engine.checkpoint import load_sam
    from napari_samlabel.engine.families.sam import SamEngine

    image = _image()

    def engine(cache_dir: str | None, memory_items: int = 0) -> SamEngine:
        precise, compile_ = MODES[mode]
        return SamEngine(load_sam("vit_b", ckpt), model_id="vit_b:bench", device="cpu",
                         precise=precise, compile=compile_,
                         cache=EmbeddingCache(cache_dir, memory_items=memory_items))

    if MODES[mode] is None:
        stock = SamPredictor(load_sam("vit_b", ckpt))

        def encode() -> None:
            stock.set_image(image)

        def features() -> np.ndarray:
            return stock.features.numpy()
    else:
        eng = engine(None)

        def encode() -> None:
            eng._run_encoder(image)

        def features() -> np.ndarray:
            return eng.encode(image)[0].features

    def reply(**kw: object) -> None:
        print(json.dumps(kw), flush=True)

    t = time.perf_counter()
    encode()
    first = time.perf_counter() - t
    np.save(out / _npy(mode), features())
    reply(first=first, threads=torch.get_num_threads())
    for line in sys.stdin:
        cmd = line.split()
        if cmd[0] == "encode":
            time.sleep(float(cmd[1]))  # let the kernel finish with earlier modes' memory
            r0, s0, t = resource.getrusage(resource.RUSAGE_SELF), _cpu_totals(), time.perf_counter()
            encode()
            wall = time.perf_counter() - t
            r1, s1 = resource.getrusage(resource.RUSAGE_SELF), _cpu_totals()
            cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
            reply(wall=wall, cpu=cpu, sys=r1.ru_stime - r0.ru_stime,
                  other=max(0.0, s1[0] - s0[0] - cpu), steal=s1[1] - s0[1])
        elif cmd[0] == "decode":
            lat = _decode_ms(eng, image, int(cmd[1]))
            reply(p50=float(np.percentile(lat, 50)), p95=float(np.percentile(lat, 95)))
        elif cmd[0] == "cache":
            mem = engine(None, memory_items=4)
            mem.set_image(image)
            mem_hit = min(_timed(lambda m=mem: m.set_image(image), 20))
            disk_dir = out / "emb"
            engine(str(disk_dir)).set_image(image)
            reader = engine(str(disk_dir))  # memory_items=0: always from disk
            disk_hit = min(_timed(lambda r=reader: r.set_image(image), 20))
            assert reader.encode_count == 0
            size = sum(p.stat().st_size for p in disk_dir.rglob("*.npz"))
            reply(mem=mem_hit, disk=disk_hit, size=size)
        elif cmd[0] == "quit":
            reply(rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
            return


def _timed(fn, repeats: int) -> list[float]:
    """Wall times of ``repeats`` calls of ``fn``."""
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed encodes per mode")
    ap.add_argument("--clicks", type=int, default=30, help="decodes for the latency figures")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile + bf16")
    ap.add_argument("--no-stock", action="store_true", help="skip stock SamPredictor")
    ap.add_argument("--settle", type=float, default=5.0,
                    help="idle seconds before each timed encode (default 5)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        if args.worker != "stock SamPredictor fp32":
            from napari_samlabel.engine.device import tune_memory

            tune_memory()  # as the samlabel command does, before torch allocates
        _worker(args.worker, args.checkpoint, args.out)
        return

    import subprocess
    import sys

    import torch
    from segment_anything.modeling.image_encoder import Attention

    from napari_samlabel.engine.device import THP_ENV, cpu_supports_bf16
    from napari_samlabel.engine.registry import get_model_spec

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_supports_bf16()}")
    print(f"load average before: {os.getloadavg()}")
    modes = [m for m in MODES if not (m.startswith("stock") and args.no_stock)
             and not ("compile" in m and not args.compile)]

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

        env = {k: v for k, v in os.environ.items() if k != THP_ENV}
        workers: dict[str, subprocess.Popen[str]] = {}
        first: dict[str, float] = {}
        for mode in modes:  # started one after another: each first encode runs alone
            workers[mode] = w = subprocess.Popen(
                [sys.executable, __file__, "--worker", mode, "--checkpoint", str(ckpt),
                 "--out", tmp], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                env=env)

            first[mode] = _ask(w, None)["first"]

        def ask(mode: str, cmd: str) -> dict:
            return _ask(workers[mode], cmd)

        runs: dict[str, list[dict]] = {m: [] for m in modes}
        for _ in range(args.repeats):
            for mode in modes:
                runs[mode].append(ask(mode, f"encode {args.settle}"))
        ref_mode = modes[0] if modes[0].startswith("stock") else "ours precise fp32"
        ref = np.load(Path(tmp) / _npy(ref_mode))

        print(f"\nencode, 500 x 375 image, ViT-B (fastest of {args.repeats} round-robin "
              "rounds, one process per mode, s)")
        print("(cpu s: the mode's CPU time in that encode, sys s the kernel's part of it; "
              "other s: CPU time of everything else on the machine meanwhile, steal s: time "
              "the hypervisor gave to other guests; on 2 idle cores wall ~ cpu s / 2)")
        print(f"{'mode':26s} {'encode':>7s} {'median':>7s} {'x stock':>8s} {'1st call':>9s} "
              f"{'cos ' + ref_mode.split()[0]:>11s} {'cpu s':>6s} {'sys s':>6s} {'other s':>8s} "
              f"{'steal s':>8s}")
        best = {m: min(r, key=lambda x: x["wall"]) for m, r in runs.items()}
        base = best[modes[0]]["wall"] if modes[0].startswith("stock") else None
        for mode in modes:
            b = best[mode]
            med = float(np.median([x["wall"] for x in runs[mode]]))
            emb = np.load(Path(tmp) / _npy(mode))
            ratio = f"{base / b['wall']:.2f}" if base else "-"
            print(f"{mode:26s} {b['wall']:7.2f} {med:7.2f} {ratio:>8s} {first[mode]:9.2f} "
                  f"{_cos(emb, ref):11.6f} {b['cpu']:6.1f} {b['sys']:6.2f} {b['other']:8.2f} "
                  f"{b['steal']:8.2f}")

        fast = "ours bf16 (default)"
        lat = ask(fast, f"decode {args.clicks}")
        print(f"\ndecode ({args.clicks} clicks): p50 {lat['p50']:.1f} ms, "
              f"p95 {lat['p95']:.1f} ms")
        hit = ask(fast, "cache")
        encode_s = best[fast]["wall"]
        print(f"cache hit (set_image of an encoded image): memory {hit['mem'] * 1000:.1f} ms, "
              f"disk {hit['disk'] * 1000:.1f} ms = {100 * hit['disk'] / encode_s:.2f} % of a "
              f"bf16 encode; {hit['size'] / 1e6:.1f} MB per image on disk")
        rss = {m: ask(m, "quit")["rss"] for m in modes}
        for w in workers.values():
            w.wait(timeout=60)
    print("peak RSS: " + ", ".join(f"{m} {r:.0f} MB" for m, r in rss.items()))
    print(f"load average after: {os.getloadavg()}")


def _ask(worker, cmd: str | None) -> dict:
    """Send ``cmd`` (None: nothing) to a worker and read its JSON answer."""
    import json

    if cmd is not None:
        worker.stdin.write(cmd + "\n")
        worker.stdin.flush()
    line = worker.stdout.readline()
    if not line:
        raise RuntimeError(f"benchmark worker exited (code {worker.wait()})")
    return json.loads(line)


if __name__ == "__main__":
    main()
