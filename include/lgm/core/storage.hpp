// Where a run keeps its replicas (docs/design.md §Backends): the driver allocates X, G, the shared point and the rules'
// scratch through a storage policy. HostStorage is Eigen in host memory (every CPU run); the GPU backend's
// lgm::gpu::DeviceStorage has the same members over device memory (docs/gpu.md).
#pragma once

#include "lgm/core/types.hpp"

namespace lgm {

struct HostStorage {
  using value_type = double;
  using Matrix = lgm::Matrix;
  using Vector = lgm::Vector;
  using MatrixRef = lgm::MatrixRef;
  using ConstMatrixRef = lgm::ConstMatrixRef;
  using VectorRef = lgm::VectorRef;
  using ConstVectorRef = lgm::ConstVectorRef;
  static constexpr bool is_host = true;

  Matrix matrix(Index rows, Index cols) const { return Matrix(rows, cols); }
  Vector vector(Index size) const { return Vector(size); }
  void upload(ConstVectorRef host, VectorRef dst) const { dst = host; }
  void download(ConstVectorRef src, VectorRef host) const { host = src; }
  void download_matrix(ConstMatrixRef src, MatrixRef host) const { host = src; }
  void copy(ConstVectorRef src, VectorRef dst) const { dst = src; }
  void synchronize() const noexcept {}
};

namespace detail {

/// The storage of a communicator: its storage() when it has one (device communicators), else host memory.
template <class Comm>
auto& storage_of(Comm& comm) {
  if constexpr (requires { comm.storage(); }) {
    return comm.storage();
  } else {
    static HostStorage host;
    return host;
  }
}

}  // namespace detail
}  // namespace lgm
