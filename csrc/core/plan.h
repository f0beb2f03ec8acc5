// plan.h — a pass recorded once and replayed with one call (docs/architecture.md §A4 "A forward is planned
// once and replayed").
//
// Recording runs the same TypeScript forward against a recorder (lib/native/plan.ts): every op
// is planned now — the same plan() validation and output shapes as eager execution — but its
// outputs get slot storage (DeferAllocScope) instead of memory, and the op is appended to the
// plan with the job that runs it. finish() then knows every intermediate's lifetime (first and
// last op that touches its storage) and places them all in one arena, reusing memory whose
// lifetimes do not overlap. A replay is one job on the queue: write the step's inputs, patch the
// step's scalars into the attributes, run the op list. The jobs are the ones eager execution
// runs (make_op_job), on the same inputs in the same order, so a replay equals eager bit for bit.
//
// Per-step values, in the order the recorder declared them:
//   data inputs   small host arrays copied into the plan's own input tensors (ids, positions,
//                 logit rows); on a CUDA plan those tensors are one device block that the replay
//                 uploads with one copy first, so no op uploads anything;
//   bound inputs  tensors the caller owns (image features): the slot points at their storage
//                 for that replay (a host tensor bound into a CUDA plan is uploaded first);
//   params        numbers patched into attributes: attrs.num[key] = params[i] + offset
//                 (the cache position of a step: kv_cache_append pos0, attention kvLen/qPos0),
//                 or a run of them as an array attribute (a batch's sequence layout, seqs).
//                 replay() patches a copy of the recorded attributes on the JS thread and parses
//                 it again (OpDef::parse: the op's own checks, and its typed attributes), and
//                 the job hands the parsed copy to the op: the queue thread parses nothing.
// Threads are decided once per op at record time: an op whose work is a few microseconds runs
// on the queue thread alone (a fork/join costs about as much, and far more when another process
// holds the worker's core). Every kernel computes each output element the same way whatever
// the thread count, so this changes no bit of the result.
// Outputs live in the arena unless the plan was finished with fresh outputs: a replay's outputs
// are then valid until the next replay of the same plan (the decoder reads them at once). They keep the arena alive, so a disposed or evicted
// plan never leaves a dangling tensor.
#pragma once
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "attrs.h"
#include "op_attrs.h"
#include "queue.h"
#include "tensor.h"

namespace dvl {

struct OpDef;
using Tensors = std::vector<TensorP>;

// Plans op `def` on the calling thread (its attributes parsed into `attrs`' typed struct, the
// validation, outputs allocated as the current scopes say) and returns the job that runs it on
// a queue of device `dev`, or an empty function when there is nothing to run (reshape, empty).
// Eager Queue.op and plan recording share it.
ExecQueue::Job make_op_job(Device dev, const OpDef& def, std::shared_ptr<Tensors> in, std::shared_ptr<Tensors>& out,
                           std::shared_ptr<OpAttrs> attrs);

// attrs.num[key] = params[param] + offset (len 0), or attrs.arr[key] = params[param .. param + len).
struct AttrPatch {
  std::string key;
  int param;
  double offset;
  int len = 0;
};

// One value of a replay: bytes for a data input, or the tensor for a bound input.
struct PlanValue {
  std::vector<char> bytes;
  TensorP bound;
};

// Whether an op is too small to pay for a fork/join (decided from its shapes and attributes):
// a plan runs such ops on the queue thread alone, and an eager op or a replay with nothing
// else does not wake the pool's workers (ExecQueue::push).
bool serial_op(const OpDef& def, const Tensors& in, const Tensors& out, const OpAttrs& a);

class Plan : public std::enable_shared_from_this<Plan> {
 public:
  explicit Plan(Device dev) : dev_(dev) {}

  Device device() const { return dev_; }
  bool finished() const { return finished_; }

  // ---- recording (JS thread) ----------------------------------------------------------------
  Tensors record(const OpDef& def, Tensors in, Attrs attrs, std::vector<AttrPatch> patches);
  TensorP add_data_input(DType dt, std::vector<int64_t> shape);
  TensorP add_bound_input(DType dt, std::vector<int64_t> shape);
  // Seals the plan: `outputs` are what each replay returns; `nparams` scalars per replay.
  // fresh_outputs: each replay writes its outputs into new memory the returned tensors own
  // (for results kept across replays, like image features), instead of the arena.
  void finish(const Tensors& outputs, int nparams, bool fresh_outputs = false);

