"""A leaner eager forward for segment-anything's ViT image encoder (SAM and SAM-HQ).

The ViT-B/L/H encoders are stacks of segment-anything's ``Block`` (layer norm, windowed or
global attention with decomposed relative positions, MLP). :func:`use_lean_vit` gives each
block :func:`_lean_block_forward`, which computes the same function with less work and
fewer passes over memory:

- **Attention** (:func:`_attention`): the relative-position bias goes into the ``q . k``
  product instead of separate add passes over the ``L x L`` matrix; the softmax runs in
  place; in bfloat16 the matrix stays bfloat16; and inside :func:`attention_workspace` the
  matrix (12 x 4096 x 4096 in a global block, 400 MB in bfloat16) lives in one reused buffer.
- **Windows**: segment-anything pads the 64 x 64 token grid to 70 x 70 with zeros *after*
  the layer norm, so every padded token's ``qkv`` is the layer's bias. The lean block runs
  ``qkv`` on the 4096 real tokens and pads its output with the bias (4096 instead of 4900
  rows: a sixth less ``qkv`` work), splits windows and heads in one copy, and crops before
  ``proj``.
- **Fused linears** (:class:`LinearOps`): on the CPU, oneDNN's linear with a post-op (the
  operator PyTorch's own compiler emits) computes ``gelu(x W1 + b1)`` in one call and adds
  the residual inside ``proj`` and the MLP's second linear, so the 4096 x 3072 MLP
  activation is written once instead of three times.

Timings (``benchmarks/bench_engine.py``) are in ``benchmarks/README.md``. In float32 the
result equals segment-anything's up to float rounding (tested), in bfloat16 it is as close
to the float32 embedding as bfloat16 autocast is.
"""

from __future__ import annotations

import contextlib
import threading
import types
from collections.abc import Iterator
from typing import Any

_WORKSPACE = threading.local()


@contextlib.contextmanager
def attention_workspace(store: dict[Any, Any] | None = None) -> Iterator[None]:
    """Let the lean attention layers reuse one attention matrix for one encoder pass.

    A global block's matrix is 12 x 4096 x 4096 (400 MB in bfloat16). Allocated afresh, every
    matrix and its softmax are new pages the kernel must map and zero, which costs as much as
    the matrix product itself (measured: 300 ms instead of 150 ms for the product, 330
    instead of 130 ms for the softmax, per global block and core). Inside this context the
    blocks of one pass write into the same buffer and the softmax runs in place. Per thread,
    so that two threads may encode at once; a nested context shares the outer one's buffers.

    Parameters
    ----------
    store : dict, optional
        Where the buffers live. By default a fresh dict, so the buffers are freed when the
        context ends; a dict kept by the caller keeps them for the next pass (the engine
        does this: in a VM whose host takes freed memory back, re-faulting 400 MB every
        pass cost up to 2 s of system time per ViT-B encode).
    """
    outer = getattr(_WORKSPACE, "buffers", None)
    if outer is not None:
        yield
        return
    _WORKSPACE.buffers = {} if store is None else store
    try:
        yield
    finally:
        _WORKSPACE.buffers = None


def _attention_buffer(shape: tuple[int, ...], like: Any) -> Any:
    """A reusable ``shape`` buffer inside :func:`attention_workspace`, else a fresh one."""
    import torch

    buffers = getattr(_WORKSPACE, "buffers", None)
    if buffers is None:
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    # A buffer made under inference mode cannot be written outside it (SamPredictor.set_image
    # runs under no_grad), so each mode keeps its own.
    key = (shape, like.dtype, like.device, torch.is_inference_mode_enabled())
    buf = buffers.get(key)
    if buf is None:
        buf = buffers[key] = torch.empty(shape, dtype=like.dtype, device=like.device)
    return buf


def _rel_pos_keys(h: int, w: int, like: Any) -> Any:
    """``(h*w, h+w)`` one-hot rows ``[onehot(jh), onehot(jw)]`` of the key tokens ``j``."""
    import torch

    eye_h = torch.eye(h, dtype=like.dtype, device=like.device).repeat_interleave(w, 0)
    eye_w = torch.eye(w, dtype=like.dtype, device=like.device).repeat(h, 1)
    return torch.cat([eye_h, eye_w], -1)


