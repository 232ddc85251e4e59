"""Mask-quality signals (engine.quality), plain numpy."""

from __future__ import annotations

import numpy as np
import pytest

from napari_samlabel.core.current import CurrentObject
from napari_samlabel.engine.quality import accept_signals


def test_accept_signals_on_known_logits():
    logits = np.full((1, 256, 256), -5.0, np.float32)
    logits[..., :128] = 5.0        # surely inside
    logits[..., 128:192] = 0.0     # inside at -1, outside at +1
    cur = CurrentObject(1, mask=logits[0] > 0, logits=logits,
                        ious=np.array([0.2, 0.9, 0.5], np.float32))
    signals = accept_signals(cur, (256, 256))
    assert signals["stability"] == pytest.approx(128 / 192)
    assert signals["iou_spread"] == pytest.approx(0.7)
