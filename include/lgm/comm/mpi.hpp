// The MPI communicator: the M workers of a run are spread over the P ranks of an MPI communicator, M/P
// consecutive workers per rank, each rank holding its workers as the columns of a d × M/P matrix (docs/mpi.md).
// It models lgm::Communicator, so the driver runs unchanged: LocalMethod::run_with(comm, objective, x0).
//
// Two reductions (docs/mpi.md, "Determinism"):
//   MpiReduction::ordered    every rank gathers the workers' columns (MPI_Allgather) and sums them in worker
//                            order, exactly as InProcessCommunicator does: parameter and state averages are
//                            bitwise those of the in-process run, for any P that divides M. Sends M/P · d
//                            numbers per rank and receives M · d.
//   MpiReduction::allreduce  the local column sum, then one MPI_Allreduce(SUM) of d numbers: the summation
//                            order differs from the in-process one, so averages agree to rounding (~1e-16
//                            relative per sync), not bitwise.
//
// Compiles to nothing where <mpi.h> is not on the include path (the header check builds every header alone);
// LGM_MPI_AVAILABLE is defined to 1 where it does.
#pragma once

#if __has_include(<mpi.h>)
// only the C API is used: skip the deprecated C++ bindings (their casts warn under -Wextra)
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "lgm/comm/in_process.hpp"
#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"

#define LGM_MPI_AVAILABLE 1

namespace lgm {

/// How worker averages are reduced across ranks (see the header comment and docs/mpi.md).
enum class MpiReduction { ordered, allreduce };

inline const char* to_string(MpiReduction r) noexcept { return r == MpiReduction::ordered ? "ordered" : "allreduce"; }

/// What this rank handed to MPI collectives since construction (or the last reset_traffic).
struct MpiTraffic {
  Index collectives = 0;     ///< collective calls (MPI_Allreduce, MPI_Allgather)
  double payload_bytes = 0;  ///< Σ bytes of this rank's send buffers (what the rank contributes to each call)
  /// Σ bytes this rank sends over the links under bandwidth-optimal (ring) algorithms: all-reduce of n bytes
  /// 2(P−1)/P · n, all-gather of a block of n bytes (P−1) · n; 0 for P = 1. Comparable with the cost model's
  /// `bytes` (which counts fp32 numbers of the sync payload only, docs/driver.md).
  double wire_bytes = 0;
};

namespace detail {

inline int mpi_rank(MPI_Comm comm) {
  int r = 0;
  MPI_Comm_rank(comm, &r);
  return r;
}

inline int mpi_size(MPI_Comm comm) {
  int p = 1;
  MPI_Comm_size(comm, &p);
  return p;
}

inline int mpi_count(Index n, const char* what) {
  if (n > static_cast<Index>(INT_MAX))
    throw ConfigError(what, to_text(n) + " numbers in one MPI message", "at most INT_MAX = 2147483647");
  return static_cast<int>(n);
}

}  // namespace detail

class MpiCommunicator {
 public:
  /// A cross-process communicator: the driver keeps its per-step statistics consistent over ranks with it.
  static constexpr bool crosses_processes = true;

