// matmul.cpp — y = x · Wᵀ (+ b), the linear layer of every model here.
//
// x f32 [.., K] (leading dims flattened to M rows), W f32|bf16|f16|q8|bf16p|q8p [N, K] (HF
// layout; q8: the same rows quantised; bf16p / q8p: bf16 / q8 values in panels of 16 rows —
// all in csrc/core/dtype.h), optional bias f32 [N] → y f32 [.., N]. With bf16 or bf16p weights x
// may be bf16 (patch rows stored so): the same products as an f32 x holding those values — a
// bf16 dot kernel takes them as they are (no rounding: they are bf16 already; vdpbf16ps reads a
// subnormal input as zero, as the rounding's DAZ would write it), the others widen them exactly.
// Threads split N into column panels so each thread streams a disjoint slice of W once per
// call (the fast kernels) or per block of 16 tokens (the exact ones).
//
// The queue's precision (OpContext::precision, read here at run time, so a recorded forward
// plan keeps the same op) picks the kernel (csrc/cpu/kernels.h):
//   exact  activations stay f32; bf16/f16/q8 weights widened or dequantised exactly;
//          f32 accumulation (error ≈ K·2⁻²⁴·Σ|x·w|).
//   fast   bf16 and bf16p weights: activations rounded to bf16 once (into the queue's scratch),
//          then vdpbf16ps where the level has it, else the exact kernel; q8 weights: activations
//          quantised to int8 blocks once, then the level's int8 dot kernel; f32/f16: exact.
// Every kernel keeps each y[m, n] independent of M, of the other rows and of the thread split.
#include "ops.h"

