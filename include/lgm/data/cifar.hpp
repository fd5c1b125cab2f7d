// Reader of CIFAR-10 (Krizhevsky 2009) in its binary form ("CIFAR-10 binary version"): 32 × 32 colour images of
// 10 classes in data_batch_1.bin … data_batch_5.bin (training, 10000 records each) and test_batch.bin. A record
// is 1 label byte (0–9) then 3072 pixel bytes: the 1024 red, the 1024 green and the 1024 blue values of the
// image, each plane row-major. There is no header: a file's record count is its size / 3073.
// Also per-channel normalization (x − mean_c) / std_c of any C × H × W images (docs/data.md §CIFAR-10).
#pragma once

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/data/files.hpp"

namespace lgm {

inline constexpr Index cifar10_classes = 10;
inline constexpr Index cifar10_channels = 3;
inline constexpr Index cifar10_side = 32;                 ///< height = width = 32
inline constexpr Index cifar10_image_bytes = 3072;        ///< 3 · 32 · 32 pixel bytes of one record
inline constexpr Index cifar10_record_bytes = 3073;       ///< the label byte and the pixel bytes
inline constexpr Index cifar10_max_file_records = 60000;  ///< most records one file may hold (all of CIFAR-10)

/// Images of one shape with class labels. Image i is pixels[i·image_size(), (i+1)·image_size()) in CHW order:
/// channel c, row y, column x at c·height·width + y·width + x.
struct ImageData {
  std::vector<float> pixels;  ///< count · channels · height · width
  std::vector<Index> labels;  ///< count, each in [0, classes)
  Index count = 0;
  Index channels = 0;
  Index height = 0;
  Index width = 0;
  Index classes = 0;

  Index image_size() const noexcept { return channels * height * width; }
  float* image(Index i) noexcept { return pixels.data() + i * image_size(); }
  const float* image(Index i) const noexcept { return pixels.data() + i * image_size(); }
};

/// CIFAR-10's class names: 0 "airplane", 1 "automobile", …, 9 "truck". Throws ConfigError outside [0, 9].
inline const char* cifar10_class_name(Index label) {
  static constexpr const char* names[10] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                            "dog",      "frog",       "horse", "ship", "truck"};
  detail::require_in_range("label", label, Index{0}, Index{9});
  return names[label];
}

