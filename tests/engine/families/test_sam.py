import numpy as np
import pytest

from napari_samlabel.engine.cache import EmbeddingCache
from napari_samlabel.engine.families.sam import SamEngine
from napari_samlabel.engine.loader import load_engine
from napari_samlabel.engine.protocol import Engine, Prediction, SamInputs
from napari_samlabel.testing.models import TINY_MODEL_TYPE


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("emb")


@pytest.fixture(scope="module")
def engine(tiny_checkpoint, cache_dir) -> SamEngine:
    """Precise (float32) engine so it can be compared with the stock SamPredictor."""
    return load_engine(
        TINY_MODEL_TYPE, tiny_checkpoint, device="cpu", precise=True,
        cache=cache_dir, cache_dir=cache_dir.parent,
    )


class EncoderSpy:
    """Counts calls of an engine's image encoder."""

    def __init__(self, engine):
        self.calls = 0
        self._inner = engine._encoder

        def counting(x):
            self.calls += 1
            return self._inner(x)

        engine._encoder = counting


def _points(*xy, labels=None):
    coords = np.array(xy, dtype=np.float32)
    labels = np.ones(len(xy), np.int32) if labels is None else np.array(labels, np.int32)
    return SamInputs(point_coords=coords, point_labels=labels)


def test_engine_implements_protocol(engine):
    assert isinstance(engine, Engine)
    assert engine.model_id.startswith(f"{TINY_MODEL_TYPE}:")
    assert engine.precision == "float32"


def test_predict_shapes_and_dtypes(engine, rect_image):
    engine.set_image(rect_image)
    pred = engine.predict(_points((60, 40)))
    assert isinstance(pred, Prediction)
    assert pred.masks.shape == (3, 96, 128) and pred.masks.dtype == bool
    assert pred.iou_predictions.shape == (3,) and pred.iou_predictions.dtype == np.float32
    assert pred.low_res_logits.shape == (3, 256, 256)
    assert pred.low_res_logits.dtype == np.float32
    # Masks are the logits upsampled and thresholded at logits_threshold.
    assert pred.logits_threshold == 0.0

    single = engine.predict(SamInputs(box=np.array([30, 20, 90, 60], np.float32),
                                      multimask_output=False))
    assert single.masks.shape == (1, 96, 128) and single.low_res_logits.shape == (1, 256, 256)


def test_predict_matches_stock_predictor(engine, rect_image, tiny_checkpoint):
    from segment_anything import SamPredictor

    from napari_samlabel.engine.checkpoint import load_sam

    engine.set_image(rect_image)
    stock = SamPredictor(load_sam(TINY_MODEL_TYPE, tiny_checkpoint))  # unpatched model
    stock.set_image(rect_image)
    # Same preprocessing and encoder arithmetic (lean attention included): the embedding
    # differs only by float16 storage.
    ours = engine.get_embedding().features
    ref = stock.features.numpy()
    cos = float((ours * ref).sum() / np.linalg.norm(ours) / np.linalg.norm(ref))
    assert cos > 0.99999
    stock.features = engine.predictor.features  # identical embedding -> identical decode
    pts, lab = np.array([[60, 40], [10, 10]], np.float32), np.array([1, 0])
    masks, iou, low = stock.predict(pts, lab, multimask_output=True)
    pred = engine.predict(SamInputs(point_coords=pts, point_labels=lab))
    np.testing.assert_array_equal(pred.masks, masks)
    np.testing.assert_allclose(pred.iou_predictions, iou, rtol=1e-6)


def test_points_reach_sam_as_x_y_scaled(engine, rect_image, monkeypatch):
    """96 x 128 image: long side 128 -> 1024, scale 8. (x=100, y=10) -> (800, 80)."""
    seen = {}
    original = engine.predictor.predict_torch

    def spy(point_coords, point_labels, boxes=None, mask_input=None, *args, **kw):
        seen.update(coords=point_coords, labels=point_labels, boxes=boxes, mask=mask_input)
        return original(point_coords, point_labels, boxes, mask_input, *args, **kw)

    monkeypatch.setattr(engine.predictor, "predict_torch", spy)
    engine.set_image(rect_image)
    engine.predict(SamInputs(point_coords=np.array([[100, 10], [5, 90]], np.float32),
                             point_labels=np.array([1, 0]),
                             box=np.array([30, 20, 90, 60], np.float32)))
    np.testing.assert_allclose(seen["coords"].numpy(), [[[800, 80], [40, 720]]])
    assert seen["labels"].tolist() == [[1, 0]]
    np.testing.assert_allclose(seen["boxes"].numpy().reshape(-1), [240, 160, 720, 480])


def test_mask_input_hand_over(engine, rect_image, monkeypatch):
    engine.set_image(rect_image)
    first = engine.predict(_points((60, 40)))
    prev = first.low_res_logits[[int(np.argmax(first.iou_predictions))]]
    seen = {}
    original = engine.predictor.predict_torch

    def spy(point_coords, point_labels, boxes=None, mask_input=None, *args, **kw):
        seen["mask"] = mask_input
        return original(point_coords, point_labels, boxes, mask_input, *args, **kw)

    monkeypatch.setattr(engine.predictor, "predict_torch", spy)
    second = engine.predict(SamInputs(point_coords=np.array([[60, 40], [70, 30]], np.float32),
                                      point_labels=np.array([1, 1]), mask_input=prev,
                                      multimask_output=False))
    np.testing.assert_array_equal(seen["mask"].numpy(), prev[None])

    # Read-only logits (as a document stores them) are accepted without torch warnings.
    frozen = prev.copy()
    frozen.flags.writeable = False
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine.predict(SamInputs(point_coords=np.array([[60, 40]], np.float32),
                                 point_labels=np.array([1]), mask_input=frozen,
                                 multimask_output=False))
    without = engine.predict(SamInputs(point_coords=np.array([[60, 40], [70, 30]], np.float32),
                                       point_labels=np.array([1, 1]), multimask_output=False))
    assert not np.array_equal(second.low_res_logits, without.low_res_logits)


