/* Bit-packed binary convolution (XNOR-popcount) for inference on the CPU.
 *
 * Layouts (docs/design.md section 8):
 *   activations  uint64 [N][H][W][CW]     bit c%64 of word c/64 is 1 where the value is -1
 *   weights      uint64 [K][K][CW][COUT]  the same bits, output channels innermost (vectors)
 *   output       float [N][OH][OW][COUT]  and/or uint64 [N][OH+2p][OW+2p][COUT/64 rounded up]
 *                (the packed output +1-padded by p pixels for the next conv)
 * The input is already padded (with +1: zero bits) by the caller, so every tap is valid and
 *   dot(x, w) = K*K*C - 2 * popcount(x XOR w)
 * counts exactly the +/-1 products (channel-padding bits are zero in both operands).
 *
 * Per output channel o the float output is  scale[o] * dot + shift[o]  (+ residual), which
 * folds the weight scale and the following BatchNorm; the packed output is the sign of the same
 * value, computed in float exactly as the float output is, so both agree bit for bit (where
 * only the packed output is wanted, through count thresholds that reproduce it exactly).
 *
 * Three paths, chosen at run time: AVX-512 with VPOPCNTDQ (8 channels per instruction), AVX2
 * (4 channels, popcount by nibble lookup) and portable C. OpenMP over output rows (and channel
 * groups where rows are few). The file also holds the stem's NHWC max-pool of a packed network and
 * the probes nas.nn.kernels.bench times.
 */
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define PATH_PORTABLE 0
#define PATH_AVX2 1
#define PATH_AVX512 2

typedef struct {
    int n, h, w, cw;        /* padded input */
    int k, stride, cout;    /* kernel size, stride, output channels */
    int oh, ow;             /* output size */
    int total;              /* K*K*C: the number of products in one dot */
    int out_pad;            /* +1 padding around the packed output */
    int64_t ostride;        /* floats from one pixel of the float output (and residual) to the next */
} shape_t;

/* The first word of output pixel (b, y, xo) in the packed output, padded by out_pad. */
static inline int64_t bits_at(const shape_t *s, int b, int y, int xo) {
    const int64_t words = (s->cout + 63) / 64, p = s->out_pad;
    return (((int64_t)b * (s->oh + 2 * p) + y + p) * (s->ow + 2 * p) + xo + p) * words;
}

/* Finish CB output channels [o0, o0 + CB) of one pixel from their XOR popcounts; `pixel` indexes
 * the float output, `bits` the pixel's first word of the packed output. */
static inline void finish(const shape_t *s, const int64_t *acc, int o0, int cb,
                          const float *scale, const float *shift, const float *residual,
                          float *out_f, uint64_t *out_bits, int64_t pixel, int64_t bits) {
    for (int j = 0; j < cb; j++) {
        int o = o0 + j;
        float v = scale[o] * (float)(s->total - 2 * acc[j]) + shift[o];
        if (residual) v += residual[pixel * s->ostride + o];
        if (out_f) out_f[pixel * s->ostride + o] = v;
        if (out_bits && v < 0.0f) out_bits[bits + o / 64] |= (uint64_t)1 << (o % 64);
    }
}

static void conv_portable(const shape_t *s, const uint64_t *x, const uint64_t *w,
                          const float *scale, const float *shift, const float *residual,
                          float *out_f, uint64_t *out_bits) {
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < s->n; b++)
        for (int y = 0; y < s->oh; y++) {
            int64_t acc[64];
            for (int xo = 0; xo < s->ow; xo++) {
                int64_t pixel = ((int64_t)b * s->oh + y) * s->ow + xo;
                for (int o0 = 0; o0 < s->cout; o0 += 64) {
                    int cb = s->cout - o0 < 64 ? s->cout - o0 : 64;
                    memset(acc, 0, sizeof(acc));
                    for (int ky = 0; ky < s->k; ky++)
                        for (int kx = 0; kx < s->k; kx++) {
                            const uint64_t *xp = x + (((int64_t)b * s->h + y * s->stride + ky) * s->w
                                                      + xo * s->stride + kx) * s->cw;
                            const uint64_t *wp = w + ((int64_t)(ky * s->k + kx) * s->cw) * s->cout;
                            for (int c = 0; c < s->cw; c++)
                                for (int j = 0; j < cb; j++)
                                    acc[j] += __builtin_popcountll(xp[c] ^ wp[(int64_t)c * s->cout + o0 + j]);
                        }
                    finish(s, acc, o0, cb, scale, shift, residual, out_f, out_bits, pixel,
                           bits_at(s, b, y, xo));
                }
            }
        }
}

#if defined(__x86_64__)
__attribute__((target("avx2")))
static inline __m256i popcount256(__m256i v) {
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(v, low));
    __m256i hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), low));
    return _mm256_sad_epu8(_mm256_add_epi8(lo, hi), _mm256_setzero_si256());
}

__attribute__((target("avx2")))
static void conv_avx2(const shape_t *s, const uint64_t *x, const uint64_t *w,
                      const float *scale, const float *shift, const float *residual,
                      float *out_f, uint64_t *out_bits) {
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < s->n; b++)
        for (int y = 0; y < s->oh; y++) {
            int64_t acc[64];
            for (int xo = 0; xo < s->ow; xo++) {
                int64_t pixel = ((int64_t)b * s->oh + y) * s->ow + xo;
                for (int o0 = 0; o0 < s->cout; o0 += 64) {
                    int cb = s->cout - o0 < 64 ? s->cout - o0 : 64;
                    int vec = cb / 4;
                    __m256i a[16];
                    for (int v = 0; v < 16; v++) a[v] = _mm256_setzero_si256();
                    memset(acc, 0, sizeof(acc));
                    for (int ky = 0; ky < s->k; ky++)
                        for (int kx = 0; kx < s->k; kx++) {
                            const uint64_t *xp = x + (((int64_t)b * s->h + y * s->stride + ky) * s->w
                                                      + xo * s->stride + kx) * s->cw;
                            const uint64_t *wp = w + ((int64_t)(ky * s->k + kx) * s->cw) * s->cout + o0;
                            for (int c = 0; c < s->cw; c++) {
                                __m256i xv = _mm256_set1_epi64x((long long)xp[c]);
                                const uint64_t *wc = wp + (int64_t)c * s->cout;
                                for (int v = 0; v < vec; v++) {
                                    __m256i wv = _mm256_loadu_si256((const __m256i *)(wc + 4 * v));
                                    a[v] = _mm256_add_epi64(a[v], popcount256(_mm256_xor_si256(xv, wv)));
                                }
                                for (int j = 4 * vec; j < cb; j++)
                                    acc[j] += __builtin_popcountll(xp[c] ^ wc[j]);
                            }
                        }
                    for (int v = 0; v < vec; v++) {
                        int64_t t[4];
                        _mm256_storeu_si256((__m256i *)t, a[v]);
                        for (int j = 0; j < 4; j++) acc[4 * v + j] = t[j];
                    }
                    finish(s, acc, o0, cb, scale, shift, residual, out_f, out_bits, pixel,
                           bits_at(s, b, y, xo));
                }
            }
        }
}

