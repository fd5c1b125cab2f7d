// Tests of the lgm-sim configuration layer: schema, parsing, precedence, every error path, round trips, grids.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "config.hpp"

using lgm::ConfigError;
using lgm::sim::ExperimentConfig;
using lgm::sim::RunConfig;

namespace {

/// The message of the ConfigError that `f` throws ("" when it throws none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

ExperimentConfig parse(const std::string& text, const std::vector<std::string>& overrides = {}) {
  return lgm::sim::parse_experiment(text, "demo.toml", overrides);
}

std::string parse_error(const std::string& text, const std::vector<std::string>& overrides = {}) {
  return error_of([&] { parse(text, overrides); });
}

// Every example needs a budget: run.max_samples = run.max_steps = 0 is an error.
const std::string budget = "[run]\nmax_steps = 100\n";

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string g17(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

std::filesystem::path unique_temp(const std::string& stem) {
  static std::atomic<int> counter{0};
  const auto tick = std::chrono::steady_clock::now().time_since_epoch().count();
  return std::filesystem::temp_directory_path() /
         ("lgm_test_config_" + stem + "_" + std::to_string(tick) + "_" + std::to_string(counter++) + ".toml");
}

}  // namespace

TEST_CASE("config: defaults") {
  const auto exp = parse(budget);
  REQUIRE(exp.runs.size() == 1);
  const RunConfig& rc = exp.runs[0];
  CHECK(exp.name == "demo");  // the file stem
  CHECK(rc.name() == "demo");
  CHECK(rc.integer("run.seed") == 1);
  CHECK(rc.integer("run.workers") == 8);
  CHECK(rc.integer("run.max_steps") == 100);
  CHECK(rc.integer("run.eval_points") == 40);
  CHECK_FALSE(rc.flag("run.eval_every_round"));
  CHECK(rc.text("problem.type") == "logistic");
  CHECK(rc.text("problem.path") == "");
  CHECK(rc.number("problem.lambda") == 1e-4);
  CHECK(rc.integer("problem.N") == 10000);
  CHECK(rc.text("optimizer.type") == "sgd");
  CHECK(rc.number("optimizer.lr") == 0.1);
  CHECK(rc.number("optimizer.beta2") == 0.999);
  CHECK(rc.number("optimizer.eps") == 1e-8);
  CHECK(rc.integer("sync.H") == 8);
  CHECK(rc.integer("batch.b_max") == 4096);
  CHECK(rc.text("batch.apply_at") == "next_round");
  CHECK(rc.number("network.latency_s") == 25e-6);
  CHECK(rc.number("compute.seconds_per_sample") == 1e-6);
  CHECK(rc.numbers("compute.slowdown").empty());

  // Every schema key has a value of its type in a default RunConfig.
  const RunConfig def;
  for (const auto& spec : lgm::sim::schema()) {
    switch (spec.type) {
      case lgm::sim::KeyType::integer:
        CHECK_NOTHROW(def.integer(spec.key));
        break;
      case lgm::sim::KeyType::number:
        CHECK_NOTHROW(def.number(spec.key));
        break;
      case lgm::sim::KeyType::text:
        CHECK_NOTHROW(def.text(spec.key));
        break;
      case lgm::sim::KeyType::boolean:
        CHECK_NOTHROW(def.flag(spec.key));
        break;
      case lgm::sim::KeyType::numbers:
        CHECK_NOTHROW(def.numbers(spec.key));
        break;
    }
  }
  CHECK(lgm::sim::find_key("optimizer.lr")->accepted == "a number > 0");
  CHECK(lgm::sim::find_key("run.workers")->accepted == "an integer in [1, 4096]");
  CHECK(lgm::sim::find_key("sync.H")->accepted == "an integer in [1, 10^9]");
  CHECK(lgm::sim::find_key("batch.b")->accepted == "an integer in [1, 2^30]");
  CHECK(lgm::sim::find_key("optimizer.momentum")->accepted == "a number in [0, 1)");
  CHECK(lgm::sim::find_key("schedule.decay_factor")->accepted == "a number in (0, 1]");
  CHECK(lgm::sim::find_key("nope.key") == nullptr);
}

TEST_CASE("config: typed access with a wrong key or type is a logic error") {
  const RunConfig rc;
  CHECK_THROWS_AS(rc.number("optimizer.nope"), std::logic_error);
  CHECK_THROWS_AS(rc.number("run.workers"), std::logic_error);
  CHECK_THROWS_AS(rc.integer("optimizer.lr"), std::logic_error);
  CHECK_THROWS_AS(rc.text("run.seed"), std::logic_error);
  CHECK_THROWS_AS(rc.flag("optimizer.type"), std::logic_error);
  CHECK_THROWS_AS(rc.numbers("optimizer.lr"), std::logic_error);
}

TEST_CASE("config: base, variant and override precedence") {
  const std::string text = R"(
name = "prec"
description = "precedence test"
[run]
max_steps = 100
workers = 4
[optimizer]
lr = 0.05
momentum = 0.5
[sync]
H = 4

[[variant]]
name = "Local SGD, H=16"
sync.type = "constant"
sync.H = 16
batch.type = "norm"

[[variant]]
name = "adam"
optimizer.type = "adamw"
optimizer.lr = 0.01
[variant.run]
seed = 7
)";
  const auto exp = parse(text, {"optimizer.momentum=0.25", "optimizer.type=nesterov", "run.max_samples=1e5"});
  CHECK(exp.name == "prec");
  CHECK(exp.description == "precedence test");
  REQUIRE(exp.runs.size() == 2);
  const RunConfig& a = exp.runs[0];
  const RunConfig& b = exp.runs[1];
  CHECK(a.name() == "Local SGD, H=16");
  CHECK(b.name() == "adam");
  // base over defaults
  CHECK(a.integer("run.workers") == 4);
  CHECK(a.number("optimizer.lr") == 0.05);
  CHECK(a.integer("run.seed") == 1);
  // variant over base
  CHECK(a.integer("sync.H") == 16);
  CHECK(a.text("batch.type") == "norm");
  CHECK(b.integer("sync.H") == 4);
  CHECK(b.number("optimizer.lr") == 0.01);
  CHECK(b.integer("run.seed") == 7);
  // overrides over variants, in every run; a float with an integral value is fine for an integer key
  CHECK(a.number("optimizer.momentum") == 0.25);
  CHECK(b.number("optimizer.momentum") == 0.25);
  CHECK(a.text("optimizer.type") == "nesterov");
  CHECK(b.text("optimizer.type") == "nesterov");
  CHECK(b.integer("run.max_samples") == 100000);

