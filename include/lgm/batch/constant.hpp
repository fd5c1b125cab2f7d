// A constant local batch size: the baseline of every adaptive rule (docs/batch_rules.md §ConstantBatch).
#pragma once

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"

namespace lgm {

/// Every worker uses b samples at every step; the statistics hooks do nothing.
struct ConstantBatch {
  Index b = 32;  ///< local batch size of every worker

  /// No state besides the options: nothing to save (docs/driver.md §Checkpoint and resume).
  template <class Ar>
  void checkpoint(Ar&) const noexcept {}
  void validate() const { detail::require_at_least("b", b, Index{1}); }
  void reset(Index /*local_workers*/, Index /*workers*/) noexcept {}

  Index batch_size(Index /*m*/) const noexcept { return b; }
  Index max_batch_size() const noexcept { return b; }

  template <class Ctx>
  void after_gradients(const Ctx& /*ctx*/) noexcept {}
  template <class Ctx>
  void at_sync(const Ctx& /*ctx*/) noexcept {}
};

}  // namespace lgm
