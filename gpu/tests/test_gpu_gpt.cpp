// The GPT model (lgm/gpu/nn/gpt.hpp) on both systems (docs/nn.md §Tests): its loss against a host reference
// composed of token_reference.hpp's independent layers, its whole gradient in double against central
// differences, and M replicas in one call against each replica alone.
#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "lgm/gpu/nn/gpt.hpp"
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

/// A tiny model: 2 layers, 2 heads, width 8, context 6, 11 token ids.
nn::GptSpec tiny_spec() { return {2, 2, 8, 6, 11}; }

/// Tensor `name` of one replica's parameters.
Values tensor(const nn::Gpt& g, const Values& x, const char* name) {
  const nn::TensorInfo& t = g.table().at(name);
  return slice(x, static_cast<std::size_t>(t.offset), static_cast<std::size_t>(t.size));
}

Values add(Values a, const Values& b) {
  for (std::size_t i = 0; i < a.size(); ++i) a[i] += b[i];
  return a;
}

/// The mean next-token loss of one replica, composed of the reference layers.
double reference_loss(const nn::Gpt& g, const Values& x, const std::vector<Index>& ids, const std::vector<Index>& next,
                      Index B, Index S) {
  const nn::GptSpec& sp = g.spec();
  const Index C = sp.width, N = B * S;
  const double eps = sp.ln_eps;
  Values h = tok::embedding(ids, tensor(g, x, "wte"), tensor(g, x, "wpe"), B, S, C);
  for (Index l = 0; l < sp.layers; ++l) {
    const std::string p = std::string("h").append(std::to_string(l));
    const auto T = [&](const std::string& n) { return tensor(g, x, (p + n).c_str()); };
    const Values b_qkv = T(".attn.qkv.bias"), b_proj = T(".attn.proj.bias"), b_fc = T(".mlp.fc.bias");
    const Values b_fcp = T(".mlp.proj.bias");
    const Values a = tok::layer_norm(h, T(".ln_1.weight"), T(".ln_1.bias"), N, C, eps);
    const Values qkv = tok::linear(a, T(".attn.qkv.weight"), &b_qkv, N, C, 3 * C);
    h = add(h, tok::linear(tok::attention(qkv, B, S, sp.heads, C), T(".attn.proj.weight"), &b_proj, N, C, C));
    Values f = tok::linear(tok::layer_norm(h, T(".ln_2.weight"), T(".ln_2.bias"), N, C, eps), T(".mlp.fc.weight"),
                           &b_fc, N, C, 4 * C);
    for (double& v : f) v = tok::gelu(v);
    h = add(h, tok::linear(f, T(".mlp.proj.weight"), &b_fcp, N, 4 * C, C));
  }
  const Values top = tok::layer_norm(h, tensor(g, x, "ln_f.weight"), tensor(g, x, "ln_f.bias"), N, C, eps);
  const Values logits = tok::linear(top, tensor(g, x, "wte"), nullptr, N, C, sp.vocab);
  double loss = 0.0;
  for (double v : tok::token_xent(logits, next, sp.vocab)) loss += v / static_cast<double>(N);
  return loss;
}

/// One pass of the model on device for M replicas (x: M columns of d values): per-replica losses and G.
template <class T>
struct GptRun {
  Values losses, gradient;
};

