// The network layers (lgm/gpu/nn/) against the independent references of nn_reference.hpp and against finite
// differences, on both systems (docs/nn.md §Tests). Every test runs M = 2 replicas with a parameter stride larger
// than the tensors, so that replica offsets are exercised everywhere.
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

using lgm::Index;
using lgm::gpu::DeviceBuffer;
using lgm::gpu::DeviceStorage;
namespace nn = lgm::gpu::nn;
namespace ref = lgm::gpu::testing::nnref;
using ref::Values;
using namespace lgm::gpu::testing::nntest;  // NOLINT(google-build-using-namespace): the tests' helpers

namespace {

struct ConvCase {
  Index cin, cout, n, h, w, k, s, pad;
};

/// Forward and backward of one convolution on device, all replicas: y, dW (params layout) and dx.
template <class T>
struct ConvRun {
  Values y, dw, dx;
};

template <class T>
ConvRun<T> run_conv(Fixture<T>& fx, const nn::Conv2d& conv, const nn::ActShape& in, const ParamLayout& pl,
                    const Values& x, const Values& w, const Values& dy) {
  const nn::ActShape out = conv.output(in);
  auto dx_ = ref::to_device<T>(x, fx.s());
  auto dw_ = ref::to_device<T>(w, fx.s());
  auto ddy = ref::to_device<T>(dy, fx.s());
  DeviceBuffer<T> y(out.size(), fx.s()), col(std::max<Index>(1, conv.col_size(in)), fx.s());
  DeviceBuffer<T> gw(pl.total(), fx.s()), gx(in.size(), fx.s());
  // the gradient buffer starts with junk outside the tensor: the layer must not touch it
  lgm::gpu::copy_to_device(gw.data(), std::vector<T>(static_cast<std::size_t>(pl.total()), T(7)).data(), gw.bytes(),
                           fx.s());
  const nn::Params<const T> p{dw_.data(), pl.stride()};
  nn::conv2d_forward<T>(fx.exec, conv, in, dx_.data(), p, y.data(), col.data());
  nn::conv2d_backward<T>(fx.exec, conv, in, dx_.data(), ddy.data(), p, nn::Params<T>{gw.data(), pl.stride()}, gx.data(),
                         col.data());
  return {ref::to_host(y, fx.s()), ref::to_host(gw, fx.s()), ref::to_host(gx, fx.s())};
}

const ConvCase kConvCases[] = {
    {3, 4, 2, 5, 6, 3, 1, 1},  // 3×3 same
    {3, 5, 2, 7, 6, 3, 2, 1},  // 3×3 stride 2, odd height
    {4, 3, 3, 4, 4, 1, 1, 0},  // 1×1 (pointwise: no im2col)
    {4, 6, 2, 5, 5, 1, 2, 0},  // 1×1 stride 2 (projection shortcut)
    {2, 3, 1, 6, 6, 3, 1, 0},  // 3×3 valid
};

/// Larger batches: on the host several image tiles a replica, chunks of more than one tile, a short last tile.
const ConvCase kTiledConvCases[] = {
    {2, 3, 37, 8, 8, 3, 1, 1},  // 4 images a tile: 10 tiles (the last of 1 image) in 8 chunks a replica
    {3, 4, 23, 9, 9, 3, 2, 1},  // stride 2, 5×5 outputs: 11 images a tile, tiles of 11, 11, 1
};

/// A convolution of a case with random weights (each replica its own), input and output gradient, drawn in this
/// order.
struct ConvSetup {
  nn::Conv2d conv;
  nn::ActShape in, out;
  ParamLayout pl;
  Values w, x, dy;

  ConvSetup(const ConvCase& c, std::mt19937_64& rng)
      : conv{c.cin, c.cout, c.k, c.s, c.pad, 3},
        in{kReplicas, c.cin, c.n, c.h, c.w},
        out(conv.output(in)),
        pl{conv.weight_size()},
        w(random_params(rng)),
        x(ref::random_values(static_cast<std::size_t>(in.size()), rng)),
        dy(ref::random_values(static_cast<std::size_t>(out.size()), rng)) {}
  /// Random values of the weight tensor, one set a replica, in the parameter layout.
  Values random_params(std::mt19937_64& rng) const {
    return pl.embed({ref::random_values(static_cast<std::size_t>(pl.size), rng),
                     ref::random_values(static_cast<std::size_t>(pl.size), rng)});
  }
};

}  // namespace

