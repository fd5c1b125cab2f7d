// Reports of lgm-sim: metrics.jsonl schema and round trip, summary.json / summary.md, gnuplot plots, progress.
#include <doctest/doctest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "lgm/core/error.hpp"
#include "progress.hpp"
#include "report.hpp"
#include "skip.hpp"
#include "support.hpp"

namespace {

using namespace lgm;
using namespace lgm::sim;
namespace fs = std::filesystem;

using lgm::sim::test::TempDir;

std::vector<std::string> read_lines(const fs::path& file) {
  std::ifstream in(file);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

const std::vector<std::string> k_keys = {
    "run",          "round",      "step",           "samples",         "comm_rounds",
    "bytes",        "sim_time_s", "sim_time_10g_s", "sim_time_100g_s", "wall_time_s",
    "lr",           "H",          "batch_min",      "batch_mean",      "batch_max",
    "batch_loss",   "loss",       "grad_norm_sq",   "subopt",          "test_loss",
    "test_accuracy"};

RoundRecord sample_record(const std::string& run, Index round) {
  RoundRecord r;
  r.run = run;
  r.round = round;
  r.step = 4 * (round + 1);
  r.samples = 32 * r.step;
  r.comm_rounds = round + 1;
  r.bytes = 31400.0 * static_cast<double>(round + 1);
  r.sim_time_s = 0.1 / 3.0 * static_cast<double>(round + 1);
  r.sim_time_10g_s = 0.2 * static_cast<double>(round + 1);
  r.sim_time_100g_s = 0.02 * static_cast<double>(round + 1);
  r.wall_time_s = 1e-3 * static_cast<double>(round);
  r.lr = 0.1;
  r.H = 4;
  r.batch_min = 8;
  r.batch_mean = 8.5;
  r.batch_max = 9;
  r.batch_loss = 0.7 / static_cast<double>(round + 1);
  if (round % 2 == 0) {
    r.loss = 1.0 / static_cast<double>(round + 1);
    r.grad_norm_sq = 1e-3;
  }
  return r;
}

VariantSummary summary(const std::string& name, std::optional<double> acc, std::optional<double> subopt,
                       std::optional<double> loss) {
  VariantSummary v;
  v.name = name;
  v.steps = 1000;
  v.comm_rounds = 250;
  v.samples = 32000;
  v.bytes = 12.345e6;
  v.sim_time_s = 3.5;
  v.sim_time_10g_s = 12.3456;
  v.sim_time_100g_s = 1.23456;
  v.wall_time_s = 0.5;
  v.batch_min = v.batch_max = 32;
  v.batch_mean = 32;
  v.test_accuracy = acc;
  v.subopt = subopt;
  v.loss = loss;
  return v;
}

/// Splits a markdown table row "| a | b |" into trimmed cells.
std::vector<std::string> cells(const std::string& row) {
  std::vector<std::string> out;
  std::string cur;
  for (std::size_t i = 1; i < row.size(); ++i) {
    if (row[i] == '|' && row[i - 1] != '\\') {
      const auto a = cur.find_first_not_of(' '), b = cur.find_last_not_of(' ');
      out.push_back(a == std::string::npos ? "" : cur.substr(a, b - a + 1));
      cur.clear();
    } else {
      cur += row[i];
    }
  }
  return out;
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> lines;
  std::istringstream is(s);
  for (std::string line; std::getline(is, line);) lines.push_back(line);
  return lines;
}

bool is_png(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  char sig[8] = {};
  in.read(sig, 8);
  const unsigned char expected[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  return in.gcount() == 8 && std::equal(sig, sig + 8, reinterpret_cast<const char*>(expected));
}

}  // namespace

TEST_CASE("report: metrics.jsonl has every key in order, null for nullopt and non-finite, flushed per line") {
  TempDir dir;
  const fs::path file = dir.path / "sub" / "metrics.jsonl";
  MetricsWriter writer(file);
  CHECK(writer.path() == file);
  RoundRecord a = sample_record("local SGD, H=4", 0);
  RoundRecord b = sample_record("η=0.1 \"quoted\" back\\slash", 1);
  b.loss = std::numeric_limits<double>::quiet_NaN();  // diverged: still a valid JSON line
  b.batch_loss = std::numeric_limits<double>::infinity();
  b.test_accuracy = 0.75;
  writer.write(a);
  writer.write(b);

  // Read while the writer is alive: every line is already on disk.
  const auto lines = read_lines(file);
  REQUIRE(lines.size() == 2);
  for (const auto& line : lines) {
    const auto j = nlohmann::ordered_json::parse(line);
    REQUIRE(j.is_object());
    std::vector<std::string> keys;
    for (const auto& item : j.items()) keys.push_back(item.key());
    CHECK(keys == k_keys);
  }
  const auto ja = nlohmann::json::parse(lines[0]);
  CHECK(ja["subopt"].is_null());
  CHECK(ja["test_accuracy"].is_null());
  CHECK(ja["loss"].get<double>() == 1.0);
  CHECK(ja["round"].is_number_integer());
  const auto jb = nlohmann::json::parse(lines[1]);
  CHECK(jb["loss"].is_null());
  CHECK(jb["grad_norm_sq"].is_null());
  CHECK(jb["batch_loss"].is_null());
  CHECK(jb["test_accuracy"].get<double>() == 0.75);
  CHECK(jb["run"].get<std::string>() == b.run);

  // Appending keeps what is there.
  {
    MetricsWriter more(file, /*append=*/true);
    more.write(sample_record("third", 2));
  }
  CHECK(read_lines(file).size() == 3);
  CHECK(read_metrics(file).size() == 3);
}

TEST_CASE("report: RoundRecord -> JSON -> RoundRecord round trip is exact") {
  RoundRecord r = sample_record("QSR α=0.2/γ=2", 6);
  r.subopt = 1.2345678901234567e-7;
  r.test_loss = 0.4321;
  r.test_accuracy = 0.8512;
  r.lr = 0.1 / 7.0;  // needs 17 digits
  const std::string text = to_json(r).dump();
  const RoundRecord s = round_record_from_json(nlohmann::json::parse(text));
  CHECK(s.run == r.run);
  CHECK(s.round == r.round);
  CHECK(s.step == r.step);
  CHECK(s.samples == r.samples);
  CHECK(s.comm_rounds == r.comm_rounds);
  CHECK(s.bytes == r.bytes);
  CHECK(s.sim_time_s == r.sim_time_s);
  CHECK(s.sim_time_10g_s == r.sim_time_10g_s);
  CHECK(s.sim_time_100g_s == r.sim_time_100g_s);
  CHECK(s.wall_time_s == r.wall_time_s);
  CHECK(s.lr == r.lr);
  CHECK(s.H == r.H);
  CHECK(s.batch_min == r.batch_min);
  CHECK(s.batch_mean == r.batch_mean);
  CHECK(s.batch_max == r.batch_max);
  CHECK(s.batch_loss == r.batch_loss);
  CHECK(s.loss == r.loss);
  CHECK(s.grad_norm_sq == r.grad_norm_sq);
  CHECK(s.subopt == r.subopt);
  CHECK(s.test_loss == r.test_loss);
  CHECK(s.test_accuracy == r.test_accuracy);
  CHECK(round_record_from_json(to_json(r)).lr == r.lr);  // the ordered_json overload

  // nullopt stays nullopt; a non-finite non-optional double comes back as NaN.
  RoundRecord n = sample_record("n", 1);
  n.batch_loss = std::numeric_limits<double>::quiet_NaN();
  const RoundRecord m = round_record_from_json(nlohmann::json::parse(to_json(n).dump()));
  CHECK_FALSE(m.loss.has_value());
  CHECK_FALSE(m.test_accuracy.has_value());
  CHECK(std::isnan(m.batch_loss));
}

TEST_CASE("report: round_record_from_json and read_metrics reject bad input, naming field, file and line") {
  auto j = nlohmann::json::parse(to_json(sample_record("x", 0)).dump());
  j.erase("step");
  CHECK_THROWS_WITH_AS(round_record_from_json(j), doctest::Contains("step"), DataError);
  j = nlohmann::json::parse(to_json(sample_record("x", 0)).dump());
  j["round"] = "three";
  CHECK_THROWS_WITH_AS(round_record_from_json(j), doctest::Contains("invalid round = \"three\""), DataError);
  CHECK_THROWS_AS(round_record_from_json(nlohmann::json::array()), DataError);

  TempDir dir;
  const fs::path file = dir.path / "metrics.jsonl";
  {
    std::ofstream out(file);
    out << to_json(sample_record("a", 0)).dump() << "\n\n" << to_json(sample_record("a", 1)).dump() << "\n";
    out << "{\"run\": \"a\", \"round\": 2, oops\n";
  }
  try {
    read_metrics(file);
    FAIL("read_metrics accepted a bad line");
  } catch (const DataError& e) {
    const std::string what = e.what();
    CHECK(what.find(file.string() + ":4:") != std::string::npos);
    CHECK(what.find("invalid JSON") != std::string::npos);
  }
  {
    std::ofstream out(file);
    out << to_json(sample_record("a", 0)).dump() << "\n{\"run\": 3}\n";
  }
  CHECK_THROWS_WITH_AS(read_metrics(file), doctest::Contains((file.string() + ":2: invalid run = 3").c_str()),
                       DataError);
  CHECK_THROWS_WITH_AS(read_metrics(dir.path / "missing.jsonl"), doctest::Contains("missing.jsonl"), DataError);
  CHECK_THROWS_WITH_AS(MetricsWriter(dir.path / "metrics.jsonl" / "x.jsonl"), doctest::Contains("x.jsonl"),
                       std::runtime_error);
}

/// Runs `body` in a child process whose files may not grow past `limit_bytes` (RLIMIT_FSIZE: writes past it
/// fail with EFBIG, as on a full disk, deterministically and without root). The child's exit status is
/// body's return value (0 = every check held); 99 when the limit cannot be set.
int in_child_with_file_size_limit(rlim_t limit_bytes, int (*body)(const fs::path&), const fs::path& dir) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::signal(SIGXFSZ, SIG_IGN);  // EFBIG instead of the signal (lgm-sim's main does the same)
    rlimit lim{limit_bytes, limit_bytes};
    if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) ::_exit(99);
    ::_exit(body(dir));
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

int metrics_past_the_limit(const fs::path& dir) {
  MetricsWriter w(dir / "metrics.jsonl");
  for (Index i = 0; i < 1000; ++i) {
    try {
      w.write(sample_record("a run whose lines fill the file", i));
    } catch (const OutputError& e) {
      const std::string msg = e.what();
      // names the file and the OS's reason, says what is kept
      if (msg.find("metrics.jsonl") == std::string::npos) return 1;
      if (msg.find(std::strerror(EFBIG)) == std::string::npos) return 2;
      if (msg.find("Success") != std::string::npos) return 3;
      if (msg.find(std::to_string(w.lines()) + " complete line") == std::string::npos) return 4;
      if (w.lines() != i || i == 0) return 5;
      // the file ends with a whole line: every line parses, and there are exactly w.lines() of them
      std::ifstream in(dir / "metrics.jsonl", std::ios::binary);
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (text.empty() || text.back() != '\n') return 6;
      Index lines = 0;
      std::istringstream all(text);
      for (std::string line; std::getline(all, line); ++lines)
        if (!nlohmann::json::accept(line)) return 7;
      return lines == w.lines() ? 0 : 8;
    }
  }
  return 9;  // the limit was never reached
}

int summary_past_the_limit(const fs::path& dir) {
  const fs::path file = dir / "summary.json";
  {
    std::ofstream old(file);
    old << "{\"earlier\": true}\n";
  }
  ExperimentSummary e;
  e.name = "big";
  for (int i = 0; i < 200; ++i) {
    VariantSummary v;
    v.name = "variant " + std::to_string(i);
    e.variants.push_back(v);
  }
  try {
    write_summary_json(file, e);
    return 1;  // the limit must stop it
  } catch (const OutputError& err) {
    const std::string msg = err.what();
    if (msg.find("summary.json") == std::string::npos || msg.find(std::strerror(EFBIG)) == std::string::npos) return 2;
  }
  std::ifstream in(file);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text != "{\"earlier\": true}\n") return 3;  // the earlier file is untouched, not half replaced
  std::error_code ec;
  return fs::exists(dir / "summary.json.tmp", ec) ? 4 : 0;  // and no temporary is left
}

