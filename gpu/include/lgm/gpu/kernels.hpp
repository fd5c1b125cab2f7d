// Fused device kernels over all M replicas of a d × M column-major buffer (docs/gpu.md §Kernels):
// one launch covers every replica. Each kernel mirrors a host routine operation for operation, so T = double
// reproduces the host result bitwise where the host's arithmetic is elementwise (means, optimizer steps), and
// every reduction has a fixed order that depends on the shape only, never on the thread count or the device.
#pragma once

#include <thrust/fill.h>
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include <algorithm>
#include <cmath>
#include <concepts>
#include <span>
#include <type_traits>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/gpu/backend.hpp"
#include "lgm/gpu/storage.hpp"

namespace lgm::gpu {

/// The element types of device buffers: fp32 (the default, master weights) and fp64 (the exactness tests).
template <class T>
concept DeviceScalar = std::same_as<T, float> || std::same_as<T, double>;

namespace detail {

using Counter = thrust::counting_iterator<Index>;

template <class T>
void require_same_shape(DeviceMatrixView<const T> a, DeviceMatrixView<const T> b, const char* what) {
  lgm::detail::require(a.rows() == b.rows() && a.cols() == b.cols(), what, b.rows() * b.cols(),
                       "a matrix of the same shape as the first argument");
}

// ---------------------------------------------------------------- averaging

// out[i] = (X(i, first) + X(i, first+1) + … ) / count, summed in column order in double: for T = double this
// is InProcessCommunicator::column_mean exactly; division (not ·1/count) keeps count = 1 bitwise the identity.
// Each thread reads its whole row before writing it, so out may alias column `first`.
template <class T>
struct ColumnMeanFn {
  const T* x;
  T* out;
  Index rows;
  Index first;
  Index count;
  LGM_HD void operator()(Index i) const {
    const T* p = x + first * rows + i;
    double acc = static_cast<double>(p[0]);
    for (Index c = 1; c < count; ++c) acc += static_cast<double>(p[c * rows]);
    out[i] = static_cast<T>(acc / static_cast<double>(count));
  }
};

// Thread k handles row k % rows of group k / rows (adjacent threads touch adjacent rows: coalesced).
template <class T>
struct GroupAverageFn {
  T* x;
  Index rows;
  Index group;
  LGM_HD void operator()(Index k) const {
    T* p = x + (k / rows) * group * rows + k % rows;
    double acc = static_cast<double>(p[0]);
    for (Index c = 1; c < group; ++c) acc += static_cast<double>(p[c * rows]);
    const T v = static_cast<T>(acc / static_cast<double>(group));
    for (Index c = 0; c < group; ++c) p[c * rows] = v;
  }
};

template <class T>
struct BroadcastFn {
  const T* x;
  T* out;
  Index rows;
  LGM_HD void operator()(Index k) const { out[k] = x[k % rows]; }
};

// ---------------------------------------------------------------- per-column reductions

// Values summed by a column reduction: a², a·b (both in double), or an already reduced partial.
template <class T>
struct SquareTerm {
  const T* a;
  LGM_HD double operator()(Index k) const {
    const double v = static_cast<double>(a[k]);
    return v * v;
  }
};
template <class T>
struct DotTerm {
  const T* a;
  const T* b;
  LGM_HD double operator()(Index k) const { return static_cast<double>(a[k]) * static_cast<double>(b[k]); }
};
struct PartialTerm {
  const double* p;
  LGM_HD double operator()(Index k) const { return p[k]; }
};

// out(j, m) = Σ_{k ≡ j mod parts, k < len} term(m·len + k), k ascending. Thread j of a column reads elements
// j, j + parts, … so neighbouring threads read neighbouring addresses; the order depends on (len, parts) only.
template <class Term>
struct StridedColumnSumFn {
  Term term;
  double* out;
  Index len;
  Index parts;
  LGM_HD void operator()(Index t) const {
    const Index m = t / parts;
    const Index j = t % parts;
    const Index base = m * len;
    double acc = 0.0;
    for (Index k = j; k < len; k += parts) acc += term(base + k);
    out[t] = acc;
  }
};

// Terms per thread and per level of the reduction tree: enough work per thread, and few levels (rows = 10⁷
// takes five launches).
inline constexpr Index reduction_fan_in = 32;

// Sums the `len` terms of each of `cols` columns into out (host, cols entries). Level 0 reduces each column to
// ⌈len / fan-in⌉ partials, every further level divides their number by the fan-in until one is left. The tree
// depends on the shape only, so the result is the same for every thread count (and every run).
template <class Term>
void column_sums(Term term, Index len, Index cols, std::span<double> out, StreamHandle s) {
  lgm::detail::require(static_cast<Index>(out.size()) == cols, "column reduction output size",
                       static_cast<Index>(out.size()), "one entry per column");
  if (cols == 0) return;
  if (len == 0) {
    std::fill(out.begin(), out.end(), 0.0);
    return;
  }
  auto parts_after = [](Index n) {
    return n <= reduction_fan_in ? Index{1} : (n + reduction_fan_in - 1) / reduction_fan_in;
  };
  Index parts = parts_after(len);
  DeviceBuffer<double> cur(parts * cols, s);
  thrust::for_each(policy(s), Counter(0), Counter(parts * cols),
                   StridedColumnSumFn<Term>{term, cur.data(), len, parts});
  while (parts > 1) {
    const Index next = parts_after(parts);
    DeviceBuffer<double> nxt(next * cols, s);
    thrust::for_each(policy(s), Counter(0), Counter(next * cols),
                     StridedColumnSumFn<PartialTerm>{PartialTerm{cur.data()}, nxt.data(), parts, next});
    cur = std::move(nxt);
    parts = next;
  }
  copy_to_host(out.data(), cur.data(), static_cast<std::size_t>(cols) * sizeof(double), s);
}

// 1 for a NaN or ±∞ entry: all_finite counts them with the fixed-order column sums (no thrust::all_of, whose
// OpenMP path binds a reference to a null execution policy, undefined behaviour that UBSan reports).
template <class T>
struct NonFiniteTerm {
  const T* a;
  LGM_HD double operator()(Index k) const { return math::isfinite(a[k]) ? 0.0 : 1.0; }
};

// ---------------------------------------------------------------- optimizer steps
// Each functor repeats the host optimizer's Eigen expression per coefficient, in the same order
// (include/lgm/optim/*.hpp); coefficients arrive as double and are rounded to T once.

template <class T>
struct SgdFn {
  T* x;
  const T* g;
  T lr;
  T weight_decay;
  bool decay;
  LGM_HD void operator()(Index k) const {
    if (decay) {
      x[k] = x[k] - lr * (g[k] + weight_decay * x[k]);  // sgd.hpp: x -= lr·(g + λx)
    } else {
      x[k] = x[k] - lr * g[k];
    }
  }
};

template <class T, bool Nesterov>
struct MomentumFn {
  T* x;
  const T* g;
  T* u;
  T lr;
  T momentum;
  T weight_decay;
  bool decay;
  LGM_HD void operator()(Index k) const {
    const T d = decay ? g[k] + weight_decay * x[k] : g[k];  // d = g + λx (docs/optimizers.md §HeavyBall)
    const T un = momentum * u[k] + d;                       // u ← βu + d
    u[k] = un;
    if constexpr (Nesterov) {
      x[k] = x[k] - lr * (d + momentum * un);  // nesterov.hpp: x −= lr·(d + βu)
    } else {
      x[k] = x[k] - lr * un;  // heavy_ball.hpp: x −= lr·u
    }
  }
};

template <class T>
struct AdamWFn {
  T* x;
  const T* g;
  T* s1;
  T* s2;
  T beta1;
  T one_minus_beta1;
  T beta2;
  T one_minus_beta2;
  T decay_factor;  // 1 − lr·λ
  bool decay;
  T step_size;              // lr / (1 − β1^t)
  T bias_correction2_sqrt;  // √(1 − β2^t)
  T eps;
  const T* mask;  // d values, 1 where λ applies; null: everywhere
  const T* clip;  // a gradient factor per column (global-norm clipping); null: none
  Index rows;
  LGM_HD void operator()(Index k) const {
    const T gk = clip != nullptr ? clip[k / rows] * g[k] : g[k];
    const T m1 = beta1 * s1[k] + one_minus_beta1 * gk;
    const T m2 = beta2 * s2[k] + one_minus_beta2 * (gk * gk);
    s1[k] = m1;
    s2[k] = m2;
    T xk = x[k];
    // decoupled decay of the pre-step x
    if (decay && (mask == nullptr || mask[k % rows] != T(0))) xk = xk * decay_factor;
    x[k] = xk - step_size * (m1 / (math::sqrt(m2) / bias_correction2_sqrt + eps));  // addcdiv order
  }
};

}  // namespace detail

// ==================================================================== averaging and copies

/// out[i] = (Σ_{c = first}^{first+count−1} X(i, c)) / count, columns added in ascending order (accumulated in
/// double, divided by count): for T = double bitwise InProcessCommunicator's column mean, so count = 1 leaves
/// the column unchanged. `out` may alias column `first` of X.
template <DeviceScalar T>
void column_mean(std::type_identity_t<DeviceMatrixView<const T>> X, Index first, Index count, DeviceVectorView<T> out,
                 StreamHandle s) {
  lgm::detail::require(count >= 1 && first >= 0 && first + count <= X.cols(), "column_mean (columns)", count,
                       "a range of >= 1 columns inside the matrix");
  lgm::detail::require(out.size() == X.rows(), "column_mean (output size)", out.size(), "the matrix's rows");
  thrust::for_each(policy(s), detail::Counter(0), detail::Counter(X.rows()),
                   detail::ColumnMeanFn<T>{X.data(), out.data(), X.rows(), first, count});
}

/// Copies x into every column of X.
template <DeviceScalar T>
void broadcast(std::type_identity_t<DeviceVectorView<const T>> x, DeviceMatrixView<T> X, StreamHandle s) {
  lgm::detail::require(x.size() == X.rows(), "broadcast (size)", x.size(), "the matrix's rows");
  thrust::for_each(policy(s), detail::Counter(0), detail::Counter(X.size()),
                   detail::BroadcastFn<T>{x.data(), X.data(), X.rows()});
}

/// Every column ← the mean of its group of `group` consecutive columns (docs/sync_rules.md §HierarchicalSync),
/// with column_mean's arithmetic; all groups in one launch.
template <DeviceScalar T>
void group_average(DeviceMatrixView<T> X, Index group, StreamHandle s) {
  lgm::detail::require(group >= 1 && X.cols() % group == 0, "group_size", group, "a divisor of M >= 1");
  thrust::for_each(policy(s), detail::Counter(0), detail::Counter(X.rows() * (X.cols() / group)),
                   detail::GroupAverageFn<T>{X.data(), X.rows(), group});
}

// ==================================================================== statistics (docs/batch_rules.md §Cheap forms)

/// out[m] = ‖A.col(m)‖², accumulated in double with a fixed reduction tree (same result for every thread
/// count). A may be a view of T or of const T. Returns after the values are on the host.
template <class U>
void column_squared_norms(DeviceMatrixView<U> A, std::span<double> out, StreamHandle s) {
  using T = std::remove_const_t<U>;
  static_assert(DeviceScalar<T>, "column_squared_norms: the matrix must hold float or double");
  detail::column_sums(detail::SquareTerm<T>{A.data()}, A.rows(), A.cols(), out, s);
}

/// out[m] = ⟨A.col(m), B.col(m)⟩, accumulated in double like column_squared_norms.
template <class U, class V>
void column_dots(DeviceMatrixView<U> A, DeviceMatrixView<V> B, std::span<double> out, StreamHandle s) {
  using T = std::remove_const_t<U>;
  static_assert(DeviceScalar<T>, "column_dots: the matrices must hold float or double");
  static_assert(std::is_same_v<T, std::remove_const_t<V>>, "column_dots: both matrices must hold the same type");
  detail::require_same_shape<T>(A, B, "column_dots (shape)");
  detail::column_sums(detail::DotTerm<T>{A.data(), B.data()}, A.rows(), A.cols(), out, s);
}

/// ‖x‖² in double (e.g. ‖ḡ‖² of the norm test), with column_squared_norms' reduction.
template <class U>
double squared_norm(DeviceVectorView<U> x, StreamHandle s) {
  double r = 0.0;
  column_squared_norms(DeviceMatrixView<U>(x.data(), x.size(), 1), std::span<double>(&r, 1), s);
  return r;
}

/// Whether no entry is NaN or ±∞.
template <class U>
bool all_finite(DeviceVectorView<U> x, StreamHandle s) {
  using T = std::remove_const_t<U>;
  static_assert(DeviceScalar<T>, "all_finite: the vector must hold float or double");
  double count = 0.0;
  detail::column_sums(detail::NonFiniteTerm<T>{x.data()}, x.size(), 1, std::span<double>(&count, 1), s);
  return count == 0.0;
}
template <class U>
bool all_finite(DeviceMatrixView<U> X, StreamHandle s) {
  return all_finite(DeviceVectorView<U>(X.data(), X.size()), s);
}

/// Sets every entry to zero (fresh optimizer state: buffers start at 0, docs/optimizers.md §HeavyBall).
template <DeviceScalar T>
void fill_zero(DeviceMatrixView<T> X, StreamHandle s) {
  thrust::fill(policy(s), X.data(), X.data() + X.size(), T(0));
}

// ==================================================================== fused optimizer steps
// One launch updates all M replicas: X, G and the state are d × M, column m belongs to worker m, and every
// worker steps with the same lr (the driver's step loop). Arithmetic as include/lgm/optim/*.hpp.

/// SGD (sgd.hpp, docs/optimizers.md §SGD): x ← x − lr·(g + λx); λ = 0 skips the term as PyTorch does.
template <DeviceScalar T>
void sgd_step(DeviceMatrixView<T> X, std::type_identity_t<DeviceMatrixView<const T>> G, double lr, double weight_decay,
              StreamHandle s) {
  detail::require_same_shape<T>(X, G, "sgd_step (gradient shape)");
  thrust::for_each(
      policy(s), detail::Counter(0), detail::Counter(X.size()),
      detail::SgdFn<T>{X.data(), G.data(), static_cast<T>(lr), static_cast<T>(weight_decay), weight_decay != 0.0});
}

/// Heavy ball (heavy_ball.hpp, docs/optimizers.md §HeavyBall; dampening 0, u₀ = 0): u ← βu + (g + λx), x ← x − lr·u.
template <DeviceScalar T>
void heavy_ball_step(DeviceMatrixView<T> X, std::type_identity_t<DeviceMatrixView<const T>> G, DeviceMatrixView<T> U,
                     double lr, double momentum, double weight_decay, StreamHandle s) {
  detail::require_same_shape<T>(X, G, "heavy_ball_step (gradient shape)");
  detail::require_same_shape<T>(X, U, "heavy_ball_step (momentum shape)");
  thrust::for_each(
      policy(s), detail::Counter(0), detail::Counter(X.size()),
      detail::MomentumFn<T, false>{X.data(), G.data(), U.data(), static_cast<T>(lr), static_cast<T>(momentum),
                                   static_cast<T>(weight_decay), weight_decay != 0.0});
}

/// Nesterov (nesterov.hpp, PyTorch form): u ← βu + (g + λx), x ← x − lr·((g + λx) + βu).
template <DeviceScalar T>
void nesterov_step(DeviceMatrixView<T> X, std::type_identity_t<DeviceMatrixView<const T>> G, DeviceMatrixView<T> U,
                   double lr, double momentum, double weight_decay, StreamHandle s) {
  detail::require_same_shape<T>(X, G, "nesterov_step (gradient shape)");
  detail::require_same_shape<T>(X, U, "nesterov_step (momentum shape)");
  thrust::for_each(
      policy(s), detail::Counter(0), detail::Counter(X.size()),
      detail::MomentumFn<T, true>{X.data(), G.data(), U.data(), static_cast<T>(lr), static_cast<T>(momentum),
                                  static_cast<T>(weight_decay), weight_decay != 0.0});
}

/// The scalars of one AdamW step, computed on the host in double exactly as adamw.hpp does.
struct AdamWCoefficients {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;           ///< λ: the decay is applied when λ ≠ 0
  double decay_factor = 1.0;           ///< 1 − lr·λ
  double step_size = 0.0;              ///< lr / (1 − β1^t)
  double bias_correction2_sqrt = 1.0;  ///< √(1 − β2^t)

