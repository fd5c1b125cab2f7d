// Helpers of the network-layer tests (test_gpu_nn.cpp, test_gpu_token.cpp): a stream and its BLAS handle, the
// parameter layout of two replicas, and central finite differences.
#pragma once

#include <algorithm>
#include <functional>
#include <type_traits>
#include <vector>

#include "lgm/gpu/nn/common.hpp"
#include "lgm/gpu/storage.hpp"
#include "nn_reference.hpp"

namespace lgm::gpu::testing::nntest {

using nnref::Values;

template <class T>
constexpr double tol() {
  return std::is_same_v<T, double> ? 1e-12 : 2e-5;
}

/// A stream, its BLAS handle and the layers' Exec.
template <class T>
struct Fixture {
  lgm::gpu::DeviceStorage<T> storage;
  lgm::gpu::Blas blas{storage.stream()};
  lgm::gpu::nn::Exec exec{storage.stream(), &blas};
  lgm::gpu::StreamHandle s() const { return storage.stream(); }
};

/// Slice [first, first + count) of v.
inline Values slice(const Values& v, std::size_t first, std::size_t count) {
  return Values(v.begin() + static_cast<std::ptrdiff_t>(first), v.begin() + static_cast<std::ptrdiff_t>(first + count));
}

/// Central differences of f at v along every coordinate in `coords` (h = 1e-5: error O(h²) ≈ 1e-10).
inline Values numeric_gradient(const std::function<double(const Values&)>& f, Values v,
                               const std::vector<std::size_t>& coords) {
  constexpr double h = 1e-5;
  Values g;
  for (std::size_t i : coords) {
    const double keep = v[i];
    v[i] = keep + h;
    const double up = f(v);
    v[i] = keep - h;
    const double down = f(v);
    v[i] = keep;
    g.push_back((up - down) / (2 * h));
  }
  return g;
}

inline std::vector<std::size_t> all_coords(std::size_t n) {
  std::vector<std::size_t> c(n);
  for (std::size_t i = 0; i < n; ++i) c[i] = i;
  return c;
}

inline Values pick(const Values& v, const std::vector<std::size_t>& coords) {
  Values out;
  for (std::size_t i : coords) out.push_back(v[i]);
  return out;
}

constexpr Index kReplicas = 2;

/// Parameters of kReplicas replicas with `size` values each at offset 3 of a stride of size + 5.
struct ParamLayout {
  Index size;
  Index offset = 3;
  Index stride() const { return size + offset + 2; }
  Index total() const { return kReplicas * stride(); }
  Values embed(const std::vector<Values>& per_replica) const {
    Values all(static_cast<std::size_t>(total()), 0.0);
    for (Index m = 0; m < kReplicas; ++m)
      for (Index i = 0; i < size; ++i)
        all[static_cast<std::size_t>(m * stride() + offset + i)] =
            per_replica[static_cast<std::size_t>(m)][static_cast<std::size_t>(i)];
    return all;
  }
  Values replica(const Values& all, Index m) const {
    return slice(all, static_cast<std::size_t>(m * stride() + offset), static_cast<std::size_t>(size));
  }
};

}  // namespace lgm::gpu::testing::nntest
