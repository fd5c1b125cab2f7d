// Independent double-precision references of the transformer's layers (gpu/include/lgm/gpu/nn/token.hpp,
// embedding.hpp, layer_norm.hpp, attention.hpp, token_loss.hpp), one replica at a time, written the plain way:
// loops over logical indices, scatters where the library gathers, the layer norm's backward pass through its
// Jacobian. Activations are [token][feature] with token = b·T + t.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

#include "lgm/core/types.hpp"

namespace lgm::gpu::testing::tokref {

using Values = std::vector<double>;

inline std::size_t at(Index row, Index cols, Index col) { return static_cast<std::size_t>(row * cols + col); }

/// y[n][o] = Σ_i W[o][i] x[n][i] (+ b[o]).
inline Values linear(const Values& x, const Values& W, const Values* b, Index N, Index I, Index O) {
  Values y(static_cast<std::size_t>(N * O), 0.0);
  for (Index n = 0; n < N; ++n)
    for (Index o = 0; o < O; ++o) {
      double s = b != nullptr ? (*b)[static_cast<std::size_t>(o)] : 0.0;
      for (Index i = 0; i < I; ++i) s += W[at(o, I, i)] * x[at(n, I, i)];
      y[at(n, O, o)] = s;
    }
  return y;
}

/// y[(b, t)] = E[tok] + P[t].
inline Values embedding(const std::vector<Index>& tok, const Values& E, const Values& P, Index B, Index T, Index C) {
  Values y(static_cast<std::size_t>(B * T * C));
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < T; ++t)
      for (Index c = 0; c < C; ++c) {
        const Index n = b * T + t;
        y[at(n, C, c)] = E[at(tok[static_cast<std::size_t>(n)], C, c)] + P[at(t, C, c)];
      }
  return y;
}

/// dE by scatter: every token adds its gradient row to its id's row.
inline Values embedding_token_grad(const std::vector<Index>& tok, const Values& dy, Index V, Index C) {
  Values dE(static_cast<std::size_t>(V * C), 0.0);
  for (std::size_t n = 0; n < tok.size(); ++n)
    for (Index c = 0; c < C; ++c) dE[at(tok[n], C, c)] += dy[at(static_cast<Index>(n), C, c)];
  return dE;
}

/// Layer norm of each row.
inline Values layer_norm(const Values& x, const Values& g, const Values& b, Index N, Index C, double eps) {
  Values y(x.size());
  for (Index n = 0; n < N; ++n) {
    double mu = 0.0, var = 0.0;
    for (Index c = 0; c < C; ++c) mu += x[at(n, C, c)] / static_cast<double>(C);
    for (Index c = 0; c < C; ++c) var += (x[at(n, C, c)] - mu) * (x[at(n, C, c)] - mu) / static_cast<double>(C);
    for (Index c = 0; c < C; ++c)
      y[at(n, C, c)] = g[static_cast<std::size_t>(c)] * (x[at(n, C, c)] - mu) / std::sqrt(var + eps) +
                       b[static_cast<std::size_t>(c)];
  }
  return y;
}

/// dx of the layer norm through its Jacobian: ∂x̂_j/∂x_i = r (δ_ij − 1/C − x̂_i x̂_j / C).
inline Values layer_norm_input_grad(const Values& x, const Values& g, const Values& dy, Index N, Index C, double eps) {
  Values dx(x.size(), 0.0);
  for (Index n = 0; n < N; ++n) {
    double mu = 0.0, var = 0.0;
    for (Index c = 0; c < C; ++c) mu += x[at(n, C, c)] / static_cast<double>(C);
    for (Index c = 0; c < C; ++c) var += (x[at(n, C, c)] - mu) * (x[at(n, C, c)] - mu) / static_cast<double>(C);
    const double r = 1.0 / std::sqrt(var + eps);
    for (Index i = 0; i < C; ++i)
      for (Index j = 0; j < C; ++j) {
        const double xi = (x[at(n, C, i)] - mu) * r, xj = (x[at(n, C, j)] - mu) * r;
        const double J = r * ((i == j ? 1.0 : 0.0) - 1.0 / static_cast<double>(C) - xi * xj / static_cast<double>(C));
        dx[at(n, C, i)] += dy[at(n, C, j)] * g[static_cast<std::size_t>(j)] * J;
      }
  }
  return dx;
}

/// GELU, tanh form (GPT-2).
inline double gelu(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / 3.141592653589793) * (x + 0.044715 * x * x * x)));
}

/// Causal attention of the fused projection qkv [(b, t)][3C] with H heads: y [(b, t)][C].
inline Values attention(const Values& qkv, Index B, Index T, Index H, Index C) {
  const Index d = C / H;
  Values y(static_cast<std::size_t>(B * T * C), 0.0);
  const auto q = [&](Index b, Index t, Index h, Index j) { return qkv[at(b * T + t, 3 * C, h * d + j)]; };
  const auto k = [&](Index b, Index t, Index h, Index j) { return qkv[at(b * T + t, 3 * C, C + h * d + j)]; };
  const auto v = [&](Index b, Index t, Index h, Index j) { return qkv[at(b * T + t, 3 * C, 2 * C + h * d + j)]; };
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < H; ++h)
      for (Index t = 0; t < T; ++t) {
        Values w(static_cast<std::size_t>(t + 1));
        double total = 0.0;
        for (Index s = 0; s <= t; ++s) {
          double a = 0.0;
          for (Index j = 0; j < d; ++j) a += q(b, t, h, j) * k(b, s, h, j);
          w[static_cast<std::size_t>(s)] = std::exp(a / std::sqrt(static_cast<double>(d)));
          total += w[static_cast<std::size_t>(s)];
        }
        for (Index j = 0; j < d; ++j) {
          double o = 0.0;
          for (Index s = 0; s <= t; ++s) o += w[static_cast<std::size_t>(s)] / total * v(b, s, h, j);
          y[at(b * T + t, C, h * d + j)] = o;
        }
      }
  return y;
}

/// −log softmax(z_n)[y_n] of each row.
inline Values token_xent(const Values& z, const std::vector<Index>& y, Index V) {
  Values loss(y.size());
  for (std::size_t n = 0; n < y.size(); ++n) {
    double sum = 0.0;
    for (Index v = 0; v < V; ++v) sum += std::exp(z[at(static_cast<Index>(n), V, v)]);
    loss[n] = std::log(sum) - z[at(static_cast<Index>(n), V, y[n])];
  }
  return loss;
}

}  // namespace lgm::gpu::testing::tokref
