"""Automatic masks through SAM's real generator with the tiny random-weight model.

Random weights give meaningless masks; these tests check wiring: level tags, per-level
offsets, equality with SAM's own generator, and the disk cache.
"""

import numpy as np
import pytest

from napari_samlabel.pseudo.refine import (
    AutoMaskCache,
    AutoMaskParams,
    automatic_masks,
    generate_automasks,
)

# One grid point (the decoder dominates the time), no quality filtering: the point gives
# its three outputs unless NMS removes some.
OPEN = dict(points_per_side=1, pred_iou_thresh=0.0, stability_score_thresh=0.0)


@pytest.fixture(scope="module")
def engine(tiny_checkpoint):
    """The tiny SAM behind the registry loader; its memory cache encodes each image once."""
    from napari_samlabel.engine.loader import load_engine
    from napari_samlabel.testing.models import TINY_MODEL_TYPE

    return load_engine(TINY_MODEL_TYPE, tiny_checkpoint, device="cpu", precise=True, cache=None)


@pytest.fixture(scope="module")
def tiny_sam(engine):
    """The bare ``Sam`` model (encodes on every call, like SAM's own generator)."""
    return engine.predictor.model


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(3)
    img = np.full((48, 64, 3), 30, dtype=np.uint8)
    img[10:30, 15:45] = (200, 180, 40)
    return np.clip(img + rng.integers(0, 20, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def all_masks(engine, image):
    return generate_automasks(engine, image, AutoMaskParams(box_nms_thresh=1.0, **OPEN))


def test_every_output_is_tagged_with_its_level(all_masks, image):
    # NMS at IoU 1.0 removes nothing: 1 point x 3 levels.
    assert sorted(m.level for m in all_masks) == [0, 1, 2]
    assert {m.point for m in all_masks} == {(32.0, 24.0)}  # the grid point: image centre
    for m in all_masks:
        assert m.segmentation.shape == image.shape[:2] and m.segmentation.dtype == bool
        assert m.area == int(m.segmentation.sum())
        if m.area:
            rows, cols = np.nonzero(m.segmentation)
            assert m.bbox == (cols.min(), rows.min(), cols.max() - cols.min(),
                              rows.max() - rows.min())


def test_zero_offsets_reproduce_sams_own_generator(tiny_sam, image):
    from segment_anything import SamAutomaticMaskGenerator

    params = AutoMaskParams(**OPEN)  # SAM's NMS at 0.7
    ours = generate_automasks(tiny_sam, image, params)
    ref = SamAutomaticMaskGenerator(tiny_sam, **OPEN).generate(image)
    assert len(ours) == len(ref) > 0
    for a, b in zip(ours, ref, strict=True):
        np.testing.assert_array_equal(a.segmentation, b["segmentation"])
        assert a.predicted_iou == pytest.approx(b["predicted_iou"])
        assert a.stability_score == pytest.approx(b["stability_score"])
        assert list(a.point) == b["point_coords"][0]


def test_level_iou_offset_lowers_one_levels_threshold(engine, image, all_masks):
    # No prediction reaches 5; +10 on the whole level lets exactly the whole masks through.
    params = AutoMaskParams(points_per_side=1, pred_iou_thresh=5.0, stability_score_thresh=0.0,
                            box_nms_thresh=1.0, level_iou_offset=(0, 0, 10))
    calls = []
    masks = generate_automasks(engine, image, params, progress=lambda *a: calls.append(a))
    assert calls == [(1, 1, "automatic masks")]  # one batch of points
    assert [m.level for m in masks] == [2]
    (whole,) = [m for m in all_masks if m.level == 2]
    assert masks[0].predicted_iou == pytest.approx(whole.predicted_iou)  # offset not stored
    np.testing.assert_array_equal(masks[0].segmentation, whole.segmentation)
    # Without the offset nothing passes: an empty list, not an error.
    assert generate_automasks(engine, image, AutoMaskParams(
        points_per_side=1, pred_iou_thresh=5.0, stability_score_thresh=0.0)) == []


def test_level_nms_offset_prefers_whole_masks(engine, image):
    # The three outputs of the point overlap; NMS sorts by score, so the first survivor is
    # the highest-scored mask, which the offset decides (whichever level it is given to).
    for offset_level in (0, 2):
        offsets = [0.0, 0.0, 0.0]
        offsets[offset_level] = 10.0
        masks = generate_automasks(engine, image, AutoMaskParams(
            box_nms_thresh=0.0, level_nms_offset=tuple(offsets), **OPEN))
        assert masks[0].level == offset_level


def test_cache_hit_miss_and_corrupt_file(engine, image, tmp_path):
    params = AutoMaskParams(box_nms_thresh=1.0, **OPEN)
    cache = AutoMaskCache(tmp_path)
    path = cache.path_for("tiny:abc", image, params)
    assert not path.exists()
    first = automatic_masks(engine, image, params, cache=cache, model_id="tiny:abc")
    assert path.is_file()
    # A hit needs no model at all.
    again = automatic_masks(None, image, params, cache=tmp_path, model_id="tiny:abc")
    assert len(again) == len(first)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.segmentation, b.segmentation)
        assert (a.level, a.area, a.point) == (b.level, b.area, b.point)
        assert a.predicted_iou == pytest.approx(b.predicted_iou)
        assert a.bbox == pytest.approx(b.bbox)
    # Other weights, other parameters or another image: misses.
    with pytest.raises(ValueError, match="not cached"):
        automatic_masks(None, image, params, cache=cache, model_id="tiny:other")
    with pytest.raises(ValueError, match="not cached"):
        automatic_masks(None, image, AutoMaskParams(**OPEN), cache=cache, model_id="tiny:abc")
    with pytest.raises(ValueError, match="not cached"):
        automatic_masks(None, image[::-1].copy(), params, cache=cache, model_id="tiny:abc")
    # points_per_batch does not change the masks, so it does not change the key.
    assert cache.path_for("tiny:abc", image, AutoMaskParams(
        box_nms_thresh=1.0, points_per_batch=7, **OPEN)) == path
    # A damaged file is reported and recomputed.
    path.write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="unreadable"):
        redo = automatic_masks(engine, image, params, cache=cache, model_id="tiny:abc")
    assert len(redo) == len(first)
    assert cache.load(path) is not None


