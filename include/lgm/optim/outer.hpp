// Outer optimizers: what happens to the worker average at a synchronization (docs/optimizers.md §Outer optimizers).
// Plain averaging is outer SGD with lr 1 and no momentum; DiLoCo uses outer Nesterov momentum.
#pragma once

#include <string_view>

#include "lgm/core/concepts.hpp"
#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"

namespace lgm {

/// Plain model averaging: x_sync ← mean (docs/optimizers.md §Averaging; Local SGD). The driver skips `apply`
/// for it and copies the mean directly (`is_plain_average`).
struct Averaging {
  static constexpr std::string_view name = "average";
  static constexpr bool is_plain_average = true;

  void init(Index /*dim*/) noexcept {}
  void apply(VectorRef x_sync, ConstVectorRef mean) const { x_sync = mean; }
  /// No state besides the options: nothing to save (docs/driver.md §Checkpoint and resume).
  template <class Ar>
  void checkpoint(Ar&) const noexcept {}
  void validate() const noexcept {}
};

/// Options of outer SGD. The defaults reproduce plain averaging; `diloco()` gives the DiLoCo setting.
struct OuterSGDOptions {
  double lr = 1.0;        ///< outer learning rate, > 0 (1 with momentum 0: plain averaging)
  double momentum = 0.0;  ///< μ in [0, 1)
  bool nesterov = false;  ///< Nesterov look-ahead direction Δ + μv instead of v

  /// DiLoCo's outer optimizer: Nesterov momentum 0.9, outer lr 0.7 (Douillard et al. 2023, arXiv 2311.08105).
  static constexpr OuterSGDOptions diloco() noexcept { return OuterSGDOptions{0.7, 0.9, true}; }
};

/// SGD on the pseudo-gradient (docs/optimizers.md §OuterSGD). At a sync, with x_sync the shared point of the
/// previous sync and mean the new worker average:
///   Δ = x_sync − mean,   v ← μv + Δ  (v₀ = 0),   x_sync ← x_sync − lr·(nesterov ? Δ + μv : v).
/// lr = 1, μ = 0 is plain averaging and is then computed as x_sync ← mean exactly (x − (x − mean) can
/// differ from mean in the last bit). lr = α, μ = 0 applied to one worker is Lookahead's slow-weight
/// update φ ← φ + α(θ − φ). The velocity is allocated in `init`; `apply` does not allocate.
class OuterSGD {
 public:
  static constexpr std::string_view name = "outer_sgd";
  static constexpr bool is_plain_average = false;

  /// Plain averaging (lr 1, momentum 0). Not explicit, so that `OuterSGD outer = {};` (the driver's default
  /// argument) compiles.
  OuterSGD() = default;
  explicit OuterSGD(OuterSGDOptions options) : m_options(options) {}

  /// The DiLoCo preset: Nesterov, lr 0.7, momentum 0.9.
  static OuterSGD diloco() { return OuterSGD(OuterSGDOptions::diloco()); }

  const OuterSGDOptions& options() const noexcept { return m_options; }
  /// v, the pseudo-gradient momentum (zero after init).
  const Vector& velocity() const noexcept { return m_velocity; }

  void init(Index dim) {
    detail::require_at_least("dim", dim, Index{1});
    m_velocity = Vector::Zero(dim);
  }

  void apply(VectorRef x_sync, ConstVectorRef mean) {
    if (x_sync.size() != m_velocity.size() || mean.size() != m_velocity.size())
      throw ConfigError("dim", detail::to_text(x_sync.size()),
                        "the dimension given to OuterSGD::init, " + detail::to_text(m_velocity.size()));
    const double lr = m_options.lr;
    const double mu = m_options.momentum;
    if (lr == 1.0 && mu == 0.0) {
      m_velocity = x_sync - mean;  // v = Δ, kept so that velocity() is right
      x_sync = mean;               // exact plain averaging
      return;
    }
    m_velocity = mu * m_velocity + (x_sync - mean);  // v ← μv + Δ
    if (m_options.nesterov) {
      x_sync -= lr * ((x_sync - mean) + mu * m_velocity);  // coefficient-wise: Δ_i read before x_i is written
    } else {
      x_sync -= lr * m_velocity;
    }
  }

  /// The velocity (docs/driver.md §Checkpoint and resume).
  template <class Ar>
  void checkpoint(Ar& ar) {
    ar("outer.velocity", m_velocity);
  }

  void validate() const {
    detail::require_positive("outer_lr", m_options.lr);
    detail::require_half_open("outer_momentum", m_options.momentum, 0.0, 1.0);
  }

 private:
  OuterSGDOptions m_options{};
  Vector m_velocity;
};

/// OuterSGD whose default is DiLoCo's setting (outer Nesterov, lr 0.7, momentum 0.9), so that
/// `LocalMethod<..., DiLoCoOuter>` default-constructs the DiLoCo outer step.
class DiLoCoOuter : public OuterSGD {
 public:
  DiLoCoOuter() : OuterSGD(OuterSGDOptions::diloco()) {}
  explicit DiLoCoOuter(OuterSGDOptions options) : OuterSGD(options) {}
};

static_assert(OuterOptimizer<Averaging>);
static_assert(OuterOptimizer<OuterSGD>);
static_assert(OuterOptimizer<DiLoCoOuter>);

}  // namespace lgm
