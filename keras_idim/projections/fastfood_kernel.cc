// Fastfood's products over stacked blocks, one block at a time in cache.
//
// An optional CPU kernel of keras_idim.projections.FastfoodProjection, built
// at first use by keras_idim/projections/kernel.py (never by pip) and loaded
// with tf.load_op_library; without a compiler the projection computes the
// same products with TensorFlow ops. Each block of length L (a power of two)
// is read once from P's stored tensors, transformed in a buffer that stays
// in cache, and written once: the products then move about the bytes that a
// copy of P's tensors moves, where the TensorFlow ops pass over D numbers
// about ten times.
//
// Forward, block b (rows b*L to b*L + L - 1 of u = P v):
//   x = B_b v (v zero-padded to L), x = H x, y_j = G_b,j x_perm_b(j),
//   y = H y, u_(b*L+j) = S_(b*L+j) y_j.
// Transpose, summed over the blocks:
//   t = S g_b, t = H t, t = G_b t, w_perm_b(j) = t_j, w = H w, acc += B_b w.
// H is the unnormalised Walsh-Hadamard transform (symmetric, entries +-1).
//
// The D rows may be given as consecutive pieces (one per weight tensor of a
// model), each with a scale (SAID's lambdas): the transpose then reads g from
// the pieces, scaled, without joining them, and with v gives each piece's
// g . (P v) from the same transforms (SAID's lambda gradients); the forward
// writes base + scale * u.
//
// Each transform runs on vectors (AVX-512, AVX2, or the compiler's 4-float
// vectors, as the build's flags allow): its first levels inside vectors
// and registers, then L1-sized groups of numbers through their own levels,
// then the levels across groups, three at most a pass. The other steps
// are fused into its first and last passes (B v and the permuted G x as
// the first pass reads its numbers; S, base and the output, or Pi^T and
// acc, as the last pass gives them; an output of 2^22 rows or more is
// streamed past the caches). Every number is rounded
// as the plain loops of one number at a time round it, in the same order,
// so the products do not depend on the width built.

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace keras_idim {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
namespace errors = tensorflow::errors;

// Vectors of W floats, for the transforms and the passes fused into them:
// AVX-512 (16), AVX2 (8) or plain floats (1), as the build's flags allow.
// Every operation rounds as the plain C++ of one number at a time would
// (a level's p + q and p - q, one product, one sum), so the products are
// the same numbers whichever width is built.
struct Scalar {
  static constexpr int kBits = 0;
  using F = float;
  static F Load(const float* p) { return *p; }
  static void Store(float* p, F x) { *p = x; }
  static void Stream(float* p, F x) { *p = x; }
  static F Zero() { return 0.0f; }
  static F Set(float a) { return a; }
  static F Add(F a, F b) { return a + b; }
  static F Sub(F a, F b) { return a - b; }
  static F Mul(F a, F b) { return a * b; }
  static F MulAdd(F a, F b, F c) { return a * b + c; }
  static F Signs(const int8_t* s) { return *s; }
  static F Reals(const float* p) { return *p; }
  static F Reals(const Eigen::half* p) { return static_cast<float>(*p); }
  template <typename Index>
  static F Gather(const float* x, const Index* i) { return x[*i]; }
  template <typename Index>
  static void Scatter(float* x, const Index* i, F v) { x[*i] = v; }
  static F Levels(F x) { return x; }  // no level inside one number
};

#if defined(__AVX512F__)
struct Simd {
  static constexpr int kBits = 4;
  using F = __m512;
  static F Load(const float* p) { return _mm512_loadu_ps(p); }
  static void Store(float* p, F x) { _mm512_storeu_ps(p, x); }
  // Past the caches (p aligned to 64 bytes): no read of the line first.
  static void Stream(float* p, F x) { _mm512_stream_ps(p, x); }
  static F Zero() { return _mm512_setzero_ps(); }
  static F Set(float a) { return _mm512_set1_ps(a); }
  static F Add(F a, F b) { return _mm512_add_ps(a, b); }
  static F Sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F Mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F MulAdd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F Signs(const int8_t* s) {
    return _mm512_cvtepi32_ps(
        _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s))));
  }
  static F Reals(const float* p) { return Load(p); }
  static F Reals(const Eigen::half* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static __m512i Indices(const int16_t* i) {
    return _mm512_cvtepi16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(i)));
  }
  static __m512i Indices(const int32_t* i) { return _mm512_loadu_si512(i); }
  template <typename Index>
  static F Gather(const float* x, const Index* i) {
    return _mm512_i32gather_ps(Indices(i), x, 4);
  }
  template <typename Index>
  static void Scatter(float* x, const Index* i, F v) {
    alignas(64) float t[16];
    _mm512_store_ps(t, v);
    for (int l = 0; l < 16; ++l) x[i[l]] = t[l];
  }
  // Levels 0 to 3 (h = 1, 2, 4, 8) inside the vector: lane l gets
  // x_l + x_(l^h) where bit h of l is clear, x_(l^h) - x_l where it is set
  // (x_l times -1 is exact, so the sum rounds as p - q does).
  static F Levels(F x) {
    const F s1 = _mm512_setr_ps(1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1);
    const F s2 = _mm512_setr_ps(1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1, 1, 1, -1, -1);
    const F s4 = _mm512_setr_ps(1, 1, 1, 1, -1, -1, -1, -1, 1, 1, 1, 1, -1, -1, -1, -1);
    const F s8 = _mm512_setr_ps(1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1);
    x = _mm512_fmadd_ps(x, s1, _mm512_permute_ps(x, 0xB1));
    x = _mm512_fmadd_ps(x, s2, _mm512_permute_ps(x, 0x4E));
    x = _mm512_fmadd_ps(x, s4, _mm512_shuffle_f32x4(x, x, 0xB1));
    return _mm512_fmadd_ps(x, s8, _mm512_shuffle_f32x4(x, x, 0x4E));
  }
};
#elif defined(__AVX2__)
struct Simd {
  static constexpr int kBits = 3;
  using F = __m256;
  static F Load(const float* p) { return _mm256_loadu_ps(p); }
  static void Store(float* p, F x) { _mm256_storeu_ps(p, x); }
  static void Stream(float* p, F x) { _mm256_stream_ps(p, x); }
  static F Zero() { return _mm256_setzero_ps(); }
  static F Set(float a) { return _mm256_set1_ps(a); }
  static F Add(F a, F b) { return _mm256_add_ps(a, b); }
  static F Sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F Mul(F a, F b) { return _mm256_mul_ps(a, b); }
#if defined(__FMA__)
  static F MulAdd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
#else
  static F MulAdd(F a, F b, F c) { return Add(Mul(a, b), c); }
#endif
  static F Signs(const int8_t* s) {
    return _mm256_cvtepi32_ps(
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(s))));
  }
  static F Reals(const float* p) { return Load(p); }
  static F Reals(const Eigen::half* p) {
#if defined(__F16C__)
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
#else
    alignas(32) float t[8];
    for (int l = 0; l < 8; ++l) t[l] = static_cast<float>(p[l]);
    return _mm256_load_ps(t);
#endif
  }
  static __m256i Indices(const int16_t* i) {
    return _mm256_cvtepi16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(i)));
  }
  static __m256i Indices(const int32_t* i) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(i));
  }
  template <typename Index>
  static F Gather(const float* x, const Index* i) {
    return _mm256_i32gather_ps(x, Indices(i), 4);
  }
  template <typename Index>
  static void Scatter(float* x, const Index* i, F v) {
    alignas(32) float t[8];
    _mm256_store_ps(t, v);
    for (int l = 0; l < 8; ++l) x[i[l]] = t[l];
  }
  // Levels 0 to 2 (h = 1, 2, 4) inside the vector, as in the AVX-512 one.
  static F Levels(F x) {
    const F s1 = _mm256_setr_ps(1, -1, 1, -1, 1, -1, 1, -1);
    const F s2 = _mm256_setr_ps(1, 1, -1, -1, 1, 1, -1, -1);
    const F s4 = _mm256_setr_ps(1, 1, 1, 1, -1, -1, -1, -1);
    x = MulAdd(x, s1, _mm256_permute_ps(x, 0xB1));
    x = MulAdd(x, s2, _mm256_permute_ps(x, 0x4E));
    return MulAdd(x, s4, _mm256_permute2f128_ps(x, x, 0x01));
  }
};
#elif defined(__GNUC__)
// Four floats in the compiler's own vectors (SSE2 on any x86-64, NEON on
// aarch64), where no flag names wider ones.
struct Simd {
  static constexpr int kBits = 2;
  typedef float F __attribute__((vector_size(16)));
  static F Load(const float* p) {
    F x;
    std::memcpy(&x, p, sizeof x);
    return x;
  }
  static void Store(float* p, F x) { std::memcpy(p, &x, sizeof x); }
  static void Stream(float* p, F x) { Store(p, x); }
  static F Zero() { return F{0.0f, 0.0f, 0.0f, 0.0f}; }
  static F Set(float a) { return F{a, a, a, a}; }
  static F Add(F a, F b) { return a + b; }
  static F Sub(F a, F b) { return a - b; }
  static F Mul(F a, F b) { return a * b; }
  static F MulAdd(F a, F b, F c) { return a * b + c; }
  static F Signs(const int8_t* s) {
    return F{float(s[0]), float(s[1]), float(s[2]), float(s[3])};
  }
  static F Reals(const float* p) { return Load(p); }
  static F Reals(const Eigen::half* p) {
    return F{static_cast<float>(p[0]), static_cast<float>(p[1]),
             static_cast<float>(p[2]), static_cast<float>(p[3])};
  }
  template <typename Index>
  static F Gather(const float* x, const Index* i) {
    return F{x[i[0]], x[i[1]], x[i[2]], x[i[3]]};
  }
  template <typename Index>
  static void Scatter(float* x, const Index* i, F v) {
    for (int l = 0; l < 4; ++l) x[i[l]] = v[l];
  }
  // Levels 0 and 1 (h = 1, 2) inside the vector, as in the AVX-512 one.
  static F Levels(F x) {
    const F s1 = {1, -1, 1, -1}, s2 = {1, 1, -1, -1};
#if defined(__clang__) || __GNUC__ >= 12
    x = x * s1 + __builtin_shufflevector(x, x, 1, 0, 3, 2);
    return x * s2 + __builtin_shufflevector(x, x, 2, 3, 0, 1);
#else
    typedef int I __attribute__((vector_size(16)));
    x = x * s1 + __builtin_shuffle(x, I{1, 0, 3, 2});
    return x * s2 + __builtin_shuffle(x, I{2, 3, 0, 1});
#endif
  }
};
#else
using Simd = Scalar;
#endif