namespace detail {

/// The records of a CIFAR-10 binary file, from its size alone (nothing is read or allocated). Throws DataError
/// naming the file for a missing file, a directory or other non-regular file, an empty file, a size that is not
/// a whole number of records, and more than cifar10_max_file_records records.
inline Index cifar10_file_records(const std::filesystem::path& file) {
  const std::string name = file.string();
  const std::uintmax_t size = regular_file_size(file);
  const auto record = static_cast<std::uintmax_t>(cifar10_record_bytes);
  if (size == 0)
    throw DataError(name + ": empty file (0 bytes; accepted: a whole number of 3073-byte records, each 1 label " +
                    "byte and 3072 pixel bytes)");
  if (size % record != 0)
    throw DataError(name + ": size " + to_text(size) + " bytes is not a whole number of 3073-byte records (" +
                    to_text(size / record) + " records and " + to_text(size % record) +
                    " bytes left over; a record is 1 label byte and 3072 pixel bytes); truncated, or not a CIFAR-10 " +
                    "binary file?");
  if (size / record > static_cast<std::uintmax_t>(cifar10_max_file_records))
    throw DataError(name + ": " + to_text(size / record) + " records (" + to_text(size) +
                    " bytes) (accepted: at most " + to_text(cifar10_max_file_records) + " records, " +
                    to_text(cifar10_max_file_records * cifar10_record_bytes) +
                    " bytes, per file; the CIFAR-10 batch files hold 10000 each); not a CIFAR-10 binary file?");
  return static_cast<Index>(size / record);
}

/// Throws ConfigError for a limit outside 0 (all) and [1, records].
inline Index cifar10_count(Index limit, Index records, const std::string& where) {
  if (limit < 0 || limit > records)
    throw ConfigError("limit", to_text(limit),
                      "0 (all) or an integer in [1, " + to_text(records) + "], the records in " + where);
  return limit == 0 ? records : limit;
}

/// `count` CIFAR-10 images, allocated once (the caller checked count against the files' sizes).
inline ImageData cifar10_images(Index count) {
  ImageData out;
  out.pixels.resize(static_cast<std::size_t>(count * cifar10_image_bytes));
  out.labels.resize(static_cast<std::size_t>(count));
  out.count = count;
  out.channels = cifar10_channels;
  out.height = cifar10_side;
  out.width = cifar10_side;
  out.classes = cifar10_classes;
  return out;
}

/// Reads `count` records from `file` at its current position, record `first` of the file `name`, into
/// `pixels` (count · 3072 floats, pixel / 255) and `labels` (count). Reads through a buffer of 64 records.
/// Throws DataError naming the file and the byte offset for a read error, a file that ends early (it changed
/// after its size was checked) and a label above 9 (naming the record).
inline void read_cifar10_records(std::FILE* file, const std::string& name, Index first, Index count, float* pixels,
                                 Index* labels) {
  constexpr Index chunk = 64;
  std::vector<unsigned char> buf(static_cast<std::size_t>(std::min(chunk, count) * cifar10_record_bytes));
  for (Index done = 0; done < count;) {
    const Index n = std::min(chunk, count - done);
    const auto want = static_cast<std::size_t>(n * cifar10_record_bytes);
    errno = 0;
    const std::size_t got = std::fread(buf.data(), 1, want, file);
    if (got < want) {
      const Index offset = (first + done) * cifar10_record_bytes + static_cast<Index>(got);
      const std::string record = "record " + to_text(offset / cifar10_record_bytes);
      if (std::ferror(file) != 0)
        throw DataError(name + ": read error at byte offset " + to_text(offset) + " (" + record +
                        "): " + std::strerror(errno != 0 ? errno : EIO));
      throw DataError(name + ": truncated: the file ends at byte offset " + to_text(offset) + ", inside " + record +
                      " (expected at least " + to_text((first + count) * cifar10_record_bytes) +
                      " bytes); did it change while it was read?");
    }
    for (Index k = 0; k < n; ++k) {
      const unsigned char* rec = buf.data() + k * cifar10_record_bytes;
      const Index i = done + k;
      if (rec[0] >= cifar10_classes)
        throw DataError(name + ": invalid label[" + to_text(first + i) + "] = " + to_text(unsigned{rec[0]}) +
                        " at byte offset " + to_text((first + i) * cifar10_record_bytes) + " (accepted: 0 to 9)");
      labels[i] = rec[0];
      float* out = pixels + i * cifar10_image_bytes;
      for (Index j = 0; j < cifar10_image_bytes; ++j) out[j] = static_cast<float>(rec[1 + j]) / 255.0f;
    }
    done += n;
  }
}

/// Opens `file` for reading and reads its first `count` records into `out` from image `at` on.
inline void read_cifar10_prefix(const std::filesystem::path& file, Index count, ImageData& out, Index at) {
  const std::string name = file.string();
  errno = 0;
  const std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(name.c_str(), "rb"), &std::fclose);
  if (!f) throw DataError("cannot open " + name + ": " + (errno != 0 ? std::strerror(errno) : "fopen failed"));
  read_cifar10_records(f.get(), name, 0, count, out.image(at), out.labels.data() + at);
}

/// "the directory DIR does not exist" appended to a reader's error when DIR is absent.
inline void require_cifar10_dir(const std::filesystem::path& dir, const std::filesystem::path& first_file) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    throw DataError("cannot open " + first_file.string() + ": no such file (the directory " + dir.string() +
                    " does not exist)");
}

}  // namespace detail

/// Reads one CIFAR-10 binary file: all its records (limit = 0) or the first `limit`, and only those are read.
/// Pixels are pixel / 255 in [0, 1], 3 × 32 × 32 CHW per image; labels 0 … 9; classes = 10. Throws DataError
/// naming the file for a missing file, an empty file, a size that is not a whole number of 3073-byte records
/// (the size and the remainder), more than 60000 records, a read error and a label > 9 (the record and its
/// byte offset), all size checks before anything is allocated; ConfigError for a limit < 0 or above the records.
inline ImageData read_cifar10_file(const std::filesystem::path& file, Index limit = 0) {
  const Index records = detail::cifar10_file_records(file);
  const Index count = detail::cifar10_count(limit, records, file.string());
  ImageData out = detail::cifar10_images(count);
  detail::read_cifar10_prefix(file, count, out, 0);
  return out;
}

