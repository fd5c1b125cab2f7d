// Configuration of lgm-sim: schema, TOML parsing, variants, overrides and grids (see config.hpp).
#include "config.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <initializer_list>
#include <map>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <utility>

// toml++ is used header-only here (its default; this is the only translation unit that includes it), so no
// library has to be linked. Builds that pass pkg-config's -DTOML_HEADER_ONLY=0 must link -ltomlplusplus.
#include <toml++/toml.h>

#include "lgm/comm/cost_model.hpp"

namespace lgm::sim {

namespace detail {

// ---------------------------------------------------------------------------------------------------------
// Text helpers.

/// Shortest text that reads back as the same double ("0.1", "1e-07", "3").
std::string shortest(double v) {
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

/// A double as a TOML float: the shortest round-trip text, with ".0" where it would otherwise read as an integer.
std::string toml_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::string s = shortest(v);
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

/// A TOML basic string, with quotes, escaping what TOML requires.
std::string toml_string(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04X", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

std::string_view trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += sep;
    out += items[i];
  }
  return out;
}

/// Integer bounds as people write them: 10^9 and 2^30 rather than their digits.
std::string pretty_integer(double v) {
  const auto i = static_cast<Index>(v);
  for (int k = 6; k <= 18; ++k) {
    Index p = 1;
    for (int j = 0; j < k; ++j) p *= 10;
    if (i == p) return "10^" + std::to_string(k);
  }
  for (int k = 20; k <= 62; ++k) {
    if (i == (Index{1} << k)) return "2^" + std::to_string(k);
  }
  return std::to_string(i);
}

/// A TOML node as the user wrote it (for error messages).
std::string render_node(const toml::node& n) {
  if (auto p = n.as_string()) return toml_string(p->get());
  if (auto p = n.as_integer()) return std::to_string(p->get());
  if (auto p = n.as_floating_point()) return shortest(p->get());
  if (auto p = n.as_boolean()) return p->get() ? "true" : "false";
  if (auto p = n.as_array()) {
    std::vector<std::string> items;
    for (const toml::node& e : *p) items.push_back(render_node(e));
    return "[" + join(items, ", ") + "]";
  }
  if (auto p = n.as_table()) {
    std::vector<std::string> items;
    for (auto&& [k, v] : *p) items.push_back(std::string(k.str()) + " = " + render_node(v));
    return items.empty() ? "{}" : "{ " + join(items, ", ") + " }";
  }
  std::ostringstream os;  // dates and times
  n.visit([&](auto&& x) { os << x; });
  return os.str();
}

/// A value as TOML (`as_toml`) or as plain text for names and messages (strings unquoted, doubles shortest).
std::string render_value(const ConfigValue& v, bool as_toml) {
  struct Visitor {
    bool as_toml;
    std::string operator()(Index i) const { return std::to_string(i); }
    std::string operator()(double d) const { return as_toml ? toml_float(d) : shortest(d); }
    std::string operator()(const std::string& s) const { return as_toml ? toml_string(s) : s; }
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(const std::vector<double>& xs) const {
      std::vector<std::string> items;
      for (double x : xs) items.push_back((*this)(x));
      return "[" + join(items, ", ") + "]";
    }
  };
  return std::visit(Visitor{as_toml}, v);
}

// ---------------------------------------------------------------------------------------------------------
// The schema.

struct Schema {
  std::vector<KeySpec> specs;
  std::vector<ConfigValue> defaults;  // aligned with specs
  std::vector<std::string> sections;
  std::map<std::string, std::size_t, std::less<>> index;

  std::string range_text(const KeySpec& s, std::string_view what) const {
    const bool integer = s.type == KeyType::integer;
    auto bound = [&](double b) { return integer ? pretty_integer(b) : shortest(b); };
    std::string out(what);
    if (s.min && s.max) {
      out += std::string(" in ") + (s.min_open ? "(" : "[") + bound(*s.min) + ", " + bound(*s.max) +
             (s.max_open ? ")" : "]");
    } else if (s.min) {
      out += (s.min_open ? " > " : " >= ") + bound(*s.min);
    } else if (s.max) {
      out += (s.max_open ? " < " : " <= ") + bound(*s.max);
    }
    return out;
  }

  void add(KeySpec spec, ConfigValue def) {
    if (spec.accepted.empty()) {
      switch (spec.type) {
        case KeyType::integer:
          spec.accepted = range_text(spec, "an integer");
          break;
        case KeyType::number:
          spec.accepted = range_text(spec, "a number");
          break;
        case KeyType::text:
          spec.accepted = spec.choices.empty() ? "a string" : "one of " + join(spec.choices, ", ");
          break;
        case KeyType::boolean:
          spec.accepted = "true or false";
          break;
        case KeyType::numbers:
          spec.accepted = range_text(spec, "an array of numbers, each");
          break;
      }
    }
    spec.default_text = render_value(def, true);
    const std::string section(spec.section());
    if (std::find(sections.begin(), sections.end(), section) == sections.end()) sections.push_back(section);
    index.emplace(spec.key, specs.size());
    specs.push_back(std::move(spec));
    defaults.push_back(std::move(def));
  }

  using Bound = std::optional<double>;
  void integer(std::string key, Index def, Bound min, Bound max, std::string doc) {
    add(KeySpec{std::move(key), KeyType::integer, "", "", std::move(doc), min, max, false, false, {}}, def);
  }
  void number(std::string key, double def, Bound min, bool min_open, Bound max, bool max_open, std::string doc) {
    add(KeySpec{std::move(key), KeyType::number, "", "", std::move(doc), min, max, min_open, max_open, {}}, def);
  }
  void choice(std::string key, std::string def, std::vector<std::string> choices, std::string doc) {
    add(KeySpec{std::move(key), KeyType::text, "", "", std::move(doc), {}, {}, false, false, std::move(choices)},
        std::move(def));
  }
  void text(std::string key, std::string def, std::string accepted, std::string doc) {
    add(KeySpec{std::move(key), KeyType::text, "", std::move(accepted), std::move(doc), {}, {}, false, false, {}},
        std::move(def));
  }
  void boolean(std::string key, bool def, std::string doc) {
    add(KeySpec{std::move(key), KeyType::boolean, "", "", std::move(doc), {}, {}, false, false, {}}, def);
  }
  void numbers(std::string key, std::vector<double> def, Bound min, std::string accepted, std::string doc) {
    add(KeySpec{std::move(key), KeyType::numbers, "", std::move(accepted), std::move(doc), min, {}, false, false, {}},
        std::move(def));
  }

