// Configuration of lgm-sim: a schema of every key (type, default, accepted range, doc), TOML experiment files
// with [[variant]]s, command-line overrides and grid sweeps. Every check happens while parsing, so a config
// that parses runs; errors are lgm::ConfigError naming the key, the value and the accepted range.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "lgm/core/error.hpp"
#include "lgm/core/types.hpp"

namespace lgm::sim {

enum class KeyType { integer, number, text, boolean, numbers /* array of numbers */ };

/// "integer", "number", "string", "boolean", "array of numbers".
std::string_view type_name(KeyType type);

/// One key of the schema and everything needed to check a value of it.
struct KeySpec {
  std::string key;           ///< full dotted key, e.g. "optimizer.lr"
  KeyType type;              ///< what values it takes
  std::string default_text;  ///< the default, as TOML
  std::string accepted;      ///< human text of the accepted range, e.g. "a number > 0"
  std::string doc;           ///< what it does
  // Range of integer / number keys (for `numbers`: of each element); nullopt = unbounded.
  std::optional<double> min;
  std::optional<double> max;
  bool min_open = false;             ///< min excluded: value > min
  bool max_open = false;             ///< max excluded: value < max
  std::vector<std::string> choices;  ///< text keys: the accepted values (empty = any string)

  std::string_view section() const { return std::string_view(key).substr(0, key.find('.')); }
  std::string_view name() const { return std::string_view(key).substr(key.find('.') + 1); }
};

/// Every key, grouped by section in the order of `schema_sections()`.
const std::vector<KeySpec>& schema();

/// The sections, in file order: run, problem, optimizer, schedule, sync, batch, sampler, outer, network, compute.
const std::vector<std::string>& schema_sections();

/// The spec of `key`, or nullptr when the schema has no such key.
const KeySpec* find_key(std::string_view key);

/// For `lgm-sim list`: per section, every key with type, default, accepted range and doc, in aligned columns.
std::string schema_listing();

/// A value of one key.
using ConfigValue = std::variant<Index, double, std::string, bool, std::vector<double>>;

/// One fully resolved run: every schema key has a value (its default or the one given).
class RunConfig {
 public:
  /// Every key at its default; the name is empty.
  RunConfig();

  /// The run's (variant's) name.
  const std::string& name() const { return m_name; }
  void set_name(std::string name) { m_name = std::move(name); }

  // Typed access. A key not in the schema, or of another type, is a programming error: std::logic_error.
  double number(std::string_view key) const;
  Index integer(std::string_view key) const;
  const std::string& text(std::string_view key) const;
  bool flag(std::string_view key) const;
  std::vector<double> numbers(std::string_view key) const;

  /// Sets `key` from a TOML value (bare strings allowed for text keys), checked against the key's type and range
  /// like a command-line override. Cross-key rules are not checked here (a change may need several keys at
  /// once); call validate() after the last one. The key counts as given (is_given).
  void set(std::string_view key, std::string_view toml_value);

  /// True when `key` was given (in a file, a variant, an override, a grid or by set()) rather than defaulted,
  /// whatever its value. A key not in the schema is a std::logic_error.
  bool is_given(std::string_view key) const;

  /// Checks every value against its range and the cross-key rules; throws ConfigError naming both keys.
  void validate() const;

  /// The resolved config as a TOML document: `name` = this run's name, then every section with every key.
  /// parse_experiment(to_toml()) yields one run equal to this one.
  std::string to_toml() const;

  /// Same name and values (which keys were given does not matter).
  bool operator==(const RunConfig& other) const { return m_name == other.m_name && m_values == other.m_values; }

 private:
  friend struct RunConfigAccess;
  std::string m_name;
  std::vector<ConfigValue> m_values;  // aligned with schema()
  std::vector<bool> m_given;          // aligned with schema(): set by the user rather than defaulted
};

/// A configuration in which a key has no effect on a run's outputs. Every such case is one rule of
/// no_effect_rules(); the liveness test (simulator/tests/test_liveness.cpp) runs every key in many
/// configurations and checks that it changes the outputs exactly where no rule says otherwise.
struct NoEffectRule {
  std::string key;
  /// Empty: the rule is about the key, whatever its value. Otherwise (text keys) it applies only when the key
  /// has this value, and says that the run is then the same as with `key = same_as`.
  std::string value;
  std::string same_as;
  /// When the rule applies to `rc`: why, as a clause such as `with batch.type = "constant"`; else nullopt.
  std::function<std::optional<std::string>(const RunConfig&)> reason;
};

/// Every rule, section by section in schema order.
const std::vector<NoEffectRule>& no_effect_rules();

/// The first rule about `key` that applies to `rc`.
struct NoEffect {
  /// The sentence: `batch.eta has no effect with batch.type = "constant"`, or for a rule about one value
  /// `batch.harmonize = "mean" runs as "max" with batch.scope = "global" (...)`.
  std::string reason;
  std::optional<std::string> same_as;  ///< the value the run is the same as (rules about one value)
};

/// The first rule of no_effect_rules() about `key` that applies to `rc`, or nullopt when the key has an effect.
/// A key not in the schema is a std::logic_error.
std::optional<NoEffect> no_effect(const RunConfig& rc, std::string_view key);

struct ExperimentConfig {
  std::string name;
  std::string description;
  std::vector<RunConfig> runs;
};

/// For `lgm-sim validate`: "note: <reason>" for every key that a run was given (RunConfig::is_given) and that has
/// no effect in it, in schema order; with several runs each note names its variant.
std::vector<std::string> no_effect_notes(const ExperimentConfig& experiment);

/// Parses an experiment file's text. Resolution per run: schema defaults < base sections < the variant's keys <
/// `overrides` ("key=value", TOML value syntax, bare strings allowed). `source_name` names the text in errors and
/// its stem is the default experiment name.
ExperimentConfig parse_experiment(std::string_view toml_text, std::string_view source_name,
                                  const std::vector<std::string>& overrides = {});

/// Reads and parses `file`; a missing or unreadable file is a ConfigError naming it.
ExperimentConfig load_experiment(const std::filesystem::path& file, const std::vector<std::string>& overrides = {});

/// Cross product of every run with every "key=v1,v2,..." of `grid` (commas inside [...] or quotes do not split).
/// Run names become "<run>/H=4,lr=0.1" (the last component of each key, the full key where that is ambiguous).
/// Every resulting run is validated.
ExperimentConfig expand_grid(const ExperimentConfig& experiment, const std::vector<std::string>& grid);

}  // namespace lgm::sim
