// CIFAR-10 reader, per-channel normalization and crop/flip augmentation (lgm/data/cifar.hpp, augment.hpp):
// small files written here in the CIFAR-10 binary format are read back exactly (labels, every pixel, the CHW
// mapping of one pixel); every error (missing, empty, partial record, bad label, limit, read error, a hostile
// size) is provoked and its message checked; the statistics are checked against a second computation; the
// augmentation against explicit mirrors and shifts, its keys for reproducibility and its draws for uniformity.
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <lgm/data/augment.hpp>
#include <lgm/data/cifar.hpp>
#include <lgm/data/data.hpp>
#include <new>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "data_error_within.hpp"

namespace {

namespace fs = std::filesystem;
using lgm::Index;
using Bytes = std::vector<std::uint8_t>;

/// A fresh directory under the system's temp directory, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
    m_path = fs::temp_directory_path() / ("lgm_test_cifar_" + std::to_string(stamp) + "_" +
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

/// The pixel byte of image i, channel c, row y, column x in the generated files.
std::uint8_t pixel_byte(Index i, Index c, Index y, Index x) {
  return static_cast<std::uint8_t>((i * 131 + c * 71 + y * 13 + x * 5 + 7) % 256);
}

/// CIFAR-10 records with these labels; record r holds image first + r of pixel_byte.
Bytes cifar_bytes(const std::vector<unsigned>& labels, Index first = 0) {
  Bytes b;
  for (std::size_t r = 0; r < labels.size(); ++r) {
    b.push_back(static_cast<std::uint8_t>(labels[r]));
    for (Index c = 0; c < 3; ++c)
      for (Index y = 0; y < 32; ++y)
        for (Index x = 0; x < 32; ++x) b.push_back(pixel_byte(first + static_cast<Index>(r), c, y, x));
  }
  return b;
}

/// Checks images [0, count) of `d` against pixel_byte of images first … first + count − 1.
void check_pixels(const lgm::ImageData& d, Index at, Index first, Index count) {
  for (Index i = 0; i < count; ++i)
    for (Index c = 0; c < 3; ++c)
      for (Index y = 0; y < 32; ++y)
        for (Index x = 0; x < 32; ++x) {
          const float got = d.image(at + i)[c * 1024 + y * 32 + x];
          const float want = static_cast<float>(pixel_byte(first + i, c, y, x)) / 255.0f;
          if (got != want) {
            CAPTURE(i);
            CAPTURE(c);
            CAPTURE(y);
            CAPTURE(x);
            REQUIRE(got == want);
          }
        }
}

template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  FAIL_CHECK("no exception of the expected type thrown");
  return "";
}

template <class F>
std::string data_error_of(F&& f) {
  return error_of<lgm::DataError>(f);
}

template <class F>
std::string config_error_of(F&& f) {
  return error_of<lgm::ConfigError>(f);
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

#define CHECK_CONTAINS(message, part) CHECK_MESSAGE(contains(message, part), "message: ", message)

}  // namespace

TEST_CASE("cifar: a file reads back exactly, labels and pixels in CHW order") {
  TempDir dir;
  Bytes b = cifar_bytes({3, 0, 9});
  // Record 1, green (channel 1), row 5, column 17: file byte 3073·1 + 1 + 1024·1 + 32·5 + 17.
  const std::size_t green = 3073 + 1 + 1024 + 5 * 32 + 17;
  b[green] = 250;
  // Record 2, blue, row 31, column 0, and red, row 0, column 31.
  b[2 * 3073 + 1 + 2048 + 31 * 32] = 201;
  b[2 * 3073 + 1 + 31] = 202;
  write_raw(dir / "batch.bin", b);

  const lgm::ImageData d = lgm::read_cifar10_file(dir / "batch.bin");
  CHECK(d.count == 3);
  CHECK(d.channels == 3);
  CHECK(d.height == 32);
  CHECK(d.width == 32);
  CHECK(d.classes == 10);
  CHECK(d.image_size() == 3072);
  REQUIRE(d.pixels.size() == 3 * 3072);
  CHECK(d.labels == std::vector<Index>{3, 0, 9});
  CHECK(d.image(1)[1 * 1024 + 5 * 32 + 17] == 250.0f / 255.0f);
  CHECK(d.pixels[3072 + 1024 + 5 * 32 + 17] == 250.0f / 255.0f);
  CHECK(d.image(1)[0 * 1024 + 5 * 32 + 17] == static_cast<float>(pixel_byte(1, 0, 5, 17)) / 255.0f);  // red
  CHECK(d.image(1)[2 * 1024 + 5 * 32 + 17] == static_cast<float>(pixel_byte(1, 2, 5, 17)) / 255.0f);  // blue
  CHECK(d.image(2)[2 * 1024 + 31 * 32 + 0] == 201.0f / 255.0f);
  CHECK(d.image(2)[0 * 1024 + 0 * 32 + 31] == 202.0f / 255.0f);
  // Every other pixel is the generated one.
  b = cifar_bytes({3, 0, 9});
  write_raw(dir / "plain.bin", b);
  const lgm::ImageData plain = lgm::read_cifar10_file(dir / "plain.bin");
  check_pixels(plain, 0, 0, 3);
  CHECK(*std::min_element(plain.pixels.begin(), plain.pixels.end()) >= 0.0f);
  CHECK(*std::max_element(plain.pixels.begin(), plain.pixels.end()) <= 1.0f);

  const lgm::ImageData two = lgm::read_cifar10_file(dir / "plain.bin", 2);
  CHECK(two.count == 2);
  CHECK(two.labels == std::vector<Index>{3, 0});
  CHECK(std::equal(two.pixels.begin(), two.pixels.end(), plain.pixels.begin()));

  CHECK(std::string(lgm::cifar10_class_name(0)) == "airplane");
  CHECK(std::string(lgm::cifar10_class_name(9)) == "truck");
  CHECK_THROWS_AS(lgm::cifar10_class_name(10), lgm::ConfigError);
}

TEST_CASE("cifar: a limit reads only the records it keeps, and is checked against the file") {
  TempDir dir;
  write_raw(dir / "b.bin", cifar_bytes({1, 2, 12}));  // record 2 has a bad label
  const lgm::ImageData d = lgm::read_cifar10_file(dir / "b.bin", 2);
  CHECK(d.labels == std::vector<Index>{1, 2});
  check_pixels(d, 0, 0, 2);
  std::string m = data_error_of([&] { lgm::read_cifar10_file(dir / "b.bin"); });
  CHECK_CONTAINS(m, (dir / "b.bin").string() + ": invalid label[2] = 12 at byte offset 6146 (accepted: 0 to 9)");

  m = config_error_of([&] { lgm::read_cifar10_file(dir / "b.bin", 4); });
  CHECK_CONTAINS(m, "invalid limit = 4 (accepted: 0 (all) or an integer in [1, 3], the records in " +
                        (dir / "b.bin").string() + ")");
  m = config_error_of([&] { lgm::read_cifar10_file(dir / "b.bin", -1); });
  CHECK_CONTAINS(m, "invalid limit = -1");
}

TEST_CASE("cifar: training set from the five batch files in order, and the test set") {
  TempDir dir;
  const std::vector<std::vector<unsigned>> labels = {{0, 1}, {2, 3, 4}, {5}, {6, 7}, {8, 9}};
  Index first = 0;
  for (std::size_t k = 0; k < labels.size(); ++k) {
    write_raw(dir / ("data_batch_" + std::to_string(k + 1) + ".bin"), cifar_bytes(labels[k], first));
    first += static_cast<Index>(labels[k].size());
  }
  write_raw(dir / "test_batch.bin", cifar_bytes({7, 7, 1}, 100));

  const lgm::ImageData train = lgm::read_cifar10_train(dir.path());
  CHECK(train.count == 10);
  CHECK(train.labels == std::vector<Index>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  check_pixels(train, 0, 0, 10);

  const lgm::ImageData four = lgm::read_cifar10_train(dir.path(), 4);  // all of file 1, two records of file 2
  CHECK(four.count == 4);
  CHECK(four.labels == std::vector<Index>{0, 1, 2, 3});
  check_pixels(four, 0, 0, 4);

  const lgm::ImageData test = lgm::read_cifar10_test(dir.path());
  CHECK(test.count == 3);
  CHECK(test.labels == std::vector<Index>{7, 7, 1});
  check_pixels(test, 0, 100, 3);
  CHECK(lgm::read_cifar10_test(dir.path(), 1).count == 1);

  std::string m = config_error_of([&] { lgm::read_cifar10_train(dir.path(), 11); });
  CHECK_CONTAINS(m,
                 "invalid limit = 11 (accepted: 0 (all) or an integer in [1, 10], the records in "
                 "data_batch_1.bin … data_batch_5.bin of " +
                     dir.path().string() + ")");

  // A bad label in a file after the limit is not read; a missing file after it is still an error.
  write_raw(dir / "data_batch_5.bin", cifar_bytes({8, 10}, 8));
  CHECK(lgm::read_cifar10_train(dir.path(), 9).count == 9);
  m = data_error_of([&] { lgm::read_cifar10_train(dir.path()); });
  CHECK_CONTAINS(m, (dir / "data_batch_5.bin").string() + ": invalid label[1] = 10 at byte offset 3073");
  fs::remove(dir / "data_batch_4.bin");
  m = data_error_of([&] { lgm::read_cifar10_train(dir.path(), 1); });
  CHECK_CONTAINS(m, "cannot open " + (dir / "data_batch_4.bin").string() + ": no such file");

  m = data_error_of([&] { lgm::read_cifar10_train(dir / "absent"); });
  CHECK_CONTAINS(m, "cannot open " + (dir / "absent" / "data_batch_1.bin").string() + ": no such file (the directory " +
                        (dir / "absent").string() + " does not exist)");
  m = data_error_of([&] { lgm::read_cifar10_test(dir / "absent"); });
  CHECK_CONTAINS(m, "test_batch.bin: no such file (the directory");
}

TEST_CASE("cifar: errors name the file, the size and remainder, the record and the label") {
  TempDir dir;
  const std::string missing = (dir / "missing.bin").string();
  std::string m = data_error_of([&] { lgm::read_cifar10_file(dir / "missing.bin"); });
  CHECK(m == "cannot open " + missing + ": no such file");

  fs::create_directories(dir / "sub.bin");
  m = data_error_of([&] { lgm::read_cifar10_file(dir / "sub.bin"); });
  CHECK(m == "cannot open " + (dir / "sub.bin").string() + ": is a directory");

  write_raw(dir / "empty.bin", {});
  m = data_error_of([&] { lgm::read_cifar10_file(dir / "empty.bin"); });
  CHECK_CONTAINS(m, (dir / "empty.bin").string() + ": empty file (0 bytes; accepted: a whole number of 3073-byte");

  Bytes b = cifar_bytes({1, 2});
  b.insert(b.end(), {1, 2, 3, 4, 5});
  write_raw(dir / "partial.bin", b);
  m = data_error_of([&] { lgm::read_cifar10_file(dir / "partial.bin"); });
  CHECK_CONTAINS(m,
                 (dir / "partial.bin").string() +
                     ": size 6151 bytes is not a whole number of 3073-byte records (2 records and 5 bytes left over");
  // A partial record is an error with a limit too (the size is checked first).
  m = data_error_of([&] { lgm::read_cifar10_file(dir / "partial.bin", 1); });
  CHECK_CONTAINS(m, "2 records and 5 bytes left over");

  write_raw(dir / "short.bin", Bytes(100, 1));
  m = data_error_of([&] { lgm::read_cifar10_file(dir / "short.bin"); });
  CHECK_CONTAINS(m, "size 100 bytes is not a whole number of 3073-byte records (0 records and 100 bytes left over");

  write_raw(dir / "label10.bin", cifar_bytes({4, 10, 1}));
  m = data_error_of([&] { lgm::read_cifar10_file(dir / "label10.bin"); });
  CHECK(m == (dir / "label10.bin").string() + ": invalid label[1] = 10 at byte offset 3073 (accepted: 0 to 9)");
  write_raw(dir / "label255.bin", cifar_bytes({255}));
  m = data_error_of([&] { lgm::read_cifar10_file(dir / "label255.bin"); });
  CHECK_CONTAINS(m, "invalid label[0] = 255 at byte offset 0 (accepted: 0 to 9)");
}

TEST_CASE("cifar: read errors and a file that ends early name the byte offset") {
  TempDir dir;
  std::vector<float> out(3 * 3072);
  std::vector<Index> labels(3);

  // A stream opened for writing only: fread fails with a read error.
  {
    std::FILE* f = std::fopen((dir / "write_only.bin").string().c_str(), "wb");
    REQUIRE(f != nullptr);
    const std::string m =
        data_error_of([&] { lgm::detail::read_cifar10_records(f, "write_only.bin", 0, 1, out.data(), labels.data()); });
    CHECK_CONTAINS(m, "write_only.bin: read error at byte offset 0 (record 0): ");
    std::fclose(f);
  }
  // A file that holds fewer records than asked for (it shrank after its size was checked).
  write_raw(dir / "two.bin", cifar_bytes({1, 2}));
  {
    std::FILE* f = std::fopen((dir / "two.bin").string().c_str(), "rb");
    REQUIRE(f != nullptr);
    const std::string m =
        data_error_of([&] { lgm::detail::read_cifar10_records(f, "two.bin", 0, 3, out.data(), labels.data()); });
    CHECK_CONTAINS(m, "two.bin: truncated: the file ends at byte offset 6146, inside record 2 (expected at least 9219");
    std::fclose(f);
  }
}

#if defined(__linux__)

namespace {

using lgm::test::data_error_within;

}  // namespace

TEST_CASE("cifar: a hostile file size is refused before anything big is allocated") {
  // Sparse files: 3073 · 10^6 bytes (a whole number of records, 12 GB as floats) and one byte more.
  TempDir dir;
  constexpr std::uintmax_t records = 1000000;
  write_raw(dir / "huge.bin", {});
  fs::resize_file(dir / "huge.bin", records * 3073);
  write_raw(dir / "odd.bin", {});
  fs::resize_file(dir / "odd.bin", records * 3073 + 1);
  constexpr std::size_t headroom = std::size_t{64} << 20;
  std::string what = data_error_within(headroom,
                                       "huge.bin: 1000000 records (3073000000 bytes) (accepted: at most "
                                       "60000 records, 184380000 bytes, per file",
                                       [&] { lgm::read_cifar10_file(dir / "huge.bin"); });
  CHECK_MESSAGE(what.empty(), "huge.bin: ", what);
  what = data_error_within(headroom, "huge.bin: 1000000 records", [&] { lgm::read_cifar10_file(dir / "huge.bin", 1); });
  CHECK_MESSAGE(what.empty(), "huge.bin with limit 1: ", what);
  what = data_error_within(headroom,
                           "odd.bin: size 3073000001 bytes is not a whole number of 3073-byte records "
                           "(1000000 records and 1 bytes left over",
                           [&] { lgm::read_cifar10_file(dir / "odd.bin"); });
  CHECK_MESSAGE(what.empty(), "odd.bin: ", what);
  // As the fifth training file: refused before the first four (valid) files are read.
  for (int k = 1; k <= 4; ++k) write_raw(dir / ("data_batch_" + std::to_string(k) + ".bin"), cifar_bytes({1}));
  fs::rename(dir / "huge.bin", dir / "data_batch_5.bin");
  what = data_error_within(headroom, "data_batch_5.bin: 1000000 records", [&] { lgm::read_cifar10_train(dir.path()); });
  CHECK_MESSAGE(what.empty(), "read_cifar10_train: ", what);
}

#endif

// ---------------------------------------------------------------- normalization

namespace {

/// Small images of a given shape with values that differ per channel.
lgm::ImageData make_images(Index count, Index channels, Index height, Index width, std::uint32_t seed) {
  lgm::ImageData d;
  d.count = count;
  d.channels = channels;
  d.height = height;
  d.width = width;
  d.classes = 10;
  d.labels.assign(static_cast<std::size_t>(count), 0);
  d.pixels.resize(static_cast<std::size_t>(count * d.image_size()));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (Index i = 0; i < count; ++i)
    for (Index c = 0; c < channels; ++c)
      for (Index j = 0; j < height * width; ++j)
        d.image(i)[c * height * width + j] =
            0.3f * static_cast<float>(c) + (0.5f + 0.25f * static_cast<float>(c)) * u(rng);
  return d;
}

/// The second computation: gather each channel's values, then mean and population std in long double.
void reference_stats(const lgm::ImageData& d, std::vector<double>& mean, std::vector<double>& stddev) {
  const Index plane = d.height * d.width;
  mean.assign(static_cast<std::size_t>(d.channels), 0.0);
  stddev.assign(static_cast<std::size_t>(d.channels), 0.0);
  for (Index c = 0; c < d.channels; ++c) {
    std::vector<long double> v;
    for (Index i = 0; i < d.count; ++i)
      for (Index j = 0; j < plane; ++j)
        v.push_back(d.pixels[static_cast<std::size_t>(i * d.image_size() + c * plane + j)]);
    long double s = 0, s2 = 0;
    for (long double x : v) s += x;
    const long double m = s / static_cast<long double>(v.size());
    for (long double x : v) s2 += (x - m) * (x - m);
    mean[static_cast<std::size_t>(c)] = static_cast<double>(m);
    stddev[static_cast<std::size_t>(c)] = static_cast<double>(std::sqrt(s2 / static_cast<long double>(v.size())));
  }
}

}  // namespace

TEST_CASE("cifar: per-channel statistics against a second computation, train stats applied to the test set") {
  const lgm::ImageData train0 = make_images(20, 3, 32, 32, 1);
  const lgm::ImageData test0 = make_images(5, 3, 32, 32, 2);
  const lgm::ChannelStats s = lgm::channel_stats(train0);
  std::vector<double> mean, stddev;
  reference_stats(train0, mean, stddev);
  REQUIRE(s.mean.size() == 3);
  REQUIRE(s.stddev.size() == 3);
  for (std::size_t c = 0; c < 3; ++c) {
    CAPTURE(c);
    CHECK(s.mean[c] == doctest::Approx(mean[c]).epsilon(1e-12));
    CHECK(s.stddev[c] == doctest::Approx(stddev[c]).epsilon(1e-12));
  }
  CHECK(s.mean[2] > s.mean[1]);  // the channels really differ

  lgm::ImageData train = train0;
  lgm::ImageData test = test0;
  lgm::normalize_channels(train, s);
  lgm::normalize_channels(test, s);
  const lgm::ChannelStats after = lgm::channel_stats(train);
  for (std::size_t c = 0; c < 3; ++c) {
    CHECK(std::abs(after.mean[c]) < 1e-6);
    CHECK(after.stddev[c] == doctest::Approx(1.0).epsilon(1e-6));
  }
  for (Index i = 0; i < test.count; ++i)
    for (Index c = 0; c < 3; ++c)
      for (Index j = 0; j < 1024; j += 97) {
        const float x = test0.image(i)[c * 1024 + j];
        const auto k = static_cast<std::size_t>(c);
        CHECK(test.image(i)[c * 1024 + j] == static_cast<float>((static_cast<double>(x) - s.mean[k]) / s.stddev[k]));
      }
  // Deterministic: the same stats bitwise on a second call.
  const lgm::ChannelStats again = lgm::channel_stats(train0);
  CHECK(again.mean == s.mean);
  CHECK(again.stddev == s.stddev);
}

TEST_CASE("cifar: normalization of other shapes: 1 x 28 x 28 images and a Fashion-MNIST-like feature matrix") {
  const lgm::ImageData grey = make_images(7, 1, 28, 28, 3);
  const lgm::ChannelStats s = lgm::channel_stats(grey);
  std::vector<double> mean, stddev;
  reference_stats(grey, mean, stddev);
  REQUIRE(s.mean.size() == 1);
  CHECK(s.mean[0] == doctest::Approx(mean[0]).epsilon(1e-12));
  CHECK(s.stddev[0] == doctest::Approx(stddev[0]).epsilon(1e-12));

  // The same images as the columns of a 785 × 7 matrix with a bias row of ones.
  lgm::Matrix features(785, 7);
  for (Index i = 0; i < 7; ++i) {
    for (Index j = 0; j < 784; ++j) features(j, i) = grey.image(i)[j];
    features(784, i) = 1.0;
  }
  const lgm::ChannelStats m = lgm::channel_stats(features, 1, 784);
  CHECK(m.mean[0] == s.mean[0]);
  CHECK(m.stddev[0] == s.stddev[0]);
  lgm::normalize_channels(features, 1, 784, m);
  CHECK(features.row(784).isOnes());
  CHECK(features(5, 3) == (static_cast<double>(grey.image(3)[5]) - m.mean[0]) / m.stddev[0]);
  const lgm::Matrix features784 = features.topRows(784);
  const lgm::ChannelStats unit = lgm::channel_stats(features784, 1, 784);
  CHECK(std::abs(unit.mean[0]) < 1e-12);
  CHECK(unit.stddev[0] == doctest::Approx(1.0).epsilon(1e-12));

  // Two channels of 2 × 3.
  const lgm::ImageData small = make_images(4, 2, 2, 3, 4);
  std::vector<double> m2, s2;
  reference_stats(small, m2, s2);
  const lgm::ChannelStats st = lgm::channel_stats(small);
  CHECK(st.mean[1] == doctest::Approx(m2[1]).epsilon(1e-12));
  CHECK(st.stddev[1] == doctest::Approx(s2[1]).epsilon(1e-12));
}

TEST_CASE("cifar: normalization errors") {
  lgm::ImageData d = make_images(2, 3, 4, 4, 5);
  lgm::ChannelStats s = lgm::channel_stats(d);
  lgm::ChannelStats bad = s;
  bad.stddev[1] = 0.0;
  std::string m = config_error_of([&] { lgm::normalize_channels(d, bad); });
  CHECK_CONTAINS(m, "invalid stats.stddev[1] = 0 (accepted: a finite number > 0");
  bad = s;
  bad.mean.pop_back();
  m = config_error_of([&] { lgm::normalize_channels(d, bad); });
  CHECK_CONTAINS(m, "invalid stats.mean (size) = 2 (accepted: one per channel (3))");
  lgm::ImageData empty = make_images(0, 3, 4, 4, 6);
  m = data_error_of([&] { lgm::channel_stats(empty); });
  CHECK_CONTAINS(m, "no images");
  d.pixels.pop_back();
  m = data_error_of([&] { lgm::channel_stats(d); });
  CHECK_CONTAINS(m, "invalid ImageData");
  const lgm::Matrix f(10, 3);
  m = data_error_of([&] { lgm::channel_stats(f, 1, 784); });
  CHECK_CONTAINS(m, "invalid features (rows) = 10 (accepted: channels · plane = 784, or 785 with a bias row)");
}

// ---------------------------------------------------------------- augmentation

namespace {

constexpr int C = 2, H = 5, W = 7;  // a non-square shape, so that a swapped row and column would show

std::vector<float> ramp_image(int channels, int height, int width) {
  std::vector<float> v(static_cast<std::size_t>(channels * height * width));
  for (std::size_t k = 0; k < v.size(); ++k) v[k] = 1.0f + static_cast<float>(k);  // every pixel nonzero, distinct
  return v;
}

float at(const std::vector<float>& img, int c, int y, int x, int height = H, int width = W) {
  return img[static_cast<std::size_t>((c * height + y) * width + x)];
}

}  // namespace

TEST_CASE("augment: flip of a known image is its mirror, and the zero padding lies where the shift puts it") {
  const std::vector<float> src = ramp_image(C, H, W);
  std::vector<float> dst(src.size(), -1.0f);
  lgm::apply_crop_flip(src.data(), dst.data(), C, H, W, {.dx = 0, .dy = 0, .flip = true});
  for (int c = 0; c < C; ++c)
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) CHECK(at(dst, c, y, x) == at(src, c, y, W - 1 - x));

  // dx = 2, dy = -3: out(y, x) = src(y - 3, x + 2); zero for y < 3 or x >= W - 2.
  lgm::apply_crop_flip(src.data(), dst.data(), C, H, W, {.dx = 2, .dy = -3, .flip = false});
  for (int c = 0; c < C; ++c)
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        const bool pad = y < 3 || x >= W - 2;
        CHECK(at(dst, c, y, x) == (pad ? 0.0f : at(src, c, y - 3, x + 2)));
      }
  // With the flip: out(y, x) = src(y + 1, W - 1 - x - 1); zero for y = H - 1 or x = W - 1.
  lgm::apply_crop_flip(src.data(), dst.data(), C, H, W, {.dx = -1, .dy = 1, .flip = true});
  for (int c = 0; c < C; ++c)
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        const bool pad = y == H - 1 || x == W - 1;
        CHECK(at(dst, c, y, x) == (pad ? 0.0f : at(src, c, y + 1, W - 2 - x)));
      }
  // A shift beyond the image is all padding.
  lgm::apply_crop_flip(src.data(), dst.data(), C, H, W, {.dx = W, .dy = 0, .flip = false});
  CHECK(std::all_of(dst.begin(), dst.end(), [](float v) { return v == 0.0f; }));
}

