#include "report.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include "lgm/core/error.hpp"

namespace lgm::sim {

namespace fs = std::filesystem;

namespace {

// ---------------------------------------------------------------- JSON helpers

template <class Json>
Json number_or_null(double v) {
  if (std::isfinite(v)) return Json(v);
  return Json(nullptr);
}

template <class Json>
Json optional_or_null(const std::optional<double>& v) {
  if (v && std::isfinite(*v)) return Json(*v);
  return Json(nullptr);
}

std::string short_dump(const nlohmann::json& v) {
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

template <class Json>
const Json& required_field(const Json& j, const char* key, const char* accepted) {
  auto it = j.find(key);
  if (it == j.end()) throw DataError(lgm::detail::invalid_message(key, "(missing)", accepted));
  return *it;
}

template <class Json>
Index read_index(const Json& j, const char* key) {
  const auto& v = required_field(j, key, "an integer");
  if (!v.is_number_integer()) throw DataError(lgm::detail::invalid_message(key, short_dump(v), "an integer"));
  return v.template get<Index>();
}

template <class Json>
double read_double(const Json& j, const char* key) {
  const auto& v = required_field(j, key, "a number or null");
  if (v.is_null()) return std::nan("");
  if (!v.is_number()) throw DataError(lgm::detail::invalid_message(key, short_dump(v), "a number or null"));
  return v.template get<double>();
}

template <class Json>
std::optional<double> read_optional(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) throw DataError(lgm::detail::invalid_message(key, short_dump(*it), "a number or null"));
  return it->template get<double>();
}

template <class Json>
RoundRecord record_from(const Json& j) {
  if (!j.is_object()) throw DataError(lgm::detail::invalid_message("record", short_dump(j), "a JSON object"));
  RoundRecord r;
  const auto& run = required_field(j, "run", "a string");
  if (!run.is_string()) throw DataError(lgm::detail::invalid_message("run", short_dump(run), "a string"));
  r.run = run.template get<std::string>();
  r.round = read_index(j, "round");
  r.step = read_index(j, "step");
  r.samples = read_index(j, "samples");
  r.comm_rounds = read_index(j, "comm_rounds");
  r.bytes = read_double(j, "bytes");
  r.sim_time_s = read_double(j, "sim_time_s");
  r.sim_time_10g_s = read_double(j, "sim_time_10g_s");
  r.sim_time_100g_s = read_double(j, "sim_time_100g_s");
  r.wall_time_s = read_double(j, "wall_time_s");
  r.lr = read_double(j, "lr");
  r.H = read_index(j, "H");
  r.batch_min = read_index(j, "batch_min");
  r.batch_mean = read_double(j, "batch_mean");
  r.batch_max = read_index(j, "batch_max");
  r.batch_loss = read_double(j, "batch_loss");
  r.loss = read_optional(j, "loss");
  r.grad_norm_sq = read_optional(j, "grad_norm_sq");
  r.subopt = read_optional(j, "subopt");
  r.test_loss = read_optional(j, "test_loss");
  r.test_accuracy = read_optional(j, "test_accuracy");
  return r;
}

std::string dump_line(const nlohmann::ordered_json& j) {
  // replace: a run name with invalid UTF-8 must not lose the line.
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::string errno_text() { return std::strerror(errno); }

/// The OS's reason for error number `err` (captured right after the failing call: a later call may reset errno).
std::string reason(int err) { return err != 0 ? std::strerror(err) : "unknown error (errno not set)"; }

/// Writes all of data[0, n) at `offset` (EINTR and partial writes retried). Returns 0, or the errno of the
/// failing call (ENOSPC for a full disk, EFBIG past RLIMIT_FSIZE).
int write_all_at(int fd, const char* data, std::size_t n, long long offset) {
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, data, n, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (w == 0) return EIO;
    data += w;
    n -= static_cast<std::size_t>(w);
    offset += w;
  }
  return 0;
}

void create_parent_directories(const fs::path& file, std::string_view what) {
  if (!file.has_parent_path()) return;
  std::error_code ec;
  fs::create_directories(file.parent_path(), ec);
  if (ec)
    throw OutputError("cannot write " + std::string(what) + " file '" + file.string() +
                      "': cannot create its directory: " + ec.message());
}

std::string printf_text(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

std::string nonfinite_text(double v) {
  if (std::isnan(v)) return "nan";
  return v > 0 ? "inf" : "-inf";
}

std::string markdown_cell(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|')
      out += "\\|";
    else if (c == '\n' || c == '\r')
      out += ' ';
    else
      out += c;
  }
  return out;
}

std::string optional_cell(const std::optional<double>& v, std::string (*format)(double)) {
  return v ? format(*v) : "n/a";
}

}  // namespace

// ---------------------------------------------------------------- metrics.jsonl

nlohmann::ordered_json to_json(const RoundRecord& r) {
  using J = nlohmann::ordered_json;
  J j = J::object();
  j["run"] = r.run;
  j["round"] = r.round;
  j["step"] = r.step;
  j["samples"] = r.samples;
  j["comm_rounds"] = r.comm_rounds;
  j["bytes"] = number_or_null<J>(r.bytes);
  j["sim_time_s"] = number_or_null<J>(r.sim_time_s);
  j["sim_time_10g_s"] = number_or_null<J>(r.sim_time_10g_s);
  j["sim_time_100g_s"] = number_or_null<J>(r.sim_time_100g_s);
  j["wall_time_s"] = number_or_null<J>(r.wall_time_s);
  j["lr"] = number_or_null<J>(r.lr);
  j["H"] = r.H;
  j["batch_min"] = r.batch_min;
  j["batch_mean"] = number_or_null<J>(r.batch_mean);
  j["batch_max"] = r.batch_max;
  j["batch_loss"] = number_or_null<J>(r.batch_loss);
  j["loss"] = optional_or_null<J>(r.loss);
  j["grad_norm_sq"] = optional_or_null<J>(r.grad_norm_sq);
  j["subopt"] = optional_or_null<J>(r.subopt);
  j["test_loss"] = optional_or_null<J>(r.test_loss);
  j["test_accuracy"] = optional_or_null<J>(r.test_accuracy);
  return j;
}

RoundRecord round_record_from_json(const nlohmann::json& j) { return record_from(j); }
RoundRecord round_record_from_json(const nlohmann::ordered_json& j) { return record_from(j); }

MetricsWriter::MetricsWriter(const fs::path& file, bool append) : m_path(file) {
  create_parent_directories(file, "metrics");
  m_fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | (append ? 0 : O_TRUNC), 0644);
  if (m_fd < 0) {
    const int err = errno;
    throw OutputError("cannot open metrics file '" + file.string() + "' for writing: " + reason(err));
  }
  if (!append) return;
  // keep the complete lines only: a crash may have left half a line at the end
  std::ifstream in(file, std::ios::binary);
  for (std::string line; std::getline(in, line);) {
    if (in.eof()) break;  // no '\n' after it: partial
    m_size += static_cast<long long>(line.size()) + 1;
    ++m_lines;
  }
  if (::ftruncate(m_fd, static_cast<off_t>(m_size)) != 0) {
    const int err = errno;
    ::close(m_fd);
    m_fd = -1;
    throw OutputError("cannot open metrics file '" + file.string() + "' for appending: " + reason(err));
  }
}

