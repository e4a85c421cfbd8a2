"""The compiled kernels' API and its dispatch: each function runs the compiled kernel
(``_bconv.c`` through :mod:`nas.nn.kernels._native`) on the fastest path this CPU can run, or the
one
asked for, and falls back to PyTorch (:mod:`nas.nn.kernels._layout`'s reference) where the library
cannot be built or loaded.
"""

from __future__ import annotations

import struct
from functools import cache

import torch
import torch.nn.functional as F

from nas.nn.kernels._layout import Packed, PackedWeights, pack_last, reference_conv2d
from nas.nn.kernels._native import PATHS, available_paths, compiled_paths, library


def pack_activations(
    x: torch.Tensor,
    pad: int = 0,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    path: str | None = None,
) -> Packed:
    """Signs of a float NCHW tensor (any memory format), packed, with ``pad`` pixels of +1 on
    each side: bit 1 where x < 0 (sign(0) = +1); with ``scale`` and ``shift`` (per channel) the
    signs of ``x * scale + shift``, a BatchNorm before the sign folded in. Channels_last input,
    also the first channels of a wider tensor (a DenseNet's features), is read where it lies.
    ``path`` forces one of :func:`available_paths` (``"avx2"`` packs with the portable loop) or
    ``"reference"`` (PyTorch)."""
    n, c, h, w = x.shape
    nhwc = x.detach().float().permute(0, 2, 3, 1)
    step = nhwc.stride(2)  # floats from one pixel to the next
    if nhwc.stride(3) != 1 or nhwc.stride(1) != w * step or nhwc.stride(0) != h * w * step:
        nhwc, step = nhwc.contiguous(), c
    lib, path = library(), _path(path)
    cw = (c + 63) // 64
    bits = torch.zeros(n, h + 2 * pad, w + 2 * pad, cw, dtype=torch.int64)
    if scale is not None:
        scale, shift = _f32(scale), _f32(shift if shift is not None else torch.zeros(c))
    if path != "reference":
        lib.bconv_pack(
            PATHS[path], nhwc.data_ptr(), n, h, w, c, step,
            None if scale is None else scale.data_ptr(),
            None if scale is None else shift.data_ptr(),
            pad, bits.data_ptr(),
        )  # fmt: skip
    else:
        values = nhwc if scale is None else nhwc * scale + shift
        bits[:, pad : pad + h, pad : pad + w] = pack_last(values < 0)
    return Packed(bits, c, pad)


def _pooled(size: int, kernel: int, stride: int, pad: int, ceil_mode: bool) -> int:
    """A pool's output size, as PyTorch counts it (ceil mode: a last window that starts inside
    the input or its left padding)."""
    out = (size + 2 * pad - kernel + (stride - 1 if ceil_mode else 0)) // stride + 1
    return out - 1 if ceil_mode and (out - 1) * stride >= size + pad else out


def max_pool2d(
    x: torch.Tensor,
    kernel: int,
    stride: int,
    pad: int = 0,
    ceil_mode: bool = False,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    relu: bool = False,
) -> torch.Tensor:
    """``F.max_pool2d(x, kernel, stride, pad, ceil_mode=ceil_mode)`` of a float NCHW tensor,
    returned channels_last; with ``scale`` and ``shift`` (per channel) it pools ``x * scale +
    shift`` (an eval-mode BatchNorm before the pool), with ``relu`` it clamps the maxima at 0. The
    compiled NHWC kernel where built, in one pass (PyTorch's single-thread channels_last pool took
    2.3x as long on the stem's 112x112x64; BinaryDenseNet's transition BN -> pool -> ReLU, three
    passes in PyTorch, 3.2x on 56x56x448), else PyTorch."""
    if not 0 <= pad <= kernel // 2:
        raise ValueError(f"pad must be between 0 and kernel // 2 = {kernel // 2}, got {pad}")
    if (scale is None) != (shift is None):
        raise ValueError("give both scale and shift, or neither")
    lib = library()
    if lib is None:
        if scale is not None:
            x = x * scale[:, None, None] + shift[:, None, None]
        out = F.max_pool2d(x, kernel, stride, pad, ceil_mode=ceil_mode)
        out = F.relu(out) if relu else out
        return out.contiguous(memory_format=torch.channels_last)
    n, c, h, w = x.shape
    nhwc = x.detach().float().permute(0, 2, 3, 1).contiguous()
    out = torch.empty(n, *(_pooled(s, kernel, stride, pad, ceil_mode) for s in (h, w)), c)
    if scale is not None:
        scale, shift = scale.detach().float().contiguous(), shift.detach().float().contiguous()
    lib.nhwc_maxpool(
        nhwc.data_ptr(), n, h, w, c, kernel, stride, pad, int(ceil_mode),
        None if scale is None else scale.data_ptr(),
        None if shift is None else shift.data_ptr(),
        int(relu), out.data_ptr(),
    )  # fmt: skip
    return out.permute(0, 3, 1, 2)


