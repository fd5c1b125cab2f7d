// Device versions of the host objectives LeastSquares, Logistic and Softmax (lgm/problems/), evaluated for all M
// worker replicas at once (docs/gpu.md §Objectives). All three are linear models with C outputs:
//   z_i = W a_i (W ∈ R^{C×d}; x[c·d + j] = W_{c,j}, as on the host; C = 1 for least squares and logistic),
//   f_i(x) = ℓ(z_i; y_i) + (λ/2)‖x‖²,   ∇f_i(x) = δ_i ⊗ a_i + λx,   δ_i = ∂ℓ/∂z (the host's φ' or p_i − e_{y_i}),
// with the host's closed-form per-sample moments (docs/batch_rules.md §Cheap forms,
// lgm/problems/linear_model.hpp and softmax.hpp):
//   ‖∇f_i‖² = ‖δ_i‖²‖a_i‖² + 2λ δ_iᵀz_i + λ²‖x‖²,   ⟨∇f_i, v⟩ = δ_iᵀ(V a_i) + λ⟨x, v⟩   (V: v viewed as W is).
//
// One step of all workers: the batch indices of every worker (from the host sampler) are uploaded in one copy, the
// batch's feature columns gathered on the device, and the products done as strided-batched GEMMs (batch = worker):
//   logits  Z_m (C × b) = W_m A_m,        gradient  G_m (d × C, i.e. ∇ as Wᵀ) = λ X_m + A_m Δ_mᵀ.
// Workers' batches may differ in size: every worker's batch is padded to the largest, b_max, with index −1. A padded
// slot gathers a zero column, gets δ = 0 and adds nothing to any sum, so one GEMM covers all workers; the waste is
// (M·b_max − Σ b_m)/Σ b_m, zero for the usual equal batch sizes. Per-sample terms are computed in double and summed
// per worker in double by a fixed two-stage chunked reduction (no temporary allocation, the same order every run).
#pragma once

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/gpu/backend.hpp"
#include "lgm/gpu/blas.hpp"
#include "lgm/gpu/memory_pool.hpp"
#include "lgm/gpu/storage.hpp"
#include "lgm/problems/least_squares.hpp"
#include "lgm/problems/logistic.hpp"
#include "lgm/problems/softmax.hpp"

namespace lgm::gpu {

namespace detail {

/// Four per-worker sums in double: of the batch's per-sample terms {ℓ_i, ‖∇f_i‖², ⟨∇f_i, v⟩, ⟨∇f_i, v⟩²}, or of the
/// regularizer's dot products {‖x‖², ⟨x, v⟩, 0, 0}.
struct Sums4 {
  double a = 0.0, b = 0.0, c = 0.0, d = 0.0;
  LGM_HD Sums4& operator+=(const Sums4& o) {
    a += o.a;
    b += o.b;
    c += o.c;
    d += o.d;
    return *this;
  }
};

/// The host's overflow-free σ(t) and log(1 + e^t) (lgm/problems/dataset.hpp), callable on the device.
LGM_HD inline double device_sigmoid(double t) {
  if (t >= 0.0) return 1.0 / (1.0 + ::exp(-t));
  const double e = ::exp(t);
  return e / (1.0 + e);
}
LGM_HD inline double device_softplus(double t) { return (t > 0.0 ? t : 0.0) + ::log1p(::exp(-::fabs(t))); }

// A head maps the logits z (C values) of sample i to its loss ℓ and calls visit(c, δ_c) for c = 0 … C−1, in double.
// Besides, it names its host objective and how to read the host's labels and C.

/// ℓ = ½(z − y)², δ = z − y (host: SquaredLoss).
template <class T>
struct SquaredHead {
  using value_type = T;
  using Label = T;
  using Host = lgm::LeastSquares;
  static Index host_outputs(const Host& /*host*/) { return 1; }
  static std::vector<Label> host_labels(const Host& host) {
    return std::vector<Label>(host.targets().data(), host.targets().data() + host.targets().size());
  }

  const Label* labels = nullptr;
  Index outputs = 1;

