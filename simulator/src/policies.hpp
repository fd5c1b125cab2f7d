// Policies chosen at run time. The driver is a template over its policies (docs/design.md §The policies); a
// configuration file picks them at run time, so each Any* type below holds one of the library's policies in a
// std::variant and forwards every call to it. One LocalMethod<Any...> instantiation per objective serves every
// configuration; the cost is one switch per call, against a gradient that costs O(b·d).
//
// The driver calls some hooks only when a policy has them (lgm/core/hooks.hpp). A wrapper that forgot one
// would drop it silently, so each wrapper lists the hooks it forwards in `forwarded_hooks`, and a
// static_assert below checks the list against every alternative.
#pragma once

#include <array>
#include <cstddef>
#include <span>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "lgm/lgm.hpp"

namespace lgm::sim {

namespace detail {

/// Calls f(alternative, std::integral_constant<size_t, I>) for the active alternative I of v. The index lets
/// the caller pick the matching alternative of a second variant (the optimizer state) even when two
/// alternatives have the same type (HeavyBall and Nesterov both keep a MomentumState).
template <class Variant, class F, std::size_t I = 0>
decltype(auto) dispatch(Variant& v, F&& f) {
  constexpr std::size_t n = std::variant_size_v<std::remove_const_t<Variant>>;
  if constexpr (I + 1 < n) {
    if (v.index() != I) return dispatch<Variant, F, I + 1>(v, std::forward<F>(f));
  }
  return f(*std::get_if<I>(&v), std::integral_constant<std::size_t, I>{});
}

}  // namespace detail

/// SGD, heavy ball, Nesterov or AdamW; the state of every alternative lives in one variant.
class AnyLocalOptimizer {
 public:
  using Variant = std::variant<SGD, HeavyBall, Nesterov, AdamW>;
  using State = std::variant<SGD::State, HeavyBall::State, Nesterov::State, AdamW::State>;

  AnyLocalOptimizer() = default;
  template <class Opt>
  AnyLocalOptimizer(Opt opt) : m_v(std::move(opt)) {}  // NOLINT: implicit from any alternative

  const Variant& get() const noexcept { return m_v; }

  State init(Index dim, Index workers) const {
    return detail::dispatch(m_v,
                            [&](const auto& o, auto I) { return State(std::in_place_index<I>, o.init(dim, workers)); });
  }
  void step(State& s, Index m, VectorRef x, ConstVectorRef g, double lr) const {
    detail::dispatch(m_v, [&](const auto& o, auto I) { o.step(*std::get_if<I>(&s), m, x, g, lr); });
  }
  template <class F>
  void for_each_averaged_field(State& s, F&& f) const {
    detail::dispatch(m_v, [&](const auto& o, auto I) { o.for_each_averaged_field(*std::get_if<I>(&s), f); });
  }
  Index averaged_field_count() const {
    return std::visit([](const auto& o) { return static_cast<Index>(o.averaged_field_count()); }, m_v);
  }
  void validate() const {
    std::visit([](const auto& o) { o.validate(); }, m_v);
  }
  template <class Ar>
  void checkpoint_state(State& s, Ar& ar) const {
    detail::dispatch(m_v, [&](const auto& o, auto I) { o.checkpoint_state(*std::get_if<I>(&s), ar); });
  }

 private:
  Variant m_v;
};

/// Constant H, every step, post-local, QSR, the linear rule or hierarchical.
class AnySyncRule {
 public:
  using Variant =
      std::variant<ConstantSync, EveryStepSync, PostLocalSync, QuadraticSyncRule, LinearSyncRule, HierarchicalSync>;

  AnySyncRule() = default;
  template <class R>
  AnySyncRule(R r) : m_v(std::move(r)) {}  // NOLINT

  const Variant& get() const noexcept { return m_v; }
  SyncPlan plan(const RoundInfo& info) {
    return std::visit([&](auto& r) { return r.plan(info); }, m_v);
  }
  template <class Ar>
  void checkpoint(Ar& ar) {
    ar.check("policy", static_cast<Index>(m_v.index()));
    std::visit([&](auto& p) { p.checkpoint(ar); }, m_v);
  }
  void validate() const {
    std::visit([](const auto& r) { r.validate(); }, m_v);
  }

 private:
  Variant m_v;
};

/// A constant batch or one of the adaptive rules (norm, inner-product, augmented inner-product test).
class AnyBatchRule {
 public:
  using Variant = std::variant<ConstantBatch, NormTestRule, InnerProductTestRule, AugmentedInnerProductTestRule>;
  static constexpr std::array<std::string_view, 2> forwarded_hooks = {"before_gradients", "sync_payload_elements"};

