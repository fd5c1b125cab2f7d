// Data containers, input checks, spectral helpers and seeded synthetic-data generators shared by the test
// problems of lgm/problems/ (docs/problems.md). Every data matrix is d × N column-major with one
// sample per column, so that a sample's features are contiguous.
#pragma once

#include <Eigen/Core>
#include <Eigen/Eigenvalues>
#include <Eigen/QR>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <numbers>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace lgm {

/// Features with real targets (regression): column i of `features` is a_i, `targets[i]` is y_i.
struct RegressionData {
  Matrix features;  ///< d × N
  Vector targets;   ///< N
};

/// Features with binary labels y_i ∈ {−1, +1}.
struct BinaryData {
  Matrix features;  ///< d × N
  Vector labels;    ///< N, each −1 or +1
};

/// Features with class labels y_i ∈ {0, …, classes − 1}.
struct ClassificationData {
  Matrix features;            ///< d × N
  std::vector<Index> labels;  ///< N
  Index classes = 2;          ///< C
};

namespace detail {

/// Builds the DataError message in the same shape as ConfigError's: "invalid NAME = VALUE (accepted: ...)".
inline DataError data_error(std::string_view name, std::string_view value, std::string_view accepted) {
  return DataError(invalid_message(name, value, accepted));
}

/// Rejects a matrix with a non-finite entry, naming the entry by row and column.
inline void check_finite(const Matrix& m, std::string_view name, std::string_view accepted = "finite numbers") {
  for (Index c = 0; c < m.cols(); ++c)
    for (Index r = 0; r < m.rows(); ++r)
      if (!std::isfinite(m(r, c)))
        throw data_error(std::string(name) + " entry (row " + to_text(r) + ", column " + to_text(c) + ")",
                         to_text(m(r, c)), accepted);
}

/// Rejects an empty or non-finite feature matrix; names the offending entry by row (feature) and column (sample).
inline void check_features(const Matrix& features, std::string_view name = "features") {
  if (features.rows() < 1 || features.cols() < 1)
    throw data_error(std::string(name) + " (shape)", to_text(features.rows()) + " x " + to_text(features.cols()),
                     "d x N with d >= 1 features (rows) and N >= 1 samples (columns)");
  check_finite(features, name, "finite numbers; row = feature, column = sample");
}

/// Rejects a per-sample vector whose length is not the number of samples N.
inline void check_sample_count(std::string_view name, Index size, Index samples) {
  if (size != samples)
    throw data_error(std::string(name) + " (size)", to_text(size),
                     "one entry per sample, N = " + to_text(samples) + " (the features' column count)");
}

/// Regression targets: one finite value per sample.
inline void check_targets(const Vector& targets, Index samples, std::string_view name = "targets") {
  check_sample_count(name, targets.size(), samples);
  for (Index i = 0; i < targets.size(); ++i)
    if (!std::isfinite(targets[i]))
      throw data_error(std::string(name) + "[" + to_text(i) + "]", to_text(targets[i]), "finite numbers");
}

/// Binary labels: one per sample, each exactly −1 or +1.
inline void check_binary_labels(const Vector& labels, Index samples, std::string_view name = "labels") {
  check_sample_count(name, labels.size(), samples);
  for (Index i = 0; i < labels.size(); ++i)
    if (labels[i] != 1.0 && labels[i] != -1.0)
      throw data_error(std::string(name) + "[" + to_text(i) + "]", to_text(labels[i]),
                       "-1 or +1 (map 0/1 labels with 2y - 1)");
}

/// Class labels: C >= 2 and one label per sample in [0, C − 1].
inline void check_class_labels(const std::vector<Index>& labels, Index classes, Index samples,
                               std::string_view name = "labels") {
  require_at_least("classes", classes, Index{2});
  check_sample_count(name, static_cast<Index>(labels.size()), samples);
  for (std::size_t i = 0; i < labels.size(); ++i)
    if (labels[i] < 0 || labels[i] >= classes)
      throw data_error(std::string(name) + "[" + to_text(i) + "]", to_text(labels[i]),
                       "an integer in [0, " + to_text(classes - 1) + "] (classes = " + to_text(classes) + ")");
}

/// Eigenvalues, ascending, of the second-moment matrix AAᵀ/N of a d × N feature matrix, with eigenvalues
/// below the solver's rounding level (d·N·ε·λ_max) set to exactly 0, so rank-deficient data give μ = 0.
inline Eigen::SelfAdjointEigenSolver<Matrix> gram_eigensystem(const Matrix& features) {
  const Index d = features.rows();
  Matrix gram = Matrix::Zero(d, d);
  gram.selfadjointView<Eigen::Lower>().rankUpdate(features, 1.0 / static_cast<double>(features.cols()));
  gram.triangularView<Eigen::StrictlyUpper>() = gram.transpose();
  return Eigen::SelfAdjointEigenSolver<Matrix>(gram);
}

/// Sets eigenvalues within rounding of zero to exactly zero (and clamps tiny negatives of a PSD matrix).
inline Vector clamp_rounding_eigenvalues(Vector ev, Index n) {
  const double top = ev.size() > 0 ? ev.cwiseAbs().maxCoeff() : 0.0;
  const double tol = static_cast<double>(n) * std::numeric_limits<double>::epsilon() * top;
  for (Index j = 0; j < ev.size(); ++j)
    if (std::abs(ev[j]) <= tol) ev[j] = 0.0;
  return ev;
}

/// λ_max(AAᵀ/N) of a d × N feature matrix, from whichever of AAᵀ (d × d) and AᵀA (N × N) is smaller
/// (they share their nonzero eigenvalues).
inline double gram_max_eigenvalue(const Matrix& features) {
  const Index d = features.rows(), n = features.cols();
  const Index k = d <= n ? d : n;
  Matrix gram = Matrix::Zero(k, k);
  if (d <= n)
    gram.selfadjointView<Eigen::Lower>().rankUpdate(features, 1.0 / static_cast<double>(n));
  else
    gram.selfadjointView<Eigen::Lower>().rankUpdate(features.transpose(), 1.0 / static_cast<double>(n));
  gram.triangularView<Eigen::StrictlyUpper>() = gram.transpose();
  const Eigen::SelfAdjointEigenSolver<Matrix> es(gram, Eigen::EigenvaluesOnly);
  return es.eigenvalues()[k - 1];
}

/// Generator for synthetic data. std::mt19937_64's output sequence is fixed by the C++ standard; the uniform
/// and normal transforms are ours (std::normal_distribution's algorithm is implementation-defined), so a seed
/// gives the same data with every standard library.
class DataRng {
 public:
  explicit DataRng(std::uint64_t seed) : m_engine(seed) {}