#define AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512vpopcntdq")))
#define OB 32 /* output channels per register block: 4 zmm of 8 */

#define PB 4 /* output pixels per register block (4 measured faster than 3, 5 or 6) */

/* The mask of the first `left` of 8 (16) lanes: all where left >= 8 (16), none where left <= 0. */
static inline __attribute__((always_inline)) __mmask8 first8(int left) {
    return left >= 8 ? 0xff : left <= 0 ? 0 : (__mmask8)((1u << left) - 1);
}

static inline __attribute__((always_inline)) __mmask16 first16(int left) {
    return left >= 16 ? 0xffff : left <= 0 ? 0 : (__mmask16)((1u << left) - 1);
}

/* The lanes of the 4 vectors of 8 channels that hold the first `valid` channels of a block. */
static inline __attribute__((always_inline)) void lanes8(int valid, __mmask8 m[4]) {
    for (int v = 0; v < 4; v++) m[v] = first8(valid - 8 * v);
}

/* The same for the 2 vectors of 16 channels. */
static inline __attribute__((always_inline)) void lanes16(int valid, __mmask16 m[2]) {
    for (int v = 0; v < 2; v++) m[v] = first16(valid - 16 * v);
}

/* The register block: P <= PB consecutive output pixels x 32 output channels, 4P accumulators
 * (int64, starting at init[0..31] per channel, or at zero where init is NULL). For each input
 * word, 4 weight loads and P broadcasts feed 4P XOR + POPCNT + ADD. K, CW and the stride are
 * arguments so that the common shapes can be compiled with them constant. `valid` < 32: the last
 * block of a channel count not a multiple of 32, whose loads are masked (the lanes past the last
 * channel count zeros, never read), and which uses only the V = ceil(valid / 8) vectors it needs
 * (a constant, as P); 32 and 4 (constants where inlined) for the others. */
AVX512 static inline __attribute__((always_inline)) void block32_kc(
    int P, int V, int K, int CW, int stride, int64_t w_row, int cout, const uint64_t *x0,
    const uint64_t *w0, const int64_t *init, int valid, __m512i acc[PB][4]) {
    __mmask8 m[4];
    lanes8(valid, m);
#define LOAD8(v, p) (valid >= OB ? _mm512_loadu_si512((const void *)(p)) : _mm512_maskz_loadu_epi64(m[v], p))
    for (int v = 0; v < 4; v++) {
        const __m512i a = init && v < V ? LOAD8(v, init + 8 * v) : _mm512_setzero_si512();
        for (int p = 0; p < P; p++) acc[p][v] = a;
    }
    const int64_t xstep = (int64_t)stride * CW; /* next output pixel, in input words */
    for (int ky = 0; ky < K; ky++) {
        const uint64_t *xr = x0 + (int64_t)ky * w_row * CW;
        const uint64_t *wr = w0 + (int64_t)ky * K * CW * cout;
        for (int kc = 0; kc < K * CW; kc++) {
            const uint64_t *wc = wr + (int64_t)kc * cout;
            __m512i wv[4];
            for (int v = 0; v < V; v++) wv[v] = LOAD8(v, wc + 8 * v);
#pragma GCC unroll 4
            for (int p = 0; p < P; p++) {
                __m512i xv = _mm512_set1_epi64((long long)xr[p * xstep + kc]);
                for (int v = 0; v < V; v++)
                    acc[p][v] = _mm512_add_epi64(acc[p][v], _mm512_popcnt_epi64(_mm512_xor_si512(xv, wv[v])));
            }
            /* keep each sum in order: GCC re-associates the unrolled sums and spills registers */
            for (int p = 0; p < P; p++)
                for (int v = 0; v < V; v++) __asm__("" : "+v"(acc[p][v]));
        }
    }
#undef LOAD8
}

AVX512 static inline __attribute__((always_inline)) void block32(
    const shape_t *s, int P, int V, const uint64_t *x0, const uint64_t *w0, const int64_t *init,
    int valid, __m512i acc[PB][4]) {
    if (s->k == 3 && s->cw == 1 && s->stride == 1) /* 3x3 on 64 channels: fully unrolled */
        block32_kc(P, V, 3, 1, 1, s->w, s->cout, x0, w0, init, valid, acc);
    else if (s->k == 3 && s->stride == 1)
        block32_kc(P, V, 3, s->cw, 1, s->w, s->cout, x0, w0, init, valid, acc);
    else
        block32_kc(P, V, s->k, s->cw, s->stride, s->w, s->cout, x0, w0, init, valid, acc);
}

/* v = scale * (total - 2 count) + shift (+ residual) for 16 channels: the dot by one FMA, exact
 * since every operand and result is an integer below 2^24; scale and shift by a separate
 * multiply and add, rounded as the reference rounds them. */
AVX512 static inline __attribute__((always_inline)) __m512 epilogue16(
    __m512i count, __m512 total, __m512 scale, __m512 shift, const float *res) {
    __m512 dot = _mm512_fmadd_ps(_mm512_cvtepi32_ps(count), _mm512_set1_ps(-2.0f), total);
    __m512 v = _mm512_add_ps(_mm512_mul_ps(dot, scale), shift);
    return res ? _mm512_add_ps(v, _mm512_loadu_ps(res)) : v;
}

/* P pixels x 32 channels of XOR popcounts: into the row buffer (int32 [pixel][cout]), or where
 * only the packed output is wanted (`bits`, the row's first word, not NULL) straight to their
 * sign bits, OR-ed into the zeroed words: no counts stored and read back. There the sums start at
 * -from (`neg_from`, int64 per channel, see sign_thresholds), so that each 8 channels' sign test
 * is one unsigned compare of the int64 sums with `span64`: no narrowing to int32, no subtraction
 * (56x56x64 1.05 -> 1.11 T in C). */
