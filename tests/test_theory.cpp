// Tests of include/lgm/theory/bounds.hpp: every formula recomputed a second way, and one fast statistical check
// per theorem (the measured mean + 95% band under the bound).
#include <doctest/doctest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "lgm/batch/batch.hpp"
#include "lgm/core/moments.hpp"
#include "lgm/problems/least_squares.hpp"
#include "lgm/problems/nonconvex_logistic.hpp"
#include "lgm/run/methods.hpp"
#include "lgm/theory/bounds.hpp"

namespace th = lgm::theory;
using lgm::Index;
using lgm::Vector;

TEST_CASE("theory: admissible step terms recomputed by hand") {
  // L = 2, μ = 0.5, M = 4, H = 8, η = 0.5 (η² = 0.25)
  const th::Setting s{2.0, 0.5, 4, 8, 0.5};
  const auto a = th::admissible_step(th::Theorem::A, s);
  CHECK(a.terms[0] == doctest::Approx(1.0 / (8.0 * 1.0625)));
  CHECK(a.terms[1] == doctest::Approx(1.0 / (4.0 * std::sqrt(2.0) * std::sqrt(8.0 * 8.5))));
  CHECK(a.terms[2] == doctest::Approx(1.0 / (8.0 * std::sqrt(10.0) * 0.5 * std::sqrt(8.0))));
  CHECK(a.terms[3] == doctest::Approx(1.0 / 8.0));
  double m = a.terms[0];
  for (double t : a.terms) m = t < m ? t : m;
  CHECK(a.max == m);
  // the second term implies the fourth (α ≤ 1/(2μH)) since μ ≤ L
  CHECK(a.terms[1] <= a.terms[3]);
  const auto b = th::admissible_step(th::Theorem::B, th::Setting{2.0, 0.0, 4, 8, 0.5});
  CHECK(std::isinf(b.terms[3]));
  CHECK(b.max == doctest::Approx(std::min({b.terms[0], b.terms[1], b.terms[2]})));
  const auto c = th::admissible_step(th::Theorem::C, th::Setting{2.0, 0.0, 1, 1, 1.0});
  CHECK(c.terms[0] == doctest::Approx(0.5));
  CHECK(c.terms[1] == doctest::Approx(1.0 / 8.0));
  CHECK(c.terms[2] == doctest::Approx(1.0 / (4.0 * std::sqrt(3.0))));
  CHECK(c.terms[3] == doctest::Approx(1.0 / (8.0 * std::sqrt(3.0))));
  CHECK(c.max == doctest::Approx(1.0 / (8.0 * std::sqrt(3.0))));  // the η term binds here
  // the toy of docs/theory.md §Toy problem: L ≈ 1.245, M = 4, H = 8, η = 0.5 gives α = 0.0344
  CHECK(th::admissible_step(th::Theorem::A, th::Setting{1.245, 0.857, 4, 8, 0.5}).max ==
        doctest::Approx(0.0344).epsilon(1e-3));
}

TEST_CASE("theory: Theorem A bounds, recursion vs closed form") {
  const th::Setting s{1.245, 0.857, 4, 8, 0.5};
  const double alpha = th::admissible_step(th::Theorem::A, s).max, r0 = 25.8;
  // docs/theory.md §Toy problem: (1 − μα/2)^96 · 25.8 ≈ 6.20
  CHECK(th::strongly_convex_distance_bound(s, alpha, r0, 96) == doctest::Approx(6.20).epsilon(0.01));
  double r = r0, W = 0.0, w = 1.0;
  const double c = 1.0 - 0.5 * s.mu * alpha;
  for (Index K = 1; K <= 200; ++K) {
    r *= c;  // the recursion E r_{k+1} ≤ (1 − μα/2) r_k
    w /= c;  // w_{K−1} = c^{−K}
    W += w;
    CHECK(th::strongly_convex_distance_bound(s, alpha, r0, K) == doctest::Approx(r).epsilon(1e-12));
    CHECK(th::bound(th::Theorem::A, s, alpha, r0, K) == doctest::Approx(2.0 * r0 / (alpha * W)).epsilon(1e-10));
    // exact W is at least the last weight: never weaker than the reference's form
    CHECK(th::bound(th::Theorem::A, s, alpha, r0, K) <=
          th::strongly_convex_gap_bound_reference(s, alpha, r0, K) * (1 + 1e-12));
    if (K > 1) CHECK(th::bound(th::Theorem::A, s, alpha, r0, K) < th::bound(th::Theorem::A, s, alpha, r0, K - 1));
  }
  // weights: normalized, increasing, and the newest one matches newest_weight
  const auto ws = th::output_weights(th::Theorem::A, s, alpha, 50);
  CHECK(std::accumulate(ws.begin(), ws.end(), 0.0) == doctest::Approx(1.0));
  for (size_t k = 1; k < ws.size(); ++k) CHECK(ws[k] / ws[k - 1] == doctest::Approx(1.0 / c));
  CHECK(ws.back() == doctest::Approx(th::newest_weight(th::Theorem::A, s, alpha, 50)));
}

