// 2-D convolution and the fully connected layer (docs/nn.md §Convolution): im2col + one strided-batched GEMM
// per call (batch = replica), the backward as two GEMMs and col2im written as a gather (each input value sums
// its own window taps in a fixed order: no atomics, the same result for any thread count).
//   y[o][n][p] = Σ_{c,ky,kx} W[o][c][ky][kx] · x[c][n][p·s − pad + (ky, kx)]        (zero outside the image)
// With col[(c,ky,kx)][(n,oy,ox)] the im2col matrix (K = C·k², P = N·Ho·Wo) of one replica:
//   Y (Cout × P) = W (Cout × K) · col,   dW = dY · colᵀ,   dcol = Wᵀ · dY,   dx = col2im(dcol).
#pragma once

#include <algorithm>

#include "lgm/core/error.hpp"
#include "lgm/gpu/nn/common.hpp"

namespace lgm::gpu::nn {

/// A convolution without bias (a batch norm follows it in every network here): weight [out][in][k][k].
struct Conv2d {
  Index in_channels = 1;
  Index out_channels = 1;
  Index kernel = 3;
  Index stride = 1;
  Index pad = 1;
  Index weight = 0;  ///< offset of the weight tensor in the tensor table

  Index out_extent(Index in) const noexcept { return (in + 2 * pad - kernel) / stride + 1; }
  /// K: one output value's inputs.
  Index fan_in() const noexcept { return in_channels * kernel * kernel; }
  Index weight_size() const noexcept { return out_channels * fan_in(); }
  /// 1×1, stride 1, no padding: the im2col matrix is the input itself.
  bool pointwise() const noexcept { return kernel == 1 && stride == 1 && pad == 0; }

