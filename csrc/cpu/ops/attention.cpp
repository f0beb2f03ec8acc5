// attention.cpp — flash-style scaled dot-product attention over a KV cache (spec §2.5, §5.3,
// vision windows §3.3 item 4).
//
// Legend: Tq query rows, nh query heads, nkv kv heads, hd head dim, cap cache capacity.
//   q f32 [Tq, nh, hd]; k, v f32|bf16|f16 [nkv, cap, hd], keys at positions 0..kvLen−1
//   → o f32 [Tq, nh, hd],  o[i, h] = Σ_j softmax_j(scale · q[i, h]·k[g, j]) v[g, j],
//   g = floor(h / (nh / nkv)) (GQA), over the keys j the mask lets query i see.
// Query i sits at absolute position p = qPos0 + i. Every mask is one key range [lo, hi) per
// query row, so no mask matrix exists:
//   causal   [0, p + 1)
//   block    [0, min(kvLen, (floor(p/bs) + 1)·bs))   (block-causal: the cache plus the whole
//            own block, spec §5.3)
//   full     [0, kvLen)
//   segments [cu[s], cu[s+1]) for the s with cu[s] ≤ i < cu[s+1]  (vision windows; Tq = kvLen,
//            qPos0 = 0)
// Online softmax in f32 over KV tiles (attention_kernel.h): no [Tq, kvLen] score matrix. Work
// items are (kv head, run of ≤ 64 query rows × group heads), spread over the queue's pool; each
// item reads its kv head's K/V once, converting bf16/f16 tiles to f32 on the way. hd ≤ 512.
// Non-finite inputs: NaN in q, or in a visible key or value, makes the affected rows NaN; a
// row whose visible scores are all −∞ is NaN (softmax of nothing finite), a row with no visible
// key (impossible with valid arguments) is zeros.
#include <cmath>
#include <string>
#include <vector>

#define DVL_ATTN_VW 4  // 16-byte vectors: SSE2 (the x86-64 baseline) or NEON
#include "attention_kernel.h"
#include "ops.h"

