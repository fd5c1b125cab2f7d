// Helpers shared by the GPU backend's tests: random host data, its rounding to the device type, and copies of
// whole matrices between host (double) and device (T).
#pragma once

#include <cstdint>
#include <random>

#include "lgm/core/types.hpp"
#include "lgm/gpu/storage.hpp"

namespace lgm::gpu::testing {

inline lgm::Matrix random_matrix(Index rows, Index cols, std::mt19937_64& rng, double scale = 1.0) {
  std::normal_distribution<double> dist(0.0, scale);
  lgm::Matrix A(rows, cols);
  for (Index c = 0; c < cols; ++c)
    for (Index r = 0; r < rows; ++r) A(r, c) = dist(rng);
  return A;
}

inline lgm::Matrix random_matrix(Index rows, Index cols, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  return random_matrix(rows, cols, rng);
}

/// H rounded to T, so the host reference sees exactly the device's input.
template <class T>
lgm::Matrix rounded(const lgm::Matrix& H) {
  return H.unaryExpr([](double v) { return static_cast<double>(static_cast<T>(v)); });
}

template <class T>
void upload_matrix(const DeviceStorage<T>& st, const lgm::Matrix& H, DeviceMatrixView<T> D) {
  for (Index m = 0; m < H.cols(); ++m) st.upload(H.col(m), D.col(m));
}

template <class T>
DeviceMatrix<T> to_device(const DeviceStorage<T>& st, const lgm::Matrix& H) {
  DeviceMatrix<T> D = st.matrix(H.rows(), H.cols());
  upload_matrix<T>(st, H, D);
  return D;
}

template <class T>
lgm::Matrix to_host(const DeviceStorage<T>& st, DeviceMatrixView<const T> D) {
  lgm::Matrix H(D.rows(), D.cols());
  st.download_matrix(D, H);
  return H;
}

}  // namespace lgm::gpu::testing
