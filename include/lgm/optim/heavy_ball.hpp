// Stochastic heavy ball (SGD with momentum) as the local optimizer of Local SHB
// (docs/optimizers.md §HeavyBall), PyTorch convention with dampening 0; momentum kept local at a sync unless selected
// (docs/decisions.md §A8).
#pragma once

#include <array>
#include <string_view>

#include "lgm/core/concepts.hpp"
#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"

namespace lgm {

/// Per-worker momentum buffers of HeavyBall and Nesterov: column m is worker m's u, zero at the start,
/// never reset at a sync (docs/decisions.md §A8).
struct MomentumState {
  Matrix momentum;  ///< d × M
};

namespace detail {

inline MomentumState make_momentum_state(Index dim, Index workers) {
  require_at_least("dim", dim, Index{1});
  require_at_least("workers", workers, Index{1});
  return MomentumState{Matrix::Zero(dim, workers)};
}

inline void validate_momentum(double momentum, double weight_decay) {
  require_half_open("momentum", momentum, 0.0, 1.0);
  require_nonnegative("weight_decay", weight_decay);
}

}  // namespace detail

/// Heavy ball, torch.optim.SGD(momentum=β, dampening=0, nesterov=False) (docs/optimizers.md §HeavyBall):
///   d = g + λx,   u ← βu + d  (u₀ = 0, so the first step gives u = d),   x ← x − lr·u.
/// With constant lr this is Polyak's x − lr·d + β(x_k − x_{k−1}) inside a round.
/// A plain aggregate: `lgm::HeavyBall{.momentum = 0.9, .weight_decay = 5e-4}`.
struct HeavyBall {
  static constexpr std::string_view name = "shb";
  static constexpr std::array<std::string_view, 1> state_fields{"momentum"};

  double momentum = 0.9;          ///< β in [0, 1)
  double weight_decay = 0.0;      ///< λ ≥ 0, coupled L2
  bool average_momentum = false;  ///< average u at a sync too (default: keep local, A8)

  using State = MomentumState;

  State init(Index dim, Index workers) const { return detail::make_momentum_state(dim, workers); }

  /// The momentum buffers (docs/driver.md §Checkpoint and resume).
  template <class Ar>
  void checkpoint_state(State& s, Ar& ar) const {
    ar("optimizer.momentum", s.momentum);
  }

  void step(State& state, Index m, VectorRef x, ConstVectorRef g, double lr) const {
    auto u = state.momentum.col(m);
    if (weight_decay != 0.0) {
      u = momentum * u + (g + weight_decay * x);  // docs/optimizers.md §HeavyBall: u ← βu + (g + λx)
    } else {
      u = momentum * u + g;
    }
    x -= lr * u;
  }

  template <class F>
  void for_each_averaged_field(State& state, F&& f) const {
    if (average_momentum) {
      MatrixRef field(state.momentum);
      f(field);
    }
  }
  Index averaged_field_count() const noexcept { return average_momentum ? 1 : 0; }

  void validate() const { detail::validate_momentum(momentum, weight_decay); }
};

static_assert(LocalOptimizer<HeavyBall>);

}  // namespace lgm