  template <class Visit>
  LGM_HD double operator()(const T* z, Index i, Visit& visit) const {
    const double r = static_cast<double>(z[0]) - static_cast<double>(labels[i]);
    visit(0, r);
    return 0.5 * r * r;
  }
};

/// ℓ = log(1 + e^{−yz}), δ = −y σ(−yz) for y ∈ {−1, +1} (host: LogisticLoss).
template <class T>
struct LogisticHead {
  using value_type = T;
  using Label = T;
  using Host = lgm::Logistic;
  static Index host_outputs(const Host& /*host*/) { return 1; }
  static std::vector<Label> host_labels(const Host& host) {
    return std::vector<Label>(host.labels().data(), host.labels().data() + host.labels().size());
  }

  const Label* labels = nullptr;
  Index outputs = 1;

  template <class Visit>
  LGM_HD double operator()(const T* z, Index i, Visit& visit) const {
    const double y = static_cast<double>(labels[i]);
    const double t = -y * static_cast<double>(z[0]);
    visit(0, -y * device_sigmoid(t));
    return device_softplus(t);
  }
};

/// ℓ = −log softmax(z)_y, δ = softmax(z) − e_y in the host's overflow-free form (softmax_cross_entropy): with
/// m = max z (first arg max) and s = Σ_{c ≠ argmax} e^{z_c − m}, log Σ e^{z_c} = m + log1p(s).
template <class T>
struct SoftmaxHead {
  using value_type = T;
  using Label = Index;
  using Host = lgm::Softmax;
  static Index host_outputs(const Host& host) { return host.classes(); }
  static std::vector<Label> host_labels(const Host& host) { return host.labels(); }

  const Label* labels = nullptr;
  Index outputs = 2;

  template <class Visit>
  LGM_HD double operator()(const T* z, Index i, Visit& visit) const {
    Index top = 0;
    double m = static_cast<double>(z[0]);
    for (Index c = 1; c < outputs; ++c)
      if (static_cast<double>(z[c]) > m) {
        m = static_cast<double>(z[c]);
        top = c;
      }
    double rest = 0.0;
    for (Index c = 0; c < outputs; ++c)
      if (c != top) rest += ::exp(static_cast<double>(z[c]) - m);
    const double log1p_rest = ::log1p(rest);
    const Index y = labels[i];
    for (Index c = 0; c < outputs; ++c)
      visit(c, ::exp(static_cast<double>(z[c]) - m - log1p_rest) - (c == y ? 1.0 : 0.0));
    return (m - static_cast<double>(z[y])) + log1p_rest;
  }
};

/// Collects what the per-sample closed forms need from δ: ‖δ‖², δᵀz, δᵀ(Va); and writes w·δ for the gradient GEMM.
template <class T>
struct DeltaVisitor {
  const T* z;
  const T* proj;  // V a_i (C values) or nullptr
  T* delta;       // where w·δ goes (C values) or nullptr
  double w;
  double dd = 0.0, dz = 0.0, dp = 0.0;

  LGM_HD void operator()(Index c, double d) {
    dd += d * d;
    dz += d * static_cast<double>(z[c]);
    if (proj != nullptr) dp += d * static_cast<double>(proj[c]);
    if (delta != nullptr) delta[c] = static_cast<T>(w * d);
  }
};

/// The per-sample terms of slot k of worker m (slot = m·b_max + k): {ℓ_i, ‖∇f_i‖², ⟨∇f_i, v⟩, ⟨∇f_i, v⟩²} by the
/// closed forms at the top of this file. Writes (1/b_m)·δ_i into `delta` when given (zero for a padded slot).
template <class Head>
struct SampleTerms {
  using T = typename Head::value_type;
  Head head;
  const Index* index;      // M·b_max slots (−1 = padding), then the M batch sizes
  const T* logits;         // C × slots
  const T* proj;           // C × slots (V_m a_i) or nullptr
  T* delta;                // C × slots or nullptr
  const double* sq_norms;  // ‖a_i‖², N
  const Sums4* reg;        // per worker {‖x‖², ⟨x, v⟩}
  double lambda;
  Index bmax;
  Index workers;

