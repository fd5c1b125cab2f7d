// A one-hidden-layer perceptron for C-class classification (a small nonconvex problem):
//   u = W₁a + b₁ (h),  s = tanh(u),  z = W₂s + b₂ (C),  f_i(x) = −log softmax(z)_{y_i} + (λ/2)‖x‖²,
// the L2 term on every parameter (biases included). Layout of x (dim = h·d + h + C·h + C):
//   [ W₁ (h × d, column-major) | b₁ (h) | W₂ (C × h, column-major) | b₂ (C) ].
// Backprop: δ₂ = softmax(z) − e_y, δ₁ = (W₂ᵀδ₂) ⊙ (1 − s²); ∇f_i = [δ₁aᵀ | δ₁ | δ₂sᵀ | δ₂] + λx.
// Per-sample moments by the dense-layer identity of docs/batch_rules.md §Cheap forms (a bias is a weight on a
// constant input 1):
//   ‖∇f_i − λx‖² = ‖δ₁‖²(‖a‖² + 1) + ‖δ₂‖²(‖s‖² + 1),   ⟨∇f_i − λx, x⟩ = δ₁ᵀu + δ₂ᵀz,
//   ⟨∇f_i − λx, v⟩ = δ₁ᵀ(V₁a + v_{b₁}) + δ₂ᵀ(V₂s + v_{b₂}),
// so no per-sample gradient is materialized. No known L, μ or optimum.
#pragma once

#include <Eigen/Core>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/problems/dataset.hpp"
#include "lgm/problems/softmax.hpp"

namespace lgm {

/// Options of Mlp::synthetic: a Gaussian mixture with `clusters_per_class` clusters per class (two by default, so
/// the classes are not linearly separable and the hidden layer matters).
struct MlpOptions {
  Index N = 1000;                ///< samples
  Index d = 10;                  ///< features
  Index classes = 3;             ///< C >= 2
  Index hidden = 16;             ///< h >= 1 hidden units
  Index clusters_per_class = 2;  ///< >= 1
  double lambda = 0.0;           ///< L2 parameter λ >= 0
  double separation = 3.0;       ///< ‖cluster mean‖ ≈ separation; features = mean + N(0, I)
  std::uint64_t seed = 0;

  void validate() const {
    detail::require_at_least("hidden", hidden, Index{1});
    detail::require_nonnegative("lambda", lambda);
    GaussianMixtureOptions{N, d, classes, clusters_per_class, separation, seed}.validate();
  }
};

/// One-hidden-layer tanh MLP with softmax cross-entropy; models lgm::HasClosedFormMoments.
class Mlp {
 public:
  /// Scratch: pre-activation u, activation s, hidden δ₁ and V₁a + v_{b₁} (h each); logits z, δ₂ and V₂s + v_{b₂} (C).
  struct Workspace {
    Vector pre;
    Vector act;
    Vector delta_hidden;
    Vector proj_hidden;
    Vector logits;
    Vector delta_out;
    Vector proj_out;
  };

  /// `features` d × N (column i = a_i); `labels` N entries in [0, classes − 1]; C = classes >= 2; h = hidden >= 1;
  /// λ >= 0. Throws DataError for bad data, ConfigError for C < 2, h < 1, λ < 0.
  Mlp(Matrix features, std::vector<Index> labels, Index classes, Index hidden, double lambda = 0.0)
      : m_features(std::move(features)),
        m_labels(std::move(labels)),
        m_classes(classes),
        m_hidden(hidden),
        m_lambda(lambda) {
    detail::require_at_least("hidden", hidden, Index{1});
    detail::require_nonnegative("lambda", lambda);
    detail::check_features(m_features);
    detail::check_class_labels(m_labels, classes, m_features.cols());
    m_sq_norms = m_features.colwise().squaredNorm().transpose();
  }

  static Mlp synthetic(const MlpOptions& opt = {}) {
    opt.validate();
    ClassificationData data =
        make_gaussian_mixture({opt.N, opt.d, opt.classes, opt.clusters_per_class, opt.separation, opt.seed});
    return Mlp(std::move(data.features), std::move(data.labels), opt.classes, opt.hidden, opt.lambda);
  }

