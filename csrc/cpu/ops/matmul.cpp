// matmul.cpp — y = x · Wᵀ (+ b), the linear layer of every model here.
//
// x f32 [.., K] (leading dims flattened to M rows), W f32|bf16|f16 [N, K] as stored in HF
// checkpoints, optional bias f32 [N] → y f32 [.., N]. Threads split N into column panels so
// each thread streams a disjoint slice of W once for all M rows (M is small while decoding).
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
  // Panels of 16 columns keep every thread's slice aligned to the SIMD kernels' row groups.
  ctx.pool.parallel_for(N, 16, [&](int64_t n0, int64_t n1) { fn(x.data<float>(), M, K, w.raw(), n0, n1, bias, y, N); });
}

void ops_register_matmul(std::vector<OpDef>& t) { t.push_back({"matmul", matmul_plan, matmul_run}); }

}  // namespace dvl
