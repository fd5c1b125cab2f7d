// The fused kernels (kernels.hpp) and the single-device communicator (communicator.hpp) against plain loops and
// lgm::InProcessCommunicator: bitwise for T = double where the arithmetic is elementwise, ~1e-12 relative for
// reductions (another summation order), ~1e-5 for T = float.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gpu_test_util.hpp"
#include "lgm/core/error.hpp"
#include "lgm/gpu/communicator.hpp"
#include "lgm/gpu/kernels.hpp"
#include "lgm/gpu/storage.hpp"

// The OpenMP build compares with InProcessCommunicator itself. nvcc's host pass runs without -fopenmp, where
// that header's `#pragma omp` lines are -Wunknown-pragmas errors (GCC 12 cannot silence them per header), so
// the CUDA build compares with a plain loop of the same arithmetic instead.
#if !LGM_GPU_CUDA
#include <omp.h>

#include "lgm/comm/in_process.hpp"
#endif

namespace {

using lgm::Index;
using lgm::gpu::DeviceMatrix;
using lgm::gpu::DeviceStorage;

using lgm::gpu::testing::random_matrix;
using lgm::gpu::testing::rounded;
using lgm::gpu::testing::to_device;
using lgm::gpu::testing::to_host;

// Bitwise for double, relative 1e-5 (to the largest entry) for float.
template <class T>
void check_close(const lgm::Matrix& got, const lgm::Matrix& want) {
  REQUIRE(got.rows() == want.rows());
  REQUIRE(got.cols() == want.cols());
  if constexpr (std::is_same_v<T, double>) {
    CHECK((got.array() == want.array()).all());
  } else {
    const double scale = std::max(want.cwiseAbs().maxCoeff(), 1e-300);
    CHECK((got - want).cwiseAbs().maxCoeff() / scale <= 1e-5);
  }
}

// The host communicator's mean and group average (in_process.hpp): columns added in order, divided by the count.
class HostReference {
 public:
  explicit HostReference(Index workers) : m_workers(workers) {}
  void mean(const lgm::Matrix& X, lgm::Vector& out) const {
#if !LGM_GPU_CUDA
    lgm::InProcessCommunicator(m_workers, 3).mean(X, out);
#else
    out = plain_mean(X, 0, X.cols());
#endif
  }
  void group_average(lgm::Matrix& X, Index group) const {
#if !LGM_GPU_CUDA
    lgm::InProcessCommunicator(m_workers, 3).group_average(X, group);
#else
    for (Index first = 0; first < X.cols(); first += group) {
      const lgm::Vector v = plain_mean(X, first, group);
      for (Index c = first; c < first + group; ++c) X.col(c) = v;
    }
#endif
  }

  static lgm::Vector plain_mean(const lgm::Matrix& X, Index first, Index count) {
    lgm::Vector out(X.rows());
    for (Index i = 0; i < X.rows(); ++i) {
      double acc = X(i, first);
      for (Index c = first + 1; c < first + count; ++c) acc += X(i, c);
      out[i] = acc / static_cast<double>(count);
    }
    return out;
  }

 private:
  Index m_workers;
};

}  // namespace

TEST_CASE_TEMPLATE("column_mean matches InProcessCommunicator's mean", T, double, float) {
  DeviceStorage<T> st;
  const Index d = 1001, M = 5;
  const lgm::Matrix X = rounded<T>(random_matrix(d, M, 1));
  const DeviceMatrix<T> Xd = to_device(st, X);
  auto out = st.vector(d);

  const HostReference host(M);
  lgm::Vector want(d);
  host.mean(X, want);
  lgm::gpu::column_mean<T>(Xd, 0, M, out, st.stream());
  lgm::Vector got(d);
  st.download(out, got);
  check_close<T>(got, rounded<T>(want));

  SUBCASE("a column range, summed in column order (plain loop)") {
    lgm::gpu::column_mean<T>(Xd, 1, 3, out, st.stream());
    st.download(out, got);
    check_close<T>(got, rounded<T>(HostReference::plain_mean(X, 1, 3)));
  }
  SUBCASE("count = 1 is bitwise the column") {
    lgm::gpu::column_mean<T>(Xd, 2, 1, out, st.stream());
    st.download(out, got);
    CHECK((got.array() == X.col(2).array()).all());
  }
  SUBCASE("out may alias the first column") {
    lgm::gpu::column_mean<T>(Xd, 0, M, Xd.col(0), st.stream());
    const lgm::Matrix after = to_host<T>(st, Xd);
    check_close<T>(after.col(0), rounded<T>(want));
    CHECK((after.rightCols(M - 1).array() == X.rightCols(M - 1).array()).all());
  }
  SUBCASE("a bad column range is rejected") {
    CHECK_THROWS_AS(lgm::gpu::column_mean<T>(Xd, 3, 3, out, st.stream()), lgm::ConfigError);
    CHECK_THROWS_AS(lgm::gpu::column_mean<T>(Xd, 0, 0, out, st.stream()), lgm::ConfigError);
  }
}

