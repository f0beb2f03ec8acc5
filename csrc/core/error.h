// error.h — the one exception type the native side throws.
//
// Every failure (bad shapes, wrong dtype, out-of-range ids, I/O, allocation) becomes a
// dvl::Error with a stable code; csrc/napi turns it into the JS error class registered by
// lib/native at load time. Nothing in csrc aborts the process.
#pragma once
#include <stdexcept>
#include <string>

namespace dvl {

// Stable codes; lib/errors.ts maps them to typed JS errors.
#define DVL_ERR_SHAPE "DVL_SHAPE"        // op given incompatible shapes
#define DVL_ERR_DTYPE "DVL_DTYPE"        // op given an unsupported dtype
#define DVL_ERR_RANGE "DVL_RANGE"        // index/id/argument out of range
#define DVL_ERR_DISPOSED "DVL_DISPOSED"  // tensor or queue used after dispose
#define DVL_ERR_IO "DVL_IO"              // file open/read failure
#define DVL_ERR_ALLOC "DVL_ALLOC"        // allocation failure
#define DVL_ERR_ARG "DVL_ARG"            // bad argument from JS
#define DVL_ERR_ABORT "DVL_ABORTED"      // work cancelled
#define DVL_ERR_BACKEND "DVL_BACKEND"    // backend unavailable / unsupported op
#define DVL_ERR_INTERNAL "DVL_INTERNAL"  // anything unexpected

class Error : public std::runtime_error {
 public:
  Error(std::string code, const std::string& message)
      : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

}  // namespace dvl
