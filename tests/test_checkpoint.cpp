// Checkpoint and resume (lgm/run/checkpoint.hpp, docs/driver.md §Checkpoint and resume): a run saved at a sync
// and resumed by a fresh method gives bitwise the uninterrupted run's parameters and counters, for stateful
// policies of every family; a damaged snapshot, another version or another run's snapshot is refused saying why.
#include <doctest/doctest.h>

#include <lgm/lgm.hpp>
#include <optional>
#include <vector>

using namespace lgm;

namespace {

LeastSquares problem(Index d = 6) {
  return LeastSquares::synthetic({.N = 300, .d = d, .condition = 10.0, .noise = 0.5, .lambda = 0.01, .seed = 3});
}

/// Records x̄ at every sync; takes a snapshot after round `save_at` and then stops the run.
struct Saver {
  Index save_at = -1;
  std::optional<RunSnapshot> snapshot{};
  std::vector<Vector> points{};
  std::vector<Metrics> metrics{};
  bool on_sync(const RunState& s) {
    points.emplace_back(s.shared_point);
    metrics.push_back(s.metrics);
    if (s.round != save_at) return true;
    snapshot = s.snapshot();
    return false;
  }
};

bool same(const Metrics& a, const Metrics& b) {
  return a.steps == b.steps && a.samples == b.samples && a.comm_rounds == b.comm_rounds &&
         a.global_rounds == b.global_rounds && a.bytes == b.bytes && a.compute_time_s == b.compute_time_s &&
         a.comm_time_s == b.comm_time_s && a.sim_time_s == b.sim_time_s;
}

/// Runs `make()`'s method whole, and again saved after round k and resumed by a fresh method; compares.
template <class Make>
void check_resume_is_bitwise(Make make, Index k, int threads = 1) {
  const auto obj = problem();
  const Vector x0 = Vector::Zero(obj.dim());
  Saver whole;
  auto m1 = make();
  m1.options().threads = threads;
  const RunResult full = m1.run(obj, x0, whole);
  REQUIRE(static_cast<Index>(whole.points.size()) > k + 1);

  Saver first{.save_at = k};
  auto m2 = make();
  (void)m2.run(obj, x0, first);
  REQUIRE(first.snapshot.has_value());
  Saver rest;
  auto m3 = make();
  m3.options().threads = 3 - threads;  // the thread count never matters
  const RunResult resumed = m3.resume(obj, x0, *first.snapshot, rest);
  CHECK(resumed.reason == full.reason);
  CHECK(resumed.x == full.x);  // bitwise
  CHECK(same(resumed.metrics, full.metrics));
  REQUIRE(rest.points.size() + static_cast<std::size_t>(k) + 1 == whole.points.size());
  for (std::size_t i = 0; i < rest.points.size(); ++i) {
    CHECK(rest.points[i] == whole.points[i + static_cast<std::size_t>(k) + 1]);
    CHECK(same(rest.metrics[i], whole.metrics[i + static_cast<std::size_t>(k) + 1]));
  }
}

}  // namespace

TEST_CASE("checkpoint: Local SHB with the norm test, a shuffled sampler and an outer step resumes bitwise") {
  check_resume_is_bitwise(
      [] {
        return LocalMethod<HeavyBall, ConstantSync, NormTestRule, WarmupCosineLr, ShuffledEpochSampler, OuterSGD>(
            {.workers = 4, .max_steps = 60}, HeavyBall{.momentum = 0.9}, ConstantSync{3},
            NormTestRule({.b0 = 4, .b_max = 64}, NormTest{0.5}), WarmupCosineLr{.peak = 0.05, .warmup = 5, .total = 60},
            ShuffledEpochSampler(11), OuterSGD(OuterSGDOptions{.lr = 0.8, .momentum = 0.5, .nesterov = true}));
      },
      7);
}

TEST_CASE("checkpoint: Local AdamW, hierarchical syncs, a sharded sampler and the global norm test resume bitwise") {
  check_resume_is_bitwise(
      [] {
        return LocalMethod<AdamW, HierarchicalSync, NormTestRule, ConstantLr, ShardedSampler>(
            {.workers = 4, .max_samples = 3000}, AdamW{.weight_decay = 0.01},
            HierarchicalSync{.H = 2, .global_every = 3, .group_size = 2},
            NormTestRule({.b0 = 4, .b_max = 32, .scope = TestScope::global}, NormTest{0.5}), ConstantLr{.lr = 0.01},
            ShardedSampler(5));
      },
      4, 2);
}

