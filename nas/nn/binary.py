"""Binary layers: sign activations with straight-through gradients and the binary convolution.

* Activations are binarised with sign (sign(0) = +1) in the forward pass. Backward: the clipped
  identity straight-through estimator, d/dx = 1 for |x| <= 1 (Courbariaux et al. 2016; Hubara et
  al. 2016), or Bi-Real's ApproxSign, d/dx = 2 - 2|x| for |x| <= 1 (Liu et al., ECCV 2018, eq. 6).
* Weights are binarised as sign(W) times the mean |W| of each output channel over latent real
  weights (Bi-Real's magnitude-aware weights), with a straight-through gradient to W.
* Padding: binary convs pad their +/-1 input with zeros (as the papers do) or with +1, which keeps
  every input of the conv in {-1, +1} so bit-packed inference is exact (docs/design.md section 8).

:class:`BinaryConv2d` runs in one of two ways that give the same bits (tested):

* **reference** (``fused=False``): the modules and ops as the formulas read: the
  :class:`BinaryActivation` module, :func:`binarize_weight`, ``F.conv2d``; autograd records about
  a dozen nodes per conv.
* **fused** (the default): one autograd node per conv (:class:`BinaryConvFunction`). Forward: the
  input's signs and the binarised weights written straight in the conv's dtype (bf16 under
  autocast), then the conv; backward: ``convolution_backward`` then the straight-through
  gradient. The element-wise passes run as small C loops (:func:`kernels`, built once with the
  system's C compiler and cached), each one pass where PyTorch's eager ops take three to five,
  and each rounding as those ops round (bf16 after every op, as eager bf16 does). In bf16 on one
  CPU thread (a trial on one core) the forward conv itself runs as XNOR-popcount on bit-packed
  signs (:func:`xnor_conv`, :mod:`nas.nn.kernels`' kernel), exact, so the same bits four times
  faster. Without a compiler, or on another device, the same eager ops as the reference run
  inside the one node, and the forward conv is oneDNN's (or cuDNN's).
  The module falls back to the reference path wherever another reading of the module is in play:
  its ``act`` replaced or hooked (zero-cost proxies do both), fx tracing, TorchScript, or
  ``torch.compile``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from functools import cache, lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _module


def _sign(x: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1: sign(sign(x) + 1/2) maps -1, 0, +1 to -1, +1, +1. Three cheap
    elementwise kernels; ``torch.where(x >= 0, 1, -1)`` costs ten times as much on the CPU."""
    return torch.sign(torch.sign(x) + 0.5)


class SignSTE(torch.autograd.Function):
    """sign forward, clipped identity backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return _sign(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


class ApproxSign(SignSTE):
    """sign forward, Bi-Real's piecewise-polynomial gradient 2 - 2|x| (|x| <= 1) backward."""

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.clamp(2 - 2 * x.abs(), min=0)


SIGNS = {"ste": SignSTE, "approxsign": ApproxSign}


class BinaryActivation(nn.Module):
    """Binarises its input to {-1, +1}; ``kind`` picks the backward (``ste`` or ``approxsign``)."""

    def __init__(self, kind: str = "ste"):
        super().__init__()
        if kind not in SIGNS:
            raise ValueError(f"unknown binary activation {kind!r}; known: {', '.join(SIGNS)}")
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return SIGNS[self.kind].apply(x)

    def extra_repr(self) -> str:
        return self.kind


def weight_scale(w: torch.Tensor) -> torch.Tensor:
    """A binary conv's per-output-channel weight scale, mean |W| (shape ``(C_out, 1, 1, 1)``)."""
    return w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True)


def binarize_weight(w: torch.Tensor) -> torch.Tensor:
    """sign(W) * mean|W| per output channel, with an identity (straight-through) gradient to W."""
    return w + (weight_scale(w) * _sign(w) - w).detach()


# --- the fused path: C loops ---------------------------------------------------------------------

