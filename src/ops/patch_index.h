// Index arithmetic of patches, shared by the CPU ops and the CUDA kernels: where, in a contiguous
// video tensor, feature k of token n's patch lives.
#pragma once

#include <cstdint>

#include "ops/host_device.h"
#include "ops/op_types.h"

namespace vdit::ops {

struct VideoDims {
  int64_t batch, channels, frames, height, width;
  int64_t sb, sc, sf, sy, sx;  // element strides of a contiguous tensor in the axes' order

  static VideoDims make(int64_t b, int64_t c, int64_t f, int64_t h, int64_t w, VideoAxes axes) {
    VideoDims d{b, c, f, h, w, c * f * h * w, 0, 0, w, 1};
    if (axes == VideoAxes::bcfhw) {
      d.sf = h * w;
      d.sc = f * d.sf;
    } else {
      d.sc = h * w;
      d.sf = c * d.sc;
    }
    return d;
  }
};

struct PatchIndexer {
  VideoDims d;
  int64_t grid_height, grid_width;
  int pt, ph, pw;
  bool channel_major;  // features (c, t, y, x); else (t, y, x, c)

  // Element offset of feature k of token n (frame-major in the patch grid) of batch item b.
  VDIT_HOST_DEVICE int64_t offset(int64_t b, int64_t n, int64_t k) const {
    const int64_t volume = int64_t{pt} * ph * pw;
    const int64_t c = channel_major ? k / volume : k % d.channels;
    const int64_t r = channel_major ? k % volume : k / d.channels;
    const int64_t t = r / (ph * pw), y = r / pw % ph, x = r % pw;
    const int64_t gx = n % grid_width, gy = n / grid_width % grid_height, gf = n / (grid_width * grid_height);
    return b * d.sb + c * d.sc + (gf * pt + t) * d.sf + (gy * ph + y) * d.sy + (gx * pw + x) * d.sx;
  }
};

}  // namespace vdit::ops