  LGM_HD Sums4 operator()(Index m, Index k) const {
    const Index slot = m * bmax + k;
    const Index c_out = head.outputs;
    const Index i = index[slot];
    if (i < 0) {
      if (delta != nullptr)
        for (Index c = 0; c < c_out; ++c) delta[slot * c_out + c] = T(0);
      return {};
    }
    const double w = 1.0 / static_cast<double>(index[workers * bmax + m]);
    DeltaVisitor<T> visit{logits + slot * c_out, proj != nullptr ? proj + slot * c_out : nullptr,
                          delta != nullptr ? delta + slot * c_out : nullptr, w};
    const double loss = head(logits + slot * c_out, i, visit);
    const double sq_norm = visit.dd * sq_norms[i] + 2.0 * lambda * visit.dz + lambda * lambda * reg[m].a;
    const double p = visit.dp + lambda * reg[m].b;
    return {loss, sq_norm, p, p * p};
  }
};

/// {x_j², x_j v_j} of entry j of worker m's column (v optional).
template <class T>
struct RegularizerTerms {
  const T* x;
  const T* v;
  Index dim;
  LGM_HD Sums4 operator()(Index m, Index j) const {
    const double xj = static_cast<double>(x[m * dim + j]);
    return {xj * xj, v != nullptr ? xj * static_cast<double>(v[m * dim + j]) : 0.0, 0.0, 0.0};
  }
};

/// Stage 1 of the per-worker sums: partial[t] = Σ f(m, k) over chunk t % chunks of segment m = t / chunks. Each
/// (m, k) is evaluated exactly once, so f may write per-slot outputs.
template <class F>
struct ChunkSum {
  F f;
  Index length, chunk, chunks;
  Sums4* partial;
  LGM_HD void operator()(Index t) const {
    const Index m = t / chunks;
    const Index begin = (t - m * chunks) * chunk;
    const Index end = begin + chunk < length ? begin + chunk : length;
    Sums4 s;
    for (Index k = begin; k < end; ++k) s += f(m, k);
    partial[t] = s;
  }
};

/// Stage 2: out[m] = Σ of segment m's partials, in chunk order.
struct ChunkTotal {
  const Sums4* partial;
  Index chunks;
  Sums4* out;
  LGM_HD void operator()(Index m) const {
    Sums4 s;
    for (Index c = 0; c < chunks; ++c) s += partial[m * chunks + c];
    out[m] = s;
  }
};

/// ≈ √length values a chunk, so both stages are short (at least 16 to amortize a thread).
inline Index chunk_length(Index length) {
  Index c = static_cast<Index>(std::ceil(std::sqrt(static_cast<double>(length))));
  return c < 16 ? 16 : c;
}
inline Index chunk_count(Index length) {
  const Index c = chunk_length(length);
  return (length + c - 1) / c;
}

/// rows[·, slot] = features[·, index[slot]], a zero column for a padded slot.
template <class T>
struct GatherColumns {
  const T* features;
  const Index* index;
  Index d;
  T* rows;
  LGM_HD void operator()(Index e) const {
    const Index slot = e / d;
    const Index j = e - slot * d;
    const Index i = index[slot];
    rows[e] = i >= 0 ? features[i * d + j] : T(0);
  }
};

/// g = λx entry-wise (exactly 0 for λ = 0, as the host's L2Regularizer adds nothing then).
template <class T>
struct ScaledCopy {
  const T* x;
  T* g;
  T lambda;
  LGM_HD void operator()(Index e) const { g[e] = lambda == T(0) ? T(0) : lambda * x[e]; }
};

/// Grows `b` to at least `count` entries through the pool; never shrinks, so the steady state allocates nothing.
template <class U>
void grow(DeviceBuffer<U>& b, Index count, StreamHandle stream) {
  if (b.count() < count) b = DeviceBuffer<U>(count, stream);
}

}  // namespace detail

/// The device counterpart of a host linear-model objective (LeastSquares, Logistic, Softmax; see the aliases
/// below) for all M local workers at once: column m of X is worker m's x^m. The data are copied to the device once,
/// at construction; the DeviceStorage must outlive the objective (it owns the stream every call runs in).
template <class Head>
class DeviceLinearObjective {
 public:
  using value_type = typename Head::value_type;
  using T = value_type;
  using Host = typename Head::Host;
  using Label = typename Head::Label;
  using Storage = DeviceStorage<T>;
  static_assert(BlasScalar<T>, "DeviceLinearObjective: the value type must be float or double");