_C_SOURCE = r"""
/* Element-wise passes of nas.nn.binary's fused binary conv. Each rounds as PyTorch's eager ops do:
   float32 math, and for bfloat16 results a round to nearest even after every op (c10::BFloat16),
   NaN as 0x7FC0. Built with -ffp-contract=off: no fused multiply-add. */
#include <stdint.h>
#include <string.h>
#include <math.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLONES
#endif

typedef uint16_t bf16;

static inline float ld(bf16 h) {
    uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f;
}
static inline bf16 st(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    return f != f ? (bf16)0x7FC0 : (bf16)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
static inline float rb(float f) { return ld(st(f)); }  /* round a float to bfloat16 */
static inline float id(float f) { return f; }
/* sign(sign(x) + 0.5): -1 below zero, +1 at and above (both zeros) and for NaN (whose
   torch.sign is 0) */
static inline float sgn(float x) { return x < 0.0f ? -1.0f : 1.0f; }
/* Bi-Real's ApproxSign derivative max(2 - 2|x|, 0), NaN stays NaN (as clamp) */
static inline float dapprox(float x) {
    float c = 2.0f - 2.0f * fabsf(x); return c < 0.0f ? 0.0f : c;
}
static inline float dste(float x) { return fabsf(x) <= 1.0f ? 1.0f : 0.0f; }

/* y = sign(x) */
#define SIGN(name, TX, LX, TY, SY) CLONES void name(const TX *restrict x, TY *restrict y, \
    int64_t n) { for (int64_t i = 0; i < n; i++) y[i] = SY(sgn(LX(x[i]))); }
SIGN(sign_ff, float, id, float, id)
SIGN(sign_fb, float, id, bf16, st)
SIGN(sign_bb, bf16, ld, bf16, st)

/* the gradient to x, y = g * d(x), in x's dtype; g is of that dtype or converts to it exactly
   (bf16 -> f32); for bf16, d(x) is rounded as eager bf16 ops round it (the last op, 2 - 2|x|) */
#define GRAD(name, TG, LG, TX, LX, D, R, SY) CLONES void name(const TG *restrict g, \
    const TX *restrict x, TX *restrict y, int64_t n) \
    { for (int64_t i = 0; i < n; i++) y[i] = SY(LG(g[i]) * R(D(LX(x[i])))); }
GRAD(approx_ff, float, id, float, id, dapprox, id, id)
GRAD(approx_bf, bf16, ld, float, id, dapprox, id, id)
GRAD(approx_bb, bf16, ld, bf16, ld, dapprox, rb, st)
GRAD(ste_ff, float, id, float, id, dste, id, id)
GRAD(ste_bf, bf16, ld, float, id, dste, id, id)
GRAD(ste_bb, bf16, ld, bf16, ld, dste, id, st)

/* binarised weights w + (alpha * sign(w) - w), alpha per output channel (rows of `per` values),
   as float32 or rounded to bfloat16 (autocast's cast) */
#define WBIN(name, TY, SY) CLONES void name(const float *restrict w, const float *restrict alpha, \
    int64_t rows, int64_t per, TY *restrict y) { \
    for (int64_t r = 0; r < rows; r++) { \
        const float a = alpha[r]; \
        for (int64_t j = 0; j < per; j++) { \
            const float v = w[r * per + j]; \
            y[r * per + j] = SY(v + (a * sgn(v) - v)); \
        } \
    } \
}
WBIN(wbin_f, float, id)
WBIN(wbin_b, bf16, st)

/* For the XNOR forward (nas.nn.kernels' layouts: bit c % 64 of word c / 64 set for -1,
   sign(0) = +1).
   pack_*: the signs of NHWC x (n, h, w, c) into bits (n, h + 2 pad, w + 2 pad, cw), whose padding
   the caller zeroed (zero bits: +1). */
#define PACK(name, TX, LX) CLONES void name(const TX *restrict x, int64_t n, int64_t h, \
    int64_t w, int64_t c, int64_t pad, uint64_t *restrict bits) { \
    const int64_t cw = (c + 63) / 64, hp = h + 2 * pad, wp = w + 2 * pad; \
    for (int64_t b = 0; b < n; b++) \
        for (int64_t i = 0; i < h; i++) \
            for (int64_t j = 0; j < w; j++) { \
                const TX *px = x + ((b * h + i) * w + j) * c; \
                uint64_t *out = bits + ((b * hp + i + pad) * wp + j + pad) * cw; \
                for (int64_t k = 0; k < cw; k++) { \
                    const int64_t m = c - 64 * k < 64 ? c - 64 * k : 64; \
                    uint64_t word = 0; \
                    for (int64_t q = 0; q < m; q++) \
                        word |= (uint64_t)(LX(px[64 * k + q]) < 0.0f) << q; \
                    out[k] = word; \
                } \
            } \
}
PACK(pack_f, float, id)
PACK(pack_b, bf16, ld)

/* wbin_b for channels_last weights (cout, kk taps, cin), and beside the bf16 weights y: their
   packed signs bits (kk, cw, cout); taps (cout, kk), the sum over the input channels of each
   tap's signs; scale (cout), the one magnitude of a channel's weights, or -1 where they are not
   all of one nonzero magnitude. */
CLONES void wbin_xnor(const float *restrict w, const float *restrict alpha, int64_t cout,
                      int64_t kk, int64_t cin, bf16 *restrict y, uint64_t *restrict bits,
                      float *restrict taps, float *restrict scale) {
    const int64_t cw = (cin + 63) / 64;
    for (int64_t o = 0; o < cout; o++) {
        const float a = alpha[o];
        const bf16 *row = y + o * kk * cin;
        uint32_t differ = 0;
        for (int64_t t = 0; t < kk; t++) {
            const float *src = w + (o * kk + t) * cin;
            bf16 *dst = y + (o * kk + t) * cin;
            for (int64_t i = 0; i < cin; i++) {
                const float v = src[i];
                dst[i] = st(v + (a * sgn(v) - v));
            }
            const uint32_t mag = row[0] & 0x7FFFu;
            int32_t negative = 0;
            for (int64_t i = 0; i < cin; i++) {
                differ |= (uint32_t)(dst[i] & 0x7FFFu) ^ mag;
                negative += dst[i] >> 15;
            }
            taps[o * kk + t] = (float)(cin - 2 * negative);
            for (int64_t k = 0; k < cw; k++) {
                const int64_t m = cin - 64 * k < 64 ? cin - 64 * k : 64;
                uint64_t word = 0;
                for (int64_t q = 0; q < m; q++) word |= (uint64_t)(dst[64 * k + q] >> 15) << q;
                bits[(t * cw + k) * cout + o] = word;
            }
        }
        /* one magnitude, nonzero and finite (then no zero, so the sign bits are the signs) */
        const uint32_t mag = row[0] & 0x7FFFu;
        scale[o] = (!differ && mag != 0 && mag < 0x7F80u) ? ld((bf16)mag) : -1.0f;
    }
}

/* out = bf16(y - corr): the kernel's float NHWC output (n rows of `per` values) less the zero
   padding's share (per values, broadcast over n; NULL for none), rounded once */
CLONES void finish_b(const float *restrict y, const float *restrict corr, int64_t n, int64_t per,
                     bf16 *restrict out) {
    for (int64_t b = 0; b < n; b++) {
        const float *row = y + b * per;
        bf16 *dst = out + b * per;
        if (corr)
            for (int64_t i = 0; i < per; i++) dst[i] = st(row[i] - corr[i]);
        else
            for (int64_t i = 0; i < per; i++) dst[i] = st(row[i]);
    }
}
"""

