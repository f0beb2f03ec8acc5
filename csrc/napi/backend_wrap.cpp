// backend_wrap.cpp — the N-API side of backend selection (lib/native/backend.ts).
//
// backendProbe(opts?)  → the CUDA probe (csrc/cuda/host/cuda_loader.h) as a plain object; never
//                        throws for an unavailable GPU (that is a reason, not an error).
//   opts: { pluginPath?: string (DIFFUSIONVL_CUDA_PLUGIN), searchPaths?: string[],
//           driverPath?: string, device?: number }
// cudaRunOp(name, inputs, attrs?) → host tensors. Diagnostic path used by test/gpu: runs the
//   CPU op's plan() (validation, output shapes), uploads the inputs, runs the op on the GPU,
//   downloads the outputs (ops that write into input 0 get the device result copied back into
//   it). Synchronous on the JS thread; inputs must not be pending in a
//   queue. The inference path will run device ops from the queue thread instead.
// cudaArchsCover(archs, major, minor) → { covered, known }: the loader's arch rule, for tests.
#include "../cuda/host/cuda_loader.h"
#include "../cpu/ops/ops.h"
#include "addon.h"

namespace dvl {

static Napi::Value JS_backendProbe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Value result = env.Undefined();
  guarded(env, [&] {
    CudaProbeOptions o;
    o.read_c_env = false;  // lib/native passes DIFFUSIONVL_CUDA_PLUGIN from process.env
    if (info.Length() > 0 && info[0].IsObject()) {
      Napi::Object a = info[0].As<Napi::Object>();
      Napi::Value v = a.Get("pluginPath");
      if (v.IsString() && !v.As<Napi::String>().Utf8Value().empty()) {
        o.plugin_override_set = true;
        o.plugin_override = v.As<Napi::String>().Utf8Value();
      } else if (!v.IsUndefined() && !v.IsNull() && !v.IsString()) {
        throw Error(DVL_ERR_ARG, "backendProbe: pluginPath must be a string");
      }
      v = a.Get("searchPaths");
      if (v.IsArray()) {
        Napi::Array arr = v.As<Napi::Array>();
        for (uint32_t i = 0; i < arr.Length(); ++i) {
          Napi::Value e = arr.Get(i);
          if (!e.IsString()) throw Error(DVL_ERR_ARG, "backendProbe: searchPaths must hold strings");
          o.search_paths.push_back(e.As<Napi::String>().Utf8Value());
        }
      }
      v = a.Get("driverPath");
      if (v.IsString()) o.driver_path = v.As<Napi::String>().Utf8Value();
      v = a.Get("device");
      if (v.IsNumber()) o.device = v.As<Napi::Number>().Int32Value();
    }
    CudaProbe p = cuda_probe(o);
    Napi::Object r = Napi::Object::New(env);
    r.Set("available", p.available);
    if (!p.available) {
      r.Set("reason", p.reason);
      r.Set("detail", p.detail);
    }
    if (!p.plugin_path.empty()) r.Set("pluginPath", p.plugin_path);
    Napi::Array tried = Napi::Array::New(env, p.tried.size());
    for (size_t i = 0; i < p.tried.size(); ++i) tried.Set(uint32_t(i), p.tried[i]);
    r.Set("tried", tried);
    r.Set("apiVersion", DVL_BACKEND_API_VERSION);
    if (p.plugin_api_version) r.Set("pluginApiVersion", p.plugin_api_version);
    if (p.driver_version) r.Set("driverVersion", p.driver_version);
    if (p.runtime_version) r.Set("runtimeVersion", p.runtime_version);
    if (!p.archs.empty()) r.Set("archs", p.archs);
    r.Set("deviceCount", p.device_count);
    if (p.has_props) {
      Napi::Object d = Napi::Object::New(env);
      d.Set("index", p.device);
      d.Set("name", std::string(p.props.name));
      d.Set("computeCapability", std::to_string(p.props.cc_major) + "." + std::to_string(p.props.cc_minor));
      d.Set("memoryBytes", double(p.props.memory_bytes));
      d.Set("multiprocessors", p.props.multiprocessors);
      d.Set("l2Bytes", p.props.l2_bytes);
      d.Set("sharedMemPerBlockOptin", p.props.smem_per_block_optin);
      r.Set("device", d);
    }
    result = r;
  });
  return result;
}