// Orders the streamed stores before what follows (x86: they are weakly
// ordered).
inline void StreamFence() {
#if defined(__AVX2__) || defined(__AVX512F__)
  _mm_sfence();
#endif
}

// Levels lo to lo + R - 1 on the 2^R vectors v (v[m] at x + m * 2^lo):
// level lo + t pairs v[m] with v[m + 2^t], the sum first.
template <typename V, int R>
inline void Radix(typename V::F* v) {
#pragma GCC unroll 4
  for (int t = 1; t < (1 << R); t <<= 1) {
#pragma GCC unroll 8
    for (int m = 0; m < (1 << R); ++m) {
      if (m & t) continue;
      const typename V::F p = v[m], q = v[m + t];
      v[m] = V::Add(p, q);
      v[m + t] = V::Sub(p, q);
    }
  }
}

// log2 of the numbers that each group of a transform's levels after the
// first pass works in (L1-sized: 16 KiB of floats).
constexpr int kChunkBits = 12;

// Levels lo to lo + R - 1 over x[off, off + len), 2^lo >= W; each result
// vector goes to out(position, vector).
template <typename V, int R, typename Out>
inline void Pass(float* x, int64_t off, int64_t len, int64_t h, Out out) {
  constexpr int64_t W = int64_t{1} << V::kBits;
  for (int64_t i = off; i < off + len; i += h << R) {
    for (int64_t j = i; j < i + h; j += W) {
      typename V::F v[1 << R];
#pragma GCC unroll 8
      for (int m = 0; m < (1 << R); ++m) v[m] = V::Load(x + j + m * h);
      Radix<V, R>(v);
#pragma GCC unroll 8
      for (int m = 0; m < (1 << R); ++m) out(j + m * h, v[m]);
    }
  }
}

