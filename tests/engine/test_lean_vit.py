"""The engine's lean ViT blocks compute segment-anything's blocks, faster."""

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

    from napari_samlabel.engine.lean_vit import _lean_attention_forward, attention_workspace

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

    from napari_samlabel.engine import lean_vit as sam

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
    kept: dict = {}
    with sam.attention_workspace(kept):
        first = sam._attention_buffer((2, 3), like)
    with sam.attention_workspace(kept):         # a caller's store outlives the pass
        assert sam._attention_buffer((2, 3), like) is first


def test_huge_pages_are_asked_for_unless_the_user_said_otherwise(monkeypatch):
    from napari_samlabel.engine.device import THP_ENV, enable_huge_pages

    monkeypatch.delenv(THP_ENV, raising=False)
    enable_huge_pages()
    assert os.environ[THP_ENV] == "1"
    monkeypatch.setenv(THP_ENV, "0")
    enable_huge_pages()
    assert os.environ[THP_ENV] == "0"


def _block(dim, heads, window, size, qkv_bias=True, seed=0):
    import torch
    from segment_anything.modeling.image_encoder import Block

    torch.manual_seed(seed)
    blk = Block(dim, heads, qkv_bias=qkv_bias, use_rel_pos=True, window_size=window,
                input_size=(window, window) if window else (size, size)).eval()
    with torch.no_grad():
        blk.attn.rel_pos_h.normal_(0, 0.5)
        blk.attn.rel_pos_w.normal_(0, 0.5)
        if qkv_bias:  # segment-anything's init is small: a large bias makes padding count
            blk.attn.qkv.bias.normal_(0, 1.0)
    return blk


def _fused_modes():
    import torch

    from napari_samlabel.engine.lean_vit import fused_linear_available

    modes = [(False, False)]
    if fused_linear_available(torch.device("cpu"), torch.float32):
        modes += [(True, False), (True, True)]
    return modes


@pytest.mark.parametrize(("window", "size", "qkv_bias"), [
    (7, 16, True),    # 16 x 16 tokens in 7 x 7 windows: padded to 21 x 21, qkv bias as pad
    (7, 16, False),   # no bias: the padded tokens' qkv is zero
    (8, 16, True),    # windows tile the grid exactly: no padding
    (0, 12, True),    # global block, bias + baddbmm
])
@pytest.mark.parametrize(("fused", "pack"), _fused_modes())
def test_lean_block_equals_segment_anythings(window, size, qkv_bias, fused, pack):
    import torch

    from napari_samlabel.engine.lean_vit import use_lean_vit

    blk = _block(64, 4, window, size, qkv_bias)
    x = torch.randn(2, size, size, 64)
    with torch.inference_mode():
        ref = blk(x)
        assert use_lean_vit(blk, "sam", fused=fused, pack=pack)
        assert blk.forward.__func__.__name__ == "_lean_block_forward"
        got = blk(x)
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-4, atol=2e-5)


def test_lean_block_in_bfloat16_stays_close_to_float32():
    import torch

    from napari_samlabel.engine.lean_vit import fused_linear_available, use_lean_vit

    blk = _block(64, 4, 7, 16)
    x = torch.randn(1, 16, 16, 64)
    with torch.inference_mode():
        ref = blk(x).double().ravel()
        fused = fused_linear_available(torch.device("cpu"), torch.bfloat16)
        use_lean_vit(blk, "sam", fused=fused, pack=fused)
        blk.to(torch.bfloat16)
        got = blk(x.bfloat16())
    assert got.dtype == torch.bfloat16
    got = got.double().ravel()
    assert float(got @ ref / got.norm() / ref.norm()) > 0.999


