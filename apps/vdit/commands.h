// Each subcommand of `vdit` lives in its own file and registers itself here.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace vdit::cli {

// Adds the subcommand to `app`; the returned callback runs it once parsing succeeded and returns
// the process exit code.
using Runner = std::function<int()>;
CLI::App* add_mask_command(CLI::App& app, Runner* runner);
CLI::App* add_inspect_command(CLI::App& app, Runner* runner);
CLI::App* add_bench_command(CLI::App& app, Runner* runner);

}  // namespace vdit::cli
