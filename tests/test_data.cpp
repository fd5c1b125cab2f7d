// Data readers (lgm/data/): IDX files written here (gzip through zlib, and raw) are read back byte for byte; every
// error (missing, truncated, corrupt, bad magic, bad header, trailing bytes, mismatched counts) is provoked on a
// small file and its message checked; LIBSVM files likewise, with the FILE:LINE of each error. The prediction
// functions (Softmax/Mlp predict and accuracy, binary_accuracy) are checked against explicit loops.
#include <doctest/doctest.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <lgm/data/data.hpp>
#include <lgm/problems/mlp.hpp>
#include <lgm/problems/softmax.hpp>
#include <limits>
#include <new>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "data_error_within.hpp"
#include "skip.hpp"

namespace {

namespace fs = std::filesystem;
using lgm::Index;
using lgm::Matrix;
using lgm::Vector;
using Bytes = std::vector<std::uint8_t>;

/// A fresh directory under the system's temp directory, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
    m_path = fs::temp_directory_path() / ("lgm_test_data_" + std::to_string(stamp) + "_" +
                                          std::to_string(std::random_device{}()) + "_" + std::to_string(counter++));
    fs::create_directories(m_path);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(m_path, ec);
  }
  fs::path operator/(const std::string& name) const { return m_path / name; }
  const fs::path& path() const { return m_path; }

 private:
  fs::path m_path;
};

