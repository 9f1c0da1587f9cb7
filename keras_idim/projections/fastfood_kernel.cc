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

#include <algorithm>
#include <cstdint>
#include <vector>

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

// x <- H x in place, for x of length n = 2^k: the first three levels as
// 8-point transforms of consecutive numbers, then two levels a pass (radix
// 4), then one level if one is left: fewer passes over x than one level
// a pass.
inline void Butterflies(float* x, int64_t n, int64_t h) {
  for (int64_t i = 0; i < n; i += h << 1) {
    float* a = x + i;
    float* b = a + h;
    for (int64_t j = 0; j < h; ++j) {
      const float p = a[j], q = b[j];
      a[j] = p + q;
      b[j] = p - q;
    }
  }
}

inline void Fwht(float* x, int64_t n) {
  int64_t h = 1;
  if (n >= 8) {
    for (int64_t i = 0; i < n; i += 8) {
      float* y = x + i;
      const float a0 = y[0] + y[1], a1 = y[0] - y[1], a2 = y[2] + y[3],
                  a3 = y[2] - y[3], a4 = y[4] + y[5], a5 = y[4] - y[5],
                  a6 = y[6] + y[7], a7 = y[6] - y[7];
      const float b0 = a0 + a2, b1 = a1 + a3, b2 = a0 - a2, b3 = a1 - a3,
                  b4 = a4 + a6, b5 = a5 + a7, b6 = a4 - a6, b7 = a5 - a7;
      y[0] = b0 + b4;
      y[1] = b1 + b5;
      y[2] = b2 + b6;
      y[3] = b3 + b7;
      y[4] = b0 - b4;
      y[5] = b1 - b5;
      y[6] = b2 - b6;
      y[7] = b3 - b7;
    }
    h = 8;
  }
  for (; 4 * h <= n; h <<= 2) {
    for (int64_t i = 0; i < n; i += h << 2) {
      float* a = x + i;
      float* b = a + h;
      float* c = b + h;
      float* d = c + h;
      for (int64_t j = 0; j < h; ++j) {
        const float p = a[j] + b[j], q = a[j] - b[j];
        const float r = c[j] + d[j], s = c[j] - d[j];
        a[j] = p + r;
        b[j] = q + s;
        c[j] = p - r;
        d[j] = q - s;
      }
    }
  }
  for (; h < n; h <<= 1) Butterflies(x, n, h);
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
};

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

// y = the rows of block b of P v, before the row scales S (L numbers); x is
// a workspace of L numbers.
template <typename Index, typename Real>
inline void BlockForward(const Blocks<Real>& p, const Index* perm,
                         const float* v, int64_t dim, int64_t b, float* x,
                         float* y) {
  const int64_t L = p.length;
  const int8_t* s = p.signs + b * L;
  const Index* pm = perm + b * L;
  const Real* g = p.gauss + b * L;
  for (int64_t j = 0; j < dim; ++j) x[j] = v[j] * s[j];
  std::fill(x + dim, x + L, 0.0f);
  Fwht(x, L);
  for (int64_t j = 0; j < L; ++j) y[j] = x[pm[j]] * static_cast<float>(g[j]);
  Fwht(y, L);
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
    auto work = [&](int64_t start, int64_t stop) {
      std::vector<float> x(L), y(L), sc(L);
      for (int64_t b = start; b < stop; ++b) {
        BlockForward(p, perm, vv, dim, b, x.data(), y.data());
        const int64_t first = b * L;
        const int64_t kept = std::min(L, full_dim_ - first);
        p.Scales(b, kept, sc.data());
        for (int64_t j = 0; j < kept; ++j) y[j] *= sc[j];  // u
        if (sc_piece) {
          pieces.Segments(first, kept, [&](int64_t k, int64_t row, int64_t m) {
            const float s = sc_piece[k];
            for (int64_t i = row - first; i < row - first + m; ++i) y[i] *= s;
          });
        }
        if (bs) {
          for (int64_t j = 0; j < kept; ++j) o[first + j] = bs[first + j] + y[j];
        } else {
          std::copy(y.begin(), y.begin() + kept, o + first);
        }
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

// The transpose of block b on t (its L rows, S applied; overwritten):
// w = B H Pi^T G H t, added to a times lam; returns w[:dim] . v when v is
// given (0 otherwise).
template <typename Index, typename Real>
inline double BlockTranspose(const Blocks<Real>& p, const Index* perm,
                             int64_t b, float* t, float* w, float lam,
                             const float* v, int64_t dim, float* a) {
  const int64_t L = p.length;
  const int8_t* s = p.signs + b * L;
  const Index* pm = perm + b * L;
  const Real* gs = p.gauss + b * L;
  Fwht(t, L);
  for (int64_t j = 0; j < L; ++j) w[pm[j]] = t[j] * static_cast<float>(gs[j]);
  Fwht(w, L);
  double dot = 0.0;
  if (v) {
    for (int64_t j = 0; j < dim; ++j) dot += static_cast<double>(w[j] * s[j]) * v[j];
  }
  if (lam == 1.0f) {
    for (int64_t j = 0; j < L; ++j) a[j] += w[j] * s[j];
  } else {
    for (int64_t j = 0; j < L; ++j) a[j] += lam * (w[j] * s[j]);
  }
  return dot;
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
    OverShards(c, p, shards, [&](int64_t start, int64_t stop) {
      std::vector<float> t(L), w(L), sc(L);
      for (int64_t k = start; k < stop; ++k) {
        float* a = acc.data() + k * L;
        double* d = dots.data() + k * n;
        for (int64_t b = k * p.used / shards; b < (k + 1) * p.used / shards;
             ++b) {
          const int64_t first = b * L;
          const int64_t kept = std::min(L, full_dim_ - first);
          p.Scales(b, kept, sc.data());
          if (!vv) {  // one transform, each row scaled by its piece as read
            g.Read(first, kept, t.data());
            for (int64_t j = 0; j < kept; ++j) t[j] *= sc[j];
            std::fill(t.begin() + kept, t.end(), 0.0f);
            BlockTranspose(p, perm, b, t.data(), w.data(), 1.0f, nullptr, 0, a);
            continue;
          }
          // One transform per piece in the block, its rows alone.
          g.Segments(first, kept, [&](int64_t i, int64_t row, int64_t m) {
            std::fill(t.begin(), t.end(), 0.0f);
            const float* gi = g.data[i] + (row - g.start[i]);
            const int64_t j0 = row - first;
            for (int64_t j = 0; j < m; ++j) t[j0 + j] = gi[j] * sc[j0 + j];
            d[i] += BlockTranspose(p, perm, b, t.data(), w.data(),
                                   lam ? lam[i] : 1.0f, vv, dim_, a);
          });
        }
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