  Schema() {
    constexpr Bound none;
    constexpr double e9 = 1e9;
    constexpr double p30 = 1073741824.0;  // 2^30
    const bool closed = false, open = true;

    integer("run.seed", 1, 0, none, "seeds the sampler");
    integer("run.workers", 8, 1, 4096, "number of workers M");
    integer("run.threads", 0, 0, 1024, "OpenMP threads over workers (0 = all cores; results never depend on it)");
    integer("run.max_samples", 0, 0, none, "budget in samples processed by all workers (0 = none)");
    integer("run.max_steps", 0, 0, none, "budget in local steps (0 = none)");
    integer("run.eval_points", 40, 1, 100000,
            "rounds (evenly spaced by samples) at which full loss, gradient norm and test metrics are evaluated, "
            "plus the last");
    boolean("run.eval_every_round", false, "evaluate at every round instead of eval_points rounds");
    boolean("run.save_model", false,
            "write each run's final averaged model to model_<k>_<variant>.npy (NumPy float64, shape (d,))");

    choice("problem.type", "logistic",
           {"quadratic", "least_squares", "logistic", "nonconvex_logistic", "softmax", "mlp", "resnet", "gpt"},
           "objective (resnet, gpt: networks, docs/simulator.md §Networks)");
    choice("problem.data", "synthetic", {"synthetic", "fashion_mnist", "libsvm", "cifar10", "fortunes", "text"},
           "where the samples come from (cifar10: resnet; fortunes, text: gpt)");
    text("problem.path", "", "a path (\"\" = default)",
         "dataset directory for fashion_mnist (\"\" = /usr/share/datasets/fashion-mnist) and cifar10 (required); "
         "training file for libsvm; the text file for text; fortunes directory (\"\" = /usr/share/games/fortunes)");
    text("problem.test_path", "", "a path (\"\" = none)", "libsvm test file (optional)");
    integer("problem.train_limit", 0, 0, none, "real data: use the first n training samples (0 = all)");
    integer("problem.test_limit", 0, 0, none, "real data: use the first n test samples (0 = all)");
    boolean("problem.bias", false, "append a constant-1 feature to real data");
    integer("problem.N", 10000, 1, e9, "number of synthetic samples");
    integer("problem.d", 50, 1, 1e7, "dimension of synthetic features");
    integer("problem.classes", 10, 2, 10000, "number of classes (softmax, mlp on synthetic data)");
    integer("problem.hidden", 32, 1, 1e6, "hidden units of the mlp");
    number("problem.lambda", 1e-4, 0, closed, none, closed,
           "L2 regularizer weight of every objective but the quadratic");
    number("problem.mu", 0.1, 0, open, none, closed, "strong convexity of the quadratic");
    number("problem.L", 1.0, 0, open, none, closed, "smoothness of the quadratic (must be >= problem.mu)");
    number("problem.condition", 100, 1, closed, none, closed, "condition number of the least-squares design");
    integer("problem.rank", 0, 0, none, "rank of the least-squares design (0 = full)");
    number("problem.noise", 0.1, 0, closed, none, closed,
           "noise of the synthetic quadratic (rms of the per-sample shifts) and least-squares targets");
    number("problem.signal", 2.0, 0, open, none, closed,
           "norm of the teacher parameter of synthetic logistic data (larger: cleaner labels)");
    number("problem.separation", 2.0, 0, open, none, closed, "norm of the class means of synthetic softmax / mlp data");
    integer("problem.seed", 0, 0, none,
            "seed of the synthetic data and of the initial point of the mlp and the networks (and of augmentation)");
    choice("problem.device", "cpu", {"cpu", "cuda"},
           "resnet, gpt: where the network runs (cpu: Thrust's OpenMP system; cuda: needs a CUDA build and a GPU)");
    integer("problem.depth", 20, 8, 1000, "resnet: 6n + 2 (8, 14, 20, 32, 44, 56, ...), or 18 for ResNet-18");
    integer("problem.width", 0, 0, 65536,
            "resnet: channels of the first stage (0 = 16; ResNet-18: 64); gpt: features of the residual stream "
            "(0 = 64)");
    integer("problem.layers", 2, 1, 1000, "gpt: transformer blocks");
    integer("problem.heads", 2, 1, 1024, "gpt: attention heads (divide problem.width)");
    integer("problem.context", 64, 2, 65536, "gpt: positions of a training window (the model's context)");
    choice("problem.bn_sync", "not_averaged", {"not_averaged", "averaged", "recomputed"},
           "resnet: batch-norm running statistics at a sync (recomputed: on the shared model before evaluation)");
    boolean("problem.augment", false, "resnet on cifar10: random crop (padding 4) and horizontal flip");
    number("problem.val_fraction", 0.1, 0, open, 1, open, "gpt: the last fraction of the token stream validates");
    integer("problem.eval_samples", 1000, 1, e9,
            "resnet, gpt: training images (windows) the training loss is evaluated on (evenly spaced)");
    boolean("problem.decay_all", false,
            "resnet, gpt with adamw: weight decay on every tensor (default: not on norm parameters and biases)");

    choice("optimizer.type", "sgd", {"sgd", "heavy_ball", "nesterov", "adamw"}, "local optimizer");
    number("optimizer.lr", 0.1, 0, open, none, closed, "peak learning rate");
    number("optimizer.momentum", 0.9, 0, closed, 1, open, "momentum β (heavy_ball, nesterov)");
    number("optimizer.weight_decay", 0, 0, closed, none, closed,
           "weight decay λ: coupled L2 for sgd, heavy_ball, nesterov (d = g + λx); decoupled for adamw "
           "(x ← (1 − lr·λ)x)");
    number("optimizer.beta1", 0.9, 0, closed, 1, open, "AdamW first-moment decay");
    number("optimizer.beta2", 0.999, 0, closed, 1, open, "AdamW second-moment decay");
    number("optimizer.eps", 1e-8, 0, open, none, closed, "AdamW denominator offset");
    boolean("optimizer.average_state", false,
            "average the optimizer state at syncs: the momentum (heavy_ball, nesterov), both moments (adamw); not "
            "for sgd");

    choice("schedule.type", "constant", {"constant", "warmup_cosine", "warmup_linear", "step_decay"},
           "learning-rate schedule");
    number("schedule.warmup", 0, 0, closed, 1, closed, "linear warm-up from schedule.min_lr, fraction of the budget");
    number("schedule.min_lr", 0, 0, closed, none, closed,
           "learning rate where the warm-up starts and where cosine / linear decay ends");
    number("schedule.decay_factor", 0.1, 0, open, 1, closed, "step_decay: factor per decay");
    number("schedule.decay_every", 0.3, 0, open, 1, closed, "step_decay: period, fraction of the budget");
    choice("schedule.axis", "steps", {"steps", "samples"}, "what the schedule's progress is measured in");

    choice("sync.type", "constant", {"constant", "every_step", "post_local", "qsr", "linear", "hierarchical"},
           "synchronization rule");
    integer("sync.H", 8, 1, e9,
            "period; H_base for qsr/linear; H after the switch for post_local; intra-group period for hierarchical");
    number("sync.switch_at", 0.25, 0, closed, 1, closed,
           "post_local: fraction of the budget before switching to local steps");
    number("sync.alpha", 0.2, 0, closed, none, closed,
           "after sync.warmup, qsr: H = max(sync.H, ⌊(alpha/lr)²⌋); linear: H = max(sync.H, ⌊alpha/lr⌋)");
    number("sync.warmup", 0, 0, closed, 1, closed, "qsr/linear: H = sync.H for this fraction of the budget");
    integer("sync.global_every", 4, 1, 1e6, "hierarchical: global sync every this many group syncs");
    integer("sync.group_size", 2, 1, 4096, "hierarchical: workers per group (divides run.workers)");

    choice("batch.type", "constant", {"constant", "norm", "inner_product", "augmented_inner_product"},
           "batch-size rule");
    integer("batch.b", 32, 1, p30, "constant local batch size; initial size of adaptive rules");
    integer("batch.b_min", 2, 2, p30,
            "adaptive rules: lower bound of batch.b and batch.micro_batches (sizes start at batch.b and never "
            "shrink, so it changes no run)");
    integer("batch.b_max", 4096, 2, p30, "adaptive rules: largest local batch size");
    number("batch.eta", 0.5, 0, open, none, closed, "norm test threshold η");
    number("batch.theta", 0.5, 0, open, none, closed,
           "inner-product test threshold θ (inner_product, augmented_inner_product)");
    number("batch.nu", 1.0, 0, open, none, closed, "orthogonality test threshold ν (augmented_inner_product)");
    choice("batch.scope", "local", {"local", "global"},
           "test each worker's batch, or the workers' batches pooled at global syncs");
    choice("batch.variance", "approximate", {"approximate", "exact"}, "sample variance or the exact population one");
    choice("batch.estimator", "per_sample", {"per_sample", "micro_batch_means", "cross_worker"}, "variance estimator");
    integer("batch.micro_batches", 4, 2, p30, "micro_batch_means: number of micro-batches");
    choice("batch.when", "every_step", {"every_step", "sync_steps"}, "at which steps the test runs");
    integer("batch.test_interval", 1, 1, e9, "run the test every this many eligible steps");
    choice("batch.harmonize", "max", {"none", "max", "mean"}, "how the workers' sizes are made equal at global syncs");
    choice("batch.apply_at", "next_round", {"next_round", "next_step", "this_step"},
           "when a new size takes effect (this_step: exact test before the draw, variance = exact only)");
    boolean("batch.eta_is_global_target", false,
            "local scope: eta (theta, nu) is the target of the pooled gradient, so each worker tests with √M·eta");

    choice("sampler.type", "iid", {"iid", "shuffled", "sharded", "dirichlet"}, "which samples each worker draws");
    number("sampler.concentration", 0.5, 0, open, none, closed, "dirichlet: label-skew concentration");

    choice("outer.type", "average", {"average", "sgd", "nesterov"},
           "at a global sync: the average, or an outer step on the pseudo-gradient (sgd: momentum; nesterov: "
           "Nesterov momentum, DiLoCo)");
    number("outer.lr", 0.7, 0, open, none, closed, "outer learning rate (sgd, nesterov)");
    number("outer.momentum", 0.9, 0, closed, 1, open, "outer momentum (sgd, nesterov)");

    choice("network.preset", "10g", {"10g", "100g", "nvlink", "custom"}, "network cost model");
    number("network.latency_s", 25e-6, 0, closed, none, closed, "custom: latency per message, seconds");
    number("network.bandwidth_gbps", 10, 0, open, none, closed, "custom: bandwidth, Gb/s");
    number("network.element_bytes", 4, 0, open, none, closed, "bytes per communicated number");

    number("compute.seconds_per_sample", 1e-6, 0, closed, none, closed, "simulated compute time per sample");
    number("compute.seconds_per_step", 0, 0, closed, none, closed, "simulated fixed compute time per step");
    boolean("compute.measure", false,
            "measure seconds_per_sample once on this machine; the measured value is written into the resolved config");
    integer("compute.stragglers", 0, 0, none, "number of slow workers (the last ones)");
    number("compute.straggler_factor", 2.0, 1, closed, none, closed, "slowdown of each straggler");
    numbers("compute.slowdown", {}, 1, "[] or run.workers numbers, each >= 1",
            "explicit per-worker slowdown factors; overrides stragglers");

    integer("checkpoint.every_steps", 0, 0, none,
            "write checkpoint.bin at the first sync after every this many local steps (0 = never); "
            "`lgm-sim resume DIR` continues a killed run bitwise");
    number("checkpoint.every_seconds", 0, 0, closed, none, closed,
           "write checkpoint.bin at the first sync after every this many seconds of wall time (0 = never)");
  }
};

const Schema& the_schema() {
  static const Schema s;
  return s;
}

/// Position of `key` in the schema, or npos.
std::size_t position(std::string_view key) {
  const auto& idx = the_schema().index;
  auto it = idx.find(key);
  return it == idx.end() ? std::string::npos : it->second;
}

std::vector<std::string> keys_of(std::string_view section) {
  std::vector<std::string> out;
  for (const auto& s : the_schema().specs)
    if (s.section() == section) out.emplace_back(s.name());
  return out;
}

bool is_section(std::string_view name) {
  const auto& secs = the_schema().sections;
  return std::find(secs.begin(), secs.end(), name) != secs.end();
}

std::string sections_text() { return join(the_schema().sections, ", "); }

/// The error for a key that is not in the schema (`where` qualifies the name, e.g. a variant).
[[noreturn]] void throw_unknown_key(std::string_view key, std::string_view value, std::string_view where) {
  const auto dot = key.find('.');
  const std::string_view section = key.substr(0, dot);
  if (dot != std::string_view::npos && is_section(section))
    throw ConfigError(std::string(key) + std::string(where), value,
                      "a key of [" + std::string(section) + "]: " + join(keys_of(section), ", "));
  throw ConfigError(std::string(key) + std::string(where), value, "a key of a section: " + sections_text());
}

// ---------------------------------------------------------------------------------------------------------
// Values: conversion from TOML and range checks.

bool in_range(const KeySpec& s, double v) {
  if (!std::isfinite(v)) return false;
  if (s.min && (s.min_open ? !(v > *s.min) : !(v >= *s.min))) return false;
  if (s.max && (s.max_open ? !(v < *s.max) : !(v <= *s.max))) return false;
  return true;
}

bool value_ok(const KeySpec& s, const ConfigValue& v) {
  switch (s.type) {
    case KeyType::integer:
      return in_range(s, static_cast<double>(std::get<Index>(v)));
    case KeyType::number:
      return in_range(s, std::get<double>(v));
    case KeyType::text: {
      const auto& t = std::get<std::string>(v);
      return s.choices.empty() || std::find(s.choices.begin(), s.choices.end(), t) != s.choices.end();
    }
    case KeyType::boolean:
      return true;
    case KeyType::numbers: {
      const auto& xs = std::get<std::vector<double>>(v);
      return std::all_of(xs.begin(), xs.end(), [&](double x) { return in_range(s, x); });
    }
  }
  return false;
}

/// A number node as a double; nullopt when it is not a number.
std::optional<double> as_number(const toml::node& n) {
  if (auto p = n.as_integer()) return static_cast<double>(p->get());
  if (auto p = n.as_floating_point()) return p->get();
  return std::nullopt;
}

/// Converts `n` to a value of key `s` and checks its range; errors name `err_name`.
ConfigValue convert(const KeySpec& s, const toml::node& n, std::string_view err_name) {
  auto fail = [&]() -> ConfigError { return ConfigError(err_name, render_node(n), s.accepted); };
  ConfigValue v;
  switch (s.type) {
    case KeyType::integer:
      if (auto p = n.as_integer()) {
        v = static_cast<Index>(p->get());
      } else if (auto f = n.as_floating_point()) {
        // 1e5 is a fine way to write an integer; 2.5 is not.
        const double d = f->get();
        if (!std::isfinite(d) || d != std::floor(d) || std::abs(d) >= 9.2e18) throw fail();
        v = static_cast<Index>(d);
      } else {
        throw fail();
      }
      break;
    case KeyType::number:
      if (auto d = as_number(n))
        v = *d;
      else
        throw fail();
      break;
    case KeyType::text:
      if (auto p = n.as_string())
        v = p->get();
      else
        throw fail();
      break;
    case KeyType::boolean:
      if (auto p = n.as_boolean())
        v = p->get();
      else
        throw fail();
      break;
    case KeyType::numbers: {
      auto arr = n.as_array();
      if (!arr) throw fail();
      std::vector<double> xs;
      for (const toml::node& e : *arr) {
        auto d = as_number(e);
        if (!d) throw fail();
        xs.push_back(*d);
      }
      v = std::move(xs);
      break;
    }
  }
  if (!value_ok(s, v)) throw fail();
  return v;
}

/// True when `text` is well-formed UTF-8 (what TOML can hold, so that the written config.toml reads back).
bool is_utf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    const std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > text.size()) return false;
    std::uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (std::size_t k = 1; k < n; ++k) {
      const auto cc = static_cast<unsigned char>(text[i + k]);
      if ((cc >> 6) != 0x2) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8
    static constexpr std::uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return false;
    i += n;
  }
  return true;
}

