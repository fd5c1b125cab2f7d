// Reader of the LIBSVM / SVMlight text format (https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/):
// one sample per line, `label index:value index:value ...`, indices 1-based and strictly increasing, absent
// features 0. Text after '#' is a comment; blank lines are skipped. Numbers are parsed with std::from_chars, so
// the result does not depend on the locale. The objectives take dense features, so the readers return a dense
// d × N matrix (one column per sample); read_libsvm gives the sparse rows for other uses.
#pragma once

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/problems/dataset.hpp"

namespace lgm {

/// Largest feature index (and dim) the LIBSVM readers accept: 2^31 − 1. A dense matrix holds at most 2^31
/// entries, so no larger index could be used, and d + 1 (the bias row) cannot overflow.
inline constexpr Index libsvm_max_index = (Index{1} << 31) - 1;

/// Options of the LIBSVM readers.
struct LibsvmOptions {
  Index dim = 0;      ///< number of features d in [0, 2^31 − 1]; 0: the largest index in the file (above: error)
  bool bias = false;  ///< append a constant-1 feature (row d) to the dense features
};

/// The samples of a LIBSVM file in compressed sparse form: sample i has the features indices[k] (0-based) with
/// values values[k] for k in [starts[i], starts[i + 1]).
struct LibsvmSamples {
  std::vector<double> labels;  ///< N raw labels, as in the file
  std::vector<Index> lines;    ///< N line numbers (1-based) of the samples, for error messages
  std::vector<Index> starts;   ///< N + 1 offsets into indices and values
  std::vector<Index> indices;  ///< 0-based feature indices, increasing within a sample
  std::vector<double> values;  ///< the feature values
  Index dim = 0;               ///< d: LibsvmOptions::dim, or the largest 1-based index seen

  Index num_samples() const noexcept { return static_cast<Index>(labels.size()); }

  /// Dense d × N features (d + 1 with `bias`: last row all 1). Throws DataError when d·N exceeds 2^31 entries,
  /// and for samples that are not consistent (dim outside [0, 2^31 − 1], an index outside [0, dim), bad offsets).
  Matrix dense_features(bool bias = false, std::string_view name = "LIBSVM data") const {
    check_consistent(name);
    const Index rows = dim + (bias ? 1 : 0);  // dim <= 2^31 − 1: no overflow
    const Index n = num_samples();
    constexpr Index max_entries = Index{1} << 31;
    if (rows > 0 && n > max_entries / rows)
      throw DataError(std::string(name) + ": a dense " + detail::to_text(rows) + " x " + detail::to_text(n) +
                      " feature matrix is too large (accepted: at most 2^31 entries); set LibsvmOptions::dim?");
    Matrix a = Matrix::Zero(rows, n);
    for (Index i = 0; i < n; ++i) {
      for (Index k = starts[static_cast<std::size_t>(i)]; k < starts[static_cast<std::size_t>(i) + 1]; ++k)
        a(indices[static_cast<std::size_t>(k)], i) = values[static_cast<std::size_t>(k)];
      if (bias) a(dim, i) = 1.0;
    }
    return a;
  }

 private:
  /// The fields are public, so dense_features checks what it indexes with (read_libsvm's output always passes).
  void check_consistent(std::string_view name) const {
    const auto fail = [&](const std::string& what) {
      throw DataError(std::string(name) + ": inconsistent LIBSVM samples: " + what);
    };
    if (dim < 0 || dim > libsvm_max_index)
      fail("dim = " + detail::to_text(dim) + " (accepted: 0 to " + detail::to_text(libsvm_max_index) + ")");
    if (starts.size() != labels.size() + 1 || starts.front() != 0 ||
        starts.back() != static_cast<Index>(indices.size()) || values.size() != indices.size())
      fail("starts, indices and values do not match the " + detail::to_text(labels.size()) + " labels");
    for (std::size_t i = 0; i + 1 < starts.size(); ++i)
      if (starts[i] > starts[i + 1]) fail("starts[" + detail::to_text(i + 1) + "] decreases");
    for (std::size_t k = 0; k < indices.size(); ++k)
      if (indices[k] < 0 || indices[k] >= dim)
        fail("indices[" + detail::to_text(k) + "] = " + detail::to_text(indices[k]) +
             " outside [0, dim = " + detail::to_text(dim) + ")");
  }
};

/// Binary data with the mapping of the file's labels: label_values[0] became −1, label_values[1] became +1.
struct LibsvmBinaryData : BinaryData {
  std::array<double, 2> label_values{-1.0, 1.0};  ///< increasing
};

/// Multiclass data with the mapping of the file's labels: class c is the file's label label_values[c].
struct LibsvmClassificationData : ClassificationData {
  std::vector<Index> label_values;  ///< C values, increasing
};

namespace detail {

inline bool libsvm_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

/// A finite double from the whole of `token` (a leading '+' allowed, as LIBSVM files often write "+1").
inline bool parse_finite(std::string_view token, double& out) {
  if (token.size() > 1 && token[0] == '+' && token[1] != '-' && token[1] != '+') token.remove_prefix(1);
  const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), out);
  return ec == std::errc() && end == token.data() + token.size() && std::isfinite(out);
}

