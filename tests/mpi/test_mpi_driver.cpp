// The MPI communicator against the in-process one (issue 6, "What must hold"). Run under
// `mpirun -np P` for P in {1, 2, 4}: every rank computes the in-process reference itself (it is
// deterministic) and compares its own workers and the shared point with it.
// Only CHECKs (no REQUIRE) after the first collective: a rank that stopped early would leave the others waiting.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <lgm/comm/mpi.hpp>
#include <lgm/lgm.hpp>
#include <vector>

namespace {

using namespace lgm;

int world_size() {
  int p = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  return p;
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

bool same_bits(const Vector& a, const Vector& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(double) * static_cast<size_t>(a.size())) == 0;
}

double rel_diff(const Vector& a, const Vector& b) {
  return (a - b).cwiseAbs().maxCoeff() / std::max(1e-300, b.cwiseAbs().maxCoeff());
}

double rel_diff(double a, double b) { return std::abs(a - b) / std::max(1e-300, std::abs(b)); }

// What a run looks like at each sync: enough to compare two runs number by number.
struct SyncTrace {
  Index round, period, samples;
  double lr, batch_loss;
  Vector shared;
  std::vector<Index> sizes;  // this process's workers
};

struct Tracer {
  std::vector<SyncTrace> syncs;
  void on_sync(const RunState& s) {
    syncs.push_back({s.round, s.period, s.metrics.samples, s.lr, s.batch_loss, s.shared_point,
                     std::vector<Index>(s.batch_sizes.begin(), s.batch_sizes.end())});
  }
};

// Checks that H, the samples and this rank's batch sizes agree on every rank, sync by sync.
struct AgreementCheck {
  MpiCommunicator* comm;
  Index disagreements = 0;
  void on_sync(const RunState& s) {
    std::vector<double> v = {static_cast<double>(s.period), static_cast<double>(s.metrics.samples), s.lr, s.batch_loss};
    for (Index i = 0; i < s.shared_point.size(); ++i) v.push_back(s.shared_point[i]);
    if (!comm->all_ranks_agree(v)) ++disagreements;
  }
};

struct Outcome {
  RunResult result;
  std::vector<SyncTrace> trace;
  MpiTraffic traffic;
  Index disagreements = 0;
};

template <class Method, class Obj>
Outcome run_in_process(Method method, const Obj& obj, const Vector& x0) {
  Outcome o;
  Tracer t;
  o.result = method.run(obj, x0, t);
  o.trace = std::move(t.syncs);
  return o;
}

template <class Method, class Obj>
Outcome run_mpi(Method method, const Obj& obj, const Vector& x0, MpiReduction reduction) {
  Outcome o;
  MpiCommunicator comm(method.options().workers, reduction);
  Tracer t;
  AgreementCheck agree{&comm};
  o.result = method.run_with(comm, obj, x0, t, agree);
  o.trace = std::move(t.syncs);
  o.traffic = comm.traffic();
  o.disagreements = agree.disagreements;
  return o;
}

// Compares the MPI run with the in-process one: integer metrics, H and batch sizes exactly; the shared point and
// the mean minibatch loss at every sync bitwise (`bitwise`) or within `tol` relative.
void compare(const Outcome& mpi, const Outcome& ref, Index first_worker, bool bitwise, double tol) {
  CHECK(mpi.disagreements == 0);
  CHECK(mpi.result.reason == ref.result.reason);
  const Metrics &a = mpi.result.metrics, &b = ref.result.metrics;
  CHECK(a.steps == b.steps);
  CHECK(a.samples == b.samples);
  CHECK(a.comm_rounds == b.comm_rounds);
  CHECK(a.global_rounds == b.global_rounds);
  CHECK(same_bits(a.bytes, b.bytes));
  CHECK(same_bits(a.compute_time_s, b.compute_time_s));
  CHECK(same_bits(a.comm_time_s, b.comm_time_s));
  REQUIRE(mpi.trace.size() == ref.trace.size());  // the same number of syncs on every rank (checked above)
  bool sizes_equal = true, periods_equal = true;
  double worst = 0.0;
  bool all_bits =
      same_bits(mpi.result.x, ref.result.x) && same_bits(mpi.result.last_batch_loss, ref.result.last_batch_loss);
  worst = std::max(worst, rel_diff(mpi.result.x, ref.result.x));
  for (size_t i = 0; i < ref.trace.size(); ++i) {
    const SyncTrace &m = mpi.trace[i], &r = ref.trace[i];
    periods_equal = periods_equal && m.period == r.period && m.round == r.round && m.samples == r.samples;
    for (size_t w = 0; w < m.sizes.size(); ++w)
      sizes_equal = sizes_equal && m.sizes[w] == r.sizes[static_cast<size_t>(first_worker) + w];
    all_bits =
        all_bits && same_bits(m.shared, r.shared) && same_bits(m.batch_loss, r.batch_loss) && same_bits(m.lr, r.lr);
    worst = std::max({worst, rel_diff(m.shared, r.shared), rel_diff(m.batch_loss, r.batch_loss)});
  }
  CHECK(periods_equal);
  CHECK(sizes_equal);
  if (bitwise) {
    CHECK(all_bits);
  } else {
    CHECK(worst <= tol);
  }
}

LeastSquares make_problem() {
  return LeastSquares::synthetic({.N = 400, .d = 10, .condition = 10.0, .noise = 0.5, .lambda = 0.01, .seed = 3});
}

// Runs `method` in-process and over MPI with both reductions, and compares.
template <class Method>
void check_equivalence(Method method, bool stats_bitwise_any_p = true) {
  const auto obj = make_problem();
  const Vector x0 = Vector::Ones(obj.dim());
  const Outcome ref = run_in_process(method, obj, x0);
  const int P = world_size();
  const Index first = static_cast<Index>(MpiCommunicator(method.options().workers).first_worker());
  const Index local = method.options().workers / P;
  // batch-rule statistics are summed per rank first (inside the rule): bitwise only with one worker per rank
  const bool ordered_bitwise = stats_bitwise_any_p || local == 1 || P == 1;
  {
    INFO("MpiReduction::ordered with P = ", P);
    const Outcome o = run_mpi(method, obj, x0, MpiReduction::ordered);
    compare(o, ref, first, ordered_bitwise, 1e-12);
  }
  {
    INFO("MpiReduction::allreduce with P = ", P);
    const Outcome o = run_mpi(method, obj, x0, MpiReduction::allreduce);
    compare(o, ref, first, P == 1, 1e-12);
  }
}

}  // namespace

