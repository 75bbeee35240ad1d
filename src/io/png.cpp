#include "io/png.h"

#include <fcntl.h>
#include <png.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "vdit/error.h"

namespace vdit {
namespace {

// Removes the temporary file unless it was moved into place.
struct TempFile {
  std::string path;
  bool keep = false;
  ~TempFile() {
    if (!keep) ::unlink(path.c_str());
  }
};

}  // namespace

void write_png_rgb(const std::string& path, int64_t width, int64_t height, std::span<const uint8_t> rgb,
                   bool overwrite) {
  constexpr int64_t max_side = 1 << 20;
  VDIT_CHECK(width >= 1 && height >= 1 && width <= max_side && height <= max_side, ErrorCode::invalid_argument,
             "png {}: size {}x{} outside 1..{}", path, width, height, max_side);
  VDIT_CHECK(static_cast<int64_t>(rgb.size()) == width * height * 3, ErrorCode::invalid_argument,
             "png {}: {} bytes of pixels for {}x{} RGB, expected {}", path, rgb.size(), width, height,
             width * height * 3);
  struct stat existing;
  VDIT_CHECK(overwrite || ::stat(path.c_str(), &existing) != 0, ErrorCode::io,
             "png {}: file exists (not overwritten)", path);

  TempFile temp{path + ".XXXXXX"};
  int fd = ::mkstemp(temp.path.data());
  VDIT_CHECK(fd >= 0, ErrorCode::io, "png {}: cannot create a temporary file: {}", path, std::strerror(errno));
  ::fchmod(fd, 0644);
  FILE* file = ::fdopen(fd, "wb");
  if (!file) {
    ::close(fd);
    fail(ErrorCode::io, "png {}: cannot open the temporary file: {}", path, std::strerror(errno));
  }
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width);
  image.height = static_cast<png_uint_32>(height);
  image.format = PNG_FORMAT_RGB;
  const bool encoded = png_image_write_to_stdio(&image, file, 0, rgb.data(), static_cast<png_int_32>(width * 3), nullptr);
  const std::string png_message = image.message;
  png_image_free(&image);
  const bool flushed = std::fflush(file) == 0 && ::fsync(fd) == 0;
  const bool closed = std::fclose(file) == 0;
  VDIT_CHECK(encoded, ErrorCode::io, "png {}: libpng: {}", path, png_message);
  VDIT_CHECK(flushed && closed, ErrorCode::io, "png {}: write failed: {}", path, std::strerror(errno));

  if (overwrite) {
    VDIT_CHECK(::rename(temp.path.c_str(), path.c_str()) == 0, ErrorCode::io, "png {}: cannot move into place: {}",
               path, std::strerror(errno));
    temp.keep = true;
  } else {
    // link() never replaces an existing file, so a file created meanwhile is left alone.
    VDIT_CHECK(::link(temp.path.c_str(), path.c_str()) == 0, ErrorCode::io, "png {}: cannot create: {}", path,
               errno == EEXIST ? "file exists (not overwritten)" : std::strerror(errno));
  }
}

}  // namespace vdit
