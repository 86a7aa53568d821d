// y[m, n] ~ sum_k x[m, k] * w[n, k] with w stored as GGUF blocks (Q4_0, Q4_1, Q8_0) and x
// quantised to 8 bits per block of 32, the block products done in integers (llama.cpp's scheme).
//
// The scheme (gguf_q8_scheme.h), which tests/decoders/q8_reference.py restates in numpy:
//   activations, per row and block b of 32:  a = max |x|,  d = a / 127,  e = d ? 1 / d : 0,
//     q[t] = rint(x[t] * e) (round half to even; |q| <= 127),  s = d * float(sum q);
//   weights, per block: the integers q_w and the float16 scale dw (and offset mw) of the file;
//   block term: c = (dw * d) * float(sum_t q_w[t] * q[t])  (+ mw * s for Q4_1);
//   y[m, n] = ((0 + c_0) + c_1) + ...  in block order, every operation a float32 rounding.
// The integer sums are exact whatever order they are added in, and each output lane performs the
// same float32 operations in the same order, so every build (AVX-512 with or without VNNI, AVX2,
// portable) gives the same bits, and a row's result never depends on its batch neighbours.
//
// Layout of the vector paths: a tile is kLanes weight rows (one per lane) against up to
// kBatchPerTile activation rows. For each block the rows' 32 weight bytes are transposed so that
// register k holds, in lane l, row l's weights 4k..4k+3; a dot-product instruction against the
// activation's 4 bytes 4k..4k+3 broadcast to every lane then accumulates each row's block sum in
// its own lane, with no horizontal reduction. The transposed weights are reused for every
// activation row of the tile (batch 8 decodes each block once).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gguf_blocks.h"
#include "gguf_q8_scheme.h"
#include "workers.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using namespace shield_kernels;

constexpr int64_t kRowsPerChunk = 64;  // unit of work handed to a thread
constexpr int64_t kBatchPerTile = 8;   // activation rows sharing one transposed block

// The next tile's rows (contiguous bytes), requested a few cache lines per block while this
// tile computes: sixteen short rows read side by side are more streams than the hardware
// prefetcher follows, and a burst of requests at once overflows the line-fill buffers.
struct Ahead {
  const char* start = nullptr;
  int64_t lines = 0, per_block = 0;
  void request(int64_t b) const {
    const int64_t first = b * per_block, last = std::min(lines, first + per_block);
    for (int64_t line = first; line < last; ++line)
      __builtin_prefetch(start + line * kCacheLine, 0, 2);
  }
};

struct Problem {
  const Quantised* a;
  const uint8_t* w;  // [N, row_bytes]
  float* y;          // [M, N]
  int64_t m, n, k, row_bytes;
};

// --- portable: one (activation row, weight row) pair at a time ---------------------------------
template <class F>
void pair_scalar(const Problem& p, int64_t i, int64_t n) {
  const Quantised& a = *p.a;
  const int64_t blocks = p.k / kGroup;
  float acc = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    int8_t qw[kGroup];
    const uint8_t* block = p.w + n * p.row_bytes + b / F::kGroups * F::kBytes;
    const Scales sc = F::scalar(block, b % F::kGroups, qw);
    const int8_t* qx = a.q.data() + i * p.k + b * kGroup;
    int32_t isum = 0;
    for (int64_t t = 0; t < kGroup; ++t) isum += static_cast<int32_t>(qw[t]) * qx[t];
    const int64_t ab = i * blocks + b;
    acc = acc + term<F>(sc.s0, sc.m, a.d[ab], a.s[ab], isum);
  }
  p.y[i * p.n + n] = acc;
}

#if defined(__AVX512BW__) && defined(__AVX512F__)
constexpr int64_t kLanes = 16;
using IVec = __m512i;
using FVec = __m512;

