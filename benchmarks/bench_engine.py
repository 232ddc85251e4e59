"""Benchmark the SAM engine on this machine (prints figures; not a test).

Real ViT-B architecture with random weights (no checkpoint download needed: the random
weights are saved to a temporary checkpoint and loaded through the real loader), one
500 x 375 RGB image (scikit-image's astronaut, resized) for the timings. Reports:

- stock ``SamPredictor.set_image`` time (float32, segment-anything as shipped);
- our encode time per precision this CPU runs (float32, bfloat16 where the CPU has it
  natively, int8 linears where it has VNNI; optionally torch.compile + bf16) and its ratio
  to stock in the same run;
- the same modes as a CPU **without native bfloat16** runs them (``ONEDNN_MAX_CPU_ISA=
  AVX512_CORE_VNNI``: oneDNN then uses AVX512-VNNI at most, as on Cascade Lake/Ice Lake
  servers; MKL's float32 products are not affected by the variable);
- the **accuracy guard** per mode (:mod:`napari_samlabel.engine.precision`): cosine of the
  image embedding to float32's, and the IoU of the float32 decoder's masks from both on the
  same prompts (8 points and a box per image), over the real photographs of the VOC sample
  (``--photos``; the astronaut where there is none);
- decode latency p50/p95 over ~30 clicks (points added one by one, previous logits fed back)
  of our engine and of stock ``SamPredictor.predict`` on the same inputs;
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

Usage: ``python benchmarks/bench_engine.py [--repeats 3] [--compile] [--no-stock]
[--photos N]``
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


def _decode_ms(predict, image_shape: tuple[int, ...], clicks: int) -> np.ndarray:
    """Decode latencies (ms): clicks added one at a time, the previous logits fed back.

    ``predict`` takes :class:`SamInputs` and returns ``(iou_predictions, low_res_logits)``.
    """
    from napari_samlabel.engine.protocol import SamInputs

    h, w = image_shape[:2]
    rng = np.random.default_rng(0)
    pts, labels, lat, prev = [], [], [], None
    for i in range(clicks):
        if i % 5 == 0:
            pts, labels, prev = [], [], None  # a new object every 5 clicks
        pts.append([rng.uniform(0, w), rng.uniform(0, h)])
        labels.append(1 if rng.random() < 0.7 else 0)
        inputs = SamInputs(point_coords=np.array(pts, np.float32),
                           point_labels=np.array(labels, np.int32), mask_input=prev,
                           multimask_output=len(pts) == 1)
        t = time.perf_counter()
        iou, low = predict(inputs)
        lat.append(time.perf_counter() - t)
        prev = np.asarray(low)[[int(np.argmax(iou))]]
    return np.array(lat) * 1000


def _photos(count: int) -> list[tuple[str, np.ndarray]]:
    """Up to ``count`` real photographs of the VOC sample (the astronaut where there is none)."""
    from napari_samlabel.io.images import list_images, load_image

    folder = Path(__file__).resolve().parents[2] / "shared/data/voc-sample/VOC2012/JPEGImages"
    found = list_images(folder)[:count] if folder.is_dir() else []
    if not found:
        return [("astronaut", _image())]
    return [(p.name, load_image(p)) for p in found]


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


#: Emulates a CPU with AVX512-VNNI and no bfloat16 (see the module docstring).
NO_BF16_ISA = "AVX512_CORE_VNNI"

MODES = {  # name: engine settings; None is segment-anything's own predictor
    "stock SamPredictor fp32": None,
    "ours fp32 (--precise)": {"precision": "float32"},
    "ours bf16": {"precision": "bfloat16"},
    "ours int8": {"precision": "int8"},
    "ours compile + bf16": {"precision": "bfloat16", "compile": True},
    "no-bf16 CPU: ours fp32": {"precision": "float32", "isa": NO_BF16_ISA},
    "no-bf16 CPU: ours int8": {"precision": "int8", "isa": NO_BF16_ISA},
}
#: The accuracy reference: float32 through our engine (equal to stock up to rounding).
REFERENCE = "ours fp32 (--precise)"


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
        settings = MODES[mode] or {}
        return SamEngine(load_sam("vit_b", ckpt), model_id="vit_b:bench", device="cpu",
                         compile=bool(settings.get("compile")),
                         cache=EmbeddingCache(cache_dir, memory_items=memory_items))

    if MODES[mode] is None:
        stock = SamPredictor(load_sam("vit_b", ckpt))

        def encode(img: np.ndarray = image) -> np.ndarray:
            stock.set_image(img)
            return stock.features.numpy()

        def predict(inputs):
            _, iou, low = stock.predict(**inputs.predictor_kwargs())
            return iou, low
    else:
        eng = engine(None)
        assert eng.precision == MODES[mode]["precision"], (eng.precision, mode)

        def encode(img: np.ndarray = image) -> np.ndarray:
            return eng._run_encoder(img).features

        def predict(inputs):
            pred = eng.predict(inputs)
            return pred.iou_predictions, pred.low_res_logits

    def reply(**kw: object) -> None:
        print(json.dumps(kw), flush=True)

    t = time.perf_counter()
    np.save(out / _npy(mode), encode())
    first = time.perf_counter() - t
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
            if MODES[mode] is None:
                encode()
            else:
                eng.set_image(image)
            with torch.inference_mode():
                lat = _decode_ms(predict, image.shape, int(cmd[1]))
            reply(p50=float(np.percentile(lat, 50)), p95=float(np.percentile(lat, 95)))
        elif cmd[0] == "photos":
            sizes = {}
            for name, photo in _photos(int(cmd[1])):
                np.save(out / f"{_npy(mode)[:-4]}__{name}.npy", encode(photo))
                sizes[name] = [list(photo.shape[:2]),
                               list(eng.predictor.transform.get_preprocess_shape(
                                   photo.shape[0], photo.shape[1], 1024))]
            reply(sizes=sizes)
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


def _available_modes(args: argparse.Namespace) -> tuple[list[str], str, str]:
    """``(modes to run, default mode here, default mode on a CPU without bfloat16)``."""
    import torch

    from napari_samlabel.engine.base import fast_precision
    from napari_samlabel.engine.device import cpu_supports_bf16, cpu_supports_vnni

    here = {"float32": True, "bfloat16": cpu_supports_bf16(), "int8": cpu_supports_vnni()}
    os.environ["ONEDNN_MAX_CPU_ISA"] = NO_BF16_ISA
    try:
        emulated = cpu_supports_vnni() and here["bfloat16"]  # worth emulating
        no_bf16_default = fast_precision(torch.device("cpu"))
    finally:
        del os.environ["ONEDNN_MAX_CPU_ISA"]
    default = fast_precision(torch.device("cpu"))
    modes = []
    for name, settings in MODES.items():
        if settings is None:
            if not args.no_stock:
                modes.append(name)
            continue
        if settings.get("compile") and not args.compile:
            continue
        if "isa" in settings:
            if emulated:
                modes.append(name)
        elif here[settings["precision"]]:
            modes.append(name)
    return modes, default, no_bf16_default


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed encodes per mode")
    ap.add_argument("--clicks", type=int, default=30, help="decodes for the latency figures")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile + bf16")
    ap.add_argument("--no-stock", action="store_true", help="skip stock SamPredictor")
    ap.add_argument("--photos", type=int, default=6,
                    help="VOC sample photographs for the accuracy guard (default 6; 0: skip)")
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

    from napari_samlabel.engine.device import THP_ENV, cpu_supports_bf16, cpu_supports_vnni
    from napari_samlabel.engine.registry import get_model_spec

    modes, default, no_bf16_default = _available_modes(args)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_supports_bf16()}, "
          f"VNNI: {cpu_supports_vnni()}; default precision here: {default}, on a CPU "
          f"without bf16 ({NO_BF16_ISA}): {no_bf16_default}")
    print(f"load average before: {os.getloadavg()}")

    def is_default(mode: str) -> bool:
        settings = MODES[mode]
        if settings is None or settings.get("compile"):
            return False
        want = no_bf16_default if "isa" in settings else default
        return bool(settings["precision"] == want)

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

        base_env = {k: v for k, v in os.environ.items()
                    if k not in (THP_ENV, "SAMLABEL_PRECISION", "ONEDNN_MAX_CPU_ISA")}
        workers: dict[str, subprocess.Popen[str]] = {}
        first: dict[str, float] = {}
        for mode in modes:  # started one after another: each first encode runs alone
            settings = MODES[mode] or {}
            env = dict(base_env)
            if "precision" in settings:
                env["SAMLABEL_PRECISION"] = settings["precision"]
            if "isa" in settings:
                env["ONEDNN_MAX_CPU_ISA"] = settings["isa"]
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
        ref = np.load(Path(tmp) / _npy(REFERENCE))

        print(f"\nencode, 500 x 375 image, ViT-B (fastest of {args.repeats} round-robin "
              "rounds, one process per mode, s; * = the default precision)")
        print("(cpu s: the mode's CPU time in that encode, sys s the kernel's part of it; "
              "other s: CPU time of everything else on the machine meanwhile, steal s: time "
              "the hypervisor gave to other guests; on 2 idle cores wall ~ cpu s / 2)")
        print(f"{'mode':26s} {'encode':>7s} {'median':>7s} {'x stock':>8s} {'1st call':>9s} "
              f"{'cos fp32':>9s} {'cpu s':>6s} {'sys s':>6s} {'other s':>8s} {'steal s':>8s}")
        best = {m: min(r, key=lambda x: x["wall"]) for m, r in runs.items()}
        stock = "stock SamPredictor fp32"
        base = best[stock]["wall"] if stock in best else None
        for mode in modes:
            b = best[mode]
            med = float(np.median([x["wall"] for x in runs[mode]]))
            emb = np.load(Path(tmp) / _npy(mode))
            ratio = f"{base / b['wall']:.2f}" if base else "-"
            name = mode + (" *" if is_default(mode) else "")
            print(f"{name:26s} {b['wall']:7.2f} {med:7.2f} {ratio:>8s} {first[mode]:9.2f} "
                  f"{_cos(emb, ref):9.6f} {b['cpu']:6.1f} {b['sys']:6.2f} {b['other']:8.2f} "
                  f"{b['steal']:8.2f}")

        if args.photos > 0:
            _accuracy(args.photos, [m for m in modes if MODES[m] is not None], ask, ckpt,
                      Path(tmp))

        fast = next(m for m in modes if is_default(m))
        lat = ask(fast, f"decode {args.clicks}")
        line = (f"\ndecode ({args.clicks} clicks, {fast}): p50 {lat['p50']:.1f} ms, "
                f"p95 {lat['p95']:.1f} ms")
        if stock in workers:
            ref_lat = ask(stock, f"decode {args.clicks}")
            line += (f"; stock SamPredictor.predict p50 {ref_lat['p50']:.1f} ms, p95 "
                     f"{ref_lat['p95']:.1f} ms (ours / stock p50: "
                     f"{lat['p50'] / ref_lat['p50']:.2f})")
        print(line)
        hit = ask(fast, "cache")
        encode_s = best[fast]["wall"]
        print(f"cache hit (set_image of an encoded image): memory {hit['mem'] * 1000:.1f} ms, "
              f"disk {hit['disk'] * 1000:.1f} ms = {100 * hit['disk'] / encode_s:.2f} % of a "
              f"default encode; {hit['size'] / 1e6:.1f} MB per image on disk")
        rss = {m: ask(m, "quit")["rss"] for m in modes}
        for w in workers.values():
            w.wait(timeout=60)
    print("peak RSS: " + ", ".join(f"{m} {r:.0f} MB" for m, r in rss.items()))
    print(f"load average after: {os.getloadavg()}")


def _accuracy(count: int, modes: list[str], ask, ckpt: Path, tmp: Path) -> None:
    """Print each mode's accuracy guard figures against :data:`REFERENCE` on the photos."""
    from napari_samlabel.engine.cache import Embedding
    from napari_samlabel.engine.checkpoint import load_sam
    from napari_samlabel.engine.families.sam import SamEngine
    from napari_samlabel.engine.precision import (
        COSINE_MIN,
        MASK_IOU_MIN,
        check_prompts,
        compare,
        guard_met,
    )

    sizes = {m: ask(m, f"photos {count}")["sizes"] for m in modes}
    decoder = SamEngine(load_sam("vit_b", ckpt), model_id="vit_b:bench", device="cpu",
                        precise=True)

    def embedding(mode: str, name: str) -> Embedding:
        original, inp = sizes[mode][name]
        return Embedding(np.load(tmp / f"{_npy(mode)[:-4]}__{name}.npy"), tuple(original),
                         tuple(inp), "vit_b:bench", "float32")

    names = list(sizes[REFERENCE])
    print(f"\naccuracy guard on {len(names)} photograph(s) ({', '.join(names)}): cosine to "
          f"float32 >= {COSINE_MIN}, mask IoU to float32's >= {MASK_IOU_MIN} (8 points and "
          "a box per image, float32 decoder)")
    print(f"{'mode':26s} {'cos min':>8s} {'cos mean':>9s} {'IoU mean':>9s} {'IoU min':>8s} "
          f"{'guard':>6s}")
    for mode in modes:
        if mode == REFERENCE:
            continue
        checks = []
        for name in names:
            ref = embedding(REFERENCE, name)
            checks.append(compare(embedding(mode, name), ref, decoder,
                                  check_prompts(ref.original_size)))
        ious = [i for c in checks for i in c.mask_ious]
        cos = [c.cosine for c in checks]
        print(f"{mode:26s} {min(cos):8.5f} {np.mean(cos):9.5f} {np.mean(ious):9.4f} "
              f"{min(ious):8.3f} {'met' if guard_met(checks) else 'NOT':>6s}")


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
