// The in-process communicator: all M workers live in this process as the columns of one d × M matrix
// (docs/design.md §Backends). Averages are computed row-block-parallel with a fixed column order, so the result is
// bitwise the same for any thread count.
#pragma once

#include <algorithm>
#include <span>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"

namespace lgm {

class InProcessCommunicator {
 public:
  explicit InProcessCommunicator(Index workers = 1, int threads = 1) : m_workers(workers), m_threads(threads) {
    detail::require_at_least("M", workers, Index{1});
    detail::require_at_least("threads", threads, 1);
  }

  Index size() const noexcept { return m_workers; }
  Index local_size() const noexcept { return m_workers; }
  Index first_worker() const noexcept { return 0; }
  int threads() const noexcept { return m_threads; }
  void set_threads(int threads) {
    detail::require_at_least("threads", threads, 1);
    m_threads = threads;
  }

  /// out = (1/M) Σ_m X.col(m), summed in column order 0, 1, …, M−1 for every coordinate.
  void mean(ConstMatrixRef X, VectorRef out) const { column_mean(X, 0, X.cols(), out); }

  /// Every column ← the mean of its group of `group` consecutive columns (docs/sync_rules.md §HierarchicalSync).
  void group_average(MatrixRef X, Index group) const {
    detail::require(group >= 1 && X.cols() % group == 0, "group_size", group, "a divisor of M >= 1");
    for (Index first = 0; first < X.cols(); first += group) {
      column_mean(X, first, group, X.col(first));
      for (Index c = first + 1; c < first + group; ++c) X.col(c) = X.col(first);
    }
  }

  /// Copies `x` into every column.
  void broadcast(ConstVectorRef x, MatrixRef X) const {
    const Index rows = X.rows();
    const Index chunk = row_chunk(rows);
#pragma omp parallel for num_threads(m_threads) schedule(static)
    for (Index r0 = 0; r0 < rows; r0 += chunk) {
      const Index n = std::min(chunk, rows - r0);
      for (Index c = 0; c < X.cols(); ++c) X.col(c).segment(r0, n) = x.segment(r0, n);
    }
  }

  /// Statistics are already complete in one process: identity.
  void allreduce_sum(std::span<double>) const noexcept {}
  void allreduce_max(std::span<double>) const noexcept {}

 private:
  // Rows per parallel task: large enough to amortize the fork, a multiple of 8 doubles (a cache line).
  Index row_chunk(Index rows) const noexcept {
    const Index per_thread = (rows + m_threads - 1) / m_threads;
    return std::max<Index>(64, (per_thread + 7) / 8 * 8);
  }

  // out may alias column `first` of X: column `first` is read before it is overwritten, row by row.
  template <class Out>
  void column_mean(ConstMatrixRef X, Index first, Index count, Out&& out) const {
    const Index rows = X.rows();
    const Index chunk = row_chunk(rows);
    const double inv_count_div = static_cast<double>(count);
#pragma omp parallel for num_threads(m_threads) schedule(static)
    for (Index r0 = 0; r0 < rows; r0 += chunk) {
      const Index n = std::min(chunk, rows - r0);
      auto seg = out.segment(r0, n);
      seg = X.col(first).segment(r0, n);
      for (Index c = first + 1; c < first + count; ++c) seg += X.col(c).segment(r0, n);
      seg /= inv_count_div;  // division, not multiplication by 1/M: M = 1 leaves x bitwise unchanged
    }
  }

  Index m_workers;
  int m_threads;
};

}  // namespace lgm