// Register k (0..7) of the transposed block: lane l holds row l's weights 4k..4k+3, unsigned.
template <class F>
inline void transpose(const uint8_t* const* rows, int64_t b, IVec* wt) {
  const int64_t at_byte = b / F::kGroups * F::kBytes + quant_offset<F>(b % F::kGroups);
  const int shift = layout<F>() == Layout::kNibbles32 ? 4 * static_cast<int>(b % 2) : 0;
  for (int half = 0; half < (layout<F>() == Layout::kPacked16 ? 1 : 2); ++half) {
    __m512i z[4];
    for (int i = 0; i < 4; ++i) {
      const auto at = [&](int r) {
        return _mm_loadu_si128(reinterpret_cast<const __m128i*>(
            rows[r] + at_byte + 16 * half));
      };
      z[i] = _mm512_inserti32x4(_mm512_castsi128_si512(at(i)), at(i + 4), 1);
      z[i] = _mm512_inserti32x4(z[i], at(i + 8), 2);
      z[i] = _mm512_inserti32x4(z[i], at(i + 12), 3);
    }
    const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
    const __m512i d[4] = {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2),
                          _mm512_unpacklo_epi64(t1, t3), _mm512_unpackhi_epi64(t1, t3)};
    for (int j = 0; j < 4; ++j) {
      const __m512i low = _mm512_set1_epi8(0x0F);
      if constexpr (layout<F>() == Layout::kPacked16) {
        wt[j] = _mm512_and_si512(d[j], low);
        wt[4 + j] = _mm512_and_si512(_mm512_srli_epi16(d[j], 4), low);
      } else if constexpr (layout<F>() == Layout::kNibbles32) {
        wt[4 * half + j] = _mm512_and_si512(_mm512_srl_epi16(d[j], _mm_cvtsi32_si128(shift)), low);
      } else {
        wt[4 * half + j] = d[j];
      }
    }
  }
}

// acc + per lane sum of the 4 products of unsigned w bytes and signed x bytes.
inline IVec dot4(IVec acc, IVec w, IVec x) {
#if defined(__AVX512VNNI__)
  return _mm512_dpbusd_epi32(acc, w, x);
#else
  const __m512i pairs = _mm512_maddubs_epi16(w, x);  // |w| <= 128, |x| <= 127: no saturation
  return _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)));
#endif
}

// Signed weights (Q8_0): VNNI adds 128 (subtracted via the sum of q later); without VNNI the
// product is |w| * (x with w's sign), which keeps maddubs clear of saturation.
inline IVec dot4_signed(IVec acc, IVec w, IVec x) {
#if defined(__AVX512VNNI__)
  return _mm512_dpbusd_epi32(acc, _mm512_xor_si512(w, _mm512_set1_epi8(-128)), x);
#else
  const __m512i signed_x = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
  return dot4(acc, _mm512_abs_epi8(w), signed_x);
#endif
}

// The integer correction of the vector paths, which multiply unsigned weight bytes: Q4_0 stores
// q + 8, so they subtract 8 * sum q; with VNNI, Q8_0's signed bytes enter as q_w + 128.
template <class F>
constexpr int32_t bias() {
  if constexpr (F::kId == Q4_0::kId) return 8;
#if defined(__AVX512VNNI__)
  if constexpr (F::kId == Q8_0::kId) return 128;
#endif
  return 0;
}

