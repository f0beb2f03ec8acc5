// cuda_queue.h — how a queue created with { device: 'cuda' } runs the op set on the GPU.
//
// The queue thread stays the single producer: it enqueues every op on the plugin's stream for
// the device in program order, so the ordering rules of ExecQueue (and its sticky errors)
// carry over unchanged. On the JS thread each op still runs the CPU op's plan() — the same
// validation and error messages — but under a DeviceAllocScope, so the outputs it allocates
// are device tensors. Then, per op:
//   - "empty", "reshape", "narrow_rows": nothing to run (plan allocated zero-filled device memory / a view);
//   - "load": the file is read through a staging buffer (pinned when the plugin offers it)
//     and copied to the device; a dtype change runs the plugin's convert on the device;
//   - ops the plugin implements for the main input's dtype: host inputs (small tensors built
//     from JS arrays: ids, positions, rotary tables) are uploaded first, then the op runs;
//   - any other op (image resizing, the bandwidth probe): device inputs are copied to the
//     host, the CPU op runs on the queue's thread pool, the outputs are copied back. Correct
//     everywhere; none of these is on the per-token path.
// Ops that write into input 0 (kv_cache_append, scatter_rows) need input 0 on the device.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "../../core/op_attrs.h"
#include "../../core/queue.h"
#include "../../core/tensor.h"

namespace dvl {

struct OpDef;

// Plans op `def` for a CUDA queue (JS thread) and returns the job that runs it, or an empty
// function when there is nothing to run. `out` receives the planned (device) outputs.
ExecQueue::Job cuda_queue_op(const OpDef& def, std::shared_ptr<std::vector<TensorP>> in,
                             std::shared_ptr<std::vector<TensorP>>& out, std::shared_ptr<OpAttrs> attrs);

// Blocking copies for a CUDA queue's read() and write(), ordered after the queued device work.
void cuda_read_into(const Tensor& dev, void* host);
void cuda_write_from(Tensor& dev, const void* host, size_t bytes);

// For a CPU queue: an Error(DVL_ARG) naming the first input of `op` that is a device tensor
// (a CPU kernel must never dereference a device pointer).
void check_host_inputs(const std::string& op, const std::vector<TensorP>& in);

}  // namespace dvl
