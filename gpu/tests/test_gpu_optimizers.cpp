// The device local optimizers (optimizers.hpp) against the host optimizers' step() applied per column: several
// steps for M = 3 workers, bitwise for T = double in the OpenMP build (the same operations in the same order),
// 1e-14 relative in the CUDA build (nvcc contracts a·b + c into FMAs), 1e-5 for T = float.
#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "gpu_test_util.hpp"
#include "lgm/core/error.hpp"
#include "lgm/gpu/optimizers.hpp"
#include "lgm/gpu/storage.hpp"
#include "lgm/optim/optim.hpp"

namespace {

using lgm::Index;
using lgm::gpu::DeviceMatrix;
using lgm::gpu::DeviceStorage;

using lgm::gpu::testing::random_matrix;
using lgm::gpu::testing::rounded;
using lgm::gpu::testing::to_host;
using lgm::gpu::testing::upload_matrix;

template <class T>
void check_close(const lgm::Matrix& got, const lgm::Matrix& want, const char* what, bool bitwise = true) {
  CAPTURE(what);
  REQUIRE(got.rows() == want.rows());
  REQUIRE(got.cols() == want.cols());
  const double scale = std::max(want.cwiseAbs().maxCoeff(), 1e-300);
  const double err = (got - want).cwiseAbs().maxCoeff() / scale;
  CAPTURE(err);
  if constexpr (std::is_same_v<T, double>) {
#if LGM_GPU_CUDA
    (void)bitwise;
    CHECK(err <= 1e-14);
#else
    if (bitwise)
      CHECK(err == 0.0);  // bitwise: the kernels repeat the host's operations in its order
    else
      CHECK(err <= 1e-14);  // a norm summed in another order (clipping)
#endif
  } else {
    CHECK(err <= 1e-5);
  }
}

// Runs `steps` steps of the host optimizer (per column) and of its device counterpart (all columns in one
// launch) on the same rounded data, then compares x and every averaged field.
template <class T, class HostOpt>
void compare_with_host(const HostOpt& host_opt, double weight_scale = 1.0, bool bitwise = true) {
  const Index d = 257, M = 3, steps = 6;
  std::mt19937_64 rng(42);
  DeviceStorage<T> st;
  const lgm::gpu::DeviceOptimizer<HostOpt, T> dev_opt(host_opt);
  dev_opt.validate();
  CHECK(dev_opt.name == HostOpt::name);
  CHECK(dev_opt.averaged_field_count() == host_opt.averaged_field_count());

  lgm::Matrix X = rounded<T>(random_matrix(d, M, rng, weight_scale));
  DeviceMatrix<T> Xd = st.matrix(d, M);
  upload_matrix<T>(st, X, Xd);
  DeviceMatrix<T> Gd = st.matrix(d, M);

  auto host_state = host_opt.init(d, M);
  auto dev_state = dev_opt.init(d, M, st);
  for (Index k = 0; k < steps; ++k) {
    const double lr = 0.05 / static_cast<double>(k + 1);
    const lgm::Matrix G = rounded<T>(random_matrix(d, M, rng));
    upload_matrix<T>(st, G, Gd);
    for (Index m = 0; m < M; ++m) host_opt.step(host_state, m, X.col(m), G.col(m), lr);
    dev_opt.step_all(dev_state, Xd, Gd, lr, st.stream());
    if constexpr (std::is_same_v<T, float>) X = rounded<T>(X);  // the device keeps x in float
  }
  check_close<T>(to_host<T>(st, Xd), X, "x", bitwise);

  std::vector<lgm::Matrix> host_fields, dev_fields;
  host_opt.for_each_averaged_field(host_state, [&](lgm::MatrixRef F) { host_fields.emplace_back(F); });
  dev_opt.for_each_averaged_field(dev_state,
                                  [&](lgm::gpu::DeviceMatrixView<T> F) { dev_fields.push_back(to_host<T>(st, F)); });
  REQUIRE(dev_fields.size() == host_fields.size());
  CHECK(static_cast<Index>(dev_fields.size()) == dev_opt.averaged_field_count());
  for (size_t i = 0; i < host_fields.size(); ++i)
    check_close<T>(dev_fields[i], host_fields[i], "averaged field", bitwise);
}

}  // namespace

TEST_CASE_TEMPLATE("device SGD matches lgm::SGD", T, double, float) {
  compare_with_host<T>(lgm::SGD{});
  compare_with_host<T>(lgm::SGD{.weight_decay = 0.1});
}

