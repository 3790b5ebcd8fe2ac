// The time loops of tfchar's fused CPU layers (tfchar/fused.py) as TensorFlow CPU kernels.
//
// Each op is one whole-sequence recurrence, forward or backward, of the TensorFlow loops in fused.py
// (`_lstm_forward`, `_lstm_backward`, ...): the same saved backward factors, batch-major, plus the bias
// gradients (backward) and the states each step started from (forward). fused.py's `tf.custom_gradient`
// wrappers call these, or its own loops when no compiler is available. What makes them fast on a CPU
// (torch-rnn's reasoning, for TensorFlow):
//
//   * a step costs one small GEMM against a recurrent kernel packed once per call (PackedProduct) plus
//     one pass of vectorised element-wise work on whole [rows, H] blocks, with no per-op dispatch;
//   * the batch rows are independent for the whole sequence, so they are split across the intra-op
//     threads once per call (rows [r0, r1) per thread) and no thread waits for another inside the loop.
//
// Shapes: B batch, T time, H hidden units, G gate width (4H LSTM, 3H GRU, H RNN); tensors are row-major
// and batch-major ([B, T, ...]) as Keras lays sequences out. Built on first use by tfchar/native.py.

#include <algorithm>
#include <functional>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/platform/blocking_counter.h"
#include "tensorflow/core/platform/threadpool.h"

namespace {

using tensorflow::DEVICE_CPU;
using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixMap = Eigen::Map<Matrix>;
using ArrayMap = Eigen::Map<Eigen::ArrayXf>;

using Strided = Eigen::OuterStride<>;
using RowsMap = Eigen::Map<const Matrix, 0, Strided>;  // rows [r0, r1) of one time step of a [B, T, W] tensor

// Threads for `rows` batch rows: at most the op's CPU worker threads, at least 8 rows each, so tiny batches
// (sampling, tests) stay on the calling thread.
int64_t NumThreads(OpKernelContext* ctx, int64_t rows) {
  constexpr int64_t min_rows = 8;
  return std::max<int64_t>(
      1, std::min<int64_t>(ctx->device()->tensorflow_cpu_worker_threads()->num_threads, rows / min_rows));
}

// Run fn(k, r0, r1) for k < threads on disjoint row ranges covering [0, rows): range 0 on the calling thread,
// the others on TensorFlow's intra-op thread pool (its threads, not extra ones competing with them).
void ForEachRowRange(OpKernelContext* ctx, int64_t threads, int64_t rows,
                     const std::function<void(int64_t, int64_t, int64_t)>& fn) {
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  if (pool->CurrentThreadId() >= 0) threads = 1;  // already on a pool thread: waiting on the pool could deadlock
  tensorflow::BlockingCounter done(threads - 1);
  for (int64_t k = 1; k < threads; ++k) {
    pool->Schedule([&fn, &done, k, threads, rows] {
      fn(k, rows * k / threads, rows * (k + 1) / threads);
      done.DecrementCount();
    });
  }
  fn(0, 0, rows / threads);
  done.Wait();
}

// Sequences are batch-major [B, T, W], as Keras lays them out, so the layers never transpose: row b at
// step t starts at (b * T + t) * W, and a thread's rows at one step are a strided block (RowsMap).
float* At(Tensor* x, int64_t b, int64_t t, int64_t T, int64_t W) { return x->flat<float>().data() + (b * T + t) * W; }
const float* At(const Tensor& x, int64_t b, int64_t t, int64_t T, int64_t W) {
  return x.flat<float>().data() + (b * T + t) * W;
}
RowsMap Rows(const float* first, int64_t n, int64_t W, int64_t T) { return RowsMap(first, n, W, Strided(T * W)); }

// The same blocks as arrays, for the element-wise work of a step: whole [n, W] blocks at once, written
// into scratch arrays allocated once per call (a step allocates nothing).
using Array = Eigen::Array<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using InArray = Eigen::Map<const Array, 0, Strided>;
using OutArray = Eigen::Map<Array, 0, Strided>;
InArray In(const float* first, int64_t n, int64_t W, int64_t stride) { return InArray(first, n, W, Strided(stride)); }
OutArray Out(float* first, int64_t n, int64_t W, int64_t stride) { return OutArray(first, n, W, Strided(stride)); }

// sigmoid(x) = (tanh(x / 2) + 1) / 2: Eigen's vectorised tanh is faster than its logistic, as accurate.
template <typename X>
auto Sigmoid(const X& x) {
  return (x * 0.5f).tanh() * 0.5f + 0.5f;
}

// Y[n, P] += X[n, D] @ M for many X and one M, with M packed once: the recurrent product of every step.
// Eigen's `Y.noalias() += X * M` re-packs M into its GEMM kernel's panel layout on every call, which for
// a step's small X costs about as much as the multiply itself (U is 4 MB at H = 512). This packs M^T once
// (Eigen computes row-major products as Y^T = M^T X^T) and runs Eigen's own packing and GEBP kernel.
// M^T is read through `mt` with storage order `MtOrder` and stride `mt_stride`.
template <int MtOrder>
class PackedProduct {
  using Index = Eigen::Index;
  using Traits = Eigen::internal::gebp_traits<float, float>;
  using MtMapper = Eigen::internal::const_blas_data_mapper<float, Index, MtOrder>;
  using XtMapper = Eigen::internal::const_blas_data_mapper<float, Index, Eigen::ColMajor>;
  using YtMapper = Eigen::internal::blas_data_mapper<float, Index, Eigen::ColMajor, Eigen::Unaligned, 1>;