TEST_CASE("checkpoint: QSR with an inner-product test and momentum resumes bitwise from several rounds") {
  for (Index k : {0, 2, 5}) {
    CAPTURE(k);
    check_resume_is_bitwise(
        [] {
          return LocalMethod<Nesterov, QuadraticSyncRule, InnerProductTestRule, WarmupCosineLr, IidSampler>(
              {.workers = 3, .max_steps = 50}, Nesterov{.momentum = 0.9}, QuadraticSyncRule{.alpha = 0.02, .H_base = 2},
              InnerProductTestRule({.b0 = 3, .b_max = 48}, InnerProductTest{0.5}),
              WarmupCosineLr{.peak = 0.05, .total = 50}, IidSampler(2));
        },
        k);
  }
}

TEST_CASE("checkpoint: a damaged snapshot, another version or another run's is refused, saying why") {
  const auto obj = problem();
  const Vector x0 = Vector::Zero(obj.dim());
  auto make = [] {
    return LocalMethod<HeavyBall>({.workers = 2, .max_steps = 20}, HeavyBall{.momentum = 0.9}, ConstantSync{2},
                                  ConstantBatch{8}, ConstantLr{.lr = 0.05}, IidSampler(1));
  };
  Saver saver{.save_at = 2};
  auto m = make();
  (void)m.run(obj, x0, saver);
  REQUIRE(saver.snapshot.has_value());
  const RunSnapshot good = *saver.snapshot;

  RunSnapshot damaged = good;
  damaged.bytes[damaged.bytes.size() / 2] ^= 0x10;
  CHECK_THROWS_WITH_AS(make().resume(obj, x0, damaged), doctest::Contains("checksum"), SnapshotError);

  RunSnapshot truncated = good;
  truncated.bytes.resize(truncated.bytes.size() / 3);
  CHECK_THROWS_AS(make().resume(obj, x0, truncated), SnapshotError);

  RunSnapshot other_version = good;
  other_version.bytes[8] = 7;  // the version field follows the 8-byte magic
  CHECK_THROWS_WITH_AS(make().resume(obj, x0, other_version), doctest::Contains("version"), SnapshotError);

  CHECK_THROWS_WITH_AS(make().resume(obj, x0, RunSnapshot{}), doctest::Contains("LGMSNAP"), SnapshotError);

  auto three = LocalMethod<HeavyBall>({.workers = 3, .max_steps = 20}, HeavyBall{.momentum = 0.9}, ConstantSync{2},
                                      ConstantBatch{8}, ConstantLr{.lr = 0.05}, IidSampler(1));
  CHECK_THROWS_WITH_AS(three.resume(obj, x0, good), doctest::Contains("M = 2"), SnapshotError);

  const auto bigger = problem(7);
  CHECK_THROWS_WITH_AS(make().resume(bigger, Vector::Zero(7), good), doctest::Contains("d = 6"), SnapshotError);

  auto nesterov = LocalMethod<Nesterov>({.workers = 2, .max_steps = 20}, Nesterov{.momentum = 0.9}, ConstantSync{2},
                                        ConstantBatch{8}, ConstantLr{.lr = 0.05}, IidSampler(1));
  CHECK_NOTHROW(nesterov.resume(obj, x0, good));  // the same fields: a momentum method reads a momentum state
  auto adamw = LocalMethod<AdamW>({.workers = 2, .max_steps = 20}, AdamW{}, ConstantSync{2}, ConstantBatch{8},
                                  ConstantLr{.lr = 0.05}, IidSampler(1));
  CHECK_THROWS_WITH_AS(adamw.resume(obj, x0, good), doctest::Contains("optimizer.exp_avg"), SnapshotError);
}

TEST_CASE("checkpoint: a snapshot is taken at syncs only") {
  const auto obj = problem();
  struct AtStep {
    bool threw = false;
    void on_step(const RunState& s) {
      try {
        (void)s.snapshot();
      } catch (const SnapshotError&) {
        threw = true;
      }
    }
  } obs;
  LocalMethod<> m({.workers = 2, .max_steps = 4}, SGD{}, ConstantSync{2}, ConstantBatch{4}, ConstantLr{.lr = 0.1},
                  IidSampler(1));
  (void)m.run(obj, Vector::Zero(obj.dim()), obs);
  CHECK(obs.threw);
}
