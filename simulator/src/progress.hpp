// Progress display of lgm-sim: a redrawn bar on a terminal, plain lines at an interval otherwise (logs, CI).
#pragma once

#include <cstdio>
#include <functional>
#include <ostream>
#include <string>

#include "records.hpp"

namespace lgm::sim {

/// True when `stream` is a terminal (isatty).
bool detect_terminal(std::FILE* stream);

class Progress {
 public:
  /// Seconds from any fixed origin; injectable for tests. Default: std::chrono::steady_clock.
  using Clock = std::function<double()>;

  /// quiet: begin_run, update and end_run print nothing; message() still prints.
  /// is_terminal: one line redrawn with '\r' at most ~10 times a second; otherwise a plain line at most every
  /// plain_interval_s seconds (and one line per begin_run / end_run).
  Progress(std::ostream& out, bool quiet, bool is_terminal, double plain_interval_s = 5.0, Clock clock = {});

  /// Starts run `index` (0-based; shown as index + 1) of `count`. The budget is `total_samples` samples, or
  /// `total_steps` local steps when total_samples is 0.
  void begin_run(const std::string& name, Index index, Index count, Index total_samples, Index total_steps);

  /// Cheap; called every round. `loss_or_nan` is NaN when the round was not evaluated (the last value stays shown).
  void update(Index samples, Index steps, Index round, double loss_or_nan);

  /// One line: name, status, key figures (and the message when the run did not complete).
  void end_run(const VariantSummary& v);

  /// A line of its own that does not break the bar (the bar is redrawn below it).
  void message(const std::string& text);

 private:
  double fraction() const;
  std::string status_text(bool bar) const;
  void draw_bar();
  void clear_bar();

  std::ostream& m_out;
  bool m_quiet;
  bool m_terminal;
  double m_interval;
  Clock m_clock;

  std::string m_name;
  Index m_index = 0, m_count = 0, m_total_samples = 0, m_total_steps = 0;
  Index m_samples = 0, m_steps = 0, m_round = 0;
  double m_loss = 0.0;
  bool m_has_loss = false;
  bool m_running = false;
  bool m_bar_shown = false;
  double m_start = 0.0;
  double m_last_draw = 0.0;
};

}  // namespace lgm::sim
