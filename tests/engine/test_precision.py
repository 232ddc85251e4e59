"""The accuracy guard: a fast encoder mode against float32 on the same image and prompts."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from napari_samlabel.engine.precision import (
    COSINE_MIN,
    MASK_IOU_MIN,
    PrecisionCheck,
    check_precision,
    check_prompts,
    compare,
    guard_met,
)


@pytest.fixture(scope="module")
def precise(tiny_checkpoint):
    from napari_samlabel.engine.loader import load_engine

    return load_engine("vit_tiny_test", tiny_checkpoint, device="cpu", precise=True,
                       cache=None)


def test_prompts_spread_over_the_image_and_end_with_a_box():
    prompts = check_prompts((100, 200), points=8, seed=1)
    assert len(prompts) == 9 and prompts[-1].box is not None
    pts = np.concatenate([p.point_coords for p in prompts[:-1]])
    assert (pts[:, 0] > 0).all() and (pts[:, 0] < 200).all()   # x within the width
    assert (pts[:, 1] > 0).all() and (pts[:, 1] < 100).all()   # y within the height
    assert pts[:, 0].max() - pts[:, 0].min() > 100             # spread, not clustered
    assert check_prompts((100, 200), seed=1)[0].point_coords.tolist() == \
        prompts[0].point_coords.tolist()                        # reproducible


def test_the_same_embedding_meets_the_guard_and_a_drifted_one_does_not(precise, astronaut):
    emb, _ = precise.encode(astronaut)
    prompts = check_prompts(astronaut.shape)
    same = compare(replace(emb, precision="int8"), emb, precise, prompts)
    assert same.cosine == pytest.approx(1.0) and same.mask_ious == (1.0,) * len(prompts)
    assert same.ok and same.precision == "int8"
    rng = np.random.default_rng(0)
    noisy = replace(emb, features=(emb.features + rng.normal(
        0, 2 * emb.features.astype(np.float64).std(), emb.features.shape)).astype(np.float32))
    drifted = compare(noisy, emb, precise, prompts)
    assert drifted.cosine < COSINE_MIN and not drifted.ok


def test_guard_over_images_takes_every_cosine_and_the_mean_iou():
    good = PrecisionCheck("int8", 0.999, (1.0, 0.99))
    assert guard_met([good, good]) and guard_met([])
    assert not guard_met([good, PrecisionCheck("int8", COSINE_MIN - 1e-4, (1.0,))])
    low = PrecisionCheck("int8", 0.999, (MASK_IOU_MIN - 0.1,))
    assert not low.ok and guard_met([good, good, good, low]) == (
        np.mean([1.0, 0.99] * 3 + [MASK_IOU_MIN - 0.1]) >= MASK_IOU_MIN)


def test_check_precision_needs_a_float32_reference_of_the_same_weights(
        tiny_engine, precise, astronaut):
    with pytest.raises(ValueError, match="must encode in float32"):
        check_precision(precise, tiny_engine if tiny_engine.precision != "float32"
                        else replace_precision(tiny_engine), astronaut)
    result = check_precision(tiny_engine, precise, astronaut, points=4)
    assert len(result.mask_ious) == 5 and 0.99 < result.cosine <= 1.0 + 1e-9


def replace_precision(engine):
    """A stand-in engine that says it is not float32."""
    class Fake:
        precision = "bfloat16"
        model_id = engine.model_id

    return Fake()