  /// The output shape; throws when the input has the wrong channels or is smaller than the kernel.
  ActShape output(const ActShape& in) const {
    lgm::detail::require(in.channels == in_channels, "Conv2d (input channels)", in.channels,
                         "the layer's in_channels = " + lgm::detail::to_text(in_channels));
    lgm::detail::require(in.height + 2 * pad >= kernel && in.width + 2 * pad >= kernel, "Conv2d (input height)",
                         in.height, "an image at least as large as the kernel after padding");
    return {in.replicas, out_channels, in.batch, out_extent(in.height), out_extent(in.width)};
  }
  /// Workspace values (all replicas) for the im2col matrix; 0 when pointwise.
  Index col_size(const ActShape& in) const {
    return pointwise() ? 0 : in.replicas * fan_in() * output(in).per_channel();
  }
};

namespace detail {

/// Output positions along a row that one call of Im2colFn / Col2imFn writes: one on CUDA (a thread an element,
/// coalesced), the whole row on the host (the index arithmetic, ~10 divisions, is paid once a row, not once an
/// element: it cost more than the GEMM for narrow layers).
inline constexpr Index kConvRowSpan = LGM_GPU_CUDA ? 1 : (Index{1} << 40);

/// Calls of a row-wise functor over `rows` rows of `len` values, kConvRowSpan values a call.
inline Index row_calls(Index rows, Index len) {
  return rows * ((len + std::min(len, kConvRowSpan) - 1) / std::min(len, kConvRowSpan));
}

/// col[m][(c,ky,kx)][(n,oy,ox)] = x[m][c][n][oy·s − pad + ky][ox·s − pad + kx], or 0 in the padding; call e
/// writes positions [ox0, ox0 + span) of row (m, (c,ky,kx), n, oy).
template <class T>
struct Im2colFn {
  const T* x;
  T* col;
  Index channels, batch, h, w, k, s, pad, oh, ow;
  LGM_HD void operator()(Index e) const {
    const Index span = ow < kConvRowSpan ? ow : kConvRowSpan, chunks = (ow + span - 1) / span;
    const Index row = e / chunks, ox0 = (e - row * chunks) * span, ox1 = ox0 + span < ow ? ox0 + span : ow;
    const Index rows_per_tap = batch * oh, K = channels * k * k;
    const Index m = row / (K * rows_per_tap), r = row - m * K * rows_per_tap;
    const Index kk = r / rows_per_tap, no = r - kk * rows_per_tap;  // no = n·oh + oy
    const Index c = kk / (k * k), ky = (kk / k) % k, kx = kk % k;
    const Index n = no / oh, oy = no - n * oh;
    const Index iy = oy * s - pad + ky;
    T* out = col + row * ow;
    if (iy < 0 || iy >= h) {
      for (Index ox = ox0; ox < ox1; ++ox) out[ox] = T(0);
      return;
    }
    const T* in = x + m * channels * batch * h * w + ((c * batch + n) * h + iy) * w;
    for (Index ox = ox0; ox < ox1; ++ox) {
      const Index ix = ox * s - pad + kx;
      out[ox] = ix >= 0 && ix < w ? in[ix] : T(0);
    }
  }
};

/// dx[m][c][n][iy][ix] = Σ_{ky,kx} dcol[m][(c,ky,kx)][(n,oy,ox)] over the taps whose window covers (iy, ix):
/// oy = (iy + pad − ky)/s when that is a whole number in [0, Ho), likewise ox. Sums in (ky, kx) order. Call e
/// writes positions [ix0, ix0 + span) of row (m, c, n, iy).
template <class T>
struct Col2imFn {
  const T* dcol;
  T* dx;
  Index channels, batch, h, w, k, s, pad, oh, ow;
  LGM_HD void operator()(Index e) const {
    const Index span = w < kConvRowSpan ? w : kConvRowSpan, chunks = (w + span - 1) / span;
    const Index row = e / chunks, ix0 = (e - row * chunks) * span, ix1 = ix0 + span < w ? ix0 + span : w;
    const Index rows_per_replica = channels * batch * h;
    const Index m = row / rows_per_replica, r = row - m * rows_per_replica;
    const Index c = r / (batch * h), n = (r / h) % batch, iy = r % h;
    const Index P = batch * oh * ow, K = channels * k * k;
    const T* base = dcol + m * K * P;
    T* out = dx + row * w;
    for (Index ix = ix0; ix < ix1; ++ix) out[ix] = T(0);
    for (Index ky = 0; ky < k; ++ky) {
      const Index ty = iy + pad - ky;
      if (ty < 0 || ty % s != 0 || ty / s >= oh) continue;
      const T* tap_row = base + (c * k + ky) * k * P + (n * oh + ty / s) * ow;
      for (Index ix = ix0; ix < ix1; ++ix) {
        T sum = out[ix];
        for (Index kx = 0; kx < k; ++kx) {
          const Index tx = ix + pad - kx;
          if (tx < 0 || tx % s != 0 || tx / s >= ow) continue;
          sum += tap_row[kx * P + tx / s];
        }
        out[ix] = sum;
      }
    }
  }
};

/// y[m][c][p] += b_m[c] over the P values of each channel.
template <class T>
struct AddBiasFn {
  T* y;
  const T* b;
  Index b_stride, channels, per_channel;
  LGM_HD void operator()(Index e) const {
    const Index m = e / (channels * per_channel), c = (e / per_channel) % channels;
    y[e] += b[m * b_stride + c];
  }
};

/// db_m[c] = β db_m[c] + Σ_p dy[m][c][p], summed in p order in double.
template <class T>
struct BiasGradFn {
  const T* dy;
  T* db;
  Index db_stride, channels, per_channel;
  T beta;
  LGM_HD void operator()(Index mc) const {
    const Index m = mc / channels, c = mc % channels;
    const T* p = dy + mc * per_channel;
    double s = 0.0;
    for (Index i = 0; i < per_channel; ++i) s += static_cast<double>(p[i]);
    T& out = db[m * db_stride + c];
    out = beta == T(0) ? static_cast<T>(s) : beta * out + static_cast<T>(s);
  }
};

template <class T>
const T* im2col(const Exec& exec, const Conv2d& conv, const ActShape& in, const T* x, T* col) {
  if (conv.pointwise()) return x;
  const ActShape out = conv.output(in);
  for_each_index(exec, row_calls(conv.col_size(in) / out.width, out.width),
                 Im2colFn<T>{x, col, in.channels, in.batch, in.height, in.width, conv.kernel, conv.stride, conv.pad,
                             out.height, out.width});
  return col;
}

}  // namespace detail

/// y = conv(x) for every replica (y: conv.output(in)); `col` holds conv.col_size(in) values of workspace.
template <class T>
void conv2d_forward(const Exec& exec, const Conv2d& conv, const ActShape& in, const T* x, Params<const T> w, T* y,
                    T* col) {
  const ActShape out = conv.output(in);
  const Index K = conv.fan_in(), P = out.per_channel();
  const T* a = detail::im2col(exec, conv, in, x, col);
  // Yᵀ (P × Cout, column-major) = colᵀ (P × K) · Wᵀ (K × Cout): the row-major [Cout][P] output
  exec.blas->gemm_strided_batched<T>(Op::none, Op::none, P, conv.out_channels, K, T(1), a, P, K * P,
                                     w.data + conv.weight, K, w.stride, T(0), y, P, out.per_replica(), in.replicas);
}

/// The backward pass: dW ← β·dW + dY·colᵀ for every replica, and dx = col2im(Wᵀ dY) unless dx is null (the
/// network's input). x is the forward input; `col` the same workspace as the forward's (overwritten).
template <class T>
void conv2d_backward(const Exec& exec, const Conv2d& conv, const ActShape& in, const T* x, const T* dy,
                     Params<const T> w, Params<T> dw, T* dx, T* col, T beta = T(0)) {
  const ActShape out = conv.output(in);
  const Index K = conv.fan_in(), P = out.per_channel();
  const T* a = detail::im2col(exec, conv, in, x, col);
  // dW (K × Cout, column-major: the row-major [Cout][K] weight) = col (K × P) · dYᵀ (P × Cout)
  exec.blas->gemm_strided_batched<T>(Op::transpose, Op::none, K, conv.out_channels, P, T(1), a, P, K * P, dy, P,
                                     out.per_replica(), beta, dw.data + conv.weight, K, dw.stride, in.replicas);
  if (dx == nullptr) return;
  // dcolᵀ (P × K) = dYᵀ (P × Cout) · W (Cout × K); pointwise: dcol is dx itself
  T* dcol = conv.pointwise() ? dx : col;
  exec.blas->gemm_strided_batched<T>(Op::none, Op::transpose, P, K, conv.out_channels, T(1), dy, P, out.per_replica(),
                                     w.data + conv.weight, K, w.stride, T(0), dcol, P, K * P, in.replicas);
  if (conv.pointwise()) return;
  detail::for_each_index(exec, detail::row_calls(in.size() / in.width, in.width),
                         detail::Col2imFn<T>{col, dx, in.channels, in.batch, in.height, in.width, conv.kernel,
                                             conv.stride, conv.pad, out.height, out.width});
}

/// A fully connected layer on [replica][feature][sample] inputs: y = W x + b, weight [out][in], bias [out].
struct Linear {
  Index in_features = 1;
  Index out_features = 1;
  Index weight = 0;  ///< offset of the weight tensor
  Index bias = 0;    ///< offset of the bias tensor

