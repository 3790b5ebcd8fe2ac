// The time loops of tfchar's fused CPU layers (tfchar/fused.py) as TensorFlow CPU kernels.
//
// Each op is one whole-sequence recurrence, forward or backward, of the functions in fused.py: the same
// inputs, outputs and saved backward factors, so fused.py's `tf.custom_gradient` wrappers call either these
// or its XLA loops. What makes them fast on a CPU (torch-rnn's reasoning, for TensorFlow):
//
//   * a step costs one small GEMM (Eigen, on the caller's core) plus one pass of element-wise work written
//     as vectorised Eigen array expressions, with no per-op dispatch between them;
//   * the batch rows are independent for the whole sequence, so they are split across threads once per
//     call (rows [r0, r1) per thread) and no thread ever waits for another inside the loop.
//
// Shapes: B batch, T time, H hidden units, G gate width (4H LSTM, 3H GRU, H RNN); tensors are row-major
// and time-major ([T, B, ...]) as in fused.py. Built on first use by tfchar/native.py.

#include <algorithm>
#include <functional>
#include <thread>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

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
using ConstMatrixMap = Eigen::Map<const Matrix>;
using ArrayMap = Eigen::Map<Eigen::ArrayXf>;
using ConstArrayMap = Eigen::Map<const Eigen::ArrayXf>;

// Run fn(r0, r1) on disjoint row ranges covering [0, rows), one range per thread. At least `min_rows` rows
// per thread, so tiny batches (sampling, tests) stay on the calling thread.
void ForEachRowRange(OpKernelContext* ctx, int64_t rows, const std::function<void(int64_t, int64_t)>& fn) {
  constexpr int64_t min_rows = 8;
  const int64_t threads = std::max<int64_t>(
      1, std::min<int64_t>(ctx->device()->tensorflow_cpu_worker_threads()->num_threads, rows / min_rows));
  std::vector<std::thread> workers;
  for (int64_t k = 1; k < threads; ++k) {
    workers.emplace_back(fn, rows * k / threads, rows * (k + 1) / threads);
  }
  fn(0, rows / threads);
  for (auto& w : workers) w.join();
}

float* Row(Tensor* t, int64_t step, int64_t batch, int64_t row, int64_t width) {
  return t->flat<float>().data() + (step * batch + row) * width;
}
const float* Row(const Tensor& t, int64_t step, int64_t batch, int64_t row, int64_t width) {
  return t.flat<float>().data() + (step * batch + row) * width;
}

// Shape functions: outputs named by their [T, B, width] layout.
ShapeHandle Seq(InferenceContext* c, DimensionHandle t, DimensionHandle b, DimensionHandle w) {
  return c->MakeShape({t, b, w});
}

// --------------------------------------------------------------------------------------------------------
// LSTM. Keras gate order (i, f, g, o): z = xw[t] + h @ U; c' = f * c + i * g; h' = o * tanh(c').
// Saved backward factors P [T, B, 6H] (fused._lstm_derivatives):
//   [g i (1-i), c f (1-f), i (1-g^2), tanh(c') o (1-o), o (1-tanh(c')^2), f].

REGISTER_OP("TfcharLstmForward")
    .Input("xw: float")  // [T, B, 4H]
    .Input("h0: float")  // [B, H]
    .Input("c0: float")  // [B, H]
    .Input("u: float")   // [H, 4H]
    .Attr("save: bool")
    .Output("hs: float")     // [T, B, H]
    .Output("c_last: float") // [B, H]
    .Output("saved: float")  // save ? P [T, B, 6H] : cell states [T, B, H]
    .SetShapeFn([](InferenceContext* c) {
      bool save;
      TF_RETURN_IF_ERROR(c->GetAttr("save", &save));
      DimensionHandle t = c->Dim(c->input(0), 0), b = c->Dim(c->input(1), 0), h = c->Dim(c->input(1), 1);
      DimensionHandle six_h;
      TF_RETURN_IF_ERROR(c->Multiply(h, 6, &six_h));
      c->set_output(0, Seq(c, t, b, h));
      c->set_output(1, c->input(1));
      c->set_output(2, Seq(c, t, b, save ? six_h : h));
      return absl::OkStatus();
    });

