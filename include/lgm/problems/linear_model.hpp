// The machinery shared by the linear-model problems (least squares, logistic, nonconvex logistic):
//   f_i(x) = φ(a_iᵀx; y_i) + R(x),   ∇f_i(x) = φ'(a_iᵀx; y_i) a_i + ∇R(x),
// with closed-form per-sample moments (docs/batch_rules.md §Cheap forms): with r_i = φ'(a_iᵀx; y_i), c = ∇R(x),
//   ‖∇f_i‖² = r_i²‖a_i‖² + 2 r_i⟨a_i, c⟩ + ‖c‖²,   ⟨∇f_i, v⟩ = r_i⟨a_i, v⟩ + ⟨c, v⟩,
// where the row norms ‖a_i‖² are computed once at construction.
// Opt-in float32 features (use_float_features): the per-sample loops then read a float copy of the features,
// half the bytes of the memory-bound column gathers, and accumulate in double; the default stays double.
#pragma once

#include <cassert>
#include <cmath>
#include <cstddef>
#include <utility>

#include "lgm/core/types.hpp"
#include "lgm/problems/dataset.hpp"

namespace lgm::detail {

/// φ(z; y) = ½(z − y)², φ' = z − y.
struct SquaredLoss {
  static double eval(double z, double y, double& derivative) {
    const double r = z - y;
    derivative = r;
    return 0.5 * r * r;
  }
};

/// φ(z; y) = log(1 + e^{−yz}) for y ∈ {−1, +1}, φ' = −y σ(−yz); both in overflow-free forms.
struct LogisticLoss {
  static double eval(double z, double y, double& derivative) {
    const double t = -y * z;
    derivative = -y * sigmoid(t);
    return softplus(t);
  }
};

/// R(x) = (λ/2)‖x‖², ∇R = λx.
struct L2Regularizer {
  double lambda = 0.0;
  double value(ConstVectorRef x) const { return lambda == 0.0 ? 0.0 : 0.5 * lambda * x.squaredNorm(); }
  void add_gradient(ConstVectorRef x, VectorRef g) const {
    if (lambda != 0.0) g += lambda * x;
  }
  void gradient(ConstVectorRef x, VectorRef c) const { c = lambda * x; }
  /// ⟨a_i, ∇R(x)⟩ = λ a_iᵀx = λ z_i: free, z_i is already known.
  double feature_dot(ConstVectorRef /*a*/, double z, ConstVectorRef /*c*/) const { return lambda * z; }
  /// feature_dot needs no pass over a_i, so the gradient keeps the per-sample norm terms for the norm test.
  static constexpr bool free_feature_dot = true;
};

/// R(x) = λ Σ_j x_j²/(1 + x_j²) (nonconvex), ∂R/∂x_j = 2λ x_j/(1 + x_j²)².
struct NonconvexRegularizer {
  double lambda = 0.0;
  double value(ConstVectorRef x) const {
    double s = 0.0;
    for (Index j = 0; j < x.size(); ++j) s += x[j] * x[j] / (1.0 + x[j] * x[j]);
    return lambda * s;
  }
  static double partial(double lambda, double t) {
    const double q = 1.0 + t * t;
    return 2.0 * lambda * t / (q * q);
  }
  void add_gradient(ConstVectorRef x, VectorRef g) const {
    for (Index j = 0; j < x.size(); ++j) g[j] += partial(lambda, x[j]);
  }
  void gradient(ConstVectorRef x, VectorRef c) const {
    for (Index j = 0; j < x.size(); ++j) c[j] = partial(lambda, x[j]);
  }
  double feature_dot(ConstVectorRef a, double /*z*/, ConstVectorRef c) const { return a.dot(c); }
  static constexpr bool free_feature_dot = false;
};

/// A finite sum of f_i(x) = φ(a_iᵀx; y_i) + R(x) over the columns a_i of a d × N feature matrix. Models
/// lgm::HasClosedFormMoments. The derived problem checks its own labels and parameters.
template <class Loss, class Reg>
class LinearModel {
 public:
  /// Scratch for sample_moments: c = ∇R(x); the norm terms of the last gradient (SqNormCache).
  struct Workspace {
    Vector reg_grad;
    SqNormCache norms;
  };

