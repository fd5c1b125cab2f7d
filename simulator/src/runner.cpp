#include "runner.hpp"

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdint>
#include <exception>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <sstream>
#include <tuple>

#include "build.hpp"
#include "checkpoint_file.hpp"
#include "memory_plan.hpp"
#include "network.hpp"
#include "progress.hpp"
#include "run_variant.hpp"

#if defined(LGM_HAVE_MPI) && LGM_HAVE_MPI
#include "lgm/comm/mpi.hpp"
#define LGM_SIM_MPI 1
#else
#define LGM_SIM_MPI 0
#endif

namespace lgm::sim {

bool mpi_engine_available() noexcept { return LGM_SIM_MPI != 0; }

namespace {

/// This process's rank and the number of ranks: (0, 1) unless MPI is initialized and not yet finalized.
std::pair<int, int> world_rank_and_size() {
#if LGM_SIM_MPI
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) {
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    return {rank, size};
  }
#endif
  return {0, 1};
}

/// MPI engine: true when `mine` holds on any rank (identity in one process).
bool on_any_rank(bool mine, int ranks) {
#if LGM_SIM_MPI
  if (ranks > 1) {
    int v = mine ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return v != 0;
  }
#else
  (void)ranks;
#endif
  return mine;
}

int exit_code_of(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const ConfigError&) {
    return kExitBadInput;
  } catch (const DataError&) {
    return kExitBadInput;
  } catch (const PeerRankFailed& e) {
    return e.code;
  } catch (...) {
    return kExitRunFailed;
  }
}

/// MPI engine checks before loading anything: M/P workers per rank, hierarchical groups inside a rank.
void check_mpi_layout(const ExperimentConfig& experiment, int ranks) {
  for (const RunConfig& cfg : experiment.runs) {
    const Index M = cfg.integer("run.workers");
    const std::string where = " (variant " + cfg.name() + ")";
    if (M % ranks != 0)
      throw ConfigError("run.workers" + where, lgm::detail::to_text(M),
                        "a multiple of the number of MPI ranks P = " + lgm::detail::to_text(ranks) +
                            " (the MPI engine puts M/P workers on each rank)");
    const Index group = cfg.integer("sync.group_size");
    if (cfg.text("sync.type") == "hierarchical" && (M / ranks) % group != 0)
      throw ConfigError("sync.group_size" + where, lgm::detail::to_text(group),
                        "a divisor of run.workers / P = " + lgm::detail::to_text(M / ranks) +
                            " under the MPI engine (a group must not span ranks)");
  }
}

struct PreparedRun {
  std::shared_ptr<const Problem> problem;
  std::unique_ptr<ConfiguredMethod> method;
  bool measured = false;  ///< compute.seconds_per_sample was measured on this machine
};

/// A configuration's variant, as error messages name it.
std::string variant_where(const RunConfig& cfg) { return " (variant \"" + cfg.name() + "\")"; }

/// Builds a problem; an allocation failure becomes an error that says what was being loaded.
std::shared_ptr<const Problem> load_problem(const RunConfig& cfg, const MemoryPlan& plan) {
  try {
    return build_problem(cfg);
  } catch (const std::bad_alloc&) {
    throw std::runtime_error("out of memory (std::bad_alloc) while loading the problem" + variant_where(cfg) +
                             "; it was estimated at " + format_bytes(plan.total_bytes()) +
                             (plan.items.empty() ? std::string(" (the size of a LIBSVM file is known only once read)")
                                                 : " (" + plan.breakdown() + ")"));
  }
}

