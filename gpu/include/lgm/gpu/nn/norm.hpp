// Batch normalization per replica (docs/nn.md §Batch normalization). In training, the statistics of channel c
// are those of one replica's batch — or of one of its G micro-batches ("ghost" batch norm, which keeps the
// micro-batches of the batch-size tests independent): over the S = (N/G)·H·W values of the group,
//   μ = (1/S) Σ x,   σ² = (1/S) Σ (x − μ)²,   x̂ = (x − μ)/√(σ² + ε),   y = γ x̂ + β,
// and the backward pass, with the sums over the same group,
//   dβ = Σ dy,   dγ = Σ dy·x̂,   dx = (γ/√(σ² + ε)) · (dy − dβ/S − x̂·dγ/S).
// Running statistics follow PyTorch: r_μ ← (1 − m) r_μ + m μ, r_σ² ← (1 − m) r_σ² + m σ² S/(S − 1), with μ, σ²
// the means over the G groups of their statistics. Statistics are summed in double, in a fixed order.
#pragma once

#include <cmath>

#include "lgm/core/error.hpp"
#include "lgm/gpu/nn/common.hpp"

namespace lgm::gpu::nn {

/// A batch norm over `channels`, with scale γ and shift β tensors in the parameter table.
struct BatchNorm {
  Index channels = 1;
  Index scale = 0;  ///< offset of γ
  Index shift = 0;  ///< offset of β
  double eps = 1e-5;
  double momentum = 0.1;
};

namespace detail {

/// Index of the (replica, group, channel) statistics of element e of x (stats are [replica][group][channel]).
struct NormGroups {
  Index channels, batch, plane, groups;
  LGM_HD Index group_size() const { return batch / groups; }
  /// first element and length of group (m, g, c)
  LGM_HD Index first(Index m, Index g, Index c) const {
    return ((m * channels + c) * batch + g * group_size()) * plane;
  }
  LGM_HD Index length() const { return group_size() * plane; }
  LGM_HD Index stat_of(Index e) const {
    const Index per_replica = channels * batch * plane;
    const Index m = e / per_replica, c = (e / (batch * plane)) % channels, n = (e / plane) % batch;
    return (m * groups + n / group_size()) * channels + c;
  }
};

/// Values a call of the per-value batch-norm functors computes: one on CUDA (a thread a value), a whole plane
/// (one sample's channel, which shares its statistics) on the host, where the index arithmetic is the cost.
LGM_HD inline Index plane_span(const NormGroups& gr) { return LGM_GPU_CUDA ? 1 : gr.plane; }
inline Index plane_calls(const NormGroups& gr, Index values) { return values / plane_span(gr); }

/// mean and 1/√(σ² + ε) of group (m, g, c) = index q of the [replica][group][channel] statistics; σ² also.
template <class T>
struct NormStatsFn {
  const T* x;
  double* mean;
  double* var;
  double* rstd;
  NormGroups gr;
  double eps;
  LGM_HD void operator()(Index q) const {
    const Index c = q % gr.channels, g = (q / gr.channels) % gr.groups, m = q / (gr.channels * gr.groups);
    const T* p = x + gr.first(m, g, c);
    const Index n = gr.length();
    double s = 0.0;
    for (Index i = 0; i < n; ++i) s += static_cast<double>(p[i]);
    const double mu = s / static_cast<double>(n);
    double ss = 0.0;  // two passes: no cancellation in σ²
    for (Index i = 0; i < n; ++i) {
      const double d = static_cast<double>(p[i]) - mu;
      ss += d * d;
    }
    const double v = ss / static_cast<double>(n);
    mean[q] = mu;
    var[q] = v;
    rstd[q] = 1.0 / ::sqrt(v + eps);
  }
};

/// y = γ (x − μ) r + β with the statistics of e's group (training) or the running ones (evaluation: groups = 1).
template <class T>
struct NormApplyFn {
  const T* x;
  T* y;
  const double* mean;
  const double* rstd;
  const T* params;
  Index stride, scale, shift;
  NormGroups gr;
  LGM_HD void operator()(Index call) const {
    const Index span = plane_span(gr), e0 = call * span;  // one statistic for the span (docs/nn.md §Layout)
    const Index q = gr.stat_of(e0);
    const Index m = e0 / (gr.channels * gr.batch * gr.plane), c = q % gr.channels;
    const T* pm = params + m * stride;
    const double gamma = static_cast<double>(pm[scale + c]), beta = static_cast<double>(pm[shift + c]);
    for (Index e = e0; e < e0 + span; ++e)
      y[e] = static_cast<T>(gamma * ((static_cast<double>(x[e]) - mean[q]) * rstd[q]) + beta);
  }
};

/// The running statistics of (m, c) from the group statistics (means over the groups).
template <class T>
struct NormRunningFn {
  const double* mean;
  const double* var;
  T* running_mean;
  T* running_var;
  Index channels, groups, group_length, running_stride;
  double momentum;
  LGM_HD void operator()(Index mc) const {
    const Index m = mc / channels, c = mc % channels;
    const Index r = m * running_stride + c;
    double mu = 0.0, v = 0.0;
    for (Index g = 0; g < groups; ++g) {
      mu += mean[(m * groups + g) * channels + c];
      v += var[(m * groups + g) * channels + c];
    }
    mu /= static_cast<double>(groups);
    v /= static_cast<double>(groups);
    const double n = static_cast<double>(group_length);
    const double unbiased = n > 1.0 ? v * n / (n - 1.0) : v;
    running_mean[r] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_mean[r]) + momentum * mu);
    running_var[r] = static_cast<T>((1.0 - momentum) * static_cast<double>(running_var[r]) + momentum * unbiased);
  }
};

