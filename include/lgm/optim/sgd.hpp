// Plain SGD as the local optimizer of Local SGD, with PyTorch's coupled L2 weight decay (docs/optimizers.md §SGD).
#pragma once

#include <array>
#include <string_view>

#include "lgm/core/concepts.hpp"
#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"

namespace lgm {

/// Stochastic gradient descent: d = g + λx, x ← x − lr·d (docs/optimizers.md §SGD; coupled L2 as in
/// torch.optim.SGD). Stateless, so a sync has nothing to average but x.
/// A plain aggregate: `lgm::SGD{.weight_decay = 5e-4}`.
struct SGD {
  static constexpr std::string_view name = "sgd";
  /// SGD keeps no state, so no field can be averaged at a sync.
  static constexpr std::array<std::string_view, 0> state_fields{};

  double weight_decay = 0.0;  ///< λ ≥ 0, coupled L2 (added to the gradient)

  /// SGD has no per-worker state.
  struct State {};

  /// No state (docs/driver.md §Checkpoint and resume).
  template <class Ar>
  void checkpoint_state(State&, Ar&) const noexcept {}

  State init(Index dim, Index workers) const {
    detail::require_at_least("dim", dim, Index{1});
    detail::require_at_least("workers", workers, Index{1});
    return State{};
  }

  /// One step of worker m; x is that worker's column, updated in place.
  void step(State& /*state*/, Index /*m*/, VectorRef x, ConstVectorRef g, double lr) const {
    // λ = 0 skips the term, as PyTorch does; g + 0·x would also turn an infinite x into NaN
    if (weight_decay != 0.0) {
      x -= lr * (g + weight_decay * x);  // coefficient-wise, so reading x on the right is alias-safe
    } else {
      x -= lr * g;
    }
  }

  template <class F>
  void for_each_averaged_field(State& /*state*/, F&& /*f*/) const noexcept {}
  Index averaged_field_count() const noexcept { return 0; }

  void validate() const { detail::require_nonnegative("weight_decay", weight_decay); }
};

static_assert(LocalOptimizer<SGD>);

}  // namespace lgm