class LstmForward : public OpKernel {
 public:
  explicit LstmForward(OpKernelConstruction* ctx) : OpKernel(ctx) { OP_REQUIRES_OK(ctx, ctx->GetAttr("save", &save_)); }

  void Compute(OpKernelContext* ctx) override {
    const Tensor &xw = ctx->input(0), &h0 = ctx->input(1), &c0 = ctx->input(2), &u = ctx->input(3);
    const int64_t T = xw.dim_size(0), B = xw.dim_size(1), H = u.dim_size(0), G = 4 * H;
    OP_REQUIRES(ctx, xw.dims() == 3 && xw.dim_size(2) == G && u.dim_size(1) == G && h0.dim_size(0) == B &&
                         h0.dim_size(1) == H && c0.shape() == h0.shape(),
                tensorflow::errors::InvalidArgument("TfcharLstmForward: inconsistent shapes"));
    const int64_t S = save_ ? 6 * H : H;
    Tensor *hs, *c_last, *saved;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({T, B, H}), &hs));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({B, H}), &c_last));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({T, B, S}), &saved));
    ConstMatrixMap U(u.flat<float>().data(), H, G);

    ForEachRowRange(ctx, B, [&](int64_t r0, int64_t r1) {
      const int64_t n = r1 - r0;
      if (n == 0) return;
      Matrix z(n, G);
      Eigen::ArrayXf c(n * H);
      c = ConstArrayMap(c0.flat<float>().data() + r0 * H, n * H);
      for (int64_t t = 0; t < T; ++t) {
        const float* h_prev = t == 0 ? h0.flat<float>().data() + r0 * H : Row(*hs, t - 1, B, r0, H);
        z = ConstMatrixMap(Row(xw, t, B, r0, G), n, G);
        z.noalias() += ConstMatrixMap(h_prev, n, H) * U;  // [n, 4H]
        float* h_out = Row(hs, t, B, r0, H);
        float* s_out = Row(saved, t, B, r0, S);
        for (int64_t r = 0; r < n; ++r) {
          const float* zr = z.data() + r * G;
          const Eigen::ArrayXf i = ConstArrayMap(zr, H).logistic();
          const Eigen::ArrayXf f = ConstArrayMap(zr + H, H).logistic();
          const Eigen::ArrayXf g = ConstArrayMap(zr + 2 * H, H).tanh();
          const Eigen::ArrayXf o = ConstArrayMap(zr + 3 * H, H).logistic();
          ArrayMap c_r(c.data() + r * H, H);
          const Eigen::ArrayXf c_prev = c_r;
          c_r = f * c_prev + i * g;
          const Eigen::ArrayXf tc = c_r.tanh();
          ArrayMap(h_out + r * H, H) = o * tc;
          if (save_) {
            float* p = s_out + r * S;
            ArrayMap(p, H) = g * i * (1 - i);
            ArrayMap(p + H, H) = c_prev * f * (1 - f);
            ArrayMap(p + 2 * H, H) = i * (1 - g * g);
            ArrayMap(p + 3 * H, H) = tc * o * (1 - o);
            ArrayMap(p + 4 * H, H) = o * (1 - tc * tc);
            ArrayMap(p + 5 * H, H) = f;
          } else {
            ArrayMap(s_out + r * S, H) = c_r;
          }
        }
      }
      ArrayMap(c_last->flat<float>().data() + r0 * H, n * H) = c;
    });
  }

 private:
  bool save_;
};
REGISTER_KERNEL_BUILDER(Name("TfcharLstmForward").Device(DEVICE_CPU), LstmForward);