// Weight rows [n0, n0 + 16) (rows past N repeat the last one; their lanes are not stored)
// against activation rows [m0, m0 + MB).
template <class F, int MB>
void tile(const Problem& p, int64_t m0, int64_t n0, const Ahead& ahead) {
  const Quantised& a = *p.a;
  const int64_t blocks = p.k / kGroup;
  const uint8_t* rows[kLanes];
  alignas(64) int32_t offsets[kLanes];
  for (int64_t l = 0; l < kLanes; ++l) {
    const int64_t row = std::min(n0 + l, p.n - 1) - n0;
    rows[l] = p.w + (n0 + row) * p.row_bytes;
    offsets[l] = static_cast<int32_t>(row * p.row_bytes);
  }
  const __m512i index = _mm512_load_si512(offsets);
  const uint8_t* base = p.w + n0 * p.row_bytes;
  FVec acc[MB];
  for (auto& v : acc) v = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    ahead.request(b);
    IVec wt[8];
    transpose<F>(rows, b, wt);
    FVec dw, mw;
    if constexpr (F::kGroups == 1) {
      // Bytes 0..3 of every block: the float16 scale, and for Q4_1 the float16 offset.
      const __m512i head = _mm512_i32gather_epi32(index, base + b * F::kBytes, 1);
      dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(head));
      mw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(head, 16)));
    } else {  // Q4_K: each group's 6-bit scale and minimum, decoded as the float path does
      alignas(64) float dws[kLanes], mws[kLanes];
      for (int64_t l = 0; l < kLanes; ++l) {
        const Scales sc = F::scales(rows[l] + b / F::kGroups * F::kBytes, b % F::kGroups);
        dws[l] = sc.s0;
        mws[l] = sc.m;
      }
      dw = _mm512_load_ps(dws);
      mw = _mm512_load_ps(mws);
    }
    for (int i = 0; i < MB; ++i) {
      const int64_t ab = (m0 + i) * blocks + b;
      const int8_t* qx = a.q.data() + (m0 + i) * p.k + b * kGroup;
      // Two chains of four products halve the dependency chain (integer sums: order is free).
      IVec sums[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
      for (int j = 0; j < 8; ++j) {
        int32_t four;
        std::memcpy(&four, qx + 4 * j, sizeof four);
        const IVec x = _mm512_set1_epi32(four);
        sums[j % 2] = F::kNibbles ? dot4(sums[j % 2], wt[j], x) : dot4_signed(sums[j % 2], wt[j], x);
      }
      IVec isum = _mm512_add_epi32(sums[0], sums[1]);
      if constexpr (bias<F>() != 0)
        isum = _mm512_sub_epi32(isum, _mm512_set1_epi32(bias<F>() * a.sum[ab]));
      FVec c = _mm512_mul_ps(_mm512_mul_ps(dw, _mm512_set1_ps(a.d[ab])), _mm512_cvtepi32_ps(isum));
      if constexpr (F::kOffset) c = _mm512_add_ps(c, _mm512_mul_ps(mw, _mm512_set1_ps(a.s[ab])));
      acc[i] = _mm512_add_ps(acc[i], c);
    }
  }
  const __mmask16 keep = static_cast<__mmask16>((1u << std::min<int64_t>(kLanes, p.n - n0)) - 1u);
  for (int i = 0; i < MB; ++i) _mm512_mask_storeu_ps(p.y + (m0 + i) * p.n + n0, keep, acc[i]);
}
#define SHIELD_Q8_TILES 1

#elif defined(__AVX2__) && defined(__F16C__)
constexpr int64_t kLanes = 8;
using IVec = __m256i;
using FVec = __m256;

template <class F>
inline void transpose(const uint8_t* const* rows, int64_t b, IVec* wt) {
  const int64_t at_byte = b / F::kGroups * F::kBytes + quant_offset<F>(b % F::kGroups);
  const int shift = layout<F>() == Layout::kNibbles32 ? 4 * static_cast<int>(b % 2) : 0;
  for (int half = 0; half < (layout<F>() == Layout::kPacked16 ? 1 : 2); ++half) {
    __m256i z[4];
    for (int i = 0; i < 4; ++i) {
      const auto at = [&](int r) {
        return _mm_loadu_si128(reinterpret_cast<const __m128i*>(
            rows[r] + at_byte + 16 * half));
      };
      z[i] = _mm256_inserti128_si256(_mm256_castsi128_si256(at(i)), at(i + 4), 1);
    }
    const __m256i t0 = _mm256_unpacklo_epi32(z[0], z[1]), t1 = _mm256_unpackhi_epi32(z[0], z[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(z[2], z[3]), t3 = _mm256_unpackhi_epi32(z[2], z[3]);
    const __m256i d[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2),
                          _mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3)};
    for (int j = 0; j < 4; ++j) {
      const __m256i low = _mm256_set1_epi8(0x0F);
      if constexpr (layout<F>() == Layout::kPacked16) {
        wt[j] = _mm256_and_si256(d[j], low);
        wt[4 + j] = _mm256_and_si256(_mm256_srli_epi16(d[j], 4), low);
      } else if constexpr (layout<F>() == Layout::kNibbles32) {
        wt[4 * half + j] = _mm256_and_si256(_mm256_srl_epi16(d[j], _mm_cvtsi32_si128(shift)), low);
      } else {
        wt[4 * half + j] = d[j];
      }
    }
  }
}