def test_fused_linears_only_where_onednn_runs():
    import torch

    from napari_samlabel.engine.lean_vit import LinearOps, fused_linear_available

    assert not fused_linear_available(torch.device("meta"), torch.float32)
    plain = LinearOps(fused=False, pack=True)
    assert not plain.pack  # packing means nothing without the fused operator
    lin = torch.nn.Linear(8, 16)
    x, other = torch.randn(3, 8), torch.randn(3, 16)
    with torch.inference_mode():
        np.testing.assert_allclose(plain.linear_add(x, lin, other).numpy(),
                                   (other + lin(x)).numpy(), rtol=1e-6)
        np.testing.assert_allclose(plain.linear_gelu(x, lin).numpy(),
                                   torch.nn.functional.gelu(lin(x)).numpy(), rtol=1e-6)


def test_engine_keeps_its_attention_buffers_between_encodes(tiny_checkpoint):
    from napari_samlabel.engine.loader import load_engine
    from napari_samlabel.testing.models import TINY_MODEL_TYPE

    engine = load_engine(TINY_MODEL_TYPE, tiny_checkpoint, device="cpu", cache=None)
    img = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    engine.encode(img)
    kept = dict(engine._workspaces.buffers)
    assert kept  # the blocks' attention matrices
    engine.encode(img[::-1].copy())
    assert all(engine._workspaces.buffers[k] is v for k, v in kept.items())
    engine.release_workspace()
    assert getattr(engine._workspaces, "buffers", None) is None
    engine.encode(img[:, ::-1].copy())  # allocates afresh
    assert all(engine._workspaces.buffers[k] is not v for k, v in kept.items())


@pytest.mark.parametrize("family", ["sam", "sam_hq"])
def test_engines_of_vit_families_run_lean_blocks(family, tmp_path):
    from napari_samlabel.engine.families import family_available
    from napari_samlabel.engine.loader import load_engine
    from napari_samlabel.testing.models import (
        SAM_HQ_TINY_MODEL_TYPE,
        TINY_MODEL_TYPE,
        save_tiny_checkpoint,
    )

    if not family_available(family):
        pytest.skip(f"the {family} package is not installed")
    mt = TINY_MODEL_TYPE if family == "sam" else SAM_HQ_TINY_MODEL_TYPE
    engine = load_engine(mt, save_tiny_checkpoint(tmp_path / "t.pt", model_type=mt),
                         device="cpu", precise=True, cache=None)
    blocks = engine.model.image_encoder.blocks
    assert len(blocks) > 0
    assert all(b.forward.__func__.__name__ == "_lean_block_forward" for b in blocks)


def test_freed_memory_is_kept_unless_the_user_tuned_malloc(monkeypatch):
    import sys

    from napari_samlabel.engine import device

    for var in device._MALLOC_ENV:
        monkeypatch.delenv(var, raising=False)
    calls = []

    class FakeLibc:  # records mallopt instead of changing this test process's malloc
        gnu_get_libc_version = object()

        def __init__(self):
            def mallopt(param, value):
                calls.append((param, value))
                return 1
            self.mallopt = mallopt

    import ctypes

    monkeypatch.setattr(ctypes, "CDLL", lambda name: FakeLibc())
    monkeypatch.setattr(sys, "platform", "linux")
    assert device.keep_freed_memory()
    assert calls == [(device._M_MMAP_THRESHOLD, 32 << 20), (device._M_TRIM_THRESHOLD, 1 << 30)]
    calls.clear()
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert not device.keep_freed_memory() and not calls
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    del FakeLibc.gnu_get_libc_version   # musl: has mallopt, but not glibc's parameters
    assert not device.keep_freed_memory() and not calls


def test_keep_freed_memory_runs_against_this_processes_libc(monkeypatch):
    import sys

    from napari_samlabel.engine.device import _MALLOC_ENV, keep_freed_memory

    for var in _MALLOC_ENV:
        monkeypatch.delenv(var, raising=False)

    try:
        import ctypes

        glibc = hasattr(ctypes.CDLL(None), "gnu_get_libc_version")
    except OSError:
        glibc = False
    assert keep_freed_memory() == (sys.platform.startswith("linux") and glibc)