  // Bare and quoted strings are the same override; ints are fine for number keys; arrays.
  const auto quoted =
      parse(budget, {"optimizer.type=\"adamw\"", "optimizer.lr = 1", "run.workers=2", "compute.slowdown=[1, 2.5]",
                     "problem.path=/data/x y", "run.eval_every_round=true"});
  const RunConfig& q = quoted.runs[0];
  CHECK(q.text("optimizer.type") == "adamw");
  CHECK(q.number("optimizer.lr") == 1.0);
  CHECK(q.numbers("compute.slowdown") == std::vector<double>{1.0, 2.5});
  CHECK(q.text("problem.path") == "/data/x y");
  CHECK(q.flag("run.eval_every_round"));
  CHECK(parse(budget, {"optimizer.type=adamw"}).runs[0] == parse(budget, {"optimizer.type=\"adamw\""}).runs[0]);
  CHECK_FALSE(parse(budget, {"optimizer.type=adamw"}).runs[0] == q);
  CHECK(parse(budget, {"problem.path=2024"}).runs[0].text("problem.path") == "2024");
  CHECK(parse("[run]\nmax_steps = 1\n[problem]\nN = 1e5\n").runs[0].integer("problem.N") == 100000);
}

TEST_CASE("config: unknown keys and sections list the valid ones") {
  std::string msg = parse_error(budget + "[optimizer]\nlrr = 0.1\n");
  CHECK(contains(msg,
                 "invalid optimizer.lrr = 0.1 (accepted: a key of [optimizer]: type, lr, momentum, weight_decay, "
                 "beta1, beta2, eps, average_state)"));
  msg = parse_error(budget + "[optimiser]\nlr = 0.1\n");
  CHECK(contains(msg, "invalid optimiser = { lr = 0.1 }"));
  CHECK(contains(msg, "run, problem, optimizer, schedule, sync, batch, sampler, outer, network, compute"));
  msg = parse_error(budget, {"optimizer.lrr=3"});
  CHECK(contains(msg, "invalid optimizer.lrr = 3 (accepted: a key of [optimizer]: type, lr,"));
  msg = parse_error(budget, {"optimiser.lr=3"});
  CHECK(contains(msg, "invalid optimiser.lr = 3 (accepted: a key of a section: run, problem,"));
  msg = parse_error(budget + "[[variant]]\nname = \"v\"\nsync.HH = 3\n");
  CHECK(contains(msg, "invalid sync.HH (variant \"v\") = 3 (accepted: a key of [sync]: type, H, switch_at"));
  msg = parse_error(budget + "[[variant]]\nname = \"v\"\nlr = 3\n");
  CHECK(contains(msg, "invalid lr (variant \"v\") = 3"));
  msg = parse_error(budget + "[optimizer.inner]\nx = 1\n");
  CHECK(contains(msg, "invalid optimizer.inner = { x = 1 } (accepted: a key of [optimizer]:"));
  msg = parse_error("run = 3\n");
  CHECK(contains(msg, "invalid run = 3 (accepted: a table [run] of keys: seed, workers,"));
  msg = parse_error("variant = 3\n" + budget);
  CHECK(contains(msg, "invalid variant = 3 (accepted: an array of tables [[variant]])"));
  msg = error_of([] { RunConfig().set("sync.h", "3"); });
  CHECK(contains(msg, "invalid sync.h = 3 (accepted: a key of [sync]:"));
}

