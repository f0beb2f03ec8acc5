// queue_wrap.cpp — the JS Queue handle: enqueue ops, sync, read, write, cancel, dispose.
//
//   const q = new Queue({ threads, isa, device, precision })   // device 'cpu' (default) or 'cuda'
//   const [y] = q.op('matmul', [x, w, b], {})   // validates now, computes later
//   await q.sync()                             // rejects with the first failed op's error
//   const data = await q.read(y)               // TypedArray copy
//
// Promises settle on the JS thread through one thread-safe function per queue; it is ref'd
// only while promises are pending, so an idle model never keeps the process alive.
// precision 'fast' (default) or 'exact' picks the CPU matmul kernels (csrc/cpu/kernels.h); the
// queue's `kernels` accessor says what each weight dtype runs on.
// A 'cuda' queue (needs an available CUDA probe first) keeps its tensors on the GPU and runs
// ops there as csrc/cuda/host/cuda_queue.h describes; its kernel threads serve the CPU fallbacks.
#include <cstring>
#include <memory>
#include <set>

#include "../cuda/host/cuda_loader.h"
#include "../cuda/host/cuda_queue.h"
#include "../core/error.h"
#include "../core/plan.h"
#include "../core/queue.h"
#include "../core/staging.h"
#include "../cpu/kernels.h"
#include "../cpu/ops/ops.h"
#include "addon.h"

namespace dvl {

namespace {

struct Settle;
void settle_on_js(Napi::Env env, Napi::Function, void*, Settle* s);
void settle_on_js_impl(Napi::Env env, Napi::Function, void*, Settle* s);
using Tsfn = Napi::TypedThreadSafeFunction<void, Settle, settle_on_js>;

// Promises pending on one queue; the tsfn keeps the event loop alive only while n > 0.
struct Pending {
  int n = 0;
  Tsfn tsfn;
};

struct Settle {
  std::shared_ptr<Pending> pending;
  Napi::Promise::Deferred deferred;
  std::exception_ptr err;
  bool has_data = false;
  DType dtype = DType::F32;
  std::vector<char> data;
  // read([a, b, ...]): one copy per tensor, resolved together as an array.
  bool many = false;
  std::vector<std::pair<DType, std::vector<char>>> parts;
};

}  // namespace

class QueueWrap : public Napi::ObjectWrap<QueueWrap> {
 public:
  QueueWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<QueueWrap>(info) {
    Napi::Env env = info.Env();
    guarded(env, [&] {
      int threads = physical_cores();
      const CpuKernels* k = &cpu_kernels();
      Precision precision = Precision::Fast;
      if (info.Length() > 0 && info[0].IsObject()) {
        Napi::Object o = info[0].As<Napi::Object>();
        Napi::Value t = o.Get("threads");
        if (t.IsNumber()) {
          double d = t.As<Napi::Number>().DoubleValue();
          if (!(d >= 1 && d <= 1024) || d != double(int(d)))
            throw Error(DVL_ERR_ARG, "Queue: threads must be an integer in 1..1024, got " + std::to_string(d));
          threads = int(d);
        }
        Napi::Value isa = o.Get("isa");
        if (isa.IsString()) {
          std::string s = isa.As<Napi::String>().Utf8Value();
          Isa want;
          if (!isa_parse(s.c_str(), &want)) throw Error(DVL_ERR_ARG, "Queue: unknown isa '" + s + "'");
          k = cpu_kernels_for(want);
          if (!k) throw Error(DVL_ERR_BACKEND, "Queue: isa '" + s + "' is not available on this CPU or build");
        }
        Napi::Value prec = o.Get("precision");
        if (!prec.IsUndefined() && !prec.IsNull()) {
          std::string p = prec.IsString() ? prec.As<Napi::String>().Utf8Value() : std::string("?");
          if (p == "exact") precision = Precision::Exact;
          else if (p != "fast") throw Error(DVL_ERR_ARG, "Queue: precision must be 'exact' or 'fast'");
        }
        Napi::Value dev = o.Get("device");
        if (!dev.IsUndefined() && !dev.IsNull()) {
          std::string d = dev.IsString() ? dev.As<Napi::String>().Utf8Value() : std::string("?");
          if (d == "cuda") {
            if (!cuda_api())
              throw Error(DVL_ERR_BACKEND, "Queue: device 'cuda' needs an available CUDA backend (getBackendInfo says why not)");
            device_ = Device::Cuda;
          } else if (d != "cpu") {
            throw Error(DVL_ERR_ARG, "Queue: device must be 'cpu' or 'cuda'");
          }
        }
      }
      // A CUDA queue's matmuls run the CUDA kernels; the CPU ops it falls back to keep the exact
      // precision those kernels compute with.
      if (device_ == Device::Cuda) precision = Precision::Exact;
      queue_ = std::make_unique<ExecQueue>(threads, *k, precision);
      pending_ = std::make_shared<Pending>();
      pending_->tsfn = Tsfn::New(env, "diffusionvl.queue", 0, 1);
      pending_->tsfn.Unref(env);
      cleanup_ = env.AddCleanupHook(std::function<void()>([this] {
        has_cleanup_ = false;  // the hook is running: nothing to remove
        shutdown();
      }));
      has_cleanup_ = true;
    });
  }