_C_FUNCTIONS = {
    "sign_ff": 3,
    "sign_fb": 3,
    "sign_bb": 3,
    "approx_ff": 4,
    "approx_bf": 4,
    "approx_bb": 4,
    "ste_ff": 4,
    "ste_bf": 4,
    "ste_bb": 4,
    "wbin_f": 5,
    "wbin_b": 5,
    "pack_f": 7,
    "pack_b": 7,
    "wbin_xnor": 9,
    "finish_b": 5,
}
_C_FLAGS = ("-O3", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared")
_USE_C = os.environ.get("NAS_BINARY_C", "1") != "0"  # NAS_BINARY_C=0: the eager ops inside


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "bnn-gradpath-nas"


def _build(target: Path) -> None:
    """Compile the C loops into ``target`` (atomically: a partial file, then a rename)."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise RuntimeError("no C compiler (gcc or cc) on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        source = Path(work) / "binary_ops.c"
        source.write_text(_C_SOURCE)
        partial = Path(work) / target.name
        command = [compiler, *_C_FLAGS, str(source), "-o", str(partial)]
        out = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {out.stderr.strip()[:500]}")
        partial.replace(target)


@cache
def kernels() -> ctypes.CDLL | None:
    """The compiled element-wise loops of the fused path, built on first use into
    ``~/.cache/bnn-gradpath-nas`` (``$XDG_CACHE_HOME``; a temporary folder if that is not
    writable) under a name that hashes the source and flags; None, after one warning, where they
    cannot be built (the fused path then runs PyTorch's eager ops, same results, slower), or
    where ``NAS_BINARY_C=0``."""
    if not _USE_C:
        return None
    digest = hashlib.sha256((_C_SOURCE + " ".join(_C_FLAGS)).encode()).hexdigest()[:16]
    name = f"binary_ops-{digest}.so"
    error: Exception | None = None
    user = getattr(os, "getuid", lambda: 0)()
    for folder in (_cache_dir(), Path(tempfile.gettempdir()) / f"bnn-gradpath-nas-{user}"):
        target = folder / name
        try:
            if not target.is_file():
                _build(target)
            lib = ctypes.CDLL(str(target))
            break
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            error = e
    else:
        warnings.warn(
            f"nas.nn.binary: the fused binary conv's C loops are unavailable ({error}); it runs "
            "PyTorch's eager ops instead (same results, slower)",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    p, n = ctypes.c_void_p, ctypes.c_int64
    for fn, args in _C_FUNCTIONS.items():
        f = getattr(lib, fn)
        f.restype = None
        f.argtypes = {
            3: [p, p, n],
            4: [p, p, p, n],
            5: [p, p, n, n, p],
            7: [p, n, n, n, n, n, p],
            9: [p, p, n, n, n, p, p, p, p],
        }[args]
    return lib


_CODES = {torch.float32: "f", torch.bfloat16: "b"}


def _dense(t: torch.Tensor) -> bool:
    """Whether ``t`` is a CPU tensor whose elements fill its memory in order (contiguous or
    channels_last), so an element-wise loop may run over its storage."""
    if t.device.type != "cpu":
        return False
    if t.is_contiguous():
        return True
    return t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)


def _memory_format(t: torch.Tensor) -> torch.memory_format:
    if (
        t.dim() == 4
        and not t.is_contiguous()
        and t.is_contiguous(memory_format=torch.channels_last)
    ):
        return torch.channels_last
    return torch.contiguous_format


def _same_order(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two dense tensors of one shape lay their elements out in the same order (their
    strides agree on every dimension longer than 1)."""
    return a.shape == b.shape and all(
        x == y for x, y, n in zip(a.stride(), b.stride(), a.shape, strict=True) if n > 1
    )


def _lib_for(*tensors: torch.Tensor) -> ctypes.CDLL | None:
    if not all(t.dtype in _CODES and _dense(t) for t in tensors):
        return None
    if len(tensors) == 2 and not _same_order(*tensors):
        return None
    return kernels()


@lru_cache(maxsize=4096)
def _reference_strides(
    what: str, shape: tuple, strides: tuple, dtype: torch.dtype, grad_strides: tuple = ()
) -> tuple:
    """The strides of the reference path's result (``"sign"``, ``"weight"``: the binarised
    weights, ``"ste"``, ``"approxsign"``: the gradients of x given grad's strides), found by
    running its ops once per shape and strides (on zeros). They differ from ``empty_like``'s
    only along dimensions of length 1 (a 1-channel or 1x1 tensor is both contiguous and
    channels_last), where oneDNN may still read them as another layout and sum in another order;
    the fused path allocates its results with them. (Meta tensors would do without the work, but
    their first use imports torch._dynamo, seconds.)"""
    x = torch.empty_strided(shape, strides, dtype=dtype).zero_()
    if what == "sign":
        return _sign(x).stride()
    if what == "weight":
        return binarize_weight(x).stride()
    grad = torch.empty_strided(shape, grad_strides, dtype=dtype).zero_()
    if what == "approxsign":
        return (grad * torch.clamp(2 - 2 * x.abs(), min=0)).stride()
    return (grad * (x.abs() <= 1).to(grad.dtype)).stride()


def _empty_as(what: str, t: torch.Tensor, dtype: torch.dtype, grad=None) -> torch.Tensor:
    """An uninitialised result laid out as the reference path lays out ``what`` of ``t``."""
    extra = () if grad is None else grad.stride()
    strides = _reference_strides(what, tuple(t.shape), t.stride(), t.dtype, extra)
    return torch.empty_strided(t.shape, strides, dtype=dtype)


def sign_to(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``_sign(x)`` as ``dtype``, laid out as the reference's: one pass where the C loops
    serve."""
    lib = _lib_for(x)
    key = f"sign_{_CODES[x.dtype]}{_CODES.get(dtype, '?')}" if lib is not None else ""
    if lib is None or key not in _C_FUNCTIONS:
        return _sign(x).to(dtype)
    out = _empty_as("sign", x, dtype)
    getattr(lib, key)(x.data_ptr(), out.data_ptr(), x.numel())
    return out


def sign_grad(grad: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    """The gradient to ``x`` of its sign, given the gradient ``grad`` of the sign's output, as
    :class:`SignSTE` (``kind="ste"``) or :class:`ApproxSign` compute it after ``grad`` is cast
    to x's dtype; in x's dtype."""
    lib = _lib_for(grad, x)
    key = f"{'approx' if kind == 'approxsign' else 'ste'}_{_CODES.get(grad.dtype)}"
    key += _CODES.get(x.dtype, "?")
    if lib is None or key not in _C_FUNCTIONS:
        grad = grad.to(x.dtype)
        if kind == "approxsign":
            return grad * torch.clamp(2 - 2 * x.abs(), min=0)
        return grad * (x.abs() <= 1).to(grad.dtype)
    out = _empty_as(kind, x, x.dtype, grad)
    getattr(lib, key)(grad.data_ptr(), x.data_ptr(), out.data_ptr(), x.numel())
    return out


def binarized_weight(w: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The value of ``binarize_weight(w)`` (bit for bit, laid out as it) as ``dtype``, without
    autograd."""
    alpha = weight_scale(w)
    lib = _lib_for(w)
    if lib is None or w.dtype != torch.float32 or dtype not in _CODES or w.dim() != 4:
        return (w + (alpha * _sign(w) - w)).to(dtype)
    out = _empty_as("weight", w, dtype)
    fn = lib.wbin_f if dtype == torch.float32 else lib.wbin_b
    fn(w.data_ptr(), alpha.data_ptr(), w.shape[0], w[0].numel(), out.data_ptr())
    return out


@cache
def _xnor_kernels():
    """:mod:`nas.nn.kernels` where its compiled XNOR-popcount kernels run on this CPU, else None."""
    try:
        # the kernels load (and may build) their C library: the XNOR forward alone
        import nas.nn.kernels as xnor  # noqa: PLC0415
    except ImportError:
        return None
    return xnor if xnor.available_paths() else None


@cache
def _ring(size: tuple[int, int], padding: int) -> torch.Tensor:
    """The (1, 1, H + 2p, W + 2p) indicator of a zero padding of ``padding`` pixels."""
    h, w = size
    ring = torch.ones(1, 1, h + 2 * padding, w + 2 * padding)
    ring[..., padding : padding + h, padding : padding + w] = 0
    return ring


def xnor_conv(
    x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int, pad_value: float
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(y, wb): ``F.conv2d(pad(sign(x), pad_value), wb, stride)`` in bf16, bit for bit, through
    :mod:`nas.nn.kernels`' XNOR-popcount kernel, and ``wb`` the bf16 binarised weights
    (:func:`binarize_weight` cast to bf16). y is None where the equality cannot be shown (wb then
    still given), both None where the kernels cannot run (no library, a layout or shape they do
    not take).

    Why equal: oneDNN's bf16 conv multiplies +/-1 by +/-a (exact) and sums in float32; every
    partial sum is a multiple m * a with |m| <= K * K * C and a of 8 significant bits, exact in
    float32 (for C below 7000), so its result is the exact a * dot, rounded once to bf16. The
    kernel counts dot exactly in integers and returns a * dot in float32 (exact), which the same
    rounding takes to bf16. It pads with +1; for zero padding the padded taps' share (a times
    the sum of those weights' signs, exact) is taken off before the rounding. A channel whose bf16
    weights are not all of one magnitude (the float rounding of ``w + (alpha * sign(w) - w)`` can
    leave one an ulp apart, which bf16 very rarely keeps), or of magnitude 0, or not finite, gives
    y None: the caller runs oneDNN."""
    lib, xnor = kernels(), _xnor_kernels()
    cout, cin, k, k2 = weight.shape
    if (
        lib is None
        or xnor is None
        or k != k2
        or k not in (1, 3)
        or stride not in (1, 2)
        or padding != k // 2
        or x.dim() != 4
        or x.dtype not in _CODES
        or x.device.type != "cpu"
        or weight.dtype != torch.float32
        or x.is_contiguous()  # 1 channel or 1x1: oneDNN may read it as NCHW; its output too
        or not x.is_contiguous(memory_format=torch.channels_last)
        or not weight.is_contiguous(memory_format=torch.channels_last)
    ):
        return None, None
    cw = (cin + 63) // 64
    alpha = weight_scale(weight)
    wb = _empty_as("weight", weight, torch.bfloat16)
    bits = torch.empty(k, k, cw, cout, dtype=torch.int64)
    taps = torch.empty(cout, 1, k, k)
    scale = torch.empty(cout)
    lib.wbin_xnor(
        weight.data_ptr(), alpha.data_ptr(), cout, k * k, cin, wb.data_ptr(),
        bits.data_ptr(), taps.data_ptr(), scale.data_ptr(),
    )  # fmt: skip
    if not bool((scale > 0).all()):
        return None, wb
    n, _, h, w = x.shape
    packed = torch.zeros(n, h + 2 * padding, w + 2 * padding, cw, dtype=torch.int64)
    pack = lib.pack_b if x.dtype == torch.bfloat16 else lib.pack_f
    pack(x.data_ptr(), n, h, w, cin, padding, packed.data_ptr())
    xnor.set_threads(1)
    y = xnor.binary_conv2d(
        xnor.Packed(packed, cin, padding), xnor.PackedWeights(bits, cin), stride, scale=scale
    )  # (N, OH, OW, COUT) float32: a * dot with +1 padding
    corr = None
    if padding and pad_value == 0.0:  # the padded taps' share, (OH, OW, COUT)
        padded = F.conv2d(_ring((h, w), padding), taps, stride=stride)[0]
        corr = (padded * scale[:, None, None]).permute(1, 2, 0).contiguous()
    _, oh, ow, _ = y.shape
    out = torch.empty(n, cout, oh, ow, dtype=torch.bfloat16, memory_format=torch.channels_last)
    lib.finish_b(y.data_ptr(), 0 if corr is None else corr.data_ptr(), n, oh * ow * cout,
                 out.data_ptr())  # fmt: skip
    return out, wb


class BinaryConvFunction(torch.autograd.Function):
    """``F.conv2d(pad(sign(x)), binarize_weight(weight))`` as one autograd node, with the
    straight-through gradients of :class:`SignSTE` / :class:`ApproxSign` (``kind``) and of
    :func:`binarize_weight`. Under autocast the signs and weights are written in the autocast
    dtype straight away (autocast would cast them to it; +/-1 converts exactly). In bf16 on one
    CPU thread (a trial on one core) the forward conv runs as XNOR-popcount
    (:func:`xnor_conv`), the same bits four to six times faster; the backward convs stay
    oneDNN's."""

    @staticmethod
    def forward(ctx, x, weight, stride: int, padding: int, pad_value: float, kind: str):
        device = x.device.type
        if torch.is_autocast_enabled(device):
            dtype = torch.get_autocast_dtype(device)
        else:
            dtype = x.dtype
        y = wb = None
        if dtype == torch.bfloat16 and device == "cpu" and torch.get_num_threads() == 1:
            y, wb = xnor_conv(x, weight, stride, padding, pad_value)
        if wb is None:
            wb = binarized_weight(weight, dtype)
        s = None
        if y is None or any(ctx.needs_input_grad[:2]):
            s = sign_to(x, dtype)
            if pad_value != 0.0:
                s = F.pad(s, (padding,) * 4, value=pad_value)
        conv_pad = 0 if pad_value != 0.0 else padding
        if y is None:
            y = F.conv2d(s, wb, None, stride, conv_pad)
        ctx.save_for_backward(x, s, wb)
        ctx.conf = (stride, conv_pad, padding - conv_pad, kind, weight.dtype)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, s, wb = ctx.saved_tensors
        stride, conv_pad, cut, kind, weight_dtype = ctx.conf
        need_x, need_w = ctx.needs_input_grad[:2]
        gs, gw, _ = torch.ops.aten.convolution_backward(
            grad.to(s.dtype),
            s,
            wb,
            None,
            [stride, stride],
            [conv_pad, conv_pad],
            [1, 1],
            False,
            [0, 0],
            1,
            [need_x, need_w, False],
        )
        gx = None
        if need_x:
            if cut:  # the gradient of the padding's input: the inner part, laid out as x
                gs = gs[:, :, cut:-cut, cut:-cut].contiguous(memory_format=_memory_format(x))
            gx = sign_grad(gs, x, kind)
        if need_w:
            gw = gw.to(weight_dtype)
        return gx, gw, None, None, None, None


class BinaryConv2d(nn.Conv2d):
    """A convolution whose input and weights are binary: it binarises its input (``activation``)
    and its latent real weights, and pads with zeros or with +1 (``padding_value``). ``fused``:
    one autograd node and one-pass element-wise loops (the module docstring); the reference
    modules otherwise. Both give the same bits."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        activation: str = "ste",
        padding_value: float = 0.0,
        fused: bool = True,
    ):
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            bias=False,
        )
        self.act = BinaryActivation(activation)
        self.padding_value = padding_value
        self.fused = fused

    def _can_fuse(self, x) -> bool:
        act = self.act
        return (
            self.fused
            and type(act) is BinaryActivation
            and isinstance(x, torch.Tensor)  # not an fx Proxy
            and not (act._forward_hooks or act._forward_pre_hooks)
            and not (_module._global_forward_hooks or _module._global_forward_pre_hooks)
            and not torch.jit.is_scripting()
            and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling()
            and x.is_floating_point()
            and (x.dtype == self.weight.dtype or torch.is_autocast_enabled(x.device.type))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._can_fuse(x):
            return BinaryConvFunction.apply(
                x, self.weight, self.stride[0], self.padding[0], self.padding_value, self.act.kind
            )
        x = self.act(x)
        w = binarize_weight(self.weight)
        if self.padding_value == 0.0:
            return F.conv2d(x, w, None, self.stride, self.padding)
        p = self.padding[0]
        x = F.pad(x, (p, p, p, p), value=self.padding_value)
        return F.conv2d(x, w, None, self.stride, 0)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", activation={self.act.kind}, pad={self.padding_value:g}"
