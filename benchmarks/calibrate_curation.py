"""Calibrate curation's scores on VOC labels degraded by known amounts.

The truth is known here: each pseudo label is a ground-truth object of the VOC sample
degraded on purpose (eroded, dilated, shifted, a part cut off, merged with its nearest
neighbour, given a wrong class, dropped, or left clean) by a random amount. So every object
has a true IoU (with its own ground-truth object; 0 when its class is wrong) and every image
a true mIoU (VOC's, over the classes present). The script measures how well curation's
scores rank them.

What it prints
--------------
1. Objects, without ground truth: Spearman's rho between each SAM-free signal (its raw
   value, turned so that larger is worse) and ``1 - true IoU``, over the objects where the
   signal is measured; then the combined object score (the noisy-OR with the weights of
   ``curate/signals.py``). Two settings: *masks only* (a bare VOC tree: fragments, holes,
   area) and *boxes + points* (the weak labels a pseudo-label run had: each object's tight
   ground-truth box, and one click per object, its own class's clicks positive and the other
   classes' negative, as ``samlabel curate --weak`` gives them).
2. Images, without ground truth: rho between the image score and ``1 - true mIoU``, for
   the rule curation uses (``estimated_error``: the class-averaged, area-weighted object
   scores) and the alternatives it was chosen over (the worst object's score, as before
   issue 16; the mean; the area-weighted mean; the share of the image).
3. Images, with ground truth: rho between the image score (``1 -`` the image's mIoU) and
   ``1 - true mIoU``, and what the old rule (the worst object's score, 1.0 for any missed
   object) gave.
4. With ``--fit``: a coordinate search over the weights of the SAM-free signals for the
   highest object-level rho (boxes + points), for comparison with the weights in use.

Degradations are drawn per object: clean 25 %, erode, dilate, shift and cut a part 12 %
each, merge, wrong class and missing 8 % each (merge falls back to dilate in an image with
one object); the amount is uniform up to a quarter of the object's size (erode, dilate), half
its size (shift) or 70 % of its area (cut). Seeded, so the figures repeat.

``--write DIR`` also writes one degraded variant of every image as a VOC tree (images and
class maps), to look at the report: ``samlabel curate DIR --gt VOC --out review/``.

Run::

    .venv/bin/python benchmarks/calibrate_curation.py            # 8 variants per image
    .venv/bin/python benchmarks/calibrate_curation.py --variants 16 --fit
    .venv/bin/python benchmarks/calibrate_curation.py --variants 1 --write /tmp/degraded
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy.stats import spearmanr

from napari_samlabel.core.classes import BACKGROUND, VOID
from napari_samlabel.core.objects import AnnotatedObject
from napari_samlabel.core.prompts import Box, Point, Prompt
from napari_samlabel.curate.assessment import (
    ObjectAssessment,
    assess_image,
    class_map,
    estimated_error,
)
from napari_samlabel.curate.matching import GroundTruth
from napari_samlabel.curate.signals import (
    AREA_HUGE_SPEC,
    AREA_TINY_SPEC,
    SIGNAL_SPECS,
    SignalSpec,
    Thresholds,
    combine,
)
from napari_samlabel.curate.sources import import_voc_min_area
from napari_samlabel.io.voc.components import instances_from_components
from napari_samlabel.io.voc.labelpng import read_label_png

VOC = Path(__file__).resolve().parents[1] / ".." / ".." / "shared" / "data" / "voc-sample" \
    / "VOC2012"
KINDS = ("clean", "erode", "dilate", "shift", "cut", "merge", "wrong_class", "missing")
KIND_P = (0.25, 0.12, 0.12, 0.12, 0.12, 0.08, 0.08, 0.11)
#: SAM-free signals a pseudo label has without ground truth (``area`` is the badness key of
#: ``area_fraction``).
MASK_SIGNALS = ("fragment_fraction", "hole_fraction", "area")
PROMPT_SIGNALS = ("positive_outside", "negative_inside", "box_fill", "box_gap", "outside_box")


@dataclass
class GtObject:
    class_id: int
    mask: np.ndarray
    point: tuple[int, int]
    box: Box


@dataclass
class Sample:
    """One degraded object and its true IoU (None for a missing object)."""

    image: str
    kind: str
    true_iou: float
    assessed: ObjectAssessment


def gt_objects(semantic: np.ndarray) -> list[GtObject]:
    """The ground-truth objects of a class map, by the rule of ``samlabel import-voc``."""
    inst = instances_from_components(semantic, import_voc_min_area())
    out = []
    for k in np.unique(inst):
        if k in (0, VOID):
            continue
        mask = inst == k
        cls = semantic[mask]
        cls = cls[(cls != BACKGROUND) & (cls != VOID)]
        if not cls.size:
            continue
        dist = ndi.distance_transform_edt(mask)
        r, c = np.unravel_index(int(np.argmax(dist)), mask.shape)
        rows, cols = np.nonzero(mask)
        out.append(GtObject(int(np.bincount(cls).argmax()), mask, (int(r), int(c)),
                            Box((rows.min(), cols.min()), (rows.max(), cols.max()))))
    return out


def shifted(mask: np.ndarray, dr: int, dc: int) -> np.ndarray:
    out = np.zeros_like(mask)
    h, w = mask.shape
    src = mask[max(0, -dr):h - max(0, dr), max(0, -dc):w - max(0, dc)]
    out[max(0, dr):max(0, dr) + src.shape[0], max(0, dc):max(0, dc) + src.shape[1]] = src
    return out


def degrade(mask: np.ndarray, kind: str, amount: float, rng: np.random.Generator
            ) -> np.ndarray:
    """``mask`` degraded by ``kind`` (``amount`` in [0, 1] of the kind's range)."""
    size = math.sqrt(float(mask.sum()))
    if kind == "erode":
        return ndi.distance_transform_edt(mask) > max(1.0, amount * size / 4)
    if kind == "dilate":
        return ndi.distance_transform_edt(~mask) <= max(1.0, amount * size / 4)
    if kind == "shift":
        d = max(1.0, amount * size / 2)
        a = rng.uniform(0, 2 * math.pi)
        return shifted(mask, round(d * math.sin(a)), round(d * math.cos(a)))
    if kind == "cut":  # cut off a part from one side: `amount` * 70 % of the area
        rows, cols = np.nonzero(mask)
        axis, side = int(rng.integers(2)), int(rng.choice([-1, 1]))
        coord = (rows, cols)[axis] * side
        limit = np.quantile(coord, 1.0 - 0.7 * amount)
        out = mask.copy()
        gone = coord > limit
        out[rows[gone], cols[gone]] = False
        return out
    return mask.copy()


def prompts_for(own: GtObject, class_id: int, objects: list[GtObject]
                ) -> tuple[Prompt, ...]:
    """Boxes + points: the object's box and click, the other classes' clicks negative.

    A unit's prompts as ``samlabel curate --weak`` gives them: its own positive prompts,
    and the other classes' clicks as negatives (its own class's other objects' clicks are
    neither). ``class_id`` is the label's class, which a wrong class makes differ from
    ``own``'s.
    """
    prompts: list[Prompt] = [own.box, Point(own.point)]
    prompts += [Point(g.point, positive=False) for g in objects if g.class_id != class_id]
    return tuple(prompts)


def variant(semantic: np.ndarray, objects: list[GtObject], rng: np.random.Generator,
            with_prompts: bool) -> tuple[list[AnnotatedObject], list[tuple[str, float]]]:
    """One degraded version of an image: its objects and each one's (kind, true IoU)."""
    valid = semantic != VOID
    kinds = [str(rng.choice(KINDS, p=KIND_P)) for _ in objects]
    merged_into: dict[int, int] = {}
    for i, kind in enumerate(kinds):
        if kind != "merge" or i in merged_into:
            continue
        others = [j for j in range(len(objects)) if j != i and j not in merged_into
                  and i not in merged_into and kinds[j] != "merge"]
        if not others:
            kinds[i] = "dilate"
            continue
        ci = np.argwhere(objects[i].mask).mean(axis=0)
        j = min(others, key=lambda j: float(np.linalg.norm(
            np.argwhere(objects[j].mask).mean(axis=0) - ci)))
        merged_into[j] = i
    out, truth = [], []
    tiny = Thresholds().tiny * semantic.size
    for i, g in enumerate(objects):
        if g.mask.sum() < tiny:  # VOC's tiny objects (specks) stay clean: they are flagged
            kinds[i] = "clean"  # `tiny` as they are, and are left out of the statistics
    for i, (g, kind) in enumerate(zip(objects, kinds, strict=True)):
        if kind == "missing" or i in merged_into:
            continue
        mask = degrade(g.mask, kind, float(rng.uniform(0.05, 1.0)), rng)
        if kind == "merge":
            j = next(j for j, k in merged_into.items() if k == i)
            mask = mask | objects[j].mask
        cls = g.class_id
        if kind == "wrong_class":
            cls = int(rng.choice([c for c in range(1, 21) if c != g.class_id]))
        inter = np.count_nonzero(mask & g.mask & valid)
        union = np.count_nonzero((mask | g.mask) & valid)
        iou = 0.0 if cls != g.class_id or not union else inter / union
        prompts = prompts_for(g, cls, objects) if with_prompts else ()
        out.append(AnnotatedObject(len(out) + 1, cls, mask, prompts, None))
        truth.append(("tiny" if g.mask.sum() < tiny else kind, iou))
    return out, truth


def rescore(a: ObjectAssessment, weights: dict[str, float],
            thresholds: Thresholds = Thresholds()) -> float:  # noqa: B008
    """The object score with other weights (same ramps and knees as curation's)."""
    if a.area == 0:
        return 1.0
    bad = {}
    for name, spec in SIGNAL_SPECS.items():
        if name in a.signals and name in weights:
            s = SignalSpec(spec.good, spec.bad, weights[name], spec.flag, spec.inclusive)
            bad[name] = s.badness(a.signals[name], getattr(thresholds, str(spec.flag)))
    frac = a.signals["area_fraction"]
    w = weights.get("area", AREA_TINY_SPEC.weight)
    tiny = SignalSpec(AREA_TINY_SPEC.good, AREA_TINY_SPEC.bad, w, "tiny")
    huge = SignalSpec(AREA_HUGE_SPEC.good, AREA_HUGE_SPEC.bad, w, "huge")
    bad["area"] = max(tiny.badness(frac, thresholds.tiny), huge.badness(frac, thresholds.huge))
    return combine(bad, {k: weights.get(k, 1.0) for k in bad})


def rho(x: list[float], y: list[float]) -> float:
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def aggregate(rule: str, objects: list[ObjectAssessment], shape: tuple[int, int]) -> float:
    """Image score from object scores by one of the candidate rules."""
    if not objects:
        return 0.5
    s = np.array([o.score for o in objects])
    a = np.array([max(o.area, 1) for o in objects], dtype=float)
    if rule == "max":
        return float(s.max())
    if rule == "mean":
        return float(s.mean())
    if rule == "area_mean":
        return float(np.dot(a, s) / a.sum())
    if rule == "image_share":
        return float(min(1.0, np.dot(a, s) / (shape[0] * shape[1])))
    return estimated_error(objects)


RULES = ("class_mean", "max", "mean", "area_mean", "image_share")


def write_variants(voc: Path, out: Path, seed: int) -> None:
    """One degraded variant of every image, as a VOC tree in ``out``."""
    from napari_samlabel.io.images import load_image
    from napari_samlabel.io.voc.reader import find_image
    from napari_samlabel.io.voc.writer import VocWriter

    rng = np.random.default_rng(seed)
    ids = sorted(p.stem for p in (voc / "SegmentationClass").glob("*.png"))
    with VocWriter(out) as w:
        for iid in ids:
            semantic = read_label_png(voc / "SegmentationClass" / f"{iid}.png")
            objs, _ = variant(semantic, gt_objects(semantic), rng, False)
            w.add(iid, load_image(find_image(voc / "JPEGImages", iid)),
                  class_map(semantic.shape, objs))
    print(f"wrote {len(ids)} degraded images to {out}")


def run(voc: Path, variants: int, seed: int, fit: bool) -> None:
    rng = np.random.default_rng(seed)
    ids = sorted(p.stem for p in (voc / "SegmentationClass").glob("*.png"))
    samples: dict[str, list[Sample]] = {"masks only": [], "boxes + points": []}
    images: dict[str, list[dict]] = {"masks only": [], "boxes + points": []}
    for iid in ids:
        semantic = read_label_png(voc / "SegmentationClass" / f"{iid}.png")
        shape = (int(semantic.shape[0]), int(semantic.shape[1]))
        gts = gt_objects(semantic)
        truth_gt = GroundTruth(semantic)
        for _ in range(variants):
            state = rng.bit_generator.state
            for setting in samples:
                rng.bit_generator.state = state  # same degradations in both settings
                objs, truth = variant(semantic, gts, rng, setting == "boxes + points")
                true_miou = truth_gt.miou(class_map(shape, objs))
                plain = assess_image(iid, shape, objs)
                with_gt = assess_image(iid, shape, objs, gt=truth_gt)
                for o, (kind, iou) in zip(plain.objects, truth, strict=True):
                    if kind != "tiny":
                        samples[setting].append(Sample(iid, kind, iou, o))
                rec = {"true": 1.0 - true_miou, "gt": with_gt.score,
                       "old_gt": max([o.score for o in with_gt.objects] + [
                           1.0 if with_gt.signals.get("gt_missed") else 0.0])}
                for rule in RULES:
                    rec[rule] = aggregate(rule, plain.objects, shape)
                rec["objects"] = plain.objects
                images[setting].append(rec)

    print(f"VOC sample: {len(ids)} images x {variants} degraded variants "
          f"(seed {seed})\n")
    for setting, objs in samples.items():
        bad = [1.0 - s.true_iou for s in objs]
        print(f"== objects, no ground truth, {setting}: {len(objs)} objects, "
              f"Spearman rho with 1 - true IoU")
        names = MASK_SIGNALS + (PROMPT_SIGNALS if setting == "boxes + points" else ())
        for name in names:
            spec = SIGNAL_SPECS.get(name)
            pairs = []
            for s, b in zip(objs, bad, strict=True):
                if name == "area":
                    pairs.append((max(s.assessed.badness.get("area", 0.0), 0.0), b))
                elif name in s.assessed.signals:
                    v = s.assessed.signals[name]
                    pairs.append(((v if spec is None or spec.bad > spec.good else -v), b))
            xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
            print(f"  {name:18s} rho {rho(xs, ys):+.3f}  (n={len(xs)})")
        print(f"  {'combined score':18s} rho "
              f"{rho([s.assessed.score for s in objs], bad):+.3f}")
        print("  per degradation (mean true IoU / mean score):",
              ", ".join(f"{k} {np.mean([s.true_iou for s in objs if s.kind == k]):.2f}/"
                        f"{np.mean([s.assessed.score for s in objs if s.kind == k]):.2f}"
                        for k in KINDS if any(s.kind == k for s in objs)))
        recs = images[setting]
        true = [r["true"] for r in recs]
        print(f"== images, no ground truth, {setting}: {len(recs)} images, "
              "Spearman rho with 1 - true mIoU")
        for rule in RULES:
            label = f"{rule} (in use)" if rule == "class_mean" else rule
            print(f"  {label:18s} rho {rho([r[rule] for r in recs], true):+.3f}")
        print()
    recs = images["boxes + points"]
    true = [r["true"] for r in recs]
    print(f"== images, with ground truth: {len(recs)} images, Spearman rho with 1 - true mIoU")
    print(f"  1 - image mIoU (in use) rho {rho([r['gt'] for r in recs], true):+.3f}")
    print(f"  worst object / missed (before) rho {rho([r['old_gt'] for r in recs], true):+.3f}"
          f"; images at score 1.0: {sum(r['old_gt'] >= 1.0 for r in recs)} before, "
          f"{sum(r['gt'] >= 1.0 for r in recs)} now")
    if fit:
        fit_weights(samples["boxes + points"], recs)


def fit_weights(objs: list[Sample], images: list[dict]) -> None:
    """Coordinate search over the SAM-free weights for the best object-level rho."""
    names = MASK_SIGNALS + PROMPT_SIGNALS
    weights = {n: (SIGNAL_SPECS[n].weight if n in SIGNAL_SPECS else AREA_TINY_SPEC.weight)
               for n in names}
    bad = [1.0 - s.true_iou for s in objs]

    def score(w: dict[str, float]) -> float:
        return rho([rescore(s.assessed, w) for s in objs], bad)

    best = score(weights)
    print(f"\n== weight fit (boxes + points): start rho {best:+.3f} with {weights}")
    grid = (0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    for _ in range(3):
        improved = False
        for n in names:
            for v in grid:
                trial = {**weights, n: v}
                r = score(trial)
                if r > best + 1e-4:
                    best, weights, improved = r, trial, True
        if not improved:
            break
    print(f"  fitted rho {best:+.3f} with {weights}")
    true = [r["true"] for r in images]
    scored = [estimated_error([replace(o, score=rescore(o, weights)) for o in r["objects"]])
              for r in images]
    print(f"  images (boxes + points, no ground truth) with the fitted weights: rho "
          f"{rho(scored, true):+.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--voc", type=Path, default=VOC.resolve())
    ap.add_argument("--variants", type=int, default=8, help="degraded versions per image")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fit", action="store_true", help="also search the weights")
    ap.add_argument("--write", type=Path, help="also write one degraded variant as a VOC tree")
    args = ap.parse_args()
    run(args.voc, args.variants, args.seed, args.fit)
    if args.write is not None:
        write_variants(args.voc, args.write, args.seed)


if __name__ == "__main__":
    main()
