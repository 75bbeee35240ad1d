#include "vdit/error.h"

namespace vdit {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_argument: return "invalid argument";
    case ErrorCode::io: return "i/o error";
    case ErrorCode::corrupt_file: return "corrupt file";
    case ErrorCode::not_found: return "not found";
    case ErrorCode::unsupported: return "unsupported";
    case ErrorCode::cuda: return "cuda error";
    case ErrorCode::internal: return "internal error";
  }
  return "unknown error";
}

}  // namespace vdit
