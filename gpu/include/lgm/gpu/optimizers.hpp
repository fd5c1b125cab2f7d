// Device local optimizers (docs/gpu.md "Optimizers"): the host option structs (include/lgm/optim) with their
// state on the device and one fused launch per step for all M workers (kernels.hpp). Options, validation, the
// name and the averaged-field selection come from the host optimizer, so a configuration means the same thing
// on both backends.
#pragma once

#include <cmath>
#include <concepts>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/gpu/kernels.hpp"
#include "lgm/gpu/storage.hpp"
#include "lgm/optim/adamw.hpp"
#include "lgm/optim/heavy_ball.hpp"
#include "lgm/optim/nesterov.hpp"
#include "lgm/optim/sgd.hpp"
#include "lgm/run/checkpoint.hpp"

namespace lgm::gpu {

/// The host local optimizers that have a device counterpart.
template <class O>
concept DeviceSupportedOptimizer = std::same_as<O, lgm::SGD> || std::same_as<O, lgm::HeavyBall> ||
    std::same_as<O, lgm::Nesterov> || std::same_as<O, lgm::AdamW>;

namespace detail {

/// Device state of each optimizer: the host State's fields as d × M device matrices (column m = worker m).
template <class HostOpt, class T>
struct DeviceOptimizerState;

template <class T>
struct DeviceOptimizerState<lgm::SGD, T> {};  // SGD keeps no state

}  // namespace detail

/// Saves (or restores) a d × M device matrix as a host matrix of doubles (a snapshot field).
template <class Ar, class T>
void checkpoint_device_matrix(Ar& ar, const char* name, DeviceMatrixView<T> v, StreamHandle s) {
  std::vector<T> host(static_cast<std::size_t>(v.size()));
  lgm::Matrix m(v.rows(), v.cols());
  if constexpr (Ar::saving) {
    copy_to_host(host.data(), v.data(), host.size() * sizeof(T), s);
    for (Index i = 0; i < v.size(); ++i) m.data()[i] = static_cast<double>(host[static_cast<std::size_t>(i)]);
    ar(name, m);
  } else {
    ar(name, m);
    if (m.rows() != v.rows() || m.cols() != v.cols())
      throw lgm::SnapshotError(std::string("snapshot of another run: ") + name + " is " +
                               lgm::detail::to_text(m.rows()) + " × " + lgm::detail::to_text(m.cols()) +
                               ", this run's is " + lgm::detail::to_text(v.rows()) + " × " +
                               lgm::detail::to_text(v.cols()));
    for (Index i = 0; i < v.size(); ++i) host[static_cast<std::size_t>(i)] = static_cast<T>(m.data()[i]);
    copy_to_device(v.data(), host.data(), host.size() * sizeof(T), s);
  }
}

namespace detail {

template <class T>
struct DeviceMomentumState {
  DeviceMatrix<T> momentum;  ///< u, d × M, zero at the start, never reset at a sync (A8)
};
template <class T>
struct DeviceOptimizerState<lgm::HeavyBall, T> : DeviceMomentumState<T> {};
template <class T>
struct DeviceOptimizerState<lgm::Nesterov, T> : DeviceMomentumState<T> {};

template <class T>
struct DeviceOptimizerState<lgm::AdamW, T> {
  DeviceMatrix<T> exp_avg;     ///< s1, d × M
  DeviceMatrix<T> exp_avg_sq;  ///< s2, d × M
  /// t: the host keeps one count per worker; step_all advances every worker at once, so they share it.
  Index step = 0;
  DeviceBuffer<T> decay_mask;  ///< the host's decay_mask (d values), or empty
  DeviceBuffer<T> clip;        ///< M factors of global-norm clipping (when max_grad_norm > 0)
  std::vector<double> norms;   ///< M squared gradient norms (host)
  std::vector<T> clip_host;    ///< M factors (host)
};

}  // namespace detail

/// A local optimizer on the device. `HostOpt` is lgm::SGD, lgm::HeavyBall, lgm::Nesterov or lgm::AdamW and
/// supplies the options; T is the element type of the device buffers.
template <class HostOpt, class T = float>
class DeviceOptimizer {
  static_assert(DeviceSupportedOptimizer<HostOpt>,
                "DeviceOptimizer: HostOpt must be lgm::SGD, lgm::HeavyBall, lgm::Nesterov or lgm::AdamW");
  static_assert(DeviceScalar<T>, "DeviceOptimizer: T must be float or double");

 public:
  using HostOptimizer = HostOpt;
  using value_type = T;
  using Storage = DeviceStorage<T>;
  using State = detail::DeviceOptimizerState<HostOpt, T>;

  static constexpr std::string_view name = HostOpt::name;
  static constexpr auto state_fields = HostOpt::state_fields;

  DeviceOptimizer() = default;
  explicit DeviceOptimizer(HostOpt options) : m_options(std::move(options)) {}

  const HostOpt& options() const noexcept { return m_options; }
  HostOpt& options() noexcept { return m_options; }

  void validate() const { m_options.validate(); }

