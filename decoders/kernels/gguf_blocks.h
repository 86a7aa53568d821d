// The GGUF block formats, decoded one group of 32 weights at a time.
//
// Every supported format stores a row as blocks (32 weights, or 256 for the K-quants, each made
// of eight groups of 32). A group decodes to 32 small integers q, a scale per half (s0 for
// weights 0..15, s1 for 16..31: Q6_K gives each 16 weights their own scale) and, for the formats
// with one, an offset m; the weight is q * s (+ m), with the multiplication and the addition
// rounded separately, exactly as the gguf package's numpy dequantisation computes it (the build
// passes -ffp-contract=off so no compiler fuses them). Each format has a scalar decoder and, on
// x86 with SSE4.1 (every AVX2 or AVX-512 CPU), one that leaves q in two 16-byte registers.

#ifndef SHIELD_KERNELS_GGUF_BLOCKS_H_
#define SHIELD_KERNELS_GGUF_BLOCKS_H_

#include <cstdint>
#include <cstring>

#if defined(__AVX2__) || defined(__AVX512F__) || defined(__F16C__)
#include <immintrin.h>
#endif
#if defined(__AVX2__) || defined(__AVX512F__)
#define SHIELD_SSE_DECODE 1
#endif

namespace shield_kernels {

constexpr int64_t kGroup = 32;  // weights per group

// float16 bits to float32, exact for every value (subnormals, infinities, NaNs included).
inline float half_to_float(const uint8_t* bytes) {
  uint16_t h;
  std::memcpy(&h, bytes, sizeof h);
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1Fu;
  const uint32_t mantissa = h & 0x3FFu;
  uint32_t bits;
  if (exponent == 0) {
    // Subnormal or zero: mantissa * 2^-24 is exact in float32.
    float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-08f;
    std::memcpy(&bits, &magnitude, sizeof bits);
    bits |= sign;
  } else if (exponent == 31) {
    bits = sign | 0x7F800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
  }
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
#endif
}

// A decoded group's scales: weight t is q[t] * (t < 16 ? s0 : s1) (+ m when kOffset).
struct Scales {
  float s0, s1, m;
};

#if defined(SHIELD_SSE_DECODE)
inline __m128i low_nibbles(__m128i v) { return _mm_and_si128(v, _mm_set1_epi8(0x0F)); }
inline __m128i shifted(const uint8_t* p, int shift) {
  return _mm_srl_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)),
                       _mm_cvtsi32_si128(shift));
}
#endif

// Each format: kId (its GGML type number), kWeights and kBytes per block, kGroups = kWeights /
// 32, kOffset (whether weights add m), kNibbles (16 levels, one scale per group: the AVX-512 path
// looks weights up in a 16-entry table of the group's decoded levels), scalar(block, g, q,
// scales) and, with SSE, vector(block, g, lo, hi) returning the scales, q + kBias in lo and hi.

struct Q4_0 {
  static constexpr int32_t kId = 2;
  static constexpr int64_t kWeights = 32, kBytes = 18, kGroups = 1;
  static constexpr bool kOffset = false, kNibbles = true;
  static constexpr int kBias = 8;  // vector() leaves the raw nibbles; q = nibble - 8
  static Scales scalar(const uint8_t* b, int64_t, int8_t* q) {
    for (int t = 0; t < 16; ++t) {
      q[t] = static_cast<int8_t>((b[2 + t] & 0x0F) - 8);
      q[t + 16] = static_cast<int8_t>((b[2 + t] >> 4) - 8);
    }
    const float d = half_to_float(b);
    return {d, d, 0.0f};
  }
#if defined(SHIELD_SSE_DECODE)
  static Scales vector(const uint8_t* b, int64_t, __m128i& lo, __m128i& hi) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
    lo = low_nibbles(bytes);
    hi = low_nibbles(_mm_srli_epi16(bytes, 4));
    const float d = half_to_float(b);
    return {d, d, 0.0f};
  }
#endif
};

struct Q4_1 {
  static constexpr int32_t kId = 3;
  static constexpr int64_t kWeights = 32, kBytes = 20, kGroups = 1;
  static constexpr bool kOffset = true, kNibbles = true;
  static constexpr int kBias = 0;
  static Scales scalar(const uint8_t* b, int64_t, int8_t* q) {
    for (int t = 0; t < 16; ++t) {
      q[t] = static_cast<int8_t>(b[4 + t] & 0x0F);
      q[t + 16] = static_cast<int8_t>(b[4 + t] >> 4);
    }
    const float d = half_to_float(b);
    return {d, d, half_to_float(b + 2)};
  }
#if defined(SHIELD_SSE_DECODE)
  static Scales vector(const uint8_t* b, int64_t, __m128i& lo, __m128i& hi) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 4));
    lo = low_nibbles(bytes);
    hi = low_nibbles(_mm_srli_epi16(bytes, 4));
    const float d = half_to_float(b);
    return {d, d, half_to_float(b + 2)};
  }
#endif
};