AVX512 static inline __attribute__((always_inline)) void count_block32(
    const shape_t *s, int P, int V, const uint64_t *xrow, const uint64_t *w, int xo, int o0,
    int valid, int32_t *row, const int64_t *neg_from, const int64_t *span64, uint64_t *bits) {
    const int64_t words = (s->cout + 63) / 64;
    __m512i acc[PB][4];
    block32(s, P, V, xrow + (int64_t)xo * s->stride * s->cw, w + o0, bits ? neg_from + o0 : NULL,
            valid, acc);
    if (bits) {
        __mmask8 m[4];
        lanes8(valid, m);
        __m512i span[4];
        for (int v = 0; v < V; v++) span[v] = _mm512_maskz_loadu_epi64(m[v], span64 + o0 + 8 * v);
        for (int p = 0; p < P; p++) {
            uint64_t word = 0; /* lanes past the last channel: span 0, never below it */
            for (int v = 0; v < V; v++)
                word |= (uint64_t)_mm512_cmplt_epu64_mask(acc[p][v], span[v]) << (8 * v);
            bits[(int64_t)(xo + p) * words + o0 / 64] |= word << (o0 % 64);
        }
        return;
    }
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    __mmask16 m[2];
    lanes16(valid, m);
    for (int p = 0; p < P; p++) {
        int32_t *r = row + (int64_t)(xo + p) * s->cout + o0; /* 16 + 16 int32 */
        const __m512i lo = _mm512_permutex2var_epi32(acc[p][0], even, acc[p][1]);
        if (valid >= OB) {
            _mm512_storeu_si512((void *)r, lo);
            _mm512_storeu_si512((void *)(r + 16), _mm512_permutex2var_epi32(acc[p][2], even, acc[p][3]));
        } else {
            _mm512_mask_storeu_epi32(r, m[0], lo);
            if (V > 2)
                _mm512_mask_storeu_epi32(r + 16, m[1], _mm512_permutex2var_epi32(acc[p][2], even, acc[p][3]));
        }
    }
}

/* The same block finished to floats in registers: out (and res, if not NULL) point at the row's
 * first pixel, their pixels `ostride` floats apart; bits (if not NULL) at its first packed word,
 * where the signs are OR-ed in. No counts stored and read back. */
AVX512 static inline __attribute__((always_inline)) void float_block32(
    const shape_t *s, int P, int V, const uint64_t *xrow, const uint64_t *w, int xo, int o0,
    int valid, const float *scale, const float *shift, const float *res, float *out,
    uint64_t *bits, int64_t ostride) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const int64_t words = (s->cout + 63) / 64;
    __m512i acc[PB][4];
    block32(s, P, V, xrow + (int64_t)xo * s->stride * s->cw, w + o0, NULL, valid, acc);
    __mmask16 m[2];
    lanes16(valid, m);
#define LOAD16(v, p) (valid >= OB ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(m[v], p))
    const __m512 total = _mm512_set1_ps((float)s->total), zero = _mm512_setzero_ps();
    const __m512 sc0 = LOAD16(0, scale + o0), sc1 = LOAD16(1, scale + o0 + 16);
    const __m512 sh0 = LOAD16(0, shift + o0), sh1 = LOAD16(1, shift + o0 + 16);
    for (int p = 0; p < P; p++) {
        const int64_t at = (int64_t)(xo + p) * ostride + o0;
        __m512 v0 = epilogue16(_mm512_permutex2var_epi32(acc[p][0], even, acc[p][1]), total, sc0,
                               sh0, NULL);
        __m512 v1 = zero; /* the second 16 channels, where the block has them */
        if (V > 2)
            v1 = epilogue16(_mm512_permutex2var_epi32(acc[p][2], even, acc[p][3]), total, sc1, sh1,
                            NULL);
        if (res) {
            v0 = _mm512_add_ps(v0, LOAD16(0, res + at));
            if (V > 2) v1 = _mm512_add_ps(v1, LOAD16(1, res + at + 16));
        }
        if (valid >= OB) {
            _mm512_storeu_ps(out + at, v0);
            _mm512_storeu_ps(out + at + 16, v1);
        } else {
            _mm512_mask_storeu_ps(out + at, m[0], v0);
            if (V > 2) _mm512_mask_storeu_ps(out + at + 16, m[1], v1);
        }
        if (bits) { /* lanes past the last channel: 0, as their scale and shift */
            uint64_t word = (uint64_t)_mm512_mask_cmp_ps_mask(m[1], v1, zero, _CMP_LT_OQ) << 16
                            | _mm512_mask_cmp_ps_mask(m[0], v0, zero, _CMP_LT_OQ);
            bits[(int64_t)(xo + p) * words + o0 / 64] |= word << (o0 % 64);
        }
    }
#undef LOAD16
}

/* The register blocks of one output row over channels [c0, c1): 4 pixels at a time, the last 1
 * to 3 in one block; 32 channels at a time, the last c1 - c0 % 32 in a masked block of as few
 * 8-channel vectors as hold them. */
#define ROW_PIXELS(BLOCK, VALID, V)                                                                \
    do {                                                                                           \
        int xo = 0;                                                                                \
        for (; xo + PB <= s->ow; xo += PB) BLOCK(PB, VALID, V);                                    \
        switch (s->ow - xo) {                                                                      \
        case 3: BLOCK(3, VALID, V); break;                                                         \
        case 2: BLOCK(2, VALID, V); break;                                                         \
        case 1: BLOCK(1, VALID, V); break;                                                         \
        }                                                                                          \
    } while (0)
#define ROW_BLOCKS(BLOCK)                                                                          \
    for (int o0 = c0; o0 < c1; o0 += OB) {                                                         \
        const int valid = c1 - o0;                                                                 \
        switch (valid >= OB ? 0 : (valid + 7) / 8) {                                               \
        case 0: ROW_PIXELS(BLOCK, OB, 4); break;                                                   \
        case 4: ROW_PIXELS(BLOCK, valid, 4); break;                                                \
        case 3: ROW_PIXELS(BLOCK, valid, 3); break;                                                \
        case 2: ROW_PIXELS(BLOCK, valid, 2); break;                                                \
        case 1: ROW_PIXELS(BLOCK, valid, 1); break;                                                \
        }                                                                                          \
    }

/* A row's blocks over the 32-channel groups of channels [c0, c1), counting (count_block32) or
 * finishing floats (float_block32): functions of their own, each compiled with its own registers
 * (inside conv_avx512 the packed-output blocks had slowed the float ones). */
AVX512 __attribute__((noinline)) static void count_row(
    const shape_t *s, const uint64_t *xrow, const uint64_t *w, int c0, int c1, int32_t *row,
    const int64_t *neg_from, const int64_t *span64, uint64_t *signs) {
#define COUNT(P, VALID, V) count_block32(s, P, V, xrow, w, xo, o0, VALID, row, neg_from, span64, signs)
    ROW_BLOCKS(COUNT);
#undef COUNT
}

AVX512 static inline __attribute__((always_inline)) void float_row_strided(
    const shape_t *s, const uint64_t *xrow, const uint64_t *w, int c0, int c1, const float *scale,
    const float *shift, const float *res_row, float *out_row, uint64_t *bits, int64_t ostride) {
#define FLOAT(P, VALID, V) \
    float_block32(s, P, V, xrow, w, xo, o0, VALID, scale, shift, res_row, out_row, bits, ostride)
    ROW_BLOCKS(FLOAT);
#undef FLOAT
}

/* float_row_strided compiled twice: for contiguous pixels (the stride is cout, which the blocks
 * already hold: a stride of its own had cost 1.4% on 56x56x64) and for wider ones. */
