// Token-major layers of the transformer (docs/nn.md §Token layers): activations [replica][sequence][position]
// [feature] (llm.c's B × T × C per replica), so that a token's features are contiguous and a linear layer of one
// replica is one GEMM over all its tokens. Here: the shape, a row-major GEMM on the BLAS layer, the linear layer
// y = x Wᵀ + b (weight [out][in], as PyTorch's nn.Linear), GELU (tanh form, as GPT-2) and the residual add.
#pragma once

#include "lgm/core/error.hpp"
#include "lgm/gpu/nn/common.hpp"

namespace lgm::gpu::nn {

/// An activation of all replicas, [replicas][batch][seq][features].
struct TokenShape {
  Index replicas = 1;
  Index batch = 1;  ///< sequences of one replica
  Index seq = 1;    ///< positions of a sequence
  Index features = 1;

  Index tokens() const noexcept { return batch * seq; }  ///< tokens of one replica
  Index per_replica() const noexcept { return tokens() * features; }
  Index size() const noexcept { return replicas * per_replica(); }
  TokenShape with_features(Index f) const noexcept { return {replicas, batch, seq, f}; }
  bool operator==(const TokenShape&) const = default;
};

namespace detail {

/// For b < batch: C_b (m × n) ← α op(A_b) op(B_b) + β C_b with every matrix row-major (leading dimension = row
/// stride). Row-major X is column-major Xᵀ, and Cᵀ = op(B)ᵀ op(A)ᵀ: the column-major call with A and B swapped.
template <class T>
void gemm_rows(const Exec& exec, Op ta, Op tb, Index m, Index n, Index k, T alpha, const T* a, Index lda, Index sa,
               const T* b, Index ldb, Index sb, T beta, T* c, Index ldc, Index sc, Index batch) {
  exec.blas->gemm_strided_batched<T>(tb, ta, n, m, k, alpha, b, ldb, sb, a, lda, sa, beta, c, ldc, sc, batch);
}

/// y[m][n][o] += b_m[o].
template <class T>
struct AddRowBiasFn {
  T* y;
  const T* b;
  Index b_stride, tokens, features;
  LGM_HD void operator()(Index e) const {
    const Index m = e / (tokens * features), o = e % features;
    y[e] += b[m * b_stride + o];
  }
};

/// db_m[o] = β db_m[o] + Σ_n dy[m][n][o], summed in n order in double.
template <class T>
struct RowBiasGradFn {
  const T* dy;
  T* db;
  Index db_stride, tokens, features;
  T beta;
  LGM_HD void operator()(Index mo) const {
    const Index m = mo / features, o = mo % features;
    const T* p = dy + m * tokens * features + o;
    double s = 0.0;
    for (Index n = 0; n < tokens; ++n) s += static_cast<double>(p[n * features]);
    T& out = db[m * db_stride + o];
    out = beta == T(0) ? static_cast<T>(s) : beta * out + static_cast<T>(s);
  }
};

/// GELU, tanh form: y = x/2 · (1 + tanh(u)), u = √(2/π)(x + 0.044715 x³).
inline constexpr double kGeluScale = 0.7978845608028654;  // √(2/π)
inline constexpr double kGeluCubic = 0.044715;

template <class T>
struct GeluFn {
  const T* x;
  T* y;
  LGM_HD void operator()(Index e) const {
    const double v = static_cast<double>(x[e]);
    y[e] = static_cast<T>(0.5 * v * (1.0 + math::tanh(kGeluScale * (v + kGeluCubic * v * v * v))));
  }
};

/// dx = dy · GELU′(x), GELU′(x) = (1 + t)/2 + x/2 · (1 − t²) · √(2/π)(1 + 3·0.044715 x²), t = tanh(u); dx may alias dy.
template <class T>
struct GeluGradFn {
  const T* x;
  const T* dy;
  T* dx;
  LGM_HD void operator()(Index e) const {
    const double v = static_cast<double>(x[e]);
    const double t = math::tanh(kGeluScale * (v + kGeluCubic * v * v * v));
    const double d = 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * kGeluScale * (1.0 + 3.0 * kGeluCubic * v * v);
    dx[e] = static_cast<T>(static_cast<double>(dy[e]) * d);
  }
};

/// y = a + b; y may alias a or b.
template <class T>
struct AddFn {
  const T* a;
  const T* b;
  T* y;
  LGM_HD void operator()(Index e) const { y[e] = a[e] + b[e]; }
};

}  // namespace detail

/// A linear layer on token-major activations: y[n] = W x[n] + b, weight [out][in] (row-major), bias [out].
struct TokenLinear {
  Index in_features = 1;
  Index out_features = 1;
  Index weight = 0;      ///< offset of the weight tensor
  Index bias = 0;        ///< offset of the bias tensor
  bool has_bias = true;  ///< false: y = W x (the tied output projection)

  TokenShape output(const TokenShape& in) const { return in.with_features(out_features); }
};

/// y = x Wᵀ + b for every replica (x: in.features = in_features).
template <class T>
void token_linear_forward(const Exec& exec, const TokenLinear& fc, const TokenShape& in, const T* x, Params<const T> p,
                          T* y) {
  lgm::detail::require(in.features == fc.in_features, "TokenLinear (input features)", in.features,
                       "the layer's in_features " + lgm::detail::to_text(fc.in_features));
  const Index N = in.tokens(), I = fc.in_features, O = fc.out_features;
  detail::gemm_rows<T>(exec, Op::none, Op::transpose, N, O, I, T(1), x, I, N * I, p.data + fc.weight, I, p.stride, T(0),
                       y, O, N * O, in.replicas);
  if (!fc.has_bias) return;
  detail::for_each_index(exec, in.replicas * N * O, detail::AddRowBiasFn<T>{y, p.data + fc.bias, p.stride, N, O});
}

/// dW, db ← β·(dW, db) + their gradients (dW = dyᵀ x, db = Σ_n dy); dx = dy W unless dx is null.
template <class T>
void token_linear_backward(const Exec& exec, const TokenLinear& fc, const TokenShape& in, const T* x, const T* dy,
                           Params<const T> p, Params<T> dp, T* dx, T beta = T(0)) {
  const Index N = in.tokens(), I = fc.in_features, O = fc.out_features;
  detail::gemm_rows<T>(exec, Op::transpose, Op::none, O, I, N, T(1), dy, O, N * O, x, I, N * I, beta,
                       dp.data + fc.weight, I, dp.stride, in.replicas);
  if (fc.has_bias)
    detail::for_each_index(exec, in.replicas * O,
                           detail::RowBiasGradFn<T>{dy, dp.data + fc.bias, dp.stride, N, O, beta});
  if (dx == nullptr) return;
  detail::gemm_rows<T>(exec, Op::none, Op::none, N, I, O, T(1), dy, O, N * O, p.data + fc.weight, I, p.stride, T(0), dx,
                       I, N * I, in.replicas);
}

template <class T>
void gelu_forward(const Exec& exec, Index count, const T* x, T* y) {
  detail::for_each_element(exec, count, detail::GeluFn<T>{x, y});
}
/// dx = dy · GELU′(x) (x: the forward input); dx may alias dy.
template <class T>
void gelu_backward(const Exec& exec, Index count, const T* x, const T* dy, T* dx) {
  detail::for_each_element(exec, count, detail::GeluGradFn<T>{x, dy, dx});
}
/// y = a + b (the residual stream); y may alias a or b.
template <class T>
void add_forward(const Exec& exec, Index count, const T* a, const T* b, T* y) {
  detail::for_each_element(exec, count, detail::AddFn<T>{a, b, y});
}

}  // namespace lgm::gpu::nn
