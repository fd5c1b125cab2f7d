// A rank that fails, for run_mpi_tests.sh: the job must end with a clear message from that rank and the
// other ranks must exit instead of waiting forever in a collective (issue 6).
//   fail_program ok              a normal run (prints "ok: ..." on rank 0)
//   fail_program throw R         rank R throws from an observer at step 5 (mid-run, between collectives)
//   fail_program baddata R       rank R loads data with a NaN feature (DataError before the run)
//   fail_program kill R          rank R is killed (SIGKILL) at step 5
//   fail_program diverge R       rank R's gradients become NaN from step 5: every rank stops, "diverged"
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <lgm/comm/mpi.hpp>
#include <lgm/lgm.hpp>
#include <limits>
#include <stdexcept>
#include <string>

namespace {

using namespace lgm;

// LeastSquares whose minibatch gradients are NaN once `poison_after` gradients were taken on this rank.
class Poisoned {
 public:
  using Workspace = LeastSquares::Workspace;
  Poisoned(LeastSquares inner, Index poison_after) : m_inner(std::move(inner)), m_after(poison_after) {}
  Index dim() const { return m_inner.dim(); }
  Index num_samples() const { return m_inner.num_samples(); }
  Workspace make_workspace() const { return m_inner.make_workspace(); }
  double loss(ConstVectorRef x, IndexSpan b, Workspace& ws) const { return m_inner.loss(x, b, ws); }
  double gradient(ConstVectorRef x, IndexSpan b, VectorRef g, Workspace& ws) const {
    const double l = m_inner.gradient(x, b, g, ws);
    if (m_after >= 0 && m_calls++ >= m_after) {
      g.setConstant(std::numeric_limits<double>::quiet_NaN());
      return std::numeric_limits<double>::quiet_NaN();
    }
    return l;
  }
  double sample_gradient(ConstVectorRef x, Index i, VectorRef g, Workspace& ws) const {
    return m_inner.sample_gradient(x, i, g, ws);
  }

 private:
  LeastSquares m_inner;
  Index m_after;
  mutable Index m_calls = 0;  // one worker per rank here (threads = 1)
};

struct StepHook {
  std::string mode;
  bool mine;
  void on_step(const RunState& s) {
    if (!mine || s.metrics.steps != 5) return;
    if (mode == "throw") throw std::runtime_error("worker batch check failed at step 5 (injected by the test)");
    if (mode == "kill") std::raise(SIGKILL);
  }
};

int run(const std::string& mode, int bad_rank) {
  MpiCommunicator comm(4, MpiReduction::ordered);
  const bool mine = comm.rank() == bad_rank;
  LeastSquaresOptions opt{.N = 200, .d = 6, .seed = 1};
  LeastSquares data = LeastSquares::synthetic(opt);
  if (mode == "baddata" && mine) {
    Matrix A = data.features();
    A(2, 17) = std::numeric_limits<double>::quiet_NaN();  // a corrupt row of this rank's copy of the data
    data = LeastSquares(A, data.targets(), opt.lambda);
  }
  const Poisoned obj(std::move(data), mode == "diverge" && mine ? 5 : -1);
  LocalMethod<> method({.workers = 4, .max_steps = 100}, SGD{}, ConstantSync{2}, ConstantBatch{4},
                       ConstantLr{.lr = 0.05}, IidSampler(3));
  StepHook hook{mode, mine};
  const RunResult r = method.run_with(comm, obj, Vector::Zero(obj.dim()), hook);
  if (comm.rank() == 0)
    std::printf("%s: %s after %lld steps\n", r.reason == StopReason::diverged ? "diverged" : "ok", r.message.c_str(),
                static_cast<long long>(r.metrics.steps));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MpiSession session(argc, argv);
  const std::string mode = argc > 1 ? argv[1] : "ok";
  const int bad_rank = argc > 2 ? std::atoi(argv[2]) : 1;
  return run_or_abort([&] { return run(mode, bad_rank); }, 3, "fail_program");
}
