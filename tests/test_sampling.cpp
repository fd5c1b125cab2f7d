// Counter-based RNG (Philox4x32-10, Random123 known answers) and the samplers: formulas recomputed by
// plain loops, reproducibility across call orders and OpenMP thread counts (docs/design.md §Determinism),
// epoch and shard coverage, Dirichlet label skew, and the error messages of bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <lgm/core/concepts.hpp>
#include <lgm/core/error.hpp>
#include <lgm/sampling/philox.hpp>
#include <lgm/sampling/samplers.hpp>
#include <map>
#include <numbers>
#include <numeric>
#include <set>
#include <string>
#include <vector>

namespace {

using lgm::Index;
using u32 = std::uint32_t;
using u64 = std::uint64_t;

static_assert(lgm::Sampler<lgm::IidSampler>);
static_assert(lgm::Sampler<lgm::ShuffledEpochSampler>);
static_assert(lgm::Sampler<lgm::ShardedSampler>);
static_assert(lgm::Sampler<lgm::DirichletLabelSampler>);

// Random123 kat_vectors, "philox4x32 10" lines; also checked at compile time (philox4x32_10 is constexpr).
constexpr lgm::PhiloxBlock kat(u32 a, u32 b, u32 c, u32 d) { return lgm::PhiloxBlock{{a, b, c, d}}; }
static_assert(lgm::philox4x32_10(kat(0, 0, 0, 0), lgm::PhiloxKey{{0, 0}}) ==
              kat(0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8));

/// High 64 bits of a·b by shift-and-add on a (hi, lo) pair: a third, bit-serial way.
u64 mulhi_bitwise(u64 a, u64 b) {
  u64 hi = 0, lo = 0;
  for (int k = 0; k < 64; ++k) {
    if ((b >> k) & 1u) {
      const u64 add_lo = k == 0 ? a : a << k;
      const u64 add_hi = k == 0 ? 0 : a >> (64 - k);
      const u64 new_lo = lo + add_lo;
      hi += add_hi + (new_lo < lo ? 1 : 0);
      lo = new_lo;
    }
  }
  return hi;
}

/// Pearson χ² of counts against equal expected frequencies.
double chi_square(const std::vector<double>& counts) {
  const double total = std::accumulate(counts.begin(), counts.end(), 0.0);
  const double expected = total / static_cast<double>(counts.size());
  double chi2 = 0.0;
  for (double c : counts) chi2 += (c - expected) * (c - expected) / expected;
  return chi2;
}

/// ψ(x) by the recurrence ψ(x) = ψ(x+1) − 1/x and the asymptotic series (Abramowitz–Stegun 6.3.18).
double digamma(double x) {
  double r = 0.0;
  while (x < 8.0) {
    r -= 1.0 / x;
    x += 1.0;
  }
  const double x2 = 1.0 / (x * x);
  return r + std::log(x) - 0.5 / x - x2 * (1.0 / 12 - x2 * (1.0 / 120 - x2 / 252));
}

/// Batch size of worker m at step k: varies with both (adaptive batch sizes).
Index batch_of(Index m, Index k) { return 1 + (7 * m + 13 * k) % 23; }

using Streams = std::vector<std::vector<Index>>;  // per worker: concatenated batches of all steps

enum class Order { forward, reversed, worker_major };

/// Draws `steps` steps for M workers sequentially in the given order.
template <class S>
Streams draw_sequential(S sampler, Index M, Index N, Index steps, Order order) {
  sampler.reset(M, N);
  Streams out(static_cast<size_t>(M));
  std::vector<Index> buf(32);
  auto one = [&](Index m, Index k) {
    std::span<Index> s(buf.data(), static_cast<size_t>(batch_of(m, k)));
    sampler.draw(m, k, s);
    out[static_cast<size_t>(m)].insert(out[static_cast<size_t>(m)].end(), s.begin(), s.end());
  };
  if (order == Order::worker_major) {  // all of worker M−1's steps, then worker M−2's, …
    for (Index m = M - 1; m >= 0; --m)
      for (Index k = 0; k < steps; ++k) one(m, k);
  } else {
    for (Index k = 0; k < steps; ++k)
      for (Index j = 0; j < M; ++j) one(order == Order::forward ? j : M - 1 - j, k);
  }
  return out;
}

/// Draws with the workers of each step spread over `threads` OpenMP threads, like the driver.
template <class S>
Streams draw_parallel(S sampler, Index M, Index N, Index steps, int threads) {
  sampler.reset(M, N);
  Streams out(static_cast<size_t>(M));
  std::vector<std::vector<Index>> bufs(static_cast<size_t>(M), std::vector<Index>(32));
  for (Index k = 0; k < steps; ++k) {
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (Index m = 0; m < M; ++m) {
      auto& buf = bufs[static_cast<size_t>(m)];
      std::span<Index> s(buf.data(), static_cast<size_t>(batch_of(m, k)));
      sampler.draw(m, k, s);
      out[static_cast<size_t>(m)].insert(out[static_cast<size_t>(m)].end(), s.begin(), s.end());
    }
  }
  return out;
}

template <class S>
void check_reproducible(const S& sampler, Index M, Index N, Index steps) {
  const Streams ref = draw_sequential(sampler, M, N, steps, Order::forward);
  CHECK(draw_sequential(sampler, M, N, steps, Order::reversed) == ref);
  CHECK(draw_sequential(sampler, M, N, steps, Order::worker_major) == ref);
  for (int t : {1, 2, 4}) {
    CAPTURE(t);
    CHECK(draw_parallel(sampler, M, N, steps, t) == ref);
  }
  // a second reset rewinds: the same streams again
  S again = sampler;
  CHECK(draw_sequential(again, M, N, steps, Order::forward) == ref);
  for (const auto& s : ref) CHECK(std::all_of(s.begin(), s.end(), [N](Index i) { return i >= 0 && i < N; }));
}

std::vector<Index> iota_vec(Index n) {
  std::vector<Index> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), Index{0});
  return v;
}

