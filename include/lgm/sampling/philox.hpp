// Counter-based random numbers: Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as
// easy as 1, 2, 3", SC 2011; the Random123 library) and the draws the samplers need, keyed by
// (seed, worker, step) so that every backend produces the same sample indices (docs/design.md §Determinism).
// Everything here is usable in CUDA device code: plain structs, no std::array, no exceptions.
#pragma once

#include <math.h>  // ::sqrt, ::log, ::cos, ::exp: callable from host and CUDA device code alike

#include <cstdint>

#ifndef LGM_HOST_DEVICE
#ifdef __CUDACC__
#define LGM_HOST_DEVICE __host__ __device__
#else
#define LGM_HOST_DEVICE
#endif
#endif

namespace lgm {

/// The 128-bit counter (input) and output block of Philox4x32: four 32-bit words.
struct PhiloxBlock {
  std::uint32_t v[4] = {0, 0, 0, 0};

  friend LGM_HOST_DEVICE constexpr bool operator==(const PhiloxBlock& a, const PhiloxBlock& b) {
    return a.v[0] == b.v[0] && a.v[1] == b.v[1] && a.v[2] == b.v[2] && a.v[3] == b.v[3];
  }
};

/// The 64-bit Philox4x32 key: two 32-bit words.
struct PhiloxKey {
  std::uint32_t v[2] = {0, 0};
};

namespace detail {

// Philox4x32 constants (Salmon et al. 2011, Table 2; Random123 philox.h).
inline constexpr std::uint32_t philox_m0 = 0xD2511F53u;
inline constexpr std::uint32_t philox_m1 = 0xCD9E8D57u;
inline constexpr std::uint32_t philox_w0 = 0x9E3779B9u;  // golden ratio
inline constexpr std::uint32_t philox_w1 = 0xBB67AE85u;  // sqrt(3) - 1

LGM_HOST_DEVICE constexpr PhiloxBlock philox_round(const PhiloxBlock& c, const PhiloxKey& k) {
  const std::uint64_t p0 = std::uint64_t{philox_m0} * c.v[0];
  const std::uint64_t p1 = std::uint64_t{philox_m1} * c.v[2];
  const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
  const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
  PhiloxBlock out;
  out.v[0] = hi1 ^ c.v[1] ^ k.v[0];
  out.v[1] = lo1;
  out.v[2] = hi0 ^ c.v[3] ^ k.v[1];
  out.v[3] = lo0;
  return out;
}

/// High 64 bits of the 128-bit product a·b, from four 32×32 partial products (portable form).
LGM_HOST_DEVICE constexpr std::uint64_t mulhi64_portable(std::uint64_t a, std::uint64_t b) {
  const std::uint64_t a_lo = a & 0xFFFFFFFFu, a_hi = a >> 32;
  const std::uint64_t b_lo = b & 0xFFFFFFFFu, b_hi = b >> 32;
  const std::uint64_t ll = a_lo * b_lo, lh = a_lo * b_hi, hl = a_hi * b_lo, hh = a_hi * b_hi;
  const std::uint64_t mid = (ll >> 32) + (lh & 0xFFFFFFFFu) + (hl & 0xFFFFFFFFu);  // cannot overflow
  return hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
}

/// High 64 bits of a·b: the device intrinsic, the compiler's 128-bit integer, or the portable form.
LGM_HOST_DEVICE inline std::uint64_t mulhi64(std::uint64_t a, std::uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __umul64hi(a, b);
#elif defined(__SIZEOF_INT128__)
  __extension__ using u128 = unsigned __int128;  // __extension__: no -Wpedantic warning
  return static_cast<std::uint64_t>((static_cast<u128>(a) * b) >> 64);
#else
  return mulhi64_portable(a, b);
#endif
}

inline constexpr double two_pi = 6.283185307179586476925286766559;
inline constexpr double two_pow_minus_53 = 0x1.0p-53;

/// 53-bit double in [0, 1) from 64 random bits.
LGM_HOST_DEVICE constexpr double to_unit_closed_open(std::uint64_t r) {
  return static_cast<double>(r >> 11) * two_pow_minus_53;
}
/// 53-bit double in (0, 1] from 64 random bits (safe for log).
LGM_HOST_DEVICE constexpr double to_unit_open_closed(std::uint64_t r) {
  return static_cast<double>((r >> 11) + 1) * two_pow_minus_53;
}
LGM_HOST_DEVICE constexpr std::uint64_t low_bits64(const PhiloxBlock& b) {
  return (std::uint64_t{b.v[1]} << 32) | b.v[0];
}
LGM_HOST_DEVICE constexpr std::uint64_t high_bits64(const PhiloxBlock& b) {
  return (std::uint64_t{b.v[3]} << 32) | b.v[2];
}

/// Box–Muller: one standard normal from the two 53-bit uniforms of one block.
LGM_HOST_DEVICE inline double box_muller(const PhiloxBlock& b) {
  const double u1 = to_unit_open_closed(low_bits64(b));   // (0, 1]: log(u1) is finite
  const double u2 = to_unit_closed_open(high_bits64(b));  // [0, 1)
  return ::sqrt(-2.0 * ::log(u1)) * ::cos(two_pi * u2);
}

}  // namespace detail

/// Philox4x32 with 10 rounds: a bijection of the 128-bit counter for each 64-bit key. Reproduces the
/// Random123 known-answer vectors (kat_vectors, "philox4x32 10").
LGM_HOST_DEVICE constexpr PhiloxBlock philox4x32_10(PhiloxBlock counter, PhiloxKey key) {
  counter = detail::philox_round(counter, key);
  for (int r = 1; r < 10; ++r) {
    key.v[0] += detail::philox_w0;  // Weyl key schedule between rounds
    key.v[1] += detail::philox_w1;
    counter = detail::philox_round(counter, key);
  }
  return counter;
}

/// A stream of random numbers keyed by (seed, worker, purpose) and addressed by (step, i).
///
/// The Philox key is derived once from the 64-bit seed, the worker and a 32-bit purpose tag (so that,
/// e.g., a sampler's shuffles and its i.i.d. draws never share random numbers):
///   key(seed, worker, purpose) = words 0,1 of philox4x32_10({lo(worker), hi(worker), purpose, "LGM"},
///                                                            {lo(seed), hi(seed)}),
/// and the draw i of step `step` uses the block philox4x32_10({lo(i), hi(i), lo(step), hi(step)}, key).
/// Draws are therefore independent of the order in which they are made, of thread counts and of the
/// backend: a CUDA kernel computes the same numbers as the host.
class CounterRng {
 public:
  LGM_HOST_DEVICE constexpr CounterRng(std::uint64_t seed, std::uint64_t worker, std::uint32_t purpose = 0)
      : m_key(derive_key(seed, worker, purpose)) {}