 public:
  PackedProduct(const float* mt, Index mt_stride, Index P, Index D) : P_(P), D_(D), packed_(P * D + 64) {
    Eigen::internal::gemm_pack_lhs<float, Index, MtMapper, Traits::mr, Traits::LhsProgress,
                                   typename Traits::LhsPacket4Packing, MtOrder>
        pack;
    pack(packed_.data(), MtMapper(mt, mt_stride), D, P);
  }

  // Scratch space for Run with up to n rows (one per thread).
  Eigen::VectorXf Scratch(Index n) const { return Eigen::VectorXf(D_ * (n + 2 * Traits::nr)); }

  // Y += X @ M for n rows: X's rows x_stride floats apart, Y's y_stride apart.
  void Run(const float* x, Index x_stride, Index n, float* y, Index y_stride, Eigen::VectorXf& scratch) const {
    Eigen::internal::gemm_pack_rhs<float, Index, XtMapper, Traits::nr, Eigen::ColMajor> pack_x;
    pack_x(scratch.data(), XtMapper(x, x_stride), D_, n);
    Eigen::internal::gebp_kernel<float, float, Index, YtMapper, Traits::mr, Traits::nr, false, false> gebp;
    gebp(YtMapper(y, y_stride, 1), packed_.data(), scratch.data(), P_, D_, n, 1.0f);
  }

