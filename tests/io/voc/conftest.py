"""The test image of the VOC tests."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from tests.io.voc.scenes import H, W


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut()[:H * 4:4, :W * 4:4])
