// The small enums of the op interface, in a header of their own so that CUDA kernel sources can use
// them without the rest of vdit (nvcc cannot compile fmt).
#pragma once

namespace vdit {

enum class Activation { none, gelu_tanh, silu };

// How a video tensor orders its axes: diffusers' Wan takes [B, C, F, H, W], CogVideoX [B, F, C, H, W].
enum class VideoAxes { bcfhw, bfchw };

// Order of the features of one patch: (c, t, y, x) as Conv3d/Conv2d weights flatten, or (t, y, x, c)
// as Wan's proj_out writes them.
enum class PatchFeatures { channel_major, channel_minor };

}  // namespace vdit