TEST_CASE("augment: random draws: offsets in [-p, p], output equals the draw applied, zeros counted") {
  const std::vector<float> src = ramp_image(C, H, W);
  std::vector<float> dst(src.size()), expect(src.size());
  for (const int pad : {1, 2, 4}) {
    CAPTURE(pad);
    int min_dx = 99, max_dx = -99, min_dy = 99, max_dy = -99;
    for (std::uint64_t slot = 0; slot < 2000; ++slot) {
      const lgm::AugmentKey key{.seed = 7, .worker = 3, .step = 11, .slot = slot};
      const lgm::CropFlip t = lgm::augment_image(src.data(), dst.data(), C, H, W, key, {.pad = pad});
      CHECK(t == lgm::draw_crop_flip(key, {.pad = pad}));
      min_dx = std::min(min_dx, t.dx);
      max_dx = std::max(max_dx, t.dx);
      min_dy = std::min(min_dy, t.dy);
      max_dy = std::max(max_dy, t.dy);
      lgm::apply_crop_flip(src.data(), expect.data(), C, H, W, t);
      REQUIRE(std::memcmp(dst.data(), expect.data(), dst.size() * sizeof(float)) == 0);
      // The zeros of one channel: H·W minus the (H − |dy|)(W − |dx|) pixels that come from the image.
      const auto zeros = std::count(dst.begin(), dst.begin() + H * W, 0.0f);
      const int kept = std::max(0, H - std::abs(t.dy)) * std::max(0, W - std::abs(t.dx));
      REQUIRE(zeros == H * W - kept);
    }
    CHECK(min_dx == -pad);
    CHECK(max_dx == pad);
    CHECK(min_dy == -pad);
    CHECK(max_dy == pad);
  }
}