def test_cache_needs_a_model_id(tiny_sam, image, tmp_path):
    with pytest.raises(ValueError, match="model_id"):
        automatic_masks(tiny_sam, image, cache=tmp_path)


def test_engine_reuses_its_embedding_cache(engine, image, all_masks, tmp_path):
    engine.reset_image()
    before = engine.encode_count
    a = automatic_masks(engine, image, AutoMaskParams(**OPEN), cache=tmp_path)
    (path,) = tmp_path.rglob("*.npz")
    assert path.parent.name == engine.model_id.replace(":", "-")  # keyed by its model_id
    b = automatic_masks(engine, image, AutoMaskParams(box_nms_thresh=1.0, **OPEN),
                        cache=tmp_path)
    # The image was encoded once for this module (all_masks): masks are decoded from the
    # engine's embedding cache, whatever the parameters.
    assert engine.encode_count == before
    assert len(b) >= len(a) and {m.level for m in b} == {0, 1, 2}
    assert engine.is_image_set


def test_bad_image_and_params():
    with pytest.raises(ValueError, match="RGB uint8"):
        generate_automasks(None, np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="3 values"):
        AutoMaskParams(level_iou_offset=(0.1, 0.2))
    with pytest.raises(ValueError, match="points_per_side"):
        AutoMaskParams(points_per_side=0)
    with pytest.raises(ValueError, match="points_per_side must be a whole number"):
        AutoMaskParams(points_per_side=8.5)


def test_params_key_does_not_depend_on_how_numbers_are_written(tmp_path):
    """0 and 0.0 (or 1 and 1.0, or numpy integers) are the same parameter: one cache entry."""
    a = AutoMaskParams(points_per_side=np.int64(16), pred_iou_thresh=0, stability_score_thresh=1,
                       level_iou_offset=(0, 0, 1), crop_n_layers=0.0)
    b = AutoMaskParams(points_per_side=16, pred_iou_thresh=0.0, stability_score_thresh=1.0,
                       level_iou_offset=(0.0, 0.0, 1.0), crop_n_layers=0)
    assert a.key() == b.key() and a.to_json() == b.to_json()
    cache = AutoMaskCache(tmp_path)
    img = np.zeros((4, 4, 3), np.uint8)
    assert cache.path_for("m", img, a) == cache.path_for("m", img, b)
    # a real difference still changes the key; the batch size (speed only) does not
    assert AutoMaskParams(pred_iou_thresh=0.5).key() != b.key()
    assert AutoMaskParams(points_per_batch=8).key() == AutoMaskParams().key()