enum class IndexParse { ok, not_an_index, too_large };

/// A non-negative integer index from the whole of `token` (digits only); too_large above libsvm_max_index.
inline IndexParse parse_index(std::string_view token, Index& out) {
  if (token.empty() || !std::all_of(token.begin(), token.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return IndexParse::not_an_index;
  const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), out);
  if (ec == std::errc::result_out_of_range || (ec == std::errc() && out > libsvm_max_index))
    return IndexParse::too_large;
  return ec == std::errc() && end == token.data() + token.size() ? IndexParse::ok : IndexParse::not_an_index;
}

/// "(1, 2, 3)": the label values of a mapping, for error messages (at most 20 shown).
template <class T>
std::string values_text(std::span<const T> values) {
  std::string s = "(";
  for (std::size_t c = 0; c < values.size() && c < 20; ++c) s += (c ? ", " : "") + to_text(values[c]);
  return s + (values.size() > 20 ? ", ...)" : ")");
}

inline std::string quoted(std::string_view token) {
  // appended piece by piece: "\"" + std::string(...) trips GCC 12's -Wrestrict false positive at -O2
  std::string s;
  s.reserve(token.size() + 2);
  s += '"';
  s += token;
  s += '"';
  return s;
}

}  // namespace detail

/// Reads a LIBSVM file into sparse rows. Throws DataError naming FILE:LINE and the bad token for: a token that is
/// not index:value, an index < 1 ("indices start at 1") or above 2^31 − 1, indices not increasing, a label or
/// value that is not a finite number, an index above an explicit dim; and for a missing file or one without
/// samples. ConfigError for a dim outside [0, 2^31 − 1].
inline LibsvmSamples read_libsvm(const std::filesystem::path& file, const LibsvmOptions& opt = {}) {
  detail::require_in_range("dim", opt.dim, Index{0}, libsvm_max_index);
  const std::string name = file.string();
  std::error_code fs_ec;
  if (!std::filesystem::exists(file, fs_ec)) throw DataError("cannot open " + name + ": no such file");
  if (std::filesystem::is_directory(file, fs_ec)) throw DataError("cannot open " + name + ": is a directory");
  std::ifstream in(file, std::ios::binary);
  if (!in) throw DataError("cannot open " + name + ": not readable");

  LibsvmSamples s;
  s.starts.push_back(0);
  Index max_index = 0;
  std::string line;
  Index line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    const auto where = [&] { return name + ":" + detail::to_text(line_no) + ": "; };
    std::string_view rest(line);
    if (const auto hash = rest.find('#'); hash != std::string_view::npos) rest = rest.substr(0, hash);
    bool first = true;
    Index previous = 0;
    while (true) {
      std::size_t b = 0;
      while (b < rest.size() && detail::libsvm_space(rest[b])) ++b;
      rest.remove_prefix(b);
      if (rest.empty()) break;
      std::size_t e = 0;
      while (e < rest.size() && !detail::libsvm_space(rest[e])) ++e;
      const std::string_view token = rest.substr(0, e);
      rest.remove_prefix(e);
      if (first) {
        double label = 0.0;
        if (!detail::parse_finite(token, label))
          throw DataError(where() + "label " + detail::quoted(token) + " is not a finite number");
        s.labels.push_back(label);
        s.lines.push_back(line_no);
        first = false;
        continue;
      }
      const auto colon = token.find(':');
      Index index = 0;
      double value = 0.0;
      const detail::IndexParse parsed = colon == std::string_view::npos
                                            ? detail::IndexParse::not_an_index
                                            : detail::parse_index(token.substr(0, colon), index);
      if (parsed == detail::IndexParse::not_an_index)
        throw DataError(where() + "expected index:value, got " + detail::quoted(token));
      if (parsed == detail::IndexParse::too_large)
        throw DataError(where() + "index " + std::string(token.substr(0, colon)) + " in " + detail::quoted(token) +
                        " is too large (accepted: indices in [1, " + detail::to_text(libsvm_max_index) + "])");
      if (index == 0) throw DataError(where() + "index 0 in " + detail::quoted(token) + " (indices start at 1)");
      if (index <= previous)
        throw DataError(where() + "indices not increasing: " + detail::quoted(token) + " after index " +
                        detail::to_text(previous));
      if (!detail::parse_finite(token.substr(colon + 1), value))
        throw DataError(where() + "value is not a finite number in " + detail::quoted(token));
      if (opt.dim > 0 && index > opt.dim)
        throw DataError(where() + "index " + detail::to_text(index) + " exceeds dim = " + detail::to_text(opt.dim) +
                        " in " + detail::quoted(token) + " (accepted: indices in [1, dim])");
      previous = index;
      max_index = std::max(max_index, index);
      if (value != 0.0) {
        s.indices.push_back(index - 1);
        s.values.push_back(value);
      }
    }
    if (!first) s.starts.push_back(static_cast<Index>(s.indices.size()));
  }
  if (in.bad()) throw DataError(name + ": read error after line " + detail::to_text(line_no));
  if (s.labels.empty())
    throw DataError(name + ": no samples (the file is empty or holds only comments and blank lines)");
  s.dim = opt.dim > 0 ? opt.dim : max_index;
  if (s.dim == 0 && !opt.bias)
    throw DataError(name + ": no features (no index:value pair in any line, and neither dim nor bias set)");
  return s;
}