MetricsWriter::~MetricsWriter() {
  if (m_fd >= 0) ::close(m_fd);
}

void MetricsWriter::sync() {
  if (m_fd >= 0 && ::fsync(m_fd) != 0)
    throw OutputError("cannot sync metrics file '" + m_path.string() + "': " + reason(errno));
}

void MetricsWriter::write(const RoundRecord& r) {
  const std::string line = dump_line(to_json(r)) + '\n';
  const int err = m_fd < 0 ? EBADF : write_all_at(m_fd, line.data(), line.size(), m_size);
  if (err == 0) {
    m_size += static_cast<long long>(line.size());
    ++m_lines;
    return;
  }
  // a partial line must not stay: cut the file back to its last complete line
  std::string kept = "it keeps its " + std::to_string(m_lines) + " complete line(s)";
  if (m_fd >= 0 && ::ftruncate(m_fd, static_cast<off_t>(m_size)) != 0)
    kept = "and it could not be cut back to its " + std::to_string(m_lines) + " complete line(s): " + reason(errno);
  throw OutputError("cannot write to metrics file '" + m_path.string() + "': " + reason(err) + "; " + kept);
}

void write_file_atomically(const fs::path& file, std::string_view text, std::string_view what) {
  create_parent_directories(file, what);
  fs::path tmp = file;
  tmp += ".tmp";
  const std::string name = std::string(what) + " file '" + file.string() + "'";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    throw OutputError("cannot write " + name + ": cannot create '" + tmp.string() + "': " + reason(err));
  }
  int err = write_all_at(fd, text.data(), text.size(), 0);
  if (err == 0 && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err == 0 && ::rename(tmp.c_str(), file.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    throw OutputError("cannot write " + name + ": " + reason(err) + " (the file was not changed)");
  }
  // make the rename itself durable; failing here loses nothing that was written
  const fs::path dir = file.has_parent_path() ? file.parent_path() : fs::path(".");
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    (void)::fsync(dir_fd);
    ::close(dir_fd);
  }
}