AVX512 __attribute__((noinline)) static void float_row(
    const shape_t *s, const uint64_t *xrow, const uint64_t *w, int c0, int c1, const float *scale,
    const float *shift, const float *res_row, float *out_row, uint64_t *bits) {
    if (s->ostride == s->cout)
        float_row_strided(s, xrow, w, c0, c1, scale, shift, res_row, out_row, bits, s->cout);
    else
        float_row_strided(s, xrow, w, c0, c1, scale, shift, res_row, out_row, bits, s->ostride);
}
#undef ROW_BLOCKS
#undef ROW_PIXELS

/* epilogue16 on counts read from the row buffer, for the 16 channels in M if MASKED (a constant
 * where inlined: masked stores are slow on some CPUs); returns the sign bits (1 where v < 0). */
AVX512 static inline __attribute__((always_inline)) unsigned finish16(
    int masked, __mmask16 m, const int32_t *count, const float *scale, const float *shift,
    const float *res, float *out, __m512 total) {
#define LOAD(p) (masked ? _mm512_maskz_loadu_ps(m, p) : _mm512_loadu_ps(p))
    __m512i c = masked ? _mm512_maskz_loadu_epi32(m, count) : _mm512_loadu_si512((const void *)count);
    __m512 v = epilogue16(c, total, LOAD(scale), LOAD(shift), NULL);
    if (res) v = _mm512_add_ps(v, LOAD(res));
#undef LOAD
    if (out) {
        if (masked) _mm512_mask_storeu_ps(out, m, v);
        else _mm512_storeu_ps(out, v);
    }
    return (unsigned)_mm512_mask_cmp_ps_mask(m, v, _mm512_setzero_ps(), _CMP_LT_OQ);
}

/* The epilogue of channels [c0, c1) (c0 a multiple of 64) of one row from their counts: floats
 * stored and/or sign bits (1 where negative) packed; pixel0 indexes the row's first pixel in the
 * float output, out_bits points at its first word in the packed output. The flags are constants
 * where this is inlined. Whole 64-channel words first, four unmasked vectors each, then the
 * rest. */
AVX512 static inline __attribute__((always_inline)) void finish_pixels(
    const shape_t *s, const int32_t *row, int64_t pixel0, int c0, int c1, const float *scale,
    const float *shift, const float *residual, float *out_f, uint64_t *out_bits) {
    const __m512 total = _mm512_set1_ps((float)s->total);
    const int64_t words = (s->cout + 63) / 64;
    const int whole = c0 + (c1 - c0) / 64 * 64;
    for (int xo = 0; xo < s->ow; xo++) {
        const int64_t pixel = pixel0 + xo;
        const int32_t *r = row + (int64_t)xo * s->cout;
        const float *res = residual ? residual + pixel * s->ostride : NULL;
        float *out = out_f ? out_f + pixel * s->ostride : NULL;
        uint64_t *bits = out_bits ? out_bits + xo * words : NULL;
#define AT(p, o) ((p) ? (p) + (o) : NULL)
        for (int o = c0; o < whole; o += 64) {
            uint64_t word = 0;
            for (int q = 0; q < 64; q += 16)
                word |= (uint64_t)finish16(0, 0xffff, r + o + q, scale + o + q, shift + o + q,
                                           AT(res, o + q), AT(out, o + q), total) << q;
            if (bits) bits[o / 64] = word;
        }
        uint64_t word = 0;
        for (int o = whole; o < c1; o += 16) {
            const __mmask16 m = first16(c1 - o);
            word |= (uint64_t)finish16(1, m, r + o, scale + o, shift + o, AT(res, o), AT(out, o),
                                       total) << (o - whole);
        }
        if (bits && whole < c1) bits[whole / 64] = word;
#undef AT
    }
}

/* finish_pixels with its three optional operands made compile-time (present or not). */
AVX512 static void finish_row(const shape_t *s, const int32_t *row, int64_t pixel0, int c0, int c1,
                              const float *scale, const float *shift, const float *residual,
                              float *out_f, uint64_t *out_bits) {
#define FINISH(R, F, B) finish_pixels(s, row, pixel0, c0, c1, scale, shift, R, F, B)
    switch ((residual != NULL) << 2 | (out_f != NULL) << 1 | (out_bits != NULL)) {
    case 1: FINISH(NULL, NULL, out_bits); break;
    case 2: FINISH(NULL, out_f, NULL); break;
    case 3: FINISH(NULL, out_f, out_bits); break;
    case 5: FINISH(residual, NULL, out_bits); break;
    case 6: FINISH(residual, out_f, NULL); break;
    case 7: FINISH(residual, out_f, out_bits); break;
    }
#undef FINISH
}

/* Packed output alone (no float output, no residual): BN and sign folded into thresholds on the
 * count. Per channel the sign bit is g(c) = [scale * (total - 2c) + shift < 0], rounded as in
 * finish16; g is monotone in c (non-decreasing where scale >= 0, else non-increasing), so
 *   g(c) = 1  <=>  from[o] <= c < from[o] + span[o]  <=>  (unsigned)(c - from[o]) < span[o]
 * where the bounds come from a binary search over c in [0, total] run on 16 channels at once with
 * the epilogue's own float operations: the bits are those the float path would give. */
AVX512 static void sign_thresholds(const shape_t *s, const float *scale, const float *shift,
                                   int32_t *from, int32_t *span) {
    const __m512 total = _mm512_set1_ps((float)s->total), zero = _mm512_setzero_ps();
    const __m512i none = _mm512_set1_epi32(s->total + 1);
    for (int o = 0; o < s->cout; o += 16) {
        const __mmask16 m = first16(s->cout - o);
        __m512 sc = _mm512_maskz_loadu_ps(m, scale + o), sh = _mm512_maskz_loadu_ps(m, shift + o);
        __mmask16 rising = _mm512_cmp_ps_mask(sc, zero, _CMP_GE_OQ); /* NaN: constant 0, any */
        /* the first c in [0, total + 1] where g(c) becomes 1 (rising) or 0 (falling) */
        __m512i lo = _mm512_setzero_si512(), hi = none;
        for (__mmask16 open = 0xffff; open; open = _mm512_cmplt_epi32_mask(lo, hi)) {
            __m512i mid = _mm512_srli_epi32(_mm512_add_epi32(lo, hi), 1);
            __m512 dot = _mm512_fmadd_ps(_mm512_cvtepi32_ps(mid), _mm512_set1_ps(-2.0f), total);
            __m512 v = _mm512_add_ps(_mm512_mul_ps(dot, sc), sh);
            __mmask16 g = _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ);
            __mmask16 found = open & ~(g ^ rising); /* g(mid) is the value searched for */
            hi = _mm512_mask_mov_epi32(hi, found, mid);
            lo = _mm512_mask_mov_epi32(lo, open & ~found, _mm512_add_epi32(mid, _mm512_set1_epi32(1)));
        }
        __m512i first = _mm512_mask_mov_epi32(_mm512_setzero_si512(), rising, lo);
        __m512i end = _mm512_mask_mov_epi32(lo, rising, none);
        _mm512_mask_storeu_epi32(from + o, m, first);
        _mm512_mask_storeu_epi32(span + o, m, _mm512_sub_epi32(end, first));
    }
}