namespace dvl {

#if defined(DVL_HAVE_X86_KERNELS)
void attention_item_avx2(const AttnArgs& A, int64_t g, int64_t r0, int64_t r1, float* scratch);
void attention_item_avx512(const AttnArgs& A, int64_t g, int64_t r0, int64_t r1, float* scratch);
#endif

static void attention_item_base(const AttnArgs& A, int64_t g, int64_t r0, int64_t r1, float* scratch) {
  attn_item(A, g, r0, r1, scratch);
}

static const char* kOp = "attention";

static Tensors attention_plan(const Tensors& in, const Attrs& a) {
  op_need_inputs(kOp, in, 3, 3);
  op_need_dtype(kOp, in, 0, {DType::F32});
  op_need_dtype(kOp, in, 1, {DType::F32, DType::BF16, DType::F16});
  op_need_dtype(kOp, in, 2, {DType::F32, DType::BF16, DType::F16});
  for (size_t i = 0; i < 3; ++i) op_need_rank(kOp, in, i, 3);
  const Tensor &q = *in[0], &k = *in[1], &v = *in[2];
  if (k.dtype != v.dtype) op_fail(DVL_ERR_DTYPE, kOp, "k and v must have the same dtype", in);
  if (k.shape != v.shape) op_fail(DVL_ERR_SHAPE, kOp, "k and v must have the same shape [nkv, cap, hd]", in);
  const int64_t Tq = q.dim(0), nh = q.dim(1), hd = q.dim(2), nkv = k.dim(0), cap = k.dim(1);
  if (k.dim(2) != hd) op_fail(DVL_ERR_SHAPE, kOp, "q's head dim " + std::to_string(hd) + " differs from k's " + std::to_string(k.dim(2)), in);
  if (hd > 512) op_fail(DVL_ERR_SHAPE, kOp, "head dim " + std::to_string(hd) + " is above the supported 512", in);
  if (nkv < 1 || nh % nkv) op_fail(DVL_ERR_SHAPE, kOp, "query heads " + std::to_string(nh) + " must be a multiple of kv heads " + std::to_string(nkv), in);
  const int64_t kvLen = a.needi(kOp, "kvLen");
  const int64_t qPos0 = a.has("qPos0") ? a.needi(kOp, "qPos0") : 0;
  if (kvLen < 0 || kvLen > cap)
    op_fail(DVL_ERR_RANGE, kOp, "kvLen " + std::to_string(kvLen) + " is outside the cache capacity 0.." + std::to_string(cap), in);
  if (qPos0 < 0) op_fail(DVL_ERR_RANGE, kOp, "qPos0 must be >= 0, got " + std::to_string(qPos0), in);
  if (a.has("scale")) {
    double sc = a.need(kOp, "scale");
    if (!std::isfinite(sc)) op_fail(DVL_ERR_RANGE, kOp, "scale must be finite", in);
  }
  const std::string mask = a.gets("mask", "");
  if (mask == "causal" || mask == "block") {
    if (qPos0 + Tq > kvLen)
      op_fail(DVL_ERR_RANGE, kOp, "query positions qPos0 + Tq = " + std::to_string(qPos0 + Tq) + " exceed kvLen " + std::to_string(kvLen) +
                                      " (the queries' own keys must be in the cache)", in);
    if (mask == "block" && a.needi(kOp, "blockSize") < 1) op_fail(DVL_ERR_RANGE, kOp, "blockSize must be >= 1", in);
  } else if (mask == "segments") {
    const std::vector<double>* cu = a.geta("segments");
    if (!cu || cu->size() < 2) op_fail(DVL_ERR_ARG, kOp, "mask 'segments' needs segments = [0, ..., kvLen] (cu_seqlens)", in);
    if ((*cu)[0] != 0 || cu->back() != double(kvLen))
      op_fail(DVL_ERR_RANGE, kOp, "segments must start at 0 and end at kvLen " + std::to_string(kvLen), in);
    for (size_t s = 1; s < cu->size(); ++s)
      if (!((*cu)[s] >= (*cu)[s - 1]) || (*cu)[s] != std::floor((*cu)[s]))
        op_fail(DVL_ERR_RANGE, kOp, "segments must be non-decreasing integers (entry " + std::to_string(s) + ")", in);
    if (Tq != kvLen || qPos0 != 0) op_fail(DVL_ERR_SHAPE, kOp, "mask 'segments' needs Tq = kvLen and qPos0 = 0", in);
  } else if (mask != "full") {
    op_fail(DVL_ERR_ARG, kOp, "mask must be 'causal', 'block', 'full' or 'segments', got '" + mask + "'", in);
  }
  return {Tensor::alloc(DType::F32, q.shape)};
}

static void attention_run(OpContext& ctx, const Tensors& in, const Tensors& out, const Attrs& a) {
  const Tensor &q = *in[0], &k = *in[1], &v = *in[2];
  const int64_t Tq = q.dim(0), nh = q.dim(1), hd = q.dim(2), nkv = k.dim(0), cap = k.dim(1);
  const int64_t kvLen = a.geti("kvLen", 0), qPos0 = a.geti("qPos0", 0);
  const std::string mask = a.gets("mask", "");
  if (Tq == 0 || nh == 0 || hd == 0) return;

  // Visible key range per query row.
  std::vector<int64_t> lo(size_t(Tq), 0), hi(size_t(Tq), kvLen);
  if (mask == "causal") {
    for (int64_t i = 0; i < Tq; ++i) hi[i] = qPos0 + i + 1;
  } else if (mask == "block") {
    const int64_t bs = a.geti("blockSize", 1);
    for (int64_t i = 0; i < Tq; ++i) hi[i] = std::min(kvLen, ((qPos0 + i) / bs + 1) * bs);
  } else if (mask == "segments") {
    const std::vector<double>& cu = *a.geta("segments");
    size_t s = 0;
    for (int64_t i = 0; i < Tq; ++i) {
      while (s + 1 < cu.size() && double(i) >= cu[s + 1]) ++s;
      lo[i] = int64_t(cu[s]);
      hi[i] = int64_t(cu[s + 1]);
    }
  }

  AttnArgs A;
  A.q = q.data<float>();
  A.k = k.raw();
  A.v = v.raw();
  A.o = out[0]->data<float>();
  A.kv_dtype = k.dtype;
  A.nh = nh;
  A.nkv = nkv;
  A.group = nh / nkv;
  A.hd = hd;
  A.cap = cap;
  A.scale = float(a.has("scale") ? a.get("scale", 1) : 1.0 / std::sqrt(double(hd)));
  A.lo = lo.data();
  A.hi = hi.data();
  A.cvt_bf16 = ctx.k.cvt_bf16_to_f32;
  A.cvt_f16 = ctx.k.cvt_f16_to_f32;

  auto item = attention_item_base;
#if defined(DVL_HAVE_X86_KERNELS)
  if (ctx.k.isa == Isa::Avx2 || ctx.k.isa == Isa::Avx2Vnni) item = attention_item_avx2;
  if (ctx.k.isa == Isa::Avx512 || ctx.k.isa == Isa::Avx512Bf16) item = attention_item_avx512;
#endif

  // Split each kv head's Tq·group rows into runs: enough items for every thread (twice over,
  // for balance under causal masks), at most 64 rows (the item's scratch), and at least 8: every
  // item re-reads and transposes its head's K/V tiles, which a run of 4 rows would not amortise.
  const int64_t rows = Tq * A.group, nth = ctx.pool.size();
  int64_t per_head = (2 * nth + nkv - 1) / nkv;
  int64_t run = (rows + per_head - 1) / per_head;
  run = std::max<int64_t>(1, std::min<int64_t>(std::max<int64_t>(run, 8), kAttnMaxRows));
  const int64_t runs = (rows + run - 1) / run, items = nkv * runs;
  ctx.pool.parallel_for(items, 1, [&](int64_t b, int64_t e) {
    std::vector<float> scratch(size_t(attn_scratch_floats(hd)));
    for (int64_t it = b; it < e; ++it) {
      const int64_t g = it / runs, r0 = (it % runs) * run, r1 = std::min(rows, r0 + run);
      item(A, g, r0, r1, scratch.data());
    }
  });
}

void ops_register_attention(std::vector<OpDef>& t) { t.push_back({"attention", attention_plan, attention_run}); }

}  // namespace dvl
