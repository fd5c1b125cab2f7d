// Synchronization rules (docs/sync_rules.md; docs/decisions.md §A1 to §A6, §A11, §A15, §A20) and the golden
// vectors of docs/sync_rules.md §Golden values, replayed through the driver's round loop.
#include <doctest/doctest.h>

#include <cmath>
#include <lgm/core/concepts.hpp>
#include <lgm/schedule/schedules.hpp>
#include <lgm/sync/sync.hpp>
#include <limits>
#include <string>
#include <vector>

namespace {

static_assert(lgm::SyncRule<lgm::ConstantSync>);
static_assert(lgm::SyncRule<lgm::EveryStepSync>);
static_assert(lgm::SyncRule<lgm::PostLocalSync>);
static_assert(lgm::SyncRule<lgm::QuadraticSyncRule>);
static_assert(lgm::SyncRule<lgm::LinearSyncRule>);
static_assert(lgm::SyncRule<lgm::HierarchicalSync>);

struct Round {
  lgm::Index start = 0;
  lgm::Index H = 0;
};

/// The driver's round loop (run/local_method.hpp): plan at the round's start from η at that step, then
/// t += H. `tell_remaining` passes T − t as RoundInfo::remaining_steps (a step budget) or −1.
template <class Schedule, class Rule>
std::vector<Round> replay(const Schedule& schedule, const Rule& rule, lgm::Index T, bool tell_remaining = true) {
  std::vector<Round> rounds;
  lgm::Index t = 0;
  while (t < T) {
    const lgm::RoundInfo info{static_cast<lgm::Index>(rounds.size()), t, schedule.at(t, 0),
                              tell_remaining ? T - t : -1};
    const lgm::Index H = rule.plan(info).period;
    REQUIRE(H >= 1);
    rounds.push_back({t, H});
    t += H;
  }
  REQUIRE(t == T);  // the cap makes the last round end exactly at T (A5)
  return rounds;
}

/// First round whose period is at least h: (start, H).
Round first_at_least(const std::vector<Round>& rounds, lgm::Index h) {
  for (const Round& r : rounds)
    if (r.H >= h) return r;
  return {-1, -1};
}

/// The reference adjust_h (localopt.py), transcribed as a second, independent implementation.
lgm::Index reference_adjust_h(lgm::Index step_ctr, double lr, double alpha, double power, lgm::Index init_h,
                              lgm::Index min_h, lgm::Index warmup_steps, lgm::Index total_steps) {
  if (step_ctr < warmup_steps || alpha == 0.0) return init_h;
  const lgm::Index remaining = total_steps - step_ctr;
  const auto h = static_cast<lgm::Index>(std::pow(alpha / lr, power));  // Python int(): truncation
  const lgm::Index a = h > min_h ? h : min_h;
  const lgm::Index b = a < remaining ? a : remaining;
  return b > 1 ? b : 1;
}

template <class F>
void check_config_error(F&& f, const std::string& name, const std::string& value, const std::string& range) {
  try {
    f();
    FAIL("expected lgm::ConfigError for " << name);
  } catch (const lgm::ConfigError& e) {
    const std::string what = e.what();
    CHECK(e.parameter() == name);
    CHECK_MESSAGE(what.find(name) != std::string::npos, what);
    CHECK_MESSAGE(what.find(value) != std::string::npos, what);
    CHECK_MESSAGE(what.find(range) != std::string::npos, what);
  }
}

// The ViT-B configuration of docs/sync_rules.md §Golden values: cosine, η_max 0.008, η_min 1e-6, T = 300·312,
// W = 10,000, α = 0.0175.
constexpr lgm::Index kT = 93'600;
const lgm::WarmupCosineLr kVitCosine{.peak = 0.008, .min_lr = 1e-6, .warmup = 10'000, .total = kT};
const lgm::WarmupLinearDecayLr kVitLinear{.peak = 0.008, .min_lr = 1e-6, .warmup = 10'000, .total = kT};

}  // namespace

// docs/sync_rules.md §Golden values
TEST_CASE("QSR golden vectors, cosine schedule") {
  const lgm::QuadraticSyncRule qsr{.alpha = 0.0175, .H_base = 4, .warmup_steps = 10'000};
  CHECK_NOTHROW(qsr.validate());
  CHECK(qsr.gamma == 2.0);
  CHECK(qsr.initial_period() == 4);
  CHECK(qsr.minimum_period() == 4);

  // the cap from RoundInfo::remaining_steps (total_steps = −1) and from total_steps give the same rounds
  const auto rounds = replay(kVitCosine, qsr, kT);
  auto with_total = qsr;
  with_total.total_steps = kT;
  const auto rounds_total = replay(kVitCosine, with_total, kT, /*tell_remaining=*/false);
  REQUIRE(rounds_total.size() == rounds.size());
  for (std::size_t i = 0; i < rounds.size(); ++i) REQUIRE(rounds_total[i].H == rounds[i].H);

  CHECK(rounds.size() == 9'711);
  // the first 4,469 rounds (steps 0–17,875) have H = 4; 2,500 of them start inside warmup
  for (std::size_t i = 0; i < 4'469; ++i) REQUIRE(rounds[i].H == 4);
  lgm::Index in_warmup = 0;
  for (const Round& r : rounds) in_warmup += r.start < 10'000 ? 1 : 0;
  CHECK(in_warmup == 2'500);
  CHECK(rounds[4'468].start == 17'872);
  CHECK(rounds[4'469].start == 17'876);
  CHECK(rounds[4'469].H == 5);
  // thresholds
  CHECK(first_at_least(rounds, 8).start == 36'411);
  CHECK(first_at_least(rounds, 16).start == 49'317);
  CHECK(first_at_least(rounds, 32).start == 57'914);
  CHECK(first_at_least(rounds, 64).start == 64'355);
  CHECK(first_at_least(rounds, 128).start == 69'397);
  CHECK(first_at_least(rounds, 256).start == 73'580);
  CHECK(first_at_least(rounds, 256).H == 262);
  CHECK(first_at_least(rounds, 1024).start == 79'932);
  CHECK(first_at_least(rounds, 1024).H == 1'145);
  // last six rounds; the last one is capped by the remaining steps
  const std::vector<Round> last6 = {{78'300, 738},   {79'038, 894},   {79'932, 1'145},
                                    {81'077, 1'612}, {82'689, 2'769}, {85'458, 8'142}};
  for (std::size_t i = 0; i < 6; ++i) {
    CAPTURE(i);
    CHECK(rounds[rounds.size() - 6 + i].start == last6[i].start);
    CHECK(rounds[rounds.size() - 6 + i].H == last6[i].H);
  }
  // H is non-decreasing after warmup (η decreases), and every round agrees with the transcribed reference
  for (std::size_t i = 0; i < rounds.size(); ++i) {
    const double lr = kVitCosine.at(rounds[i].start, 0);
    REQUIRE(rounds[i].H == reference_adjust_h(rounds[i].start, lr, 0.0175, 2.0, 4, 4, 10'000, kT));
    if (i > 0 && rounds[i - 1].start >= 10'000) REQUIRE(rounds[i].H >= rounds[i - 1].H);
  }
  // constant H = 4 needs 23,400 rounds (25.0 %); QSR needs 10.38 %
  CHECK(replay(kVitCosine, lgm::ConstantSync{4}, kT).size() == 23'400);
  CHECK(static_cast<double>(rounds.size()) / kT == doctest::Approx(0.1038).epsilon(1e-3));
}

// docs/sync_rules.md §Golden values
TEST_CASE("QSR golden vectors: linear decay and the γ = 1 rule") {
  const lgm::QuadraticSyncRule qsr{.alpha = 0.0175, .H_base = 4, .warmup_steps = 10'000};
  CHECK(replay(kVitLinear, qsr, kT).size() == 8'741);

  const lgm::LinearSyncRule linear{.alpha = 0.032, .H_base = 4, .warmup_steps = 10'000};
  CHECK(linear.gamma == 1.0);
  const auto rounds = replay(kVitCosine, linear, kT);
  CHECK(rounds.size() == 13'679);
  CHECK(static_cast<double>(rounds.size()) / kT == doctest::Approx(0.1461).epsilon(1e-3));
  CHECK(rounds[2'500].H == 4);  // α = 0.032 gives H = 4 at the peak: ⌊0.032/0.008⌋ = 4
  // γ = 1 expressed as the generic rule with gamma = 1 is the same rule
  const lgm::QuadraticSyncRule as_power{.alpha = 0.032, .gamma = 1.0, .H_base = 4, .warmup_steps = 10'000};
  CHECK(replay(kVitCosine, as_power, kT).size() == 13'679);
}

// docs/schedules.md §StepDecayLr; docs/decisions.md §A3
TEST_CASE("QSR with step decay: H = 2, 6, 624, then one final 3,120-step round") {
  // illustrative decay points 30/60/80 of 90 epochs × 312 steps, η_max 0.8, α = 0.2, H_base 2
  const lgm::StepDecayLr schedule{.peak = 0.8, .gamma = 0.1, .decay_points = {30 * 312, 60 * 312, 80 * 312}};
  const lgm::QuadraticSyncRule qsr{.alpha = 0.2, .H_base = 2};
  const auto rounds = replay(schedule, qsr, 90 * 312);
  std::vector<Round> changes;
  for (const Round& r : rounds)
    if (changes.empty() || changes.back().H != r.H) changes.push_back(r);
  REQUIRE(changes.size() == 4);
  CHECK(changes[0].start == 0);
  CHECK(changes[0].H == 2);
  CHECK(changes[1].start == 9'360);
  CHECK(changes[1].H == 6);  // ⌊(0.2/0.08)²⌋ = ⌊6.25⌋
  CHECK(changes[2].start == 18'720);
  CHECK(changes[2].H == 624);  // not 625: η = 0.8·0.1² = 0.008000000000000002
  CHECK(changes[3].start == 24'960);
  CHECK(changes[3].H == 3'120);  // ⌊(0.2/0.0008)²⌋ = 62,500, capped by the remaining steps
  CHECK(rounds.back().start == 24'960);
  CHECK(rounds.size() == 4'680 + 1'560 + 10 + 1);
  // the exact 0.008 would give 625: the difference is only the last bit of η
  CHECK(qsr.period(20'000, 0.008, 100'000) == 625);
  CHECK(qsr.period(20'000, 0.8 * std::pow(0.1, 2.0), 100'000) == 624);
}

TEST_CASE("QSR warmup: rounds starting before warmup_steps use init_H, even when they run past it (A4)") {
  // η is constant 0.1, (α/η)² = 9 after warmup; init_H = 3 differs from min_H = 4 = H_base
  const lgm::ConstantLr lr{0.1};
  const lgm::QuadraticSyncRule qsr{.alpha = 0.3, .H_base = 4, .init_H = 3, .warmup_steps = 10};
  CHECK(qsr.initial_period() == 3);
  CHECK(qsr.minimum_period() == 4);
  const auto rounds = replay(lr, qsr, 40);
  // rounds at 0, 3, 6, 9 start inside warmup (H = 3); the round at 9 runs over the warmup end to 12
  REQUIRE(rounds.size() >= 6);
  for (std::size_t i = 0; i < 4; ++i) {
    CHECK(rounds[i].start == static_cast<lgm::Index>(3 * i));
    CHECK(rounds[i].H == 3);
  }
  CHECK(rounds[4].start == 12);
  CHECK(rounds[4].H == 8);  // ⌊(0.3/0.1)²⌋ = ⌊8.999999999999998⌋ = 8 (truncation of the double)
  CHECK(std::pow(0.3 / 0.1, 2.0) < 9.0);
  CHECK(rounds[5].start == 20);
  // a round starting at warmup_steps − 1 uses init_H, one starting at warmup_steps uses the rule
  CHECK(qsr.period(9, 0.1, 1'000) == 3);
  CHECK(qsr.period(10, 0.1, 1'000) == 8);
  // min_H floors the rule after warmup
  CHECK(qsr.period(10, 1.0, 1'000) == 4);
}

// docs/sync_rules.md §Reference semantics
TEST_CASE("QSR with α = 0 is constant-H Local SGD with init_H") {
  const lgm::QuadraticSyncRule qsr{.alpha = 0.0, .H_base = 4};
  CHECK_NOTHROW(qsr.validate());
  const auto rounds = replay(kVitCosine, qsr, kT);
  CHECK(rounds.size() == kT / 4);
  for (const Round& r : rounds) REQUIRE(r.H == 4);
  // the reference does not cap in this branch (the driver clamps the last round)
  CHECK(qsr.period(95, 0.0, 2) == 4);
  CHECK(lgm::QuadraticSyncRule{.alpha = 0.0, .H_base = 4, .init_H = 7}.period(1'000, 1e-9, -1) == 7);
}

TEST_CASE("QSR guards: η ≤ 0 caps to the remaining steps (A20); overflow is clamped, not undefined") {
  const lgm::QuadraticSyncRule qsr{.alpha = 0.1, .H_base = 2};
  CHECK(qsr.period(50, 0.0, 30) == 30);
  CHECK(qsr.period(50, -1.0, 30) == 30);
  CHECK(qsr.period(50, std::nan(""), 30) == 30);
  CHECK(qsr.period(50, 0.0, 0) == 1);
  CHECK(qsr.period(50, 0.0, -1) == lgm::kUnboundedPeriod);  // budget in samples: the budget ends the round
  // (α/η)² = 1e598 overflows to +∞: capped by the remaining steps, or unbounded without a cap
  CHECK(qsr.period(50, 1e-300, 77) == 77);
  CHECK(qsr.period(50, 1e-300, -1) == lgm::kUnboundedPeriod);
  CHECK(qsr.period(50, 1e-12, -1) == lgm::kUnboundedPeriod);  // 1e22 > 2^62
  CHECK(lgm::QuadraticSyncRule{.alpha = 1.0, .H_base = 2}.period(50, std::ldexp(1.0, -20), -1) ==
        (lgm::Index{1} << 40));  // (2^20)^2 is exact and fits
  // total_steps takes precedence over RoundInfo::remaining_steps; the result is at least 1
  const lgm::QuadraticSyncRule capped{.alpha = 1.0, .H_base = 2, .total_steps = 100};
  CHECK(capped.period(90, 0.01, 5'000) == 10);
  CHECK(capped.period(100, 0.01, 5'000) == 1);
  CHECK(capped.period(120, 0.01, 5'000) == 1);
  const lgm::SyncPlan plan = capped.plan(lgm::RoundInfo{3, 90, 0.01, 5'000});
  CHECK(plan.period == 10);
  CHECK(plan.scope == lgm::SyncScope::global);
  CHECK_FALSE(plan.average_gradients);
}

TEST_CASE("QSR agrees with the transcribed reference adjust_h on a grid") {
  for (double alpha : {0.0, 0.01, 0.0175, 0.2, 1.3})
    for (double power : {1.0, 1.5, 2.0, 3.0})
      for (lgm::Index init_h : {1, 3})
        for (lgm::Index min_h : {1, 2, 8})
          for (double lr : {1e-4, 3.3e-3, 0.008, 0.08, 0.5})
            for (lgm::Index t : {0, 5, 9, 10, 400, 999}) {
              const lgm::QuadraticSyncRule rule{.alpha = alpha,
                                                .gamma = power,
                                                .H_base = 4,
                                                .init_H = init_h,
                                                .min_H = min_h,
                                                .warmup_steps = 10,
                                                .total_steps = 1'000};
              REQUIRE(rule.period(t, lr) == reference_adjust_h(t, lr, alpha, power, init_h, min_h, 10, 1'000));
            }
}

TEST_CASE("ConstantSync and EveryStepSync plans") {
  const lgm::ConstantSync constant{8};
  for (lgm::Index round : {0, 1, 17}) {
    const lgm::SyncPlan p = constant.plan(lgm::RoundInfo{round, round * 8, 0.1, -1});
    CHECK(p.period == 8);
    CHECK(p.scope == lgm::SyncScope::global);
    CHECK_FALSE(p.average_gradients);
  }
  CHECK(lgm::ConstantSync{}.H == 8);
  const auto rounds = replay(lgm::ConstantLr{0.1}, constant, 64);
  CHECK(rounds.size() == 8);
  CHECK(rounds.back().start == 56);  // syncs after steps 8, 16, …, 64 (1-based): "H completed steps" (A6)

  const lgm::SyncPlan every = lgm::EveryStepSync{}.plan(lgm::RoundInfo{5, 5, 0.1, 10});
  CHECK(every.period == 1);
  CHECK(every.average_gradients);  // minibatch SGD as gradient all-reduce + one step (A9)
  CHECK_FALSE(lgm::EveryStepSync{false}.plan(lgm::RoundInfo{}).average_gradients);
  CHECK_NOTHROW(lgm::EveryStepSync{}.validate());
}

TEST_CASE("PostLocalSync: period 1 before the switch, H counted from the switch (A6, A11)") {
  const lgm::PostLocalSync rule{.switch_step = 10, .H = 4};
  CHECK_NOTHROW(rule.validate());
  const auto rounds = replay(lgm::ConstantLr{0.1}, rule, 30);
  REQUIRE(rounds.size() == 10 + 5);
  for (std::size_t i = 0; i < 10; ++i) {
    CHECK(rounds[i].start == static_cast<lgm::Index>(i));
    CHECK(rounds[i].H == 1);
  }
  // the local phase starts exactly at the switch (10 is not a multiple of H = 4): 10, 14, 18, 22, 26
  for (std::size_t i = 10; i < rounds.size(); ++i) {
    CHECK(rounds[i].start == 10 + 4 * static_cast<lgm::Index>(i - 10));
    CHECK(rounds[i].H == 4);
  }
  CHECK(rule.plan(lgm::RoundInfo{9, 9, 0.1, -1}).average_gradients);
  CHECK_FALSE(rule.plan(lgm::RoundInfo{10, 10, 0.1, -1}).average_gradients);
  // parameter averaging every step in phase 1 (Lin's code)
  const lgm::PostLocalSync lin{.switch_step = 10, .H = 4, .gradient_averaging_before_switch = false};
  const lgm::SyncPlan p = lin.plan(lgm::RoundInfo{3, 3, 0.1, -1});
  CHECK(p.period == 1);
  CHECK_FALSE(p.average_gradients);
  // switch_step = 0: plain Local SGD
  CHECK(lgm::PostLocalSync{.switch_step = 0, .H = 16}.plan(lgm::RoundInfo{}).period == 16);
}

TEST_CASE("PostLocalSync::at_first_decay switches at the first decay point of a step-decay schedule") {
  // Lin et al.: 300 epochs, decays at 150 and 225, post-local from the first decay (docs/decisions.md §A11)
  const lgm::Index spe = 391;
  const lgm::StepDecayLr schedule{.peak = 3.2, .gamma = 0.1, .decay_points = {150 * spe, 225 * spe}};
  const lgm::PostLocalSync rule = lgm::PostLocalSync::at_first_decay(schedule, 16);
  CHECK(rule.switch_step == 150 * spe);
  CHECK(rule.H == 16);
  CHECK(rule.gradient_averaging_before_switch);
  CHECK(rule.plan(lgm::RoundInfo{0, 150 * spe - 1, 3.2, -1}).period == 1);
  CHECK(rule.plan(lgm::RoundInfo{0, 150 * spe, 0.32, -1}).period == 16);
  CHECK_FALSE(lgm::PostLocalSync::at_first_decay(schedule, 16, false).gradient_averaging_before_switch);

  check_config_error([] { (void)lgm::PostLocalSync::at_first_decay(lgm::StepDecayLr{.peak = 0.1}, 8); },
                     "schedule.decay_points", "empty", "at least one");
  check_config_error(
      [] {
        (void)lgm::PostLocalSync::at_first_decay(
            lgm::StepDecayLr{.peak = 0.1, .decay_points = {100}, .axis = lgm::ScheduleAxis::samples}, 8);
      },
      "schedule.axis", "samples", "steps");
}

// docs/sync_rules.md §HierarchicalSync; docs/decisions.md §A15
TEST_CASE("HierarchicalSync: group averages every H steps, global every H·H^b steps") {
  const lgm::HierarchicalSync rule{.H = 2, .global_every = 3, .group_size = 4};
  CHECK_NOTHROW(rule.validate());
  CHECK(rule.global_period() == 6);
  const auto rounds = replay(lgm::ConstantLr{0.1}, rule, 36);
  REQUIRE(rounds.size() == 18);
  lgm::Index globals = 0;
  for (std::size_t r = 0; r < rounds.size(); ++r) {
    CAPTURE(r);
    const lgm::SyncPlan p = rule.plan(lgm::RoundInfo{static_cast<lgm::Index>(r), rounds[r].start, 0.1, -1});
    CHECK(p.period == 2);
    CHECK_FALSE(p.average_gradients);
    const lgm::Index sync_after = rounds[r].start + p.period;  // 1-based step after which the round syncs
    const bool expect_global = r % 3 == 2;                     // pattern: group, group, global, …
    CHECK((p.scope == lgm::SyncScope::global) == expect_global);
    CHECK((sync_after % 6 == 0) == expect_global);
    if (expect_global) {
      ++globals;
    } else {
      CHECK(p.group_size == 4);
    }
  }
  CHECK(globals == 6);
  // global_every = 1: every round is global (plain Local SGD)
  const lgm::HierarchicalSync flat{.H = 5, .global_every = 1, .group_size = 2};
  for (lgm::Index r = 0; r < 5; ++r)
    CHECK(flat.plan(lgm::RoundInfo{r, 5 * r, 0.1, -1}).scope == lgm::SyncScope::global);
}

TEST_CASE("Sync rule validation names the parameter, the value and the accepted range") {
  check_config_error([] { lgm::ConstantSync{0}.validate(); }, "H", "0", "an integer >= 1");
  CHECK(std::string([] {
          try {
            lgm::ConstantSync{0}.validate();
          } catch (const lgm::ConfigError& e) {
            return std::string(e.what());
          }
          return std::string();
        }()) == "invalid H = 0 (accepted: an integer >= 1)");
  CHECK_THROWS_WITH_AS(lgm::ConstantSync{-3}.validate(), doctest::Contains("H = -3"), lgm::ConfigError);
  CHECK_NOTHROW(lgm::ConstantSync{1}.validate());

  check_config_error([] { lgm::PostLocalSync{.switch_step = -1, .H = 4}.validate(); }, "switch_step", "-1", ">= 0");
  check_config_error([] { lgm::PostLocalSync{.switch_step = 5, .H = 0}.validate(); }, "H", "0", ">= 1");

  check_config_error([] { lgm::HierarchicalSync{.H = 0, .global_every = 2, .group_size = 2}.validate(); }, "H", "0",
                     ">= 1");
  check_config_error([] { lgm::HierarchicalSync{.H = 2, .global_every = 0, .group_size = 2}.validate(); },
                     "global_every", "0", ">= 1");
  check_config_error([] { lgm::HierarchicalSync{.H = 2, .global_every = 2}.validate(); }, "group_size", "0", ">= 1");

  // α is required: the default is NaN so that a forgotten α is an error, not silently constant H
  check_config_error([] { lgm::QuadraticSyncRule{}.validate(); }, "alpha", "nan", ">= 0");
  check_config_error([] { lgm::QuadraticSyncRule{.alpha = -0.5}.validate(); }, "alpha", "-0.5", ">= 0");
  check_config_error([] { lgm::QuadraticSyncRule{.alpha = 0.1, .gamma = 0.0}.validate(); }, "gamma", "0", "> 0");
  check_config_error([] { lgm::QuadraticSyncRule{.alpha = 0.1, .H_base = 0}.validate(); }, "H_base", "0", ">= 1");
  check_config_error([] { lgm::QuadraticSyncRule{.alpha = 0.1, .init_H = -1}.validate(); }, "init_H", "-1", ">= 0");
  check_config_error([] { lgm::QuadraticSyncRule{.alpha = 0.1, .min_H = -2}.validate(); }, "min_H", "-2", ">= 0");
  check_config_error([] { lgm::QuadraticSyncRule{.alpha = 0.1, .warmup_steps = -1}.validate(); }, "warmup_steps", "-1",
                     ">= 0");
  check_config_error([] { lgm::QuadraticSyncRule{.alpha = 0.1, .total_steps = 0}.validate(); }, "total_steps", "0",
                     "-1 (use the run's remaining steps) or an integer >= 1");
  CHECK_NOTHROW(lgm::QuadraticSyncRule{.alpha = 0.1, .total_steps = -1}.validate());
  CHECK_NOTHROW(lgm::LinearSyncRule{.alpha = 0.1, .total_steps = 1}.validate());
}
