// `vdit mask`: builds the block masks of a layout and patterns, prints their size and density,
// and optionally draws head 0's mask as a PNG.
#include <fmt/format.h>

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <sys/stat.h>
#include <vector>

#include "commands.h"
#include "io/png.h"
#include "layout_options.h"
#include "vdit/attention.h"

namespace vdit::cli {
namespace {

struct MaskOptions {
  LayoutOptions layout;
  int heads = 0;
  std::string pattern;
  int block = 128, block_q = 0, block_k = 0;
  bool json = false;
  std::string png;
  bool force = false;
};

// One distinct pattern, the heads that use it, and its mask's size (per head).
struct PatternGroup {
  Pattern pattern;
  int heads = 0;
  int64_t band = -1;  // band width, -1 when not banded
  int64_t kept_tiles = 0;
  double density = 0;
};

// All heads together.
struct MaskSummary {
  int heads = 0;
  int64_t kept_tiles = 0, total_tiles = 0;
  double density = 0;
};

bool banded(const Pattern& p) { return p.kind == Pattern::Kind::spatial || p.kind == Pattern::Kind::temporal; }

std::vector<PatternGroup> group_patterns(const VideoLayout& layout, const std::vector<Pattern>& heads,
                                         int block_k) {
  std::vector<PatternGroup> groups;
  for (int h = 0; h < static_cast<int>(heads.size()); ++h) {
    auto it = std::find_if(groups.begin(), groups.end(), [&](const PatternGroup& g) { return g.pattern == heads[h]; });
    if (it != groups.end()) {
      ++it->heads;
      continue;
    }
    PatternGroup group{heads[h], 1, -1};
    if (banded(heads[h])) group.band = band_width(layout, heads[h], block_k);
    groups.push_back(group);
  }
  return groups;
}

std::string pattern_text(const std::vector<Pattern>& heads, const std::vector<PatternGroup>& groups) {
  if (groups.size() == 1) return groups[0].pattern.to_string();
  std::string text;
  for (const Pattern& p : heads) text += (text.empty() ? "" : ",") + p.to_string();
  return text;
}

// ---- Picture of one head's mask ----

struct Rgb {
  uint8_t r, g, b;
};

Rgb mix(Rgb a, Rgb b, double t) {
  auto m = [t](uint8_t x, uint8_t y) { return static_cast<uint8_t>(x + (y - x) * t + 0.5); };
  return {m(a.r, b.r), m(a.g, b.g), m(a.b, b.b)};
}

struct Image {
  int64_t width = 0, height = 0;
  std::vector<uint8_t> rgb;
  void set(int64_t x, int64_t y, Rgb c) {
    uint8_t* p = &rgb[(y * width + x) * 3];
    p[0] = c.r, p[1] = c.g, p[2] = c.b;
  }
  Rgb get(int64_t x, int64_t y) const {
    const uint8_t* p = &rgb[(y * width + x) * 3];
    return {p[0], p[1], p[2]};
  }
};

// One cell per tile, each drawn as up to 64 x 64 pixels so small masks stay visible; masks over
// kMaxSide blocks per side pool several tiles into a cell, shaded by the fraction kept.
Image draw_mask(const BlockMask& mask, const VideoLayout& layout, int head, bool frame_lines) {
  constexpr int64_t kMaxSide = 2048, kMaxTilePixels = 64;
  const Rgb skipped{24, 24, 32}, kept{236, 236, 226}, text_skipped{22, 34, 84}, text_kept{150, 190, 255},
      frame_line{255, 140, 30};
  const int64_t q_blocks = mask.q_blocks(), k_blocks = mask.k_blocks();
  const int64_t most = std::max(q_blocks, k_blocks);
  const int64_t pool = (most + kMaxSide - 1) / kMaxSide;  // tiles per cell side
  const int64_t scale = std::clamp<int64_t>(kMaxSide / most, 1, kMaxTilePixels);
  const int64_t cells_q = (q_blocks + pool - 1) / pool, cells_k = (k_blocks + pool - 1) / pool;

  std::vector<int32_t> count(cells_q * cells_k, 0);
  for (int64_t qb = 0; qb < q_blocks; ++qb) {
    for (int32_t kb : mask.row(head, qb)) ++count[(qb / pool) * cells_k + kb / pool];
  }
  auto has_text = [&](int64_t cell, int64_t block, int64_t blocks) {
    const int64_t t0 = cell * pool * block, t1 = std::min(mask.tokens, std::min(blocks, (cell + 1) * pool) * block);
    return t0 < layout.video_begin() || t1 > layout.video_end();
  };
  std::vector<uint8_t> text_k(cells_k);
  for (int64_t ck = 0; ck < cells_k; ++ck) text_k[ck] = has_text(ck, mask.block_k, k_blocks);

  Image image{cells_k * scale, cells_q * scale, {}};
  image.rgb.resize(image.width * image.height * 3);
  for (int64_t cq = 0; cq < cells_q; ++cq) {
    const bool text_q = has_text(cq, mask.block_q, q_blocks);
    const int64_t tiles_q = std::min(q_blocks, (cq + 1) * pool) - cq * pool;
    for (int64_t ck = 0; ck < cells_k; ++ck) {
      const int64_t tiles = tiles_q * (std::min(k_blocks, (ck + 1) * pool) - ck * pool);
      const double fraction = static_cast<double>(count[cq * cells_k + ck]) / tiles;
      const bool text = text_q || text_k[ck];
      const Rgb c = mix(text ? text_skipped : skipped, text ? text_kept : kept, fraction);
      for (int64_t y = cq * scale; y < (cq + 1) * scale; ++y) {
        for (int64_t x = ck * scale; x < (ck + 1) * scale; ++x) image.set(x, y, c);
      }
    }
  }
  // A frame boundary at token t falls in the pixel row/column that shows token t; lines are
  // blended so the tiles under them stay readable, and left out when frames are too thin to see.
  const double px_per_token_q = static_cast<double>(scale) / (pool * mask.block_q);
  const double px_per_token_k = static_cast<double>(scale) / (pool * mask.block_k);
  const int64_t frame_tokens = layout.frame_tokens();
  const int64_t line_width = std::max<int64_t>(1, scale / 32);
  if (frame_lines && frame_tokens * std::min(px_per_token_q, px_per_token_k) >= 4 * line_width) {
    std::vector<uint8_t> row_line(image.height, 0), column_line(image.width, 0);
    for (int64_t f = 1; f < layout.frames; ++f) {
      const int64_t t = layout.video_begin() + f * frame_tokens;
      const int64_t y = static_cast<int64_t>(t * px_per_token_q), x = static_cast<int64_t>(t * px_per_token_k);
      for (int64_t i = 0; i < line_width; ++i) {
        row_line[std::min(image.height - 1, y + i)] = 1;
        column_line[std::min(image.width - 1, x + i)] = 1;
      }
    }
    for (int64_t y = 0; y < image.height; ++y) {
      for (int64_t x = 0; x < image.width; ++x) {
        if (row_line[y] || column_line[x]) image.set(x, y, mix(image.get(x, y), frame_line, 0.6));
      }
    }
  }
  return image;
}

// ---- Output ----

nlohmann::json json_report(const VideoLayout& layout, const BlockMask& mask, const MaskSummary& all,
                           const std::vector<Pattern>& heads, const std::vector<PatternGroup>& groups,
                           const std::string& png) {
  nlohmann::json j;
  j["frames"] = layout.frames;
  j["height"] = layout.height;
  j["width"] = layout.width;
  j["text"] = layout.text;
  j["text_position"] = text_position_name(layout.text_position);
  j["tokens"] = layout.tokens();
  j["block_q"] = mask.block_q;
  j["block_k"] = mask.block_k;
  j["q_blocks"] = mask.q_blocks();
  j["k_blocks"] = mask.k_blocks();
  if (mask.block_q == mask.block_k) j["blocks_per_side"] = mask.q_blocks();
  j["heads"] = all.heads;
  j["pattern"] = pattern_text(heads, groups);
  j["kept_tiles"] = all.kept_tiles;
  j["total_tiles"] = all.total_tiles;
  j["density"] = all.density;
  if (groups.size() == 1 && groups[0].band >= 0) j["band_width"] = groups[0].band;
  nlohmann::json list = nlohmann::json::array();
  for (const PatternGroup& g : groups) {
    nlohmann::json item{{"pattern", g.pattern.to_string()},
                        {"heads", g.heads},
                        {"kept_tiles_per_head", g.kept_tiles},
                        {"density", g.density}};
    if (g.band >= 0) item["band_width"] = g.band;
    list.push_back(item);
  }
  j["patterns"] = list;
  if (!png.empty()) j["png"] = png;
  return j;
}

void print_table(const VideoLayout& layout, const BlockMask& mask, const MaskSummary& all,
                 const std::vector<Pattern>& heads, const std::vector<PatternGroup>& groups, const std::string& png) {
  fmt::print("layout      {}\n", layout.to_string());
  fmt::print("tokens      {} ({} per frame)\n", layout.tokens(), layout.frame_tokens());
  fmt::print("blocks      {} x {} of {} x {} tokens\n", mask.q_blocks(), mask.k_blocks(), mask.block_q, mask.block_k);
  fmt::print("heads       {}\n", all.heads);
  if (groups.size() == 1) {
    fmt::print("pattern     {}\n", groups[0].pattern.to_string());
    if (groups[0].band >= 0) fmt::print("band width  {} tokens\n", groups[0].band);
  }
  fmt::print("kept tiles  {} of {}\n", all.kept_tiles, all.total_tiles);
  fmt::print("density     {:.4f} (sparsity {:.4f})\n", all.density, 1 - all.density);
  if (groups.size() > 1) {
    fmt::print("\n{:<22} {:>5} {:>10} {:>11} {:>8}\n", "pattern", "heads", "band width", "tiles/head", "density");
    for (const PatternGroup& g : groups) {
      fmt::print("{:<22} {:>5} {:>10} {:>11} {:>8.4f}\n", g.pattern.to_string(), g.heads,
                 g.band >= 0 ? std::to_string(g.band) : "-", g.kept_tiles, g.density);
    }
  }
  if (!png.empty()) fmt::print("\nwrote {} (head 0: {})\n", png, heads[0].to_string());
}

int run_mask(const MaskOptions& o, bool heads_given, bool block_q_given,
             bool block_k_given) {
  const VideoLayout layout = layout_from(o.layout);
  VDIT_CHECK(o.block >= 1, ErrorCode::invalid_argument, "--block must be >= 1, got {}", o.block);
  const int block_q = block_q_given ? o.block_q : o.block, block_k = block_k_given ? o.block_k : o.block;
  VDIT_CHECK(block_q >= 1, ErrorCode::invalid_argument, "--block-q must be >= 1, got {}", block_q);
  VDIT_CHECK(block_k >= 1, ErrorCode::invalid_argument, "--block-k must be >= 1, got {}", block_k);
  const std::vector<Pattern> heads = head_patterns_from(o.pattern, o.heads, heads_given);
  struct stat existing;
  VDIT_CHECK(o.png.empty() || o.force || ::stat(o.png.c_str(), &existing) != 0, ErrorCode::io,
             "--png {}: file exists (use --force to replace it)", o.png);

  // Heads that share a pattern share a mask: build one head per distinct pattern (head 0 first).
  std::vector<PatternGroup> groups = group_patterns(layout, heads, block_k);
  std::vector<Pattern> distinct;
  for (const PatternGroup& g : groups) distinct.push_back(g.pattern);
  const BlockMask mask = build_block_mask(layout, distinct, block_q, block_k);
  MaskSummary all{static_cast<int>(heads.size()), 0, mask.q_blocks() * mask.k_blocks() * static_cast<int64_t>(heads.size()), 0};
  for (int i = 0; i < static_cast<int>(groups.size()); ++i) {
    groups[i].kept_tiles = mask.kept_tiles(i);
    groups[i].density = mask.density(i);
    all.kept_tiles += groups[i].heads * groups[i].kept_tiles;
    all.density += groups[i].heads * groups[i].density / all.heads;
  }
  if (!o.png.empty()) {
    const Image image = draw_mask(mask, layout, 0, !heads[0].permuted());
    write_png_rgb(o.png, image.width, image.height, image.rgb, o.force);
  }
  if (o.json) fmt::print("{}\n", json_report(layout, mask, all, heads, groups, o.png).dump());
  else print_table(layout, mask, all, heads, groups, o.png);
  return 0;
}

}  // namespace

CLI::App* add_mask_command(CLI::App& app, Runner* runner) {
  auto o = std::make_shared<MaskOptions>();
  CLI::App* cmd = app.add_subcommand(
      "mask", "Build the block-sparse attention masks of a video layout and report their size and density");
  add_layout_options(cmd, o->layout);
  CLI::Option* heads = cmd->add_option("--heads", o->heads, "Attention heads (default 1, or one per listed pattern)");
  cmd->add_option("--pattern", o->pattern,
                  "dense, tile:G, spatial:D, spatial:D+sink, temporal:D (D = target density in (0, 1]), or a "
                  "comma-separated list with one pattern per head")
      ->required();
  cmd->add_option("--block", o->block, "Block size in tokens for queries and keys (default 128)");
  CLI::Option* block_q = cmd->add_option("--block-q", o->block_q, "Query block size (default: --block)");
  CLI::Option* block_k = cmd->add_option("--block-k", o->block_k, "Key block size (default: --block)");
  cmd->add_flag("--json", o->json, "Print one JSON object instead of a table");
  CLI::Option* png = cmd->add_option("--png", o->png, "Draw head 0's block mask into this PNG file");
  cmd->add_flag("--force", o->force, "Replace an existing --png file")->needs(png);
  cmd->callback([=] {
    *runner = [=] {
      return run_mask(*o, heads->count() > 0, block_q->count() > 0, block_k->count() > 0);
    };
  });
  return cmd;
}

}  // namespace vdit::cli
