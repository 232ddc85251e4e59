import importlib.util
import re

import pytest

from napari_samlabel.engine.errors import CheckpointError, ModelUnavailableError
from napari_samlabel.engine.families import (
    FAMILIES,
    family_available,
    install_hint,
    missing_modules,
)
from napari_samlabel.engine.families.sam import TINY_CONFIG
from napari_samlabel.engine.registry import (
    DEFAULT_MODEL,
    canonical_name,
    get_model_spec,
    model_names,
)
from napari_samlabel.testing.models import TINY_MODEL_TYPE, TINY_MODELS

OFFICIAL = ["vit_b", "vit_l", "vit_h", "vit_t", "sam_hq_vit_b", "sam_hq_vit_l", "sam_hq_vit_h",
            "sam_hq_vit_tiny", "sam2.1_hiera_tiny", "sam2.1_hiera_small",
            "sam2.1_hiera_base_plus", "sam2.1_hiera_large", "sam3"]
#: Models whose checkpoint is one downloadable file (SAM 3's is a gated hub folder).
FILE_MODELS = [n for n in OFFICIAL if n != "sam3"]


def test_official_models_have_url_checksum_and_filename():
    assert model_names(include_tests=False) == OFFICIAL
    assert DEFAULT_MODEL == "vit_b"
    hosts = {"sam": "https://dl.fbaipublicfiles.com/segment_anything/",
             "sam2": "https://dl.fbaipublicfiles.com/segment_anything_2/092824/",
             "sam_hq": "https://huggingface.co/lkeab/hq-sam/resolve/main/",
             "mobile_sam": "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/"}
    sam3 = get_model_spec("sam3")
    assert sam3.hub_repo == "facebook/sam3" and not sam3.downloadable and sam3.cpu_encode_s
    for name in FILE_MODELS:
        spec = get_model_spec(name)
        assert spec.downloadable and not spec.for_tests
        assert spec.url == hosts[spec.family] + spec.filename
        if spec.sha256 is not None:
            assert re.fullmatch(r"[0-9a-f]{64}", spec.sha256)
            assert spec.known_hash == f"sha256:{spec.sha256}"
        else:  # only SAM-HQ B/L publish no SHA-256
            assert name in ("sam_hq_vit_b", "sam_hq_vit_l")
            assert re.fullmatch(r"[0-9a-f]{32}", spec.md5)
            assert spec.known_hash == f"md5:{spec.md5}"
    # The published sums (each also found in other projects' registries).
    assert get_model_spec("vit_b").sha256.startswith("ec2df627")
    assert get_model_spec("vit_l").sha256.startswith("3adcc431")
    assert get_model_spec("vit_h").sha256.startswith("a7bf3b02")
    assert get_model_spec("vit_t").sha256.startswith("6dbb9052")
    assert get_model_spec("sam2.1_hiera_tiny").sha256.startswith("7402e0d8")
    assert get_model_spec("sam2.1_hiera_large").sha256.startswith("2647878d")
    assert get_model_spec("sam_hq_vit_h").sha256.startswith("a7ac14a0")


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _official_builder(name):
    """The model packages' own builders, for comparison with our configs."""
    spec = get_model_spec(name)
    if spec.family == "sam":
        from segment_anything import sam_model_registry
        return lambda: sam_model_registry[name](checkpoint=None)
    if spec.family == "mobile_sam":
        from mobile_sam import sam_model_registry
        return lambda: sam_model_registry["vit_t"](checkpoint=None)
    if spec.family == "sam_hq":
        from segment_anything_hq import sam_model_registry
        return lambda: sam_model_registry[name.removeprefix("sam_hq_")](checkpoint=None)
    from sam2.build_sam import build_sam2
    cfg = spec.config["config_file"]
    return lambda: build_sam2(cfg, ckpt_path=None, device="cpu")


@pytest.mark.parametrize("name", FILE_MODELS)  # SAM 3: tests/engine/families/test_sam3.py
def test_configs_build_the_packages_own_architectures(name):
    """Every parameter name and shape equals what the model's own package builds."""
    import torch

    spec = get_model_spec(name)
    if not family_available(spec.family):
        pytest.skip(f"{spec.family} not installed")
    # Shapes only: ViTs build on the meta device (no memory, no init time); TinyViT and
    # Hiera call .item() while building, so they are built for real (they are small).
    meta = "encoder_embed_dim" in spec.config
    with torch.device("meta" if meta else "cpu"):
        ours = spec.build()
        theirs = _official_builder(name)()
    assert _shapes(ours) == _shapes(theirs)
    assert not ours.training


