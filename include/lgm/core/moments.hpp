// Per-sample moments of a batch along a direction, closed form or by the generic per-sample loop,
// and the population (whole data set) moments that the exact-variance tests use
// (docs/batch_rules.md §Exact tests).
#pragma once

#include <numeric>
#include <vector>

#include "lgm/core/concepts.hpp"
#include "lgm/core/types.hpp"

namespace lgm {

/// Σ‖g_i‖², Σ⟨g_i,v⟩, Σ⟨g_i,v⟩² by materializing each per-sample gradient in `scratch` (d entries).
/// The reference against which every closed form is tested.
template <Objective Obj>
SampleMoments sample_moments_by_loop(const Obj& obj, ConstVectorRef x, IndexSpan batch, ConstVectorRef v,
                                     typename Obj::Workspace& ws, VectorRef scratch) {
  SampleMoments s;
  for (Index i : batch) {
    obj.sample_gradient(x, i, scratch, ws);
    const double p = scratch.dot(v);
    s.sum_sq_norm += scratch.squaredNorm();
    s.sum_proj += p;
    s.sum_proj_sq += p * p;
  }
  s.count = static_cast<Index>(batch.size());
  return s;
}

/// Closed form when the objective has one, the per-sample loop otherwise.
template <Objective Obj>
SampleMoments sample_moments(const Obj& obj, ConstVectorRef x, IndexSpan batch, ConstVectorRef v,
                             typename Obj::Workspace& ws, VectorRef scratch) {
  if constexpr (HasClosedFormMoments<Obj>) {
    (void)scratch;
    return obj.sample_moments(x, batch, v, ws);
  } else {
    return sample_moments_by_loop(obj, x, batch, v, ws, scratch);
  }
}

/// An objective that gives Σ‖g_i‖² over a batch in closed form, which is all the norm test needs
/// (docs/batch_rules.md §Cheap forms). The linear models and softmax keep the per-sample terms of their last
/// gradient() in the workspace, so that right after the gradient this costs O(b + d) instead of a second pass
/// over the batch's features.
template <class O>
concept HasClosedFormSqNormSum = Objective<O> &&
    requires(const O& o, typename O::Workspace& ws, ConstVectorRef x, IndexSpan b) {
  { o.sample_sq_norm_sum(x, b, ws) } -> std::same_as<double>;
};

/// Σ‖g_i‖² over the batch: the objective's own form when it has one, else the sum_sq_norm of sample_moments
/// (closed form or per-sample loop; `v` is any vector of size d, e.g. the batch gradient).
template <Objective Obj>
double sample_sq_norm_sum(const Obj& obj, ConstVectorRef x, IndexSpan batch, ConstVectorRef v,
                          typename Obj::Workspace& ws, VectorRef scratch) {
  if constexpr (HasClosedFormSqNormSum<Obj>) {
    (void)v;
    (void)scratch;
    return obj.sample_sq_norm_sum(x, batch, ws);
  } else {
    return sample_moments(obj, x, batch, v, ws, scratch).sum_sq_norm;
  }
}

/// Population statistics at x over the whole data set, sampled uniformly (docs/batch_rules.md §Exact tests):
/// grad_norm_sq = ‖∇F‖², variance = σ²(x) = E‖∇f_i − ∇F‖², ip_variance = Var⟨∇f_i, ∇F⟩,
/// orth_variance = E‖∇f_i − (⟨∇f_i,∇F⟩/‖∇F‖²)∇F‖².
struct PopulationMoments {
  double grad_norm_sq = 0.0;
  double variance = 0.0;
  double ip_variance = 0.0;
  double orth_variance = 0.0;
};

/// Writes ∇F(x) into `full_grad` and returns the population moments. `all` lists every sample index.
template <Objective Obj>
PopulationMoments population_moments(const Obj& obj, ConstVectorRef x, IndexSpan all, typename Obj::Workspace& ws,
                                     VectorRef full_grad, VectorRef scratch) {
  obj.gradient(x, all, full_grad, ws);
  const SampleMoments s = sample_moments(obj, x, all, full_grad, ws, scratch);
  const double n = static_cast<double>(s.count);
  PopulationMoments p;
  p.grad_norm_sq = full_grad.squaredNorm();
  // E‖g_i‖² − ‖∇F‖²; E⟨g_i,∇F⟩² − ‖∇F‖⁴ (the mean of ⟨g_i,∇F⟩ is ‖∇F‖²).
  p.variance = s.sum_sq_norm / n - p.grad_norm_sq;
  p.ip_variance = s.sum_proj_sq / n - p.grad_norm_sq * p.grad_norm_sq;
  p.orth_variance = p.grad_norm_sq > 0.0 ? s.sum_sq_norm / n - s.sum_proj_sq / (n * p.grad_norm_sq) : p.variance;
  return p;
}

}  // namespace lgm

namespace lgm {

/// F(x) = (1/N) Σ_i f_i(x) over the whole data set (allocates; for evaluation, not for the hot loop).
template <Objective Obj>
double full_loss(const Obj& obj, ConstVectorRef x) {
  if constexpr (requires { obj.full_loss(x); }) {
    return obj.full_loss(x);
  } else {
    std::vector<Index> all(static_cast<size_t>(obj.num_samples()));
    std::iota(all.begin(), all.end(), Index{0});
    auto ws = obj.make_workspace();
    return obj.loss(x, all, ws);
  }
}

}  // namespace lgm