TEST_CASE_TEMPLATE("nn: conv2d forward and backward match the direct convolution, every replica", T, double, float) {
  Fixture<T> fx;
  std::mt19937_64 rng(11);
  std::vector<ConvCase> cases(std::begin(kConvCases), std::end(kConvCases));
  cases.insert(cases.end(), std::begin(kTiledConvCases), std::end(kTiledConvCases));
  for (const ConvCase& c : cases) {
    CAPTURE(c.n);
    CAPTURE(c.k);
    CAPTURE(c.s);
    CAPTURE(c.pad);
    const nn::Conv2d conv{c.cin, c.cout, c.k, c.s, c.pad, 3};
    const nn::ActShape in{kReplicas, c.cin, c.n, c.h, c.w};
    const nn::ActShape out = conv.output(in);
    const ref::ConvGeom g{c.cin, c.cout, c.n, c.h, c.w, c.k, c.s, c.pad};
    const ParamLayout pl{conv.weight_size()};
    std::vector<Values> ws{ref::random_values(static_cast<std::size_t>(pl.size), rng),
                           ref::random_values(static_cast<std::size_t>(pl.size), rng)};
    const Values x = ref::random_values(static_cast<std::size_t>(in.size()), rng);
    const Values dy = ref::random_values(static_cast<std::size_t>(out.size()), rng);
    const ConvRun<T> r = run_conv<T>(fx, conv, in, pl, x, pl.embed(ws), dy);
    for (Index m = 0; m < kReplicas; ++m) {
      CAPTURE(m);
      const auto xm =
          slice(x, static_cast<std::size_t>(m * in.per_replica()), static_cast<std::size_t>(in.per_replica()));
      const auto dym =
          slice(dy, static_cast<std::size_t>(m * out.per_replica()), static_cast<std::size_t>(out.per_replica()));
      const Values want_y = ref::conv_forward(g, xm, ws[static_cast<std::size_t>(m)]);
      Values want_dw, want_dx;
      ref::conv_backward(g, xm, ws[static_cast<std::size_t>(m)], dym, want_dw, want_dx);
      CHECK(ref::max_rel_diff(slice(r.y, static_cast<std::size_t>(m * out.per_replica()), want_y.size()), want_y) <=
            tol<T>());
      CHECK(ref::max_rel_diff(pl.replica(r.dw, m), want_dw) <= tol<T>());
      CHECK(ref::max_rel_diff(slice(r.dx, static_cast<std::size_t>(m * in.per_replica()), want_dx.size()), want_dx) <=
            tol<T>());
    }
    // outside the tensors the gradient buffer is untouched
    for (Index m = 0; m < kReplicas; ++m) {
      CHECK(r.dw[static_cast<std::size_t>(m * pl.stride())] == 7.0);
      CHECK(r.dw[static_cast<std::size_t>(m * pl.stride() + pl.offset + pl.size)] == 7.0);
    }
  }
}

TEST_CASE("nn: conv2d gradients agree with finite differences (double)") {
  Fixture<double> fx;
  std::mt19937_64 rng(12);
  for (const ConvCase& c : kConvCases) {
    CAPTURE(c.k);
    CAPTURE(c.s);
    const ConvSetup su(c, rng);
    const nn::Conv2d& conv = su.conv;  // plain references: lambdas below capture them
    const nn::ActShape& in = su.in;
    const ParamLayout& pl = su.pl;
    const Values &w = su.w, &x = su.x, &r = su.dy;  // L = Σ r·y
    const ConvRun<double> an = run_conv<double>(fx, conv, in, pl, x, w, r);
    const auto loss_w = [&](const Values& wv) { return ref::dot(run_conv<double>(fx, conv, in, pl, x, wv, r).y, r); };
    const auto loss_x = [&](const Values& xv) { return ref::dot(run_conv<double>(fx, conv, in, pl, xv, w, r).y, r); };
    std::vector<std::size_t> wc;
    for (Index m = 0; m < kReplicas; ++m)
      for (Index i = 0; i < pl.size; i += 3) wc.push_back(static_cast<std::size_t>(m * pl.stride() + pl.offset + i));
    CHECK(ref::max_rel_diff(pick(an.dw, wc), numeric_gradient(loss_w, w, wc)) <= 1e-8);
    const auto xc = all_coords(x.size());
    CHECK(ref::max_rel_diff(an.dx, numeric_gradient(loss_x, x, xc)) <= 1e-8);
  }
}

TEST_CASE_TEMPLATE("nn: conv2d backward with beta = 1 adds to the weight gradient it is given", T, double, float) {
  Fixture<T> fx;
  std::mt19937_64 rng(21);
  for (const ConvCase& c : kTiledConvCases) {
    CAPTURE(c.s);
    const ConvSetup su(c, rng);
    const auto& [conv, in, out, pl, w, x, dy] = su;
    const Values before = su.random_params(rng);
    const ConvRun<T> alone = run_conv<T>(fx, conv, in, pl, x, w, dy);
    auto dx_ = ref::to_device<T>(x, fx.s());
    auto dw_ = ref::to_device<T>(w, fx.s());
    auto ddy = ref::to_device<T>(dy, fx.s());
    auto gw = ref::to_device<T>(before, fx.s());
    DeviceBuffer<T> col(std::max<Index>(1, conv.col_size(in)), fx.s());
    nn::conv2d_backward<T>(fx.exec, conv, in, dx_.data(), ddy.data(), nn::Params<const T>{dw_.data(), pl.stride()},
                           nn::Params<T>{gw.data(), pl.stride()}, nullptr, col.data(), T(1));
    const Values got = ref::to_host(gw, fx.s());
    for (Index m = 0; m < kReplicas; ++m) {
      Values want = pl.replica(alone.dw, m);
      const Values prior = pl.replica(before, m);
      for (std::size_t i = 0; i < want.size(); ++i) want[i] += prior[i];
      CHECK(ref::max_rel_diff(pl.replica(got, m), want) <= tol<T>());
    }
  }
}

