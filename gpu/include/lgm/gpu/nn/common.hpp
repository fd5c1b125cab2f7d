// What every layer of the network library shares (docs/nn.md §Layout): where it runs, the shape of an
// activation tensor of all M replicas, and the parameters of all replicas. Activations are row-major
// [replica][channel][sample][row][col] ("CNHW" per replica): the replica is the outermost batch dimension of every
// kernel and GEMM, a channel's values of one replica are contiguous (batch-norm statistics and biases reduce over
// one block), and a convolution of one replica is one GEMM over all its samples.
#pragma once

#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>

#include <type_traits>

#include "lgm/core/types.hpp"
#include "lgm/gpu/backend.hpp"
#include "lgm/gpu/blas.hpp"

namespace lgm::gpu::nn {

/// Where a layer runs: the Thrust policy of a stream and the BLAS handle bound to the same stream.
struct Exec {
  StreamHandle stream = nullptr;
  const Blas* blas = nullptr;
};

/// An activation tensor of all replicas, [replicas][channels][batch][height][width].
struct ActShape {
  Index replicas = 1;
  Index channels = 1;
  Index batch = 1;  ///< samples of one replica
  Index height = 1;
  Index width = 1;

  Index plane() const noexcept { return height * width; }
  /// Values of one channel of one replica (the batch-norm reduction length).
  Index per_channel() const noexcept { return batch * height * width; }
  Index per_replica() const noexcept { return channels * batch * height * width; }
  Index size() const noexcept { return replicas * per_replica(); }
  bool operator==(const ActShape&) const = default;
};

/// The parameters (or gradients) of every replica: replica m's value i at data[m·stride + i] (column m of the
/// d × M buffer: stride = d).
template <class T>
struct Params {
  T* data = nullptr;
  Index stride = 0;

  Params() = default;
  Params(T* d, Index s) : data(d), stride(s) {}
  /// Params<T> → Params<const T>, as for pointers.
  template <class U>
  requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>) Params(const Params<U>& o)
      : data(o.data), stride(o.stride) {}  // NOLINT(google-explicit-constructor)
};

namespace detail {

/// f(i) for i = 0 … n−1 on the stream's system (one thread an index; deterministic when f writes index i only).
template <class F>
void for_each_index(const Exec& exec, Index n, const F& f) {
  if (n <= 0) return;
  thrust::for_each(policy(exec.stream), thrust::counting_iterator<Index>(0), thrust::counting_iterator<Index>(n), f);
}

/// Values an element-wise call does on the host: a slab, so that the loop over it vectorizes (a call a value, as
/// on CUDA, does not) and a launch has a few hundred calls rather than millions.
inline constexpr Index kElementSlab = LGM_GPU_CUDA ? 1 : 4096;

/// f(e) for e in slab i of n values.
template <class F>
struct SlabFn {
  F f;
  Index n;
  LGM_HD void operator()(Index i) const {
    const Index first = i * kElementSlab, last = first + kElementSlab < n ? first + kElementSlab : n;
    const F g = f;  // a local copy: the stores of f(e) cannot change its pointers, so the loop vectorizes
    for (Index e = first; e < last; ++e) g(e);
  }
};

/// f(e) for e = 0 … n−1 where f(e) writes element e only (element-wise kernels): a value a thread on CUDA,
/// slabs of kElementSlab values on the host. The same results as for_each_index.
template <class F>
void for_each_element(const Exec& exec, Index n, const F& f) {
  if constexpr (kElementSlab == 1)
    for_each_index(exec, n, f);
  else
    for_each_index(exec, (n + kElementSlab - 1) / kElementSlab, SlabFn<F>{f, n});
}

}  // namespace detail

}  // namespace lgm::gpu::nn
