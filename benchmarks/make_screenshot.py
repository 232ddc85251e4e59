"""Save ``resources/screenshots/annotator.png``: the annotator in a napari window (Xvfb).

No pretrained SAM weights exist on the build machine, so the masks in the picture come from
the ground-truth oracle engine (``napari_samlabel.testing.fakes.OracleEngine``) on real PASCAL
VOC images from ``/work/shared/data/voc-sample``; everything else (layers, prompts, panels,
status line) is the plugin as an annotator sees it. Prompts are given through the plugin's
layers, exactly as clicks and drags give them.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/make_screenshot.py
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

VOC = Path("/work/shared/data/voc-sample/VOC2012")
IMAGES = ("2010_002139", "2010_004370", "2010_003541")  # the first has a cow and two people
COW, PERSON = 10, 15
OUT = Path(__file__).resolve().parent.parent / "resources" / "screenshots" / "annotator.png"


def inner_point(mask: np.ndarray) -> list[float]:
    """The pixel deepest inside ``mask`` (a click an annotator would make)."""
    from scipy.ndimage import distance_transform_edt

    d = distance_transform_edt(mask)
    r, c = np.unravel_index(int(np.argmax(d)), d.shape)
    return [float(r), float(c)]


def settle(app, session, seconds: float = 0.3) -> None:
    """Run the Qt event loop for ``seconds`` and until the session is idle with an image."""
    end = time.time() + seconds
    while time.time() < end or not session.idle or session.doc is None:
        app.processEvents()
        time.sleep(0.01)


def save_window(viewer, app, session, out: Path) -> None:
    """Close napari's toasts, let the window settle, and save it (with its docks) to ``out``."""
    from qtpy.QtWidgets import QWidget

    for w in app.topLevelWidgets() + viewer.window._qt_window.findChildren(QWidget):
        if type(w).__name__ == "NapariQtNotification":  # the PyQt5 deprecation toast
            w.close()
    settle(app, session, 0.5)
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False)
    print(f"wrote {out}")


def main() -> None:
    import napari
    from qtpy.QtWidgets import QApplication
    from skimage.measure import label

    from napari_samlabel._napari.launch import open_annotator
    from napari_samlabel.io.images import load_image
    from napari_samlabel.testing.fakes import OracleEngine

    tmp = Path(tempfile.mkdtemp(prefix="samlabel-shot-"))
    try:
        folder = tmp / "voc"
        folder.mkdir()
        pairs = []
        for iid in IMAGES:
            shutil.copy(VOC / "JPEGImages" / f"{iid}.jpg", folder / f"{iid}.jpg")
            sem = np.array(Image.open(VOC / "SegmentationClass" / f"{iid}.png"))
            pairs.append((load_image(folder / f"{iid}.jpg"), sem, None))
        engine = OracleEngine.from_pairs(pairs)
        from napari.settings import get_settings

        get_settings().application.gui_notification_level = "none"  # no toasts in the picture
        viewer = napari.Viewer(title="napari-samlabel", show=True)
        viewer.window.resize(1500, 900)
        app = QApplication.instance()
        widget = open_annotator(viewer, folder, engine=engine)
        a = widget.annotator
        s = a.session

        def wait(seconds: float = 0.3) -> None:
            settle(app, s, seconds)

        wait()
        sem = pairs[IMAGES.index(s.image_id())][1]
        people = label(sem == PERSON)
        cow = sem == COW
        # Two people accepted with one click each (shown as outlines, listed in the
        # Objects tab); the cow in progress: a box and a negative click on the person
        # standing behind it.
        a.pick_class(PERSON)
        for k in (1, 2):
            a.bridge.points_layer.add(inner_point(people == k))
            wait()
            a.accept()
        a.pick_class(COW)
        rows, cols = np.nonzero(cow)
        a.box_mode()
        a.bridge.shapes_layer.add_rectangles(
            np.array([[rows.min() - 4, cols.min() - 4], [rows.max() + 4, cols.max() + 4]]))
        a.points_mode()
        a.toggle_polarity()
        a.bridge.points_layer.add(inner_point(people == 1))
        a.toggle_polarity()
        a.toggle_outlines()          # accepted objects as outlines ("o")
        widget.tabs.setCurrentIndex(0)   # the Label tab: classes and objects
        wait(1.0)
        viewer.layers.selection.active = a.bridge.points_layer
        viewer.reset_view()
        wait(1.0)
        save_window(viewer, app, s, OUT)
        widget.shutdown()
        viewer.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