/// Reads the training set: data_batch_1.bin … data_batch_5.bin of `dir`, in that order (50000 images), or their
/// first `limit` records. All five files are checked (present, a whole number of records) before anything is
/// read; then only the records kept are read. Errors as read_cifar10_file.
inline ImageData read_cifar10_train(const std::filesystem::path& dir, Index limit = 0) {
  std::filesystem::path files[5];
  for (int k = 0; k < 5; ++k) files[k] = dir / ("data_batch_" + std::to_string(k + 1) + ".bin");
  detail::require_cifar10_dir(dir, files[0]);
  Index records[5];
  Index total = 0;
  for (int k = 0; k < 5; ++k) total += records[k] = detail::cifar10_file_records(files[k]);
  const Index count = detail::cifar10_count(limit, total, "data_batch_1.bin … data_batch_5.bin of " + dir.string());
  ImageData out = detail::cifar10_images(count);
  Index done = 0;
  for (int k = 0; k < 5 && done < count; ++k) {
    const Index n = std::min(records[k], count - done);
    detail::read_cifar10_prefix(files[k], n, out, done);
    done += n;
  }
  return out;
}

/// Reads the test set: test_batch.bin of `dir` (10000 images), or its first `limit` records.
inline ImageData read_cifar10_test(const std::filesystem::path& dir, Index limit = 0) {
  const std::filesystem::path file = dir / "test_batch.bin";
  detail::require_cifar10_dir(dir, file);
  return read_cifar10_file(file, limit);
}

// ---------------------------------------------------------------- per-channel normalization

/// Per-channel mean and standard deviation of a set of images (docs/data.md §Per-channel normalization).
struct ChannelStats {
  std::vector<double> mean;    ///< one per channel
  std::vector<double> stddev;  ///< one per channel: the population standard deviation (divided by n)
};

