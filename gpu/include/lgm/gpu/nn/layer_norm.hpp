// Layer normalization over the C features of each token (docs/nn.md §Layer norm), in double:
//   μ = (1/C) Σ_c x_c,   σ² = (1/C) Σ_c (x_c − μ)²,   r = 1/√(σ² + ε),   x̂ = (x − μ) r,   y = γ x̂ + β,
// and the backward pass, with g = γ ⊙ dy,
//   dx = r (g − mean_c(g) − x̂ · mean_c(g ⊙ x̂)),   dγ = Σ_n dy ⊙ x̂,   dβ = Σ_n dy.
// The forward pass keeps μ and r of every token (the double arena) for the backward pass.
#pragma once

#include "lgm/core/error.hpp"
#include "lgm/gpu/nn/token.hpp"

namespace lgm::gpu::nn {

/// A layer norm over `features`, with scale γ and shift β tensors in the parameter table.
struct LayerNorm {
  Index features = 1;
  Index scale = 0;  ///< offset of γ
  Index shift = 0;  ///< offset of β
  double eps = 1e-5;
};

namespace detail {

/// Token mn: μ, r and y.
template <class T>
struct LayerNormFn {
  const T* x;
  const T* gamma;
  const T* beta;
  Index stride, tokens, features;
  double eps;
  T* y;
  double* mean;
  double* rstd;
  LGM_HD void operator()(Index mn) const {
    const T* row = x + mn * features;
    double s = 0.0;
    for (Index c = 0; c < features; ++c) s += static_cast<double>(row[c]);
    const double mu = s / static_cast<double>(features);
    double q = 0.0;
    for (Index c = 0; c < features; ++c) {
      const double d = static_cast<double>(row[c]) - mu;
      q += d * d;
    }
    const double r = 1.0 / math::sqrt(q / static_cast<double>(features) + eps);
    const Index m = mn / tokens;
    const T* g = gamma + m * stride;
    const T* b = beta + m * stride;
    T* out = y + mn * features;
    for (Index c = 0; c < features; ++c)
      out[c] = static_cast<T>(static_cast<double>(g[c]) * (static_cast<double>(row[c]) - mu) * r +
                              static_cast<double>(b[c]));
    mean[mn] = mu;
    rstd[mn] = r;
  }
};

/// Token mn: dx (may alias dy).
template <class T>
struct LayerNormInputGradFn {
  const T* x;
  const T* dy;
  const T* gamma;
  Index stride, tokens, features;
  const double* mean;
  const double* rstd;
  T* dx;
  LGM_HD void operator()(Index mn) const {
    const T* row = x + mn * features;
    const T* d = dy + mn * features;
    const T* g = gamma + (mn / tokens) * stride;
    const double mu = mean[mn], r = rstd[mn];
    double sg = 0.0, sgx = 0.0;
    for (Index c = 0; c < features; ++c) {
      const double gc = static_cast<double>(g[c]) * static_cast<double>(d[c]);
      sg += gc;
      sgx += gc * (static_cast<double>(row[c]) - mu) * r;
    }
    const double inv = 1.0 / static_cast<double>(features);
    T* out = dx + mn * features;
    for (Index c = 0; c < features; ++c) {
      const double xhat = (static_cast<double>(row[c]) - mu) * r;
      const double gc = static_cast<double>(g[c]) * static_cast<double>(d[c]);
      out[c] = static_cast<T>(r * (gc - sg * inv - xhat * sgx * inv));
    }
  }
};

/// Feature c of replica m: dγ, dβ ← β·(dγ, dβ) + Σ_n (dy x̂, dy), n in order.
template <class T>
struct LayerNormParamGradFn {
  const T* x;
  const T* dy;
  Index stride, tokens, features;
  const double* mean;
  const double* rstd;
  T* dgamma;
  T* dbeta;
  T beta;
  LGM_HD void operator()(Index mc) const {
    const Index m = mc / features, c = mc % features;
    double sg = 0.0, sb = 0.0;
    for (Index n = 0; n < tokens; ++n) {
      const Index mn = m * tokens + n;
      const double d = static_cast<double>(dy[mn * features + c]);
      sg += d * (static_cast<double>(x[mn * features + c]) - mean[mn]) * rstd[mn];
      sb += d;
    }
    T& og = dgamma[m * stride + c];
    T& ob = dbeta[m * stride + c];
    og = beta == T(0) ? static_cast<T>(sg) : beta * og + static_cast<T>(sg);
    ob = beta == T(0) ? static_cast<T>(sb) : beta * ob + static_cast<T>(sb);
  }
};

}  // namespace detail

/// y = LN(x) for every token of every replica; mean and rstd get shape.replicas · shape.tokens() doubles.
template <class T>
void layer_norm_forward(const Exec& exec, const LayerNorm& ln, const TokenShape& shape, const T* x, Params<const T> p,
                        T* y, double* mean, double* rstd) {
  lgm::detail::require(shape.features == ln.features, "LayerNorm (features)", shape.features,
                       "the layer's features " + lgm::detail::to_text(ln.features));
  detail::for_each_index(exec, shape.replicas * shape.tokens(),
                         detail::LayerNormFn<T>{x, p.data + ln.scale, p.data + ln.shift, p.stride, shape.tokens(),
                                                shape.features, ln.eps, y, mean, rstd});
}

/// dγ, dβ ← β·(dγ, dβ) + their gradients; dx from dy (dx may alias dy; then the parameter gradients are taken
/// first). x, mean and rstd are the forward pass's.
template <class T>
void layer_norm_backward(const Exec& exec, const LayerNorm& ln, const TokenShape& shape, const T* x, const T* dy,
                         Params<const T> p, Params<T> dp, const double* mean, const double* rstd, T* dx,
                         T beta = T(0)) {
  const Index N = shape.tokens(), C = shape.features;
  detail::for_each_index(exec, shape.replicas * C,
                         detail::LayerNormParamGradFn<T>{x, dy, dp.stride, N, C, mean, rstd, dp.data + ln.scale,
                                                         dp.data + ln.shift, beta});
  detail::for_each_index(exec, shape.replicas * N,
                         detail::LayerNormInputGradFn<T>{x, dy, p.data + ln.scale, p.stride, N, C, mean, rstd, dx});
}

}  // namespace lgm::gpu::nn
