"""Core prompts to SAM inputs: scribble sampling (the plan is tested through the policies)."""

import numpy as np

from napari_samlabel.core.prompts import Scribble
from napari_samlabel.engine.prompt_plan import sample_scribble

SHAPE = (96, 128)


def test_scribble_sampling_fraction_and_seed():
    s = Scribble(np.array([[10, 5], [10, 104]]))  # 100 pixels
    a = sample_scribble(s, SHAPE, 0.2, seed=3)
    b = sample_scribble(s, SHAPE, 0.2, seed=3)
    c = sample_scribble(s, SHAPE, 0.2, seed=4)
    assert len(a) == 20
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # drawing order kept; all sampled points lie on the scribble
    assert np.all(np.diff(a[:, 1]) > 0) and np.all(a[:, 0] == 10)
    # at least one pixel even for tiny fractions; everything at 1.0
    assert len(sample_scribble(s, SHAPE, 0.001)) == 1
    assert len(sample_scribble(s, SHAPE, 1.0)) == 100
