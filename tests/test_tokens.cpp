// Token streams (lgm/data/tokens.hpp): text files as bytes, the fortunes corpus, llm.c shards written here and read
// back exactly, every malformed shard refused naming the file and the field, the fixed train/validation split and
// the unigram entropy against a second computation.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <lgm/data/tokens.hpp>
#include <map>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

/// A directory of this process under the temp directory, removed at scope exit.
struct ScratchDir {
  fs::path path = fs::temp_directory_path() / ("lgm_test_tokens_" + std::to_string(::getpid()));
  ScratchDir() { fs::create_directories(path); }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path write(const std::string& name, const std::string& bytes) const {
    std::ofstream(path / name, std::ios::binary) << bytes;
    return path / name;
  }
};

/// An llm.c shard with header fields (magic, version, count) and the given uint16 payload.
std::string shard(std::int32_t magic, std::int32_t version, std::int32_t count, const std::vector<std::uint16_t>& t) {
  std::string s = lgm::encode_llmc_shard(t);
  const auto put = [&](std::size_t at, std::int32_t v) {
    for (int k = 0; k < 4; ++k) s[at + static_cast<std::size_t>(k)] = static_cast<char>((v >> (8 * k)) & 0xFF);
  };
  put(0, magic);
  put(4, version);
  put(8, count);
  return s;
}

}  // namespace

TEST_CASE("tokens: text files are their bytes, in order; missing and empty files are refused") {
  const ScratchDir dir;
  const fs::path a = dir.write("a.txt", "hi\n"), b = dir.write("b.txt", std::string("\xff\x00z", 3));
  const lgm::TokenData d = lgm::read_text_tokens({a, b});
  CHECK(d.tokens == std::vector<std::uint16_t>{'h', 'i', '\n', 255, 0, 'z'});
  CHECK(d.vocab == 256);
  CHECK(d.used_vocab() == 256);
  CHECK_THROWS_WITH_AS(lgm::read_text_tokens({dir.path / "none.txt"}), doctest::Contains("no such file"),
                       lgm::DataError);
  CHECK_THROWS_WITH_AS(lgm::read_text_tokens({dir.path}), doctest::Contains("is a directory"), lgm::DataError);
  CHECK_THROWS_WITH_AS(lgm::read_text_tokens({dir.write("e.txt", "")}), doctest::Contains("no text"), lgm::DataError);
  CHECK_THROWS_WITH_AS(lgm::read_fortunes(dir.path / "nowhere"), doctest::Contains("apt-get install fortunes"),
                       lgm::DataError);
}

TEST_CASE("tokens: the fortunes corpus reads every fortune file, not the .dat indices") {
  const ScratchDir dir;
  dir.write("b", "bee\n%\n");
  dir.write("a", "ay\n");
  dir.write("a.dat", "BINARY");
  const lgm::TokenData d = lgm::read_fortunes(dir.path);
  CHECK(std::string(d.tokens.begin(), d.tokens.end()) == "ay\nbee\n%\n");  // sorted by name
  if (fs::is_directory(lgm::fortunes_directory())) {
    const lgm::TokenData f = lgm::read_fortunes();
    MESSAGE("fortunes corpus: " << f.count() << " bytes from " << f.source);
    CHECK(f.count() > 100000);
  }
}

TEST_CASE("tokens: an llm.c shard round-trips; malformed shards are refused naming the file and the field") {
  const ScratchDir dir;
  const std::vector<std::uint16_t> t{0, 1, 50256, 7, 256};
  const lgm::TokenData d = lgm::read_llmc_shard(dir.write("ok.bin", lgm::encode_llmc_shard(t)));
  CHECK(d.tokens == t);
  CHECK(d.vocab == 50257);
  const auto refused = [&](const std::string& name, const std::string& bytes, const std::string& what,
                           lgm::Index vocab = 50257) {
    CAPTURE(name);
    const fs::path p = dir.write(name, bytes);
    CHECK_THROWS_WITH_AS(lgm::read_llmc_shard(p, vocab), doctest::Contains(what.c_str()), lgm::DataError);
    CHECK_THROWS_WITH_AS(lgm::read_llmc_shard(p, vocab), doctest::Contains(p.string().c_str()), lgm::DataError);
  };
  refused("short.bin", std::string(100, '\0'), "shorter than the 1024-byte header");
  refused("magic.bin", shard(20240521, 1, 5, t), "magic 20240521 (accepted: 20240520");
  refused("version.bin", shard(20240520, 2, 5, t), "version 2 (accepted: 1");
  refused("beyond.bin", shard(20240520, 1, 6, t), "token count 6 needs 12 bytes");
  refused("negative.bin", shard(20240520, 1, -3, t), "token count -3");
  refused("extra.bin", shard(20240520, 1, 4, t), "token count 4 needs 8 bytes after the header; the file has 10");
  refused("vocab.bin", lgm::encode_llmc_shard(t), "token[2] = 50256 (accepted: below the vocabulary 300)", 300);
  refused("empty.bin", lgm::encode_llmc_shard({}), "no tokens");
}

TEST_CASE("tokens: the split keeps the last ceil(f n) tokens for validation; the unigram entropy by hand") {
  lgm::TokenData d;
  d.source = "ten";
  for (std::uint16_t v : {1, 1, 2, 3, 1, 2, 1, 1, 4, 5}) d.tokens.push_back(v);
  const lgm::TokenSplit s = lgm::split_tokens(d, 0.25);  // ⌈2.5⌉ = 3
  CHECK(s.train.tokens == std::vector<std::uint16_t>{1, 1, 2, 3, 1, 2, 1});
  CHECK(s.validation.tokens == std::vector<std::uint16_t>{1, 4, 5});
  CHECK_THROWS_WITH_AS(lgm::split_tokens(d, 1.0), doctest::Contains("validation_fraction"), lgm::ConfigError);
  CHECK_THROWS_WITH_AS(lgm::split_tokens(d, 0.05), doctest::Contains("tokens in ten"), lgm::ConfigError);
  // frequencies 5, 2, 1, 1, 1 of 10
  std::map<int, double> p{{1, 0.5}, {2, 0.2}, {3, 0.1}, {4, 0.1}, {5, 0.1}};
  double h = 0.0;
  for (const auto& [v, q] : p) h += q * std::log(1.0 / q);
  CHECK(lgm::unigram_entropy(d) == doctest::Approx(h).epsilon(1e-14));
}
