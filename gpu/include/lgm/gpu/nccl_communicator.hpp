// The NCCL communicator (docs/gpu.md §Communicators): the multi-GPU counterpart of lgm::MpiCommunicator
// (include/lgm/comm/mpi.hpp), with the same members and semantics. Each process (rank) drives one GPU and holds
// its M_local replicas as the columns of one d × M_local device matrix; the run has M = nranks · M_local
// workers, rank r holding workers r·M_local … (r+1)·M_local − 1. A global average is the local column mean
// followed by ONE ncclAllReduce(ncclAvg) of the flat d-vector: M_local is the same on every rank, so the average
// of the ranks' local means is the mean over all M workers (to rounding: the summation order differs from the
// in-process one, like MpiReduction::allreduce).
//
// Every operation is enqueued on the stream of the communicator's storage() and returns without waiting, except
// allreduce_sum/allreduce_max (host numbers: they return after the copy back).
//
// Bootstrap (NcclBootstrap): rank 0 creates the NCCL unique id and, when nranks > 1, publishes it in a file that
// the other ranks poll for (a shared filesystem, or one machine); with LGM_WITH_MPI_BOOTSTRAP defined and <mpi.h>
// available, a constructor taking an MPI_Comm broadcasts the id instead. nranks = 1 needs no file.
//
// NCCL is CUDA-only: in the OpenMP build (LGM_GPU_CUDA == 0) this header declares nothing. A CPU run uses
// lgm::InProcessCommunicator or lgm::MpiCommunicator instead.
#pragma once

#include "lgm/gpu/backend.hpp"

#if LGM_GPU_CUDA

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdio>
#include <fstream>
#include <span>
#include <string>
#include <thread>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/gpu/kernels.hpp"
#include "lgm/gpu/storage.hpp"

#if defined(LGM_WITH_MPI_BOOTSTRAP) && __has_include(<mpi.h>)
#include "lgm/comm/mpi.hpp"  // <mpi.h> (C API only) and lgm::detail::mpi_rank / mpi_size
#define LGM_NCCL_MPI_BOOTSTRAP 1
#else
#define LGM_NCCL_MPI_BOOTSTRAP 0
#endif

namespace lgm::gpu {

/// Where this process sits in the NCCL communicator and how it finds the others.
struct NcclBootstrap {
  int rank = 0;    ///< this process's rank, 0 … nranks − 1
  int nranks = 1;  ///< number of processes (GPUs)
  /// Rank 0 writes the NCCL unique id here (atomically: a temporary file, then rename) and removes it once
  /// every rank has joined; the others poll for it. Required when nranks > 1; use a fresh path per run (a
  /// file left by a crashed run would hand a stale id to the other ranks).
  std::string id_file;
  double timeout_s = 120.0;   ///< how long ranks > 0 wait for id_file before giving up
  bool select_device = true;  ///< cudaSetDevice(rank % device count) before anything else; false: keep current
};

namespace detail {

template <DeviceScalar T>
constexpr ncclDataType_t nccl_type() noexcept {
  return std::same_as<T, float> ? ncclFloat : ncclDouble;
}

inline void check_nccl(ncclResult_t r, const char* what) {
  if (r == ncclSuccess) return;
  std::string msg = std::string(what) + " failed: " + ncclGetErrorString(r);
  const char* last = ncclGetLastError(nullptr);  // NCCL's own detail on the last failure, if it kept one
  if (last != nullptr && last[0] != '\0') msg += std::string(" (") + last + ")";
  throw DeviceError(msg);
}

/// Writes the id to `path` so that a reader never sees a partial file: write `path`.tmp, then rename.
inline void write_unique_id_file(const ncclUniqueId& id, const std::string& path) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f.write(id.internal, sizeof(id.internal));
    f.close();
    if (!f) throw DeviceError("NCCL bootstrap: cannot write the unique id to '" + tmp + "'");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw DeviceError("NCCL bootstrap: cannot rename '" + tmp + "' to '" + path + "'");
  }
}