/// Converts the text of a command-line value: TOML syntax, or a bare string ("adamw" == "\"adamw\"").
ConfigValue convert_text(const KeySpec& s, std::string_view raw, std::string_view err_name) {
  if (!is_utf8(raw)) throw ConfigError(err_name, "text that is not valid UTF-8", "UTF-8 text");
  std::optional<toml::table> doc;
  try {
    doc = toml::parse("v = " + std::string(raw) + "\n", std::string_view("override"));
  } catch (const toml::parse_error&) {
    doc.reset();
  }
  const toml::node* node = nullptr;
  if (doc && doc->size() == 1) node = doc->get("v");
  // Not a single TOML value, or a non-string for a text key (problem.path=2024): take the text as it is.
  if (!node || (s.type == KeyType::text && !node->is_string())) {
    const toml::value<std::string> bare{std::string(raw)};
    return convert(s, bare, err_name);
  }
  return convert(s, *node, err_name);
}

/// Splits "key=value" (an override or a grid entry) into trimmed key and value.
std::pair<std::string, std::string> split_assignment(std::string_view text, std::string_view what,
                                                     std::string_view example) {
  const auto eq = text.find('=');
  if (eq == std::string_view::npos || trim(text.substr(0, eq)).empty())
    throw ConfigError(what, toml_string(text), "key=value, e.g. " + std::string(example));
  return {std::string(trim(text.substr(0, eq))), std::string(trim(text.substr(eq + 1)))};
}

