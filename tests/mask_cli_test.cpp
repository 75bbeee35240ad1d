// `vdit mask` end to end: runs the built binary, parses its output, and measures its wall time and
// peak memory on the HunyuanVideo 720p shape.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "vdit/attention.h"

namespace vdit {
namespace {

namespace fs = std::filesystem;

struct CliRun {
  int exit_code = -1;
  std::string out, err;
  double seconds = 0;
  long peak_rss_kb = 0;
};

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class MaskCli : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::path(::testing::TempDir()) / "vdit_mask_cli_XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Runs `vdit mask args...` with stdout and stderr captured in files; wait4 gives the child's
  // own peak RSS.
  CliRun run(std::vector<std::string> args) {
    args.insert(args.begin(), {VDIT_CLI, "mask"});
    const fs::path out_path = dir_ / "stdout", err_path = dir_ / "stderr";
    auto start = std::chrono::steady_clock::now();
    pid_t pid = ::fork();
    if (pid == 0) {
      int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(out, 1);
      ::dup2(err, 2);
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    CliRun r;
    int status = 0;
    rusage usage{};
    EXPECT_EQ(::wait4(pid, &status, 0, &usage), pid);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.peak_rss_kb = usage.ru_maxrss;
    r.out = read_file(out_path);
    r.err = read_file(err_path);
    return r;
  }

  fs::path dir_;
};

const std::vector<std::string> kHunyuan = {"--frames", "33",  "--height",   "45",   "--width", "80",
                                           "--text",   "256", "--text-pos", "last", "--heads", "24"};

std::vector<std::string> with(std::vector<std::string> base, const std::vector<std::string>& more) {
  base.insert(base.end(), more.begin(), more.end());
  return base;
}

TEST_F(MaskCli, HunyuanVideoShapeIsFastSmallAndCorrect) {
  const VideoLayout layout{33, 45, 80, 256, TextPosition::last};
  for (const std::string pattern : {"tile:2", "spatial:0.15"}) {
    CliRun r = run(with(kHunyuan, {"--pattern", pattern, "--json"}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const nlohmann::json j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["tokens"], 119056);
    EXPECT_EQ(j["blocks_per_side"], 931);
    EXPECT_EQ(j["heads"], 24);
    EXPECT_EQ(j["pattern"], pattern);
    const double density = j["density"];
    EXPECT_GT(density, 0.0);
    EXPECT_LT(density, 1.0);
    // Against the library, built here for one head.
    const Pattern p = parse_pattern(pattern);
    const BlockMask one = build_block_mask(layout, p, 1);
    EXPECT_EQ(j["kept_tiles"], 24 * one.kept_tiles());
    EXPECT_NEAR(density, one.density(), 1e-12);
    if (p.kind == Pattern::Kind::spatial) {
      EXPECT_EQ(j["band_width"], band_width(layout, p, 128));
      EXPECT_GE(density, 0.15);
    }
    std::printf("vdit mask HunyuanVideo 720p %s: %.3f s wall, peak RSS %.1f MB, density %.6f\n", pattern.c_str(),
                r.seconds, r.peak_rss_kb / 1024.0, density);
    EXPECT_LT(r.seconds, 1.0) << pattern;
    EXPECT_LT(r.peak_rss_kb, 300 * 1024) << pattern;  // an S x S byte mask would be 14 GB
  }
}

TEST_F(MaskCli, HumanTableAndMixedHeads) {
  CliRun r = run(with(kHunyuan, {"--pattern", "tile:2"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("119056"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("931 x 931"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("density"), std::string::npos) << r.out;

  CliRun mixed = run({"--frames", "5", "--height", "4", "--width", "6", "--block-q", "8", "--block-k", "16",
                   "--pattern", "spatial:0.3+sink,temporal:0.3,tile:1", "--json"});
  ASSERT_EQ(mixed.exit_code, 0) << mixed.err;
  const nlohmann::json j = nlohmann::json::parse(mixed.out);
  EXPECT_EQ(j["heads"], 3);
  EXPECT_EQ(j["tokens"], 120);
  EXPECT_EQ(j["q_blocks"], 15);
  EXPECT_EQ(j["k_blocks"], 8);
  const VideoLayout layout{5, 4, 6};
  const std::vector<Pattern> heads = {Pattern::spatial(0.3, true), Pattern::temporal(0.3), Pattern::tile(1)};
  const BlockMask m = build_block_mask(layout, heads, 8, 16);
  EXPECT_EQ(j["kept_tiles"], m.kept_tiles());
  EXPECT_NEAR(j["density"].get<double>(), m.density(), 1e-12);
  EXPECT_EQ(j["patterns"].size(), 3u);
}

TEST_F(MaskCli, PngIsValidAndNotOverwrittenWithoutForce) {
  const fs::path png = dir_ / "mask.png";
  CliRun first = run(with(kHunyuan, {"--pattern", "tile:2", "--png", png.string()}));
  ASSERT_EQ(first.exit_code, 0) << first.err;
  const std::string bytes = read_file(png);
  ASSERT_GE(bytes.size(), 33u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(bytes.substr(12, 4), "IHDR");
  auto be32 = [&](size_t at) {
    return (uint32_t(uint8_t(bytes[at])) << 24) | (uint32_t(uint8_t(bytes[at + 1])) << 16) |
           (uint32_t(uint8_t(bytes[at + 2])) << 8) | uint32_t(uint8_t(bytes[at + 3]));
  };
  EXPECT_EQ(be32(16), 931u * 2);  // one tile = 2 x 2 pixels, under the ~2048 px cap
  EXPECT_EQ(be32(20), 931u * 2);

  CliRun again = run(with(kHunyuan, {"--pattern", "dense", "--png", png.string()}));
  EXPECT_NE(again.exit_code, 0);
  EXPECT_NE(again.err.find("--force"), std::string::npos) << again.err;
  EXPECT_EQ(read_file(png), bytes);

  CliRun forced = run(with(kHunyuan, {"--pattern", "dense", "--png", png.string(), "--force"}));
  ASSERT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_NE(read_file(png), bytes);
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir_)) files += entry.path().extension() != "";
  EXPECT_EQ(files, 1);  // mask.png only: no temporary file left behind
}

TEST_F(MaskCli, BadOptionsNameTheArgument) {
  const std::vector<std::string> small = {"--frames", "4", "--height", "2", "--width", "3"};
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  const Case cases[] = {
      {with(small, {"--pattern", "sparse"}), "'sparse'"},
      {with(small, {"--pattern", "spatial:1.5"}), "spatial:1.5"},
      {with(small, {"--pattern", "temporal:0"}), "temporal:0"},
      {with(small, {"--pattern", "tile:5"}), "tile:5"},
      {with(small, {"--pattern", "dense", "--text-pos", "last"}), "--text-pos"},
      {with(small, {"--pattern", "dense", "--text", "7"}), "--text-pos"},
      {with(small, {"--pattern", "dense", "--text", "7", "--text-pos", "middle"}), "--text-pos"},
      {with(small, {"--pattern", "dense", "--block", "0"}), "--block"},
      {with(small, {"--pattern", "dense", "--block-q", "0"}), "--block-q"},
      {with(small, {"--pattern", "dense", "--heads", "0"}), "--heads"},
      {with(small, {"--pattern", "dense,tile:1", "--heads", "3"}), "--heads"},
      {{"--frames", "0", "--height", "2", "--width", "3", "--pattern", "dense"}, "--frames"},
      {{"--frames", "2", "--height", "0", "--width", "3", "--pattern", "dense"}, "--height"},
      {{"--frames", "2", "--height", "2", "--pattern", "dense"}, "--width"},
      {with(small, {"--pattern", "dense", "--force"}), "--png"},
  };
  for (const Case& c : cases) {
    CliRun r = run(c.args);
    EXPECT_NE(r.exit_code, 0) << c.expected;
    EXPECT_NE(r.err.find(c.expected), std::string::npos) << "expected '" << c.expected << "' in: " << r.err;
    EXPECT_EQ(r.err.find("terminate"), std::string::npos) << r.err;
  }
}

TEST_F(MaskCli, HelpListsTheOptions) {
  CliRun r = run({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* option : {"--frames", "--pattern", "--text-pos", "--block-q", "--json", "--png", "--force"}) {
    EXPECT_NE(r.out.find(option), std::string::npos) << option;
  }
}

}  // namespace
}  // namespace vdit