TEST_CASE("mpi: communicator layout, averages and counters") {
  const int P = world_size();
  const Index M = 2 * P, d = 37;
  MpiCommunicator comm(M, MpiReduction::ordered);
  CHECK(comm.size() == M);
  CHECK(comm.local_size() == 2);
  CHECK(comm.first_worker() == 2 * comm.rank());
  // the same d × M matrix on every rank; this rank holds columns first .. first + 1
  Matrix all(d, M);
  for (Index c = 0; c < M; ++c)
    for (Index r = 0; r < d; ++r) all(r, c) = std::sin(1.0 + static_cast<double>(r * M + c)) * 1e3 / (1.0 + c);
  const Matrix mine = all.middleCols(comm.first_worker(), 2);
  Vector ref(d), out(d);
  InProcessCommunicator(M).mean(all, ref);
  comm.mean(mine, out);
  CHECK(same_bits(out, ref));  // ordered: bitwise the in-process mean

  MpiCommunicator fast(M, MpiReduction::allreduce);
  fast.mean(mine, out);
  CHECK(rel_diff(out, ref) <= 1e-15);
  CHECK(fast.traffic().collectives == 1);
  CHECK(fast.traffic().payload_bytes == d * 8.0);
  CHECK(fast.traffic().wire_bytes == 2.0 * (P - 1) / P * d * 8.0);
  CHECK(comm.traffic().payload_bytes == 2 * d * 8.0);         // its two columns
  CHECK(comm.traffic().wire_bytes == (P - 1) * 2 * d * 8.0);  // to each other rank

  // one number per worker, summed from 0 in worker order
  const double losses_all[8] = {0.1, 1e16, -1e16, 0.3, 7.0, 1e-9, 2.5, 3.25};
  if (M <= 8) {
    double expect = 0.0;
    for (Index m = 0; m < M; ++m) expect += losses_all[m];
    expect /= static_cast<double>(M);
    CHECK(same_bits(comm.worker_mean(std::span<const double>(losses_all + comm.first_worker(), 2)), expect));
  }

  // statistics: sum in rank order (ordered), max
  double v[2] = {static_cast<double>(comm.rank() + 1), 0.5 * comm.rank()};
  comm.allreduce_sum(v);
  CHECK(v[0] == P * (P + 1) / 2.0);
  double w[1] = {static_cast<double>(comm.rank())};
  fast.allreduce_max(w);
  CHECK(w[0] == P - 1.0);

  // groups stay inside a rank: no message
  Matrix g = mine;
  const Index before = comm.traffic().collectives;
  comm.group_average(g, 2);
  CHECK(comm.traffic().collectives == before);
  CHECK(g.col(0) == g.col(1));
  const double agree_values[1] = {static_cast<double>(comm.rank())};
  CHECK(comm.all_ranks_agree(std::span<const double>(agree_values, 1)) == (P == 1));
}

