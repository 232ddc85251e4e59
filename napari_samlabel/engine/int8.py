"""Int8 linear layers for CPU encoders: oneDNN's quantised matrix products.

On CPUs with VNNI (AVX512-VNNI or AVX-VNNI) but no native bfloat16, an int8 matrix product
runs about three times as fast as a float32 one (``benchmarks/README.md``). This module
quantises an encoder's linear layers:

- **weights**: per output channel, symmetric int8 (``scale = max |w| / 127``), quantised and
  reordered into oneDNN's blocked layout once, when the engine is made;
- **activations**: per tensor, asymmetric uint8, with the scale and zero point of each
  input's own range (dynamic quantisation: no calibration data);
- **output**: float32, with the bias, a GELU or a residual add applied by oneDNN as
  post-ops of the product (``onednn::qlinear_pointwise``, the operator PyTorch's own
  quantisation flow lowers to).

Only linears are quantised: attention matrix products, softmax, layer norms and the residual
stream stay float32, where int8 would cost accuracy for little speed. The engine checks the
result against float32 (:mod:`napari_samlabel.engine.precision`) before offering the mode.
"""

from __future__ import annotations

import threading
from typing import Any

#: Linears smaller than this many weights stay float32 (quantising them saves nothing).
MIN_WEIGHTS = 64 * 64


def quantize_weight(weight: Any) -> tuple[Any, Any, Any]:
    """``(packed int8 weight, per-channel scales, zero points)`` of a ``(N, K)`` weight."""
    import torch

    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp_min(1e-12) / 127.0
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    packed = torch.ops.onednn.qlinear_prepack(q, None)
    return packed, scale.contiguous(), torch.zeros(len(scale), dtype=torch.long)


def quantize_activation(x: Any, buffers: dict[Any, Any] | None = None
                        ) -> tuple[Any, float, int]:
    """``(uint8 tensor, scale, zero point)`` of the 2-D float tensor ``x`` (its own range).

    ``buffers`` (a dict the caller keeps) holds the float and uint8 scratch tensors per
    shape: fresh ones cost page faults on every call (measured: 33 instead of 23 ms for a
    4096 x 3072 input on one core). The returned tensor is then one of them, valid until the
    next call with the same dict and shape.
    """
    import torch

    lo, hi = torch.aminmax(x)
    lo_f, hi_f = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi_f - lo_f) / 255.0 or 1.0
    zp = int(round(-lo_f / scale))
    if buffers is None:
        # x / scale + zp, rounded and clamped in place: one new tensor, not five.
        q = torch.mul(x, 1.0 / scale).add_(zp).round_().clamp_(0, 255).to(torch.uint8)
        return q, scale, zp
    # Tensors made under inference mode cannot be written outside it (SamPredictor.set_image
    # encodes under no_grad, the engine under inference mode): a pair per mode.
    key = (tuple(x.shape), x.device, torch.is_inference_mode_enabled())
    pair = buffers.get(key)
    if pair is None:
        pair = buffers[key] = (torch.empty_like(x, dtype=torch.float32),
                               torch.empty_like(x, dtype=torch.uint8))
    f, q = pair
    torch.mul(x, 1.0 / scale, out=f).add_(zp).round_().clamp_(0, 255)
    q.copy_(f)
    return q, scale, zp


class QuantizedWeights:
    """The int8 weights of a set of ``nn.Linear`` layers, quantised on first use."""

    def __init__(self) -> None:
        self._packed: dict[int, tuple[Any, Any, Any]] = {}
        # Scratch tensors of the activation quantisation, per thread (two threads may encode
        # at once: the GUI prefetches the next image while it encodes the open one).
        self._scratch = threading.local()

    def get(self, lin: Any) -> tuple[Any, Any, Any]:
        """``(packed weight, scales, zero points)`` of ``lin``."""
        packed = self._packed.get(id(lin))
        if packed is None:
            packed = self._packed[id(lin)] = quantize_weight(lin.weight)
        return packed

    def linear(self, x: Any, lin: Any, post_op: str = "none", algorithm: str = "",
               other: Any = None) -> Any:
        """``lin(x)`` in int8, with a ``"gelu"`` post-op or ``other`` added (float32 out).

        ``x`` may have any number of leading dimensions; ``algorithm`` is the GELU's
        (``"none"``: exact, ``"tanh"``).
        """
        import torch

        lead = x.shape[:-1]
        # oneDNN takes a strided input or residual through a slow reference path (measured:
        # 100x slower), so both are made contiguous first.
        scratch = getattr(self._scratch, "buffers", None)
        if scratch is None:
            scratch = self._scratch.buffers = {}
        qx, xs, xzp = quantize_activation(x.reshape(-1, x.shape[-1]).contiguous(), scratch)
        qw, ws, wzp = self.get(lin)
        bias = None if lin.bias is None else lin.bias.float()
        if other is None:
            out = torch.ops.onednn.qlinear_pointwise(
                qx, xs, xzp, qw, ws, wzp, bias, 1.0, 0, torch.float32, post_op, [],
                algorithm)
        else:
            res = other.reshape(-1, other.shape[-1]).float().contiguous()
            out = torch.ops.onednn.qlinear_pointwise.binary(
                qx, xs, xzp, qw, ws, wzp, res, bias, 1.0, 0, torch.float32, 1.0, 0, "add",
                1.0, "none", [], "")
        return out.view(*lead, out.shape[-1])


class Int8Linear:
    """Forward of an ``nn.Linear`` in int8 (installed by :func:`quantize_linears`)."""

    def __init__(self, lin: Any, weights: QuantizedWeights) -> None:
        self.lin = lin
        self.weights = weights

    def __call__(self, x: Any) -> Any:
        """``lin(x)`` in int8, returned in ``x``'s dtype."""
        out = self.weights.linear(x.float(), self.lin)
        return out.to(x.dtype)


def quantize_linears(module: Any, weights: QuantizedWeights | None = None) -> int:
    """Run every large ``nn.Linear`` inside ``module`` in int8; return how many.

    The layers keep their float32 parameters (state dicts and other code see them
    unchanged); their ``forward`` is replaced. Linears with fewer than :data:`MIN_WEIGHTS`
    weights stay float32.
    """
    import torch

    weights = weights or QuantizedWeights()
    count = 0
    for sub in module.modules():
        if type(sub) is torch.nn.Linear and sub.weight.numel() >= MIN_WEIGHTS:
            setattr(sub, "forward", Int8Linear(sub, weights))  # noqa: B010 - per instance
            count += 1
    return count


def int8_available() -> bool:
    """Whether oneDNN's int8 linear runs here and agrees with float32 on a small product."""
    import torch

    try:
        if not torch.backends.mkldnn.is_available():
            return False
        gen = torch.Generator().manual_seed(0)
        lin = torch.nn.Linear(64, 32)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(32, 64, generator=gen) * 0.1)
        x = torch.randn(8, 64, generator=gen)
        other = torch.randn(8, 32, generator=gen)
        weights = QuantizedWeights()
        with torch.inference_mode():
            ref = lin(x)
            got = weights.linear(x, lin)
            gelu = weights.linear(x, lin, "gelu", "none")
            added = weights.linear(x, lin, other=other)
        tol = 0.05 * float(ref.abs().max())
        return bool(
            torch.allclose(got, ref, atol=tol)
            and torch.allclose(gelu, torch.nn.functional.gelu(ref), atol=tol)
            and torch.allclose(added, ref + other, atol=tol)
        )
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


__all__ = ["Int8Linear", "QuantizedWeights", "int8_available", "quantize_activation",
           "quantize_linears", "quantize_weight"]
