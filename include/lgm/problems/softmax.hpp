// Multiclass logistic (softmax) regression with C classes and an L2 term:
//   f_i(W) = −log p_{y_i}(W; a_i) + (λ/2)‖W‖²_F,   p(W; a) = softmax(Wa),   W ∈ R^{C×d},
// flattened as x[c·d + j] = W_{c,j}: the d weights of class c are contiguous (x viewed as a d × C column-major
// matrix is Wᵀ). No bias: append a constant feature to the data for one.
// With δ_i = p_i − e_{y_i}: ∇f_i = δ_i ⊗ a_i + λx, so (docs/batch_rules.md §Cheap forms, dense layer)
//   ‖∇f_i‖² = ‖δ_i‖²‖a_i‖² + 2λ δ_iᵀ(Wa_i) + λ²‖x‖²,   ⟨∇f_i, v⟩ = δ_iᵀ(V a_i) + λ⟨x, v⟩.
// Constants: ∇²F = (1/N) Σ (diag p_i − p_i p_iᵀ) ⊗ a_i a_iᵀ + λI, and 0 ≼ diag p − ppᵀ ≼ ½ I, so
//   L ≤ ½ λ_max(AAᵀ)/N + λ (an upper bound; exact for C = 2, where it is attained at x = 0),
//   μ = λ exactly (the direction W = 1uᵀ has zero cross-entropy curvature at every x).
#pragma once

#include <Eigen/Core>
#include <cassert>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/problems/dataset.hpp"

namespace lgm {

namespace detail {

/// Cross-entropy −log softmax(z)_y in an overflow-free form, and δ = softmax(z) − e_y written into `delta`.
/// With m = max z and s = Σ_{c ≠ argmax} e^{z_c − m}: log Σ e^{z_c} = m + log1p(s), so a confident correct
/// prediction keeps its tiny loss instead of rounding it to 0.
inline double softmax_cross_entropy(const Vector& z, Index y, Vector& delta) {
  Index top = 0;
  const double m = z.maxCoeff(&top);
  double rest = 0.0;
  for (Index c = 0; c < z.size(); ++c)
    if (c != top) rest += std::exp(z[c] - m);
  const double log1p_rest = std::log1p(rest);
  for (Index c = 0; c < z.size(); ++c) delta[c] = std::exp(z[c] - m - log1p_rest);
  delta[y] -= 1.0;
  return (m - z[y]) + log1p_rest;
}

/// Fraction of the samples (columns of `features`) whose predicted class, model.predict(x, a_i, ws), is their label;
/// checks x against model.dim(), the features against model.num_features() and the labels against model.classes().
template <class Model>
double classification_accuracy(const Model& model, ConstVectorRef x, const Matrix& features,
                               const std::vector<Index>& labels) {
  require(x.size() == model.dim(), "x (size)", x.size(), "the model's dim() = " + to_text(model.dim()));
  if (features.rows() != model.num_features())
    throw data_error("features (rows)", to_text(features.rows()),
                     "the model's number of features d = " + to_text(model.num_features()));
  if (features.cols() < 1) throw data_error("features (columns)", "0", "at least 1 sample");
  check_class_labels(labels, model.classes(), features.cols());
  auto ws = model.make_workspace();
  Index correct = 0;
  for (Index i = 0; i < features.cols(); ++i)
    if (model.predict(x, features.col(i), ws) == labels[static_cast<std::size_t>(i)]) ++correct;
  return static_cast<double>(correct) / static_cast<double>(features.cols());
}

}  // namespace detail

/// Options of Softmax::synthetic: a Gaussian mixture with one cluster per class (make_gaussian_mixture).
struct SoftmaxOptions {
  Index N = 1000;           ///< samples
  Index d = 10;             ///< features
  Index classes = 3;        ///< C >= 2
  double lambda = 1e-3;     ///< L2 parameter λ >= 0
  double separation = 2.0;  ///< ‖class mean‖ ≈ separation; features = mean + N(0, I)
  std::uint64_t seed = 0;