void write_raw(const fs::path& file, const Bytes& bytes) {
  std::ofstream out(file, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

void write_gz(const fs::path& file, const Bytes& bytes) {
  gzFile f = gzopen(file.string().c_str(), "wb");
  REQUIRE(f != nullptr);
  if (!bytes.empty()) REQUIRE(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())) == int(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

Bytes read_raw(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void put_u32(Bytes& b, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<std::uint8_t>(v >> shift));
}

/// An IDX file's bytes: magic, the sizes, then the data.
Bytes idx_bytes(std::uint32_t magic, const std::vector<std::uint32_t>& dims, const Bytes& data) {
  Bytes b;
  put_u32(b, magic);
  for (std::uint32_t d : dims) put_u32(b, d);
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

Bytes pattern(std::size_t n, unsigned mul = 7, unsigned add = 3) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>((i * mul + add) % 256);
  return b;
}

Bytes random_bytes(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  Bytes b(n);
  for (auto& v : b) v = static_cast<std::uint8_t>(rng() >> 24);
  return b;
}

/// The message of the DataError that f throws ("" and a failed check when it throws none).
template <class F>
std::string data_error_of(F&& f) {
  try {
    f();
  } catch (const lgm::DataError& e) {
    return e.what();
  }
  FAIL_CHECK("no lgm::DataError thrown");
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

#define CHECK_CONTAINS(message, part) CHECK_MESSAGE(contains(message, part), "message: ", message)

void write_text(const fs::path& file, const std::string& text) {
  std::ofstream out(file, std::ios::binary);
  out << text;
  REQUIRE(out.good());
}

}  // namespace

TEST_CASE("data: idx round trip, gzip and raw") {
  TempDir dir;
  const Bytes images = pattern(2 * 3 * 4);
  const Bytes labels = {0, 9, 255};
  write_gz(dir / "images.gz", idx_bytes(0x00000803, {2, 3, 4}, images));
  write_raw(dir / "images.raw", idx_bytes(0x00000803, {2, 3, 4}, images));
  write_gz(dir / "labels.gz", idx_bytes(0x00000801, {3}, labels));
  for (const char* name : {"images.gz", "images.raw"}) {
    const lgm::IdxArray a = lgm::read_idx(dir / name);
    CHECK(a.dims == std::vector<Index>{2, 3, 4});
    CHECK(a.data == images);
  }
  const lgm::IdxArray l = lgm::read_idx(dir / "labels.gz");
  CHECK(l.dims == std::vector<Index>{3});
  CHECK(l.data == labels);
  // An empty first dimension is a valid (empty) array.
  write_gz(dir / "empty.gz", idx_bytes(0x00000803, {0, 28, 28}, {}));
  const lgm::IdxArray e = lgm::read_idx(dir / "empty.gz");
  CHECK(e.dims == std::vector<Index>{0, 28, 28});
  CHECK(e.data.empty());
}

TEST_CASE("data: idx missing, truncated and corrupt files") {
  TempDir dir;
  std::string m = data_error_of([&] { lgm::read_idx(dir / "nothing-here.gz"); });
  CHECK_CONTAINS(m, "cannot open");
  CHECK_CONTAINS(m, "nothing-here.gz");

  // A gzip file cut in half: random data do not compress, so the cut falls inside the data.
  const Bytes data = random_bytes(5000, 1);
  write_gz(dir / "full.gz", idx_bytes(0x00000801, {5000}, data));
  Bytes gz = read_raw(dir / "full.gz");
  gz.resize(gz.size() / 2);
  write_raw(dir / "half.gz", gz);
  m = data_error_of([&] { lgm::read_idx(dir / "half.gz"); });
  CHECK_CONTAINS(m, "half.gz");
  CHECK_CONTAINS(m, "truncated: expected 5000 bytes of data for [5000], got ");
  CHECK_CONTAINS(m, "unexpected end of file");

  // Only the 8-byte gzip trailer (CRC, length) cut off: all data arrive but the stream is incomplete.
  gz = read_raw(dir / "full.gz");
  gz.resize(gz.size() - 8);
  write_raw(dir / "no-trailer.gz", gz);
  m = data_error_of([&] { lgm::read_idx(dir / "no-trailer.gz"); });
  CHECK_CONTAINS(m, "no-trailer.gz: corrupt or unreadable gzip stream after the data (zlib: unexpected end of file)");

  // A raw file cut inside the data, and one cut inside the header.
  Bytes raw = idx_bytes(0x00000803, {2, 3, 4}, pattern(24));
  raw.resize(raw.size() - 14);
  write_raw(dir / "cut.raw", raw);
  m = data_error_of([&] { lgm::read_idx(dir / "cut.raw"); });
  CHECK_CONTAINS(m, "cut.raw: truncated: expected 24 bytes of data for [2, 3, 4], got 10");
  write_raw(dir / "header.raw", Bytes{0, 0, 8, 3, 0, 0});
  m = data_error_of([&] { lgm::read_idx(dir / "header.raw"); });
  CHECK_CONTAINS(m, "header.raw: truncated: the file ends inside the header (size of dimension 0)");
  write_raw(dir / "empty.raw", Bytes{});
  m = data_error_of([&] { lgm::read_idx(dir / "empty.raw"); });
  CHECK_CONTAINS(m, "empty.raw: truncated: the file ends inside the header (magic number)");

  // Random bytes (not gzip, so read as they are): the magic number is wrong.
  write_raw(dir / "random.bin", random_bytes(1000, 7));
  m = data_error_of([&] { lgm::read_idx(dir / "random.bin"); });
  CHECK_CONTAINS(m, "random.bin: bad magic number 0x");
  CHECK_CONTAINS(m, "expected 0x0000TTDD");

  // A gzip header followed by random bytes: zlib's own error.
  gz = read_raw(dir / "full.gz");
  const Bytes noise = random_bytes(gz.size() - 10, 3);
  std::copy(noise.begin(), noise.end(), gz.begin() + 10);
  write_raw(dir / "corrupt.gz", gz);
  m = data_error_of([&] { lgm::read_idx(dir / "corrupt.gz"); });
  CHECK_CONTAINS(m, "corrupt.gz: corrupt or unreadable gzip stream while reading the header (zlib: invalid ");
}

TEST_CASE("data: idx bad headers and trailing bytes") {
  TempDir dir;
  write_gz(dir / "magic.gz", idx_bytes(0x12340803, {1}, {0}));
  std::string m = data_error_of([&] { lgm::read_idx(dir / "magic.gz"); });
  CHECK_CONTAINS(m, "magic.gz: bad magic number 0x12340803 (expected 0x0000TTDD");

  write_gz(dir / "float.gz", idx_bytes(0x00000D01, {1}, {0, 0, 0, 0}));
  m = data_error_of([&] { lgm::read_idx(dir / "float.gz"); });
  CHECK_CONTAINS(m, "float.gz: unsupported IDX data type 0x0d (float, magic 0x00000d01)");

  write_gz(dir / "nodims.gz", idx_bytes(0x00000800, {}, {}));
  m = data_error_of([&] { lgm::read_idx(dir / "nodims.gz"); });
  CHECK_CONTAINS(m, "nodims.gz: unsupported number of dimensions 0");

  // A header describing 2^33 bytes must be rejected before anything is allocated.
  write_gz(dir / "huge.gz", idx_bytes(0x00000803, {65536, 65536, 2}, {}));
  m = data_error_of([&] { lgm::read_idx(dir / "huge.gz"); });
  CHECK_CONTAINS(m, "huge.gz: header sizes [65536, 65536, ...] describe more than 2^31 bytes");
  write_gz(dir / "huge4.gz", idx_bytes(0x00000804, {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}, {}));
  m = data_error_of([&] { lgm::read_idx(dir / "huge4.gz"); });
  CHECK_CONTAINS(m, "describe more than 2^31 bytes");

  Bytes b = idx_bytes(0x00000801, {4}, {1, 2, 3, 4});
  b.insert(b.end(), {9, 9, 9});
  write_gz(dir / "trailing.gz", b);
  m = data_error_of([&] { lgm::read_idx(dir / "trailing.gz"); });
  CHECK_CONTAINS(m, "trailing.gz: 3 trailing bytes after the 4 bytes of data that the header [4] describes");

  // A plain file's size is checked against the header before the data are read: extra bytes too.
  write_raw(dir / "trailing.raw", b);
  m = data_error_of([&] { lgm::read_idx(dir / "trailing.raw"); });
  CHECK_CONTAINS(m, "trailing.raw: 3 trailing bytes after the 4 bytes of data that the header [4] describes");
}

#if defined(__linux__)
namespace {

using lgm::test::data_error_within;

}  // namespace

TEST_CASE("data: idx header claiming 2.1 GB in a tiny file allocates nothing big (issue 12 item 9)") {
  // A 116-byte pair: the headers claim 2739000 images (2147376000 bytes, under the 2^31 cap) and their labels,
  // the files hold 50 and 42 bytes of data. Truncation must be reported without allocating the claimed 2.1 GB.
  TempDir dir;
  const Bytes images = idx_bytes(0x803, {2739000, 28, 28}, pattern(50));
  const Bytes labels = idx_bytes(0x801, {2739000}, pattern(42, 1, 0));
  REQUIRE(images.size() + labels.size() == 116);
  constexpr std::size_t headroom = std::size_t{256} << 20;
  const std::string expected = "truncated: expected 2147376000 bytes of data for [2739000, 28, 28], got 50";
  for (const bool gz : {false, true}) {
    CAPTURE(gz);
    const fs::path sub = dir / (gz ? "gz" : "raw");
    fs::create_directories(sub);
    const auto write = [&](const std::string& name, const Bytes& bytes) {
      if (gz)
        write_gz(sub / name, bytes);
      else
        write_raw(sub / name, bytes);
    };
    write("train-images-idx3-ubyte.gz", images);
    write("train-labels-idx1-ubyte.gz", labels);
    write("t10k-images-idx3-ubyte.gz", images);
    write("t10k-labels-idx1-ubyte.gz", labels);
    std::string what =
        data_error_within(headroom, expected, [&] { lgm::read_idx(sub / "train-images-idx3-ubyte.gz"); });
    CHECK_MESSAGE(what.empty(), "read_idx: ", what);
    what = data_error_within(headroom, expected, [&] { lgm::load_fashion_mnist({.dir = sub}); });
    CHECK_MESSAGE(what.empty(), "load_fashion_mnist: ", what);
    what = data_error_within(headroom, expected, [&] { lgm::load_fashion_mnist({.dir = sub, .train_limit = 1}); });
    CHECK_MESSAGE(what.empty(), "load_fashion_mnist with train_limit = 1: ", what);
  }
}
#endif

namespace {

/// Writes the four Fashion-MNIST files with n_train / n_test images of side × side pixels and the given labels.
void write_fake_fashion(const TempDir& dir, const std::vector<std::uint8_t>& train_labels,
                        const std::vector<std::uint8_t>& test_labels, Index n_train, Index n_test,
                        std::uint32_t side = 28) {
  const auto pixels = [&](Index n, unsigned add) { return pattern(static_cast<std::size_t>(n) * side * side, 7, add); };
  write_gz(dir / "train-images-idx3-ubyte.gz",
           idx_bytes(0x803, {static_cast<std::uint32_t>(n_train), side, side}, pixels(n_train, 3)));
  write_gz(dir / "t10k-images-idx3-ubyte.gz",
           idx_bytes(0x803, {static_cast<std::uint32_t>(n_test), side, side}, pixels(n_test, 5)));
  write_gz(dir / "train-labels-idx1-ubyte.gz",
           idx_bytes(0x801, {static_cast<std::uint32_t>(train_labels.size())}, train_labels));
  write_gz(dir / "t10k-labels-idx1-ubyte.gz",
           idx_bytes(0x801, {static_cast<std::uint32_t>(test_labels.size())}, test_labels));
}

}  // namespace

TEST_CASE("data: fashion-mnist loader on small fake files") {
  TempDir dir;
  write_fake_fashion(dir, {3, 0, 9}, {1, 2}, 3, 2);
  const Bytes train_pixels = pattern(3 * 784, 7, 3), test_pixels = pattern(2 * 784, 7, 5);

  lgm::TrainTestData d = lgm::load_fashion_mnist({.dir = dir.path()});
  REQUIRE(d.train.features.rows() == 784);
  REQUIRE(d.train.features.cols() == 3);
  REQUIRE(d.test.features.cols() == 2);
  CHECK(d.train.classes == 10);
  CHECK(d.test.classes == 10);
  CHECK(d.train.labels == std::vector<Index>{3, 0, 9});
  CHECK(d.test.labels == std::vector<Index>{1, 2});
  bool same = true;
  for (Index i = 0; i < 3; ++i)
    for (Index j = 0; j < 784; ++j)
      same = same && d.train.features(j, i) == train_pixels[std::size_t(i * 784 + j)] / 255.0;
  for (Index i = 0; i < 2; ++i)
    for (Index j = 0; j < 784; ++j)
      same = same && d.test.features(j, i) == test_pixels[std::size_t(i * 784 + j)] / 255.0;
  CHECK(same);

  // Limits take the first samples; bias appends a row of ones.
  d = lgm::load_fashion_mnist({.dir = dir.path(), .train_limit = 2, .test_limit = 1, .bias = true});
  REQUIRE(d.train.features.rows() == 785);
  CHECK(d.train.features.cols() == 2);
  CHECK(d.test.features.cols() == 1);
  CHECK(d.train.labels == std::vector<Index>{3, 0});
  CHECK(d.train.features.row(784).isOnes());
  CHECK(d.train.features(5, 1) == train_pixels[784 + 5] / 255.0);

  CHECK_THROWS_WITH_AS(lgm::load_fashion_mnist({.dir = dir.path(), .train_limit = 4}),
                       ("invalid train_limit = 4 (accepted: 0 (all) or an integer in [1, 3], the samples in " +
                        (dir / "train-images-idx3-ubyte.gz").string() + ")")
                           .c_str(),
                       lgm::ConfigError);
  CHECK_THROWS_AS(lgm::load_fashion_mnist({.dir = dir.path(), .test_limit = -1}), lgm::ConfigError);
}

TEST_CASE("data: fashion-mnist loader errors name the file") {
  {
    TempDir dir;  // 3 images, 2 labels
    write_fake_fashion(dir, {3, 0}, {1, 2}, 3, 2);
    const std::string m = data_error_of([&] { lgm::load_fashion_mnist({.dir = dir.path()}); });
    CHECK_CONTAINS(m, "train-labels-idx1-ubyte.gz: 2 labels for the 3 images of ");
    CHECK_CONTAINS(m, "train-images-idx3-ubyte.gz (the counts must match)");
  }
  {
    TempDir dir;  // a label of 10
    write_fake_fashion(dir, {3, 0}, {1, 10}, 2, 2);
    const std::string m = data_error_of([&] { lgm::load_fashion_mnist({.dir = dir.path()}); });
    CHECK_CONTAINS(m, "t10k-labels-idx1-ubyte.gz: invalid label[1] = 10 (accepted: 0 to 9)");
  }
  {
    TempDir dir;  // 27 × 27 images
    write_fake_fashion(dir, {3, 0}, {1, 2}, 2, 2, 27);
    const std::string m = data_error_of([&] { lgm::load_fashion_mnist({.dir = dir.path()}); });
    CHECK_CONTAINS(m, "train-images-idx3-ubyte.gz: images of 27 x 27 pixels (accepted: 28 x 28)");
  }
  {
    TempDir dir;  // labels and images swapped
    write_fake_fashion(dir, {3, 0}, {1, 2}, 2, 2);
    fs::rename(dir / "t10k-labels-idx1-ubyte.gz", dir / "tmp.gz");
    fs::rename(dir / "t10k-images-idx3-ubyte.gz", dir / "t10k-labels-idx1-ubyte.gz");
    fs::rename(dir / "tmp.gz", dir / "t10k-images-idx3-ubyte.gz");
    const std::string m = data_error_of([&] { lgm::load_fashion_mnist({.dir = dir.path()}); });
    CHECK_CONTAINS(m,
                   "t10k-images-idx3-ubyte.gz: expected an image file (magic 0x00000803, 3 dimensions [n, 28, 28]), "
                   "found 1 dimensions (magic 0x00000801)");
  }
  {
    TempDir dir;  // a missing file in an existing directory; then a missing directory
    write_fake_fashion(dir, {3, 0}, {1, 2}, 2, 2);
    fs::remove(dir / "t10k-labels-idx1-ubyte.gz");
    std::string m = data_error_of([&] { lgm::load_fashion_mnist({.dir = dir.path()}); });
    CHECK_CONTAINS(m, "cannot open " + (dir / "t10k-labels-idx1-ubyte.gz").string() + ": no such file");
    m = data_error_of([&] { lgm::load_fashion_mnist({.dir = dir / "absent"}); });
    CHECK_CONTAINS(m, "train-images-idx3-ubyte.gz: no such file");
    CHECK_CONTAINS(m, "install the Debian package dataset-fashion-mnist");
  }
}

TEST_CASE("data: fashion-mnist truncated or padded files are refused with a limit too (issue 12 item 5)") {
  // The training images cut after 30000 of the 60000 images the header declares, as a valid gzip stream.
  TempDir dir;
  write_fake_fashion(dir, std::vector<std::uint8_t>(60000, 1), {1, 2}, 30000, 2);
  write_gz(dir / "train-images-idx3-ubyte.gz", idx_bytes(0x803, {60000, 28, 28}, pattern(std::size_t{30000} * 784)));
  const std::string cut =
      "train-images-idx3-ubyte.gz: truncated: expected 47040000 bytes of data for [60000, 28, 28], "
      "got 23520000";
  for (const Index limit : {Index{0}, Index{1000}, Index{30000}}) {
    CAPTURE(limit);
    const std::string m = data_error_of([&] { lgm::load_fashion_mnist({.dir = dir.path(), .train_limit = limit}); });
    CHECK_CONTAINS(m, cut);
  }
  // The same file with the gzip stream itself cut (no trailer): zlib's reason is added.
  Bytes gz = read_raw(dir / "train-images-idx3-ubyte.gz");
  gz.resize(gz.size() - 8);
  write_raw(dir / "train-images-idx3-ubyte.gz", gz);
  std::string m = data_error_of([&] { lgm::load_fashion_mnist({.dir = dir.path(), .train_limit = 10}); });
  CHECK_CONTAINS(m, "train-images-idx3-ubyte.gz: ");
  CHECK_CONTAINS(m, "unexpected end of file");

  // Small files: a truncated label file, trailing bytes, and a plain (not gzip) truncated image file.
  TempDir small;
  write_fake_fashion(small, {3, 0, 9, 1}, {1, 2}, 4, 2);
  write_gz(small / "train-labels-idx1-ubyte.gz", idx_bytes(0x801, {4}, {3, 0}));
  m = data_error_of([&] { lgm::load_fashion_mnist({.dir = small.path(), .train_limit = 2}); });
  CHECK_CONTAINS(m, "train-labels-idx1-ubyte.gz: truncated: expected 4 bytes of data for [4], got 2");
  write_gz(small / "train-labels-idx1-ubyte.gz", idx_bytes(0x801, {4}, {3, 0, 9, 1, 7}));
  m = data_error_of([&] { lgm::load_fashion_mnist({.dir = small.path(), .train_limit = 2}); });
  CHECK_CONTAINS(m, "train-labels-idx1-ubyte.gz: 1 trailing bytes after the 4 bytes of data that the header [4]");
  write_gz(small / "train-labels-idx1-ubyte.gz", idx_bytes(0x801, {4}, {3, 0, 9, 1}));
  write_raw(small / "t10k-images-idx3-ubyte.gz", idx_bytes(0x803, {2, 28, 28}, pattern(784 + 5)));
  m = data_error_of([&] { lgm::load_fashion_mnist({.dir = small.path(), .test_limit = 1}); });
  CHECK_CONTAINS(m, "t10k-images-idx3-ubyte.gz: truncated: expected 1568 bytes of data for [2, 28, 28], got 789");
  // Whole files still load with a limit.
  write_raw(small / "t10k-images-idx3-ubyte.gz", idx_bytes(0x803, {2, 28, 28}, pattern(2 * 784, 7, 5)));
  const lgm::TrainTestData d = lgm::load_fashion_mnist({.dir = small.path(), .train_limit = 2, .test_limit = 1});
  CHECK(d.train.labels == std::vector<Index>{3, 0});
  CHECK(d.test.features.cols() == 1);
}

TEST_CASE("data: idx reader reads a prefix once, within the declared items") {
  TempDir dir;
  write_gz(dir / "labels.gz", idx_bytes(0x801, {4}, {5, 6, 7, 8}));
  lgm::detail::IdxReader reader(dir / "labels.gz");
  CHECK_THROWS_AS((void)reader.read_items(5), lgm::ConfigError);
  CHECK_THROWS_AS((void)reader.read_items(-1), lgm::ConfigError);
  const lgm::IdxArray a = reader.read_items(2);
  CHECK(a.dims == std::vector<Index>{2});
  CHECK(a.data == Bytes{5, 6});
  CHECK_THROWS_AS((void)reader.read_items(1), std::logic_error);
}

TEST_CASE("data: fashion-mnist class names") {
  CHECK(std::string(lgm::fashion_mnist_class_name(0)) == "T-shirt/top");
  CHECK(std::string(lgm::fashion_mnist_class_name(9)) == "Ankle boot");
  CHECK_THROWS_WITH_AS(lgm::fashion_mnist_class_name(10), "invalid label = 10 (accepted: an integer in [0, 9])",
                       lgm::ConfigError);
}

TEST_CASE("data: fashion-mnist real test set (dataset-fashion-mnist)") {
  const lgm::FashionMnistOptions opt;
  if (!fs::exists(opt.dir / "t10k-images-idx3-ubyte.gz") || !fs::exists(opt.dir / "train-images-idx3-ubyte.gz")) {
    lgm::test::skip("Fashion-MNIST not found in " + opt.dir.string() + " (Debian package dataset-fashion-mnist)");
    return;
  }
  // The whole test set (10000 samples, 1000 per class) and the first 100 training samples.
  const lgm::TrainTestData d = lgm::load_fashion_mnist({.train_limit = 100, .test_limit = 0});
  CHECK(d.train.features.rows() == 784);
  CHECK(d.train.features.cols() == 100);
  CHECK(d.test.features.rows() == 784);
  REQUIRE(d.test.features.cols() == 10000);
  CHECK(d.test.classes == 10);
  std::array<Index, 10> counts{};
  for (Index y : d.test.labels) {
    REQUIRE((y >= 0 && y < 10));
    ++counts[static_cast<std::size_t>(y)];
  }
  for (Index c : counts) CHECK(c == 1000);
  CHECK(d.test.features.minCoeff() == 0.0);
  CHECK(d.test.features.maxCoeff() == 1.0);
  // The IDX reader agrees on the raw label file.
  const lgm::IdxArray labels = lgm::read_idx(opt.dir / "t10k-labels-idx1-ubyte.gz");
  REQUIRE(labels.dims == std::vector<Index>{10000});
  CHECK(Index{labels.data[123]} == d.test.labels[123]);
}

TEST_CASE("data: libsvm reading, comments, dim and bias") {
  TempDir dir;
  write_text(dir / "a.txt",
             "# a comment line\n"
             "+1 1:0.5 3:-2   # trailing comment\n"
             "\n"
             "-1\t2:1e-3 4:4\r\n"
             "   \n"
             "1 4:+7\n");
  lgm::LibsvmSamples s = lgm::read_libsvm(dir / "a.txt");
  CHECK(s.num_samples() == 3);
  CHECK(s.dim == 4);
  CHECK(s.lines == std::vector<Index>{2, 4, 6});
  CHECK(s.labels == std::vector<double>{1.0, -1.0, 1.0});

  lgm::BinaryData b = lgm::read_libsvm_binary(dir / "a.txt");
  Matrix expected = Matrix::Zero(4, 3);
  expected(0, 0) = 0.5;
  expected(2, 0) = -2.0;
  expected(1, 1) = 1e-3;
  expected(3, 1) = 4.0;
  expected(3, 2) = 7.0;
  CHECK(b.features == expected);
  CHECK(b.labels == Vector{{1.0, -1.0, 1.0}});

  b = lgm::read_libsvm_binary(dir / "a.txt", {.dim = 6, .bias = true});
  REQUIRE(b.features.rows() == 7);
  CHECK(b.features.topRows(4) == expected);
  CHECK(b.features.middleRows(4, 2).isZero());
  CHECK(b.features.row(6).isOnes());
}

TEST_CASE("data: libsvm label mapping") {
  TempDir dir;
  write_text(dir / "01.txt", "0 1:1\n1 1:2\n0 1:3\n");
  CHECK(lgm::read_libsvm_binary(dir / "01.txt").labels == Vector{{-1.0, 1.0, -1.0}});
  write_text(dir / "24.txt", "4 1:1\n2 1:2\n4 1:3\n");
  CHECK(lgm::read_libsvm_binary(dir / "24.txt").labels == Vector{{1.0, -1.0, 1.0}});
  write_text(dir / "one.txt", "1 1:1\n1 1:2\n");  // one class: ±1 kept
  CHECK(lgm::read_libsvm_binary(dir / "one.txt").labels == Vector{{1.0, 1.0}});
  write_text(dir / "zero.txt", "0 1:1\n");  // one class of {0, 1}
  CHECK(lgm::read_libsvm_binary(dir / "zero.txt").labels == Vector{{-1.0}});
  write_text(dir / "three.txt", "1 1:1\n2 1:2\n3 1:3\n2 1:3\n");
  std::string m = data_error_of([&] { lgm::read_libsvm_binary(dir / "three.txt"); });
  CHECK_CONTAINS(m, "three.txt: 3 distinct labels (1, 2, 3) for binary data (accepted: 2)");
  write_text(dir / "five.txt", "5 1:1\n");
  m = data_error_of([&] { lgm::read_libsvm_binary(dir / "five.txt"); });
  CHECK_CONTAINS(m, "five.txt: the only label is 5");

  // Multiclass: classes in increasing order of the label values.
  write_text(dir / "multi.txt", "7 1:1\n-2 2:1\n3 1:2\n7 2:2\n");
  lgm::LibsvmClassificationData c = lgm::read_libsvm_multiclass(dir / "multi.txt");
  CHECK(c.classes == 3);
  CHECK(c.label_values == std::vector<Index>{-2, 3, 7});
  CHECK(c.labels == std::vector<Index>{2, 0, 1, 2});
  CHECK(c.features.rows() == 2);
  // Given label values (a test file lacking a class keeps the training file's classes).
  const std::vector<Index> values = {-2, 3, 5, 7};
  c = lgm::read_libsvm_multiclass(dir / "multi.txt", {.bias = true}, values);
  CHECK(c.classes == 4);
  CHECK(c.labels == std::vector<Index>{3, 0, 1, 3});
  CHECK(c.features.rows() == 3);
  const lgm::ClassificationData plain = lgm::read_libsvm_multiclass(dir / "multi.txt");  // usable as the base type
  CHECK(plain.classes == 3);
  const std::vector<Index> missing = {-2, 7};
  m = data_error_of([&] { lgm::read_libsvm_multiclass(dir / "multi.txt", {}, missing); });
  CHECK_CONTAINS(m, "multi.txt:3: label 3 is not one of the 2 label_values given");
  const std::vector<Index> unsorted = {3, 1};
  CHECK_THROWS_AS(lgm::read_libsvm_multiclass(dir / "multi.txt", {}, unsorted), lgm::ConfigError);

  write_text(dir / "frac.txt", "1 1:1\n2 1:1\n2.5 1:1\n");
  m = data_error_of([&] { lgm::read_libsvm_multiclass(dir / "frac.txt"); });
  CHECK_CONTAINS(m, "frac.txt:3: label 2.5 is not an integer");
  write_text(dir / "single.txt", "4 1:1\n4 1:1\n");
  m = data_error_of([&] { lgm::read_libsvm_multiclass(dir / "single.txt"); });
  CHECK_CONTAINS(m, "single.txt: only one distinct label (4)");
}

TEST_CASE("data: libsvm errors name file:line and the token") {
  TempDir dir;
  const auto error_on_line3 = [&](const std::string& third_line, const lgm::LibsvmOptions& opt = {}) {
    write_text(dir / "file.txt", "# header\n1 1:1 2:2\n" + third_line + "\n-1 5:1\n");
    return data_error_of([&] { lgm::read_libsvm_binary(dir / "file.txt", opt); });
  };
  std::string m = error_on_line3("1 1:1 abc");
  CHECK_CONTAINS(m, "file.txt:3: expected index:value, got \"abc\"");
  m = error_on_line3("1 x:1");
  CHECK_CONTAINS(m, "file.txt:3: expected index:value, got \"x:1\"");
  m = error_on_line3("1 -2:1");
  CHECK_CONTAINS(m, "file.txt:3: expected index:value, got \"-2:1\"");
  m = error_on_line3("1 0:1.5");
  CHECK_CONTAINS(m, "file.txt:3: index 0 in \"0:1.5\" (indices start at 1)");
  m = error_on_line3("1 3:1 2:1");
  CHECK_CONTAINS(m, "file.txt:3: indices not increasing: \"2:1\" after index 3");
  m = error_on_line3("1 3:1 3:1");
  CHECK_CONTAINS(m, "file.txt:3: indices not increasing: \"3:1\" after index 3");
  m = error_on_line3("1 2:nan");
  CHECK_CONTAINS(m, "file.txt:3: value is not a finite number in \"2:nan\"");
  m = error_on_line3("1 2:1e999");
  CHECK_CONTAINS(m, "file.txt:3: value is not a finite number in \"2:1e999\"");
  m = error_on_line3("1 2:");
  CHECK_CONTAINS(m, "file.txt:3: value is not a finite number in \"2:\"");
  m = error_on_line3("yes 2:1");
  CHECK_CONTAINS(m, "file.txt:3: label \"yes\" is not a finite number");
  m = error_on_line3("1 70000:1", {.dim = 100});
  CHECK_CONTAINS(m, "file.txt:3: index 70000 exceeds dim = 100");
  // Without an explicit dim the largest index sets it; an explicit dim too small for a later line fails there.
  m = error_on_line3("1 3:1", {.dim = 4});
  CHECK_CONTAINS(m, "file.txt:4: index 5 exceeds dim = 4");

  write_text(dir / "empty.txt", "# only a comment\n\n   \n");
  m = data_error_of([&] { lgm::read_libsvm_binary(dir / "empty.txt"); });
  CHECK_CONTAINS(m, "empty.txt: no samples");
  write_text(dir / "empty2.txt", "");
  m = data_error_of([&] { lgm::read_libsvm_binary(dir / "empty2.txt"); });
  CHECK_CONTAINS(m, "empty2.txt: no samples");
  m = data_error_of([&] { lgm::read_libsvm_binary(dir / "absent.txt"); });
  CHECK_CONTAINS(m, "cannot open ");
  CHECK_CONTAINS(m, "absent.txt: no such file");
  write_text(dir / "nofeat.txt", "1\n-1\n");
  m = data_error_of([&] { lgm::read_libsvm_binary(dir / "nofeat.txt"); });
  CHECK_CONTAINS(m, "nofeat.txt: no features");
  CHECK(lgm::read_libsvm_binary(dir / "nofeat.txt", {.bias = true}).features == Matrix::Ones(1, 2));
  CHECK_THROWS_WITH_AS(lgm::read_libsvm_binary(dir / "nofeat.txt", {.dim = -1}),
                       "invalid dim = -1 (accepted: an integer in [0, 2147483647])", lgm::ConfigError);
}

TEST_CASE("data: libsvm absurd feature indices are refused, not overflowed (issue 12 item 6)") {
  TempDir dir;
  // Index 2^63 − 1 with a bias row: d + 1 overflowed and Eigen got negative rows (a segfault).
  write_text(dir / "max.txt", "1 9223372036854775807:1\n");
  const std::string too_large =
      "max.txt:1: index 9223372036854775807 in \"9223372036854775807:1\" is too large "
      "(accepted: indices in [1, 2147483647])";
  std::string m = data_error_of([&] { lgm::read_libsvm_binary(dir / "max.txt", {.bias = true}); });
  CHECK_CONTAINS(m, too_large);
  m = data_error_of([&] { lgm::read_libsvm_multiclass(dir / "max.txt", {.bias = true}, std::vector<Index>{0, 1}); });
  CHECK_CONTAINS(m, too_large);
  m = data_error_of([&] { lgm::read_libsvm(dir / "max.txt"); });
  CHECK_CONTAINS(m, too_large);
  // Beyond 64 bits, and the first index past the maximum.
  write_text(dir / "huge.txt", "1 1:1\n-1 2:1 99999999999999999999999:2\n");
  m = data_error_of([&] { lgm::read_libsvm(dir / "huge.txt"); });
  CHECK_CONTAINS(m, "huge.txt:2: index 99999999999999999999999 in \"99999999999999999999999:2\" is too large");
  write_text(dir / "past.txt", "1 2147483648:1\n");
  m = data_error_of([&] { lgm::read_libsvm(dir / "past.txt"); });
  CHECK_CONTAINS(m, "past.txt:1: index 2147483648 in \"2147483648:1\" is too large");
  // The largest accepted index reads as sparse data (its dense matrix would be 2^31 entries).
  write_text(dir / "edge.txt", "1 2147483647:1\n");
  const lgm::LibsvmSamples edge = lgm::read_libsvm(dir / "edge.txt", {.bias = true});
  CHECK(edge.dim == 2147483647);
  CHECK(edge.indices == std::vector<Index>{2147483646});
  // An explicit dim beyond the maximum is a bad option.
  CHECK_THROWS_WITH_AS(lgm::read_libsvm(dir / "edge.txt", {.dim = Index{1} << 31}),
                       "invalid dim = 2147483648 (accepted: an integer in [0, 2147483647])", lgm::ConfigError);
  // Hand-made samples are checked before they index the matrix.
  lgm::LibsvmSamples s;
  s.labels = {1.0};
  s.lines = {1};
  s.starts = {0, 1};
  s.indices = {0};
  s.values = {2.0};
  s.dim = std::numeric_limits<Index>::max();
  CHECK_THROWS_WITH_AS((void)s.dense_features(true, "mine"),
                       "mine: inconsistent LIBSVM samples: dim = 9223372036854775807 (accepted: 0 to 2147483647)",
                       lgm::DataError);
  s.dim = 3;
  s.indices = {3};
  CHECK_THROWS_WITH_AS((void)s.dense_features(false, "mine"),
                       "mine: inconsistent LIBSVM samples: indices[0] = 3 outside [0, dim = 3)", lgm::DataError);
  s.indices = {2};
  s.starts = {0, 2};
  CHECK_THROWS_AS((void)s.dense_features(), lgm::DataError);
  s.starts = {0, 1};
  CHECK(s.dense_features(true) == Matrix{{0.0}, {0.0}, {2.0}, {1.0}});
}

TEST_CASE("data: libsvm test files take the training file's label mapping (issue 12 item 4)") {
  TempDir dir;
  // Binary: the training labels {1, 2} map 1 → −1; a test file holding only class 1 must keep that.
  write_text(dir / "train.txt", "1 1:1\n2 2:1\n1 1:2\n");
  write_text(dir / "test1.txt", "1 1:1\n1 1:3\n");
  const lgm::LibsvmBinaryData train = lgm::read_libsvm_binary(dir / "train.txt");
  CHECK(train.label_values == std::array<double, 2>{1.0, 2.0});
  CHECK(train.labels == Vector{{-1.0, 1.0, -1.0}});
  lgm::LibsvmBinaryData test = lgm::read_libsvm_binary(dir / "test1.txt", {.dim = 2}, train.label_values);
  CHECK(test.labels == Vector{{-1.0, -1.0}});
  // On its own the file's single label 1 reads as +1: the mapping, not the file, must decide.
  CHECK(lgm::read_libsvm_binary(dir / "test1.txt").labels == Vector{{1.0, 1.0}});
  write_text(dir / "test2.txt", "2 1:1\n");
  test = lgm::read_libsvm_binary(dir / "test2.txt", {.dim = 2}, train.label_values);
  CHECK(test.labels == Vector{{1.0}});
  // {0, 1} training labels; a test file of only 0.
  write_text(dir / "train01.txt", "0 1:1\n1 1:2\n");
  write_text(dir / "test0.txt", "0 1:1\n");
  const auto train01 = lgm::read_libsvm_binary(dir / "train01.txt");
  CHECK(lgm::read_libsvm_binary(dir / "test0.txt", {}, train01.label_values).labels == Vector{{-1.0}});
  // A label the training file does not have: FILE:LINE, the label and the training labels.
  write_text(dir / "test3.txt", "1 1:1\n# comment\n3 1:1\n");
  std::string m = data_error_of(
      [&] { lgm::read_libsvm_binary(dir / "test3.txt", {}, train.label_values, "labels of the training file t"); });
  CHECK_CONTAINS(m, "test3.txt:3: label 3 is not one of the 2 labels of the training file t (1, 2)");
  const std::array<double, 2> unsorted = {2.0, 1.0};
  CHECK_THROWS_AS(lgm::read_libsvm_binary(dir / "test1.txt", {}, unsorted), lgm::ConfigError);
  const std::vector<double> three = {1.0, 2.0, 3.0};
  CHECK_THROWS_AS(lgm::read_libsvm_binary(dir / "test1.txt", {}, three), lgm::ConfigError);

  // Multiclass: a test file with one of three classes keeps the training classes; a foreign label names them.
  write_text(dir / "mtrain.txt", "1 1:1\n2 2:1\n3 3:1\n");
  write_text(dir / "mtest.txt", "3 3:1\n3 3:2\n");
  const auto mtrain = lgm::read_libsvm_multiclass(dir / "mtrain.txt");
  const auto mtest = lgm::read_libsvm_multiclass(dir / "mtest.txt", {.dim = 3}, mtrain.label_values);
  CHECK(mtest.classes == 3);
  CHECK(mtest.labels == std::vector<Index>{2, 2});
  write_text(dir / "mtest4.txt", "3 3:1\n4 3:2\n");
  m = data_error_of([&] {
    lgm::read_libsvm_multiclass(dir / "mtest4.txt", {}, mtrain.label_values, "labels of the training file mtrain");
  });
  CHECK_CONTAINS(m, "mtest4.txt:2: label 4 is not one of the 3 labels of the training file mtrain (1, 2, 3)");
}

namespace {

/// argmax_c of z with the lowest c on ties, by a plain loop.
Index argmax(const std::vector<double>& z) {
  Index best = 0;
  for (std::size_t c = 1; c < z.size(); ++c)
    if (z[c] > z[static_cast<std::size_t>(best)]) best = static_cast<Index>(c);
  return best;
}

}  // namespace

TEST_CASE("data: softmax predict and accuracy against explicit loops") {
  const lgm::Softmax p = lgm::Softmax::synthetic({.N = 60, .d = 5, .classes = 4, .seed = 3});
  const Index d = p.num_features(), C = p.classes();
  lgm::detail::DataRng rng(11);
  const Vector x = rng.normal_vector(p.dim());
  auto ws = p.make_workspace();
  Index correct = 0;
  for (Index i = 0; i < p.num_samples(); ++i) {
    std::vector<double> z(static_cast<std::size_t>(C), 0.0);  // z_c = Σ_j x[c·d + j] a_j (block c = class c)
    for (Index c = 0; c < C; ++c)
      for (Index j = 0; j < d; ++j) z[std::size_t(c)] += x[c * d + j] * p.features()(j, i);
    const Index expected = argmax(z);
    CHECK(p.predict(x, p.features().col(i), ws) == expected);
    if (expected == p.labels()[std::size_t(i)]) ++correct;
  }
  CHECK(p.accuracy(x, p.features(), p.labels()) == static_cast<double>(correct) / static_cast<double>(p.num_samples()));
  // x = 0: every logit ties, class 0 is predicted.
  CHECK(p.predict(Vector::Zero(p.dim()), p.features().col(0), ws) == 0);

  CHECK_THROWS_AS((void)p.accuracy(Vector::Zero(3), p.features(), p.labels()), lgm::ConfigError);
  CHECK_THROWS_WITH_AS((void)p.accuracy(x, Matrix::Zero(4, 2), {0, 1}),
                       "invalid features (rows) = 4 (accepted: the model's number of features d = 5)", lgm::DataError);
  CHECK_THROWS_AS((void)p.accuracy(x, Matrix::Zero(5, 2), {0, 4}), lgm::DataError);
  CHECK_THROWS_AS((void)p.accuracy(x, Matrix::Zero(5, 2), {0}), lgm::DataError);
  CHECK_THROWS_AS((void)p.accuracy(x, Matrix::Zero(5, 0), {}), lgm::DataError);
}

TEST_CASE("data: mlp predict and accuracy against explicit loops") {
  const lgm::Mlp p = lgm::Mlp::synthetic({.N = 50, .d = 4, .classes = 3, .hidden = 6, .seed = 5});
  const Index d = p.num_features(), C = p.classes(), h = p.hidden();
  const Vector x = p.initial_point(9) + 0.1 * Vector::Ones(p.dim());  // nonzero biases too
  auto ws = p.make_workspace();
  Index correct = 0;
  for (Index i = 0; i < p.num_samples(); ++i) {
    std::vector<double> s(static_cast<std::size_t>(h)), z(static_cast<std::size_t>(C));
    for (Index k = 0; k < h; ++k) {  // W₁ is h × d column-major: W₁(k, j) = x[j·h + k]
      double u = x[p.offset_b1() + k];
      for (Index j = 0; j < d; ++j) u += x[j * h + k] * p.features()(j, i);
      s[std::size_t(k)] = std::tanh(u);
    }
    for (Index c = 0; c < C; ++c) {  // W₂ is C × h column-major
      double v = x[p.offset_b2() + c];
      for (Index k = 0; k < h; ++k) v += x[p.offset_w2() + k * C + c] * s[std::size_t(k)];
      z[std::size_t(c)] = v;
    }
    const Index expected = argmax(z);
    CHECK(p.predict(x, p.features().col(i), ws) == expected);
    if (expected == p.labels()[std::size_t(i)]) ++correct;
  }
  CHECK(p.accuracy(x, p.features(), p.labels()) == static_cast<double>(correct) / static_cast<double>(p.num_samples()));
  // The loss is unchanged by a predict call in between (the shared forward pass).
  const std::vector<Index> batch = {0, 1, 2};
  const double before = p.loss(x, batch, ws);
  (void)p.predict(x, p.features().col(7), ws);
  CHECK(p.loss(x, batch, ws) == before);
  CHECK_THROWS_AS((void)p.accuracy(x, Matrix::Zero(3, 2), {0, 1}), lgm::DataError);
}

TEST_CASE("data: binary accuracy against an explicit loop") {
  const lgm::BinaryData data = lgm::make_binary_teacher({.N = 80, .d = 6, .seed = 2});
  lgm::detail::DataRng rng(4);
  const Vector x = rng.normal_vector(6);
  Index correct = 0, positives = 0;
  for (Index i = 0; i < 80; ++i) {
    double z = 0.0;
    for (Index j = 0; j < 6; ++j) z += data.features(j, i) * x[j];
    if ((z >= 0.0 ? 1.0 : -1.0) == data.labels[i]) ++correct;
    if (data.labels[i] == 1.0) ++positives;
  }
  CHECK(lgm::binary_accuracy(x, data) == static_cast<double>(correct) / 80.0);
  CHECK(lgm::binary_accuracy(Vector::Zero(6), data) == static_cast<double>(positives) / 80.0);  // ties predict +1
  CHECK_THROWS_WITH_AS((void)lgm::binary_accuracy(Vector::Zero(5), data),
                       "invalid x (size) = 5 (accepted: the number of features d = 6)", lgm::ConfigError);
  lgm::BinaryData bad = data;
  bad.labels[3] = 0.0;
  CHECK_THROWS_AS((void)lgm::binary_accuracy(x, bad), lgm::DataError);
}