namespace {

/// Batch norm forward (train) and backward on device: y, dγ·dβ (params layout) and dx.
template <class T>
struct NormRun {
  Values y, dp, dx, running_mean, running_var;
};

template <class T>
NormRun<T> run_norm(Fixture<T>& fx, const nn::BatchNorm& bn, const nn::ActShape& in, Index groups,
                    const ParamLayout& pl, const Values& x, const Values& p, const Values& dy) {
  auto dx_ = ref::to_device<T>(x, fx.s());
  auto dp_ = ref::to_device<T>(p, fx.s());
  auto ddy = ref::to_device<T>(dy, fx.s());
  DeviceBuffer<T> y(in.size(), fx.s()), gp(pl.total(), fx.s()), gx(in.size(), fx.s());
  lgm::gpu::copy_to_device(gp.data(), std::vector<T>(static_cast<std::size_t>(pl.total()), T(7)).data(), gp.bytes(),
                           fx.s());
  auto rm = ref::to_device<T>(Values(static_cast<std::size_t>(in.replicas * in.channels), 0.5), fx.s());
  auto rv = ref::to_device<T>(Values(static_cast<std::size_t>(in.replicas * in.channels), 2.0), fx.s());
  DeviceBuffer<double> stats(nn::NormStats::size(in, groups), fx.s());
  const nn::NormStats st = nn::NormStats::at(stats.data(), in, groups);
  const nn::Params<const T> pp{dp_.data(), pl.stride()};
  nn::batchnorm_forward_train<T>(fx.exec, bn, in, groups, dx_.data(), pp, y.data(), st, rm.data(), rv.data());
  nn::batchnorm_backward<T>(fx.exec, bn, in, groups, dx_.data(), ddy.data(), pp, nn::Params<T>{gp.data(), pl.stride()},
                            gx.data(), st);
  return {ref::to_host(y, fx.s()), ref::to_host(gp, fx.s()), ref::to_host(gx, fx.s()), ref::to_host(rm, fx.s()),
          ref::to_host(rv, fx.s())};
}

}  // namespace

TEST_CASE_TEMPLATE("nn: batch norm matches the reference per replica and per micro-batch group", T, double, float) {
  Fixture<T> fx;
  std::mt19937_64 rng(13);
  const Index C = 3, N = 4, H = 3, W = 2;
  for (Index groups : {1, 2, 4}) {
    CAPTURE(groups);
    const nn::ActShape in{kReplicas, C, N, H, W};
    const ParamLayout pl{2 * C};  // γ then β
    const nn::BatchNorm bn{C, pl.offset, pl.offset + C};
    std::vector<Values> ps{ref::random_values(2 * C, rng), ref::random_values(2 * C, rng)};
    Values x = ref::random_values(static_cast<std::size_t>(in.size()), rng, 2.0);
    for (double& v : x) v += 3.0;  // a mean far from 0
    const Values dy = ref::random_values(static_cast<std::size_t>(in.size()), rng);
    // the offsets of bn are absolute in the replica's values, so the layout's offset is already in them
    ParamLayout abs{pl.size + pl.offset, 0};
    Values p(static_cast<std::size_t>(abs.total()), 0.0);
    for (Index m = 0; m < kReplicas; ++m)
      for (Index i = 0; i < 2 * C; ++i)
        p[static_cast<std::size_t>(m * abs.stride() + pl.offset + i)] =
            ps[static_cast<std::size_t>(m)][static_cast<std::size_t>(i)];
    const NormRun<T> r = run_norm<T>(fx, bn, in, groups, abs, x, p, dy);
    for (Index m = 0; m < kReplicas; ++m) {
      const Values& pm = ps[static_cast<std::size_t>(m)];
      const Values gamma = slice(pm, 0, C), beta = slice(pm, C, C);
      const auto xm =
          slice(x, static_cast<std::size_t>(m * in.per_replica()), static_cast<std::size_t>(in.per_replica()));
      const Values want = ref::batchnorm_forward(C, N, H * W, groups, xm, gamma, beta, bn.eps);
      CHECK(ref::max_rel_diff(slice(r.y, static_cast<std::size_t>(m * in.per_replica()), want.size()), want) <=
            tol<T>());
    }
    // running statistics: (1 − m)·r + m·(group-mean statistics), unbiased variance
    for (Index m = 0; m < kReplicas; ++m)
      for (Index c = 0; c < C; ++c) {
        const Index ng = N / groups, len = ng * H * W;
        double mu = 0.0, var = 0.0;
        for (Index g = 0; g < groups; ++g) {
          double s = 0.0, ss = 0.0;
          for (Index b = g * ng; b < (g + 1) * ng; ++b)
            for (Index q = 0; q < H * W; ++q)
              s += x[static_cast<std::size_t>(m * in.per_replica() + (c * N + b) * H * W + q)];
          const double gm = s / static_cast<double>(len);
          for (Index b = g * ng; b < (g + 1) * ng; ++b)
            for (Index q = 0; q < H * W; ++q) {
              const double d = x[static_cast<std::size_t>(m * in.per_replica() + (c * N + b) * H * W + q)] - gm;
              ss += d * d;
            }
          mu += gm / static_cast<double>(groups);
          var += ss / static_cast<double>(len - 1) / static_cast<double>(groups);
        }
        CHECK(r.running_mean[static_cast<std::size_t>(m * C + c)] ==
              doctest::Approx(0.9 * 0.5 + 0.1 * mu).epsilon(tol<T>() * 10));
        CHECK(r.running_var[static_cast<std::size_t>(m * C + c)] ==
              doctest::Approx(0.9 * 2.0 + 0.1 * var).epsilon(tol<T>() * 10));
      }
  }
}