  Index dim() const noexcept { return offset_b2() + m_classes; }
  Index num_samples() const noexcept { return m_features.cols(); }
  Index num_features() const noexcept { return m_features.rows(); }
  Index classes() const noexcept { return m_classes; }
  Index hidden() const noexcept { return m_hidden; }
  double lambda() const noexcept { return m_lambda; }
  const Matrix& features() const noexcept { return m_features; }
  const std::vector<Index>& labels() const noexcept { return m_labels; }

  /// Offsets of the four blocks of x (see the layout at the top of this file).
  Index offset_w1() const noexcept { return 0; }
  Index offset_b1() const noexcept { return m_hidden * num_features(); }
  Index offset_w2() const noexcept { return offset_b1() + m_hidden; }
  Index offset_b2() const noexcept { return offset_w2() + m_classes * m_hidden; }

  Workspace make_workspace() const {
    return Workspace{Vector::Zero(m_hidden),  Vector::Zero(m_hidden),  Vector::Zero(m_hidden), Vector::Zero(m_hidden),
                     Vector::Zero(m_classes), Vector::Zero(m_classes), Vector::Zero(m_classes)};
  }

  /// Glorot-uniform weights (W₁ ~ U(±√(6/(d + h))), W₂ ~ U(±√(6/(h + C)))) and zero biases, from `seed`
  /// (deterministic: the same seed gives the same point on every platform).
  Vector initial_point(std::uint64_t seed) const {
    detail::DataRng rng(seed);
    Vector x = Vector::Zero(dim());
    const double r1 = std::sqrt(6.0 / static_cast<double>(num_features() + m_hidden));
    const double r2 = std::sqrt(6.0 / static_cast<double>(m_hidden + m_classes));
    for (Index k = offset_w1(); k < offset_b1(); ++k) x[k] = r1 * (2.0 * rng.uniform() - 1.0);
    for (Index k = offset_w2(); k < offset_b2(); ++k) x[k] = r2 * (2.0 * rng.uniform() - 1.0);
    return x;
  }

  /// (1/b) Σ_{i∈batch} f_i(x).
  double loss(ConstVectorRef x, IndexSpan batch, Workspace& ws) const {
    assert(x.size() == dim() && !batch.empty());
    double sum = 0.0;
    for (Index i : batch) sum += forward(x, i, ws);
    return sum / static_cast<double>(batch.size()) + regularizer(x);
  }

  /// g = (1/b) Σ_{i∈batch} ∇f_i(x); returns the mean loss.
  double gradient(ConstVectorRef x, IndexSpan batch, VectorRef g, Workspace& ws) const {
    assert(x.size() == dim() && g.size() == dim() && !batch.empty());
    g.setZero();
    double sum = 0.0;
    for (Index i : batch) {
      sum += forward(x, i, ws);
      backward(x, ws);
      add_sample_gradient(i, ws, g);
    }
    const double inv_b = 1.0 / static_cast<double>(batch.size());
    g *= inv_b;
    if (m_lambda != 0.0) g += m_lambda * x;
    return sum * inv_b + regularizer(x);
  }

  /// g = ∇f_i(x); returns f_i(x).
  double sample_gradient(ConstVectorRef x, Index i, VectorRef g, Workspace& ws) const {
    assert(x.size() == dim() && g.size() == dim() && i >= 0 && i < num_samples());
    const double f = forward(x, i, ws);
    backward(x, ws);
    g.setZero();
    add_sample_gradient(i, ws, g);
    if (m_lambda != 0.0) g += m_lambda * x;
    return f + regularizer(x);
  }

  /// Σ‖∇f_i‖², Σ⟨∇f_i, v⟩, Σ⟨∇f_i, v⟩² by the dense-layer identities at the top of this file.
  SampleMoments sample_moments(ConstVectorRef x, IndexSpan batch, ConstVectorRef v, Workspace& ws) const {
    assert(x.size() == dim() && v.size() == dim());
    const Index d = num_features();
    const Eigen::Map<const Matrix> v1(v.data() + offset_w1(), m_hidden, d);
    const Eigen::Map<const Matrix> v2(v.data() + offset_w2(), m_classes, m_hidden);
    const auto vb1 = v.segment(offset_b1(), m_hidden);
    const auto vb2 = v.segment(offset_b2(), m_classes);
    const double xx = m_lambda * m_lambda * x.squaredNorm();
    const double xv = m_lambda * x.dot(v);
    SampleMoments s;
    for (Index i : batch) {
      forward(x, i, ws);
      backward(x, ws);
      ws.proj_hidden.noalias() = v1 * m_features.col(i);
      ws.proj_hidden += vb1;
      ws.proj_out.noalias() = v2 * ws.act;
      ws.proj_out += vb2;
      const double data_sq = ws.delta_hidden.squaredNorm() * (m_sq_norms[i] + 1.0) +
                             ws.delta_out.squaredNorm() * (ws.act.squaredNorm() + 1.0);
      const double data_x = ws.delta_hidden.dot(ws.pre) + ws.delta_out.dot(ws.logits);
      const double p = ws.delta_hidden.dot(ws.proj_hidden) + ws.delta_out.dot(ws.proj_out) + xv;
      s.sum_sq_norm += data_sq + 2.0 * m_lambda * data_x + xx;
      s.sum_proj += p;
      s.sum_proj_sq += p * p;
    }
    s.count = static_cast<Index>(batch.size());
    return s;
  }