/// The statistics of evaluation, from the running ones: mean = r_μ, rstd = 1/√(r_σ² + ε).
template <class T>
struct RunningToStatsFn {
  const T* running_mean;
  const T* running_var;
  double* mean;
  double* rstd;
  double eps;
  Index channels, running_stride;
  LGM_HD void operator()(Index mc) const {
    const Index r = (mc / channels) * running_stride + mc % channels;
    mean[mc] = static_cast<double>(running_mean[r]);
    rstd[mc] = 1.0 / ::sqrt(static_cast<double>(running_var[r]) + eps);
  }
};

/// The group sums Σ dy and Σ dy·x̂ of group q (into sums[2q], sums[2q + 1]).
template <class T>
struct NormGradSumsFn {
  const T* x;
  const T* dy;
  const double* mean;
  const double* rstd;
  double* sums;
  NormGroups gr;
  LGM_HD void operator()(Index q) const {
    const Index c = q % gr.channels, g = (q / gr.channels) % gr.groups, m = q / (gr.channels * gr.groups);
    const Index first = gr.first(m, g, c), n = gr.length();
    double sb = 0.0, sg = 0.0;
    for (Index i = 0; i < n; ++i) {
      const double d = static_cast<double>(dy[first + i]);
      sb += d;
      sg += d * (static_cast<double>(x[first + i]) - mean[q]) * rstd[q];
    }
    sums[2 * q] = sb;
    sums[2 * q + 1] = sg;
  }
};

/// dγ_m[c], dβ_m[c] ← β·(…) + the sums over the groups of (m, c).
template <class T>
struct NormParamGradFn {
  const double* sums;
  T* grads;
  Index stride, scale, shift, channels, groups;
  T beta;
  LGM_HD void operator()(Index mc) const {
    const Index m = mc / channels, c = mc % channels;
    double sb = 0.0, sg = 0.0;
    for (Index g = 0; g < groups; ++g) {
      const Index q = (m * groups + g) * channels + c;
      sb += sums[2 * q];
      sg += sums[2 * q + 1];
    }
    T* gm = grads + m * stride;
    gm[shift + c] = beta == T(0) ? static_cast<T>(sb) : beta * gm[shift + c] + static_cast<T>(sb);
    gm[scale + c] = beta == T(0) ? static_cast<T>(sg) : beta * gm[scale + c] + static_cast<T>(sg);
  }
};

/// dx = γ r (dy − Σdy/S − x̂ Σdy·x̂/S) with the sums of e's group.
template <class T>
struct NormInputGradFn {
  const T* x;
  const T* dy;
  T* dx;
  const double* mean;
  const double* rstd;
  const double* sums;
  const T* params;
  Index stride, scale;
  NormGroups gr;
  LGM_HD void operator()(Index call) const {
    const Index span = plane_span(gr), e0 = call * span;
    const Index q = gr.stat_of(e0);
    const Index m = e0 / (gr.channels * gr.batch * gr.plane), c = q % gr.channels;
    const double n = static_cast<double>(gr.length());
    const double gamma = static_cast<double>(params[m * stride + scale + c]);
    for (Index e = e0; e < e0 + span; ++e) {
      const double xhat = (static_cast<double>(x[e]) - mean[q]) * rstd[q];
      dx[e] =
          static_cast<T>(gamma * rstd[q] * (static_cast<double>(dy[e]) - sums[2 * q] / n - xhat * sums[2 * q + 1] / n));
    }
  }
};