  LGM_HOST_DEVICE constexpr PhiloxKey key() const { return m_key; }

  /// The raw 128-bit block of draw (step, i).
  LGM_HOST_DEVICE constexpr PhiloxBlock block(std::uint64_t step, std::uint64_t i) const {
    PhiloxBlock c;
    c.v[0] = static_cast<std::uint32_t>(i);
    c.v[1] = static_cast<std::uint32_t>(i >> 32);
    c.v[2] = static_cast<std::uint32_t>(step);
    c.v[3] = static_cast<std::uint32_t>(step >> 32);
    return philox4x32_10(c, m_key);
  }

  /// 64 uniform random bits: words 1:0 of the block.
  LGM_HOST_DEVICE constexpr std::uint64_t bits64(std::uint64_t step, std::uint64_t i) const {
    return detail::low_bits64(block(step, i));
  }

  /// Index in [0, n) by the multiply-high method ⌊r·n / 2^64⌋ (Lemire 2019, without the rejection
  /// step): each index has probability ⌊2^64/n⌋/2^64 or ⌈2^64/n⌉/2^64, a bias below n/2^64.
  /// Precondition: n ≥ 1.
  LGM_HOST_DEVICE inline std::uint64_t uniform_index(std::uint64_t step, std::uint64_t i, std::uint64_t n) const {
    return detail::mulhi64(bits64(step, i), n);
  }

  /// 53-bit double in [0, 1): (r >> 11)·2^-53.
  LGM_HOST_DEVICE constexpr double uniform01(std::uint64_t step, std::uint64_t i) const {
    return detail::to_unit_closed_open(bits64(step, i));
  }

  /// Standard normal by Box–Muller from the two 53-bit uniforms of block (step, i):
  /// z = sqrt(−2 ln u1)·cos(2π u2), u1 ∈ (0, 1] from words 1:0, u2 ∈ [0, 1) from words 3:2.
  LGM_HOST_DEVICE inline double normal(std::uint64_t step, std::uint64_t i) const {
    return detail::box_muller(block(step, i));
  }

