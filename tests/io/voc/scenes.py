"""Shared scenes of the VOC tests: label maps, a written dataset, one with parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from napari_samlabel.core.classes import ClassTable
from napari_samlabel.io.voc.annotations import ObjectInfo
from napari_samlabel.io.voc.writer import VocWriter

H, W = 60, 80


def scene() -> tuple[np.ndarray, np.ndarray]:
    """Semantic + instance maps: two dogs (12) side by side, touching, and a person (15)."""
    sem = np.zeros((H, W), np.uint8)
    inst = np.zeros((H, W), np.uint8)
    sem[10:30, 5:25] = 12
    inst[10:30, 5:15] = 4
    inst[10:30, 15:25] = 9
    sem[35:60, 40:70] = 15  # touches the bottom border -> truncated
    inst[35:60, 40:70] = 2
    return sem, inst


def boxes_of(target: dict) -> list[tuple[str, tuple[int, int, int, int]]]:
    objs = target["annotation"]["object"]
    objs = objs if isinstance(objs, list) else [objs]
    return [(o["name"], tuple(int(o["bndbox"][k]) for k in ("xmin", "ymin", "xmax", "ymax")))
            for o in objs]


def write_scene(tmp_path: Path, image: np.ndarray, border: int = 0) -> tuple[Path, Path]:
    sem, inst = scene()
    jpg = tmp_path / "src" / "photo.jpg"
    jpg.parent.mkdir(exist_ok=True)
    Image.fromarray(image).save(jpg, quality=90)
    png = tmp_path / "src" / "drawing.png"
    Image.fromarray(image).save(png)
    out = tmp_path / "out"
    with VocWriter(out, border=border, train_fraction=0.5, seed=3) as w:
        w.add("photo", jpg, sem, inst, [ObjectInfo(9, pose="Left", difficult=True)])
        w.add("drawing", png, sem, None, split="val")
        w.add("array", image, np.zeros((H, W), np.uint8), None, split="excluded")
    return out, jpg


PART_CLASSES = ClassTable(("dog", "person", "dog/head", "person/head", "person/hand"))
P_DOG, P_PERSON, P_DOG_HEAD, P_PERSON_HEAD, P_HAND = 1, 2, 3, 4, 5


def part_scene() -> dict[str, np.ndarray]:
    """Two dogs, a person; the left dog's head, the person's head, and a lone dog head."""
    sem = np.zeros((H, W), np.uint8)
    inst = np.zeros((H, W), np.uint8)
    sem[10:30, 5:45], inst[10:30, 5:25], inst[10:30, 25:45] = P_DOG, 3, 7
    sem[35:60, 50:75], inst[35:60, 50:75] = P_PERSON, 5
    psem = np.zeros((H, W), np.uint8)
    pinst = np.zeros((H, W), np.uint8)
    psem[10:16, 5:12], pinst[10:16, 5:12] = P_DOG_HEAD, 11  # on dog 3
    psem[35:42, 58:66], pinst[35:42, 58:66] = P_PERSON_HEAD, 12  # on the person
    psem[2:6, 60:66], pinst[2:6, 60:66] = P_DOG_HEAD, 13  # no dog there
    return {"sem": sem, "inst": inst, "psem": psem, "pinst": pinst}


def write_part_scene(tmp_path: Path, image: np.ndarray, border: int = 0) -> VocWriter:
    m = part_scene()
    parts = [ObjectInfo(11, parent=3), ObjectInfo(12, parent=5), ObjectInfo(13)]
    with VocWriter(tmp_path / "out", PART_CLASSES, border=border, train_fraction=1.0) as w:
        w.add("parts", image, m["sem"], m["inst"], None, None, m["psem"], m["pinst"], parts)
        w.add("plain", image, m["sem"], m["inst"])
    return w
