// SGD with Nesterov momentum as a local optimizer, PyTorch convention (torch.optim.SGD(nesterov=True),
// dampening 0; docs/optimizers.md §Nesterov, Lin et al.'s LocalSGD code).
#pragma once

#include <array>
#include <string_view>

#include "lgm/core/concepts.hpp"
#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/optim/heavy_ball.hpp"

namespace lgm {

/// Nesterov momentum, PyTorch form (docs/optimizers.md §Nesterov):
///   d = g + λx,   u ← βu + d  (u₀ = 0),   x ← x − lr·(d + βu).
/// Same options and state as HeavyBall; the step looks ahead along the updated buffer.
/// A plain aggregate: `lgm::Nesterov{.momentum = 0.9, .weight_decay = 1e-4}`.
struct Nesterov {
  static constexpr std::string_view name = "nesterov";
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
    // d is recomputed in the x update rather than stored: no scratch vector, no allocation.
    // Both updates are coefficient-wise, so x_i is read before it is written.
    if (weight_decay != 0.0) {
      u = momentum * u + (g + weight_decay * x);
      x -= lr * ((g + weight_decay * x) + momentum * u);
    } else {
      u = momentum * u + g;
      x -= lr * (g + momentum * u);
    }
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

static_assert(LocalOptimizer<Nesterov>);

}  // namespace lgm
