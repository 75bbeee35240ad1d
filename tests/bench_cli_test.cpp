// `vdit bench attention` end to end: bad options fail with a message naming the option; without a
// CUDA build or GPU it says so; on a GPU it times a small case and reports it as JSON.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <sys/wait.h>

#include "temp_dir.h"

#ifdef VDIT_HAVE_CUDA
#include "attention/attention_cuda.h"
#endif

namespace vdit {
namespace {

struct CliRun {
  int exit_code = -1;
  std::string out, err;
};

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class BenchCli : public test::TempDirTest {
 protected:
  CliRun run_bench(const std::string& args) const {
    const std::filesystem::path out = dir_ / "out", err = dir_ / "err";
    const std::string command = std::string(VDIT_CLI) + " bench attention " + args + " >" + out.string() + " 2>" +
                                err.string();
    const int status = std::system(command.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(out), read_file(err)};
  }
};

bool have_gpu() {
#ifdef VDIT_HAVE_CUDA
  return flash_kernel_available(FlashKernel::automatic, Device::cuda());
#else
  return false;
#endif
}

TEST_F(BenchCli, BadOptionsAreNamed) {
  CliRun r = run_bench("--frames 0 --height 4 --width 4");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--frames"), std::string::npos) << r.err;
  r = run_bench("--frames 2 --height 4 --width 4 --pattern spatial:2");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--pattern"), std::string::npos) << r.err;
  r = run_bench("--frames 2 --height 4 --width 4 --dtype f64");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--dtype"), std::string::npos) << r.err;
  r = run_bench("--frames 2 --height 4 --width 4 --block-q 0");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--block-q"), std::string::npos) << r.err;
  r = run_bench("--frames 2 --height 4 --width 4 --warmup-ms -1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--warmup-ms"), std::string::npos) << r.err;
  r = run_bench("--frames 2 --height 4 --width 4 --bogus 1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--bogus"), std::string::npos) << r.err;
}

TEST_F(BenchCli, SaysWhenThereIsNoGpu) {
  if (have_gpu()) GTEST_SKIP() << "a GPU is present";
  const CliRun r = run_bench("--frames 2 --height 4 --width 4");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(r.err.find("without CUDA") != std::string::npos || r.err.find("no CUDA GPU") != std::string::npos)
      << r.err;
}

TEST_F(BenchCli, TimesOnTheGpu) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA GPU";
  // 3 x 8 x 16 = 384 tokens, 2 heads: spatial:0.4 keeps some of the 3 x 3 blocks of 128.
  const CliRun r = run_bench("--frames 3 --height 8 --width 16 --heads 2 --head-dim 64 --pattern spatial:0.4 "
                             "--runs 5 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["tokens"], 384);
  EXPECT_EQ(j["heads"], 2);
  EXPECT_GT(j["ms"].get<double>(), 0.0);
  EXPECT_GT(j["density"].get<double>(), 0.0);
  EXPECT_LT(j["density"].get<double>(), 1.0);
  EXPECT_NEAR(j["effective_tflops"].get<double>(), j["dense_tflops"].get<double>() * j["density"].get<double>(),
              1e-6 * j["dense_tflops"].get<double>());
  EXPECT_EQ(j["block_q"], 128);
  EXPECT_EQ(j["warmup_ms"], 1000.0);
}

TEST_F(BenchCli, QueryBlocksOfTheWorkItem) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA GPU";
  // 384 tokens in two query blocks of 192 (d = 64: the sm90 kernel's work item).
  const CliRun r = run_bench("--frames 3 --height 8 --width 16 --heads 2 --head-dim 64 --pattern spatial:0.4 "
                             "--block-q 192 --runs 5 --warmup-ms 50 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["block_q"], 192);
  EXPECT_EQ(j["warmup_ms"], 50.0);
  EXPECT_GT(j["density"].get<double>(), 0.0);
  EXPECT_LE(j["density"].get<double>(), 1.0);
}

}  // namespace
}  // namespace vdit