  ~QueueWrap() override { shutdown(); }

  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "Queue",
                       {
                           InstanceMethod("op", &QueueWrap::JS_op),
                           InstanceMethod("record", &QueueWrap::JS_record),
                           InstanceMethod("stats", &QueueWrap::JS_stats),
                           InstanceMethod("setProfiling", &QueueWrap::JS_setProfiling),
                           InstanceMethod("profile", &QueueWrap::JS_profile),
                           InstanceMethod("replay", &QueueWrap::JS_replay),
                           InstanceMethod("sync", &QueueWrap::JS_sync),
                           InstanceMethod("read", &QueueWrap::JS_read),
                           InstanceMethod("remaskRead", &QueueWrap::JS_remaskRead),
                           InstanceMethod("replayRemaskRead", &QueueWrap::JS_replayRemaskRead),
                           InstanceMethod("write", &QueueWrap::JS_write),
                           InstanceMethod("cancel", &QueueWrap::JS_cancel),
                           InstanceMethod("prewarm", &QueueWrap::JS_prewarm),
                           InstanceMethod("dispose", &QueueWrap::JS_dispose),
                           InstanceAccessor("threads", &QueueWrap::JS_threads, nullptr),
                           InstanceAccessor("isa", &QueueWrap::JS_isa, nullptr),
                           InstanceAccessor("disposed", &QueueWrap::JS_disposed, nullptr),
                           InstanceAccessor("device", &QueueWrap::JS_device, nullptr),
                           InstanceAccessor("precision", &QueueWrap::JS_precision, nullptr),
                           InstanceAccessor("kernels", &QueueWrap::JS_kernels, nullptr),
                       });
  }

 private:
  void shutdown() {
    if (!queue_) return;
    queue_.reset();  // joins: pending jobs fail with DVL_DISPOSED, pending syncs settle
    pending_->tsfn.Release();
    if (has_cleanup_) {
      has_cleanup_ = false;
      try {
        cleanup_.Remove(Env());
      } catch (...) {  // environment already going away: nothing left to remove
      }
    }
  }

  ExecQueue& need_queue() {
    if (!queue_) throw Error(DVL_ERR_DISPOSED, "the queue was disposed");
    return *queue_;
  }

  // Creates a promise settled on the JS thread after every job queued so far has run.
  Napi::Promise enqueue_settle(Napi::Env env, std::function<void(Settle*)> fill) {
    auto d = Napi::Promise::Deferred::New(env);
    Settle* s = new Settle{pending_, d, nullptr, false, DType::F32, {}, false, {}};
    if (pending_->n++ == 0) pending_->tsfn.Ref(env);
    Tsfn tsfn = pending_->tsfn;
    queue_->push_sync([tsfn, s, fill](std::exception_ptr err) mutable {
      s->err = err;
      if (!err && fill) {
        try {
          fill(s);
        } catch (...) {
          s->err = std::current_exception();
        }
      }
      if (tsfn.BlockingCall(s) != napi_ok) delete s;  // env is going away
    });
    return d.Promise();
  }

  Napi::Value JS_op(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Value result = env.Undefined();
    guarded(env, [&] {
      ExecQueue& q = need_queue();
      DvlAddon* addon = env.GetInstanceData<DvlAddon>();
      if (info.Length() < 2 || !info[0].IsString() || !info[1].IsArray())
        throw Error(DVL_ERR_ARG, "Queue.op(name, inputs[], attrs?): bad arguments");
      std::string name = info[0].As<Napi::String>().Utf8Value();
      const OpDef* def = op_find(name);
      if (!def) throw Error(DVL_ERR_ARG, "unknown op '" + name + "'");
      Napi::Array ia = info[1].As<Napi::Array>();
      auto in = std::make_shared<Tensors>();
      for (uint32_t i = 0; i < ia.Length(); ++i) {
        Napi::Value v = ia.Get(i);
        if (v.IsNull() || v.IsUndefined()) {
          in->push_back(nullptr);
          continue;
        }
        std::string what = name + ": input " + std::to_string(i);
        in->push_back(addon->unwrap_tensor(env, v, what.c_str()));
      }
      auto attrs = std::make_shared<OpAttrs>();
      if (info.Length() > 2 && info[2].IsObject()) attrs_from_js(name, info[2].As<Napi::Object>(), *attrs);
      for (size_t i = 0; i < in->size(); ++i) {
        const TensorP& t = (*in)[i];
        if (t && t->storage && !t->storage->owned() && !t->storage->data && t->nbytes())
          throw Error(DVL_ERR_ARG, name + ": input " + std::to_string(i) + " (" + t->describe() +
                                       ") is a placeholder of a recorded plan; it has no memory outside the plan");
      }
      std::shared_ptr<Tensors> out;
      ExecQueue::Job job = make_op_job(device_, *def, in, out, attrs);
      if (job) q.push(std::move(job), !serial_op(*def, *in, *out, *attrs));
      Napi::Array ra = Napi::Array::New(env, out->size());
      for (size_t i = 0; i < out->size(); ++i) ra.Set(uint32_t(i), addon->wrap_tensor(env, (*out)[i]));
      result = ra;
    });
    return result;
  }

  // stats() → { jobs, idleStarts, idleWaitMs, forks, forksJoined, poolWakes }: see ExecQueue::Stats.
  Napi::Value JS_stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    ExecQueue::Stats s = queue_ ? queue_->stats() : ExecQueue::Stats{0, 0, 0, 0, 0, 0};
    o.Set("jobs", double(s.jobs));
    o.Set("idleStarts", double(s.idle_starts));
    o.Set("idleWaitMs", double(s.idle_wait_ns) / 1e6);
    o.Set("forks", double(s.forks));
    o.Set("forksJoined", double(s.forks_joined));
    o.Set("poolWakes", double(s.pool_wakes));
    return o;
  }

  // setProfiling(on): time every CPU op job from now on (on restarts the counts); profile.h.
  Napi::Value JS_setProfiling(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    guarded(env, [&] {
      if (info.Length() < 1 || !info[0].IsBoolean()) throw Error(DVL_ERR_ARG, "Queue.setProfiling(on): on must be a boolean");
      need_queue().set_profiling(info[0].As<Napi::Boolean>().Value());
    });
    return env.Undefined();
  }

  // profile() → [{ op, calls, ms, weightBytes }], in op-name order: the jobs timed since
  // setProfiling(true); read after a sync to include everything queued before it.
  Napi::Value JS_profile(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array a = Napi::Array::New(env);
    if (!queue_) return a;
    uint32_t i = 0;
    for (const auto& [key, e] : queue_->profile().snapshot()) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("op", key);
      o.Set("calls", double(e.calls));
      o.Set("ms", double(e.ns) / 1e6);
      o.Set("weightBytes", double(e.weight_bytes));
      a.Set(i++, o);
    }
    return a;
  }

  // record() → a PlanBuilder for this queue's device (plan_wrap.cpp).
  Napi::Value JS_record(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Value result = env.Undefined();
    guarded(env, [&] {
      need_queue();
      result = new_plan_builder(env, device_);
    });
    return result;
  }

  // A replay's job and outputs from (plan, values[], params[]) arguments at info[i0..]: checked
  // and planned, not yet pushed.
  struct PlannedReplay {
    ExecQueue::Job job;
    Tensors outs;
    bool wants_pool = true;
  };
  PlannedReplay plan_replay(Napi::Env env, const Napi::CallbackInfo& info, const char* call) {
    DvlAddon* addon = env.GetInstanceData<DvlAddon>();
    if (info.Length() < 3 || !info[1].IsArray() || !info[2].IsArray())
      throw Error(DVL_ERR_ARG, std::string(call) + ": bad arguments");
    std::shared_ptr<Plan> plan = unwrap_plan(env, info[0]);
    if (plan->device() != device_) throw Error(DVL_ERR_ARG, std::string(call) + ": the plan was recorded for another device");
    Napi::Array va = info[1].As<Napi::Array>();
    std::vector<PlanValue> values(va.Length());
    for (uint32_t i = 0; i < va.Length(); ++i) {
      Napi::Value v = va.Get(i);
      if (v.IsTypedArray()) {
        Napi::TypedArray ta = v.As<Napi::TypedArray>();
        const char* src = static_cast<const char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
        values[i].bytes = staging_copy(src, ta.ByteLength());
      } else {
        std::string what = std::string(call) + ": value " + std::to_string(i);
        values[i].bound = addon->unwrap_tensor(env, v, what.c_str());
      }
    }
    Napi::Array pa = info[2].As<Napi::Array>();
    std::vector<double> params(pa.Length());
    for (uint32_t i = 0; i < pa.Length(); ++i) {
      Napi::Value v = pa.Get(i);
      if (!v.IsNumber()) throw Error(DVL_ERR_ARG, std::string(call) + ": params must be numbers");
      params[i] = v.As<Napi::Number>().DoubleValue();
    }
    PlannedReplay r;
    r.job = plan->replay(std::move(values), std::move(params), r.outs, &r.wants_pool);
    return r;
  }

  // replay(plan, values[], params[]) → output tensors; one job runs the whole plan.
  Napi::Value JS_replay(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Value result = env.Undefined();
    guarded(env, [&] {
      ExecQueue& q = need_queue();
      DvlAddon* addon = env.GetInstanceData<DvlAddon>();
      PlannedReplay r = plan_replay(env, info, "Queue.replay(plan, values[], params[])");
      q.push(std::move(r.job), r.wants_pool);
      Napi::Array ra = Napi::Array::New(env, r.outs.size());
      for (size_t i = 0; i < r.outs.size(); ++i) ra.Set(uint32_t(i), addon->wrap_tensor(env, r.outs[i]));
      result = ra;
    });
    return result;
  }

  // replayRemaskRead(plan, values[], params[], groups[]) → Promise<TypedArray[]>: replay, then
  // remaskRead over the replay's first output (the logits), in one call — a decode step's whole
  // host side: the logits never become a JS tensor. The replay is pushed as soon as it is
  // planned, so the forward runs while the remask jobs are planned (planning them first put
  // ≈ 5-10 µs of host work in front of every step: decode ×1.03); a bad group then fails the
  // call with no remask queued, the forward having run for nothing (it rewrites the same
  // cache positions a retry rewrites).
  Napi::Value JS_replayRemaskRead(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Value result = env.Undefined();
    guarded(env, [&] {
      ExecQueue& q = need_queue();
      const char* call = "Queue.replayRemaskRead(plan, values[], params[], groups[])";
      if (info.Length() < 4 || !info[3].IsArray() || info[3].As<Napi::Array>().Length() == 0)
        throw Error(DVL_ERR_ARG, std::string(call) + ": bad arguments (no groups?)");
      PlannedReplay r = plan_replay(env, info, call);
      if (r.outs.empty()) throw Error(DVL_ERR_ARG, std::string(call) + ": the plan has no output");
      TensorP logits = r.outs[0];
      q.push(std::move(r.job), r.wants_pool);
      RemaskJobs m = plan_remask(env, logits, info[3].As<Napi::Array>(), "Queue.replayRemaskRead");
      result = push_remask(env, q, m);
    });
    return result;
  }

  Napi::Value JS_sync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Value result = env.Undefined();
    guarded(env, [&] {
      need_queue();
      // A CUDA queue's ops are only enqueued on the stream: wait for them and surface their errors.
      result = enqueue_settle(env, device_ == Device::Cuda ? std::function<void(Settle*)>([](Settle*) { cuda_synchronize(); })
                                                           : std::function<void(Settle*)>(nullptr));
    });
    return result;
  }

  // read(tensor) → Promise<TypedArray> holding a copy of the tensor after queued ops ran;
  // read([t0, t1, ...]) → Promise<TypedArray[]>: one settle for several (the decoder reads a
  // step's ids, confidences and reveal flags together).
  Napi::Value JS_read(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Value result = env.Undefined();
    guarded(env, [&] {
      need_queue();
      if (info.Length() < 1) throw Error(DVL_ERR_ARG, "Queue.read(tensor): missing tensor");
      DvlAddon* addon = env.GetInstanceData<DvlAddon>();
      const bool many = info[0].IsArray();
      Tensors ts;
      if (many) {
        Napi::Array a = info[0].As<Napi::Array>();
        for (uint32_t i = 0; i < a.Length(); ++i) ts.push_back(addon->unwrap_tensor(env, a.Get(i), "Queue.read: element"));
      } else {
        ts.push_back(addon->unwrap_tensor(env, info[0], "Queue.read: argument"));
      }
      for (const TensorP& t : ts)
        if (t->on_cuda() && device_ != Device::Cuda)
          throw Error(DVL_ERR_ARG, "Queue.read: " + t->describe() + " is a GPU tensor; read it on its CUDA queue");
      result = enqueue_settle(env, [ts, many](Settle* s) { copy_out(ts, many, s); });
    });
    return result;
  }

  // A settle's copies of tensors (queue thread, after every earlier job ran).
  static void copy_out(const Tensors& ts, bool many, Settle* s) {
    s->many = many;
    for (const TensorP& t : ts) {
      std::vector<char> data(t->nbytes());
      if (!data.empty()) {
        if (t->on_cuda()) cuda_read_into(*t, data.data());
        else std::memcpy(data.data(), t->raw(), data.size());
      }
      if (many) {
        s->parts.emplace_back(t->dtype, std::move(data));
      } else {
        s->has_data = true;
        s->dtype = t->dtype;
        s->data = std::move(data);
      }
    }
  }

  // The jobs of a remaskRead over `logits` (checked and planned, not pushed) and what it reads.
  struct RemaskJobs {
    std::vector<std::pair<ExecQueue::Job, bool>> jobs;
    Tensors reads;
  };
  RemaskJobs plan_remask(Napi::Env env, const TensorP& logits, Napi::Array ga, const char* call) {
    static const OpDef* narrow = op_find("narrow_rows");
    static const OpDef* remask = op_find("confidence_remask");
    const uint32_t ng = ga.Length();
    if (ng == 0) throw Error(DVL_ERR_ARG, std::string(call) + ": no groups");
    RemaskJobs m;
    for (uint32_t g = 0; g < ng; ++g) {
      const std::string at = std::string(call) + ": group " + std::to_string(g);
      Napi::Value gv = ga.Get(g);
      if (!gv.IsArray() || gv.As<Napi::Array>().Length() != 3) throw Error(DVL_ERR_ARG, at + " must be [row0, rows, attrs]");
      Napi::Array ge = gv.As<Napi::Array>();
      Napi::Value r0v = ge.Get(0u), rnv = ge.Get(1u), av = ge.Get(2u);
      if (!r0v.IsNumber() || !rnv.IsNumber() || !av.IsObject()) throw Error(DVL_ERR_ARG, at + " must be [row0, rows, attrs]");
      auto in = std::make_shared<Tensors>(Tensors{logits});
      const double row0 = r0v.As<Napi::Number>().DoubleValue(), rows = rnv.As<Napi::Number>().DoubleValue();
      if (logits->shape.empty() || row0 != 0 || rows != double(logits->dim(0))) {
        // A view of the rows (narrow_rows checks the range, naming the op and the tensor).
        auto na = std::make_shared<OpAttrs>();
        na->num["start"] = row0;
        na->num["len"] = rows;
        std::shared_ptr<Tensors> view;
        ExecQueue::Job job = make_op_job(device_, *narrow, in, view, na);
        if (job) m.jobs.emplace_back(std::move(job), false);
        in = std::make_shared<Tensors>(Tensors{(*view)[0]});
      }
      auto attrs = std::make_shared<OpAttrs>();
      attrs_from_js("confidence_remask", av.As<Napi::Object>(), *attrs);
      std::shared_ptr<Tensors> out;
      ExecQueue::Job job = make_op_job(device_, *remask, in, out, attrs);
      const bool wants_pool = !serial_op(*remask, *in, *out, *attrs);
      if (job) m.jobs.emplace_back(std::move(job), wants_pool);
      m.reads.insert(m.reads.end(), out->begin(), out->end());
    }
    return m;
  }
  Napi::Value push_remask(Napi::Env env, ExecQueue& q, RemaskJobs& m) {
    for (auto& [job, wants_pool] : m.jobs) q.push(std::move(job), wants_pool);
    Tensors reads = std::move(m.reads);
    return enqueue_settle(env, [reads](Settle* s) { copy_out(reads, true, s); });
  }

  // remaskRead(logits, groups) → Promise<TypedArray[]>: for each group [row0, rows, attrs], the
  // confidence_remask op over logits rows [row0, row0 + rows) with those attrs; then one read of
  // every group's ids, confidences and reveal flags (three arrays per group, in order). A decode
  // step's remask and read in one call: its outputs never become JS tensors (three wrapped
  // objects made and disposed per step, and their unwrapping for the read, were most of the
  // remask's host cost). Everything is checked and planned before anything is pushed: a bad
  // group queues nothing.
  Napi::Value JS_remaskRead(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Value result = env.Undefined();
    guarded(env, [&] {
      ExecQueue& q = need_queue();
      DvlAddon* addon = env.GetInstanceData<DvlAddon>();
      if (info.Length() < 2 || !info[1].IsArray())
        throw Error(DVL_ERR_ARG, "Queue.remaskRead(logits, groups[]): bad arguments");
      TensorP logits = addon->unwrap_tensor(env, info[0], "Queue.remaskRead: logits");
      RemaskJobs m = plan_remask(env, logits, info[1].As<Napi::Array>(), "Queue.remaskRead");
      result = push_remask(env, q, m);
    });
    return result;
  }

  // write(tensor, data) — enqueues a copy of data (taken now) into the tensor.
  Napi::Value JS_write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    guarded(env, [&] {
      ExecQueue& q = need_queue();
      if (info.Length() < 2 || !info[1].IsTypedArray()) throw Error(DVL_ERR_ARG, "Queue.write(tensor, typedArray): bad arguments");
      TensorP t = env.GetInstanceData<DvlAddon>()->unwrap_tensor(env, info[0], "Queue.write: argument");
      Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
      if (ta.ByteLength() != t->nbytes())
        throw Error(DVL_ERR_SHAPE, "Queue.write: " + std::to_string(ta.ByteLength()) + " bytes given for " + t->describe());
      auto copy = std::shared_ptr<std::vector<char>>(
          new std::vector<char>(staging_copy(static_cast<const char*>(ta.ArrayBuffer().Data()) + ta.ByteOffset(), ta.ByteLength())),
          [](std::vector<char>* v) {
            staging_give(*v);
            delete v;
          });
      bool dev = t->on_cuda();
      if (dev && device_ != Device::Cuda) throw Error(DVL_ERR_ARG, "Queue.write: " + t->describe() + " is a GPU tensor; write it on its CUDA queue");
      q.push([t, copy, dev](OpContext&) {
        if (copy->empty()) return;
        if (dev) cuda_write_from(*t, copy->data(), copy->size());
        else std::memcpy(t->raw(), copy->data(), copy->size());
      });
    });
    return env.Undefined();
  }

  // prewarm(us, pool): see ExecQueue::prewarm; a hint, so bad arguments do nothing.
  Napi::Value JS_prewarm(const Napi::CallbackInfo& info) {
    if (queue_ && info.Length() >= 1 && info[0].IsNumber()) {
      const double us = info[0].As<Napi::Number>().DoubleValue();
      const bool pool = info.Length() >= 2 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
      if (us > 0 && us <= 1e5) queue_->prewarm(int64_t(us), pool);  // at most 0.1 s of spinning
    }
    return info.Env().Undefined();
  }

  Napi::Value JS_cancel(const Napi::CallbackInfo& info) {
    if (queue_) queue_->cancel();
    return info.Env().Undefined();
  }

  Napi::Value JS_dispose(const Napi::CallbackInfo& info) {
    shutdown();
    return info.Env().Undefined();
  }

  Napi::Value JS_threads(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), queue_ ? queue_->threads() : 0);
  }
  Napi::Value JS_isa(const Napi::CallbackInfo& info) {
    if (!queue_) return info.Env().Null();
    return Napi::String::New(info.Env(), isa_name(queue_->kernels().isa));
  }
  Napi::Value JS_disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !queue_); }
  Napi::Value JS_precision(const Napi::CallbackInfo& info) {
    if (!queue_) return info.Env().Null();
    return Napi::String::New(info.Env(), queue_->precision() == Precision::Fast ? "fast" : "exact");
  }
  // What the CPU matmul runs for each weight dtype at this queue's level and precision.
  Napi::Value JS_kernels(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!queue_) return env.Null();
    const CpuKernels& k = queue_->kernels();
    const bool fast = queue_->precision() == Precision::Fast;
    const std::string lvl = isa_name(k.isa);
    const std::string exact = "f32 FMA (" + lvl + "): f32 activations, exact products, f32 accumulation";
    Napi::Object o = Napi::Object::New(env);
    o.Set("isa", lvl);
    o.Set("precision", fast ? "fast" : "exact");
    o.Set("f32", exact);
    o.Set("f16", exact + " (weights widened exactly)");
    const bool packed = fast && k.bf16p_pack;
    const std::string bf16_kernel = fast && k.bf16_fast_kernel ? std::string(k.bf16_fast_kernel) : exact + " (weights widened exactly)";
    o.Set("bf16", packed ? bf16_kernel + "; weights packed at load in panels of 16 rows (bf16p), one output row per lane" : bf16_kernel);
    o.Set("bf16Packed", packed);
    const bool q8packed = fast && k.matmul_q8p_fast != nullptr;
    o.Set("q8", q8packed ? std::string(k.q8_fast_kernel) + "; weights packed at load in panels of 16 rows (q8p)"
                : fast ? std::string(k.q8_fast_kernel) : exact + " (weights dequantised exactly)");
    o.Set("q8Packed", q8packed);
    return o;
  }
  Napi::Value JS_device(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), device_ == Device::Cuda ? "cuda" : "cpu");
  }

  std::unique_ptr<ExecQueue> queue_;
  Device device_ = Device::Cpu;
  std::shared_ptr<Pending> pending_;
  Napi::Env::CleanupHook<std::function<void()>> cleanup_;
  bool has_cleanup_ = false;

};

