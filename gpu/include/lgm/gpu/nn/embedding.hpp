// Token and position embedding (docs/nn.md §Embedding): for token n = (b, t) of replica m with id v = tok[m][n],
//   y[m][n] = E_m[v] + P_m[t]      (E: [vocab][features], P: [context][features]),
// and the backward pass
//   dP[t] = Σ_b dy[(b, t)],   dE[v] = Σ_{n : tok[n] = v} dy[n].
// dE is a gather, not a scatter: the tokens are sorted by (replica, id) with a stable sort, and each row of dE
// sums its tokens' gradients in position order, so the result has no atomics and does not depend on threads.
#pragma once

#include <thrust/sort.h>

#include <algorithm>

#include "lgm/core/error.hpp"
#include "lgm/gpu/nn/token.hpp"

namespace lgm::gpu::nn {

/// Token and position tables in the parameter table.
struct Embedding {
  Index vocab = 1;
  Index context = 1;  ///< longest sequence (rows of the position table)
  Index features = 1;
  Index tokens = 0;     ///< offset of E
  Index positions = 0;  ///< offset of P
};

namespace detail {

/// Rows of dE one call computes: one value on CUDA (a thread a value), a whole row on the host (the index
/// arithmetic and the binary search then happen once per row).
inline constexpr bool kEmbeddingValueCalls = LGM_GPU_CUDA != 0;

template <class T>
struct EmbedFn {
  const T* E;
  const T* P;
  Index stride;  ///< parameter stride (replica m's tables at m·stride)
  const Index* tok;
  T* y;
  Index tokens, seq, features;
  LGM_HD void operator()(Index e) const {
    const Index c = e % features, mn = e / features, m = mn / tokens, t = (mn % tokens) % seq;
    y[e] = E[m * stride + tok[mn] * features + c] + P[m * stride + t * features + c];
  }
};

/// key[mn] = m·vocab + tok[mn], order[mn] = mn: sorted by key (stably), the tokens of each (replica, id) in order.
struct EmbedKeyFn {
  const Index* tok;
  Index* key;
  Index* order;
  Index tokens, vocab;
  LGM_HD void operator()(Index mn) const {
    key[mn] = (mn / tokens) * vocab + tok[mn];
    order[mn] = mn;
  }
};

/// key[i] = the key of the token order[i] (after the host's sort of `order`, the keys in sorted order).
struct EmbedSortedKeyFn {
  const Index* tok;
  const Index* order;
  Index* key;
  Index tokens, vocab;
  LGM_HD void operator()(Index i) const { key[i] = (order[i] / tokens) * vocab + tok[order[i]]; }
};

/// First index in sorted[0, n) whose value is ≥ v.
LGM_HD inline Index lower_bound_index(const Index* sorted, Index n, Index v) {
  Index lo = 0, hi = n;
  while (lo < hi) {
    const Index mid = lo + (hi - lo) / 2;
    if (sorted[mid] < v)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/// dE_m[v][c] = β dE_m[v][c] + Σ over the sorted tokens with key m·vocab + v of dy[token][c].
template <class T>
struct EmbedTokenGradFn {
  const T* dy;
  const Index* key;
  const Index* order;
  T* dE;
  Index stride, all_tokens, vocab, features;
  T beta;
  LGM_HD void sum_row(Index mv, Index c0, Index c1) const {
    const Index lo = lower_bound_index(key, all_tokens, mv), hi = lower_bound_index(key, all_tokens, mv + 1);
    T* out = dE + (mv / vocab) * stride + (mv % vocab) * features;
    for (Index c = c0; c < c1; ++c) {
      double s = 0.0;
      for (Index i = lo; i < hi; ++i) s += static_cast<double>(dy[order[i] * features + c]);
      out[c] = beta == T(0) ? static_cast<T>(s) : beta * out[c] + static_cast<T>(s);
    }
  }
  LGM_HD void operator()(Index e) const {
    if constexpr (kEmbeddingValueCalls)
      sum_row(e / features, e % features, e % features + 1);
    else
      sum_row(e, 0, features);
  }
};

/// dP_m[t][c] = β dP_m[t][c] + Σ_b dy[m][(b, t)][c], b in order, for every row t < context (rows t ≥ seq get
/// no gradient).
template <class T>
struct EmbedPositionGradFn {
  const T* dy;
  T* dP;
  Index stride, batch, seq, context, features;
  T beta;
  LGM_HD void operator()(Index e) const {
    const Index c = e % features, t = (e / features) % context, m = e / (features * context);
    double s = 0.0;
    if (t < seq)
      for (Index b = 0; b < batch; ++b) s += static_cast<double>(dy[((m * batch + b) * seq + t) * features + c]);
    T& out = dP[m * stride + t * features + c];
    out = beta == T(0) ? static_cast<T>(s) : beta * out + static_cast<T>(s);
  }
};

}  // namespace detail

/// The sort workspace of embedding_backward: 2 · replicas · tokens indices.
inline Index embedding_workspace(const TokenShape& shape) { return 2 * shape.replicas * shape.tokens(); }

/// y = E[tok] + P[position] for every replica (shape.features = emb.features; tok: [replica][token], ids < vocab).
template <class T>
void embedding_forward(const Exec& exec, const Embedding& emb, const TokenShape& shape, const Index* tok,
                       Params<const T> p, T* y) {
  lgm::detail::require(shape.seq <= emb.context, "Embedding (sequence length)", shape.seq,
                       "at most the model's context " + lgm::detail::to_text(emb.context));
  lgm::detail::require(shape.features == emb.features, "Embedding (features)", shape.features,
                       "the embedding width " + lgm::detail::to_text(emb.features));
  detail::for_each_index(exec, shape.size(),
                         detail::EmbedFn<T>{p.data + emb.tokens, p.data + emb.positions, p.stride, tok, y,
                                            shape.tokens(), shape.seq, shape.features});
}

/// dE ← β_E·dE + its gradient (β_E = 1 adds to the tied output projection's dE), dP ← β_P·dP + its gradient;
/// `work` holds embedding_workspace(shape) indices. Every row of dE and dP is written (rows no token uses: β·row).
template <class T>
void embedding_backward(const Exec& exec, const Embedding& emb, const TokenShape& shape, const Index* tok, const T* dy,
                        Params<T> dp, Index* work, T beta_tokens = T(0), T beta_positions = T(0)) {
  const Index all = shape.replicas * shape.tokens();
  Index* key = work;
  Index* order = work + all;
  detail::for_each_index(exec, all, detail::EmbedKeyFn{tok, key, order, shape.tokens(), emb.vocab});
#if LGM_GPU_CUDA
  thrust::stable_sort_by_key(policy(exec.stream), key, key + all, order);
#else
  // the host's "device" memory is host memory: std::stable_sort (Thrust 1.17's OpenMP stable_sort_by_key binds a
  // null reference inside, which UBSan reports), then the keys in the sorted order
  std::stable_sort(order, order + all, [key](Index a, Index b) { return key[a] < key[b]; });
  detail::for_each_index(exec, all, detail::EmbedSortedKeyFn{tok, order, key, shape.tokens(), emb.vocab});
#endif
  const Index rows = shape.replicas * emb.vocab;
  detail::for_each_index(exec, detail::kEmbeddingValueCalls ? rows * emb.features : rows,
                         detail::EmbedTokenGradFn<T>{dy, key, order, dp.data + emb.tokens, dp.stride, all, emb.vocab,
                                                     emb.features, beta_tokens});
  detail::for_each_index(exec, shape.replicas * emb.context * emb.features,
                         detail::EmbedPositionGradFn<T>{dy, dp.data + emb.positions, dp.stride, shape.batch, shape.seq,
                                                        emb.context, emb.features, beta_positions});
}

}  // namespace lgm::gpu::nn