template <class T>
GptRun<T> run_gpt(Fixture<T>& fx, const nn::Gpt& g, Index M, Index B, Index S, const Values& x,
                  const std::vector<Index>& ids, const std::vector<Index>& next, bool gradient = true) {
  const nn::GptPlan p = g.plan(M, B, S);
  DeviceBuffer<T> arena(p.t_values, fx.s()), params = ref::to_device<T>(x, fx.s());
  DeviceBuffer<double> d(p.d_values, fx.s());
  DeviceBuffer<Index> i(p.i_values, fx.s());
  lgm::gpu::copy_to_device(i.data() + p.tokens, ids.data(), ids.size() * sizeof(Index), fx.s());
  lgm::gpu::copy_to_device(i.data() + p.targets, next.data(), next.size() * sizeof(Index), fx.s());
  DeviceBuffer<T> grad = ref::to_device<T>(Values(x.size(), 7.0), fx.s());
  const typename nn::Gpt::Buffers<T> b{arena.data(), d.data(), i.data()};
  const nn::Params<const T> px{params.data(), g.dim()};
  if (gradient)
    g.forward_backward<T>(fx.exec, p, px, nn::Params<T>{grad.data(), g.dim()}, b);
  else
    g.forward<T>(fx.exec, p, px, b, false);
  std::vector<double> losses(static_cast<std::size_t>(M));
  lgm::gpu::copy_to_host(losses.data(), d.data() + p.losses, losses.size() * sizeof(double), fx.s());
  return {Values(losses.begin(), losses.end()), ref::to_host(grad, fx.s())};
}

/// Random ids in [0, vocab) for M replicas of B × S tokens, and their successors (the next token of a window).
void random_tokens(Index count, Index vocab, std::mt19937_64& rng, std::vector<Index>& ids, std::vector<Index>& next) {
  std::uniform_int_distribution<Index> id(0, vocab - 1);
  ids.resize(static_cast<std::size_t>(count));
  next.resize(static_cast<std::size_t>(count));
  for (std::size_t n = 0; n < ids.size(); ++n) {
    ids[n] = id(rng);
    next[n] = id(rng);
  }
}

/// M columns of initial points perturbed per replica (so replicas differ, and biases and shifts are not 0).
Values replica_params(const nn::Gpt& g, Index M, std::mt19937_64& rng) {
  Values all;
  for (Index m = 0; m < M; ++m) {
    lgm::Vector x0 = g.initial_point(static_cast<std::uint64_t>(m + 1));
    Values v(x0.data(), x0.data() + x0.size());
    const Values noise = ref::random_values(v.size(), rng, 0.3);
    for (const nn::TensorInfo& t : g.table().tensors())
      for (Index k = 0; k < t.size; ++k)
        v[static_cast<std::size_t>(t.offset + k)] += noise[static_cast<std::size_t>(t.offset + k)];
    all.insert(all.end(), v.begin(), v.end());
  }
  return all;
}

}  // namespace

TEST_CASE_TEMPLATE("gpt: the loss of every replica matches the model composed of the reference layers", T, double,
                   float) {
  Fixture<T> fx;
  std::mt19937_64 rng(21);
  const nn::Gpt g(tiny_spec());
  const Index M = 2, B = 2, S = 5, d = g.dim();
  std::vector<Index> ids, next;
  random_tokens(M * B * S, g.spec().vocab, rng, ids, next);
  const Values x = replica_params(g, M, rng);
  const GptRun<T> r = run_gpt<T>(fx, g, M, B, S, x, ids, next, false);
  for (Index m = 0; m < M; ++m) {
    const std::vector<Index> ids_m(ids.begin() + m * B * S, ids.begin() + (m + 1) * B * S);
    const std::vector<Index> next_m(next.begin() + m * B * S, next.begin() + (m + 1) * B * S);
    const double want =
        reference_loss(g, slice(x, static_cast<std::size_t>(m * d), static_cast<std::size_t>(d)), ids_m, next_m, B, S);
    CHECK(std::abs(r.losses[static_cast<std::size_t>(m)] - want) <= 10 * tol<T>() * std::abs(want));
  }
}

