"""The Proposals tab in a real viewer: find all, the slider, accept / reject, exemplars, refine.

Parametrised over concept engines (:data:`CASES`): each case gives an engine factory, the
images, a class to find and a box on one of its instances. The assertions only use what
any :class:`~napari_samlabel.engine.protocol.ConceptEngine` gives, so a tiny random SAM 3
case can be added next to the colour fake.
"""

from __future__ import annotations

import functools
import importlib.util
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from napari_samlabel._napari.proposals_panel import LAYER_NAME, ProposalsPanel
from napari_samlabel.core.candidates import Decision
from napari_samlabel.core.prompts import Box
from napari_samlabel.io.project import Project
from napari_samlabel.testing.concepts import ColourConceptEngine, concept_image

from .conftest import wait_idle

pytestmark = pytest.mark.gui


@dataclass(frozen=True)
class Case:
    """A concept engine to test the tab with."""

    engine: Callable[[], Any]
    images: Callable[[], list[np.ndarray]]
    class_id: int                       # a class with instances on the first image
    exemplar: tuple[tuple[int, int], tuple[int, int]]  # (row, col) corners on one instance
    point: tuple[int, int]              # a point to refine a candidate with


@functools.lru_cache(maxsize=1)
def _tiny_sam3_folder() -> Path:
    """The tiny random SAM 3 saved like the hub's snapshot (once per test session)."""
    from napari_samlabel.engine.families.sam3 import save_tiny_pretrained

    return save_tiny_pretrained(Path(tempfile.mkdtemp(prefix="sam3-gui-")) / "tiny", seed=0)


def _tiny_sam3() -> Any:
    """The tiny random SAM 3 through the real loader (masks meaningless, wiring real)."""
    from napari_samlabel.engine.families.sam3 import TINY_MODEL_TYPE
    from napari_samlabel.engine.loader import load_engine

    return load_engine(TINY_MODEL_TYPE, _tiny_sam3_folder(), device="cpu", precise=True,
                       cache=None)


def _noise() -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [(rng.random((64, 80, 3)) * 255).astype(np.uint8) for _ in range(2)]


CASES = {
    "colour-fake": Case(ColourConceptEngine, lambda: [concept_image(), concept_image()[::-1]],
                        12, ((12, 12), (24, 28)), (30, 40)),
}
if importlib.util.find_spec("transformers") is not None:
    CASES["tiny-sam3"] = Case(_tiny_sam3, _noise, 12, ((10, 10), (40, 50)), (30, 40))


@pytest.fixture(params=list(CASES))
def case(request) -> Case:
    return CASES[request.param]


@pytest.fixture()
def concept_session(annotate, tmp_path, qtbot, case):
    def make(engine=None):
        folder = tmp_path / "images"
        folder.mkdir(exist_ok=True)
        for k, img in enumerate(case.images()):
            Image.fromarray(np.ascontiguousarray(img)).save(folder / f"img{k}.png")
        engine = engine or case.engine()
        viewer, widget, a = annotate(folder, engine=engine)
        a.pick_class(case.class_id)
        return viewer, widget, a, engine, folder
    return make


def _panel(widget) -> ProposalsPanel:
    tabs = widget.tabs
    (index,) = [i for i in range(tabs.count()) if tabs.tabText(i) == "Proposals"]
    panel = tabs.widget(index)
    assert panel is widget.proposals_panel
    return panel


def _wait_found(qtbot, a, timeout=60000):
    p = a.session.proposals
    qtbot.waitUntil(lambda: not p.running and a.session.idle, timeout=timeout)


def _rows(panel) -> list[int]:
    tree = panel.tree
    return [int(tree.topLevelItem(r).text(0)) - 1 for r in range(tree.topLevelItemCount())]


