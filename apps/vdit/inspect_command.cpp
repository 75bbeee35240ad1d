#include "commands.h"

namespace vdit::cli {
CLI::App* add_inspect_command(CLI::App& app, Runner*) { return app.add_subcommand("inspect", "TODO"); }
}  // namespace vdit::cli