// Levels lo to hi - 1 over x[off, off + len), up to three a pass; the last
// pass's vectors go to out, the others back to x.
template <typename V, typename Out>
inline void Passes(float* x, int64_t off, int64_t len, int lo, int hi, Out out) {
  auto store = [x](int64_t j, typename V::F v) { V::Store(x + j, v); };
  while (lo < hi) {
    const int left = hi - lo, r = left == 4 ? 2 : std::min(left, 3);
    const int64_t h = int64_t{1} << lo;
    const bool last = lo + r == hi;
    if (r == 3) {
      last ? Pass<V, 3>(x, off, len, h, out) : Pass<V, 3>(x, off, len, h, store);
    } else if (r == 2) {
      last ? Pass<V, 2>(x, off, len, h, out) : Pass<V, 2>(x, off, len, h, store);
    } else {
      last ? Pass<V, 1>(x, off, len, h, out) : Pass<V, 1>(x, off, len, h, store);
    }
    lo += r;
  }
}

// The first pass: levels 0 to (kBits + R) - 1 in groups of 2^R vectors,
// each vector from in(position).
template <typename V, int R, typename In, typename Out>
inline void FirstPass(float* x, int64_t off, int64_t len, In in, Out out) {
  constexpr int64_t W = int64_t{1} << V::kBits;
  for (int64_t g = off; g < off + len; g += W << R) {
    typename V::F v[1 << R];
#pragma GCC unroll 8
    for (int m = 0; m < (1 << R); ++m) v[m] = V::Levels(in(g + m * W));
    Radix<V, R>(v);
#pragma GCC unroll 8
    for (int m = 0; m < (1 << R); ++m) out(g + m * W, v[m]);
  }
}

