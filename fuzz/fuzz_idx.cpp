// libFuzzer target: the IDX reader (plain or gzip bytes) and the Fashion-MNIST split loader. Input: one mode byte,
// then the file. Mode 0: read_idx. Mode 1: a prefix through IdxReader::read_items (byte 2: its length), which
// must agree with read_idx. Mode 2: byte 2 the limit (its low bit the bias), bytes 3-4 the length of the image
// file, then the image file and the label file for load_fashion_mnist_split. Errors must be lgm::DataError (or
// ConfigError for a limit above the count); a read that succeeds must give consistent shapes and values.
#include <algorithm>
#include <cstdint>
#include <lgm/data/data.hpp>
#include <numeric>

#include "fuzz_input.hpp"

namespace {

using lgm::fuzz::require;

std::uint64_t product(const std::vector<lgm::Index>& dims) {
  return std::accumulate(dims.begin(), dims.end(), std::uint64_t{1},
                         [](std::uint64_t p, lgm::Index d) { return p * static_cast<std::uint64_t>(d); });
}

void whole(const std::filesystem::path& file) {
  try {
    const lgm::IdxArray a = lgm::read_idx(file);
    require(!a.dims.empty() && a.dims.size() <= lgm::detail::idx_max_dims, "1 to 8 dimensions");
    require(a.data.size() == product(a.dims), "data.size() is the product of dims");
  } catch (const lgm::DataError&) {
  }
}

void prefix(const std::filesystem::path& file, unsigned items) {
  lgm::IdxArray part;
  try {
    lgm::detail::IdxReader reader(file);
    part = reader.read_items(std::min<lgm::Index>(items, reader.dims()[0]));
  } catch (const lgm::DataError&) {
    return;
  }
  // A prefix is read only from a whole, valid file: read_idx must succeed and start with the same bytes.
  const lgm::IdxArray all = lgm::read_idx(file);
  require(part.data.size() <= all.data.size() && std::equal(part.data.begin(), part.data.end(), all.data.begin()),
          "read_items is a prefix of read_idx");
}

void split(const std::filesystem::path& images, const std::filesystem::path& labels, unsigned limit_byte) {
  const lgm::Index limit = limit_byte >> 1;
  const bool bias = (limit_byte & 1u) != 0;
  try {
    const lgm::ClassificationData d = lgm::detail::load_fashion_mnist_split(images, labels, limit, "limit", bias);
    require(d.features.rows() == 784 + (bias ? 1 : 0), "784 features (+1 with bias)");
    require(d.features.cols() == static_cast<lgm::Index>(d.labels.size()), "one label per column");
    require(limit == 0 || d.features.cols() == limit, "limit samples");
    require(d.classes == 10, "10 classes");
    require(d.features.size() == 0 || (d.features.minCoeff() >= 0.0 && d.features.maxCoeff() <= 1.0),
            "features in [0, 1]");
    require(std::all_of(d.labels.begin(), d.labels.end(), [](lgm::Index y) { return y >= 0 && y < 10; }),
            "labels in [0, 9]");
  } catch (const lgm::DataError&) {
  } catch (const lgm::ConfigError&) {  // a limit above the file's count
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static lgm::fuzz::MemFile first("lgm_fuzz_idx_a"), second("lgm_fuzz_idx_b");
  if (size < 1) return 0;
  const unsigned mode = data[0] % 3;
  if (mode == 0) {
    whole(first.write(data + 1, size - 1));
  } else if (mode == 1) {
    if (size < 2) return 0;
    prefix(first.write(data + 2, size - 2), data[1]);
  } else {
    if (size < 4) return 0;
    const std::size_t body = size - 4;
    const std::size_t image_bytes = std::min<std::size_t>((std::size_t{data[2]} << 8) | data[3], body);
    const auto& images = first.write(data + 4, image_bytes);
    const auto& labels = second.write(data + 4 + image_bytes, body - image_bytes);
    split(images, labels, data[1]);
  }
  return 0;
}