  /// Zero-filled state for `workers` replicas of dimension `dim`, allocated in the storage's stream.
  State init(Index dim, Index workers, const Storage& st) const {
    lgm::detail::require_at_least("dim", dim, Index{1});
    lgm::detail::require_at_least("workers", workers, Index{1});
    State state;
    if constexpr (std::same_as<HostOpt, lgm::HeavyBall> || std::same_as<HostOpt, lgm::Nesterov>) {
      state.momentum = st.matrix(dim, workers);
      fill_zero(state.momentum.view(), st.stream());
    } else if constexpr (std::same_as<HostOpt, lgm::AdamW>) {
      state.exp_avg = st.matrix(dim, workers);
      state.exp_avg_sq = st.matrix(dim, workers);
      fill_zero(state.exp_avg.view(), st.stream());
      fill_zero(state.exp_avg_sq.view(), st.stream());
      m_options.require_dim(dim);
      if (m_options.decay_mask.size() != 0) {
        std::vector<T> mask(m_options.decay_mask.data(), m_options.decay_mask.data() + dim);
        state.decay_mask = DeviceBuffer<T>(dim, st.stream());
        copy_to_device(state.decay_mask.data(), mask.data(), mask.size() * sizeof(T), st.stream());
      }
      if (m_options.max_grad_norm > 0.0) {
        state.clip = DeviceBuffer<T>(workers, st.stream());
        state.norms.resize(static_cast<std::size_t>(workers));
        state.clip_host.resize(static_cast<std::size_t>(workers));
      }
    }
    return state;
  }

  /// One local step of every worker, in one launch: column m of X steps with column m of G (all with lr).
  void step_all(State& state, DeviceMatrixView<T> X, DeviceMatrixView<const T> G, double lr, StreamHandle s) const {
    if constexpr (std::same_as<HostOpt, lgm::SGD>) {
      (void)state;
      sgd_step(X, G, lr, m_options.weight_decay, s);
    } else if constexpr (std::same_as<HostOpt, lgm::HeavyBall>) {
      heavy_ball_step(X, G, state.momentum.view(), lr, m_options.momentum, m_options.weight_decay, s);
    } else if constexpr (std::same_as<HostOpt, lgm::Nesterov>) {
      nesterov_step(X, G, state.momentum.view(), lr, m_options.momentum, m_options.weight_decay, s);
    } else {
      const Index t = ++state.step;
      const T* clip = nullptr;
      if (m_options.max_grad_norm > 0.0) {  // column m's factor min(1, c/(‖g_m‖ + 1e-6)), as the host's
        column_squared_norms(G, state.norms, s);
        for (std::size_t m = 0; m < state.norms.size(); ++m)
          state.clip_host[m] = static_cast<T>(m_options.clip_factor(std::sqrt(state.norms[m])));
        copy_to_device(state.clip.data(), state.clip_host.data(), state.clip_host.size() * sizeof(T), s);
        clip = state.clip.data();
      }
      adamw_step(X, G, state.exp_avg.view(), state.exp_avg_sq.view(),
                 AdamWCoefficients::at(lr, m_options.beta1, m_options.beta2, m_options.eps, m_options.weight_decay, t),
                 s, state.decay_mask.count() > 0 ? state.decay_mask.data() : nullptr, clip);
    }
  }

  /// Calls f(DeviceMatrixView<T>) for every state field selected to be averaged at a sync, in the host
  /// optimizer's order (A8: none by default).
  template <class F>
  void for_each_averaged_field(State& state, F&& f) const {
    if constexpr (std::same_as<HostOpt, lgm::HeavyBall> || std::same_as<HostOpt, lgm::Nesterov>) {
      if (m_options.average_momentum) f(state.momentum.view());
    } else if constexpr (std::same_as<HostOpt, lgm::AdamW>) {
      if (m_options.average_first_moment) f(state.exp_avg.view());
      if (m_options.average_second_moment) f(state.exp_avg_sq.view());
    } else {
      (void)state;
      (void)f;
    }
  }
  Index averaged_field_count() const noexcept { return m_options.averaged_field_count(); }

  /// The state fields through the host (docs/driver.md §Checkpoint and resume): T values are saved as doubles,
  /// which holds a float exactly.
  template <class Ar>
  void checkpoint_state(State& state, Ar& ar, StreamHandle s) const {
    if constexpr (std::same_as<HostOpt, lgm::HeavyBall> || std::same_as<HostOpt, lgm::Nesterov>) {
      checkpoint_device_matrix(ar, "optimizer.momentum", state.momentum.view(), s);
    } else if constexpr (std::same_as<HostOpt, lgm::AdamW>) {
      checkpoint_device_matrix(ar, "optimizer.exp_avg", state.exp_avg.view(), s);
      checkpoint_device_matrix(ar, "optimizer.exp_avg_sq", state.exp_avg_sq.view(), s);
      ar("optimizer.step", state.step);
    } else {
      (void)state;
      (void)ar;
      (void)s;
    }
  }

 private:
  HostOpt m_options{};
};

template <class T = float>
using SGD = DeviceOptimizer<lgm::SGD, T>;
template <class T = float>
using HeavyBall = DeviceOptimizer<lgm::HeavyBall, T>;
template <class T = float>
using Nesterov = DeviceOptimizer<lgm::Nesterov, T>;
template <class T = float>
using AdamW = DeviceOptimizer<lgm::AdamW, T>;

}  // namespace lgm::gpu