  /// The coefficients of step t ≥ 1 (docs/optimizers.md §AdamW).
  static AdamWCoefficients at(double lr, double beta1, double beta2, double eps, double weight_decay, Index t) {
    const double td = static_cast<double>(t);
    AdamWCoefficients c;
    c.beta1 = beta1;
    c.beta2 = beta2;
    c.eps = eps;
    c.weight_decay = weight_decay;
    c.decay_factor = 1.0 - lr * weight_decay;
    c.step_size = lr / (1.0 - std::pow(beta1, td));
    c.bias_correction2_sqrt = std::sqrt(1.0 - std::pow(beta2, td));
    return c;
  }
};

/// AdamW (adamw.hpp, docs/optimizers.md §AdamW): s1 ← β1·s1 + (1−β1)·g, s2 ← β2·s2 + (1−β2)·g²,
/// x ← x(1 − lr·λ) − step_size·s1 / (√s2 / √(1−β2^t) + ε); the decay only where `mask` (d values) is 1 unless
/// null, and column m's g scaled by clip[m] first unless null (docs/optimizers.md §Decay mask and clipping).
template <DeviceScalar T>
void adamw_step(DeviceMatrixView<T> X, std::type_identity_t<DeviceMatrixView<const T>> G, DeviceMatrixView<T> S1,
                DeviceMatrixView<T> S2, const AdamWCoefficients& c, StreamHandle s, const T* mask = nullptr,
                const T* clip = nullptr) {
  detail::require_same_shape<T>(X, G, "adamw_step (gradient shape)");
  detail::require_same_shape<T>(X, S1, "adamw_step (first moment shape)");
  detail::require_same_shape<T>(X, S2, "adamw_step (second moment shape)");
  thrust::for_each(
      policy(s), detail::Counter(0), detail::Counter(X.size()),
      detail::AdamWFn<T>{X.data(), G.data(), S1.data(), S2.data(), static_cast<T>(c.beta1),
                         static_cast<T>(1.0 - c.beta1), static_cast<T>(c.beta2), static_cast<T>(1.0 - c.beta2),
                         static_cast<T>(c.decay_factor), c.weight_decay != 0.0, static_cast<T>(c.step_size),
                         static_cast<T>(c.bias_correction2_sqrt), static_cast<T>(c.eps), mask, clip, X.rows()});
}

}  // namespace lgm::gpu