TEST_CASE("report: a write past the disk's end cuts metrics.jsonl back to whole lines and names the reason") {
  TempDir dir;
  const int status = in_child_with_file_size_limit(4000, metrics_past_the_limit, dir.path);
  if (status == 99) return lgm::test::skip("setrlimit(RLIMIT_FSIZE) is not permitted here");
  CHECK(status == 0);
}

TEST_CASE("report: a summary that cannot be written leaves the earlier file, no temporary, and names the reason") {
  TempDir dir;
  const int status = in_child_with_file_size_limit(3000, summary_past_the_limit, dir.path);
  if (status == 99) return lgm::test::skip("setrlimit(RLIMIT_FSIZE) is not permitted here");
  CHECK(status == 0);
}

TEST_CASE("report: writing to /dev/full reports 'No space left on device', never 'Success'") {
  if (!fs::exists("/dev/full")) return lgm::test::skip("no /dev/full on this system");
  MetricsWriter w("/dev/full");
  try {
    w.write(sample_record("a", 0));
    FAIL("a write to /dev/full must fail");
  } catch (const OutputError& e) {
    CHECK(std::string(e.what()).find(std::strerror(ENOSPC)) != std::string::npos);
    CHECK(std::string(e.what()).find("Success") == std::string::npos);
    CHECK(std::string(e.what()).find("/dev/full") != std::string::npos);
  }
}