TEST_CASE("config: out-of-range values and wrong types name key, value and range") {
  CHECK(parse_error(budget + "[optimizer]\nlr = -1\n") == "invalid optimizer.lr = -1 (accepted: a number > 0)");
  CHECK(parse_error(budget, {"optimizer.lr=-1"}) == "invalid optimizer.lr = -1 (accepted: a number > 0)");
  CHECK(parse_error(budget + "[optimizer]\nmomentum = 1.0\n") ==
        "invalid optimizer.momentum = 1 (accepted: a number in [0, 1))");
  CHECK(parse_error("[run]\nmax_steps = 10\nworkers = \"eight\"\n") ==
        "invalid run.workers = \"eight\" (accepted: an integer in [1, 4096])");
  CHECK(parse_error(budget, {"run.workers=eight"}) ==
        "invalid run.workers = \"eight\" (accepted: an integer in [1, 4096])");
  CHECK(parse_error(budget, {"run.workers=5000"}) == "invalid run.workers = 5000 (accepted: an integer in [1, 4096])");
  CHECK(parse_error(budget, {"run.workers=2.5"}) == "invalid run.workers = 2.5 (accepted: an integer in [1, 4096])");
  CHECK(parse_error(budget + "[sync]\nH = 2.5\n") == "invalid sync.H = 2.5 (accepted: an integer in [1, 10^9])");
  CHECK(parse_error(budget + "[optimizer]\ntype = \"adam\"\n") ==
        "invalid optimizer.type = \"adam\" (accepted: one of sgd, heavy_ball, nesterov, adamw)");
  CHECK(parse_error(budget + "[optimizer]\ntype = 3\n") ==
        "invalid optimizer.type = 3 (accepted: one of sgd, heavy_ball, nesterov, adamw)");
  CHECK(parse_error(budget + "[run]\n") != "");  // duplicate table: TOML error
  CHECK(parse_error(budget, {"run.eval_every_round=1"}) ==
        "invalid run.eval_every_round = 1 (accepted: true or false)");
  CHECK(parse_error(budget, {"compute.slowdown=[1, 0.5]"}) ==
        "invalid compute.slowdown = [1, 0.5] (accepted: [] or run.workers numbers, each >= 1)");
  CHECK(parse_error(budget, {"compute.slowdown=[1, \"x\"]"}) ==
        "invalid compute.slowdown = [1, \"x\"] (accepted: [] or run.workers numbers, each >= 1)");
  CHECK(parse_error(budget, {"optimizer.lr=inf"}) == "invalid optimizer.lr = inf (accepted: a number > 0)");
  CHECK(parse_error(budget, {"optimizer.lr=nan"}) == "invalid optimizer.lr = nan (accepted: a number > 0)");
  CHECK(parse_error("name = 3\n" + budget) == "invalid name = 3 (accepted: a non-empty string)");
  CHECK(parse_error("description = 3\n" + budget) == "invalid description = 3 (accepted: a string)");
  CHECK(parse_error("bogus = 3\n" + budget) ==
        "invalid bogus = 3 (accepted: name, description, [[variant]] or a section: run, problem, optimizer, "
        "schedule, sync, batch, sampler, outer, network, compute, checkpoint)");
  // A variant's value errors name the variant.
  CHECK(parse_error(budget + "[[variant]]\nname = \"v\"\nsync.H = 0\n") ==
        "invalid sync.H (variant \"v\") = 0 (accepted: an integer in [1, 10^9])");
  // RunConfig::set checks like an override.
  RunConfig rc;
  CHECK(error_of([&] { rc.set("optimizer.lr", "0"); }) == "invalid optimizer.lr = 0 (accepted: a number > 0)");
  rc.set("optimizer.lr", "0.25");
  rc.set("optimizer.type", "adamw");
  CHECK(rc.number("optimizer.lr") == 0.25);
  CHECK(rc.text("optimizer.type") == "adamw");
  ConfigError e("x", "y", "z");
  CHECK(e.parameter() == "x");
}

