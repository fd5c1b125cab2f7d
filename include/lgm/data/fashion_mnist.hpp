// Loader of Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 28 × 28 grey images of 10 clothing classes, 60000 for
// training and 10000 for testing, in the four gzip IDX files of the Debian package dataset-fashion-mnist
// (installed under /usr/share/datasets/fashion-mnist). Features are pixel/255 in [0, 1], one column per sample.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/data/idx.hpp"
#include "lgm/problems/dataset.hpp"

namespace lgm {

/// Where the files are and how much of them to load.
struct FashionMnistOptions {
  std::filesystem::path dir = "/usr/share/datasets/fashion-mnist";
  Index train_limit = 0;  ///< 0: all 60000 training samples; else the first train_limit
  Index test_limit = 0;   ///< 0: all 10000 test samples; else the first test_limit
  bool bias = false;      ///< append a constant-1 feature (d = 785), the intercept of Softmax or Logistic
};

/// A training set and a test set.
struct TrainTestData {
  ClassificationData train;
  ClassificationData test;
};

/// Fashion-MNIST's class names: 0 "T-shirt/top", 1 "Trouser", …, 9 "Ankle boot". Throws ConfigError outside [0, 9].
inline const char* fashion_mnist_class_name(Index label) {
  static constexpr const char* names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                            "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  detail::require_in_range("label", label, Index{0}, Index{9});
  return names[label];
}

namespace detail {

inline constexpr Index fashion_mnist_side = 28;
inline constexpr Index fashion_mnist_classes = 10;

/// One split (images + labels): checks the headers against each other, then keeps the first `limit` samples
/// (0: all) of files that are checked whole (not truncated, nothing after the data).
inline ClassificationData load_fashion_mnist_split(const std::filesystem::path& images_file,
                                                   const std::filesystem::path& labels_file, Index limit,
                                                   std::string_view limit_name, bool bias) {
  require_at_least(limit_name, limit, Index{0});
  IdxReader images(images_file);
  IdxReader labels(labels_file);
  if (images.dims().size() != 3)
    throw DataError(images.name() + ": expected an image file (magic 0x00000803, 3 dimensions [n, 28, 28]), found " +
                    to_text(images.dims().size()) + " dimensions (magic " + hex32(images.magic()) + ")");
  if (labels.dims().size() != 1)
    throw DataError(labels.name() + ": expected a label file (magic 0x00000801, 1 dimension [n]), found " +
                    to_text(labels.dims().size()) + " dimensions (magic " + hex32(labels.magic()) + ")");
  if (images.dims()[1] != fashion_mnist_side || images.dims()[2] != fashion_mnist_side)
    throw DataError(images.name() + ": images of " + to_text(images.dims()[1]) + " x " + to_text(images.dims()[2]) +
                    " pixels (accepted: 28 x 28)");
  const Index n = images.dims()[0];
  if (labels.dims()[0] != n)
    throw DataError(labels.name() + ": " + to_text(labels.dims()[0]) + " labels for the " + to_text(n) + " images of " +
                    images.name() + " (the counts must match)");
  if (n < 1) throw DataError(images.name() + ": no samples (the header says 0 images)");
  if (limit > n)
    throw ConfigError(limit_name, to_text(limit),
                      "0 (all) or an integer in [1, " + to_text(n) + "], the samples in " + images.name());
  const Index count = limit == 0 ? n : limit;

  // Each read checks its whole file (a limit keeps only the first samples, but a truncated file is still refused).
  const IdxArray pixels = images.read_items(count);
  const IdxArray classes = labels.read_items(count);

  const Index d = fashion_mnist_side * fashion_mnist_side;
  ClassificationData out{Matrix(d + (bias ? 1 : 0), count), std::vector<Index>(static_cast<std::size_t>(count)),
                         fashion_mnist_classes};
  for (Index i = 0; i < count; ++i) {
    const std::uint8_t y = classes.data[static_cast<std::size_t>(i)];
    if (y >= fashion_mnist_classes)
      throw DataError(labels.name() + ": invalid label[" + to_text(i) + "] = " + to_text(unsigned{y}) +
                      " (accepted: 0 to 9)");
    out.labels[static_cast<std::size_t>(i)] = y;
    const std::uint8_t* p = pixels.data.data() + static_cast<std::size_t>(i * d);
    for (Index j = 0; j < d; ++j) out.features(j, i) = static_cast<double>(p[j]) / 255.0;
    if (bias) out.features(d, i) = 1.0;
  }
  return out;
}

}  // namespace detail

/// Loads Fashion-MNIST from `opt.dir` (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
/// t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz): features 784 (785 with bias) × N, pixel/255;
/// labels 0 … 9; classes = 10. Throws DataError naming the file for a missing, truncated or corrupt file (checked
/// whole even with a limit), images that are not 28 × 28, image and label counts that differ, or a label > 9;
/// ConfigError for a limit < 0 or above the count.
inline TrainTestData load_fashion_mnist(const FashionMnistOptions& opt = {}) {
  try {
    return TrainTestData{
        detail::load_fashion_mnist_split(opt.dir / "train-images-idx3-ubyte.gz", opt.dir / "train-labels-idx1-ubyte.gz",
                                         opt.train_limit, "train_limit", opt.bias),
        detail::load_fashion_mnist_split(opt.dir / "t10k-images-idx3-ubyte.gz", opt.dir / "t10k-labels-idx1-ubyte.gz",
                                         opt.test_limit, "test_limit", opt.bias)};
  } catch (const DataError& e) {
    std::error_code ec;
    if (!std::filesystem::is_directory(opt.dir, ec))
      throw DataError(std::string(e.what()) + " (the directory " + opt.dir.string() +
                      " does not exist: install the Debian package dataset-fashion-mnist or set "
                      "FashionMnistOptions::dir)");
    throw;
  }
}

}  // namespace lgm