/// Fisher–Yates as specified in samplers.hpp, written out again: positions n−1 … 1, j ∈ [0, i].
std::vector<Index> naive_shuffle(std::vector<Index> a, u64 seed, u64 worker, u32 purpose, u64 step) {
  const lgm::CounterRng rng(seed, worker, purpose);
  for (Index i = static_cast<Index>(a.size()) - 1; i >= 1; --i) {
    const auto r = rng.bits64(step, static_cast<u64>(i));
    const auto j = static_cast<Index>(mulhi_bitwise(r, static_cast<u64>(i) + 1));
    std::swap(a[static_cast<size_t>(i)], a[static_cast<size_t>(j)]);
  }
  return a;
}

std::vector<int> cyclic_labels(Index N, int C) {
  std::vector<int> y(static_cast<size_t>(N));
  // spread over the index range, and balanced when C divides N (C coprime to 7)
  for (Index i = 0; i < N; ++i) y[static_cast<size_t>(i)] = static_cast<int>((i * 7) % C);
  return y;
}

}  // namespace

// ================================================================================================ Philox
TEST_CASE("philox4x32_10 reproduces the Random123 known-answer vectors") {
  // counter, key → output; Random123 kat_vectors (also recomputed with an independent Python version)
  CHECK(lgm::philox4x32_10(kat(0, 0, 0, 0), lgm::PhiloxKey{{0, 0}}) ==
        kat(0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8));
  CHECK(lgm::philox4x32_10(kat(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff),
                           lgm::PhiloxKey{{0xffffffff, 0xffffffff}}) ==
        kat(0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd));
  CHECK(lgm::philox4x32_10(kat(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344),
                           lgm::PhiloxKey{{0xa4093822, 0x299f31d0}}) ==
        kat(0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1));
}