 private:
  Index P_, D_;
  Eigen::VectorXf packed_;
};

// h @ U for U [H, G] row-major: M^T = U^T is column-major [G, H] with stride G.
PackedProduct<Eigen::ColMajor> TimesU(const Tensor& u) {
  return PackedProduct<Eigen::ColMajor>(u.flat<float>().data(), u.dim_size(1), u.dim_size(1), u.dim_size(0));
}
// d @ U^T: M^T = U is row-major [H, G] with stride G.
PackedProduct<Eigen::RowMajor> TimesUt(const Tensor& u) {
  return PackedProduct<Eigen::RowMajor>(u.flat<float>().data(), u.dim_size(1), u.dim_size(0), u.dim_size(1));
}

// After step t of rows [r0, r0 + n): hprev[:, t] = the state the step started from (h0 or hs[:, t - 1]).
// The backward's d(h @ U) = hprev^T @ dz is then one matmul, without a shifted copy of hs.
void KeepPrevious(const Tensor* hs, const Tensor& h0, Tensor* hprev, int64_t r0, int64_t n, int64_t t) {
  const int64_t T = hs->dim_size(1), H = hs->dim_size(2);
  const InArray from = t == 0 ? In(h0.flat<float>().data() + r0 * H, n, H, H) : In(At(*hs, r0, t - 1, T, H), n, H, T * H);
  Out(At(hprev, r0, t, T, H), n, H, T * H) = from;
}

// The sum of per-thread partial bias gradients, written to `out`.
void SumParts(const std::vector<Eigen::ArrayXf>& parts, Tensor* out) {
  ArrayMap total(out->flat<float>().data(), out->NumElements());
  total.setZero();
  for (const auto& p : parts) total += p;
}

// Shape functions: sequence outputs are [B, T, width].
ShapeHandle Seq(InferenceContext* c, DimensionHandle b, DimensionHandle t, DimensionHandle w) {
  return c->MakeShape({b, t, w});
}

// --------------------------------------------------------------------------------------------------------
// LSTM. Keras gate order (i, f, g, o): z = xw[t] + h @ U; c' = f * c + i * g; h' = o * tanh(c').
// Saved backward factors P [B, T, 6H] (fused._lstm_derivatives):
//   [g i (1-i), c f (1-f), i (1-g^2), tanh(c') o (1-o), o (1-tanh(c')^2), f].

REGISTER_OP("TfcharLstmForward")
    .Input("xw: float")  // [B, T, 4H] = x @ W + b
    .Input("h0: float")  // [B, H]
    .Input("c0: float")  // [B, H]
    .Input("u: float")   // [H, 4H]
    .Attr("save: bool")
    .Output("hs: float")      // [B, T, H]
    .Output("c_last: float")  // [B, H]
    .Output("saved: float")   // save ? P [B, T, 6H] : cell states [B, T, H]
    .Output("hprev: float")   // [B, T, H] the state before each step: [h0, h_1 .. h_{T-1}]
    .SetShapeFn([](InferenceContext* c) {
      bool save;
      TF_RETURN_IF_ERROR(c->GetAttr("save", &save));
      DimensionHandle b = c->Dim(c->input(1), 0), t = c->Dim(c->input(0), 1), h = c->Dim(c->input(1), 1);
      DimensionHandle six_h;
      TF_RETURN_IF_ERROR(c->Multiply(h, 6, &six_h));
      c->set_output(0, Seq(c, b, t, h));
      c->set_output(1, c->input(1));
      c->set_output(2, Seq(c, b, t, save ? six_h : h));
      c->set_output(3, Seq(c, b, t, h));
      return absl::OkStatus();
    });

class LstmForward : public OpKernel {
 public:
  explicit LstmForward(OpKernelConstruction* ctx) : OpKernel(ctx) { OP_REQUIRES_OK(ctx, ctx->GetAttr("save", &save_)); }

