"""Every model family through the real loader and engine, with its tiny random-weight model.

SAM, MobileSAM, SAM-HQ and SAM 2 each get a checkpoint saved in the official layout,
loaded by ``load_engine`` (weights-only, strict) and driven through the engine protocol;
results are compared with the family's own predictor on the same weights.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_samlabel.engine.cache import EmbeddingCache
from napari_samlabel.engine.checkpoint import CheckpointError, load_model
from napari_samlabel.engine.families import family_available, make_predictor
from napari_samlabel.engine.loader import load_engine
from napari_samlabel.engine.protocol import Engine, Prediction, SamInputs
from napari_samlabel.testing.models import (
    MOBILE_SAM_TINY_MODEL_TYPE,
    SAM2_TINY_MODEL_TYPE,
    SAM_HQ_TINY_MODEL_TYPE,
    TINY_MODEL_TYPE,
    TINY_MODELS,
    save_tiny_checkpoint,
)

# The families with one checkpoint file and a SamPredictor-like predictor; SAM 3 (a
# Hugging Face folder, two models) has its own tests in test_sam3.py.
MODELS = [mt for mt in TINY_MODELS if TINY_MODELS[mt][0] != "sam3"]


def _needs(model_type: str) -> None:
    family = TINY_MODELS[model_type][0]
    if not family_available(family):
        pytest.skip(f"the {family} package is not installed")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("family_ckpts")
    out = {}
    for mt in MODELS:
        if family_available(TINY_MODELS[mt][0]):
            out[mt] = save_tiny_checkpoint(root / f"{mt}.pt", model_type=mt)
    return out


@pytest.fixture(scope="module")
def engines(checkpoints, tmp_path_factory):
    """One precise (float32) engine per family, sharing a disk cache."""
    root = tmp_path_factory.mktemp("family_cache")
    return {mt: load_engine(mt, path, device="cpu", precise=True, cache=root / "emb",
                            cache_dir=root)
            for mt, path in checkpoints.items()}


def _pts(*xy, labels=None, **kw):
    coords = np.array(xy, dtype=np.float32)
    labels = np.ones(len(xy), np.int32) if labels is None else np.array(labels, np.int32)
    return SamInputs(point_coords=coords, point_labels=labels, **kw)


@pytest.mark.parametrize("mt", MODELS)
def test_engine_shapes_and_protocol(mt, engines, rect_image):
    _needs(mt)
    engine = engines[mt]
    assert isinstance(engine, Engine)
    assert engine.model_id.startswith(f"{mt}:") and engine.family == TINY_MODELS[mt][0]
    engine.set_image(rect_image)
    pred = engine.predict(_pts((60, 40)))
    assert isinstance(pred, Prediction)
    k = 1 if mt == SAM_HQ_TINY_MODEL_TYPE else 3  # SAM-HQ refines one mask
    assert pred.masks.shape == (k, 96, 128) and pred.masks.dtype == bool
    assert pred.iou_predictions.shape == (k,) and pred.low_res_logits.shape == (k, 256, 256)
    assert pred.logits_frame == ("stretch" if mt == SAM2_TINY_MODEL_TYPE else "pad")
    single = engine.predict(SamInputs(box=np.array([30, 20, 90, 60], np.float32),
                                      multimask_output=False))
    assert single.masks.shape == (1, 96, 128)


@pytest.mark.parametrize("mt", MODELS)
def test_engine_matches_the_familys_own_predictor(mt, engines, checkpoints, rect_image):
    """Same checkpoint, the package's own predictor and set_image: the same answer."""
    _needs(mt)
    engine = engines[mt]
    family = TINY_MODELS[mt][0]
    stock = make_predictor(family, load_model(mt, checkpoints[mt]))  # unpatched model
    stock.set_image(rect_image)
    engine.set_image(rect_image)
    pts, lab = np.array([[60, 40], [10, 10]], np.float32), np.array([1, 0])
    masks, iou, low = stock.predict(point_coords=pts, point_labels=lab, multimask_output=True)
    pred = engine.predict(SamInputs(point_coords=pts, point_labels=lab))
    # The engine installs the float16-stored embedding, so logits agree closely, not exactly.
    np.testing.assert_allclose(pred.low_res_logits, low, atol=0.05 * np.abs(low).max())
    np.testing.assert_allclose(pred.iou_predictions, iou, atol=0.02)
    agree = (pred.masks == np.asarray(masks, bool)).mean()
    assert agree > 0.99