namespace detail {

/// The message for a label outside the given mapping: "FILE:LINE: label 3 is not one of the 2 <source> (1, 2)".
template <class T>
DataError label_not_in(const std::string& name, Index line, T label, std::span<const T> values,
                       std::string_view source) {
  return DataError(name + ":" + to_text(line) + ": label " + to_text(label) + " is not one of the " +
                   to_text(values.size()) + " " + std::string(source) + " " + values_text(values));
}

/// The ±1 mapping of a file's own labels: {−1, +1} kept, {0, 1}, else the smaller of two values → −1.
inline std::array<double, 2> binary_mapping(const std::string& name, std::vector<double> distinct) {
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  const auto subset_of = [&](double lo, double hi) {
    return std::all_of(distinct.begin(), distinct.end(), [&](double v) { return v == lo || v == hi; });
  };
  if (distinct.size() > 2)
    throw DataError(name + ": " + to_text(distinct.size()) + " distinct labels (" + to_text(distinct[0]) + ", " +
                    to_text(distinct[1]) + ", " + to_text(distinct[2]) + (distinct.size() > 3 ? ", ..." : "") +
                    ") for binary data (accepted: 2); use read_libsvm_multiclass");
  if (subset_of(-1.0, 1.0)) return {-1.0, 1.0};
  if (subset_of(0.0, 1.0)) return {0.0, 1.0};
  if (distinct.size() == 2) return {distinct[0], distinct[1]};
  throw DataError(name + ": the only label is " + to_text(distinct[0]) +
                  ", which cannot be mapped to -1 or +1 (accepted: labels in {-1, +1} or {0, 1}, or two values)");
}

}  // namespace detail