/// Splits "a,b,[1,2],"x,y"" at the commas outside brackets, braces and quotes.
std::vector<std::string> split_list(std::string_view text) {
  std::vector<std::string> out;
  int depth = 0;
  char quote = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quote) {
      if (c == '\\' && quote == '"')
        ++i;
      else if (c == quote)
        quote = 0;
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '[' || c == '{') {
      ++depth;
    } else if (c == ']' || c == '}') {
      --depth;
    } else if (c == ',' && depth == 0) {
      out.emplace_back(trim(text.substr(start, i - start)));
      start = i + 1;
    }
  }
  out.emplace_back(trim(text.substr(start)));
  return out;
}

struct Assignment {
  std::size_t pos;
  ConfigValue value;
};

/// A command-line "key=value", checked.
Assignment parse_override(std::string_view text) {
  auto [key, raw] = split_assignment(text, "override", "optimizer.lr=0.05");
  const auto pos = position(key);
  if (pos == std::string::npos) throw_unknown_key(key, raw, "");
  return {pos, convert_text(the_schema().specs[pos], raw, key)};
}

std::string variant_where(std::string_view name) { return " (variant " + toml_string(name) + ")"; }

}  // namespace detail

// -------------------------------------------------------------------------------------------------------------
// Schema access.

std::string_view type_name(KeyType type) {
  switch (type) {
    case KeyType::integer:
      return "integer";
    case KeyType::number:
      return "number";
    case KeyType::text:
      return "string";
    case KeyType::boolean:
      return "boolean";
    case KeyType::numbers:
      return "array of numbers";
  }
  return "?";
}

const std::vector<KeySpec>& schema() { return detail::the_schema().specs; }

const std::vector<std::string>& schema_sections() { return detail::the_schema().sections; }

const KeySpec* find_key(std::string_view key) {
  const auto pos = detail::position(key);
  return pos == std::string::npos ? nullptr : &schema()[pos];
}

std::string schema_listing() {
  constexpr std::size_t accepted_cap = 40;  // longer range texts overflow their column rather than widen it
  std::size_t wk = 0, wt = 0, wd = 0, wa = 0;
  for (const auto& s : schema()) {
    wk = std::max(wk, s.name().size());
    wt = std::max(wt, type_name(s.type).size());
    wd = std::max(wd, s.default_text.size());
    if (s.accepted.size() <= accepted_cap) wa = std::max(wa, s.accepted.size());
  }
  auto pad = [](std::string_view s, std::size_t w) {
    std::string out(s);
    out.append(w > s.size() ? w - s.size() : 0, ' ');
    return out;
  };
  std::string out;
  for (const auto& section : schema_sections()) {
    if (!out.empty()) out += "\n";
    out += "[" + section + "]\n";
    for (const auto& s : schema()) {
      if (s.section() != section) continue;
      out += "  " + pad(s.name(), wk) + "  " + pad(type_name(s.type), wt) + "  " + pad(s.default_text, wd) + "  " +
             pad(s.accepted, wa) + "  " + s.doc + "\n";
    }
  }
  return out;
}

// -------------------------------------------------------------------------------------------------------------
// RunConfig.

RunConfig::RunConfig() : m_values(detail::the_schema().defaults), m_given(m_values.size(), false) {}

namespace {

std::size_t checked_position(std::string_view key, KeyType type) {
  const auto pos = detail::position(key);
  if (pos == std::string::npos) throw std::logic_error("RunConfig: no key '" + std::string(key) + "' in the schema");
  const auto& spec = schema()[pos];
  if (spec.type != type)
    throw std::logic_error("RunConfig: key '" + std::string(key) + "' is " + std::string(type_name(spec.type)) +
                           ", not " + std::string(type_name(type)));
  return pos;
}

}  // namespace

double RunConfig::number(std::string_view key) const {
  return std::get<double>(m_values[checked_position(key, KeyType::number)]);
}

Index RunConfig::integer(std::string_view key) const {
  return std::get<Index>(m_values[checked_position(key, KeyType::integer)]);
}

const std::string& RunConfig::text(std::string_view key) const {
  return std::get<std::string>(m_values[checked_position(key, KeyType::text)]);
}