  void validate() const {
    detail::require_nonnegative("lambda", lambda);
    GaussianMixtureOptions{N, d, classes, 1, separation, seed}.validate();
  }
};

/// Softmax regression; models lgm::HasClosedFormMoments and HasStrongConvexity (μ = λ). The smoothness constant
/// is given only as an upper bound, `smoothness_bound()`, so it never passes for an exact L (HasSmoothness).
class Softmax {
 public:
  /// Scratch of C entries each: logits z = Wa, δ = p − e_y, and V a for the moments; the norm terms of the last
  /// gradient (SqNormCache).
  struct Workspace {
    Vector logits;
    Vector delta;
    Vector proj;
    detail::SqNormCache norms;
  };

  /// `features` d × N (column i = a_i); `labels` N entries in [0, classes − 1]; classes = C >= 2; λ >= 0.
  /// Throws DataError for non-finite data, mismatched sizes or labels out of range; ConfigError for C < 2, λ < 0.
  Softmax(Matrix features, std::vector<Index> labels, Index classes, double lambda = 0.0)
      : m_features(std::move(features)), m_labels(std::move(labels)), m_classes(classes), m_lambda(lambda) {
    detail::require_nonnegative("lambda", lambda);
    detail::check_features(m_features);
    detail::check_class_labels(m_labels, classes, m_features.cols());
    m_sq_norms = m_features.colwise().squaredNorm().transpose();
    m_smoothness_bound = 0.5 * detail::gram_max_eigenvalue(m_features) + lambda;
  }

  static Softmax synthetic(const SoftmaxOptions& opt = {}) {
    opt.validate();
    ClassificationData data = make_gaussian_mixture({opt.N, opt.d, opt.classes, 1, opt.separation, opt.seed});
    return Softmax(std::move(data.features), std::move(data.labels), opt.classes, opt.lambda);
  }

  /// C·d.
  Index dim() const noexcept { return m_classes * m_features.rows(); }
  Index num_samples() const noexcept { return m_features.cols(); }
  Index num_features() const noexcept { return m_features.rows(); }
  Index classes() const noexcept { return m_classes; }
  double lambda() const noexcept { return m_lambda; }
  const Matrix& features() const noexcept { return m_features; }
  const std::vector<Index>& labels() const noexcept { return m_labels; }

  Workspace make_workspace() const {
    return Workspace{Vector::Zero(m_classes), Vector::Zero(m_classes), Vector::Zero(m_classes),
                     detail::SqNormCache{nullptr, Vector::Zero(dim()), {}, {}}};
  }

  /// (1/b) Σ_{i∈batch} f_i(x).
  double loss(ConstVectorRef x, IndexSpan batch, Workspace& ws) const {
    assert(x.size() == dim() && !batch.empty());
    double sum = 0.0;
    for (Index i : batch) sum += forward(x, i, ws);
    return sum / static_cast<double>(batch.size()) + regularizer(x);
  }

  /// g = (1/b) Σ_{i∈batch} ∇f_i(x); returns the mean loss. Also keeps ‖δ_i‖²‖a_i‖² + 2λ δ_iᵀ(Wa_i) per sample
  /// in ws.norms for sample_sq_norm_sum (O(C) per sample, no extra pass over a_i).
  double gradient(ConstVectorRef x, IndexSpan batch, VectorRef g, Workspace& ws) const {
    assert(x.size() == dim() && g.size() == dim() && !batch.empty());
    g.setZero();
    double sum = 0.0;
    double* terms = ws.norms.begin_fill(static_cast<Index>(batch.size()));
    for (std::size_t k = 0; k < batch.size(); ++k) {
      const Index i = batch[k];
      sum += forward(x, i, ws);
      add_outer(i, ws, g);
      terms[k] = norm_term(i, ws);
    }
    ws.norms.end_fill(this, x, batch);
    const double inv_b = 1.0 / static_cast<double>(batch.size());
    g *= inv_b;
    if (m_lambda != 0.0) g += m_lambda * x;
    return sum * inv_b + regularizer(x);
  }

  /// g = ∇f_i(x); returns f_i(x).
  double sample_gradient(ConstVectorRef x, Index i, VectorRef g, Workspace& ws) const {
    assert(x.size() == dim() && g.size() == dim() && i >= 0 && i < num_samples());
    const double f = forward(x, i, ws);
    g.setZero();
    add_outer(i, ws, g);
    if (m_lambda != 0.0) g += m_lambda * x;
    return f + regularizer(x);
  }

