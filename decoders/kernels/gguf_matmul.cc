// y[m, n] = sum_k x[m, k] * w[n, k] with w stored as GGUF blocks (gguf_blocks.h), row n of w
// being the bytes of its blocks along k, exactly as the file stores the tensor.
//
// An XLA FFI handler for the CPU. Each group of 32 weights is read from memory once, decoded in
// registers to float32 (the very weights gguf's dequantisation gives) and used for every
// activation row of the tile before the next group is read: batch-1 decoding reads the file's
// bytes and nothing else, and a batch of up to kBatchPerTile rows decodes each group once.
// Every (activation row, weight row) pair is summed in the same order whatever the batch, so a
// row's result does not depend on the rest of the batch. Rows are split into chunks run by the
// library's shared threads (workers.h).

#include <algorithm>
#include <cstdint>

#include "gguf_blocks.h"
#include "workers.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using namespace shield_kernels;

constexpr int64_t kRowsPerChunk = 64;  // unit of work handed to a thread
constexpr int64_t kPrefetchRows = 4;   // how far ahead weight rows are requested
constexpr int64_t kBatchPerTile = 8;   // activation rows sharing one decoded group

// The vector unit, chosen at compile time (-march=native): kLanes floats per register,
// kRowsPerTile weight rows decoded together (accumulators: kBatchPerTile * kRowsPerTile).
#if defined(__AVX512F__)
constexpr int64_t kLanes = 16, kRowsPerTile = 2;
using Vec = __m512;
inline Vec vzero() { return _mm512_setzero_ps(); }
inline Vec vload(const float* x) { return _mm512_loadu_ps(x); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline float vsum(Vec v) { return _mm512_reduce_add_ps(v); }
inline Vec vscale(__m128i q, float s) {
  return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), _mm512_set1_ps(s));
}
inline Vec vshift(Vec v, float m) { return _mm512_add_ps(v, _mm512_set1_ps(m)); }
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int64_t kLanes = 8, kRowsPerTile = 1;
using Vec = __m256;
inline Vec vzero() { return _mm256_setzero_ps(); }
inline Vec vload(const float* x) { return _mm256_loadu_ps(x); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline float vsum(Vec v) {
  __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  half = _mm_add_ps(half, _mm_movehl_ps(half, half));
  half = _mm_add_ss(half, _mm_movehdup_ps(half));
  return _mm_cvtss_f32(half);
}
inline Vec vscale(__m128i q, float s) {  // the low 8 bytes of q
  return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), _mm256_set1_ps(s));
}
inline Vec vshift(Vec v, float m) { return _mm256_add_ps(v, _mm256_set1_ps(m)); }
#else
// Portable: one float per "register"; the same code path, summed in the same order.
constexpr int64_t kLanes = 1, kRowsPerTile = 1;
using Vec = float;
inline Vec vzero() { return 0.0f; }
inline Vec vload(const float* x) { return *x; }
inline Vec vfma(Vec a, Vec b, Vec c) { return a * b + c; }
inline float vsum(Vec v) { return v; }
#endif

constexpr int64_t kVecs = kGroup / kLanes;  // registers per decoded group

// Group g of block b decoded to kVecs registers of float32 weights.
template <class F>
inline void decode(const uint8_t* b, int64_t g, Vec* w) {
#if defined(__AVX512F__)
  __m128i lo, hi;
  const Scales s = F::vector(b, g, lo, hi);
  if constexpr (F::kNibbles) {
    // The group's 16 levels (q - kBias) * s (+ m), rounded as gguf rounds them, then one
    // permute per 16 weights instead of a conversion, a multiplication and an addition.
    const __m512 levels = _mm512_setr_ps(0 - F::kBias, 1 - F::kBias, 2 - F::kBias, 3 - F::kBias,
                                         4 - F::kBias, 5 - F::kBias, 6 - F::kBias, 7 - F::kBias,
                                         8 - F::kBias, 9 - F::kBias, 10 - F::kBias, 11 - F::kBias,
                                         12 - F::kBias, 13 - F::kBias, 14 - F::kBias, 15 - F::kBias);
    __m512 table = _mm512_mul_ps(levels, _mm512_set1_ps(s.s0));
    if constexpr (F::kOffset) table = _mm512_add_ps(table, _mm512_set1_ps(s.m));
    w[0] = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(lo), table);
    w[1] = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(hi), table);
    return;
  }
  w[0] = vscale(lo, s.s0);
  w[1] = vscale(hi, s.s1);
#elif defined(__AVX2__) && defined(__FMA__)
  __m128i lo, hi;
  const Scales s = F::vector(b, g, lo, hi);
  if constexpr (F::kBias != 0) {
    lo = _mm_sub_epi8(lo, _mm_set1_epi8(F::kBias));
    hi = _mm_sub_epi8(hi, _mm_set1_epi8(F::kBias));
  }
  w[0] = vscale(lo, s.s0);
  w[1] = vscale(_mm_srli_si128(lo, 8), s.s0);
  w[2] = vscale(hi, s.s1);
  w[3] = vscale(_mm_srli_si128(hi, 8), s.s1);
#else
  int8_t q[kGroup];
  const Scales s = F::scalar(b, g, q);
  for (int64_t t = 0; t < kGroup; ++t) w[t] = static_cast<float>(q[t]) * (t < 16 ? s.s0 : s.s1);