inline NormGroups norm_groups(const BatchNorm& bn, const ActShape& in, Index groups) {
  lgm::detail::require(in.channels == bn.channels, "BatchNorm (input channels)", in.channels,
                       "the layer's channels = " + lgm::detail::to_text(bn.channels));
  lgm::detail::require(groups >= 1 && in.batch % groups == 0, "BatchNorm (groups)", groups,
                       "a divisor of the batch = " + lgm::detail::to_text(in.batch));
  return {in.channels, in.batch, in.plane(), groups};
}

}  // namespace detail

/// Workspace of a batch norm in training: statistics (mean, σ², 1/√(σ²+ε)) of every group, and the backward's
/// sums; [replica][group][channel], in double. The forward fills mean/var/rstd, the backward reads them.
struct NormStats {
  double* mean = nullptr;
  double* var = nullptr;
  double* rstd = nullptr;
  double* sums = nullptr;  ///< 2 values a group
  /// doubles needed for `groups` groups of `in`
  static Index size(const ActShape& in, Index groups) { return 5 * in.replicas * groups * in.channels; }
  /// carves the four arrays out of `size()` doubles at `base`
  static NormStats at(double* base, const ActShape& in, Index groups) {
    const Index q = in.replicas * groups * in.channels;
    return {base, base + q, base + 2 * q, base + 3 * q};
  }
};

/// Training forward: y = BN(x) with the statistics of each replica's batch (or of each of its `groups`
/// micro-batches); when running_mean is not null the running statistics are updated: replica m's channel c at
/// [m·running_stride + c] (running_stride 0: the channels, i.e. [replica][channel]).
template <class T>
void batchnorm_forward_train(const Exec& exec, const BatchNorm& bn, const ActShape& in, Index groups, const T* x,
                             Params<const T> p, T* y, NormStats stats, T* running_mean = nullptr,
                             T* running_var = nullptr, Index running_stride = 0) {
  const detail::NormGroups gr = detail::norm_groups(bn, in, groups);
  const Index q = in.replicas * groups * in.channels;
  detail::for_each_index(exec, q, detail::NormStatsFn<T>{x, stats.mean, stats.var, stats.rstd, gr, bn.eps});
  detail::for_each_index(
      exec, detail::plane_calls(gr, in.size()),
      detail::NormApplyFn<T>{x, y, stats.mean, stats.rstd, p.data, p.stride, bn.scale, bn.shift, gr});
  if (running_mean != nullptr)
    detail::for_each_index(
        exec, in.replicas * in.channels,
        detail::NormRunningFn<T>{stats.mean, stats.var, running_mean, running_var, in.channels, groups, gr.length(),
                                 running_stride == 0 ? in.channels : running_stride, bn.momentum});
}

/// Evaluation forward: y = γ (x − r_μ)/√(r_σ² + ε) + β with each replica's running statistics (laid out as
/// in batchnorm_forward_train). `stats` provides scratch for the converted statistics (NormStats::size(in, 1)).
template <class T>
void batchnorm_forward_eval(const Exec& exec, const BatchNorm& bn, const ActShape& in, const T* x, Params<const T> p,
                            const T* running_mean, const T* running_var, T* y, NormStats stats,
                            Index running_stride = 0) {
  const detail::NormGroups gr = detail::norm_groups(bn, in, 1);
  detail::for_each_index(exec, in.replicas * in.channels,
                         detail::RunningToStatsFn<T>{running_mean, running_var, stats.mean, stats.rstd, bn.eps,
                                                     in.channels, running_stride == 0 ? in.channels : running_stride});
  detail::for_each_index(
      exec, detail::plane_calls(gr, in.size()),
      detail::NormApplyFn<T>{x, y, stats.mean, stats.rstd, p.data, p.stride, bn.scale, bn.shift, gr});
}

/// Training backward: dγ, dβ ← β·(…) + their gradients, and dx (may alias dy) from the forward's statistics.
template <class T>
void batchnorm_backward(const Exec& exec, const BatchNorm& bn, const ActShape& in, Index groups, const T* x,
                        const T* dy, Params<const T> p, Params<T> dp, T* dx, NormStats stats, T beta = T(0)) {
  const detail::NormGroups gr = detail::norm_groups(bn, in, groups);
  const Index q = in.replicas * groups * in.channels;
  detail::for_each_index(exec, q, detail::NormGradSumsFn<T>{x, dy, stats.mean, stats.rstd, stats.sums, gr});
  detail::for_each_index(
      exec, in.replicas * in.channels,
      detail::NormParamGradFn<T>{stats.sums, dp.data, dp.stride, bn.scale, bn.shift, in.channels, groups, beta});
  detail::for_each_index(
      exec, detail::plane_calls(gr, in.size()),
      detail::NormInputGradFn<T>{x, dy, dx, stats.mean, stats.rstd, stats.sums, p.data, p.stride, bn.scale, gr});
}

}  // namespace lgm::gpu::nn
