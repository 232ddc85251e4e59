"""SamInputs.checked: the one validation of every engine (real ones and fakes)."""

import numpy as np
import pytest

from napari_samlabel.engine.protocol import SamInputs


def test_checked_gives_private_arrays_of_the_decoders_dtypes():
    coords = np.array([[10, 20], [30, 40]], dtype=np.int64)
    coords.setflags(write=False)
    ok = SamInputs(point_coords=coords, point_labels=[1, 0], box=[[0, 1, 2, 3]],
                   mask_input=np.zeros((256, 256)), multimask_output=0).checked()
    assert ok.point_coords.dtype == np.float32 and ok.point_coords.flags.writeable
    assert ok.point_coords is not coords
    assert ok.point_labels.dtype == np.int32 and ok.point_labels.tolist() == [1, 0]
    assert ok.box.shape == (4,) and ok.box.dtype == np.float32
    assert ok.mask_input.shape == (1, 256, 256) and ok.mask_input.dtype == np.float32
    assert ok.multimask_output is False


def test_empty_points_stay_empty_and_stay_out_of_the_predictor_kwargs():
    inputs = SamInputs(point_coords=np.zeros((0, 2)), point_labels=np.zeros(0), box=[0, 0, 5, 5])
    ok = inputs.checked()
    assert ok.point_coords.shape == (0, 2) and ok.point_labels.shape == (0,)
    assert set(inputs.predictor_kwargs()) == {"multimask_output", "box"}


@pytest.mark.parametrize("inputs, error", [
    (SamInputs(), "at least one point or a box"),
    (SamInputs(point_coords=np.zeros((1, 3)), point_labels=[1]), r"shape \(N, 2\)"),
    (SamInputs(point_coords=np.zeros((1, 2))), "point_labels are required"),
    (SamInputs(point_coords=np.zeros((2, 2)), point_labels=np.ones(1)), "2 points but 1"),
    (SamInputs(point_coords=np.zeros((1, 2)), point_labels=[2]), "must be 0 .* or 1"),
    (SamInputs(point_coords=np.full((1, 2), np.nan), point_labels=[1]), "NaN"),
    (SamInputs(box=[0, 1, 2]), "4 finite numbers"),
    (SamInputs(box=np.zeros(4), mask_input=np.zeros((1, 64, 64))), r"\(1, 256, 256\)"),
])
def test_checked_refuses_what_sam_cannot_take(inputs, error):
    with pytest.raises(ValueError, match=error):
        inputs.checked()
    with pytest.raises(ValueError, match=error):
        inputs.predictor_kwargs()