TEST_CASE("mpi: M not divisible by the number of ranks is rejected") {
  const int P = world_size();
  if (P == 1) return;
  CHECK_THROWS_WITH_AS(MpiCommunicator(P + 1), doctest::Contains("a multiple of the number of MPI ranks"), ConfigError);
  CHECK_THROWS_WITH_AS(MpiCommunicator(P + 1), doctest::Contains("invalid M = "), ConfigError);
}

TEST_CASE("mpi: Local SGD over ranks equals the in-process run") {
  check_equivalence(LocalSGD({.workers = 8, .max_steps = 30}, SGD{}, ConstantSync{4}, ConstantBatch{6},
                             ConstantLr{.lr = 0.05}, IidSampler(11)));
}

TEST_CASE("mpi: averaged momentum and AdamW moments travel in the parameters' message") {
  check_equivalence(LocalSHB({.workers = 8, .max_steps = 24}, HeavyBall{.momentum = 0.9, .average_momentum = true},
                             ConstantSync{3}, ConstantBatch{5}, ConstantLr{.lr = 0.02}, IidSampler(5)));
  check_equivalence(LocalAdamW({.workers = 8, .max_steps = 20},
                               AdamW{.average_first_moment = true, .average_second_moment = true}, ConstantSync{5},
                               ConstantBatch{4}, ConstantLr{.lr = 0.01}, IidSampler(6)));
}

TEST_CASE("mpi: gradient averaging, hierarchical groups and DiLoCo's outer step") {
  check_equivalence(MinibatchSGD({.workers = 8, .max_steps = 12}, SGD{}, EveryStepSync{}, ConstantBatch{3},
                                 ConstantLr{.lr = 0.05}, IidSampler(2)));
  if (world_size() <= 4)  // groups of 2 inside a rank: M / P must be even
    check_equivalence(HierarchicalLocalSGD({.workers = 8, .max_steps = 20}, SGD{},
                                           HierarchicalSync{.H = 2, .global_every = 3, .group_size = 2},
                                           ConstantBatch{4}, ConstantLr{.lr = 0.05}, IidSampler(9)));
  check_equivalence(DiLoCo({.workers = 8, .max_steps = 20}, AdamW{}, ConstantSync{5}, ConstantBatch{4},
                           ConstantLr{.lr = 0.01}, IidSampler(4)));
}

TEST_CASE("mpi: adaptive batch sizes come out the same on every rank") {
  // local tests: every worker decides from its own gradients, so the sizes are bitwise those of the in-process run
  check_equivalence(LocalSGDNormTest({.workers = 8, .max_steps = 40}, SGD{}, ConstantSync{4},
                                     NormTestRule({.b0 = 4, .b_max = 64}, NormTest{.eta = 0.5}), ConstantLr{.lr = 0.05},
                                     IidSampler(8)));
  // pooled (global) tests: the rule sums its workers before the cross-rank reduction, so with several workers
  // per rank the statistics match to rounding only; the sizes still agree on every rank and with in-process
  check_equivalence(
      LocalSGDNormTest({.workers = 8, .max_steps = 40}, SGD{}, ConstantSync{4},
                       NormTestRule({.b0 = 4, .b_max = 64, .scope = TestScope::global}, NormTest{.eta = 0.5}),
                       ConstantLr{.lr = 0.05}, IidSampler(8)),
      false);
}
