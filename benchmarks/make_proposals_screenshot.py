"""Save ``resources/screenshots/proposals.png``: the Proposals tab after "Find all" (Xvfb).

No SAM 3 weights exist on the build machine, so the candidates come from a ground-truth
stand-in: an :class:`~napari_samlabel.testing.fakes.OracleEngine` whose ``find_all`` answers
a class name with every connected component of that class in the VOC ground truth (scores
grow with the area). The image is a real PASCAL VOC photo from
``/work/shared/data/voc-sample``; everything else (the search on the engine lane, the
``proposals`` outline layer, the list, the slider) is the plugin as an annotator sees it.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/make_proposals_screenshot.py
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from make_screenshot import save_window, settle  # the script next to this one
from PIL import Image

VOC = Path("/work/shared/data/voc-sample/VOC2012")
IMAGE = "2010_000110"  # four dogs and two people
DOG = 12
OUT = Path(__file__).resolve().parent.parent / "resources" / "screenshots" / "proposals.png"


def concept_oracle(pairs):  # type: ignore[no-untyped-def]
    """An OracleEngine that also answers concept prompts from the ground truth."""
    from skimage.measure import label, regionprops

    from napari_samlabel.core.candidates import Candidate, sort_by_score
    from napari_samlabel.core.classes import ClassTable
    from napari_samlabel.core.prompts import Box
    from napari_samlabel.testing.fakes import (
        OracleEngine,
        image_fingerprint,
        mask_to_lowres_logits,
    )

    names = ClassTable.voc().names

    class ConceptOracle(OracleEngine):
        model_id = "oracle-concepts"

        def find_all(self, text: str | None = None, exemplars: Sequence[Box] = (),
                     negatives: Sequence[Box] = (), threshold: float = 0.5) -> list[Candidate]:
            assert self.image is not None
            sem = self.ground_truth[image_fingerprint(self.image)][0]
            cls = names.index(str(text)) if text in names else -1
            comps = label(sem == cls)
            regions = [r for r in regionprops(comps) if r.area >= 50]
            top = max((r.area for r in regions), default=1)
            out = []
            for r in regions:
                mask = comps == r.label
                r0, c0, r1, c1 = r.bbox
                box = Box((r0, c0), (r1 - 1, c1 - 1))
                score = 0.35 + 0.6 * (r.area / top) ** 0.5
                if score >= threshold:
                    out.append(Candidate(mask, score, f"text:{text}", box=box, prompts=(box,),
                                         low_res_logits=mask_to_lowres_logits(mask)))
            return sort_by_score(out)

    return ConceptOracle.from_pairs(pairs)


def main() -> None:
    import napari
    from napari.settings import get_settings
    from qtpy.QtWidgets import QApplication

    from napari_samlabel._napari.launch import open_annotator
    from napari_samlabel.io.images import load_image

    tmp = Path(tempfile.mkdtemp(prefix="samlabel-shot-"))
    try:
        folder = tmp / "voc"
        folder.mkdir()
        shutil.copy(VOC / "JPEGImages" / f"{IMAGE}.jpg", folder / f"{IMAGE}.jpg")
        sem = np.array(Image.open(VOC / "SegmentationClass" / f"{IMAGE}.png"))
        engine = concept_oracle([(load_image(folder / f"{IMAGE}.jpg"), sem, None)])
        get_settings().application.gui_notification_level = "none"  # no toasts
        viewer = napari.Viewer(title="napari-samlabel", show=True)
        viewer.window.resize(1500, 900)
        app = QApplication.instance()
        widget = open_annotator(viewer, folder, engine=engine)
        a = widget.annotator
        s = a.session
        settle(app, s)
        panel = widget.proposals_panel
        widget.tabs.setCurrentWidget(panel)
        a.pick_class(DOG)
        a.find_all()                                # Shift+F: every dog
        settle(app, s, 0.5)
        while s.proposals.running:
            settle(app, s, 0.1)
        panel.threshold.value = 0.4
        s.proposals.select_next()                   # j: highlight the second candidate
        viewer.layers.selection.active = a.bridge.points_layer
        viewer.reset_view()
        settle(app, s, 1.0)
        save_window(viewer, app, s, OUT)
        widget.shutdown()
        viewer.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
