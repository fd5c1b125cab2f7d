// The device objectives (lgm/gpu/objectives.hpp) against the host objectives they copy, worker by worker, and the
// BLAS shim (lgm/gpu/blas.hpp) against a plain loop. T = double to ~1e-12, T = float to ~1e-5.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/gpu/blas.hpp"
#include "lgm/gpu/memory_pool.hpp"
#include "lgm/gpu/objectives.hpp"
#include "lgm/gpu/storage.hpp"
#include "lgm/problems/dataset.hpp"
#include "lgm/problems/least_squares.hpp"
#include "lgm/problems/logistic.hpp"
#include "lgm/problems/softmax.hpp"

namespace {

using lgm::Index;
using lgm::Matrix;
using lgm::Vector;

template <class T>
constexpr double tolerance() {
  return std::is_same_v<T, double> ? 1e-12 : 1e-5;
}

/// |a − b| ≤ tol·max(1, |b|): relative for the O(1) and larger values of these tests.
bool close(double a, double b, double tol) { return std::abs(a - b) <= tol * std::max(1.0, std::abs(b)); }
bool close(const Vector& a, const Vector& b, double tol) { return (a - b).norm() <= tol * std::max(1.0, b.norm()); }

/// Values representable in T, so that host and device evaluate the same point.
template <class T>
Matrix round_to(Matrix m) {
  for (Index j = 0; j < m.size(); ++j) m.data()[j] = static_cast<double>(static_cast<T>(m.data()[j]));
  return m;
}

template <class T>
lgm::gpu::DeviceMatrix<T> upload(const lgm::gpu::DeviceStorage<T>& storage, const Matrix& host) {
  auto d = storage.matrix(host.rows(), host.cols());
  for (Index m = 0; m < host.cols(); ++m) storage.upload(host.col(m), d.col(m));
  return d;
}

/// Batches of the given sizes, indices drawn with repetition (as a sampler with replacement may).
std::vector<std::vector<Index>> make_batches(std::vector<Index> sizes, Index n, lgm::detail::DataRng& rng) {
  std::vector<std::vector<Index>> out;
  for (Index b : sizes) {
    std::vector<Index> batch(static_cast<std::size_t>(b));
    for (Index& i : batch) i = rng.below(n);
    out.push_back(std::move(batch));
  }
  return out;
}

/// Every device result of `Device` against the host objective, for M = 3 workers at different points with
/// batches of different sizes; then a larger batch (the workspace grows) and a repeat (the steady state allocates
/// nothing).
template <class Device, class Host>
void check_against_host(const Host& host, std::uint64_t seed) {
  using T = typename Device::value_type;
  const double tol = tolerance<T>();
  constexpr Index M = 3;
  lgm::detail::DataRng rng(seed);
  const Index d = host.dim();
  const Matrix X = round_to<T>(0.5 * rng.normal_matrix(d, M));
  const Matrix V = round_to<T>(rng.normal_matrix(d, M));

  lgm::gpu::DeviceStorage<T> storage;
  const Device dev(host, storage);
  CHECK(dev.dim() == host.dim());
  CHECK(dev.num_samples() == host.num_samples());
  auto ws = dev.make_workspace();
  auto hws = host.make_workspace();
  const auto Xd = upload(storage, X);
  const auto Vd = upload(storage, V);
  auto Gd = storage.matrix(d, M);

  for (const std::vector<Index>& sizes : {std::vector<Index>{7, 12, 4}, std::vector<Index>{20, 3, 31}}) {
    CAPTURE(sizes[0]);
    const auto owned = make_batches(sizes, host.num_samples(), rng);
    std::vector<lgm::IndexSpan> batches(owned.begin(), owned.end());

    std::vector<double> losses(M);
    dev.gradients(Xd, batches, Gd, losses, ws);
    Matrix G(d, M);
    storage.download_matrix(Gd, G);
    std::vector<lgm::SampleMoments> moments(M);
    dev.sample_moments(Xd, batches, Vd, moments, ws);
    std::vector<double> sq_sums(M);
    dev.sample_sq_norm_sums(Xd, batches, sq_sums, ws);

    Vector g(d);
    for (Index m = 0; m < M; ++m) {
      CAPTURE(m);
      const auto mu = static_cast<std::size_t>(m);
      const double host_loss = host.gradient(X.col(m), batches[mu], g, hws);
      CHECK(close(G.col(m), g, tol));
      CHECK(close(losses[mu], host_loss, tol));
      const double host_sq = host.sample_sq_norm_sum(X.col(m), batches[mu], hws);
      // ws.sq_norm_sums() is from the gradients() call above, not overwritten by the moments calls
      CHECK(close(ws.sq_norm_sums()[mu], host_sq, tol));
      CHECK(close(sq_sums[mu], host_sq, tol));
      const lgm::SampleMoments s = host.sample_moments(X.col(m), batches[mu], V.col(m), hws);
      CHECK(moments[mu].count == s.count);
      CHECK(close(moments[mu].sum_sq_norm, s.sum_sq_norm, tol));
      // Σ⟨∇f_i, v⟩ may cancel: compare on the scale of its terms, √(b Σ⟨∇f_i, v⟩²)
      const double proj_scale = std::sqrt(static_cast<double>(s.count) * s.sum_proj_sq);
      CHECK(std::abs(moments[mu].sum_proj - s.sum_proj) <= tol * std::max(1.0, proj_scale));
      CHECK(close(moments[mu].sum_proj_sq, s.sum_proj_sq, tol));
      CHECK(close(dev.loss(Xd.col(m), batches[mu], ws), host.loss(X.col(m), batches[mu], hws), tol));
    }

    // the steady state: the same shapes again allocate nothing upstream
    const std::size_t before = lgm::gpu::default_pool().stats().upstream_allocations;
    dev.gradients(Xd, batches, Gd, losses, ws);
    dev.sample_moments(Xd, batches, Vd, moments, ws);
    CHECK(lgm::gpu::default_pool().stats().upstream_allocations == before);
  }

  // an empty batch has zero moments (the host's sample_moments accepts one too)
  const std::vector<Index> one{0};
  const std::vector<lgm::IndexSpan> with_empty{lgm::IndexSpan(), one, lgm::IndexSpan()};
  std::vector<lgm::SampleMoments> moments(M);
  dev.sample_moments(Xd, with_empty, Vd, moments, ws);
  CHECK(moments[0].count == 0);
  CHECK(moments[0].sum_sq_norm == 0.0);
  CHECK(moments[1].count == 1);
  const lgm::SampleMoments s1 = host.sample_moments(X.col(1), one, V.col(1), hws);
  CHECK(close(moments[1].sum_sq_norm, s1.sum_sq_norm, tol));
}

}  // namespace