TEST_CASE("augment: the same key gives the same output, and steps, slots, workers and seeds change it") {
  const std::vector<float> src = ramp_image(3, 32, 32);
  std::vector<float> a(src.size()), b(src.size());
  const lgm::AugmentKey key{.seed = 42, .worker = 1, .step = 5, .slot = 9};
  lgm::augment_image(src.data(), a.data(), 3, 32, 32, key);
  lgm::augment_image(src.data(), b.data(), 3, 32, 32, key);
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  static_assert(lgm::draw_crop_flip({.seed = 1, .worker = 2, .step = 3, .slot = 4}) ==
                lgm::draw_crop_flip({.seed = 1, .worker = 2, .step = 3, .slot = 4}));

  std::set<std::tuple<int, int, bool>> by_step, by_slot, by_worker, by_seed;
  int output_changes = 0;
  for (std::uint64_t k = 0; k < 64; ++k) {
    const auto put = [](auto& set, const lgm::CropFlip& t) { set.insert({t.dx, t.dy, t.flip}); };
    put(by_step, lgm::draw_crop_flip({.seed = 42, .worker = 1, .step = k, .slot = 9}));
    put(by_slot, lgm::draw_crop_flip({.seed = 42, .worker = 1, .step = 5, .slot = k}));
    put(by_worker, lgm::draw_crop_flip({.seed = 42, .worker = k, .step = 5, .slot = 9}));
    put(by_seed, lgm::draw_crop_flip({.seed = k, .worker = 1, .step = 5, .slot = 9}));
    lgm::augment_image(src.data(), b.data(), 3, 32, 32, {.seed = 42, .worker = 1, .step = 6 + k, .slot = 9});
    output_changes += std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) != 0 ? 1 : 0;
  }
  // 64 draws over 162 outcomes: far more than a handful of distinct ones unless the key is ignored.
  CHECK(by_step.size() > 30);
  CHECK(by_slot.size() > 30);
  CHECK(by_worker.size() > 30);
  CHECK(by_seed.size() > 30);
  CHECK(output_changes > 55);
}

