"""Label a folder of images with a trained segmenter (VOC palette PNGs)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from napari_samlabel.core.progress import ProgressCallback, no_progress
from napari_samlabel.io.images import image_id
from napari_samlabel.io.voc.labelpng import write_label_png
from napari_samlabel.learn.data import read_image
from napari_samlabel.learn.segmenter import load_model, predict_probs


def predict_images(model_dir: str | os.PathLike[str], images: Sequence[Path],
                   out: str | os.PathLike[str], *, device: str = "cpu", batch_size: int = 4,
                   progress: ProgressCallback = no_progress) -> list[Path]:
    """Write ``out/<id>.png`` (argmax label maps, VOC colour map) for every image.

    Each file is written atomically, so an interrupted run leaves whole PNGs only; returns
    the paths written.
    """
    model, meta = load_model(model_dir, device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(0, len(images), batch_size):
        paths = list(images[i:i + batch_size])
        probs = predict_probs(model, [read_image(p) for p in paths], meta, device)
        for p, pr in zip(paths, probs, strict=True):
            target = out / f"{image_id(p)}.png"
            write_label_png(target, pr.argmax(axis=0).astype("uint8"))
            written.append(target)
        progress(min(i + batch_size, len(images)), len(images), image_id(paths[-1]))
    return written
