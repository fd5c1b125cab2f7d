// Pointwise and pooling layers (docs/nn.md §Pointwise layers): ReLU, the residual add (fused with the ReLU that
// follows it in a basic block), global average pooling, and the gather of a batch of input images.
#pragma once

#include "lgm/core/error.hpp"
#include "lgm/gpu/nn/common.hpp"

namespace lgm::gpu::nn {

namespace detail {

template <class T>
struct CopyFn {
  const T* x;
  T* y;
  LGM_HD void operator()(Index e) const { y[e] = x[e]; }
};

/// y += x (a gradient reaching a tensor along two paths).
template <class T>
struct AccumulateFn {
  const T* x;
  T* y;
  LGM_HD void operator()(Index e) const { y[e] += x[e]; }
};

template <class T>
struct ReluFn {
  const T* x;
  T* y;
  LGM_HD void operator()(Index e) const { y[e] = x[e] > T(0) ? x[e] : T(0); }
};

/// dx = dy where the output was positive (y > 0 ⇔ x > 0), else 0; dx may alias dy.
template <class T>
struct ReluGradFn {
  const T* y;
  const T* dy;
  T* dx;
  LGM_HD void operator()(Index e) const { dx[e] = y[e] > T(0) ? dy[e] : T(0); }
};

/// y = max(a + b, 0) (a basic block's output); y may alias a or b.
template <class T>
struct AddReluFn {
  const T* a;
  const T* b;
  T* y;
  LGM_HD void operator()(Index e) const {
    const T s = a[e] + b[e];
    y[e] = s > T(0) ? s : T(0);
  }
};

/// y[m][c][n] = (1/HW) Σ_{hw} x[m][c][n][hw], summed in double.
template <class T>
struct AvgPoolFn {
  const T* x;
  T* y;
  Index plane;
  LGM_HD void operator()(Index e) const {
    const T* p = x + e * plane;
    double s = 0.0;
    for (Index i = 0; i < plane; ++i) s += static_cast<double>(p[i]);
    y[e] = static_cast<T>(s / static_cast<double>(plane));
  }
};

template <class T>
struct AvgPoolGradFn {
  const T* dy;
  T* dx;
  Index plane;
  LGM_HD void operator()(Index e) const {
    dx[e] = static_cast<T>(static_cast<double>(dy[e / plane]) / static_cast<double>(plane));
  }
};

/// x[m][c][n][hw] = images[index[m·batch + n]][c][hw] (images: one sample a row of C·HW values).
template <class T, class Src>
struct GatherImagesFn {
  const Src* images;
  const Index* index;
  T* x;
  Index channels, batch, plane;
  LGM_HD void operator()(Index e) const {
    const Index per_replica = channels * batch * plane;
    const Index m = e / per_replica, c = (e / (batch * plane)) % channels, n = (e / plane) % batch;
    const Index hw = e % plane;
    x[e] = static_cast<T>(images[index[m * batch + n] * channels * plane + c * plane + hw]);
  }
};

}  // namespace detail

template <class T>
void relu_forward(const Exec& exec, Index count, const T* x, T* y) {
  detail::for_each_element(exec, count, detail::ReluFn<T>{x, y});
}
template <class T>
void relu_backward(const Exec& exec, Index count, const T* y, const T* dy, T* dx) {
  detail::for_each_element(exec, count, detail::ReluGradFn<T>{y, dy, dx});
}
/// y = ReLU(a + b); its backward is relu_backward with this y (the gradient then reaches a and b unchanged).
template <class T>
void add_relu_forward(const Exec& exec, Index count, const T* a, const T* b, T* y) {
  detail::for_each_element(exec, count, detail::AddReluFn<T>{a, b, y});
}

/// Global average pooling: in [M][C][N][H][W] → [M][C][N] (height = width = 1).
inline ActShape avg_pool_output(const ActShape& in) { return {in.replicas, in.channels, in.batch, 1, 1}; }
template <class T>
void avg_pool_forward(const Exec& exec, const ActShape& in, const T* x, T* y) {
  detail::for_each_index(exec, avg_pool_output(in).size(), detail::AvgPoolFn<T>{x, y, in.plane()});
}
template <class T>
void avg_pool_backward(const Exec& exec, const ActShape& in, const T* dy, T* dx) {
  detail::for_each_index(exec, in.size(), detail::AvgPoolGradFn<T>{dy, dx, in.plane()});
}

/// Gathers the input batch of every replica: sample n of replica m is images[index[m·batch + n]] (C·H·W values
/// each, channel-major), into x of shape `shape`.
template <class T, class Src>
void gather_images(const Exec& exec, const ActShape& shape, const Src* images, const Index* index, T* x) {
  detail::for_each_index(exec, shape.size(),
                         detail::GatherImagesFn<T, Src>{images, index, x, shape.channels, shape.batch, shape.plane()});
}

}  // namespace lgm::gpu::nn