TEST_CASE("augment: (dx, dy, flip) is roughly uniform over many keys") {
  constexpr int pad = 4, side = 2 * pad + 1, cells = side * side * 2;
  constexpr int draws = 32400;  // 200 per cell
  std::vector<int> count(cells, 0), dx_count(side, 0), flips(2, 0);
  for (int k = 0; k < draws; ++k) {
    const auto step = static_cast<std::uint64_t>(k / 100), slot = static_cast<std::uint64_t>(k % 100);
    const lgm::CropFlip t = lgm::draw_crop_flip({.seed = 2024, .worker = 0, .step = step, .slot = slot});
    REQUIRE(std::abs(t.dx) <= pad);
    REQUIRE(std::abs(t.dy) <= pad);
    ++count[static_cast<std::size_t>(((t.dy + pad) * side + (t.dx + pad)) * 2 + (t.flip ? 1 : 0))];
    ++dx_count[static_cast<std::size_t>(t.dx + pad)];
    ++flips[t.flip ? 1 : 0];
  }
  const double expected = static_cast<double>(draws) / cells;
  double chi2 = 0.0;
  for (int n : count) chi2 += (n - expected) * (n - expected) / expected;
  // 161 degrees of freedom: mean 161, standard deviation 18; the bound is 6 standard deviations above.
  CHECK_MESSAGE(chi2 < 161.0 + 6.0 * 18.0, "chi2 = ", chi2);
  CHECK(*std::min_element(count.begin(), count.end()) > 0);
  for (int n : dx_count) CHECK(std::abs(n - draws / side) < 300);  // sd ≈ 57
  CHECK(std::abs(flips[1] - draws / 2) < 600);                     // sd 90
}

