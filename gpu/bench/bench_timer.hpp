// The clock of the GPU benchmarks (gpu_bench.cpp, nn_bench.cpp): device time from CUDA events in the stream on a
// GPU, the host's steady clock in the OpenMP build (where every operation has completed when it returns).
#pragma once

#include <chrono>

#include "lgm/gpu/backend.hpp"

namespace lgm::gpu::bench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// Device time between start() and stop().
class Timer {
 public:
  explicit Timer([[maybe_unused]] StreamHandle stream) {
#if LGM_GPU_CUDA
    m_stream = stream;
    check(cudaEventCreate(&m_start), "cudaEventCreate");
    check(cudaEventCreate(&m_stop), "cudaEventCreate");
#endif
  }
  ~Timer() {
#if LGM_GPU_CUDA
    cudaEventDestroy(m_start);
    cudaEventDestroy(m_stop);
#endif
  }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void start() {
#if LGM_GPU_CUDA
    check(cudaEventRecord(m_start, m_stream), "cudaEventRecord");
#else
    m_t0 = Clock::now();
#endif
  }
  /// Seconds since start(), after everything enqueued before has finished.
  double stop() {
#if LGM_GPU_CUDA
    check(cudaEventRecord(m_stop, m_stream), "cudaEventRecord");
    check(cudaEventSynchronize(m_stop), "cudaEventSynchronize");
    float ms = 0.0f;
    check(cudaEventElapsedTime(&ms, m_start, m_stop), "cudaEventElapsedTime");
    return static_cast<double>(ms) * 1e-3;
#else
    return seconds_since(m_t0);
#endif
  }

 private:
#if LGM_GPU_CUDA
  StreamHandle m_stream = nullptr;
  cudaEvent_t m_start = nullptr;
  cudaEvent_t m_stop = nullptr;
#else
  Clock::time_point m_t0;
#endif
};

}  // namespace lgm::gpu::bench
