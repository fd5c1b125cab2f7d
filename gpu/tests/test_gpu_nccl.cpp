// Single-rank tests of NcclCommunicator (nccl_communicator.hpp). NCCL exists only in the CUDA build, so in the
// OpenMP build this file only checks that the header compiles to nothing; the tests run on a real GPU. With one
// rank every collective is the identity on the rank's data, which makes the host references exact.
#include "lgm/gpu/nccl_communicator.hpp"

#if LGM_GPU_CUDA

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/gpu/storage.hpp"

namespace {

using lgm::Index;
using lgm::gpu::NcclBootstrap;
using lgm::gpu::NcclCommunicator;

template <class T>
constexpr double tolerance() {
  return std::is_same_v<T, float> ? 1e-5 : 1e-12;
}

lgm::Matrix random_matrix(Index rows, Index cols, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-2.0, 2.0);
  lgm::Matrix A(rows, cols);
  for (Index c = 0; c < cols; ++c)
    for (Index r = 0; r < rows; ++r) A(r, c) = u(rng);
  return A;
}

template <class T>
lgm::gpu::DeviceMatrix<T> upload_matrix(const lgm::gpu::DeviceStorage<T>& st, const lgm::Matrix& A) {
  auto X = st.matrix(A.rows(), A.cols());
  for (Index c = 0; c < A.cols(); ++c) st.upload(A.col(c), X.col(c));
  return X;
}

template <class T>
lgm::Matrix download_matrix(const lgm::gpu::DeviceStorage<T>& st, const lgm::gpu::DeviceMatrix<T>& X) {
  lgm::Matrix A(X.rows(), X.cols());
  st.download_matrix(X, A);
  return A;
}

// Field by field: designated initializers that skip a field warn under GCC's -Wextra (missing-field-initializers).
NcclBootstrap bootstrap(int rank, int nranks, std::string id_file = {}, double timeout_s = 120.0) {
  NcclBootstrap b;
  b.rank = rank;
  b.nranks = nranks;
  b.id_file = std::move(id_file);
  b.timeout_s = timeout_s;
  return b;
}

bool close(double got, double want, double tol) { return std::abs(got - want) <= tol * (1.0 + std::abs(want)); }

// A path no earlier run can have left behind.
std::string fresh_path(const char* tag) {
  const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  return (std::filesystem::temp_directory_path() / ("lgm_nccl_test_" + std::string(tag) + "_" + std::to_string(now)))
      .string();
}

}  // namespace

TEST_CASE_TEMPLATE("nccl: one rank holds every worker", T, float, double) {
  NcclCommunicator<T> comm(4);
  CHECK(comm.size() == 4);
  CHECK(comm.local_size() == 4);
  CHECK(comm.first_worker() == 0);
  CHECK(comm.rank() == 0);
  CHECK(comm.ranks() == 1);
  CHECK(comm.nccl_comm() != nullptr);

  NcclCommunicator<T> six(6, bootstrap(0, 1));
  CHECK(six.size() == 6);
  CHECK(six.local_size() == 6);
  CHECK(six.first_worker() == 0);
}

TEST_CASE_TEMPLATE("nccl: mean of M_local = 4 columns equals the host mean", T, float, double) {
  NcclCommunicator<T> comm(4);
  auto& st = comm.storage();
  const Index d = 1000;
  const auto X = upload_matrix<T>(st, random_matrix(d, 4, 7));
  auto out = st.vector(d);
  comm.mean(X, out);

  const lgm::Matrix held = download_matrix<T>(st, X);  // the T values the device averaged
  const lgm::Vector want = held.rowwise().sum() / 4.0;
  lgm::Vector got(d);
  st.download(out, got);
  for (Index i = 0; i < d; ++i) REQUIRE(close(got[i], want[i], tolerance<T>()));

  // the mean may be written into one of the averaged columns (the sync's usual target is a separate vector,
  // but the local column mean supports the alias)
  comm.mean(X, X.col(0));
  lgm::Vector col0(d);
  st.download(X.col(0), col0);
  for (Index i = 0; i < d; ++i) REQUIRE(close(col0[i], want[i], tolerance<T>()));

  CHECK_THROWS_AS(comm.mean(lgm::gpu::DeviceMatrixView<const T>(X.data(), d, 3), out), lgm::ConfigError);
  auto short_out = st.vector(d - 1);
  CHECK_THROWS_AS(comm.mean(X, short_out), lgm::ConfigError);
}