/// Polls `path` until it holds a whole id or `timeout_s` seconds have passed (then throws, naming the file).
inline ncclUniqueId read_unique_id_file(const std::string& path, double timeout_s, int rank, int nranks) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  ncclUniqueId id{};
  for (;;) {
    std::ifstream f(path, std::ios::binary);
    if (f && f.read(id.internal, sizeof(id.internal)) && f.gcount() == static_cast<std::streamsize>(sizeof(id)))
      return id;
    if (Clock::now() >= deadline)
      throw DeviceError("NCCL bootstrap: rank " + lgm::detail::to_text(rank) + " of " + lgm::detail::to_text(nranks) +
                        " waited " + lgm::detail::to_text(timeout_s) + " s for the unique id file '" + path +
                        "' that rank 0 writes; is rank 0 running, with the same id_file on a filesystem both see?");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

/// cudaSetDevice(rank % device count) when asked; returns the device this process uses.
inline int select_device(int rank, bool select) {
  int device = 0;
  if (select) {
    int count = 0;
    check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
    if (count <= 0) throw DeviceError("NcclCommunicator: no CUDA device");
    device = rank % count;
    check(cudaSetDevice(device), "cudaSetDevice");
  } else {
    check(cudaGetDevice(&device), "cudaGetDevice");
  }
  return device;
}

}  // namespace detail

/// M workers over nranks GPUs, M_local = M / nranks per process. Models lgm::Communicator with device views.
template <class T = float>
class NcclCommunicator {
  static_assert(DeviceScalar<T>, "lgm::gpu::NcclCommunicator<T>: T must be float or double");

 public:
  using value_type = T;
  using Storage = DeviceStorage<T>;

  /// M = `workers` workers over boot.nranks processes (M must be a multiple of nranks). Collective: every rank
  /// constructs its communicator at the same time (ncclCommInitRank waits for all of them).
  explicit NcclCommunicator(Index workers, const NcclBootstrap& boot = {})
      : NcclCommunicator(workers, boot.rank, boot.nranks, boot.select_device, boot.id_file.empty() && boot.nranks > 1,
                         boot.rank == 0 && boot.nranks > 1 ? boot.id_file : std::string(),
                         [&boot](bool is_root) { return file_bootstrap(boot, is_root); }) {}

#if LGM_NCCL_MPI_BOOTSTRAP
  /// M = `workers` workers over the ranks of `comm` (MPI must be initialized): rank 0's id reaches the others
  /// by MPI_Bcast. Collective over `comm`.
  NcclCommunicator(Index workers, MPI_Comm comm, bool select_device = true)
      : NcclCommunicator(
            workers, lgm::detail::mpi_rank(comm), lgm::detail::mpi_size(comm), select_device, false, std::string(),
            [comm](bool is_root) {
              ncclUniqueId id{};
              if (is_root) detail::check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
              if (MPI_Bcast(id.internal, static_cast<int>(sizeof(id.internal)), MPI_BYTE, 0, comm) != MPI_SUCCESS)
                throw DeviceError("NCCL bootstrap: MPI_Bcast of the unique id failed");
              return id;
            }) {}
#endif