/* Row by row: the counts of a row in 4-pixel x 32-channel register blocks (the last cout % 32
 * channels in masked ones). The blocks finish their outputs themselves (float output, its sign
 * bits too; or, where only the packed output is wanted, sign bits by the thresholds) except with
 * the shortcut of a batch: there the counts go to a per-thread row buffer and the row's epilogue
 * finishes them. Where there are fewer rows than four per thread (7x7 layers at batch
 * 1), the channels are split too, in groups of whole 64-channel words, so that every thread has
 * work. Returns -2 where the buffers cannot be allocated. */
AVX512 static int conv_avx512(const shape_t *s, const uint64_t *x, const uint64_t *w,
                              const float *scale, const float *shift, const float *residual,
                              float *out_f, uint64_t *out_bits) {
#ifdef _OPENMP
    const int threads = omp_get_max_threads();
#else
    const int threads = 1;
#endif
    const int rows_total = s->n * s->oh, words = (s->cout + 63) / 64;
    int groups = 1;
    while (groups < words && rows_total * groups < 4 * threads && threads > 1) groups++;
    const int group_words = (words + groups - 1) / groups;
    groups = (words + group_words - 1) / group_words;
    /* the row buffers, then the sign thresholds where only the packed output is wanted (int32 as
     * sign_thresholds finds them, int64 for the register blocks); each 64-byte aligned: vectors
     * split across cache lines cost twice */
    const size_t per_thread = ((size_t)s->ow * s->cout + 15) / 16 * 16;
    const size_t cout16 = ((size_t)s->cout + 15) / 16 * 16;
    int32_t *rows = aligned_alloc(64, sizeof(int32_t) * (per_thread * threads + 6 * cout16));
    if (rows == NULL) return -2;
    int32_t *from = rows + per_thread * threads, *span = from + cout16;
    int64_t *neg_from = (int64_t *)(span + cout16), *span64 = neg_from + cout16;
    const int thresholds = out_bits != NULL && out_f == NULL && residual == NULL;
    if (thresholds) {
        sign_thresholds(s, scale, shift, from, span);
        for (int o = 0; o < s->cout; o++) neg_from[o] = -(int64_t)from[o], span64[o] = span[o];
    }
    /* float output finished in the blocks, no counts stored (the Bi-Real case on 56x56x64 at
     * batch 1: 0.154 -> 0.128 ms). Not with the shortcut of a
     * batch: that streams from memory, and the blocks, reading it a few pixels at a time, keep
     * too few loads in flight (the row epilogue reads it in order): 3.4 against 3.1 ms at
     * batch 16. One image's shortcut was just written by the previous layer: in cache. */
    const int in_blocks = out_f != NULL && !(residual != NULL && s->n > 1);
    #pragma omp parallel for collapse(3) schedule(static)
    for (int b = 0; b < s->n; b++)
        for (int y = 0; y < s->oh; y++)
            for (int g = 0; g < groups; g++) {
#ifdef _OPENMP
                int32_t *row = rows + per_thread * omp_get_thread_num();
#else
                int32_t *row = rows;
#endif
                const int c0 = g * group_words * 64;
                const int c1 = g == groups - 1 ? s->cout : c0 + group_words * 64;
                const uint64_t *xrow = x + ((int64_t)b * s->h + (int64_t)y * s->stride) * s->w * s->cw;
                uint64_t *bits = out_bits ? out_bits + bits_at(s, b, y, 0) : NULL;
                const int64_t pixel0 = ((int64_t)b * s->oh + y) * s->ow; /* of the float output */
                uint64_t *signs = thresholds ? bits : NULL; /* blocks finish their own signs */
                float *out_row = in_blocks ? out_f + pixel0 * s->ostride : NULL;
                const float *res_row = in_blocks && residual ? residual + pixel0 * s->ostride : NULL;
                if (in_blocks)
                    float_row(s, xrow, w, c0, c1, scale, shift, res_row, out_row, bits);
                else
                    count_row(s, xrow, w, c0, c1, row, neg_from, span64, signs);
                if (!in_blocks && !thresholds)
                    finish_row(s, row, pixel0, c0, c1, scale, shift, residual, out_f, bits);
            }
    free(rows);
    return 0;
}
#endif

/* The paths this CPU can run, as a bit set (1 << PATH_*). */
int bconv_paths(void) {
    int paths = 1 << PATH_PORTABLE;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) paths |= 1 << PATH_AVX2;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq"))
        paths |= 1 << PATH_AVX512;
#endif
    return paths;
}

void bconv_set_threads(int threads) {
#ifdef _OPENMP
    if (threads > 0) omp_set_num_threads(threads);
#else
    (void)threads;
#endif
}

/* The arguments of one binary convolution, as nas/nn/kernels/_dispatch.py packs them (struct "18q"):
 * 64-bit integers, addresses among them (0 for NULL). One pointer crosses ctypes instead of 18
 * arguments it converts one by one: 0.4 us a call instead of 1.65 here. out_stride: floats from
 * one pixel of out_f (and of residual) to the next, cout where they are contiguous, more where
 * out_f holds the first channels of wider pixels (a dense block's new features written into the
 * run's features tensor). */
typedef struct {
    int64_t path, x, n, h, w, cw, weights, k, stride, cout, channels, scale, shift, residual,
        out_f, out_bits, out_pad, out_stride;
} conv_args_t;

/* One binary convolution; out_f or out_bits (or both) may be NULL. out_bits is padded by out_pad
 * pixels (+1: zero bits) on each side; this zeroes it first. Returns 0, -1 for a path this CPU
 * cannot run, -2 when out of memory. */