  /// M = `workers` workers over the ranks of `comm` (MPI must be initialized). M must be a multiple of the
  /// number of ranks P; rank r holds workers r·M/P … (r+1)·M/P − 1.
  explicit MpiCommunicator(Index workers, MpiReduction reduction = MpiReduction::allreduce,
                           MPI_Comm comm = MPI_COMM_WORLD, int threads = 1)
      : m_comm(comm), m_reduction(reduction), m_threads(threads) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) throw std::logic_error("lgm::MpiCommunicator: MPI is not initialized (call MPI_Init first)");
    m_rank = detail::mpi_rank(comm);
    m_ranks = detail::mpi_size(comm);
    detail::require_at_least("M", workers, Index{1});
    detail::require_at_least("threads", threads, 1);
    detail::require(
        workers % m_ranks == 0, "M", workers,
        "a multiple of the number of MPI ranks P = " + detail::to_text(m_ranks) + " (each rank holds M/P workers)");
    m_workers = workers;
    m_local = workers / m_ranks;
  }

  Index size() const noexcept { return m_workers; }
  Index local_size() const noexcept { return m_local; }
  Index first_worker() const noexcept { return static_cast<Index>(m_rank) * m_local; }
  int rank() const noexcept { return m_rank; }
  int ranks() const noexcept { return m_ranks; }
  MPI_Comm mpi_comm() const noexcept { return m_comm; }
  MpiReduction reduction() const noexcept { return m_reduction; }
  int threads() const noexcept { return m_threads; }
  void set_threads(int threads) {
    detail::require_at_least("threads", threads, 1);
    m_threads = threads;
  }
  const MpiTraffic& traffic() const noexcept { return m_traffic; }
  void reset_traffic() noexcept { m_traffic = {}; }

  /// out = (1/M) Σ over all M workers of the columns (X holds this rank's M/P columns). Ordered: summed in
  /// worker order 0 … M−1 on every rank, bitwise as InProcessCommunicator::mean; allreduce: local sum, then
  /// MPI_Allreduce, then division by M.
  void mean(ConstMatrixRef X, VectorRef out) {
    detail::require(X.cols() == m_local, "columns", X.cols(),
                    "the workers of this rank, M/P = " + detail::to_text(m_local));
    const Index d = X.rows();
    if (m_reduction == MpiReduction::ordered) {
      const Index block = d * m_local;
      grow(m_gather, block * m_ranks);
      MPI_Allgather(contiguous(X), detail::mpi_count(block, "MPI all-gather block"), MPI_DOUBLE, m_gather.data(),
                    static_cast<int>(block), MPI_DOUBLE, m_comm);
      count_allgather(block);
      // rank blocks arrive in rank order, so the d × M matrix has the workers in worker order
      const Eigen::Map<const Matrix> all(m_gather.data(), d, m_workers);
      InProcessCommunicator(m_workers, m_threads).mean(all, out);
    } else {
      grow(m_reduce, d);
      Eigen::Map<Vector> sum(m_reduce.data(), d);
      sum = X.col(0);
      for (Index c = 1; c < m_local; ++c) sum += X.col(c);
      MPI_Allreduce(MPI_IN_PLACE, sum.data(), detail::mpi_count(d, "MPI all-reduce"), MPI_DOUBLE, MPI_SUM, m_comm);
      count_allreduce(d);
      out = sum / static_cast<double>(m_workers);  // division, as in-process: M = 1 leaves x unchanged
    }
  }

  /// Mean over all M workers of one number per worker (this rank's M/P in `local`), summed from 0 in worker
  /// order (ordered) or as local sum + MPI_Allreduce. The driver's mean minibatch loss.
  double worker_mean(std::span<const double> local) {
    detail::require(static_cast<Index>(local.size()) == m_local, "values", local.size(),
                    "one per worker of this rank, M/P = " + detail::to_text(m_local));
    double sum = 0.0;
    if (m_reduction == MpiReduction::ordered) {
      grow(m_gather, m_workers);
      MPI_Allgather(local.data(), detail::mpi_count(m_local, "MPI all-gather block"), MPI_DOUBLE, m_gather.data(),
                    static_cast<int>(m_local), MPI_DOUBLE, m_comm);
      count_allgather(m_local);
      for (Index m = 0; m < m_workers; ++m) sum += m_gather[static_cast<size_t>(m)];
    } else {
      for (double v : local) sum += v;
      MPI_Allreduce(MPI_IN_PLACE, &sum, 1, MPI_DOUBLE, MPI_SUM, m_comm);
      count_allreduce(1);
    }
    return sum / static_cast<double>(m_workers);
  }

  /// Every column ← the mean of its group of `group` consecutive workers. Groups must lie within a rank
  /// (the driver checks that `group` divides M/P), so this is local: no message.
  void group_average(MatrixRef X, Index group) const {
    InProcessCommunicator(m_local, m_threads).group_average(X, group);
  }

  /// Copies x into every local column (no message: every rank already holds x).
  void broadcast(ConstVectorRef x, MatrixRef X) const { InProcessCommunicator(m_local, m_threads).broadcast(x, X); }

  /// Element-wise sum over ranks of per-rank partial sums. Ordered: MPI_Allgather and a sum in rank order on
  /// every rank (the result is bitwise the same on all ranks by construction); allreduce: MPI_Allreduce(SUM).
  void allreduce_sum(std::span<double> v) {
    if (v.empty()) return;
    const auto n = static_cast<Index>(v.size());
    if (m_reduction == MpiReduction::ordered) {
      grow(m_gather, n * m_ranks);
      MPI_Allgather(v.data(), detail::mpi_count(n, "MPI all-gather block"), MPI_DOUBLE, m_gather.data(),
                    static_cast<int>(n), MPI_DOUBLE, m_comm);
      count_allgather(n);
      for (Index i = 0; i < n; ++i) {
        double s = m_gather[static_cast<size_t>(i)];
        for (Index r = 1; r < m_ranks; ++r) s += m_gather[static_cast<size_t>(r * n + i)];
        v[static_cast<size_t>(i)] = s;
      }
    } else {
      MPI_Allreduce(MPI_IN_PLACE, v.data(), detail::mpi_count(n, "MPI all-reduce"), MPI_DOUBLE, MPI_SUM, m_comm);
      count_allreduce(n);
    }
  }

  /// Element-wise max over ranks (exact in any order: one MPI_Allreduce(MAX) for both reductions).
  void allreduce_max(std::span<double> v) {
    if (v.empty()) return;
    const auto n = static_cast<Index>(v.size());
    MPI_Allreduce(MPI_IN_PLACE, v.data(), detail::mpi_count(n, "MPI all-reduce"), MPI_DOUBLE, MPI_MAX, m_comm);
    count_allreduce(n);
  }

  /// True when `v` is bitwise the same on every rank (a check for tests and debugging; one all-reduce of
  /// 2·|v| integers, not counted in traffic()).
  bool all_ranks_agree(std::span<const double> v) const {
    const size_t n = v.size();
    std::vector<std::int64_t> bits(2 * n);
    for (size_t i = 0; i < n; ++i) {
      std::memcpy(&bits[i], &v[i], sizeof(double));
      bits[n + i] = ~bits[i];  // max(~x) = ~min(x): min and max in one MPI_MAX call
    }
    const std::vector<std::int64_t> mine = bits;
    MPI_Allreduce(MPI_IN_PLACE, bits.data(), detail::mpi_count(static_cast<Index>(2 * n), "MPI all-reduce"),
                  MPI_INT64_T, MPI_MAX, m_comm);
    return bits == mine;
  }

 private:
  static void grow(std::vector<double>& buf, Index n) {
    if (static_cast<Index>(buf.size()) < n) buf.resize(static_cast<size_t>(n));  // only the first time per size
  }

  // X's data if its columns are contiguous (a Matrix), else a copy in m_send.
  const double* contiguous(ConstMatrixRef X) {
    if (X.outerStride() == X.rows() || X.cols() == 1) return X.data();
    grow(m_send, X.size());
    Eigen::Map<Matrix>(m_send.data(), X.rows(), X.cols()) = X;
    return m_send.data();
  }

  void count_allreduce(Index n) {
    const double bytes = static_cast<double>(n) * sizeof(double);
    ++m_traffic.collectives;
    m_traffic.payload_bytes += bytes;
    m_traffic.wire_bytes += 2.0 * (m_ranks - 1) / m_ranks * bytes;
  }
  void count_allgather(Index block) {
    const double bytes = static_cast<double>(block) * sizeof(double);
    ++m_traffic.collectives;
    m_traffic.payload_bytes += bytes;
    m_traffic.wire_bytes += static_cast<double>(m_ranks - 1) * bytes;
  }

  MPI_Comm m_comm;
  MpiReduction m_reduction;
  int m_threads;
  int m_rank = 0, m_ranks = 1;
  Index m_workers = 1, m_local = 1;
  std::vector<double> m_gather, m_reduce, m_send;
  MpiTraffic m_traffic;
};

