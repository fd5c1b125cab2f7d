// 2-D convolution and the fully connected layer (docs/nn.md §Convolution): im2col + one strided-batched GEMM
// per call (batch = replica), the backward as two GEMMs and col2im written as a gather (each input value sums
// its own window taps in a fixed order: no atomics, the same result for any thread count).
//   y[o][n][p] = Σ_{c,ky,kx} W[o][c][ky][kx] · x[c][n][p·s − pad + (ky, kx)]        (zero outside the image)
// With col[(c,ky,kx)][(n,oy,ox)] the im2col matrix (K = C·k², P = N·Ho·Wo) of one replica:
//   Y (Cout × P) = W (Cout × K) · col,   dW = dY · colᵀ,   dcol = Wᵀ · dY,   dx = col2im(dcol).
#pragma once

#include <algorithm>

#include "lgm/core/error.hpp"
#include "lgm/core/parallel.hpp"
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
  /// Workspace values (all replicas): on CUDA the whole im2col matrix, on the host the image tiles and the dW
  /// partial sums of its chunks (detail::HostConvTiling); 0 when pointwise.
  Index col_size(const ActShape& in) const;
};

namespace detail {

/// How much of the im2col / col2im work one call does: one value on CUDA (a thread a value, coalesced), a
/// whole slab of rows on the host (a tap's N·Ho rows, a sample's H rows), where the index arithmetic of a call
/// (~10 divisions) cost more than the copying itself and, per value, more than the GEMM of a narrow layer.
inline constexpr bool kConvValueCalls = LGM_GPU_CUDA != 0;

/// col[m][(c,ky,kx)][(n,oy,ox)] = x[m][c][n][oy·s − pad + ky][ox·s − pad + kx], or 0 in the padding.
template <class T>
struct Im2colFn {
  const T* x;
  T* col;
  Index channels, batch, h, w, k, s, pad, oh, ow;

  /// Calls of a launch: a value each on CUDA, a tap (m, (c, ky, kx)) each on the host.
  Index calls(Index replicas) const {
    return kConvValueCalls ? replicas * channels * k * k * batch * oh * ow : replicas * channels * k * k;
  }

  /// out[ox] for ox in [ox0, ox1) of output row oy of tap (ky, kx); `plane` is x at (m, c, n).
  LGM_HD void copy_row(T* out, const T* plane, Index ky, Index kx, Index oy, Index ox0, Index ox1) const {
    const Index iy = oy * s - pad + ky;
    if (iy < 0 || iy >= h) {
      for (Index ox = ox0; ox < ox1; ++ox) out[ox] = T(0);
      return;
    }
    const T* in = plane + iy * w;
    // ix = ox·s − pad + kx lies in [0, w) for ox in [lo, hi): zeros, a branch-free copy, zeros
    const Index lo0 = pad - kx > 0 ? (pad - kx + s - 1) / s : 0;
    const Index hi0 = w - 1 + pad - kx >= 0 ? (w - 1 + pad - kx) / s + 1 : 0;
    const Index lo = lo0 > ox0 ? lo0 : ox0, hi = hi0 < ox1 ? hi0 : ox1;
    Index ox = ox0;
    for (; ox < lo && ox < ox1; ++ox) out[ox] = T(0);
    if (s == 1) {
      const Index shift = kx - pad;
      for (; ox < hi; ++ox) out[ox] = in[ox + shift];
    } else {
      for (; ox < hi; ++ox) out[ox] = in[ox * s - pad + kx];
    }
    for (; ox < ox1; ++ox) out[ox] = T(0);
  }

  LGM_HD void operator()(Index e) const {
    const Index K = channels * k * k, rows_per_tap = batch * oh;
    if constexpr (kConvValueCalls) {
      const Index row = e / ow, ox = e - row * ow;
      const Index tap = row / rows_per_tap, no = row - tap * rows_per_tap;
      const Index m = tap / K, kk = tap - m * K, c = kk / (k * k), n = no / oh;
      copy_row(col + row * ow, x + ((m * channels + c) * batch + n) * h * w, (kk / k) % k, kk % k, no - n * oh, ox,
               ox + 1);
    } else {
      const Index m = e / K, kk = e - m * K, c = kk / (k * k), ky = (kk / k) % k, kx = kk % k;
      T* out = col + e * rows_per_tap * ow;
      for (Index n = 0; n < batch; ++n) {
        const T* plane = x + ((m * channels + c) * batch + n) * h * w;
        for (Index oy = 0; oy < oh; ++oy, out += ow) copy_row(out, plane, ky, kx, oy, 0, ow);
      }
    }
  }
};

/// dx[m][c][n][iy][ix] = Σ_{ky,kx} dcol[m][(c,ky,kx)][(n,oy,ox)] over the taps whose window covers (iy, ix):
/// oy = (iy + pad − ky)/s when that is a whole number in [0, Ho), likewise ox. Sums in (ky, kx) order.
template <class T>
struct Col2imFn {
  const T* dcol;
  T* dx;
  Index channels, batch, h, w, k, s, pad, oh, ow;

