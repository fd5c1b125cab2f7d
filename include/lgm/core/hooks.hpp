// The optional hooks of the policies: members the driver calls when a policy has them and skips otherwise.
// The driver finds an optional hook only through the concepts below, and each policy family lists its hooks
// in one descriptor. A wrapper that holds a policy chosen at run time (the simulator's AnyBatchRule, …) would
// silently drop a hook it forgot to forward (the driver's `requires` would be false), so a wrapper declares
// the hooks it forwards, and `forwards_every_hook` proves at compile time that it forwards every hook that
// one of its alternatives has (docs/design.md §Optional hooks).
#pragma once

#include <array>
#include <cstddef>
#include <span>
#include <string_view>

#include "lgm/core/types.hpp"

namespace lgm::hooks {

// ---------------------------------------------------------------- batch-size rules
/// Sizes a step before its batches are drawn (AdaptiveBatch with apply_at = this_step).
template <class Rule, class Ctx>
concept HasBeforeGradients = requires(Rule& r, const Ctx& ctx) {
  r.before_gradients(ctx);
};
/// Elements the rule sent in its own all-reduces since the last sync (the cost model charges them).
template <class Rule>
concept HasSyncPayload = requires(const Rule& r, Index d) {
  { r.sync_payload_elements(d) } -> std::convertible_to<Index>;
};

template <class Ctx>
struct BatchRuleHooks {
  static constexpr std::array<std::string_view, 2> names = {"before_gradients", "sync_payload_elements"};
  template <class Rule>
  static constexpr std::array<bool, 2> present = {HasBeforeGradients<Rule, Ctx>, HasSyncPayload<Rule>};
};

// ---------------------------------------------------------------- samplers and cost models
template <class S>
concept HasValidate = requires(const S& s) {
  s.validate();
};
struct SamplerHooks {
  static constexpr std::array<std::string_view, 1> names = {"validate"};
  template <class S>
  static constexpr std::array<bool, 1> present = {HasValidate<S>};
};

template <class C>
concept HasValidateWorkers = requires(const C& c, Index workers) {
  c.validate(workers);
};
struct CostModelHooks {
  static constexpr std::array<std::string_view, 1> names = {"validate(workers)"};
  template <class C>
  static constexpr std::array<bool, 1> present = {HasValidateWorkers<C>};
};

// ---------------------------------------------------------------- objectives
/// What the driver holds for a run, for an objective that plans its memory before the first step
/// (docs/nn.md §Memory plan): the objective adds its own activations, data and state to these and rejects a run
/// that does not fit.
struct RunFootprint {
  Index local_workers = 0;    ///< replicas in this process
  Index max_batch = 0;        ///< the largest local batch the batch rule may reach (its max_batch_size())
  Index replica_columns = 0;  ///< vectors of d numbers the driver and the optimizer state hold
};
/// Throws ConfigError with the figures when the run of `f` does not fit in memory.
template <class O>
concept HasRequireMemory = requires(const O& o, const RunFootprint& f) {
  o.require_memory(f);
};
/// Per-worker state of the objective (batch-norm running statistics) that a sync treats like the parameters;
/// `group` is M at a global sync, else the group size. Returns the numbers each worker sent.
template <class O, class Comm>
concept HasSynchronizeState = requires(const O& o, typename O::Workspace& ws, Comm& comm, Index group) {
  { o.synchronize_state(ws, comm, group) } -> std::convertible_to<Index>;
};

// ---------------------------------------------------------------- observers
// Each takes const RunState& and returns void or bool (false stops the run).
template <class Obs, class State>
concept HasOnStep = requires(Obs& o, const State& s) {
  o.on_step(s);
};
template <class Obs, class State>
concept HasOnSync = requires(Obs& o, const State& s) {
  o.on_sync(s);
};
template <class Obs, class State>
concept HasOnBatchChange = requires(Obs& o, const State& s) {
  o.on_batch_change(s);
};
template <class Obs, class State>
concept HasOnEnd = requires(Obs& o, const State& s) {
  o.on_end(s);
};

// ---------------------------------------------------------------- the check for wrappers
namespace detail {
constexpr bool declares(std::span<const std::string_view> declared, std::string_view name) {
  for (std::string_view d : declared)
    if (d == name) return true;
  return false;
}
}  // namespace detail

/// True when `Wrapper` (1) declares in `Wrapper::forwarded_hooks` every hook of `Family` that one of
/// `Alternatives` has, (2) really has every hook it declares, and (3) declares every hook it has (a hook
/// the wrapper has but its alternatives lack would run where the wrapped policy has nothing to run).
template <class Family, class Wrapper, class... Alternatives>
constexpr bool forwards_every_hook() {
  constexpr auto names = Family::names;
  constexpr std::array<bool, names.size()> wrapper = Family::template present<Wrapper>;
  const std::span<const std::string_view> declared(Wrapper::forwarded_hooks);
  for (std::size_t i = 0; i < names.size(); ++i) {
    const bool any_alternative = (Family::template present<Alternatives>[i] || ...);
    const bool is_declared = detail::declares(declared, names[i]);
    if (any_alternative && !is_declared) return false;  // (1)
    if (is_declared != wrapper[i]) return false;        // (2), (3)
  }
  for (std::string_view d : declared) {  // a declared name the family does not know: a typo or a stale list
    bool known = false;
    for (std::string_view n : names) known = known || n == d;
    if (!known) return false;
  }
  return true;
}

}  // namespace lgm::hooks
