// The transformer's layers (lgm/gpu/nn/token.hpp, embedding.hpp, layer_norm.hpp, attention.hpp, token_loss.hpp)
// against the independent references of token_reference.hpp, on both systems (docs/nn.md §Tests). Each test runs
// M = 2 replicas with different values and a parameter stride larger than the tensors; forward passes are
// compared with the reference replica by replica, and backward passes with central differences of the
// reference's forward pass (so the gradient is checked against code that shares nothing with the library).
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "lgm/gpu/nn/nn.hpp"
#include "lgm/gpu/storage.hpp"
#include "nn_reference.hpp"
#include "nn_test_util.hpp"
#include "token_reference.hpp"

using lgm::Index;
using lgm::gpu::DeviceBuffer;
namespace nn = lgm::gpu::nn;
namespace ref = lgm::gpu::testing::nnref;
namespace tok = lgm::gpu::testing::tokref;
using ref::Values;
using namespace lgm::gpu::testing::nntest;  // NOLINT(google-build-using-namespace): the tests' helpers

namespace {

/// Relative tolerance of a library gradient against central differences of the double reference.
template <class T>
constexpr double grad_tol() {
  return std::is_same_v<T, double> ? 1e-7 : 3e-4;
}

/// v[first, first + count) and the concatenation a ++ b.
Values part(const Values& v, Index first, Index count) {
  return slice(v, static_cast<std::size_t>(first), static_cast<std::size_t>(count));
}
Values concat(Values a, const Values& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

/// CHECKs that `grad` is the gradient of u ↦ ⟨dy, forward(u)⟩ at v (central differences).
void check_gradient(const std::function<Values(const Values&)>& forward, const Values& v, const Values& dy,
                    const Values& grad, double tolerance) {
  const auto f = [&](const Values& u) { return ref::dot(dy, forward(u)); };
  const Values numeric = numeric_gradient(f, v, all_coords(v.size()));
  CHECK(ref::max_rel_diff(grad, numeric) < tolerance);
}

/// Values of kReplicas replicas, `per` each.
Values replicas_of(Index per, std::mt19937_64& rng) {
  return ref::random_values(static_cast<std::size_t>(kReplicas * per), rng);
}

/// Every value of `all` outside replica m's [offset, offset + size) equals `junk`.
bool gaps_untouched(const Values& all, const ParamLayout& pl, double junk) {
  for (Index m = 0; m < kReplicas; ++m)
    for (Index i = 0; i < pl.stride(); ++i)
      if ((i < pl.offset || i >= pl.offset + pl.size) && all[static_cast<std::size_t>(m * pl.stride() + i)] != junk)
        return false;
  return true;
}

/// A parameter-gradient buffer of layout pl holding `junk` everywhere.
template <class T>
DeviceBuffer<T> junk_gradient(const ParamLayout& pl, double junk, lgm::gpu::StreamHandle s) {
  return ref::to_device<T>(Values(static_cast<std::size_t>(pl.total()), junk), s);
}

}  // namespace

TEST_CASE_TEMPLATE("nn token: the linear layer matches its definition per replica; gradients by differences", T, double,
                   float) {
  Fixture<T> fx;
  std::mt19937_64 rng(11);
  const Index B = 2, S = 3, I = 4, O = 5, N = B * S;
  for (const bool bias : {true, false}) {
    CAPTURE(bias);
    const ParamLayout pl{O * I + (bias ? O : 0)};
    const nn::TokenLinear fc{I, O, pl.offset, pl.offset + O * I, bias};
    const nn::TokenShape in{kReplicas, B, S, I};
    std::vector<Values> per;
    for (Index m = 0; m < kReplicas; ++m) per.push_back(ref::random_values(static_cast<std::size_t>(pl.size), rng));
    const Values params = pl.embed(per), x = replicas_of(N * I, rng), dy = replicas_of(N * O, rng);
    auto dparams = ref::to_device<T>(params, fx.s()), dx_ = ref::to_device<T>(x, fx.s());
    auto ddy = ref::to_device<T>(dy, fx.s());
    DeviceBuffer<T> y(in.replicas * N * O, fx.s()), gx(in.size(), fx.s());
    auto g = junk_gradient<T>(pl, 7.0, fx.s());
    const nn::Params<const T> p{dparams.data(), pl.stride()};
    nn::token_linear_forward<T>(fx.exec, fc, in, dx_.data(), p, y.data());
    nn::token_linear_backward<T>(fx.exec, fc, in, dx_.data(), ddy.data(), p, nn::Params<T>{g.data(), pl.stride()},
                                 gx.data());
    const Values hy = ref::to_host(y, fx.s()), hg = ref::to_host(g, fx.s()), hgx = ref::to_host(gx, fx.s());
    CHECK(gaps_untouched(hg, pl, 7.0));
    for (Index m = 0; m < kReplicas; ++m) {
      const auto forward = [&](const Values& v) {  // v = x_m ++ W ++ b
        const Values W = part(v, N * I, O * I), b = bias ? part(v, N * I + O * I, O) : Values{};
        return tok::linear(part(v, 0, N * I), W, bias ? &b : nullptr, N, I, O);
      };
      const Values v = concat(part(x, m * N * I, N * I), pl.replica(params, m));
      CHECK(ref::max_rel_diff(part(hy, m * N * O, N * O), forward(v)) < tol<T>());
      check_gradient(forward, v, part(dy, m * N * O, N * O), concat(part(hgx, m * N * I, N * I), pl.replica(hg, m)),
                     grad_tol<T>());
    }
    // β = 1 accumulates: the parameter gradient doubles
    nn::token_linear_backward<T>(fx.exec, fc, in, dx_.data(), ddy.data(), p, nn::Params<T>{g.data(), pl.stride()},
                                 nullptr, T(1));
    const Values twice = ref::to_host(g, fx.s());
    for (Index m = 0; m < kReplicas; ++m) {
      Values doubled = pl.replica(hg, m);
      for (double& d : doubled) d *= 2.0;
      CHECK(ref::max_rel_diff(pl.replica(twice, m), doubled) < tol<T>());
    }
  }
}

TEST_CASE_TEMPLATE("nn token: embedding forward, and a deterministic gather backward equal to the scatter", T, double,
                   float) {
  Fixture<T> fx;
  std::mt19937_64 rng(12);
  const Index V = 7, context = 5, B = 3, S = 4, C = 3, N = B * S;  // S < context: the last position row is unused
  const ParamLayout pl{V * C + context * C};
  const nn::Embedding emb{V, context, C, pl.offset, pl.offset + V * C};
  const nn::TokenShape shape{kReplicas, B, S, C};
  std::vector<Values> per;
  for (Index m = 0; m < kReplicas; ++m) per.push_back(ref::random_values(static_cast<std::size_t>(pl.size), rng));
  const Values params = pl.embed(per), dy = replicas_of(N * C, rng);
  std::vector<Index> ids(static_cast<std::size_t>(kReplicas * N));
  std::uniform_int_distribution<Index> pick_id(0, V - 2);  // id V − 1 never occurs: its row gets no gradient
  for (Index& t : ids) t = pick_id(rng);
  DeviceBuffer<Index> dtok(kReplicas * N, fx.s()), work(nn::embedding_workspace(shape), fx.s());
  lgm::gpu::copy_to_device(dtok.data(), ids.data(), dtok.bytes(), fx.s());
  auto dparams = ref::to_device<T>(params, fx.s()), ddy = ref::to_device<T>(dy, fx.s());
  DeviceBuffer<T> y(shape.size(), fx.s());
  auto g = junk_gradient<T>(pl, 7.0, fx.s());
  const nn::Params<const T> p{dparams.data(), pl.stride()};
  nn::embedding_forward<T>(fx.exec, emb, shape, dtok.data(), p, y.data());
  nn::embedding_backward<T>(fx.exec, emb, shape, dtok.data(), ddy.data(), nn::Params<T>{g.data(), pl.stride()},
                            work.data());
  const Values hy = ref::to_host(y, fx.s()), hg = ref::to_host(g, fx.s());
  CHECK(gaps_untouched(hg, pl, 7.0));
  for (Index m = 0; m < kReplicas; ++m) {
    const std::vector<Index> t_m(ids.begin() + m * N, ids.begin() + (m + 1) * N);
    const auto forward = [&](const Values& v) {
      return tok::embedding(t_m, part(v, 0, V * C), part(v, V * C, context * C), B, S, C);
    };
    const Values v = pl.replica(params, m), dy_m = part(dy, m * N * C, N * C), g_m = pl.replica(hg, m);
    CHECK(ref::max_rel_diff(part(hy, m * N * C, N * C), forward(v)) < tol<T>());
    CHECK(ref::max_rel_diff(part(g_m, 0, V * C), tok::embedding_token_grad(t_m, dy_m, V, C)) < tol<T>());
    check_gradient(forward, v, dy_m, g_m, grad_tol<T>());
    for (Index c = 0; c < C; ++c) {
      CHECK(g_m[static_cast<std::size_t>((V - 1) * C + c)] == 0.0);                // an id no token has
      CHECK(g_m[static_cast<std::size_t>(V * C + (context - 1) * C + c)] == 0.0);  // a position past the sequence
    }
  }
  // a sequence longer than the context is refused, naming the key
  CHECK_THROWS_WITH_AS(
      nn::embedding_forward<T>(fx.exec, emb, nn::TokenShape{kReplicas, 1, context + 1, C}, dtok.data(), p, y.data()),
      doctest::Contains("Embedding (sequence length)"), lgm::ConfigError);
}

TEST_CASE_TEMPLATE("nn token: layer norm matches the reference; its backward the Jacobian and differences", T, double,
                   float) {
  Fixture<T> fx;
  std::mt19937_64 rng(13);
  const Index B = 2, S = 3, C = 5, N = B * S;
  const ParamLayout pl{2 * C};
  const nn::LayerNorm ln{C, pl.offset, pl.offset + C, 1e-5};
  const nn::TokenShape shape{kReplicas, B, S, C};
  std::vector<Values> per;
  for (Index m = 0; m < kReplicas; ++m) {
    Values v = ref::random_values(static_cast<std::size_t>(2 * C), rng);
    for (Index c = 0; c < C; ++c) v[static_cast<std::size_t>(c)] += 1.0;  // γ near 1
    per.push_back(v);
  }
  const Values params = pl.embed(per), x = replicas_of(N * C, rng), dy = replicas_of(N * C, rng);
  auto dparams = ref::to_device<T>(params, fx.s()), dx_ = ref::to_device<T>(x, fx.s());
  auto ddy = ref::to_device<T>(dy, fx.s());
  DeviceBuffer<T> y(shape.size(), fx.s()), gx(shape.size(), fx.s());
  DeviceBuffer<double> mean(kReplicas * N, fx.s()), rstd(kReplicas * N, fx.s());
  auto g = junk_gradient<T>(pl, 7.0, fx.s());
  const nn::Params<const T> p{dparams.data(), pl.stride()};
  nn::layer_norm_forward<T>(fx.exec, ln, shape, dx_.data(), p, y.data(), mean.data(), rstd.data());
  nn::layer_norm_backward<T>(fx.exec, ln, shape, dx_.data(), ddy.data(), p, nn::Params<T>{g.data(), pl.stride()},
                             mean.data(), rstd.data(), gx.data());
  const Values hy = ref::to_host(y, fx.s()), hg = ref::to_host(g, fx.s()), hgx = ref::to_host(gx, fx.s());
  CHECK(gaps_untouched(hg, pl, 7.0));
  for (Index m = 0; m < kReplicas; ++m) {
    const auto forward = [&](const Values& v) {  // v = x_m ++ γ ++ β
      return tok::layer_norm(part(v, 0, N * C), part(v, N * C, C), part(v, N * C + C, C), N, C, 1e-5);
    };
    const Values x_m = part(x, m * N * C, N * C), dy_m = part(dy, m * N * C, N * C);
    const Values v = concat(x_m, pl.replica(params, m)), gx_m = part(hgx, m * N * C, N * C);
    CHECK(ref::max_rel_diff(part(hy, m * N * C, N * C), forward(v)) < tol<T>());
    CHECK(ref::max_rel_diff(gx_m, tok::layer_norm_input_grad(x_m, part(v, N * C, C), dy_m, N, C, 1e-5)) <
          10 * tol<T>());
    check_gradient(forward, v, dy_m, concat(gx_m, pl.replica(hg, m)), grad_tol<T>());
  }
}

TEST_CASE_TEMPLATE("nn token: GELU matches the tanh form; its derivative agrees with differences", T, double, float) {
  Fixture<T> fx;
  std::mt19937_64 rng(14);
  const Values x = ref::random_values(40, rng, 2.0), dy = ref::random_values(40, rng);
  auto dx_ = ref::to_device<T>(x, fx.s()), ddy = ref::to_device<T>(dy, fx.s());
  DeviceBuffer<T> y(40, fx.s()), gx(40, fx.s());
  nn::gelu_forward<T>(fx.exec, 40, dx_.data(), y.data());
  nn::gelu_backward<T>(fx.exec, 40, dx_.data(), ddy.data(), gx.data());
  const auto forward = [](const Values& v) {
    Values out(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) out[i] = tok::gelu(v[i]);
    return out;
  };
  CHECK(ref::max_rel_diff(ref::to_host(y, fx.s()), forward(x)) < tol<T>());
  check_gradient(forward, x, dy, ref::to_host(gx, fx.s()), grad_tol<T>());
}

TEST_CASE_TEMPLATE("nn token: causal attention matches the reference per replica and head; gradients by differences", T,
                   double, float) {
  Fixture<T> fx;
  std::mt19937_64 rng(15);
  for (const Index S : {Index{4}, Index{1}}) {
    CAPTURE(S);
    const Index B = 2, H = 2, C = 6, N = B * S;
    const nn::CausalSelfAttention attn{C, H};
    const nn::TokenShape out{kReplicas, B, S, C};
    const nn::AttentionLayout L(attn, out);
    const Values qkv = replicas_of(N * 3 * C, rng), dy = replicas_of(N * C, rng);
    auto dqkv_in = ref::to_device<T>(qkv, fx.s()), ddy = ref::to_device<T>(dy, fx.s());
    DeviceBuffer<T> saved(L.saved(), fx.s()), scratch(L.scratch(), fx.s()), y(out.size(), fx.s());
    DeviceBuffer<T> g(kReplicas * N * 3 * C, fx.s());
    nn::attention_forward<T>(fx.exec, attn, out, dqkv_in.data(), saved.data(), scratch.data(), y.data());
    nn::attention_backward<T>(fx.exec, attn, out, saved.data(), ddy.data(), scratch.data(), g.data());
    const Values hy = ref::to_host(y, fx.s()), hg = ref::to_host(g, fx.s());
    for (Index m = 0; m < kReplicas; ++m) {
      const auto forward = [&](const Values& v) { return tok::attention(v, B, S, H, C); };
      const Values v = part(qkv, m * N * 3 * C, N * 3 * C);
      CHECK(ref::max_rel_diff(part(hy, m * N * C, N * C), forward(v)) < tol<T>());
      check_gradient(forward, v, part(dy, m * N * C, N * C), part(hg, m * N * 3 * C, N * 3 * C), grad_tol<T>());
    }
  }
  // heads that do not divide the width are refused before anything is read
  CHECK_THROWS_WITH_AS(nn::attention_forward<T>(fx.exec, nn::CausalSelfAttention{6, 4}, nn::TokenShape{1, 1, 2, 6},
                                                nullptr, nullptr, nullptr, nullptr),
                       doctest::Contains("attention heads"), lgm::ConfigError);
}

TEST_CASE_TEMPLATE("nn token: the fused next-token loss matches the reference; its in-place gradient differences", T,
                   double, float) {
  Fixture<T> fx;
  std::mt19937_64 rng(16);
  const Index B = 2, S = 3, V = 5, N = B * S;
  const nn::TokenShape shape{kReplicas, B, S, V};
  const Values z = replicas_of(N * V, rng);
  std::vector<Index> targets(static_cast<std::size_t>(kReplicas * N));
  std::uniform_int_distribution<Index> pick_id(0, V - 1);
  for (Index& t : targets) t = pick_id(rng);
  DeviceBuffer<Index> dtargets(kReplicas * N, fx.s());
  lgm::gpu::copy_to_device(dtargets.data(), targets.data(), dtargets.bytes(), fx.s());
  auto logits = ref::to_device<T>(z, fx.s());
  DeviceBuffer<double> loss(kReplicas * N, fx.s());
  nn::token_xent<T>(fx.exec, shape, logits.data(), dtargets.data(), loss.data(), true);
  std::vector<double> hloss(static_cast<std::size_t>(kReplicas * N));
  lgm::gpu::copy_to_host(hloss.data(), loss.data(), loss.bytes(), fx.s());
  const Values hdz = ref::to_host(logits, fx.s());
  for (Index m = 0; m < kReplicas; ++m) {
    const std::vector<Index> t_m(targets.begin() + m * N, targets.begin() + (m + 1) * N);
    const Values z_m = part(z, m * N * V, N * V), want = tok::token_xent(z_m, t_m, V);
    CHECK(ref::max_rel_diff(part(Values(hloss.begin(), hloss.end()), m * N, N), want) < tol<T>());
    const auto mean_loss = [&](const Values& v) {  // ⟨1, mean⟩: the reference's mean loss as a 1-vector
      double s = 0.0;
      for (double l : tok::token_xent(v, t_m, V)) s += l / static_cast<double>(N);
      return Values{s};
    };
    check_gradient(mean_loss, z_m, Values{1.0}, part(hdz, m * N * V, N * V), grad_tol<T>());
  }
}

#ifdef _OPENMP
TEST_CASE("nn token: embedding and attention backward are bitwise the same for 1 and 2 threads") {
  Fixture<float> fx;
  std::mt19937_64 rng(17);
  const Index V = 11, B = 3, S = 8, C = 8, H = 2, N = B * S;
  const nn::Embedding emb{V, S, C, 0, V * C};
  const nn::TokenShape shape{kReplicas, B, S, C};
  const nn::CausalSelfAttention attn{C, H};
  const nn::AttentionLayout L(attn, shape);
  const Index d = (V + S) * C;
  const Values dy = replicas_of(N * C, rng), qkv = replicas_of(N * 3 * C, rng);
  std::vector<Index> ids(static_cast<std::size_t>(kReplicas * N));
  std::uniform_int_distribution<Index> pick_id(0, V - 1);
  for (Index& t : ids) t = pick_id(rng);
  const auto run = [&](int threads) {
    const int keep = omp_get_max_threads();
    omp_set_num_threads(threads);
    DeviceBuffer<Index> dtok(kReplicas * N, fx.s()), work(nn::embedding_workspace(shape), fx.s());
    lgm::gpu::copy_to_device(dtok.data(), ids.data(), dtok.bytes(), fx.s());
    auto ddy = ref::to_device<float>(dy, fx.s()), dq = ref::to_device<float>(qkv, fx.s());
    DeviceBuffer<float> g(kReplicas * d, fx.s()), saved(L.saved(), fx.s()), scratch(L.scratch(), fx.s());
    DeviceBuffer<float> y(shape.size(), fx.s()), gq(kReplicas * N * 3 * C, fx.s());
    nn::embedding_backward<float>(fx.exec, emb, shape, dtok.data(), ddy.data(), nn::Params<float>{g.data(), d},
                                  work.data());
    nn::attention_forward<float>(fx.exec, attn, shape, dq.data(), saved.data(), scratch.data(), y.data());
    nn::attention_backward<float>(fx.exec, attn, shape, saved.data(), ddy.data(), scratch.data(), gq.data());
    omp_set_num_threads(keep);
    return concat(ref::to_host(g, fx.s()), ref::to_host(gq, fx.s()));
  };
  CHECK(run(1) == run(2));
}
#endif