TEST_CASE("CounterRng: key derivation and counter layout") {
  const u64 seed = 0x0123456789abcdefULL, worker = 0x1122334455667788ULL;
  const u32 purpose = 5;
  const lgm::PhiloxBlock d =
      lgm::philox4x32_10(kat(0x55667788, 0x11223344, 5, 0x4C474D00), lgm::PhiloxKey{{0x89abcdef, 0x01234567}});
  const lgm::CounterRng rng(seed, worker, purpose);
  CHECK(rng.key().v[0] == d.v[0]);
  CHECK(rng.key().v[1] == d.v[1]);
  const u64 step = 0xdeadbeef00000007ULL, i = 0x0000000300000009ULL;
  const lgm::PhiloxBlock b = lgm::philox4x32_10(kat(9, 3, 7, 0xdeadbeef), lgm::PhiloxKey{{d.v[0], d.v[1]}});
  CHECK(rng.block(step, i) == b);
  CHECK(rng.bits64(step, i) == ((u64{b.v[1]} << 32) | b.v[0]));
  // different worker, purpose or seed → different key
  CHECK(lgm::CounterRng(seed, worker + 1, purpose).bits64(0, 0) != rng.bits64(0, 0));
  CHECK(lgm::CounterRng(seed, worker, purpose + 1).bits64(0, 0) != rng.bits64(0, 0));
  CHECK(lgm::CounterRng(seed + 1, worker, purpose).bits64(0, 0) != rng.bits64(0, 0));
  // the one-call forms use purpose 0
  CHECK(lgm::uniform01(seed, worker, 3, 4) == lgm::CounterRng(seed, worker, 0).uniform01(3, 4));
}

TEST_CASE("multiply-high: intrinsic, portable and bit-serial forms agree") {
  const u64 edge[] = {0, 1, 2, 0xffffffffULL, 0x100000000ULL, 0x8000000000000000ULL, ~u64{0}, ~u64{0} - 1};
  for (u64 a : edge)
    for (u64 b : edge) {
      CHECK(lgm::detail::mulhi64(a, b) == mulhi_bitwise(a, b));
      CHECK(lgm::detail::mulhi64_portable(a, b) == mulhi_bitwise(a, b));
    }
  const lgm::CounterRng rng(1, 2, 3);
  for (u64 k = 0; k < 500; ++k) {
    const u64 a = rng.bits64(0, k), b = rng.bits64(1, k) >> (k % 64);
    REQUIRE(lgm::detail::mulhi64(a, b) == mulhi_bitwise(a, b));
    REQUIRE(lgm::detail::mulhi64_portable(a, b) == mulhi_bitwise(a, b));
  }
}

TEST_CASE("uniform_index: the multiply-high formula, range, and equal frequencies") {
  const u64 seed = 42;
  // formula: ⌊r·n/2^64⌋; for n = 2^p it is the top p bits of r
  for (u64 i = 0; i < 64; ++i) {
    const u64 r = lgm::CounterRng(seed, 3).bits64(11, i);
    CHECK(lgm::uniform_index(seed, 3, 11, i, 1024) == (r >> 54));
    CHECK(lgm::uniform_index(seed, 3, 11, i, 1000) == mulhi_bitwise(r, 1000));
    CHECK(lgm::uniform_index(seed, 3, 11, i, 1) == 0);
  }
  // χ² for small n: 70 000 draws into 7 cells (df = 6, 0.1% critical value 22.46) and into 10 cells (df = 9: 27.88)
  for (u64 n : {u64{7}, u64{10}}) {
    std::vector<double> counts(n, 0.0);
    for (u64 k = 0; k < 70000; ++k) {
      const u64 j = lgm::uniform_index(seed, k % 5, k / 5, k % 13, n);
      REQUIRE(j < n);
      counts[j] += 1.0;
    }
    CHECK(chi_square(counts) < (n == 7 ? 22.46 : 27.88));
  }
}

