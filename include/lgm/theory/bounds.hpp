// Convergence bounds of Local SGD with the exact-variance local norm test: Theorems A–C
// (docs/theory.md §Theorem A, §Theorem B, §Theorem C; derived and corrected in theory/README.md), the output
// points they are about, and the communication rounds they predict (docs/theory.md §Rounds to accuracy).
//
// Notation (docs/theory.md §Notation): M workers, H local steps per round, constant step α, norm-test constant
// η (docs/theory.md §A4: E_k‖g_k^m − ∇F(x_k^m)‖² ≤ η²‖∇F(x_k^m)‖² at every step k and worker m),
// x̄_k = (1/M) Σ_m x_k^m.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/run/metrics.hpp"

namespace lgm::theory {

/// A: μ-strongly convex (A2a); B: convex (A2b); C: nonconvex, F bounded below (A2c); docs/theory.md §A2.
enum class Theorem { A, B, C };

inline const char* to_string(Theorem t) noexcept {
  switch (t) {
    case Theorem::A:
      return "A";
    case Theorem::B:
      return "B";
    case Theorem::C:
      return "C";
  }
  return "?";
}

/// Constants of a run: L-smooth F (A1), μ (used by Theorem A only; B and C ignore it), M, H, η of A4.
struct Setting {
  double L = 1.0;
  double mu = 0.0;
  Index M = 1;
  Index H = 1;
  double eta = 0.5;
};

/// The admissible constant steps α ∈ (0, max], max = min of the terms (README "Theorem A/B/C").
/// A: {1/(4L(1+η²/M)), 1/(2√2 L √(H(H+2η²))), 1/(4√10 L η √H), 1/(2μH)} (the last is implied by the second);
/// B: the first three of A and +∞;  C: {1/L, M/(4Lη²), 1/(2L √(H(H+2η²))), 1/(4√3 L η √H)}.
struct StepSizeRange {
  double max = 0.0;
  std::array<double, 4> terms{};
};

namespace detail {

inline void check_setting(Theorem t, const Setting& s) {
  lgm::detail::require_positive("L", s.L);
  if (t == Theorem::A)
    lgm::detail::require(std::isfinite(s.mu) && s.mu > 0.0 && s.mu <= s.L, "mu", s.mu,
                         "a number in (0, L = " + lgm::detail::to_text(s.L) + "] for Theorem A");
  else
    lgm::detail::require(std::isfinite(s.mu) && s.mu >= 0.0 && s.mu <= s.L, "mu", s.mu,
                         "a number in [0, L = " + lgm::detail::to_text(s.L) + "] (not used by Theorems B and C)");
  lgm::detail::require_at_least("M", s.M, Index{1});
  lgm::detail::require_at_least("H", s.H, Index{1});
  lgm::detail::require_positive("eta", s.eta);
}

inline StepSizeRange step_terms(Theorem t, const Setting& s) {
  const double L = s.L, eta2 = s.eta * s.eta, M = static_cast<double>(s.M), H = static_cast<double>(s.H);
  StepSizeRange r;
  if (t == Theorem::C) {
    r.terms = {1.0 / L, M / (4.0 * L * eta2), 1.0 / (2.0 * L * std::sqrt(H * (H + 2.0 * eta2))),
               1.0 / (4.0 * std::sqrt(3.0) * L * s.eta * std::sqrt(H))};
  } else {
    r.terms = {1.0 / (4.0 * L * (1.0 + eta2 / M)), 1.0 / (2.0 * std::sqrt(2.0) * L * std::sqrt(H * (H + 2.0 * eta2))),
               1.0 / (4.0 * std::sqrt(10.0) * L * s.eta * std::sqrt(H)),
               t == Theorem::A ? 1.0 / (2.0 * s.mu * H) : std::numeric_limits<double>::infinity()};
  }
  r.max = r.terms[0];
  for (double v : r.terms) r.max = std::min(r.max, v);
  return r;
}

inline void check_alpha(Theorem t, const Setting& s, double alpha) {
  const double amax = step_terms(t, s).max;
  // a relative tolerance lets callers pass max itself after a round trip through text
  lgm::detail::require(
      std::isfinite(alpha) && alpha > 0.0 && alpha <= amax * (1.0 + 1e-12), "alpha", alpha,
      std::string("a step in (0, ") + lgm::detail::to_text(amax) + "] (Theorem " + to_string(t) + ", admissible_step)");
}

inline void check_gap(double initial_gap) { lgm::detail::require_nonnegative("initial_gap", initial_gap); }

// 1 − q with q = μα/2, the contraction of Theorem A.
inline double contraction(const Setting& s, double alpha) { return 1.0 - 0.5 * s.mu * alpha; }

}  // namespace detail

/// The largest admissible α and every term of the min. Throws ConfigError for L ≤ 0, μ out of range, M < 1,
/// H < 1 or η ≤ 0.
inline StepSizeRange admissible_step(Theorem t, const Setting& s) {
  detail::check_setting(t, s);
  return detail::step_terms(t, s);
}

/// Theorem A, first claim: E‖x̄_K − x*‖² ≤ (1 − μα/2)^K ‖x0 − x*‖² (K ≥ 0).
inline double strongly_convex_distance_bound(const Setting& s, double alpha, double initial_distance_sq, Index K) {
  detail::check_setting(Theorem::A, s);
  detail::check_alpha(Theorem::A, s, alpha);
  lgm::detail::require_nonnegative("initial_distance_sq", initial_distance_sq);
  lgm::detail::require_at_least("K", K, Index{0});
  return std::pow(detail::contraction(s, alpha), static_cast<double>(K)) * initial_distance_sq;
}

/// Theorem A, second claim, with the exact weight sum W_K = Σ_{k<K} w_k (README, correction 1):
/// E F(x_out) − F* ≤ 2‖x0 − x*‖²/(α W_K) = μ‖x0 − x*‖² c^K / (1 − c^K),  c = 1 − μα/2,
/// x_out = Σ_{k<K} w_k x̄_k / W_K (output (i)). K ≥ 1.
inline double strongly_convex_gap_bound(const Setting& s, double alpha, double initial_distance_sq, Index K) {
  detail::check_setting(Theorem::A, s);
  detail::check_alpha(Theorem::A, s, alpha);
  lgm::detail::require_nonnegative("initial_distance_sq", initial_distance_sq);
  lgm::detail::require_at_least("K", K, Index{1});
  const double cK = std::pow(detail::contraction(s, alpha), static_cast<double>(K));
  return s.mu * initial_distance_sq * cK / (1.0 - cK);
}

/// The reference sketch's weaker form of the same claim, (2‖x0 − x*‖²/α)(1 − μα/2)^K (it uses W_K ≥ w_{K−1}).
inline double strongly_convex_gap_bound_reference(const Setting& s, double alpha, double initial_distance_sq, Index K) {
  detail::check_setting(Theorem::A, s);
  detail::check_alpha(Theorem::A, s, alpha);
  lgm::detail::require_nonnegative("initial_distance_sq", initial_distance_sq);
  lgm::detail::require_at_least("K", K, Index{1});
  return 2.0 * initial_distance_sq / alpha * std::pow(detail::contraction(s, alpha), static_cast<double>(K));
}

/// The right-hand side of the theorem at K ≥ 1, for output (i) (the weighted average of x̄_k, k < K):
/// A: E F(x_out) − F* ≤ strongly_convex_gap_bound;  B: E F(x_out) − F* ≤ 2‖x0 − x*‖²/(αK);
/// C: (1/K) Σ_{k<K} E‖∇F(x̄_k)‖² ≤ 8(F(x0) − F*)/(αK).
/// initial_gap = ‖x0 − x*‖² (A, B) or F(x0) − F* (C). Throws ConfigError if α > admissible_step(t, s).max or an
/// input is out of range.
inline double bound(Theorem t, const Setting& s, double alpha, double initial_gap, Index K) {
  detail::check_setting(t, s);
  detail::check_alpha(t, s, alpha);
  detail::check_gap(initial_gap);
  lgm::detail::require_at_least("K", K, Index{1});
  switch (t) {
    case Theorem::A:
      return strongly_convex_gap_bound(s, alpha, initial_gap, K);
    case Theorem::B:
      return 2.0 * initial_gap / (alpha * static_cast<double>(K));
    case Theorem::C:
      return 8.0 * initial_gap / (alpha * static_cast<double>(K));
  }
  return 0.0;
}

/// Output (ii), the paper's random worker iterate x_k^m (k drawn with the weights w_k, m uniform), is covered by
/// a corollary (README "Output points"): its bound is this factor times bound(t, …):
/// A, B: 2 + 32α²HL²η² (≤ 2.2);  C: 2 + 16α²L²Hη² (≤ 7/3).
inline double worker_output_factor(Theorem t, const Setting& s, double alpha) {
  detail::check_setting(t, s);
  detail::check_alpha(t, s, alpha);
  const double c = alpha * alpha * static_cast<double>(s.H) * s.L * s.L * s.eta * s.eta;
  return t == Theorem::C ? 2.0 + 16.0 * c : 2.0 + 32.0 * c;
}

/// worker_output_factor(t, s, α) · bound(t, s, α, initial_gap, K): E F(x_out^{(ii)}) − F* (A, B) or
/// Σ_k w_k (1/M) Σ_m E‖∇F(x_k^m)‖² (C).
inline double worker_output_bound(Theorem t, const Setting& s, double alpha, double initial_gap, Index K) {
  return worker_output_factor(t, s, alpha) * bound(t, s, alpha, initial_gap, K);
}

/// Normalized output weights w_k / W_K, k = 0 … K−1. A: w_k = (1 − μα/2)^{−(k+1)}, computed as
/// q c^{K−1−k}/(1 − c^K) (no overflow); B, C: 1/K each.
inline std::vector<double> output_weights(Theorem t, const Setting& s, double alpha, Index K) {
  detail::check_setting(t, s);
  detail::check_alpha(t, s, alpha);
  lgm::detail::require_at_least("K", K, Index{1});
  std::vector<double> w(static_cast<size_t>(K), 1.0 / static_cast<double>(K));
  if (t == Theorem::A) {
    const double c = detail::contraction(s, alpha), q = 1.0 - c;
    const double norm = q / (1.0 - std::pow(c, static_cast<double>(K)));
    for (Index k = 0; k < K; ++k) w[static_cast<size_t>(k)] = norm * std::pow(c, static_cast<double>(K - 1 - k));
  }
  return w;
}

/// The weight of the newest point x̄_{K−1} in the horizon-K average: w_{K−1}/W_K. Lets a caller update the
/// output (i) at every K: x_out,K = (1 − ρ_K) x_out,K−1 + ρ_K x̄_{K−1}.
inline double newest_weight(Theorem t, const Setting& s, double alpha, Index K) {
  lgm::detail::require_at_least("K", K, Index{1});
  if (t != Theorem::A) return 1.0 / static_cast<double>(K);
  const double c = detail::contraction(s, alpha);
  return (1.0 - c) / (1.0 - std::pow(c, static_cast<double>(K)));
}

/// Steps and communication rounds the bound needs to reach ε (docs/theory.md §Rounds to accuracy).
struct RoundsToAccuracy {
  Index K = 0;  ///< smallest K ≥ 1 with bound(t, s, α, initial_gap, K) ≤ ε
  Index R = 0;  ///< ⌈K/H⌉
};

/// Smallest K with bound(t, s, alpha, initial_gap, K) ≤ epsilon, and R = ⌈K/H⌉ (closed forms of the bounds).
inline RoundsToAccuracy rounds_to_accuracy(Theorem t, const Setting& s, double alpha, double initial_gap,
                                           double epsilon) {
  detail::check_setting(t, s);
  detail::check_alpha(t, s, alpha);
  detail::check_gap(initial_gap);
  lgm::detail::require_positive("epsilon", epsilon);
  double k_real = 1.0;
  if (t == Theorem::A) {
    // μ r0 c^K/(1 − c^K) ≤ ε  ⇔  c^K ≤ ε/(μ r0 + ε)
    k_real = std::log((s.mu * initial_gap + epsilon) / epsilon) / -std::log(detail::contraction(s, alpha));
  } else {
    k_real = (t == Theorem::B ? 2.0 : 8.0) * initial_gap / (alpha * epsilon);
  }
  lgm::detail::require(k_real < 9.0e15, "epsilon", epsilon, "an accuracy the bound reaches in fewer than 9e15 steps");
  Index K = std::max<Index>(1, static_cast<Index>(std::ceil(k_real)));
  // the closed form is exact up to rounding: step K to the first one that satisfies the bound
  while (K > 1 && bound(t, s, alpha, initial_gap, K - 1) <= epsilon) --K;
  while (bound(t, s, alpha, initial_gap, K) > epsilon) ++K;
  return RoundsToAccuracy{K, (K + s.H - 1) / s.H};
}

/// Forms both output points of a run of K steps from an observer's view of the workers (README "Output points"):
///  (i)  the weighted average Σ_{k<K} w_k x̄_k / W_K (what Theorems A–C bound);
///  (ii) one worker iterate x_k^m, (k, m) drawn before the run with probability w_k/W_K · 1/M (seeded).
/// Pass it to LocalMethod::run as an observer; it needs the run's x0, M, K and the sync period H of a
/// ConstantSync{H} run (a sync follows step k iff (k+1) mod H = 0 or k + 1 = K). x_0^m = x0.
class OutputTracker {
 public:
  OutputTracker(ConstVectorRef x0, Index M, Index H, std::vector<double> weights, std::uint64_t seed)
      : m_M(M), m_H(H), m_weights(std::move(weights)), m_average(x0.size()), m_worker(x0) {
    lgm::detail::require_at_least("M", M, Index{1});
    lgm::detail::require_at_least("H", H, Index{1});
    lgm::detail::require(!m_weights.empty(), "weights (size)", m_weights.size(), "K >= 1 weights, one per step");
    m_K = static_cast<Index>(m_weights.size());
    std::mt19937_64 gen(seed);
    std::discrete_distribution<Index> pick_k(m_weights.begin(), m_weights.end());
    std::uniform_int_distribution<Index> pick_m(0, M - 1);
    m_k = pick_k(gen);
    m_m = pick_m(gen);
    m_average = m_weights[0] * x0;
  }

  void on_step(const RunState& s) {
    const Index j = s.metrics.steps;  // X holds y_{j−1}^m; their mean is x̄_j
    if (j >= m_K) return;
    const bool sync_follows = j % m_H == 0;
    m_average += m_weights[static_cast<size_t>(j)] * s.X.rowwise().mean();
    if (j == m_k) m_worker = sync_follows ? Vector(s.X.rowwise().mean()) : Vector(s.X.col(m_m));
  }

  /// (i) Σ_{k<K} w_k x̄_k / W_K.
  const Vector& weighted_average() const noexcept { return m_average; }
  /// (ii) x_{k*}^{m*}.
  const Vector& random_worker_iterate() const noexcept { return m_worker; }
  Index drawn_step() const noexcept { return m_k; }
  Index drawn_worker() const noexcept { return m_m; }

 private:
  Index m_M, m_H, m_K = 0;
  std::vector<double> m_weights;
  Index m_k = 0, m_m = 0;
  Vector m_average, m_worker;
};

}  // namespace lgm::theory