bool RunConfig::flag(std::string_view key) const {
  return std::get<bool>(m_values[checked_position(key, KeyType::boolean)]);
}

std::vector<double> RunConfig::numbers(std::string_view key) const {
  return std::get<std::vector<double>>(m_values[checked_position(key, KeyType::numbers)]);
}

void RunConfig::set(std::string_view key, std::string_view toml_value) {
  const auto pos = detail::position(key);
  if (pos == std::string::npos) detail::throw_unknown_key(key, toml_value, "");
  m_values[pos] = detail::convert_text(schema()[pos], detail::trim(toml_value), key);
  m_given[pos] = true;
}

bool RunConfig::is_given(std::string_view key) const {
  const auto pos = detail::position(key);
  if (pos == std::string::npos) throw std::logic_error("RunConfig: no key '" + std::string(key) + "' in the schema");
  return m_given[pos];
}

namespace detail {

/// The cross-key rules; `where` qualifies the key in messages (e.g. the run's name).
/// The networks' data and shapes (docs/simulator.md §Networks).
void check_network_keys(const RunConfig& rc, const std::string& w) {
  const std::string type = rc.text("problem.type"), data = rc.text("problem.data");
  const bool image_data = data == "fashion_mnist" || data == "cifar10";
  const bool text_data = data == "fortunes" || data == "text";
  if (type == "resnet" && !image_data)
    throw ConfigError("problem.data" + w, toml_string(data), "fashion_mnist or cifar10 for problem.type = \"resnet\"");
  if (type == "gpt" && !text_data)
    throw ConfigError("problem.data" + w, toml_string(data), "fortunes or text for problem.type = \"gpt\"");
  if (type != "resnet" && type != "gpt" && (image_data && data != "fashion_mnist"))
    throw ConfigError(
        "problem.data" + w, toml_string(data),
        "synthetic, fashion_mnist or libsvm for problem.type = " + toml_string(type) + " (cifar10 is resnet's)");
  if (type != "gpt" && text_data)
    throw ConfigError("problem.data" + w, toml_string(data), "fortunes or text only with problem.type = \"gpt\"");
  if ((data == "cifar10" || data == "text") && rc.text("problem.path").empty())
    throw ConfigError("problem.path" + w, "\"\"",
                      data == "cifar10" ? "the directory holding data_batch_1.bin ... test_batch.bin (CIFAR-10 binary)"
                                        : "the text file to train on (problem.data = \"text\")");
  const Index depth = rc.integer("problem.depth");
  if (type == "resnet" && depth != 18 && (depth - 2) % 6 != 0)
    throw ConfigError("problem.depth" + w, std::to_string(depth),
                      "6n + 2 for n >= 1 (8, 14, 20, 32, 44, 56, ...) or 18 (ResNet-18)");
  const Index width = rc.integer("problem.width") > 0 ? rc.integer("problem.width") : 64;
  if (type == "gpt" && width % rc.integer("problem.heads") != 0)
    throw ConfigError("problem.heads" + w, std::to_string(rc.integer("problem.heads")),
                      "a divisor of problem.width = " + std::to_string(width));
}

void check_cross_keys(const RunConfig& rc, std::string_view where) {
  const std::string w(where);
  auto n = [](Index i) { return std::to_string(i); };
  const Index workers = rc.integer("run.workers");

  if (rc.integer("run.max_samples") <= 0 && rc.integer("run.max_steps") <= 0)
    throw ConfigError("run.max_samples" + w, "0", "an integer > 0, or run.max_steps > 0 (both are 0: no budget)");

  const Index b_min = rc.integer("batch.b_min"), b_max = rc.integer("batch.b_max"), b = rc.integer("batch.b");
  if (b_max < b_min) throw ConfigError("batch.b_max" + w, n(b_max), "an integer >= batch.b_min = " + n(b_min));
  const std::string& batch_type = rc.text("batch.type");
  if (batch_type != "constant" && (b < b_min || b > b_max))
    throw ConfigError("batch.b" + w, n(b),
                      "an integer in [batch.b_min, batch.b_max] = [" + n(b_min) + ", " + n(b_max) +
                          "] when batch.type = " + toml_string(batch_type));

  const double lr = rc.number("optimizer.lr"), min_lr = rc.number("schedule.min_lr");
  if (min_lr > lr)
    throw ConfigError("schedule.min_lr" + w, shortest(min_lr),
                      "a number in [0, optimizer.lr] = [0, " + shortest(lr) + "]");

  const auto slowdown = rc.numbers("compute.slowdown");
  if (!slowdown.empty() && static_cast<Index>(slowdown.size()) != workers)
    throw ConfigError("compute.slowdown" + w, render_value(slowdown, false),
                      "[] or run.workers = " + n(workers) + " numbers, each >= 1");

  const Index group = rc.integer("sync.group_size");
  if (rc.text("sync.type") == "hierarchical" && workers % group != 0)
    throw ConfigError("sync.group_size" + w, n(group),
                      "a divisor of run.workers = " + n(workers) + " when sync.type = \"hierarchical\"");

  const Index stragglers = rc.integer("compute.stragglers");
  if (stragglers > workers)
    throw ConfigError("compute.stragglers" + w, n(stragglers),
                      "an integer in [0, run.workers] = [0, " + n(workers) + "]");

  check_network_keys(rc, w);

  const double mu = rc.number("problem.mu"), L = rc.number("problem.L");
  if (rc.text("problem.type") == "quadratic" && L < mu)
    throw ConfigError("problem.L" + w, shortest(L),
                      "a number >= problem.mu = " + shortest(mu) + " when problem.type = \"quadratic\"");
}

}  // namespace detail

struct RunConfigAccess {
  /// Sets the value at schema position `pos` and marks the key as given.
  static void assign(RunConfig& rc, std::size_t pos, ConfigValue value) {
    rc.m_values[pos] = std::move(value);
    rc.m_given[pos] = true;
  }

  static void validate(const RunConfig& rc, std::string_view where) {
    const auto& specs = schema();
    for (std::size_t i = 0; i < specs.size(); ++i)
      if (!detail::value_ok(specs[i], rc.m_values[i]))
        throw ConfigError(specs[i].key + std::string(where), detail::render_value(rc.m_values[i], true),
                          specs[i].accepted);
    detail::check_cross_keys(rc, where);
  }
};

void RunConfig::validate() const { RunConfigAccess::validate(*this, ""); }

std::string RunConfig::to_toml() const {
  std::string out = "name = " + detail::toml_string(m_name) + "\n";
  const auto& specs = schema();
  for (const auto& section : schema_sections()) {
    out += "\n[" + section + "]\n";
    for (std::size_t i = 0; i < specs.size(); ++i)
      if (specs[i].section() == section)
        out += std::string(specs[i].name()) + " = " + detail::render_value(m_values[i], true) + "\n";
  }
  return out;
}

// -------------------------------------------------------------------------------------------------------------
// Keys without effect. Each rule names one key and the configurations in which the code that reads the key
// never runs, or computes the same thing whatever its value (build.cpp and the library policies it builds).