TEST_CASE("config: variant names are required and unique") {
  CHECK(parse_error(budget + "[[variant]]\nsync.H = 3\n") ==
        "invalid variant[0].name = (missing) (accepted: a non-empty string, unique among the variants)");
  CHECK(parse_error(budget + "[[variant]]\nname = \"\"\n") ==
        "invalid variant[0].name = \"\" (accepted: a non-empty string)");
  CHECK(parse_error(budget + "[[variant]]\nname = 4\n") ==
        "invalid variant[0].name = 4 (accepted: a non-empty string)");
  CHECK(parse_error(budget + "[[variant]]\nname = \"a\"\n[[variant]]\nname = \"b\"\n[[variant]]\nname = \"a\"\n") ==
        "invalid variant[2].name = \"a\" (accepted: a name not used by another variant (variant[0] has it))");
}

TEST_CASE("config: cross-key rules name both keys") {
  CHECK(parse_error("") ==
        "invalid run.max_samples = 0 (accepted: an integer > 0, or run.max_steps > 0 (both are 0: "
        "no budget))");
  CHECK(parse_error("[run]\nmax_samples = 10\n").empty());
  CHECK(parse_error(budget, {"batch.b_min=64", "batch.b_max=32"}) ==
        "invalid batch.b_max = 32 (accepted: an integer >= batch.b_min = 64)");
  // b outside [b_min, b_max] is fine for a constant batch, not for an adaptive rule.
  CHECK(parse_error(budget, {"batch.b=1"}).empty());
  CHECK(parse_error(budget, {"batch.b=1", "batch.type=norm"}) ==
        "invalid batch.b = 1 (accepted: an integer in [batch.b_min, batch.b_max] = [2, 4096] when batch.type = "
        "\"norm\")");
  CHECK(parse_error(budget, {"schedule.min_lr=0.2"}) ==
        "invalid schedule.min_lr = 0.2 (accepted: a number in [0, optimizer.lr] = [0, 0.1])");
  CHECK(parse_error(budget, {"compute.slowdown=[1, 2]"}) ==
        "invalid compute.slowdown = [1, 2] (accepted: [] or run.workers = 8 numbers, each >= 1)");
  CHECK(parse_error(budget, {"compute.slowdown=[1, 2]", "run.workers=2"}).empty());
  CHECK(parse_error(budget, {"sync.group_size=3"}).empty());  // only for hierarchical
  CHECK(parse_error(budget, {"sync.group_size=3", "sync.type=hierarchical"}) ==
        "invalid sync.group_size = 3 (accepted: a divisor of run.workers = 8 when sync.type = \"hierarchical\")");
  CHECK(parse_error(budget, {"sync.group_size=4", "sync.type=hierarchical"}).empty());
  CHECK(parse_error(budget, {"compute.stragglers=9"}) ==
        "invalid compute.stragglers = 9 (accepted: an integer in [0, run.workers] = [0, 8])");
  CHECK(parse_error(budget, {"problem.type=quadratic", "problem.L=0.05"}) ==
        "invalid problem.L = 0.05 (accepted: a number >= problem.mu = 0.1 when problem.type = \"quadratic\")");
  // In a variant the run is named.
  CHECK(parse_error(budget + "[[variant]]\nname = \"v\"\ncompute.stragglers = 9\n") ==
        "invalid compute.stragglers (variant \"v\") = 9 (accepted: an integer in [0, run.workers] = [0, 8])");
  RunConfig rc;
  CHECK(error_of([&] { rc.validate(); }).find("run.max_samples") != std::string::npos);
  rc.set("run.max_steps", "5");
  CHECK_NOTHROW(rc.validate());
}

