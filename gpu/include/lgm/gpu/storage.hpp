// Device storage for M replicas (docs/gpu.md §Storage): one flat column-major buffer, column m is
// replica m, so a fused kernel covers all replicas in one launch and NCCL averages one flat buffer. fp32 by
// default (master weights); T = double is used by the CPU build's exactness tests.
#pragma once

#include <cmath>
#include <cstddef>
#include <type_traits>
#include <utility>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/gpu/backend.hpp"
#include "lgm/gpu/memory_pool.hpp"

namespace lgm::gpu {

/// A non-owning view of n contiguous device values.
template <class T>
class DeviceVectorView {
 public:
  DeviceVectorView() = default;
  DeviceVectorView(T* data, Index size) : m_data(data), m_size(size) {}
  template <class U, class = std::enable_if_t<std::is_same_v<const U, T>>>
  DeviceVectorView(const DeviceVectorView<U>& o) : m_data(o.data()), m_size(o.size()) {}  // T* → const T*

  T* data() const noexcept { return m_data; }
  Index size() const noexcept { return m_size; }

 private:
  T* m_data = nullptr;
  Index m_size = 0;
};

/// A non-owning view of a rows × cols column-major device matrix (leading dimension = rows).
template <class T>
class DeviceMatrixView {
 public:
  DeviceMatrixView() = default;
  DeviceMatrixView(T* data, Index rows, Index cols) : m_data(data), m_rows(rows), m_cols(cols) {}
  template <class U, class = std::enable_if_t<std::is_same_v<const U, T>>>
  DeviceMatrixView(const DeviceMatrixView<U>& o) : m_data(o.data()), m_rows(o.rows()), m_cols(o.cols()) {}

  T* data() const noexcept { return m_data; }
  Index rows() const noexcept { return m_rows; }
  Index cols() const noexcept { return m_cols; }
  Index size() const noexcept { return m_rows * m_cols; }
  DeviceVectorView<T> col(Index m) const { return {m_data + m * m_rows, m_rows}; }
  /// Columns [first, first + count) as one matrix (they are contiguous).
  DeviceMatrixView<T> middle_cols(Index first, Index count) const { return {m_data + first * m_rows, m_rows, count}; }

 private:
  T* m_data = nullptr;
  Index m_rows = 0;
  Index m_cols = 0;
};

/// Owned device memory from the caching pool, released to the pool (not the system) when destroyed.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(Index count, StreamHandle stream) : m_count(count), m_stream(stream) {
    if (count > 0) m_data = static_cast<T*>(default_pool().allocate(bytes(), stream));
  }
  ~DeviceBuffer() { default_pool().deallocate(m_data); }
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : m_data(std::exchange(o.m_data, nullptr)), m_count(std::exchange(o.m_count, 0)), m_stream(o.m_stream) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      default_pool().deallocate(m_data);
      m_data = std::exchange(o.m_data, nullptr);
      m_count = std::exchange(o.m_count, 0);
      m_stream = o.m_stream;
    }
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* data() const noexcept { return m_data; }
  Index count() const noexcept { return m_count; }
  std::size_t bytes() const noexcept { return static_cast<std::size_t>(m_count) * sizeof(T); }
  StreamHandle stream() const noexcept { return m_stream; }

 private:
  T* m_data = nullptr;
  Index m_count = 0;
  StreamHandle m_stream = nullptr;
};

/// An owned rows × cols column-major device matrix.
template <class T>
class DeviceMatrix {
 public:
  DeviceMatrix() = default;
  DeviceMatrix(Index rows, Index cols, StreamHandle stream)
      : m_buffer(rows * cols, stream), m_rows(rows), m_cols(cols) {}

  T* data() const noexcept { return m_buffer.data(); }
  Index rows() const noexcept { return m_rows; }
  Index cols() const noexcept { return m_cols; }
  Index size() const noexcept { return m_rows * m_cols; }
  StreamHandle stream() const noexcept { return m_buffer.stream(); }
  DeviceVectorView<T> col(Index m) const { return {data() + m * m_rows, m_rows}; }
  DeviceMatrixView<T> view() const noexcept { return {data(), m_rows, m_cols}; }
  operator DeviceMatrixView<T>() const noexcept { return view(); }
  operator DeviceMatrixView<const T>() const noexcept { return view(); }

