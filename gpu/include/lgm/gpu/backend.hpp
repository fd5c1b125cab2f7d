// The device system the GPU backend runs on (docs/gpu.md). The same headers compile twice: by nvcc with
// Thrust's CUDA system (the GPU build) and by the host compiler with THRUST_DEVICE_SYSTEM_OMP (the CPU build,
// tested in CI where there is no GPU). Code that needs the CUDA runtime, cuBLAS or NCCL is guarded by LGM_GPU_CUDA.
#pragma once

#include <thrust/execution_policy.h>
#include <thrust/version.h>

#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <string>

#if THRUST_DEVICE_SYSTEM == THRUST_DEVICE_SYSTEM_CUDA
#define LGM_GPU_CUDA 1
#include <cuda_runtime.h>
#include <thrust/system/cuda/execution_policy.h>
#else
#define LGM_GPU_CUDA 0
#include <thrust/system/omp/execution_policy.h>
#endif

#if defined(__CUDACC__)
#define LGM_HD __host__ __device__
#include <cuda/std/cmath>  // libcu++ (CCCL, shipped with nvcc): math callable from device code
#else
#define LGM_HD
#include <cmath>  // the host compiler: Thrust 1.17 from Debian (libthrust-dev) ships no libcu++
#endif

namespace lgm::gpu {

/// The math functions of LGM_HD functors (`math::sqrt`, `math::isfinite`, ...): `cuda::std` under nvcc, `std` on
/// the host compiler, so the OpenMP build needs no libcu++ and compiles with either CCCL or Debian's Thrust.
#if defined(__CUDACC__)
namespace math = ::cuda::std;
#else
namespace math = ::std;
#endif

/// A failed CUDA, cuBLAS or NCCL call: names the call and the library's own message.
class DeviceError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

#if LGM_GPU_CUDA
using StreamHandle = cudaStream_t;

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw DeviceError(std::string(what) + " failed: " + cudaGetErrorString(e));
}

/// The Thrust execution policy of a stream: every algorithm of the backend runs in stream order, and returns
/// without waiting for the device (CCCL's `par` would synchronize after each algorithm); the host waits only
/// where it reads a result (copy_to_host, reductions that return a value).
inline auto policy(StreamHandle s) { return thrust::cuda::par_nosync.on(s); }
#else
/// The OpenMP system has no streams: every operation completes before it returns.
using StreamHandle = void*;

inline auto policy(StreamHandle /*s*/) { return thrust::omp::par; }
#endif

/// Why device code cannot run here, or "" when it can (gpu-labelled tests print it when they skip).
inline std::string device_unavailable_reason() {
#if LGM_GPU_CUDA
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky error so later calls are not poisoned
    return std::string("no usable CUDA device: ") + cudaGetErrorString(e);
  }
  if (n == 0) return "no CUDA device present";
  return "";
#else
  return "";  // the OpenMP system runs on the host
#endif
}

/// An owned stream (non-blocking in the CUDA build, so it never serializes with the legacy default stream).
class Stream {
 public:
  Stream() {
#if LGM_GPU_CUDA
    check(cudaStreamCreateWithFlags(&m_handle, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
#endif
  }
  ~Stream() {
#if LGM_GPU_CUDA
    if (m_handle != nullptr) cudaStreamDestroy(m_handle);
#endif
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  StreamHandle handle() const noexcept { return m_handle; }
  void synchronize() const {
#if LGM_GPU_CUDA
    check(cudaStreamSynchronize(m_handle), "cudaStreamSynchronize");
#endif
  }

 private:
  StreamHandle m_handle = nullptr;
};

/// Byte copies in stream order. Host-side pointers should be pinned for the copy to be asynchronous.
inline void copy_to_device(void* dst, const void* src, std::size_t bytes, StreamHandle s) {
#if LGM_GPU_CUDA
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s), "cudaMemcpyAsync (host to device)");
#else
  (void)s;
  if (bytes > 0) std::memcpy(dst, src, bytes);
#endif
}
inline void copy_to_host(void* dst, const void* src, std::size_t bytes, StreamHandle s) {
#if LGM_GPU_CUDA
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s), "cudaMemcpyAsync (device to host)");
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");  // the caller reads the host copy next
#else
  (void)s;
  if (bytes > 0) std::memcpy(dst, src, bytes);
#endif
}
inline void copy_on_device(void* dst, const void* src, std::size_t bytes, StreamHandle s) {
#if LGM_GPU_CUDA
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s), "cudaMemcpyAsync (device to device)");
#else
  (void)s;
  if (bytes > 0) std::memmove(dst, src, bytes);
#endif
}

}  // namespace lgm::gpu