TEST_CASE_TEMPLATE("device HeavyBall matches lgm::HeavyBall", T, double, float) {
  compare_with_host<T>(lgm::HeavyBall{.momentum = 0.9});
  compare_with_host<T>(lgm::HeavyBall{.momentum = 0.8, .weight_decay = 0.05});
  compare_with_host<T>(lgm::HeavyBall{.momentum = 0.9, .weight_decay = 0.01, .average_momentum = true});
}

TEST_CASE_TEMPLATE("device Nesterov matches lgm::Nesterov", T, double, float) {
  compare_with_host<T>(lgm::Nesterov{.momentum = 0.9});
  compare_with_host<T>(lgm::Nesterov{.momentum = 0.7, .weight_decay = 0.05});
  compare_with_host<T>(lgm::Nesterov{.momentum = 0.9, .weight_decay = 0.01, .average_momentum = true});
}

TEST_CASE_TEMPLATE("device AdamW matches lgm::AdamW", T, double, float) {
  compare_with_host<T>(lgm::AdamW{.weight_decay = 0.0});
  compare_with_host<T>(lgm::AdamW{.weight_decay = 0.05});
  compare_with_host<T>(lgm::AdamW{.beta1 = 0.8, .beta2 = 0.99, .weight_decay = 0.1, .average_first_moment = true});
  compare_with_host<T>(lgm::AdamW{.weight_decay = 0.01, .average_second_moment = true});
  compare_with_host<T>(lgm::AdamW{.weight_decay = 0.01, .average_first_moment = true, .average_second_moment = true});
  // the decay mask of language models (every third coordinate decays) and global-norm clipping (‖g‖ ≈ 16 > 5)
  lgm::Vector mask(257);
  for (Index i = 0; i < 257; ++i) mask[i] = i % 3 == 0 ? 1.0 : 0.0;
  compare_with_host<T>(lgm::AdamW{.weight_decay = 0.1, .decay_mask = mask});
  compare_with_host<T>(
      lgm::AdamW{.weight_decay = 0.1, .average_first_moment = true, .decay_mask = mask, .max_grad_norm = 5.0}, 1.0,
      false);
}

TEST_CASE("device optimizers take the host's options, names and validation") {
  CHECK(lgm::gpu::SGD<>::name == lgm::SGD::name);
  CHECK(lgm::gpu::HeavyBall<double>::name == lgm::HeavyBall::name);
  CHECK(lgm::gpu::Nesterov<>::name == lgm::Nesterov::name);
  CHECK(lgm::gpu::AdamW<>::name == lgm::AdamW::name);

  const lgm::gpu::AdamW<> adamw(lgm::AdamW{.eps = 1e-6, .average_second_moment = true});
  CHECK(adamw.options().eps == 1e-6);
  CHECK(adamw.averaged_field_count() == 1);
  CHECK(lgm::gpu::SGD<>().averaged_field_count() == 0);
  CHECK(lgm::gpu::HeavyBall<>().averaged_field_count() == 0);  // momentum stays local by default (A8)

  CHECK_THROWS_AS(lgm::gpu::HeavyBall<>(lgm::HeavyBall{.momentum = 1.0}).validate(), lgm::ConfigError);
  CHECK_THROWS_AS(lgm::gpu::SGD<>(lgm::SGD{.weight_decay = -1.0}).validate(), lgm::ConfigError);
  CHECK_THROWS_AS(lgm::gpu::AdamW<>(lgm::AdamW{.eps = 0.0}).validate(), lgm::ConfigError);

  DeviceStorage<float> st;
  CHECK_THROWS_AS(lgm::gpu::Nesterov<>().init(0, 3, st), lgm::ConfigError);
  CHECK_THROWS_AS(lgm::gpu::Nesterov<>().init(4, 0, st), lgm::ConfigError);

  SUBCASE("fresh state is zero and the shapes are d x M") {
    auto state = lgm::gpu::AdamW<>().init(5, 3, st);
    CHECK(state.step == 0);
    CHECK(state.exp_avg.rows() == 5);
    CHECK(state.exp_avg_sq.cols() == 3);
    CHECK(to_host<float>(st, state.exp_avg).isZero(0.0));
    CHECK(to_host<float>(st, state.exp_avg_sq).isZero(0.0));
    auto hb = lgm::gpu::HeavyBall<>().init(5, 3, st);
    CHECK(to_host<float>(st, hb.momentum).isZero(0.0));
  }
  SUBCASE("a gradient of another shape is rejected") {
    const lgm::gpu::SGD<> sgd;
    auto state = sgd.init(4, 3, st);
    DeviceMatrix<float> X = st.matrix(4, 3), G = st.matrix(4, 2);
    CHECK_THROWS_AS(sgd.step_all(state, X, G, 0.1, st.stream()), lgm::ConfigError);
  }
}
