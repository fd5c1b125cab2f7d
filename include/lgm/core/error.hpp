// Errors for bad input. Every message names the parameter, the value given and the accepted range
// (docs/design.md §Rules of the house: "Configuration errors ... name the field, the value and the accepted range").
#pragma once

#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace lgm {

namespace detail {
/// "invalid NAME = VALUE (accepted: RANGE)": the one shape of every input error message.
inline std::string invalid_message(std::string_view name, std::string_view value, std::string_view accepted) {
  std::string s = "invalid ";
  s += name;
  s += " = ";
  s += value;
  s += " (accepted: ";
  s += accepted;
  s += ")";
  return s;
}
}  // namespace detail

/// Thrown before a run starts when a parameter or input is out of its accepted range.
class ConfigError : public std::invalid_argument {
 public:
  ConfigError(std::string_view name, std::string_view value, std::string_view accepted)
      : std::invalid_argument(detail::invalid_message(name, value, accepted)), m_name(name) {}

  /// The parameter that was rejected, e.g. "lr" or "sync.H".
  const std::string& parameter() const noexcept { return m_name; }

 private:
  std::string m_name;
};

/// Thrown when input data are malformed (NaN, wrong shape, corrupt file).
class DataError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

template <class T>
std::string to_text(const T& v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}

template <class T>
void require(bool ok, std::string_view name, const T& value, std::string_view accepted) {
  if (!ok) throw ConfigError(name, to_text(value), accepted);
}

/// value > 0 and finite.
inline void require_positive(std::string_view name, double value) {
  require(std::isfinite(value) && value > 0.0, name, value, "a finite number > 0");
}

/// value >= 0 and finite.
inline void require_nonnegative(std::string_view name, double value) {
  require(std::isfinite(value) && value >= 0.0, name, value, "a finite number >= 0");
}

/// lo <= value <= hi for integers.
template <class I>
void require_in_range(std::string_view name, I value, I lo, I hi) {
  require(value >= lo && value <= hi, name, value, "an integer in [" + to_text(lo) + ", " + to_text(hi) + "]");
}

/// value >= lo for integers.
template <class I>
void require_at_least(std::string_view name, I value, I lo) {
  require(value >= lo, name, value, "an integer >= " + to_text(lo));
}

/// lo <= value < hi (half-open) for reals, e.g. momentum in [0, 1).
inline void require_half_open(std::string_view name, double value, double lo, double hi) {
  require(std::isfinite(value) && value >= lo && value < hi, name, value,
          "a number in [" + to_text(lo) + ", " + to_text(hi) + ")");
}

}  // namespace detail
}  // namespace lgm