inline IVec dot4(IVec acc, IVec w, IVec x) {
  const __m256i pairs = _mm256_maddubs_epi16(w, x);  // |w| <= 128, |x| <= 127: no saturation
  return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

inline IVec dot4_signed(IVec acc, IVec w, IVec x) {
  return dot4(acc, _mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}

template <class F>
constexpr int32_t bias() {
  return F::kId == Q4_0::kId ? 8 : 0;
}

template <class F, int MB>
void tile(const Problem& p, int64_t m0, int64_t n0, const Ahead& ahead) {
  const Quantised& a = *p.a;
  const int64_t blocks = p.k / kGroup;
  const uint8_t* rows[kLanes];
  for (int64_t l = 0; l < kLanes; ++l) rows[l] = p.w + std::min(n0 + l, p.n - 1) * p.row_bytes;
  FVec acc[MB];
  for (auto& v : acc) v = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    ahead.request(b);
    IVec wt[8];
    transpose<F>(rows, b, wt);
    alignas(32) float dws[kLanes], mws[kLanes];
    for (int64_t l = 0; l < kLanes; ++l) {
      if constexpr (F::kGroups == 1) {
        dws[l] = half_to_float(rows[l] + b * F::kBytes);
        mws[l] = F::kOffset ? half_to_float(rows[l] + b * F::kBytes + 2) : 0.0f;
      } else {
        const Scales sc = F::scales(rows[l] + b / F::kGroups * F::kBytes, b % F::kGroups);
        dws[l] = sc.s0;
        mws[l] = sc.m;
      }
    }
    const FVec dw = _mm256_load_ps(dws), mw = _mm256_load_ps(mws);
    for (int i = 0; i < MB; ++i) {
      const int64_t ab = (m0 + i) * blocks + b;
      const int8_t* qx = a.q.data() + (m0 + i) * p.k + b * kGroup;
      // Two chains of four products halve the dependency chain (integer sums: order is free).
      IVec sums[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
      for (int j = 0; j < 8; ++j) {
        int32_t four;
        std::memcpy(&four, qx + 4 * j, sizeof four);
        const IVec x = _mm256_set1_epi32(four);
        sums[j % 2] = F::kNibbles ? dot4(sums[j % 2], wt[j], x) : dot4_signed(sums[j % 2], wt[j], x);
      }
      IVec isum = _mm256_add_epi32(sums[0], sums[1]);
      if constexpr (bias<F>() != 0)
        isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(bias<F>() * a.sum[ab]));
      FVec c = _mm256_mul_ps(_mm256_mul_ps(dw, _mm256_set1_ps(a.d[ab])), _mm256_cvtepi32_ps(isum));
      if constexpr (F::kOffset) c = _mm256_add_ps(c, _mm256_mul_ps(mw, _mm256_set1_ps(a.s[ab])));
      acc[i] = _mm256_add_ps(acc[i], c);
    }
  }
  const int64_t valid = std::min<int64_t>(kLanes, p.n - n0);
  for (int i = 0; i < MB; ++i) {
    alignas(32) float out[kLanes];
    _mm256_store_ps(out, acc[i]);
    std::memcpy(p.y + (m0 + i) * p.n + n0, out, valid * sizeof(float));
  }
}
#define SHIELD_Q8_TILES 1
#endif

// One chunk: weight rows [n0, n1) against every activation row.
template <class F>
void chunk(const void* context, int64_t c) {
  const auto& p = *static_cast<const Problem*>(context);
  const int64_t n0 = c * kRowsPerChunk, n1 = std::min(p.n, n0 + kRowsPerChunk);
#if defined(SHIELD_Q8_TILES)
  const int64_t blocks = p.k / kGroup;
  for (int64_t n = n0; n < n1; n += kLanes) {
    // The chunk's next tile, requested during the first pass over the activations (the next
    // chunk may go to another core: its rows would land in the wrong core's caches).
    const int64_t next = std::min(n + kLanes, n1);
    Ahead ahead;
    ahead.start = reinterpret_cast<const char*>(p.w + next * p.row_bytes);
    ahead.lines = ((std::min(next + kLanes, n1) - next) * p.row_bytes + kCacheLine - 1) / kCacheLine;
    ahead.per_block = (ahead.lines + blocks - 1) / blocks;
    const Ahead none;
    for (int64_t m = 0; m < p.m; m += kBatchPerTile) {
      const Ahead& request = m == 0 ? ahead : none;
      switch (std::min(kBatchPerTile, p.m - m)) {
        case 1: tile<F, 1>(p, m, n, request); break;
        case 2: tile<F, 2>(p, m, n, request); break;
        case 3: tile<F, 3>(p, m, n, request); break;
        case 4: tile<F, 4>(p, m, n, request); break;
        case 5: tile<F, 5>(p, m, n, request); break;
        case 6: tile<F, 6>(p, m, n, request); break;
        case 7: tile<F, 7>(p, m, n, request); break;
        default: tile<F, 8>(p, m, n, request); break;
      }
    }
  }
#else
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t i = 0; i < p.m; ++i) pair_scalar<F>(p, i, n);
#endif
}