def test_aliases_resolve_to_one_identity():
    assert canonical_name("mobile_sam") == "vit_t"
    assert get_model_spec("mobile_sam") is get_model_spec("vit_t")
    assert get_model_spec("sam2.1_b+").name == "sam2.1_hiera_base_plus"
    assert canonical_name("vit_b") == "vit_b"


def test_test_models_are_loudly_for_tests_and_not_downloadable():
    assert set(TINY_MODELS) <= set(model_names())
    assert not set(TINY_MODELS) & set(model_names(include_tests=False))
    for name, (family, config) in TINY_MODELS.items():
        spec = get_model_spec(name)
        assert spec.for_tests and spec.family == family and spec.config == config
        assert spec.url is None and spec.known_hash is None and not spec.downloadable
        assert "FOR TESTS ONLY" in spec.description
    assert get_model_spec(TINY_MODEL_TYPE).config == TINY_CONFIG


def test_build_gives_the_empty_architecture():
    sam = get_model_spec(TINY_MODEL_TYPE).build()
    assert sam.image_encoder.patch_embed.proj.out_channels == TINY_CONFIG["encoder_embed_dim"]
    assert len(sam.image_encoder.blocks) == TINY_CONFIG["encoder_depth"]
    assert not sam.training


def test_unknown_model_lists_known_ones():
    with pytest.raises(KeyError, match="vit_b, vit_l, vit_h, vit_t"):
        get_model_spec("vit_x")


def test_every_family_is_declared_with_an_extra():
    assert set(FAMILIES) == {"sam", "mobile_sam", "sam_hq", "sam2", "sam3"}
    assert install_hint("sam3") == 'pip install "napari-samlabel[sam3]"'
    assert install_hint("sam2") == 'pip install "napari-samlabel[sam2]"'
    assert install_hint("mobile_sam") == 'pip install "napari-samlabel[mobilesam]"'
    assert install_hint("sam_hq") == 'pip install "napari-samlabel[hq]"'


def test_missing_package_is_a_clear_error_with_the_pip_command(monkeypatch, tmp_path):
    """Asking for a model whose optional package is absent names the package and the fix."""
    from napari_samlabel.engine.checkpoint import load_model
    from napari_samlabel.engine.loader import load_engine

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sam2" else real(name, *a))
    assert missing_modules("sam2") == ["sam2"]
    assert not family_available("sam2")
    ckpt = tmp_path / "weights.pt"
    ckpt.write_bytes(b"never read")
    for call in (lambda: get_model_spec("sam2.1_hiera_tiny").build(),
                 lambda: load_model("sam2.1_hiera_tiny", ckpt),
                 lambda: load_engine("sam2.1_hiera_tiny", ckpt, cache=None)):
        with pytest.raises(ModelUnavailableError) as info:
            call()
        msg = str(info.value)
        assert "'sam2.1_hiera_tiny'" in msg and "sam2" in msg
        assert 'pip install "napari-samlabel[sam2]"' in msg
        # CLI and GUI catch CheckpointError: this one is shown the same way.
        assert isinstance(info.value, CheckpointError)


def test_model_choices_say_what_is_missing(tmp_path, monkeypatch):
    from napari_samlabel.engine.catalogue import model_choices

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mobile_sam" else real(name, *a))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "sam2.1_hiera_tiny.pt").write_bytes(b"x")
    rows = {r.name: r for r in model_choices(tmp_path)}
    assert list(rows) == OFFICIAL
    assert rows["vit_b"].default and not rows["vit_t"].default
    assert not rows["vit_t"].installed and "not installed" in rows["vit_t"].label
    assert rows["vit_t"].install_hint == 'pip install "napari-samlabel[mobilesam]"'
    assert rows["sam2.1_hiera_tiny"].cached and "downloads" not in rows["sam2.1_hiera_tiny"].label
    assert "downloads on first use" in rows["vit_h"].label
    assert rows["vit_b"].label.startswith("vit_b — Segment Anything")
    tests = {r.name for r in model_choices(tmp_path, include_tests=True)} - set(OFFICIAL)
    assert tests == set(TINY_MODELS)