  /// Uniform on [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(m_engine() >> 11) * 0x1.0p-53; }

  /// Standard normal by the Box–Muller transform (pairs; the second value is kept for the next call).
  double normal() {
    if (m_has_spare) {
      m_has_spare = false;
      return m_spare;
    }
    const double u1 = 1.0 - uniform();  // (0, 1]: log(u1) is finite
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double angle = 2.0 * std::numbers::pi * u2;
    m_spare = r * std::sin(angle);
    m_has_spare = true;
    return r * std::cos(angle);
  }

  /// Uniform integer in [0, n), n >= 1.
  Index below(Index n) {
    const auto k = static_cast<Index>(uniform() * static_cast<double>(n));
    return k < n ? k : n - 1;
  }

  /// Matrix (or vector) of i.i.d. standard normals, filled column by column.
  Matrix normal_matrix(Index rows, Index cols) {
    Matrix m(rows, cols);
    for (Index c = 0; c < cols; ++c)
      for (Index r = 0; r < rows; ++r) m(r, c) = normal();
    return m;
  }
  Vector normal_vector(Index n) {
    Vector v(n);
    for (Index j = 0; j < n; ++j) v[j] = normal();
    return v;
  }

 private:
  std::mt19937_64 m_engine;
  double m_spare = 0.0;
  bool m_has_spare = false;
};

/// A Haar-distributed random orthogonal d × d matrix: Q of the QR of a Gaussian matrix, with the columns'
/// signs fixed by sign(R_jj) (without that fix Q is not uniformly distributed).
inline Matrix random_orthogonal(Index d, DataRng& rng) {
  const Matrix g = rng.normal_matrix(d, d);
  const Eigen::HouseholderQR<Matrix> qr(g);
  Matrix q = qr.householderQ();
  const Matrix& r = qr.matrixQR();
  for (Index j = 0; j < d; ++j)
    if (r(j, j) < 0.0) q.col(j) = -q.col(j);
  return q;
}

/// n values spread log-uniformly (geometrically) from lo to hi, both ends included; n = 1 gives {hi}.
inline Vector log_spaced(Index n, double lo, double hi) {
  Vector v(n);
  if (n == 1) {
    v[0] = hi;
    return v;
  }
  for (Index j = 0; j < n; ++j) v[j] = lo * std::pow(hi / lo, static_cast<double>(j) / static_cast<double>(n - 1));
  v[0] = lo;  // exact ends, whatever pow rounds to
  v[n - 1] = hi;
  return v;
}

/// The per-sample terms of Σ‖∇f_i‖² that an objective's gradient() computes on the way, with the objective, point
/// and batch they belong to. The norm test needs only that sum right after the gradient
/// (docs/batch_rules.md §Cheap forms); keeping the terms spares a second pass over the batch's features (the
/// step's dominant memory traffic). Valid only for the same objective, x and batch, compared exactly; any other
/// call recomputes.
struct SqNormCache {
  const void* owner = nullptr;
  Vector x;
  std::vector<Index> batch;
  std::vector<double> terms;  ///< terms[k] for batch[k], without the regularizer's constant ‖∇R(x)‖²