template <class F>
ffi::Error run(const float* x, Problem p) {
  if (p.k % F::kWeights != 0 || p.row_bytes != p.k / F::kWeights * F::kBytes) {
    return ffi::Error::InvalidArgument(
        "shield_gguf_q8_matmul: w rows must hold K / (weights per block) whole blocks");
  }
  // One buffer per calling thread, reused across calls (a decode step makes hundreds).
  thread_local Quantised quantised;
  quantise(x, p.m, p.k, quantised);
  p.a = &quantised;
  if (p.n > 0 && p.m > 0) parallel_for((p.n + kRowsPerChunk - 1) / kRowsPerChunk, chunk<F>, &p);
  return ffi::Error::Success();
}

ffi::Error GgufQ8MatmulImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::U8> w,
                            ffi::ResultBuffer<ffi::F32> y, int32_t format) {
  const auto xd = x.dimensions();
  const auto wd = w.dimensions();
  if (xd.size() != 2 || wd.size() != 2) {
    return ffi::Error::InvalidArgument("shield_gguf_q8_matmul expects x [M, K] and w [N, bytes]");
  }
  const Problem p{nullptr, w.typed_data(), y->typed_data(), xd[0], wd[0], xd[1], wd[1]};
  switch (format) {
    case Q4_0::kId: return run<Q4_0>(x.typed_data(), p);
    case Q4_1::kId: return run<Q4_1>(x.typed_data(), p);
    case Q8_0::kId: return run<Q8_0>(x.typed_data(), p);
    case Q4_K::kId: return run<Q4_K>(x.typed_data(), p);
    default:
      return ffi::Error::InvalidArgument(
          "shield_gguf_q8_matmul: 8-bit activations are implemented for Q4_0, Q4_1, Q8_0, Q4_K");
  }
}

}  // namespace

// The one exported symbol of this file (-fvisibility=hidden hides the rest).
extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* ShieldGgufQ8Matmul(
    XLA_FFI_CallFrame* call_frame);

XLA_FFI_DEFINE_HANDLER_SYMBOL(ShieldGgufQ8Matmul, GgufQ8MatmulImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::U8>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int32_t>("format"));