  Index dim() const noexcept { return m_features.rows(); }
  Index num_samples() const noexcept { return m_features.cols(); }
  Workspace make_workspace() const {
    return Workspace{Vector::Zero(dim()), SqNormCache{nullptr, Vector::Zero(dim()), {}, {}}};
  }

  /// d × N, column i = a_i.
  const Matrix& features() const noexcept { return m_features; }
  /// ‖a_i‖², i = 0 … N−1.
  const Vector& feature_sq_norms() const noexcept { return m_sq_norms; }

  /// Opt-in: loss, gradient, sample_gradient and the per-sample statistics read a float32 copy of the features
  /// (built here, O(dN)), accumulating in double. The results are those of the features rounded to float
  /// (relative change ~1e-7); features(), x* and L stay those of the double data. Call before a run, not during.
  void use_float_features(bool on = true) {
    if (on == float_features()) return;
    m_float = on ? FloatFeatures(m_features) : FloatFeatures();
    m_float_sq_norms = on ? Vector(num_samples()) : Vector();
    for (Index i = 0; on && i < num_samples(); ++i)
      m_float_sq_norms[i] = Eigen::Map<const Eigen::VectorXf>(m_float.col(i), dim()).cast<double>().squaredNorm();
  }
  /// Whether the per-sample loops read float32 features.
  bool float_features() const noexcept { return !m_float.empty(); }

  /// (1/b) Σ_{i∈batch} f_i(x).
  double loss(ConstVectorRef x, IndexSpan batch, Workspace& /*ws*/) const {
    assert(x.size() == dim() && !batch.empty());
    double sum = 0.0, deriv = 0.0;
    for (Index i : batch) sum += Loss::eval(col_dot(i, x), m_targets[i], deriv);
    return sum / static_cast<double>(batch.size()) + m_reg.value(x);
  }

  /// g = (1/b) Σ_{i∈batch} ∇f_i(x); returns the mean loss.
  /// With a regularizer whose feature_dot is free (L2), also keeps r_i²‖a_i‖² + 2r_i⟨a_i, c⟩ per sample in
  /// ws.norms for sample_sq_norm_sum (a few flops per sample, no extra pass over a_i).
  double gradient(ConstVectorRef x, IndexSpan batch, VectorRef g, Workspace& ws) const {
    assert(x.size() == dim() && g.size() == dim() && !batch.empty());
    g.setZero();
    double sum = 0.0, deriv = 0.0;
    [[maybe_unused]] double* terms = nullptr;
    if constexpr (Reg::free_feature_dot) terms = ws.norms.begin_fill(static_cast<Index>(batch.size()));
    for (std::size_t k = 0; k < batch.size(); ++k) {
      const Index i = batch[k];
      if (float_features() && k + 1 < batch.size()) prefetch_column(m_float.col(batch[k + 1]), dim());
      const double z = col_dot(i, x);
      sum += Loss::eval(z, m_targets[i], deriv);
      col_axpy(deriv, i, g);
      if constexpr (Reg::free_feature_dot)
        terms[k] = deriv * deriv * sq_norm(i) + 2.0 * deriv * reg_feature_dot(i, z, ws.reg_grad);
    }
    if constexpr (Reg::free_feature_dot) ws.norms.end_fill(this, x, batch);
    const double inv_b = 1.0 / static_cast<double>(batch.size());
    g *= inv_b;
    m_reg.add_gradient(x, g);
    return sum * inv_b + m_reg.value(x);
  }

  /// g = ∇f_i(x); returns f_i(x).
  double sample_gradient(ConstVectorRef x, Index i, VectorRef g, Workspace& /*ws*/) const {
    assert(x.size() == dim() && g.size() == dim() && i >= 0 && i < num_samples());
    double deriv = 0.0;
    const double f = Loss::eval(col_dot(i, x), m_targets[i], deriv);
    if (float_features()) {
      g.setZero();
      col_axpy(deriv, i, g);
    } else {
      g = deriv * m_features.col(i);
    }
    m_reg.add_gradient(x, g);
    return f + m_reg.value(x);
  }