std::string npy_vector(std::span<const double> x) {
  static_assert(std::endian::native == std::endian::little, "npy_vector writes the host's doubles as '<f8'");
  std::string header = "{'descr': '<f8', 'fortran_order': False, 'shape': (" + std::to_string(x.size()) + ",), }";
  // magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64, ending in '\n'
  const std::size_t total = (10 + header.size() + 1 + 63) / 64 * 64;
  header.append(total - 10 - header.size() - 1, ' ');
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  out.append(reinterpret_cast<const char*>(x.data()), x.size() * sizeof(double));
  return out;
}

std::string model_file_name(Index index, const std::string& run_name) {
  std::string name = run_name;
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') c = '_';
  return "model_" + std::to_string(index) + "_" + name + ".npy";
}

std::vector<RoundRecord> read_metrics(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw DataError("cannot open metrics file '" + file.string() + "': " + errno_text());
  std::vector<RoundRecord> records;
  std::string line;
  Index line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = file.string() + ":" + std::to_string(line_no) + ": ";
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw DataError(where + "invalid JSON (" + e.what() + ")");
    }
    try {
      records.push_back(round_record_from_json(j));
    } catch (const DataError& e) {
      throw DataError(where + e.what());
    }
  }
  if (in.bad()) throw DataError("cannot read metrics file '" + file.string() + "': " + errno_text());
  return records;
}

// ---------------------------------------------------------------- summaries

nlohmann::ordered_json to_json(const VariantSummary& v) {
  using J = nlohmann::ordered_json;
  J j = J::object();
  j["name"] = v.name;
  j["status"] = to_string(v.status);
  j["message"] = v.message;
  j["steps"] = v.steps;
  j["comm_rounds"] = v.comm_rounds;
  j["samples"] = v.samples;
  j["bytes"] = number_or_null<J>(v.bytes);
  j["sim_time_s"] = number_or_null<J>(v.sim_time_s);
  j["sim_time_10g_s"] = number_or_null<J>(v.sim_time_10g_s);
  j["sim_time_100g_s"] = number_or_null<J>(v.sim_time_100g_s);
  j["wall_time_s"] = number_or_null<J>(v.wall_time_s);
  j["batch_min"] = v.batch_min;
  j["batch_mean"] = number_or_null<J>(v.batch_mean);
  j["batch_max"] = v.batch_max;
  j["loss"] = optional_or_null<J>(v.loss);
  j["grad_norm_sq"] = optional_or_null<J>(v.grad_norm_sq);
  j["subopt"] = optional_or_null<J>(v.subopt);
  j["test_loss"] = optional_or_null<J>(v.test_loss);
  j["test_accuracy"] = optional_or_null<J>(v.test_accuracy);
  if (v.mpi)  // docs/mpi.md: what the MPI engine actually sent, beside the cost model's `bytes`
    j["mpi"] = J{{"ranks", v.mpi->ranks},
                 {"reduction", v.mpi->reduction},
                 {"collectives", v.mpi->collectives},
                 {"payload_bytes", number_or_null<J>(v.mpi->payload_bytes)},
                 {"wire_bytes", number_or_null<J>(v.mpi->wire_bytes)}};
  return j;
}