def test_find_all_shows_candidates_and_the_slider_filters(concept_session, qtbot):
    viewer, widget, a, engine, _ = concept_session()
    panel = _panel(widget)
    panel.threshold.value = 0.0
    a.find_all()                                    # the Shift+F key: the selected class
    assert panel.cancel_button.isEnabled() or not a.session.proposals.running
    _wait_found(qtbot, a)
    p = a.session.proposals
    assert len(p.candidates) >= 1, panel.status.text()
    assert _rows(panel) == p.visible() == list(range(len(p.candidates)))
    assert panel.tree.topLevelItem(0).text(1) == f"{p.candidates[0].score:.2f}"
    layer = viewer.layers[LAYER_NAME]
    assert layer.visible and layer.contour > 0
    union = np.any([p.candidates[i].mask for i in p.visible()], axis=0)
    np.testing.assert_array_equal(np.asarray(layer.data) > 0, union)
    assert p.selected == 0 and panel.tree.currentItem().text(0) == "1"   # highlighted
    top = max(c.score for c in p.candidates)
    panel.threshold.value = min(1.0, top + 0.01)    # live filter
    assert _rows(panel) == [] and not layer.visible
    panel.threshold.value = 0.0
    assert len(_rows(panel)) == len(p.candidates) and layer.visible
    if len(p.candidates) > 1:
        between = (p.candidates[0].score + p.candidates[-1].score) / 2
        panel.threshold.value = between
        assert 0 < len(_rows(panel)) < len(p.candidates)


def test_accept_all_and_reject(concept_session, qtbot, case):
    viewer, widget, a, engine, folder = concept_session()
    panel = _panel(widget)
    panel.threshold.value = 0.0
    panel.find_button.click()
    _wait_found(qtbot, a)
    p, s = a.session.proposals, a.session
    n = len(p.candidates)
    assert n >= 1, panel.status.text()
    panel.reject_button.click()                     # the highlighted one
    assert p.candidates.decision(0) == Decision.REJECTED and len(_rows(panel)) == n - 1
    panel.accept_all_button.click()
    assert len(s.doc.objects) == n - 1 and _rows(panel) == []
    assert all(o.class_id == case.class_id for o in s.doc.objects)
    if n > 1:
        assert viewer.layers["semantic"].visible
        assert np.count_nonzero(viewer.layers["semantic"].data == case.class_id) > 0
        stored = Project.open(folder).read_objects(s.image_id())
        assert len(stored) == n - 1 and "source" in stored[0].attributes
    a.undo()                                        # Ctrl+Z: one step takes them all out
    assert s.doc.objects == () and len(_rows(panel)) == n - 1


def test_exemplar_box_finds_similar(concept_session, qtbot, case):
    viewer, widget, a, engine, _ = concept_session()
    panel = _panel(widget)
    panel.threshold.value = 0.0
    assert not panel.find_similar()                 # no box yet: box mode to draw one
    assert viewer.layers.selection.active is a.bridge.shapes_layer
    (r0, c0), (r1, c1) = case.exemplar
    a.bridge.shapes_layer.add_rectangles(np.array([[r0, c0], [r1, c1]], float))
    wait_idle(qtbot, a.session)
    assert any(isinstance(q, Box) for q in a.session.doc.current.prompts)
    panel.similar_button.click()
    _wait_found(qtbot, a)
    p = a.session.proposals
    assert len(p.candidates) >= 1, panel.status.text()
    assert all(c.source.startswith("exemplar") for c in p.candidates)
    assert a.session.doc.current.prompts == ()      # the box became the exemplar
    assert len(_rows(panel)) == len(p.visible())


def test_refine_a_candidate_with_a_point(concept_session, qtbot, case):
    viewer, widget, a, engine, _ = concept_session()
    panel = _panel(widget)
    panel.threshold.value = 0.0
    a.find_all()
    _wait_found(qtbot, a)
    p = a.session.proposals
    assert len(p.candidates) >= 1, panel.status.text()
    cand = p.candidates[0]
    sent = []
    predict = engine.predict

    def spy(inputs):
        sent.append(inputs)
        return predict(inputs)
    engine.predict = spy
    panel.refine_button.click()
    s = a.session
    assert s.doc.current.candidate is cand and p.candidates.decision(0) == Decision.REFINING
    assert viewer.layers["current object"].visible
    np.testing.assert_array_equal(viewer.layers["current object"].data > 0, cand.mask)
    assert viewer.layers.selection.active is a.bridge.points_layer
    a.bridge.points_layer.add(list(case.point))
    qtbot.waitUntil(lambda: bool(sent) and s.idle and s.doc.current.prediction_is_current,
                    timeout=60000)
    assert sent[-1].mask_input is not None and cand.low_res_logits is not None
    np.testing.assert_array_equal(np.asarray(sent[-1].mask_input).reshape(256, 256),
                                  np.asarray(cand.low_res_logits).reshape(256, 256))
    obj = a.accept()
    assert obj is not None and obj.attributes["source"] == cand.source
    assert p.candidates.decision(0) == Decision.ACCEPTED