  void Compute(OpKernelContext* ctx) override {
    const Tensor &xw = ctx->input(0), &h0 = ctx->input(1), &c0 = ctx->input(2), &u = ctx->input(3);
    const int64_t B = xw.dim_size(0), T = xw.dim_size(1), H = u.dim_size(0), G = 4 * H;
    OP_REQUIRES(ctx, xw.dims() == 3 && xw.dim_size(2) == G && u.dim_size(1) == G && h0.dim_size(0) == B &&
                         h0.dim_size(1) == H && c0.shape() == h0.shape(),
                tensorflow::errors::InvalidArgument("TfcharLstmForward: inconsistent shapes"));
    const int64_t S = save_ ? 6 * H : H;
    Tensor *hs, *c_last, *saved, *hprev;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({B, T, H}), &hs));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({B, T, H}), &hprev));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({B, H}), &c_last));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({B, T, S}), &saved));
    const auto U = TimesU(u);

    ForEachRowRange(ctx, NumThreads(ctx, B), B, [&](int64_t, int64_t r0, int64_t r1) {
      const int64_t n = r1 - r0;
      if (n == 0) return;
      Matrix z(n, G);
      Eigen::VectorXf scratch = U.Scratch(n);
      Array i(n, H), f(n, H), g(n, H), o(n, H), c(n, H), c_prev(n, H), tc(n, H);
      c = In(c0.flat<float>().data() + r0 * H, n, H, H);
      for (int64_t t = 0; t < T; ++t) {
        z = Rows(At(xw, r0, t, T, G), n, G, T);
        if (t == 0) {
          U.Run(h0.flat<float>().data() + r0 * H, H, n, z.data(), G, scratch);  // z += h @ U, [n, 4H]
        } else {
          U.Run(At(*hs, r0, t - 1, T, H), T * H, n, z.data(), G, scratch);
        }
        const auto za = z.array();
        i = Sigmoid(za.leftCols(H));
        f = Sigmoid(za.middleCols(H, H));
        g = za.middleCols(2 * H, H).tanh();
        o = Sigmoid(za.rightCols(H));
        c_prev = c;
        c = f * c_prev + i * g;
        tc = c.tanh();
        Out(At(hs, r0, t, T, H), n, H, T * H) = o * tc;
        KeepPrevious(hs, h0, hprev, r0, n, t);
        OutArray P = Out(At(saved, r0, t, T, S), n, S, T * S);
        if (save_) {
          P.leftCols(H) = g * i * (1 - i);
          P.middleCols(H, H) = c_prev * f * (1 - f);
          P.middleCols(2 * H, H) = i * (1 - g * g);
          P.middleCols(3 * H, H) = tc * o * (1 - o);
          P.middleCols(4 * H, H) = o * (1 - tc * tc);
          P.rightCols(H) = f;
        } else {
          P = c;
        }
      }
      Out(c_last->flat<float>().data() + r0 * H, n, H, H) = c;
    });
  }

 private:
  bool save_;
};
REGISTER_KERNEL_BUILDER(Name("TfcharLstmForward").Device(DEVICE_CPU), LstmForward);

REGISTER_OP("TfcharLstmBackward")
    .Input("dhs: float")      // [B, T, H] gradient of the outputs
    .Input("dc_last: float")  // [B, H]
    .Input("ps: float")       // [B, T, 6H]
    .Input("u: float")        // [H, 4H]
    .Output("dz: float")      // [B, T, 4H] gradient of the pre-activations (= of xw)
    .Output("db: float")      // [4H] its sum over B and T (the bias gradient)
    .Output("dh0: float")     // [B, H]
    .Output("dc0: float")     // [B, H]
    .SetShapeFn([](InferenceContext* c) {
      DimensionHandle g = c->Dim(c->input(3), 1);
      c->set_output(0, Seq(c, c->Dim(c->input(0), 0), c->Dim(c->input(0), 1), g));
      c->set_output(1, c->MakeShape({g}));
      c->set_output(2, c->input(1));
      c->set_output(3, c->input(1));
      return absl::OkStatus();
    });

