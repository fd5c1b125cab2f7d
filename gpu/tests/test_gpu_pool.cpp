// Tests of the caching pool (memory_pool.hpp) and of DeviceBuffer's return of memory to default_pool(). The
// pool's point (docs/gpu.md "Memory") is that a run's steady state makes no upstream (cudaMalloc) call: the
// counting upstream below makes that observable in both builds.
#include <doctest/doctest.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>
#include <vector>

#include "lgm/gpu/backend.hpp"
#include "lgm/gpu/memory_pool.hpp"
#include "lgm/gpu/storage.hpp"

namespace {

using lgm::gpu::CachingPool;
using lgm::gpu::DeviceBuffer;
using lgm::gpu::PoolStats;
using lgm::gpu::StreamHandle;

struct UpstreamCounts {
  std::size_t allocations = 0;
  std::size_t frees = 0;
  std::vector<std::size_t> requested;  // bytes of every upstream allocation, in order
};

// Host memory from malloc/free, counting the calls: stands in for cudaMalloc/cudaFree. The pool's blocks are
// never dereferenced on a device here, so the CUDA build runs the same tests.
struct CountingAllocator {
  UpstreamCounts* counts = nullptr;

  void* allocate(std::size_t bytes) {
    ++counts->allocations;
    counts->requested.push_back(bytes);
    void* p = std::malloc(bytes);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  void deallocate(void* p) noexcept {
    ++counts->frees;
    std::free(p);
  }
};

using Pool = CachingPool<CountingAllocator>;

}  // namespace

TEST_CASE("pool: size classes are powers of two from 256 bytes") {
  CHECK(Pool::size_class(0) == 256);
  CHECK(Pool::size_class(1) == 256);
  CHECK(Pool::size_class(255) == 256);
  CHECK(Pool::size_class(256) == 256);
  CHECK(Pool::size_class(257) == 512);
  CHECK(Pool::size_class(1000) == 1024);
  CHECK(Pool::size_class(1024) == 1024);
  CHECK(Pool::size_class(std::size_t{1} << 20) == (std::size_t{1} << 20));
  CHECK(Pool::size_class((std::size_t{1} << 20) + 1) == (std::size_t{1} << 21));
  for (std::size_t bytes = 1; bytes < 100000; bytes = bytes * 3 + 1) {
    const std::size_t c = Pool::size_class(bytes);
    CHECK(c >= bytes);
    CHECK(c >= 256);
    CHECK((c & (c - 1)) == 0);           // a power of two
    CHECK((c == 256 || c / 2 < bytes));  // the smallest class that fits
  }
}

TEST_CASE("pool: upstream is asked for the size class, and the memory is usable") {
  UpstreamCounts counts;
  {
    Pool pool(CountingAllocator{&counts});
    void* p = pool.allocate(300);
    REQUIRE(p != nullptr);
    REQUIRE(counts.requested.size() == 1);
    CHECK(counts.requested[0] == 512);
    std::memset(p, 0xab, 512);  // the whole class belongs to the caller (ASan checks the bound)
    const PoolStats s = pool.stats();
    CHECK(s.upstream_allocations == 1);
    CHECK(s.bytes_in_use == 512);
    CHECK(s.bytes_cached == 0);
    CHECK(s.cache_hits == 0);
    pool.deallocate(p);
  }
  CHECK(counts.allocations == 1);
  CHECK(counts.frees == 1);  // the destructor gives the cached block back
}

TEST_CASE("pool: a repeated allocate/free loop makes no upstream allocation after the first step") {
  UpstreamCounts counts;
  Pool pool(CountingAllocator{&counts});
  // one "step" of a run: a few buffers of different sizes, freed at the end of the step
  const std::vector<std::size_t> sizes = {8 * 1000, 4 * 37, 4 * 4096, 8, 8 * 1000};
  auto step = [&] {
    std::vector<void*> live;
    for (std::size_t b : sizes) live.push_back(pool.allocate(b));
    for (void* p : live) pool.deallocate(p);
  };
  step();
  const std::size_t first = counts.allocations;
  CHECK(first == sizes.size());  // all live at once: one block each
  for (int i = 0; i < 1000; ++i) step();
  CHECK(counts.allocations == first);  // steady state: no cudaMalloc per step
  CHECK(counts.frees == 0);
  const PoolStats s = pool.stats();
  CHECK(s.upstream_allocations == first);
  CHECK(s.cache_hits == 1000 * sizes.size());
  CHECK(s.bytes_in_use == 0);
  std::size_t total = 0;
  for (std::size_t b : sizes) total += Pool::size_class(b);
  CHECK(s.bytes_cached == total);
}

TEST_CASE("pool: a freed block is reused for any request of its size class") {
  UpstreamCounts counts;
  Pool pool(CountingAllocator{&counts});
  void* p = pool.allocate(600);  // class 1024
  pool.deallocate(p);
  void* q = pool.allocate(1024);  // same class
  CHECK(q == p);
  pool.deallocate(q);
  void* r = pool.allocate(1025);  // next class: a new block
  CHECK(r != p);
  CHECK(counts.allocations == 2);
  pool.deallocate(r);
  CHECK(pool.stats().cache_hits == 1);
  CHECK(pool.stats().bytes_cached == 1024 + 2048);
}

TEST_CASE("pool: stats follow allocations, frees and cache hits") {
  UpstreamCounts counts;
  Pool pool(CountingAllocator{&counts});
  void* a = pool.allocate(100);   // 256
  void* b = pool.allocate(5000);  // 8192
  PoolStats s = pool.stats();
  CHECK(s.bytes_in_use == 256 + 8192);
  CHECK(s.bytes_cached == 0);
  CHECK(s.upstream_allocations == 2);
  pool.deallocate(a);
  s = pool.stats();
  CHECK(s.bytes_in_use == 8192);
  CHECK(s.bytes_cached == 256);
  void* c = pool.allocate(200);  // served from the cache
  CHECK(c == a);
  s = pool.stats();
  CHECK(s.cache_hits == 1);
  CHECK(s.bytes_in_use == 256 + 8192);
  CHECK(s.bytes_cached == 0);
  CHECK(s.upstream_allocations == 2);
  CHECK(s.upstream_frees == 0);
  pool.deallocate(b);
  pool.deallocate(c);
  s = pool.stats();
  CHECK(s.bytes_in_use == 0);
  CHECK(s.bytes_cached == 256 + 8192);
}

TEST_CASE("pool: release_cached frees only the cached blocks") {
  UpstreamCounts counts;
  Pool pool(CountingAllocator{&counts});
  void* a = pool.allocate(256);
  void* b = pool.allocate(256);
  void* c = pool.allocate(4096);
  pool.deallocate(a);
  pool.deallocate(c);
  pool.release_cached();
  CHECK(counts.frees == 2);
  PoolStats s = pool.stats();
  CHECK(s.upstream_frees == 2);
  CHECK(s.bytes_cached == 0);
  CHECK(s.bytes_in_use == 256);  // b is still live and still the caller's
  std::memset(b, 0, 256);
  pool.deallocate(b);  // a live block freed after the release goes to the cache as usual
  s = pool.stats();
  CHECK(s.bytes_cached == 256);
  CHECK(s.bytes_in_use == 0);
  void* d = pool.allocate(10);
  CHECK(d == b);
  CHECK(counts.allocations == 3);
  pool.deallocate(d);
  pool.release_cached();
  pool.release_cached();  // idempotent
  CHECK(counts.frees == 3);
  CHECK(pool.stats().upstream_frees == 3);
}

TEST_CASE("pool: nullptr, zero size and foreign pointers") {
  UpstreamCounts counts;
  Pool pool(CountingAllocator{&counts});
  CHECK(pool.allocate(0) == nullptr);
  pool.deallocate(nullptr);
  PoolStats s = pool.stats();
  CHECK(s.upstream_allocations == 0);
  CHECK(s.cache_hits == 0);
  CHECK(s.bytes_in_use == 0);
  CHECK(s.bytes_cached == 0);

  void* p = pool.allocate(64);
  double foreign[4] = {};
  pool.deallocate(foreign);                    // not from this pool: ignored
  pool.deallocate(static_cast<char*>(p) + 8);  // an interior pointer is not a block either
  s = pool.stats();
  CHECK(s.bytes_in_use == 256);
  CHECK(s.bytes_cached == 0);
  pool.deallocate(p);
  pool.deallocate(p);  // a second free of the same pointer is no longer live: ignored, not cached twice
  s = pool.stats();
  CHECK(s.bytes_in_use == 0);
  CHECK(s.bytes_cached == 256);
  void* q1 = pool.allocate(64);
  void* q2 = pool.allocate(64);
  CHECK(q1 == p);
  CHECK(q2 != p);  // the block was cached once, so the second request is a new block
  pool.deallocate(q1);
  pool.deallocate(q2);
  CHECK(counts.allocations == 2);
}

TEST_CASE("pool: a block freed on a stream is preferred by the same stream") {
#if LGM_GPU_CUDA
  lgm::gpu::Stream sa, sb;
  const StreamHandle a = sa.handle(), b = sb.handle();
#else
  // the OpenMP system has no streams; distinct handles are enough to exercise the pool's bookkeeping
  int ta = 0, tb = 0;
  const StreamHandle a = &ta, b = &tb;
#endif
  UpstreamCounts counts;
  Pool pool(CountingAllocator{&counts});
  void* pa = pool.allocate(300, a);
  void* pb = pool.allocate(300, b);
  pool.deallocate(pa);  // listed first in the class
  pool.deallocate(pb);
  void* q = pool.allocate(300, b);
  CHECK(q == pb);  // same stream first: reuse without synchronization
  void* r = pool.allocate(300, b);
  CHECK(r == pa);  // another stream's block, after synchronizing that stream
  CHECK(counts.allocations == 2);
  CHECK(pool.stats().cache_hits == 2);
  pool.deallocate(q);
  pool.deallocate(r);
}

TEST_CASE("DeviceBuffer: memory goes back to default_pool, moves transfer ownership") {
  auto& pool = lgm::gpu::default_pool();
  const PoolStats base = pool.stats();
  const std::size_t cls_100d = Pool::size_class(100 * sizeof(double));  // 1024
  const std::size_t cls_10d = Pool::size_class(10 * sizeof(double));    // 256
  {
    DeviceBuffer<double> a(100, nullptr);
    REQUIRE(a.data() != nullptr);
    CHECK(a.count() == 100);
    CHECK(a.bytes() == 100 * sizeof(double));
    CHECK(pool.stats().bytes_in_use == base.bytes_in_use + cls_100d);
    double* const p = a.data();

    DeviceBuffer<double> b(std::move(a));
    CHECK(a.data() == nullptr);  // NOLINT(bugprone-use-after-move): the moved-from state is the point
    CHECK(a.count() == 0);
    CHECK(b.data() == p);
    CHECK(b.count() == 100);
    CHECK(pool.stats().bytes_in_use == base.bytes_in_use + cls_100d);  // a move allocates nothing

    DeviceBuffer<double> c(10, nullptr);
    CHECK(pool.stats().bytes_in_use == base.bytes_in_use + cls_100d + cls_10d);
    c = std::move(b);  // c's old block goes back to the pool
    CHECK(c.data() == p);
    CHECK(c.count() == 100);
    CHECK(b.data() == nullptr);  // NOLINT(bugprone-use-after-move)
    CHECK(pool.stats().bytes_in_use == base.bytes_in_use + cls_100d);

    DeviceBuffer<double> empty;
    CHECK(empty.data() == nullptr);
    c = std::move(empty);  // p is returned, c is now empty
    CHECK(c.data() == nullptr);
    CHECK(c.count() == 0);
    CHECK(pool.stats().bytes_in_use == base.bytes_in_use);
  }
  const PoolStats after = pool.stats();
  CHECK(after.bytes_in_use == base.bytes_in_use);
  // every block went back to the cache (the test's two blocks may themselves have come from it)
  CHECK(after.bytes_cached + after.bytes_in_use >= base.bytes_cached + base.bytes_in_use);
  CHECK(after.upstream_allocations <= base.upstream_allocations + 2);
}

TEST_CASE("DeviceBuffer: zero count allocates nothing; repeated buffers reuse the pool") {
  auto& pool = lgm::gpu::default_pool();
  const PoolStats base = pool.stats();
  {
    DeviceBuffer<float> z(0, nullptr);
    CHECK(z.data() == nullptr);
    CHECK(z.bytes() == 0);
  }
  CHECK(pool.stats().upstream_allocations == base.upstream_allocations);
  CHECK(pool.stats().bytes_in_use == base.bytes_in_use);

  { DeviceBuffer<float> warm(3000, nullptr); }
  const std::size_t upstream = pool.stats().upstream_allocations;
  for (int step = 0; step < 200; ++step) {
    DeviceBuffer<float> x(3000, nullptr);
    DeviceBuffer<double> y(1500, nullptr);  // same size class as x (12000 bytes → 16384): two blocks live
    CHECK(static_cast<void*>(x.data()) != static_cast<void*>(y.data()));
  }
  CHECK(pool.stats().upstream_allocations <= upstream + 1);  // at most y's first block, then none per step
  CHECK(pool.stats().bytes_in_use == base.bytes_in_use);
}

TEST_CASE("pool: a retired stream's blocks are reused by any stream without touching the dead stream") {
  UpstreamCounts counts;
  Pool pool(CountingAllocator{&counts});
  StreamHandle b = nullptr;
  void* p = nullptr;
  {
#if LGM_GPU_CUDA
    lgm::gpu::Stream dying, other;
    const StreamHandle a = dying.handle();
    b = other.handle();
#else
    int ta = 0;
    const StreamHandle a = &ta;
#endif
    p = pool.allocate(1000, a);
    pool.deallocate(p);
    pool.retire_stream(a);  // what ~DeviceStorage does before its stream is destroyed
#if LGM_GPU_CUDA
    void* q = pool.allocate(1000, b);  // before `other` dies: reused with no cudaStreamSynchronize(a)
    CHECK(q == p);
    pool.deallocate(q);
    pool.retire_stream(b);
    b = nullptr;
#endif
  }
  void* q = pool.allocate(1000, b);  // the stream `a` is gone: the block is still taken, without a sync on it
  CHECK(q == p);
  CHECK(counts.allocations == 1);
  pool.deallocate(q);
}

TEST_CASE("DeviceStorage: blocks of a destroyed storage are reused by the next one") {
  const auto before = lgm::gpu::default_pool().stats();
  {
    lgm::gpu::DeviceStorage<float> first;
    auto v = first.vector(3000);
  }
  lgm::gpu::DeviceStorage<float> second;
  auto w = second.vector(3000);
  const auto after = lgm::gpu::default_pool().stats();
  CHECK(after.cache_hits >= before.cache_hits + 1);
}
