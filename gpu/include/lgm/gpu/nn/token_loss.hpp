// Next-token softmax cross-entropy on token-major logits [replica][token][vocab] (docs/nn.md §Token loss), fused
// with its gradient, as for the classifier's loss: for token n with logits z and target y, in double,
//   ℓ_n = log Σ_v e^{z_v} − z_y,   ∂ℓ/∂z_v = softmax(z)_v − [v = y],
// a replica's loss is the mean over its N tokens, and dz = (1/N) ∂ℓ/∂z is written over the logits themselves
// (llm.c's in-place backward): the V probabilities of a token exist only inside one call.
#pragma once

#include "lgm/core/error.hpp"
#include "lgm/gpu/nn/token.hpp"

namespace lgm::gpu::nn {

namespace detail {

template <class T>
struct TokenXentFn {
  T* logits;  ///< overwritten by dz when `gradient`
  const Index* targets;
  double* token_loss;
  double* correct;  ///< 1 when the first arg max is the target; may be null
  Index vocab;
  double scale;
  bool gradient;
  LGM_HD void operator()(Index mn) const {
    T* z = logits + mn * vocab;
    double top = static_cast<double>(z[0]);
    Index arg = 0;
    for (Index v = 1; v < vocab; ++v)
      if (static_cast<double>(z[v]) > top) {
        top = static_cast<double>(z[v]);
        arg = v;
      }
    double sum = 0.0;
    for (Index v = 0; v < vocab; ++v) sum += math::exp(static_cast<double>(z[v]) - top);
    const double log_sum = top + math::log(sum);
    const Index y = targets[mn];
    token_loss[mn] = log_sum - static_cast<double>(z[y]);
    if (correct != nullptr) correct[mn] = arg == y ? 1.0 : 0.0;
    if (!gradient) return;
    for (Index v = 0; v < vocab; ++v)
      z[v] = static_cast<T>(scale * (math::exp(static_cast<double>(z[v]) - log_sum) - (v == y ? 1.0 : 0.0)));
  }
};

}  // namespace detail

/// Per-token losses of every replica (token_loss: replicas · tokens doubles) and, unless null, arg-max hits;
/// with `gradient`, the logits are replaced by ∂(mean loss of the replica)/∂logits. Targets must lie in
/// [0, vocab) (checked by the data layer).
template <class T>
void token_xent(const Exec& exec, const TokenShape& logits_shape, T* logits, const Index* targets, double* token_loss,
                bool gradient, double* correct = nullptr) {
  lgm::detail::require(logits_shape.features >= 2, "token_xent (vocabulary)", logits_shape.features,
                       "at least 2 logits a token");
  detail::for_each_index(exec, logits_shape.replicas * logits_shape.tokens(),
                         detail::TokenXentFn<T>{logits, targets, token_loss, correct, logits_shape.features,
                                                1.0 / static_cast<double>(logits_shape.tokens()), gradient});
}

}  // namespace lgm::gpu::nn
