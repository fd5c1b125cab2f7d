// A caching device-memory pool (docs/gpu.md "Memory"): buffers are rounded up to a size class and returned to
// a free list instead of the system, so a run's steady state makes no cudaMalloc/cudaFree call at all (a
// buffer that grows, e.g. for a larger batch, costs one upstream allocation the first time only).
#pragma once

#include <cstddef>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <unordered_map>
#include <utility>

#include "lgm/gpu/backend.hpp"

namespace lgm::gpu {

/// Counters of a pool, for tests and for the benchmark's report.
struct PoolStats {
  std::size_t upstream_allocations = 0;  ///< calls to cudaMalloc (or the host allocator)
  std::size_t upstream_frees = 0;        ///< calls to cudaFree
  std::size_t cache_hits = 0;            ///< allocations served from the free lists
  std::size_t bytes_in_use = 0;          ///< handed out and not yet returned
  std::size_t bytes_cached = 0;          ///< held in the free lists
};

namespace detail {

/// Upstream of the pool: device memory in the CUDA build, 256-byte aligned host memory in the OpenMP build.
struct SystemAllocator {
  void* allocate(std::size_t bytes) const {
#if LGM_GPU_CUDA
    void* p = nullptr;
    check(cudaMalloc(&p, bytes), "cudaMalloc");
    return p;
#else
    void* p = std::aligned_alloc(256, bytes);
    if (p == nullptr) throw std::bad_alloc();
    return p;
#endif
  }
  void deallocate(void* p) const noexcept {
#if LGM_GPU_CUDA
    cudaFree(p);
#else
    std::free(p);
#endif
  }
};

}  // namespace detail

/// Size classes are powers of two from 256 bytes; a block freed on one stream is reused by the same stream at
/// once (stream order makes that safe) and by another stream only after its old stream is synchronized.
template <class Upstream = detail::SystemAllocator>
class CachingPool {
 public:
  explicit CachingPool(Upstream upstream = {}) : m_upstream(std::move(upstream)) {}
  ~CachingPool() { release_cached(); }
  CachingPool(const CachingPool&) = delete;
  CachingPool& operator=(const CachingPool&) = delete;

  /// The size class a request of `bytes` is served from (at least 256 bytes, a power of two).
  static std::size_t size_class(std::size_t bytes) noexcept {
    std::size_t c = 256;
    while (c < bytes) c <<= 1;
    return c;
  }

  void* allocate(std::size_t bytes, StreamHandle stream = nullptr) {
    if (bytes == 0) return nullptr;
    const std::size_t cls = size_class(bytes);
    std::lock_guard<std::mutex> lock(m_mutex);
    auto range = m_free.equal_range(cls);
    auto pick = m_free.end();
    for (auto it = range.first; it != range.second; ++it) {
      if (it->second.stream == stream || it->second.settled) {  // no synchronization needed
        pick = it;
        break;
      }
      if (pick == m_free.end()) pick = it;
    }
    void* p = nullptr;
    if (pick != m_free.end()) {
      if (pick->second.stream != stream && !pick->second.settled) sync_stream(pick->second.stream);
      p = pick->second.ptr;
      m_free.erase(pick);
      m_stats.bytes_cached -= cls;
      ++m_stats.cache_hits;
    } else {
      p = m_upstream.allocate(cls);
      ++m_stats.upstream_allocations;
    }
    m_live.emplace(p, Block{p, cls, stream});
    m_stats.bytes_in_use += cls;
    return p;
  }

  /// Returns p to its size class's free list (p must come from this pool; nullptr is ignored).
  void deallocate(void* p) noexcept {
    if (p == nullptr) return;
    std::lock_guard<std::mutex> lock(m_mutex);
    auto it = m_live.find(p);
    if (it == m_live.end()) return;  // not ours: ignored rather than corrupting the lists
    const Block b = it->second;
    m_live.erase(it);
    m_stats.bytes_in_use -= b.bytes;
    m_stats.bytes_cached += b.bytes;
    m_free.emplace(b.bytes, b);
  }

  /// Called when a stream is about to be destroyed, after it was synchronized: its blocks have no pending work,
  /// so any stream may take them without synchronizing (and nobody synchronizes a destroyed stream).
  void retire_stream(StreamHandle stream) noexcept {
    std::lock_guard<std::mutex> lock(m_mutex);
    for (auto& [cls, b] : m_free)
      if (b.stream == stream) b.settled = true;
    for (auto& [p, b] : m_live)
      if (b.stream == stream) b.settled = true;
  }

  /// Gives every cached block back to the system (e.g. before handing memory to another library).
  void release_cached() noexcept {
    std::lock_guard<std::mutex> lock(m_mutex);
    for (auto& [cls, b] : m_free) {
      m_upstream.deallocate(b.ptr);
      ++m_stats.upstream_frees;
    }
    m_free.clear();
    m_stats.bytes_cached = 0;
  }

  PoolStats stats() const {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_stats;
  }

 private:
  struct Block {
    void* ptr = nullptr;
    std::size_t bytes = 0;
    StreamHandle stream = nullptr;
    bool settled = false;  ///< its stream was retired: no pending work can touch it
  };

  static void sync_stream([[maybe_unused]] StreamHandle s) {
#if LGM_GPU_CUDA
    check(cudaStreamSynchronize(s), "cudaStreamSynchronize (pool reuse across streams)");
#endif
  }

  Upstream m_upstream;
  mutable std::mutex m_mutex;
  std::multimap<std::size_t, Block> m_free;
  std::unordered_map<void*, Block> m_live;
  PoolStats m_stats;
};

/// The process-wide pool every DeviceBuffer allocates from.
inline CachingPool<>& default_pool() {
  static CachingPool<> pool;
  return pool;
}

}  // namespace lgm::gpu
