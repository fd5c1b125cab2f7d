// Causal multi-head self-attention (docs/nn.md §Attention). The input is the fused projection [q | k | v] of
// every token (3C features); head h of sequence b uses features [h·d, (h+1)·d) of each, d = C/H. Per (replica,
// sequence, head), with T positions,
//   A = s · Q Kᵀ (s = 1/√d),   P = softmax over s ≤ t of row t (0 for s > t),   O = P V,
// and the output token (b, t) is the concatenation of the heads' rows t. The backward pass, with dO from dy,
//   dP = dO Vᵀ,   dV = Pᵀ dO,   dA = P ⊙ (dP − rowsum(P ⊙ dP)),   dQ = s · dA K,   dK = s · dAᵀ Q.
// Q, K, V are first permuted to [replica·sequence·head][t][d], so each product is one strided-batched GEMM over
// all replicas, sequences and heads; the T × T matrices P are kept for the backward pass.
#pragma once

#include "lgm/core/error.hpp"
#include "lgm/gpu/nn/token.hpp"

namespace lgm::gpu::nn {

/// The attention of `heads` heads over `features` = C (the input has 3C features: q, k, v).
struct CausalSelfAttention {
  Index features = 1;
  Index heads = 1;
  Index head_size() const noexcept { return features / heads; }
};

/// Where the pass keeps what the backward pass needs: Q, K, V (permuted) and P.
struct AttentionLayout {
  Index heads_total = 0;  ///< replicas · batch · heads
  Index qkv_block = 0;    ///< values of each of Q, K, V (= replicas · tokens · C)
  Index scores = 0;       ///< values of all P (heads_total · T²)