TEST_CASE("uniform01, normal: formulas and moments") {
  const lgm::CounterRng rng(7, 1);
  for (u64 i = 0; i < 32; ++i) {
    const lgm::PhiloxBlock b = rng.block(2, i);
    const u64 lo = (u64{b.v[1]} << 32) | b.v[0], hi = (u64{b.v[3]} << 32) | b.v[2];
    CHECK(rng.uniform01(2, i) == std::ldexp(static_cast<double>(lo >> 11), -53));
    const double u1 = std::ldexp(static_cast<double>((lo >> 11) + 1), -53),
                 u2 = std::ldexp(static_cast<double>(hi >> 11), -53);
    CHECK(rng.normal(2, i) ==
          doctest::Approx(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2)).epsilon(1e-14));
  }
  const int n = 100000;
  std::vector<double> bins(16, 0.0);
  double su = 0, sz = 0, szz = 0, within1 = 0;
  for (int k = 0; k < n; ++k) {
    const double u = rng.uniform01(5, static_cast<u64>(k));
    REQUIRE((u >= 0.0 && u < 1.0));
    bins[static_cast<size_t>(u * 16)] += 1.0;
    su += u;
    const double z = rng.normal(6, static_cast<u64>(k));
    sz += z;
    szz += z * z;
    within1 += std::abs(z) < 1.0 ? 1.0 : 0.0;
  }
  CHECK(chi_square(bins) < 37.70);  // df = 15, 0.1%
  CHECK(su / n == doctest::Approx(0.5).epsilon(0.01));
  CHECK(std::abs(sz / n) < 5.0 / std::sqrt(n));
  CHECK(szz / n == doctest::Approx(1.0).epsilon(0.02));
  CHECK(within1 / n == doctest::Approx(0.682689).epsilon(0.01));  // Φ(1) − Φ(−1)
}

TEST_CASE("gamma: mean α, variance α, E[ln X] = ψ(α), for α below and above 1") {
  const int n = 20000;
  for (double alpha : {0.1, 0.5, 1.0, 2.5, 30.0}) {
    CAPTURE(alpha);
    const lgm::CounterRng rng(99, 4, 17);
    double s = 0, ss = 0, sl = 0;
    for (int k = 0; k < n; ++k) {
      const double lx = rng.gamma_log(3, static_cast<u64>(k), alpha);
      REQUIRE(std::isfinite(lx));
      const double x = rng.gamma(3, static_cast<u64>(k), alpha);
      REQUIRE(x == std::exp(lx));
      s += x;
      ss += x * x;
      sl += lx;
    }
    const double mean = s / n, var = ss / n - mean * mean, mean_log = sl / n;
    CHECK(std::abs(mean - alpha) < 5.0 * std::sqrt(alpha / n));
    CHECK(var == doctest::Approx(alpha).epsilon(alpha < 1 ? 0.15 : 0.06));
    // Var(ln X) = ψ'(α) ≈ 1/α + 1/(2α²) bounds the standard error of the mean log
    CHECK(std::abs(mean_log - digamma(alpha)) < 5.0 * std::sqrt((1.0 / alpha + 1.0 / (alpha * alpha)) / n));
  }
  CHECK(std::isnan(lgm::CounterRng(1, 1).gamma_log(0, 0, 0.0)));
  CHECK(std::isnan(lgm::CounterRng(1, 1).gamma_log(0, 0, -1.0)));
  CHECK(std::isnan(lgm::CounterRng(1, 1).gamma_log(0, 0, std::nan(""))));
  CHECK(lgm::gamma(5, 1, 2, 3, 2.0) == lgm::CounterRng(5, 1).gamma(2, 3, 2.0));
}

// ================================================================================================ IidSampler
TEST_CASE("IidSampler: index i of worker m at step k is uniform_index(seed, m, k, i, N)") {
  lgm::IidSampler s(1234);
  const Index N = 1000;
  s.reset(3, N);
  std::vector<Index> a(40), b(7);
  for (Index m = 0; m < 3; ++m)
    for (Index k : {Index{0}, Index{5}, Index{1} << 40}) {
      s.draw(m, k, a);
      for (size_t i = 0; i < a.size(); ++i)
        REQUIRE(a[i] == static_cast<Index>(lgm::uniform_index(1234, static_cast<u64>(m), static_cast<u64>(k), i,
                                                              static_cast<u64>(N))));
      s.draw(m, k, b);  // a shorter batch at the same (m, k) is a prefix
      CHECK(std::equal(b.begin(), b.end(), a.begin()));
    }
  std::vector<Index> w0(40), w1(40);
  s.draw(0, 3, w0);
  s.draw(1, 3, w1);
  CHECK(w0 != w1);
  s.draw(0, 0, std::span<Index>());  // an empty batch is fine
  check_reproducible(lgm::IidSampler(5), 6, 50, 40);
}

