// Independent double-precision references of the network layers (gpu/include/lgm/gpu/nn/), written the plain
// way: loops over the logical indices of one replica, a scatter where the library gathers, no shared helpers with
// the library. Activations are [channel][sample][row][col] per replica, as in the library (docs/nn.md §Layout).
#pragma once

#include <cmath>
#include <cstddef>
#include <random>
#include <vector>

#include "lgm/core/types.hpp"
#include "lgm/gpu/storage.hpp"

namespace lgm::gpu::testing::nnref {

using Values = std::vector<double>;

inline Values random_values(std::size_t n, std::mt19937_64& rng, double scale = 1.0) {
  std::normal_distribution<double> dist(0.0, scale);
  Values v(n);
  for (double& x : v) x = dist(rng);
  return v;
}

inline double dot(const Values& a, const Values& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

/// The largest |a − b| relative to max(1, max |b|).
inline double max_rel_diff(const Values& a, const Values& b) {
  double worst = 0.0, scale = 1.0;
  for (double v : b) scale = std::max(scale, std::abs(v));
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst / scale;
}

/// Device copies of host values, converted to T, and back.
template <class T>
DeviceBuffer<T> to_device(const Values& h, StreamHandle s) {
  DeviceBuffer<T> d(static_cast<Index>(h.size()), s);
  std::vector<T> t(h.begin(), h.end());
  copy_to_device(d.data(), t.data(), t.size() * sizeof(T), s);
  return d;
}
template <class T>
Values to_host(const DeviceBuffer<T>& d, StreamHandle s) {
  std::vector<T> t(static_cast<std::size_t>(d.count()));
  copy_to_host(t.data(), d.data(), t.size() * sizeof(T), s);
  return Values(t.begin(), t.end());
}

struct ConvGeom {
  Index cin, cout, n, h, w, k, s, pad;
  Index oh() const { return (h + 2 * pad - k) / s + 1; }
  Index ow() const { return (w + 2 * pad - k) / s + 1; }
  std::size_t xi(Index c, Index b, Index y, Index x) const {
    return static_cast<std::size_t>(((c * n + b) * h + y) * w + x);
  }
  std::size_t yi(Index o, Index b, Index y, Index x) const {
    return static_cast<std::size_t>(((o * n + b) * oh() + y) * ow() + x);
  }
  std::size_t wi(Index o, Index c, Index ky, Index kx) const {
    return static_cast<std::size_t>(((o * cin + c) * k + ky) * k + kx);
  }
};

/// Direct convolution of one replica.
inline Values conv_forward(const ConvGeom& g, const Values& x, const Values& wt) {
  Values y(static_cast<std::size_t>(g.cout * g.n * g.oh() * g.ow()), 0.0);
  for (Index o = 0; o < g.cout; ++o)
    for (Index b = 0; b < g.n; ++b)
      for (Index oy = 0; oy < g.oh(); ++oy)
        for (Index ox = 0; ox < g.ow(); ++ox) {
          double s = 0.0;
          for (Index c = 0; c < g.cin; ++c)
            for (Index ky = 0; ky < g.k; ++ky)
              for (Index kx = 0; kx < g.k; ++kx) {
                const Index iy = oy * g.s - g.pad + ky, ix = ox * g.s - g.pad + kx;
                if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
                s += wt[g.wi(o, c, ky, kx)] * x[g.xi(c, b, iy, ix)];
              }
          y[g.yi(o, b, oy, ox)] = s;
        }
  return y;
}

/// dW and dx of one replica by scattering each output's gradient onto its inputs.
inline void conv_backward(const ConvGeom& g, const Values& x, const Values& wt, const Values& dy, Values& dw,
                          Values& dx) {
  dw.assign(wt.size(), 0.0);
  dx.assign(x.size(), 0.0);
  for (Index o = 0; o < g.cout; ++o)
    for (Index b = 0; b < g.n; ++b)
      for (Index oy = 0; oy < g.oh(); ++oy)
        for (Index ox = 0; ox < g.ow(); ++ox) {
          const double d = dy[g.yi(o, b, oy, ox)];
          for (Index c = 0; c < g.cin; ++c)
            for (Index ky = 0; ky < g.k; ++ky)
              for (Index kx = 0; kx < g.k; ++kx) {
                const Index iy = oy * g.s - g.pad + ky, ix = ox * g.s - g.pad + kx;
                if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
                dw[g.wi(o, c, ky, kx)] += d * x[g.xi(c, b, iy, ix)];
                dx[g.xi(c, b, iy, ix)] += d * wt[g.wi(o, c, ky, kx)];
              }
        }
}

/// Batch norm of one replica in training, statistics per channel over `groups` consecutive sample groups.
inline Values batchnorm_forward(Index channels, Index n, Index plane, Index groups, const Values& x,
                                const Values& gamma, const Values& beta, double eps) {
  Values y(x.size());
  const Index ng = n / groups;
  for (Index c = 0; c < channels; ++c)
    for (Index g = 0; g < groups; ++g) {
      std::vector<std::size_t> idx;
      for (Index b = g * ng; b < (g + 1) * ng; ++b)
        for (Index p = 0; p < plane; ++p) idx.push_back(static_cast<std::size_t>((c * n + b) * plane + p));
      double mean = 0.0;
      for (std::size_t i : idx) mean += x[i];
      mean /= static_cast<double>(idx.size());
      double var = 0.0;
      for (std::size_t i : idx) var += (x[i] - mean) * (x[i] - mean);
      var /= static_cast<double>(idx.size());
      for (std::size_t i : idx)
        y[i] = gamma[static_cast<std::size_t>(c)] * (x[i] - mean) / std::sqrt(var + eps) +
               beta[static_cast<std::size_t>(c)];
    }
  return y;
}

/// Softmax cross-entropy of one replica: class-major logits [class][sample]; the mean loss.
inline double softmax_xent(Index classes, Index n, const Values& z, const std::vector<Index>& labels,
                           Values* dz = nullptr) {
  double total = 0.0;
  if (dz != nullptr) dz->assign(z.size(), 0.0);
  for (Index b = 0; b < n; ++b) {
    double norm = 0.0;
    for (Index c = 0; c < classes; ++c) norm += std::exp(z[static_cast<std::size_t>(c * n + b)]);
    const Index y = labels[static_cast<std::size_t>(b)];
    total += std::log(norm) - z[static_cast<std::size_t>(y * n + b)];
    if (dz != nullptr)
      for (Index c = 0; c < classes; ++c)
        (*dz)[static_cast<std::size_t>(c * n + b)] =
            (std::exp(z[static_cast<std::size_t>(c * n + b)]) / norm - (c == y ? 1.0 : 0.0)) / static_cast<double>(n);
  }
  return total / static_cast<double>(n);
}

}  // namespace lgm::gpu::testing::nnref