  AnyBatchRule() = default;
  template <class R>
  AnyBatchRule(R r) : m_v(std::move(r)) {}  // NOLINT

  const Variant& get() const noexcept { return m_v; }
  void reset(Index local_workers, Index workers) {
    std::visit([&](auto& r) { r.reset(local_workers, workers); }, m_v);
  }
  Index batch_size(Index m) const {
    return std::visit([&](const auto& r) { return static_cast<Index>(r.batch_size(m)); }, m_v);
  }
  Index max_batch_size() const {
    return std::visit([](const auto& r) { return static_cast<Index>(r.max_batch_size()); }, m_v);
  }
  template <class Ar>
  void checkpoint(Ar& ar) {
    ar.check("policy", static_cast<Index>(m_v.index()));
    std::visit([&](auto& p) { p.checkpoint(ar); }, m_v);
  }
  void validate() const {
    std::visit([](const auto& r) { r.validate(); }, m_v);
  }
  /// Forwarded to the rules that size a step before its draw; a no-op for the others.
  template <class Ctx>
  void before_gradients(const Ctx& ctx) {
    std::visit(
        [&](auto& r) {
          if constexpr (hooks::HasBeforeGradients<std::remove_cvref_t<decltype(r)>, Ctx>) r.before_gradients(ctx);
        },
        m_v);
  }
  template <class Ctx>
  void after_gradients(const Ctx& ctx) {
    std::visit([&](auto& r) { r.after_gradients(ctx); }, m_v);
  }
  template <class Ctx>
  void at_sync(const Ctx& ctx) {
    std::visit([&](auto& r) { r.at_sync(ctx); }, m_v);
  }
  Index sync_payload_elements(Index d) const {
    return std::visit([&](const auto& r) -> Index { return lgm::detail::sync_payload_elements(r, d); }, m_v);
  }

 private:
  Variant m_v;
};

/// Constant (with optional warm-up), warm-up + cosine, warm-up + linear decay, step decay.
class AnySchedule {
 public:
  using Variant = std::variant<ConstantLr, WarmupCosineLr, WarmupLinearDecayLr, StepDecayLr>;

  AnySchedule() = default;
  template <class S>
  AnySchedule(S s) : m_v(std::move(s)) {}  // NOLINT

  const Variant& get() const noexcept { return m_v; }
  double at(Index step, Index samples) const {
    return std::visit([&](const auto& s) { return static_cast<double>(s.at(step, samples)); }, m_v);
  }
  template <class Ar>
  void checkpoint(Ar& ar) {
    ar.check("policy", static_cast<Index>(m_v.index()));
    std::visit([&](auto& p) { p.checkpoint(ar); }, m_v);
  }
  void validate() const {
    std::visit([](const auto& s) { s.validate(); }, m_v);
  }

 private:
  Variant m_v;
};

/// I.i.d., shuffled epochs, disjoint shards, or label-skewed (Dirichlet) shards.
class AnySampler {
 public:
  using Variant = std::variant<IidSampler, ShuffledEpochSampler, ShardedSampler, DirichletLabelSampler>;
  static constexpr std::array<std::string_view, 1> forwarded_hooks = {"validate"};

  AnySampler() : m_v(IidSampler(0)) {}
  template <class S>
  AnySampler(S s) : m_v(std::move(s)) {}  // NOLINT

  const Variant& get() const noexcept { return m_v; }
  void reset(Index workers, Index num_samples) {
    std::visit([&](auto& s) { s.reset(workers, num_samples); }, m_v);
  }
  // Called concurrently for different workers: each alternative keeps per-worker state only.
  void draw(Index m, Index step, std::span<Index> out) {
    std::visit([&](auto& s) { s.draw(m, step, out); }, m_v);
  }
  template <class Ar>
  void checkpoint(Ar& ar) {
    ar.check("policy", static_cast<Index>(m_v.index()));
    std::visit([&](auto& p) { p.checkpoint(ar); }, m_v);
  }
  void validate() const {
    std::visit([](const auto& s) { s.validate(); }, m_v);
  }

 private:
  Variant m_v;
};

/// Plain averaging, or outer SGD with optional (Nesterov) momentum: Lookahead-style or DiLoCo.
class AnyOuterOptimizer {
 public:
  using Variant = std::variant<Averaging, OuterSGD>;

  AnyOuterOptimizer() = default;
  template <class O>
  AnyOuterOptimizer(O o) : m_v(std::move(o)) {}  // NOLINT

