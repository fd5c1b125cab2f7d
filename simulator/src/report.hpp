// Reports of lgm-sim: metrics.jsonl (one RoundRecord per line), summary.json, summary.md (the comparison table)
// and the gnuplot plots that compare the variants of an experiment.
#pragma once

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "records.hpp"

namespace lgm::sim {

// ---------------------------------------------------------------- metrics.jsonl

/// One JSON object whose keys are the RoundRecord field names in declaration order. std::nullopt and
/// non-finite doubles are written as null (JSON has no NaN), so a NaN loss still gives a valid line.
nlohmann::ordered_json to_json(const RoundRecord& r);

/// The inverse of to_json(RoundRecord). Every non-optional field must be present; the optional ones may be
/// missing or null. A null non-optional double (a NaN or infinity when written) reads back as NaN.
/// Throws DataError naming the field, the value and what is accepted.
RoundRecord round_record_from_json(const nlohmann::json& j);
RoundRecord round_record_from_json(const nlohmann::ordered_json& j);

/// A file of the outputs could not be written. The message names the file and the OS's reason; the file is left
/// complete (metrics.jsonl: its complete lines) or absent.
class OutputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Appends RoundRecords to a JSONL file, one line each, written by one system call and not buffered: a crash
/// keeps every line written, and a failed write (full disk) is cut back so that the file ends with a whole line.
class MetricsWriter {
 public:
  /// Creates the parent directories if needed; truncates the file unless `append` (then a partial last line
  /// left by a crash is cut off). Throws OutputError naming the file and the reason when it cannot be opened.
  explicit MetricsWriter(const std::filesystem::path& file, bool append = false);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  /// Writes one line. On failure the partial line is truncated away and OutputError names the file, the OS's
  /// reason and the lines kept.
  void write(const RoundRecord& r);

  const std::filesystem::path& path() const { return m_path; }
  /// Complete lines in the file.
  Index lines() const { return m_lines; }
  /// Bytes of the complete lines (a checkpoint's length of the file).
  long long bytes() const { return m_size; }
  /// fsync: the lines written so far are on the disk (before a checkpoint counts them). Throws OutputError.
  void sync();

 private:
  std::filesystem::path m_path;
  int m_fd = -1;
  long long m_size = 0;  ///< bytes of the complete lines
  Index m_lines = 0;
};

/// Writes `text` to `file` as a whole or not at all: a temporary file beside it (file + ".tmp"), fsync, rename.
/// On failure the temporary is removed, an earlier `file` is left as it was, and OutputError names `what`, the
/// file and the OS's reason.
void write_file_atomically(const std::filesystem::path& file, std::string_view text, std::string_view what);

/// A vector in NumPy's .npy format (version 1.0, '<f8', shape (n,)): `numpy.load` reads it.
std::string npy_vector(std::span<const double> x);

/// The file of run `index`'s final model (run.save_model): model_<index>_<name>.npy, the name's characters
/// other than letters, digits, '.', '-' and '_' replaced by '_'.
std::string model_file_name(Index index, const std::string& run_name);

/// Reads a metrics.jsonl file (blank lines are skipped). Throws DataError naming "file:line" on a line that is
/// not valid JSON or not a valid record, and naming the file when it cannot be opened.
std::vector<RoundRecord> read_metrics(const std::filesystem::path& file);

// ---------------------------------------------------------------- summary.json and summary.md

/// Fields in declaration order, status as its name ("completed", ...), nullopt and non-finite as null.
nlohmann::ordered_json to_json(const VariantSummary& v);
/// name, problem, workers, interrupted, variants (array).
nlohmann::ordered_json to_json(const ExperimentSummary& e);

/// Writes to_json(e) indented, with write_file_atomically: a reader never sees half a file. Throws OutputError.
void write_summary_json(const std::filesystem::path& file, const ExperimentSummary& e);

/// The comparison table (GitHub markdown), one row per variant. Columns: variant | status | test acc (%)
/// (if any variant has one) | subopt (if any has one) or final loss (if any has one) | local steps | comm rounds |
/// samples | final local batch | MB sent per worker | sim time 10 Gb/s (s) | sim time 100 Gb/s (s) | wall (s).
/// Missing values are "n/a"; '|' in names is escaped.
std::string summary_table_markdown(const ExperimentSummary& e);

/// A heading (the experiment name), the problem line, the table, and notes for runs that did not complete.
/// Written with write_file_atomically; throws OutputError.
void write_summary_markdown(const std::filesystem::path& file, const ExperimentSummary& e);

// ---------------------------------------------------------------- plots

struct PlotResult {
  bool made = false;                         ///< true when gnuplot ran and produced every PNG
  std::string message;                       ///< what was done, or why plots were skipped
  std::vector<std::filesystem::path> files;  ///< the PNGs produced
};

/// Writes per-variant data files under out_dir/plots/data/, the script out_dir/plots/plots.gp, runs gnuplot on
/// it (output in out_dir/plots/gnuplot.log) and returns the PNGs under out_dir/plots/:
///   <y>_vs_rounds.png (log x), <y>_vs_samples.png, <y>_vs_sim_time.png for y = test_accuracy (when any run has
///   it) and subopt (when any run has it, log y) or else loss (log y), using only evaluated points;
///   batch_size_vs_steps.png (mean; min and max as thin lines when they differ) and H_vs_steps.png.
/// Each element of `runs` is one variant's records (its name is records[0].run); empty runs are left out.
/// Never throws: when gnuplot is not found or fails, or a file cannot be written, made = false and the
/// message says the plots were skipped and why.
PlotResult make_plots(const std::filesystem::path& out_dir, const std::vector<std::vector<RoundRecord>>& runs,
                      const std::string& gnuplot_program = "gnuplot");

namespace detail {

/// A file-name stem made of [A-Za-z0-9._-] only: common Greek letters spelled out (η -> eta), any other run of
/// characters -> '_', at most 60 characters, never empty.
std::string sanitize_file_stem(const std::string& name);

/// `s` as a gnuplot single-quoted string (no escapes inside single quotes except '' for ').
std::string gnuplot_quote(const std::string& s);

/// The full path of `program`: itself when it contains '/', else the first executable match in PATH;
/// empty when not found.
std::filesystem::path find_program(const std::string& program);

/// Table number formats.
std::string format_percent(double fraction);                ///< 0.8512 -> "85.12"
std::string format_sci(double v);                           ///< 3 significant digits, scientific: "1.23e-04"
std::string format_mb(double bytes);                        ///< 10^6 bytes, 2 decimals below 10 MB else 1
std::string format_seconds(double s);                       ///< about 3 significant digits
std::string format_batch(Index lo, double mean, Index hi);  ///< "32" or "32/40.5/64"

}  // namespace detail
}  // namespace lgm::sim