// ================================================================================================ ShuffledEpochSampler
TEST_CASE("ShuffledEpochSampler: every index once per epoch, epoch e = Fisher–Yates keyed by (seed, m, e)") {
  const Index M = 3, N = 37, steps = 60;
  const Streams st = draw_sequential(lgm::ShuffledEpochSampler(77), M, N, steps, Order::forward);
  for (Index m = 0; m < M; ++m) {
    const auto& s = st[static_cast<size_t>(m)];
    REQUIRE(s.size() >= static_cast<size_t>(3 * N));
    for (size_t e = 0; (e + 1) * static_cast<size_t>(N) <= s.size(); ++e) {
      CAPTURE(m);
      CAPTURE(e);
      std::vector<Index> epoch(s.begin() + static_cast<std::ptrdiff_t>(e * N),
                               s.begin() + static_cast<std::ptrdiff_t>((e + 1) * N));
      CHECK(epoch == naive_shuffle(iota_vec(N), 77, static_cast<u64>(m), lgm::rng_purpose::epoch_shuffle, e));
      std::sort(epoch.begin(), epoch.end());
      CHECK(epoch == iota_vec(N));
    }
    // epochs differ, and workers differ
    CHECK(!std::equal(s.begin(), s.begin() + N, s.begin() + N));
  }
  CHECK(!std::equal(st[0].begin(), st[0].begin() + N, st[1].begin()));

  // state accessors: after 50 draws of N = 37 worker 0 is in epoch 1 at position 13
  lgm::ShuffledEpochSampler s(77);
  s.reset(2, N);
  CHECK(s.epoch(0) == -1);
  std::vector<Index> buf(50);
  s.draw(0, 0, buf);
  CHECK(s.epoch(0) == 1);
  CHECK(s.position(0) == 13);
  CHECK(s.epoch(1) == -1);
  CHECK(std::vector<Index>(s.permutation(0).begin(), s.permutation(0).end()) ==
        naive_shuffle(iota_vec(N), 77, 0, lgm::rng_purpose::epoch_shuffle, 1));
  // a batch larger than N crosses several epochs
  std::vector<Index> big(3 * N);
  s.draw(1, 0, big);
  for (Index e = 0; e < 3; ++e) {
    std::vector<Index> ep(big.begin() + e * N, big.begin() + (e + 1) * N);
    std::sort(ep.begin(), ep.end());
    CHECK(ep == iota_vec(N));
  }
  check_reproducible(lgm::ShuffledEpochSampler(9), 6, 50, 40);
  check_reproducible(lgm::ShuffledEpochSampler(9), 4, 1, 10);  // N = 1
}