def _attention(att: Any, q: Any, k: Any, v: Any, h: int, w: int) -> Any:
    """Multi-head attention of segment-anything's ``Attention`` module ``att``.

    ``q``, ``k``, ``v`` are ``(batch * heads, h * w, head_dim)`` for an ``h x w`` token grid;
    returns ``(batch * heads, h * w, head_dim)``.

    The decomposed relative-position bias ``rel_h[i, jh] + rel_w[i, jw]`` either goes into
    the matrix product itself, as ``[q, rel_h, rel_w] . [k, onehot(jh), onehot(jw)]`` (for
    windowed blocks, where ``h + w`` = 28 extra channels are cheaper than a bias pass over
    a matrix with 14-wide rows), or is written into the matrix first and the scaled
    ``q @ k^T`` added onto it by the product (``baddbmm``, for the global blocks; in float32
    a few rows at a time, :func:`_global_attention`); either way no separate add passes.
    The softmax runs in place and the matrix stays in the dtype of
    ``q`` (no float32 copy under autocast). In float32 the result equals segment-anything's
    up to float rounding (the bias is added before, not after, the product's final rounding).
    """
    import torch
    from segment_anything.modeling.image_encoder import get_rel_pos

    bn, n, _ = q.shape
    with torch.autocast(q.device.type, enabled=False):
        if att.use_rel_pos:
            rh = get_rel_pos(h, h, att.rel_pos_h).to(q.dtype)
            rw = get_rel_pos(w, w, att.rel_pos_w).to(q.dtype)
            r_q = q.reshape(bn, h, w, -1)
            rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, rh)
            rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, rw)
            if h + w <= q.shape[-1]:
                onehot = _rel_pos_keys(h, w, q)
                attn = _attention_buffer((bn, n, n), q)
                qa = torch.cat([q * att.scale, rel_h.reshape(bn, n, h),
                                rel_w.reshape(bn, n, w)], -1)
                ka = torch.cat([k, onehot.expand(bn, -1, -1)], -1)
                torch.bmm(qa, ka.transpose(-2, -1), out=attn)
            elif q.dtype == torch.float32:
                return _global_attention(att.scale, q, k, v, rel_h, rel_w)
            else:
                # bfloat16 (AMX) runs the whole matrix faster than blocks of it (measured:
                # ViT-B encode 2.9 s against 3.7 s on one core).
                attn = _attention_buffer((bn, n, n), q)
                torch.add(rel_h[:, :, :, :, None], rel_w[:, :, :, None, :],
                          out=attn.view(bn, h, w, h, w))
                attn.baddbmm_(q, k.transpose(-2, -1), alpha=att.scale)
        else:
            attn = _attention_buffer((bn, n, n), q)
            torch.bmm(q * att.scale, k.transpose(-2, -1), out=attn)
        torch.ops.aten._softmax.out(attn, -1, False, out=attn)  # row by row: safe in place
        return attn @ v


#: Bytes of attention matrix a global block computes at a time: one core's L2 cache.
CHUNK_BYTES = 2 << 20