TEST_CASE("nn: batch norm gradients agree with finite differences (double)") {
  Fixture<double> fx;
  std::mt19937_64 rng(14);
  const Index C = 2, N = 4, H = 2, W = 3;
  for (Index groups : {1, 2}) {
    CAPTURE(groups);
    const nn::ActShape in{kReplicas, C, N, H, W};
    const ParamLayout pl{2 * C + 3, 0};
    const nn::BatchNorm bn{C, 3, 3 + C};
    Values p = pl.embed({ref::random_values(static_cast<std::size_t>(pl.size), rng),
                         ref::random_values(static_cast<std::size_t>(pl.size), rng)});
    const Values x = ref::random_values(static_cast<std::size_t>(in.size()), rng);
    const Values r = ref::random_values(static_cast<std::size_t>(in.size()), rng);
    const NormRun<double> an = run_norm<double>(fx, bn, in, groups, pl, x, p, r);
    const auto loss_p = [&](const Values& pv) {
      return ref::dot(run_norm<double>(fx, bn, in, groups, pl, x, pv, r).y, r);
    };
    const auto loss_x = [&](const Values& xv) {
      return ref::dot(run_norm<double>(fx, bn, in, groups, pl, xv, p, r).y, r);
    };
    std::vector<std::size_t> pc;
    for (Index m = 0; m < kReplicas; ++m)
      for (Index i = 3; i < 3 + 2 * C; ++i) pc.push_back(static_cast<std::size_t>(m * pl.stride() + i));
    CHECK(ref::max_rel_diff(pick(an.dp, pc), numeric_gradient(loss_p, p, pc)) <= 1e-8);
    CHECK(ref::max_rel_diff(an.dx, numeric_gradient(loss_x, x, all_coords(x.size()))) <= 1e-8);
    CHECK(an.dp[0] == 7.0);  // not a BN parameter: untouched
  }
}

TEST_CASE_TEMPLATE("nn: batch norm in evaluation uses each replica's running statistics", T, double, float) {
  Fixture<T> fx;
  std::mt19937_64 rng(15);
  const Index C = 2, N = 3, H = 2, W = 2;
  const nn::ActShape in{kReplicas, C, N, H, W};
  const ParamLayout pl{2 * C, 0};
  const nn::BatchNorm bn{C, 0, C};
  const Values p = pl.embed({ref::random_values(2 * C, rng), ref::random_values(2 * C, rng)});
  const Values x = ref::random_values(static_cast<std::size_t>(in.size()), rng);
  const Values rm = {0.1, -0.2, 0.3, 0.4}, rv = {1.5, 0.5, 2.0, 0.25};  // [replica][channel]
  auto dx_ = ref::to_device<T>(x, fx.s());
  auto dp_ = ref::to_device<T>(p, fx.s());
  auto drm = ref::to_device<T>(rm, fx.s());
  auto drv = ref::to_device<T>(rv, fx.s());
  DeviceBuffer<T> y(in.size(), fx.s());
  DeviceBuffer<double> stats(nn::NormStats::size(in, 1), fx.s());
  nn::batchnorm_forward_eval<T>(fx.exec, bn, in, dx_.data(), nn::Params<const T>{dp_.data(), pl.stride()}, drm.data(),
                                drv.data(), y.data(), nn::NormStats::at(stats.data(), in, 1));
  const Values got = ref::to_host(y, fx.s());
  for (Index m = 0; m < kReplicas; ++m)
    for (Index c = 0; c < C; ++c)
      for (Index q = 0; q < N * H * W; ++q) {
        const std::size_t e = static_cast<std::size_t>(m * in.per_replica() + c * N * H * W + q);
        const std::size_t mc = static_cast<std::size_t>(m * C + c);
        const double gamma = p[static_cast<std::size_t>(m * pl.stride() + c)];
        const double beta = p[static_cast<std::size_t>(m * pl.stride() + C + c)];
        CHECK(got[e] == doctest::Approx(gamma * (x[e] - rm[mc]) / std::sqrt(rv[mc] + bn.eps) + beta).epsilon(tol<T>()));
      }
}