#endif
  if constexpr (F::kOffset) {
    for (int64_t v = 0; v < kVecs; ++v) {
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
      w[v] = vshift(w[v], s.m);
#else
      w[v] = w[v] + s.m;
#endif
    }
  }
}

struct Problem {
  const float* x;    // [M, K]
  const uint8_t* w;  // [N, row_bytes]
  float* y;          // [M, N]
  int64_t m, n, k, row_bytes;
};

// Rows [n0, n0 + NB) of w against activation rows [m0, m0 + MB).
template <class F, int MB, int NB>
void tile(const Problem& p, int64_t m0, int64_t n0) {
  Vec acc[MB][NB];
  for (auto& row : acc)
    for (auto& lane : row) lane = vzero();
  const int64_t blocks = p.k / F::kWeights;
  for (int64_t block = 0; block < blocks; ++block) {
    for (int64_t g = 0; g < F::kGroups; ++g) {
      Vec w[NB][kVecs];
      for (int j = 0; j < NB; ++j) decode<F>(p.w + (n0 + j) * p.row_bytes + block * F::kBytes, g, w[j]);
      const int64_t col = block * F::kWeights + g * kGroup;
      for (int i = 0; i < MB; ++i) {
        const float* xr = p.x + (m0 + i) * p.k + col;
        for (int64_t v = 0; v < kVecs; ++v) {
          const Vec xv = vload(xr + v * kLanes);
          for (int j = 0; j < NB; ++j) acc[i][j] = vfma(xv, w[j][v], acc[i][j]);
        }
      }
    }
  }
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) p.y[(m0 + i) * p.n + n0 + j] = vsum(acc[i][j]);
}

template <class F, int NB>
void tiles(const Problem& p, int64_t n0) {
  for (int64_t m = 0; m < p.m; m += kBatchPerTile) {
    switch (std::min(kBatchPerTile, p.m - m)) {
      case 1: tile<F, 1, NB>(p, m, n0); break;
      case 2: tile<F, 2, NB>(p, m, n0); break;
      case 3: tile<F, 3, NB>(p, m, n0); break;
      case 4: tile<F, 4, NB>(p, m, n0); break;
      case 5: tile<F, 5, NB>(p, m, n0); break;
      case 6: tile<F, 6, NB>(p, m, n0); break;
      case 7: tile<F, 7, NB>(p, m, n0); break;
      default: tile<F, 8, NB>(p, m, n0); break;
    }
  }
}

// One chunk: weight rows [n0, n1) against every activation row.
template <class F>
void chunk(const void* context, int64_t c) {
  const auto& p = *static_cast<const Problem*>(context);
  const int64_t n0 = c * kRowsPerChunk, n1 = std::min(p.n, n0 + kRowsPerChunk);
  for (int64_t n = n0; n < n1; n += kRowsPerTile) {
    // Rows are short (hundreds of bytes): too short for the hardware prefetcher to reach full
    // speed on its own, so the rows kPrefetchRows ahead are requested now.
    const int64_t ahead = n + kPrefetchRows;
    if (ahead < n1) {
      const char* start = reinterpret_cast<const char*>(p.w + ahead * p.row_bytes);
      const int64_t bytes = std::min(kRowsPerTile, n1 - ahead) * p.row_bytes;
      for (int64_t offset = 0; offset < bytes; offset += kCacheLine)
        __builtin_prefetch(start + offset, 0, 3);
    }
    if (n1 - n >= kRowsPerTile) {
      tiles<F, kRowsPerTile>(p, n);
    } else {
      for (int64_t j = n; j < n1; ++j) tiles<F, 1>(p, j);
    }
  }
}

template <class F>
ffi::Error run(const Problem& p) {
  if (p.k % F::kWeights != 0 || p.row_bytes != p.k / F::kWeights * F::kBytes) {
    return ffi::Error::InvalidArgument(
        "shield_gguf_matmul: w rows must hold K / (weights per block) whole blocks");
  }
  parallel_for((p.n + kRowsPerChunk - 1) / kRowsPerChunk, chunk<F>, &p);
  return ffi::Error::Success();
}

ffi::Error GgufMatmulImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::U8> w,
                          ffi::ResultBuffer<ffi::F32> y, int32_t format) {
  const auto xd = x.dimensions();
  const auto wd = w.dimensions();
  if (xd.size() != 2 || wd.size() != 2) {
    return ffi::Error::InvalidArgument("shield_gguf_matmul expects x [M, K] and w [N, bytes]");
  }
  const Problem p{x.typed_data(), w.typed_data(), y->typed_data(), xd[0], wd[0], xd[1], wd[1]};
  switch (format) {
    case Q4_0::kId: return run<Q4_0>(p);
    case Q4_1::kId: return run<Q4_1>(p);
    case Q8_0::kId: return run<Q8_0>(p);
    case Q4_K::kId: return run<Q4_K>(p);
    case Q6_K::kId: return run<Q6_K>(p);
    default:
      return ffi::Error::InvalidArgument("shield_gguf_matmul: unsupported GGML block format");
  }
}

}  // namespace

// The one exported symbol of this file (-fvisibility=hidden hides the rest).
extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* ShieldGgufMatmul(
    XLA_FFI_CallFrame* call_frame);

XLA_FFI_DEFINE_HANDLER_SYMBOL(ShieldGgufMatmul, GgufMatmulImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::U8>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int32_t>("format"));