class LstmBackward : public OpKernel {
 public:
  explicit LstmBackward(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor &dhs = ctx->input(0), &dc_last = ctx->input(1), &ps = ctx->input(2), &u = ctx->input(3);
    const int64_t B = dhs.dim_size(0), T = dhs.dim_size(1), H = u.dim_size(0), G = 4 * H;
    OP_REQUIRES(ctx, dhs.dims() == 3 && dhs.dim_size(2) == H && u.dim_size(1) == G &&
                         ps.shape() == TensorShape({B, T, 6 * H}) && dc_last.shape() == TensorShape({B, H}),
                tensorflow::errors::InvalidArgument("TfcharLstmBackward: inconsistent shapes"));
    Tensor *dz, *db, *dh0, *dc0;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({B, T, G}), &dz));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({G}), &db));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({B, H}), &dh0));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({B, H}), &dc0));
    const auto Ut = TimesUt(u);
    const int64_t threads = NumThreads(ctx, B);
    std::vector<Eigen::ArrayXf> db_parts(threads, Eigen::ArrayXf::Zero(G));

    ForEachRowRange(ctx, threads, B, [&](int64_t k, int64_t r0, int64_t r1) {
      const int64_t n = r1 - r0;
      if (n == 0) return;
      Matrix dh_next = Matrix::Zero(n, H);
      Eigen::VectorXf scratch = Ut.Scratch(n);
      Array dh(n, H), dc(n, H);
      dc = In(dc_last.flat<float>().data() + r0 * H, n, H, H);
      for (int64_t t = T - 1; t >= 0; --t) {
        const InArray P = In(At(ps, r0, t, T, 6 * H), n, 6 * H, T * 6 * H);
        dh = In(At(dhs, r0, t, T, H), n, H, T * H) + dh_next.array();
        dc += dh * P.middleCols(4 * H, H);
        OutArray D = Out(At(dz, r0, t, T, G), n, G, T * G);
        D.leftCols(H) = dc * P.leftCols(H);
        D.middleCols(H, H) = dc * P.middleCols(H, H);
        D.middleCols(2 * H, H) = dc * P.middleCols(2 * H, H);
        D.rightCols(H) = dh * P.middleCols(3 * H, H);
        db_parts[k] += D.colwise().sum().transpose();
        dc *= P.rightCols(H);
        dh_next.setZero();
        Ut.Run(At(*dz, r0, t, T, G), T * G, n, dh_next.data(), H, scratch);  // dz @ U^T, [n, H]
      }
      MatrixMap(dh0->flat<float>().data() + r0 * H, n, H) = dh_next;
      Out(dc0->flat<float>().data() + r0 * H, n, H, H) = dc;
    });
    SumParts(db_parts, db);
  }
};
REGISTER_KERNEL_BUILDER(Name("TfcharLstmBackward").Device(DEVICE_CPU), LstmBackward);

// --------------------------------------------------------------------------------------------------------
// GRU, reset_after. xw = [xz, xr, xn]; rec = h @ U + b_rec = [rz, rr, rn];
// z = sigmoid(xz + rz), r = sigmoid(xr + rr), n = tanh(xn + r * rn), h' = n + z * (h - n).
// Saved factors P [B, T, 5H] (fused._gru_derivatives), with dn = (1 - z)(1 - n^2):
//   [(h - n) z (1 - z), dn rn r (1 - r), dn r, z, dn].

REGISTER_OP("TfcharGruForward")
    .Input("xw: float")     // [B, T, 3H] = x @ W + b_in
    .Input("h0: float")     // [B, H]
    .Input("u: float")      // [H, 3H]
    .Input("b_rec: float")  // [3H]
    .Attr("save: bool")
    .Output("hs: float")  // [B, T, H]
    .Output("ps: float")  // save ? [B, T, 5H] : [0]
    .Output("hprev: float")  // [B, T, H] the state before each step: [h0, h_1 .. h_{T-1}]
    .SetShapeFn([](InferenceContext* c) {
      bool save;
      TF_RETURN_IF_ERROR(c->GetAttr("save", &save));
      DimensionHandle b = c->Dim(c->input(1), 0), t = c->Dim(c->input(0), 1), h = c->Dim(c->input(1), 1);
      DimensionHandle five_h;
      TF_RETURN_IF_ERROR(c->Multiply(h, 5, &five_h));
      c->set_output(0, Seq(c, b, t, h));
      c->set_output(1, save ? Seq(c, b, t, five_h) : c->MakeShape({0}));
      c->set_output(2, Seq(c, b, t, h));
      return absl::OkStatus();
    });

class GruForward : public OpKernel {
 public:
  explicit GruForward(OpKernelConstruction* ctx) : OpKernel(ctx) { OP_REQUIRES_OK(ctx, ctx->GetAttr("save", &save_)); }