@pytest.mark.parametrize("case", ["colour-fake"], indirect=True)  # its own slow fake
def test_a_long_search_cancels_and_the_window_stays_live(concept_session, qtbot):
    engine = ColourConceptEngine(delay=1.0)
    viewer, widget, a, _, _ = concept_session(engine)
    panel = _panel(widget)
    panel.find_button.click()
    assert panel.cancel_button.isEnabled() and not panel.find_button.isEnabled()
    assert engine.started.wait(10)
    qtbot.wait(50)                                  # the GUI thread runs meanwhile
    panel.cancel_button.click()
    assert not panel.cancel_button.isEnabled() and panel.find_button.isEnabled()
    assert "cancelled" in panel.status.text()
    wait_idle(qtbot, a.session)
    assert engine.steps == 1 and len(a.session.proposals.candidates) == 0


def test_without_a_concept_model_the_tab_says_so(annotate, image_folder):
    viewer, widget, a = annotate(image_folder)      # the disk fake: points and boxes only
    panel = _panel(widget)
    a.find_all()
    assert "concept model" in panel.status.text()
    from napari_samlabel._napari.panels import help_text

    assert "Shift-F" in help_text() and "proposals: accept every candidate" in help_text()


def test_propose_with_a_trained_prompter(annotate, tmp_path, qtbot, tiny_engine):
    """Propose with… a prompter folder: candidates of source "prompter", accept one, Shift+P."""
    from tests.annotate.test_proposal_sources import save_tiny_prompter

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for k in range(2):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
            folder / f"img{k}.png")
    good = save_tiny_prompter(tmp_path / "run" / "prompter.pt", tiny_engine)
    other = save_tiny_prompter(tmp_path / "other.pt", tiny_engine, model_id="sam:vit_h:0")
    viewer, widget, a = annotate(folder, engine=tiny_engine)
    panel = _panel(widget)
    p, s = a.session.proposals, a.session
    panel.source_path.value = tmp_path / "nowhere"
    panel.propose_button.click()                    # a notice, not a traceback
    assert "nowhere does not exist" in panel.status.text() and not p.running
    panel.source_path.value = other
    panel.propose_button.click()
    assert "trained against SAM 'sam:vit_h:0'" in panel.status.text() and p.source is None
    panel.source_path.value = good.parent
    panel.propose_button.click()
    _wait_found(qtbot, a)
    assert len(p.candidates) >= 1, panel.status.text()
    assert _rows(panel) == p.visible() and _rows(panel)
    assert {panel.tree.topLevelItem(r).text(3) for r in range(len(_rows(panel)))} == {
        "prompter"}
    assert panel.propose_button.isEnabled() and not panel.cancel_button.isEnabled()
    panel.accept_button.click()
    assert len(s.doc.objects) == 1 and s.doc.objects[0].attributes["source"] == "prompter"
    assert p.candidates.decision(0) == Decision.ACCEPTED
    a.next_image()
    wait_idle(qtbot, s)
    assert len(p.candidates) == 0
    a.propose_again()                               # Shift+P: the source loaded before
    _wait_found(qtbot, a)
    assert len(p.candidates) >= 1 and _rows(panel), panel.status.text()
    from napari_samlabel._napari.panels import help_text

    assert "<b>Shift-P</b></td><td>proposals: propose with the trained" in help_text()