nlohmann::ordered_json to_json(const ExperimentSummary& e) {
  using J = nlohmann::ordered_json;
  J j = J::object();
  j["name"] = e.name;
  j["problem"] = e.problem;
  j["workers"] = e.workers;
  j["interrupted"] = e.interrupted;
  J variants = J::array();
  for (const auto& v : e.variants) variants.push_back(to_json(v));
  j["variants"] = std::move(variants);
  return j;
}

void write_summary_json(const fs::path& file, const ExperimentSummary& e) {
  write_file_atomically(file, to_json(e).dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n",
                        "summary");
}

namespace detail {

std::string format_percent(double fraction) {
  if (!std::isfinite(fraction)) return nonfinite_text(fraction);
  return printf_text("%.2f", 100.0 * fraction);
}

std::string format_sci(double v) {
  if (!std::isfinite(v)) return nonfinite_text(v);
  return printf_text("%.2e", v);
}

std::string format_mb(double bytes) {
  if (!std::isfinite(bytes)) return nonfinite_text(bytes);
  const double mb = bytes / 1e6;
  return printf_text(std::abs(mb) < 10.0 ? "%.2f" : "%.1f", mb);
}

std::string format_seconds(double s) {
  if (!std::isfinite(s)) return nonfinite_text(s);
  const double a = std::abs(s);
  if (a == 0.0) return "0";
  if (a >= 100.0) return printf_text("%.0f", s);
  if (a < 1e-3) return printf_text("%.2e", s);
  // 3 significant digits in fixed notation: 12.3, 1.23, 0.123, 0.00123.
  const int decimals = std::max(0, 2 - static_cast<int>(std::floor(std::log10(a))));
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, s);
  return buf;
}

std::string format_batch(Index lo, double mean, Index hi) {
  auto mean_text = [&] {
    if (!std::isfinite(mean)) return nonfinite_text(mean);
    if (mean == std::round(mean)) return printf_text("%.0f", mean);
    return printf_text("%.1f", mean);
  };
  if (lo == hi && mean == static_cast<double>(lo)) return std::to_string(lo);
  return std::to_string(lo) + "/" + mean_text() + "/" + std::to_string(hi);
}

}  // namespace detail

std::string summary_table_markdown(const ExperimentSummary& e) {
  bool any_acc = false, any_subopt = false, any_loss = false, any_test_loss = false;
  for (const auto& v : e.variants) {
    any_acc = any_acc || v.test_accuracy.has_value();
    any_test_loss = any_test_loss || v.test_loss.has_value();
    any_subopt = any_subopt || v.subopt.has_value();
    any_loss = any_loss || v.loss.has_value();
  }
  const bool show_loss = !any_subopt && (any_loss || !any_acc);  // always one quality column at least

  std::vector<std::string> header = {"variant", "status"};
  if (any_acc) header.push_back("test acc (%)");
  if (any_subopt) header.push_back("final subopt");
  if (show_loss) header.push_back("final loss");
  if (any_test_loss) header.push_back("test loss");
  for (const char* h : {"local steps", "comm rounds", "samples", "final local batch", "MB sent per worker",
                        "sim time 10 Gb/s (s)", "sim time 100 Gb/s (s)", "wall (s)"})
    header.push_back(h);

  std::ostringstream os;
  auto row = [&os](const std::vector<std::string>& cells) {
    os << '|';
    for (const auto& c : cells) os << ' ' << c << " |";
    os << '\n';
  };
  row(header);
  std::vector<std::string> rule;
  for (std::size_t i = 0; i < header.size(); ++i) rule.push_back(i == 0 || i == 1 ? "---" : "---:");
  row(rule);

  for (const auto& v : e.variants) {
    std::vector<std::string> cells = {markdown_cell(v.name), to_string(v.status)};
    if (any_acc) cells.push_back(optional_cell(v.test_accuracy, detail::format_percent));
    if (any_subopt) cells.push_back(optional_cell(v.subopt, detail::format_sci));
    if (show_loss) cells.push_back(optional_cell(v.loss, detail::format_sci));
    if (any_test_loss) cells.push_back(optional_cell(v.test_loss, detail::format_sci));
    cells.push_back(std::to_string(v.steps));
    cells.push_back(std::to_string(v.comm_rounds));
    cells.push_back(std::to_string(v.samples));
    cells.push_back(detail::format_batch(v.batch_min, v.batch_mean, v.batch_max));
    cells.push_back(detail::format_mb(v.bytes));
    cells.push_back(detail::format_seconds(v.sim_time_10g_s));
    cells.push_back(detail::format_seconds(v.sim_time_100g_s));
    cells.push_back(detail::format_seconds(v.wall_time_s));
    row(cells);
  }
  return os.str();
}

