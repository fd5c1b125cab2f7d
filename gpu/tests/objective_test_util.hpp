// Helpers of the network-objective tests (test_gpu_classifier.cpp, test_gpu_language_model.cpp): the batches the
// driver's sampler draws, one replica's gradient on chosen samples, and a training loop by hand.
#pragma once

#include <cstdint>
#include <lgm/lgm.hpp>
#include <span>
#include <vector>

#include "lgm/gpu/gpu.hpp"

namespace lgm::gpu::testing::objtest {

template <class T>
Vector download(const gpu::DeviceStorage<T>& st, gpu::DeviceMatrixView<const T> X, Index col) {
  Vector v(X.rows());
  st.download(X.col(col), v);
  return v;
}

/// The batch IidSampler(seed) gives worker m at step k (what the driver draws).
inline std::vector<Index> drawn_batch(std::uint64_t seed, Index workers, Index n, Index m, Index k, Index b) {
  IidSampler sampler(seed);
  sampler.reset(workers, n);
  std::vector<Index> out(static_cast<std::size_t>(b));
  sampler.draw(m, k, std::span<Index>(out));
  return out;
}

/// Mean gradient of `obj` (one replica) at x over the samples `idx`, on the host.
template <class Obj>
Vector gradient_on(const Obj& obj, const gpu::DeviceStorage<double>& st, const Vector& x,
                   const std::vector<Index>& idx) {
  auto X = st.matrix(obj.dim(), 1), G = st.matrix(obj.dim(), 1);
  st.upload(x, X.col(0));
  auto ws = obj.make_workspace();
  const IndexSpan batch(idx.data(), idx.size());
  double loss = 0.0;
  obj.gradients(X.view(), std::span<const IndexSpan>(&batch, 1), G.view(), std::span<double>(&loss, 1), ws);
  return download<double>(st, G.view(), 0);
}

/// Runs `steps` by hand: each step, the batches the sampler draws for `workers` workers, concatenated into one
/// batch of `obj` (one replica), then update(x, g).
template <class T, class Obj, class Update>
Vector by_hand(const Obj& obj, const gpu::DeviceStorage<T>& st, const Vector& x0, Index workers, Index b, Index steps,
               std::uint64_t seed, Update&& update) {
  IidSampler sampler(seed);
  sampler.reset(workers, obj.num_samples());
  auto X = st.matrix(obj.dim(), 1), G = st.matrix(obj.dim(), 1);
  st.upload(x0, X.col(0));
  auto ws = obj.make_workspace();
  std::vector<Index> all(static_cast<std::size_t>(workers * b));
  Vector x = x0, g(obj.dim());
  for (Index k = 0; k < steps; ++k) {
    for (Index m = 0; m < workers; ++m)
      sampler.draw(m, k, std::span<Index>(all.data() + m * b, static_cast<std::size_t>(b)));
    const IndexSpan batch(all.data(), all.size());
    double loss = 0.0;
    obj.gradients(X.view(), std::span<const IndexSpan>(&batch, 1), G.view(), std::span<double>(&loss, 1), ws);
    st.download(G.col(0), g);
    update(x, g);
    st.upload(x, X.col(0));
  }
  return x;
}

}  // namespace lgm::gpu::testing::objtest
