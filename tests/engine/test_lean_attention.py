"""The engine's lean ViT attention computes segment-anything's attention, faster."""

from __future__ import annotations

import os
import types

import numpy as np
import pytest


def _attention(dim, heads, size, seed=0):
    import torch
    from segment_anything.modeling.image_encoder import Attention

    torch.manual_seed(seed)
    att = Attention(dim, num_heads=heads, qkv_bias=True, use_rel_pos=True,
                    input_size=(size, size)).eval()
    with torch.no_grad():  # segment-anything starts the tables at zero: make them count
        att.rel_pos_h.normal_(0, 0.5)
        att.rel_pos_w.normal_(0, 0.5)
    return att


@pytest.mark.parametrize(("dim", "heads", "size", "batch"), [
    (128, 2, 14, 3),   # windowed block: H + W = 28 <= head dim 64, bias folded into q.k
    (32, 4, 12, 1),    # global-like: H + W = 24 > head dim 8, bias + baddbmm
])
def test_lean_attention_equals_segment_anythings(dim, heads, size, batch):
    import torch

    from napari_samlabel.engine.sam import _lean_attention_forward, attention_workspace

    att = _attention(dim, heads, size)
    x = torch.randn(batch, size, size, dim)
    with torch.inference_mode():
        ref = att(x)
        att.forward = types.MethodType(_lean_attention_forward, att)
        plain = att(x)
        with attention_workspace():
            reused = att(x)
            again = att(x * 0.5)          # the buffer is reused: the earlier result stays
        np.testing.assert_allclose(plain.numpy(), ref.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(reused.numpy(), ref.numpy(), rtol=1e-4, atol=1e-5)
        assert not torch.equal(again, reused)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = att(x)
    a, b = fast.double().ravel(), ref.double().ravel()
    assert float(a @ b / a.norm() / b.norm()) > 0.999


def test_workspace_is_per_pass_and_per_thread():
    import threading

    import torch

    from napari_samlabel.engine import sam

    like = torch.zeros(1, dtype=torch.bfloat16)
    assert sam._attention_buffer((2, 3), like) is not sam._attention_buffer((2, 3), like)
    with sam.attention_workspace():
        first = sam._attention_buffer((2, 3), like)
        assert sam._attention_buffer((2, 3), like) is first
        seen = []
        t = threading.Thread(target=lambda: seen.append(sam._attention_buffer((2, 3), like)))
        t.start()
        t.join()
        assert seen[0] is not first            # another thread gets its own buffer
        with sam.attention_workspace():        # nested: same pass, same buffers
            assert sam._attention_buffer((2, 3), like) is first
        assert sam._attention_buffer((2, 3), like) is first
    assert sam._attention_buffer((2, 3), like) is not first  # freed with the pass


def test_huge_pages_are_asked_for_unless_the_user_said_otherwise(monkeypatch):
    from napari_samlabel.engine.device import THP_ENV, enable_huge_pages

    monkeypatch.delenv(THP_ENV, raising=False)
    enable_huge_pages()
    assert os.environ[THP_ENV] == "1"
    monkeypatch.setenv(THP_ENV, "0")
    enable_huge_pages()
    assert os.environ[THP_ENV] == "0"
