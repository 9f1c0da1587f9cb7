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
// Forward, block b (rows b*L to b*L + L - 1 of P v):
//   x = B_b v (v zero-padded to L), x = H x, y_j = G_b,j x_perm_b(j),
//   y = H y, out_(b*L+j) = S_(b*L+j) y_j (+ base_(b*L+j)).
// Transpose, summed over the blocks:
//   t = S g_b, t = H t, t = G_b t, u_perm_b(j) = t_j, u = H u, acc += B_b u.
// H is the unnormalised Walsh-Hadamard transform (symmetric, entries +-1).

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
// 4), then one level if one is left. Measured here 2.5 to 3 times faster
// than one level a pass.
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

// The inputs that both products share: P's stored tensors.
struct Blocks {
  const int8_t* signs;
  const float* gauss;
  const float* row_scale;
  int64_t length;     // L
  int64_t stored;     // blocks stored (whole groups, padded)
  int64_t full_dim;   // D
  int64_t used;       // ceil(D / L): the blocks with kept rows
};

// Reads and checks inputs first to first + 3 (signs, permutation, gauss,
// row_scale); false (with the error set) when they do not fit.
template <typename Index>
bool ReadBlocks(OpKernelContext* c, int first, int64_t full_dim, Blocks* out,
                const Index** perm) {
  const Tensor& signs = c->input(first);
  const Tensor& permutation = c->input(first + 1);
  const Tensor& gauss = c->input(first + 2);
  const Tensor& row_scale = c->input(first + 3);
  if (signs.dims() < 1) {
    c->CtxFailure(errors::InvalidArgument("signs should have a block axis"));
    return false;
  }
  const int64_t length = signs.dim_size(signs.dims() - 1);
  const int64_t n = signs.NumElements();
  if (length <= 0 || (length & (length - 1)) != 0) {
    c->CtxFailure(errors::InvalidArgument(
        "the block length should be a power of two, got ", length));
    return false;
  }
  if (permutation.NumElements() != n || gauss.NumElements() != n ||
      row_scale.NumElements() != n) {
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
  out->signs = signs.flat<int8_t>().data();
  out->gauss = gauss.flat<float>().data();
  out->row_scale = row_scale.flat<float>().data();
  out->length = length;
  out->stored = n / length;
  out->full_dim = full_dim;
  out->used = (full_dim + length - 1) / length;
  *perm = permutation.flat<Index>().data();
  return true;
}

// Work of one block, for the thread pool's sharding.
inline int64_t BlockCost(int64_t length) {
  int64_t bits = 0;
  while ((int64_t{1} << bits) < length) ++bits;
  return 2 * length * (bits + 4);
}

template <typename Index>
class ForwardOp : public OpKernel {
 public:
  explicit ForwardOp(OpKernelConstruction* c) : OpKernel(c) {
    OP_REQUIRES_OK(c, c->GetAttr("full_dim", &full_dim_));
  }

  void Compute(OpKernelContext* c) override {
    Blocks p;
    const Index* perm = nullptr;
    if (!ReadBlocks<Index>(c, 2, full_dim_, &p, &perm)) return;
    const Tensor& v = c->input(0);
    const Tensor& base = c->input(1);
    const int64_t dim = v.NumElements();
    OP_REQUIRES(c, dim <= p.length,
                errors::InvalidArgument("v has ", dim, " numbers, more than a "
                                        "block (", p.length, ")"));
    const bool with_base = base.NumElements() > 0;
    OP_REQUIRES(c, !with_base || base.NumElements() == full_dim_,
                errors::InvalidArgument("base should have full_dim (",
                                        full_dim_, ") numbers or none"));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(c, c->allocate_output(0, TensorShape({full_dim_}), &out));
    const float* vv = v.flat<float>().data();
    const float* bs = with_base ? base.flat<float>().data() : nullptr;
    float* o = out->flat<float>().data();
    const int64_t L = p.length;
    auto work = [&](int64_t start, int64_t stop) {
      std::vector<float> x(L), y(L);
      for (int64_t b = start; b < stop; ++b) {
        const int8_t* s = p.signs + b * L;
        const Index* pm = perm + b * L;
        const float* g = p.gauss + b * L;
        for (int64_t j = 0; j < dim; ++j) x[j] = vv[j] * s[j];
        std::fill(x.begin() + dim, x.end(), 0.0f);
        Fwht(x.data(), L);
        for (int64_t j = 0; j < L; ++j) y[j] = x[pm[j]] * g[j];
        Fwht(y.data(), L);
        const int64_t first = b * L;
        const int64_t kept = std::min(L, full_dim_ - first);
        const float* sc = p.row_scale + first;
        if (with_base) {
          for (int64_t j = 0; j < kept; ++j) o[first + j] = bs[first + j] + y[j] * sc[j];
        } else {
          for (int64_t j = 0; j < kept; ++j) o[first + j] = y[j] * sc[j];
        }
      }
    };
    c->device()->tensorflow_cpu_worker_threads()->workers->ParallelFor(
        p.used, BlockCost(L), work);
  }

 private:
  int64_t full_dim_;
};

template <typename Index>
class TransposeOp : public OpKernel {
 public:
  explicit TransposeOp(OpKernelConstruction* c) : OpKernel(c) {
    OP_REQUIRES_OK(c, c->GetAttr("dim", &dim_));
    OP_REQUIRES_OK(c, c->GetAttr("full_dim", &full_dim_));
  }

  void Compute(OpKernelContext* c) override {
    const Tensor& g = c->input(0);
    Blocks p;
    const Index* perm = nullptr;
    if (!ReadBlocks<Index>(c, 1, full_dim_, &p, &perm)) return;
    // g may carry padding after its D rows: those rows are not read.
    OP_REQUIRES(c, g.NumElements() >= full_dim_,
                errors::InvalidArgument("g has ", g.NumElements(),
                                        " numbers, fewer than full_dim (",
                                        full_dim_, ")"));
    const int64_t rows = full_dim_;
    const int64_t L = p.length;
    OP_REQUIRES(c, dim_ > 0 && dim_ <= L,
                errors::InvalidArgument("dim should be in [1, ", L, "], got ",
                                        dim_));
    const float* gg = g.flat<float>().data();
    auto* workers = c->device()->tensorflow_cpu_worker_threads()->workers;
    // A partial sum per shard of blocks, added up in a fixed order, so that
    // the result does not depend on how the pool ran the shards.
    const int64_t shards = std::min<int64_t>(p.used, 4 * workers->NumThreads());
    std::vector<float> acc(shards * L, 0.0f);
    auto work = [&](int64_t start, int64_t stop) {
      std::vector<float> t(L), u(L);
      for (int64_t k = start; k < stop; ++k) {
        float* a = acc.data() + k * L;
        for (int64_t b = k * p.used / shards; b < (k + 1) * p.used / shards; ++b) {
          const int8_t* s = p.signs + b * L;
          const Index* pm = perm + b * L;
          const float* gs = p.gauss + b * L;
          const int64_t first = b * L;
          const int64_t kept = std::min(L, rows - first);
          const float* sc = p.row_scale + first;
          for (int64_t j = 0; j < kept; ++j) t[j] = gg[first + j] * sc[j];
          std::fill(t.begin() + kept, t.end(), 0.0f);
          Fwht(t.data(), L);
          for (int64_t j = 0; j < L; ++j) u[pm[j]] = t[j] * gs[j];
          Fwht(u.data(), L);
          for (int64_t j = 0; j < L; ++j) a[j] += u[j] * s[j];
        }
      }
    };
    workers->ParallelFor(shards, BlockCost(L) * (p.used / shards + 1), work);
    Tensor* out = nullptr;
    OP_REQUIRES_OK(c, c->allocate_output(0, TensorShape({dim_}), &out));
    float* o = out->flat<float>().data();
    for (int64_t j = 0; j < dim_; ++j) {
      float total = 0.0f;
      for (int64_t k = 0; k < shards; ++k) total += acc[k * L + j];
      o[j] = total;
    }
  }

 private:
  int64_t dim_;
  int64_t full_dim_;
};

REGISTER_OP("KerasIdimFastfoodForward")
    .Input("v: float")
    .Input("base: float")
    .Input("signs: int8")
    .Input("permutation: Tindex")
    .Input("gauss: float")
    .Input("row_scale: float")
    .Attr("Tindex: {int16, int32}")
    .Attr("full_dim: int >= 1")
    .Output("out: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      int64_t full_dim;
      TF_RETURN_IF_ERROR(c->GetAttr("full_dim", &full_dim));
      c->set_output(0, c->Vector(full_dim));
      return absl::OkStatus();
    });