TEST_CASE_TEMPLATE("group_average matches InProcessCommunicator's group_average", T, double, float) {
  DeviceStorage<T> st;
  const Index d = 333, M = 6;
  const lgm::Matrix X = rounded<T>(random_matrix(d, M, 2));
  const HostReference host(M);
  for (Index group : {Index{1}, Index{2}, Index{3}, Index{6}}) {
    CAPTURE(group);
    DeviceMatrix<T> Xd = to_device(st, X);
    lgm::gpu::group_average<T>(Xd, group, st.stream());
    lgm::Matrix want = X;
    host.group_average(want, group);
    check_close<T>(to_host<T>(st, Xd), rounded<T>(want));
  }
  DeviceMatrix<T> Xd = to_device(st, X);
  CHECK_THROWS_AS(lgm::gpu::group_average<T>(Xd, 4, st.stream()), lgm::ConfigError);
  CHECK_THROWS_AS(lgm::gpu::group_average<T>(Xd, 0, st.stream()), lgm::ConfigError);
}

TEST_CASE_TEMPLATE("broadcast copies the vector into every column", T, double, float) {
  DeviceStorage<T> st;
  const Index d = 77, M = 4;
  const lgm::Matrix x = rounded<T>(random_matrix(d, 1, 3));
  DeviceMatrix<T> Xd = to_device(st, random_matrix(d, M, 4));
  auto xd = st.vector(d);
  st.upload(x.col(0), xd);
  lgm::gpu::broadcast<T>(xd, Xd, st.stream());
  const lgm::Matrix got = to_host<T>(st, Xd);
  for (Index m = 0; m < M; ++m) CHECK((got.col(m).array() == x.col(0).array()).all());
}

TEST_CASE_TEMPLATE("column_squared_norms and column_dots match plain loops", T, double, float) {
  DeviceStorage<T> st;
  const Index M = 3;
  for (Index d : {Index{0}, Index{1}, Index{31}, Index{32}, Index{33}, Index{1025}, Index{100003}}) {
    CAPTURE(d);
    const lgm::Matrix A = rounded<T>(random_matrix(d, M, 5));
    const lgm::Matrix B = rounded<T>(random_matrix(d, M, 6));
    const DeviceMatrix<T> Ad = to_device(st, A), Bd = to_device(st, B);
    std::vector<double> norms(M), dots(M);
    lgm::gpu::column_squared_norms(Ad.view(), std::span<double>(norms), st.stream());
    lgm::gpu::column_dots(Ad.view(), Bd.view(), std::span<double>(dots), st.stream());
    for (Index m = 0; m < M; ++m) {
      double nn = 0.0, dd = 0.0;  // products of T values are exact in double
      for (Index i = 0; i < d; ++i) {
        nn += A(i, m) * A(i, m);
        dd += A(i, m) * B(i, m);
      }
      CHECK(norms[static_cast<size_t>(m)] == doctest::Approx(nn).epsilon(1e-12));
      CHECK(dots[static_cast<size_t>(m)] == doctest::Approx(dd).epsilon(1e-12).scale(std::sqrt(nn) + 1.0));
    }
    const lgm::gpu::DeviceMatrixView<const T> Av = Ad;
    CHECK(lgm::gpu::squared_norm(Av.col(1), st.stream()) == norms[1]);
  }
  SUBCASE("the result does not depend on the thread count") {
    const lgm::Matrix A = rounded<T>(random_matrix(54321, M, 7));
    const DeviceMatrix<T> Ad = to_device(st, A);
    std::vector<double> a(M), b(M);
#if !LGM_GPU_CUDA
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    lgm::gpu::column_squared_norms(Ad.view(), std::span<double>(a), st.stream());
    omp_set_num_threads(7);
    lgm::gpu::column_squared_norms(Ad.view(), std::span<double>(b), st.stream());
    omp_set_num_threads(saved);
#else
    lgm::gpu::column_squared_norms(Ad.view(), std::span<double>(a), st.stream());
    lgm::gpu::column_squared_norms(Ad.view(), std::span<double>(b), st.stream());
#endif
    CHECK(a == b);
  }
  SUBCASE("shape and size errors") {
    const DeviceMatrix<T> Ad = to_device(st, random_matrix(10, M, 8));
    const DeviceMatrix<T> Bd = to_device(st, random_matrix(10, M + 1, 9));
    std::vector<double> out(M);
    CHECK_THROWS_AS(lgm::gpu::column_dots(Ad.view(), Bd.view(), std::span<double>(out), st.stream()), lgm::ConfigError);
    std::vector<double> small(M - 1);
    CHECK_THROWS_AS(lgm::gpu::column_squared_norms(Ad.view(), std::span<double>(small), st.stream()), lgm::ConfigError);
  }
}