TEST_CASE("config: TOML syntax errors give file:line:col") {
  const std::string msg = parse_error("[run]\nmax_steps = 10\nworkers = = 3\n");
  CHECK(contains(msg, "invalid demo.toml:3:"));
  CHECK(contains(msg, "'workers = = 3'"));
  CHECK(contains(msg, "(accepted: valid TOML; "));
  CHECK(contains(parse_error("[run\n"), "invalid demo.toml:1:"));
}

TEST_CASE("config: files") {
  // A missing file names the file.
  const auto missing = unique_temp("missing");
  const std::string msg = error_of([&] { lgm::sim::load_experiment(missing); });
  CHECK(contains(msg, missing.string()));
  CHECK(contains(msg, "(no such file)"));
  CHECK(contains(error_of([] { lgm::sim::load_experiment(std::filesystem::temp_directory_path()); }), "(a directory)"));

  // A file: the stem names the experiment; overrides apply; syntax errors name the file.
  const auto file = unique_temp("file");
  {
    std::ofstream out(file);
    out << "[run]\nmax_steps = 10\n";
  }
  const auto exp = lgm::sim::load_experiment(file, {"sync.H=3"});
  CHECK(exp.name == file.stem().string());
  CHECK(exp.runs.at(0).integer("sync.H") == 3);
  {
    std::ofstream out(file);
    out << "[run]\nmax_steps = \n";
  }
  CHECK(contains(error_of([&] { lgm::sim::load_experiment(file); }), "invalid " + file.string() + ":2:"));
  std::filesystem::remove(file);
}

TEST_CASE("config: bad override and grid syntax") {
  CHECK(parse_error(budget, {"foo"}) == "invalid override = \"foo\" (accepted: key=value, e.g. optimizer.lr=0.05)");
  CHECK(parse_error(budget, {"=3"}) == "invalid override = \"=3\" (accepted: key=value, e.g. optimizer.lr=0.05)");
  const auto exp = parse(budget);
  CHECK(error_of([&] { lgm::sim::expand_grid(exp, {"sync.H"}); }) ==
        "invalid grid = \"sync.H\" (accepted: key=value, e.g. sync.H=4,8,16)");
  CHECK(contains(error_of([&] { lgm::sim::expand_grid(exp, {"sync.H=4,,8"}); }), "invalid sync.H = \"4,,8\""));
  CHECK(error_of([&] { lgm::sim::expand_grid(exp, {"sync.H=4,0"}); }) ==
        "invalid sync.H = 0 (accepted: an integer in [1, 10^9])");
  CHECK(contains(error_of([&] { lgm::sim::expand_grid(exp, {"sync.HH=4"}); }), "a key of [sync]:"));
  CHECK(contains(error_of([&] { lgm::sim::expand_grid(exp, {"sync.H=4", "sync.H=8"}); }), "at most once"));
  // Grid values are validated with the cross-key rules too.
  CHECK(contains(error_of([&] { lgm::sim::expand_grid(exp, {"compute.stragglers=1,9"}); }),
                 "invalid compute.stragglers (run \"demo/stragglers=9\") = 9"));
}