TEST_CASE("report: summary.json has the experiment and every variant's fields") {
  ExperimentSummary e;
  e.name = "fashion";
  e.problem = "softmax regression on Fashion-MNIST, d = 7850";
  e.workers = 8;
  e.variants.push_back(summary("local SGD H=8", 0.8512, std::nullopt, 0.41));
  auto bad = summary("η=10", std::nullopt, std::nullopt, std::numeric_limits<double>::quiet_NaN());
  bad.status = RunStatus::diverged;
  bad.message = "loss is NaN at round 17";
  e.variants.push_back(bad);

  TempDir dir;
  const fs::path file = dir.path / "summary.json";
  write_summary_json(file, e);
  std::ifstream in(file);
  const auto j = nlohmann::ordered_json::parse(in);
  CHECK(j["name"] == "fashion");
  CHECK(j["problem"] == e.problem);
  CHECK(j["workers"] == 8);
  CHECK(j["interrupted"] == false);
  REQUIRE(j["variants"].size() == 2);
  const auto& v0 = j["variants"][0];
  std::vector<std::string> keys;
  for (const auto& item : v0.items()) keys.push_back(item.key());
  CHECK(keys == std::vector<std::string>{"name", "status", "message", "steps", "comm_rounds", "samples", "bytes",
                                         "sim_time_s", "sim_time_10g_s", "sim_time_100g_s", "wall_time_s", "batch_min",
                                         "batch_mean", "batch_max", "loss", "grad_norm_sq", "subopt", "test_loss",
                                         "test_accuracy"});
  CHECK(v0["status"] == "completed");
  CHECK(v0["test_accuracy"].get<double>() == 0.8512);
  CHECK(v0["subopt"].is_null());
  CHECK(v0["samples"] == 32000);
  const auto& v1 = j["variants"][1];
  CHECK(v1["name"] == "η=10");
  CHECK(v1["status"] == "diverged");
  CHECK(v1["message"] == "loss is NaN at round 17");
  CHECK(v1["loss"].is_null());
  CHECK_FALSE(fs::exists(dir.path / "summary.json.tmp"));
}

