#include <cstdio>

#include "commands.h"
#include "vdit/error.h"

int main(int argc, char** argv) {
  CLI::App app{"vdit: fast video diffusion transformers (sparse 3D attention, few-step sampling)"};
  app.require_subcommand(1);
  vdit::cli::Runner runner;
  vdit::cli::add_mask_command(app, &runner);
  vdit::cli::add_inspect_command(app, &runner);
  vdit::cli::add_bench_command(app, &runner);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return runner ? runner() : 0;
  } catch (const vdit::Error& e) {
    std::fprintf(stderr, "vdit: %s: %s\n", vdit::error_code_name(e.code()), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vdit: error: %s\n", e.what());
    return 1;
  }
}