  ~NcclCommunicator() {
    if (m_comm == nullptr) return;
    (void)cudaStreamSynchronize(m_storage.stream());  // no collective may be in flight when the comm goes
    ncclCommDestroy(m_comm);
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  /// The run's device storage: its stream orders every operation of this communicator.
  Storage& storage() noexcept { return m_storage; }
  const Storage& storage() const noexcept { return m_storage; }

  Index size() const noexcept { return m_workers; }
  Index local_size() const noexcept { return m_local; }
  Index first_worker() const noexcept { return static_cast<Index>(m_rank) * m_local; }
  int rank() const noexcept { return m_rank; }
  int ranks() const noexcept { return m_nranks; }
  int device() const noexcept { return m_device; }
  ncclComm_t nccl_comm() const noexcept { return m_comm; }

  /// out = (1/M) Σ over all M workers of the columns (X holds this rank's M_local columns): the local column
  /// mean, then one ncclAllReduce(ncclAvg) of the d numbers, in place in `out`.
  void mean(DeviceMatrixView<const T> X, DeviceVectorView<T> out) {
    lgm::detail::require(X.cols() == m_local, "columns", X.cols(),
                         "the workers of this rank, M_local = " + lgm::detail::to_text(m_local));
    lgm::detail::require(out.size() == X.rows(), "mean output size", out.size(),
                         "the number of rows d = " + lgm::detail::to_text(X.rows()));
    const StreamHandle s = m_storage.stream();
    column_mean<T>(X, 0, m_local, out, s);
    if (out.size() == 0) return;
    detail::check_nccl(ncclAllReduce(out.data(), out.data(), static_cast<std::size_t>(out.size()),
                                     detail::nccl_type<T>(), ncclAvg, m_comm, s),
                       "ncclAllReduce (mean, ncclAvg)");
  }

  /// Copies x into every local column (no message: every rank already holds x).
  void broadcast(DeviceVectorView<const T> x, DeviceMatrixView<T> X) const {
    lgm::gpu::broadcast<T>(x, X, m_storage.stream());
  }

  /// Every column ← the mean of its group of `group` consecutive workers. Groups lie within a rank (`group`
  /// must divide M_local), so this is local: no message.
  void group_average(DeviceMatrixView<T> X, Index group) const {
    lgm::detail::require(X.cols() == m_local, "columns", X.cols(),
                         "the workers of this rank, M_local = " + lgm::detail::to_text(m_local));
    lgm::detail::require(group >= 1 && m_local % group == 0, "group_size", group,
                         "a divisor >= 1 of the workers per rank M_local = " + lgm::detail::to_text(m_local));
    lgm::gpu::group_average<T>(X, group, m_storage.stream());
  }

  /// Element-wise sum over ranks of per-rank partial sums (host numbers; returns when v holds the result).
  void allreduce_sum(std::span<double> v) { allreduce_host(v, ncclSum, "ncclAllReduce (allreduce_sum, ncclSum)"); }

  /// Element-wise max over ranks (host numbers; returns when v holds the result).
  void allreduce_max(std::span<double> v) { allreduce_host(v, ncclMax, "ncclAllReduce (allreduce_max, ncclMax)"); }

 private:
  // `published`: the id file rank 0 wrote, removed once ncclCommInitRank returns (it returns only after every
  // rank has joined, so all of them have read it), or on failure, so no stale id outlives the run.
  template <class GetId>
  NcclCommunicator(Index workers, int rank, int nranks, bool select_device, bool missing_id_file,
                   const std::string& published, GetId&& get_id)
      : m_rank(rank),
        m_nranks(nranks),
        m_workers(validated_workers(workers, rank, nranks, missing_id_file)),
        m_local(workers / nranks),
        m_device(detail::select_device(rank, select_device)),  // before m_storage creates its stream
        m_storage() {
    const ncclUniqueId id = get_id(rank == 0);
    const ncclResult_t r = ncclCommInitRank(&m_comm, nranks, id, rank);
    if (!published.empty()) std::remove(published.c_str());
    detail::check_nccl(r, "ncclCommInitRank");
  }

  static Index validated_workers(Index workers, int rank, int nranks, bool missing_id_file) {
    lgm::detail::require_at_least("nranks", nranks, 1);
    lgm::detail::require_in_range("rank", rank, 0, nranks - 1);
    lgm::detail::require_at_least("M", workers, Index{1});
    lgm::detail::require(workers % nranks == 0, "M", workers,
                         "a multiple of the number of ranks nranks = " + lgm::detail::to_text(nranks) +
                             " (each rank holds M/nranks workers)");
    lgm::detail::require(!missing_id_file, "id_file", "\"\"",
                         "a file path both rank 0 and the others can reach (needed when nranks > 1)");
    return workers;
  }

  // Rank 0 makes the id (and publishes it when there are other ranks); the others read it.
  static ncclUniqueId file_bootstrap(const NcclBootstrap& boot, bool is_root) {
    ncclUniqueId id{};
    if (is_root) {
      detail::check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
      if (boot.nranks > 1) detail::write_unique_id_file(id, boot.id_file);
      return id;
    }
    return detail::read_unique_id_file(boot.id_file, boot.timeout_s, boot.rank, boot.nranks);
  }

  void allreduce_host(std::span<double> v, ncclRedOp_t op, const char* what) {
    if (v.empty()) return;
    const auto n = static_cast<Index>(v.size());
    if (m_scratch.count() < n) m_scratch = DeviceBuffer<double>(n, m_storage.stream());  // grows once per size
    const StreamHandle s = m_storage.stream();
    copy_to_device(m_scratch.data(), v.data(), v.size_bytes(), s);
    detail::check_nccl(ncclAllReduce(m_scratch.data(), m_scratch.data(), v.size(), ncclDouble, op, m_comm, s), what);
    copy_to_host(v.data(), m_scratch.data(), v.size_bytes(), s);  // synchronizes the stream
  }

  int m_rank;
  int m_nranks;
  Index m_workers;
  Index m_local;
  int m_device;
  Storage m_storage;
  ncclComm_t m_comm = nullptr;
  DeviceBuffer<double> m_scratch;
};

}  // namespace lgm::gpu

#endif  // LGM_GPU_CUDA
