// `vdit inspect PATH [--json]`: the tensors of a .safetensors file or checkpoint folder, with totals.
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "io/checkpoint.h"

namespace vdit::cli {
namespace {

struct InspectOptions {
  std::string path;
  bool json = false;
};

// "2469134 (2.47 MB)": the exact count, and a rounded one to read at a glance.
std::string with_scale(uint64_t n, const char* unit) {
  const char* prefixes[] = {"K", "M", "G", "T"};
  if (n < 1000) return fmt::format("{}", n);
  double value = static_cast<double>(n) / 1000;
  int prefix = 0;
  while (value >= 1000 && prefix < 3) {
    value /= 1000;
    ++prefix;
  }
  return fmt::format("{} ({:.2f} {}{})", n, value, prefixes[prefix], unit);
}

int run_inspect(const InspectOptions& options) {
  const Checkpoint checkpoint = Checkpoint::open(options.path);
  const bool sharded = checkpoint.shards().size() > 1;
  const std::vector<std::string> names = checkpoint.names();
  uint64_t parameters = 0, bytes = 0;
  for (const std::string& name : names) {
    const TensorInfo& info = checkpoint.info(name);
    parameters += static_cast<uint64_t>(info.shape.numel());
    bytes += info.end - info.begin;
  }
  const nlohmann::json& config = checkpoint.config();
  const std::string class_name = config.contains("_class_name") && config["_class_name"].is_string()
                                     ? config["_class_name"].get<std::string>()
                                     : "";

  if (options.json) {
    nlohmann::json out = {{"tensors", nlohmann::json::array()}, {"parameters", parameters}, {"bytes", bytes}};
    for (const std::string& name : names) {
      const TensorInfo& info = checkpoint.info(name);
      nlohmann::json entry = {{"name", name},
                              {"dtype", dtype_name(info.dtype)},
                              {"shape", std::vector<int64_t>(info.shape.begin(), info.shape.end())}};
      if (sharded) entry["shard"] = std::filesystem::path(checkpoint.shard(name).path()).filename().string();
      out["tensors"].push_back(entry);
    }
    if (!class_name.empty()) out["class_name"] = class_name;
    fmt::print("{}\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    return 0;
  }

  size_t name_width = 4;
  for (const std::string& name : names) name_width = std::max(name_width, name.size());
  fmt::print("{}\n", options.path);
  fmt::print("  {:<{}}  {:<5}  {}\n", "name", name_width, "dtype", sharded ? "shape  (shard)" : "shape");
  for (const std::string& name : names) {
    const TensorInfo& info = checkpoint.info(name);
    const std::string shard =
        sharded ? fmt::format("  ({})", std::filesystem::path(checkpoint.shard(name).path()).filename().string()) : "";
    fmt::print("  {:<{}}  {:<5}  {}{}\n", name, name_width, dtype_name(info.dtype), info.shape.to_string(), shard);
  }
  if (!class_name.empty()) fmt::print("class:      {}\n", class_name);
  fmt::print("tensors:    {}\n", names.size());
  fmt::print("parameters: {}\n", with_scale(parameters, ""));
  fmt::print("bytes:      {}\n", with_scale(bytes, "B"));
  return 0;
}

}  // namespace

CLI::App* add_inspect_command(CLI::App& app, Runner* runner) {
  CLI::App* command = app.add_subcommand(
      "inspect", "List the tensors (name, dtype, shape) of a .safetensors file or checkpoint folder, with totals");
  auto options = std::make_shared<InspectOptions>();
  command->add_option("path", options->path, "a .safetensors file, or a folder with config.json and its weights")
      ->required();
  command->add_flag("--json", options->json,
                    "print one JSON object: {\"tensors\": [{name, dtype, shape}], \"parameters\": N, \"bytes\": N}");
  command->callback([options, runner] { *runner = [options] { return run_inspect(*options); }; });
  return command;
}

}  // namespace vdit::cli