void write_summary_markdown(const fs::path& file, const ExperimentSummary& e) {
  std::ostringstream os;
  os << "# " << (e.name.empty() ? std::string("experiment") : e.name) << "\n\n";
  if (!e.problem.empty()) os << "Problem: " << e.problem;
  if (e.workers > 0) os << (e.problem.empty() ? "Workers: " : "; workers: ") << e.workers;
  if (!e.problem.empty() || e.workers > 0) os << "\n\n";
  if (e.interrupted) os << "**Interrupted**: the experiment was stopped before every variant finished.\n\n";
  os << summary_table_markdown(e);
  os << "\nMB sent per worker: 10^6 bytes sent by each worker (ring all-reduce model); sim time: compute plus "
        "communication on the 10 Gb/s and 100 Gb/s presets; wall: real time of the run.\n";
  bool notes = false;
  for (const auto& v : e.variants) {
    if (v.status == RunStatus::completed && v.message.empty()) continue;
    if (!notes) os << "\nNotes:\n\n";
    notes = true;
    os << "- " << markdown_cell(v.name) << " (" << to_string(v.status) << ")"
       << (v.message.empty() ? std::string() : ": " + markdown_cell(v.message)) << "\n";
  }
  write_file_atomically(file, os.str(), "summary");
}

// ---------------------------------------------------------------- plots

namespace detail {

std::string sanitize_file_stem(const std::string& name) {
  static const std::pair<const char*, const char*> greek[] = {
      {"α", "alpha"}, {"β", "beta"},   {"γ", "gamma"}, {"δ", "delta"}, {"ε", "eps"},   {"η", "eta"},
      {"θ", "theta"}, {"λ", "lambda"}, {"μ", "mu"},    {"ρ", "rho"},   {"σ", "sigma"}, {"τ", "tau"}};
  std::string out;
  bool last_sep = false;
  for (std::size_t i = 0; i < name.size();) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    if (std::isalnum(c) || c == '.' || c == '-' || c == '_') {
      out += static_cast<char>(c);
      last_sep = c == '_';
      ++i;
      continue;
    }
    bool matched = false;
    for (const auto& [from, to] : greek) {
      const std::size_t n = std::strlen(from);
      if (name.compare(i, n, from) == 0) {
        out += to;
        last_sep = false;
        i += n;
        matched = true;
        break;
      }
    }
    if (matched) continue;
    if (!last_sep) out += '_';
    last_sep = true;
    ++i;
  }
  // No leading dots (hidden files, "..") nor separators at the ends.
  while (!out.empty() && (out.front() == '.' || out.front() == '_')) out.erase(out.begin());
  while (!out.empty() && out.back() == '_') out.pop_back();
  if (out.size() > 60) out.resize(60);
  if (out.empty()) out = "run";
  return out;
}

std::string gnuplot_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "''";
    else if (c == '\n' || c == '\r')
      out += ' ';
    else
      out += c;
  }
  out += '\'';
  return out;
}

fs::path find_program(const std::string& program) {
  auto executable = [](const fs::path& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
  };
  if (program.empty()) return {};
  if (program.find('/') != std::string::npos) return executable(program) ? fs::path(program) : fs::path();
  const char* path_env = std::getenv("PATH");
  if (path_env == nullptr) return {};
  std::string path = path_env;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    const std::string dir = path.substr(start, end - start);
    const fs::path candidate = fs::path(dir.empty() ? "." : dir) / program;
    if (executable(candidate)) return candidate;
    start = end + 1;
  }
  return {};
}

}  // namespace detail

namespace {

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  out += '\'';
  return out;
}

/// %.17g, so that the plots use the exact values.
std::string num(double v) { return printf_text("%.17g", v); }

/// The quantities plotted against rounds, samples and simulated time.
struct Quantity {
  const char* key;
  const char* label;
  bool log_y;
  std::optional<double> RoundRecord::*field;
  double scale;
};