/// Loads each distinct problem once, resolves measured compute costs, builds and validates every method.
/// Memory: each problem's data is estimated before it is loaded, and the largest run's driver, sampler and
/// evaluation once every problem is loaded (the runs follow one another).
std::vector<PreparedRun> prepare(ExperimentConfig& experiment, std::ostream* log) {
  std::map<std::string, std::shared_ptr<const Problem>> problems;
  std::map<std::string, double> measured;
  std::vector<PreparedRun> prepared;
  for (RunConfig& cfg : experiment.runs) {
    const std::string key = problem_key(cfg);
    auto& problem = problems[key];
    if (!problem) {
      const MemoryPlan plan = plan_problem_memory(cfg);
      require_memory(plan, "loading the problem", variant_where(cfg), available_memory());
      if (log) *log << "lgm-sim: loading " << cfg.text("problem.type") << " on " << cfg.text("problem.data") << "\n";
      problem = load_problem(cfg, plan);
    }
    const bool measure = cfg.flag("compute.measure");
    if (measure) {
      // measured once per problem; the value goes into the resolved config, so a rerun of config.toml
      // charges exactly the same simulated time (bitwise reproducible metrics)
      auto it = measured.find(key);
      if (it == measured.end()) it = measured.emplace(key, measure_seconds_per_sample(*problem)).first;
      std::ostringstream v;
      v.precision(17);
      v << it->second;
      cfg.set("compute.seconds_per_sample", v.str());
      cfg.set("compute.measure", "false");
    }
    prepared.push_back({problem, std::make_unique<ConfiguredMethod>(build_method(cfg, *problem)), measure});
  }
  const auto budget = available_memory();
  for (size_t i = 0; i < prepared.size(); ++i)
    require_memory(plan_run_memory(experiment.runs[i], *prepared[i].problem), "the run",
                   variant_where(experiment.runs[i]), budget);
  return prepared;
}

/// Refuses an output directory that is a file, or that holds anything unless `overwrite`.
void check_output_directory(const std::filesystem::path& dir, bool overwrite) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const auto st = fs::status(dir, ec);
  if (!fs::exists(st)) return;
  if (!fs::is_directory(st)) throw ConfigError("--out", "\"" + dir.string() + "\"", "a directory (this is a file)");
  if (overwrite) return;
  std::vector<std::string> entries;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    entries.push_back(it->path().filename().string());
  if (ec) throw ConfigError("--out", "\"" + dir.string() + "\"", "a readable directory (" + ec.message() + ")");
  if (entries.empty()) return;
  std::sort(entries.begin(), entries.end());
  std::string shown;
  for (size_t i = 0; i < entries.size() && i < 5; ++i) shown += (i ? ", " : "") + entries[i];
  if (entries.size() > 5) shown += ", ...";
  throw ConfigError("--out", "\"" + dir.string() + "\"",
                    "a new or empty directory; this one holds " + std::to_string(entries.size()) + " entries (" +
                        shown +
                        "). Pass --overwrite to replace the earlier run (lgm-sim's own files there are "
                        "removed first), or choose another --out");
}

/// Removes what lgm-sim wrote in `dir` before (own_output_files), deepest first; other files stay.
void clear_own_outputs(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files = own_output_files(dir);
  std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) {
    return std::distance(a.begin(), a.end()) > std::distance(b.begin(), b.end());
  });
  for (const fs::path& rel : files) {
    std::error_code ec;
    const fs::path p = dir / rel;
    if (fs::is_directory(p, ec)) {
      if (fs::is_empty(p, ec)) fs::remove(p, ec);  // plots/, plots/data/ only when nothing else is in them
    } else {
      fs::remove(p, ec);
    }
    if (ec) throw OutputError("--overwrite: cannot remove '" + p.string() + "' of the earlier run: " + ec.message());
  }
}

/// MPI engine: every rank uses rank 0's measured compute cost (so ranks charge the same simulated time and
/// config.toml reproduces the run), and every rank must run the same resolved configuration.
void agree_on_configuration([[maybe_unused]] ExperimentConfig& experiment,
                            [[maybe_unused]] std::vector<PreparedRun>& prepared, [[maybe_unused]] int rank, int ranks) {
  if (ranks <= 1) return;
#if LGM_SIM_MPI
  std::vector<double> costs;
  for (size_t i = 0; i < prepared.size(); ++i)
    if (prepared[i].measured) costs.push_back(experiment.runs[i].number("compute.seconds_per_sample"));
  if (!costs.empty()) MPI_Bcast(costs.data(), static_cast<int>(costs.size()), MPI_DOUBLE, 0, MPI_COMM_WORLD);
  run_on_all_ranks([&] {
    size_t next = 0;
    for (size_t i = 0; i < prepared.size(); ++i) {
      if (!prepared[i].measured) continue;
      std::ostringstream v;
      v.precision(17);
      v << costs[next++];
      RunConfig& cfg = experiment.runs[i];
      cfg.set("compute.seconds_per_sample", v.str());
      prepared[i].method = std::make_unique<ConfiguredMethod>(build_method(cfg, *prepared[i].problem));
    }
  });
  // FNV-1a of the resolved configuration; min and max over ranks in one MPI_MAX call (max of ~h = ~min)
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : experiment_to_toml(experiment)) h = (h ^ c) * 1099511628211ull;
  unsigned long long both[2] = {h, ~h};
  MPI_Allreduce(MPI_IN_PLACE, both, 2, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
  const bool same = both[0] == h && ~both[1] == h;
  run_on_all_ranks([&] {
    if (!same)
      throw ConfigError("configuration", "different on rank " + lgm::detail::to_text(rank),
                        "the same file, --set options and data on every MPI rank");
  });
#endif
}