TEST_CASE_TEMPLATE("nccl: broadcast and group_average are local", T, float, double) {
  NcclCommunicator<T> comm(4);
  auto& st = comm.storage();
  const Index d = 33;
  auto X = upload_matrix<T>(st, random_matrix(d, 4, 11));
  const lgm::Matrix before = download_matrix<T>(st, X);

  comm.group_average(X, 2);
  const lgm::Matrix after = download_matrix<T>(st, X);
  for (Index g = 0; g < 4; g += 2)
    for (Index i = 0; i < d; ++i) {
      const double want = (before(i, g) + before(i, g + 1)) / 2.0;
      REQUIRE(close(after(i, g), want, tolerance<T>()));
      REQUIRE(after(i, g + 1) == after(i, g));
    }

  CHECK_THROWS_AS(comm.group_average(X, 3), lgm::ConfigError);  // does not divide M_local = 4
  CHECK_THROWS_AS(comm.group_average(X, 0), lgm::ConfigError);
  CHECK_THROWS_AS(comm.group_average(X, 8), lgm::ConfigError);
  CHECK(download_matrix<T>(st, X) == after);  // a rejected call changes nothing

  const lgm::Vector xh = random_matrix(d, 1, 13).col(0);
  auto x = st.vector(d);
  st.upload(xh, x);
  comm.broadcast(x, X);
  lgm::Vector x_held(d);
  st.download(x, x_held);
  const lgm::Matrix all = download_matrix<T>(st, X);
  for (Index c = 0; c < 4; ++c) CHECK(all.col(c) == x_held);
}

TEST_CASE("nccl: allreduce_sum and allreduce_max over one rank are the identity") {
  NcclCommunicator<float> comm(2);
  std::vector<double> v = {1.5, -2.25, 1e300, -1e-300, 0.0, 3.0, std::numeric_limits<double>::max()};
  const std::vector<double> orig = v;
  comm.allreduce_sum(std::span<double>(v));
  CHECK(v == orig);
  comm.allreduce_max(std::span<double>(v));
  CHECK(v == orig);

  std::vector<double> big(5000);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<double>(i) * 0.25 - 17.0;
  const std::vector<double> big_orig = big;
  comm.allreduce_sum(std::span<double>(big));  // grows the scratch buffer
  CHECK(big == big_orig);
  std::vector<double> one = {42.0};
  comm.allreduce_max(std::span<double>(one));  // reuses it
  CHECK(one[0] == 42.0);

  std::vector<double> empty;
  comm.allreduce_sum(std::span<double>(empty));
  comm.allreduce_max(std::span<double>(empty));
  CHECK(empty.empty());
}

TEST_CASE("nccl: invalid configurations are rejected before NCCL is touched") {
  CHECK_THROWS_AS(NcclCommunicator<float>(0), lgm::ConfigError);
  CHECK_THROWS_AS(NcclCommunicator<float>(5, bootstrap(0, 2, "unused")),
                  lgm::ConfigError);  // M not a multiple of nranks
  CHECK_THROWS_AS(NcclCommunicator<float>(4, bootstrap(2, 2, "unused")),
                  lgm::ConfigError);  // rank out of range
  CHECK_THROWS_AS(NcclCommunicator<float>(4, bootstrap(0, 0)), lgm::ConfigError);
  CHECK_THROWS_AS(NcclCommunicator<float>(4, bootstrap(0, 2)), lgm::ConfigError);  // no file
}

TEST_CASE("nccl: bootstrap through the id file") {
  SUBCASE("one rank writes no file") {
    const std::string path = fresh_path("single");
    NcclCommunicator<float> comm(3, bootstrap(0, 1, path));
    CHECK(comm.size() == 3);
    CHECK_FALSE(std::filesystem::exists(path));
  }
  SUBCASE("the id survives the file round trip, with no temporary left") {
    const std::string path = fresh_path("roundtrip");
    ncclUniqueId id{};
    for (std::size_t i = 0; i < sizeof(id.internal); ++i) id.internal[i] = static_cast<char>(i * 7 + 1);
    lgm::gpu::detail::write_unique_id_file(id, path);
    CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
    const ncclUniqueId back = lgm::gpu::detail::read_unique_id_file(path, 1.0, 1, 2);
    CHECK(std::equal(std::begin(id.internal), std::end(id.internal), std::begin(back.internal)));
    std::filesystem::remove(path);
  }
  SUBCASE("a rank > 0 gives up after the timeout, naming the file") {
    const std::string path = fresh_path("missing");
    try {
      NcclCommunicator<float> comm(2, bootstrap(1, 2, path, 0.2));
      FAIL("expected a timeout");
    } catch (const lgm::gpu::DeviceError& e) {
      const std::string what = e.what();
      CHECK(what.find(path) != std::string::npos);
      CHECK(what.find("rank 1 of 2") != std::string::npos);
    }
  }
}

#endif  // LGM_GPU_CUDA