@pytest.mark.parametrize("mt", MODELS)
def test_coordinates_reach_the_model_as_x_y(mt, engines, rect_image, monkeypatch):
    """Points and boxes are handed to the family's predictor unchanged, as (x, y) pixels."""
    _needs(mt)
    engine = engines[mt]
    seen = {}
    original = engine.predictor.predict

    def spy(**kw):
        seen.update(kw)
        return original(**kw)

    monkeypatch.setattr(engine.predictor, "predict", spy)
    engine.set_image(rect_image)
    engine.predict(_pts((100, 10), (5, 90), labels=[1, 0],
                        box=np.array([30, 20, 90, 60], np.float32)))
    np.testing.assert_array_equal(seen["point_coords"], [[100, 10], [5, 90]])
    assert seen["point_labels"].tolist() == [1, 0]
    np.testing.assert_array_equal(seen["box"], [30, 20, 90, 60])
    if mt == SAM2_TINY_MODEL_TYPE:
        assert seen["normalize_coords"] is True  # pixels, not [0, 1]


@pytest.mark.parametrize("mt", MODELS)
def test_previous_logits_go_back_as_mask_input(mt, engines, rect_image, monkeypatch):
    _needs(mt)
    engine = engines[mt]
    engine.set_image(rect_image)
    first = engine.predict(_pts((60, 40)))
    prev = first.low_res_logits[[int(np.argmax(first.iou_predictions))]]
    seen = {}
    original = engine.predictor.predict

    def spy(**kw):
        seen.update(kw)
        return original(**kw)

    monkeypatch.setattr(engine.predictor, "predict", spy)
    with_logits = engine.predict(_pts((60, 40), (70, 30), mask_input=prev,
                                      multimask_output=False))
    np.testing.assert_array_equal(seen["mask_input"], prev)
    without = engine.predict(_pts((60, 40), (70, 30), multimask_output=False))
    assert not np.array_equal(with_logits.low_res_logits, without.low_res_logits)


@pytest.mark.parametrize("mt", MODELS)
def test_embedding_cache_and_round_trip(mt, engines, checkpoints, astronaut, rect_image,
                                        tmp_path):
    _needs(mt)
    engine = engines[mt]
    engine.set_image(astronaut)
    expected = engine.predict(_pts((30, 60)))
    emb = engine.get_embedding()
    if mt == SAM2_TINY_MODEL_TYPE:
        assert set(emb.extras) == {"high_res_0", "high_res_1"}
        assert emb.input_size == (1024, 1024)
    elif mt == SAM_HQ_TINY_MODEL_TYPE:
        assert set(emb.extras) == {"interm_0"}
    else:
        assert not emb.extras
    # Another engine on the same weights reads the disk cache: no encode.
    other = load_engine(mt, checkpoints[mt], device="cpu", precise=True,
                        cache=EmbeddingCache(engine.cache.directory, memory_items=0),
                        cache_dir=tmp_path)
    other.set_image(astronaut)
    assert other.encode_count == 0
    np.testing.assert_array_equal(other.predict(_pts((30, 60))).masks, expected.masks)
    # set_embedding restores an image without encoding it.
    other.set_image(rect_image)
    other.set_embedding(emb)
    np.testing.assert_array_equal(other.predict(_pts((30, 60))).masks, expected.masks)


@pytest.mark.parametrize("mt", MODELS)
def test_encode_leaves_the_current_image_alone(mt, engines, astronaut, rect_image):
    """The GUI prefetches the next image with encode() while the annotator decodes."""
    _needs(mt)
    engine = engines[mt]
    engine.set_image(rect_image)
    before = engine.predict(_pts((60, 40)))
    emb, _ = engine.encode(astronaut[:, ::-1].copy())
    assert emb.original_size == (128, 128)
    after = engine.predict(_pts((60, 40)))
    np.testing.assert_array_equal(before.masks, after.masks)


@pytest.mark.parametrize("mt", MODELS)
def test_bfloat16_encoder_stays_close_to_float32(mt, engines, checkpoints, astronaut):
    from napari_samlabel.engine.device import cpu_supports_bf16

    _needs(mt)
    fast = load_engine(mt, checkpoints[mt], device="cpu", cache=None)
    if not cpu_supports_bf16():
        assert fast.precision != "bfloat16"
        pytest.skip("no native bfloat16 on this CPU")
    assert fast.precision == "bfloat16"
    _assert_close_to_float32(fast, engines[mt], astronaut, 0.999)