struct Q8_0 {
  static constexpr int32_t kId = 8;
  static constexpr int64_t kWeights = 32, kBytes = 34, kGroups = 1;
  static constexpr bool kOffset = false, kNibbles = false;
  static constexpr int kBias = 0;
  static Scales scalar(const uint8_t* b, int64_t, int8_t* q) {
    std::memcpy(q, b + 2, 32);
    const float d = half_to_float(b);
    return {d, d, 0.0f};
  }
#if defined(SHIELD_SSE_DECODE)
  static Scales vector(const uint8_t* b, int64_t, __m128i& lo, __m128i& hi) {
    lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
    hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 18));
    const float d = half_to_float(b);
    return {d, d, 0.0f};
  }
#endif
};

// Q4_K: d, dmin (float16), 12 bytes of 6-bit scales and mins for the eight groups, then 128
// bytes of nibbles: group g is the low (g even) or high (g odd) nibbles of bytes 32 * (g / 2).
struct Q4_K {
  static constexpr int32_t kId = 12;
  static constexpr int64_t kWeights = 256, kBytes = 144, kGroups = 8;
  static constexpr bool kOffset = true, kNibbles = true;
  static constexpr int kBias = 0;
  static Scales scales(const uint8_t* b, int64_t g) {
    const uint8_t* s = b + 4;
    int sc, mn;
    if (g < 4) {
      sc = s[g] & 0x3F;
      mn = s[g + 4] & 0x3F;
    } else {
      sc = (s[g + 4] & 0x0F) | ((s[g - 4] >> 2) & 0x30);
      mn = (s[g + 4] >> 4) | ((s[g] >> 2) & 0x30);
    }
    const float d = half_to_float(b) * static_cast<float>(sc);
    // numpy computes d * q - dmin * mn; x - y and x + (-y) round identically.
    return {d, d, -(half_to_float(b + 2) * static_cast<float>(mn))};
  }
  static Scales scalar(const uint8_t* b, int64_t g, int8_t* q) {
    const uint8_t* p = b + 16 + 32 * (g / 2);
    const int shift = 4 * static_cast<int>(g % 2);
    for (int t = 0; t < 32; ++t) q[t] = static_cast<int8_t>((p[t] >> shift) & 0x0F);
    return scales(b, g);
  }
#if defined(SHIELD_SSE_DECODE)
  static Scales vector(const uint8_t* b, int64_t g, __m128i& lo, __m128i& hi) {
    const uint8_t* p = b + 16 + 32 * (g / 2);
    const int shift = 4 * static_cast<int>(g % 2);
    lo = low_nibbles(shifted(p, shift));
    hi = low_nibbles(shifted(p + 16, shift));
    return scales(b, g);
  }
#endif
};

// Q6_K: 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 int8 scales (one per 16
// weights), d (float16). In half h = g / 4, group r = g % 4 takes the low (r < 2) or high
// nibbles of ql[64 h + 32 (r % 2) ...] and bits 2r, 2r+1 of qh[32 h ...]; q = that - 32.
struct Q6_K {
  static constexpr int32_t kId = 14;
  static constexpr int64_t kWeights = 256, kBytes = 210, kGroups = 8;
  static constexpr bool kOffset = false, kNibbles = false;
  static constexpr int kBias = 0;
  static Scales scales(const uint8_t* b, int64_t g) {
    const auto* s = reinterpret_cast<const int8_t*>(b + 192);
    const float d = half_to_float(b + 208);
    return {d * static_cast<float>(s[2 * g]), d * static_cast<float>(s[2 * g + 1]), 0.0f};
  }
  static Scales scalar(const uint8_t* b, int64_t g, int8_t* q) {
    const int64_t h = g / 4, r = g % 4;
    const uint8_t* low = b + 64 * h + 32 * (r % 2);
    const uint8_t* high = b + 128 + 32 * h;
    const int low_shift = 4 * static_cast<int>(r / 2), high_shift = 2 * static_cast<int>(r);
    for (int t = 0; t < 32; ++t) {
      const int value = ((low[t] >> low_shift) & 0x0F) | (((high[t] >> high_shift) & 0x03) << 4);
      q[t] = static_cast<int8_t>(value - 32);
    }
    return scales(b, g);
  }
#if defined(SHIELD_SSE_DECODE)
  static Scales vector(const uint8_t* b, int64_t g, __m128i& lo, __m128i& hi) {
    const int64_t h = g / 4, r = g % 4;
    const uint8_t* low = b + 64 * h + 32 * (r % 2);
    const uint8_t* high = b + 128 + 32 * h;
    const int low_shift = 4 * static_cast<int>(r / 2), high_shift = 2 * static_cast<int>(r);
    const __m128i two_bits = _mm_set1_epi8(0x03), bias = _mm_set1_epi8(32);
    for (int half = 0; half < 2; ++half) {
      const __m128i l = low_nibbles(shifted(low + 16 * half, low_shift));
      const __m128i u = _mm_and_si128(shifted(high + 16 * half, high_shift), two_bits);
      // u < 4 in every byte, so the 16-bit shift moves no bit across a byte boundary.
      const __m128i v = _mm_sub_epi8(_mm_or_si128(l, _mm_slli_epi16(u, 4)), bias);
      (half == 0 ? lo : hi) = v;
    }
    return scales(b, g);
  }
#endif
};

}  // namespace shield_kernels

#endif  // SHIELD_KERNELS_GGUF_BLOCKS_H_