TEST_CASE("report: markdown table columns and rows, with and without test accuracy") {
  ExperimentSummary e;
  e.name = "fashion";
  e.problem = "softmax regression";
  e.workers = 4;
  e.variants.push_back(summary("local SGD | H=8", 0.8512, std::nullopt, 0.41234));
  auto adaptive = summary("norm test", 0.79, std::nullopt, std::nullopt);
  adaptive.batch_min = 16;
  adaptive.batch_mean = 40.5;
  adaptive.batch_max = 64;
  adaptive.status = RunStatus::interrupted;
  e.variants.push_back(adaptive);

  auto lines = split_lines(summary_table_markdown(e));
  REQUIRE(lines.size() == 4);
  const auto header = cells(lines[0]);
  CHECK(header == std::vector<std::string>{"variant", "status", "test acc (%)", "final loss", "local steps",
                                           "comm rounds", "samples", "final local batch", "MB sent per worker",
                                           "sim time 10 Gb/s (s)", "sim time 100 Gb/s (s)", "wall (s)"});
  CHECK(cells(lines[1]).size() == header.size());
  const auto row0 = cells(lines[2]);
  REQUIRE(row0.size() == header.size());
  CHECK(row0[0] == "local SGD \\| H=8");
  CHECK(row0[1] == "completed");
  CHECK(row0[2] == "85.12");
  CHECK(row0[3] == "4.12e-01");
  CHECK(row0[4] == "1000");
  CHECK(row0[5] == "250");
  CHECK(row0[6] == "32000");
  CHECK(row0[7] == "32");
  CHECK(row0[8] == "12.3");
  CHECK(row0[9] == "12.3");
  CHECK(row0[10] == "1.23");
  CHECK(row0[11] == "0.500");
  const auto row1 = cells(lines[3]);
  CHECK(row1[1] == "interrupted");
  CHECK(row1[2] == "79.00");
  CHECK(row1[3] == "n/a");
  CHECK(row1[7] == "16/40.5/64");

  // Without test accuracy, with a known optimum: a subopt column instead.
  ExperimentSummary q;
  q.name = "quadratic";
  q.variants.push_back(summary("H=1", std::nullopt, 1.23456e-9, 0.5));
  q.variants.push_back(summary("H=16", std::nullopt, 2e-3, 0.5));
  lines = split_lines(summary_table_markdown(q));
  REQUIRE(lines.size() == 4);
  const auto qh = cells(lines[0]);
  CHECK(qh[2] == "final subopt");
  CHECK(qh[3] == "local steps");
  CHECK(qh.size() == 11);
  CHECK(cells(lines[2])[2] == "1.23e-09");
  CHECK(cells(lines[3])[2] == "2.00e-03");

  // The file: heading, problem line, table, notes for runs that did not complete.
  TempDir dir;
  e.variants[1].message = "stopped by SIGINT at round 40";
  write_summary_markdown(dir.path / "summary.md", e);
  std::ifstream in(dir.path / "summary.md");
  std::stringstream text;
  text << in.rdbuf();
  const std::string md = text.str();
  CHECK(md.rfind("# fashion\n", 0) == 0);
  CHECK(md.find("Problem: softmax regression; workers: 4") != std::string::npos);
  CHECK(md.find(lines[0].substr(0, 20)) != std::string::npos);
  CHECK(md.find("| variant | status | test acc (%) |") != std::string::npos);
  CHECK(md.find("- norm test (interrupted): stopped by SIGINT at round 40") != std::string::npos);
}