  /// The predicted class of features `a` (size d): argmax_c z_c of the forward pass, the lowest c on ties.
  /// Leaves u, s and z in the workspace.
  Index predict(ConstVectorRef x, ConstVectorRef a, Workspace& ws) const {
    assert(x.size() == dim() && a.size() == num_features());
    compute_logits(x, a, ws);
    Index top = 0;
    ws.logits.maxCoeff(&top);
    return top;
  }

  /// Fraction of the columns of `features` (d × n, e.g. a test set) whose predicted class is their label.
  /// Throws ConfigError when x.size() != dim(), DataError for a feature count other than d, no samples, or labels
  /// of the wrong count or outside [0, C − 1].
  double accuracy(ConstVectorRef x, const Matrix& features, const std::vector<Index>& labels) const {
    return detail::classification_accuracy(*this, x, features, labels);
  }

 private:
  /// u, s, z and δ₂ of sample i into the workspace; returns the cross-entropy (without the regularizer).
  double forward(ConstVectorRef x, Index i, Workspace& ws) const {
    compute_logits(x, m_features.col(i), ws);
    return detail::softmax_cross_entropy(ws.logits, m_labels[static_cast<std::size_t>(i)], ws.delta_out);
  }

  /// u, s and z of features a into the workspace.
  void compute_logits(ConstVectorRef x, ConstVectorRef a, Workspace& ws) const {
    const Eigen::Map<const Matrix> w1(x.data() + offset_w1(), m_hidden, num_features());
    const Eigen::Map<const Matrix> w2(x.data() + offset_w2(), m_classes, m_hidden);
    ws.pre.noalias() = w1 * a;
    ws.pre += x.segment(offset_b1(), m_hidden);
    ws.act = ws.pre.array().tanh().matrix();
    ws.logits.noalias() = w2 * ws.act;
    ws.logits += x.segment(offset_b2(), m_classes);
  }

  /// δ₁ = (W₂ᵀδ₂) ⊙ (1 − s²), after forward().
  void backward(ConstVectorRef x, Workspace& ws) const {
    const Eigen::Map<const Matrix> w2(x.data() + offset_w2(), m_classes, m_hidden);
    ws.delta_hidden.noalias() = w2.transpose() * ws.delta_out;
    ws.delta_hidden.array() *= 1.0 - ws.act.array().square();
  }

  /// g += [δ₁aᵀ | δ₁ | δ₂sᵀ | δ₂] for sample i.
  void add_sample_gradient(Index i, const Workspace& ws, VectorRef g) const {
    const Index d = num_features();
    const auto a = m_features.col(i);
    for (Index j = 0; j < d; ++j) g.segment(offset_w1() + j * m_hidden, m_hidden) += a[j] * ws.delta_hidden;
    g.segment(offset_b1(), m_hidden) += ws.delta_hidden;
    for (Index k = 0; k < m_hidden; ++k) g.segment(offset_w2() + k * m_classes, m_classes) += ws.act[k] * ws.delta_out;
    g.segment(offset_b2(), m_classes) += ws.delta_out;
  }

  double regularizer(ConstVectorRef x) const { return m_lambda == 0.0 ? 0.0 : 0.5 * m_lambda * x.squaredNorm(); }

  Matrix m_features;
  std::vector<Index> m_labels;
  Index m_classes;
  Index m_hidden;
  double m_lambda;
  Vector m_sq_norms;
};

}  // namespace lgm