  /// Scratch of one caller: the uploaded indices, gathered batch columns, logits, δ, and the per-worker sums. Its
  /// buffers grow (through the pool) when M·b_max grows and are reused otherwise.
  class Workspace {
   public:
    /// Σ_i‖∇f_i(x^m)‖² over worker m's batch, for each worker, from the last gradients() call (the norm test's
    /// statistic, as the host's sample_sq_norm_sum right after gradient(): computed on the way, no extra pass).
    std::span<const double> sq_norm_sums() const noexcept { return m_sq_norm_sums; }

   private:
    friend class DeviceLinearObjective;
    explicit Workspace(StreamHandle stream) : m_stream(stream) {}

    StreamHandle m_stream = nullptr;
    Index m_workers = 0;
    Index m_bmax = 0;
    std::vector<Index> m_host_index;  // M·b_max slots, then the M batch sizes: one upload a call
    DeviceBuffer<Index> m_index;
    DeviceBuffer<T> m_columns;              // d × (M·b_max): the gathered a_i
    DeviceBuffer<T> m_logits;               // C × (M·b_max)
    DeviceBuffer<T> m_aux;                  // C × (M·b_max): (1/b)δ for the gradient, or V a_i for the moments
    DeviceBuffer<detail::Sums4> m_partial;  // stage-1 partial sums
    DeviceBuffer<detail::Sums4> m_sums;     // [0, M): the batch sums; [M, 2M): the regularizer's dot products
    std::vector<detail::Sums4> m_host_sums;
    std::vector<double> m_sq_norm_sums;
  };

  /// Copies the host objective's features (converted to T), labels, ‖a_i‖² (double) and λ to the device.
  DeviceLinearObjective(const Host& host, const Storage& storage)
      : m_stream(storage.stream()),
        m_blas(storage.stream()),
        m_features(host.features().rows(), host.features().cols(), storage.stream()),
        m_outputs(Head::host_outputs(host)),
        m_lambda(host.lambda()) {
    const Matrix& a = host.features();
    const Eigen::Map<const Vector> flat(a.data(), a.size());
    storage.upload(flat, DeviceVectorView<T>(m_features.data(), a.size()));
    const Vector sq_norms = a.colwise().squaredNorm().transpose();  // as the host computes m_sq_norms
    m_sq_norms = DeviceBuffer<double>(a.cols(), m_stream);
    copy_to_device(m_sq_norms.data(), sq_norms.data(), static_cast<std::size_t>(a.cols()) * sizeof(double), m_stream);
    const std::vector<Label> labels = Head::host_labels(host);
    m_labels = DeviceBuffer<Label>(static_cast<Index>(labels.size()), m_stream);
    copy_to_device(m_labels.data(), labels.data(), labels.size() * sizeof(Label), m_stream);
    storage.synchronize();  // the host temporaries above die here
  }

  /// C·d (d for least squares and logistic).
  Index dim() const noexcept { return m_outputs * m_features.rows(); }
  Index num_samples() const noexcept { return m_features.cols(); }
  Index num_features() const noexcept { return m_features.rows(); }
  /// C: 1 for least squares and logistic, the number of classes for softmax.
  Index outputs() const noexcept { return m_outputs; }
  double lambda() const noexcept { return m_lambda; }

  Workspace make_workspace() const { return Workspace(m_stream); }

