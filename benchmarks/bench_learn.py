"""Images per second of the learn/ networks on this machine (random weights, CPU).

- the segmenters (``deeplabv3``, ``lraspp``): one training step (forward + weighted loss +
  backward + AdamW step) and prediction (``predict_probs``: resize, forward, softmax, resize
  back), at a ``--size`` input, batch ``--batch``;
- the CLIP CAM pass (``image_cams``: Softmax-GradCAM of two present classes) with open_clip's
  ViT-B-16 at 224 px, and one prompt-learning step of each stream at batch ``--batch``.

    python benchmarks/bench_learn.py [--size 320] [--batch 4] [--repeats 3] [--no-clip]

The figures are the best of ``--repeats`` timed runs after one warm-up; ratios are within
the run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def best(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_segmenter(arch, size, batch, repeats):
    from napari_samlabel.learn.losses import weighted_cross_entropy
    from napari_samlabel.learn.segmenter import SegmenterMeta, build_segmenter, predict_probs

    torch.manual_seed(0)
    model = build_segmenter(arch, 21)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 21, (batch, size, size))
    w = torch.rand(batch, size, size)

    def step():
        model.train()
        loss = weighted_cross_entropy(model(x)["out"], y, w)
        opt.zero_grad()
        loss.backward()
        opt.step()

    meta = SegmenterMeta(arch, [str(i) for i in range(21)], size)
    images = [np.random.default_rng(i).integers(0, 255, (375, 500, 3), dtype=np.uint8)
              for i in range(batch)]
    train = batch / best(step, repeats)
    pred = batch / best(lambda: predict_probs(model, images, meta), repeats)
    return train, pred


def bench_clip(batch, repeats):
    from napari_samlabel.learn import clip_cams as cc

    torch.manual_seed(0)
    clip = cc.build_clip("ViT-B-16")
    voc = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
           "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
           "sheep", "sofa", "train", "tvmonitor"]
    learner = cc.PromptLearner(clip, "ViT-B-16", voc)
    image = np.random.default_rng(0).integers(0, 255, (375, 500, 3), dtype=np.uint8)
    text = cc.cam_texts(learner)  # once per folder, as samlabel cams does
    cam = 1 / best(lambda: cc.image_cams(learner, image, [7, 11], text), repeats)
    x = torch.stack([cc.to_clip_tensor(image, 224)] * batch)
    target = torch.zeros(batch, 20, dtype=torch.bool)
    target[:, 7] = True
    opt = torch.optim.SGD(learner.parameters(), lr=2e-3)

    def cls_step():
        loss = cc._cls_loss(learner, x, target)
        opt.zero_grad()
        loss.backward()
        opt.step()

    seeds = torch.full((batch, 196), -1, dtype=torch.long)
    seeds[:, :50] = 7

    def seg_step():
        loss = cc._seg_loss(learner, x, seeds)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return cam, batch / best(cls_step, repeats), batch / best(seg_step, repeats)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-clip", action="store_true")
    ap.add_argument("--clip-only", action="store_true")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, input "
          f"{args.size}x{args.size}, batch {args.batch}")
    rates = {}
    for arch in () if args.clip_only else ("deeplabv3", "lraspp"):
        rates[arch] = bench_segmenter(arch, args.size, args.batch, args.repeats)
        print(f"{arch:10s} train {rates[arch][0]:7.2f} img/s   predict (500x375) "
              f"{rates[arch][1]:7.2f} img/s")
    if rates:
        print(f"lraspp / deeplabv3: train x{rates['lraspp'][0] / rates['deeplabv3'][0]:.1f}, "
              f"predict x{rates['lraspp'][1] / rates['deeplabv3'][1]:.1f}")
    if not args.no_clip:
        cam, cls, seg = bench_clip(args.batch, args.repeats)
        print(f"CLIP ViT-B-16 CAMs (2 classes, 500x375) {cam:.2f} img/s; prompt learning "
              f"classification stream {cls:.2f} img/s, segmentation stream {seg:.2f} img/s")


if __name__ == "__main__":
    main()