  Conv2d as_conv() const noexcept { return {in_features, out_features, 1, 1, 0, weight}; }
  ActShape output(const ActShape& in) const { return as_conv().output(in); }
};

/// y = W x + b for every replica (in: features × batch, height = width = 1).
template <class T>
void linear_forward(const Exec& exec, const Linear& fc, const ActShape& in, const T* x, Params<const T> p, T* y) {
  lgm::detail::require(in.plane() == 1, "Linear (input height × width)", in.plane(), "1 (a feature vector a sample)");
  conv2d_forward<T>(exec, fc.as_conv(), in, x, p, y, nullptr);
  const ActShape out = fc.output(in);
  detail::for_each_index(exec, out.size(),
                         detail::AddBiasFn<T>{y, p.data + fc.bias, p.stride, out.channels, out.per_channel()});
}

/// dW, db ← β·(dW, db) + their gradients; dx = Wᵀ dy unless null.
template <class T>
void linear_backward(const Exec& exec, const Linear& fc, const ActShape& in, const T* x, const T* dy, Params<const T> p,
                     Params<T> dp, T* dx, T beta = T(0)) {
  conv2d_backward<T>(exec, fc.as_conv(), in, x, dy, p, dp, dx, nullptr, beta);
  const ActShape out = fc.output(in);
  detail::for_each_index(
      exec, out.replicas * out.channels,
      detail::BiasGradFn<T>{dy, dp.data + fc.bias, dp.stride, out.channels, out.per_channel(), beta});
}

}  // namespace lgm::gpu::nn