TEST_CASE("report: number formats and file-name sanitizing") {
  CHECK(sim::detail::format_percent(0.85119) == "85.12");
  CHECK(sim::detail::format_sci(0.000123456) == "1.23e-04");
  CHECK(sim::detail::format_sci(std::numeric_limits<double>::quiet_NaN()) == "nan");
  CHECK(sim::detail::format_mb(1.5e6) == "1.50");
  CHECK(sim::detail::format_mb(123.45e6) == "123.5");
  CHECK(sim::detail::format_seconds(0.0) == "0");
  CHECK(sim::detail::format_seconds(0.0123) == "0.0123");
  CHECK(sim::detail::format_seconds(1234.4) == "1234");
  CHECK(sim::detail::format_batch(8, 8.0, 8) == "8");
  CHECK(sim::detail::format_batch(8, 12.0, 16) == "8/12/16");
  CHECK(sim::detail::sanitize_file_stem("QSR η=0.1/γ=2 (a)") == "QSR_eta_0.1_gamma_2_a");
  CHECK(sim::detail::sanitize_file_stem("../..") == "run");
  CHECK(sim::detail::sanitize_file_stem("日本") == "run");
  CHECK(sim::detail::sanitize_file_stem(std::string(100, 'a')).size() == 60);
  CHECK(sim::detail::gnuplot_quote("it's a\\b_c") == "'it''s a\\b_c'");
}

