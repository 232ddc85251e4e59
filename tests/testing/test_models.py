"""The tiny test models come from the families' own configurations."""

import torch

from napari_samlabel.engine.checkpoint import load_model
from napari_samlabel.engine.families import tiny_models
from napari_samlabel.testing.models import (
    TINY_MODEL_TYPE,
    TINY_MODELS,
    build_tiny_model,
    save_tiny_checkpoint,
)


def test_tiny_models_are_the_families_own():
    assert TINY_MODELS == tiny_models()
    assert TINY_MODELS[TINY_MODEL_TYPE][0] == "sam"


def test_tiny_builds_are_seeded_and_saved_like_official_files(tmp_path):
    a, b = build_tiny_model(seed=1).state_dict(), build_tiny_model(seed=1).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    path = save_tiny_checkpoint(tmp_path / "tiny.pth", seed=1)
    assert set(torch.load(path, weights_only=True)) == set(a)  # the state dict itself
    loaded = load_model(TINY_MODEL_TYPE, path).state_dict()
    assert all(torch.equal(loaded[k], a[k]) for k in a)