def _assert_close_to_float32(fast, precise, image, min_cosine):
    """``fast``'s embedding (every feature map) is close to ``precise``'s; it decodes."""
    a, _ = fast.encode(image)
    b, _ = precise.encode(image)
    assert a.precision == fast.precision and b.precision == "float32"
    for x, y in [(a.features, b.features),
                 *((a.extras[k], b.extras[k]) for k in b.extras)]:
        x, y = x.astype(np.float64).ravel(), y.astype(np.float64).ravel()
        assert x @ y / np.linalg.norm(x) / np.linalg.norm(y) > min_cosine
    fast.set_image(image)  # decoding runs in float32 after a faster encode
    assert fast.predict(_pts((30, 60))).masks.dtype == bool


@pytest.mark.parametrize("mt", MODELS)
def test_int8_encoder_stays_close_to_float32(mt, engines, checkpoints, astronaut, monkeypatch):
    """int8 linears (the mode of CPUs with VNNI and no bfloat16) for every family."""
    from napari_samlabel.engine.int8 import int8_available

    _needs(mt)
    if not int8_available():
        pytest.skip("oneDNN's int8 linear does not run here")
    monkeypatch.setenv("SAMLABEL_PRECISION", "int8")
    fast = load_engine(mt, checkpoints[mt], device="cpu", cache=None)
    assert fast.precision == "int8"
    enc = fast.model.image_encoder
    assert any(type(m.forward).__name__ == "Int8Linear" for m in enc.modules()) or any(
        getattr(m, "_lean_ops", None) is not None for m in enc.modules())
    _assert_close_to_float32(fast, engines[mt], astronaut, 0.995)


@pytest.mark.parametrize(("file_of", "loaded_as"), [
    (TINY_MODEL_TYPE, SAM_HQ_TINY_MODEL_TYPE),       # plain SAM weights are not SAM-HQ
    (SAM2_TINY_MODEL_TYPE, TINY_MODEL_TYPE),
    (MOBILE_SAM_TINY_MODEL_TYPE, SAM2_TINY_MODEL_TYPE),
])
def test_wrong_family_checkpoint_names_the_right_one(file_of, loaded_as, checkpoints):
    _needs(file_of)
    _needs(loaded_as)
    with pytest.raises(CheckpointError) as info:
        load_model(loaded_as, checkpoints[file_of])
    msg = str(info.value)
    assert str(checkpoints[file_of]) in msg and f"{loaded_as!r}" in msg
    assert f"looks like a {file_of!r} checkpoint: use --model {file_of}" in msg


def test_sam2_checkpoint_without_model_key_is_read_too(checkpoints, tmp_path):
    import torch

    _needs(SAM2_TINY_MODEL_TYPE)
    state = torch.load(checkpoints[SAM2_TINY_MODEL_TYPE], weights_only=True)
    assert set(state) == {"model"}  # Meta's layout
    bare = tmp_path / "bare.pt"
    torch.save(state["model"], bare)
    model = load_model(SAM2_TINY_MODEL_TYPE, bare)
    assert not model.training


@pytest.mark.parametrize("mt", MODELS)
def test_a_vnni_cpu_gets_int8_where_it_pays(mt, checkpoints, monkeypatch):
    """Automatic choice on a CPU with VNNI and no bfloat16: int8, except for TinyViT
    encoders, which int8 linears made slower (they stay float32)."""
    from napari_samlabel.engine import device
    from napari_samlabel.engine.int8 import int8_available

    _needs(mt)
    if not int8_available():
        pytest.skip("oneDNN's int8 linear does not run here")
    monkeypatch.delenv("SAMLABEL_PRECISION", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(device, "_cpu_flags", lambda: frozenset({"avx2", "avx512_vnni"}))
    engine = load_engine(mt, checkpoints[mt], device="cpu", cache=None)
    tiny_vit = type(engine.model.image_encoder).__name__ == "TinyViT"
    assert engine.precision == ("float32" if tiny_vit else "int8")


@pytest.mark.parametrize("mt", MODELS)
def test_encode_reports_its_blocks_in_this_thread_only(mt, checkpoints, astronaut):
    """encode_progress: (0, n) first, then one call per encoder block, ending at (n, n)."""
    import threading

    from napari_samlabel.engine.base import encode_progress

    _needs(mt)
    engine = load_engine(mt, checkpoints[mt], device="cpu", cache=None)
    seen = []
    with encode_progress(lambda done, total: seen.append((done, total))):
        engine.encode(astronaut)
        t = threading.Thread(target=lambda: engine.encode(astronaut[::-1].copy()))
        t.start()  # another thread's encode does not report here
        t.join()
    total = seen[0][1]
    assert total >= 2 and seen == [(i, total) for i in range(total + 1)]
    engine.encode(astronaut[:, ::-1].copy())  # outside the context: nothing reported
    assert len(seen) == total + 1