  const Variant& get() const noexcept { return m_v; }
  void init(Index dim) {
    std::visit([&](auto& o) { o.init(dim); }, m_v);
  }
  void apply(VectorRef x_sync, ConstVectorRef mean) {
    std::visit([&](auto& o) { o.apply(x_sync, mean); }, m_v);
  }
  template <class Ar>
  void checkpoint(Ar& ar) {
    ar.check("policy", static_cast<Index>(m_v.index()));
    std::visit([&](auto& p) { p.checkpoint(ar); }, m_v);
  }
  void validate() const {
    std::visit([](const auto& o) { o.validate(); }, m_v);
  }

 private:
  Variant m_v;
};

/// The α–β cost model of the configured network, which the driver charges, plus the same charges priced on
/// other links (the 10 Gb/s and 100 Gb/s presets), so one run reports its simulated time on every network.
/// Compute time is the same on every network; only the collectives are priced again.
class MultiNetworkCost {
 public:
  static constexpr std::array<std::string_view, 1> forwarded_hooks = {"validate(workers)"};
  MultiNetworkCost() = default;
  MultiNetworkCost(AlphaBetaCostOptions primary, std::vector<NetworkLink> others) : m_primary(primary) {
    for (const NetworkLink& link : others) {
      AlphaBetaCostOptions o = primary;
      o.network = link;
      m_others.emplace_back(std::move(o));
    }
    m_other_seconds.assign(m_others.size(), 0.0);
  }

  const AlphaBetaCost& primary() const noexcept { return m_primary; }
  double element_bytes() const noexcept { return m_primary.element_bytes(); }
  void validate(Index workers) const { m_primary.validate(workers); }

  double allreduce_seconds(double bytes, Index participants, SyncScope scope, Index group) const {
    // The driver prices each collective exactly once, so the other networks are charged here too.
    for (std::size_t i = 0; i < m_others.size(); ++i)
      m_other_seconds[i] += m_others[i].allreduce_seconds(bytes, participants, scope, group);
    return m_primary.allreduce_seconds(bytes, participants, scope, group);
  }
  double allreduce_bytes_sent(double bytes, Index participants) const {
    return m_primary.allreduce_bytes_sent(bytes, participants);
  }
  double compute_seconds(Index worker, Index samples) const { return m_primary.compute_seconds(worker, samples); }

  /// Communication seconds charged so far on the i-th other network.
  double other_comm_seconds(std::size_t i) const { return m_other_seconds.at(i); }
  /// The other networks' communication time so far (docs/driver.md §Checkpoint and resume).
  template <class Ar>
  void checkpoint(Ar& ar) {
    ar("cost.other_comm_seconds", m_other_seconds);
  }
  void clear() { std::fill(m_other_seconds.begin(), m_other_seconds.end(), 0.0); }

 private:
  AlphaBetaCost m_primary;
  std::vector<AlphaBetaCost> m_others;
  mutable std::vector<double> m_other_seconds;
};

namespace detail {
// The context type the driver hands the batch rule (any objective and communicator give the same answer: the
// hooks are templates on it).
using ProbeContext = StepContext<LeastSquares, InProcessCommunicator>;
template <class Variant, class Wrapper, class Family>
struct ForwardsAll;
template <class... Alternatives, class Wrapper, class Family>
struct ForwardsAll<std::variant<Alternatives...>, Wrapper, Family> {
  static constexpr bool value = hooks::forwards_every_hook<Family, Wrapper, Alternatives...>();
};
}  // namespace detail

static_assert(
    detail::ForwardsAll<AnyBatchRule::Variant, AnyBatchRule, hooks::BatchRuleHooks<detail::ProbeContext>>::value,
    "AnyBatchRule::forwarded_hooks must list, and AnyBatchRule must forward, every optional batch-rule "
    "hook (lgm/core/hooks.hpp) that one of its alternatives has");
static_assert(detail::ForwardsAll<AnySampler::Variant, AnySampler, hooks::SamplerHooks>::value,
              "AnySampler must forward every optional sampler hook (lgm/core/hooks.hpp) of its alternatives");
static_assert(detail::ForwardsAll<std::variant<AlphaBetaCost>, MultiNetworkCost, hooks::CostModelHooks>::value,
              "MultiNetworkCost must forward every optional cost-model hook (lgm/core/hooks.hpp)");

/// The one method type of the simulator.
using ConfiguredMethod = LocalMethod<AnyLocalOptimizer, AnySyncRule, AnyBatchRule, AnySchedule, AnySampler,
                                     AnyOuterOptimizer, MultiNetworkCost>;

}  // namespace lgm::sim