TEST_CASE("gpt: the whole gradient agrees with finite differences (double); gaps are 0") {
  Fixture<double> fx;
  std::mt19937_64 rng(22);
  const nn::Gpt g(tiny_spec());
  const Index B = 2, S = 5, d = g.dim();
  std::vector<Index> ids, next;
  random_tokens(B * S, g.spec().vocab, rng, ids, next);
  const Values x = replica_params(g, 1, rng);
  const GptRun<double> r = run_gpt<double>(fx, g, 1, B, S, x, ids, next);
  // every tensor's first and last values and 150 random coordinates
  std::vector<std::size_t> coords;
  for (const nn::TensorInfo& t : g.table().tensors()) {
    coords.push_back(static_cast<std::size_t>(t.offset));
    coords.push_back(static_cast<std::size_t>(t.offset + t.size - 1));
  }
  std::uniform_int_distribution<std::size_t> any(0, static_cast<std::size_t>(d - 1));
  for (int k = 0; k < 150; ++k) coords.push_back(any(rng));
  const auto loss = [&](const Values& v) { return run_gpt<double>(fx, g, 1, B, S, v, ids, next, false).losses[0]; };
  const Values numeric = numeric_gradient(loss, x, coords);
  CHECK(ref::max_rel_diff(pick(r.gradient, coords), numeric) < 1e-7);
  Index prev = 0;
  for (const nn::TensorInfo& t : g.table().tensors()) {
    for (Index k = prev; k < t.offset; ++k) CHECK(r.gradient[static_cast<std::size_t>(k)] == 0.0);
    prev = t.offset + t.size;
  }
}

TEST_CASE("gpt: M replicas in one call give, replica by replica, what each gives alone (double, 1e-12)") {
  Fixture<double> fx;
  std::mt19937_64 rng(23);
  const nn::Gpt g(tiny_spec());
  const Index M = 3, B = 2, S = 6, d = g.dim(), per = B * S;
  std::vector<Index> ids, next;
  random_tokens(M * per, g.spec().vocab, rng, ids, next);
  const Values x = replica_params(g, M, rng);
  const GptRun<double> all = run_gpt<double>(fx, g, M, B, S, x, ids, next);
  for (Index m = 0; m < M; ++m) {
    const std::vector<Index> ids_m(ids.begin() + m * per, ids.begin() + (m + 1) * per);
    const std::vector<Index> next_m(next.begin() + m * per, next.begin() + (m + 1) * per);
    const Values x_m = slice(x, static_cast<std::size_t>(m * d), static_cast<std::size_t>(d));
    const GptRun<double> one = run_gpt<double>(fx, g, 1, B, S, x_m, ids_m, next_m);
    CHECK(std::abs(all.losses[static_cast<std::size_t>(m)] - one.losses[0]) <= 1e-12 * std::abs(one.losses[0]));
    CHECK(ref::max_rel_diff(slice(all.gradient, static_cast<std::size_t>(m * d), static_cast<std::size_t>(d)),
                            one.gradient) < 1e-12);
  }
}

TEST_CASE("gpt: presets have their published sizes; bad shapes are refused naming the key") {
  CHECK(nn::Gpt(nn::GptSpec::gpt2_124m()).table().parameters() == 124439808);  // GPT-2 small, tied head
  const Index char_params = nn::Gpt(nn::GptSpec::char_model()).table().parameters();
  CHECK(char_params > 10'000'000);
  CHECK(char_params < 11'000'000);
  CHECK_THROWS_WITH_AS(nn::Gpt(nn::GptSpec{2, 5, 64, 64, 256}), doctest::Contains("gpt heads"), lgm::ConfigError);
  CHECK_THROWS_WITH_AS(nn::Gpt(nn::GptSpec{0, 2, 64, 64, 256}), doctest::Contains("gpt layers"), lgm::ConfigError);
  const nn::Gpt g(tiny_spec());
  CHECK_THROWS_WITH_AS(g.plan(1, 2, 7), doctest::Contains("gpt sequence length"), lgm::ConfigError);
  // decay mask: the 2-D tensors (weights, tables), not biases or layer-norm parameters
  for (const nn::TensorInfo& t : g.table().tensors()) {
    CAPTURE(t.name);
    CHECK(t.decays(false) == (t.shape.size() == 2));
  }
}
