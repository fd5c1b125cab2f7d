#include "memory_plan.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>

#include "build.hpp"
#include "lgm/core/error.hpp"

namespace lgm::sim {

namespace {

constexpr double kDouble = 8.0;  // bytes of a double (features, parameters)
constexpr double kIndex = 8.0;   // bytes of an lgm::Index (sample indices, labels)
constexpr double kFashionMnistTrain = 60000, kFashionMnistTest = 10000, kFashionMnistPixels = 784;
constexpr double kEvaluationChunks = 64;  // Evaluator in run_variant.hpp
constexpr double kRecordBytes = 400;      // a RoundRecord kept for the plots (fields and the run's name)

std::string text_of(Index v) { return lgm::detail::to_text(v); }

MemoryItem item(std::string what, std::vector<std::string> keys, std::vector<std::string> values, double bytes) {
  return MemoryItem{std::move(what), std::move(keys), std::move(values), bytes};
}

/// The first number of the line of /proc/meminfo that starts with `field` (in kB there), in bytes.
std::optional<double> meminfo_bytes(const char* field) {
  std::ifstream in("/proc/meminfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field, 0) != 0) continue;
    std::istringstream fields(line.substr(std::string(field).size()));
    double kb = 0;
    if (fields >> kb) return kb * 1024.0;
  }
  return std::nullopt;
}

/// A whole number from a one-line file (cgroup files); nullopt for "max" or anything else.
std::optional<double> file_number(const char* path) {
  std::ifstream in(path);
  std::string word;
  if (!(in >> word) || word.empty() ||
      !std::all_of(word.begin(), word.end(), [](unsigned char c) { return std::isdigit(c) != 0; }))
    return std::nullopt;
  return std::strtod(word.c_str(), nullptr);
}

double resident_bytes() {
  std::ifstream in("/proc/self/statm");
  double pages_total = 0, pages_resident = 0;
  if (!(in >> pages_total >> pages_resident)) return 0.0;
  return pages_resident * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

/// LGM_MEMORY_LIMIT: "2147483648", "512M", "2G", "1.5GiB" (powers of 1024).
std::optional<double> memory_limit_from_env() {
  const char* raw = std::getenv("LGM_MEMORY_LIMIT");
  if (raw == nullptr) return std::nullopt;
  const std::string text = raw;
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  std::string unit(end == nullptr ? "" : end);
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const std::pair<const char*, double> units[] = {{"", 1.0},
                                                  {"B", 1.0},
                                                  {"K", 1024.0},
                                                  {"KB", 1024.0},
                                                  {"KIB", 1024.0},
                                                  {"M", 1048576.0},
                                                  {"MB", 1048576.0},
                                                  {"MIB", 1048576.0},
                                                  {"G", 1073741824.0},
                                                  {"GB", 1073741824.0},
                                                  {"GIB", 1073741824.0},
                                                  {"T", 1099511627776.0},
                                                  {"TB", 1099511627776.0},
                                                  {"TIB", 1099511627776.0}};
  const auto* u = std::find_if(std::begin(units), std::end(units), [&](const auto& p) { return unit == p.first; });
  if (end == text.c_str() || u == std::end(units) || !std::isfinite(value) || value <= 0.0)
    throw ConfigError("LGM_MEMORY_LIMIT (environment)", "\"" + text + "\"",
                      "a size in bytes > 0, optionally with a suffix K, M, G or T (powers of 1024), e.g. 512M");
  return value * u->second;
}

/// Bytes of one objective workspace (run_variant.hpp's Evaluator and the driver make them per worker/chunk):
/// a few vectors of the model's size.
double workspace_bytes(const std::string& type, double D, double classes, double hidden) {
  if (type == "softmax") return kDouble * (D + 3 * classes);
  if (type == "mlp") return kDouble * (4 * hidden + 3 * classes);
  return kDouble * 2 * D;  // quadratic (diff, A·diff); linear models (regularizer gradient, norm cache point)
}

/// What a LIBSVM file's dense features will need: its sample lines and its largest feature index. A quick scan
/// (no validation: the reader reports malformed lines); an unreadable file gives zeros (the reader names it).
struct LibsvmExtent {
  double samples = 0.0;
  double max_index = 0.0;
};

LibsvmExtent scan_libsvm_extent(const std::string& path) {
  LibsvmExtent e;
  std::ifstream in(path, std::ios::binary);
  for (std::string line; std::getline(in, line);) {
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    e.samples += 1;
    for (std::size_t colon = line.find(':'); colon != std::string::npos; colon = line.find(':', colon + 1)) {
      std::size_t start = colon;
      while (start > 0 && std::isdigit(static_cast<unsigned char>(line[start - 1]))) --start;
      if (start == colon) continue;
      e.max_index = std::max(e.max_index, std::strtod(line.substr(start, colon - start).c_str(), nullptr));
    }
  }
  return e;
}

}  // namespace

double MemoryPlan::total_bytes() const {
  double total = 0.0;
  for (const MemoryItem& i : items) total += i.bytes;
  return total;
}

const MemoryItem& MemoryPlan::largest() const {
  return *std::max_element(items.begin(), items.end(),
                           [](const MemoryItem& a, const MemoryItem& b) { return a.bytes < b.bytes; });
}

std::string MemoryPlan::breakdown(std::size_t max_items) const {
  std::vector<const MemoryItem*> sorted;
  for (const MemoryItem& i : items) sorted.push_back(&i);
  std::stable_sort(sorted.begin(), sorted.end(), [](const auto* a, const auto* b) { return a->bytes > b->bytes; });
  std::string out;
  for (std::size_t k = 0; k < sorted.size() && k < max_items; ++k)
    out += (k ? "; " : "") + sorted[k]->what + ": " + format_bytes(sorted[k]->bytes);
  return out;
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int u = 0;
  while (std::abs(bytes) >= 1024.0 && u < 6) {
    bytes /= 1024.0;
    ++u;
  }
  char buf[64];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%.0f B", bytes);
  else
    std::snprintf(buf, sizeof buf, bytes >= 100 ? "%.0f %s" : bytes >= 10 ? "%.1f %s" : "%.2f %s", bytes, units[u]);
  return buf;
}

std::optional<MemoryBudget> available_memory() {
  std::optional<MemoryBudget> best;
  auto consider = [&](double bytes, std::string source) {
    bytes = std::max(0.0, bytes);
    if (!best || bytes < best->bytes) best = MemoryBudget{bytes, std::move(source)};
  };
  if (const auto mem = meminfo_bytes("MemAvailable:")) consider(*mem, "MemAvailable in /proc/meminfo");
  const auto cg_max = file_number("/sys/fs/cgroup/memory.max");
  const auto cg_used = file_number("/sys/fs/cgroup/memory.current");
  if (cg_max && cg_used) consider(*cg_max - *cg_used, "the cgroup's memory.max less memory.current");
  if (const auto limit = memory_limit_from_env()) {
    const double resident = resident_bytes();
    consider(*limit - resident,
             "LGM_MEMORY_LIMIT = " + format_bytes(*limit) + " less this process's resident " + format_bytes(resident));
  }
  return best;
}

MemoryPlan plan_problem_memory(const RunConfig& cfg) {
  MemoryPlan plan;
  const std::string type = cfg.text("problem.type"), data = cfg.text("problem.data");
  const Index N = cfg.integer("problem.N"), d = cfg.integer("problem.d");
  const double Nd = static_cast<double>(N), dd = static_cast<double>(d);
  const std::vector<std::string> nd_keys{"problem.N", "problem.d"};
  const std::vector<std::string> nd_values{text_of(N), text_of(d)};
  const bool convex_optimum = cfg.number("problem.lambda") > 0.0;

  if (data == "cifar10") {
    const double limit_train = static_cast<double>(cfg.integer("problem.train_limit"));
    const double limit_test = static_cast<double>(cfg.integer("problem.test_limit"));
    const double n = (limit_train > 0 ? std::min(limit_train, 50000.0) : 50000.0) +
                     (limit_test > 0 ? std::min(limit_test, 10000.0) : 10000.0);
    // the images as floats, as doubles for the objective's upload, and once more on the device (floats)
    plan.items.push_back(item("CIFAR-10 images (3072 values each) as floats, doubles and device floats",
                              {"problem.train_limit", "problem.test_limit"},
                              {text_of(cfg.integer("problem.train_limit")), text_of(cfg.integer("problem.test_limit"))},
                              n * 3072.0 * (4 + kDouble + 4)));
    return plan;
  }
  if (data == "fortunes" || data == "text") return plan;  // a text file: a few MiB, known only once read
  if (data == "fashion_mnist") {
    const auto limited = [](Index limit, double all) {
      return limit > 0 ? std::min(static_cast<double>(limit), all) : all;
    };
    const double train = limited(cfg.integer("problem.train_limit"), kFashionMnistTrain);
    const double test = limited(cfg.integer("problem.test_limit"), kFashionMnistTest);
    const double f = kFashionMnistPixels + (cfg.flag("problem.bias") ? 1 : 0);
    // the decompressed IDX bytes, then the pixels as doubles (d × n)
    plan.items.push_back(item("Fashion-MNIST images as doubles (785 × n, 8 bytes) and their IDX bytes",
                              {"problem.train_limit", "problem.test_limit"},
                              {text_of(cfg.integer("problem.train_limit")), text_of(cfg.integer("problem.test_limit"))},
                              (train + test) * (kDouble * f + kFashionMnistPixels + 2 * kIndex)));
    return plan;
  }
  if (data == "libsvm") {
    // the reader allocates dense features (largest index [+ 1 for the bias]) × samples: scan for both first
    const double bias = cfg.flag("problem.bias") ? 1.0 : 0.0;
    const LibsvmExtent train = scan_libsvm_extent(cfg.text("problem.path"));
    const LibsvmExtent test =
        cfg.text("problem.test_path").empty() ? LibsvmExtent{} : scan_libsvm_extent(cfg.text("problem.test_path"));
    const double dim = std::max(train.max_index, test.max_index) + bias;
    std::vector<std::string> keys{"problem.path"}, values{cfg.text("problem.path")};
    if (!cfg.text("problem.test_path").empty()) {
      keys.push_back("problem.test_path");
      values.push_back(cfg.text("problem.test_path"));
    }
    plan.items.push_back(item(
        "dense LIBSVM features (largest feature index " + lgm::detail::to_text(static_cast<Index>(dim - bias)) + " × " +
            lgm::detail::to_text(static_cast<Index>(train.samples + test.samples)) + " samples, 8 bytes each)",
        keys, values, kDouble * dim * (train.samples + test.samples) + 3 * kIndex * train.samples));
    return plan;
  }

  if (type == "quadratic") {
    plan.items.push_back(item("noise vectors d × N (8 bytes each)", nd_keys, nd_values, kDouble * Nd * dd));
    // the Hessian, the random rotation, its QR factorization and the product's temporary
    plan.items.push_back(
        item("Hessian and its construction, 5 × d × d", {"problem.d"}, {text_of(d)}, 5 * kDouble * dd * dd));
  } else if (type == "least_squares") {
    const Index rank = cfg.integer("problem.rank") == 0 ? d : std::min(cfg.integer("problem.rank"), d);
    plan.items.push_back(item("features d × N and the generator's rank × N draws (8 bytes each)", nd_keys, nd_values,
                              kDouble * Nd * (dd + static_cast<double>(rank)) + 2 * kDouble * Nd));
    // rotation + QR; then the Gram matrix and its eigenvectors (L, μ and x* are exact)
    plan.items.push_back(
        item("rotation, Gram matrix and eigensystem, 4 × d × d", {"problem.d"}, {text_of(d)}, 4 * kDouble * dd * dd));
  } else if (type == "logistic" || type == "nonconvex_logistic") {
    plan.items.push_back(
        item("features d × N (8 bytes each), labels and norms", nd_keys, nd_values, kDouble * Nd * (dd + 3)));
    if (type == "logistic" && convex_optimum) {
      // Newton's method for x* (λ > 0): weighted features d × N, the Hessian and its Cholesky factor
      plan.items.push_back(item("Newton solve for x* (problem.lambda > 0): d × N weighted features", nd_keys, nd_values,
                                kDouble * Nd * dd));
      plan.items.push_back(
          item("Newton solve for x*: Hessian and its factor, 2 × d × d", {"problem.d", "problem.lambda"},
               {text_of(d), lgm::detail::to_text(cfg.number("problem.lambda"))}, 2 * kDouble * dd * dd));
    }
  } else {  // softmax, mlp on a Gaussian mixture
    plan.items.push_back(item("features d × N (8 bytes each) and labels", nd_keys, nd_values, kDouble * Nd * (dd + 3)));
  }
  return plan;
}

MemoryPlan plan_run_memory(const RunConfig& cfg, const Problem& problem) {
  MemoryPlan plan;
  const std::string type = cfg.text("problem.type");
  const Index M = cfg.integer("run.workers");
  const bool adaptive = cfg.text("batch.type") != "constant";
  const Index b_max = adaptive ? std::max(cfg.integer("batch.b"), cfg.integer("batch.b_max")) : cfg.integer("batch.b");
  const std::string b_key = adaptive ? "batch.b_max" : "batch.b";
  if (problem.network) {
    // the network objective states its own plan (parameters, optimizer state, arenas at the largest batch)
    // and the driver checks it before the first step (docs/nn.md §Memory plan); here only the records
    const double steps = static_cast<double>(budget_steps(cfg));
    plan.items.push_back(
        item("round records kept for the plots, at most one per step", {"run.max_steps", "run.max_samples"},
             {text_of(cfg.integer("run.max_steps")), text_of(cfg.integer("run.max_samples"))}, kRecordBytes * steps));
    (void)M;
    (void)b_max;
    return plan;
  }
  const auto [D, N] = with_objective(*problem.train, [](const auto& o) {
    return std::pair<double, double>(static_cast<double>(o.dim()), static_cast<double>(o.num_samples()));
  });
  const double N_test =
      problem.test ? with_objective(*problem.test, [](const auto& o) { return static_cast<double>(o.num_samples()); })
                   : 0.0;
  const double Md = static_cast<double>(M), bd = static_cast<double>(b_max);
  const double classes = static_cast<double>(cfg.integer("problem.classes"));
  const double hidden = static_cast<double>(cfg.integer("problem.hidden"));
  const std::string D_text = lgm::detail::to_text(static_cast<Index>(D));

  // the driver (lgm::LocalMethod::run_with): X, G, scratch d × (2M + 2), x_sync, mean
  plan.items.push_back(
      item("replicas, gradients and scratch of the driver, model size D = " + D_text + " × (4M + 4) × 8 bytes",
           {"run.workers"}, {text_of(M)}, kDouble * D * (4 * Md + 4)));
  const std::string opt = cfg.text("optimizer.type");
  const double fields = opt == "adamw" ? 2 : opt == "sgd" ? 0 : 1;
  if (fields > 0)
    plan.items.push_back(item("optimizer state, " + lgm::detail::to_text(fields) + " × D × M × 8 bytes",
                              {"optimizer.type", "run.workers"}, {opt, text_of(M)}, kDouble * fields * D * Md));
  if (cfg.text("outer.type") != "average")
    plan.items.push_back(
        item("outer optimizer state, 2 × D", {"outer.type"}, {cfg.text("outer.type")}, 2 * kDouble * D));
  // per-worker sample indices up to the largest batch, and the objective's per-sample norm cache (adaptive rules)
  const double per_sample = kIndex + (adaptive ? kIndex + kDouble : 0.0);
  plan.items.push_back(item(std::string("sample-index buffers") + (adaptive ? " and per-sample statistics" : "") +
                                " of every worker, M × " + b_key + " × " + lgm::detail::to_text(per_sample) + " bytes",
                            {"run.workers", b_key}, {text_of(M), text_of(b_max)}, per_sample * Md * bd));
  plan.items.push_back(item("workspaces of the workers' gradients", {"run.workers"}, {text_of(M)},
                            Md * workspace_bytes(type, D, classes, hidden)));
  // sampler and the driver's list 0 … N−1
  const std::string samp = cfg.text("sampler.type");
  const double sampler_bytes = samp == "shuffled"    ? Md * N * kIndex
                               : samp == "sharded"   ? 2 * N * kIndex
                               : samp == "dirichlet" ? 3 * N * kIndex
                                                     : 0.0;
  plan.items.push_back(item("sample lists of the driver and the sampler" +
                                std::string(samp == "shuffled" ? " (shuffled: a permutation per worker, M × N)" : ""),
                            {"sampler.type", "run.workers"}, {samp, text_of(M)}, N * kIndex + sampler_bytes));
  // the evaluation of F at the averaged model: 64 chunk gradients and workspaces, on the training and test sets
  const double eval_ws = kEvaluationChunks * workspace_bytes(type, D, classes, hidden);
  plan.items.push_back(item("evaluation of F and ∇F, 64 chunks × D", {"run.eval_points"},
                            {text_of(cfg.integer("run.eval_points"))},
                            kDouble * kEvaluationChunks * D + 2 * eval_ws + (N + N_test) * kIndex + 2 * kDouble * D));
  // one record per round, kept for the plots
  const double steps = static_cast<double>(budget_steps(cfg));
  const std::string sync = cfg.text("sync.type");
  const double H = sync == "every_step" || sync == "post_local" ? 1.0 : static_cast<double>(cfg.integer("sync.H"));
  plan.items.push_back(item("round records kept for the plots, one per round", {"run.max_steps", "run.max_samples"},
                            {text_of(cfg.integer("run.max_steps")), text_of(cfg.integer("run.max_samples"))},
                            kRecordBytes * std::ceil(steps / std::max(1.0, H))));
  return plan;
}

void require_memory(const MemoryPlan& plan, std::string_view phase, std::string_view where,
                    const std::optional<MemoryBudget>& budget) {
  if (!budget || plan.items.empty()) return;
  const double needed = plan.total_bytes();
  if (needed <= budget->bytes) return;
  const MemoryItem& big = plan.largest();
  std::string keys, values;
  for (std::size_t i = 0; i < big.keys.size(); ++i) {
    keys += (i ? ", " : "") + big.keys[i];
    values += (i ? ", " : "") + (i < big.values.size() ? big.values[i] : std::string("?"));
  }
  throw ConfigError(keys + std::string(where), values,
                    "sizes that fit in memory: " + std::string(phase) + " needs about " + format_bytes(needed) + " (" +
                        plan.breakdown() + ") but " + format_bytes(budget->bytes) + " are available (" +
                        budget->source + "; LGM_MEMORY_LIMIT sets a lower limit)");
}

void require_memory_for(std::string_view what, double bytes, const std::vector<std::string>& keys,
                        const std::vector<std::string>& values) {
  MemoryPlan plan;
  plan.items.push_back(MemoryItem{std::string(what), keys, values, bytes});
  require_memory(plan, what, "", available_memory());
}

}  // namespace lgm::sim
