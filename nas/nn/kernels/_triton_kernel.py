"""The Triton kernel behind :func:`nas.nn.kernels.triton_conv.triton_binary_conv2d`.

Imported only when that function runs (this module needs ``triton``). The weights come in as
int32 views of the packed int64 words (little-endian: int32 word ``j`` of a tap holds channels
``32j..32j+31``), so the kernel does no 64-bit integer arithmetic. The activations come in the
same way (``SIGNS`` false), or as int8 +/-1 NHWC with one byte per channel (``SIGNS`` true), the
form a GPU network keeps between its layers: the kernel then unpacks only the weights.

The reduction runs over (tap, channel chunk) steps; a step covers ``32 * WORDS`` channels of one
tap, and a tap whose channels do not fill its last step is filled up with +1 lanes in both
operands (+1 * +1 each, subtracted with the padding lanes).

A launch with ``SPLIT_K`` > 1 splits those steps among ``SPLIT_K`` programs per output tile, for
the layers whose few output tiles leave most of the GPU idle (batch 1, 7x7 and 14x14 pixels):
each program adds its int32 partial dot into a workspace, and the tile's last program (counted
in the workspace's per-tile counters) takes the sum, resets the workspace to zero for the next
launch and writes the float output. Integer sums are exact in any order, so the output is the
same as with one program per tile.
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
def _step_loads(
    x_ptr,
    w_ptr,
    corner,
    w_cols,
    row_ok,
    col_ok,
    step,
    WP,
    C,
    COUT,
    CW: tl.constexpr,
    K: tl.constexpr,
    WORDS: tl.constexpr,
    SIGNS: tl.constexpr,
):
    """What reduction step ``step`` reads: the activations, (BLOCK_M, WORDS) int32 words or
    (BLOCK_M, 32 * WORDS) int8 signs, and the weights, (WORDS, BLOCK_N) int32 words."""
    chunks = (2 * CW + WORDS - 1) // WORDS  # steps per tap
    tap = step // chunks
    j = (step % chunks) * WORDS + tl.arange(0, WORDS)  # int32 words of this tap
    j_ok = j < 2 * CW  # words past the tap's last are zero bits: +1 lanes
    if SIGNS:
        ch = (step % chunks) * (32 * WORDS) + tl.arange(0, 32 * WORDS)  # k = 32 j + lane
        x_tap = ((tap // K) * WP + tap % K) * C
        xs = tl.load(
            x_ptr + (corner + x_tap)[:, None] + ch[None, :],
            mask=row_ok[:, None] & (ch < C)[None, :],
            other=1,
        )
    else:
        x_tap = ((tap // K) * WP + tap % K) * (2 * CW)
        xs = tl.load(
            x_ptr + (corner + x_tap)[:, None] + j[None, :],
            mask=row_ok[:, None] & j_ok[None, :],
            other=0,
        )
    w_rows = (tap * CW + j // 2) * (2 * COUT) + j % 2  # word j // 2, half j % 2
    ww = tl.load(
        w_ptr + w_rows[:, None] + w_cols[None, :], mask=j_ok[:, None] & col_ok[None, :], other=0
    )
    return xs, ww


@triton.jit
def _epilogue(
    dot, cols, col_ok, offsets, mask, scale_ptr, shift_ptr, res_ptr, out_ptr,
    HAS_SCALE: tl.constexpr, HAS_SHIFT: tl.constexpr, HAS_RESIDUAL: tl.constexpr,
):  # fmt: skip
    """The float output of a tile's int32 dot, rounded step by step as ``reference_conv2d``
    (the kernel is launched without FMA fusion)."""
    out = dot.to(tl.float32)
    if HAS_SCALE:
        out = out * tl.load(scale_ptr + cols, mask=col_ok, other=0.0)[None, :]
    if HAS_SHIFT:
        out = out + tl.load(shift_ptr + cols, mask=col_ok, other=0.0)[None, :]
    if HAS_RESIDUAL:
        out = out + tl.load(res_ptr + offsets, mask=mask, other=0.0)
    tl.store(out_ptr + offsets, out, mask=mask)


@triton.jit
def binary_conv_kernel(
    x_ptr,  # int32 (N, HP, WP, 2 * CW): the packed activations, or int8 (N, HP, WP, C) if SIGNS
    w_ptr,  # int32 (K, K, CW, COUT, 2): the packed weights
    scale_ptr,  # float32 (COUT,), read if HAS_SCALE
    shift_ptr,  # float32 (COUT,), read if HAS_SHIFT
    res_ptr,  # float32 (M, COUT) = NHWC, read if HAS_RESIDUAL
    out_ptr,  # float32 (M, COUT) = NHWC
    sums_ptr,  # int32 (M, COUT), zero: the split launches' partial dots (left zero)
    count_ptr,  # int32, one per output tile, zero: the split programs done (left zero)
    M,  # N * OH * OW output pixels
    OHW,
    OW,
    HP,
    WP,
    C,  # input channels
    COUT,
    PAD_LANES,  # K * K * (64 * CW - C): padding lanes, +1 in both operands
    CW: tl.constexpr,  # channel words: a constant trip count (and no Python int of a tensor)
    K: tl.constexpr,
    STRIDE: tl.constexpr,
    SIGNS: tl.constexpr,  # x is int8 +/-1, not packed bits
    HAS_SCALE: tl.constexpr,
    HAS_SHIFT: tl.constexpr,
    HAS_RESIDUAL: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    WORDS: tl.constexpr,  # int32 weight words per step: a dot over 32 * WORDS channels
    PREFETCH: tl.constexpr,  # load step s + 1's operands before step s's dot
    SPLIT_K: tl.constexpr,  # programs per output tile, each reducing a share of the steps
):
    pid = tl.program_id(0)
    tiles_n = tl.cdiv(COUT, BLOCK_N)
    rows = (pid // tiles_n) * BLOCK_M + tl.arange(0, BLOCK_M)  # output pixels
    cols = (pid % tiles_n) * BLOCK_N + tl.arange(0, BLOCK_N)  # output channels
    row_ok = rows < M
    col_ok = cols < COUT
    img, pix = rows // OHW, rows % OHW
    # offset of each output pixel's window corner in x, in x's elements
    corner = (img * HP + (pix // OW) * STRIDE) * WP + (pix % OW) * STRIDE
    if SIGNS:
        corner = corner * C
    else:
        corner = corner * (2 * CW)
    w_cols = 2 * cols
    lanes = tl.arange(0, 32)
    chunks = (2 * CW + WORDS - 1) // WORDS  # steps per tap
    steps = K * K * chunks
    if SPLIT_K == 1:
        first = 0
        last = steps
    else:  # an even share of the steps; first < steps, so its loads stay in bounds
        first = tl.program_id(1) * steps // SPLIT_K
        last = (tl.program_id(1) + 1) * steps // SPLIT_K
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
    if PREFETCH:
        xs, ww = _step_loads(
            x_ptr, w_ptr, corner, w_cols, row_ok, col_ok, first, WP, C, COUT, CW, K, WORDS, SIGNS
        )
    for step in range(first, last):  # one loop over (tap, chunk): few live registers
        if PREFETCH:
            # the last step loads the first step's operands again, unused: no bounds check
            nxt = first + (step + 1 - first) % (last - first)
            xn, wn = _step_loads(
                x_ptr, w_ptr, corner, w_cols, row_ok, col_ok, nxt, WP, C, COUT, CW, K, WORDS, SIGNS
            )
        else:
            xs, ww = _step_loads(
                x_ptr, w_ptr, corner, w_cols, row_ok, col_ok, step, WP, C, COUT, CW, K, WORDS, SIGNS
            )
        # int8 +/-1 tiles, channel 32 j + l of the chunk at k = 32 j + l in both operands
        if SIGNS:
            a = xs
        else:
            a = tl.reshape(_signs(xs[:, :, None], lanes[None, None, :]), (BLOCK_M, 32 * WORDS))
        b = tl.reshape(_signs(ww[:, None, :], lanes[None, :, None]), (32 * WORDS, BLOCK_N))
        acc = tl.dot(a, b, acc, out_dtype=tl.int32)
        if PREFETCH:
            xs, ww = xn, wn
    # +1 lanes in both operands: the padding lanes and those that fill the taps' last steps
    filled = PAD_LANES + K * K * (32 * WORDS * chunks - 64 * CW)
    offsets = rows[:, None] * COUT + cols[None, :]
    mask = row_ok[:, None] & col_ok[None, :]
    if SPLIT_K == 1:
        _epilogue(
            acc - filled, cols, col_ok, offsets, mask, scale_ptr, shift_ptr, res_ptr, out_ptr,
            HAS_SCALE, HAS_SHIFT, HAS_RESIDUAL
        )  # fmt: skip
    else:
        tl.atomic_add(sums_ptr + offsets, acc, mask=mask, sem="relaxed")  # ordered by the count
        tl.debug_barrier()  # every thread's adds are done before the count says so
        if tl.atomic_add(count_ptr + pid, 1) == SPLIT_K - 1:  # the tile's last program (acq_rel)
            # the whole dot, read at L2 where the adds were made, and zero for the next launch
            acc = tl.atomic_xchg(sums_ptr + offsets, 0, mask=mask, sem="relaxed")
            tl.atomic_xchg(count_ptr + pid, 0)
            _epilogue(
                acc - filled, cols, col_ok, offsets, mask, scale_ptr, shift_ptr, res_ptr,
                out_ptr, HAS_SCALE, HAS_SHIFT, HAS_RESIDUAL
            )  # fmt: skip


INTERPRET = isinstance(binary_conv_kernel, InterpretedFunction)  # TRITON_INTERPRET=1

# small tiles for the CPU interpreter, where every program is a numpy loop
INTERPRET_BLOCKS = {"BLOCK_M": 32, "BLOCK_N": 16, "WORDS": 4, "PREFETCH": True, "SPLIT_K": 1}
# The launches the autotuner tries: each was the fastest, or within 5% of it, on some Bi-Real18
# layer at batch 1, 16 or 64 in the bench's sweeps on an H200 (bench_gpu's JSON keeps each one's
# time): small tiles for the few output pixels of batch 1, 64 channels a step where a tap has
# only 64, wide tiles for batch 64, and the steps split where batch 1 and 16 leave most SMs idle.
TUNED = [  # BLOCK_M, BLOCK_N, warps, WORDS, PREFETCH, SPLIT_K
    (128, 64, 4, 1, False, 1),
    (128, 64, 4, 2, True, 1),
    (128, 128, 4, 4, True, 1),
    (128, 128, 8, 4, False, 1),
    (64, 128, 4, 4, True, 1),
    (64, 32, 4, 4, True, 1),
    (64, 32, 4, 2, True, 1),
    (64, 32, 4, 2, True, 2),
    (64, 32, 4, 4, True, 4),
    (64, 32, 4, 4, True, 8),
    (64, 128, 4, 4, True, 2),
]
# the autotuned launches; the GPU bench's exactness check runs each of them too
CONFIGS = [
    {
        "BLOCK_M": m,
        "BLOCK_N": n,
        "WORDS": words,
        "PREFETCH": prefetch,
        "SPLIT_K": split,
        "num_warps": w,
        "num_stages": 3,
    }
    for m, n, w, words, prefetch, split in TUNED
]
KEY = ["M", "C", "COUT", "CW", "K", "STRIDE", "SIGNS", "HAS_RESIDUAL"]
if INTERPRET:
    tuned_kernel = None
else:
    _configs = [
        triton.Config(
            {k: c[k] for k in ("BLOCK_M", "BLOCK_N", "WORDS", "PREFETCH", "SPLIT_K")},
            num_warps=c["num_warps"],
            num_stages=c["num_stages"],
        )
        for c in CONFIGS
    ]
    tuned_kernel = triton.autotune(_configs, key=KEY)(binary_conv_kernel)