REGISTER_OP("TfcharLstmBackward")
    .Input("dhs: float")      // [T, B, H] gradient of the outputs
    .Input("dc_last: float")  // [B, H]
    .Input("ps: float")       // [T, B, 6H]
    .Input("u: float")        // [H, 4H]
    .Output("dz: float")      // [T, B, 4H] gradient of the pre-activations (= of xw)
    .Output("dh0: float")     // [B, H]
    .Output("dc0: float")     // [B, H]
    .SetShapeFn([](InferenceContext* c) {
      DimensionHandle g = c->Dim(c->input(3), 1);
      c->set_output(0, Seq(c, c->Dim(c->input(0), 0), c->Dim(c->input(0), 1), g));
      c->set_output(1, c->input(1));
      c->set_output(2, c->input(1));
      return absl::OkStatus();
    });

class LstmBackward : public OpKernel {
 public:
  explicit LstmBackward(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor &dhs = ctx->input(0), &dc_last = ctx->input(1), &ps = ctx->input(2), &u = ctx->input(3);
    const int64_t T = dhs.dim_size(0), B = dhs.dim_size(1), H = u.dim_size(0), G = 4 * H;
    OP_REQUIRES(ctx, dhs.dims() == 3 && dhs.dim_size(2) == H && u.dim_size(1) == G &&
                         ps.shape() == TensorShape({T, B, 6 * H}) && dc_last.shape() == TensorShape({B, H}),
                tensorflow::errors::InvalidArgument("TfcharLstmBackward: inconsistent shapes"));
    Tensor *dz, *dh0, *dc0;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({T, B, G}), &dz));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({B, H}), &dh0));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({B, H}), &dc0));
    ConstMatrixMap U(u.flat<float>().data(), H, G);

    ForEachRowRange(ctx, B, [&](int64_t r0, int64_t r1) {
      const int64_t n = r1 - r0;
      if (n == 0) return;
      Matrix dh_next = Matrix::Zero(n, H);
      Eigen::ArrayXf dc = ConstArrayMap(dc_last.flat<float>().data() + r0 * H, n * H);
      for (int64_t t = T - 1; t >= 0; --t) {
        const float* dh_in = Row(dhs, t, B, r0, H);
        const float* p_in = Row(ps, t, B, r0, 6 * H);
        float* dz_out = Row(dz, t, B, r0, G);
        for (int64_t r = 0; r < n; ++r) {
          const float* p = p_in + r * 6 * H;
          const Eigen::ArrayXf dh = ConstArrayMap(dh_in + r * H, H) + dh_next.row(r).transpose().array();
          ArrayMap dc_r(dc.data() + r * H, H);
          dc_r += dh * ConstArrayMap(p + 4 * H, H);
          float* d = dz_out + r * G;
          ArrayMap(d, H) = dc_r * ConstArrayMap(p, H);
          ArrayMap(d + H, H) = dc_r * ConstArrayMap(p + H, H);
          ArrayMap(d + 2 * H, H) = dc_r * ConstArrayMap(p + 2 * H, H);
          ArrayMap(d + 3 * H, H) = dh * ConstArrayMap(p + 3 * H, H);
          dc_r *= ConstArrayMap(p + 5 * H, H);
        }
        dh_next.noalias() = ConstMatrixMap(dz_out, n, G) * U.transpose();  // [n, H]
      }
      MatrixMap(dh0->flat<float>().data() + r0 * H, n, H) = dh_next;
      ArrayMap(dc0->flat<float>().data() + r0 * H, n * H) = dc;
    });
  }
};
REGISTER_KERNEL_BUILDER(Name("TfcharLstmBackward").Device(DEVICE_CPU), LstmBackward);

// --------------------------------------------------------------------------------------------------------
// GRU, reset_after. xw = [xz, xr, xn]; rec = h @ U + b_rec = [rz, rr, rn];
// z = sigmoid(xz + rz), r = sigmoid(xr + rr), n = tanh(xn + r * rn), h' = n + z * (h - n).
// Saved factors P [T, B, 5H] (fused._gru_derivatives), with dn = (1 - z)(1 - n^2):
//   [(h - n) z (1 - z), dn rn r (1 - r), dn r, z, dn].