// ================================================================================================ ShardedSampler
TEST_CASE("ShardedSampler: disjoint covering shards of sizes ⌈N/M⌉ then ⌊N/M⌋, walked in epochs") {
  const Index M = 4, N = 43;  // q = 10, r = 3: sizes 11, 11, 11, 10
  for (bool reshuffle : {true, false}) {
    CAPTURE(reshuffle);
    lgm::ShardedSampler s(2024, reshuffle);
    s.reset(M, N);
    std::vector<Index> all;
    const std::vector<Index> pi = naive_shuffle(iota_vec(N), 2024, 0, lgm::rng_purpose::shard_partition, 0);
    Index start = 0;
    for (Index m = 0; m < M; ++m) {
      CHECK(s.shard_size(m) == (m < 3 ? 11 : 10));
      const auto sh = s.shard(m);
      // shard m = π[start, start + size)
      CHECK(std::equal(sh.begin(), sh.end(), pi.begin() + start));
      start += s.shard_size(m);
      all.insert(all.end(), sh.begin(), sh.end());
    }
    std::sort(all.begin(), all.end());
    CHECK(all == iota_vec(N));  // disjoint and covering

    const Streams st = draw_sequential(s, M, N, 30, Order::forward);
    for (Index m = 0; m < M; ++m) {
      const auto sh = s.shard(m);
      const std::vector<Index> shard(sh.begin(), sh.end());
      std::vector<Index> sorted_shard = shard;
      std::sort(sorted_shard.begin(), sorted_shard.end());
      const auto& w = st[static_cast<size_t>(m)];
      const auto sz = static_cast<size_t>(s.shard_size(m));
      REQUIRE(w.size() >= 3 * sz);
      for (size_t e = 0; (e + 1) * sz <= w.size(); ++e) {
        std::vector<Index> ep(w.begin() + static_cast<std::ptrdiff_t>(e * sz),
                              w.begin() + static_cast<std::ptrdiff_t>((e + 1) * sz));
        if (reshuffle)
          CHECK(ep == naive_shuffle(shard, 2024, static_cast<u64>(m), lgm::rng_purpose::shard_shuffle, e));
        else
          CHECK(ep == shard);  // the shard's order in π, every epoch
        std::sort(ep.begin(), ep.end());
        CHECK(ep == sorted_shard);
      }
    }
    check_reproducible(s, 5, 97, 40);
  }
  lgm::ShardedSampler exact(1);
  exact.reset(5, 5);  // N = M: one sample each
  for (Index m = 0; m < 5; ++m) CHECK(exact.shard_size(m) == 1);
  CHECK_THROWS_WITH_AS(exact.reset(5, 4), doctest::Contains("num_samples = 4"), lgm::ConfigError);
}

// ================================================================================================
// DirichletLabelSampler
namespace {

/// Mean over workers of the label entropy of the worker's samples, divided by ln C.
double mean_normalized_entropy(const lgm::DirichletLabelSampler& s, Index M, int C) {
  double total = 0.0;
  for (Index m = 0; m < M; ++m) {
    std::vector<double> counts(static_cast<size_t>(C), 0.0);
    const auto own = s.worker_indices(m);
    for (Index i : own) counts[static_cast<size_t>(s.labels()[static_cast<size_t>(i)])] += 1.0;
    double h = 0.0;
    for (double c : counts)
      if (c > 0) h -= c / static_cast<double>(own.size()) * std::log(c / static_cast<double>(own.size()));
    total += h / std::log(static_cast<double>(C));
  }
  return total / static_cast<double>(M);
}

}  // namespace

TEST_CASE("DirichletLabelSampler: partition by cumulative rounding of Dirichlet proportions") {
  const Index M = 6, N = 900;
  const int C = 5;
  const std::vector<int> y = cyclic_labels(N, C);
  lgm::DirichletLabelSampler s(31, 0.7, y);
  s.reset(M, N);
  CHECK(s.num_classes() == C);
  REQUIRE(s.proportions().rows() == C);
  REQUIRE(s.proportions().cols() == M);

  // every index on exactly one worker
  std::vector<Index> all;
  for (Index m = 0; m < M; ++m) all.insert(all.end(), s.worker_indices(m).begin(), s.worker_indices(m).end());
  std::sort(all.begin(), all.end());
  CHECK(all == iota_vec(N));

  // counts per (class, worker) from the proportions, by a naive cumulative rounding
  for (int c = 0; c < C; ++c) {
    const double n_c = static_cast<double>(std::count(y.begin(), y.end(), c));
    double row = 0.0, cum = 0.0;
    for (Index m = 0; m < M; ++m) {
      const double p = s.proportions()(c, m);
      CHECK(p >= 0.0);
      row += p;
      const auto lo = std::llround(n_c * cum);
      cum += p;
      const auto hi = m == M - 1 ? static_cast<long long>(n_c) : std::llround(n_c * cum);
      const auto own = s.worker_indices(m);
      const auto got = std::count_if(own.begin(), own.end(), [&](Index i) { return y[static_cast<size_t>(i)] == c; });
      CHECK(got == hi - lo);
    }
    CHECK(row == doctest::Approx(1.0).epsilon(1e-12));
  }

  // draw: i.i.d. from the worker's own set, entry i = own[uniform_index(k, i, |own|)] on key (seed, m)
  std::vector<Index> batch(64);
  for (Index m = 0; m < M; ++m) {
    s.draw(m, 12, batch);
    const auto own = s.worker_indices(m);
    const lgm::CounterRng rng(31, static_cast<u64>(m), lgm::rng_purpose::dirichlet_draw);
    for (size_t i = 0; i < batch.size(); ++i)
      CHECK(batch[i] == own[static_cast<size_t>(mulhi_bitwise(rng.bits64(12, i), own.size()))]);
  }
  // with replacement and uniform over the worker's set: χ² over the positions of a small set
  {
    lgm::DirichletLabelSampler few(3, 100.0, cyclic_labels(40, 2));
    few.reset(4, 40);
    const auto own = few.worker_indices(1);
    std::map<Index, size_t> pos;
    for (size_t j = 0; j < own.size(); ++j) pos[own[j]] = j;
    std::vector<double> counts(own.size(), 0.0);
    std::vector<Index> b(25);
    for (Index k = 0; k < 2000; ++k) {
      few.draw(1, k, b);
      for (Index i : b) counts[pos.at(i)] += 1.0;  // .at: throws if i is not worker 1's
    }
    CHECK(counts.size() >= 5);
    CHECK(chi_square(counts) < 3.0 * static_cast<double>(counts.size()) + 20.0);
  }
  check_reproducible(s, M, N, 40);
}