  /// Calls of a launch: a value each on CUDA, a sample's channel (m, c, n) each on the host.
  Index calls(Index replicas) const {
    return kConvValueCalls ? replicas * channels * batch * h * w : replicas * channels * batch;
  }

  /// out[ix] for ix in [ix0, ix1) of input row iy of (m, c, n).
  LGM_HD void sum_row(T* out, Index m, Index c, Index n, Index iy, Index ix0, Index ix1) const {
    const Index P = batch * oh * ow, K = channels * k * k;
    const T* base = dcol + m * K * P;
    for (Index ix = ix0; ix < ix1; ++ix) out[ix] = T(0);
    for (Index ky = 0; ky < k; ++ky) {
      const Index ty = iy + pad - ky;
      if (ty < 0 || ty % s != 0 || ty / s >= oh) continue;
      const T* tap_row = base + (c * k + ky) * k * P + (n * oh + ty / s) * ow;
      if (s == 1) {  // tx = ix + pad − kx: for each tap a contiguous range; each value still adds in (ky, kx) order
        for (Index kx = 0; kx < k; ++kx) {
          const Index shift = pad - kx;
          const Index lo = ix0 > -shift ? ix0 : -shift, hi = ix1 < ow - shift ? ix1 : ow - shift;
          const T* src = tap_row + kx * P;
          for (Index ix = lo; ix < hi; ++ix) out[ix] += src[ix + shift];
        }
        continue;
      }
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

  LGM_HD void operator()(Index e) const {
    if constexpr (kConvValueCalls) {
      const Index row = e / w, ix = e - row * w;
      const Index mcn = row / h, iy = row - mcn * h;
      const Index n = mcn % batch, mc = mcn / batch;
      sum_row(dx + row * w, mc / channels, mc % channels, n, iy, ix, ix + 1);
    } else {
      const Index n = e % batch, mc = e / batch;
      for (Index iy = 0; iy < h; ++iy) sum_row(dx + (e * h + iy) * w, mc / channels, mc % channels, n, iy, 0, w);
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

/// The host's convolution works on tiles of whole images of one replica, so that a tile's im2col matrix stays in
/// the cache between the copy and the GEMM, and col2im never needs a neighbouring tile. A replica's tiles are
/// split into a fixed number of chunks (by shape only, never by thread count), each with its own tile buffer
/// and its own dW partial sum; the partials are added in chunk order, so results are the same for any threads.
struct HostConvTiling {
  /// Output positions a tile at least: the GEMM's rows (m in the forward, k of dW).
  static constexpr Index kTilePositions = 256;
  /// Chunks over all replicas (each replica at least one): enough to balance the cores of one CPU.
  static constexpr Index kChunks = 16;

  Index images = 1;   ///< images a tile (the last tile of a replica may hold fewer)
  Index tiles = 1;    ///< tiles a replica
  Index chunks = 1;   ///< chunks a replica
  Index buffer = 0;   ///< values of a chunk's tile buffer: K × (images · Ho · Wo), col and then dcol
  Index partial = 0;  ///< values of a chunk's dW partial: K × Cout
  Index stride = 0;   ///< values a chunk (buffer + partial, 64-byte aligned)

  HostConvTiling(const Conv2d& conv, const ActShape& in) {
    const ActShape out = conv.output(in);
    const Index plane = std::max<Index>(1, out.plane());
    images = std::min(in.batch, (kTilePositions + plane - 1) / plane);
    tiles = (in.batch + images - 1) / images;
    chunks = std::min(tiles, std::max<Index>(1, kChunks / std::max<Index>(1, in.replicas)));
    buffer = conv.fan_in() * images * out.plane();
    partial = conv.weight_size();
    stride = (buffer + partial + 15) / 16 * 16;
  }
  Index first_tile(Index chunk) const noexcept { return chunk * tiles / chunks; }
  Index size(Index replicas) const noexcept { return replicas * chunks * stride; }
};

/// dw_m[i] = β dw_m[i] + Σ_c partial_{m,c}[i], added in chunk order.
template <class T>
struct SumPartialsFn {
  const T* work;
  T* dw;
  Index dw_stride, size, chunks, chunk_stride, offset;
  T beta;
  LGM_HD void operator()(Index e) const {
    const Index m = e / size, i = e - m * size;
    const T* p = work + m * chunks * chunk_stride + offset + i;
    T sum = p[0];
    for (Index c = 1; c < chunks; ++c) sum += p[c * chunk_stride];
    T& out = dw[m * dw_stride + i];
    out = beta == T(0) ? sum : beta * out + sum;
  }
};

template <class T>
const T* im2col(const Exec& exec, const Conv2d& conv, const ActShape& in, const T* x, T* col) {
  if (conv.pointwise()) return x;
  const ActShape out = conv.output(in);
  const Im2colFn<T> fn{x,           col,         in.channels, in.batch,   in.height, in.width,
                       conv.kernel, conv.stride, conv.pad,    out.height, out.width};
  for_each_index(exec, fn.calls(in.replicas), fn);
  return col;
}

#if !LGM_GPU_CUDA
/// One tile of the host convolution: images [n0, n0 + count) of replica m.
template <class T>
struct HostConvTile {
  const Conv2d& conv;
  const ActShape& in;
  Index oh, ow, m, n0, count;

  Index positions() const noexcept { return count * oh * ow; }
  /// Offset of the tile's first value in a channel of an activation [m][c][n][·][·] with `plane` values an image.
  Index offset(Index channels, Index plane, Index c) const noexcept {
    return ((m * channels + c) * in.batch + n0) * plane;
  }

  /// buf[(c,ky,kx)][(n,oy,ox)] for the tile's images: its im2col matrix, K × positions(). The bounds of a tap's
  /// copied columns are the same for every row, so no row divides (the value-per-call Im2colFn does).
  void im2col(const T* x, T* buf) const {
    const Index k = conv.kernel, s = conv.stride, pad = conv.pad, h = in.height, w = in.width;
    const Index pt = positions(), K = conv.fan_in();
    for (Index kk = 0; kk < K; ++kk) {
      const Index c = kk / (k * k), ky = (kk / k) % k, kx = kk % k;
      // ix = ox·s − pad + kx lies in [0, w) exactly for ox in [lo, hi)
      const Index lo = std::min(ow, pad > kx ? (pad - kx + s - 1) / s : Index(0));
      const Index hi = std::max(lo, std::min(ow, w - 1 + pad - kx >= 0 ? (w - 1 + pad - kx) / s + 1 : Index(0)));
      const T* plane = x + offset(in.channels, in.plane(), c);
      T* __restrict out = buf + kk * pt;
      for (Index n = 0; n < count; ++n, plane += in.plane())
        for (Index oy = 0; oy < oh; ++oy, out += ow) {
          const Index iy = oy * s - pad + ky;
          if (iy < 0 || iy >= h) {
            std::fill(out, out + ow, T(0));
            continue;
          }
          const T* __restrict row = plane + iy * w;
          std::fill(out, out + lo, T(0));
          if (s == 1 && hi > lo)
            std::copy(row + (lo + kx - pad), row + (hi + kx - pad), out + lo);
          else if (s != 1)
            for (Index ox = lo; ox < hi; ++ox) out[ox] = row[ox * s - pad + kx];
          std::fill(out + hi, out + ow, T(0));
        }
    }
  }

  /// dx for the tile's images from its dcol (K × positions()): every window of these images lies in the tile.
  /// Each value adds its taps in (ky, kx) order from 0, as Col2imFn does (the same bits as the CUDA path).
  void col2im(const T* dcol, T* dx) const {
    const Col2imFn<T> fn{dcol, dx, in.channels, count, in.height, in.width, conv.kernel, conv.stride, conv.pad, oh, ow};
    const Index k = conv.kernel, pad = conv.pad, w = in.width, pt = positions();
    for (Index c = 0; c < in.channels; ++c) {
      T* plane = dx + offset(in.channels, in.plane(), c);
      for (Index n = 0; n < count; ++n)
        for (Index iy = 0; iy < in.height; ++iy, plane += w) {
          if (conv.stride != 1) {
            fn.sum_row(plane, 0, c, n, iy, 0, w);
            continue;
          }
          T* __restrict out = plane;
          std::fill(out, out + w, T(0));
          for (Index ky = 0; ky < k; ++ky) {
            const Index ty = iy + pad - ky;  // the output row of this tap (stride 1)
            if (ty < 0 || ty >= oh) continue;
            const T* tap_row = dcol + (c * k + ky) * k * pt + (n * oh + ty) * ow;
            for (Index kx = 0; kx < k; ++kx) {
              const Index shift = pad - kx;
              const Index lo = std::max(Index(0), -shift), hi = std::min(w, ow - shift);
              const T* __restrict src = tap_row + kx * pt + shift;
              for (Index ix = lo; ix < hi; ++ix) out[ix] += src[ix];
            }
          }
        }
    }
  }
};

/// body(tile, buffer, partial, first) for every tile, chunk by chunk over the host's threads.
template <class T, class Body>
void for_each_conv_tile(const Conv2d& conv, const ActShape& in, T* work, const Body& body) {
  const HostConvTiling t(conv, in);
  const ActShape out = conv.output(in);
  lgm::detail::parallel_for_dynamic(gpu::detail::omp_threads(), in.replicas * t.chunks, [&](Index rc) {
    const Index m = rc / t.chunks, chunk = rc % t.chunks;
    T* buf = work + rc * t.stride;
    for (Index i = t.first_tile(chunk); i < t.first_tile(chunk + 1); ++i) {
      const Index n0 = i * t.images;
      const HostConvTile<T> tile{conv, in, out.height, out.width, m, n0, std::min(t.images, in.batch - n0)};
      body(tile, buf, buf + t.buffer, i == t.first_tile(chunk));
    }
  });
}

template <class T>
void host_conv2d_forward(const Conv2d& conv, const ActShape& in, const T* x, Params<const T> w, T* y, T* work) {
  const ActShape out = conv.output(in);
  const Index K = conv.fan_in();
  for_each_conv_tile<T>(conv, in, work, [&](const HostConvTile<T>& tile, T* buf, T*, bool) {
    tile.im2col(x, buf);
    // Yᵀ of the tile (positions × Cout, ld P) = colᵀ (positions × K) · Wᵀ (K × Cout)
    gpu::detail::host_gemm<T>(Op::none, Op::none, tile.positions(), conv.out_channels, K, T(1), buf, tile.positions(),
                              w.data + tile.m * w.stride + conv.weight, K, T(0),
                              y + tile.offset(out.channels, out.plane(), 0), out.per_channel());
  });
}

template <class T>
void host_conv2d_backward(const Exec& exec, const Conv2d& conv, const ActShape& in, const T* x, const T* dy,
                          Params<const T> w, Params<T> dw, T* dx, T* work, T beta) {
  const ActShape out = conv.output(in);
  const Index K = conv.fan_in(), cout = conv.out_channels;
  for_each_conv_tile<T>(conv, in, work, [&](const HostConvTile<T>& tile, T* buf, T* partial, bool first) {
    const Index pt = tile.positions();
    const T* dy_tile = dy + tile.offset(out.channels, out.plane(), 0);
    tile.im2col(x, buf);
    // the chunk's dW (K × Cout) (+)= col (K × positions) · dYᵀ (positions × Cout)
    gpu::detail::host_gemm<T>(Op::transpose, Op::none, K, cout, pt, T(1), buf, pt, dy_tile, out.per_channel(),
                              first ? T(0) : T(1), partial, K);
    if (dx == nullptr) return;
    // dcolᵀ (positions × K) = dYᵀ (positions × Cout) · W (Cout × K), into the same buffer
    gpu::detail::host_gemm<T>(Op::none, Op::transpose, pt, K, cout, T(1), dy_tile, out.per_channel(),
                              w.data + tile.m * w.stride + conv.weight, K, T(0), buf, pt);
    tile.col2im(buf, dx);
  });
  const HostConvTiling t(conv, in);
  for_each_index(
      exec, in.replicas * t.partial,
      SumPartialsFn<T>{work, dw.data + conv.weight, dw.stride, t.partial, t.chunks, t.stride, t.buffer, beta});
}
#endif

}  // namespace detail

inline Index Conv2d::col_size(const ActShape& in) const {
  if (pointwise()) return 0;
  if constexpr (detail::kConvValueCalls) return in.replicas * fan_in() * output(in).per_channel();
  return detail::HostConvTiling(*this, in).size(in.replicas);
}

/// y = conv(x) for every replica (y: conv.output(in)); `col` holds conv.col_size(in) values of workspace.
template <class T>
void conv2d_forward(const Exec& exec, const Conv2d& conv, const ActShape& in, const T* x, Params<const T> w, T* y,
                    T* col) {
#if !LGM_GPU_CUDA
  if (!conv.pointwise()) return detail::host_conv2d_forward<T>(conv, in, x, w, y, col);
#endif
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
#if !LGM_GPU_CUDA
  if (!conv.pointwise()) return detail::host_conv2d_backward<T>(exec, conv, in, x, dy, w, dw, dx, col, beta);
#endif
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
  const detail::Col2imFn<T> fn{col,         dx,          in.channels, in.batch,   in.height, in.width,
                               conv.kernel, conv.stride, conv.pad,    out.height, out.width};
  detail::for_each_index(exec, fn.calls(in.replicas), fn);
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