TEST_CASE("theory: Theorems B and C, monotone in K, factor of the worker output, errors") {
  const th::Setting s{1.0, 0.0, 4, 4, 0.5};
  for (th::Theorem t : {th::Theorem::B, th::Theorem::C}) {
    const double alpha = th::admissible_step(t, s).max;
    const double k0 = t == th::Theorem::B ? 2.0 : 8.0;
    for (Index K = 1; K <= 100; ++K) {
      CHECK(th::bound(t, s, alpha, 3.0, K) == doctest::Approx(k0 * 3.0 / (alpha * static_cast<double>(K))));
      CHECK(th::bound(t, s, alpha, 3.0, K) * static_cast<double>(K) == doctest::Approx(th::bound(t, s, alpha, 3.0, 1)));
    }
    const double f = th::worker_output_factor(t, s, alpha);
    CHECK(f >= 2.0);
    CHECK(f <= (t == th::Theorem::C ? 7.0 / 3.0 : 2.2) + 1e-12);
    const auto w = th::output_weights(t, s, alpha, 10);
    for (double x : w) CHECK(x == doctest::Approx(0.1));
  }
  const double alpha = th::admissible_step(th::Theorem::B, s).max;
  CHECK_THROWS_AS((void)th::bound(th::Theorem::B, s, 1.01 * alpha, 1.0, 10), lgm::ConfigError);
  CHECK_THROWS_WITH((void)th::bound(th::Theorem::B, s, 2 * alpha, 1.0, 10), doctest::Contains("invalid alpha"));
  CHECK_THROWS_WITH((void)th::bound(th::Theorem::B, s, alpha, -1.0, 10), doctest::Contains("invalid initial_gap"));
  CHECK_THROWS_WITH((void)th::bound(th::Theorem::B, s, alpha, 1.0, 0), doctest::Contains("invalid K"));
  CHECK_THROWS_WITH((void)th::admissible_step(th::Theorem::A, s), doctest::Contains("invalid mu"));
  CHECK_THROWS_WITH((void)th::admissible_step(th::Theorem::C, th::Setting{1.0, 0.0, 0, 1, 0.5}),
                    doctest::Contains("invalid M"));
  CHECK_THROWS_WITH((void)th::admissible_step(th::Theorem::C, th::Setting{1.0, 0.0, 1, 1, 0.0}),
                    doctest::Contains("invalid eta"));
}

TEST_CASE("theory: rounds_to_accuracy is the first K under ε (linear search)") {
  const th::Setting sa{1.0, 0.25, 4, 4, 0.5};
  const th::Setting sc{1.0, 0.0, 4, 4, 0.5};
  for (auto [t, s] : {std::pair{th::Theorem::A, sa}, std::pair{th::Theorem::B, sc}, std::pair{th::Theorem::C, sc}}) {
    const double alpha = th::admissible_step(t, s).max, eps = 0.05;
    Index K = 1;
    while (th::bound(t, s, alpha, 2.0, K) > eps) ++K;
    const auto r = th::rounds_to_accuracy(t, s, alpha, 2.0, eps);
    CHECK(r.K == K);
    CHECK(r.R == (K + 3) / 4);
  }
  CHECK_THROWS_WITH((void)th::rounds_to_accuracy(th::Theorem::C, sc, 0.01, 1.0, 0.0), doctest::Contains("epsilon"));
}