TEST_CASE("DirichletLabelSampler: small α skews the label mix, large α makes it homogeneous") {
  const Index M = 8, N = 4000;
  const int C = 10;
  const std::vector<int> y = cyclic_labels(N, C);
  lgm::DirichletLabelSampler skewed(11, 0.1, y), even(11, 100.0, y);
  skewed.reset(M, N);
  even.reset(M, N);
  const double h_skewed = mean_normalized_entropy(skewed, M, C), h_even = mean_normalized_entropy(even, M, C);
  CAPTURE(h_skewed);
  CAPTURE(h_even);
  CHECK(h_even > 0.99);
  CHECK(h_skewed < 0.6);

  // the proportions have the Dirichlet marginals: p_m ~ Beta(α, (M−1)α), variance (1/M)(1−1/M)/(Mα+1)
  const Index classes = 600, workers = 4;
  const double alpha = 0.5;
  std::vector<int> many(static_cast<size_t>(classes * 20));
  for (size_t i = 0; i < many.size(); ++i) many[i] = static_cast<int>(i % static_cast<size_t>(classes));
  lgm::DirichletLabelSampler d(5, alpha, many);
  d.reset(workers, static_cast<Index>(many.size()));
  const lgm::Matrix& P = d.proportions();
  const double mean = P.mean(), var = (P.array() - mean).square().mean();
  const double p = 1.0 / static_cast<double>(workers);
  CHECK(mean == doctest::Approx(p).epsilon(1e-12));  // rows sum to 1
  CHECK(var == doctest::Approx(p * (1 - p) / (static_cast<double>(workers) * alpha + 1)).epsilon(0.12));
}

TEST_CASE("DirichletLabelSampler: redraws until every worker has min_samples_per_worker, else ConfigError") {
  const Index M = 10, N = 200;
  const std::vector<int> y = cyclic_labels(N, 4);
  // find a seed whose first draw leaves a worker short; the accepted draw satisfies the minimum
  bool found = false;
  for (u64 seed = 0; seed < 200 && !found; ++seed) {
    lgm::DirichletLabelSampler s(seed, y, lgm::DirichletOptions{.concentration = 0.3, .min_samples_per_worker = 3});
    s.reset(M, N);
    if (s.attempts() > 1) {
      found = true;
      for (Index m = 0; m < M; ++m) CHECK(s.worker_indices(m).size() >= 3);
    }
  }
  CHECK(found);

  // infeasible: 2 classes with α = 0.001 over 50 workers leave most workers empty
  lgm::DirichletLabelSampler hopeless(1, 0.001, cyclic_labels(200, 2));
  try {
    hopeless.reset(50, 200);
    FAIL("expected ConfigError");
  } catch (const lgm::ConfigError& e) {
    CHECK(e.parameter() == "dirichlet.concentration");
    const std::string what = e.what();
    CHECK(what.find("0.001") != std::string::npos);
    CHECK(what.find("a larger value") != std::string::npos);
    CHECK(what.find("M = 50") != std::string::npos);
  }
  CHECK(hopeless.attempts() == 0);  // a failed reset leaves the sampler as it was
}