def _global_attention(scale: float, q: Any, k: Any, v: Any, rel_h: Any, rel_w: Any) -> Any:
    """Attention with a decomposed relative-position bias, a few query rows at a time.

    ``q``, ``k``, ``v``: ``(bn, h * w, d)``; ``rel_h``: ``(bn, h, w, h)``; ``rel_w``:
    ``(bn, h, w, w)``. For each head and block of query rows the bias is written, the scaled
    ``q . k`` added onto it (``baddbmm``), the softmax taken in place and the block
    multiplied by ``v``, in a buffer of :data:`CHUNK_BYTES` that stays in the core's cache
    instead of a ``12 x 4096 x 4096`` matrix (805 MB in float32) that goes through memory
    four times (measured on ViT-B's global blocks, float32, one core: 0.49 s instead of
    0.92 s per block). The arithmetic is the same, row by row.
    """
    import torch

    bn, n, _ = q.shape
    h, w = rel_h.shape[1], rel_h.shape[2]
    grid_rows = max(1, min(h, CHUNK_BYTES // (w * n * q.element_size())))
    out = torch.empty(bn, n, v.shape[-1], dtype=q.dtype, device=q.device)
    buf = _attention_buffer((1, grid_rows * w, n), q)
    kt = k.transpose(-2, -1)
    for b in range(bn):
        for i in range(0, h, grid_rows):
            j = min(h, i + grid_rows)
            a = buf[:, : (j - i) * w]
            torch.add(rel_h[b: b + 1, i:j, :, :, None], rel_w[b: b + 1, i:j, :, None, :],
                      out=a.view(1, j - i, w, h, w))
            a.baddbmm_(q[b: b + 1, i * w: j * w], kt[b: b + 1], alpha=scale)
            torch.ops.aten._softmax.out(a, -1, False, out=a)
            torch.bmm(a, v[b: b + 1], out=out[b: b + 1, i * w: j * w])
    return out


def _lean_attention_forward(self: Any, x: Any) -> Any:
    """``segment_anything.modeling.image_encoder.Attention.forward`` through :func:`_attention`.

    For attention modules used outside a lean block (``x`` is ``(B, H, W, C)``).
    """
    B, H, W, _ = x.shape
    nh = self.num_heads
    qkv = self.qkv(x).reshape(B, H * W, 3, nh, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, B * nh, H * W, -1).unbind(0)
    out = _attention(self, q, k, v, H, W)
    out = out.view(B, nh, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
    return self.proj(out)


class LinearOps:
    """The linear layers of one block: plain ``F.linear`` or oneDNN's fused linear.

    Parameters
    ----------
    fused : bool
        Use ``torch.ops.mkldnn._linear_pointwise`` (CPU builds with oneDNN; see
        :func:`fused_linear_available`): GELU and residual adds run as post-ops of the
        matrix product.
    pack : bool
        With ``fused``, hand oneDNN its weights pre-reordered into its blocked layout (about
        5 % faster in bfloat16; costs a second copy of the block's weights).
    gelu : str
        ``"none"``: the exact (erf) GELU, as segment-anything; ``"tanh"``: its tanh
        approximation, which oneDNN computes in a fraction of the time. The two differ by
        at most 5e-4 (at x = 2.7, where bfloat16's spacing is 0.016), so
        :func:`use_lean_vit` takes ``"tanh"`` for bfloat16 encoders only.
    """

    def __init__(self, fused: bool, pack: bool = False, gelu: str = "none") -> None:
        self.fused = fused
        self.pack = pack and fused
        self.gelu = gelu
        self._weights: dict[int, Any] = {}

    def _weight(self, lin: Any) -> Any:
        if not self.pack:
            return lin.weight
        w = self._weights.get(id(lin))
        if w is None:
            import torch

            # The batch-size hint picks oneDNN's blocking; the encoder's is 64 x 64 tokens.
            w = torch.ops.mkldnn._reorder_linear_weight(lin.weight.detach(), 4096)
            self._weights[id(lin)] = w
        return w

    def linear(self, x: Any, lin: Any) -> Any:
        """``lin(x)``."""
        if not self.fused:
            return lin(x)
        import torch

        return torch.ops.mkldnn._linear_pointwise(x, self._weight(lin), lin.bias, "none", [], "")

    def linear_gelu(self, x: Any, lin: Any) -> Any:
        """``gelu(lin(x))`` (exact or tanh GELU: see ``gelu``)."""
        import torch

        if not self.fused:
            return torch.nn.functional.gelu(lin(x), approximate=self.gelu)
        return torch.ops.mkldnn._linear_pointwise(
            x, self._weight(lin), lin.bias, "gelu", [], self.gelu)

    def linear_add(self, x: Any, lin: Any, other: Any) -> Any:
        """``other + lin(x)``."""
        if not self.fused:
            return other + lin(x)
        import torch

        return torch.ops.mkldnn._linear_pointwise.binary(
            x.contiguous(), other, self._weight(lin), lin.bias, "add")


class Int8LinearOps(LinearOps):
    """The linear layers of one block in int8 (:mod:`napari_samlabel.engine.int8`).

    Weights per channel in int8, activations per tensor in uint8, float32 out; the GELU
    (exact) and the residual adds are oneDNN post-ops as in :class:`LinearOps`.
    """

    def __init__(self) -> None:
        super().__init__(fused=True)
        from napari_samlabel.engine.int8 import QuantizedWeights

        self.weights = QuantizedWeights()

    def linear(self, x: Any, lin: Any) -> Any:
        """``lin(x)``."""
        return self.weights.linear(x, lin)

    def linear_gelu(self, x: Any, lin: Any) -> Any:
        """``gelu(lin(x))`` (exact GELU)."""
        return self.weights.linear(x, lin, "gelu", "none")

    def linear_add(self, x: Any, lin: Any, other: Any) -> Any:
        """``other + lin(x)``."""
        return self.weights.linear(x, lin, other=other)


def fused_linear_available(device: Any, dtype: Any) -> bool:
    """Whether oneDNN's fused linear runs here: a CPU tensor of ``dtype`` through it works.

    Probed on each call with a tiny product and compared with ``F.linear``, so a build
    without the operator, or one whose kernel misbehaves, falls back to plain linears.
    """
    import torch

    if getattr(device, "type", device) != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    try:
        op = torch.ops.mkldnn._linear_pointwise
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(4, 8, generator=gen).to(dtype)
        w = torch.randn(16, 8, generator=gen).to(dtype)
        b = torch.randn(16, generator=gen).to(dtype)
        other = torch.randn(4, 16, generator=gen).to(dtype)
        with torch.inference_mode():
            ref = torch.nn.functional.linear(x, w, b).float()
            got = op(x, w, b, "gelu", [], "none").float()
            added = op.binary(x, other, w, b, "add").float()
        tol = 1e-4 if dtype == torch.float32 else 0.1
        return bool(
            torch.allclose(got, torch.nn.functional.gelu(ref), atol=tol, rtol=tol)
            and torch.allclose(added, ref + other.float(), atol=tol, rtol=tol)
        )
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def _lean_block_forward(self: Any, x: Any) -> Any:
    """``segment_anything.modeling.image_encoder.Block.forward``, leaner (module docstring).

    ``x`` is ``(B, H, W, C)``; uses the block's ``_lean_ops`` (:class:`LinearOps`).
    """
    ops: LinearOps = self._lean_ops
    att = self.attn
    B, H, W, C = x.shape
    nh = att.num_heads
    qkv = ops.linear(self.norm1(x), att.qkv)  # (B, H, W, 3C)
    ws = self.window_size
    if ws > 0:
        import torch.nn.functional as F

        ph, pw = (ws - H % ws) % ws, (ws - W % ws) % ws
        if ph or pw:
            # segment-anything pads the normalised tokens with zeros: their qkv is the bias.
            qkv = F.pad(qkv, (0, 0, 0, pw, 0, ph))
            if att.qkv.bias is not None:
                bias = att.qkv.bias.to(qkv.dtype)
                qkv[:, H:] = bias
                qkv[:, :H, W:] = bias
        hp, wp = H + ph, W + pw
        nwh, nww = hp // ws, wp // ws
        # (B, nwh, ws, nww, ws, 3, nh, d) -> (3, B * windows * nh, ws * ws, d): one copy.
        parts = qkv.view(B, nwh, ws, nww, ws, 3, nh, -1).permute(5, 0, 1, 3, 6, 2, 4, 7)
        q, k, v = parts.reshape(3, B * nwh * nww * nh, ws * ws, -1).unbind(0)
        out = _attention(att, q, k, v, ws, ws)
        out = out.view(B, nwh, nww, nh, ws, ws, -1).permute(0, 1, 4, 2, 5, 3, 6)
        out = out.reshape(B, hp, wp, C)[:, :H, :W]
    else:
        parts = qkv.view(B, H * W, 3, nh, -1).permute(2, 0, 3, 1, 4)
        q, k, v = parts.reshape(3, B * nh, H * W, -1).unbind(0)
        out = _attention(att, q, k, v, H, W)
        out = out.view(B, nh, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, C)
    x = ops.linear_add(out, att.proj, x)
    mlp = self.mlp
    return ops.linear_add(ops.linear_gelu(self.norm2(x), mlp.lin1), mlp.lin2, x)


def _instance_of(module: Any, classes: tuple[type, ...]) -> bool:
    """``isinstance`` without narrowing ``module`` (the classes are known only at run time)."""
    return isinstance(module, classes)


def _is_exact_gelu(act: Any) -> bool:
    import torch

    return isinstance(act, torch.nn.GELU) and act.approximate == "none"


def use_lean_vit(image_encoder: Any, family: str = "sam", fused: bool = False,
                 pack: bool = False, bfloat16: bool = False, int8: bool = False) -> bool:
    """Give ``image_encoder``'s ViT blocks :func:`_lean_block_forward`.

    Returns True when the encoder had such blocks. Attention layers outside a recognised
    block get :func:`_lean_attention_forward`. SAM-HQ's ViT is segment-anything's (same
    code, its own classes); TinyViT encoders (MobileSAM, Light HQ-SAM) have neither and are
    left as they are.

    Parameters
    ----------
    image_encoder : torch.nn.Module
    family : str
        The model family (which package's classes to look for).
    fused : bool
        Use oneDNN's fused linears (:class:`LinearOps`); ask
        :func:`fused_linear_available` first.
    pack : bool
        Pre-reorder the fused linears' weights (:class:`LinearOps`).
    bfloat16 : bool
        The encoder will run in bfloat16: its GELU may be the tanh approximation
        (:class:`LinearOps`).
    int8 : bool
        Run the blocks' linears in int8 (:class:`Int8LinearOps`; ask
        :func:`napari_samlabel.engine.int8.int8_available` first); ``fused`` and ``pack``
        are then ignored.
    """
    from napari_samlabel.engine.families import vit_classes

    attention, blocks = vit_classes(family)
    ops = Int8LinearOps() if int8 else LinearOps(fused, pack, gelu="tanh" if bfloat16 else "none")
    found = False
    in_block: set[int] = set()
    for module in image_encoder.modules():
        if blocks and _instance_of(module, blocks) and _is_exact_gelu(module.mlp.act) \
                and _instance_of(module.attn, attention):
            module._lean_ops = ops
            module.forward = types.MethodType(_lean_block_forward, module)
            in_block.add(id(module.attn))
            found = True
    for module in image_encoder.modules():
        if attention and _instance_of(module, attention) and id(module) not in in_block:
            module.forward = types.MethodType(_lean_attention_forward, module)
            found = True
    return found


__all__ = ["Int8LinearOps", "LinearOps", "attention_workspace", "fused_linear_available",
           "use_lean_vit"]
