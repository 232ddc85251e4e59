"""The model picker's data, headless: the list, and the state in words."""

from __future__ import annotations

from types import SimpleNamespace

from napari_samlabel.annotate.model import EngineOptions, model_list, model_state_text
from napari_samlabel.testing.fakes import DiskEngine


def test_model_list_holds_the_current_model_even_a_test_one():
    names = [c.name for c in model_list("vit_b")]
    assert "vit_b" in names
    tests = [c.name for c in model_list("no-such-model")]
    assert tests == names                                  # unknown: nothing added
    from napari_samlabel.engine.catalogue import model_choices

    test_only = [c.name for c in model_choices(include_tests=True) if c.name not in names]
    if test_only:
        assert test_only[0] in [c.name for c in model_list(test_only[0])]


def test_model_state_in_words():
    assert model_state_text(None) == "no model loaded (see the status line)"
    engine = DiskEngine()
    assert model_state_text(None, "vit_b") == "loading vit_b…"
    assert model_state_text(engine, "vit_l") == "loading vit_l… (fake-disk in use meanwhile)"
    assert model_state_text(engine) == "loaded: fake-disk (? encoder on cpu)"
    sam = SimpleNamespace(model_id="vit_b:abc", precision="bfloat16", device="cpu")
    assert model_state_text(sam) == "loaded: vit_b:abc (bfloat16 encoder on cpu)"
    assert EngineOptions().model == "vit_b" and EngineOptions().checkpoint is None
