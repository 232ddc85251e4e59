"""Opening a trained proposal source from a path, and proposing with it in the session."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from napari_samlabel.annotate.proposal_sources import SourceError, open_source, source_kind
from napari_samlabel.annotate.session import session_for_project
from napari_samlabel.core.candidates import Decision
from napari_samlabel.io.folder import project_for_folder
from napari_samlabel.testing.fakes import DiskEngine

torch = pytest.importorskip("torch")


def save_tiny_prompter(path, engine, model_id=None):
    """A random prompter for ``engine`` whose class head is sure of "dog" (so it proposes)."""
    from napari_samlabel.core.classes import ClassTable
    from napari_samlabel.learn.prompter import Prompter, PrompterInfo, config_for, save_prompter

    torch.manual_seed(0)
    cfg = config_for(engine, 2, d_model=32, heads=4, encoder_layers=1, decoder_layers=1,
                     feedforward=64, queries=3)
    model = Prompter(cfg)
    with torch.no_grad():  # every query: "dog" (p ~ 0.99), whatever the image
        model.class_head.weight.zero_()
        model.class_head.bias.copy_(torch.tensor([6.0, 0.0, 0.0]))
    table = ClassTable(("background", "dog", "cat"))
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_prompter(path, model, PrompterInfo(cfg, table, model_id or engine.model_id))


def save_tiny_segmenter(folder):
    from napari_samlabel.learn.segmenter import SegmenterMeta, build_segmenter, save_model

    torch.manual_seed(0)
    net = build_segmenter("lraspp", 3).eval()
    with torch.no_grad():  # random weights, but "dog" everywhere: one sure component
        net.classifier.high_classifier.bias.copy_(torch.tensor([0.0, 8.0, 0.0]))
    save_model(folder, net,
               SegmenterMeta("lraspp", ["background", "dog", "cat"], 32))
    return folder


@pytest.fixture()
def folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
            folder / f"{name}.png")
    return folder


def test_kinds_of_paths_and_their_errors(tmp_path, tiny_engine):
    prompter = save_tiny_prompter(tmp_path / "run" / "prompter.pt", tiny_engine)
    seg = save_tiny_segmenter(tmp_path / "seg")
    assert source_kind(prompter.parent) == source_kind(prompter) == "prompter"
    assert source_kind(seg) == source_kind(seg / "model.pt") == "segmenter"
    with pytest.raises(SourceError, match=r"missing.*does not exist.*prompter folder"):
        source_kind(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match=r"empty holds neither prompter.pt nor model.json"):
        source_kind(empty)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match="notes.txt is not a proposal source"):
        source_kind(tmp_path / "notes.txt")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model.json").write_text("{}")
    with pytest.raises(SourceError, match="no model.pt"):
        source_kind(tmp_path / "half")
    (tmp_path / "half" / "model.pt").write_bytes(b"")
    with pytest.raises(SourceError, match="not a napari-samlabel segmenter"):
        open_source(tmp_path / "half")
    (tmp_path / "junk.pt").write_bytes(b"not torch")
    with pytest.raises(SourceError, match="cannot read prompter file .*junk.pt"):
        open_source(tmp_path / "junk.pt", tiny_engine)


def test_a_prompter_of_another_sam_is_refused(tmp_path, tiny_engine):
    path = save_tiny_prompter(tmp_path / "p.pt", tiny_engine, model_id="sam:vit_b:deadbeef")
    with pytest.raises(SourceError, match=r"p.pt was trained against SAM 'sam:vit_b:deadbeef'"):
        open_source(path, tiny_engine)
    open_source(path)  # without an engine to compare with, it opens


def test_propose_with_a_prompter_then_again_on_the_next_image(folder, tmp_path, tiny_engine):
    path = save_tiny_prompter(tmp_path / "run" / "prompter.pt", tiny_engine)
    s = session_for_project(project_for_folder(folder), engine=tiny_engine)
    s.open_image(0)
    ctrl = s.proposals
    messages: list[str] = []
    ctrl.events.message.connect(messages.append)
    assert ctrl.propose_with(path.parent)
    cands = ctrl.candidates
    assert len(cands) >= 1 and {c.source for c in cands} == {"prompter"}
    assert {c.class_id for c in cands} == {s.classes.index("dog")}
    assert cands[0].mask.shape == (48, 64) and cands[0].low_res_logits is not None
    assert "prompter (run)" in messages[-1]
    obj = ctrl.accept_candidate(0)
    assert obj is not None and obj.attributes["source"] == "prompter"
    assert cands.decision(0) == Decision.ACCEPTED and len(s.doc.objects) == 1
    s.open_image(1)
    assert len(ctrl.candidates) == 0
    assert ctrl.propose_again()                       # remembered for the next images
    assert len(ctrl.candidates) >= 1
    cand = ctrl.candidates[0]
    ctrl.refine_candidate(0)                          # SAM's own logits go on as mask_input
    assert s.doc.current.candidate is cand and s.doc.current.logits is not None
    np.testing.assert_array_equal(s.doc.current.logits[0], cand.low_res_logits)
    obj = s.accept()
    assert obj is not None and obj.attributes["source"] == "prompter"
    assert ctrl.candidates.decision(0) == Decision.ACCEPTED


def test_propose_with_a_segmenter_folder(folder, tmp_path):
    seg = save_tiny_segmenter(tmp_path / "seg")
    s = session_for_project(project_for_folder(folder), engine=DiskEngine(radius=5))
    s.open_image(0)
    assert s.proposals.propose_with(seg)
    cands = s.proposals.candidates
    assert len(cands) >= 1 and {c.source for c in cands} == {"model:lraspp"}
    assert cands[0].class_id == s.classes.index("dog") and cands[0].score > 0.9


def test_bad_paths_are_messages_and_keep_the_loaded_source(folder, tmp_path, tiny_engine):
    s = session_for_project(project_for_folder(folder), engine=tiny_engine)
    s.open_image(0)
    ctrl = s.proposals
    messages: list[str] = []
    ctrl.events.message.connect(messages.append)
    assert not ctrl.propose_again() and "no trained source loaded" in messages[-1]
    good = save_tiny_prompter(tmp_path / "p.pt", tiny_engine)
    assert ctrl.load_source(good) is not None
    assert not ctrl.propose_with(tmp_path / "nowhere")
    assert "nowhere does not exist" in messages[-1] and not ctrl.running
    other = save_tiny_prompter(tmp_path / "o.pt", tiny_engine, model_id="sam:vit_h:0")
    assert not ctrl.propose_with(other) and "trained against SAM 'sam:vit_h:0'" in messages[-1]
    assert ctrl.source_path == str(good)
