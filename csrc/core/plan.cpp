// plan.cpp — see plan.h.
#include "plan.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "../cpu/ops/ops.h"
#include "../cuda/host/cuda_loader.h"
#include "../cuda/host/cuda_queue.h"
#include "error.h"
#include "staging.h"

namespace dvl {

ExecQueue::Job make_op_job(Device dev, const OpDef& def, std::shared_ptr<Tensors> in, std::shared_ptr<Tensors>& out,
                           std::shared_ptr<OpAttrs> attrs) {
  if (def.parse_into) def.parse_into(*in, *attrs);  // parsed once: plan, the CPU run and the CUDA run share it
  if (dev == Device::Cuda) return cuda_queue_op(def, in, out, attrs);
  check_host_inputs(def.name(), *in);
  out = std::make_shared<Tensors>(def.plan(*in, *attrs));
  const OpDef* d = &def;  // the registry's: lives as long as the addon
  return [d, in, out, attrs](OpContext& ctx) {
    if (!ctx.profile) return d->run(ctx, *in, *out, *attrs);
    const int64_t t0 = steady_now_ns();
    d->run(ctx, *in, *out, *attrs);
    const uint64_t ns = uint64_t(steady_now_ns() - t0);
    // Key: the name, a matmul's weight dtype, and the rows of the result (its leading dims) when
    // it has rows — a prefill's ops then stand apart from a decode step's.
    std::string key = d->name();
    uint64_t weight_bytes = 0;
    if (d->id == OpId::Matmul && in->size() >= 2 && (*in)[1]) {
      key += std::string(" ") + dtype_name((*in)[1]->dtype);
      weight_bytes = uint64_t((*in)[1]->nbytes());
    }
    if (!out->empty() && (*out)[0] && (*out)[0]->rank() >= 2) {
      const Tensor& y = *(*out)[0];
      int64_t rows = 1;
      for (int i = 0; i + 1 < y.rank(); ++i) rows *= y.dim(i);
      if (d->id != OpId::Matmul) rows = y.dim(0);  // [n, heads, dim] and the like: n
      key += " \u00d7" + std::to_string(rows);
    }
    ctx.profile->add(key, ns, weight_bytes);
  };
}

namespace {

// Work below which an op runs on one thread: ≈ 10-40 µs on one core (the fast kernels do 2^20
// multiply-adds in ≈ 5-10 µs, the exact ones in ≈ 10-20) — a fork/join with a spinning worker
// costs ~1 µs, with a sleeping or descheduled one 10 µs to a time slice. 2^21, not 2^20: a
// small model's block step (16 rows; the bundled child's gate/up product is 1.6 M) then never
// wakes the workers, which spun beside the JS thread on 2 cores between steps — its decode
// phase ×0.97, a 64-token text answer ×0.95 paired; at 2^18 (qkv and down split too) ×1.11.
// A matmul whose weight is larger than kSerialWeightBytes still splits: a one-row product is
// bound by how fast the weight streams in, and two cores read it faster than one.
constexpr double kSerialMacs = double(1 << 21);        // matmul / attention multiply-adds
constexpr double kSerialWeightBytes = double(1 << 19); // 512 KiB
// Elements touched by the other ops. 2^15, not 2^17: a vision tower's 252 × 96 add or norm
// (48-73 K elements) reads rows two threads' matmul just wrote, half of them in the other core's
// cache; split like that matmul, each thread finds its own rows (ThreadPool parallel_for_tid
// shares). A tower block's chain on two threads 374 → 342 µs; a block step's ops stay serial.
constexpr double kSerialElements = double(1 << 15);
// Attention by its multiply-adds with the keys it has now (2·rows·heads·hd·keys). A plan's
// attention whose keys are patched (a decode step: they grow as the answer does) is judged
// again at every replay, so a long context still splits while a short one (a small model's
// block step: 16 rows, ≈ 110 keys, ≈ 0.45 M) stays on the queue thread — its fork gained
// ≤ 20 % of ≈ 9 µs and kept a worker spinning beside the JS thread.
constexpr double kSerialAttentionMacs = double(1 << 20);

double numel_of(const TensorP& t) { return t ? double(t->numel()) : 0.0; }

}  // namespace

bool serial_op(const OpDef& def, const Tensors& in, const Tensors& out, const OpAttrs& a) {
  if (def.id == OpId::Matmul && in.size() >= 2 && in[0] && in[1])
    return double(rows_of(*in[0])) * double(in[1]->dim(0)) * double(in[1]->dim(1)) < kSerialMacs &&
           double(in[1]->nbytes()) < kSerialWeightBytes;
  if (def.id == OpId::Attention && !in.empty() && in[0] && in[0]->rank() == 3)
    return 2.0 * double(in[0]->numel()) * double(a.attention.kvLen) < kSerialAttentionMacs;
  if (def.id == OpId::AttentionBatch && !in.empty() && in[0] && in[0]->rank() == 3) {
    // The longest sequence's keys (not the caches' whole capacity, which made every decode
    // step of a small model look parallel).
    double keys = 0;
    for (const BatchSeq& s : a.attention_batch.seqs) keys = std::max(keys, double(s.pos0 + s.row1 - s.row0));
    return 2.0 * double(in[0]->numel()) * keys < kSerialAttentionMacs;
  }
  // Caches written in place count by the rows written, not by their capacity (their output is
  // the cache itself).
  if (def.id == OpId::KvCacheAppend || def.id == OpId::KvCacheAppendBatch || def.id == OpId::ScatterRows)
    return 2.0 * numel_of(in.size() > 1 ? in[1] : nullptr) < kSerialElements;
  if (def.id == OpId::QkvRopeSplit)  // its rows (and the caches it may write, by those rows)
    return 3.0 * numel_of(in.empty() ? nullptr : in[0]) < kSerialElements;
  // Row gathers (an embedding lookup, a RoPE table's rows) touch the rows they copy, not the
  // whole table they read from.
  if (def.id == OpId::Embedding || def.id == OpId::GatherRows)
    return 2.0 * (out.empty() ? 0.0 : numel_of(out[0])) < kSerialElements;
  double n = 0;
  for (const TensorP& t : in) n += t && t->numel() < (int64_t(1) << 24) ? numel_of(t) : 0;
  for (const TensorP& t : out) n += numel_of(t);
  return n < kSerialElements;
}

void Plan::need_recording(const char* what) const {
  if (finished_) throw Error(DVL_ERR_ARG, std::string("plan: ") + what + " after finish()");
}

Tensors Plan::record(const OpDef& def, Tensors in, Attrs attrs, std::vector<AttrPatch> patches) {
  need_recording("op");
  const std::string name = def.name();
  for (const AttrPatch& p : patches) {
    if (p.param < 0 || p.len < 0) throw Error(DVL_ERR_ARG, name + ": a patched attribute needs a parameter index and length >= 0");
    if (p.len == 0 && !attrs.num.count(p.key))
      throw Error(DVL_ERR_ARG, name + ": patched attribute '" + p.key + "' needs a numeric value at record time");
    if (p.len > 0 && (!attrs.arr.count(p.key) || attrs.arr.at(p.key).size() != size_t(p.len)))
      throw Error(DVL_ERR_ARG, name + ": patched attribute '" + p.key + "' needs an array of " + std::to_string(p.len) + " numbers at record time");
  }
  auto ip = std::make_shared<Tensors>(std::move(in));
  auto ap = std::make_shared<OpAttrs>(std::move(attrs));
  std::shared_ptr<Tensors> out;
  ExecQueue::Job job;
  {
    DeferAllocScope defer;
    job = make_op_job(dev_, def, ip, out, ap);
  }
  // A view (reshape) or an allocation (empty) has nothing to run: its storage is placed like
  // any other intermediate. (In a plan, `empty` is scratch: its contents are undefined.)
  if (job && !op_is_view_or_alloc(def.id)) {
    const bool serial = serial_op(def, *ip, *out, *ap);
    // Attention with patched attributes: its keys change per replay, so is its split (replay).
    const bool dynamic = !patches.empty() && (def.id == OpId::Attention || def.id == OpId::AttentionBatch);
    Op op{&def, ip, out, ap, std::make_shared<const Attrs>(static_cast<const Attrs&>(*ap)), std::move(patches), std::move(job), serial, dynamic};
    ops_.push_back(std::move(op));
  } else if (!patches.empty()) {
    throw Error(DVL_ERR_ARG, name + ": has nothing to run, so it cannot take patched attributes");
  }
  return *out;
}

TensorP Plan::add_data_input(DType dt, std::vector<int64_t> shape) {
  need_recording("input");
  TensorP t;
  if (dev_ == Device::Cuda) {
    // A place in the plan's one device input block (finish), uploaded with one copy per replay.
    t = std::make_shared<Tensor>();
    t->dtype = dt;
    t->shape = std::move(shape);
    for (int64_t d : t->shape)
      if (d < 0) throw Error(DVL_ERR_SHAPE, "plan: negative dimension in input " + t->describe());
    t->storage = Storage::slot(t->nbytes(), dev_);
  } else {
    t = Tensor::alloc(dt, std::move(shape), dev_);
  }
  inputs_.push_back({false, t});
  return t;
}

TensorP Plan::add_bound_input(DType dt, std::vector<int64_t> shape) {
  need_recording("bind");
  auto t = std::make_shared<Tensor>();
  t->dtype = dt;
  t->shape = std::move(shape);
  for (int64_t d : t->shape)
    if (d < 0) throw Error(DVL_ERR_SHAPE, "plan: negative dimension in bound input " + t->describe());
  t->storage = Storage::slot(t->nbytes(), dev_);
  inputs_.push_back({true, t});
  return t;
}

namespace {

struct Life {
  std::shared_ptr<Storage> s;
  size_t first, last, bytes, offset = 0;
};

constexpr size_t kAlign = 64;

size_t round_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// First fit, largest first: each buffer goes at the lowest offset that overlaps no placed
// buffer whose lifetime [first, last] (op indices, inclusive) meets its own. Inclusive ends
// matter: an op's inputs and outputs are both live at that op, so an output never lands on an
// input it is computed from.
size_t place(std::vector<Life*>& items) {
  std::sort(items.begin(), items.end(), [](const Life* a, const Life* b) {
    return a->bytes != b->bytes ? a->bytes > b->bytes : a->first < b->first;
  });
  std::vector<Life*> placed;
  size_t total = 0;
  for (Life* it : items) {
    std::vector<std::pair<size_t, size_t>> busy;  // [offset, end) of live-overlapping buffers
    for (const Life* p : placed)
      if (p->first <= it->last && it->first <= p->last) busy.push_back({p->offset, p->offset + p->bytes});
    std::sort(busy.begin(), busy.end());
    size_t off = 0;
    for (const auto& b : busy) {
      if (off + it->bytes <= b.first) break;
      off = std::max(off, b.second);
    }
    it->offset = off;
    total = std::max(total, off + it->bytes);
    placed.push_back(it);
  }
  return total;
}

}  // namespace

void Plan::apply_patch(Attrs& a, const AttrPatch& p, const std::vector<double>& params) {
  if (p.len == 0) {
    a.num[p.key] = params[size_t(p.param)] + p.offset;
  } else {
    std::vector<double>& v = a.arr[p.key];  // exists with this length (record checked it): no allocation
    std::copy(params.begin() + p.param, params.begin() + p.param + p.len, v.begin());
  }
}

// ---- row segments ------------------------------------------------------------------------
//
// Between two attentions a transformer block is a chain of row-local ops: output row r of a
// matmul, an add, a norm or an activation depends on row r of its row inputs alone (and on
// whole weights). Forked op by op, two threads met at every op's join and each op's split fell
// a little differently, so rows crossed cores between ops. A row segment runs such a chain in
// one fork: each thread takes the same rows through every op of it (its own one-thread pool
// and scratch). Same bits: a matmul's row does not depend on which other rows share its call
// (the batch scheduler relies on that), the other ops are row-wise. A plan keeps every buffer a
// segment touches live across the whole segment, so no op writes a place another thread still
// reads.

// Rows of an op whose output rows each depend on the same row of its row inputs only (bits of
// *mask: which inputs those are), or -1. Row inputs and outputs are f32 with that leading dim.
static int64_t row_local(const OpDef& def, const Tensors& in, const Tensors& out, uint32_t* mask) {
  auto rows_f32 = [](const TensorP& t) { return t && t->dtype == DType::F32 && t->rank() >= 2 ? t->dim(0) : int64_t(-1); };
  int64_t n = -1;
  switch (def.id) {
    case OpId::Matmul:  // x [n, K] · W (+ bias)
      // A large weight is better split by columns (each core reads half of it, see
      // kSerialWeightBytes) than read whole by every thread of a segment.
      if (in.size() < 2 || !in[1] || double(in[1]->nbytes()) > kSerialWeightBytes) return -1;
      n = rows_f32(in[0]);
      *mask = 1u;
      break;
    case OpId::RmsNorm:  // x [n, .., H], w [H]
    case OpId::Silu:
    case OpId::Gelu:
    case OpId::GeluTanh:
      if (in.empty()) return -1;
      n = rows_f32(in[0]);
      *mask = 1u;
      break;
    case OpId::Add:  // same shapes only (no broadcast row)
    case OpId::Swiglu:
      if (in.size() != 2 || !in[0] || !in[1] || in[0]->shape != in[1]->shape) return -1;
      n = rows_f32(in[0]);
      *mask = 3u;
      break;
    default:
      return -1;
  }
  if (n < 1 || out.empty()) return -1;
  for (const TensorP& t : out)
    if (rows_f32(t) != n) return -1;
  return n;
}

// Rows worth a segment. The bundled child's text prefill (≈ 40 rows) ran ×1.06 slower as a
// segment than op by op (its products stay on the queue thread there); its picture prefill
// (≈ 100 rows) ×0.98 and the vision tower (252) ×0.97 faster.
constexpr int64_t kSegmentMinRows = 64;

void Plan::find_segments() {
  segments_ = 0;
  if (dev_ != Device::Cpu) return;
  size_t i = 0;
  while (i < ops_.size()) {
    uint32_t mask = 0;
    const int64_t n = ops_[i].patches.empty() ? row_local(*ops_[i].def, *ops_[i].in, *ops_[i].out, &mask) : -1;
    if (n < kSegmentMinRows) { ++i; continue; }
    ops_[i].row_inputs = mask;
    std::unordered_map<const Storage*, bool> made;  // written inside the segment so far
    for (const TensorP& t : *ops_[i].out) made[t->storage.get()] = true;
    bool parallel = !ops_[i].serial;
    size_t j = i + 1;
    for (; j < ops_.size(); ++j) {
      Op& op = ops_[j];
      uint32_t m = 0;
      if (!op.patches.empty() || row_local(*op.def, *op.in, *op.out, &m) != n) break;
      // A whole input written inside the segment would be read while other threads write it.
      bool whole_made = false;
      for (size_t k = 0; k < op.in->size(); ++k)
        if (!(m >> k & 1u) && (*op.in)[k] && made.count((*op.in)[k]->storage.get())) whole_made = true;
      if (whole_made) break;
      op.row_inputs = m;
      for (const TensorP& t : *op.out) made[t->storage.get()] = true;
      parallel = parallel || !op.serial;
    }
    if (j - i >= 2 && parallel) {
      ops_[i].seg_end = j;
      ops_[i].seg_rows = n;
      ++segments_;
    }
    i = j;
  }
}

void Plan::finish(const Tensors& outputs, int nparams, bool fresh_outputs) {
  need_recording("finish");
  if (nparams < 0) throw Error(DVL_ERR_ARG, "plan: nparams must be >= 0");
  for (const Op& op : ops_)
    for (const AttrPatch& p : op.patches)
      if (p.param + std::max(p.len, 1) > nparams)
        throw Error(DVL_ERR_ARG, std::string(op.def->name()) + ": patched attribute '" + p.key + "' uses parameter " +
                                     std::to_string(p.param) + " of " + std::to_string(nparams));
  for (const TensorP& t : outputs)
    if (!t) throw Error(DVL_ERR_ARG, "plan: an output is missing");

  // Intermediates: slot storage this plan created whose place is not yet decided. Bound
  // inputs are slots too, but their place is the caller's tensor at each replay.
  std::unordered_map<const Storage*, bool> bound;
  for (const Input& in : inputs_)
    if (in.bound || dev_ == Device::Cuda) bound[in.t->storage.get()] = true;  // not arena intermediates
  find_segments();
  // An op inside a row segment counts as running from the segment's first op to its last: the
  // threads move through the segment at their own pace (Plan::run_segment).
  std::vector<size_t> seg_first(ops_.size()), seg_last(ops_.size());
  for (size_t i = 0; i < ops_.size();) {
    const size_t e = ops_[i].seg_end ? ops_[i].seg_end : i + 1;
    for (size_t k = i; k < e; ++k) seg_first[k] = i, seg_last[k] = e - 1;
    i = e;
  }
  std::unordered_map<const Storage*, Life> life;
  auto touch = [&](const TensorP& t, size_t first, size_t last) {
    if (!t || !t->storage) return;
    const std::shared_ptr<Storage>& s = t->storage;
    if (s->owned() || s->data || bound.count(s.get())) return;
    auto it = life.find(s.get());
    if (it == life.end()) life.emplace(s.get(), Life{s, first, last, round_up(s->bytes ? s->bytes : 1)});
    else it->second.last = std::max(it->second.last, last), it->second.first = std::min(it->second.first, first);
  };
  for (size_t i = 0; i < ops_.size(); ++i) {
    for (const TensorP& t : *ops_[i].in) touch(t, seg_first[i], seg_last[i]);
    for (const TensorP& t : *ops_[i].out) touch(t, seg_first[i], seg_last[i]);
  }
  const size_t end = ops_.size();
  for (const TensorP& t : outputs) {
    touch(t, end, end);
    auto it = life.find(t->storage.get());
    if (it == life.end()) continue;
    if (fresh_outputs) life.erase(it);  // placed in new memory at each replay
    else it->second.last = end;         // outlives the op list
  }

  std::vector<Life*> items;
  for (auto& kv : life) {
    items.push_back(&kv.second);
    intermediate_bytes_ += kv.second.bytes;
  }
  arena_bytes_ = place(items);
  if (arena_bytes_) {
    if (dev_ == Device::Cpu) {
      arena_ = std::make_shared<Storage>(arena_bytes_, Device::Cpu);
      // All-ones bytes are NaN in f32/bf16/f16: an op that read a slot before anything wrote
      // it would show at once (tests compare replays with eager execution bit for bit).
      std::memset(arena_->data, 0xff, arena_bytes_);
    } else {
      arena_ = Tensor::alloc(DType::U8, {int64_t(arena_bytes_)}, dev_)->storage;
    }
    for (Life* it : items) {
      it->s->data = static_cast<char*>(arena_->data) + it->offset;
      it->s->set_base(arena_);
    }
  }
  if (dev_ == Device::Cuda) {
    size_t total = 0;
    for (const Input& in : inputs_)
      if (!in.bound) total += round_up(in.t->nbytes() ? in.t->nbytes() : 1);
    if (total) {
      input_block_ = Tensor::alloc(DType::U8, {int64_t(total)}, dev_);
      size_t off = 0;
      for (const Input& in : inputs_) {
        if (in.bound) continue;
        in.t->storage->data = static_cast<char*>(input_block_->raw()) + off;
        in.t->storage->set_base(input_block_->storage);
        off += round_up(in.t->nbytes() ? in.t->nbytes() : 1);
      }
    }
  }
  outputs_ = outputs;
  fresh_outputs_ = fresh_outputs;
  nparams_ = nparams;
  npatched_ = 0;
  parallel_ = false;
  std::vector<const Op*> patched_ops;
  for (Op& op : ops_) {
    parallel_ = parallel_ || (!op.serial && !op.dynamic);
    if (op.patches.empty()) continue;
    for (size_t j = 0; j < patched_ops.size() && op.same_as < 0; ++j)
      if (same_parse(*patched_ops[j], op)) op.same_as = int(j);
    patched_ops.push_back(&op);
    ++npatched_;
  }
  finished_ = true;
}

// Ops whose CPU run reads only the typed attributes their parse fills (op_attrs.h).
static bool typed_run(OpId id) {
  return id == OpId::Attention || id == OpId::AttentionBatch || id == OpId::KvCacheAppend || id == OpId::KvCacheAppendBatch ||
         id == OpId::QkvRopeSplit;
}

// Whether replay() may hand b the attributes it parsed for a: parse and plan read the recorded
// attributes, the patched values and the inputs' dtypes and shapes — nothing else.
bool Plan::same_parse(const Op& a, const Op& b) {
  if (a.def != b.def || a.dynamic != b.dynamic || a.patches.size() != b.patches.size()) return false;
  for (size_t i = 0; i < a.patches.size(); ++i) {
    const AttrPatch &p = a.patches[i], &q = b.patches[i];
    if (p.key != q.key || p.param != q.param || p.offset != q.offset || p.len != q.len) return false;
  }
  const Attrs &x = *a.recorded, &y = *b.recorded;
  if (x.num != y.num || x.str != y.str || x.arr != y.arr) return false;
  if (a.in->size() != b.in->size()) return false;
  for (size_t i = 0; i < a.in->size(); ++i) {
    const TensorP &s = (*a.in)[i], &t = (*b.in)[i];
    if (!s != !t) return false;
    if (s && (s->dtype != t->dtype || s->shape != t->shape || s->on_cuda() != t->on_cuda())) return false;
  }
  return true;
}

ExecQueue::Job Plan::replay(std::vector<PlanValue> values, std::vector<double> params, Tensors& outputs, bool* wants_pool) {
  if (!finished_) throw Error(DVL_ERR_ARG, "plan: replay before finish()");
  if (values.size() != inputs_.size())
    throw Error(DVL_ERR_ARG, "plan: " + std::to_string(values.size()) + " input values given, the plan has " +
                                 std::to_string(inputs_.size()));
  if (params.size() != size_t(nparams_))
    throw Error(DVL_ERR_ARG, "plan: " + std::to_string(params.size()) + " parameters given, the plan has " + std::to_string(nparams_));
  for (size_t i = 0; i < inputs_.size(); ++i) {
    const Tensor& slot = *inputs_[i].t;
    const PlanValue& v = values[i];
    if (!inputs_[i].bound) {
      if (v.bound || v.bytes.size() != slot.nbytes())
        throw Error(DVL_ERR_SHAPE, "plan: input " + std::to_string(i) + " needs " + std::to_string(slot.nbytes()) +
                                       " bytes of data for " + slot.describe());
      continue;
    }
    if (!v.bound) throw Error(DVL_ERR_ARG, "plan: input " + std::to_string(i) + " needs a tensor " + slot.describe());
    if (v.bound->dtype != slot.dtype || v.bound->shape != slot.shape)
      throw Error(DVL_ERR_SHAPE, "plan: input " + std::to_string(i) + " is " + v.bound->describe() + ", the plan was recorded with " +
                                     slot.describe());
    if (v.bound->on_cuda() && dev_ != Device::Cuda)
      throw Error(DVL_ERR_ARG, "plan: input " + std::to_string(i) + " lives on the GPU, the plan runs on the CPU");
  }
  for (size_t i = 0; i < params.size(); ++i)
    if (!std::isfinite(params[i])) throw Error(DVL_ERR_ARG, "plan: parameter " + std::to_string(i) + " is not finite");
  // The patched ops' attributes with this step's values, parsed here — the op's own checks
  // (positions inside the cache, ...) and its typed attributes — for the job to hand over.
  // Reserved to size: OpAttrs is large (656 bytes), and growing the vector element by element
  // made every replay a series of reallocations that moved them all.
  std::vector<OpAttrs> patched;
  {
    std::lock_guard<std::mutex> lk(attrs_pool_mu_);
    if (!attrs_pool_.empty()) {
      patched = std::move(attrs_pool_.back());
      attrs_pool_.pop_back();
    }
  }
  patched.clear();
  patched.reserve(npatched_);
  std::vector<uint8_t> serial_now;  // per patched op: runs on the queue thread alone this time
  serial_now.reserve(npatched_);
  bool parallel = parallel_;
  for (const Op& op : ops_) {
    if (op.patches.empty()) continue;
    if (op.same_as >= 0) {   // parsed, planned and judged as an earlier op with the same inputs and attributes
      patched.push_back(patched[size_t(op.same_as)]);
      serial_now.push_back(serial_now[size_t(op.same_as)]);
      continue;
    }
    Attrs a = *op.recorded;
    for (const AttrPatch& p : op.patches) apply_patch(a, p, params);
    patched.push_back(op.def->parse(*op.in, std::move(a)));
    DeferAllocScope defer;
    op.def->plan(*op.in, patched.back());
    const bool serial = op.dynamic ? serial_op(*op.def, *op.in, *op.out, patched.back()) : op.serial;
    serial_now.push_back(serial);
    parallel = parallel || !serial;
    // The ops a decoder patches every step read only their typed attributes when they run: the
    // string-keyed copies go, so the copies below (and the one into the op in run()) allocate
    // only the typed sequences, not three maps' nodes (a text forward patches 8 ops). A run
    // that read a map would now see it empty: the replay = eager tests (test/model/plan.test.ts)
    // would catch it, eager ops keeping theirs.
    if (dev_ == Device::Cpu && typed_run(op.def->id)) {
      OpAttrs& t = patched.back();
      t.num.clear();
      t.str.clear();
      t.arr.clear();
    }
  }
  if (wants_pool) *wants_pool = parallel;
  outputs.clear();
  Tensors fresh;
  for (const TensorP& t : outputs_) {
    const bool slot = !t->storage->owned() && !t->storage->base();
    if (fresh_outputs_ && slot && !is_bound(t->storage.get())) {
      TensorP o = Tensor::alloc(t->dtype, t->shape, dev_);   // this replay's own memory
      fresh.push_back(o);
      outputs.push_back(o);
    } else {
      fresh.push_back(nullptr);
      outputs.push_back(std::make_shared<Tensor>(*t));  // same dtype, shape and storage (the arena slot)
    }
  }
  auto self = shared_from_this();
  return [self, values = std::move(values), patched = std::move(patched), serial_now = std::move(serial_now),
          fresh = std::move(fresh)](OpContext& ctx) mutable {
    self->run(ctx, values, patched, serial_now, fresh);
    for (PlanValue& v : values) staging_give(v.bytes);
    std::lock_guard<std::mutex> lk(self->attrs_pool_mu_);
    if (self->attrs_pool_.size() < 4) self->attrs_pool_.push_back(std::move(patched));
  };
}

bool Plan::is_bound(const Storage* s) const {
  for (const Input& in : inputs_)
    if (in.bound && in.t->storage.get() == s) return true;
  return false;
}

void Plan::run(OpContext& ctx, const std::vector<PlanValue>& values, std::vector<OpAttrs>& patched,
               const std::vector<uint8_t>& serial_now, const Tensors& fresh) {
  for (size_t i = 0; i < fresh.size(); ++i)
    if (fresh[i]) outputs_[i]->storage->data = fresh[i]->raw();
  Tensors uploaded;  // host tensors bound into a CUDA plan: their device copies, alive until the ops are enqueued
  std::vector<char> packed;  // a CUDA plan's data inputs, laid out as its input block
  if (input_block_) packed.resize(input_block_->nbytes());
  for (size_t i = 0; i < inputs_.size(); ++i) {
    Tensor& slot = *inputs_[i].t;
    if (inputs_[i].bound) {
      TensorP b = values[i].bound;
      if (dev_ == Device::Cuda && !b->on_cuda()) uploaded.push_back(b = cuda_upload(*b));
      slot.storage->data = b->raw();
    } else if (!values[i].bytes.empty()) {
      if (dev_ == Device::Cuda)
        std::memcpy(packed.data() + (static_cast<char*>(slot.raw()) - static_cast<char*>(input_block_->raw())),
                    values[i].bytes.data(), values[i].bytes.size());
      else std::memcpy(slot.raw(), values[i].bytes.data(), values[i].bytes.size());
    }
  }
  if (input_block_) cuda_write_from(*input_block_, packed.data(), packed.size());  // one upload per replay
  static ThreadPool one_thread(1);  // no workers: run() calls the function in place
  OpContext serial = ctx.on(one_thread);
  size_t next = 0;
  const bool segments = ctx.pool.size() > 1 && !ctx.profile;  // profiling times op by op
  for (size_t i = 0; i < ops_.size(); ++i) {
    Op& op = ops_[i];
    if (op.seg_end && segments) {  // no patched op inside: `next` stays in step
      run_segment(ctx, i);
      i = op.seg_end - 1;
      continue;
    }
    bool alone = op.serial;
    if (!op.patches.empty()) {  // replay() parsed them, in op order, and judged their split
      alone = serial_now[next] != 0;
      *op.attrs = std::move(patched[next++]);
    }
    op.job(alone ? serial : ctx);
  }
}

void Plan::run_segment(OpContext& ctx, size_t first) {
  const size_t end = ops_[first].seg_end;
  const int64_t n = ops_[first].seg_rows;
  const int nth = ctx.pool.size();
  while (int(seg_pools_.size()) < nth) {
    seg_pools_.push_back(std::make_unique<ThreadPool>(1));
    seg_scratch_.push_back(std::make_unique<Scratch>());
  }
  ctx.pool.run([&](int tid, int nt) {
    // Whole groups of 8 rows per thread (the matmul kernels' row panel), the last one shorter.
    const int64_t groups = (n + 7) / 8;
    const int64_t r0 = std::min(n, groups * tid / nt * 8), r1 = std::min(n, groups * (tid + 1) / nt * 8);
    if (r0 >= r1) return;
    OpContext tc = ctx.on(*seg_pools_[size_t(tid)]);
    tc.scratch = seg_scratch_[size_t(tid)].get();
    Tensors vin, vout;
    for (size_t k = first; k < end; ++k) {
      const Op& op = ops_[k];
      vin.assign(op.in->begin(), op.in->end());
      for (size_t x = 0; x < vin.size(); ++x)
        if (op.row_inputs >> x & 1u) vin[x] = view_rows(*vin[x], r0, r1 - r0);
      vout.clear();
      for (const TensorP& t : *op.out) vout.push_back(view_rows(*t, r0, r1 - r0));
      op.def->run(tc, vin, vout, *op.attrs);
    }
  });
}

}  // namespace dvl