TEST_CASE_TEMPLATE("device least squares matches the host objective", T, double, float) {
  check_against_host<lgm::gpu::DeviceLeastSquares<T>>(
      lgm::LeastSquares::synthetic({.N = 80, .d = 6, .condition = 5.0, .noise = 0.3, .lambda = 0.05, .seed = 11}), 21);
  // λ = 0: no regularizer at all
  check_against_host<lgm::gpu::DeviceLeastSquares<T>>(lgm::LeastSquares::synthetic({.N = 50, .d = 4, .seed = 12}), 22);
}

TEST_CASE_TEMPLATE("device logistic regression matches the host objective", T, double, float) {
  check_against_host<lgm::gpu::DeviceLogistic<T>>(
      lgm::Logistic::synthetic({.N = 90, .d = 5, .lambda = 0.1, .signal = 3.0, .compute_optimum = false, .seed = 13}),
      23);
}

TEST_CASE_TEMPLATE("device softmax regression matches the host objective", T, double, float) {
  check_against_host<lgm::gpu::DeviceSoftmax<T>>(
      lgm::Softmax::synthetic({.N = 70, .d = 4, .classes = 3, .lambda = 0.02, .separation = 2.0, .seed = 14}), 24);
  check_against_host<lgm::gpu::DeviceSoftmax<T>>(
      lgm::Softmax::synthetic({.N = 40, .d = 5, .classes = 2, .lambda = 0.0, .seed = 15}), 25);
}

TEST_CASE("device objectives reject wrong shapes, empty batches and indices out of range") {
  const lgm::Logistic host =
      lgm::Logistic::synthetic({.N = 20, .d = 3, .lambda = 0.1, .compute_optimum = false, .seed = 16});
  lgm::gpu::DeviceStorage<double> storage;
  const lgm::gpu::DeviceLogistic<double> dev(host, storage);
  auto ws = dev.make_workspace();
  const auto X = storage.matrix(3, 2);
  auto G = storage.matrix(3, 2);
  const std::vector<Index> ok{1, 2}, bad{1, 20};
  std::vector<double> losses(2);
  const std::vector<lgm::IndexSpan> with_bad{ok, bad}, with_empty{ok, lgm::IndexSpan()}, one{ok};
  CHECK_THROWS_WITH_AS(dev.gradients(X, with_bad, G, losses, ws), doctest::Contains("batch index = 20"),
                       lgm::ConfigError);
  CHECK_THROWS_WITH_AS(dev.gradients(X, with_empty, G, losses, ws), doctest::Contains("batch size = 0"),
                       lgm::ConfigError);
  CHECK_THROWS_WITH_AS(dev.gradients(X, one, G, losses, ws), doctest::Contains("batches (count) = 1"),
                       lgm::ConfigError);
  const auto wrong = storage.matrix(4, 2);
  CHECK_THROWS_WITH_AS(dev.gradients(wrong, with_bad, G, losses, ws), doctest::Contains("X (rows) = 4"),
                       lgm::ConfigError);
}

