// Checkpoint and resume of device runs (docs/driver.md §Checkpoint and resume): a ResNet run with augmentation,
// averaged batch-norm statistics and momentum, and a GPT run under AdamW, saved at a sync and resumed by a fresh
// method and a fresh objective, give bitwise the uninterrupted run's parameters, counters and running statistics.
#include <doctest/doctest.h>

#include <lgm/lgm.hpp>
#include <optional>
#include <vector>

#include "lgm/gpu/gpu.hpp"
#include "lgm/gpu/nn/image_classifier.hpp"
#include "lgm/gpu/nn/language_model.hpp"

using namespace lgm;
namespace nn = lgm::gpu::nn;

namespace {

ClassificationData small_images(Index n) {
  detail::DataRng rng(4);
  ClassificationData d{Matrix(2 * 6 * 6, n), std::vector<Index>(static_cast<std::size_t>(n)), 3};
  for (Index i = 0; i < n; ++i) {
    d.labels[static_cast<std::size_t>(i)] = i % 3;
    for (Index p = 0; p < d.features.rows(); ++p) d.features(p, i) = rng.normal() + 0.3 * static_cast<double>(i % 3);
  }
  return d;
}

TokenData small_text() {
  TokenData t;
  for (int i = 0; i < 600; ++i) t.tokens.push_back(static_cast<std::uint16_t>("abcab cabbage "[i % 14]));
  return t;
}

struct Saver {
  Index save_at = -1;
  std::optional<RunSnapshot> snapshot{};
  std::vector<Vector> points{};
  bool on_sync(const RunState& s) {
    points.emplace_back(s.shared_point);
    if (s.round != save_at) return true;
    snapshot = s.snapshot();
    return false;
  }
};

std::vector<float> host_copy(const gpu::DeviceBuffer<float>& b) {
  std::vector<float> out(static_cast<std::size_t>(b.count()));
  gpu::copy_to_host(out.data(), b.data(), out.size() * sizeof(float), gpu::StreamHandle{});
  return out;
}

}  // namespace

TEST_CASE("gpu checkpoint: a ResNet run with augmentation and averaged batch-norm statistics resumes bitwise") {
  using Method =
      LocalMethod<gpu::DeviceOptimizer<HeavyBall, float>, ConstantSync, ConstantBatch, ConstantLr, IidSampler>;
  auto make = [] {
    return Method({.workers = 2, .max_steps = 12}, gpu::DeviceOptimizer<HeavyBall, float>(HeavyBall{.momentum = 0.9}),
                  ConstantSync{2}, ConstantBatch{6}, ConstantLr{.lr = 0.05}, IidSampler(7));
  };
  const auto data = small_images(48);
  const nn::ResNet net(nn::ResNetSpec::cifar(8, 2, 2, 6, 3));
  const nn::ImageClassifierOptions opt{.bn_sync = nn::BatchNormSync::averaged, .augment = true, .pad = 1, .seed = 3};
  const Vector x0 = net.initial_point(1);

  gpu::DeviceStorage<float> st1;
  const nn::ImageClassifier<float> whole_obj(net, data, st1, opt);
  gpu::DeviceCommunicator<float> comm1(2, st1);
  Saver whole;
  auto m1 = make();
  const RunResult full = m1.run_with(comm1, whole_obj, x0, whole);

  gpu::DeviceStorage<float> st2;
  const nn::ImageClassifier<float> first_obj(net, data, st2, opt);
  gpu::DeviceCommunicator<float> comm2(2, st2);
  Saver first{.save_at = 2};
  auto m2 = make();
  (void)m2.run_with(comm2, first_obj, x0, first);
  REQUIRE(first.snapshot.has_value());

  gpu::DeviceStorage<float> st3;
  const nn::ImageClassifier<float> rest_obj(net, data, st3, opt);
  gpu::DeviceCommunicator<float> comm3(2, st3);
  Saver rest;
  auto m3 = make();
  const RunResult resumed = m3.resume_with(comm3, rest_obj, x0, *first.snapshot, rest);
  CHECK(resumed.x == full.x);
  CHECK(resumed.metrics.steps == full.metrics.steps);
  CHECK(resumed.metrics.samples == full.metrics.samples);
  REQUIRE(rest.points.size() + 3 == whole.points.size());
  CHECK(rest.points.back() == whole.points.back());
  st1.synchronize();
  st3.synchronize();
  CHECK(host_copy(rest_obj.running_mean()) == host_copy(whole_obj.running_mean()));
  CHECK(host_copy(rest_obj.running_var()) == host_copy(whole_obj.running_var()));
}

TEST_CASE("gpu checkpoint: a GPT run under AdamW resumes bitwise") {
  using Method =
      LocalMethod<gpu::DeviceOptimizer<AdamW, float>, ConstantSync, ConstantBatch, WarmupCosineLr, IidSampler>;
  auto make = [] {
    return Method({.workers = 2, .max_steps = 9}, gpu::DeviceOptimizer<AdamW, float>(AdamW{.weight_decay = 0.1}),
                  ConstantSync{3}, ConstantBatch{3}, WarmupCosineLr{.peak = 0.01, .warmup = 2, .total = 9},
                  IidSampler(5));
  };
  const TokenData text = small_text();
  const nn::Gpt gpt(nn::GptSpec{1, 2, 8, 8, 128});
  const Vector x0 = gpt.initial_point(2);
  auto run = [&](const RunSnapshot* from, Saver& saver) {
    gpu::DeviceStorage<float> st;
    const nn::LanguageModel<float> obj(gpt, text, st);
    gpu::DeviceCommunicator<float> comm(2, st);
    auto m = make();
    return from ? m.resume_with(comm, obj, x0, *from, saver) : m.run_with(comm, obj, x0, saver);
  };
  Saver whole, first{.save_at = 0}, rest;
  const RunResult full = run(nullptr, whole);
  (void)run(nullptr, first);
  REQUIRE(first.snapshot.has_value());
  const RunResult resumed = run(&*first.snapshot, rest);
  CHECK(resumed.x == full.x);
  CHECK(resumed.metrics.sim_time_s == full.metrics.sim_time_s);
  CHECK(rest.points.size() + 1 == whole.points.size());
}