TEST_CASE("config: to_toml round trip") {
  auto exp =
      parse(budget, {"optimizer.lr=0.1", "schedule.min_lr=1e-7", "problem.path=a \"quoted\" \\ path\\twith tab",
                     "compute.slowdown=[1.0, 1.5, 1e300, 2, 3, 4, 5, 6.000000000000001]", "run.seed=1234567890123"});
  RunConfig rc = exp.runs.at(0);
  rc.set_name("run \"x\"/y\n\u00e9");
  rc.set("problem.test_path", "\"ctrl \\u0001 and \\u007F\\ttab\"");
  CHECK(rc.text("problem.test_path") == "ctrl \x01 and \x7f\ttab");
  std::mt19937_64 gen(42);
  std::uniform_real_distribution<double> u(-6.0, 0.0);
  for (int i = 0; i < 50; ++i) {
    const double x = std::pow(10.0, u(gen));  // in [1e-6, 1]: fine for lr and min_lr = 1e-7 <= lr
    RunConfig r = rc;
    r.set("optimizer.lr", g17(x));
    REQUIRE(r.number("optimizer.lr") == x);
    const std::string text = r.to_toml();
    const auto back = lgm::sim::parse_experiment(text, "roundtrip");
    REQUIRE(back.runs.size() == 1);
    CHECK(back.runs[0] == r);
  }
  const std::string text = rc.to_toml();
  CHECK(contains(text, "lr = 0.1\n"));
  CHECK(contains(text, "min_lr = 1e-07\n"));
  CHECK(contains(text, "seed = 1234567890123\n"));
  CHECK(contains(text, "[compute]\n"));
  const auto back = lgm::sim::parse_experiment(text, "roundtrip");
  REQUIRE(back.runs.size() == 1);
  CHECK(back.name == rc.name());
  CHECK(back.runs[0] == rc);
  CHECK(back.runs[0].number("schedule.min_lr") == 1e-7);
  CHECK(back.runs[0].text("problem.path") == "a \"quoted\" \\ path\\twith tab");  // bare: taken as it is
  CHECK(back.runs[0].numbers("compute.slowdown")[7] == 6.000000000000001);

  // Doubles with every bit set: random bit patterns in a valid range survive exactly.
  std::uniform_int_distribution<std::uint64_t> bits;
  for (int i = 0; i < 200; ++i) {
    std::uint64_t b = (bits(gen) & 0x000FFFFFFFFFFFFFull) | (static_cast<std::uint64_t>(1023 - (i % 60)) << 52);
    double x;
    std::memcpy(&x, &b, sizeof x);
    const auto back2 = lgm::sim::parse_experiment(rc.to_toml(), "rt", {"network.latency_s=" + g17(x)});
    CHECK(back2.runs[0].number("network.latency_s") == x);
    const auto back3 = lgm::sim::parse_experiment(back2.runs[0].to_toml(), "rt");
    CHECK(back3.runs[0] == back2.runs[0]);
  }
}

