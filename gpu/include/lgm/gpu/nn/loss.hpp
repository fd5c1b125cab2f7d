// Softmax cross-entropy on class-major logits [replica][class][sample] (docs/nn.md §Loss), fused with its
// gradient: the probabilities are never stored. For sample n with logits z and label y, in double,
//   ℓ = log Σ_c e^{z_c} − z_y   (computed as m + log Σ_c e^{z_c − m}, m = max z),
//   ∂ℓ/∂z_c = softmax(z)_c − [c = y],
// and the batch loss of a replica is the mean over its samples, so dz = scale · ∂ℓ/∂z with scale = 1/N.
#pragma once

#include <cmath>

#include "lgm/core/error.hpp"
#include "lgm/gpu/nn/common.hpp"

namespace lgm::gpu::nn {

namespace detail {

template <class T>
struct SoftmaxXentFn {
  const T* logits;
  const Index* labels;  ///< [replica][sample]
  T* dlogits;           ///< may be null (evaluation)
  double* sample_loss;  ///< [replica][sample]
  double* correct;      ///< [replica][sample]: 1 when the first arg max is the label; may be null
  Index classes, batch;
  double scale;
  LGM_HD void operator()(Index mn) const {
    const Index m = mn / batch, n = mn % batch;
    const T* z = logits + m * classes * batch + n;
    const Index y = labels[mn];
    double top = static_cast<double>(z[0]);
    Index arg = 0;
    for (Index c = 1; c < classes; ++c)
      if (static_cast<double>(z[c * batch]) > top) {
        top = static_cast<double>(z[c * batch]);
        arg = c;
      }
    double sum = 0.0;
    for (Index c = 0; c < classes; ++c) sum += ::exp(static_cast<double>(z[c * batch]) - top);
    const double log_sum = top + ::log(sum);
    sample_loss[mn] = log_sum - static_cast<double>(z[y * batch]);
    if (correct != nullptr) correct[mn] = arg == y ? 1.0 : 0.0;
    if (dlogits == nullptr) return;
    T* dz = dlogits + m * classes * batch + n;
    for (Index c = 0; c < classes; ++c) {
      const double p = ::exp(static_cast<double>(z[c * batch]) - log_sum);
      dz[c * batch] = static_cast<T>(scale * (p - (c == y ? 1.0 : 0.0)));
    }
  }
};

/// out[m] = (1/batch) Σ_n values[m][n], in n order.
struct RowMeanFn {
  const double* values;
  double* out;
  Index batch;
  LGM_HD void operator()(Index m) const {
    double s = 0.0;
    for (Index n = 0; n < batch; ++n) s += values[m * batch + n];
    out[m] = s / static_cast<double>(batch);
  }
};

}  // namespace detail

/// Per-sample losses (and arg-max hits) of every replica's batch, and dlogits = ∂(mean loss)/∂logits unless
/// null. Labels must lie in [0, classes) (checked by the data layer, where they come from).
template <class T>
void softmax_xent(const Exec& exec, Index classes, const ActShape& logits_shape, const T* logits, const Index* labels,
                  T* dlogits, double* sample_loss, double* correct = nullptr) {
  lgm::detail::require(logits_shape.channels == classes && logits_shape.plane() == 1, "softmax_xent (logits)",
                       logits_shape.channels, "classes × batch logits, one class a channel");
  const Index batch = logits_shape.batch;
  detail::for_each_index(exec, logits_shape.replicas * batch,
                         detail::SoftmaxXentFn<T>{logits, labels, dlogits, sample_loss, correct, classes, batch,
                                                  1.0 / static_cast<double>(batch)});
}

/// out[m] = the mean of values[m][0 … batch) for m < replicas (device arrays).
inline void replica_means(const Exec& exec, Index replicas, Index batch, const double* values, double* out) {
  detail::for_each_index(exec, replicas, detail::RowMeanFn{values, out, batch});
}

}  // namespace lgm::gpu::nn