REGISTER_OP("TfcharGruForward")
    .Input("xw: float")     // [T, B, 3H]
    .Input("h0: float")     // [B, H]
    .Input("u: float")      // [H, 3H]
    .Input("b_rec: float")  // [3H]
    .Attr("save: bool")
    .Output("hs: float")  // [T, B, H]
    .Output("ps: float")  // save ? [T, B, 5H] : [0]
    .SetShapeFn([](InferenceContext* c) {
      bool save;
      TF_RETURN_IF_ERROR(c->GetAttr("save", &save));
      DimensionHandle t = c->Dim(c->input(0), 0), b = c->Dim(c->input(1), 0), h = c->Dim(c->input(1), 1);
      DimensionHandle five_h;
      TF_RETURN_IF_ERROR(c->Multiply(h, 5, &five_h));
      c->set_output(0, Seq(c, t, b, h));
      c->set_output(1, save ? Seq(c, t, b, five_h) : c->MakeShape({0}));
      return absl::OkStatus();
    });

class GruForward : public OpKernel {
 public:
  explicit GruForward(OpKernelConstruction* ctx) : OpKernel(ctx) { OP_REQUIRES_OK(ctx, ctx->GetAttr("save", &save_)); }

  void Compute(OpKernelContext* ctx) override {
    const Tensor &xw = ctx->input(0), &h0 = ctx->input(1), &u = ctx->input(2), &b_rec = ctx->input(3);
    const int64_t T = xw.dim_size(0), B = xw.dim_size(1), H = u.dim_size(0), G = 3 * H;
    OP_REQUIRES(ctx, xw.dims() == 3 && xw.dim_size(2) == G && u.dim_size(1) == G && h0.dim_size(0) == B &&
                         h0.dim_size(1) == H && b_rec.NumElements() == G,
                tensorflow::errors::InvalidArgument("TfcharGruForward: inconsistent shapes"));
    Tensor *hs, *ps;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({T, B, H}), &hs));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, save_ ? TensorShape({T, B, 5 * H}) : TensorShape({0}), &ps));
    ConstMatrixMap U(u.flat<float>().data(), H, G);
    const Eigen::Map<const Eigen::RowVectorXf> bias(b_rec.flat<float>().data(), G);

    ForEachRowRange(ctx, B, [&](int64_t r0, int64_t r1) {
      const int64_t n = r1 - r0;
      if (n == 0) return;
      Matrix rec(n, G);
      for (int64_t t = 0; t < T; ++t) {
        const float* h_prev = t == 0 ? h0.flat<float>().data() + r0 * H : Row(*hs, t - 1, B, r0, H);
        rec.noalias() = ConstMatrixMap(h_prev, n, H) * U;  // [n, 3H]
        rec.rowwise() += bias;
        const float* x_in = Row(xw, t, B, r0, G);
        float* h_out = Row(hs, t, B, r0, H);
        for (int64_t r = 0; r < n; ++r) {
          const float* x = x_in + r * G;
          const float* rc = rec.data() + r * G;
          const ConstArrayMap h(h_prev + r * H, H), rn(rc + 2 * H, H);
          const Eigen::ArrayXf z = (ConstArrayMap(x, H) + ConstArrayMap(rc, H)).logistic();
          const Eigen::ArrayXf rr = (ConstArrayMap(x + H, H) + ConstArrayMap(rc + H, H)).logistic();
          const Eigen::ArrayXf nn = (ConstArrayMap(x + 2 * H, H) + rr * rn).tanh();
          ArrayMap(h_out + r * H, H) = nn + z * (h - nn);
          if (save_) {
            float* p = Row(ps, t, B, r0 + r, 5 * H);
            const Eigen::ArrayXf dn = (1 - z) * (1 - nn * nn);
            ArrayMap(p, H) = (h - nn) * z * (1 - z);
            ArrayMap(p + H, H) = dn * rn * rr * (1 - rr);
            ArrayMap(p + 2 * H, H) = dn * rr;
            ArrayMap(p + 3 * H, H) = z;
            ArrayMap(p + 4 * H, H) = dn;
          }
        }
      }
    });
  }

 private:
  bool save_;
};
REGISTER_KERNEL_BUILDER(Name("TfcharGruForward").Device(DEVICE_CPU), GruForward);