  void Compute(OpKernelContext* ctx) override {
    const Tensor &xw = ctx->input(0), &h0 = ctx->input(1), &u = ctx->input(2), &b_rec = ctx->input(3);
    const int64_t B = xw.dim_size(0), T = xw.dim_size(1), H = u.dim_size(0), G = 3 * H;
    OP_REQUIRES(ctx, xw.dims() == 3 && xw.dim_size(2) == G && u.dim_size(1) == G && h0.dim_size(0) == B &&
                         h0.dim_size(1) == H && b_rec.NumElements() == G,
                tensorflow::errors::InvalidArgument("TfcharGruForward: inconsistent shapes"));
    Tensor *hs, *ps, *hprev;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({B, T, H}), &hs));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({B, T, H}), &hprev));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, save_ ? TensorShape({B, T, 5 * H}) : TensorShape({0}), &ps));
    const auto U = TimesU(u);
    const Eigen::Map<const Eigen::RowVectorXf> bias(b_rec.flat<float>().data(), G);

    ForEachRowRange(ctx, NumThreads(ctx, B), B, [&](int64_t, int64_t r0, int64_t r1) {
      const int64_t n = r1 - r0;
      if (n == 0) return;
      Matrix rec(n, G);
      Eigen::VectorXf scratch = U.Scratch(n);
      Array z(n, H), r(n, H), nn(n, H), dn(n, H);
      for (int64_t t = 0; t < T; ++t) {
        const float* h_prev = t == 0 ? h0.flat<float>().data() + r0 * H : At(*hs, r0, t - 1, T, H);
        const int64_t h_stride = t == 0 ? H : T * H;
        for (int64_t r = 0; r < n; ++r) rec.row(r) = bias;  // (replicate() is not vectorised)
        U.Run(h_prev, h_stride, n, rec.data(), G, scratch);  // rec = h @ U + b_rec, [n, 3H]
        const auto R = rec.array();
        const InArray X = In(At(xw, r0, t, T, G), n, G, T * G), h = In(h_prev, n, H, h_stride);
        z = Sigmoid(X.leftCols(H) + R.leftCols(H));
        r = Sigmoid(X.middleCols(H, H) + R.middleCols(H, H));
        nn = (X.rightCols(H) + r * R.rightCols(H)).tanh();
        Out(At(hs, r0, t, T, H), n, H, T * H) = nn + z * (h - nn);
        KeepPrevious(hs, h0, hprev, r0, n, t);
        if (save_) {
          OutArray P = Out(At(ps, r0, t, T, 5 * H), n, 5 * H, T * 5 * H);
          dn = (1 - z) * (1 - nn * nn);
          P.leftCols(H) = (h - nn) * z * (1 - z);
          P.middleCols(H, H) = dn * R.rightCols(H) * r * (1 - r);
          P.middleCols(2 * H, H) = dn * r;
          P.middleCols(3 * H, H) = z;
          P.rightCols(H) = dn;
        }
      }
    });
  }

 private:
  bool save_;
};
REGISTER_KERNEL_BUILDER(Name("TfcharGruForward").Device(DEVICE_CPU), GruForward);

REGISTER_OP("TfcharGruBackward")
    .Input("dhs: float")  // [B, T, H]
    .Input("ps: float")   // [B, T, 5H]
    .Input("u: float")    // [H, 3H]
    .Output("dxw: float")     // [B, T, 3H] gradient of xw
    .Output("drec: float")    // [B, T, 3H] gradient of h @ U + b_rec
    .Output("db_in: float")   // [3H] sum of dxw over B and T
    .Output("db_rec: float")  // [3H] sum of drec over B and T
    .Output("dh0: float")     // [B, H]
    .SetShapeFn([](InferenceContext* c) {
      DimensionHandle g = c->Dim(c->input(2), 1);
      ShapeHandle seq = Seq(c, c->Dim(c->input(0), 0), c->Dim(c->input(0), 1), g);
      c->set_output(0, seq);
      c->set_output(1, seq);
      c->set_output(2, c->MakeShape({g}));
      c->set_output(3, c->MakeShape({g}));
      c->set_output(4, c->MakeShape({c->Dim(c->input(0), 0), c->Dim(c->input(0), 2)}));
      return absl::OkStatus();
    });

