// Reports of lgm-sim: metrics.jsonl (one RoundRecord per line), summary.json, summary.md (the comparison table)
// and the gnuplot plots that compare the variants of an experiment.
#pragma once

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
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

/// Appends RoundRecords to a JSONL file, one line each, flushed at once: a crash keeps every line written.
class MetricsWriter {
 public:
  /// Creates the parent directories if needed; truncates the file unless `append`.
  /// Throws std::runtime_error naming the file when it cannot be opened.
  explicit MetricsWriter(const std::filesystem::path& file, bool append = false);

  /// Writes one line and flushes; throws std::runtime_error naming the file when the write fails.
  void write(const RoundRecord& r);

  const std::filesystem::path& path() const { return m_path; }

 private:
  std::filesystem::path m_path;
  std::ofstream m_out;
};

/// Reads a metrics.jsonl file (blank lines are skipped). Throws DataError naming "file:line" on a line that is
/// not valid JSON or not a valid record, and naming the file when it cannot be opened.
std::vector<RoundRecord> read_metrics(const std::filesystem::path& file);

// ---------------------------------------------------------------- summary.json and summary.md

/// Fields in declaration order, status as its name ("completed", ...), nullopt and non-finite as null.
nlohmann::ordered_json to_json(const VariantSummary& v);
/// name, problem, workers, interrupted, variants (array).
nlohmann::ordered_json to_json(const ExperimentSummary& e);

/// Writes to_json(e) indented; written to a temporary file and renamed, so a reader never sees half a file.
/// Throws std::runtime_error naming the file on failure.
void write_summary_json(const std::filesystem::path& file, const ExperimentSummary& e);

/// The comparison table (GitHub markdown), one row per variant. Columns: variant | status | test acc (%)
/// (if any variant has one) | subopt (if any has one) or final loss (if any has one) | local steps | comm rounds |
/// samples | final local batch | MB sent per worker | sim time 10 Gb/s (s) | sim time 100 Gb/s (s) | wall (s).
/// Missing values are "n/a"; '|' in names is escaped.
std::string summary_table_markdown(const ExperimentSummary& e);

/// A heading (the experiment name), the problem line, the table, and notes for runs that did not complete.
/// Throws std::runtime_error naming the file on failure.
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