constexpr Quantity k_accuracy{"test_accuracy", "test accuracy (%)", false, &RoundRecord::test_accuracy, 100.0};
constexpr Quantity k_subopt{"subopt", "suboptimality F(x) - F*", true, &RoundRecord::subopt, 1.0};
constexpr Quantity k_loss{"loss", "training loss F(x)", true, &RoundRecord::loss, 1.0};
constexpr Quantity k_test_loss{"test_loss", "test (validation) loss", true, &RoundRecord::test_loss, 1.0};

bool plottable(const Quantity& q, double v) { return std::isfinite(v) && (!q.log_y || v > 0.0); }

struct Series {
  std::string title;
  std::string stem;  ///< data file stem, unique: NN_<sanitized name>
  const std::vector<RoundRecord>* records;
};

void write_file(const fs::path& file, const std::string& text) { write_file_atomically(file, text, "plot"); }

std::string read_tail(const fs::path& file, std::size_t max_chars) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  std::string s = os.str();
  if (s.size() > max_chars) s = "..." + s.substr(s.size() - max_chars);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

// Distinct colors for up to 12 variants (then they repeat with another dash pattern).
constexpr const char* k_colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                                    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#aec7e8"};
constexpr int k_ncolors = 12;

class ScriptBuilder {
 public:
  ScriptBuilder(const fs::path& plots_dir, const fs::path& data_dir, std::size_t nseries)
      : m_plots_dir(plots_dir), m_data_dir(data_dir) {
    // The legend goes below the plot in two columns; grow the canvas so that 11 variants stay readable.
    const int rows = static_cast<int>((nseries + 1) / 2);
    m_height = 600 + 18 * std::max(0, rows - 3);
    m_os << "# Written by lgm-sim. To redraw the PNGs from data/: cd to this directory, then gnuplot plots.gp\n"
         << "set terminal pngcairo size 900," << m_height << " noenhanced font 'sans,10'\n";
    // Line types survive `reset`: distinct colors for 12 variants, then they repeat.
    for (int i = 0; i < k_ncolors; ++i)
      m_os << "set linetype " << i + 1 << " lc rgb '" << k_colors[i] << "' lw 1.8 pt " << i + 1 << " ps 0.8\n";
    m_os << "set linetype cycle " << k_ncolors << "\n";
  }

  /// Where a data file is written, and how the script names it (relative: gnuplot runs in plots/, so the
  /// directory can be moved and redrawn).
  fs::path data_file(const Series& s, const std::string& what) const { return m_data_dir / data_name(s, what); }
  static fs::path data_ref(const Series& s, const std::string& what) { return fs::path("data") / data_name(s, what); }

  /// One PNG; each element of `clauses` is one curve of the plot command. sci_y: y tick labels as 1e-03.
  void add(const std::string& png, const std::string& xlabel, const std::string& ylabel, bool log_x, bool log_y,
           bool sci_y, const std::vector<std::string>& clauses) {
    if (clauses.empty()) return;
    m_os << "\nreset\n"
         << "set key bmargin center horizontal maxcols 2 font ',9'\n"
         << "set grid lc rgb '#dddddd'\n"
         << "set offsets graph 0, graph 0, graph 0.03, graph 0.03\n"  // a constant curve must not hide in the frame
         << "set output " << detail::gnuplot_quote(png) << "\n"
         << "set xlabel " << detail::gnuplot_quote(xlabel) << "\n"
         << "set ylabel " << detail::gnuplot_quote(ylabel) << "\n"
         << (log_x ? "set logscale x\n" : "") << (log_y ? "set logscale y\n" : "")
         << (sci_y ? "set format y '%.0e'\n" : "") << "plot ";
    for (std::size_t i = 0; i < clauses.size(); ++i) m_os << (i ? ", \\\n     " : "") << clauses[i];
    m_os << "\nunset output\n";
    m_pngs.push_back(m_plots_dir / png);
  }

  std::string text() const { return m_os.str(); }
  const std::vector<fs::path>& pngs() const { return m_pngs; }

 private:
  static std::string data_name(const Series& s, const std::string& what) { return s.stem + "." + what + ".dat"; }