def test_errors(tiny_checkpoint, rect_image, engine):
    fresh = load_engine(TINY_MODEL_TYPE, tiny_checkpoint, device="cpu", cache=None)
    with pytest.raises(RuntimeError, match="no image set"):
        fresh.predict(_points((1, 1)))
    with pytest.raises(RuntimeError, match="no image set"):
        fresh.get_embedding()
    with pytest.raises(ValueError, match="uint8"):
        fresh.set_image(rect_image.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        fresh.set_image(rect_image[..., 0])
    engine.set_image(rect_image)
    with pytest.raises(ValueError, match="at least one point or a box"):
        engine.predict(SamInputs())
    with pytest.raises(ValueError, match="2 points but 1 point labels"):
        engine.predict(SamInputs(point_coords=np.zeros((2, 2), np.float32),
                                 point_labels=np.array([1])))
    with pytest.raises(ValueError, match=r"mask_input must be \(1, 256, 256\)"):
        engine.predict(SamInputs(box=np.array([0, 0, 5, 5], np.float32),
                                 mask_input=np.zeros((1, 64, 64), np.float32)))
    with pytest.raises(ValueError, match="device"):
        load_engine(TINY_MODEL_TYPE, tiny_checkpoint, device="cuda", cache=None)


def test_second_set_image_hits_cache(engine, astronaut, rect_image):
    spy = EncoderSpy(engine)
    engine.set_image(astronaut)
    assert spy.calls == 1
    engine.set_image(rect_image)
    engine.set_image(astronaut)
    assert spy.calls == 1  # rect_image was encoded earlier in this module
    engine.set_image(astronaut[:, ::-1])  # another image
    assert spy.calls == 2


def test_disk_cache_serves_a_new_engine(tiny_checkpoint, cache_dir, astronaut, engine):
    engine.set_image(astronaut)
    expected = engine.predict(_points((30, 60)))
    other = load_engine(TINY_MODEL_TYPE, tiny_checkpoint, device="cpu", precise=True,
                        cache=EmbeddingCache(cache_dir), cache_dir=cache_dir.parent)
    spy = EncoderSpy(other)
    other.set_image(astronaut)
    assert spy.calls == 0
    got = other.predict(_points((30, 60)))
    np.testing.assert_array_equal(got.masks, expected.masks)


def test_embedding_round_trip(engine, tiny_checkpoint, rect_image, astronaut):
    engine.set_image(rect_image)
    emb = engine.get_embedding()
    assert emb.original_size == (96, 128) and emb.input_size == (768, 1024)
    expected = engine.predict(_points((60, 40)))
    engine.set_image(astronaut)
    engine.set_embedding(emb)
    np.testing.assert_array_equal(engine.predict(_points((60, 40))).masks, expected.masks)

    from dataclasses import replace

    with pytest.raises(ValueError, match="computed by 'vit_b:"):
        engine.set_embedding(replace(emb, model_id="vit_b:0000000000000000"))


def test_fast_precision_is_close_to_precise(tiny_checkpoint, engine, astronaut):
    from napari_samlabel.engine.device import cpu_supports_bf16, cpu_supports_vnni

    fast = load_engine(TINY_MODEL_TYPE, tiny_checkpoint, device="cpu", cache=None)
    expected = ("bfloat16" if cpu_supports_bf16() else "int8" if cpu_supports_vnni()
                else "float32")
    assert fast.precision == expected
    a = fast.encode(astronaut)[0].features.astype(np.float64).ravel()
    engine.set_image(astronaut)
    b = engine.get_embedding().features.astype(np.float64).ravel()
    # The accuracy guard of the int8 mode is 0.995 (bfloat16 keeps 0.999).
    assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > (0.995 if expected == "int8"
                                                            else 0.999)

    # SamPredictor.set_image called directly (as SAM's automatic mask generator does)
    # takes the same encoder path and still yields float32 features.
    spy = EncoderSpy(fast)
    fast.predictor.set_image(astronaut)
    assert spy.calls == 1
    assert str(fast.predictor.features.dtype) == "torch.float32"
    c = fast.predictor.features.numpy().astype(np.float64).ravel()
    assert a @ c / np.linalg.norm(a) / np.linalg.norm(c) > 0.9999


def test_decoder_upscales_in_channels_last_with_the_same_values(engine, tiny_checkpoint):
    """The engine's decoder (channels-last upscaling) computes what segment-anything's does."""
    import torch

    from napari_samlabel.engine.checkpoint import load_model
    from napari_samlabel.engine.families.sam import channels_last_upscaling

    ours = engine.model.mask_decoder.output_upscaling
    assert ours._channels_last
    assert not channels_last_upscaling(engine.model.mask_decoder)  # once only
    plain = load_model(TINY_MODEL_TYPE, tiny_checkpoint).mask_decoder.output_upscaling
    x = torch.randn(1, 256, 64, 64)
    with torch.inference_mode():
        got, ref = ours(x), plain(x)
    assert got.is_contiguous() and got.shape == ref.shape == (1, 32, 256, 256)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)