class GruBackward : public OpKernel {
 public:
  explicit GruBackward(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor &dhs = ctx->input(0), &ps = ctx->input(1), &u = ctx->input(2);
    const int64_t B = dhs.dim_size(0), T = dhs.dim_size(1), H = u.dim_size(0), G = 3 * H;
    OP_REQUIRES(ctx, dhs.dims() == 3 && dhs.dim_size(2) == H && u.dim_size(1) == G &&
                         ps.shape() == TensorShape({B, T, 5 * H}),
                tensorflow::errors::InvalidArgument("TfcharGruBackward: inconsistent shapes"));
    Tensor *dxw, *drec, *db_in, *db_rec, *dh0;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({B, T, G}), &dxw));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({B, T, G}), &drec));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({G}), &db_in));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({G}), &db_rec));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, TensorShape({B, H}), &dh0));
    const auto Ut = TimesUt(u);
    const int64_t threads = NumThreads(ctx, B);
    std::vector<Eigen::ArrayXf> in_parts(threads, Eigen::ArrayXf::Zero(G)), rec_parts(in_parts);

    ForEachRowRange(ctx, threads, B, [&](int64_t k, int64_t r0, int64_t r1) {
      const int64_t n = r1 - r0;
      if (n == 0) return;
      Matrix dh_next = Matrix::Zero(n, H);
      Eigen::VectorXf scratch = Ut.Scratch(n);
      Array dh(n, H);
      for (int64_t t = T - 1; t >= 0; --t) {
        const InArray P = In(At(ps, r0, t, T, 5 * H), n, 5 * H, T * 5 * H);
        dh = In(At(dhs, r0, t, T, H), n, H, T * H) + dh_next.array();
        OutArray Dr = Out(At(drec, r0, t, T, G), n, G, T * G), Dx = Out(At(dxw, r0, t, T, G), n, G, T * G);
        Dr.leftCols(H) = dh * P.leftCols(H);
        Dr.middleCols(H, H) = dh * P.middleCols(H, H);
        Dr.rightCols(H) = dh * P.middleCols(2 * H, H);
        Dx.leftCols(2 * H) = Dr.leftCols(2 * H);
        Dx.rightCols(H) = dh * P.rightCols(H);
        in_parts[k] += Dx.colwise().sum().transpose();
        rec_parts[k] += Dr.colwise().sum().transpose();
        dh_next = (dh * P.middleCols(3 * H, H)).matrix();  // the direct path, plus the recurrent one:
        Ut.Run(At(*drec, r0, t, T, G), T * G, n, dh_next.data(), H, scratch);  // += drec @ U^T
      }
      MatrixMap(dh0->flat<float>().data() + r0 * H, n, H) = dh_next;
    });
    SumParts(in_parts, db_in);
    SumParts(rec_parts, db_rec);
  }
};
REGISTER_KERNEL_BUILDER(Name("TfcharGruBackward").Device(DEVICE_CPU), GruBackward);

// --------------------------------------------------------------------------------------------------------
// SimpleRNN (tanh): h' = tanh(xw[t] + h @ U).

REGISTER_OP("TfcharRnnForward")
    .Input("xw: float")   // [B, T, H] = x @ W + b
    .Input("h0: float")   // [B, H]
    .Input("u: float")    // [H, H]
    .Output("hs: float")     // [B, T, H]
    .Output("hprev: float")  // [B, T, H] the state before each step: [h0, h_1 .. h_{T-1}]
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, Seq(c, c->Dim(c->input(1), 0), c->Dim(c->input(0), 1), c->Dim(c->input(1), 1)));
      c->set_output(1, c->output(0));
      return absl::OkStatus();
    });