VariantSummary run_one(const RunConfig& cfg, PreparedRun& run, RunEnv& env) {
  if (run.problem->network) return run_network_variant(*run.problem, cfg, *run.method, env);
  return with_objective(*run.problem->train, [&](const auto& train) {
    using Obj = std::decay_t<decltype(train)>;
    const Obj* test = run.problem->test ? std::get_if<Obj>(&*run.problem->test) : nullptr;
    return run_variant<Obj>(train, test, *run.problem, cfg, *run.method, env);
  });
}

}  // namespace

void check_experiment(const ExperimentConfig& experiment) {
  const std::string& name = experiment.name;
  const bool control = std::any_of(name.begin(), name.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos || control)
    throw ConfigError("name", "\"" + (control ? std::string("(with control characters)") : name) + "\"",
                      "a directory name: not empty, no '/', not \".\" or \"..\", no control characters (the default "
                      "output directory is runs/<name>, and it must stay inside runs/)");
  std::map<std::string, size_t> seen;
  for (size_t i = 0; i < experiment.runs.size(); ++i) {
    const std::string& run = experiment.runs[i].name();
    if (auto [it, fresh] = seen.emplace(run, i); !fresh)
      throw ConfigError("run name", "\"" + run + "\"",
                        "a name of one run only: runs " + std::to_string(it->second) + " and " + std::to_string(i) +
                            " have it (a --grid list with a repeated value, e.g. sync.H=2,2, makes such runs; list "
                            "each value once)");
  }
}

std::vector<std::filesystem::path> own_output_files(const std::filesystem::path& out_dir) {
  namespace fs = std::filesystem;
  std::vector<fs::path> found;
  std::error_code ec;
  auto add_if_there = [&](const fs::path& rel) {
    if (fs::exists(fs::symlink_status(out_dir / rel, ec))) found.push_back(rel);
  };
  for (const char* f : {"config.toml", "metrics.jsonl", "summary.json", "summary.md", "checkpoint.bin"}) {
    add_if_there(f);
    add_if_there(std::string(f) + ".tmp");
  }
  auto ends_with = [](const std::string& s, std::string_view tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
  };
  auto is_plot_png = [&](const std::string& n) {
    return n == "batch_size_vs_steps.png" || n == "H_vs_steps.png" || ends_with(n, "_vs_rounds.png") ||
           ends_with(n, "_vs_samples.png") || ends_with(n, "_vs_sim_time.png");
  };
  // data files are NN_<run>.<what>.dat (report.cpp)
  auto is_plot_data = [&](const std::string& n) {
    return n.size() > 7 && std::isdigit(static_cast<unsigned char>(n[0])) &&
           std::isdigit(static_cast<unsigned char>(n[1])) && n[2] == '_' &&
           (ends_with(n, ".dat") || ends_with(n, ".dat.tmp"));
  };
  // model_<k>_<run>.npy (run.save_model)
  for (fs::directory_iterator it(out_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string n = it->path().filename().string();
    // model_<digits>_…: a user's own model_final.npy stays
    const std::size_t digits = n.rfind("model_", 0) == 0 ? n.find_first_not_of("0123456789", 6) : std::string::npos;
    if (digits != std::string::npos && digits > 6 && n[digits] == '_' &&
        (ends_with(n, ".npy") || ends_with(n, ".npy.tmp")))
      found.push_back(n);
  }
  const fs::path plots = "plots";
  if (!fs::is_directory(out_dir / plots, ec)) return found;
  for (fs::directory_iterator it(out_dir / plots, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string n = it->path().filename().string();
    if (n == "plots.gp" || n == "plots.gp.tmp" || n == "gnuplot.log" || is_plot_png(n)) found.push_back(plots / n);
  }
  if (fs::is_directory(out_dir / plots / "data", ec)) {
    for (fs::directory_iterator it(out_dir / plots / "data", ec), end; !ec && it != end; it.increment(ec)) {
      const std::string n = it->path().filename().string();
      if (is_plot_data(n)) found.push_back(plots / "data" / n);
    }
    found.push_back(plots / "data");
  }
  found.push_back(plots);
  return found;
}

std::string experiment_to_toml(const ExperimentConfig& experiment) {
  std::ostringstream os;
  os << "# lgm-sim resolved configuration: every key of every run, seeds included.\n"
     << "# `lgm-sim run config.toml` reproduces metrics.jsonl bitwise (all fields but wall_time_s).\n";
  RunConfig named;
  named.set_name(experiment.name);
  // the run's own to_toml writes its name as the first top-level key; reuse it for the experiment's name
  {
    const std::string doc = named.to_toml();
    std::istringstream in(doc);
    std::string line;
    while (std::getline(in, line) && (line.empty() || line.front() != '['))
      if (line.rfind("name", 0) == 0) os << line << "\n";
  }
  for (const RunConfig& run : experiment.runs) {
    os << "\n[[variant]]\n";
    std::istringstream in(run.to_toml());
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty() || line.front() == '#') continue;
      if (line.front() == '[')
        os << "[variant." << line.substr(1) << "\n";  // [optimizer] → [variant.optimizer]
      else if (line.rfind("description", 0) != 0)
        os << line << "\n";
    }
  }
  return os.str();
}