def fp_stem(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    stride: int,
    relu: bool = False,
    pool: bool = False,
    out_pad: int | None = None,
) -> tuple[torch.Tensor, Packed | None] | None:
    """The full-precision stem of a packed network in one compiled pass: the conv of ``x`` (NCHW,
    any memory format) with ``weight`` (COUT, CIN, K, K, padding K // 2) and ``bias``, ReLU if
    ``relu``, then if ``pool`` the 3x3/2 max-pool with padding 1; the conv's output stays in the
    caches. Returns the float output (NCHW, channels_last in memory) and, with ``out_pad``, its
    signs packed with that +1 padding; None where the kernel cannot run it (no AVX-512), for the
    caller to run PyTorch."""
    lib = library()
    cout, cin, k, _ = weight.shape
    if lib is None or "avx512" not in compiled_paths():
        return None
    n, _, h, w = x.shape
    p = k // 2
    x = x.detach().float()  # any strides: nhwc_pad reads them
    padded = torch.empty(n, h + 2 * p, w + 2 * p, cin)
    lib.nhwc_pad(x.data_ptr(), n, cin, h, w, *x.stride(), p, padded.data_ptr())
    w_taps = _f32(weight.permute(2, 3, 1, 0))  # (K, K, CIN, COUT)
    oh, ow = (h + 2 * p - k) // stride + 1, (w + 2 * p - k) // stride + 1
    if pool:
        oh, ow = (oh - 1) // 2 + 1, (ow - 1) // 2 + 1
    out = torch.empty(n, oh, ow, cout)
    bits = None
    if out_pad is not None:
        words = (cout + 63) // 64
        bits = torch.empty(n, oh + 2 * out_pad, ow + 2 * out_pad, words, dtype=torch.int64)
    status = lib.bconv_stem(
        padded.data_ptr(), n, h + 2 * p, w + 2 * p, cin, w_taps.data_ptr(), _f32(bias).data_ptr(),
        k, stride, cout, int(relu), int(pool), out.data_ptr(),
        None if bits is None else bits.data_ptr(), out_pad or 0,
    )  # fmt: skip
    if status == -2:
        raise MemoryError("fp_stem: out of memory for the row buffers")
    if status != 0:
        return None
    return out.permute(0, 3, 1, 2), None if bits is None else Packed(bits, cout, out_pad or 0)


def set_threads(threads: int) -> None:
    """Threads the compiled kernels use (OpenMP)."""
    lib = library()
    if lib is not None:
        lib.bconv_set_threads(threads)


def _path(path: str | None) -> str:
    """The path to run: ``path`` if this CPU and build can run it (or ``"reference"``), by default
    the fastest compiled one, else the PyTorch reference; a ValueError for one it cannot run."""
    if path is None:
        return compiled_paths()[-1] if library() is not None else "reference"
    if path != "reference" and (library() is None or path not in compiled_paths()):
        raise ValueError(f"this CPU cannot run the {path!r} path; it can: {available_paths()}")
    return path