int bconv_forward(const conv_args_t *a) {
    const int n = (int)a->n, h = (int)a->h, w = (int)a->w, k = (int)a->k, stride = (int)a->stride;
    const int cout = (int)a->cout, out_pad = (int)a->out_pad, path = (int)a->path;
    const uint64_t *x = (const uint64_t *)(uintptr_t)a->x;
    const uint64_t *weights = (const uint64_t *)(uintptr_t)a->weights;
    const float *scale = (const float *)(uintptr_t)a->scale;
    const float *shift = (const float *)(uintptr_t)a->shift;
    const float *residual = (const float *)(uintptr_t)a->residual;
    float *out_f = (float *)(uintptr_t)a->out_f;
    uint64_t *out_bits = (uint64_t *)(uintptr_t)a->out_bits;
    shape_t s = {n, h, w, (int)a->cw, k, stride, cout, (h - k) / stride + 1, (w - k) / stride + 1,
                 k * k * (int)a->channels, out_pad, a->out_stride};
    if (!(bconv_paths() & (1 << path))) return -1;
    if (out_bits)
        memset(out_bits, 0, sizeof(uint64_t) * n * (s.oh + 2 * out_pad) * (s.ow + 2 * out_pad)
                                * ((cout + 63) / 64));
#if defined(__x86_64__)
    if (path == PATH_AVX512) return conv_avx512(&s, x, weights, scale, shift, residual, out_f, out_bits);
    if (path == PATH_AVX2) { conv_avx2(&s, x, weights, scale, shift, residual, out_f, out_bits); return 0; }
#endif
    conv_portable(&s, x, weights, scale, shift, residual, out_f, out_bits);
    return 0;
}

#if defined(__x86_64__)
/* The sign bits (1 where negative) of the first `left` (all 64 where left >= 64) floats at p, or
 * of p[j] * scale[j] + shift[j] (a multiply, then an add, as the portable path rounds them), by
 * masked loads: no bit past them. */
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) uint64_t
signs64(const float *p, const float *scale, const float *shift, int left) {
    uint64_t word = 0;
    for (int q = 0; q < 4; q++) {
        const __mmask16 m = first16(left - 16 * q);
        __m512 v = _mm512_maskz_loadu_ps(m, p + 16 * q);
        if (scale)
            v = _mm512_add_ps(_mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, scale + 16 * q)),
                              _mm512_maskz_loadu_ps(m, shift + 16 * q));
        word |= (uint64_t)_mm512_mask_cmp_ps_mask(m, v, _mm512_setzero_ps(), _CMP_LT_OQ) << (16 * q);
    }
    return word;
}

AVX512 static void pack_avx512(const float *v, int n, int h, int w, int c, int64_t stride,
                               const float *scale, const float *shift, int pad, uint64_t *out) {
    const int full = scale ? 0 : c / 64, cw = (c + 63) / 64, ph = h + 2 * pad, pw = w + 2 * pad;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < n; b++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                const float *p = v + (((int64_t)b * h + y) * w + x) * stride;
                uint64_t *o = out + (((int64_t)b * ph + y + pad) * pw + x + pad) * cw;
                /* whole words with constant arguments: the masks fold away (12 against 16 us
                 * on 56x56x64) */
                for (int j = 0; j < full; j++) o[j] = signs64(p + 64 * j, NULL, NULL, 64);
                for (int j = full; j < cw; j++)
                    o[j] = signs64(p + 64 * j, scale ? scale + 64 * j : NULL,
                                   shift ? shift + 64 * j : NULL, c - 64 * j);
            }
}
#endif

/* Pack float NHWC values into sign bits (bit 1 where v < 0: sign(0) = +1), padded (+1: zero
 * bits) by `pad` pixels on each side. Pixels `stride` floats apart (C for a contiguous tensor,
 * more for the first C channels of a wider one); with `scale` (not NULL) the signs of v * scale +
 * shift per channel (a BatchNorm before the sign). out: uint64 [N][H + 2 pad][W + 2 pad][CW],
 * zeroed by the caller. `path`: PATH_AVX512 where the CPU has it, any other the portable loop. */
void bconv_pack(int path, const float *v, int n, int h, int w, int c, int64_t stride,
                const float *scale, const float *shift, int pad, uint64_t *out) {
#if defined(__x86_64__)
    if (path == PATH_AVX512 && (bconv_paths() & (1 << PATH_AVX512))) {
        pack_avx512(v, n, h, w, c, stride, scale, shift, pad, out);
        return;
    }
#endif
    int cw = (c + 63) / 64, ph = h + 2 * pad, pw = w + 2 * pad;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < n; b++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                const float *p = v + (((int64_t)b * h + y) * w + x) * stride;
                uint64_t *o = out + (((int64_t)b * ph + y + pad) * pw + x + pad) * cw;
                for (int j0 = 0; j0 < c; j0 += 64) { /* a word at a time, in a register */
                    uint64_t word = 0;
                    for (int j = j0; j < c && j < j0 + 64; j++) {
                        const float a = scale ? p[j] * scale[j] + shift[j] : p[j];
                        word |= (uint64_t)(a < 0.0f) << (j - j0);
                    }
                    o[j0 / 64] = word;
                }
            }
}

#if defined(__x86_64__)
#define SP 6 /* output pixels per register block of the stem conv */

/* SP pixels x 64 channels of the stem conv of output row oy, from column ox (pixels past the row
 * clamped to its last one: computed twice, stored twice, the same value). The last block of a
 * channel count not a multiple of 64 uses the V = ceil(valid / 16) vectors it needs (a constant),
 * its loads and stores masked past `valid` channels. */
__attribute__((target("avx512f"))) static inline __attribute__((always_inline)) void stem_block(
    const float *xp, int wp, int cin, const float *w, const float *bias, int k, int stride,
    int cout, int ow, int oy, int ox, int o0, int V, int valid, float *row) {
    __m512 acc[SP][4];
    __mmask16 m[4];
    int col[SP];
    for (int v = 0; v < 4; v++) m[v] = first16(valid - 16 * v);
#define LOAD(v, p) (valid >= 64 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(m[v], p))
    for (int p = 0; p < SP; p++) {
        col[p] = ox + p < ow ? ox + p : ow - 1;
        for (int v = 0; v < V; v++) acc[p][v] = LOAD(v, bias + o0 + 16 * v);
    }
    for (int ky = 0; ky < k; ky++) {
        const float *xr = xp + (int64_t)(oy * stride + ky) * wp * cin;
        for (int t = 0; t < k * cin; t++) { /* (kx, ci) */
            const float *wt = w + ((int64_t)ky * k * cin + t) * cout + o0;
            __m512 wv[4];
            for (int v = 0; v < V; v++) wv[v] = LOAD(v, wt + 16 * v);
#pragma GCC unroll 6
            for (int p = 0; p < SP; p++) {
                __m512 xv = _mm512_set1_ps(xr[(int64_t)col[p] * stride * cin + t]);
                for (int v = 0; v < V; v++) acc[p][v] = _mm512_fmadd_ps(xv, wv[v], acc[p][v]);
            }
        }
    }
#undef LOAD
    for (int p = 0; p < SP; p++)
        for (int v = 0; v < V; v++) {
            float *o = row + (int64_t)col[p] * cout + o0 + 16 * v;
            if (valid >= 64) _mm512_storeu_ps(o, acc[p][v]);
            else _mm512_mask_storeu_ps(o, m[v], acc[p][v]);
        }
}