  /// Makes room for a batch of b (allocates only when b grows) and invalidates the cache while it is filled.
  double* begin_fill(Index b) {
    owner = nullptr;
    if (terms.size() < static_cast<std::size_t>(b)) terms.resize(static_cast<std::size_t>(b));
    return terms.data();
  }
  void end_fill(const void* objective, ConstVectorRef point, IndexSpan b) {
    x = point;  // no allocation once x has the size d
    batch.assign(b.begin(), b.end());
    owner = objective;
  }
  bool matches(const void* objective, ConstVectorRef point, IndexSpan b) const {
    return owner == objective && batch.size() == b.size() && x.size() == point.size() &&
           std::equal(b.begin(), b.end(), batch.begin()) && x == point;
  }
};

/// Data this large are backed by transparent huge pages where the kernel allows them (Linux THP in `madvise`
/// mode): a random 8 KiB column read then costs no TLB miss and no prefetcher restart at 4 KiB page boundaries.
inline constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;
inline constexpr std::size_t kHugePageMinBytes = 2 * kHugePageBytes;

/// Asks for huge pages on the 2 MiB-aligned part of [p, p + bytes) before it is first touched; a hint only
/// (ignored where THP is off or unsupported), so values never depend on it.
inline void advise_huge_pages([[maybe_unused]] void* p, [[maybe_unused]] std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const auto begin = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t first = (begin + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  const std::uintptr_t last = (begin + bytes) / kHugePageBytes * kHugePageBytes;
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#endif
}

/// The same matrix in fresh, huge-page-advised storage (a plain copy: identical values). Small matrices are
/// returned as they are.
inline Matrix huge_page_backed(Matrix m) {
  const auto bytes = static_cast<std::size_t>(m.size()) * sizeof(double);
  if (bytes < kHugePageMinBytes) return m;
  Matrix out(m.rows(), m.cols());  // not yet touched: the advice applies when the copy faults the pages in
  advise_huge_pages(out.data(), bytes);
  std::memcpy(out.data(), m.data(), bytes);
  return out;
}

/// A float32 copy of a d × N feature matrix (column-major, column i at data() + i·d), huge-page backed when large.
/// Immutable once built, so copies of a problem share it.
class FloatFeatures {
 public:
  FloatFeatures() = default;
  explicit FloatFeatures(const Matrix& m) : m_rows(m.rows()), m_cols(m.cols()) {
    const auto n = static_cast<std::size_t>(m.size());
    const std::size_t align = n * sizeof(float) >= kHugePageMinBytes ? kHugePageBytes : 64;
    const std::size_t bytes = (n * sizeof(float) + align - 1) / align * align;
    auto* p = static_cast<float*>(std::aligned_alloc(align, bytes));
    if (p == nullptr) throw std::bad_alloc();
    if (align == kHugePageBytes) advise_huge_pages(p, bytes);
    for (std::size_t k = 0; k < n; ++k) p[k] = static_cast<float>(m.data()[k]);
    m_data = std::shared_ptr<const float>(p, [](const float* q) { std::free(const_cast<float*>(q)); });
  }
  bool empty() const noexcept { return m_data == nullptr; }
  Index rows() const noexcept { return m_rows; }
  Index cols() const noexcept { return m_cols; }
  const float* col(Index i) const noexcept { return m_data.get() + i * m_rows; }

 private:
  std::shared_ptr<const float> m_data;
  Index m_rows = 0, m_cols = 0;
};

/// aᵀv for float32 features and double v, accumulated in double. 16 independent partial sums keep the vector
/// units busy (one sum would serialize on the add latency); the compiler vectorizes both loops.
inline double widened_dot(const float* a, const double* v, Index d) {
  constexpr Index kLanes = 16;
  double acc[kLanes] = {};
  Index j = 0;
  for (; j + kLanes <= d; j += kLanes)
    for (Index q = 0; q < kLanes; ++q) acc[q] += static_cast<double>(a[j + q]) * v[j + q];
  double s = 0.0;
  for (; j < d; ++j) s += static_cast<double>(a[j]) * v[j];
  for (Index q = 0; q < kLanes; ++q) s += acc[q];
  return s;
}

/// Starts loading the first 16 KiB of a float32 column into the cache: issued one sample ahead, it overlaps that
/// column's DRAM latency with the current sample's arithmetic (the dot → derivative → axpy chain serializes them).
inline void prefetch_column([[maybe_unused]] const float* a, [[maybe_unused]] Index d) {
#if defined(__GNUC__)
  const auto bytes = std::min<std::size_t>(static_cast<std::size_t>(d) * sizeof(float), 16384);
  const char* p = reinterpret_cast<const char*>(a);
  for (std::size_t o = 0; o < bytes; o += 64) __builtin_prefetch(p + o, 0, 2);
#endif
}

/// g += r a for float32 a, in double.
inline void widened_axpy(double r, const float* a, double* g, Index d) {
  for (Index j = 0; j < d; ++j) g[j] += r * static_cast<double>(a[j]);
}

/// Numerically stable logistic function σ(t) = 1/(1 + e^{−t}).
inline double sigmoid(double t) {
  if (t >= 0.0) return 1.0 / (1.0 + std::exp(-t));
  const double e = std::exp(t);
  return e / (1.0 + e);
}

/// Numerically stable softplus log(1 + e^t).
inline double softplus(double t) { return (t > 0.0 ? t : 0.0) + std::log1p(std::exp(-std::abs(t))); }

}  // namespace detail

/// Options of the Gaussian-mixture classification generator.
struct GaussianMixtureOptions {
  Index N = 1000;                ///< samples
  Index d = 10;                  ///< features
  Index classes = 3;             ///< C >= 2
  Index clusters_per_class = 1;  ///< > 1 makes the classes not linearly separable (XOR-like)
  double separation = 2.0;       ///< cluster means ~ N(0, separation²/d · I), so ‖mean‖ ≈ separation
  std::uint64_t seed = 0;