namespace detail {

using Clause = std::optional<std::string>;

/// `key = "value"`, as a clause names it.
std::string text_is(const RunConfig& rc, std::string_view key) {
  return std::string(key) + " = " + toml_string(rc.text(key));
}

bool one_of(const std::string& v, std::initializer_list<std::string_view> values) {
  return std::find(values.begin(), values.end(), v) != values.end();
}

const std::vector<NoEffectRule>& rules() {
  static const std::vector<NoEffectRule> all = [] {
    std::vector<NoEffectRule> r;
    // `key` is read only when text key `other` has one of the values `live`
    auto unless = [&r](std::string key, std::string other, std::vector<std::string> live) {
      r.push_back({std::move(key), "", "", [other, live](const RunConfig& rc) -> Clause {
                     if (std::find(live.begin(), live.end(), rc.text(other)) != live.end()) return std::nullopt;
                     return "with " + text_is(rc, other);
                   }});
    };
    auto when = [&r](std::string key, std::function<Clause(const RunConfig&)> f) {
      r.push_back({std::move(key), "", "", std::move(f)});
    };
    // text key `key` = `value` runs as `key = same_as` where `f` gives a reason
    auto runs_as = [&r](std::string key, std::string value, std::string same_as,
                        std::function<Clause(const RunConfig&)> f) {
      r.push_back({std::move(key), std::move(value), std::move(same_as), std::move(f)});
    };
    const std::vector<std::string> adaptive = {"norm", "inner_product", "augmented_inner_product"};
    const std::vector<std::string> real = {"fashion_mnist", "libsvm", "cifar10", "fortunes", "text"};
    const std::vector<std::string> networks = {"resnet", "gpt"};

    when("run.eval_points", [](const RunConfig& rc) -> Clause {
      if (!rc.flag("run.eval_every_round")) return std::nullopt;
      return "with run.eval_every_round = true";
    });

    unless("problem.path", "problem.data", real);
    unless("problem.test_path", "problem.data", {"libsvm"});
    const std::vector<std::string> sample_sets = {"fashion_mnist", "libsvm", "cifar10"};
    unless("problem.train_limit", "problem.data", sample_sets);
    unless("problem.test_limit", "problem.data", sample_sets);
    when("problem.test_limit", [](const RunConfig& rc) -> Clause {
      if (rc.text("problem.data") != "libsvm" || !rc.text("problem.test_path").empty()) return std::nullopt;
      return "with problem.data = \"libsvm\" and no problem.test_path (there is no test set)";
    });
    unless("problem.bias", "problem.data", {"fashion_mnist", "libsvm"});
    unless("problem.bias", "problem.type", {"logistic", "nonconvex_logistic", "softmax", "mlp"});
    for (const char* key : {"problem.N", "problem.d"}) unless(key, "problem.data", {"synthetic"});
    unless("problem.classes", "problem.type", {"softmax", "mlp"});
    unless("problem.classes", "problem.data", {"synthetic"});
    unless("problem.hidden", "problem.type", {"mlp"});
    unless("problem.device", "problem.type", networks);
    unless("problem.eval_samples", "problem.type", networks);
    unless("problem.width", "problem.type", networks);
    for (const char* key : {"problem.depth", "problem.bn_sync"}) unless(key, "problem.type", {"resnet"});
    for (const char* key : {"problem.layers", "problem.heads", "problem.context", "problem.val_fraction"})
      unless(key, "problem.type", {"gpt"});
    unless("problem.augment", "problem.data", {"cifar10"});
    when("problem.decay_all", [](const RunConfig& rc) -> Clause {
      if (!one_of(rc.text("problem.type"), {"resnet", "gpt"}) || rc.text("optimizer.type") != "adamw")
        return "with " + text_is(rc, "problem.type") + " and " + text_is(rc, "optimizer.type") +
               " (the decay mask is AdamW's on networks)";
      if (rc.number("optimizer.weight_decay") == 0.0) return std::string("with optimizer.weight_decay = 0");
      return std::nullopt;
    });
    when("problem.lambda", [](const RunConfig& rc) -> Clause {
      if (rc.text("problem.type") == "quadratic")
        return "with " + text_is(rc, "problem.type") + " (it has no regularizer)";
      if (one_of(rc.text("problem.type"), {"resnet", "gpt"}))
        return "with " + text_is(rc, "problem.type") + " (networks are regularized by optimizer.weight_decay)";
      return std::nullopt;
    });
    for (const char* key : {"problem.mu", "problem.L"}) unless(key, "problem.type", {"quadratic"});
    for (const char* key : {"problem.condition", "problem.rank"}) unless(key, "problem.type", {"least_squares"});
    unless("problem.noise", "problem.type", {"quadratic", "least_squares"});
    unless("problem.signal", "problem.type", {"logistic", "nonconvex_logistic"});
    unless("problem.signal", "problem.data", {"synthetic"});
    unless("problem.separation", "problem.type", {"softmax", "mlp"});
    unless("problem.separation", "problem.data", {"synthetic"});
    when("problem.seed", [](const RunConfig& rc) -> Clause {
      if (rc.text("problem.data") == "synthetic" || one_of(rc.text("problem.type"), {"mlp", "resnet", "gpt"}))
        return std::nullopt;
      return "with " + text_is(rc, "problem.data") + " and " + text_is(rc, "problem.type") +
             " (it seeds synthetic data and the mlp's initial point)";
    });

    unless("optimizer.momentum", "optimizer.type", {"heavy_ball", "nesterov"});
    for (const char* key : {"optimizer.beta1", "optimizer.beta2", "optimizer.eps"})
      unless(key, "optimizer.type", {"adamw"});
    when("optimizer.average_state", [](const RunConfig& rc) -> Clause {
      if (rc.text("sync.type") != "every_step") return std::nullopt;
      return "with sync.type = \"every_step\" (the gradients are averaged, so the states are equal)";
    });

    // a constant learning rate: nothing of the schedule but optimizer.lr is read
    auto constant_lr = [](const RunConfig& rc) -> Clause {
      if (rc.text("schedule.type") != "constant" || rc.number("schedule.warmup") != 0.0) return std::nullopt;
      return "with schedule.type = \"constant\" and schedule.warmup = 0 (the learning rate is constant)";
    };
    when("schedule.min_lr", [](const RunConfig& rc) -> Clause {
      if (!one_of(rc.text("schedule.type"), {"constant", "step_decay"}) || rc.number("schedule.warmup") != 0.0)
        return std::nullopt;
      return "with " + text_is(rc, "schedule.type") + " and schedule.warmup = 0";
    });
    for (const char* key : {"schedule.decay_factor", "schedule.decay_every"})
      unless(key, "schedule.type", {"step_decay"});
    when("schedule.axis", constant_lr);

    unless("sync.H", "sync.type", {"constant", "post_local", "qsr", "linear", "hierarchical"});
    unless("sync.switch_at", "sync.type", {"post_local"});
    for (const char* key : {"sync.alpha", "sync.warmup"}) unless(key, "sync.type", {"qsr", "linear"});
    for (const char* key : {"sync.global_every", "sync.group_size"}) unless(key, "sync.type", {"hierarchical"});

    for (const char* key :
         {"batch.b_min", "batch.b_max", "batch.scope", "batch.variance", "batch.estimator", "batch.micro_batches",
          "batch.when", "batch.test_interval", "batch.harmonize", "batch.apply_at", "batch.eta_is_global_target"})
      unless(key, "batch.type", adaptive);
    when("batch.b_min", [](const RunConfig&) -> Clause {
      return std::string(
          "on a run: adaptive sizes start at batch.b >= batch.b_min and never shrink (it bounds "
          "batch.b and batch.micro_batches)");
    });
    unless("batch.eta", "batch.type", {"norm"});
    unless("batch.theta", "batch.type", {"inner_product", "augmented_inner_product"});
    unless("batch.nu", "batch.type", {"augmented_inner_product"});
    unless("batch.micro_batches", "batch.estimator", {"micro_batch_means"});
    // cross_worker tests pool all workers at global syncs, whatever batch.scope says
    when("batch.scope", [](const RunConfig& rc) -> Clause {
      if (rc.text("batch.estimator") != "cross_worker") return std::nullopt;
      return "with batch.estimator = \"cross_worker\" (it pools the workers at global syncs)";
    });
    // one test result for every worker: the sizes are equal without harmonizing, and the divisor is not used
    auto shared_result = [](const RunConfig& rc) -> Clause {
      if (rc.integer("run.workers") == 1) return "with run.workers = 1";
      if (rc.text("batch.scope") == "global") return "with batch.scope = \"global\" (every worker gets one size)";
      if (rc.text("batch.estimator") == "cross_worker")
        return "with batch.estimator = \"cross_worker\" (every worker gets one size)";
      return std::nullopt;
    };
    when("batch.harmonize", [](const RunConfig& rc) -> Clause {
      if (rc.integer("run.workers") != 1) return std::nullopt;
      return "with run.workers = 1";
    });
    // harmonizing equal sizes still sends one number per sync: only max and mean agree
    runs_as("batch.harmonize", "max", "mean", shared_result);
    runs_as("batch.harmonize", "mean", "max", shared_result);
    when("batch.eta_is_global_target", shared_result);
    // tests that run only at syncs: "every step" and "every sync" are the same steps
    when("batch.when", [](const RunConfig& rc) -> Clause {
      if (rc.text("sync.type") == "every_step") return "with sync.type = \"every_step\" (every step is a sync)";
      if (rc.integer("batch.test_interval") != 1) return std::nullopt;
      if (rc.text("batch.scope") == "global")
        return "with batch.scope = \"global\" and batch.test_interval = 1 (the test runs at global syncs only)";
      if (rc.text("batch.estimator") == "cross_worker")
        return "with batch.estimator = \"cross_worker\" and batch.test_interval = 1 (the test runs at global "
               "syncs only)";
      return std::nullopt;
    });
    // next_step and next_round differ only where a test runs at a step that does not end with a sync
    auto tests_at_syncs = [](const RunConfig& rc) -> Clause {
      if (rc.text("sync.type") == "every_step") return "with sync.type = \"every_step\"";
      if (rc.text("batch.scope") == "global") return "with batch.scope = \"global\"";
      if (rc.text("batch.estimator") == "cross_worker") return "with batch.estimator = \"cross_worker\"";
      return std::nullopt;
    };
    runs_as("batch.apply_at", "next_step", "next_round", tests_at_syncs);
    runs_as("batch.apply_at", "next_round", "next_step", tests_at_syncs);

    unless("sampler.concentration", "sampler.type", {"dirichlet"});

    for (const char* key : {"outer.lr", "outer.momentum"}) unless(key, "outer.type", {"sgd", "nesterov"});

    for (const char* key : {"network.latency_s", "network.bandwidth_gbps"}) unless(key, "network.preset", {"custom"});
    runs_as("network.preset", "custom", "10g", [](const RunConfig& rc) -> Clause {
      const NetworkLink ten = NetworkLink::ethernet_10g();
      if (rc.number("network.latency_s") != ten.latency_s ||
          rc.number("network.bandwidth_gbps") * 1e9 / 8.0 != ten.bandwidth_bytes_per_s)
        return std::nullopt;
      return "with network.latency_s and network.bandwidth_gbps at the 10g link's values";
    });

    when("compute.seconds_per_sample", [](const RunConfig& rc) -> Clause {
      if (!rc.flag("compute.measure")) return std::nullopt;
      return "with compute.measure = true (the measured value replaces it)";
    });
    for (const char* key : {"compute.stragglers", "compute.straggler_factor"})
      when(key, [](const RunConfig& rc) -> Clause {
        if (rc.numbers("compute.slowdown").empty()) return std::nullopt;
        return "with compute.slowdown given (it overrides the stragglers)";
      });
    when("compute.stragglers", [](const RunConfig& rc) -> Clause {
      if (rc.number("compute.straggler_factor") != 1.0) return std::nullopt;
      return "with compute.straggler_factor = 1";
    });
    when("compute.straggler_factor", [](const RunConfig& rc) -> Clause {
      if (rc.integer("compute.stragglers") != 0) return std::nullopt;
      return "with compute.stragglers = 0";
    });
    return r;
  }();
  return all;
}

}  // namespace detail

