// The ResNet of lgm/gpu/nn/resnet.hpp: parameter counts against the published ones, its whole gradient against
// finite differences (double), and M replicas in one call against each replica alone (docs/nn.md §Tests).
#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "lgm/gpu/nn/resnet.hpp"
#include "lgm/gpu/storage.hpp"
#include "nn_reference.hpp"

using lgm::Index;
using lgm::gpu::DeviceBuffer;
namespace nn = lgm::gpu::nn;
namespace ref = lgm::gpu::testing::nnref;
using ref::Values;

namespace {

/// One training pass of `net` on device: returns each replica's mean loss and the gradient (d × M).
template <class T>
struct Pass {
  Values losses, grad;
};

template <class T>
Pass<T> train_pass(const nn::ResNet& net, Index replicas, Index batch, Index groups, const Values& x,
                   const Values& images, const std::vector<Index>& labels) {
  lgm::gpu::DeviceStorage<T> storage;
  const lgm::gpu::Blas blas(storage.stream());
  const nn::Exec exec{storage.stream(), &blas};
  const nn::ResNetPlan plan = net.plan(replicas, batch, groups);
  DeviceBuffer<T> t(plan.t_values, storage.stream()), g(replicas * net.dim(), storage.stream());
  DeviceBuffer<double> d(plan.d_values, storage.stream());
  DeviceBuffer<Index> i(plan.i_values, storage.stream());
  auto dx = ref::to_device<T>(x, storage.stream());
  const std::vector<T> img(images.begin(), images.end());
  lgm::gpu::copy_to_device(t.data() + plan.input, img.data(), img.size() * sizeof(T), storage.stream());
  lgm::gpu::copy_to_device(i.data() + plan.labels, labels.data(), labels.size() * sizeof(Index), storage.stream());
  nn::ResNet::Buffers<T> b{t.data(), d.data(), i.data(), nullptr, nullptr};
  net.forward_backward<T>(exec, plan, nn::Params<const T>{dx.data(), net.dim()}, nn::Params<T>{g.data(), net.dim()}, b);
  Values losses(static_cast<std::size_t>(replicas));
  lgm::gpu::copy_to_host(losses.data(), d.data() + plan.losses, losses.size() * sizeof(double), storage.stream());
  return {losses, ref::to_host(g, storage.stream())};
}

/// A tiny CIFAR-style ResNet (depth 8: one block a stage) on 1 × 6 × 6 images with 3 classes.
nn::ResNetSpec tiny(nn::Shortcut shortcut) {
  nn::ResNetSpec s = nn::ResNetSpec::cifar(8, 2, 1, 6, 3);
  s.shortcut = shortcut;
  return s;
}

struct Inputs {
  Values x, images;
  std::vector<Index> labels;
};

Inputs random_inputs(const nn::ResNet& net, Index replicas, Index batch, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  Inputs in;
  for (Index m = 0; m < replicas; ++m) {
    const lgm::Vector x0 = net.initial_point(seed + static_cast<std::uint64_t>(m));
    in.x.insert(in.x.end(), x0.data(), x0.data() + x0.size());
  }
  in.images = ref::random_values(static_cast<std::size_t>(net.input_shape(replicas, batch).size()), rng);
  for (Index k = 0; k < replicas * batch; ++k) in.labels.push_back(k % net.spec().classes);
  return in;
}

}  // namespace

TEST_CASE("resnet: parameter counts and multiply-adds match the published networks") {
  nn::ResNetSpec a = nn::ResNetSpec::cifar(20);
  a.shortcut = nn::Shortcut::padding;
  CHECK(nn::ResNet(a).table().parameters() == 269722);  // He et al.'s ResNet-20 (option A), "0.27M"
  // option B adds the two projections (16·32 + 32·64 weights) and their batch norms (2·(32 + 64))
  CHECK(nn::ResNet(nn::ResNetSpec::cifar(20)).table().parameters() == 269722 + 2560 + 192);
  CHECK(nn::ResNet(nn::ResNetSpec::resnet18()).table().parameters() == 11173962);  // the "kuangliu" ResNet-18
  nn::ResNetSpec c56 = nn::ResNetSpec::cifar(56);
  c56.shortcut = nn::Shortcut::padding;
  CHECK(nn::ResNet(c56).table().parameters() == 853018);  // ResNet-56, "0.85M"
  const double macs = nn::ResNet(a).forward_macs();
  CHECK(macs > 40.5e6);  // "≈ 41M multiply-adds" a 32×32 image
  CHECK(macs < 41.5e6);
  CHECK_THROWS_WITH_AS(nn::ResNetSpec::cifar(21), doctest::Contains("resnet depth"), lgm::ConfigError);
  CHECK_THROWS_WITH_AS(nn::ResNet(nn::ResNetSpec::cifar(20, 16, 3, 0)), doctest::Contains("resnet input height"),
                       lgm::ConfigError);
}