// x <- H in, for n = 2^k numbers, n >= W: in(j) gives the input's vector at
// j (a multiple of W), out(j, vector) takes the result's. Levels in order
// 0, 1, ..., k - 1, each number's as one level a pass would round them:
// the first levels inside vectors, then up to three more in registers,
// then groups of 2^kChunkBits numbers (in L1) through their own levels, then
// the levels across the groups, the last pass handing its vectors to out.
template <typename V, typename In, typename Out>
inline void Transform(float* x, int64_t n, In in, Out out) {
  int k = 0;
  while ((int64_t{1} << k) < n) ++k;
  const int first = std::min(k, V::kBits + 3);  // the first pass's levels
  const int chunk = std::max(first, std::min(k, kChunkBits));
  const int64_t size = int64_t{1} << chunk;
  auto store = [x](int64_t j, typename V::F v) { V::Store(x + j, v); };
  for (int64_t off = 0; off < n; off += size) {
    const int r = first - V::kBits;
    auto pass = [&](auto to) {
      if (r == 3) FirstPass<V, 3>(x, off, size, in, to);
      if (r == 2) FirstPass<V, 2>(x, off, size, in, to);
      if (r == 1) FirstPass<V, 1>(x, off, size, in, to);
      if (r == 0) FirstPass<V, 0>(x, off, size, in, to);
    };
    if (first == k) {
      pass(out);
      continue;
    }
    pass(store);
    if (chunk == k) {
      Passes<V>(x, off, size, first, chunk, out);
    } else {
      Passes<V>(x, off, size, first, chunk, store);
    }
  }
  if (chunk < k) Passes<V>(x, 0, n, chunk, k, out);
}

// x <- H x in place.
template <typename V>
inline void Fwht(float* x, int64_t n) {
  Transform<V>(
      x, n, [x](int64_t j) { return V::Load(x + j); },
      [x](int64_t j, typename V::F v) { V::Store(x + j, v); });
}

// P's stored tensors, as both products read them. Real: float, or
// Eigen::half (version 3 of P: G and S as float16, each block's
// normalisation apart in block_scale).
template <typename Real>
struct Blocks {
  const int8_t* signs;
  const Real* gauss;
  const Real* row_scale;
  const float* block_scale;  // one per block, or none (folded in row_scale)
  int64_t length;            // L
  int64_t used;              // ceil(D / L): the blocks with kept rows

  // The scales S of block b's rows, as float32, into out (n rows).
  void Scales(int64_t b, int64_t n, float* out) const {
    const Real* s = row_scale + b * length;
    if (block_scale) {
      const float scale = block_scale[b];
      for (int64_t j = 0; j < n; ++j) out[j] = static_cast<float>(s[j]) * scale;
    } else {
      for (int64_t j = 0; j < n; ++j) out[j] = static_cast<float>(s[j]);
    }
  }

  // The scales S of block b's rows j to j + W - 1, as Scales makes them.
  template <typename V>
  typename V::F ScalesAt(int64_t b, int64_t j) const {
    const typename V::F s = V::Reals(row_scale + b * length + j);
    return block_scale ? V::Mul(s, V::Set(block_scale[b])) : s;
  }
};

// Outputs of at least this many rows (16 MiB of floats) are written past
// the caches.
constexpr int64_t kStreamFrom = int64_t{1} << 22;

// Floats aligned to a cache line, uninitialised.
class Workspace {
 public:
  explicit Workspace(int64_t n)
      : data_(static_cast<float*>(std::aligned_alloc(64, (4 * n + 63) / 64 * 64))) {}
  ~Workspace() { std::free(data_); }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  float* get() const { return data_; }

 private:
  float* data_;
};

// Block b of P v before the row scales S, as vectors: x = B v (v
// zero-padded to L), x = H x, then y = H (G Pi x), each vector of y handed
// to out(j, vector); x and y are workspaces of L numbers. V's W <= L.
template <typename V, typename Index, typename Real, typename Out>
inline void BlockForward(const Blocks<Real>& p, const Index* perm,
                         const float* v, int64_t dim, int64_t b, float* x,
                         float* y, Out out) {
  using F = typename V::F;
  constexpr int64_t W = int64_t{1} << V::kBits;
  const int64_t L = p.length;
  const int8_t* s = p.signs + b * L;
  const Index* pm = perm + b * L;
  const Real* g = p.gauss + b * L;
  const int64_t whole = dim - dim % W;
  Transform<V>(
      x, L,
      [&](int64_t j) -> F {
        if (j < whole) return V::Mul(V::Load(v + j), V::Signs(s + j));
        if (j >= dim) return V::Zero();
        alignas(64) float t[W];
        for (int64_t l = 0; l < W; ++l) t[l] = j + l < dim ? v[j + l] * s[j + l] : 0.0f;
        return V::Load(t);
      },
      [x](int64_t j, F a) { V::Store(x + j, a); });
  Transform<V>(
      y, L, [&](int64_t j) { return V::Mul(V::Gather(x, pm + j), V::Reals(g + j)); },
      out);
}

// The transpose of block b but for B: w = H Pi^T G H t, t given as vectors
// by in(j); t and w are workspaces of L numbers, w's vectors handed to
// out(j, vector). V's W <= L.
template <typename V, typename Index, typename Real, typename In, typename Out>
inline void BlockTranspose(const Blocks<Real>& p, const Index* perm, int64_t b,
                           float* t, float* w, In in, Out out) {
  using F = typename V::F;
  const int64_t L = p.length;
  const Index* pm = perm + b * L;
  const Real* g = p.gauss + b * L;
  Transform<V>(t, L, in, [&](int64_t j, F a) {
    V::Scatter(w, pm + j, V::Mul(a, V::Reals(g + j)));
  });
  Transform<V>(w, L, [w](int64_t j) { return V::Load(w + j); }, out);
}

