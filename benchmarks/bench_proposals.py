"""GUI-thread cost of the candidate list: accepting, filtering and drawing many candidates.

What the annotator waits for after a search has come back (the search itself runs on the
engine lane): accepting every candidate as one step against accepting them one by one (each
one an undo step and an autosave), a threshold move, and the outline map the ``proposals``
layer shows. Headless (no napari): a fake concept engine on a 500 x 375 image with
``--n`` blobs, a real project folder so every accept writes to disk as in the GUI.

    python benchmarks/bench_proposals.py [--n 50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def blobs_image(n: int, shape: tuple[int, int] = (375, 500)) -> np.ndarray:
    """A grey image with ``n`` red squares of growing size on a grid."""
    img = np.full((*shape, 3), 128, np.uint8)
    cols = int(np.ceil(np.sqrt(n * shape[1] / shape[0])))
    step_r, step_c = shape[0] // (int(np.ceil(n / cols)) + 1), shape[1] // (cols + 1)
    for k in range(n):
        r, c = (k // cols + 1) * step_r, (k % cols + 1) * step_c
        half = 3 + k % 8
        img[r - half:r + half, c - half:c + half] = (200, 40, 40)
    return img


def session(folder: Path, image: np.ndarray):  # type: ignore[no-untyped-def]
    from napari_samlabel.annotate.session import session_for_project
    from napari_samlabel.io.folder import project_for_folder
    from napari_samlabel.testing.concepts import ColourConceptEngine

    Image.fromarray(image).save(folder / "img.png")
    s = session_for_project(project_for_folder(folder), engine=ColourConceptEngine(),
                            prefetch=False)
    s.open_image(0)
    s.proposals.set_threshold(0.0)
    s.proposals.find_all("dog")
    return s


def main() -> None:
    from napari_samlabel._napari.proposals_panel import outline_labels

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50, help="candidates on the image")
    ap.add_argument("--repeats", type=int, default=3, help="rounds (the fastest is shown)")
    args = ap.parse_args()
    image = blobs_image(args.n)
    times: dict[str, list[float]] = {k: [] for k in (
        "accept all (one step)", "accept one by one", "threshold move", "outline map")}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):
            for mode in ("all", "each"):
                sub = Path(tmp) / f"{mode}{k}"  # a fresh project: no accepted repeats
                sub.mkdir()
                s = session(sub, image)
                p = s.proposals
                n = len(p.candidates)
                assert n == args.n, f"found {n} candidates, expected {args.n}"
                if mode == "all":
                    t0 = time.perf_counter()
                    p.threshold  # noqa: B018 - warm
                    p.set_threshold(0.5)
                    p.set_threshold(0.0)
                    times["threshold move"].append((time.perf_counter() - t0) / 2)
                    t0 = time.perf_counter()
                    outline_labels(p.candidates, p.visible(), s.doc.shape)
                    times["outline map"].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    p.accept_all()
                    times["accept all (one step)"].append(time.perf_counter() - t0)
                else:
                    t0 = time.perf_counter()
                    for i in range(n):
                        p.accept_candidate(i)
                    times["accept one by one"].append(time.perf_counter() - t0)
                assert len(s.doc.objects) == n
    best = {k: min(v) * 1e3 for k, v in times.items()}
    print(f"{args.n} candidates on a 500 x 375 image, fastest of {args.repeats} rounds:")
    for k, ms in best.items():
        print(f"  {k:24s} {ms:8.1f} ms")
    ratio = best["accept one by one"] / best["accept all (one step)"]
    print(f"  one by one / accept all: {ratio:.1f}x")


if __name__ == "__main__":
    main()
