// y[m, n] = sum_k x[m, k] * (q[n, k] * d[n, k / 32] + o[n, k / 32]): float32 activations
// times int8 weights in blocks of 32 along k, each block with a float32 scale d and offset o.
//
// An XLA FFI handler for the CPU. Weight rows are read once from memory and converted to float32
// in registers; XLA's own lowering of the same expression materialises the float32 weights
// first, which costs more memory traffic than the float32 weights it was meant to replace.
// Output rows are split into chunks run by the library's shared threads (workers.h).

#include <algorithm>
#include <cstdint>

#include "workers.h"
#include "xla/ffi/api/ffi.h"

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kBlock = 32;          // weights sharing one scale and offset
constexpr int64_t kRowsPerTile = 4;     // weight rows whose dot products share one pass over x
constexpr int64_t kBatchPerTile = 4;    // activation rows per pass; 16 accumulators in all
constexpr int64_t kRowsPerChunk = 64;   // unit of work handed to a thread
constexpr int64_t kPrefetchTiles = 2;   // how far ahead weight rows are requested
using shield_kernels::kCacheLine;

// The vector unit, chosen at compile time (-march=native): kLanes floats per register, and the
// few operations the tile needs. kLanes divides kBlock, so one register never spans two blocks.
#if defined(__AVX512F__)
#define SHIELD_VECTOR 1
constexpr int64_t kLanes = 16;
using Vec = __m512;
inline Vec vzero() { return _mm512_setzero_ps(); }
inline Vec vload(const float* x) { return _mm512_loadu_ps(x); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline float vsum(Vec v) { return _mm512_reduce_add_ps(v); }
inline Vec vweights(const int8_t* q, float scale, float offset) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes)), _mm512_set1_ps(scale),
                         _mm512_set1_ps(offset));
}
#elif defined(__AVX2__) && defined(__FMA__)
#define SHIELD_VECTOR 1
constexpr int64_t kLanes = 8;
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
inline Vec vweights(const int8_t* q, float scale, float offset) {
  const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q));
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)), _mm256_set1_ps(scale),
                         _mm256_set1_ps(offset));
}
#endif

struct Problem {
  const float* x;       // [M, K]
  const int8_t* w;      // [N, K]
  const float* scale;   // [N, ceil(K / kBlock)]
  const float* offset;  // [N, ceil(K / kBlock)]
  float* y;             // [M, N]
  int64_t m, n, k, blocks;

  float weight(int64_t row, int64_t col) const {
    const int64_t b = row * blocks + col / kBlock;
    return static_cast<float>(w[row * k + col]) * scale[b] + offset[b];
  }

#if defined(SHIELD_VECTOR)
  // kLanes weights of one row from column col (a multiple of kLanes), dequantised.
  Vec weights(int64_t row, int64_t col) const {
    const int64_t b = row * blocks + col / kBlock;
    return vweights(w + row * k + col, scale[b], offset[b]);
  }
#endif
};

// Dot products of up to kBatchPerTile activation rows with up to kRowsPerTile weight rows.
// Every (activation row, weight row) pair is summed in the same order whatever the number of
// activation rows, so a row's result does not depend on the rest of the batch.
void tile(const Problem& p, int64_t m0, int64_t mb, int64_t n0, int64_t nb) {
  float acc[kBatchPerTile][kRowsPerTile] = {};
  int64_t k = 0;
#if defined(SHIELD_VECTOR)
  if (nb == kRowsPerTile) {
    const int64_t full = p.k - p.k % kLanes;
    if (mb == kBatchPerTile) {
      Vec v[kBatchPerTile][kRowsPerTile];
      for (auto& row : v)
        for (auto& lane : row) lane = vzero();
      for (int64_t kk = 0; kk < full; kk += kLanes) {
        Vec wv[kRowsPerTile];
        for (int64_t j = 0; j < kRowsPerTile; ++j) wv[j] = p.weights(n0 + j, kk);
        for (int64_t i = 0; i < kBatchPerTile; ++i) {
          const Vec xv = vload(p.x + (m0 + i) * p.k + kk);
          for (int64_t j = 0; j < kRowsPerTile; ++j) v[i][j] = vfma(xv, wv[j], v[i][j]);
        }
      }
      for (int64_t i = 0; i < kBatchPerTile; ++i)
        for (int64_t j = 0; j < kRowsPerTile; ++j) acc[i][j] = vsum(v[i][j]);
    } else {
      for (int64_t i = 0; i < mb; ++i) {
        Vec v[kRowsPerTile];
        for (auto& lane : v) lane = vzero();
        for (int64_t kk = 0; kk < full; kk += kLanes) {
          const Vec xv = vload(p.x + (m0 + i) * p.k + kk);
          for (int64_t j = 0; j < kRowsPerTile; ++j) v[j] = vfma(xv, p.weights(n0 + j, kk), v[j]);
        }
        for (int64_t j = 0; j < kRowsPerTile; ++j) acc[i][j] = vsum(v[j]);
      }
    }
    k = full;
  }
#endif
  // Whatever the vector code above did not cover: the tail of k, the last rows of a chunk that
  // does not fill a tile, or everything on a CPU without AVX2 and FMA.
  for (int64_t i = 0; i < mb; ++i) {
    const float* xr = p.x + (m0 + i) * p.k;
    for (int64_t j = 0; j < nb; ++j) {
      float sum = 0.0f;
      for (int64_t kk = k; kk < p.k; ++kk) sum += xr[kk] * p.weight(n0 + j, kk);
      acc[i][j] += sum;
    }
  }
  for (int64_t i = 0; i < mb; ++i)
    for (int64_t j = 0; j < nb; ++j) p.y[(m0 + i) * p.n + n0 + j] = acc[i][j];
}

