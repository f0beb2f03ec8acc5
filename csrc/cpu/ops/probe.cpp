// probe.cpp — diagnostic ops: the memory-bandwidth probe and a window onto single kernels.
//
// stream_read:  buf (any dtype, any shape), attr repeat (integer ≥ 1, default 1) → f32 [1].
//               Every kernel thread of the queue reads its contiguous slice of the buffer with
//               the level's widest loads (CpuKernels::stream_sum), `repeat` times. Output: a
//               checksum the compiler cannot drop: each pass p = XOR of the buffer's 8-byte
//               little-endian words (last partial word zero-padded), s = rotl(s, 1) ^ p over
//               the passes from s = 0, then (s ^ s >> 32) & 0xffffff as a float — the same on
//               every level and thread count. bench/kernels.ts times it to get
//               the machine's read bandwidth, the roofline every matmul is measured against.
// compute_peak: no inputs; attrs kind ('f32' | 'bf16' | 'q8'), iters → f32 [2] = [multiply-adds
//               done by all kernel threads, seconds of wall time]: every thread runs the
//               level's register-only loop of the instruction its matmul uses for that kind
//               (CpuKernels::compute_peak) — the peak a matmul's GMAC/s is judged against.
// kernel_probe: a, b f32 [n], attr fn 'dot' → f32 [1] = dot_f32(a, b);
//               attr fn 'axpy', attr alpha → f32 [n] = b + alpha·a via axpy_f32.
//               For tests of the queue's ISA level (test/ops/kernels.test.ts); models never
//               call it.
#include <atomic>
#include <chrono>
#include <cstring>
#include <string>

#include "ops.h"

namespace dvl {

static void stream_read_parse(const Tensors& in, OpAttrs& a) {
  op_need_inputs("stream_read", in, 1, 1);
  if (a.has("repeat")) {
    int64_t r = a.needi("stream_read", "repeat");
    if (r < 1) op_fail(DVL_ERR_RANGE, "stream_read", "repeat must be ≥ 1, got " + std::to_string(r), in);
    a.probe.repeat = r;
  }
}

static Tensors stream_read_plan(const Tensors&, const OpAttrs&) { return {Tensor::alloc(DType::F32, {1})}; }

static void stream_read_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs& a) {
  const unsigned char* p = static_cast<const unsigned char*>(in[0]->raw());
  const int64_t bytes = int64_t(in[0]->nbytes());
  const int64_t repeat = a.probe.repeat;
  const int nth = ctx.pool.size();
  // Slices are whole cache lines (the storage is 64-byte aligned), the last one takes the rest.
  const int64_t lines = bytes / 64;
  uint64_t partial[1024] = {};
  uint64_t sum = 0;
  for (int64_t rep = 0; rep < repeat; ++rep) {
    ctx.pool.run([&](int tid, int n) {
      int64_t b = lines * tid / n * 64, e = tid + 1 == n ? bytes : lines * (tid + 1) / n * 64;
      if (tid < 1024) partial[tid] = ctx.k.stream_sum(p + b, e - b);
    });
    uint64_t pass = 0;
    for (int t = 0; t < nth && t < 1024; ++t) pass ^= partial[t];
    sum = (sum << 1 | sum >> 63) ^ pass;
  }
  sum ^= sum >> 32;
  out[0]->data<float>()[0] = float(sum & 0xffffff);
}

static char peak_kind(const std::string& k) { return k == "f32" ? 'f' : k == "bf16" ? 'b' : k == "q8" ? 'q' : 0; }

static void compute_peak_parse(const Tensors& in, OpAttrs& a) {
  op_need_inputs("compute_peak", in, 0, 0);
  if (!peak_kind(a.gets("kind", ""))) op_fail(DVL_ERR_ARG, "compute_peak", "attribute kind must be 'f32', 'bf16' or 'q8', got '" + a.gets("kind", "") + "'", in);
  const int64_t iters = a.needi("compute_peak", "iters");
  if (iters < 1) op_fail(DVL_ERR_RANGE, "compute_peak", "iters must be ≥ 1", in);
  a.probe.kind = peak_kind(a.gets("kind", ""));
  a.probe.iters = iters;
}

static Tensors compute_peak_plan(const Tensors&, const OpAttrs&) { return {Tensor::alloc(DType::F32, {2})}; }

static void compute_peak_run(OpContext& ctx, const Tensors&, const Tensors& out, const OpAttrs& a) {
  const char kind = a.probe.kind;
  const int64_t iters = a.probe.iters;
  std::atomic<double> macs{0};
  const auto t0 = std::chrono::steady_clock::now();
  ctx.pool.run([&](int, int) {
    const double m = ctx.k.compute_peak(kind, iters);
    double cur = macs.load();
    while (!macs.compare_exchange_weak(cur, cur + m)) {
    }
  });
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out[0]->data<float>()[0] = float(macs.load());
  out[0]->data<float>()[1] = float(sec);
}

static void kernel_probe_parse(const Tensors& in, OpAttrs& a) {
  op_need_inputs("kernel_probe", in, 2, 2);
  op_need_dtype("kernel_probe", in, 0, {DType::F32});
  op_need_dtype("kernel_probe", in, 1, {DType::F32});
  if (in[0]->shape != in[1]->shape || in[0]->rank() != 1)
    op_fail(DVL_ERR_SHAPE, "kernel_probe", "a and b must be f32 [n] of the same n", in);
  std::string fn = a.gets("fn", "");
  a.probe.dot = fn == "dot";
  if (fn == "axpy") a.probe.alpha = a.need("kernel_probe", "alpha");
  else if (fn != "dot") op_fail(DVL_ERR_ARG, "kernel_probe", "attribute fn must be 'dot' or 'axpy', got '" + fn + "'", in);
}

static Tensors kernel_probe_plan(const Tensors& in, const OpAttrs& a) {
  return {a.probe.dot ? Tensor::alloc(DType::F32, {1}) : Tensor::alloc(DType::F32, in[1]->shape)};
}

static void kernel_probe_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs& a) {
  const float* x = in[0]->data<float>();
  const float* y = in[1]->data<float>();
  int64_t n = in[0]->dim(0);
  float* o = out[0]->data<float>();
  if (a.probe.dot) {
    o[0] = ctx.k.dot_f32(x, y, n);
  } else {
    std::memcpy(o, y, size_t(n) * 4);
    ctx.k.axpy_f32(float(a.probe.alpha), x, o, n);
  }
}

void ops_register_probe(std::vector<OpDef>& t) {
  t.push_back({OpId::StreamRead, stream_read_plan, stream_read_run, stream_read_parse});
  t.push_back({OpId::KernelProbe, kernel_probe_plan, kernel_probe_run, kernel_probe_parse});
  t.push_back({OpId::ComputePeak, compute_peak_plan, compute_peak_run, compute_peak_parse});
}

}  // namespace dvl