  /// Σ‖∇f_i‖², Σ⟨∇f_i, v⟩, Σ⟨∇f_i, v⟩² in closed form (formulas at the top of this file).
  SampleMoments sample_moments(ConstVectorRef x, IndexSpan batch, ConstVectorRef v, Workspace& ws) const {
    assert(x.size() == dim() && v.size() == dim());
    const Eigen::Map<const Matrix> vt(v.data(), num_features(), m_classes);  // Vᵀ: column c = class c
    const double xx = m_lambda * m_lambda * x.squaredNorm();
    const double xv = m_lambda * x.dot(v);
    SampleMoments s;
    for (std::size_t k = 0; k < batch.size(); ++k) {
      const Index i = batch[k];
      forward(x, i, ws);
      ws.proj.noalias() = vt.transpose() * m_features.col(i);
      const double p = ws.delta.dot(ws.proj) + xv;
      s.sum_sq_norm += norm_term(i, ws) + xx;
      s.sum_proj += p;
      s.sum_proj_sq += p * p;
    }
    s.count = static_cast<Index>(batch.size());
    return s;
  }

  /// Σ‖∇f_i‖² over the batch (the norm test's statistic; the sum_sq_norm of sample_moments, bit for bit): from the
  /// terms the last gradient() kept when x and the batch are the same, else by one forward pass over the batch.
  double sample_sq_norm_sum(ConstVectorRef x, IndexSpan batch, Workspace& ws) const {
    assert(x.size() == dim());
    const double xx = m_lambda * m_lambda * x.squaredNorm();
    double sum = 0.0;
    if (ws.norms.matches(this, x, batch)) {
      for (std::size_t k = 0; k < batch.size(); ++k) sum += ws.norms.terms[k] + xx;
      return sum;
    }
    for (Index i : batch) {
      forward(x, i, ws);
      sum += norm_term(i, ws) + xx;
    }
    return sum;
  }

  /// ½ λ_max(AAᵀ)/N + λ >= L (exact for C = 2).
  double smoothness_bound() const noexcept { return m_smoothness_bound; }
  /// μ = λ (exact).
  double strong_convexity() const noexcept { return m_lambda; }

  /// The predicted class of features `a` (size d): argmax_c (Wa)_c, the lowest c on ties. Leaves Wa in ws.logits.
  Index predict(ConstVectorRef x, ConstVectorRef a, Workspace& ws) const {
    assert(x.size() == dim() && a.size() == num_features());
    const Eigen::Map<const Matrix> wt(x.data(), num_features(), m_classes);  // Wᵀ
    ws.logits.noalias() = wt.transpose() * a;
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
  /// Logits and δ of sample i into the workspace; returns the cross-entropy (without the regularizer).
  double forward(ConstVectorRef x, Index i, Workspace& ws) const {
    const Eigen::Map<const Matrix> wt(x.data(), num_features(), m_classes);  // Wᵀ
    ws.logits.noalias() = wt.transpose() * m_features.col(i);
    return detail::softmax_cross_entropy(ws.logits, m_labels[static_cast<std::size_t>(i)], ws.delta);
  }

  /// g += δ_i ⊗ a_i (class c's block gets δ_c a_i).
  void add_outer(Index i, const Workspace& ws, VectorRef g) const {
    const Index d = num_features();
    const auto a = m_features.col(i);
    for (Index c = 0; c < m_classes; ++c) g.segment(c * d, d) += ws.delta[c] * a;
  }

  /// ‖∇f_i‖² − λ²‖x‖² = ‖δ_i‖²‖a_i‖² + 2λ δ_iᵀ(Wa_i), from the workspace after forward(x, i, ws).
  double norm_term(Index i, const Workspace& ws) const {
    return ws.delta.squaredNorm() * m_sq_norms[i] + 2.0 * m_lambda * ws.delta.dot(ws.logits);
  }

  double regularizer(ConstVectorRef x) const { return m_lambda == 0.0 ? 0.0 : 0.5 * m_lambda * x.squaredNorm(); }

  Matrix m_features;
  std::vector<Index> m_labels;
  Index m_classes;
  double m_lambda;
  Vector m_sq_norms;
  double m_smoothness_bound = 0.0;
};

}  // namespace lgm
