// tensor_wrap.cpp — the JS Tensor handle: a shared_ptr to native storage.
//
// JS never sees the bytes unless it asks (Queue.read); Tensor.fromArray copies a TypedArray in.
// dispose() drops this handle's reference at once; an op still queued keeps its own.
#include <cstring>

#include "../core/error.h"
#include "addon.h"

namespace dvl {

static const napi_type_tag kTensorTag = {0x6476c7a1e5a04b11ULL, 0x9d1c0f3e7a5b2c40ULL};

class TensorWrap : public Napi::ObjectWrap<TensorWrap> {
 public:
  TensorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorWrap>(info) {
    // Only native code constructs tensors, passing an External<TensorP>.
    if (info.Length() != 1 || !info[0].IsExternal()) {
      DvlAddon::throw_error(info.Env(), DVL_ERR_ARG, "Tensor cannot be constructed directly; use Tensor.fromArray or an op");
      return;
    }
    TensorP* p = info[0].As<Napi::External<TensorP>>().Data();
    t_ = *p;
    // Only host memory counts towards V8's external-memory pressure; GPU memory is not its concern.
    bytes_ = t_->on_cuda() ? 0 : int64_t(t_->nbytes());
    if (bytes_) Napi::MemoryManagement::AdjustExternalMemory(info.Env(), bytes_);
    info.This().As<Napi::Object>().TypeTag(&kTensorTag);
  }
  ~TensorWrap() override { release(Env()); }

  TensorP get() const { return t_; }

  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "Tensor",
                       {
                           StaticMethod("fromArray", &TensorWrap::JS_fromArray),
                           InstanceAccessor("dtype", &TensorWrap::JS_dtype, nullptr),
                           InstanceAccessor("shape", &TensorWrap::JS_shape, nullptr),
                           InstanceAccessor("nbytes", &TensorWrap::JS_nbytes, nullptr),
                           InstanceAccessor("disposed", &TensorWrap::JS_disposed, nullptr),
                           InstanceAccessor("device", &TensorWrap::JS_device, nullptr),
                           InstanceMethod("dispose", &TensorWrap::JS_dispose),
                       });
  }

 private:
  void release(Napi::Env env) {
    if (!t_) return;
    t_.reset();
    // Raw call, status ignored: this also runs from a finalizer while a worker's environment
    // is being torn down, where the C++ wrapper would throw (and a throw here terminates).
    int64_t ignored;
    if (bytes_) napi_adjust_external_memory(env, -bytes_, &ignored);
    bytes_ = 0;
  }

  Napi::Value JS_dtype(const Napi::CallbackInfo& info) {
    if (!t_) return info.Env().Null();
    return Napi::String::New(info.Env(), dtype_name(t_->dtype));
  }
  Napi::Value JS_shape(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!t_) return env.Null();
    Napi::Array a = Napi::Array::New(env, t_->shape.size());
    for (size_t i = 0; i < t_->shape.size(); ++i) a.Set(uint32_t(i), double(t_->shape[i]));
    return a;
  }
  Napi::Value JS_nbytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), t_ ? double(t_->nbytes()) : 0);
  }
  Napi::Value JS_disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !t_); }
  Napi::Value JS_device(const Napi::CallbackInfo& info) {
    if (!t_) return info.Env().Null();
    return Napi::String::New(info.Env(), t_->on_cuda() ? "cuda" : "cpu");
  }
  Napi::Value JS_dispose(const Napi::CallbackInfo& info) {
    release(info.Env());
    return info.Env().Undefined();
  }

  // Tensor.fromArray(dtype, shape, data: TypedArray | ArrayBuffer) — copies data.
  static Napi::Value JS_fromArray(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Value result = env.Undefined();
    guarded(env, [&] {
      if (info.Length() < 3 || !info[0].IsString() || !info[1].IsArray())
        throw Error(DVL_ERR_ARG, "Tensor.fromArray(dtype, shape, data): bad arguments");
      DType dt;
      std::string dts = info[0].As<Napi::String>().Utf8Value();
      if (!dtype_parse(dts, &dt)) throw Error(DVL_ERR_DTYPE, "Tensor.fromArray: unknown dtype '" + dts + "'");
      if (dt == DType::Q8) throw Error(DVL_ERR_DTYPE, "Tensor.fromArray: q8 tensors are made by quantising (convert to 'q8', or load with dtype 'q8')");
      if (dt == DType::Q8P) throw Error(DVL_ERR_DTYPE, "Tensor.fromArray: q8p tensors are made by convert to 'q8p' (or by loading a model with dtype 'q8' on an AVX512_VNNI CPU)");
      if (dt == DType::BF16P) throw Error(DVL_ERR_DTYPE, "Tensor.fromArray: bf16p tensors are made by convert to 'bf16p' (or by loading a model with precision 'fast' on an AVX512_BF16 CPU)");
      Napi::Array sa = info[1].As<Napi::Array>();
      std::vector<int64_t> shape;
      for (uint32_t i = 0; i < sa.Length(); ++i) {
        Napi::Value v = sa.Get(i);
        double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
        if (!(d >= 0) || d != double(int64_t(d)) || d > 9e15)
          throw Error(DVL_ERR_SHAPE, "Tensor.fromArray: shape entries must be non-negative integers");
        shape.push_back(int64_t(d));
      }
      const void* src = nullptr;
      size_t len = 0;
      if (info[2].IsTypedArray()) {
        Napi::TypedArray ta = info[2].As<Napi::TypedArray>();
        src = static_cast<const char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
        len = ta.ByteLength();
      } else if (info[2].IsArrayBuffer()) {
        Napi::ArrayBuffer ab = info[2].As<Napi::ArrayBuffer>();
        src = ab.Data();
        len = ab.ByteLength();
      } else if (info[2].IsDataView()) {
        Napi::DataView dv = info[2].As<Napi::DataView>();
        src = static_cast<const char*>(dv.ArrayBuffer().Data()) + dv.ByteOffset();
        len = dv.ByteLength();
      } else {
        throw Error(DVL_ERR_ARG, "Tensor.fromArray: data must be a TypedArray or ArrayBuffer");
      }
      TensorP t = Tensor::alloc(dt, shape);
      if (len != t->nbytes())
        throw Error(DVL_ERR_SHAPE, "Tensor.fromArray: " + std::to_string(len) + " bytes given for " + t->describe() +
                                       " (" + std::to_string(t->nbytes()) + " bytes)");
      if (len) std::memcpy(t->raw(), src, len);
      result = env.GetInstanceData<DvlAddon>()->wrap_tensor(env, t);
    });
    return result;
  }

  TensorP t_;
  int64_t bytes_ = 0;
};

void tensor_class_init(Napi::Env env, Napi::Object exports, DvlAddon* addon) {
  Napi::Function ctor = TensorWrap::define(env);
  addon->tensor_ctor = Napi::Persistent(ctor);
  exports.Set("Tensor", ctor);
}

Napi::Object DvlAddon::wrap_tensor(Napi::Env env, TensorP t) {
  TensorP holder = std::move(t);
  return tensor_ctor.New({Napi::External<TensorP>::New(env, &holder)});
}

TensorP DvlAddon::unwrap_tensor(Napi::Env env, Napi::Value v, const char* what) {
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kTensorTag))
    throw Error(DVL_ERR_ARG, std::string(what) + " is not a Tensor");
  TensorWrap* w = TensorWrap::Unwrap(v.As<Napi::Object>());
  TensorP t = w ? w->get() : nullptr;
  if (!t) throw Error(DVL_ERR_DISPOSED, std::string(what) + " was disposed");
  return t;
}

}  // namespace dvl