/// MPI_Init_thread (funneled: OpenMP threads never call MPI) and MPI_Finalize, once per program.
class MpiSession {
 public:
  MpiSession(int& argc, char**& argv) {
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  }
  ~MpiSession() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  int rank() const { return detail::mpi_rank(MPI_COMM_WORLD); }
  int ranks() const { return detail::mpi_size(MPI_COMM_WORLD); }
};

/// Prints "PROGRAM: rank R of P: MESSAGE" to stderr and ends every rank of MPI_COMM_WORLD with `code`
/// (MPI_Abort): the ranks waiting in a collective that this rank will never join exit instead of hanging.
[[noreturn]] inline void abort_all_ranks(const std::string& message, int code = 1, const char* program = "lgm") {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  const bool live = initialized && !finalized;
  if (live)
    std::fprintf(stderr, "%s: rank %d of %d: %s; aborting all ranks\n", program, detail::mpi_rank(MPI_COMM_WORLD),
                 detail::mpi_size(MPI_COMM_WORLD), message.c_str());
  else
    std::fprintf(stderr, "%s: %s\n", program, message.c_str());
  std::fflush(stderr);
  if (live) MPI_Abort(MPI_COMM_WORLD, code);
  std::exit(code);
}

/// Runs f() (returning int, the exit status) and turns an exception escaping it into abort_all_ranks.
template <class F>
int run_or_abort(F&& f, int code = 1, const char* program = "lgm") {
  try {
    return std::forward<F>(f)();
  } catch (const std::exception& e) {
    abort_all_ranks(e.what(), code, program);
  } catch (...) {
    abort_all_ranks("unknown exception", code, program);
  }
}

}  // namespace lgm

#endif  // __has_include(<mpi.h>)
