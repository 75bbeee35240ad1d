#include "commands.h"

namespace vdit::cli {
CLI::App* add_mask_command(CLI::App& app, Runner*) { return app.add_subcommand("mask", "TODO"); }
}  // namespace vdit::cli