/// Reads a LIBSVM file as binary data with labels ±1. With `label_values` empty the file's own labels set the
/// mapping: labels in {−1, +1} are kept, {0, 1} become {−1, +1}, any other two distinct values become −1 (the
/// smaller) and +1 (the larger). Otherwise label_values[0] becomes −1 and label_values[1] +1 (two increasing
/// values: pass a training file's mapping to read its test file, which may hold a single class). The mapping is
/// returned in label_values. Throws DataError for more than two distinct labels (naming the count), a label not
/// in `label_values` (naming FILE:LINE, the label and the values, described by `label_source`), and as
/// read_libsvm; ConfigError for bad `label_values`.
inline LibsvmBinaryData read_libsvm_binary(const std::filesystem::path& file, const LibsvmOptions& opt = {},
                                           std::span<const double> label_values = {},
                                           std::string_view label_source = "label_values given") {
  if (!label_values.empty()) {
    if (label_values.size() != 2)
      throw ConfigError("label_values (size)", detail::to_text(label_values.size()),
                        "empty (take the file's labels) or 2 values (for -1 and +1)");
    detail::require(
        std::isfinite(label_values[0]) && std::isfinite(label_values[1]) && label_values[1] > label_values[0],
        "label_values[1]", label_values[1], "a finite number > label_values[0] = " + detail::to_text(label_values[0]));
  }
  const LibsvmSamples s = read_libsvm(file, opt);
  const std::string name = file.string();
  LibsvmBinaryData out;
  if (label_values.empty())
    out.label_values = detail::binary_mapping(name, s.labels);
  else
    out.label_values = {label_values[0], label_values[1]};
  out.labels.resize(s.num_samples());
  for (Index i = 0; i < s.num_samples(); ++i) {
    const double y = s.labels[static_cast<std::size_t>(i)];
    if (y != out.label_values[0] && y != out.label_values[1])
      throw detail::label_not_in<double>(name, s.lines[static_cast<std::size_t>(i)], y, out.label_values, label_source);
    out.labels[i] = y == out.label_values[0] ? -1.0 : 1.0;
  }
  out.features = s.dense_features(opt.bias, name);
  return out;
}

/// Reads a LIBSVM file as multiclass data. Labels must be integers. With `label_values` empty, the C distinct
/// labels map to classes 0 … C − 1 in increasing order (C >= 2); otherwise class c is label_values[c] (strictly
/// increasing, at least 2), which keeps the classes of a training and a test file aligned. The mapping is
/// returned in label_values. Throws DataError naming FILE:LINE for a non-integer label or one not in
/// `label_values` (naming the values, described by `label_source`), for fewer than 2 classes, and as
/// read_libsvm; ConfigError for bad `label_values`.
inline LibsvmClassificationData read_libsvm_multiclass(const std::filesystem::path& file, const LibsvmOptions& opt = {},
                                                       std::span<const Index> label_values = {},
                                                       std::string_view label_source = "label_values given") {
  for (std::size_t c = 1; c < label_values.size(); ++c)
    detail::require(label_values[c] > label_values[c - 1], "label_values[" + detail::to_text(c) + "]", label_values[c],
                    "strictly increasing values (after " + detail::to_text(label_values[c - 1]) + ")");
  if (label_values.size() == 1)
    throw ConfigError("label_values (size)", "1", "empty (take the file's labels) or at least 2 values");
  const LibsvmSamples s = read_libsvm(file, opt);
  const std::string name = file.string();
  constexpr double max_exact = 9007199254740992.0;  // 2^53: every integer up to it is exact in a double
  std::vector<Index> values(s.labels.size());
  for (std::size_t i = 0; i < s.labels.size(); ++i) {
    const double y = s.labels[i];
    if (y != std::floor(y) || std::abs(y) > max_exact)
      throw DataError(name + ":" + detail::to_text(s.lines[i]) + ": label " + detail::to_text(y) +
                      " is not an integer (accepted: integer class labels)");
    values[i] = static_cast<Index>(y);
  }
  LibsvmClassificationData out;
  if (label_values.empty()) {
    out.label_values = values;
    std::sort(out.label_values.begin(), out.label_values.end());
    out.label_values.erase(std::unique(out.label_values.begin(), out.label_values.end()), out.label_values.end());
    if (out.label_values.size() < 2)
      throw DataError(name + ": only one distinct label (" + detail::to_text(out.label_values[0]) +
                      ") (accepted: at least 2 classes; pass label_values to fix the classes)");
  } else {
    out.label_values.assign(label_values.begin(), label_values.end());
  }
  out.labels.resize(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) {
    const auto it = std::lower_bound(out.label_values.begin(), out.label_values.end(), values[i]);
    if (it == out.label_values.end() || *it != values[i])
      throw detail::label_not_in<Index>(name, s.lines[i], values[i], out.label_values, label_source);
    out.labels[i] = static_cast<Index>(it - out.label_values.begin());
  }
  out.classes = static_cast<Index>(out.label_values.size());
  out.features = s.dense_features(opt.bias, name);
  return out;
}

}  // namespace lgm