namespace {

// Runs Local SGD with the exact local norm test and returns the mean and 95% half-width over seeds of the
// theorem's quantity at K for output (i).
template <class Obj>
std::pair<double, double> measure(const Obj& obj, th::Theorem t, const th::Setting& s, double alpha, const Vector& x0,
                                  double fstar, Index K, int seeds) {
  std::vector<Index> all(static_cast<size_t>(obj.num_samples()));
  std::iota(all.begin(), all.end(), Index{0});
  const lgm::IndexSpan span(all.data(), all.size());
  std::vector<double> vals;
  for (int seed = 0; seed < seeds; ++seed) {
    lgm::AdaptiveBatchOptions ao;
    ao.b0 = 64;
    ao.b_max = Index{1} << 20;
    ao.variance = lgm::VarianceMode::exact;
    ao.apply_at = lgm::ApplyAt::next_step;
    lgm::LocalSGDNormTest method({.workers = s.M, .max_steps = K}, lgm::SGD{}, lgm::ConstantSync{s.H},
                                 lgm::NormTestRule(ao, lgm::NormTest{.eta = s.eta}), lgm::ConstantLr{.lr = alpha},
                                 lgm::IidSampler(static_cast<std::uint64_t>(seed)));
    th::OutputTracker tracker(x0, s.M, s.H, th::output_weights(t, s, alpha, K), static_cast<std::uint64_t>(seed));
    double grad_sum = 0.0;  // Theorem C: Σ_{k<K} ‖∇F(x̄_k)‖²
    auto ws = obj.make_workspace();
    Vector g(obj.dim());
    obj.gradient(x0, span, g, ws);
    grad_sum += g.squaredNorm();
    struct GradObserver {
      const Obj& obj;
      lgm::IndexSpan span;
      Index K;
      double* sum;
      void on_step(const lgm::RunState& st) {
        if (st.metrics.steps >= K) return;
        auto w = obj.make_workspace();
        Vector gg(obj.dim());
        obj.gradient(Vector(st.X.rowwise().mean()), span, gg, w);
        *sum += gg.squaredNorm();
      }
    } obs{obj, span, K, &grad_sum};
    method.run(obj, x0, tracker, obs);
    vals.push_back(t == th::Theorem::C ? grad_sum / static_cast<double>(K)
                                       : lgm::full_loss(obj, tracker.weighted_average()) - fstar);
  }
  const double n = static_cast<double>(vals.size());
  const double mean = std::accumulate(vals.begin(), vals.end(), 0.0) / n;
  double ss = 0.0;
  for (double v : vals) ss += (v - mean) * (v - mean);
  return {mean, 1.96 * std::sqrt(ss / (n - 1.0)) / std::sqrt(n)};
}

}  // namespace

TEST_CASE("theory: measured mean + band under the bound (A, B, C; M = 4, H = 4, 8 seeds)") {
  const int seeds = 8;
  {
    const auto ls = lgm::LeastSquares::synthetic(
        {.N = 200, .d = 5, .cov_max = 1.0, .condition = 3.0, .noise = 0.05, .lambda = 0.01, .seed = 3});
    const th::Setting s{ls.smoothness(), ls.strong_convexity(), 4, 4, 0.5};
    const double alpha = th::admissible_step(th::Theorem::A, s).max;
    const Vector x0 = Vector::Zero(ls.dim());
    const double r0 = (x0 - ls.optimum()).squaredNorm();
    const auto [mean, half] = measure(ls, th::Theorem::A, s, alpha, x0, ls.optimal_value(), 40, seeds);
    CHECK(mean + half <= th::bound(th::Theorem::A, s, alpha, r0, 40));
  }
  {
    const auto ls = lgm::LeastSquares::synthetic(
        {.N = 200, .d = 6, .cov_max = 1.0, .condition = 3.0, .rank = 3, .noise = 0.05, .lambda = 0.0, .seed = 4});
    const th::Setting s{ls.smoothness(), 0.0, 4, 4, 0.5};
    const double alpha = th::admissible_step(th::Theorem::B, s).max;
    const Vector x0 = Vector::Zero(ls.dim());  // stays in range(S): the min-norm x* is the nearest minimizer
    const double r0 = (x0 - ls.optimum()).squaredNorm();
    const auto [mean, half] = measure(ls, th::Theorem::B, s, alpha, x0, ls.optimal_value(), 40, seeds);
    CHECK(mean + half <= th::bound(th::Theorem::B, s, alpha, r0, 40));
  }
  {
    const auto nl = lgm::NonconvexLogistic::synthetic({.N = 200, .d = 5, .lambda = 0.1, .seed = 5});
    const th::Setting s{nl.smoothness(), 0.0, 4, 4, 0.5};
    const double alpha = th::admissible_step(th::Theorem::C, s).max;
    const Vector x0 = Vector::Constant(nl.dim(), 1.0);
    const double gap = lgm::full_loss(nl, x0);  // F* ≥ 0
    const auto [mean, half] = measure(nl, th::Theorem::C, s, alpha, x0, 0.0, 40, seeds);
    CHECK(mean + half <= th::bound(th::Theorem::C, s, alpha, gap, 40));
  }
}

TEST_CASE("theory: OutputTracker draws (k, m) with the weights and keeps x0 for k = 0") {
  const th::Setting s{1.0, 0.5, 2, 2, 0.5};
  const double alpha = th::admissible_step(th::Theorem::A, s).max;
  const auto w = th::output_weights(th::Theorem::A, s, alpha, 4);
  std::vector<int> counts(4, 0);
  const Vector x0 = Vector::Constant(3, 7.0);
  for (std::uint64_t seed = 0; seed < 4000; ++seed) {
    th::OutputTracker tr(x0, 2, 2, w, seed);
    ++counts[static_cast<size_t>(tr.drawn_step())];
    CHECK((tr.drawn_worker() == 0 || tr.drawn_worker() == 1));
    if (tr.drawn_step() == 0) CHECK(tr.random_worker_iterate() == x0);
  }
  for (size_t k = 0; k < 4; ++k) CHECK(counts[k] / 4000.0 == doctest::Approx(w[k]).epsilon(0.15));
}