  /// ln X for X ~ Gamma(alpha, 1), by Marsaglia & Tsang (ACM TOMS 26(3), 2000) with the boost
  /// X = Y·U^{1/α}, Y ~ Gamma(α+1), for α < 1 (their section 6). Returned as a logarithm so that tiny α, where
  /// X underflows to 0, still gives usable Dirichlet proportions. Variate i (< 2^32) of `step` uses the
  /// blocks (step, i·2^32 + j), j = 0, 1, …: block 0 for the boost uniform, blocks 2k+1, 2k+2 for the
  /// normal and the acceptance uniform of attempt k. Do not mix gamma variates with other draws on the
  /// same (key, step). Returns NaN unless α > 0.
  LGM_HOST_DEVICE inline double gamma_log(std::uint64_t step, std::uint64_t i, double alpha) const {
    if (!(alpha > 0.0)) return ::nan("");  // also catches NaN; ::nan is callable in device code
    const std::uint64_t base = (i & 0xFFFFFFFFu) << 32;
    double log_boost = 0.0;
    double a = alpha;
    if (alpha < 1.0) {
      log_boost = ::log(detail::to_unit_open_closed(bits64(step, base))) / alpha;  // ln U^{1/α}
      a = alpha + 1.0;
    }
    const double d = a - 1.0 / 3.0;
    const double c = 1.0 / ::sqrt(9.0 * d);
    // Acceptance ≥ 0.95 per attempt for a ≥ 1; 2^31 attempts can only run out if Philox is broken.
    for (std::uint64_t k = 0; k < 0x7FFFFFFFu; ++k) {
      const double x = detail::box_muller(block(step, base + 2 * k + 1));
      const double t = 1.0 + c * x;
      if (t <= 0.0) continue;
      const double v = t * t * t;
      const double u = detail::to_unit_closed_open(bits64(step, base + 2 * k + 2));
      const double x2 = x * x;
      if (u < 1.0 - 0.0331 * x2 * x2 || ::log(u) < 0.5 * x2 + d * (1.0 - v + ::log(v)))
        return ::log(d) + ::log(v) + log_boost;
    }
    return ::nan("");
  }

  /// X ~ Gamma(alpha, 1) = exp(gamma_log(step, i, alpha)); may underflow to 0 for very small α.
  LGM_HOST_DEVICE inline double gamma(std::uint64_t step, std::uint64_t i, double alpha) const {
    return ::exp(gamma_log(step, i, alpha));
  }

 private:
  LGM_HOST_DEVICE static constexpr PhiloxKey derive_key(std::uint64_t seed, std::uint64_t worker,
                                                        std::uint32_t purpose) {
    PhiloxBlock c;
    c.v[0] = static_cast<std::uint32_t>(worker);
    c.v[1] = static_cast<std::uint32_t>(worker >> 32);
    c.v[2] = purpose;
    c.v[3] = 0x4C474D00u;  // "LGM\0": separates key derivation from any stream's draws
    PhiloxKey k;
    k.v[0] = static_cast<std::uint32_t>(seed);
    k.v[1] = static_cast<std::uint32_t>(seed >> 32);
    const PhiloxBlock out = philox4x32_10(c, k);
    PhiloxKey derived;
    derived.v[0] = out.v[0];
    derived.v[1] = out.v[1];
    return derived;
  }

  PhiloxKey m_key;
};

// ---- one-call forms keyed by (seed, worker, step) with purpose 0 (docs/samplers.md §The counter-based RNG).
// A sampler drawing a whole batch builds one CounterRng and reuses it, which saves the key derivation per draw.

/// Index in [0, n) for draw i of worker `worker` at step `step`; the IidSampler's index formula.
LGM_HOST_DEVICE inline std::uint64_t uniform_index(std::uint64_t seed, std::uint64_t worker, std::uint64_t step,
                                                   std::uint64_t i, std::uint64_t n) {
  return CounterRng(seed, worker).uniform_index(step, i, n);
}

/// 53-bit double in [0, 1).
LGM_HOST_DEVICE constexpr double uniform01(std::uint64_t seed, std::uint64_t worker, std::uint64_t step,
                                           std::uint64_t i) {
  return CounterRng(seed, worker).uniform01(step, i);
}

/// Standard normal (Box–Muller).
LGM_HOST_DEVICE inline double normal(std::uint64_t seed, std::uint64_t worker, std::uint64_t step, std::uint64_t i) {
  return CounterRng(seed, worker).normal(step, i);
}

/// Gamma(alpha, 1) variate (Marsaglia–Tsang with the α < 1 boost).
LGM_HOST_DEVICE inline double gamma(std::uint64_t seed, std::uint64_t worker, std::uint64_t step, std::uint64_t i,
                                    double alpha) {
  return CounterRng(seed, worker).gamma(step, i, alpha);
}

}  // namespace lgm