  /// The step of all local workers: G.col(m) = (1/b_m) Σ_{i∈batches[m]} ∇f_i(X.col(m)), losses[m] = the mean loss
  /// over batches[m]; also fills ws.sq_norm_sums(). X and G are dim() × M and must not overlap; every batch non-empty.
  /// Returns after the losses are on the host.
  void gradients(DeviceMatrixView<const T> X, std::span<const IndexSpan> batches, DeviceMatrixView<T> G,
                 std::span<double> losses, Workspace& ws) const {
    const Index workers = X.cols();
    lgm::detail::require(G.rows() == dim() && G.cols() == workers, "gradients (G shape)", G.rows(),
                         "dim() x M = " + lgm::detail::to_text(dim()) + " x " + lgm::detail::to_text(workers));
    lgm::detail::require(static_cast<Index>(losses.size()) == workers, "gradients (losses size)", losses.size(),
                         "one entry per worker, M = " + lgm::detail::to_text(workers));
    prepare(X, batches, /*allow_empty=*/false, ws);
    reduce_regularizer(X, nullptr, ws);
    reduce_samples(nullptr, ws.m_aux.data(), ws);
    // G ← λX, then G_m += A_m Δ_mᵀ (Δ already holds (1/b_m)δ; padded slots have δ = 0)
    thrust::for_each(policy(m_stream), thrust::counting_iterator<Index>(0), thrust::counting_iterator<Index>(X.size()),
                     detail::ScaledCopy<T>{X.data(), G.data(), static_cast<T>(m_lambda)});
    m_blas.gemm_strided_batched<T>(Op::none, Op::transpose, num_features(), m_outputs, ws.m_bmax, T(1),
                                   ws.m_columns.data(), num_features(), num_features() * ws.m_bmax, ws.m_aux.data(),
                                   m_outputs, m_outputs * ws.m_bmax, T(1), G.data(), num_features(), dim(), workers);
    download_sums(ws);
    ws.m_sq_norm_sums.resize(static_cast<std::size_t>(workers));
    for (Index m = 0; m < workers; ++m) {
      const auto mu = static_cast<std::size_t>(m);
      const auto b = static_cast<double>(batches[mu].size());
      losses[mu] = ws.m_host_sums[mu].a / b + regularizer(ws.m_host_sums[mu + static_cast<std::size_t>(workers)].a);
      ws.m_sq_norm_sums[mu] = ws.m_host_sums[mu].b;
    }
  }

  /// (1/b) Σ_{i∈batch} f_i(x), the host's loss(); batch non-empty.
  double loss(DeviceVectorView<const T> x, IndexSpan batch, Workspace& ws) const {
    const DeviceMatrixView<const T> X(x.data(), x.size(), 1);
    prepare(X, std::span<const IndexSpan>(&batch, 1), /*allow_empty=*/false, ws);
    reduce_regularizer(X, nullptr, ws);
    reduce_samples(nullptr, nullptr, ws);
    download_sums(ws);
    return ws.m_host_sums[0].a / static_cast<double>(batch.size()) + regularizer(ws.m_host_sums[1].a);
  }

  /// Per-sample statistics of every worker m over batches[m] at x^m = X.col(m) along v_m = V.col(m): Σ‖∇f_i‖²,
  /// Σ⟨∇f_i, v_m⟩, Σ⟨∇f_i, v_m⟩² and the count, by the host's closed forms (its sample_moments). Empty batches give 0.
  void sample_moments(DeviceMatrixView<const T> X, std::span<const IndexSpan> batches, DeviceMatrixView<const T> V,
                      std::span<lgm::SampleMoments> out, Workspace& ws) const {
    const Index workers = X.cols();
    lgm::detail::require(V.rows() == dim() && V.cols() == workers, "sample_moments (V shape)", V.rows(),
                         "dim() x M = " + lgm::detail::to_text(dim()) + " x " + lgm::detail::to_text(workers));
    lgm::detail::require(static_cast<Index>(out.size()) == workers, "sample_moments (out size)", out.size(),
                         "one entry per worker, M = " + lgm::detail::to_text(workers));
    prepare(X, batches, /*allow_empty=*/true, ws);
    // V_m a_i for every slot: the same GEMM as the logits, with V for X
    logits_gemm(V, ws, ws.m_aux.data());
    reduce_regularizer(X, V.data(), ws);
    reduce_samples(ws.m_aux.data(), nullptr, ws);
    download_sums(ws);
    for (Index m = 0; m < workers; ++m) {
      const auto mu = static_cast<std::size_t>(m);
      const detail::Sums4& s = ws.m_host_sums[mu];
      out[mu] = lgm::SampleMoments{s.b, s.c, s.d, static_cast<Index>(batches[mu].size())};
    }
  }

