// Token streams for language models (docs/data.md §Token streams): the bytes of text files as tokens (vocabulary
// 256), the text of Debian's `fortunes` package as the default corpus, and llm.c's token shards
//   header: 256 little-endian int32 — [0] magic 20240520, [1] version 1, [2] token count; then count uint16 tokens,
// so that GPT-2-tokenized corpora can be brought as they are. A stream is split into training and validation
// tokens by a fixed rule: the last ⌈f·n⌉ tokens validate.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"
#include "lgm/data/files.hpp"

namespace lgm {

/// A token stream and its vocabulary (every token < vocab).
struct TokenData {
  std::vector<std::uint16_t> tokens;
  Index vocab = 256;
  std::string source;  ///< where the tokens came from (files), for messages

  Index count() const noexcept { return static_cast<Index>(tokens.size()); }
  /// The largest token + 1 (0 for an empty stream).
  Index used_vocab() const noexcept {
    std::uint16_t top = 0;
    for (std::uint16_t t : tokens) top = std::max(top, t);
    return tokens.empty() ? 0 : Index{top} + 1;
  }
};

inline constexpr std::int32_t llmc_shard_magic = 20240520;
inline constexpr std::int32_t llmc_shard_version = 1;
inline constexpr Index llmc_header_ints = 256;

/// The text of the `fortunes` package (Debian: /usr/share/games/fortunes).
inline const char* fortunes_directory() { return "/usr/share/games/fortunes"; }

namespace detail {

/// All bytes of a regular file (DataError naming it when it cannot be read whole).
inline std::string read_whole_file(const std::filesystem::path& file) {
  const std::uintmax_t size = regular_file_size(file);
  std::ifstream in(file, std::ios::binary);
  if (!in) throw DataError("cannot open " + file.string() + " for reading");
  std::string bytes(static_cast<std::size_t>(size), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(size));
  if (static_cast<std::uintmax_t>(in.gcount()) != size)
    throw DataError(file.string() + ": read " + to_text(in.gcount()) + " of " + to_text(size) +
                    " bytes; did it change while it was read?");
  return bytes;
}

inline std::int32_t le_int32(const unsigned char* p) {
  return static_cast<std::int32_t>(std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 |
                                   std::uint32_t{p[3]} << 24);
}

}  // namespace detail

/// The bytes of the files, in order, as tokens of vocabulary 256. DataError for a file that cannot be read or
/// an empty result.
inline TokenData read_text_tokens(const std::vector<std::filesystem::path>& files) {
  TokenData out;
  for (const auto& f : files) {
    const std::string bytes = detail::read_whole_file(f);
    for (unsigned char c : bytes) out.tokens.push_back(c);
    out.source += (out.source.empty() ? "" : ", ") + f.string();
  }
  if (out.tokens.empty())
    throw DataError((out.source.empty() ? std::string("no text files") : out.source) +
                    ": no text (accepted: at least one byte)");
  return out;
}

/// The fortunes corpus: every fortune file of `directory` (the files without an extension; not the .dat
/// indices or .u8 links), sorted by name. DataError when the directory or its files are missing, naming the
/// package to install.
inline TokenData read_fortunes(const std::filesystem::path& directory = fortunes_directory()) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(directory, ec))
    throw DataError("cannot open " + directory.string() +
                    ": no such directory (the text of Debian's `fortunes` package: apt-get install fortunes)");
  std::vector<fs::path> files;
  for (const fs::directory_entry& e : fs::directory_iterator(directory, ec))
    if (e.is_regular_file() && !e.is_symlink() && !e.path().has_extension()) files.push_back(e.path());
  if (files.empty()) throw DataError(directory.string() + ": no fortune files (apt-get install fortunes)");
  std::sort(files.begin(), files.end());
  TokenData out = read_text_tokens(files);
  out.source = directory.string() + " (" + detail::to_text(files.size()) + " files)";
  return out;
}

