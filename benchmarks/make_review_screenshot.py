"""Save ``resources/screenshots/review.png``: the Review tab walking a curation queue (Xvfb).

A small project is made from real PASCAL VOC images (``/work/shared/data/voc-sample``) with
ground-truth masks as the accepted objects, some of them broken the way SAM breaks them (a
person mask that grabbed the cat next to it, a person cut in half, a dog in pieces); ``samlabel
curate --gt`` ranks it, and the annotator opens with the queue as ``samlabel annotate FOLDER
--review QUEUE`` does, the worst object selected in the table and outlined on the canvas.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/make_review_screenshot.py
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
from make_screenshot import inner_point, save_window, settle  # the script next to this one
from PIL import Image

VOC = Path("/work/shared/data/voc-sample/VOC2012")
OUT = Path(__file__).resolve().parent.parent / "resources" / "screenshots" / "review.png"
CAT, COW, DOG, PERSON = 8, 10, 12, 15


def build_project(folder: Path) -> None:
    """Copy the images and save their objects (ground truth, some broken) as accepted."""
    from skimage.measure import label

    from napari_samlabel.core.document import AnnotationDocument, ImageStatus
    from napari_samlabel.core.objects import AnnotatedObject
    from napari_samlabel.core.prompts import Point
    from napari_samlabel.io.project import Project

    def gt(iid: str) -> np.ndarray:
        return np.array(Image.open(VOC / "SegmentationClass" / f"{iid}.png"))

    def parts(sem: np.ndarray, cls: int) -> list[np.ndarray]:
        lab = label(sem == cls)
        sizes = np.bincount(lab.ravel())[1:]
        return [lab == k + 1 for k in np.argsort(-sizes) if sizes[k] > 200]

    def obj(oid: int, cls: int, mask: np.ndarray, score: float, at: np.ndarray | None = None
            ) -> AnnotatedObject:
        click = tuple(inner_point(mask if at is None else at))
        return AnnotatedObject(oid, cls, mask, (Point(click),), score)

    plans: dict[str, list[AnnotatedObject]] = {}
    sem = gt("2010_004815")            # a person holding a cat: the person's mask took the cat
    person, cat = parts(sem, PERSON)[0], parts(sem, CAT)[0]
    plans["2010_004815"] = [obj(1, CAT, cat, 0.93), obj(2, PERSON, person | cat, 0.71, person)]
    sem = gt("2010_002139")            # a cow and two people; one person cut at the waist
    cow, (p1, p2) = parts(sem, COW)[0], parts(sem, PERSON)[:2]
    rows = np.nonzero(p2)[0]
    half = p2 & (np.arange(sem.shape[0])[:, None] < (rows.min() + rows.max()) // 2)
    plans["2010_002139"] = [obj(1, COW, cow, 0.96), obj(2, PERSON, p1, 0.91),
                            obj(3, PERSON, half, 0.84)]
    sem = gt("2010_004370")            # a dog in pieces
    dog = parts(sem, DOG)[0]
    speckle = np.zeros_like(dog)
    speckle[10:40, 10:60] = True
    plans["2010_004370"] = [obj(1, DOG, dog | speckle, 0.88, dog)]
    for iid, cls in (("2008_003576", DOG), ("2007_004856", CAT)):   # clean
        plans[iid] = [obj(1, cls, parts(gt(iid), cls)[0], 0.97)]
    for iid in plans:
        shutil.copy(VOC / "JPEGImages" / f"{iid}.jpg", folder / f"{iid}.jpg")
    project = Project.create(folder, folder)
    for iid, objects in plans.items():
        shape = objects[0].mask.shape
        project.save_document(AnnotationDocument(iid, shape, objects, ImageStatus.DONE))
    project.set_review("2007_004856", "accepted")


def main() -> None:
    import napari
    from napari.settings import get_settings
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication, QDockWidget

    from napari_samlabel._napari.launch import open_annotator
    from napari_samlabel.curate.run import curate
    from napari_samlabel.io.images import load_image
    from napari_samlabel.testing.fakes import OracleEngine

    tmp = Path(tempfile.mkdtemp(prefix="samlabel-review-shot-"))
    try:
        folder = tmp / "voc-project"
        folder.mkdir()
        build_project(folder)
        queue = tmp / "review"
        result = curate(folder, queue, gt=VOC, top=5)
        print(result.summary())
        engine = OracleEngine.from_pairs(
            (load_image(p), np.array(Image.open(VOC / "SegmentationClass" / f"{p.stem}.png")),
             None) for p in sorted(folder.glob("*.jpg")))
        get_settings().application.gui_notification_level = "none"  # no toasts
        viewer = napari.Viewer(title="napari-samlabel", show=True)
        viewer.window.resize(1500, 960)
        app = QApplication.instance()
        widget = open_annotator(viewer, folder, engine=engine, review=queue)
        s = widget.annotator.session
        panel = widget.review_panel

        dock = widget.parent()
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parent()
        viewer.window._qt_window.resizeDocks([dock], [430], Qt.Orientation.Horizontal)
        settle(app, s, 1.0)
        panel.table.selectRow(0)                   # the worst object, outlined
        panel.reason.setEditText("wrong object")
        panel.note.setText("the person's mask took the cat")
        viewer.layers.selection.active = widget.annotator.bridge.points_layer
        viewer.reset_view()
        settle(app, s, 1.0)
        save_window(viewer, app, s, OUT)
        widget.shutdown()
        viewer.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