static Napi::Value JS_cudaRunOp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Value result = env.Undefined();
  guarded(env, [&] {
    DvlAddon* addon = env.GetInstanceData<DvlAddon>();
    if (info.Length() < 2 || !info[0].IsString() || !info[1].IsArray())
      throw Error(DVL_ERR_ARG, "cudaRunOp(name, inputs[], attrs?): bad arguments");
    std::string name = info[0].As<Napi::String>().Utf8Value();
    const OpDef* def = op_find(name);
    if (!def) throw Error(DVL_ERR_ARG, "unknown op '" + name + "'");
    if (!cuda_api()) throw Error(DVL_ERR_BACKEND, "cudaRunOp: the CUDA backend is not available");
    Napi::Array ia = info[1].As<Napi::Array>();
    Tensors in;
    for (uint32_t i = 0; i < ia.Length(); ++i) {
      std::string what = name + ": input " + std::to_string(i);
      in.push_back(addon->unwrap_tensor(env, ia.Get(i), what.c_str()));
    }
    Attrs raw;
    if (info.Length() > 2 && info[2].IsObject()) attrs_from_js(name, info[2].As<Napi::Object>(), raw);
    const OpAttrs attrs = def->parse(in, std::move(raw));  // same validation, errors and shapes as the CPU op
    Tensors host_out = def->plan(in, attrs);
    DType main = in.empty() ? DType::F32 : in[0]->dtype;
    if (!cuda_supports(def->id, main))
      throw Error(DVL_ERR_BACKEND, "cuda: op '" + name + "' is not implemented for " + dtype_name(main) +
                                       " on the CUDA backend");
    Tensors dev_in, dev_out;
    for (const TensorP& t : in) dev_in.push_back(cuda_upload(*t));
    for (const TensorP& t : host_out) dev_out.push_back(cuda_tensor(t->dtype, t->shape));
    cuda_run(def->id, dev_in, dev_out, attrs);
    for (size_t i = 0; i < host_out.size(); ++i) cuda_download(*dev_out[i], *host_out[i]);
    // Ops that write into input 0 (kv_cache_append, scatter_rows) have no outputs: copy the
    // device result back into the caller's tensor, as the CPU op would have changed it.
    if (host_out.empty() && !in.empty()) cuda_download(*dev_in[0], *in[0]);
    Napi::Array ra = Napi::Array::New(env, host_out.size());
    for (size_t i = 0; i < host_out.size(); ++i) ra.Set(uint32_t(i), addon->wrap_tensor(env, host_out[i]));
    result = ra;
  });
  return result;
}

// cudaArchsCover(archs, major, minor) → { covered, known }: the loader's arch check, for tests.
static Napi::Value JS_cudaArchsCover(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Value result = env.Undefined();
  guarded(env, [&] {
    if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber())
      throw Error(DVL_ERR_ARG, "cudaArchsCover(archs, major, minor): bad arguments");
    bool known = false;
    bool covered = cuda_archs_cover(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::Number>().Int32Value(),
                                    info[2].As<Napi::Number>().Int32Value(), &known);
    Napi::Object r = Napi::Object::New(env);
    r.Set("covered", covered);
    r.Set("known", known);
    result = r;
  });
  return result;
}

void backend_wrap_init(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaArchsCover", Napi::Function::New(env, JS_cudaArchsCover, "cudaArchsCover"));
  exports.Set("backendProbe", Napi::Function::New(env, JS_backendProbe, "backendProbe"));
  exports.Set("cudaRunOp", Napi::Function::New(env, JS_cudaRunOp, "cudaRunOp"));
}

}  // namespace dvl