// ================================================================================================ errors
TEST_CASE("samplers reject bad input, naming the parameter, the value and the range") {
  lgm::IidSampler iid(1);
  CHECK_THROWS_WITH_AS(iid.reset(0, 10), doctest::Contains("invalid M = 0 (accepted: an integer >= 1)"),
                       lgm::ConfigError);
  CHECK_THROWS_WITH_AS(iid.reset(2, 0), doctest::Contains("invalid num_samples = 0 (accepted: an integer >= 1)"),
                       lgm::ConfigError);
  lgm::ShuffledEpochSampler ep(1);
  CHECK_THROWS_WITH_AS(ep.reset(-3, 10), doctest::Contains("M = -3"), lgm::ConfigError);
  CHECK_THROWS_WITH_AS(ep.reset(1, -1), doctest::Contains("num_samples = -1"), lgm::ConfigError);
  CHECK_THROWS_WITH_AS(ep.reset(Index{1} << 40, Index{1} << 40), doctest::Contains("one permutation of N indices"),
                       lgm::ConfigError);
  lgm::ShardedSampler sh(1);
  CHECK_THROWS_WITH_AS(sh.reset(8, 7), doctest::Contains("invalid num_samples = 7 (accepted: an integer >= M = 8"),
                       lgm::ConfigError);

  const std::vector<int> y = {0, 1, 2, 0, 1, 2};
  CHECK_THROWS_WITH_AS(lgm::DirichletLabelSampler(1, 0.0, y).reset(2, 6),
                       doctest::Contains("invalid dirichlet.concentration = 0 (accepted: a finite number > 0)"),
                       lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::DirichletLabelSampler(1, -2.5, y).validate(),
                       doctest::Contains("dirichlet.concentration = -2.5"), lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::DirichletLabelSampler(1, std::nan(""), y).validate(),
                       doctest::Contains("dirichlet.concentration = nan"), lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::DirichletLabelSampler(1, 1.0, y).reset(2, 7),
                       doctest::Contains("invalid labels (size) = 6 (accepted: num_samples = 7"), lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::DirichletLabelSampler(1, 1.0, {0, 1, -4, 0}).reset(2, 4),
                       doctest::Contains("invalid labels[2] = -4 (accepted: an integer >= 0)"), lgm::ConfigError);
  CHECK_THROWS_WITH_AS(
      lgm::DirichletLabelSampler(1, y, lgm::DirichletOptions{.concentration = 1.0, .min_samples_per_worker = 0})
          .validate(),
      doctest::Contains("invalid dirichlet.min_samples_per_worker = 0 (accepted: an integer >= 1)"), lgm::ConfigError);
  CHECK_THROWS_WITH_AS(
      lgm::DirichletLabelSampler(1, y, lgm::DirichletOptions{.concentration = 1.0, .max_attempts = 0}).validate(),
      doctest::Contains("invalid dirichlet.max_attempts = 0 (accepted: an integer >= 1)"), lgm::ConfigError);
  CHECK_THROWS_WITH_AS(
      lgm::DirichletLabelSampler(1, y, lgm::DirichletOptions{.concentration = 1.0, .min_samples_per_worker = 4})
          .reset(2, 6),
      doctest::Contains("invalid dirichlet.min_samples_per_worker = 4 (accepted: at most num_samples / M = 3)"),
      lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::DirichletLabelSampler(1, 1.0, y).reset(0, 6), doctest::Contains("M = 0"), lgm::ConfigError);
}