TEST_CASE_TEMPLATE("all_finite finds NaN and infinity", T, double, float) {
  DeviceStorage<T> st;
  const Index d = 1000, M = 2;
  lgm::Matrix X = random_matrix(d, M, 10);
  {
    const DeviceMatrix<T> Xd = to_device(st, X);
    CHECK(lgm::gpu::all_finite(Xd.view(), st.stream()));
    CHECK(lgm::gpu::all_finite(Xd.col(1), st.stream()));
  }
  X(617, 1) = std::numeric_limits<double>::quiet_NaN();
  {
    const DeviceMatrix<T> Xd = to_device(st, X);
    CHECK_FALSE(lgm::gpu::all_finite(Xd.view(), st.stream()));
    CHECK(lgm::gpu::all_finite(Xd.col(0), st.stream()));
    CHECK_FALSE(lgm::gpu::all_finite(Xd.col(1), st.stream()));
  }
  X(617, 1) = 0.0;
  X(3, 0) = -std::numeric_limits<double>::infinity();
  const DeviceMatrix<T> Xd = to_device(st, X);
  CHECK_FALSE(lgm::gpu::all_finite(Xd.view(), st.stream()));
}

TEST_CASE_TEMPLATE("DeviceCommunicator mirrors InProcessCommunicator", T, double, float) {
  DeviceStorage<T> st;
  const Index d = 129, M = 4;
  CHECK_THROWS_AS(lgm::gpu::DeviceCommunicator<T>(0, st), lgm::ConfigError);
  lgm::gpu::DeviceCommunicator<T> comm(M, st);
  const HostReference host(M);
  CHECK(comm.size() == M);
  CHECK(comm.local_size() == M);
  CHECK(comm.first_worker() == 0);
  CHECK(&comm.storage() == &st);

  const lgm::Matrix X = rounded<T>(random_matrix(d, M, 11));
  DeviceMatrix<T> Xd = to_device(st, X);
  auto mean = st.vector(d);
  comm.mean(Xd, mean);
  lgm::Vector want(d), got(d);
  host.mean(X, want);
  st.download(mean, got);
  check_close<T>(got, rounded<T>(want));

  comm.group_average(Xd, 2);
  lgm::Matrix grouped = X;
  host.group_average(grouped, 2);
  check_close<T>(to_host<T>(st, Xd), rounded<T>(grouped));
  CHECK_THROWS_AS(comm.group_average(Xd, 3), lgm::ConfigError);

  comm.broadcast(mean, Xd);
  const lgm::Matrix all = to_host<T>(st, Xd);
  for (Index m = 0; m < M; ++m) CHECK((all.col(m).array() == got.array()).all());

  std::vector<double> v{1.5, -2.0};
  comm.allreduce_sum(v);
  comm.allreduce_max(v);
  CHECK(v == std::vector<double>{1.5, -2.0});
}