  /// Σ‖∇f_i‖², Σ⟨∇f_i, v⟩, Σ⟨∇f_i, v⟩² over the batch in closed form (docs/batch_rules.md §Cheap forms;
  /// formulas at the top).
  SampleMoments sample_moments(ConstVectorRef x, IndexSpan batch, ConstVectorRef v, Workspace& ws) const {
    assert(x.size() == dim() && v.size() == dim());
    VectorRef c = ws.reg_grad;
    m_reg.gradient(x, c);
    const double cc = c.squaredNorm();
    const double cv = c.dot(v);
    SampleMoments s;
    double deriv = 0.0;
    for (std::size_t k = 0; k < batch.size(); ++k) {
      const Index i = batch[k];
      const double z = col_dot(i, x);
      Loss::eval(z, m_targets[i], deriv);
      const double p = deriv * col_dot(i, v) + cv;
      s.sum_sq_norm += deriv * deriv * sq_norm(i) + 2.0 * deriv * reg_feature_dot(i, z, c) + cc;
      s.sum_proj += p;
      s.sum_proj_sq += p * p;
    }
    s.count = static_cast<Index>(batch.size());
    return s;
  }

  /// Σ‖∇f_i‖² over the batch (the norm test's statistic; the sum_sq_norm of sample_moments, bit for bit): from the
  /// terms the last gradient() kept when x and the batch are the same, else by one pass over the batch.
  double sample_sq_norm_sum(ConstVectorRef x, IndexSpan batch, Workspace& ws) const {
    assert(x.size() == dim());
    VectorRef c = ws.reg_grad;
    m_reg.gradient(x, c);
    const double cc = c.squaredNorm();
    double sum = 0.0;
    if constexpr (Reg::free_feature_dot) {
      if (ws.norms.matches(this, x, batch)) {
        for (std::size_t k = 0; k < batch.size(); ++k) sum += ws.norms.terms[k] + cc;
        return sum;
      }
    }
    double deriv = 0.0;
    for (std::size_t k = 0; k < batch.size(); ++k) {
      const Index i = batch[k];
      const double z = col_dot(i, x);
      Loss::eval(z, m_targets[i], deriv);
      sum += deriv * deriv * sq_norm(i) + 2.0 * deriv * reg_feature_dot(i, z, c) + cc;
    }
    return sum;
  }

 protected:
  LinearModel(Matrix features, Vector targets, Reg reg)
      : m_features(huge_page_backed(std::move(features))), m_targets(std::move(targets)), m_reg(reg) {
    check_features(m_features);
    m_sq_norms = m_features.colwise().squaredNorm().transpose();
  }

  /// F(x) over the whole data set (used at construction for f*).
  double full_data_loss(ConstVectorRef x) const {
    double sum = 0.0, deriv = 0.0;
    for (Index i = 0; i < num_samples(); ++i) sum += Loss::eval(m_features.col(i).dot(x), m_targets[i], deriv);
    return sum / static_cast<double>(num_samples()) + m_reg.value(x);
  }

  /// ∇F(x) over the whole data set.
  void full_data_gradient(ConstVectorRef x, VectorRef g) const {
    g.setZero();
    double deriv = 0.0;
    for (Index i = 0; i < num_samples(); ++i) {
      const auto a = m_features.col(i);
      Loss::eval(a.dot(x), m_targets[i], deriv);
      g += deriv * a;
    }
    g /= static_cast<double>(num_samples());
    m_reg.add_gradient(x, g);
  }

  Matrix m_features;
  Vector m_targets;
  Vector m_sq_norms;
  Reg m_reg;
  FloatFeatures m_float;    ///< empty unless use_float_features()
  Vector m_float_sq_norms;  ///< ‖a_i‖² of the float copy

 private:
  // The per-sample accessors of the hot loops: the double path is the expression it always was (bit for bit).
  double col_dot(Index i, ConstVectorRef v) const {
    return float_features() ? widened_dot(m_float.col(i), v.data(), dim()) : m_features.col(i).dot(v);
  }
  void col_axpy(double r, Index i, VectorRef g) const {
    if (float_features())
      widened_axpy(r, m_float.col(i), g.data(), dim());
    else
      g += r * m_features.col(i);
  }
  double sq_norm(Index i) const { return float_features() ? m_float_sq_norms[i] : m_sq_norms[i]; }
  double reg_feature_dot(Index i, double z, ConstVectorRef c) const {
    if constexpr (!Reg::free_feature_dot)
      if (float_features()) return widened_dot(m_float.col(i), c.data(), dim());
    return m_reg.feature_dot(m_features.col(i), z, c);
  }
};

}  // namespace lgm::detail