// Reads and checks the inputs signs, permutation, gauss and row_scale; false
// (with the error set) when they do not fit.
template <typename Index, typename Real>
bool ReadBlocks(OpKernelContext* c, int64_t full_dim, Blocks<Real>* out,
                const Index** perm) {
  const Tensor *signs, *permutation, *gauss, *row_scale, *block_scale;
  for (auto [name, t] : {std::pair{"signs", &signs},
                         {"permutation", &permutation},
                         {"gauss", &gauss},
                         {"row_scale", &row_scale},
                         {"block_scale", &block_scale}}) {
    auto status = c->input(name, t);
    if (!status.ok()) {
      c->CtxFailure(status);
      return false;
    }
  }
  if (signs->dims() < 1) {
    c->CtxFailure(errors::InvalidArgument("signs should have a block axis"));
    return false;
  }
  const int64_t length = signs->dim_size(signs->dims() - 1);
  const int64_t n = signs->NumElements();
  if (length <= 0 || (length & (length - 1)) != 0) {
    c->CtxFailure(errors::InvalidArgument(
        "the block length should be a power of two, got ", length));
    return false;
  }
  if (permutation->NumElements() != n || gauss->NumElements() != n ||
      row_scale->NumElements() != n) {
    c->CtxFailure(errors::InvalidArgument(
        "signs, permutation, gauss and row_scale should have as many numbers "
        "each"));
    return false;
  }
  if (full_dim > n) {
    c->CtxFailure(errors::InvalidArgument("full_dim should be at most ", n,
                                          ", got ", full_dim));
    return false;
  }
  if (block_scale->NumElements() != 0 &&
      block_scale->NumElements() != n / length) {
    c->CtxFailure(errors::InvalidArgument(
        "block_scale should have one number per block or none"));
    return false;
  }
  out->signs = signs->flat<int8_t>().data();
  out->gauss = gauss->flat<Real>().data();
  out->row_scale = row_scale->flat<Real>().data();
  out->block_scale =
      block_scale->NumElements() ? block_scale->flat<float>().data() : nullptr;
  out->length = length;
  out->used = (full_dim + length - 1) / length;
  *perm = permutation->flat<Index>().data();
  return true;
}

// Consecutive pieces of the D rows: piece k holds rows start[k] to
// start[k + 1] - 1.
struct Pieces {
  std::vector<const float*> data;
  std::vector<int64_t> start{0};
  const float* scales = nullptr;  // one per piece, or none

  void Add(const float* d, int64_t n) {
    data.push_back(d);
    start.push_back(start.back() + n);
  }
  int64_t rows() const { return start.back(); }

  // fn(piece, first row, number of rows) over the segments of rows
  // [first, first + n), in order.
  template <typename Fn>
  void Segments(int64_t first, int64_t n, Fn fn) const {
    int64_t k = std::upper_bound(start.begin(), start.end(), first) -
                start.begin() - 1;
    for (int64_t row = first, end = first + n; row < end; ++k) {
      const int64_t stop = std::min(end, start[k + 1]);
      if (stop > row) fn(k, row, stop - row);
      row = stop;
    }
  }

  // The piece that holds all of rows [first, first + n), or -1 (none, or
  // no pieces).
  int64_t Within(int64_t first, int64_t n) const {
    if (data.empty()) return -1;
    const int64_t k =
        std::upper_bound(start.begin(), start.end(), first) - start.begin() - 1;
    return k < static_cast<int64_t>(data.size()) && start[k + 1] >= first + n ? k : -1;
  }

  // out[0 .. n) = rows [first, first + n), each times its piece's scale.
  void Read(int64_t first, int64_t n, float* out) const {
    Segments(first, n, [&](int64_t k, int64_t row, int64_t m) {
      const float* src = data[k] + (row - start[k]);
      float* dst = out + (row - first);
      if (scales) {
        const float s = scales[k];
        for (int64_t i = 0; i < m; ++i) dst[i] = src[i] * s;
      } else {
        std::copy(src, src + m, dst);
      }
    });
  }
};

// Sizes of pieces from an attribute, checked against D; false (with the
// error set) when they do not add up.
bool SizesPieces(OpKernelConstruction* c, const std::vector<int64_t>& sizes,
                 int64_t full_dim) {
  int64_t total = 0;
  for (int64_t n : sizes) total += n;
  if (!sizes.empty() && total != full_dim) {
    c->CtxFailure(errors::InvalidArgument("sizes add up to ", total,
                                          ", not full_dim (", full_dim, ")"));
    return false;
  }
  return true;
}

// Work of one block, for the thread pool's sharding.
inline int64_t BlockCost(int64_t length) {
  int64_t bits = 0;
  while ((int64_t{1} << bits) < length) ++bits;
  return 2 * length * (bits + 4);
}