REGISTER_OP("TfcharGruBackward")
    .Input("dhs: float")  // [T, B, H]
    .Input("ps: float")   // [T, B, 5H]
    .Input("u: float")    // [H, 3H]
    .Output("dxw: float")   // [T, B, 3H] gradient of xw
    .Output("drec: float")  // [T, B, 3H] gradient of h @ U + b_rec
    .Output("dh0: float")   // [B, H]
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle seq = Seq(c, c->Dim(c->input(0), 0), c->Dim(c->input(0), 1), c->Dim(c->input(2), 1));
      c->set_output(0, seq);
      c->set_output(1, seq);
      c->set_output(2, c->MakeShape({c->Dim(c->input(0), 1), c->Dim(c->input(0), 2)}));
      return absl::OkStatus();
    });

class GruBackward : public OpKernel {
 public:
  explicit GruBackward(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor &dhs = ctx->input(0), &ps = ctx->input(1), &u = ctx->input(2);
    const int64_t T = dhs.dim_size(0), B = dhs.dim_size(1), H = u.dim_size(0), G = 3 * H;
    OP_REQUIRES(ctx, dhs.dims() == 3 && dhs.dim_size(2) == H && u.dim_size(1) == G &&
                         ps.shape() == TensorShape({T, B, 5 * H}),
                tensorflow::errors::InvalidArgument("TfcharGruBackward: inconsistent shapes"));
    Tensor *dxw, *drec, *dh0;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({T, B, G}), &dxw));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({T, B, G}), &drec));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({B, H}), &dh0));
    ConstMatrixMap U(u.flat<float>().data(), H, G);

    ForEachRowRange(ctx, B, [&](int64_t r0, int64_t r1) {
      const int64_t n = r1 - r0;
      if (n == 0) return;
      Matrix dh_next = Matrix::Zero(n, H);
      Matrix carry(n, H);  // the direct path dh * z of each row
      for (int64_t t = T - 1; t >= 0; --t) {
        const float* dh_in = Row(dhs, t, B, r0, H);
        float* dx_out = Row(dxw, t, B, r0, G);
        float* dr_out = Row(drec, t, B, r0, G);
        for (int64_t r = 0; r < n; ++r) {
          const float* p = Row(ps, t, B, r0 + r, 5 * H);
          const Eigen::ArrayXf dh = ConstArrayMap(dh_in + r * H, H) + dh_next.row(r).transpose().array();
          float* dr = dr_out + r * G;
          float* dx = dx_out + r * G;
          ArrayMap(dr, H) = dh * ConstArrayMap(p, H);
          ArrayMap(dr + H, H) = dh * ConstArrayMap(p + H, H);
          ArrayMap(dr + 2 * H, H) = dh * ConstArrayMap(p + 2 * H, H);
          ArrayMap(dx, 2 * H) = ConstArrayMap(dr, 2 * H);
          ArrayMap(dx + 2 * H, H) = dh * ConstArrayMap(p + 4 * H, H);
          carry.row(r) = (dh * ConstArrayMap(p + 3 * H, H)).matrix().transpose();
        }
        dh_next = carry;
        dh_next.noalias() += ConstMatrixMap(dr_out, n, G) * U.transpose();  // [n, H]
      }
      MatrixMap(dh0->flat<float>().data() + r0 * H, n, H) = dh_next;
    });
  }
};
REGISTER_KERNEL_BUILDER(Name("TfcharGruBackward").Device(DEVICE_CPU), GruBackward);

// --------------------------------------------------------------------------------------------------------
// SimpleRNN (tanh): h' = tanh(xw[t] + h @ U).