namespace {

std::vector<std::vector<RoundRecord>> plot_runs() {
  // 11 variants (the size of a real comparison) with odd names; one has test accuracy and differing batches.
  std::vector<std::vector<RoundRecord>> runs;
  const std::vector<std::string> names = {"local SGD, H=1", "H=2",         "H=4",   "H=8",        "QSR η=0.1/γ=2",
                                          "post-local 'a'", "back\\slash", "a_b_c", "\"quoted\"", "norm test θ=0.9",
                                          "inner product"};
  for (std::size_t v = 0; v < names.size(); ++v) {
    std::vector<RoundRecord> recs;
    for (Index k = 0; k < 40; ++k) {
      RoundRecord r = sample_record(names[v], k);
      r.H = Index{1} << std::min<Index>(k / 10, 3);
      r.loss = std::exp(-0.05 * static_cast<double>(k) * static_cast<double>(v + 1)) + 1e-3;
      if (v == 9) {
        r.batch_min = 8 + k;
        r.batch_mean = 10.0 + static_cast<double>(k);
        r.batch_max = 12 + k;
        r.test_accuracy = 0.5 + 0.01 * static_cast<double>(k);
      }
      recs.push_back(r);
    }
    runs.push_back(recs);
  }
  runs.push_back({});  // an empty run is left out
  return runs;
}

}  // namespace

TEST_CASE("report: make_plots without gnuplot skips with a message and does not throw") {
  TempDir dir;
  PlotResult res;
  CHECK_NOTHROW(res = make_plots(dir.path, plot_runs(), "lgm-no-such-gnuplot-program"));
  CHECK_FALSE(res.made);
  CHECK(res.files.empty());
  CHECK(res.message.find("skipped") != std::string::npos);
  CHECK(res.message.find("lgm-no-such-gnuplot-program") != std::string::npos);
  // The data and the script are there to redraw later.
  CHECK(fs::exists(dir.path / "plots" / "plots.gp"));
  CHECK(fs::exists(dir.path / "plots" / "data" / "05_QSR_eta_0.1_gamma_2.loss.dat"));

  // A program that runs and fails.
  res = make_plots(dir.path, plot_runs(), "/bin/false");
  CHECK_FALSE(res.made);
  CHECK(res.message.find("failed") != std::string::npos);

  res = make_plots(dir.path, {}, "gnuplot");
  CHECK_FALSE(res.made);
  CHECK(res.message.find("no records") != std::string::npos);
}

TEST_CASE("report: make_plots with gnuplot writes the PNGs") {
  if (sim::detail::find_program("gnuplot").empty()) {
    MESSAGE("gnuplot not in PATH: real plots not tested");
    return;
  }
  TempDir dir;
  const PlotResult res = make_plots(dir.path, plot_runs());
  INFO(res.message);
  CHECK(res.made);
  const fs::path plots = dir.path / "plots";
  for (const char* png : {"test_accuracy_vs_rounds.png", "test_accuracy_vs_samples.png",
                          "test_accuracy_vs_sim_time.png", "loss_vs_rounds.png", "loss_vs_samples.png",
                          "loss_vs_sim_time.png", "batch_size_vs_steps.png", "H_vs_steps.png"}) {
    CAPTURE(png);
    CHECK(is_png(plots / png));
    CHECK(std::find(res.files.begin(), res.files.end(), plots / png) != res.files.end());
  }
  CHECK(res.files.size() == 8);
  CHECK_FALSE(fs::exists(plots / "subopt_vs_rounds.png"));
}