  void validate() const {
    detail::require_at_least("N", N, Index{1});
    detail::require_at_least("d", d, Index{1});
    detail::require_at_least("classes", classes, Index{2});
    detail::require_at_least("clusters_per_class", clusters_per_class, Index{1});
    detail::require_nonnegative("separation", separation);
  }
};

/// Labels y_i uniform in {0, …, C−1}; a_i = μ_{y_i, k} + N(0, I) with cluster k uniform among the class's clusters.
inline ClassificationData make_gaussian_mixture(const GaussianMixtureOptions& opt) {
  opt.validate();
  detail::DataRng rng(opt.seed);
  const Matrix means = rng.normal_matrix(opt.d, opt.classes * opt.clusters_per_class) *
                       (opt.separation / std::sqrt(static_cast<double>(opt.d)));
  ClassificationData data{Matrix(opt.d, opt.N), std::vector<Index>(static_cast<std::size_t>(opt.N)), opt.classes};
  for (Index i = 0; i < opt.N; ++i) {
    const Index y = rng.below(opt.classes);
    const Index k = rng.below(opt.clusters_per_class);
    data.labels[static_cast<std::size_t>(i)] = y;
    for (Index j = 0; j < opt.d; ++j) data.features(j, i) = means(j, y * opt.clusters_per_class + k) + rng.normal();
  }
  return data;
}

/// Options of the binary logistic ("teacher") generator.
struct BinaryTeacherOptions {
  Index N = 1000;       ///< samples
  Index d = 10;         ///< features
  double signal = 2.0;  ///< ‖w_teacher‖: larger means cleaner labels
  std::uint64_t seed = 0;

  void validate() const {
    detail::require_at_least("N", N, Index{1});
    detail::require_at_least("d", d, Index{1});
    detail::require_nonnegative("signal", signal);
  }
};

/// a_i ~ N(0, I_d); y_i = +1 with probability σ(a_iᵀ w_teacher), else −1; w_teacher uniform on the sphere of
/// radius `signal`.
inline BinaryData make_binary_teacher(const BinaryTeacherOptions& opt) {
  opt.validate();
  detail::DataRng rng(opt.seed);
  Vector w = rng.normal_vector(opt.d);
  w *= opt.signal / w.norm();
  BinaryData data{rng.normal_matrix(opt.d, opt.N), Vector(opt.N)};
  for (Index i = 0; i < opt.N; ++i)
    data.labels[i] = rng.uniform() < detail::sigmoid(data.features.col(i).dot(w)) ? 1.0 : -1.0;
  return data;
}

}  // namespace lgm