const std::vector<NoEffectRule>& no_effect_rules() { return detail::rules(); }

std::optional<NoEffect> no_effect(const RunConfig& rc, std::string_view key) {
  const KeySpec* spec = find_key(key);
  if (!spec) throw std::logic_error("no_effect: no key '" + std::string(key) + "' in the schema");
  for (const NoEffectRule& rule : no_effect_rules()) {
    if (rule.key != key || (!rule.value.empty() && rc.text(key) != rule.value)) continue;
    const auto clause = rule.reason(rc);
    if (!clause) continue;
    if (rule.value.empty()) return NoEffect{std::string(key) + " has no effect " + *clause, std::nullopt};
    return NoEffect{std::string(key) + " = " + detail::toml_string(rule.value) + " runs as " +
                        detail::toml_string(rule.same_as) + " " + *clause,
                    rule.same_as};
  }
  return std::nullopt;
}

std::vector<std::string> no_effect_notes(const ExperimentConfig& experiment) {
  std::vector<std::string> notes;
  for (const RunConfig& rc : experiment.runs)
    for (const KeySpec& spec : schema())
      if (rc.is_given(spec.key))
        if (auto none = no_effect(rc, spec.key))
          notes.push_back("note: " + none->reason +
                          (experiment.runs.size() > 1 ? " (variant " + detail::toml_string(rc.name()) + ")" : ""));
  return notes;
}

// -------------------------------------------------------------------------------------------------------------
// Experiments.