namespace {

/// The reference: C_b = α op(A_b) op(B_b) + β C_b by the definition, in double.
template <class T>
std::vector<T> gemm_by_loop(lgm::gpu::Op ta, lgm::gpu::Op tb, Index m, Index n, Index k, double alpha,
                            const std::vector<T>& a, Index lda, Index sa, const std::vector<T>& b, Index ldb, Index sb,
                            double beta, std::vector<T> c, Index ldc, Index sc, Index batch) {
  using lgm::gpu::Op;
  for (Index q = 0; q < batch; ++q)
    for (Index j = 0; j < n; ++j)
      for (Index i = 0; i < m; ++i) {
        double s = 0.0;
        for (Index l = 0; l < k; ++l) {
          const double x = ta == Op::none ? a[static_cast<std::size_t>(q * sa + i + l * lda)]
                                          : a[static_cast<std::size_t>(q * sa + l + i * lda)];
          const double y = tb == Op::none ? b[static_cast<std::size_t>(q * sb + l + j * ldb)]
                                          : b[static_cast<std::size_t>(q * sb + j + l * ldb)];
          s += x * y;
        }
        T& out = c[static_cast<std::size_t>(q * sc + i + j * ldc)];
        out = static_cast<T>(alpha * s + (beta == 0.0 ? 0.0 : beta * static_cast<double>(out)));
      }
  return c;
}

template <class T>
std::vector<T> random_values(Index n, lgm::detail::DataRng& rng) {
  std::vector<T> v(static_cast<std::size_t>(n));
  for (T& x : v) x = static_cast<T>(rng.normal());
  return v;
}

}  // namespace

TEST_CASE_TEMPLATE("Blas::gemm_strided_batched matches a plain loop", T, double, float) {
  using lgm::gpu::Op;
  lgm::gpu::DeviceStorage<T> storage;
  const lgm::gpu::Blas blas(storage.stream());
  lgm::detail::DataRng rng(31);
  constexpr Index m = 4, n = 5, k = 6, batch = 3;
  for (Op ta : {Op::none, Op::transpose})
    for (Op tb : {Op::none, Op::transpose})
      for (double beta : {0.0, 0.5}) {
        CAPTURE(static_cast<int>(ta));
        CAPTURE(static_cast<int>(tb));
        CAPTURE(beta);
        // leading dimensions and strides with slack, as in the objectives' padded layouts
        const Index lda = (ta == Op::none ? m : k) + 2, ldb = (tb == Op::none ? k : n) + 1, ldc = m + 3;
        const Index sa = lda * (ta == Op::none ? k : m) + 5, sb = ldb * (tb == Op::none ? n : k) + 1;
        const Index sc = ldc * n + 2;
        const auto a = random_values<T>(sa * batch, rng);
        const auto b = random_values<T>(sb * batch, rng);
        const auto c0 = random_values<T>(sc * batch, rng);
        lgm::gpu::DeviceBuffer<T> da(sa * batch, storage.stream()), db(sb * batch, storage.stream()),
            dc(sc * batch, storage.stream());
        lgm::gpu::copy_to_device(da.data(), a.data(), da.bytes(), storage.stream());
        lgm::gpu::copy_to_device(db.data(), b.data(), db.bytes(), storage.stream());
        lgm::gpu::copy_to_device(dc.data(), c0.data(), dc.bytes(), storage.stream());
        blas.gemm_strided_batched<T>(ta, tb, m, n, k, T(1.5), da.data(), lda, sa, db.data(), ldb, sb,
                                     static_cast<T>(beta), dc.data(), ldc, sc, batch);
        std::vector<T> c(c0.size());
        lgm::gpu::copy_to_host(c.data(), dc.data(), dc.bytes(), storage.stream());
        const auto want = gemm_by_loop<T>(ta, tb, m, n, k, 1.5, a, lda, sa, b, ldb, sb, beta, c0, ldc, sc, batch);
        for (std::size_t e = 0; e < c.size(); ++e) {
          CAPTURE(e);
          // entries outside the m × n blocks (the slack) must be untouched
          CHECK(close(static_cast<double>(c[e]), static_cast<double>(want[e]), 10 * tolerance<T>()));
        }
      }
}
