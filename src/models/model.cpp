#include "models/model.h"

#include <fmt/ranges.h>

#include "io/checkpoint.h"
#include "models/cogvideox/cogvideox_model.h"
#include "models/wan/wan_model.h"

namespace vdit {

const std::vector<std::string>& supported_architectures() {
  static const std::vector<std::string> names = {"WanTransformer3DModel", "CogVideoXTransformer3DModel"};
  return names;
}

std::unique_ptr<VideoModel> load_model(const std::string& path, const ExecContext& ctx, DType dtype) {
  const Checkpoint checkpoint = Checkpoint::open(path);
  VDIT_CHECK(checkpoint.has_config(), ErrorCode::not_found,
             "{}: no config.json; expected a diffusers transformer folder", path);
  const ModelConfig config(checkpoint.config(), path + "/config.json");
  const std::string name = config.string("_class_name", "");
  if (name == "WanTransformer3DModel") return WanModel::load(checkpoint, config, ctx, dtype);
  if (name == "CogVideoXTransformer3DModel") return CogVideoXModel::load(checkpoint, config, ctx, dtype);
  fail(ErrorCode::unsupported, "{}: _class_name \"{}\" is not an architecture vdit runs; supported: {}", config.source(),
       name, fmt::join(supported_architectures(), ", "));
}

}  // namespace vdit