class RnnForward : public OpKernel {
 public:
  explicit RnnForward(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor &xw = ctx->input(0), &h0 = ctx->input(1), &u = ctx->input(2);
    const int64_t B = xw.dim_size(0), T = xw.dim_size(1), H = u.dim_size(0);
    OP_REQUIRES(ctx, xw.dims() == 3 && xw.dim_size(2) == H && u.dim_size(1) == H &&
                         h0.shape() == TensorShape({B, H}),
                tensorflow::errors::InvalidArgument("TfcharRnnForward: inconsistent shapes"));
    Tensor *hs, *hprev;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({B, T, H}), &hs));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({B, T, H}), &hprev));
    const auto U = TimesU(u);

    ForEachRowRange(ctx, NumThreads(ctx, B), B, [&](int64_t, int64_t r0, int64_t r1) {
      const int64_t n = r1 - r0;
      if (n == 0) return;
      Matrix a(n, H);
      Eigen::VectorXf scratch = U.Scratch(n);
      for (int64_t t = 0; t < T; ++t) {
        a = Rows(At(xw, r0, t, T, H), n, H, T);
        if (t == 0) {
          U.Run(h0.flat<float>().data() + r0 * H, H, n, a.data(), H, scratch);  // a += h @ U
        } else {
          U.Run(At(*hs, r0, t - 1, T, H), T * H, n, a.data(), H, scratch);
        }
        Out(At(hs, r0, t, T, H), n, H, T * H) = a.array().tanh();
        KeepPrevious(hs, h0, hprev, r0, n, t);
      }
    });
  }
};
REGISTER_KERNEL_BUILDER(Name("TfcharRnnForward").Device(DEVICE_CPU), RnnForward);

REGISTER_OP("TfcharRnnBackward")
    .Input("dhs: float")   // [B, T, H]
    .Input("hs: float")    // [B, T, H] forward outputs
    .Input("u: float")     // [H, H]
    .Output("da: float")   // [B, T, H] gradient of the pre-activations (= of xw)
    .Output("db: float")   // [H] its sum over B and T
    .Output("dh0: float")  // [B, H]
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(0));
      c->set_output(1, c->MakeShape({c->Dim(c->input(2), 1)}));
      c->set_output(2, c->MakeShape({c->Dim(c->input(0), 0), c->Dim(c->input(0), 2)}));
      return absl::OkStatus();
    });

class RnnBackward : public OpKernel {
 public:
  explicit RnnBackward(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor &dhs = ctx->input(0), &hs = ctx->input(1), &u = ctx->input(2);
    const int64_t B = dhs.dim_size(0), T = dhs.dim_size(1), H = u.dim_size(0);
    OP_REQUIRES(ctx, dhs.dims() == 3 && dhs.dim_size(2) == H && u.dim_size(1) == H && hs.shape() == dhs.shape(),
                tensorflow::errors::InvalidArgument("TfcharRnnBackward: inconsistent shapes"));
    Tensor *da, *db, *dh0;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({B, T, H}), &da));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({H}), &db));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({B, H}), &dh0));
    const auto Ut = TimesUt(u);
    const int64_t threads = NumThreads(ctx, B);
    std::vector<Eigen::ArrayXf> db_parts(threads, Eigen::ArrayXf::Zero(H));

    ForEachRowRange(ctx, threads, B, [&](int64_t k, int64_t r0, int64_t r1) {
      const int64_t n = r1 - r0;
      if (n == 0) return;
      Matrix dh_next = Matrix::Zero(n, H);
      Eigen::VectorXf scratch = Ut.Scratch(n);
      for (int64_t t = T - 1; t >= 0; --t) {
        const InArray h = In(At(hs, r0, t, T, H), n, H, T * H);
        OutArray a = Out(At(da, r0, t, T, H), n, H, T * H);
        a = (In(At(dhs, r0, t, T, H), n, H, T * H) + dh_next.array()) * (1 - h * h);
        db_parts[k] += a.colwise().sum().transpose();
        dh_next.setZero();
        Ut.Run(At(*da, r0, t, T, H), T * H, n, dh_next.data(), H, scratch);  // da @ U^T
      }
      MatrixMap(dh0->flat<float>().data() + r0 * H, n, H) = dh_next;
    });
    SumParts(db_parts, db);
  }
};
REGISTER_KERNEL_BUILDER(Name("TfcharRnnBackward").Device(DEVICE_CPU), RnnBackward);

}  // namespace