// Runs fn(first shard, stop shard) over `shards` shards of the used blocks,
// each a few blocks, on TensorFlow's CPU thread pool.
template <typename Real, typename Fn>
void OverShards(OpKernelContext* c, const Blocks<Real>& p, int64_t shards,
                Fn fn) {
  c->device()->tensorflow_cpu_worker_threads()->workers->ParallelFor(
      shards, BlockCost(p.length) * (p.used / shards + 1), fn);
}

// A fixed number of shards (partial sums added up in a fixed order, so that
// the result does not depend on how the pool ran them).
template <typename Real>
int64_t ShardCount(OpKernelContext* c, const Blocks<Real>& p) {
  const int64_t threads =
      c->device()->tensorflow_cpu_worker_threads()->workers->NumThreads();
  return std::max<int64_t>(1, std::min<int64_t>(p.used, 4 * threads));
}

template <typename Index, typename Real>
class ForwardOp : public OpKernel {
 public:
  explicit ForwardOp(OpKernelConstruction* c) : OpKernel(c) {
    OP_REQUIRES_OK(c, c->GetAttr("full_dim", &full_dim_));
    OP_REQUIRES_OK(c, c->GetAttr("sizes", &sizes_));
    if (!SizesPieces(c, sizes_, full_dim_)) return;
  }

  void Compute(OpKernelContext* c) override {
    Blocks<Real> p;
    const Index* perm = nullptr;
    if (!ReadBlocks<Index, Real>(c, full_dim_, &p, &perm)) return;
    const Tensor& v = c->input(0);
    const Tensor& base = c->input(1);
    const Tensor& scales = c->input(2);
    const int64_t dim = v.NumElements();
    OP_REQUIRES(c, dim <= p.length,
                errors::InvalidArgument("v has ", dim, " numbers, more than a "
                                        "block (", p.length, ")"));
    const bool with_base = base.NumElements() > 0;
    OP_REQUIRES(c, !with_base || base.NumElements() == full_dim_,
                errors::InvalidArgument("base should have full_dim (",
                                        full_dim_, ") numbers or none"));
    const bool with_scales = scales.NumElements() > 0;
    OP_REQUIRES(c,
                !with_scales ||
                    scales.NumElements() == static_cast<int64_t>(sizes_.size()),
                errors::InvalidArgument("scales should have one number per "
                                        "piece of sizes (", sizes_.size(),
                                        ") or none"));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(c, c->allocate_output(0, TensorShape({full_dim_}), &out));
    const float* vv = v.flat<float>().data();
    const float* bs = with_base ? base.flat<float>().data() : nullptr;
    float* o = out->flat<float>().data();
    // Each row's scale: one per piece of `sizes`, or none.
    Pieces pieces;
    for (int64_t n : sizes_) pieces.Add(nullptr, n);
    const float* sc_piece = with_scales ? scales.flat<float>().data() : nullptr;
    const int64_t L = p.length;
    // An output larger than the caches is streamed past them (aligned as
    // TensorFlow allocates it): written without being read first.
    const bool stream = full_dim_ >= kStreamFrom &&
                        reinterpret_cast<std::uintptr_t>(o) % 64 == 0;
    // Blocks of width-V vectors (plain floats where a block is narrower).
    auto blocks = [&](auto simd, int64_t start, int64_t stop) {
      using V = decltype(simd);
      using F = typename V::F;
      Workspace x(L), y(L);
      std::vector<float> sc(L);
      for (int64_t b = start; b < stop; ++b) {
        const int64_t first = b * L;
        const int64_t kept = std::min(L, full_dim_ - first);
        const int64_t k = pieces.Within(first, L);
        if (kept == L && (!sc_piece || k >= 0)) {
          // Every row kept, one scale: u written as y's vectors come.
          const float piece = sc_piece ? sc_piece[k] : 1.0f;
          BlockForward<V>(p, perm, vv, dim, b, x.get(), y.get(), [&](int64_t j, F u) {
            u = V::Mul(u, p.template ScalesAt<V>(b, j));
            if (sc_piece) u = V::Mul(u, V::Set(piece));
            if (bs) u = V::Add(V::Load(bs + first + j), u);
            if (stream) {
              V::Stream(o + first + j, u);
            } else {
              V::Store(o + first + j, u);
            }
          });
          continue;
        }
        float* yy = y.get();
        BlockForward<V>(p, perm, vv, dim, b, x.get(), yy,
                        [yy](int64_t j, F u) { V::Store(yy + j, u); });
        p.Scales(b, kept, sc.data());
        for (int64_t j = 0; j < kept; ++j) yy[j] *= sc[j];  // u
        if (sc_piece) {
          pieces.Segments(first, kept, [&](int64_t k, int64_t row, int64_t m) {
            const float s = sc_piece[k];
            for (int64_t i = row - first; i < row - first + m; ++i) yy[i] *= s;
          });
        }
        if (bs) {
          for (int64_t j = 0; j < kept; ++j) o[first + j] = bs[first + j] + yy[j];
        } else {
          std::copy(yy, yy + kept, o + first);
        }
      }
      if (stream) StreamFence();
    };
    auto work = [&](int64_t start, int64_t stop) {
      if (L >= (int64_t{1} << Simd::kBits)) {
        blocks(Simd{}, start, stop);
      } else {
        blocks(Scalar{}, start, stop);
      }
    };
    c->device()->tensorflow_cpu_worker_threads()->workers->ParallelFor(
        p.used, BlockCost(L), work);
  }