TEST_CASE("progress: plain lines only at the interval, with an injected clock") {
  double now = 100.0;
  std::ostringstream out;
  Progress p(out, /*quiet=*/false, /*is_terminal=*/false, 5.0, [&now] { return now; });
  p.begin_run("H=4", 0, 2, 2000, 0);
  CHECK(split_lines(out.str()).size() == 1);
  for (int k = 1; k <= 48; ++k) {  // 12 s of rounds, one every 0.25 s (exact in binary)
    now += 0.25;
    p.update(10 * k, k, k, k % 10 == 0 ? 1.0 / k : std::numeric_limits<double>::quiet_NaN());
  }
  auto lines = split_lines(out.str());
  REQUIRE(lines.size() == 3);  // begin, then at 5 s and 10 s
  CHECK(lines[0].find("run 1/2 H=4") != std::string::npos);
  CHECK(lines[1].find("10.0% run 1/2 H=4") != std::string::npos);
  CHECK(lines[1].find("round 20") != std::string::npos);
  CHECK(lines[1].find("loss 0.05") != std::string::npos);
  CHECK(lines[1].find("ETA 0:45") != std::string::npos);
  CHECK(lines[1].find("40 samples/s") != std::string::npos);
  CHECK(lines[2].find("20.0%") != std::string::npos);
  CHECK(out.str().find('\r') == std::string::npos);

  p.message("warning: something");
  VariantSummary v = summary("H=4", std::nullopt, std::nullopt, 0.25);
  v.status = RunStatus::diverged;
  v.message = "loss is NaN at round 48";
  p.end_run(v);
  lines = split_lines(out.str());
  REQUIRE(lines.size() == 5);
  CHECK(lines[3] == "warning: something");
  CHECK(lines[4].find("H=4: diverged") != std::string::npos);
  CHECK(lines[4].find("loss is NaN at round 48") != std::string::npos);

  // A budget in steps.
  std::ostringstream steps_out;
  Progress ps(steps_out, false, false, 1.0, [&now] { return now; });
  ps.begin_run("s", 1, 2, 0, 200);
  now += 2.0;
  ps.update(0, 50, 3, std::numeric_limits<double>::quiet_NaN());
  CHECK(steps_out.str().find("25.0% run 2/2 s") != std::string::npos);
}

TEST_CASE("progress: terminal bar redraws at most 10 times a second; quiet prints only messages") {
  double now = 0.0;
  std::ostringstream out;
  Progress p(out, false, /*is_terminal=*/true, 5.0, [&now] { return now; });
  p.begin_run("η run", 0, 1, 0, 100);
  for (int k = 1; k <= 100; ++k) {  // 1 s, one update every 10 ms
    now += 0.01;
    p.update(k, k, k, 0.5);
  }
  const std::string s = out.str();
  const auto draws = std::count(s.begin(), s.end(), '\r');
  CHECK(draws >= 9);
  CHECK(draws <= 12);
  CHECK(s.find('\n') == std::string::npos);
  CHECK(s.find("[#########") != std::string::npos);
  CHECK(s.find("run 1/1 η run") != std::string::npos);
  p.message("note");
  CHECK(out.str().find("\r\x1b[Knote\n") != std::string::npos);
  p.end_run(summary("η run", 0.9, std::nullopt, std::nullopt));
  CHECK(out.str().find("test acc 90.00%") != std::string::npos);

  std::ostringstream quiet_out;
  Progress q(quiet_out, /*quiet=*/true, true, 5.0, [&now] { return now; });
  q.begin_run("x", 0, 1, 100, 0);
  for (int k = 0; k < 50; ++k) {
    now += 1.0;
    q.update(k, k, k, 0.1);
  }
  q.end_run(summary("x", std::nullopt, std::nullopt, 0.1));
  CHECK(quiet_out.str().empty());
  q.message("error: disk full");
  CHECK(quiet_out.str() == "error: disk full\n");

  CHECK_FALSE(detect_terminal(nullptr));
}