TEST_CASE("augment: pad 0 without flip is the identity, and flip off never flips") {
  const std::vector<float> src = ramp_image(3, 32, 32);
  std::vector<float> dst(src.size());
  for (std::uint64_t slot = 0; slot < 50; ++slot) {
    const lgm::CropFlip t = lgm::augment_image(src.data(), dst.data(), 3, 32, 32, {.seed = 1, .step = 2, .slot = slot},
                                               {.pad = 0, .flip = false});
    CHECK(t == lgm::CropFlip{});
    REQUIRE(std::memcmp(dst.data(), src.data(), src.size() * sizeof(float)) == 0);
    const lgm::CropFlip noflip = lgm::draw_crop_flip({.seed = 1, .step = 2, .slot = slot}, {.pad = 4, .flip = false});
    CHECK_FALSE(noflip.flip);
  }
  // Pad 0 with the flip on: the image or its mirror.
  int flipped = 0;
  for (std::uint64_t slot = 0; slot < 50; ++slot) {
    const lgm::CropFlip t = lgm::draw_crop_flip({.seed = 1, .step = 2, .slot = slot}, {.pad = 0});
    CHECK(t.dx == 0);
    CHECK(t.dy == 0);
    flipped += t.flip ? 1 : 0;
  }
  CHECK(flipped > 10);
  CHECK(flipped < 40);
}