TEST_CASE_TEMPLATE("nn: linear layer, pooling, ReLU and the fused residual add match their definitions", T, double,
                   float) {
  Fixture<T> fx;
  std::mt19937_64 rng(16);
  const Index in_f = 5, out_f = 3, N = 4;
  const nn::ActShape in{kReplicas, in_f, N, 1, 1};
  const ParamLayout pl{out_f * in_f + out_f};
  const nn::Linear fc{in_f, out_f, pl.offset, pl.offset + out_f * in_f};
  ParamLayout abs{pl.size + pl.offset, 0};
  std::vector<Values> ps{ref::random_values(static_cast<std::size_t>(pl.size), rng),
                         ref::random_values(static_cast<std::size_t>(pl.size), rng)};
  Values p(static_cast<std::size_t>(abs.total()), 0.0);
  for (Index m = 0; m < kReplicas; ++m)
    for (Index i = 0; i < pl.size; ++i)
      p[static_cast<std::size_t>(m * abs.stride() + pl.offset + i)] =
          ps[static_cast<std::size_t>(m)][static_cast<std::size_t>(i)];
  const Values x = ref::random_values(static_cast<std::size_t>(in.size()), rng);
  const Values dy = ref::random_values(static_cast<std::size_t>(kReplicas * out_f * N), rng);
  auto dx_ = ref::to_device<T>(x, fx.s());
  auto dp_ = ref::to_device<T>(p, fx.s());
  auto ddy = ref::to_device<T>(dy, fx.s());
  DeviceBuffer<T> y(kReplicas * out_f * N, fx.s()), gp(abs.total(), fx.s()), gx(in.size(), fx.s());
  const nn::Params<const T> pp{dp_.data(), abs.stride()};
  nn::linear_forward<T>(fx.exec, fc, in, dx_.data(), pp, y.data());
  nn::linear_backward<T>(fx.exec, fc, in, dx_.data(), ddy.data(), pp, nn::Params<T>{gp.data(), abs.stride()},
                         gx.data());
  const Values got_y = ref::to_host(y, fx.s()), got_gp = ref::to_host(gp, fx.s()), got_gx = ref::to_host(gx, fx.s());
  for (Index m = 0; m < kReplicas; ++m) {
    const Values& pm = ps[static_cast<std::size_t>(m)];
    for (Index n = 0; n < N; ++n)
      for (Index o = 0; o < out_f; ++o) {
        double s = pm[static_cast<std::size_t>(out_f * in_f + o)];
        for (Index i = 0; i < in_f; ++i)
          s += pm[static_cast<std::size_t>(o * in_f + i)] * x[static_cast<std::size_t>(m * in_f * N + i * N + n)];
        CHECK(got_y[static_cast<std::size_t>(m * out_f * N + o * N + n)] == doctest::Approx(s).epsilon(tol<T>()));
      }
    for (Index o = 0; o < out_f; ++o) {
      double db = 0.0;
      for (Index n = 0; n < N; ++n) db += dy[static_cast<std::size_t>(m * out_f * N + o * N + n)];
      CHECK(got_gp[static_cast<std::size_t>(m * abs.stride() + pl.offset + out_f * in_f + o)] ==
            doctest::Approx(db).epsilon(tol<T>()));
      for (Index i = 0; i < in_f; ++i) {
        double dw = 0.0;
        for (Index n = 0; n < N; ++n)
          dw += dy[static_cast<std::size_t>(m * out_f * N + o * N + n)] *
                x[static_cast<std::size_t>(m * in_f * N + i * N + n)];
        CHECK(got_gp[static_cast<std::size_t>(m * abs.stride() + pl.offset + o * in_f + i)] ==
              doctest::Approx(dw).epsilon(tol<T>()));
      }
    }
    for (Index i = 0; i < in_f; ++i)
      for (Index n = 0; n < N; ++n) {
        double dxv = 0.0;
        for (Index o = 0; o < out_f; ++o)
          dxv += pm[static_cast<std::size_t>(o * in_f + i)] * dy[static_cast<std::size_t>(m * out_f * N + o * N + n)];
        CHECK(got_gx[static_cast<std::size_t>(m * in_f * N + i * N + n)] == doctest::Approx(dxv).epsilon(tol<T>()));
      }
  }

  // pooling, ReLU, add + ReLU on a [2][3][2][2][3] tensor
  const nn::ActShape a{kReplicas, 3, 2, 2, 3};
  const Values u = ref::random_values(static_cast<std::size_t>(a.size()), rng);
  const Values v = ref::random_values(static_cast<std::size_t>(a.size()), rng);
  auto du = ref::to_device<T>(u, fx.s());
  auto dv = ref::to_device<T>(v, fx.s());
  DeviceBuffer<T> pooled(nn::avg_pool_output(a).size(), fx.s()), back(a.size(), fx.s()), out(a.size(), fx.s());
  nn::avg_pool_forward<T>(fx.exec, a, du.data(), pooled.data());
  const Values got_pool = ref::to_host(pooled, fx.s());
  for (std::size_t e = 0; e < got_pool.size(); ++e) {
    double s = 0.0;
    for (std::size_t q = 0; q < 6; ++q) s += u[e * 6 + q];
    CHECK(got_pool[e] == doctest::Approx(s / 6).epsilon(tol<T>()));
  }
  nn::avg_pool_backward<T>(fx.exec, a, pooled.data(), back.data());  // dy = the pooled values
  const Values got_back = ref::to_host(back, fx.s());
  for (std::size_t e = 0; e < got_back.size(); ++e)
    CHECK(got_back[e] == doctest::Approx(got_pool[e / 6] / 6).epsilon(tol<T>()));
  nn::add_relu_forward<T>(fx.exec, a.size(), du.data(), dv.data(), out.data());
  const Values got_add = ref::to_host(out, fx.s());
  nn::relu_backward<T>(fx.exec, a.size(), out.data(), dv.data(), back.data());
  const Values got_relu_grad = ref::to_host(back, fx.s());
  nn::relu_forward<T>(fx.exec, a.size(), du.data(), out.data());
  const Values got_relu = ref::to_host(out, fx.s());
  for (std::size_t e = 0; e < u.size(); ++e) {
    const double s = static_cast<double>(static_cast<T>(u[e]) + static_cast<T>(v[e]));
    CHECK(got_add[e] == (s > 0 ? s : 0.0));
    CHECK(got_relu_grad[e] == (s > 0 ? static_cast<double>(static_cast<T>(v[e])) : 0.0));
    CHECK(got_relu[e] == (u[e] > 0 ? static_cast<double>(static_cast<T>(u[e])) : 0.0));
  }
}

