// No heap allocation in the steady-state loop of a run (issue 5; docs/design.md §Backends). The global
// operator new/delete are replaced by counting versions, and Eigen's own allocator (std::malloc underneath, not
// operator new) is watched through EIGEN_RUNTIME_NO_MALLOC: while malloc is "forbidden", each Eigen heap
// allocation is counted instead of asserting. An observer reads both counters at every step; after a warm-up of two
// rounds they must not move.
#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <new>
#include <vector>

namespace {
std::atomic<long> g_news{0};           // calls of any replaced operator new
std::atomic<long> g_eigen_mallocs{0};  // Eigen heap allocations while they were forbidden
}  // namespace

// Must precede every Eigen include: Eigen then checks is_malloc_allowed() in its allocator through eigen_assert.
#define EIGEN_RUNTIME_NO_MALLOC
#define eigen_assert(x)                                                \
  do {                                                                 \
    if (!(x)) g_eigen_mallocs.fetch_add(1, std::memory_order_relaxed); \
  } while (false)

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include "lgm/lgm.hpp"

// ---------------------------------------------------------------- counting operator new / delete
namespace {
void* counted_alloc(std::size_t n) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* counted_aligned_alloc(std::size_t n, std::align_val_t al) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  const auto a = static_cast<std::size_t>(al);
  if (void* p = std::aligned_alloc(a, (n + a - 1) / a * a)) return p;
  throw std::bad_alloc();
}
}  // namespace