TEST_CASE("augment: a batch is the per-image function with slots first.slot + k, for any thread count") {
  const lgm::ImageData set = make_images(6, 3, 8, 8, 9);
  const std::vector<Index> indices = {5, 0, 0, 3, 2, 5, 1, 4, 4};
  const auto size = static_cast<std::size_t>(set.image_size());
  std::vector<float> one(indices.size() * size), two(indices.size() * size), expect(size);
  const lgm::AugmentKey first{.seed = 3, .worker = 2, .step = 17, .slot = 100};
  lgm::augment_batch(set.pixels.data(), set.count, 3, 8, 8, indices, one.data(), first, {.pad = 2}, 1);
  lgm::augment_batch(set.pixels.data(), set.count, 3, 8, 8, indices, two.data(), first, {.pad = 2}, 2);
  CHECK(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)) == 0);
  for (std::size_t k = 0; k < indices.size(); ++k) {
    lgm::augment_image(set.image(indices[k]), expect.data(), 3, 8, 8,
                       {.seed = 3, .worker = 2, .step = 17, .slot = 100 + k}, {.pad = 2});
    CHECK(std::memcmp(one.data() + k * size, expect.data(), size * sizeof(float)) == 0);
  }
  std::string m = config_error_of([&] {
    const std::vector<Index> bad = {0, 6};
    lgm::augment_batch(set.pixels.data(), set.count, 3, 8, 8, bad, one.data(), first);
  });
  CHECK_CONTAINS(m, "invalid indices[1] = 6 (accepted: an integer in [0, 6), an image of the set)");
  m = config_error_of(
      [&] { lgm::augment_batch(set.pixels.data(), set.count, 3, 8, 8, indices, one.data(), first, {.pad = -1}); });
  CHECK_CONTAINS(m, "invalid pad = -1");
  m = config_error_of(
      [&] { lgm::augment_batch(set.pixels.data(), set.count, 3, 8, 8, indices, one.data(), first, {}, 0); });
  CHECK_CONTAINS(m, "invalid threads = 0");
}
