// Local SGD with its workers spread over MPI ranks, headers only (docs/mpi.md):
//   mpirun -np 4 ./example_mpi_local_sgd
// Every rank builds the same problem (same seed) and holds M/P of the M = 8 workers; the run is the in-process
// run of the same configuration, number for number (bitwise with MpiReduction::ordered). Rank 0 prints.
#include <cstdio>
#include <lgm/comm/mpi.hpp>
#include <lgm/lgm.hpp>

#ifdef LGM_MPI_AVAILABLE

int main(int argc, char** argv) {  // ignores its arguments (scripts/test.sh passes --smoke)
  using namespace lgm;
  MpiSession session(argc, argv);
  // an exception on one rank (bad data, a bad option) ends every rank with its message instead of a hang
  return run_or_abort([&] {
    const auto problem = Logistic::synthetic({.N = 4000, .d = 20, .lambda = 1e-3, .seed = 1});
    const Index M = 8;  // must be a multiple of the number of ranks (1, 2, 4 or 8)
    LocalSGD method({.workers = M, .max_samples = 400'000}, SGD{}, ConstantSync{16}, ConstantBatch{16},
                    ConstantLr{.lr = 0.5}, IidSampler(/*seed=*/42));
    MpiCommunicator comm(M, MpiReduction::ordered);  // or MpiReduction::allreduce: one MPI_Allreduce per sync

    SyncHistory history([&](ConstVectorRef x) { return full_loss(problem, x) - problem.optimal_value(); });
    const RunResult result = method.run_with(comm, problem, Vector::Zero(problem.dim()), history);

    if (comm.rank() == 0) {
      for (const SyncRecord& r : history.records())
        if (r.round % 40 == 0)
          std::printf("round %4lld  samples %7lld  F(x)-F* %.3e\n", (long long)r.round, (long long)r.metrics.samples,
                      r.value);
      std::printf("%d ranks x %lld workers, %s: %lld rounds, F(x)-F* = %.3e\n", comm.ranks(),
                  (long long)comm.local_size(), result.message.c_str(), (long long)result.metrics.comm_rounds,
                  full_loss(problem, result.x) - problem.optimal_value());
      std::printf("sent per rank: %.3g MB over the links (%lld collectives); cost model: %.3g MB per worker\n",
                  comm.traffic().wire_bytes / 1e6, (long long)comm.traffic().collectives, result.metrics.bytes / 1e6);
    }
    return 0;
  });
}

#else

int main() {
  std::puts("example_mpi_local_sgd: built without MPI (<mpi.h> not found); nothing to run");
  return 0;
}

#endif
