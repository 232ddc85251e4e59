"""int8 linears and the choice of encoder precision per CPU."""

from __future__ import annotations

import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_samlabel.engine import device  # noqa: E402
from napari_samlabel.engine.base import fast_precision  # noqa: E402
from napari_samlabel.engine.int8 import (  # noqa: E402
    QuantizedWeights,
    int8_available,
    quantize_activation,
    quantize_linears,
)

needs_int8 = pytest.mark.skipif(not int8_available(), reason="no oneDNN int8 linear here")


def _cos(a, b) -> float:
    a, b = a.double().ravel(), b.double().ravel()
    return float(a @ b / a.norm() / b.norm())


def test_activation_quantisation_covers_the_range_and_zero():
    x = torch.tensor([[-1.0, 0.0, 0.5, 3.0]])
    q, scale, zp = quantize_activation(x)
    assert q.dtype == torch.uint8 and scale == pytest.approx(4.0 / 255)
    assert int(q[0, 1]) == zp                      # zero is exact
    assert int(q[0, 0]) == 0 and int(q[0, 3]) == 255
    back = (q.float() - zp) * scale
    assert float((back - x).abs().max()) <= scale / 2 + 1e-6
    q, scale, zp = quantize_activation(torch.zeros(2, 3))  # an all-zero input is no error
    assert scale == 1.0 and int(q.max()) == zp == 0


@needs_int8
@pytest.mark.parametrize("strided", [False, True])
def test_int8_linear_post_ops_match_float32(strided):
    gen = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(96, 128)
    x = torch.randn(2, 5, 7, 96, generator=gen)
    other = torch.randn(2, 5, 7, 128, generator=gen)
    if strided:  # as the patch embedding hands it on: a permuted view
        x = torch.randn(2, 96, 5, 7, generator=gen).permute(0, 2, 3, 1)
        other = torch.randn(2, 128, 5, 7, generator=gen).permute(0, 2, 3, 1)
    w = QuantizedWeights()
    with torch.inference_mode():
        ref = lin(x)
        plain = w.linear(x, lin)
        gelu = w.linear(x, lin, "gelu", "none")
        added = w.linear(x, lin, other=other)
    assert plain.shape == ref.shape == added.shape and plain.dtype == torch.float32
    assert _cos(plain, ref) > 0.999
    assert _cos(gelu, torch.nn.functional.gelu(ref)) > 0.999
    assert _cos(added, ref + other) > 0.999
    assert len(w._packed) == 1  # quantised once, reused by every call


@needs_int8
def test_quantize_linears_swaps_large_linears_only():
    net = torch.nn.Sequential(torch.nn.Linear(128, 256), torch.nn.GELU(),
                              torch.nn.Linear(256, 8))  # 2048 weights: stays float32
    x = torch.randn(16, 128)
    with torch.inference_mode():
        ref = net(x)
        assert quantize_linears(net) == 1
        got = net(x)
    assert type(net[0].forward).__name__ == "Int8Linear"
    assert net[2].forward.__func__ is torch.nn.Linear.forward
    assert _cos(got, ref) > 0.999 and not torch.equal(got, ref)
    assert net.state_dict()["0.weight"].dtype == torch.float32  # parameters untouched


@needs_int8
@pytest.mark.parametrize("window", [7, 0])
def test_lean_block_in_int8_stays_close_to_float32(window):
    from segment_anything.modeling.image_encoder import Block

    from napari_samlabel.engine.lean_vit import Int8LinearOps, use_lean_vit

    torch.manual_seed(0)
    blk = Block(64, 4, qkv_bias=True, use_rel_pos=True, window_size=window,
                input_size=(16, 16)).eval()
    x = torch.randn(1, 64, 16, 16).permute(0, 2, 3, 1)  # strided, as after patch_embed
    with torch.inference_mode():
        ref = blk(x)
        assert use_lean_vit(blk, "sam", int8=True)
        assert isinstance(blk._lean_ops, Int8LinearOps)
        got = blk(x)
    assert got.dtype == torch.float32 and _cos(got, ref) > 0.999


