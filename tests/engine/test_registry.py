import re

import pytest

from napari_samlabel.engine.registry import DEFAULT_MODEL, get_model_spec, model_names
from napari_samlabel.engine.testing import TINY_CONFIG, TINY_MODEL_TYPE


def test_official_models_have_url_sha_and_filename():
    assert model_names(include_tests=False) == ["vit_b", "vit_l", "vit_h"]
    assert DEFAULT_MODEL == "vit_b"
    for name in ("vit_b", "vit_l", "vit_h"):
        spec = get_model_spec(name)
        assert spec.url == f"https://dl.fbaipublicfiles.com/segment_anything/{spec.filename}"
        assert spec.filename.startswith(f"sam_{name}_")
        assert re.fullmatch(r"[0-9a-f]{64}", spec.sha256)
        assert not spec.for_tests
    # The published sums (also used by micro-sam and others).
    assert get_model_spec("vit_b").sha256.startswith("ec2df627")
    assert get_model_spec("vit_l").sha256.startswith("3adcc431")
    assert get_model_spec("vit_h").sha256.startswith("a7bf3b02")


def test_configs_match_segment_anything_builders():
    # The encoder widths/depths are the ones segment-anything's own builders use.
    assert get_model_spec("vit_b").config["encoder_embed_dim"] == 768
    assert get_model_spec("vit_l").config["encoder_depth"] == 24
    assert get_model_spec("vit_h").config["encoder_global_attn_indexes"] == [7, 15, 23, 31]


def test_test_model_is_loudly_for_tests_and_not_downloadable():
    spec = get_model_spec(TINY_MODEL_TYPE)
    assert spec.for_tests
    assert spec.url is None and spec.sha256 is None
    assert "FOR TESTS ONLY" in spec.description
    assert spec.config == TINY_CONFIG


def test_build_gives_the_empty_architecture():
    sam = get_model_spec(TINY_MODEL_TYPE).build()
    assert sam.image_encoder.patch_embed.proj.out_channels == TINY_CONFIG["encoder_embed_dim"]
    assert len(sam.image_encoder.blocks) == TINY_CONFIG["encoder_depth"]
    assert not sam.training


def test_unknown_model_lists_known_ones():
    with pytest.raises(KeyError, match="vit_b, vit_l, vit_h"):
        get_model_spec("vit_x")