// One chunk: output columns [n0, n1) for every activation row.
void chunk(const Problem& p, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; n += kRowsPerTile) {
    const int64_t nb = std::min(kRowsPerTile, n1 - n);
    // Ask for the weights kPrefetchTiles ahead now: rows are short (K bytes), too short for the
    // hardware prefetcher to reach full speed on its own.
    const int64_t ahead = n + kPrefetchTiles * kRowsPerTile;
    if (ahead < n1) {
      const char* start = reinterpret_cast<const char*>(p.w + ahead * p.k);
      const int64_t bytes = std::min(kRowsPerTile, n1 - ahead) * p.k;
      for (int64_t offset = 0; offset < bytes; offset += kCacheLine)
        __builtin_prefetch(start + offset, 0, 3);
      __builtin_prefetch(p.scale + ahead * p.blocks, 0, 3);
      __builtin_prefetch(p.offset + ahead * p.blocks, 0, 3);
    }
    for (int64_t m = 0; m < p.m; m += kBatchPerTile)
      tile(p, m, std::min(kBatchPerTile, p.m - m), n, nb);
  }
}

void run_chunk(const void* context, int64_t c) {
  const auto& p = *static_cast<const Problem*>(context);
  const int64_t n0 = c * kRowsPerChunk;
  chunk(p, n0, std::min(p.n, n0 + kRowsPerChunk));
}

ffi::Error Int8MatmulImpl(ffi::Buffer<ffi::F32> x,
                          ffi::Buffer<ffi::S8> w, ffi::Buffer<ffi::F32> scale,
                          ffi::Buffer<ffi::F32> offset, ffi::ResultBuffer<ffi::F32> y) {
  const auto xd = x.dimensions();
  const auto wd = w.dimensions();
  if (xd.size() != 2 || wd.size() != 2 || xd[1] != wd[1]) {
    return ffi::Error::InvalidArgument("shield_int8_matmul expects x [M, K] and w [N, K]");
  }
  const int64_t blocks = (wd[1] + kBlock - 1) / kBlock;
  const auto expected = static_cast<size_t>(wd[0] * blocks);
  if (scale.element_count() != expected || offset.element_count() != expected) {
    return ffi::Error::InvalidArgument(
        "shield_int8_matmul expects scale and offset [N, ceil(K / 32)]");
  }
  const Problem problem{x.typed_data(),      w.typed_data(), scale.typed_data(),
                        offset.typed_data(), y->typed_data(), xd[0],
                        wd[0],               wd[1],          blocks};
  shield_kernels::parallel_for((wd[0] + kRowsPerChunk - 1) / kRowsPerChunk, run_chunk, &problem);
  return ffi::Error::Success();
}

}  // namespace

// The one exported symbol; everything else stays hidden (-fvisibility=hidden).
extern "C" __attribute__((visibility("default"))) XLA_FFI_Error* ShieldInt8Matmul(
    XLA_FFI_CallFrame* call_frame);

XLA_FFI_DEFINE_HANDLER_SYMBOL(ShieldInt8Matmul, Int8MatmulImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S8>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