namespace dvl {

static Tensors matmul_plan(const Tensors& in, const OpAttrs&) {
  op_need_inputs("matmul", in, 2, 3);
  op_need_dtype("matmul", in, 0, {DType::F32, DType::BF16});
  op_need_dtype("matmul", in, 1, {DType::F32, DType::BF16, DType::F16, DType::Q8, DType::BF16P, DType::Q8P});
  op_need_rank("matmul", in, 1, 2);
  const Tensor &x = *in[0], &w = *in[1];
  if (x.dtype == DType::BF16 && w.dtype != DType::BF16 && w.dtype != DType::BF16P)
    op_fail(DVL_ERR_DTYPE, "matmul", "bf16 activations need bf16 or bf16p weights", in);
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

// Panels in multiples of 24 rows keep every thread's slice a whole number of the kernels' row
// groups (8, 6, 4, 3, 2 or 1 rows), so only the last panel has a one-row tail.
static constexpr int64_t kPanel = 24;
// Below this many rows the activation preparation runs on the queue thread alone: a fork/join
// costs more than rounding a few rows.
static constexpr int64_t kPrepParallelRows = 32;
// bf16p products split by rows rather than by the weight's panels from this many rows, when
// the weight is at most this big (see matmul_run); pieces are whole multiples of 8 rows (the
// widest register tile of the bf16 kernel; the f32 kernels' 6- and 3-row tiles leave a short
// tile per piece, which changes no element: kernels.h).
static constexpr int64_t kRowSplitMinRows = 48;
static constexpr double kRowSplitMaxWeightBytes = double(1 << 19);
static constexpr int64_t kRowSplitGrain = 8;

// Rows [b, e) of x as bf16 rows of ldx values (zero-padded) in xb: f32 x rounded, bf16 x (xh)
// copied.
static void round_bf16_rows(OpContext& ctx, const float* x, const uint16_t* xh, int64_t b, int64_t e, int64_t K, int64_t ldx, uint16_t* xb) {
  for (int64_t m = b; m < e; ++m) {
    if (xh) std::memcpy(xb + m * ldx, xh + m * K, size_t(K) * 2);
    else ctx.k.cvt_f32_to_bf16_daz(x + m * K, xb + m * ldx, K);
    for (int64_t k = K; k < ldx; ++k) xb[m * ldx + k] = 0;
  }
}

// x (or xh) as bf16 rows of ldx values (zero-padded) in scratch.
static const uint16_t* round_bf16(OpContext& ctx, Scratch& scratch, const float* x, const uint16_t* xh, int64_t M, int64_t K, int64_t ldx) {
  uint16_t* xb = static_cast<uint16_t*>(scratch.get(size_t(M * ldx) * 2));
  auto rows = [&](int64_t b, int64_t e) { round_bf16_rows(ctx, x, xh, b, e, K, ldx, xb); };
  if (M < kPrepParallelRows) rows(0, M);
  else ctx.pool.parallel_for(M, 8, rows);
  return xb;
}

// Quantises x into scratch (kernels.h ActQ8: quants, then scales, then corrections).
static ActQ8 quantize_q8(OpContext& ctx, Scratch& scratch, const float* x, int64_t M, int64_t K) {
  ActQ8 a;
  a.nb = q8_blocks(K);
  a.row_q = (a.nb * kQ8Block + 63) / 64 * 64;
  const size_t qb = size_t(M * a.row_q), sb = size_t(M * a.nb) * 4;
  char* p = static_cast<char*>(scratch.get(qb + 2 * sb + 64));
  a.q = reinterpret_cast<int8_t*>(p);
  a.d = reinterpret_cast<float*>(p + (qb + 63) / 64 * 64);
  a.corr = reinterpret_cast<int32_t*>(reinterpret_cast<char*>(a.d) + sb);
  if (M < kPrepParallelRows) ctx.k.quantize_act_q8(x, 0, M, K, a);
  else ctx.pool.parallel_for(M, 8, [&](int64_t b, int64_t e) { ctx.k.quantize_act_q8(x, b, e, K, a); });
  return a;
}

static void matmul_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs&) {
  const Tensor &xt = *in[0], &w = *in[1];
  const float* bias = in.size() == 3 && in[2] ? in[2]->data<float>() : nullptr;
  const int64_t M = rows_of(xt), K = xt.dim(-1), N = w.dim(0);
  float* y = out[0]->data<float>();
  if (M == 0 || N == 0) return;
  const bool fast = ctx.precision == Precision::Fast;
  Scratch local;  // only used by contexts without a queue
  Scratch& scratch = ctx.scratch ? *ctx.scratch : local;
  // bf16 activations (xh): taken as they are by the bf16 dot kernels; for any other kernel
  // widened to f32 (exact) into scratch first — those kernels use no scratch of their own.
  const float* x = xt.dtype == DType::F32 ? xt.data<float>() : nullptr;
  const uint16_t* xh = xt.dtype == DType::BF16 ? xt.data<uint16_t>() : nullptr;
  const bool dot = fast && K > 0 && ((w.dtype == DType::BF16 && ctx.k.matmul_bf16_dot) || (w.dtype == DType::BF16P && ctx.k.matmul_bf16p_dot));
  if (xh && !dot) {
    float* xf = static_cast<float*>(scratch.get(size_t(M * K) * 4));
    auto widen = [&](int64_t b, int64_t e) { ctx.k.cvt_bf16_to_f32(xh + b * K, xf + b * K, (e - b) * K); };
    if (M < kPrepParallelRows) widen(0, M);
    else ctx.pool.parallel_for(M, 8, widen);
    x = xf;
    xh = nullptr;
  }

  if (fast && w.dtype == DType::BF16 && ctx.k.matmul_bf16_dot && K > 0) {
    const int64_t ldx = (K + 31) / 32 * 32;
    const uint16_t* xb = round_bf16(ctx, scratch, x, xh, M, K, ldx);
    ctx.pool.parallel_for(N, kPanel, [&](int64_t n0, int64_t n1) { ctx.k.matmul_bf16_dot(xb, M, K, ldx, w.raw(), n0, n1, bias, y, N); });
    return;
  }
  if (w.dtype == DType::BF16P) {
    const int64_t panels = bf16p_panels(N);
    if (ctx.pool.size() > 1 && M >= kRowSplitMinRows && double(w.nbytes()) <= kRowSplitMaxWeightBytes) {
      // Many rows, a small weight (a vision tower, a small model's prefill): the threads take
      // pieces of rows — each rounds its own rows and multiplies them by the whole weight —
      // instead of pieces of the weight over every row. Split by the weight, each thread read
      // rows another had rounded and a second fork did the rounding: a 252×96·96ᵀ product took
      // 17 µs on two threads against 13 on one; by rows 10 (the weight, ≤ 512 KiB, is read by
      // both from their own caches). A row's sums are the same in either split.
      const int64_t ldx = (K + 31) / 32 * 32;
      uint16_t* xb = dot ? static_cast<uint16_t*>(scratch.get(size_t(M * ldx) * 2)) : nullptr;
      // One piece per thread, not the pool's usual four: each piece is a call of the kernel over
      // the whole weight, and at these sizes (a 252 × 96 · 96ᵀ product: ≈ 16 µs a thread) the
      // extra pieces' claims and calls cost more than the balance they buy — a tower block's
      // four products ×0.86-0.91 on two threads (bench/RESULTS.md). Pieces in whole multiples of
      // kRowSplitGrain rows (252 rows: 128 + 124). A worker that is late still leaves its piece
      // to the caller (ThreadPool claims).
      const int64_t nth = ctx.pool.size(), per = ((M + nth - 1) / nth + kRowSplitGrain - 1) / kRowSplitGrain * kRowSplitGrain;
      ctx.pool.parallel_for(M, per, [&](int64_t m0, int64_t m1) {
        if (dot) {
          round_bf16_rows(ctx, x, xh, m0, m1, K, ldx, xb);
          ctx.k.matmul_bf16p_dot(xb + m0 * ldx, m1 - m0, K, ldx, w.raw(), 0, N, bias, y + m0 * N, N);
        } else {
          ctx.k.matmul_bf16p(x + m0 * K, m1 - m0, K, w.raw(), 0, N, bias, y + m0 * N, N);
        }
      });
      return;
    }
    // Thread pieces are whole panels, in multiples of the kernel's widest register tile for
    // this M (its grain), so only a piece's last tile can be narrower.
    if (dot) {
      const int64_t ldx = (K + 31) / 32 * 32;
      const uint16_t* xb = round_bf16(ctx, scratch, x, xh, M, K, ldx);
      ctx.pool.parallel_for(panels, ctx.k.bf16p_dot_grain(M), [&](int64_t p0, int64_t p1) {
        ctx.k.matmul_bf16p_dot(xb, M, K, ldx, w.raw(), p0 * kBf16pRows, p1 * kBf16pRows < N ? p1 * kBf16pRows : N, bias, y, N);
      });
    } else {
      // The f32 kernels' tiles differ by level (kernels_bf16p_fma.inc): whole panels suffice.
      ctx.pool.parallel_for(panels, 1, [&](int64_t p0, int64_t p1) {
        ctx.k.matmul_bf16p(x, M, K, w.raw(), p0 * kBf16pRows, p1 * kBf16pRows < N ? p1 * kBf16pRows : N, bias, y, N);
      });
    }
    return;
  }
  if (w.dtype == DType::Q8P) {
    if (fast && ctx.k.matmul_q8p_fast) {
      const ActQ8 a = quantize_q8(ctx, scratch, x, M, K);
      ctx.pool.parallel_for((N + 15) / 16, ctx.k.q8p_fast_grain(M), [&](int64_t p0, int64_t p1) {
        ctx.k.matmul_q8p_fast(a, M, K, w.raw(), p0 * 16, p1 * 16 < N ? p1 * 16 : N, bias, y, N);
      });
    } else {
      ctx.pool.parallel_for(N, kPanel, [&](int64_t n0, int64_t n1) { ctx.k.matmul_q8p(x, M, K, w.raw(), n0, n1, bias, y, N); });
    }
    return;
  }
  if (fast && w.dtype == DType::Q8) {
    const ActQ8 a = quantize_q8(ctx, scratch, x, M, K);
    ctx.pool.parallel_for(N, kPanel, [&](int64_t n0, int64_t n1) { ctx.k.matmul_q8_fast(a, M, K, w.raw(), n0, n1, bias, y, N); });
    return;
  }
  MatmulFn fn = w.dtype == DType::F32    ? ctx.k.matmul_f32
                : w.dtype == DType::BF16 ? ctx.k.matmul_bf16
                : w.dtype == DType::F16  ? ctx.k.matmul_f16
                                         : ctx.k.matmul_q8;
  ctx.pool.parallel_for(N, kPanel, [&](int64_t n0, int64_t n1) { fn(x, M, K, w.raw(), n0, n1, bias, y, N); });
}

void ops_register_matmul(std::vector<OpDef>& t) { t.push_back({OpId::Matmul, matmul_plan, matmul_run}); }

}  // namespace dvl