void* operator new(std::size_t n) { return counted_alloc(n); }
void* operator new[](std::size_t n) { return counted_alloc(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  g_news.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n == 0 ? 1 : n);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  g_news.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n == 0 ? 1 : n);
}
void* operator new(std::size_t n, std::align_val_t al) { return counted_aligned_alloc(n, al); }
void* operator new[](std::size_t n, std::align_val_t al) { return counted_aligned_alloc(n, al); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace {

using namespace lgm;

/// Reads the counters at every step into a preallocated buffer (the observer itself never allocates) and forbids
/// Eigen's heap from the end of the warm-up to the end of the steps.
class AllocationProbe {
 public:
  AllocationProbe(Index steps, Index warmup) : m_warmup(warmup) { m_counts.reserve(static_cast<std::size_t>(steps)); }
  ~AllocationProbe() { Eigen::internal::set_is_malloc_allowed(true); }

  void on_step(const RunState& s) {
    if (s.metrics.steps == m_warmup) Eigen::internal::set_is_malloc_allowed(false);
    if (s.metrics.steps >= m_warmup && m_counts.size() < m_counts.capacity())
      m_counts.push_back(g_news.load() + g_eigen_mallocs.load());
  }
  void on_end(const RunState&) { Eigen::internal::set_is_malloc_allowed(true); }

  /// Allocations between the first steady-state step and the last step recorded.
  long steady_state_allocations() const { return m_counts.size() < 2 ? -1 : m_counts.back() - m_counts.front(); }
  std::size_t steps_watched() const { return m_counts.size(); }

 private:
  Index m_warmup;
  std::vector<long> m_counts;
};

constexpr Index kH = 4, kSteps = 64, kWarmup = 2 * kH;

template <class Method, class Obj>
void check_steady_state(Method method, const Obj& obj, int threads) {
  method.options().workers = 8;
  method.options().max_steps = kSteps;
  method.options().threads = threads;
  AllocationProbe probe(kSteps, kWarmup);
  const RunResult r = method.run(obj, Vector::Zero(obj.dim()), probe);
  CHECK(r.reason == StopReason::budget);
  CHECK(probe.steps_watched() == static_cast<std::size_t>(kSteps - kWarmup + 1));  // steps kWarmup … kSteps
  CHECK(probe.steady_state_allocations() == 0);
  g_eigen_mallocs = 0;
}

const Logistic& logistic() {
  static const Logistic p = Logistic::synthetic({.N = 512, .d = 20, .lambda = 1e-2, .compute_optimum = false});
  return p;
}
const Softmax& softmax() {
  static const Softmax p = Softmax::synthetic({.N = 512, .d = 12, .classes = 4, .lambda = 1e-3});
  return p;
}

/// A batch rule whose test runs at every step but never asks for a larger batch (b stays at b_min).
template <class Test>
AdaptiveBatch<Test> steady_rule(TestScope scope, Test test) {
  AdaptiveBatchOptions o;
  o.b_min = 16;
  o.scope = scope;
  return AdaptiveBatch<Test>(o, test);
}

}  // namespace

TEST_CASE("alloc: the counters see operator new and Eigen's heap") {
  const long before = g_news.load();
  auto* v = new std::vector<int>(100);
  delete v;
  CHECK(g_news.load() - before >= 2);
  Eigen::internal::set_is_malloc_allowed(false);
  Vector x(1000);  // an Eigen heap allocation while forbidden: counted, not asserted
  Eigen::internal::set_is_malloc_allowed(true);
  CHECK(g_eigen_mallocs.load() == 1);
  g_eigen_mallocs = 0;
  CHECK(x.size() == 1000);
}

TEST_CASE("alloc: local optimizers on logistic regression, 1 and 2 threads") {
  for (int threads : {1, 2}) {
    CAPTURE(threads);
    const RunOptions o{};
    check_steady_state(LocalSGD(o, SGD{.weight_decay = 1e-4}, ConstantSync{kH}, ConstantBatch{.b = 16},
                                ConstantLr{.lr = 0.1}, IidSampler(1)),
                       logistic(), threads);
    check_steady_state(LocalSHB(o, HeavyBall{.momentum = 0.9, .average_momentum = true}, ConstantSync{kH},
                                ConstantBatch{.b = 16}, ConstantLr{.lr = 0.05}, IidSampler(1)),
                       logistic(), threads);
    check_steady_state(
        LocalNesterov(o, Nesterov{}, ConstantSync{kH}, ConstantBatch{.b = 16}, ConstantLr{.lr = 0.05}, IidSampler(1)),
        logistic(), threads);
    check_steady_state(LocalAdamW(o, AdamW{.average_first_moment = true}, ConstantSync{kH}, ConstantBatch{.b = 16},
                                  ConstantLr{.lr = 1e-3}, IidSampler(1)),
                       logistic(), threads);
  }
}

TEST_CASE("alloc: batch-size tests, softmax, shuffled sampling, DiLoCo") {
  const RunOptions o{};
  check_steady_state(LocalSGDNormTest(o, SGD{}, ConstantSync{kH}, steady_rule(TestScope::local, NormTest{.eta = 1e6}),
                                      ConstantLr{.lr = 0.1}, IidSampler(2)),
                     logistic(), 2);
  check_steady_state(LocalMethod<SGD, ConstantSync, InnerProductTestRule>(
                         o, SGD{}, ConstantSync{kH}, steady_rule(TestScope::global, InnerProductTest{.theta = 1e6}),
                         ConstantLr{.lr = 0.1}, IidSampler(2)),
                     logistic(), 2);
  check_steady_state(
      LocalMethod<SGD, ConstantSync, AugmentedInnerProductTestRule>(
          o, SGD{}, ConstantSync{kH}, steady_rule(TestScope::local, AugmentedInnerProductTest{.theta = 1e6, .nu = 1e6}),
          ConstantLr{.lr = 0.1}, IidSampler(2)),
      softmax(), 1);
  check_steady_state(
      LocalMethod<SGD, ConstantSync, ConstantBatch, ConstantLr, ShuffledEpochSampler>(
          o, SGD{}, ConstantSync{kH}, ConstantBatch{.b = 16}, ConstantLr{.lr = 0.1}, ShuffledEpochSampler(3)),
      softmax(), 2);
  check_steady_state(DiLoCo(o, AdamW{}, ConstantSync{kH}, ConstantBatch{.b = 16}, ConstantLr{.lr = 1e-3}, IidSampler(4),
                            DiLoCoOuter{}),
                     logistic(), 1);
}
