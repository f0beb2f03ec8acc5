// kv_cache.cpp — kv_cache_append: store a pass's K or V rows in the layer cache (docs §5.9).
//
// cache f32|bf16|f16 [nkv, cap, hd] (head-major, so attention streams one head's keys
// contiguously), x f32 [T, nkv, hd] (token-major, as the K/V projection produces it); attr
// pos0. Writes cache[g, pos0 + t, :] = x[t, g, :] in place, rounding to the cache dtype
// (nearest even). Nothing is advanced here: the decoder rewrites a block's slots [L, L+bs) on
// every denoising step and keeps the cache length itself (lib/decode), so overwrites are fine.
#include <cstring>
#include <string>

#include "ops.h"

namespace dvl {

void kv_store_row(const OpContext& ctx, const float* src, Tensor& cache, int64_t at, int64_t n) {
  switch (cache.dtype) {
    case DType::F32: std::memcpy(cache.data<float>() + at, src, size_t(n) * 4); break;
    case DType::BF16: ctx.k.cvt_f32_to_bf16(src, cache.data<uint16_t>() + at, n); break;
    case DType::F16: ctx.k.cvt_f32_to_f16(src, cache.data<uint16_t>() + at, n); break;
    default: break;
  }
}

static void kv_append_parse(const Tensors& in, OpAttrs& a) {
  const char* op = "kv_cache_append";
  op_need_inputs(op, in, 2, 2);
  op_need_dtype(op, in, 0, {DType::F32, DType::BF16, DType::F16});
  op_need_dtype(op, in, 1, {DType::F32});
  op_need_rank(op, in, 0, 3);
  op_need_rank(op, in, 1, 3);
  const Tensor &c = *in[0], &x = *in[1];
  if (x.dim(1) != c.dim(0) || x.dim(2) != c.dim(2))
    op_fail(DVL_ERR_SHAPE, op, "x must be [T, nkv, hd] with the cache's nkv and hd", in);
  int64_t pos0 = a.needi(op, "pos0");
  int64_t T = x.dim(0), cap = c.dim(1);
  if (pos0 < 0 || pos0 + T > cap)
    op_fail(DVL_ERR_RANGE, op, "positions pos0 = " + std::to_string(pos0) + " .. pos0 + T = " + std::to_string(pos0 + T) +
                                   " do not fit the cache capacity " + std::to_string(cap), in);
  a.kv.pos0 = pos0;
}

static Tensors kv_append_plan(const Tensors&, const OpAttrs&) { return {}; }

static void kv_append_run(OpContext& ctx, const Tensors& in, const Tensors&, const OpAttrs& a) {
  const Tensor &c = *in[0], &x = *in[1];
  const int64_t pos0 = a.kv.pos0, T = x.dim(0), nkv = c.dim(0), cap = c.dim(1), hd = c.dim(2);
  const float* xs = x.data<float>();
  ctx.pool.parallel_for(T * nkv, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t t = r / nkv, g = r % nkv;
      kv_store_row(ctx, xs + r * hd, *in[0], (g * cap + pos0 + t) * hd, hd);
    }
  });
}

// kv_cache_append_batch: cache [S, nkv, cap, hd] of S slots, x f32 [T, nkv, hd] holding the rows
// of several sequences, attr seqs as attention_batch's (attention.cpp): rows [row0, row1) go to
// slot `slot` at positions pos0.. — each sequence exactly a kv_cache_append on its own slot.
static void kv_append_batch_parse(const Tensors& in, OpAttrs& a) {
  const char* op = "kv_cache_append_batch";
  op_need_inputs(op, in, 2, 2);
  op_need_dtype(op, in, 0, {DType::F32, DType::BF16, DType::F16});
  op_need_dtype(op, in, 1, {DType::F32});
  op_need_rank(op, in, 0, 4);
  op_need_rank(op, in, 1, 3);
  const Tensor &c = *in[0], &x = *in[1];
  if (x.dim(1) != c.dim(1) || x.dim(2) != c.dim(3))
    op_fail(DVL_ERR_SHAPE, op, "x must be [T, nkv, hd] with the cache's nkv and hd", in);
  a.kv.seqs = batch_seqs(op, in, a, x.dim(0), c.dim(0), c.dim(2));
}

static void kv_append_batch_run(OpContext& ctx, const Tensors& in, const Tensors&, const OpAttrs& a) {
  const Tensor &c = *in[0], &x = *in[1];
  const int64_t nkv = c.dim(1), cap = c.dim(2), hd = c.dim(3);
  const std::vector<BatchSeq>& seqs = a.kv.seqs;  // checked by parse, also when a replay patched them
  // Row r of x (token t of its sequence, kv head g) → cache[slot, g, pos0 + t − row0].
  std::vector<int64_t> dst(size_t(x.dim(0)));
  for (const BatchSeq& s : seqs)
    for (int64_t t = s.row0; t < s.row1; ++t) dst[size_t(t)] = (s.slot * nkv * cap + s.pos0 + t - s.row0) * hd;
  const float* xs = x.data<float>();
  ctx.pool.parallel_for(x.dim(0) * nkv, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t t = r / nkv, g = r % nkv;
      kv_store_row(ctx, xs + r * hd, *in[0], dst[size_t(t)] + g * cap * hd, hd);
    }
  });
}

void ops_register_kv(std::vector<OpDef>& t) {
  t.push_back({OpId::KvCacheAppend, kv_append_plan, kv_append_run, kv_append_parse});
  t.push_back({OpId::KvCacheAppendBatch, kv_append_plan, kv_append_batch_run, kv_append_batch_parse});
}

}  // namespace dvl
