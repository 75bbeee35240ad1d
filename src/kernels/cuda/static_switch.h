// Runtime flags turned into compile-time constants at one dispatch point (FlashAttention-3's
// static_switch.h): BOOL_SWITCH(flag, kFlag, [&] { run<kFlag>(); }).
#pragma once

#define VDIT_BOOL_SWITCH(COND, CONST_NAME, ...) \
  [&] {                                         \
    if (COND) {                                 \
      constexpr static bool CONST_NAME = true;  \
      return __VA_ARGS__();                     \
    } else {                                    \
      constexpr static bool CONST_NAME = false; \
      return __VA_ARGS__();                     \
    }                                           \
  }()

// Head dims 64, 96 and 128; callers reject any other value before switching.
#define VDIT_HEADDIM_SWITCH(HEADDIM, CONST_NAME, ...) \
  [&] {                                               \
    if (HEADDIM <= 64) {                              \
      constexpr static int CONST_NAME = 64;           \
      return __VA_ARGS__();                           \
    } else if (HEADDIM <= 96) {                       \
      constexpr static int CONST_NAME = 96;           \
      return __VA_ARGS__();                           \
    } else {                                          \
      constexpr static int CONST_NAME = 128;          \
      return __VA_ARGS__();                           \
    }                                                 \
  }()
