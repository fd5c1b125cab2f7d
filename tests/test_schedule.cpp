// Learning-rate schedules (docs/schedules.md §The schedules; docs/schedules.md §Axis).
// Each formula is checked against an independent computation written here: a different but equivalent
// algebraic form, hand-computed values at the corners, or a naive loop.
#include <doctest/doctest.h>

#include <cmath>
#include <lgm/core/concepts.hpp>
#include <lgm/schedule/schedules.hpp>
#include <numbers>
#include <string>

namespace {

static_assert(lgm::LrSchedule<lgm::ConstantLr>);
static_assert(lgm::LrSchedule<lgm::WarmupCosineLr>);
static_assert(lgm::LrSchedule<lgm::WarmupLinearDecayLr>);
static_assert(lgm::LrSchedule<lgm::StepDecayLr>);

// Independent forms: interpolation with weights, cosine written as cos² (1 + cos x = 2cos²(x/2)).
double naive_warmup(double lo, double hi, double t, double W) { return (1.0 - t / W) * lo + (t / W) * hi; }
double naive_cosine(double lo, double hi, double t, double W, double T) {
  if (t < W) return naive_warmup(lo, hi, t, W);
  const double d = std::min(t - W, T - W);
  const double c = std::cos(std::numbers::pi * d / (2.0 * (T - W)));
  return lo + (hi - lo) * c * c;
}
double naive_linear(double lo, double hi, double t, double W, double T) {
  if (t < W) return naive_warmup(lo, hi, t, W);
  const double frac = std::min(t - W, T - W) / (T - W);  // fraction of the decay done
  return hi - frac * (hi - lo);
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

}  // namespace

TEST_CASE("ConstantLr: constant after an optional linear warmup from min_lr") {
  const lgm::ConstantLr plain{0.05};
  CHECK(plain.at(0, 0) == 0.05);
  CHECK(plain.at(123456, 987654) == 0.05);
  CHECK_NOTHROW(plain.validate());

  const lgm::ConstantLr warm{.lr = 0.4, .warmup = 8, .min_lr = 0.0};
  for (lgm::Index t = 0; t < 8; ++t) CHECK(warm.at(t, 0) == doctest::Approx(0.4 * static_cast<double>(t) / 8.0));
  CHECK(warm.at(8, 0) == 0.4);
  CHECK(warm.at(100, 0) == 0.4);
  CHECK(lgm::ConstantLr{}.lr == 0.01);
}

TEST_CASE("WarmupCosineLr matches an independent cos² form and the corner values") {
  const lgm::WarmupCosineLr s{.peak = 0.008, .min_lr = 1e-6, .warmup = 10'000, .total = 93'600};
  CHECK_NOTHROW(s.validate());
  // warmup starts at η_min, not 0 (docs/schedules.md §Warmup)
  CHECK(s.at(0, 0) == 1e-6);
  CHECK(s.at(5'000, 0) == doctest::Approx((1e-6 + 0.008) / 2).epsilon(1e-14));
  CHECK(s.at(10'000, 0) == 0.008);  // cos(0) = 1 exactly: the peak at t = W
  CHECK(s.at(10'000 + 41'800, 0) == doctest::Approx((1e-6 + 0.008) / 2).epsilon(1e-12));  // half-way: cos(π/2)
  CHECK(s.at(93'600, 0) == doctest::Approx(1e-6).epsilon(1e-9));
  CHECK(s.at(200'000, 0) == s.at(93'600, 0));  // d = min(t − W, T − W): flat after T
  for (lgm::Index t = 0; t <= 100'000; t += 997) {
    CAPTURE(t);
    CHECK(s.at(t, 0) == doctest::Approx(naive_cosine(1e-6, 0.008, double(t), 1e4, 93'600.0)).epsilon(1e-12));
  }
  // monotone: non-decreasing in warmup, non-increasing afterwards
  for (lgm::Index t = 1; t < 10'000; ++t) REQUIRE(s.at(t, 0) >= s.at(t - 1, 0));
  for (lgm::Index t = 10'001; t < 93'600; ++t) REQUIRE(s.at(t, 0) <= s.at(t - 1, 0));
}

TEST_CASE("WarmupCosineLr uses the reference's floating-point order (cos(d/(T−W)·π))") {
  // The period QSR derives from η is floor()ed, so the last bit matters (docs/decisions.md §A3); this pins the
  // reference expression `final + 0.5*(max-final)*(1 + cos(d/(T-W)*pi))` evaluated left to right.
  const lgm::WarmupCosineLr s{.peak = 0.008, .min_lr = 1e-6, .warmup = 10'000, .total = 93'600};
  for (lgm::Index t : {10'001, 17'872, 17'876, 36'411, 85'458, 93'599}) {
    const double d = static_cast<double>(t - 10'000), span = 83'600.0;
    const double expected = 1e-6 + 0.5 * (0.008 - 1e-6) * (1.0 + std::cos(d / span * std::numbers::pi));
    CHECK(s.at(t, 0) == expected);
  }
  // the values docs/sync_rules.md §Golden values quotes: η ≈ 0.0078263 at step 17,872 and ≈ 0.0078261 at 17,876
  CHECK(s.at(17'872, 0) == doctest::Approx(0.0078263).epsilon(1e-5));
  CHECK(s.at(17'876, 0) == doctest::Approx(0.0078261).epsilon(1e-5));
  CHECK(s.at(36'411, 0) == doctest::Approx(0.0061866).epsilon(1e-5));
}

TEST_CASE("WarmupLinearDecayLr matches an independent interpolation") {
  const lgm::WarmupLinearDecayLr s{.peak = 0.5, .min_lr = 0.05, .warmup = 100, .total = 1'100};
  CHECK_NOTHROW(s.validate());
  CHECK(s.at(0, 0) == 0.05);
  CHECK(s.at(100, 0) == 0.5);
  CHECK(s.at(600, 0) == doctest::Approx(0.275));
  CHECK(s.at(1'100, 0) == 0.05);
  CHECK(s.at(5'000, 0) == 0.05);
  for (lgm::Index t = 0; t <= 1'300; t += 7) {
    CAPTURE(t);
    CHECK(s.at(t, 0) == doctest::Approx(naive_linear(0.05, 0.5, double(t), 100.0, 1'100.0)).epsilon(1e-13));
  }
  // without warmup the decay starts at t = 0 from the peak
  const lgm::WarmupLinearDecayLr nw{.peak = 1.0, .min_lr = 0.0, .warmup = 0, .total = 4};
  CHECK(nw.at(0, 0) == 1.0);
  CHECK(nw.at(1, 0) == 0.75);
  CHECK(nw.at(3, 0) == 0.25);
  CHECK(nw.at(4, 0) == 0.0);
}

TEST_CASE("StepDecayLr: η_max·γ^i on the i-th segment, i counted by a naive loop") {
  const lgm::StepDecayLr s{.peak = 0.8, .gamma = 0.1, .decay_points = {9'360, 18'720, 24'960}};
  CHECK_NOTHROW(s.validate());
  for (lgm::Index t : {0, 1, 9'359, 9'360, 9'361, 18'719, 18'720, 24'959, 24'960, 28'079, 40'000}) {
    CAPTURE(t);
    double expected = 0.8;
    for (lgm::Index p : {9'360, 18'720, 24'960})
      if (t >= p) expected *= 0.1;
    CHECK(s.at(t, 0) == doctest::Approx(expected).epsilon(1e-15));
  }
  CHECK(s.decays_before(9'359) == 0);
  CHECK(s.decays_before(9'360) == 1);
  CHECK(s.decays_before(1'000'000) == 3);
  // γ^i with pow, as the reference: 0.8·0.1² is 0.008000000000000002, not 0.008 (docs/decisions.md §A3)
  CHECK(s.at(18'720, 0) == 0.8 * std::pow(0.1, 2.0));
  CHECK(s.at(18'720, 0) > 0.008);
  CHECK(s.at(18'720, 0) == 0.008000000000000002);

  // optional warmup from min_lr, then the segments
  const lgm::StepDecayLr w{.peak = 3.2, .gamma = 0.5, .decay_points = {10, 20}, .warmup = 4, .min_lr = 0.2};
  CHECK(w.at(0, 0) == 0.2);
  CHECK(w.at(2, 0) == doctest::Approx(1.7));
  CHECK(w.at(4, 0) == 3.2);
  CHECK(w.at(10, 0) == 1.6);
  CHECK(w.at(25, 0) == 0.8);
  // no decay points: constant peak
  CHECK(lgm::StepDecayLr{.peak = 0.3}.at(999, 0) == 0.3);
}

// docs/schedules.md §Axis; docs/decisions.md §B10
TEST_CASE("Schedules by samples use the samples counter") {
  // the authors' sample-budgeted runs: warmup 1e6 samples, decay over 9e6 samples (timlautk/AdAdaGrad expt.sh)
  const lgm::WarmupCosineLr by_samples{
      .peak = 0.5, .min_lr = 0.05, .warmup = 1'000'000, .total = 10'000'000, .axis = lgm::ScheduleAxis::samples};
  const lgm::WarmupCosineLr by_steps{.peak = 0.5, .min_lr = 0.05, .warmup = 1'000'000, .total = 10'000'000};
  for (lgm::Index n : {0, 500'000, 1'000'000, 3'333'333, 10'000'000}) {
    CHECK(by_samples.at(7, n) == by_steps.at(n, 7));
    CHECK(by_samples.at(7, n) == doctest::Approx(naive_cosine(0.05, 0.5, double(n), 1e6, 1e7)).epsilon(1e-12));
  }
  const lgm::StepDecayLr step{.peak = 1.0, .gamma = 0.1, .decay_points = {1'000}, .axis = lgm::ScheduleAxis::samples};
  CHECK(step.at(5'000, 999) == 1.0);
  CHECK(step.at(0, 1'000) == doctest::Approx(0.1));
  const lgm::ConstantLr c{.lr = 1.0, .warmup = 100, .min_lr = 0.0, .axis = lgm::ScheduleAxis::samples};
  CHECK(c.at(1'000, 25) == 0.25);
  const lgm::WarmupLinearDecayLr l{
      .peak = 1.0, .min_lr = 0.0, .warmup = 0, .total = 100, .axis = lgm::ScheduleAxis::samples};
  CHECK(l.at(0, 25) == 0.75);
}

TEST_CASE("Schedule validation names the parameter, the value and the accepted range") {
  check_config_error([] { lgm::ConstantLr{.lr = 0.0}.validate(); }, "lr", "0", "> 0");
  check_config_error([] { lgm::ConstantLr{.lr = -1.5}.validate(); }, "lr", "-1.5", "> 0");
  check_config_error([] { lgm::ConstantLr{.lr = 0.1, .warmup = -1}.validate(); }, "warmup", "-1", ">= 0");
  check_config_error([] { lgm::ConstantLr{.lr = 0.1, .warmup = 5, .min_lr = 0.2}.validate(); }, "min_lr", "0.2",
                     "[0, lr = 0.1");
  CHECK_THROWS_WITH_AS(lgm::ConstantLr{.lr = std::nan("")}.validate(), doctest::Contains("lr"), lgm::ConfigError);

  check_config_error([] { lgm::WarmupCosineLr{.peak = 0.0, .total = 10}.validate(); }, "peak", "0", "> 0");
  check_config_error([] { lgm::WarmupCosineLr{.peak = 0.1, .min_lr = 0.2, .total = 10}.validate(); }, "min_lr", "0.2",
                     "[0, peak = 0.1");
  check_config_error([] { lgm::WarmupCosineLr{.peak = 0.1, .min_lr = -1e-3, .total = 10}.validate(); }, "min_lr",
                     "-0.001", "[0, peak");
  check_config_error([] { lgm::WarmupCosineLr{.peak = 0.1, .warmup = 10, .total = 10}.validate(); }, "total", "10",
                     "> warmup = 10");
  check_config_error([] { lgm::WarmupCosineLr{.peak = 0.1}.validate(); }, "total", "0", "> warmup = 0");
  check_config_error([] { lgm::WarmupLinearDecayLr{.peak = 0.1, .warmup = -2, .total = 10}.validate(); }, "warmup",
                     "-2", ">= 0");
  check_config_error([] { lgm::WarmupLinearDecayLr{.peak = 0.1, .warmup = 20, .total = 10}.validate(); }, "total", "10",
                     "> warmup = 20");

  check_config_error([] { lgm::StepDecayLr{.peak = 0.1, .gamma = 0.0}.validate(); }, "gamma", "0", "> 0");
  check_config_error(
      [] {
        lgm::StepDecayLr{.peak = 0.1, .decay_points = {0, 5}}.validate();
      },
      "decay_points[0]", "0", ">= 1");
  check_config_error(
      [] {
        lgm::StepDecayLr{.peak = 0.1, .decay_points = {5, 9, 9}}.validate();
      },
      "decay_points[2]", "9", ">= 10");
  CHECK_NOTHROW(lgm::StepDecayLr{.peak = 0.1, .decay_points = {5, 9, 10}}.validate());
}