/// An llm.c token shard (header above). DataError naming the file for a file shorter than the header, a wrong
/// magic or version, a token count beyond (or short of) the file's size, and a token ≥ vocab.
inline TokenData read_llmc_shard(const std::filesystem::path& file, Index vocab = 50257) {
  detail::require(vocab >= 2 && vocab <= 65536, "vocab", vocab, "an integer in [2, 65536] (uint16 tokens)");
  const std::string name = file.string();
  const std::string bytes = detail::read_whole_file(file);
  const auto header_bytes = static_cast<std::size_t>(llmc_header_ints * 4);
  if (bytes.size() < header_bytes)
    throw DataError(name + ": " + detail::to_text(bytes.size()) + " bytes, shorter than the 1024-byte header of an " +
                    "llm.c token shard (256 int32: magic 20240520, version 1, token count)");
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::int32_t magic = detail::le_int32(p), version = detail::le_int32(p + 4), count = detail::le_int32(p + 8);
  if (magic != llmc_shard_magic)
    throw DataError(name + ": magic " + detail::to_text(magic) + " (accepted: 20240520, an llm.c token shard)");
  if (version != llmc_shard_version)
    throw DataError(name + ": version " + detail::to_text(version) + " (accepted: 1, uint16 tokens)");
  const std::size_t payload = bytes.size() - header_bytes;
  if (count < 0 || static_cast<std::size_t>(count) * 2 != payload)
    throw DataError(name + ": the header's token count " + detail::to_text(count) + " needs " +
                    detail::to_text(2 * static_cast<std::int64_t>(count)) + " bytes after the header; the file has " +
                    detail::to_text(payload) + (static_cast<std::size_t>(count) * 2 > payload ? " (truncated?)" : ""));
  TokenData out;
  out.vocab = vocab;
  out.source = name;
  out.tokens.resize(static_cast<std::size_t>(count));
  for (std::size_t i = 0; i < out.tokens.size(); ++i) {
    const unsigned char* t = p + header_bytes + 2 * i;
    const auto v = static_cast<std::uint16_t>(t[0] | t[1] << 8);
    if (v >= vocab)
      throw DataError(name + ": token[" + detail::to_text(i) + "] = " + detail::to_text(v) + " (accepted: below the " +
                      "vocabulary " + detail::to_text(vocab) + ")");
    out.tokens[i] = v;
  }
  if (out.tokens.empty()) throw DataError(name + ": no tokens (accepted: at least one)");
  return out;
}

/// The bytes of an llm.c shard holding `tokens` (each written as little-endian uint16).
inline std::string encode_llmc_shard(const std::vector<std::uint16_t>& tokens) {
  std::string out(static_cast<std::size_t>(llmc_header_ints * 4 + 2 * static_cast<Index>(tokens.size())), '\0');
  const auto put32 = [&](std::size_t at, std::uint32_t v) {
    for (int k = 0; k < 4; ++k) out[at + static_cast<std::size_t>(k)] = static_cast<char>(v >> (8 * k) & 0xFF);
  };
  put32(0, static_cast<std::uint32_t>(llmc_shard_magic));
  put32(4, static_cast<std::uint32_t>(llmc_shard_version));
  put32(8, static_cast<std::uint32_t>(tokens.size()));
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    out[1024 + 2 * i] = static_cast<char>(tokens[i] & 0xFF);
    out[1024 + 2 * i + 1] = static_cast<char>(tokens[i] >> 8);
  }
  return out;
}

/// Training and validation tokens of one stream.
struct TokenSplit {
  TokenData train, validation;
};

/// The fixed split: the last ⌈fraction · n⌉ tokens validate, the rest train. ConfigError for a fraction outside
/// (0, 1) or a stream too short to give both parts `min_tokens` tokens.
inline TokenSplit split_tokens(const TokenData& data, double fraction = 0.1, Index min_tokens = 2) {
  detail::require(fraction > 0.0 && fraction < 1.0, "validation_fraction", fraction, "a number in (0, 1)");
  const Index n = data.count();
  const auto v = static_cast<Index>(std::ceil(fraction * static_cast<double>(n)));
  detail::require(v >= min_tokens && n - v >= min_tokens, "tokens in " + data.source, n,
                  "enough for " + detail::to_text(min_tokens) +
                      " training and validation tokens at validation_fraction " + detail::to_text(fraction));
  TokenSplit s;
  s.train.vocab = s.validation.vocab = data.vocab;
  s.train.source = data.source + " (training part)";
  s.validation.source = data.source + " (validation part)";
  s.train.tokens.assign(data.tokens.begin(), data.tokens.end() - v);
  s.validation.tokens.assign(data.tokens.end() - v, data.tokens.end());
  return s;
}

/// The unigram entropy of a stream in nats: −Σ_v p_v log p_v with p_v the tokens' frequencies (the loss of the
/// best model that ignores context; a language model should go below it).
inline double unigram_entropy(const TokenData& data) {
  std::vector<double> counts(static_cast<std::size_t>(std::max<Index>(data.vocab, data.used_vocab())), 0.0);
  for (std::uint16_t t : data.tokens) counts[t] += 1.0;
  double h = 0.0;
  const double n = static_cast<double>(data.count());
  for (double c : counts)
    if (c > 0.0) h -= c / n * std::log(c / n);
  return h;
}

}  // namespace lgm