 private:
  DeviceBuffer<T> m_buffer;
  Index m_rows = 0;
  Index m_cols = 0;
};

/// An owned device vector of n values.
template <class T>
class DeviceVector {
 public:
  DeviceVector() = default;
  DeviceVector(Index size, StreamHandle stream) : m_buffer(size, stream), m_size(size) {}

  T* data() const noexcept { return m_buffer.data(); }
  Index size() const noexcept { return m_size; }
  StreamHandle stream() const noexcept { return m_buffer.stream(); }
  DeviceVectorView<T> view() const noexcept { return {data(), m_size}; }
  operator DeviceVectorView<T>() const noexcept { return view(); }
  operator DeviceVectorView<const T>() const noexcept { return view(); }

 private:
  DeviceBuffer<T> m_buffer;
  Index m_size = 0;
};

/// The storage policy of a device run (the driver's counterpart is lgm::HostStorage): where the replicas,
/// gradients and shared point live, and the copies between host and device. Owns the run's stream; every
/// GPU object of a run (communicator, objective, optimizer state) works in this stream's order.
template <class T = float>
class DeviceStorage {
 public:
  using value_type = T;
  using Matrix = DeviceMatrix<T>;
  using Vector = DeviceVector<T>;
  using MatrixRef = DeviceMatrixView<T>;
  using ConstMatrixRef = DeviceMatrixView<const T>;
  using VectorRef = DeviceVectorView<T>;
  using ConstVectorRef = DeviceVectorView<const T>;
  static constexpr bool is_host = false;

  DeviceStorage() = default;
  /// Blocks allocated on this storage's stream outlive it in the pool's cache: retire the stream there first.
  ~DeviceStorage() {
    try {
      m_stream.synchronize();
    } catch (...) {  // a destructor must not throw; a failed device is reported by the next call anyway
    }
    default_pool().retire_stream(m_stream.handle());
  }
  DeviceStorage(const DeviceStorage&) = delete;
  DeviceStorage& operator=(const DeviceStorage&) = delete;

  StreamHandle stream() const noexcept { return m_stream.handle(); }
  void synchronize() const { m_stream.synchronize(); }

  Matrix matrix(Index rows, Index cols) const { return Matrix(rows, cols, stream()); }
  Vector vector(Index size) const { return Vector(size, stream()); }

  /// host (double) → device (T), converting on the host side.
  void upload(lgm::ConstVectorRef host, VectorRef dst) const {
    lgm::detail::require(host.size() == dst.size(), "upload (size)", host.size(), "the device vector's size");
    m_staging.resize(static_cast<std::size_t>(host.size()));
    for (Index i = 0; i < host.size(); ++i) m_staging[static_cast<std::size_t>(i)] = static_cast<T>(host[i]);
    copy_to_device(dst.data(), m_staging.data(), m_staging.size() * sizeof(T), stream());
    synchronize();  // the staging buffer is reused by the next upload
  }
  /// device (T) → host (double); returns after the copy completes.
  void download(ConstVectorRef src, lgm::VectorRef host) const {
    lgm::detail::require(host.size() == src.size(), "download (size)", host.size(), "the device vector's size");
    m_staging.resize(static_cast<std::size_t>(src.size()));
    copy_to_host(m_staging.data(), src.data(), m_staging.size() * sizeof(T), stream());
    for (Index i = 0; i < src.size(); ++i) host[i] = static_cast<double>(m_staging[static_cast<std::size_t>(i)]);
  }
  void download_matrix(ConstMatrixRef src, lgm::MatrixRef host) const {
    lgm::detail::require(host.rows() == src.rows() && host.cols() == src.cols(), "download (shape)", host.rows(),
                         "the device matrix's shape");
    for (Index m = 0; m < src.cols(); ++m) download(src.col(m), host.col(m));
  }
  void copy(ConstVectorRef src, VectorRef dst) const {
    copy_on_device(dst.data(), src.data(), static_cast<std::size_t>(src.size()) * sizeof(T), stream());
  }

 private:
  Stream m_stream;
  mutable std::vector<T> m_staging;
};

}  // namespace lgm::gpu