TEST_CASE("config: expand_grid names and count") {
  const auto exp = parse(budget + "[[variant]]\nname = \"a\"\n[[variant]]\nname = \"b\"\noptimizer.lr = 0.2\n");
  const auto grid = lgm::sim::expand_grid(
      exp, {"sync.H=4,8,16", "optimizer.type=sgd,\"adamw\"", "compute.slowdown=[],[1,1,1,1,1,1,1,2]"});
  REQUIRE(grid.runs.size() == 2 * 3 * 2 * 2);
  CHECK(grid.name == exp.name);
  CHECK(grid.runs[0].name() == "a/H=4,type=sgd,slowdown=[]");
  CHECK(grid.runs[1].name() == "a/H=4,type=sgd,slowdown=[1, 1, 1, 1, 1, 1, 1, 2]");
  CHECK(grid.runs[2].name() == "a/H=4,type=adamw,slowdown=[]");
  CHECK(grid.runs[11].name() == "a/H=16,type=adamw,slowdown=[1, 1, 1, 1, 1, 1, 1, 2]");
  CHECK(grid.runs[12].name() == "b/H=4,type=sgd,slowdown=[]");
  CHECK(grid.runs[11].integer("sync.H") == 16);
  CHECK(grid.runs[11].text("optimizer.type") == "adamw");
  CHECK(grid.runs[11].numbers("compute.slowdown").size() == 8);
  CHECK(grid.runs[12].number("optimizer.lr") == 0.2);  // the variant's values stay
  // Keys with the same last component keep their full names.
  const auto lr = lgm::sim::expand_grid(exp, {"optimizer.lr=0.1,0.3", "outer.lr=1e-1"});
  REQUIRE(lr.runs.size() == 2 * 2);
  CHECK(lr.runs[1].name() == "a/optimizer.lr=0.3,outer.lr=0.1");
  CHECK(lgm::sim::expand_grid(exp, {}).runs.size() == 2);
}

TEST_CASE("config: schema_listing contains every key") {
  const std::string listing = lgm::sim::schema_listing();
  for (const auto& section : lgm::sim::schema_sections()) CHECK(contains(listing, "[" + section + "]\n"));
  for (const auto& spec : lgm::sim::schema()) {
    INFO(spec.key);
    CHECK(contains(listing, "  " + std::string(spec.name()) + " "));
    CHECK(contains(listing, spec.accepted));
    CHECK(contains(listing, spec.doc));
    CHECK(!spec.doc.empty());
  }
  CHECK(lgm::sim::schema().size() == 93);  // the design's 79 keys, 11 of networks, 2 of checkpoints, run.save_model
}

TEST_CASE("config: which keys were given (file, variant, override, grid, set) and which defaulted") {
  auto exp = parse(budget + "[optimizer]\nlr = 0.1\n[[variant]]\nname = \"a\"\nsync.H = 2\n", {"batch.eta=0.5"});
  RunConfig rc = exp.runs.at(0);
  CHECK(rc.is_given("run.max_steps"));  // [run] of the file
  CHECK(rc.is_given("optimizer.lr"));
  CHECK(rc.is_given("sync.H"));     // the variant
  CHECK(rc.is_given("batch.eta"));  // an override, even at its default value
  CHECK_FALSE(rc.is_given("batch.theta"));
  CHECK_FALSE(rc.is_given("run.seed"));
  rc.set("run.seed", "3");
  CHECK(rc.is_given("run.seed"));
  const auto grid = lgm::sim::expand_grid(exp, {"batch.nu=2"});
  CHECK(grid.runs.at(0).is_given("batch.nu"));
  CHECK_THROWS_AS((void)rc.is_given("batch.nope"), std::logic_error);
  // equality compares values: a run read back from its full to_toml() (every key given) equals the original
  const auto back = lgm::sim::parse_experiment(exp.runs[0].to_toml(), "rt");
  CHECK(back.runs.at(0) == exp.runs[0]);
  CHECK(back.runs.at(0).is_given("batch.theta"));
}

