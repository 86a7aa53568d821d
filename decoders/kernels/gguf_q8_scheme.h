// The pieces of gguf_q8_matmul.cc's scheme that every build shares: activations quantised to 8
// bits per block of 32 (per row and block, a = max |x|, d = a / 127, e = d ? 1 / d : 0,
// q[t] = rint(x[t] * e) (half to even), s = d * float(sum q)), where each format keeps the 32
// quants of a group, and the float term of a block. Every operation is one float32 rounding, so
// the AVX-512 and the scalar code give the same bits (tests/decoders/q8_reference.py restates it).

#ifndef SHIELD_KERNELS_GGUF_Q8_SCHEME_H_
#define SHIELD_KERNELS_GGUF_Q8_SCHEME_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "gguf_blocks.h"

namespace shield_kernels {

// Activation rows quantised per block of 32.
struct Quantised {
  std::vector<int8_t> q;     // [M, K]
  std::vector<float> d;      // [M, K / 32]
  std::vector<float> s;      // [M, K / 32]: d * float(sum q)
  std::vector<int32_t> sum;  // [M, K / 32]: sum q
};

inline void quantise(const float* x, int64_t m, int64_t k, Quantised& out) {
  const int64_t blocks = k / kGroup;
  out.q.resize(m * k);
  out.d.resize(m * blocks);
  out.s.resize(m * blocks);
  out.sum.resize(m * blocks);
  for (int64_t b = 0; b < m * blocks; ++b) {
    const float* xb = x + b * kGroup;
    int8_t* qb = out.q.data() + b * kGroup;
    // A block holding an infinity or a NaN gets d = NaN and q = 0: its terms, and so every
    // output it reaches, are NaN, as on the exact path (nothing non-finite is dropped silently).
    constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
#if defined(__AVX512F__)
    // 16 lanes at a time, the same operations: the maximum is exact in any order, and the
    // conversion rounds half to even (the default rounding mode), as lrintf does.
    const __m512 lo = _mm512_loadu_ps(xb), hi = _mm512_loadu_ps(xb + 16);
    const __m512 zero = _mm512_setzero_ps();
    const bool finite = (_mm512_cmp_ps_mask(_mm512_sub_ps(lo, lo), zero, _CMP_NEQ_UQ) |
                         _mm512_cmp_ps_mask(_mm512_sub_ps(hi, hi), zero, _CMP_NEQ_UQ)) == 0;
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
    const float d = finite ? amax / 127.0f : kNaN;
    const __m512 e = _mm512_set1_ps(finite && d != 0.0f ? 1.0f / d : 0.0f);
    const __m512i qlo = finite ? _mm512_cvtps_epi32(_mm512_mul_ps(lo, e)) : _mm512_setzero_si512();
    const __m512i qhi = finite ? _mm512_cvtps_epi32(_mm512_mul_ps(hi, e)) : _mm512_setzero_si512();
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qb), _mm512_cvtepi32_epi8(qlo));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qb + 16), _mm512_cvtepi32_epi8(qhi));
    const int32_t sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qlo, qhi));
#else
    bool finite = true;
    float amax = 0.0f;
    for (int64_t t = 0; t < kGroup; ++t) {
      finite = finite && std::isfinite(xb[t]);
      amax = std::max(amax, std::fabs(xb[t]));
    }
    const float d = finite ? amax / 127.0f : kNaN;
    const float e = finite && d != 0.0f ? 1.0f / d : 0.0f;
    int32_t sum = 0;
    for (int64_t t = 0; t < kGroup; ++t) {
      // lrintf rounds half to even in the default rounding mode, as numpy's rint does.
      qb[t] = finite ? static_cast<int8_t>(std::lrintf(xb[t] * e)) : 0;
      sum += qb[t];
    }
#endif
    out.d[b] = d;
    out.sum[b] = sum;
    out.s[b] = d * static_cast<float>(sum);
  }
}

// How group g of a block stores its 32 quants: 16 bytes of nibbles, low nibbles weights 0..15
// and high 16..31 (Q4_0, Q4_1); 32 signed bytes (Q8_0); or the low (g even) or high (g odd)
// nibbles of 32 bytes (Q4_K, whose block is 8 groups). Where they start, and that shift.
enum class Layout { kPacked16, kBytes32, kNibbles32 };

template <class F>
constexpr Layout layout() {
  if constexpr (F::kId == Q8_0::kId) return Layout::kBytes32;
  if constexpr (F::kId == Q4_K::kId) return Layout::kNibbles32;
  return Layout::kPacked16;
}

template <class F>
constexpr int64_t quant_offset(int64_t g) {
  if constexpr (F::kId == Q4_K::kId) return 16 + 32 * (g / 2);
  return F::kId == Q4_1::kId ? 4 : 2;  // after the float16 scale (and Q4_1's float16 offset)
}

// A block's float term from its exact integer sum (the scheme above; the vector paths write the
// same operations lane-wise).
template <class F>
inline float term(float dw, float mw, float d, float s, int32_t isum) {
  float c = (dw * d) * static_cast<float>(isum);
  if constexpr (F::kOffset) c = c + mw * s;
  return c;
}

}  // namespace shield_kernels

#endif  // SHIELD_KERNELS_GGUF_Q8_SCHEME_H_
