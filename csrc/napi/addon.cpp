// addon.cpp — module init, error construction, backend info.
#include "addon.h"

#include "../core/error.h"
#include "../core/thread_pool.h"
#include "../cpu/kernels.h"
#include "../cpu/ops/ops.h"

namespace dvl {

DvlAddon::DvlAddon(Napi::Env env, Napi::Object exports) {
  DefineAddon(exports, {
                           InstanceMethod("init", &DvlAddon::JS_init),
                           InstanceMethod("info", &DvlAddon::JS_info),
                           InstanceMethod("memory", &DvlAddon::JS_memory),
                           InstanceMethod("pngUnfilter", &DvlAddon::JS_pngUnfilter),
                           InstanceMethod("jpegDecode", &DvlAddon::JS_jpegDecode),
                       });
  tensor_class_init(env, exports, this);
  queue_class_init(env, exports, this);
  plan_class_init(env, exports, this);
  { void backend_wrap_init(Napi::Env, Napi::Object); backend_wrap_init(env, exports); }  // backend_wrap.cpp (C1)
}

Napi::Value DvlAddon::make_error_value(Napi::Env env, const std::string& code, const std::string& message) {
  DvlAddon* self = env.GetInstanceData<DvlAddon>();
  if (self && !self->make_error.IsEmpty()) {
    Napi::Value v = self->make_error.Call({Napi::String::New(env, code), Napi::String::New(env, message)});
    if (!env.IsExceptionPending()) return v;
    env.GetAndClearPendingException();
  }
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e.Value();
}

void DvlAddon::throw_error(Napi::Env env, const std::string& code, const std::string& message) {
  if (env.IsExceptionPending()) return;  // never throw over a pending exception
  Napi::Value v = make_error_value(env, code, message);
  napi_throw(env, v);
}

void attrs_from_js(const std::string& op, Napi::Object o, Attrs& a) {
  // Values are read by the key values themselves (napi_get_property): looking them up by a C
  // string made V8 re-internalise every key on every op (a third of an op's enqueue).
  Napi::Array keys = o.GetPropertyNames();
  const uint32_t nk = keys.Length();
  for (uint32_t i = 0; i < nk; ++i) {
    Napi::Value kv = keys.Get(i);
    std::string k = kv.ToString().Utf8Value();
    Napi::Value v = o.Get(kv);
    if (v.IsNumber()) a.num[k] = v.As<Napi::Number>().DoubleValue();
    else if (v.IsBoolean()) a.num[k] = v.As<Napi::Boolean>().Value() ? 1 : 0;
    else if (v.IsString()) a.str[k] = v.As<Napi::String>().Utf8Value();
    else if (v.IsTypedArray() && v.As<Napi::TypedArray>().TypedArrayType() == napi_float64_array) {
      Napi::Float64Array t = v.As<Napi::Float64Array>();
      a.arr[k].assign(t.Data(), t.Data() + t.ElementLength());
    } else if (v.IsArray() || v.IsTypedArray()) {
      Napi::Object arr = v.As<Napi::Object>();
      uint32_t n = v.IsArray() ? v.As<Napi::Array>().Length() : uint32_t(v.As<Napi::TypedArray>().ElementLength());
      std::vector<double> vals(n);
      for (uint32_t j = 0; j < n; ++j) {
        Napi::Value e = arr.Get(j);
        if (!e.IsNumber()) throw Error(DVL_ERR_ARG, op + ": attribute '" + k + "' must hold only numbers");
        vals[j] = e.As<Napi::Number>().DoubleValue();
      }
      a.arr[k] = std::move(vals);
    } else if (!v.IsUndefined() && !v.IsNull()) {
      throw Error(DVL_ERR_ARG, op + ": attribute '" + k + "' has an unsupported type");
    }
  }
}

Napi::Value DvlAddon::JS_init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) {
    throw_error(env, DVL_ERR_ARG, "init: expected an options object");
    return env.Undefined();
  }
  Napi::Object o = info[0].As<Napi::Object>();
  Napi::Value f = o.Get("makeError");
  if (f.IsFunction()) make_error = Napi::Persistent(f.As<Napi::Function>());
  return env.Undefined();
}

Napi::Value DvlAddon::JS_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object r = Napi::Object::New(env);
  r.Set("isa", isa_name(cpu_kernels().isa));
  r.Set("isaDetected", isa_name(cpu_isa_detected()));
  Napi::Array levels = Napi::Array::New(env);
  uint32_t n = 0;
  for (int i = 0; i < kIsaCount; ++i)
    if (cpu_kernels_for(Isa(i))) levels.Set(n++, isa_name(Isa(i)));
  r.Set("isaLevels", levels);
  r.Set("physicalCores", physical_cores());
  r.Set("build", cpu_build_info());
  Napi::Array ops = Napi::Array::New(env);
  n = 0;
  for (const std::string& s : op_names()) ops.Set(n++, s);
  r.Set("ops", ops);
  r.Set("napiVersion", NAPI_VERSION);
  return r;
}

// memory() → { hostStorages, hostBytes }: host buffers the engine owns now (all models, plans
// and tensors of the process); tests use it to prove that dispose frees everything.
Napi::Value DvlAddon::JS_memory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  LiveStorage l = live_host_storage();
  Napi::Object r = Napi::Object::New(env);
  r.Set("hostStorages", double(l.count));
  r.Set("hostBytes", double(l.bytes));
  return r;
}

}  // namespace dvl

using dvl::DvlAddon;
NODE_API_ADDON(DvlAddon)