@pytest.mark.slow
def test_crop_layer_through_the_engine(engine, image, all_masks):
    # One crop layer: the whole image (from the engine's cache) plus 4 crops (encoded).
    calls = []
    params = AutoMaskParams(crop_n_layers=1, box_nms_thresh=1.0, **OPEN)
    masks = generate_automasks(engine, image, params, progress=lambda *a: calls.append(a))
    assert [c[:2] for c in calls] == [(k, 5) for k in range(1, 6)]
    assert {m.level for m in masks} <= {0, 1, 2}
    assert all(m.segmentation.shape == image.shape[:2] for m in masks)
    assert engine.is_image_set  # the whole image is current again after the crop passes


def test_mobile_sam_engine_drives_the_generator(image, tmp_path):
    """MobileSAM shares SAM's predictor API: its engine gives the three tagged levels."""
    from napari_samlabel.engine.loader import load_engine
    from napari_samlabel.testing.models import MOBILE_SAM_TINY_MODEL_TYPE, save_tiny_checkpoint

    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", model_type=MOBILE_SAM_TINY_MODEL_TYPE)
    mobile = load_engine(MOBILE_SAM_TINY_MODEL_TYPE, ckpt, device="cpu", precise=True,
                         cache=None)
    masks = generate_automasks(mobile, image, AutoMaskParams(box_nms_thresh=1.0, **OPEN))
    assert sorted(m.level for m in masks) == [0, 1, 2]
    assert mobile.encode_count == 1  # the whole image came through the engine


@pytest.mark.parametrize("model_type", ["sam2_tiny_test", "sam_hq_tiny_test"])
def test_other_families_are_refused_with_the_models_that_work(model_type, image, tmp_path):
    from napari_samlabel.engine.loader import load_engine
    from napari_samlabel.testing.models import save_tiny_checkpoint

    ckpt = save_tiny_checkpoint(tmp_path / "m.pt", model_type=model_type)
    other = load_engine(model_type, ckpt, device="cpu", cache=None)
    with pytest.raises(ValueError, match=rf"'{model_type}' is .*--model vit_b"):
        generate_automasks(other, image, AutoMaskParams(**OPEN))


def test_points_per_batch_defaults_by_device_and_stays_out_of_the_key():
    from napari_samlabel.pseudo.refine.automask import (
        CPU_POINTS_PER_BATCH,
        GPU_POINTS_PER_BATCH,
        points_per_batch_for,
    )

    assert AutoMaskParams().points_per_batch is None
    assert points_per_batch_for("cpu") == CPU_POINTS_PER_BATCH < GPU_POINTS_PER_BATCH
    assert points_per_batch_for("cuda:1") == points_per_batch_for("mps") == GPU_POINTS_PER_BATCH
    assert AutoMaskParams().key() == AutoMaskParams(points_per_batch=64).key()
    assert '"points_per_batch": null' in AutoMaskParams().to_json()
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="points_per_batch"):
            AutoMaskParams(points_per_batch=bad)


def test_cpu_batches_of_points_give_the_masks_of_sams_batch(engine, image):
    calls = []
    params = dict(OPEN, points_per_side=3, box_nms_thresh=1.0)
    small = generate_automasks(engine, image, AutoMaskParams(**params),
                               progress=lambda done, total, _msg: calls.append((done, total)))
    assert calls[-1] == (3, 3)                  # 9 points in batches of 4 on CPU
    big = generate_automasks(engine, image, AutoMaskParams(points_per_batch=64, **params))
    assert len(small) == len(big) > 0
    for a, b in zip(small, big, strict=True):
        np.testing.assert_array_equal(a.segmentation, b.segmentation)
        # the batched matrix products round differently in the last bits
        assert a.predicted_iou == pytest.approx(b.predicted_iou, abs=1e-5)