TEST_CASE_TEMPLATE("nn: softmax cross-entropy matches the reference; its gradient agrees with finite differences", T,
                   double, float) {
  Fixture<T> fx;
  std::mt19937_64 rng(17);
  const Index K = 4, N = 5;
  const nn::ActShape shape{kReplicas, K, N, 1, 1};
  Values z = ref::random_values(static_cast<std::size_t>(shape.size()), rng, 3.0);
  z[0] = 800.0;  // far beyond exp's range: the max shift must keep it finite
  std::vector<Index> labels(static_cast<std::size_t>(kReplicas * N));
  for (std::size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<Index>((i * 3) % K);
  DeviceBuffer<Index> dl(static_cast<Index>(labels.size()), fx.s());
  lgm::gpu::copy_to_device(dl.data(), labels.data(), dl.bytes(), fx.s());
  const auto run = [&](const Values& zv, Values* grad, Values* means, Values* hits) {
    auto dz = ref::to_device<T>(zv, fx.s());
    DeviceBuffer<T> g(shape.size(), fx.s());
    DeviceBuffer<double> loss(kReplicas * N, fx.s()), correct(kReplicas * N, fx.s()), mean(kReplicas, fx.s());
    nn::softmax_xent<T>(fx.exec, K, shape, dz.data(), dl.data(), g.data(), loss.data(), correct.data());
    nn::replica_means(fx.exec, kReplicas, N, loss.data(), mean.data());
    if (grad != nullptr) *grad = ref::to_host(g, fx.s());
    if (hits != nullptr) *hits = ref::to_host(correct, fx.s());
    *means = ref::to_host(mean, fx.s());
  };
  Values grad, means, hits;
  run(z, &grad, &means, &hits);
  for (Index m = 0; m < kReplicas; ++m) {
    const Values zm = slice(z, static_cast<std::size_t>(m * K * N), static_cast<std::size_t>(K * N));
    const std::vector<Index> lm(labels.begin() + m * N, labels.begin() + (m + 1) * N);
    const Values zr(zm.begin(), zm.end());
    Values rounded(zr.size());
    for (std::size_t i = 0; i < zr.size(); ++i) rounded[i] = static_cast<double>(static_cast<T>(zr[i]));
    Values want_grad;
    // the reference overflows at z = 800: shift replica 0's logits of sample 0 by their max first (softmax is
    // shift-invariant per sample)
    Values shifted = rounded;
    for (Index n = 0; n < N; ++n) {
      double top = shifted[static_cast<std::size_t>(n)];
      for (Index c = 1; c < K; ++c) top = std::max(top, shifted[static_cast<std::size_t>(c * N + n)]);
      for (Index c = 0; c < K; ++c) shifted[static_cast<std::size_t>(c * N + n)] -= top;
    }
    double want = ref::softmax_xent(K, N, shifted, lm, &want_grad);
    CHECK(means[static_cast<std::size_t>(m)] == doctest::Approx(want).epsilon(1e-12));
    CHECK(ref::max_rel_diff(slice(grad, static_cast<std::size_t>(m * K * N), want_grad.size()), want_grad) <= tol<T>());
    for (Index n = 0; n < N; ++n) {
      Index arg = 0;
      for (Index c = 1; c < K; ++c)
        if (rounded[static_cast<std::size_t>(c * N + n)] > rounded[static_cast<std::size_t>(arg * N + n)]) arg = c;
      CHECK(hits[static_cast<std::size_t>(m * N + n)] == (arg == lm[static_cast<std::size_t>(n)] ? 1.0 : 0.0));
    }
  }
  if constexpr (std::is_same_v<T, double>) {
    const auto f = [&](const Values& zv) {
      Values mm;
      run(zv, nullptr, &mm, nullptr);
      return mm[0] + 2.0 * mm[1];  // both replicas at once
    };
    Values g2 = grad;
    for (std::size_t i = static_cast<std::size_t>(K * N); i < g2.size(); ++i) g2[i] *= 2.0;
    CHECK(ref::max_rel_diff(g2, numeric_gradient(f, z, all_coords(z.size()))) <= 1e-8);
  }
}

TEST_CASE("nn: M replicas in one call give, replica by replica, what each gives alone (double, 1e-12)") {
  Fixture<double> fx;
  std::mt19937_64 rng(18);
  const nn::Conv2d conv{3, 4, 3, 2, 1, 0};
  const Index M = 3;
  const nn::ActShape in{M, 3, 2, 6, 5};
  const ParamLayout pl{conv.weight_size(), 0};
  std::vector<Values> ws;
  for (Index m = 0; m < M; ++m) ws.push_back(ref::random_values(static_cast<std::size_t>(pl.size), rng));
  const Values x = ref::random_values(static_cast<std::size_t>(in.size()), rng);
  const nn::ActShape out = conv.output(in);
  const Values dy = ref::random_values(static_cast<std::size_t>(out.size()), rng);
  // all replicas at once, with the kReplicas layout generalized to M
  Values wall(static_cast<std::size_t>(M * pl.stride()), 0.0);
  for (Index m = 0; m < M; ++m)
    for (Index i = 0; i < pl.size; ++i)
      wall[static_cast<std::size_t>(m * pl.stride() + i)] =
          ws[static_cast<std::size_t>(m)][static_cast<std::size_t>(i)];
  const auto run = [&](Index replicas, const Values& xv, const Values& wv, const Values& dyv) {
    const nn::ActShape s{replicas, in.channels, in.batch, in.height, in.width};
    ParamLayout l = pl;
    Values w2 = wv;
    w2.resize(static_cast<std::size_t>(replicas * l.stride()), 0.0);
    auto dx_ = ref::to_device<double>(xv, fx.s());
    auto dw_ = ref::to_device<double>(w2, fx.s());
    auto ddy = ref::to_device<double>(dyv, fx.s());
    const nn::ActShape o = conv.output(s);
    DeviceBuffer<double> y(o.size(), fx.s()), col(conv.col_size(s), fx.s()), gw(replicas * l.stride(), fx.s()),
        gx(s.size(), fx.s());
    const nn::Params<const double> p{dw_.data(), l.stride()};
    nn::conv2d_forward<double>(fx.exec, conv, s, dx_.data(), p, y.data(), col.data());
    nn::conv2d_backward<double>(fx.exec, conv, s, dx_.data(), ddy.data(), p, nn::Params<double>{gw.data(), l.stride()},
                                gx.data(), col.data());
    return std::vector<Values>{ref::to_host(y, fx.s()), ref::to_host(gw, fx.s()), ref::to_host(gx, fx.s())};
  };
  const auto all = run(M, x, wall, dy);
  for (Index m = 0; m < M; ++m) {
    CAPTURE(m);
    const auto one =
        run(1, slice(x, static_cast<std::size_t>(m * in.per_replica()), static_cast<std::size_t>(in.per_replica())),
            ws[static_cast<std::size_t>(m)],
            slice(dy, static_cast<std::size_t>(m * out.per_replica()), static_cast<std::size_t>(out.per_replica())));
    CHECK(ref::max_rel_diff(slice(all[0], static_cast<std::size_t>(m * out.per_replica()), one[0].size()), one[0]) <=
          1e-12);
    const auto w_size = static_cast<std::size_t>(pl.size);  // the gradient buffer's slack is never written
    CHECK(ref::max_rel_diff(slice(all[1], static_cast<std::size_t>(m * pl.stride()), w_size),
                            slice(one[1], 0, w_size)) <= 1e-12);
    CHECK(ref::max_rel_diff(slice(all[2], static_cast<std::size_t>(m * in.per_replica()), one[2].size()), one[2]) <=
          1e-12);
  }
}

TEST_CASE("nn: the tensor table aligns offsets, counts parameters and rejects bad tensors") {
  nn::TensorTable t;
  CHECK(t.add("conv.weight", {16, 3, 3, 3}, nn::TensorKind::weight, 27) == 0);
  CHECK(t.add("bn.scale", {16}, nn::TensorKind::scale, 1) == 432);
  CHECK(t.add("fc.bias", {10}, nn::TensorKind::bias, 1) == 448);
  CHECK(t.dim() == 458);
  CHECK(t.parameters() == 432 + 16 + 10);
  CHECK(t.at("bn.scale").size == 16);
  CHECK(t.at("conv.weight").decays(false));
  CHECK_FALSE(t.at("fc.bias").decays(false));
  CHECK(t.at("fc.bias").decays(true));
  CHECK_THROWS_AS(t.add("bn.scale", {4}, nn::TensorKind::scale, 1), lgm::ConfigError);
  CHECK_THROWS_AS(t.add("empty", {4, 0}, nn::TensorKind::weight, 1), lgm::ConfigError);
  CHECK_THROWS_AS(t.at("missing"), lgm::ConfigError);
  CHECK_THROWS_AS(nn::Conv2d({3, 4, 3, 1, 1, 0}).output(nn::ActShape{1, 2, 1, 5, 5}), lgm::ConfigError);
}

TEST_CASE_TEMPLATE(
    "Blas: the tiled GEMM matches the definition on shapes larger than a tile, bitwise for any thread count", T, double,
    float) {
  using lgm::gpu::Op;
  Fixture<T> fx;
  std::mt19937_64 rng(19);
  struct Shape {
    Index m, n, k;
  };
  for (const Shape sh : {Shape{600, 7, 33}, Shape{9, 530, 17}, Shape{300, 300, 5}, Shape{5, 4, 0}}) {
    for (Op ta : {Op::none, Op::transpose})
      for (Op tb : {Op::none, Op::transpose}) {
        CAPTURE(sh.m);
        CAPTURE(sh.n);
        const Index lda = ta == Op::none ? sh.m : std::max<Index>(1, sh.k),
                    ldb = tb == Op::none ? std::max<Index>(1, sh.k) : sh.n;
        const Index sa = lda * (ta == Op::none ? sh.k : sh.m), sb = ldb * (tb == Op::none ? sh.n : sh.k);
        const Index sc = sh.m * sh.n, batch = 2;
        const auto a = ref::to_device<T>(
            ref::random_values(static_cast<std::size_t>(std::max<Index>(1, sa * batch)), rng), fx.s());
        const auto b = ref::to_device<T>(
            ref::random_values(static_cast<std::size_t>(std::max<Index>(1, sb * batch)), rng), fx.s());
        const Values c0 = ref::random_values(static_cast<std::size_t>(sc * batch), rng);
        const auto gemm = [&](int threads) {
#ifdef _OPENMP
          const int keep = omp_get_max_threads();
          omp_set_num_threads(threads);
#else
          (void)threads;
#endif
          auto c = ref::to_device<T>(c0, fx.s());
          fx.blas.template gemm_strided_batched<T>(ta, tb, sh.m, sh.n, sh.k, T(0.5), a.data(), lda, sa, b.data(), ldb,
                                                   sb, T(0.25), c.data(), sh.m, sc, batch);
#ifdef _OPENMP
          omp_set_num_threads(keep);
#endif
          return ref::to_host(c, fx.s());
        };
        auto want = ref::to_device<T>(c0, fx.s());
        lgm::gpu::detail::reference_gemm_strided_batched<T>(
            fx.s(),
            {ta, tb, sh.m, sh.n, sh.k, T(0.5), a.data(), lda, sa, b.data(), ldb, sb, T(0.25), want.data(), sh.m, sc},
            batch);
        const Values one = gemm(1), two = gemm(2);
        CHECK(ref::max_rel_diff(one, ref::to_host(want, fx.s())) <= (std::is_same_v<T, double> ? 1e-12 : 1e-4));
        CHECK(one == two);
      }
  }
}