 private:
  int64_t full_dim_;
  std::vector<int64_t> sizes_;
};

// The pieces of an op's "pieces" input, checked against D.
bool ReadPieces(OpKernelContext* c, int64_t full_dim, Pieces* out) {
  tensorflow::OpInputList list;
  auto status = c->input_list("pieces", &list);
  if (!status.ok()) {
    c->CtxFailure(status);
    return false;
  }
  for (int i = 0; i < list.size(); ++i) {
    out->Add(list[i].flat<float>().data(), list[i].NumElements());
  }
  if (out->rows() != full_dim) {
    c->CtxFailure(errors::InvalidArgument("the pieces have ", out->rows(),
                                          " numbers in all, not full_dim (",
                                          full_dim, ")"));
    return false;
  }
  return true;
}

// P^T (scales * g) for g given as pieces, and with v (theta_d) each piece's
// g_t . (P v)_t = sum over blocks b of (P_b^T g_t,b) . v, from the same
// transforms: a block inside one piece (nearly all) is transformed once, a
// block across pieces once per piece that it holds rows of.
template <typename Index, typename Real>
class TransposeOp : public OpKernel {
 public:
  explicit TransposeOp(OpKernelConstruction* c) : OpKernel(c) {
    OP_REQUIRES_OK(c, c->GetAttr("dim", &dim_));
    OP_REQUIRES_OK(c, c->GetAttr("full_dim", &full_dim_));
  }

  void Compute(OpKernelContext* c) override {
    Blocks<Real> p;
    const Index* perm = nullptr;
    if (!ReadBlocks<Index, Real>(c, full_dim_, &p, &perm)) return;
    Pieces g;
    if (!ReadPieces(c, full_dim_, &g)) return;
    const int64_t n = g.data.size();
    const Tensor *scales, *v;
    OP_REQUIRES_OK(c, c->input("scales", &scales));
    OP_REQUIRES_OK(c, c->input("v", &v));
    OP_REQUIRES(c, scales->NumElements() == 0 || scales->NumElements() == n,
                errors::InvalidArgument("scales should have one number per "
                                        "piece or none"));
    OP_REQUIRES(c, v->NumElements() == 0 || v->NumElements() == dim_,
                errors::InvalidArgument("v should have dim (", dim_,
                                        ") numbers or none"));
    const float* lam = scales->NumElements() ? scales->flat<float>().data() : nullptr;
    const float* vv = v->NumElements() ? v->flat<float>().data() : nullptr;
    const int64_t L = p.length;
    OP_REQUIRES(c, dim_ <= L,
                errors::InvalidArgument("dim should be at most ", L, ", got ",
                                        dim_));
    const int64_t shards = ShardCount(c, p);
    std::vector<float> acc(shards * L, 0.0f);
    std::vector<double> dots(shards * n, 0.0);
    g.scales = lam;
    // Blocks of width-V vectors (plain floats where a block is narrower).
    auto blocks = [&](auto simd, int64_t start, int64_t stop) {
      using V = decltype(simd);
      using F = typename V::F;
      Workspace tw(L), ww(L);
      float* t = tw.get();
      float* w = ww.get();
      std::vector<float> sc(L);
      auto from_t = [t](int64_t j) { return V::Load(t + j); };
      auto to_w = [w](int64_t j, F a) { V::Store(w + j, a); };
      for (int64_t k = start; k < stop; ++k) {
        float* a = acc.data() + k * L;
        double* d = dots.data() + k * n;
        // acc += B w, but for the rows past dim, which nothing reads.
        const auto add = [a, dim = dim_](const int8_t* s) {
          return [a, s, dim](int64_t j, F x) {
            if (j >= dim) return;
            V::Store(a + j, V::Add(V::Load(a + j), V::Mul(x, V::Signs(s + j))));
          };
        };
        for (int64_t b = k * p.used / shards; b < (k + 1) * p.used / shards;
             ++b) {
          const int64_t first = b * L;
          const int64_t kept = std::min(L, full_dim_ - first);
          const int8_t* s = p.signs + b * L;
          const int64_t i = g.Within(first, L);
          if (!vv && kept == L && i >= 0) {
            // Every row kept, in one piece: t read as the transform wants
            // it, acc += B w as w's vectors come.
            const float* gi = g.data[i] + (first - g.start[i]);
            const float li = lam ? lam[i] : 1.0f;
            BlockTranspose<V>(
                p, perm, b, t, w,
                [&](int64_t j) {
                  F x = V::Load(gi + j);
                  if (lam) x = V::Mul(x, V::Set(li));
                  return V::Mul(x, p.template ScalesAt<V>(b, j));
                },
                add(s));
            continue;
          }
          p.Scales(b, kept, sc.data());
          if (!vv) {  // one transform, each row scaled by its piece as read
            g.Read(first, kept, t);
            for (int64_t j = 0; j < kept; ++j) t[j] *= sc[j];
            std::fill(t + kept, t + L, 0.0f);
            BlockTranspose<V>(p, perm, b, t, w, from_t, add(s));
            continue;
          }
          // One transform per piece in the block, its rows alone.
          g.Segments(first, kept, [&](int64_t i, int64_t row, int64_t m) {
            std::fill(t, t + L, 0.0f);
            const float* gi = g.data[i] + (row - g.start[i]);
            const int64_t j0 = row - first;
            for (int64_t j = 0; j < m; ++j) t[j0 + j] = gi[j] * sc[j0 + j];
            BlockTranspose<V>(p, perm, b, t, w, from_t, to_w);
            double dot = 0.0;
            for (int64_t j = 0; j < dim_; ++j) {
              dot += static_cast<double>(w[j] * s[j]) * vv[j];
            }
            d[i] += dot;
            const float l = lam ? lam[i] : 1.0f;
            if (l == 1.0f) {
              for (int64_t j = 0; j < L; ++j) a[j] += w[j] * s[j];
            } else {
              for (int64_t j = 0; j < L; ++j) a[j] += l * (w[j] * s[j]);
            }
          });
        }
      }
    };
    OverShards(c, p, shards, [&](int64_t start, int64_t stop) {
      if (L >= (int64_t{1} << Simd::kBits)) {
        blocks(Simd{}, start, stop);
      } else {
        blocks(Scalar{}, start, stop);
      }
    });
    Tensor *out = nullptr, *out_dots = nullptr;
    OP_REQUIRES_OK(c, c->allocate_output(0, TensorShape({dim_}), &out));
    OP_REQUIRES_OK(c, c->allocate_output(1, TensorShape({n}), &out_dots));
    float* o = out->flat<float>().data();
    for (int64_t j = 0; j < dim_; ++j) {
      float total = 0.0f;
      for (int64_t k = 0; k < shards; ++k) total += acc[k * L + j];
      o[j] = total;
    }
    float* od = out_dots->flat<float>().data();
    for (int64_t i = 0; i < n; ++i) {
      double total = 0.0;
      for (int64_t k = 0; k < shards; ++k) total += dots[k * n + i];
      od[i] = static_cast<float>(total);
    }
  }