def test_global_attention_in_blocks_equals_the_whole_matrix(monkeypatch):
    """Float32 global attention computed a few rows at a time is the same arithmetic."""
    from segment_anything.modeling.image_encoder import Attention

    from napari_samlabel.engine import lean_vit

    torch.manual_seed(0)
    att = Attention(32, num_heads=4, qkv_bias=True, use_rel_pos=True,
                    input_size=(12, 12)).eval()
    with torch.no_grad():
        att.rel_pos_h.normal_(0, 0.5)
        att.rel_pos_w.normal_(0, 0.5)
    x = torch.randn(1, 12, 12, 32)
    calls = []
    real = lean_vit._global_attention
    monkeypatch.setattr(lean_vit, "_global_attention",
                        lambda *a: calls.append(1) or real(*a))
    # 5 grid rows (5 x 12 query rows) per block: 12 rows split 5 + 5 + 2.
    monkeypatch.setattr(lean_vit, "CHUNK_BYTES", 5 * 12 * 144 * 4)
    with torch.inference_mode():
        ref = att(x)
        att.forward = types.MethodType(lean_vit._lean_attention_forward, att)
        got = att(x)
    assert calls
    np.testing.assert_allclose(got.numpy(), ref.numpy(), rtol=1e-4, atol=1e-5)


@pytest.fixture()
def cpu(monkeypatch):
    """Pretend to be a CPU with the given flags (and no precision forced)."""
    monkeypatch.delenv("SAMLABEL_PRECISION", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr("napari_samlabel.engine.int8.int8_available", lambda: True)

    def set_flags(*flags: str) -> None:
        monkeypatch.setattr(device, "_cpu_flags", lambda: frozenset(("avx2", *flags)))

    return set_flags


@pytest.mark.parametrize(("flags", "isa", "expected"), [
    (("avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16"), "", "bfloat16"),
    (("avx512f", "avx512_vnni"), "", "int8"),                  # Cascade/Ice Lake servers
    (("avx_vnni",), "", "int8"),                               # Alder Lake and later laptops
    ((), "", "float32"),                                       # plain AVX2: int8 gains nothing
    (("avx512f", "avx512_vnni", "amx_bf16"), "AVX512_CORE_VNNI", "int8"),  # oneDNN capped
    (("avx512f", "avx512_vnni", "amx_bf16"), "avx2", "float32"),
])
def test_precision_follows_the_cpu(cpu, monkeypatch, flags, isa, expected):
    cpu(*flags)
    if isa:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    assert fast_precision(torch.device("cpu")) == expected


def test_precision_can_be_forced_and_is_checked(cpu, monkeypatch):
    cpu("avx512_bf16")
    monkeypatch.setenv("SAMLABEL_PRECISION", "INT8")
    assert fast_precision(torch.device("cpu")) == "int8"
    monkeypatch.setenv("SAMLABEL_PRECISION", "auto")
    assert fast_precision(torch.device("cpu")) == "bfloat16"
    monkeypatch.setenv("SAMLABEL_PRECISION", "fp8")
    with pytest.raises(ValueError, match="SAMLABEL_PRECISION='fp8'.*float32, bfloat16, int8"):
        fast_precision(torch.device("cpu"))
    monkeypatch.setenv("SAMLABEL_PRECISION", "int8")
    with pytest.raises(ValueError, match="CPU only"):
        fast_precision(torch.device("meta"))


def test_without_a_working_int8_linear_vnni_cpus_stay_float32(cpu, monkeypatch):
    cpu("avx512_vnni")
    monkeypatch.setattr("napari_samlabel.engine.int8.int8_available", lambda: False)
    assert fast_precision(torch.device("cpu")) == "float32"


@needs_int8
def test_scratch_tensors_serve_inference_mode_and_no_grad_alike():
    """The engine encodes under inference mode, SamPredictor.set_image under no_grad."""
    lin = torch.nn.Linear(96, 128)
    x = torch.randn(40, 96)
    w = QuantizedWeights()
    with torch.inference_mode():
        a = w.linear(x, lin).clone()
    with torch.no_grad():
        b = w.linear(x, lin)
    assert torch.allclose(a, b)
