// plan_wrap.cpp — the JS PlanBuilder and Plan handles (csrc/core/plan.h).
//
//   const b = queue.record()                        // a builder for the queue's device
//   const ids = b.input('i32', [n])                 // data input 0 (filled at each replay)
//   const feats = b.bind('f32', [F, H])             // bound input 1 (a tensor at each replay)
//   const [y] = b.op('matmul', [x, w], {}, [])      // planned now, run at replay
//   b.op('kv_cache_append', [c, k], { pos0: 8 }, [['pos0', 0, 0]])   // pos0 = params[0] + 0
//   b.op('attention_batch', [q, k, v], { seqs }, [['seqs', 1, 0, 12]]) // seqs = params[1..13)
//   const plan = b.finish([y], 1)
//   const [out] = queue.replay(plan, [Int32Array.of(...), featsTensor], [pos0])
//
// Tensors a builder returns are placeholders: they have no memory outside the plan, and the
// eager Queue.op refuses them. Plan.dispose() drops the handle's reference; replays still
// queued keep the plan alive until they ran.
#include <memory>

#include "../core/error.h"
#include "../core/plan.h"
#include "../cpu/ops/ops.h"
#include "addon.h"

namespace dvl {

static const napi_type_tag kPlanTag = {0x3f1a9c2b7d604e55ULL, 0x81b2c4d6e8f0a193ULL};

namespace {

std::vector<int64_t> shape_from_js(Napi::Value v, const char* what) {
  if (!v.IsArray()) throw Error(DVL_ERR_ARG, std::string(what) + ": shape must be an array");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int64_t> shape;
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    double d = e.IsNumber() ? e.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0) || d != double(int64_t(d)) || d > 9e15)
      throw Error(DVL_ERR_SHAPE, std::string(what) + ": shape entries must be non-negative integers");
    shape.push_back(int64_t(d));
  }
  return shape;
}

DType dtype_from_js(Napi::Value v, const char* what) {
  DType dt;
  std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string("?");
  if (!dtype_parse(s, &dt) || dtype_is_block(dt)) throw Error(DVL_ERR_DTYPE, std::string(what) + ": unknown dtype '" + s + "'");
  return dt;
}

}  // namespace

class PlanWrap : public Napi::ObjectWrap<PlanWrap> {
 public:
  PlanWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PlanWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
      DvlAddon::throw_error(info.Env(), DVL_ERR_ARG, "Plan cannot be constructed directly; use queue.record()");
      return;
    }
    plan_ = *info[0].As<Napi::External<std::shared_ptr<Plan>>>().Data();
    info.This().As<Napi::Object>().TypeTag(&kPlanTag);
  }

  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "Plan",
                       {
                           InstanceAccessor("info", &PlanWrap::JS_info, nullptr),
                           InstanceAccessor("disposed", &PlanWrap::JS_disposed, nullptr),
                           InstanceMethod("dispose", &PlanWrap::JS_dispose),
                       });
  }

  std::shared_ptr<Plan> plan_;

 private:
  Napi::Value JS_info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!plan_) return env.Null();
    Napi::Object o = Napi::Object::New(env);
    o.Set("ops", double(plan_->op_count()));
    o.Set("inputs", double(plan_->input_count()));
    o.Set("params", double(plan_->param_count()));
    o.Set("arenaBytes", double(plan_->arena_bytes()));
    o.Set("intermediateBytes", double(plan_->intermediate_bytes()));
    o.Set("segments", double(plan_->segments()));
    o.Set("device", plan_->device() == Device::Cuda ? "cuda" : "cpu");
    return o;
  }
  Napi::Value JS_disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !plan_); }
  Napi::Value JS_dispose(const Napi::CallbackInfo& info) {
    plan_.reset();
    return info.Env().Undefined();
  }
};

