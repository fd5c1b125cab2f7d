// The run-time local optimizer of network runs (network.cpp): one of the GPU backend's optimizers, chosen by
// optimizer.type, as AnyLocalOptimizer (policies.hpp) is one of the host ones. The other policies of a network
// run are the host run's own (they act on host numbers: batch sizes, periods, the learning rate).
#pragma once

#include <variant>

#include "lgm/gpu/optimizers.hpp"
#include "policies.hpp"

namespace lgm::sim {

template <class T = float>
class AnyDeviceOptimizer {
 public:
  using Storage = gpu::DeviceStorage<T>;
  using Variant = std::variant<gpu::DeviceOptimizer<SGD, T>, gpu::DeviceOptimizer<HeavyBall, T>,
                               gpu::DeviceOptimizer<Nesterov, T>, gpu::DeviceOptimizer<AdamW, T>>;
  using State =
      std::variant<typename gpu::DeviceOptimizer<SGD, T>::State, typename gpu::DeviceOptimizer<HeavyBall, T>::State,
                   typename gpu::DeviceOptimizer<Nesterov, T>::State, typename gpu::DeviceOptimizer<AdamW, T>::State>;

  AnyDeviceOptimizer() = default;
  /// The device twin of `host`; `decay_mask` (d entries, or empty: every entry decays) is AdamW's.
  AnyDeviceOptimizer(const AnyLocalOptimizer& host, const Vector& decay_mask) {
    std::visit(
        [&](const auto& opt) {
          using Host = std::remove_cvref_t<decltype(opt)>;
          if constexpr (std::is_same_v<Host, AdamW>) {
            m_v.template emplace<gpu::DeviceOptimizer<AdamW, T>>(opt);
            std::get<gpu::DeviceOptimizer<AdamW, T>>(m_v).options().decay_mask = decay_mask;
          } else {
            m_v.template emplace<gpu::DeviceOptimizer<Host, T>>(opt);
          }
        },
        host.get());
  }

  const Variant& get() const noexcept { return m_v; }

  State init(Index dim, Index workers, const Storage& st) const {
    return detail::dispatch(
        m_v, [&](const auto& o, auto I) { return State(std::in_place_index<I>, o.init(dim, workers, st)); });
  }
  void step_all(State& s, gpu::DeviceMatrixView<T> X, gpu::DeviceMatrixView<const T> G, double lr,
                gpu::StreamHandle stream) const {
    detail::dispatch(m_v, [&](const auto& o, auto I) { o.step_all(*std::get_if<I>(&s), X, G, lr, stream); });
  }
  template <class F>
  void for_each_averaged_field(State& s, F&& f) const {
    detail::dispatch(m_v, [&](const auto& o, auto I) { o.for_each_averaged_field(*std::get_if<I>(&s), f); });
  }
  Index averaged_field_count() const {
    return std::visit([](const auto& o) { return static_cast<Index>(o.averaged_field_count()); }, m_v);
  }
  /// d × M blocks of state (the memory plan): 0 (SGD), 1 (momentum), 2 (AdamW's moments).
  Index state_field_count() const {
    return std::visit([](const auto& o) { return static_cast<Index>(o.state_fields.size()); }, m_v);
  }
  void validate() const {
    std::visit([](const auto& o) { o.validate(); }, m_v);
  }
  template <class Ar>
  void checkpoint_state(State& s, Ar& ar, gpu::StreamHandle stream) const {
    detail::dispatch(m_v, [&](const auto& o, auto I) { o.checkpoint_state(*std::get_if<I>(&s), ar, stream); });
  }

 private:
  Variant m_v;
};

/// The driver of network runs: the host run's policies, a device optimizer.
using DeviceMethod = LocalMethod<AnyDeviceOptimizer<float>, AnySyncRule, AnyBatchRule, AnySchedule, AnySampler,
                                 AnyOuterOptimizer, MultiNetworkCost>;

}  // namespace lgm::sim