TEST_CASE("config: no-effect rules name the key and the configuration that makes it inert") {
  auto run_of = [](const std::vector<std::string>& overrides) { return parse(budget, overrides).runs.at(0); };
  auto reason = [](const RunConfig& rc, const char* key) -> std::string {
    const auto none = lgm::sim::no_effect(rc, key);
    return none ? none->reason : "";
  };
  CHECK(reason(run_of({}), "batch.eta") == "batch.eta has no effect with batch.type = \"constant\"");
  CHECK(reason(run_of({"batch.type=norm", "batch.b=4"}), "batch.eta") == "");
  CHECK(reason(run_of({"batch.type=norm", "batch.b=4"}), "batch.theta") ==
        "batch.theta has no effect with batch.type = \"norm\"");
  CHECK(reason(run_of({}), "optimizer.lr") == "");  // always live
  CHECK(reason(run_of({}), "sync.alpha") == "sync.alpha has no effect with sync.type = \"constant\"");
  CHECK(reason(run_of({"sync.type=qsr"}), "sync.alpha") == "");
  CHECK(reason(run_of({}), "outer.momentum") == "outer.momentum has no effect with outer.type = \"average\"");
  CHECK(reason(run_of({"outer.type=sgd"}), "outer.momentum") == "");  // outer SGD has momentum too
  CHECK(reason(run_of({"compute.measure=true"}), "compute.seconds_per_sample") != "");
  // rules about one value: it runs as another value of the key
  const std::vector<std::string> norm = {"batch.type=norm", "batch.b=4"};
  CHECK(reason(run_of(norm), "batch.apply_at") == "");
  const auto every =
      lgm::sim::no_effect(run_of({"batch.type=norm", "batch.b=4", "sync.type=every_step"}), "batch.apply_at");
  REQUIRE(every.has_value());
  CHECK(every->reason == "batch.apply_at = \"next_round\" runs as \"next_step\" with sync.type = \"every_step\"");
  CHECK(every->same_as == "next_step");
  CHECK(reason(run_of({"batch.type=norm", "batch.b=4", "sync.type=every_step", "batch.variance=exact",
                       "batch.apply_at=this_step"}),
               "batch.apply_at") == "");
  CHECK(reason(run_of({"network.preset=custom"}), "network.preset") ==
        "network.preset = \"custom\" runs as \"10g\" with network.latency_s and network.bandwidth_gbps at the 10g "
        "link's values");
  CHECK(reason(run_of({"network.preset=custom", "network.latency_s=1e-3"}), "network.preset") == "");
  CHECK(reason(run_of({}), "network.preset") == "");  // 10g itself is not noted
  CHECK_THROWS_AS((void)lgm::sim::no_effect(run_of({}), "batch.nope"), std::logic_error);
  // every rule names a key of the schema, and rules about one value name a text key and two of its values
  for (const auto& rule : lgm::sim::no_effect_rules()) {
    const lgm::sim::KeySpec* spec = lgm::sim::find_key(rule.key);
    REQUIRE_MESSAGE(spec, rule.key);
    if (rule.value.empty()) continue;
    CHECK(spec->type == lgm::sim::KeyType::text);
    CHECK(std::find(spec->choices.begin(), spec->choices.end(), rule.value) != spec->choices.end());
    CHECK(std::find(spec->choices.begin(), spec->choices.end(), rule.same_as) != spec->choices.end());
  }
}

TEST_CASE("config: key descriptions say what the code does") {
  auto doc = [](const char* key) { return lgm::sim::find_key(key)->doc; };
  // SGD, heavy ball and Nesterov add λx to the gradient (lgm/optim/sgd.hpp); AdamW decays x itself
  CHECK(contains(doc("optimizer.weight_decay"), "coupled L2 for sgd, heavy_ball, nesterov (d = g + λx)"));
  CHECK(contains(doc("optimizer.weight_decay"), "decoupled for adamw"));
  // OuterSGD has momentum with or without Nesterov (lgm/optim/outer.hpp)
  CHECK(contains(doc("outer.momentum"), "(sgd, nesterov)"));
  CHECK(contains(doc("outer.lr"), "(sgd, nesterov)"));
}

TEST_CASE("config: a command-line value that is not UTF-8 is rejected, naming the key (TOML cannot hold it)") {
  const std::string base = "name = \"o\"\n[run]\nmax_steps = 20\n";
  CHECK(parse_error(base, {"problem.path=s\xff"
                           "ome/file"}) ==
        "invalid problem.path = text that is not valid UTF-8 (accepted: UTF-8 text)");
  CHECK(contains(parse_error(base, {"problem.path=\xc0\xaf"}), "not valid UTF-8"));      // overlong '/'
  CHECK(contains(parse_error(base, {"problem.path=\xed\xa0\x80"}), "not valid UTF-8"));  // a UTF-16 surrogate
  CHECK(parse(base, {"problem.path=caf\xc3\xa9/data"}).runs.size() == 1);                // well-formed: accepted
}
