// addon.h — the N-API surface: Tensor and Queue handles, the op entry point, errors.
//
// Context-aware (Napi::Addon): every per-environment value lives in DvlAddon, so the addon
// loads in the main thread and in worker_threads at once. No external ArrayBuffers (Electron's
// memory cage): data that crosses to JS is copied into JS-owned buffers.
#pragma once
#include <napi.h>

#include <string>

#include "../core/attrs.h"
#include "../core/error.h"
#include "../core/tensor.h"

namespace dvl {

class DvlAddon : public Napi::Addon<DvlAddon> {
 public:
  DvlAddon(Napi::Env env, Napi::Object exports);

  Napi::FunctionReference tensor_ctor;
  Napi::FunctionReference queue_ctor;
  Napi::FunctionReference plan_ctor;          // plan_wrap.cpp
  Napi::FunctionReference plan_builder_ctor;  // plan_wrap.cpp
  Napi::FunctionReference make_error;  // (code, message) => Error, set by lib/native

  // Throws a JS exception built by make_error (or a plain Error carrying `code`).
  static void throw_error(Napi::Env env, const std::string& code, const std::string& message);
  static Napi::Value make_error_value(Napi::Env env, const std::string& code, const std::string& message);

  Napi::Object wrap_tensor(Napi::Env env, TensorP t);
  TensorP unwrap_tensor(Napi::Env env, Napi::Value v, const char* what);  // throws JS on failure

 private:
  Napi::Value JS_init(const Napi::CallbackInfo& info);
  Napi::Value JS_info(const Napi::CallbackInfo& info);
  Napi::Value JS_memory(const Napi::CallbackInfo& info);
  Napi::Value JS_pngUnfilter(const Napi::CallbackInfo& info);  // png_wrap.cpp
  Napi::Value JS_jpegDecode(const Napi::CallbackInfo& info);   // jpeg_wrap.cpp
};

// Runs fn, converting dvl::Error and std::exception into a pending JS exception.
// Returns true when fn completed.
template <class F>
bool guarded(Napi::Env env, F&& fn) {
  try {
    fn();
    return true;
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();
  } catch (const Error& e) {
    DvlAddon::throw_error(env, e.code(), e.what());
  } catch (const std::bad_alloc&) {
    DvlAddon::throw_error(env, DVL_ERR_ALLOC, "out of memory");
  } catch (const std::exception& e) {
    DvlAddon::throw_error(env, DVL_ERR_INTERNAL, e.what());
  } catch (...) {
    DvlAddon::throw_error(env, DVL_ERR_INTERNAL, "unknown native error");
  }
  return false;
}

// Copies an op's attribute object into a plain Attrs (numbers, booleans as 0/1, strings,
// arrays of numbers); anything else is a DVL_ARG error naming the op and the key.
void attrs_from_js(const std::string& op, Napi::Object o, Attrs& a);

void tensor_class_init(Napi::Env env, Napi::Object exports, DvlAddon* addon);
void queue_class_init(Napi::Env env, Napi::Object exports, DvlAddon* addon);
void plan_class_init(Napi::Env env, Napi::Object exports, DvlAddon* addon);

class Plan;
// A new PlanBuilder handle recording for a queue of device `dev` (plan_wrap.cpp).
Napi::Object new_plan_builder(Napi::Env env, Device dev);
// The plan behind a Plan handle; throws dvl::Error when v is not one or was disposed.
std::shared_ptr<Plan> unwrap_plan(Napi::Env env, Napi::Value v);

}  // namespace dvl