REGISTER_OP("KerasIdimFastfoodTranspose")
    .Input("g: float")
    .Input("signs: int8")
    .Input("permutation: Tindex")
    .Input("gauss: float")
    .Input("row_scale: float")
    .Attr("Tindex: {int16, int32}")
    .Attr("full_dim: int >= 1")
    .Attr("dim: int >= 1")
    .Output("out: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      int64_t dim;
      TF_RETURN_IF_ERROR(c->GetAttr("dim", &dim));
      c->set_output(0, c->Vector(dim));
      return absl::OkStatus();
    });

#define KERAS_IDIM_REGISTER(Index)                                       \
  REGISTER_KERNEL_BUILDER(Name("KerasIdimFastfoodForward")               \
                              .Device(tensorflow::DEVICE_CPU)            \
                              .TypeConstraint<Index>("Tindex"),          \
                          ForwardOp<Index>);                             \
  REGISTER_KERNEL_BUILDER(Name("KerasIdimFastfoodTranspose")             \
                              .Device(tensorflow::DEVICE_CPU)            \
                              .TypeConstraint<Index>("Tindex"),          \
                          TransposeOp<Index>);

KERAS_IDIM_REGISTER(int16_t)
KERAS_IDIM_REGISTER(int32_t)

}  // namespace keras_idim