TEST_CASE("resnet: the whole gradient agrees with finite differences (double), both shortcuts, ghost batch norm") {
  for (nn::Shortcut sc : {nn::Shortcut::projection, nn::Shortcut::padding})
    for (Index groups : {1, 2}) {
      CAPTURE(static_cast<int>(sc));
      CAPTURE(groups);
      const nn::ResNet net(tiny(sc));
      const Index M = 2, N = 4;
      const Inputs in = random_inputs(net, M, N, 21);
      const Pass<double> an = train_pass<double>(net, M, N, groups, in.x, in.images, in.labels);
      const auto loss = [&](const Values& xv) {
        const Pass<double> p = train_pass<double>(net, M, N, groups, xv, in.images, in.labels);
        return p.losses[0] + 3.0 * p.losses[1];
      };
      std::vector<std::size_t> coords;
      Values want;
      for (std::size_t k = 0; k < in.x.size(); k += 5) {
        constexpr double h = 1e-5;
        Values up = in.x, down = in.x;
        up[k] += h;
        down[k] -= h;
        coords.push_back(k);
        want.push_back((loss(up) - loss(down)) / (2 * h));
      }
      Values got;
      for (std::size_t k : coords) got.push_back(an.grad[k] * (k >= static_cast<std::size_t>(net.dim()) ? 3.0 : 1.0));
      CHECK(ref::max_rel_diff(got, want) <= 1e-7);
      // every tensor got a gradient somewhere (no silently disconnected layer)
      for (const nn::TensorInfo& t : net.table().tensors()) {
        double s = 0.0;
        for (Index i = 0; i < t.size; ++i) s += std::abs(an.grad[static_cast<std::size_t>(t.offset + i)]);
        CAPTURE(t.name);
        CHECK(s > 0.0);
      }
    }
}

TEST_CASE("resnet: M replicas in one call give, replica by replica, what each gives alone (double, 1e-12)") {
  const nn::ResNet net(tiny(nn::Shortcut::projection));
  const Index M = 3, N = 4;
  const Inputs in = random_inputs(net, M, N, 22);
  const Pass<double> all = train_pass<double>(net, M, N, 1, in.x, in.images, in.labels);
  const std::size_t d = static_cast<std::size_t>(net.dim()), img = static_cast<std::size_t>(net.sample_values() * N);
  for (Index m = 0; m < M; ++m) {
    CAPTURE(m);
    const std::size_t mu = static_cast<std::size_t>(m);
    const Values x(in.x.begin() + static_cast<std::ptrdiff_t>(mu * d),
                   in.x.begin() + static_cast<std::ptrdiff_t>((mu + 1) * d));
    const Values im(in.images.begin() + static_cast<std::ptrdiff_t>(mu * img),
                    in.images.begin() + static_cast<std::ptrdiff_t>((mu + 1) * img));
    const std::vector<Index> lb(in.labels.begin() + m * N, in.labels.begin() + (m + 1) * N);
    const Pass<double> one = train_pass<double>(net, 1, N, 1, x, im, lb);
    CHECK(all.losses[mu] == doctest::Approx(one.losses[0]).epsilon(1e-12));
    const Values gm(all.grad.begin() + static_cast<std::ptrdiff_t>(mu * d),
                    all.grad.begin() + static_cast<std::ptrdiff_t>((mu + 1) * d));
    CHECK(ref::max_rel_diff(gm, one.grad) <= 1e-12);
  }
}

TEST_CASE_TEMPLATE("resnet: float and double passes agree to float precision", T, float) {
  const nn::ResNet net(tiny(nn::Shortcut::projection));
  const Index M = 2, N = 4;
  const Inputs in = random_inputs(net, M, N, 23);
  const Pass<double> want = train_pass<double>(net, M, N, 1, in.x, in.images, in.labels);
  const Pass<T> got = train_pass<T>(net, M, N, 1, in.x, in.images, in.labels);
  CHECK(got.losses[0] == doctest::Approx(want.losses[0]).epsilon(1e-5));
  CHECK(ref::max_rel_diff(got.grad, want.grad) <= 1e-4);
}