namespace {

/// Sets every key of `table` (the keys of [section]) in `rc`; errors name the key plus `where`.
void apply_section(RunConfig& rc, std::string_view section, const toml::node& node, std::string_view where) {
  const auto* table = node.as_table();
  if (!table)
    throw ConfigError(
        std::string(section) + std::string(where), detail::render_node(node),
        "a table [" + std::string(section) + "] of keys: " + detail::join(detail::keys_of(section), ", "));
  for (auto&& [k, v] : *table) {
    const std::string key = std::string(section) + "." + std::string(k.str());
    const auto pos = detail::position(key);
    if (pos == std::string::npos) detail::throw_unknown_key(key, detail::render_node(v), where);
    RunConfigAccess::assign(rc, pos, detail::convert(schema()[pos], v, key + std::string(where)));
  }
}

std::string top_level_keys() { return "name, description, [[variant]] or a section: " + detail::sections_text(); }

/// The required, non-empty name of a run or experiment.
std::string required_name(const toml::node& node, std::string_view err_name) {
  const auto* s = node.as_string();
  if (!s || s->get().empty()) throw ConfigError(err_name, detail::render_node(node), "a non-empty string");
  return s->get();
}

}  // namespace

ExperimentConfig parse_experiment(std::string_view toml_text, std::string_view source_name,
                                  const std::vector<std::string>& overrides) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    const auto line = static_cast<std::size_t>(e.source().begin.line);
    const auto column = static_cast<std::size_t>(e.source().begin.column);
    // The offending line, so the message shows what is wrong without opening the file.
    std::string_view rest = toml_text;
    for (std::size_t l = 1; l < line && !rest.empty(); ++l) {
      const auto nl = rest.find('\n');
      rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
    }
    const std::string_view text = detail::trim(rest.substr(0, rest.find('\n')));
    throw ConfigError(std::string(source_name) + ":" + std::to_string(line) + ":" + std::to_string(column),
                      text.empty() ? std::string("(end of line)") : "'" + std::string(text) + "'",
                      "valid TOML; " + std::string(e.description()));
  }

  ExperimentConfig exp;
  exp.name = std::filesystem::path(std::string(source_name)).stem().string();
  if (exp.name.empty()) exp.name = "experiment";
  RunConfig base;
  const toml::array* variants = nullptr;
  for (auto&& [k, node] : root) {
    const std::string key(k.str());
    if (key == "name") {
      exp.name = required_name(node, "name");
    } else if (key == "description") {
      const auto* s = node.as_string();
      if (!s) throw ConfigError("description", detail::render_node(node), "a string");
      exp.description = s->get();
    } else if (key == "variant") {
      variants = node.as_array();
      if (!variants || (!variants->empty() && !variants->is_array_of_tables()))
        throw ConfigError("variant", detail::render_node(node), "an array of tables [[variant]]");
    } else if (detail::is_section(key)) {
      apply_section(base, key, node, "");
    } else {
      throw ConfigError(key, detail::render_node(node), top_level_keys());
    }
  }

  // Overrides are checked once, before any run, so a bad one is reported as such.
  std::vector<detail::Assignment> assigned;
  for (const auto& o : overrides) assigned.push_back(detail::parse_override(o));
  auto finish = [&](RunConfig rc, std::string_view where) {
    for (const auto& a : assigned) RunConfigAccess::assign(rc, a.pos, a.value);
    RunConfigAccess::validate(rc, where);
    exp.runs.push_back(std::move(rc));
  };

  if (!variants || variants->empty()) {
    base.set_name(exp.name);
    finish(std::move(base), "");
    return exp;
  }
  std::map<std::string, std::size_t> seen;
  for (std::size_t i = 0; i < variants->size(); ++i) {
    const toml::table& vt = *(*variants)[i].as_table();
    const std::string id = "variant[" + std::to_string(i) + "].name";
    const toml::node* name_node = vt.get("name");
    if (!name_node) throw ConfigError(id, "(missing)", "a non-empty string, unique among the variants");
    const std::string name = required_name(*name_node, id);
    if (auto [it, fresh] = seen.emplace(name, i); !fresh)
      throw ConfigError(id, detail::toml_string(name),
                        "a name not used by another variant (variant[" + std::to_string(it->second) + "] has it)");
    RunConfig rc = base;
    rc.set_name(name);
    const std::string where = detail::variant_where(name);
    for (auto&& [k, node] : vt) {
      const std::string key(k.str());
      if (key == "name") continue;
      if (!detail::is_section(key))
        throw ConfigError(key + where, detail::render_node(node),
                          "name or a dotted key section.key with a section of: " + detail::sections_text());
      apply_section(rc, key, node, where);
    }
    finish(std::move(rc), where);
  }
  return exp;
}

ExperimentConfig load_experiment(const std::filesystem::path& file, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) throw ConfigError(file.string(), "(no such file)", "a readable TOML file");
  if (std::filesystem::is_directory(file, ec))
    throw ConfigError(file.string(), "(a directory)", "a readable TOML file");
  std::ifstream in(file, std::ios::binary);
  std::ostringstream text;
  if (in) text << in.rdbuf();
  if (!in || in.bad()) throw ConfigError(file.string(), "(unreadable)", "a readable TOML file");
  return parse_experiment(text.str(), file.string(), overrides);
}

ExperimentConfig expand_grid(const ExperimentConfig& experiment, const std::vector<std::string>& grid) {
  struct Axis {
    std::size_t pos;
    std::string key;
    std::string label;
    std::vector<ConfigValue> values;
  };
  std::vector<Axis> axes;
  for (const auto& entry : grid) {
    auto [key, list] = detail::split_assignment(entry, "grid", "sync.H=4,8,16");
    const auto pos = detail::position(key);
    if (pos == std::string::npos) detail::throw_unknown_key(key, list, "");
    for (const auto& a : axes)
      if (a.pos == pos) throw ConfigError("grid", detail::toml_string(entry), "each key at most once in the grid");
    Axis axis{pos, key, std::string(schema()[pos].name()), {}};
    for (const auto& raw : detail::split_list(list)) {
      if (raw.empty())
        throw ConfigError(key, detail::toml_string(list), "a comma-separated list of values, e.g. sync.H=4,8,16");
      axis.values.push_back(detail::convert_text(schema()[pos], raw, key));
    }
    axes.push_back(std::move(axis));
  }
  // Short labels, unless two keys share a last component (optimizer.lr and outer.lr).
  std::map<std::string, int> uses;
  for (const auto& a : axes) ++uses[a.label];
  for (auto& a : axes)
    if (uses[a.label] > 1) a.label = a.key;

  ExperimentConfig out{experiment.name, experiment.description, {}};
  if (axes.empty()) {
    out.runs = experiment.runs;
    return out;
  }
  for (const auto& run : experiment.runs) {
    std::vector<std::size_t> at(axes.size(), 0);  // odometer over the axes, the first one slowest
    for (;;) {
      RunConfig rc = run;
      std::vector<std::string> parts;
      for (std::size_t a = 0; a < axes.size(); ++a) {
        RunConfigAccess::assign(rc, axes[a].pos, axes[a].values[at[a]]);
        parts.push_back(axes[a].label + "=" + detail::render_value(axes[a].values[at[a]], false));
      }
      rc.set_name(run.name() + "/" + detail::join(parts, ","));
      RunConfigAccess::validate(rc, " (run " + detail::toml_string(rc.name()) + ")");
      out.runs.push_back(std::move(rc));
      std::size_t a = axes.size();
      while (a > 0 && ++at[a - 1] == axes[a - 1].values.size()) at[--a] = 0;
      if (a == 0) break;
    }
  }
  return out;
}

}  // namespace lgm::sim
