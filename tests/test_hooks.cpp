// The optional-hook mechanism (lgm/core/hooks.hpp): a wrapper that forgets to forward a hook, or lists one it
// does not forward, fails the compile-time check; the check is exercised here on wrappers that get it wrong.
#include <doctest/doctest.h>

#include <array>
#include <lgm/lgm.hpp>
#include <string_view>

namespace {

using namespace lgm;
using Ctx = StepContext<LeastSquares, InProcessCommunicator>;
using Family = hooks::BatchRuleHooks<Ctx>;

// Forwards only the required members of a rule (like AnyBatchRule before the fix).
struct ForgetfulWrapper {
  static constexpr std::array<std::string_view, 1> forwarded_hooks = {"sync_payload_elements"};
  Index sync_payload_elements(Index) const { return 0; }
};
// Forwards both hooks and says so.
struct CompleteWrapper {
  static constexpr std::array<std::string_view, 2> forwarded_hooks = {"before_gradients", "sync_payload_elements"};
  template <class C>
  void before_gradients(const C&) {}
  Index sync_payload_elements(Index) const { return 0; }
};
// Has before_gradients but does not declare it.
struct UndeclaredWrapper {
  static constexpr std::array<std::string_view, 1> forwarded_hooks = {"sync_payload_elements"};
  template <class C>
  void before_gradients(const C&) {}
  Index sync_payload_elements(Index) const { return 0; }
};
// Declares a hook the family does not know (a typo).
struct TypoWrapper {
  static constexpr std::array<std::string_view, 2> forwarded_hooks = {"before_gradient", "sync_payload_elements"};
  Index sync_payload_elements(Index) const { return 0; }
};

}  // namespace

TEST_CASE("hooks: the driver's optional batch-rule hooks are detected on the library's rules") {
  static_assert(hooks::HasBeforeGradients<NormTestRule, Ctx>);
  static_assert(hooks::HasBeforeGradients<InnerProductTestRule, Ctx>);
  static_assert(!hooks::HasBeforeGradients<ConstantBatch, Ctx>);
  static_assert(hooks::HasSyncPayload<NormTestRule>);
  static_assert(hooks::HasOnBatchChange<HookCounter, RunState>);
  CHECK(Family::present<NormTestRule>[0]);
  CHECK_FALSE(Family::present<ConstantBatch>[0]);
}

TEST_CASE("hooks: forwards_every_hook rejects a wrapper that drops, hides or misnames a hook") {
  static_assert(hooks::forwards_every_hook<Family, CompleteWrapper, ConstantBatch, NormTestRule>());
  static_assert(!hooks::forwards_every_hook<Family, ForgetfulWrapper, ConstantBatch, NormTestRule>());
  static_assert(!hooks::forwards_every_hook<Family, UndeclaredWrapper, ConstantBatch, NormTestRule>());
  static_assert(!hooks::forwards_every_hook<Family, TypoWrapper, ConstantBatch>());
  // without an alternative that has before_gradients, not forwarding it is correct
  static_assert(hooks::forwards_every_hook<Family, ForgetfulWrapper, ConstantBatch>());
}