void run_on_all_ranks(const std::function<void()>& phase) {
  const auto [rank, ranks] = world_rank_and_size();
  if (ranks <= 1) {
    phase();
    return;
  }
#if LGM_SIM_MPI
  std::exception_ptr error;
  try {
    phase();
  } catch (...) {
    error = std::current_exception();
  }
  // the lowest failing rank and its exit status, as rank · 256 + status (INT_MAX: none failed)
  int key = error ? rank * 256 + exit_code_of(error) : INT_MAX;
  MPI_Allreduce(MPI_IN_PLACE, &key, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (key == INT_MAX) return;
  if (key / 256 == rank) std::rethrow_exception(error);
  throw PeerRankFailed(key / 256, key % 256);
#endif
}

void validate_experiment(const ExperimentConfig& experiment) {
  check_experiment(experiment);
  ExperimentConfig copy = experiment;
  for (RunConfig& cfg : copy.runs) cfg.set("compute.measure", "false");  // validate does not time anything
  (void)prepare(copy, nullptr);
}

ExperimentOutcome run_experiment(ExperimentConfig experiment, const RunnerOptions& options) {
  std::ostream& log = options.log ? *options.log : std::cerr;
  std::ostream& table = options.table ? *options.table : std::cout;
  const bool use_mpi = options.engine == Engine::mpi;
  if (use_mpi && !mpi_engine_available())
    throw ConfigError("--engine", "mpi",
                      "in_process (this lgm-sim was built without MPI; configure with -DLGM_WITH_MPI=ON where Open "
                      "MPI is installed: libopenmpi-dev, openmpi-bin)");
  // under MPI every rank loads the data and runs its M/P workers; rank 0 alone prints and writes the outputs
  int rank = 0, ranks = 1;  // plain ints: the lambdas below capture them
  if (use_mpi) std::tie(rank, ranks) = world_rank_and_size();
  const bool root = rank == 0;
  const SimCheckpoint* resume = options.resume;
  const bool checkpoints = std::any_of(experiment.runs.begin(), experiment.runs.end(), [](const RunConfig& c) {
    return c.integer("checkpoint.every_steps") > 0 || c.number("checkpoint.every_seconds") > 0.0;
  });
  if (use_mpi && (checkpoints || resume))
    run_on_all_ranks([] {  // one message, from rank 0
      throw ConfigError("checkpoint.every_steps or checkpoint.every_seconds", "> 0",
                        "0 under --engine mpi (checkpoints are of in-process runs)");
    });
  auto matches = [&](std::uint64_t hash) {  // the checkpoint's configuration is this one
    return resume->config_hash == hash;
  };
  if (resume && (resume->variant < 0 || resume->variant >= static_cast<Index>(experiment.runs.size()) ||
                 static_cast<Index>(resume->completed.size()) != resume->variant))
    throw DataError("checkpoint '" + (options.out_dir / "checkpoint.bin").string() +
                    "' belongs to another configuration than " + (options.out_dir / "config.toml").string() +
                    " (edited since the run started?)");
  std::vector<PreparedRun> prepared;
  run_on_all_ranks([&] {
    check_experiment(experiment);
    if (root && !resume) check_output_directory(options.out_dir, options.overwrite);
    if (use_mpi) check_mpi_layout(experiment, ranks);
    prepared = prepare(experiment, options.quiet || !root ? nullptr : &log);
  });
  agree_on_configuration(experiment, prepared, rank, ranks);
  // the resolved configuration (measured costs included), as config.toml holds it
  const std::uint64_t config_hash = text_hash(experiment_to_toml(experiment));
  if (resume && !matches(config_hash))
    throw DataError("checkpoint '" + (options.out_dir / "checkpoint.bin").string() +
                    "' belongs to another configuration than " + (options.out_dir / "config.toml").string() +
                    " (edited since the run started?)");

  std::optional<MetricsWriter> metrics_file;
  run_on_all_ranks([&] {
    if (!root) return;
    // only now that every run is known to start: the earlier run's files go (not on a bad configuration)
    if (resume) {
      // the lines after the checkpoint are written again by the resumed run, bitwise the same
      std::error_code ec;
      const std::uintmax_t size = std::filesystem::file_size(options.out_dir / "metrics.jsonl", ec);
      if (ec || size < static_cast<std::uintmax_t>(resume->metrics_bytes))
        throw DataError("metrics.jsonl in " + options.out_dir.string() + " is shorter than the " +
                        std::to_string(resume->metrics_bytes) + " bytes its checkpoint counts (" +
                        (ec ? ec.message() : std::to_string(size) + " bytes") + "): the run cannot be resumed");
      std::filesystem::resize_file(options.out_dir / "metrics.jsonl",
                                   static_cast<std::uintmax_t>(resume->metrics_bytes), ec);
      if (ec)
        throw OutputError("cannot cut metrics.jsonl back to the checkpoint's " + std::to_string(resume->metrics_bytes) +
                          " bytes: " + ec.message());
      metrics_file.emplace(options.out_dir / "metrics.jsonl", true);
      return;
    }
    if (options.overwrite) clear_own_outputs(options.out_dir);
    write_file_atomically(options.out_dir / "config.toml", experiment_to_toml(experiment), "configuration");
    metrics_file.emplace(options.out_dir / "metrics.jsonl");
  });
  MetricsWriter* metrics = metrics_file ? &*metrics_file : nullptr;
  Progress progress(log, options.quiet || !root, detect_terminal(stderr));

  ExperimentOutcome outcome;
  ExperimentSummary& summary = outcome.summary;
  summary.name = experiment.name;
  summary.problem = prepared.empty() ? "" : prepared.front().problem->description;
  summary.workers = experiment.runs.empty() ? 0 : experiment.runs.front().integer("run.workers");
  std::vector<std::vector<RoundRecord>> records;
  bool output_failed = false;

  const Index count = static_cast<Index>(experiment.runs.size());
  const Index first = resume ? resume->variant : 0;
  std::vector<RoundRecord> written;  // a resumed experiment's records so far, for the plots
  if (resume) written = read_metrics(options.out_dir / "metrics.jsonl");
  auto written_records = [&](const std::string& run) {
    std::vector<RoundRecord> out;
    for (const RoundRecord& r : written)
      if (r.run == run) out.push_back(r);
    return out;
  };
  for (Index i = 0; i < first; ++i) {  // finished before the checkpoint
    summary.variants.push_back(resume->completed[static_cast<size_t>(i)]);
    records.push_back(written_records(summary.variants.back().name));
  }
  std::optional<ResumePoint> resume_point;
  if (resume) resume_point = ResumePoint{resume->run, resume->observer};
  for (Index i = first; i < count; ++i) {
    if (on_any_rank(options.interrupt && options.interrupt->load(), ranks)) {
      summary.interrupted = true;
      break;
    }
    const RunConfig& cfg = experiment.runs[static_cast<size_t>(i)];
    records.push_back(resume && i == first ? written_records(cfg.name()) : std::vector<RoundRecord>{});
    RunEnv env{metrics, &progress, options.interrupt, &records.back(), root ? options.on_round : nullptr};
    env.interrupt_signal = options.interrupt_signal;
    CheckpointHook hook{cfg.integer("checkpoint.every_steps"), cfg.number("checkpoint.every_seconds"), {}};
    hook.save = [&, i](const RunSnapshot& snapshot, const std::string& observer) {
      // the lines the checkpoint counts are on disk before it is (a power loss cannot leave it ahead of them)
      if (metrics) metrics->sync();
      write_checkpoint(options.out_dir / "checkpoint.bin",
                       SimCheckpoint{config_hash, i, metrics ? metrics->bytes() : 0, summary.variants, observer, {}},
                       snapshot);
    };
    if (hook.every_steps > 0 || hook.every_seconds > 0.0) env.checkpoint = &hook;
    if (resume && i == first) env.resume = &*resume_point;
    if (root && cfg.flag("run.save_model")) env.model_file = options.out_dir / model_file_name(i, cfg.name());
#if LGM_SIM_MPI
    std::optional<MpiCommunicator> comm;
    if (use_mpi) {
      ConfiguredMethod& method = *prepared[static_cast<size_t>(i)].method;
      comm.emplace(method.options().workers, options.mpi_ordered ? MpiReduction::ordered : MpiReduction::allreduce,
                   MPI_COMM_WORLD, method.options().threads);
      env.mpi = &*comm;
      env.evaluate = root;
    }
#endif
    progress.begin_run(cfg.name(), i, count, cfg.integer("run.max_samples"), cfg.integer("run.max_steps"));
    VariantSummary s;
    try {
      s = run_one(cfg, prepared[static_cast<size_t>(i)], env);
    } catch (const std::exception& e) {
#if LGM_SIM_MPI
      // the other ranks wait in a collective this rank will not join: end them all, with this rank's message
      if (ranks > 1) abort_all_ranks("run '" + cfg.name() + "' failed: " + e.what(), kExitRunFailed, "lgm-sim");
#endif
      // one failing run does not take the others down; its metrics lines so far stay in the file
      s.name = cfg.name();
      s.status = RunStatus::failed;
      s.message = e.what();
    }
    progress.end_run(s);
    if (root && (s.status == RunStatus::diverged || s.status == RunStatus::failed))
      progress.message(
          "lgm-sim: run '" + s.name + "' " +
          (s.message.rfind(to_string(s.status), 0) == 0 ? s.message : to_string(s.status) + (": " + s.message)));
    summary.variants.push_back(std::move(s));
    if (env.output_failed) {
      // the outputs cannot be written (a full disk): the runs left would lose their metrics too
      output_failed = true;
      outcome.output_errors.push_back(summary.variants.back().message);
      if (i + 1 < count)
        progress.message("lgm-sim: the outputs cannot be written; the " + std::to_string(count - i - 1) +
                         " run(s) left are not started");
      break;
    }
    if (summary.variants.back().status == RunStatus::interrupted) {
      summary.interrupted = true;
      break;
    }
  }

  if (root) {
    // each output on its own: one that cannot be written (a full disk) does not keep the others, or the table
    // on the terminal, from the user
    auto attempt = [&](const std::function<void()>& write) {
      try {
        write();
      } catch (const std::exception& e) {
        output_failed = true;
        outcome.output_errors.push_back(e.what());
        progress.message(std::string("lgm-sim: ") + e.what());
      }
    };
    attempt([&] { write_summary_json(options.out_dir / "summary.json", summary); });
    attempt([&] { write_summary_markdown(options.out_dir / "summary.md", summary); });
    table << "\n" << summary_table_markdown(summary) << "\n" << std::flush;
    if (options.plots && !output_failed) {
      outcome.plots = make_plots(options.out_dir, records, options.gnuplot);
      progress.message("lgm-sim: " + outcome.plots.message);
    }
    progress.message("lgm-sim: outputs in " + options.out_dir.string());
  }

  // a finished experiment needs no checkpoint (an interrupted one keeps it: `lgm-sim resume` continues it),
  // nor does one whose outputs failed keep it: the runs not started can be resumed once there is room again
  if (root && !summary.interrupted && !output_failed) {
    std::error_code ec;
    std::filesystem::remove(options.out_dir / "checkpoint.bin", ec);
    std::filesystem::remove(options.out_dir / "checkpoint.bin.tmp", ec);
  }
  if (summary.interrupted) {
    const int signal = options.interrupt_signal ? options.interrupt_signal->load() : 0;
    outcome.exit_code = signal > 0 ? 128 + signal : kExitInterrupted;
  } else {
    for (const VariantSummary& v : summary.variants)
      if (v.status != RunStatus::completed) outcome.exit_code = kExitRunFailed;
    if (output_failed) outcome.exit_code = kExitRunFailed;
  }
  return outcome;
}

}  // namespace lgm::sim