  /// Σ_i‖∇f_i(x^m)‖² over batches[m] for every worker (the host's sample_sq_norm_sum; the sum_sq_norm of
  /// sample_moments). Right after gradients() at the same X and batches, ws.sq_norm_sums() has these already.
  void sample_sq_norm_sums(DeviceMatrixView<const T> X, std::span<const IndexSpan> batches, std::span<double> out,
                           Workspace& ws) const {
    const Index workers = X.cols();
    lgm::detail::require(static_cast<Index>(out.size()) == workers, "sample_sq_norm_sums (out size)", out.size(),
                         "one entry per worker, M = " + lgm::detail::to_text(workers));
    prepare(X, batches, /*allow_empty=*/true, ws);
    reduce_regularizer(X, nullptr, ws);
    reduce_samples(nullptr, nullptr, ws);
    download_sums(ws);
    for (std::size_t m = 0; m < out.size(); ++m) out[m] = ws.m_host_sums[m].b;
  }

 private:
  Head head() const noexcept {
    Head h;
    h.labels = m_labels.data();
    h.outputs = m_outputs;
    return h;
  }

  /// R(x) = (λ/2)‖x‖² from ‖x‖² (0 for λ = 0, as the host).
  double regularizer(double xx) const noexcept { return m_lambda == 0.0 ? 0.0 : 0.5 * m_lambda * xx; }

  /// Checks the shapes and indices, uploads all workers' padded indices and batch sizes in one copy, gathers the
  /// batch columns and computes the logits of every slot.
  void prepare(DeviceMatrixView<const T> X, std::span<const IndexSpan> batches, bool allow_empty, Workspace& ws) const {
    const Index workers = X.cols();
    lgm::detail::require(X.rows() == dim(), "X (rows)", X.rows(), "dim() = " + lgm::detail::to_text(dim()));
    lgm::detail::require(static_cast<Index>(batches.size()) == workers, "batches (count)", batches.size(),
                         "one batch per worker (column of X), M = " + lgm::detail::to_text(workers));
    Index bmax = 0;
    for (const IndexSpan& b : batches) {
      lgm::detail::require(allow_empty || !b.empty(), "batch size", b.size(), "at least 1 sample");
      bmax = std::max(bmax, static_cast<Index>(b.size()));
    }
    const Index slots = workers * bmax;
    ws.m_workers = workers;
    ws.m_bmax = bmax;
    ws.m_host_index.assign(static_cast<std::size_t>(slots + workers), Index{-1});
    for (Index m = 0; m < workers; ++m) {
      const IndexSpan b = batches[static_cast<std::size_t>(m)];
      for (std::size_t k = 0; k < b.size(); ++k) {
        lgm::detail::require(b[k] >= 0 && b[k] < num_samples(), "batch index", b[k],
                             "a sample index in [0, " + lgm::detail::to_text(num_samples() - 1) + "]");
        ws.m_host_index[static_cast<std::size_t>(m * bmax) + k] = b[k];
      }
      ws.m_host_index[static_cast<std::size_t>(slots + m)] = static_cast<Index>(b.size());
    }
    const Index chunks = std::max(detail::chunk_count(bmax), detail::chunk_count(dim()));
    detail::grow(ws.m_index, slots + workers, m_stream);
    detail::grow(ws.m_columns, num_features() * slots, m_stream);
    detail::grow(ws.m_logits, m_outputs * slots, m_stream);
    detail::grow(ws.m_aux, m_outputs * slots, m_stream);
    detail::grow(ws.m_partial, workers * chunks, m_stream);
    detail::grow(ws.m_sums, 2 * workers, m_stream);
    copy_to_device(ws.m_index.data(), ws.m_host_index.data(), ws.m_host_index.size() * sizeof(Index), m_stream);
    if (slots == 0) return;
    thrust::for_each(
        policy(m_stream), thrust::counting_iterator<Index>(0), thrust::counting_iterator<Index>(num_features() * slots),
        detail::GatherColumns<T>{m_features.data(), ws.m_index.data(), num_features(), ws.m_columns.data()});
    logits_gemm(X, ws, ws.m_logits.data());
  }