  fs::path m_plots_dir, m_data_dir;
  int m_height = 600;
  std::ostringstream m_os;
  std::vector<fs::path> m_pngs;
};

std::string clause(const fs::path& data, const std::string& using_, const std::string& style, int linetype,
                   const std::string* title) {
  std::string c =
      detail::gnuplot_quote(data.string()) + " using " + using_ + " with " + style + " lt " + std::to_string(linetype);
  c += title ? " title " + detail::gnuplot_quote(*title) : " notitle";
  return c;
}

PlotResult make_plots_impl(const fs::path& out_dir, const std::vector<std::vector<RoundRecord>>& runs,
                           const std::string& gnuplot_program) {
  PlotResult result;
  std::vector<Series> series;
  for (const auto& recs : runs) {
    if (recs.empty()) continue;
    const int index = static_cast<int>(series.size()) + 1;
    char prefix[16];
    std::snprintf(prefix, sizeof prefix, "%02d_", index);
    series.push_back({recs.front().run, prefix + detail::sanitize_file_stem(recs.front().run), &recs});
  }
  if (series.empty()) {
    result.message = "plots skipped: no records to plot";
    return result;
  }

  const fs::path plots_dir = out_dir / "plots";
  const fs::path data_dir = plots_dir / "data";
  fs::create_directories(data_dir);
  ScriptBuilder script(plots_dir, data_dir, series.size());

  // Per-round data: step, batch sizes, H (every record).
  for (const auto& s : series) {
    std::ostringstream os;
    os << "# " << s.title << "\n# step batch_min batch_mean batch_max H comm_rounds samples sim_time_s lr\n";
    for (const auto& r : *s.records)
      os << r.step << ' ' << r.batch_min << ' ' << num(r.batch_mean) << ' ' << r.batch_max << ' ' << r.H << ' '
         << r.comm_rounds << ' ' << r.samples << ' ' << num(r.sim_time_s) << ' ' << num(r.lr) << '\n';
    write_file(script.data_file(s, "rounds"), os.str());
  }

  // Evaluated quantities: only the rounds where the value exists and can be drawn.
  std::vector<Quantity> quantities;
  auto any_value = [&](const Quantity& q) {
    for (const auto& s : series)
      for (const auto& r : *s.records)
        if (r.*q.field && plottable(q, *(r.*q.field))) return true;
    return false;
  };
  if (any_value(k_accuracy)) quantities.push_back(k_accuracy);
  if (any_value(k_subopt))
    quantities.push_back(k_subopt);
  else if (any_value(k_loss))
    quantities.push_back(k_loss);
  if (any_value(k_test_loss)) quantities.push_back(k_test_loss);

  for (const auto& q : quantities) {
    std::vector<std::string> by_rounds, by_samples, by_time;
    for (std::size_t i = 0; i < series.size(); ++i) {
      const auto& s = series[i];
      std::ostringstream os;
      os << "# " << s.title << "\n# comm_rounds samples sim_time_s " << q.key << "\n";
      Index points = 0, points_log_x = 0;
      for (const auto& r : *s.records) {
        if (!(r.*q.field) || !plottable(q, *(r.*q.field))) continue;
        os << r.comm_rounds << ' ' << r.samples << ' ' << num(r.sim_time_s) << ' ' << num(q.scale * *(r.*q.field))
           << '\n';
        ++points;
        if (r.comm_rounds > 0) ++points_log_x;
      }
      if (points == 0) continue;
      write_file(script.data_file(s, q.key), os.str());
      const fs::path data = ScriptBuilder::data_ref(s, q.key);
      const int lt = static_cast<int>(i) + 1;
      // Points mark the evaluations, about 15 per curve so that many curves stay readable.
      const std::string style =
          points == 1 ? "points" : "linespoints pi " + std::to_string(std::max<Index>(1, points / 15));
      if (points_log_x > 0) by_rounds.push_back(clause(data, "($1>0?$1:1/0):4", style, lt, &s.title));
      by_samples.push_back(clause(data, "2:4", style, lt, &s.title));
      by_time.push_back(clause(data, "3:4", style, lt, &s.title));
    }
    const std::string key = q.key;
    script.add(key + "_vs_rounds.png", "communication rounds", q.label, true, q.log_y, q.log_y, by_rounds);
    script.add(key + "_vs_samples.png", "samples processed (all workers)", q.label, false, q.log_y, q.log_y,
               by_samples);
    script.add(key + "_vs_sim_time.png", "simulated time (s)", q.label, false, q.log_y, q.log_y, by_time);
  }

  // Batch sizes and periods against local steps.
  std::vector<std::string> batch, periods;
  for (std::size_t i = 0; i < series.size(); ++i) {
    const auto& s = series[i];
    const fs::path data = ScriptBuilder::data_ref(s, "rounds");
    const int lt = static_cast<int>(i) + 1;
    const bool any_batch =
        std::any_of(s.records->begin(), s.records->end(), [](const RoundRecord& r) { return r.batch_mean > 0.0; });
    if (any_batch) batch.push_back(clause(data, "1:($3>0?$3:1/0)", "steps", lt, &s.title));
    const bool spread = std::any_of(s.records->begin(), s.records->end(),
                                    [](const RoundRecord& r) { return r.batch_min != r.batch_max; });
    if (any_batch && spread) {
      batch.push_back(clause(data, "1:($2>0?$2:1/0)", "steps lw 0.6 dt 2", lt, nullptr));
      batch.push_back(clause(data, "1:($4>0?$4:1/0)", "steps lw 0.6 dt 2", lt, nullptr));
    }
    const bool any_h = std::any_of(s.records->begin(), s.records->end(), [](const RoundRecord& r) { return r.H > 0; });
    // fsteps: the round ending at step x had period H over (previous x, x]; a batch size holds from x on.
    if (any_h) periods.push_back(clause(data, "1:($5>0?$5:1/0)", "fsteps", lt, &s.title));
  }
  // Log y: adaptive batch sizes and QSR periods grow geometrically.
  script.add("batch_size_vs_steps.png", "local steps", "local batch size (mean; min/max dashed)", false, true, false,
             batch);
  script.add("H_vs_steps.png", "local steps", "period H (local steps per round)", false, true, false, periods);

  const fs::path script_file = plots_dir / "plots.gp";
  write_file(script_file, script.text());

  const fs::path program = detail::find_program(gnuplot_program);
  if (program.empty()) {
    result.message = "plots skipped: gnuplot program '" + gnuplot_program +
                     "' not found (looked in PATH); data and script are in " + plots_dir.string();
    return result;
  }
  const fs::path log = plots_dir / "gnuplot.log";
  for (const auto& png : script.pngs()) {
    std::error_code ec;
    fs::remove(png, ec);  // a stale PNG must not pass for a new one
  }
  const std::string command = "cd " + shell_quote(plots_dir.string()) + " && " +
                              shell_quote(fs::absolute(program).string()) + " plots.gp > gnuplot.log 2>&1 < /dev/null";
  const int status = std::system(command.c_str());
  if (status != 0) {
    for (const auto& png : script.pngs()) {  // gnuplot may have stopped half-way through one (full disk)
      std::error_code ec;
      fs::remove(png, ec);
    }
    result.message = "plots skipped: " + program.string() + " failed (status " + std::to_string(status) + ") on " +
                     script_file.string() + ": " + read_tail(log, 400);
    return result;
  }
  std::vector<std::string> missing;
  for (const auto& png : script.pngs()) {
    std::error_code ec;
    if (fs::is_regular_file(png, ec) && fs::file_size(png, ec) > 0)
      result.files.push_back(png);
    else
      missing.push_back(png.filename().string());
  }
  if (!missing.empty()) {
    std::string list;
    for (const auto& m : missing) list += (list.empty() ? "" : ", ") + m;
    result.message = "plots incomplete: gnuplot did not write " + list + " (see " + log.string() + ")";
    return result;
  }
  result.made = true;
  result.message = "plots: " + std::to_string(result.files.size()) + " PNG files in " + plots_dir.string();
  return result;
}

}  // namespace

PlotResult make_plots(const fs::path& out_dir, const std::vector<std::vector<RoundRecord>>& runs,
                      const std::string& gnuplot_program) {
  try {
    return make_plots_impl(out_dir, runs, gnuplot_program);
  } catch (const std::exception& e) {
    PlotResult result;
    result.message = std::string("plots skipped: ") + e.what();
    return result;
  }
}

}  // namespace lgm::sim
