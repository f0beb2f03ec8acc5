// matmul.cpp — y = x · Wᵀ (+ b), the linear layer of every model here.
//
// x f32 [.., K] (leading dims flattened to M rows), W f32|bf16|f16 [N, K] as stored in HF
// checkpoints, optional bias f32 [N] → y f32 [.., N]. Threads split N into column panels so
// each thread streams a disjoint slice of W once per block of 16 tokens (M is 1-16 while
// decoding: one pass). The kernel is the queue's level (kernels.h): activations stay f32,
// bf16/f16 weights are widened exactly, accumulation is f32 (error ≈ K·2⁻²⁴·Σ|x·w|).
// Weights are used as stored; no repacked layout (a row-interleaved one would be a new dtype).
#include "ops.h"

namespace dvl {

static Tensors matmul_plan(const Tensors& in, const Attrs&) {
  op_need_inputs("matmul", in, 2, 3);
  op_need_dtype("matmul", in, 0, {DType::F32});
  op_need_dtype("matmul", in, 1, {DType::F32, DType::BF16, DType::F16});
  op_need_rank("matmul", in, 1, 2);
  const Tensor &x = *in[0], &w = *in[1];
  if (x.rank() < 1 || x.dim(-1) != w.dim(1))
    op_fail(DVL_ERR_SHAPE, "matmul", "x's last dim must equal W's dim 1 (K)", in);
  if (in.size() == 3 && in[2]) {
    op_need_dtype("matmul", in, 2, {DType::F32});
    if (in[2]->rank() != 1 || in[2]->dim(0) != w.dim(0))
      op_fail(DVL_ERR_SHAPE, "matmul", "bias must be [N] with N = W's dim 0", in);
  }
  std::vector<int64_t> shape = x.shape;
  shape.back() = w.dim(0);
  return {Tensor::alloc(DType::F32, shape)};
}

static void matmul_run(OpContext& ctx, const Tensors& in, const Tensors& out, const Attrs&) {
  const Tensor &x = *in[0], &w = *in[1];
  const float* bias = in.size() == 3 && in[2] ? in[2]->data<float>() : nullptr;
  int64_t M = rows_of(x), K = x.dim(-1), N = w.dim(0);
  MatmulFn fn = w.dtype == DType::F32 ? ctx.k.matmul_f32 : w.dtype == DType::BF16 ? ctx.k.matmul_bf16 : ctx.k.matmul_f16;
  float* y = out[0]->data<float>();
  if (M == 0 || N == 0) return;
  // Panels in multiples of 24 rows keep every thread's slice a whole number of the SIMD
  // kernels' row groups (8, 6, 4 or 3 rows), so only the last panel has a one-row tail.
  ctx.pool.parallel_for(N, 24, [&](int64_t n0, int64_t n1) { fn(x.data<float>(), M, K, w.raw(), n0, n1, bias, y, N); });
}

void ops_register_matmul(std::vector<OpDef>& t) { t.push_back({"matmul", matmul_plan, matmul_run}); }

}  // namespace dvl