class PlanBuilderWrap : public Napi::ObjectWrap<PlanBuilderWrap> {
 public:
  PlanBuilderWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PlanBuilderWrap>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) {
      DvlAddon::throw_error(info.Env(), DVL_ERR_ARG, "PlanBuilder cannot be constructed directly; use queue.record()");
      return;
    }
    plan_ = *info[0].As<Napi::External<std::shared_ptr<Plan>>>().Data();
  }

  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "PlanBuilder",
                       {
                           InstanceMethod("op", &PlanBuilderWrap::JS_op),
                           InstanceMethod("input", &PlanBuilderWrap::JS_input),
                           InstanceMethod("bind", &PlanBuilderWrap::JS_bind),
                           InstanceMethod("finish", &PlanBuilderWrap::JS_finish),
                       });
  }

 private:
  Plan& need() {
    if (!plan_) throw Error(DVL_ERR_ARG, "PlanBuilder: already finished");
    return *plan_;
  }

  // op(name, inputs[], attrs?, patches?: [key, paramIndex, offset][]) → placeholder tensors
  Napi::Value JS_op(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Value result = env.Undefined();
    guarded(env, [&] {
      Plan& plan = need();
      DvlAddon* addon = env.GetInstanceData<DvlAddon>();
      if (info.Length() < 2 || !info[0].IsString() || !info[1].IsArray())
        throw Error(DVL_ERR_ARG, "PlanBuilder.op(name, inputs[], attrs?, patches?): bad arguments");
      std::string name = info[0].As<Napi::String>().Utf8Value();
      const OpDef* def = op_find(name);
      if (!def) throw Error(DVL_ERR_ARG, "unknown op '" + name + "'");
      Napi::Array ia = info[1].As<Napi::Array>();
      Tensors in;
      for (uint32_t i = 0; i < ia.Length(); ++i) {
        Napi::Value v = ia.Get(i);
        if (v.IsNull() || v.IsUndefined()) {
          in.push_back(nullptr);
          continue;
        }
        std::string what = name + ": input " + std::to_string(i);
        in.push_back(addon->unwrap_tensor(env, v, what.c_str()));
      }
      Attrs attrs;
      if (info.Length() > 2 && info[2].IsObject()) attrs_from_js(name, info[2].As<Napi::Object>(), attrs);
      std::vector<AttrPatch> patches;
      if (info.Length() > 3 && info[3].IsArray()) {
        Napi::Array pa = info[3].As<Napi::Array>();
        for (uint32_t i = 0; i < pa.Length(); ++i) {
          Napi::Value e = pa.Get(i);
          Napi::Array t = e.IsArray() ? e.As<Napi::Array>() : Napi::Array::New(env);
          if (t.Length() < 3 || t.Length() > 4 || !t.Get(0u).IsString() || !t.Get(1u).IsNumber() || !t.Get(2u).IsNumber() ||
              (t.Length() == 4 && !t.Get(3u).IsNumber()))
            throw Error(DVL_ERR_ARG, name + ": patches must be [key, paramIndex, offset, length?]");
          patches.push_back({t.Get(0u).As<Napi::String>().Utf8Value(), t.Get(1u).As<Napi::Number>().Int32Value(),
                             t.Get(2u).As<Napi::Number>().DoubleValue(), t.Length() == 4 ? t.Get(3u).As<Napi::Number>().Int32Value() : 0});
        }
      }
      Tensors out = plan.record(*def, std::move(in), std::move(attrs), std::move(patches));
      Napi::Array ra = Napi::Array::New(env, out.size());
      for (size_t i = 0; i < out.size(); ++i) ra.Set(uint32_t(i), addon->wrap_tensor(env, out[i]));
      result = ra;
    });
    return result;
  }

  Napi::Value JS_input(const Napi::CallbackInfo& info) { return slot(info, false); }
  Napi::Value JS_bind(const Napi::CallbackInfo& info) { return slot(info, true); }

  Napi::Value slot(const Napi::CallbackInfo& info, bool bound) {
    Napi::Env env = info.Env();
    Napi::Value result = env.Undefined();
    guarded(env, [&] {
      Plan& plan = need();
      const char* what = bound ? "PlanBuilder.bind" : "PlanBuilder.input";
      if (info.Length() < 2) throw Error(DVL_ERR_ARG, std::string(what) + "(dtype, shape): bad arguments");
      DType dt = dtype_from_js(info[0], what);
      std::vector<int64_t> shape = shape_from_js(info[1], what);
      TensorP t = bound ? plan.add_bound_input(dt, shape) : plan.add_data_input(dt, shape);
      result = env.GetInstanceData<DvlAddon>()->wrap_tensor(env, t);
    });
    return result;
  }

  // finish(outputs[], nparams, freshOutputs?) → Plan
  Napi::Value JS_finish(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Value result = env.Undefined();
    guarded(env, [&] {
      Plan& plan = need();
      DvlAddon* addon = env.GetInstanceData<DvlAddon>();
      if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsNumber())
        throw Error(DVL_ERR_ARG, "PlanBuilder.finish(outputs[], nparams): bad arguments");
      Napi::Array oa = info[0].As<Napi::Array>();
      Tensors outs;
      for (uint32_t i = 0; i < oa.Length(); ++i) outs.push_back(addon->unwrap_tensor(env, oa.Get(i), "PlanBuilder.finish: output"));
      const bool fresh = info.Length() > 2 && info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
      plan.finish(outs, info[1].As<Napi::Number>().Int32Value(), fresh);
      std::shared_ptr<Plan> done = std::move(plan_);
      result = addon->plan_ctor.New({Napi::External<std::shared_ptr<Plan>>::New(env, &done)});
    });
    return result;
  }

  std::shared_ptr<Plan> plan_;
};

void plan_class_init(Napi::Env env, Napi::Object exports, DvlAddon* addon) {
  Napi::Function p = PlanWrap::define(env);
  addon->plan_ctor = Napi::Persistent(p);
  exports.Set("Plan", p);
  Napi::Function b = PlanBuilderWrap::define(env);
  addon->plan_builder_ctor = Napi::Persistent(b);
}

Napi::Object new_plan_builder(Napi::Env env, Device dev) {
  auto plan = std::make_shared<Plan>(dev);
  return env.GetInstanceData<DvlAddon>()->plan_builder_ctor.New({Napi::External<std::shared_ptr<Plan>>::New(env, &plan)});
}

std::shared_ptr<Plan> unwrap_plan(Napi::Env env, Napi::Value v) {
  if (!v.IsObject() || !v.As<Napi::Object>().CheckTypeTag(&kPlanTag)) throw Error(DVL_ERR_ARG, "replay: the first argument is not a Plan");
  PlanWrap* w = PlanWrap::Unwrap(v.As<Napi::Object>());
  if (!w || !w->plan_) throw Error(DVL_ERR_DISPOSED, "replay: the plan was disposed");
  return w->plan_;
}

}  // namespace dvl
