// AdamW (decoupled weight decay) as the local optimizer of Local AdamW (docs/optimizers.md §AdamW), with the arithmetic
// of torch.optim.AdamW; moments kept local at a sync unless selected (QSR's --avg-m / --avg-v, docs/decisions.md §A8).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <string_view>
#include <vector>

#include "lgm/core/concepts.hpp"
#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"

namespace lgm {

/// AdamW, torch.optim.AdamW (amsgrad=False) (docs/optimizers.md §AdamW). Per worker, with its own step count t:
///   t ← t + 1,   s1 ← β1·s1 + (1−β1)·g,   s2 ← β2·s2 + (1−β2)·g²,
///   x ← x(1 − lr·λ) − lr·(s1/(1−β1^t)) / (√(s2/(1−β2^t)) + ε).
/// The last line is evaluated as PyTorch does, x − (lr/(1−β1^t))·s1 / (√s2/√(1−β2^t) + ε), equal up to
/// rounding. t is never reset, also not at a sync (docs/decisions.md §A8). Two options language models need
/// (docs/optimizers.md §Decay mask and clipping): λ only where decay_mask is 1 (the 2-D weights of a tensor table),
/// and g scaled by min(1, c/(‖g‖ + 10⁻⁶)) first (torch.nn.utils.clip_grad_norm_ on each worker's gradient).
/// A plain aggregate: `lgm::AdamW{.weight_decay = 0.05, .average_first_moment = true}`.
struct AdamW {
  static constexpr std::string_view name = "adamw";
  static constexpr std::array<std::string_view, 2> state_fields{"exp_avg", "exp_avg_sq"};

  double beta1 = 0.9;                  ///< β1 in [0, 1)
  double beta2 = 0.999;                ///< β2 in [0, 1)
  double eps = 1e-8;                   ///< ε > 0
  double weight_decay = 0.01;          ///< λ ≥ 0, decoupled (multiplies x, not added to g)
  bool average_first_moment = false;   ///< average s1 at a sync (QSR --avg-m)
  bool average_second_moment = false;  ///< average s2 at a sync (QSR --avg-v)
  Vector decay_mask{};                 ///< empty: λ everywhere; else d values in {0, 1}, λ where 1
  double max_grad_norm = 0.0;          ///< c > 0: clip each worker's gradient to norm c; 0: off

  /// Column m of each matrix is worker m's moment; step[m] is worker m's t.
  struct State {
    Matrix exp_avg;           ///< s1, d × M
    Matrix exp_avg_sq;        ///< s2, d × M
    std::vector<Index> step;  ///< t per worker, M entries
  };

  /// Both moments and every worker's step count (docs/driver.md §Checkpoint and resume).
  template <class Ar>
  void checkpoint_state(State& s, Ar& ar) const {
    ar("optimizer.exp_avg", s.exp_avg);
    ar("optimizer.exp_avg_sq", s.exp_avg_sq);
    ar("optimizer.step", s.step);
  }

  State init(Index dim, Index workers) const {
    detail::require_at_least("dim", dim, Index{1});
    detail::require_at_least("workers", workers, Index{1});
    require_dim(dim);
    return State{Matrix::Zero(dim, workers), Matrix::Zero(dim, workers),
                 std::vector<Index>(static_cast<std::size_t>(workers), Index{0})};
  }

  void step(State& state, Index m, VectorRef x, ConstVectorRef g, double lr) const {
    const Index t = ++state.step[static_cast<std::size_t>(m)];
    auto s1 = state.exp_avg.col(m).array();
    auto s2 = state.exp_avg_sq.col(m).array();
    const double clip = max_grad_norm > 0.0 ? clip_factor(g.norm()) : 1.0;
    const auto ga = clip * g.array();
    s1 = beta1 * s1 + (1.0 - beta1) * ga;
    s2 = beta2 * s2 + (1.0 - beta2) * ga.square();
    if (weight_decay != 0.0 && decay_mask.size() == 0) x *= 1.0 - lr * weight_decay;  // decoupled, pre-step x
    if (weight_decay != 0.0 && decay_mask.size() != 0) x.array() *= 1.0 - lr * weight_decay * decay_mask.array();
    const double td = static_cast<double>(t);
    const double step_size = lr / (1.0 - std::pow(beta1, td));                  // lr / (1 − β1^t)
    const double bias_correction2_sqrt = std::sqrt(1.0 - std::pow(beta2, td));  // √(1 − β2^t)
    x.array() -= step_size * (s1 / (s2.sqrt() / bias_correction2_sqrt + eps));  // addcdiv order
  }

  /// decay_mask is empty or has d values.
  void require_dim(Index dim) const {
    detail::require(decay_mask.size() == 0 || decay_mask.size() == dim, "decay_mask (size)", decay_mask.size(),
                    "0 (decay everywhere) or the dimension d = " + detail::to_text(dim));
  }

  /// The factor of a gradient of norm `norm`: min(1, c/(norm + 10⁻⁶)) when clipping, else 1.
  double clip_factor(double norm) const noexcept {
    return max_grad_norm > 0.0 ? std::min(1.0, max_grad_norm / (norm + 1e-6)) : 1.0;
  }

  template <class F>
  void for_each_averaged_field(State& state, F&& f) const {
    if (average_first_moment) {
      MatrixRef field(state.exp_avg);
      f(field);
    }
    if (average_second_moment) {
      MatrixRef field(state.exp_avg_sq);
      f(field);
    }
  }
  Index averaged_field_count() const noexcept {
    return (average_first_moment ? 1 : 0) + (average_second_moment ? 1 : 0);
  }

  void validate() const {
    detail::require_half_open("beta1", beta1, 0.0, 1.0);
    detail::require_half_open("beta2", beta2, 0.0, 1.0);
    detail::require_positive("eps", eps);
    detail::require_nonnegative("weight_decay", weight_decay);
    detail::require_nonnegative("max_grad_norm", max_grad_norm);
    for (Index i = 0; i < decay_mask.size(); ++i)
      detail::require(decay_mask[i] == 0.0 || decay_mask[i] == 1.0, "decay_mask[" + detail::to_text(i) + "]",
                      decay_mask[i], "0 (no decay) or 1 (decay)");
  }
};

static_assert(LocalOptimizer<AdamW>);

}  // namespace lgm
