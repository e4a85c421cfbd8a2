"""The Triton kernel behind :func:`nas.kernels.triton_conv.triton_binary_conv2d`.

Imported only when that function runs (this module needs ``triton``). Both operands come in as
int32 views of the packed int64 words (little-endian: word ``2j`` holds channels ``64j..64j+31``,
word ``2j + 1`` channels ``64j+32..64j+63``), so the kernel does no 64-bit integer arithmetic.
"""

import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction


@triton.jit
def _signs(words, lanes):
    """int8 +/-1 of bit ``lanes`` of ``words`` (int32, broadcast): the bit is shifted into the
    sign bit and spread over the word by the arithmetic shift (0 for bit 0, -1 for bit 1), then
    ``| 1`` makes that +1 or -1."""
    return (((words << (31 - lanes)) >> 31) | 1).to(tl.int8)


@triton.jit
def binary_conv_kernel(
    x_ptr,  # int32 (N, HP, WP, 2 * CW): the packed activations, padding included
    w_ptr,  # int32 (K, K, CW, COUT, 2): the packed weights
    scale_ptr,  # float32 (COUT,), read if HAS_SCALE
    shift_ptr,  # float32 (COUT,), read if HAS_SHIFT
    res_ptr,  # float32 (M, COUT) = NHWC, read if HAS_RESIDUAL
    out_ptr,  # float32 (M, COUT) = NHWC
    M,  # N * OH * OW output pixels
    OHW,
    OW,
    HP,
    WP,
    COUT,
    PAD_LANES,  # K * K * (64 * CW - C): padding lanes, zero bits in both operands (+1 * +1)
    CW: tl.constexpr,  # channel words: a constant trip count (and no Python int of a tensor)
    K: tl.constexpr,
    STRIDE: tl.constexpr,
    HAS_SCALE: tl.constexpr,
    HAS_SHIFT: tl.constexpr,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid = tl.program_id(0)
    tiles_n = tl.cdiv(COUT, BLOCK_N)
    rows = (pid // tiles_n) * BLOCK_M + tl.arange(0, BLOCK_M)  # output pixels
    cols = (pid % tiles_n) * BLOCK_N + tl.arange(0, BLOCK_N)  # output channels
    row_ok = rows < M
    col_ok = cols < COUT
    img, pix = rows // OHW, rows % OHW
    # int32 offset of each output pixel's window corner in x
    corner = ((img * HP + (pix // OW) * STRIDE) * WP + (pix % OW) * STRIDE) * (2 * CW)
    lanes = tl.arange(0, 32)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    for step in range(K * K * CW):  # one loop over (tap, word): few live registers
        tap, word = step // CW, step % CW
        x_step = x_ptr + corner + ((tap // K) * WP + tap % K) * (2 * CW) + 2 * word
        w_step = w_ptr + step * (2 * COUT) + 2 * cols
        for half in tl.static_range(2):  # 32 channels at a time
            xw = tl.load(x_step + half, mask=row_ok, other=0)
            ww = tl.load(w_step + half, mask=col_ok, other=0)
            a = _signs(xw[:, None], lanes[None, :])  # (BLOCK_M, 32) int8
            b = _signs(ww[None, :], lanes[:, None])  # (32, BLOCK_N) int8
            acc = tl.dot(a, b, acc, out_dtype=tl.int32)
    # the float epilogue, rounded step by step as reference_conv2d (launched without FMA fusion)
    out = (acc - PAD_LANES).to(tl.float32)
    if HAS_SCALE:
        out = out * tl.load(scale_ptr + cols, mask=col_ok, other=0.0)[None, :]
    if HAS_SHIFT:
        out = out + tl.load(shift_ptr + cols, mask=col_ok, other=0.0)[None, :]
    offsets = rows[:, None] * COUT + cols[None, :]
    mask = row_ok[:, None] & col_ok[None, :]
    if HAS_RESIDUAL:
        out = out + tl.load(res_ptr + offsets, mask=mask, other=0.0)
    tl.store(out_ptr + offsets, out, mask=mask)


INTERPRET = isinstance(binary_conv_kernel, InterpretedFunction)  # TRITON_INTERPRET=1

# H100-sized tiles; small tiles for the CPU interpreter, where every program is a numpy loop
INTERPRET_BLOCKS = {"BLOCK_M": 32, "BLOCK_N": 16}
TUNED = [(128, 128, 8), (128, 64, 4), (128, 64, 8), (64, 64, 4), (64, 32, 4)]  # M, N, warps
# the autotuned launches; the GPU bench's exactness check runs each of them too
CONFIGS = [{"BLOCK_M": m, "BLOCK_N": n, "num_warps": w, "num_stages": 3} for m, n, w in TUNED]
KEY = ["M", "COUT", "CW", "K", "STRIDE", "HAS_RESIDUAL"]
if INTERPRET:
    tuned_kernel = None
else:
    _configs = [
        triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=3) for m, n, w in TUNED
    ]
    tuned_kernel = triton.autotune(_configs, key=KEY)(binary_conv_kernel)