  // ---- replay (JS thread) -------------------------------------------------------------------
  // Checks the values (count, sizes, dtypes, shapes, device) and the patched attributes (each
  // patched op's plan() runs again with them), then returns the job to push and the output
  // tensors to hand to JS. Throws dvl::Error naming the culprit.
  // wants_pool (if given): whether this replay has an op worth splitting over the pool — the
  // static ones, or a patched attention whose keys have grown enough (ExecQueue::push).
  ExecQueue::Job replay(std::vector<PlanValue> values, std::vector<double> params, Tensors& outputs, bool* wants_pool = nullptr);

  // ---- introspection ------------------------------------------------------------------------
  size_t op_count() const { return ops_.size(); }
  size_t arena_bytes() const { return arena_bytes_; }
  size_t intermediate_bytes() const { return intermediate_bytes_; }  // Σ sizes before reuse
  size_t segments() const { return segments_; }  // row segments (find_segments)
  size_t input_count() const { return inputs_.size(); }
  int param_count() const { return nparams_; }
  // Whether every replay has an op worth splitting (ops whose split is decided per replay not
  // counted: replay() reports those).
  bool parallel() const { return parallel_; }

 private:
  struct Op {
    const OpDef* def;
    std::shared_ptr<Tensors> in, out;
    std::shared_ptr<OpAttrs> attrs;                // the job's; a replay swaps in its parsed copy (queue thread)
    std::shared_ptr<const Attrs> recorded;         // as recorded: replay() patches and parses a copy
    std::vector<AttrPatch> patches;
    ExecQueue::Job job;
    bool serial;  // too small to pay for waking the pool: runs on the queue thread alone
    bool dynamic;  // attention whose keys are patched: serial or not is decided at each replay
    // Index (among the patched ops, in op order) of an earlier patched op with the same op,
    // recorded attributes, patches and input dtypes and shapes: its parse at a replay serves
    // this one too (every layer's attention and cache appends take the same batch layout).
    int same_as = -1;
    // A row segment starts here (finish): ops [this, seg_end) are row-local over seg_rows rows
    // and run in one fork, each thread taking the same rows through all of them (run).
    size_t seg_end = 0;
    int64_t seg_rows = 0;
    uint32_t row_inputs = 0;  // bit i: input i is indexed by the rows (else read whole)
  };
  struct Input {
    bool bound;
    TensorP t;
  };
  void need_recording(const char* what) const;
  bool is_bound(const Storage* s) const;
  static void apply_patch(Attrs& a, const AttrPatch& p, const std::vector<double>& params);
  static bool same_parse(const Op& a, const Op& b);
  void run(OpContext& ctx, const std::vector<PlanValue>& values, std::vector<OpAttrs>& patched, const std::vector<uint8_t>& serial_now,
           const Tensors& fresh);
  void find_segments();
  void run_segment(OpContext& ctx, size_t first);

  Device dev_;
  bool finished_ = false;
  std::vector<Op> ops_;
  std::vector<Input> inputs_;
  Tensors outputs_;
  bool fresh_outputs_ = false;
  int nparams_ = 0;
  size_t npatched_ = 0;  // ops with patched attributes (finish counts them)
  // Spent vectors of a replay's parsed attributes, kept for the next replays (replay() takes
  // one, its job gives it back): a fresh one was a ≈ 5 KB allocation before every forward,
  // which made glibc consolidate its small-chunk bins each time.
  std::mutex attrs_pool_mu_;
  std::vector<std::vector<OpAttrs>> attrs_pool_;
  bool parallel_ = false;  // some op (not a per-replay one) is worth splitting over the pool (finish)
  std::shared_ptr<Storage> arena_;
  TensorP input_block_;  // CUDA plans: every data input, uploaded with one copy per replay
  size_t arena_bytes_ = 0, intermediate_bytes_ = 0;
  size_t segments_ = 0;
  // Per participant of a row segment: a one-thread pool and a scratch of its own (the queue's
  // scratch serves one op at a time).
  std::vector<std::unique_ptr<ThreadPool>> seg_pools_;
  std::vector<std::unique_ptr<Scratch>> seg_scratch_;
};

}  // namespace dvl
