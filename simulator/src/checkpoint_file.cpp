#include "checkpoint_file.hpp"

#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "report.hpp"

namespace lgm::sim {

namespace {

RunStatus status_from_text(const std::string& s) {
  for (RunStatus r : {RunStatus::completed, RunStatus::diverged, RunStatus::interrupted, RunStatus::failed})
    if (s == to_string(r)) return r;
  throw SnapshotError("unknown run status '" + s + "'");
}

std::optional<double> optional_number(const nlohmann::json& j, const char* key) {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  return j.at(key).get<double>();
}

double number(const nlohmann::json& j, const char* key) {
  return j.at(key).is_null() ? std::nan("") : j.at(key).get<double>();
}

VariantSummary summary_from_json(const nlohmann::json& j) {
  VariantSummary v;
  v.name = j.at("name").get<std::string>();
  v.status = status_from_text(j.at("status").get<std::string>());
  v.message = j.at("message").get<std::string>();
  v.steps = j.at("steps").get<Index>();
  v.comm_rounds = j.at("comm_rounds").get<Index>();
  v.samples = j.at("samples").get<Index>();
  v.bytes = number(j, "bytes");
  v.sim_time_s = number(j, "sim_time_s");
  v.sim_time_10g_s = number(j, "sim_time_10g_s");
  v.sim_time_100g_s = number(j, "sim_time_100g_s");
  v.wall_time_s = number(j, "wall_time_s");
  v.batch_min = j.at("batch_min").get<Index>();
  v.batch_mean = number(j, "batch_mean");
  v.batch_max = j.at("batch_max").get<Index>();
  v.loss = optional_number(j, "loss");
  v.grad_norm_sq = optional_number(j, "grad_norm_sq");
  v.subopt = optional_number(j, "subopt");
  v.test_loss = optional_number(j, "test_loss");
  v.test_accuracy = optional_number(j, "test_accuracy");
  return v;
}

/// Both directions name the fields once; `after_format` runs right after the format version (the reader refuses
/// another format there, before a field of that format can fail to parse).
template <class Ar, class AfterFormat>
void fields(Ar& ar, std::uint32_t& format, SimCheckpoint& c, std::string& completed, std::vector<unsigned char>& run,
            AfterFormat&& after_format) {
  ar("lgm-sim checkpoint format", format);
  after_format(format);
  ar("config hash", c.config_hash);
  ar("variant", c.variant);
  ar("metrics bytes", c.metrics_bytes);
  ar("completed runs", completed);
  ar("observer", c.observer);
  ar("run", run);
}

}  // namespace

std::uint64_t text_hash(const std::string& text) {
  return lgm::detail::fnv1a(reinterpret_cast<const unsigned char*>(text.data()), text.size());
}

void write_checkpoint(const std::filesystem::path& file, const SimCheckpoint& c, const RunSnapshot& run) {
  nlohmann::ordered_json done = nlohmann::ordered_json::array();
  for (const VariantSummary& v : c.completed) done.push_back(to_json(v));
  std::string completed = done.dump();
  std::uint32_t format = kCheckpointFormat;
  StateWriter w;
  // the writer only reads its fields: no copy of the snapshot (a network's is every replica's state)
  fields(w, format, const_cast<SimCheckpoint&>(c), completed, const_cast<std::vector<unsigned char>&>(run.bytes),
         [](std::uint32_t) {});
  const RunSnapshot bytes = std::move(w).finish();
  write_file_atomically(file, std::string_view(reinterpret_cast<const char*>(bytes.bytes.data()), bytes.bytes.size()),
                        "checkpoint");
}

SimCheckpoint read_checkpoint(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw DataError("cannot read checkpoint '" + file.string() + "' (no checkpoint was written there)");
  RunSnapshot bytes;
  bytes.bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  SimCheckpoint c;
  try {
    StateReader r(bytes);
    std::uint32_t format = kCheckpointFormat;
    std::string completed;
    fields(r, format, c, completed, c.run.bytes, [](std::uint32_t f) {
      if (f != kCheckpointFormat)
        throw SnapshotError("lgm-sim checkpoint format " + std::to_string(f) + "; this lgm-sim reads format " +
                            std::to_string(kCheckpointFormat));
    });
    r.finish();
    for (const auto& j : nlohmann::json::parse(completed)) c.completed.push_back(summary_from_json(j));
  } catch (const SnapshotError& e) {
    throw DataError("checkpoint '" + file.string() + "': " + e.what());
  } catch (const nlohmann::json::exception& e) {
    throw DataError("checkpoint '" + file.string() + "': damaged run summaries (" + e.what() + ")");
  }
  return c;
}

}  // namespace lgm::sim