/* One output row of the stem conv (bias added, ReLU if asked) into row [ow][cout]. */
__attribute__((target("avx512f"))) static void stem_row(
    const float *xp, int wp, int cin, const float *w, const float *bias, int k, int stride,
    int cout, int ow, int relu, int oy, float *row) {
#define PIXELS(K, CIN, STRIDE, V, VALID)                                                         \
    for (int ox = 0; ox < ow; ox += SP)                                                          \
        stem_block(xp, wp, CIN, w, bias, K, STRIDE, cout, ow, oy, ox, o0, V, VALID, row)
#define BLOCKS(K, CIN, STRIDE)                                                                   \
    do {                                                                                         \
        for (int o0 = 0; o0 < cout; o0 += 64) {                                                  \
            const int valid = cout - o0;                                                         \
            switch (valid >= 64 ? 0 : (valid + 15) / 16) {                                       \
            case 0: PIXELS(K, CIN, STRIDE, 4, 64); break;                                        \
            case 4: PIXELS(K, CIN, STRIDE, 4, valid); break;                                     \
            case 3: PIXELS(K, CIN, STRIDE, 3, valid); break;                                     \
            case 2: PIXELS(K, CIN, STRIDE, 2, valid); break;                                     \
            case 1: PIXELS(K, CIN, STRIDE, 1, valid); break;                                     \
            }                                                                                    \
        }                                                                                        \
    } while (0)
    if (k == 7 && cin == 3 && stride == 2) /* the ImageNet stem: loops unrolled */
        BLOCKS(7, 3, 2);
    else
        BLOCKS(k, cin, stride);
#undef BLOCKS
#undef PIXELS
    if (relu) {
        const int64_t n = (int64_t)ow * cout;
        for (int64_t i = 0; i < n; i += 16) {
            const __mmask16 m = first16((int)(n - i < 16 ? n - i : 16));
            _mm512_mask_storeu_ps(row + i, m, _mm512_max_ps(_mm512_maskz_loadu_ps(m, row + i),
                                                            _mm512_setzero_ps()));
        }
    }
}

/* out (float [pw][cout]): the 3x3/2 max pool (1 pixel of padding that never wins) of three conv
 * rows r0, r1, r2 of cw pixels (r0 NULL at the top, r2 NULL at the bottom). */
__attribute__((target("avx512f"))) static void stem_pool_row(
    const float *r0, const float *r1, const float *r2, int cw, int cout, int pw, float *out) {
    for (int px = 0; px < pw; px++) {
        const int c0 = 2 * px - 1 < 0 ? 0 : 2 * px - 1, c1 = 2 * px + 1 < cw ? 2 * px + 1 : cw - 1;
        for (int o = 0; o < cout; o += 16) {
            const __mmask16 k = first16(cout - o); /* the last 16 may be fewer channels */
            __m512 m = _mm512_maskz_loadu_ps(k, r1 + (int64_t)c0 * cout + o);
            for (int c = c0; c <= c1; c++) {
                m = _mm512_max_ps(m, _mm512_maskz_loadu_ps(k, r1 + (int64_t)c * cout + o));
                if (r0) m = _mm512_max_ps(m, _mm512_maskz_loadu_ps(k, r0 + (int64_t)c * cout + o));
                if (r2) m = _mm512_max_ps(m, _mm512_maskz_loadu_ps(k, r2 + (int64_t)c * cout + o));
            }
            _mm512_mask_storeu_ps(out + (int64_t)px * cout + o, k, m);
        }
    }
}

/* The signs of `pixels` consecutive pixels of `cout` floats each, packed (a row of the stem's
 * output): their words are consecutive. */
__attribute__((target("avx512f"))) static void pack_pixels(const float *v, int pixels, int cout,
                                                          uint64_t *bits) {
    const int full = cout / 64, words = (cout + 63) / 64;
    for (int px = 0; px < pixels; px++) {
        const float *p = v + (int64_t)px * cout;
        for (int j = 0; j < full; j++) bits[px * words + j] = signs64(p + 64 * j, NULL, NULL, 64);
        if (full < words) bits[px * words + full] = signs64(p + 64 * full, NULL, NULL, cout % 64);
    }
}
#endif

/* The full-precision stem of a packed network in one pass: a K x K conv of a few input channels
 * (BatchNorm folded into w [K][K][CIN][COUT] and bias), ReLU if asked, and if `pool` the 3x3/2 max
 * pool with 1 pixel of padding that follows it, row by row (three conv rows in a per-thread ring
 * buffer), so the conv's output never leaves the caches. xp: float NHWC, already zero-padded for
 * the conv. out: float NHWC; out_bits (NULL for none): its signs packed (bit 1 where negative),
 * +1-padded by out_pad, for the first binary conv. Any COUT (the last channels in masked blocks);
 * AVX-512 only: returns -1 otherwise (the caller runs PyTorch), -2 when out of memory. A NaN is
 * not carried through the pool as PyTorch's would carry it. */
int bconv_stem(const float *xp, int n, int hp, int wp, int cin, const float *w, const float *bias,
               int k, int stride, int cout, int relu, int pool, float *out, uint64_t *out_bits,
               int out_pad) {
#if defined(__x86_64__)
    if (!(bconv_paths() & (1 << PATH_AVX512))) return -1;
    const int oh = (hp - k) / stride + 1, ow = (wp - k) / stride + 1;
    const int ph = pool ? (oh - 1) / 2 + 1 : oh, pw = pool ? (ow - 1) / 2 + 1 : ow;
    const int64_t words = (cout + 63) / 64, row_floats = (int64_t)ow * cout;
    if (out_bits)
        memset(out_bits, 0, sizeof(uint64_t) * n * (ph + 2 * out_pad) * (pw + 2 * out_pad) * words);
#ifdef _OPENMP
    const int threads = omp_get_max_threads();
#else
    const int threads = 1;
#endif
    float *rings = aligned_alloc(64, (sizeof(float) * 3 * row_floats * threads + 63) / 64 * 64);
    if (rings == NULL) return -2;
    #pragma omp parallel num_threads(threads)
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num(), team = omp_get_num_threads();
#else
        const int t = 0, team = 1;
#endif
        float *ring = rings + 3 * row_floats * t;
        const int64_t total = (int64_t)n * ph; /* output rows, in contiguous chunks per thread */
        int done = -1, image = -1;             /* the newest conv row in the ring, and its image */
        for (int64_t i = total * t / team; i < total * (t + 1) / team; i++) {
            const int b = (int)(i / ph), py = (int)(i % ph);
            const float *x = xp + (int64_t)b * hp * wp * cin;
            float *o = out + i * pw * cout;
            if (pool) {
                const int lo = 2 * py - 1 < 0 ? 0 : 2 * py - 1, hi = 2 * py + 1 < oh ? 2 * py + 1 : oh - 1;
                if (image != b || done < lo - 1) done = lo - 1, image = b;
                for (int r = done + 1; r <= hi; r++)
                    stem_row(x, wp, cin, w, bias, k, stride, cout, ow, relu, r, ring + (r % 3) * row_floats);
                done = hi;
                stem_pool_row(py > 0 ? ring + ((2 * py - 1) % 3) * row_floats : NULL,
                              ring + (2 * py % 3) * row_floats,
                              2 * py + 1 < oh ? ring + ((2 * py + 1) % 3) * row_floats : NULL, ow,
                              cout, pw, o);
            } else {
                stem_row(x, wp, cin, w, bias, k, stride, cout, ow, relu, py, o);
            }
            if (out_bits) /* the row's words are consecutive, inside the padding */
                pack_pixels(o, pw, cout, out_bits + (((int64_t)b * (ph + 2 * out_pad) + py + out_pad)
                                                      * (pw + 2 * out_pad) + out_pad) * words);
        }
    }
    free(rings);
    return 0;