namespace detail {

/// Stats of `count` images of `channels` planes of `plane` values, image i at data + i · stride. In double,
/// in a fixed order (images, then channels, then values), two passes: the mean, then the mean squared deviation.
template <class T>
ChannelStats channel_stats_of(const T* data, Index count, Index channels, Index plane, Index stride) {
  if (count < 1) throw DataError("channel_stats: no images (accepted: at least 1 image)");
  ChannelStats s{std::vector<double>(static_cast<std::size_t>(channels), 0.0),
                 std::vector<double>(static_cast<std::size_t>(channels), 0.0)};
  const double n = static_cast<double>(count) * static_cast<double>(plane);
  for (Index i = 0; i < count; ++i)
    for (Index c = 0; c < channels; ++c) {
      const T* p = data + i * stride + c * plane;
      double sum = 0.0;
      for (Index j = 0; j < plane; ++j) sum += static_cast<double>(p[j]);
      s.mean[static_cast<std::size_t>(c)] += sum;
    }
  for (double& m : s.mean) m /= n;
  for (Index i = 0; i < count; ++i)
    for (Index c = 0; c < channels; ++c) {
      const T* p = data + i * stride + c * plane;
      const double m = s.mean[static_cast<std::size_t>(c)];
      double sum = 0.0;
      for (Index j = 0; j < plane; ++j) {
        const double e = static_cast<double>(p[j]) - m;
        sum += e * e;
      }
      s.stddev[static_cast<std::size_t>(c)] += sum;
    }
  for (double& v : s.stddev) v = std::sqrt(v / n);
  return s;
}

/// Checks `stats` against `channels`: sizes equal, means finite, standard deviations finite and > 0.
inline void check_channel_stats(const ChannelStats& stats, Index channels) {
  const auto channels_text = "one per channel (" + to_text(channels) + ")";
  require(static_cast<Index>(stats.mean.size()) == channels, "stats.mean (size)", stats.mean.size(), channels_text);
  require(static_cast<Index>(stats.stddev.size()) == channels, "stats.stddev (size)", stats.stddev.size(),
          channels_text);
  for (Index c = 0; c < channels; ++c) {
    const auto k = static_cast<std::size_t>(c);
    require(std::isfinite(stats.mean[k]), "stats.mean[" + to_text(c) + "]", stats.mean[k], "a finite number");
    require(std::isfinite(stats.stddev[k]) && stats.stddev[k] > 0.0, "stats.stddev[" + to_text(c) + "]",
            stats.stddev[k], "a finite number > 0 (a constant channel cannot be normalized)");
  }
}

/// x ← (x − mean_c) / stddev_c, computed in double, for the layout of channel_stats_of.
template <class T>
void normalize_channels_of(T* data, Index count, Index channels, Index plane, Index stride, const ChannelStats& s) {
  check_channel_stats(s, channels);
  for (Index i = 0; i < count; ++i)
    for (Index c = 0; c < channels; ++c) {
      T* p = data + i * stride + c * plane;
      const double m = s.mean[static_cast<std::size_t>(c)];
      const double sd = s.stddev[static_cast<std::size_t>(c)];
      for (Index j = 0; j < plane; ++j) p[j] = static_cast<T>((static_cast<double>(p[j]) - m) / sd);
    }
}

/// Throws DataError when an ImageData's sizes disagree.
inline void check_image_data(const ImageData& d) {
  if (d.count < 0 || d.channels < 1 || d.height < 1 || d.width < 1 ||
      static_cast<Index>(d.pixels.size()) != d.count * d.image_size() || static_cast<Index>(d.labels.size()) != d.count)
    throw DataError(
        "invalid ImageData: " + to_text(d.pixels.size()) + " pixels and " + to_text(d.labels.size()) +
        " labels for count = " + to_text(d.count) + " images of " + to_text(d.channels) + " x " + to_text(d.height) +
        " x " + to_text(d.width) +
        " (accepted: channels, height, width >= 1; count · channels · height · width pixels, count labels)");
}

/// Checks a d × N feature matrix of images (d = channels · plane, or one more for a bias row).
inline void check_image_features(const Matrix& features, Index channels, Index plane) {
  require_at_least("channels", channels, Index{1});
  require_at_least("plane", plane, Index{1});
  const Index d = channels * plane;
  if (features.rows() != d && features.rows() != d + 1)
    throw DataError("invalid features (rows) = " + to_text(features.rows()) +
                    " (accepted: channels · plane = " + to_text(d) + ", or " + to_text(d + 1) + " with a bias row)");
}

}  // namespace detail

/// Per-channel mean and population standard deviation over all images of `images` (any C × H × W).
inline ChannelStats channel_stats(const ImageData& images) {
  detail::check_image_data(images);
  const Index plane = images.height * images.width;
  return detail::channel_stats_of(images.pixels.data(), images.count, images.channels, plane, images.image_size());
}

/// Per-channel stats of the columns of a d × N feature matrix, each an image of `channels` planes of `plane`
/// values (CHW), e.g. Fashion-MNIST's 784 × N with channels = 1, plane = 784; a bias row (d = channels · plane
/// + 1) is left out.
inline ChannelStats channel_stats(const Matrix& features, Index channels, Index plane) {
  detail::check_image_features(features, channels, plane);
  return detail::channel_stats_of(features.data(), features.cols(), channels, plane, features.rows());
}

/// x ← (x − mean_c) / stddev_c for every pixel of channel c; use the training set's stats for the test set.
/// Throws ConfigError when stats has not one entry per channel, or a mean or standard deviation that is not
/// finite, or a standard deviation <= 0.
inline void normalize_channels(ImageData& images, const ChannelStats& stats) {
  detail::check_image_data(images);
  const Index plane = images.height * images.width;
  detail::normalize_channels_of(images.pixels.data(), images.count, images.channels, plane, images.image_size(), stats);
}

/// The same on a d × N feature matrix of images (a bias row is left as it is).
inline void normalize_channels(Matrix& features, Index channels, Index plane, const ChannelStats& stats) {
  detail::check_image_features(features, channels, plane);
  detail::normalize_channels_of(features.data(), features.cols(), channels, plane, features.rows(), stats);
}

}  // namespace lgm