namespace {

Napi::Value typed_copy(Napi::Env env, DType dt, const std::vector<char>& data) {
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, data.size());
  if (!data.empty()) std::memcpy(ab.Data(), data.data(), data.size());
  switch (dt) {
    case DType::F32: return Napi::Float32Array::New(env, data.size() / 4, ab, 0);
    case DType::I32: return Napi::Int32Array::New(env, data.size() / 4, ab, 0);
    case DType::BF16:
    case DType::BF16P:  // the panels as stored (dtype.h), padding included
    case DType::F16: return Napi::Uint16Array::New(env, data.size() / 2, ab, 0);
    default: return Napi::Uint8Array::New(env, data.size(), ab, 0);
  }
}

void settle_on_js(Napi::Env env, Napi::Function fn, void* ctx, Settle* s) {
  // Never let a C++ exception escape a thread-safe-function callback (it would terminate the
  // process); during environment teardown napi calls fail and the wrapper throws.
  try {
    settle_on_js_impl(env, fn, ctx, s);
  } catch (...) {
  }
}

void settle_on_js_impl(Napi::Env env, Napi::Function, void*, Settle* s) {
  std::unique_ptr<Settle> own(s);
  if (env == nullptr) return;  // tearing down
  Napi::HandleScope scope(env);
  if (--s->pending->n == 0) s->pending->tsfn.Unref(env);
  if (s->err) {
    std::string code = DVL_ERR_INTERNAL, msg = "unknown native error";
    try {
      std::rethrow_exception(s->err);
    } catch (const Error& e) {
      code = e.code();
      msg = e.what();
    } catch (const std::bad_alloc&) {
      code = DVL_ERR_ALLOC;
      msg = "out of memory";
    } catch (const std::exception& e) {
      msg = e.what();
    } catch (...) {
    }
    s->deferred.Reject(DvlAddon::make_error_value(env, code, msg));
  } else if (s->many) {
    Napi::Array a = Napi::Array::New(env, s->parts.size());
    for (size_t i = 0; i < s->parts.size(); ++i) a.Set(uint32_t(i), typed_copy(env, s->parts[i].first, s->parts[i].second));
    s->deferred.Resolve(a);
  } else if (s->has_data) {
    s->deferred.Resolve(typed_copy(env, s->dtype, s->data));
  } else {
    s->deferred.Resolve(env.Undefined());
  }
}

}  // namespace

void queue_class_init(Napi::Env env, Napi::Object exports, DvlAddon* addon) {
  Napi::Function ctor = QueueWrap::define(env);
  addon->queue_ctor = Napi::Persistent(ctor);
  exports.Set("Queue", ctor);
}

}  // namespace dvl