 private:
  int64_t dim_;
  int64_t full_dim_;
};

#define KERAS_IDIM_BLOCK_INPUTS              \
  Input("signs: int8")                       \
      .Input("permutation: Tindex")          \
      .Input("gauss: Treal")                 \
      .Input("row_scale: Treal")             \
      .Input("block_scale: float")           \
      .Attr("Tindex: {int16, int32}")        \
      .Attr("Treal: {float, half}")          \
      .Attr("full_dim: int >= 1")

REGISTER_OP("KerasIdimFastfoodForward")
    .Input("v: float")
    .Input("base: float")
    .Input("scales: float")
    .KERAS_IDIM_BLOCK_INPUTS
    .Attr("sizes: list(int) = []")
    .Output("out: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      int64_t full_dim;
      TF_RETURN_IF_ERROR(c->GetAttr("full_dim", &full_dim));
      c->set_output(0, c->Vector(full_dim));
      return absl::OkStatus();
    });

REGISTER_OP("KerasIdimFastfoodTranspose")
    .Input("pieces: N * float")
    .Input("scales: float")
    .Input("v: float")
    .KERAS_IDIM_BLOCK_INPUTS
    .Attr("N: int >= 1")
    .Attr("dim: int >= 1")
    .Output("out: float")
    .Output("dots: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      int64_t dim, n;
      TF_RETURN_IF_ERROR(c->GetAttr("dim", &dim));
      TF_RETURN_IF_ERROR(c->GetAttr("N", &n));
      c->set_output(0, c->Vector(dim));
      c->set_output(1, c->Vector(n));
      return absl::OkStatus();
    });

#define KERAS_IDIM_REGISTER(Op, Kernel, Index, Real)                  \
  REGISTER_KERNEL_BUILDER(Name(Op)                                    \
                              .Device(tensorflow::DEVICE_CPU)         \
                              .TypeConstraint<Index>("Tindex")        \
                              .TypeConstraint<Real>("Treal"),         \
                          Kernel<Index, Real>);

#define KERAS_IDIM_REGISTER_ALL(Op, Kernel)                           \
  KERAS_IDIM_REGISTER(Op, Kernel, int16_t, float)                     \
  KERAS_IDIM_REGISTER(Op, Kernel, int32_t, float)                     \
  KERAS_IDIM_REGISTER(Op, Kernel, int16_t, Eigen::half)               \
  KERAS_IDIM_REGISTER(Op, Kernel, int32_t, Eigen::half)

KERAS_IDIM_REGISTER_ALL("KerasIdimFastfoodForward", ForwardOp)
KERAS_IDIM_REGISTER_ALL("KerasIdimFastfoodTranspose", TransposeOp)

}  // namespace keras_idim
