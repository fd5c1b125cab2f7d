// The single-device communicator (docs/gpu.md "Communication"): all M workers live in this process as the
// columns of one d × M device matrix, the device counterpart of lgm::InProcessCommunicator
// (include/lgm/comm/in_process.hpp). Averages sum the columns in a fixed order, so for T = double they equal
// the host communicator's bitwise; everything runs in the storage's stream.
#pragma once

#include <span>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/gpu/kernels.hpp"
#include "lgm/gpu/storage.hpp"

namespace lgm::gpu {

template <class T = float>
class DeviceCommunicator {
  static_assert(DeviceScalar<T>, "DeviceCommunicator: T must be float or double");

 public:
  using value_type = T;
  using Storage = DeviceStorage<T>;

  DeviceCommunicator(Index workers, Storage& storage) : m_workers(workers), m_storage(&storage) {
    lgm::detail::require_at_least("M", workers, Index{1});
  }

  Storage& storage() const noexcept { return *m_storage; }
  StreamHandle stream() const noexcept { return m_storage->stream(); }

  Index size() const noexcept { return m_workers; }
  Index local_size() const noexcept { return m_workers; }
  Index first_worker() const noexcept { return 0; }

  /// out = (1/M) Σ_m X.col(m), summed in column order 0, 1, …, M−1 for every coordinate.
  void mean(DeviceMatrixView<const T> X, DeviceVectorView<T> out) const {
    column_mean<T>(X, 0, X.cols(), out, stream());
  }

  /// Every column ← the mean of its group of `group` consecutive columns (docs/sync_rules.md §HierarchicalSync).
  void group_average(DeviceMatrixView<T> X, Index group) const { gpu::group_average<T>(X, group, stream()); }

  /// Copies `x` into every column.
  void broadcast(DeviceVectorView<const T> x, DeviceMatrixView<T> X) const { gpu::broadcast<T>(x, X, stream()); }

  /// Statistics are already complete in one process: identity.
  void allreduce_sum(std::span<double>) const noexcept {}
  void allreduce_max(std::span<double>) const noexcept {}

 private:
  Index m_workers;
  Storage* m_storage;
};

}  // namespace lgm::gpu