#else
    return -1;
#endif
}

/* The stem's input: float values of any strides (NCHW, channels_last: sn, sc, sh, sw in floats)
 * copied NHWC with `pad` zero pixels on each side, out [N][H + 2 pad][W + 2 pad][C]. PyTorch's
 * permute and pad took 89-103 us on a 224 x 224 x 3 NCHW image, 30 us from channels_last. */
#if defined(__x86_64__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void nhwc_pad(const float *x, int n, int c, int h, int w, int64_t sn, int64_t sc, int64_t sh,
              int64_t sw, int pad, float *out) {
    const int hp = h + 2 * pad, wp = w + 2 * pad;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < n; b++)
        for (int y = 0; y < hp; y++) {
            float *o = out + ((int64_t)b * hp + y) * wp * c;
            if (y < pad || y >= pad + h) {
                memset(o, 0, sizeof(float) * wp * c);
                continue;
            }
            memset(o, 0, sizeof(float) * pad * c);
            memset(o + (int64_t)(pad + w) * c, 0, sizeof(float) * pad * c);
            const float *src = x + b * sn + (y - pad) * sh;
            float *d = o + (int64_t)pad * c;
            if (sc == 1 && sw == c) {
                memcpy(d, src, sizeof(float) * w * c);
            } else if (c == 3 && sw == 1) { /* NCHW RGB: interleaving three rows vectorizes */
                const float *r = src, *g = src + sc, *bl = src + 2 * sc;
                for (int i = 0; i < w; i++) d[3 * i] = r[i], d[3 * i + 1] = g[i], d[3 * i + 2] = bl[i];
            } else {
                for (int ch = 0; ch < c; ch++)
                    for (int i = 0; i < w; i++) d[(int64_t)i * c + ch] = src[ch * sc + i * sw];
            }
        }
}

/* Max pooling of float NHWC values: K x K windows, `stride`, `pad` pixels that never win on each
 * side, PyTorch's floor mode or, with `ceil`, its ceil mode (a last window that starts inside the
 * input or its left padding, clipped). Where `scale` is given, each value is first mapped to
 * v * scale[ch] + shift[ch] (an eval-mode BatchNorm, multiplied then added); with `relu`, the
 * maxima are clamped at 0. The stem's 3x3/2 pool, and BinaryDenseNet's transition BN -> max-pool
 * 2x2/2 (ceil) -> ReLU in one pass. out: float [N][OH][OW][C]. Compiled for AVX-512, AVX2 and
 * plain x86-64, chosen at run time. */
static int pooled_size(int h, int k, int stride, int pad, int ceil) {
    int o = (h + 2 * pad - k + (ceil ? stride - 1 : 0)) / stride + 1;
    if (ceil && (o - 1) * stride >= h + pad) o--;
    return o;
}

#if defined(__x86_64__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void nhwc_maxpool(const float *v, int n, int h, int w, int c, int k, int stride, int pad, int ceil,
                  const float *scale, const float *shift, int relu, float *out) {
    const int oh = pooled_size(h, k, stride, pad, ceil), ow = pooled_size(w, k, stride, pad, ceil);
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < n; b++)
        for (int y = 0; y < oh; y++)
            for (int xo = 0; xo < ow; xo++) {
                float *restrict o = out + (((int64_t)b * oh + y) * ow + xo) * c;
                for (int j = 0; j < c; j++) o[j] = -INFINITY;
                for (int iy = y * stride - pad; iy < y * stride - pad + k; iy++) {
                    if (iy < 0 || iy >= h) continue;
                    for (int ix = xo * stride - pad; ix < xo * stride - pad + k; ix++) {
                        if (ix < 0 || ix >= w) continue;
                        const float *restrict p = v + (((int64_t)b * h + iy) * w + ix) * c;
                        if (scale)
                            for (int j = 0; j < c; j++) {
                                const float t = p[j] * scale[j] + shift[j];
                                o[j] = t > o[j] ? t : o[j];
                            }
                        else
                            for (int j = 0; j < c; j++) o[j] = p[j] > o[j] ? p[j] : o[j];
                    }
                }
                if (relu)
                    for (int j = 0; j < c; j++) o[j] = o[j] > 0.0f ? o[j] : 0.0f;
            }
}

/* Benchmark probes (nas.nn.kernels.bench times them): `iters` rounds of 4 dependent scalar adds,
 * one per cycle, so 4 * iters / seconds is the clock; and `iters` rounds of 8 independent
 * 512-bit XOR + POPCNT + ADD (4096 binary MACs), the ceiling of any XNOR-popcount kernel on this
 * core. The second returns -1 where the CPU has no AVX-512 VPOPCNTDQ. */
int64_t bconv_clock_probe(int64_t iters) {
    int64_t x = 0;
    for (int64_t i = 0; i < iters; i++) {
#if defined(__x86_64__)
        __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
#else
        x += 4;
#endif
    }
    return x;
}

#if defined(__x86_64__)
AVX512 static int64_t popcount_peak(int64_t iters) {
    __m512i acc[8], w[8], x = _mm512_set1_epi64(0x123456789abcdefLL);
    for (int i = 0; i < 8; i++) {
        acc[i] = _mm512_setzero_si512();
        w[i] = _mm512_set1_epi64(0x0f0f0f0f0f0f0f0fLL * (i + 1));
    }
    for (int64_t it = 0; it < iters; it++) {
        for (int i = 0; i < 8; i++)
            acc[i] = _mm512_add_epi64(acc[i], _mm512_popcnt_epi64(_mm512_xor_si512(x, w[i])));
        __asm__ volatile("" : "+v"(x));
    }
    int64_t sum = 0;
    for (int i = 0; i < 8; i++) sum += _mm512_reduce_add_epi64(acc[i]);
    return sum;
}
#endif

int64_t bconv_popcount_peak(int64_t iters) {
#if defined(__x86_64__)
    if (bconv_paths() & (1 << PATH_AVX512)) return popcount_peak(iters);
#endif
    (void)iters;
    return -1;
}