REGISTER_OP("TfcharRnnForward")
    .Input("xw: float")  // [T, B, H]
    .Input("h0: float")  // [B, H]
    .Input("u: float")   // [H, H]
    .Output("hs: float") // [T, B, H]
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, Seq(c, c->Dim(c->input(0), 0), c->Dim(c->input(1), 0), c->Dim(c->input(1), 1)));
      return absl::OkStatus();
    });

class RnnForward : public OpKernel {
 public:
  explicit RnnForward(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor &xw = ctx->input(0), &h0 = ctx->input(1), &u = ctx->input(2);
    const int64_t T = xw.dim_size(0), B = xw.dim_size(1), H = u.dim_size(0);
    OP_REQUIRES(ctx, xw.dims() == 3 && xw.dim_size(2) == H && u.dim_size(1) == H &&
                         h0.shape() == TensorShape({B, H}),
                tensorflow::errors::InvalidArgument("TfcharRnnForward: inconsistent shapes"));
    Tensor* hs;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({T, B, H}), &hs));
    ConstMatrixMap U(u.flat<float>().data(), H, H);

    ForEachRowRange(ctx, B, [&](int64_t r0, int64_t r1) {
      const int64_t n = r1 - r0;
      if (n == 0) return;
      for (int64_t t = 0; t < T; ++t) {
        const float* h_prev = t == 0 ? h0.flat<float>().data() + r0 * H : Row(*hs, t - 1, B, r0, H);
        MatrixMap h(Row(hs, t, B, r0, H), n, H);
        h = ConstMatrixMap(Row(xw, t, B, r0, H), n, H);
        h.noalias() += ConstMatrixMap(h_prev, n, H) * U;
        h = h.array().tanh().matrix();
      }
    });
  }
};
REGISTER_KERNEL_BUILDER(Name("TfcharRnnForward").Device(DEVICE_CPU), RnnForward);

REGISTER_OP("TfcharRnnBackward")
    .Input("dhs: float")  // [T, B, H]
    .Input("hs: float")   // [T, B, H] forward outputs
    .Input("u: float")    // [H, H]
    .Output("da: float")  // [T, B, H] gradient of the pre-activations (= of xw)
    .Output("dh0: float") // [B, H]
    .SetShapeFn([](InferenceContext* c) {
      c->set_output(0, c->input(0));
      c->set_output(1, c->MakeShape({c->Dim(c->input(0), 1), c->Dim(c->input(0), 2)}));
      return absl::OkStatus();
    });

class RnnBackward : public OpKernel {
 public:
  explicit RnnBackward(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor &dhs = ctx->input(0), &hs = ctx->input(1), &u = ctx->input(2);
    const int64_t T = dhs.dim_size(0), B = dhs.dim_size(1), H = u.dim_size(0);
    OP_REQUIRES(ctx, dhs.dims() == 3 && dhs.dim_size(2) == H && u.dim_size(1) == H && hs.shape() == dhs.shape(),
                tensorflow::errors::InvalidArgument("TfcharRnnBackward: inconsistent shapes"));
    Tensor *da, *dh0;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({T, B, H}), &da));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({B, H}), &dh0));
    ConstMatrixMap U(u.flat<float>().data(), H, H);

    ForEachRowRange(ctx, B, [&](int64_t r0, int64_t r1) {
      const int64_t n = r1 - r0;
      if (n == 0) return;
      Matrix dh_next = Matrix::Zero(n, H);
      for (int64_t t = T - 1; t >= 0; --t) {
        const ConstMatrixMap h(Row(hs, t, B, r0, H), n, H);
        MatrixMap a(Row(da, t, B, r0, H), n, H);
        a.array() = (ConstMatrixMap(Row(dhs, t, B, r0, H), n, H) + dh_next).array() * (1 - h.array().square());
        dh_next.noalias() = a * U.transpose();
      }
      MatrixMap(dh0->flat<float>().data() + r0 * H, n, H) = dh_next;
    });
  }
};
REGISTER_KERNEL_BUILDER(Name("TfcharRnnBackward").Device(DEVICE_CPU), RnnBackward);

}  // namespace