def _f32(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a contiguous float32 tensor without autograd history (no copy if it is one)."""
    if t.dtype == torch.float32 and t.is_contiguous() and not t.requires_grad:
        return t
    return t.detach().float().contiguous()


_OUTPUTS = ("float", "packed", "both")
# the arguments of bconv_forward, in the order of the fields of conv_args_t in _bconv.c
_CONV_ARGS = struct.Struct("18q")


@cache
def _filled(value: float, channels: int) -> torch.Tensor:
    """The default scale (1) or shift (0), made once per channel count: the kernel only reads
    it."""
    return torch.full((channels,), value)


def binary_conv2d(
    x: Packed,
    weights: PackedWeights,
    stride: int = 1,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
    output: str = "float",
    out_pad: int = 0,
    path: str | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor | Packed | tuple[torch.Tensor, Packed]:
    """The binary convolution of packed ``x`` (already padded) with packed ``weights``, then
    ``scale * dot + shift + residual`` per output channel (NHWC float; ``residual`` NHWC too).
    ``output``: ``"float"`` those values; ``"packed"`` their signs, packed with ``out_pad`` pixels
    of +1 padding for the next conv; ``"both"`` the pair, from one pass. ``out``: a float32 NHWC
    tensor to write the float output into, contiguous or the first channels of a wider one (a
    dense block writes its new features into the features tensor of its run); it may be
    ``residual`` itself: the shortcut is then added in place, and one buffer fewer passes through
    the caches (what the packed model does where nothing reads the shortcut afterwards). ``path``
    forces one of :func:`available_paths` or ``"reference"``."""
    if output not in _OUTPUTS:
        raise ValueError(f"output must be 'float', 'packed' or 'both', got {output!r}")
    if x.channels != weights.channels:
        raise ValueError(f"input has {x.channels} channels, weights expect {weights.channels}")
    n, h, w, cw = x.bits.shape
    k, _, _, cout = weights.bits.shape
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    if out is not None:
        if output == "packed":
            raise ValueError("out holds the float output: ask for output='float' or 'both'")
        pixel = out.stride(2) if out.dim() == 4 else 0  # floats from one pixel to the next
        if (
            out.shape != (n, oh, ow, cout)
            or out.dtype != torch.float32
            or out.stride()[n == 1 :] != (oh * ow * pixel, ow * pixel, pixel, 1)[n == 1 :]
            or pixel < cout
        ):
            raise ValueError(
                f"out must be a float32 NHWC tensor {(n, oh, ow, cout)}, contiguous or the first "
                f"channels of a wider one, got {out.dtype} {tuple(out.shape)} with strides "
                f"{out.stride()}"
            )
    scale = _filled(1.0, cout) if scale is None else _f32(scale)
    shift = _filled(0.0, cout) if shift is None else _f32(shift)
    lib, path = library(), _path(path)
    if path == "reference":
        values = reference_conv2d(x, weights, stride, scale, shift, residual)
        if out is not None:
            values = out.copy_(values)
        if output == "float":
            return values
        packed = pack_activations(values.permute(0, 3, 1, 2), out_pad, path="reference")
        return packed if output == "packed" else (values, packed)
    pixel = cout if out is None else out.stride(2)
    if residual is not None and residual is not out:
        residual = _f32(residual)
        if residual.shape != (n, oh, ow, cout):
            raise ValueError(
                f"residual must be NHWC {(n, oh, ow, cout)}, got {tuple(residual.shape)}"
            )
        if pixel != cout:
            raise ValueError("out must be contiguous where the residual is another tensor")
    out_f = out
    if out is None and output != "packed":
        out_f = torch.empty(n, oh, ow, cout)
    bits = None
    if output != "float":  # zeroed by the kernel
        size = n, oh + 2 * out_pad, ow + 2 * out_pad, (cout + 63) // 64
        bits = torch.empty(*size, dtype=torch.int64)  # size as arguments: 0.3 us faster
    status = lib.bconv_forward(
        _CONV_ARGS.pack(
            PATHS[path], x.bits.data_ptr(), n, h, w, cw, weights.bits.data_ptr(), k, stride, cout,
            x.channels, scale.data_ptr(), shift.data_ptr(),
            0 if residual is None else residual.data_ptr(),
            0 if out_f is None else out_f.data_ptr(),
            0 if bits is None else bits.data_ptr(),
            out_pad, pixel,
        )
    )  # fmt: skip
    if status == -2:
        raise MemoryError("binary_conv2d: out of memory for the row buffers")
    if output == "float":
        return out_f
    packed = Packed(bits, cout, out_pad)
    return packed if output == "packed" else (out_f, packed)
