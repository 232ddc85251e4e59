"""refine_labels: one entry point dispatching to the three refiners."""

import numpy as np
import pytest

from napari_samlabel.pseudo.refine import (
    SAMS_PARAMS,
    AutoMask,
    AutoMaskParams,
    default_params,
    refine_labels,
    sams_seeds,
    sepl_refine,
    slic_refine,
)


@pytest.fixture()
def inputs(rect_image):
    coarse = np.zeros(rect_image.shape[:2], dtype=np.uint8)
    coarse[22:58, 32:88] = 9
    whole = np.zeros(coarse.shape, dtype=bool)
    whole[20:60, 30:90] = True
    part = np.zeros(coarse.shape, dtype=bool)
    part[70:90, 0:20] = True
    masks = [AutoMask(whole, int(whole.sum()), 0.9, 0.95, (30, 20, 59, 39), 2, (60, 40)),
             AutoMask(part, int(part.sum()), 0.9, 0.95, (0, 70, 19, 19), 1, (10, 80))]
    cams = np.zeros((1, *coarse.shape))
    cams[0, 25:55, 35:85] = 1.0
    return rect_image, coarse, masks, cams


def test_dispatch_matches_the_functions(inputs):
    image, coarse, masks, cams = inputs
    np.testing.assert_array_equal(
        refine_labels("sepl", image, coarse=coarse, masks=masks, class_ratio=0.9),
        sepl_refine(coarse, masks, class_ratio=0.9))
    np.testing.assert_array_equal(
        refine_labels("sams", image, maps=cams, class_ids=[9], masks=masks, alpha=1.0),
        sams_seeds(cams, [9], masks, alpha=1.0).seeds)
    np.testing.assert_array_equal(
        refine_labels("slic", image, coarse=coarse, maps=cams, class_ids=[9], n_segments=50),
        slic_refine(image, coarse, maps=cams, class_ids=[9], n_segments=50))
    out = refine_labels("sepl", image, coarse=coarse, masks=masks)
    assert (out[20:60, 30:90] == 9).all() and (out == 9).sum() == 40 * 60


def test_missing_inputs_and_unknown_options(inputs):
    image, coarse, masks, cams = inputs
    with pytest.raises(ValueError, match="unknown refine method"):
        refine_labels("crf", image, coarse=coarse)
    with pytest.raises(ValueError, match="needs a coarse"):
        refine_labels("sepl", image, masks=masks)
    with pytest.raises(ValueError, match="class maps"):
        refine_labels("sams", image, maps=cams, masks=masks)
    with pytest.raises(ValueError, match="automatic masks or a SAM model"):
        refine_labels("sepl", image, coarse=coarse)
    with pytest.raises(TypeError, match="alpha"):
        refine_labels("sepl", image, coarse=coarse, masks=masks, alpha=0.5)


def test_default_params():
    assert default_params("sams") == SAMS_PARAMS
    assert default_params("sepl") == AutoMaskParams()
    assert SAMS_PARAMS.level_iou_offset == (0.0, 0.0, 0.1)
    assert SAMS_PARAMS.level_nms_offset == (0.0, 0.0, 1.0)
    assert SAMS_PARAMS.key() != AutoMaskParams().key()
