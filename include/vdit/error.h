// Errors: every failure is a vdit::Error carrying a code and a message that names what failed
// (the file, tensor, argument or shape).
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace vdit {

enum class ErrorCode {
  invalid_argument,  // a bad option, shape or value given by the caller
  io,                // a file could not be opened, read or written
  corrupt_file,      // a file's content breaks its format
  not_found,         // a named file, tensor or key is missing
  unsupported,       // valid, but not something vdit does (dtype, architecture, device)
  cuda,              // a CUDA runtime or driver call failed
  internal,          // a broken invariant: a bug in vdit
};

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

template <typename... Args>
[[noreturn]] void fail(ErrorCode code, fmt::format_string<Args...> format, Args&&... args) {
  throw Error(code, fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace vdit

// VDIT_CHECK(cond, code, "format", args...): throws vdit::Error(code, message) when cond is false.
#define VDIT_CHECK(cond, code, ...)                  \
  do {                                               \
    if (!(cond)) ::vdit::fail(code, __VA_ARGS__);    \
  } while (0)