  /// out_m (C × b_max) = (W_m as given by column m of W)·A_m, for every worker m: x viewed as d × C is Wᵀ.
  void logits_gemm(DeviceMatrixView<const T> W, const Workspace& ws, T* out) const {
    if (ws.m_bmax == 0) return;
    m_blas.gemm_strided_batched<T>(Op::transpose, Op::none, m_outputs, ws.m_bmax, num_features(), T(1), W.data(),
                                   num_features(), dim(), ws.m_columns.data(), num_features(),
                                   num_features() * ws.m_bmax, T(0), out, m_outputs, m_outputs * ws.m_bmax,
                                   ws.m_workers);
  }

  /// sums[M + m] = {‖x^m‖², ⟨x^m, v_m⟩} (v optional).
  void reduce_regularizer(DeviceMatrixView<const T> X, const T* v, Workspace& ws) const {
    segmented_sums(detail::RegularizerTerms<T>{X.data(), v, dim()}, ws.m_workers, dim(),
                   ws.m_sums.data() + ws.m_workers, ws);
  }

  /// sums[m] = the batch sums of worker m; needs the regularizer's sums first. `proj` = V a_i per slot or nullptr;
  /// `delta` receives (1/b_m)δ_i per slot when not nullptr.
  void reduce_samples(const T* proj, T* delta, Workspace& ws) const {
    const detail::SampleTerms<Head> terms{head(),
                                          ws.m_index.data(),
                                          ws.m_logits.data(),
                                          proj,
                                          delta,
                                          m_sq_norms.data(),
                                          ws.m_sums.data() + ws.m_workers,
                                          m_lambda,
                                          ws.m_bmax,
                                          ws.m_workers};
    segmented_sums(terms, ws.m_workers, ws.m_bmax, ws.m_sums.data(), ws);
  }

  /// out[m] = Σ_{k < length} f(m, k) for m < segments, in double, in a fixed order (two stages, no allocation).
  template <class F>
  void segmented_sums(const F& f, Index segments, Index length, detail::Sums4* out, Workspace& ws) const {
    const Index chunks = detail::chunk_count(length);
    if (chunks > 0)
      thrust::for_each(policy(m_stream), thrust::counting_iterator<Index>(0),
                       thrust::counting_iterator<Index>(segments * chunks),
                       detail::ChunkSum<F>{f, length, detail::chunk_length(length), chunks, ws.m_partial.data()});
    thrust::for_each(policy(m_stream), thrust::counting_iterator<Index>(0), thrust::counting_iterator<Index>(segments),
                     detail::ChunkTotal{ws.m_partial.data(), chunks, out});
  }

  /// The 2M per-worker sums to the host in one copy (this synchronizes the stream).
  void download_sums(Workspace& ws) const {
    ws.m_host_sums.resize(static_cast<std::size_t>(2 * ws.m_workers));
    copy_to_host(ws.m_host_sums.data(), ws.m_sums.data(), ws.m_host_sums.size() * sizeof(detail::Sums4), m_stream);
  }

  StreamHandle m_stream = nullptr;
  Blas m_blas;
  DeviceMatrix<T> m_features;  // d × N, column i = a_i
  DeviceBuffer<double> m_sq_norms;
  DeviceBuffer<Label> m_labels;
  Index m_outputs = 1;
  double m_lambda = 0.0;
};

/// Least squares: f_i = ½(a_iᵀx − y_i)² + (λ/2)‖x‖²; constructed from an lgm::LeastSquares.
template <class T = float>
using DeviceLeastSquares = DeviceLinearObjective<detail::SquaredHead<T>>;
/// Binary logistic regression (y_i = ±1) with an L2 term; constructed from an lgm::Logistic.
template <class T = float>
using DeviceLogistic = DeviceLinearObjective<detail::LogisticHead<T>>;
/// Softmax regression with C classes and an L2 term, x[c·d + j] = W_{c,j}; constructed from an lgm::Softmax.
template <class T = float>
using DeviceSoftmax = DeviceLinearObjective<detail::SoftmaxHead<T>>;

}  // namespace lgm::gpu
