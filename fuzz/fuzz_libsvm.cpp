// libFuzzer target: the LIBSVM readers. Input: one option byte, then the file's text. Option bits: 0 bias,
// 1-2 dim (0: from the file, 1: 3, 2: 100, 3: 2^31 − 1). Every read either succeeds or throws lgm::DataError; one
// that succeeds must give consistent sparse rows, a dense matrix equal to them, and labels that a second read
// with the returned label mapping reproduces (the way a test file is read with its training file's mapping).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <lgm/data/data.hpp>

#include "fuzz_input.hpp"

namespace {

using lgm::Index;
using lgm::fuzz::require;

/// Dense matrices above this many entries are not built (the readers accept up to 2^31, far past the fuzzer's
/// memory limit); the sparse read is still checked.
constexpr Index max_dense_entries = Index{1} << 22;

void check_sparse(const lgm::LibsvmSamples& s, const lgm::LibsvmOptions& opt) {
  const auto n = static_cast<std::size_t>(s.num_samples());
  require(n >= 1 && s.lines.size() == n && s.starts.size() == n + 1, "one line and offset per sample");
  require(s.starts.front() == 0 && s.starts.back() == static_cast<Index>(s.indices.size()), "offsets span indices");
  require(s.values.size() == s.indices.size(), "one value per index");
  require(s.dim >= 0 && s.dim <= lgm::libsvm_max_index && (opt.dim == 0 || s.dim == opt.dim), "dim in range");
  for (std::size_t i = 0; i < n; ++i) {
    require(std::isfinite(s.labels[i]), "finite labels");
    for (Index k = s.starts[i]; k < s.starts[i + 1]; ++k) {
      const auto kk = static_cast<std::size_t>(k);
      require(s.indices[kk] >= 0 && s.indices[kk] < s.dim, "indices in [0, dim)");
      require(k == s.starts[i] || s.indices[kk] > s.indices[kk - 1], "indices increasing within a sample");
      require(std::isfinite(s.values[kk]) && s.values[kk] != 0.0, "finite nonzero values");
    }
  }
}

void check_dense(const lgm::LibsvmSamples& s, const lgm::Matrix& a, bool bias) {
  require(a.rows() == s.dim + (bias ? 1 : 0) && a.cols() == s.num_samples(), "dense shape d(+1) x N");
  Index nonzeros = 0;
  for (Index i = 0; i < a.cols(); ++i) {
    for (Index k = s.starts[static_cast<std::size_t>(i)]; k < s.starts[static_cast<std::size_t>(i) + 1]; ++k)
      require(a(s.indices[static_cast<std::size_t>(k)], i) == s.values[static_cast<std::size_t>(k)], "dense = sparse");
    if (bias) require(a(s.dim, i) == 1.0, "bias row of ones");
  }
  for (Index i = 0; i < a.cols(); ++i)
    for (Index j = 0; j < s.dim; ++j) nonzeros += a(j, i) != 0.0 ? 1 : 0;
  require(nonzeros == static_cast<Index>(s.indices.size()), "no other nonzeros");
}

void read_all(const std::filesystem::path& file, const lgm::LibsvmOptions& opt) {
  lgm::LibsvmSamples s;
  try {
    s = lgm::read_libsvm(file, opt);
  } catch (const lgm::DataError&) {
    return;
  }
  check_sparse(s, opt);
  const Index rows = s.dim + (opt.bias ? 1 : 0);
  if (rows > 0 && s.num_samples() > max_dense_entries / rows) return;
  check_dense(s, s.dense_features(opt.bias), opt.bias);

  try {
    const lgm::LibsvmBinaryData b = lgm::read_libsvm_binary(file, opt);
    require(b.label_values[0] < b.label_values[1], "increasing binary mapping");
    require(b.labels.size() == s.num_samples() && b.labels.cwiseAbs().minCoeff() == 1.0 &&
                b.labels.cwiseAbs().maxCoeff() == 1.0,
            "labels +-1");
    check_dense(s, b.features, opt.bias);
    const lgm::LibsvmBinaryData again = lgm::read_libsvm_binary(file, opt, b.label_values, "first read");
    require(again.labels == b.labels, "the returned binary mapping reproduces the labels");
  } catch (const lgm::DataError&) {
  }
  try {
    const lgm::LibsvmClassificationData c = lgm::read_libsvm_multiclass(file, opt);
    require(c.classes == static_cast<Index>(c.label_values.size()) && c.classes >= 2, "C >= 2 classes");
    require(std::is_sorted(c.label_values.begin(), c.label_values.end()), "increasing class labels");
    require(std::all_of(c.labels.begin(), c.labels.end(), [&](Index y) { return y >= 0 && y < c.classes; }),
            "labels in [0, C)");
    check_dense(s, c.features, opt.bias);
    const lgm::LibsvmClassificationData again = lgm::read_libsvm_multiclass(file, opt, c.label_values, "first read");
    require(again.labels == c.labels && again.classes == c.classes, "the returned classes reproduce the labels");
  } catch (const lgm::DataError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static lgm::fuzz::MemFile file("lgm_fuzz_libsvm");
  if (size < 1) return 0;
  constexpr Index dims[4] = {0, 3, 100, lgm::libsvm_max_index};
  const lgm::LibsvmOptions opt{.dim = dims[(data[0] >> 1) & 3u], .bias = (data[0] & 1u) != 0};
  read_all(file.write(data + 1, size - 1), opt);
  return 0;
}
