#include "progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <sstream>

namespace lgm::sim {

namespace {

constexpr double k_redraw_interval_s = 0.1;  // at most ~10 redraws a second on a terminal
constexpr int k_bar_width = 20;
constexpr std::size_t k_max_name = 32;

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string sci(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

/// h:mm:ss or m:ss.
std::string duration_text(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long long t = std::llround(s);
  char buf[64];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", t / 3600, (t / 60) % 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", t / 60, t % 60);
  return buf;
}

/// At most k_max_name bytes, cut at a UTF-8 character boundary.
std::string short_name(const std::string& name) {
  if (name.size() <= k_max_name) return name;
  std::size_t n = k_max_name - 3;
  while (n > 0 && (static_cast<unsigned char>(name[n]) & 0xC0) == 0x80) --n;
  return name.substr(0, n) + "...";
}

}  // namespace

bool detect_terminal(std::FILE* stream) { return stream != nullptr && ::isatty(::fileno(stream)) == 1; }

Progress::Progress(std::ostream& out, bool quiet, bool is_terminal, double plain_interval_s, Clock clock)
    : m_out(out),
      m_quiet(quiet),
      m_terminal(is_terminal),
      m_interval(plain_interval_s),
      m_clock(clock ? std::move(clock) : Clock(steady_seconds)) {}

double Progress::fraction() const {
  double f = 0.0;
  if (m_total_samples > 0)
    f = static_cast<double>(m_samples) / static_cast<double>(m_total_samples);
  else if (m_total_steps > 0)
    f = static_cast<double>(m_steps) / static_cast<double>(m_total_steps);
  return std::clamp(f, 0.0, 1.0);
}

std::string Progress::status_text(bool bar) const {
  const double f = fraction();
  const double elapsed = m_clock() - m_start;
  std::ostringstream os;
  if (bar) {
    const int filled = static_cast<int>(std::floor(f * k_bar_width));
    os << '[' << std::string(filled, '#') << std::string(k_bar_width - filled, '.') << "] ";
  }
  os << fixed(100.0 * f, 1) << "% run " << m_index + 1 << '/' << m_count << ' ' << short_name(m_name);
  if (elapsed > 0.0) os << " | " << sci(static_cast<double>(m_samples) / elapsed) << " samples/s";
  os << " | ETA " << (f > 0.0 ? duration_text(elapsed * (1.0 - f) / f) : std::string("?"));
  os << " | round " << m_round;
  if (m_has_loss) os << " | loss " << sci(m_loss);
  return os.str();
}

void Progress::draw_bar() {
  m_out << '\r' << status_text(true) << "\x1b[K" << std::flush;  // ESC[K clears what a longer line left
  m_bar_shown = true;
  m_last_draw = m_clock();
}

void Progress::clear_bar() {
  if (!m_bar_shown) return;
  m_out << "\r\x1b[K";
  m_bar_shown = false;
}

void Progress::begin_run(const std::string& name, Index index, Index count, Index total_samples, Index total_steps) {
  m_name = name;
  m_index = index;
  m_count = count;
  m_total_samples = total_samples;
  m_total_steps = total_steps;
  m_samples = m_steps = m_round = 0;
  m_has_loss = false;
  m_running = true;
  m_start = m_clock();
  m_last_draw = m_start;
  if (m_quiet) return;
  if (m_terminal) {
    draw_bar();
  } else {
    m_out << "run " << index + 1 << '/' << count << ' ' << name << ": started, budget "
          << (total_samples > 0 ? std::to_string(total_samples) + " samples" : std::to_string(total_steps) + " steps")
          << std::endl;
  }
}

void Progress::update(Index samples, Index steps, Index round, double loss_or_nan) {
  m_samples = samples;
  m_steps = steps;
  m_round = round;
  if (!std::isnan(loss_or_nan)) {
    m_loss = loss_or_nan;
    m_has_loss = true;
  }
  if (m_quiet) return;
  const double now = m_clock();
  if (m_terminal) {
    if (now - m_last_draw >= k_redraw_interval_s) draw_bar();
  } else if (now - m_last_draw >= m_interval) {
    m_out << status_text(false) << std::endl;
    m_last_draw = now;
  }
}

void Progress::end_run(const VariantSummary& v) {
  m_running = false;
  if (m_quiet) return;
  clear_bar();
  std::ostringstream os;
  os << "run " << m_index + 1 << '/' << m_count << ' ' << v.name << ": " << to_string(v.status) << ", " << v.steps
     << " steps, " << v.comm_rounds << " rounds, " << v.samples << " samples";
  if (v.test_accuracy) os << ", test acc " << fixed(100.0 * *v.test_accuracy, 2) << "%";
  if (v.subopt)
    os << ", subopt " << sci(*v.subopt);
  else if (v.loss)
    os << ", loss " << sci(*v.loss);
  os << ", sim " << sci(v.sim_time_s) << " s, wall " << fixed(v.wall_time_s, 1) << " s";
  if (v.status != RunStatus::completed && !v.message.empty()) os << " (" << v.message << ")";
  m_out << os.str() << std::endl;
}

void Progress::message(const std::string& text) {
  const bool redraw = m_bar_shown;
  clear_bar();
  m_out << text << std::endl;
  if (redraw && m_running && !m_quiet) draw_bar();
}

}  // namespace lgm::sim