  AttentionLayout(const CausalSelfAttention& a, const TokenShape& out)
      : heads_total(out.replicas * out.batch * a.heads),
        qkv_block(out.size()),
        scores(out.replicas * out.batch * a.heads * out.seq * out.seq) {}
  /// Values of the saved state (Q, K, V, P): attention_forward's `saved`.
  Index saved() const noexcept { return 3 * qkv_block + scores; }
  /// Values of the scratch buffer of either pass (forward: O; backward: dO, dQ, dK, dV and dP).
  Index scratch() const noexcept { return 4 * qkv_block + scores; }
};

namespace detail {

/// out[w][(mb, h)][t][j] = src[(mb, t)][w·C + h·d + j] for the `parts` blocks w of src (3: q, k, v of the fused
/// projection; 1: the output gradient).
template <class T>
struct SplitHeadsFn {
  const T* src;
  T* out;
  Index block, seq, heads, head_size, parts;
  LGM_HD void operator()(Index e) const {
    const Index w = e / block, r = e % block;
    const Index j = r % head_size, t = (r / head_size) % seq, bh = r / (head_size * seq);
    const Index h = bh % heads, mb = bh / heads, C = heads * head_size;
    out[e] = src[(mb * seq + t) * parts * C + w * C + h * head_size + j];
  }
};

/// y[(mb, t)][h·d + j] = src[w][(mb, h)][t][j]: the heads back into tokens, for `parts` blocks side by side
/// (1: the attention output; 3: dq | dk | dv into the gradient of the fused projection).
template <class T>
struct MergeHeadsFn {
  const T* src;
  T* y;
  Index block, seq, heads, head_size, parts;
  LGM_HD void operator()(Index e) const {
    const Index C = heads * head_size, width = parts * C;
    const Index col = e % width, mbt = e / width;
    const Index w = col / C, c = col % C, h = c / head_size, j = c % head_size;
    const Index t = mbt % seq, mb = mbt / seq;
    y[e] = src[w * block + ((mb * heads + h) * seq + t) * head_size + j];
  }
};

/// Row t of head bh: P = causal softmax of the scores in place, in double.
template <class T>
struct CausalSoftmaxFn {
  T* p;
  Index seq;
  LGM_HD void operator()(Index row) const {
    const Index t = row % seq;
    T* a = p + row * seq;
    double top = static_cast<double>(a[0]);
    for (Index s = 1; s <= t; ++s) top = static_cast<double>(a[s]) > top ? static_cast<double>(a[s]) : top;
    double sum = 0.0;
    for (Index s = 0; s <= t; ++s) sum += math::exp(static_cast<double>(a[s]) - top);
    for (Index s = 0; s <= t; ++s) a[s] = static_cast<T>(math::exp(static_cast<double>(a[s]) - top) / sum);
    for (Index s = t + 1; s < seq; ++s) a[s] = T(0);
  }
};

/// Row t of head bh: dA = P ⊙ (dP − Σ_s P dP) in place of dP.
template <class T>
struct CausalSoftmaxGradFn {
  const T* p;
  T* dp;
  Index seq;
  LGM_HD void operator()(Index row) const {
    const Index t = row % seq;
    const T* pr = p + row * seq;
    T* d = dp + row * seq;
    double dot = 0.0;
    for (Index s = 0; s <= t; ++s) dot += static_cast<double>(pr[s]) * static_cast<double>(d[s]);
    for (Index s = 0; s <= t; ++s)
      d[s] = static_cast<T>(static_cast<double>(pr[s]) * (static_cast<double>(d[s]) - dot));
    for (Index s = t + 1; s < seq; ++s) d[s] = T(0);
  }
};

}  // namespace detail

/// y (features C) = attention of qkv (features 3C) for every replica; `saved` holds layout.saved() values for the
/// backward pass, `scratch` layout.scratch() values of workspace.
template <class T>
void attention_forward(const Exec& exec, const CausalSelfAttention& attn, const TokenShape& out, const T* qkv, T* saved,
                       T* scratch, T* y) {
  lgm::detail::require(attn.heads >= 1 && attn.features % attn.heads == 0, "attention heads", attn.heads,
                       "a divisor of the width " + lgm::detail::to_text(attn.features));
  lgm::detail::require(out.features == attn.features, "attention (features)", out.features,
                       "the layer's width " + lgm::detail::to_text(attn.features));
  const AttentionLayout L(attn, out);
  const Index T_ = out.seq, d = attn.head_size(), Td = T_ * d, TT = T_ * T_;
  T* q = saved;
  T* k = saved + L.qkv_block;
  T* v = saved + 2 * L.qkv_block;
  T* p = saved + 3 * L.qkv_block;
  T* o = scratch;
  detail::for_each_index(exec, 3 * L.qkv_block, detail::SplitHeadsFn<T>{qkv, saved, L.qkv_block, T_, attn.heads, d, 3});
  const T s = static_cast<T>(1.0 / math::sqrt(static_cast<double>(d)));
  detail::gemm_rows<T>(exec, Op::none, Op::transpose, T_, T_, d, s, q, d, Td, k, d, Td, T(0), p, T_, TT, L.heads_total);
  detail::for_each_index(exec, L.heads_total * T_, detail::CausalSoftmaxFn<T>{p, T_});
  detail::gemm_rows<T>(exec, Op::none, Op::none, T_, d, T_, T(1), p, T_, TT, v, d, Td, T(0), o, d, Td, L.heads_total);
  detail::for_each_index(exec, out.size(), detail::MergeHeadsFn<T>{o, y, L.qkv_block, T_, attn.heads, d, 1});
}

/// dqkv (features 3C) from dy (features C), with the forward pass's `saved`; `scratch` as in the forward pass.
template <class T>
void attention_backward(const Exec& exec, const CausalSelfAttention& attn, const TokenShape& out, const T* saved,
                        const T* dy, T* scratch, T* dqkv) {
  const AttentionLayout L(attn, out);
  const Index T_ = out.seq, d = attn.head_size(), Td = T_ * d, TT = T_ * T_;
  const T* q = saved;
  const T* k = saved + L.qkv_block;
  const T* v = saved + 2 * L.qkv_block;
  const T* p = saved + 3 * L.qkv_block;
  T* dq = scratch;  // dq | dk | dv side by side, as MergeHeadsFn with 3 parts reads them
  T* dk = scratch + L.qkv_block;
  T* dv = scratch + 2 * L.qkv_block;
  T* dout = scratch + 3 * L.qkv_block;
  T* dp = scratch + 4 * L.qkv_block;
  detail::for_each_index(exec, L.qkv_block, detail::SplitHeadsFn<T>{dy, dout, L.qkv_block, T_, attn.heads, d, 1});
  const T s = static_cast<T>(1.0 / math::sqrt(static_cast<double>(d)));
  const Index B = L.heads_total;
  detail::gemm_rows<T>(exec, Op::none, Op::transpose, T_, T_, d, T(1), dout, d, Td, v, d, Td, T(0), dp, T_, TT, B);
  detail::gemm_rows<T>(exec, Op::transpose, Op::none, T_, d, T_, T(1), p, T_, TT, dout, d, Td, T(0), dv, d, Td, B);
  detail::for_each_index(exec, B * T_, detail::CausalSoftmaxGradFn<T>{p, dp, T_});
  detail::gemm_rows<T>(exec, Op::none, Op::none, T_, d, T_, s, dp, T_, TT, k, d, Td, T(0), dq, d, Td, B);
  detail::gemm_rows<T>(exec, Op::transpose, Op::none, T_, d, T_, s, dp, T_, TT, q, d, Td, T(0), dk, d, Td, B);
  detail::for_each_index(exec, 3 * L.qkv_block,
                         detail::MergeHeadsFn<T>{scratch, dqkv, L.qkv_block, T_, attn.heads, d, 3});
}

}  // namespace lgm::gpu::nn
