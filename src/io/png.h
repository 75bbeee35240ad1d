// A small PNG writer for 8-bit RGB images (mask pictures, video frames).
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace vdit {

// Writes `rgb` (rows top to bottom, 3 bytes per pixel, width * height * 3 bytes) to `path` as PNG.
// Atomic: the image goes to a temporary file beside `path`, then into place. Unless `overwrite`,
// an existing `path` is an error (ErrorCode::io) and is left untouched.
void write_png_rgb(const std::string& path, int64_t width, int64_t height, std::span<const uint8_t> rgb,
                   bool overwrite = false);

}  // namespace vdit
