// attention.cpp — flash-style scaled dot-product attention over a KV cache (docs §2.5, §5.3,
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
//            own block, docs §5.3)
//   full     [0, kvLen)
//   segments [cu[s], cu[s+1]) for the s with cu[s] ≤ i < cu[s+1]  (vision windows; Tq = kvLen,
//            qPos0 = 0)
// Online softmax in f32 over KV tiles (attention_kernel.h): no [Tq, kvLen] score matrix. Work
// items are (kv head, run of ≤ 64 query rows × group heads), spread over the queue's pool; each
// item reads its kv head's K/V once, converting bf16/f16 tiles to f32 on the way. hd ≤ 512.
// Non-finite inputs: NaN in q, or in a visible key or value, makes the affected rows NaN; a
// row whose visible scores are all −∞ is NaN (softmax of nothing finite), a row with no visible
// key (impossible with valid arguments) is zeros.
#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#define DVL_ATTN_VW 4  // 16-byte vectors: SSE2 (the x86-64 baseline) or NEON
#include "attention_kernel.h"
#include "ops.h"

namespace dvl {

#if defined(DVL_HAVE_X86_KERNELS)
void attention_item_avx2(const AttnArgs& A, int64_t g, int64_t r0, int64_t r1, float* scratch);
void attention_item_avx512(const AttnArgs& A, int64_t g, int64_t r0, int64_t r1, float* scratch);
void attention_item_avx512_bf16(const AttnArgs& A, int64_t g, int64_t r0, int64_t r1, float* scratch);
#endif

static void attention_item_base(const AttnArgs& A, int64_t g, int64_t r0, int64_t r1, float* scratch) {
  attn_item(A, g, r0, r1, scratch);
}

static const char* kOp = "attention";

// Validates inputs and attributes (in the order the messages have always been checked) and
// fills a.attention: the mask kind, once, for plan, this run and the CUDA run.
static void attention_parse(const Tensors& in, OpAttrs& a) {
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
  AttentionAttrs t;
  const int64_t kvLen = t.kvLen = a.needi(kOp, "kvLen");
  const int64_t qPos0 = t.qPos0 = a.has("qPos0") ? a.needi(kOp, "qPos0") : 0;
  if (kvLen < 0 || kvLen > cap)
    op_fail(DVL_ERR_RANGE, kOp, "kvLen " + std::to_string(kvLen) + " is outside the cache capacity 0.." + std::to_string(cap), in);
  if (qPos0 < 0) op_fail(DVL_ERR_RANGE, kOp, "qPos0 must be >= 0, got " + std::to_string(qPos0), in);
  if (a.has("scale")) {
    t.scale = a.need(kOp, "scale");
    t.has_scale = true;
    if (!std::isfinite(t.scale)) op_fail(DVL_ERR_RANGE, kOp, "scale must be finite", in);
  }
  t.rows_kernel = a.has("rowKernel") && a.need(kOp, "rowKernel") != 0;
  t.bf16 = a.has("bf16") && a.need(kOp, "bf16") != 0;
  const std::string mask = a.gets("mask", "");
  if (mask == "causal" || mask == "block") {
    t.mask = mask == "causal" ? MaskKind::Causal : MaskKind::Block;
    if (qPos0 + Tq > kvLen)
      op_fail(DVL_ERR_RANGE, kOp, "query positions qPos0 + Tq = " + std::to_string(qPos0 + Tq) + " exceed kvLen " + std::to_string(kvLen) +
                                      " (the queries' own keys must be in the cache)", in);
    if (t.mask == MaskKind::Block && (t.blockSize = a.needi(kOp, "blockSize")) < 1) op_fail(DVL_ERR_RANGE, kOp, "blockSize must be >= 1", in);
  } else if (mask == "segments") {
    t.mask = MaskKind::Segments;
    const std::vector<double>* cu = a.geta("segments");
    if (!cu || cu->size() < 2) op_fail(DVL_ERR_ARG, kOp, "mask 'segments' needs segments = [0, ..., kvLen] (cu_seqlens)", in);
    if ((*cu)[0] != 0 || cu->back() != double(kvLen))
      op_fail(DVL_ERR_RANGE, kOp, "segments must start at 0 and end at kvLen " + std::to_string(kvLen), in);
    for (size_t s = 1; s < cu->size(); ++s)
      if (!((*cu)[s] >= (*cu)[s - 1]) || (*cu)[s] != std::floor((*cu)[s]))
        op_fail(DVL_ERR_RANGE, kOp, "segments must be non-decreasing integers (entry " + std::to_string(s) + ")", in);
    if (Tq != kvLen || qPos0 != 0) op_fail(DVL_ERR_SHAPE, kOp, "mask 'segments' needs Tq = kvLen and qPos0 = 0", in);
    for (double d : *cu) t.segments.push_back(int64_t(d));
  } else if (mask == "full") {
    t.mask = MaskKind::Full;
  } else {
    op_fail(DVL_ERR_ARG, kOp, "mask must be 'causal', 'block', 'full' or 'segments', got '" + mask + "'", in);
  }
  a.attention = std::move(t);
}

static Tensors attention_plan(const Tensors& in, const OpAttrs&) { return {Tensor::alloc(DType::F32, in[0]->shape)}; }

// The arguments every item of one attention shares (pointers and ranges are the caller's).
static AttnArgs base_args(OpContext& ctx, const Tensor& q, const Tensor& k, bool has_scale, double scale) {
  AttnArgs A{};
  const int64_t nh = q.dim(1), hd = q.dim(2), nkv = k.dim(k.rank() - 3);
  A.kv_dtype = k.dtype;
  A.nh = nh;
  A.nkv = nkv;
  A.group = nh / nkv;
  A.hd = hd;
  A.cap = k.dim(k.rank() - 2);
  A.scale = float(has_scale ? scale : 1.0 / std::sqrt(double(hd)));
  A.cvt_bf16 = ctx.k.cvt_bf16_to_f32;
  A.cvt_f16 = ctx.k.cvt_f16_to_f32;
  return A;
}

// One sequence's work: its arguments (q, o at its first row; k, v at its slot) and row count.
struct SeqItems {
  AttnArgs A;
  int64_t Tq;
};

// Splits each sequence's kv heads × rows into items and runs them all over the pool.
// Rows per item for a kv head's `rows` (query row, head) pairs: enough items for every thread,
// at most 64 rows (the item's scratch), and at least 8 (an item walks all of its head's keys;
// 4 rows would not amortise that). Passes of more than 64 rows per head (prefills, towers) get
// twice as many items as threads, for balance under causal masks; a decode step's rows all see
// about the same keys, and splitting them further only repeats the tile fills: a block step of
// the bundled decoder (32 rows per kv head, 110 keys) took 8-10 µs on two threads in 16-row
// items against 7-9 µs in one 32-row item per kv head (9.4 µs on one thread).
static int64_t item_rows(int64_t rows, int64_t nkv, int64_t nth) {
  const int64_t per_head = ((rows > kAttnMaxRows ? 2 : 1) * nth + nkv - 1) / nkv;
  const int64_t run = (rows + per_head - 1) / per_head;
  return std::max<int64_t>(1, std::min<int64_t>(std::max<int64_t>(run, 8), kAttnMaxRows));
}

// Shared tiles up to this size; beyond it (very long contexts) each item
// converts its own tiles, as it always did.
static constexpr size_t kSharedTilesMaxBytes = size_t(64) << 20;

static void run_items(OpContext& ctx, const std::vector<SeqItems>& seqs_in) {
  std::vector<SeqItems> seqs = seqs_in;
  auto item = attention_item_base;
#if defined(DVL_HAVE_X86_KERNELS)
  if (ctx.k.isa == Isa::Avx2 || ctx.k.isa == Isa::Avx2Vnni) item = attention_item_avx2;
  if (ctx.k.isa == Isa::Avx512 || ctx.k.isa == Isa::Avx512Bf16) item = attention_item_avx512;
  // The bf16 products (attention_kernel.h) exist at this level only; elsewhere the attribute
  // leaves the f32 products.
  if (ctx.k.isa == Isa::Avx512Bf16 && !seqs_in.empty() && seqs_in[0].A.bf16) item = attention_item_avx512_bf16;
#endif
  // Split each kv head's Tq·group rows into runs (item_rows). How rows are grouped into items
  // never changes a row's result (attention_kernel.h).
  struct Item {
    const AttnArgs* A;
    int64_t g, r0, r1;
  };
  std::vector<Item> items;
  const int64_t nth = ctx.pool.size();
  for (const SeqItems& s : seqs) {
    const AttnArgs& A = s.A;
    const int64_t rows = s.Tq * A.group, run = item_rows(rows, A.nkv, nth);
    for (int64_t g = 0; g < A.nkv; ++g)
      for (int64_t r0 = 0; r0 < rows; r0 += run) items.push_back({&s.A, g, r0, std::min(rows, r0 + run)});
  }
  const int64_t hd = seqs.empty() ? 0 : seqs[0].A.hd;

  // A kv head split into several items: convert its K/V tiles once for all of them (each item
  // used to transpose and convert every tile itself — a prefill's 64-row items did so Tq·group/64
  // times over). Same f32 values, same products: the rows' bits do not change.
  struct Share {
    size_t seq;
    int64_t LO, HI, tile0, ntiles;
    size_t off_f, off_b;  // floats / flag bytes into the block
  };
  std::vector<Share> shares;
  size_t nf = 0, nb = 0;
  for (size_t si = 0; si < seqs.size(); ++si) {
    const AttnArgs& A = seqs[si].A;
    // Worth it past one full item per kv head: below that the items split only for the threads'
    // balance, and converting a few tiles twice costs less than a second fork/join.
    const int64_t rows = seqs[si].Tq * A.group;
    if (rows <= kAttnMaxRows || rows <= item_rows(rows, A.nkv, nth)) continue;  // one item per kv head: nothing to share
    int64_t LO = INT64_MAX, HI = 0;
    for (int64_t i = 0; i < seqs[si].Tq; ++i)
      if (A.lo[i] < A.hi[i]) { LO = std::min(LO, A.lo[i]); HI = std::max(HI, A.hi[i]); }
    if (HI <= LO) continue;
    const int64_t TT = attn_tile(A.hd), tile0 = LO / TT, ntiles = (HI + TT - 1) / TT - tile0;
    shares.push_back({si, LO, HI, tile0, ntiles, nf, nb});
    nf += size_t(A.nkv * ntiles * attn_tile_floats(A.hd));
    nb += size_t(A.nkv * (HI - LO));
  }
  // One scratch block from the queue's grow-only scratch: the shared tiles (if any), then one
  // item scratch per pool participant (85-800 KB each; not zero-filled: attn_item initialises
  // every part it reads). Allocated per call they sat at the heap's top, and every free trimmed
  // the heap and every next call faulted the pages back in (a third of a block step's attention
  // on the dev VM).
  const bool share = !shares.empty() && nf * 4 + nb + 64 <= kSharedTilesMaxBytes;
  const size_t tile_bytes = share ? (nf * 4 + nb + 63) / 64 * 64 : 0;
  const size_t item_floats = size_t(attn_scratch_floats(hd)) / 16 * 16 + 16;  // 64-byte multiples
  Scratch local;
  Scratch& scratch = ctx.scratch ? *ctx.scratch : local;
  char* base = static_cast<char*>(scratch.get(tile_bytes + size_t(ctx.pool.size()) * item_floats * 4));
  float* item_scratch = reinterpret_cast<float*>(base + tile_bytes);
  // Per shared kv head: its tiles, then its items, on one thread, when there are enough kv
  // heads for every thread (a vision tower: 4 heads on 2 threads). Filling every tile in one
  // fork and running the items in another left each thread reading tiles the other had written
  // (a cross-core copy of each): a 252-patch tower call on two threads took 0.18-0.20 ms
  // (0.25 on one), now 0.17. The grouping changes no row's arithmetic.
  if (share) {
    float* block = reinterpret_cast<float*>(base);
    uint8_t* flags = reinterpret_cast<uint8_t*>(block + nf);
    for (Share& sh : shares) {
      AttnArgs& A = seqs[sh.seq].A;
      A.tiles = block + sh.off_f;
      A.finite = flags + sh.off_b;
      A.tile0 = sh.tile0;
      A.ntiles = sh.ntiles;
      A.key0 = sh.LO;
      A.span = sh.HI - sh.LO;
    }
    // Items are in (sequence, kv head, rows) order: one group per shared (sequence, kv head).
    std::vector<const Share*> share_of(seqs.size(), nullptr);
    for (const Share& sh : shares) share_of[sh.seq] = &sh;
    struct Group { size_t seq; int64_t g; size_t i0, i1; };
    std::vector<Group> groups;
    bool by_head = shares.size() == seqs.size();
    size_t i = 0;
    for (size_t si = 0; si < seqs.size() && by_head; ++si)
      for (int64_t g = 0; g < seqs[si].A.nkv; ++g) {
        const size_t i0 = i;
        while (i < items.size() && items[i].A == &seqs[si].A && items[i].g == g) ++i;
        groups.push_back({si, g, i0, i});
      }
    by_head = by_head && i == items.size() && int64_t(groups.size()) >= nth && nth > 1;
    const auto fill_tile = [&](size_t si, int64_t g, int64_t ti) {
      const Share& sh = *share_of[si];
      const AttnArgs& A = seqs[si].A;
      const int64_t TT = attn_tile(A.hd);
      const int64_t j0 = (sh.tile0 + ti) * TT, a0 = std::max(j0, sh.LO), j1 = std::min(j0 + TT, sh.HI);
      float* Kt = const_cast<float*>(A.tiles) + (g * A.ntiles + ti) * attn_tile_floats(A.hd);
      attn_fill_tile(A, g, j0, a0, j1, Kt, Kt + A.hd * TT, const_cast<uint8_t*>(A.finite) + g * A.span + (a0 - sh.LO));
    };
    if (by_head) {
      ctx.pool.parallel_for_tid(int64_t(groups.size()), 1, [&](int tid, int64_t b, int64_t e) {
        float* sc = item_scratch + size_t(tid) * item_floats;
        for (int64_t q = b; q < e; ++q) {
          const Group& G = groups[size_t(q)];
          for (int64_t ti = 0; ti < share_of[G.seq]->ntiles; ++ti) fill_tile(G.seq, G.g, ti);
          for (size_t it = G.i0; it < G.i1; ++it) item(*items[it].A, items[it].g, items[it].r0, items[it].r1, sc);
        }
      });
      return;
    }
    struct Fill { size_t seq; int64_t g, ti; };
    std::vector<Fill> fills;
    for (const Share& sh : shares)
      for (int64_t g = 0; g < seqs[sh.seq].A.nkv; ++g)
        for (int64_t ti = 0; ti < sh.ntiles; ++ti) fills.push_back({sh.seq, g, ti});
    ctx.pool.parallel_for(int64_t(fills.size()), 1, [&](int64_t b, int64_t e) {
      for (int64_t f = b; f < e; ++f) fill_tile(fills[size_t(f)].seq, fills[size_t(f)].g, fills[size_t(f)].ti);
    });
  }
  // Items in one piece when the whole call is a few microseconds of work (a small model's decode
  // step: a plan judges attention by ≥ 256 keys at record time, since it replays as keys grow;
  // here the keys are known).
  double macs = 0;
  for (const Item& it : items) macs += 2.0 * double(it.r1 - it.r0) * double(it.A->hd) * double(it.A->hi[(it.r1 - 1) / it.A->group]);
  const int64_t grain = macs < double(1 << 17) ? int64_t(items.size()) : 1;
  ctx.pool.parallel_for_tid(int64_t(items.size()), grain, [&](int tid, int64_t b, int64_t e) {
    float* sc = item_scratch + size_t(tid) * item_floats;
    for (int64_t it = b; it < e; ++it) item(*items[it].A, items[it].g, items[it].r0, items[it].r1, sc);
  });
}

static void attention_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs& a) {
  const Tensor &q = *in[0], &k = *in[1], &v = *in[2];
  const int64_t Tq = q.dim(0), nh = q.dim(1), hd = q.dim(2);
  const AttentionAttrs& t = a.attention;
  const int64_t kvLen = t.kvLen, qPos0 = t.qPos0;
  if (Tq == 0 || nh == 0 || hd == 0) return;

  // Visible key range per query row.
  std::vector<int64_t> lo(size_t(Tq), 0), hi(size_t(Tq), kvLen);
  if (t.mask == MaskKind::Causal) {
    for (int64_t i = 0; i < Tq; ++i) hi[i] = qPos0 + i + 1;
  } else if (t.mask == MaskKind::Block) {
    const int64_t bs = t.blockSize;
    for (int64_t i = 0; i < Tq; ++i) hi[i] = std::min(kvLen, ((qPos0 + i) / bs + 1) * bs);
  } else if (t.mask == MaskKind::Segments) {
    const std::vector<int64_t>& cu = t.segments;
    size_t s = 0;
    for (int64_t i = 0; i < Tq; ++i) {
      while (s + 1 < cu.size() && i >= cu[s + 1]) ++s;
      lo[i] = cu[s];
      hi[i] = cu[s + 1];
    }
  }

  AttnArgs A = base_args(ctx, q, k, t.has_scale, t.scale);
  A.q = q.data<float>();
  A.k = k.raw();
  A.v = v.raw();
  A.o = out[0]->data<float>();
  A.lo = lo.data();
  A.hi = hi.data();
  A.rows_kernel = t.rows_kernel;
  A.bf16 = t.bf16;
  run_items(ctx, {SeqItems{A, Tq}});
}

// ---- attention_batch: several sequences in one op (continuous batching) --------------------------
//
// q f32 [T, nh, hd] holds the rows of B sequences one after another; k, v f32|bf16|f16
// [S, nkv, cap, hd] hold S cache slots. attr seqs = B × 6 numbers per sequence:
//   row0, row1   its rows [row0, row1) of q (in order, covering [0, T) without gaps)
//   slot         its cache slot
//   pos0         absolute position of row0 (its keys [0, pos0) are in the slot already; the
//                pass's own keys are at [pos0, pos0 + n), n = row1 − row0)
//   mask         0 causal, 1 block (block-causal, bs below), 2 full (every key < pos0 + n)
//   bs           block size of the block mask
// Each sequence is exactly one `attention` call on its own slot (kvLen = pos0 + n, qPos0 =
// pos0): same items, same per-row arithmetic, so a batched row equals its unbatched self bit
// for bit (attention_kernel.h: a row depends only on its keys and the absolute tile grid).

std::vector<BatchSeq> batch_seqs(const char* op, const Tensors& in, const Attrs& a, int64_t T, int64_t S, int64_t cap) {
  const std::vector<double>* v = a.geta("seqs");
  if (!v || v->empty() || v->size() % 6) op_fail(DVL_ERR_ARG, op, "attr seqs must hold 6 numbers per sequence", in);
  std::vector<BatchSeq> out;
  int64_t next = 0;
  for (size_t i = 0; i < v->size(); i += 6) {
    int64_t f[6];
    for (int j = 0; j < 6; ++j) {
      const double d = (*v)[i + j];
      if (!(d >= 0) || d != double(int64_t(d)) || d > 9e15) op_fail(DVL_ERR_ARG, op, "seqs entries must be non-negative integers", in);
      f[j] = int64_t(d);
    }
    BatchSeq s{f[0], f[1], f[2], f[3], MaskKind::Full, f[5]};
    // The message prefix, built only on failure (every plan replay re-parses seqs).
    const auto at = [&] { return "sequence " + std::to_string(i / 6) + ": "; };
    if (s.row0 != next || s.row1 <= s.row0) op_fail(DVL_ERR_RANGE, op, at() + "rows must follow the previous sequence's and be non-empty", in);
    if (s.slot >= S) op_fail(DVL_ERR_RANGE, op, at() + "slot " + std::to_string(s.slot) + " of " + std::to_string(S), in);
    if (s.pos0 + (s.row1 - s.row0) > cap)
      op_fail(DVL_ERR_RANGE, op, at() + "positions " + std::to_string(s.pos0) + ".." + std::to_string(s.pos0 + s.row1 - s.row0) +
                                     " exceed the cache capacity " + std::to_string(cap), in);
    if (f[4] > 2) op_fail(DVL_ERR_ARG, op, at() + "mask must be 0 (causal), 1 (block) or 2 (full)", in);
    s.mask = f[4] == 0 ? MaskKind::Causal : f[4] == 1 ? MaskKind::Block : MaskKind::Full;
    if (s.mask == MaskKind::Block && s.bs < 1) op_fail(DVL_ERR_RANGE, op, at() + "the block mask needs bs >= 1", in);
    next = s.row1;
    out.push_back(s);
  }
  if (T >= 0 && next != T) op_fail(DVL_ERR_SHAPE, op, "seqs cover rows 0.." + std::to_string(next) + ", q has " + std::to_string(T), in);
  return out;
}

// Validates inputs and attributes and fills a.attention_batch (the sequences, typed).
static void attention_batch_parse(const Tensors& in, OpAttrs& a) {
  const char* op = "attention_batch";
  op_need_inputs(op, in, 3, 4);
  op_need_dtype(op, in, 0, {DType::F32});
  op_need_dtype(op, in, 1, {DType::F32, DType::BF16, DType::F16});
  op_need_dtype(op, in, 2, {DType::F32, DType::BF16, DType::F16});
  op_need_rank(op, in, 0, 3);
  op_need_rank(op, in, 1, 4);
  op_need_rank(op, in, 2, 4);
  const Tensor &q = *in[0], &k = *in[1], &v = *in[2];
  if (k.dtype != v.dtype || k.shape != v.shape) op_fail(DVL_ERR_SHAPE, op, "k and v must have the same dtype and shape [S, nkv, cap, hd]", in);
  const int64_t nh = q.dim(1), hd = q.dim(2), nkv = k.dim(1);
  if (k.dim(3) != hd) op_fail(DVL_ERR_SHAPE, op, "q's head dim differs from the cache's", in);
  if (hd > 512) op_fail(DVL_ERR_SHAPE, op, "head dim " + std::to_string(hd) + " is above the supported 512", in);
  if (nkv < 1 || nh % nkv) op_fail(DVL_ERR_SHAPE, op, "query heads must be a multiple of kv heads", in);
  AttentionBatchAttrs t;
  if (a.has("scale")) {
    t.scale = a.need(op, "scale");
    t.has_scale = true;
    if (!std::isfinite(t.scale)) op_fail(DVL_ERR_RANGE, op, "scale must be finite", in);
  }
  t.bf16 = a.has("bf16") && a.need(op, "bf16") != 0;
  // Optional input 3, rows i32 [Tq]: q holds only these rows of the layout (q row i is layout
  // row rows[i]), in sequence order — the last layer of a forward, whose other rows' outputs
  // nothing reads. The layout then covers its own rows, not q's.
  const bool picked = in.size() > 3 && in[3];
  if (picked) {
    op_need_dtype(op, in, 3, {DType::I32});
    op_need_rank(op, in, 3, 1);
    if (in[3]->dim(0) != q.dim(0)) op_fail(DVL_ERR_SHAPE, op, "rows must hold one layout row per row of q", in);
  }
  t.seqs = batch_seqs(op, in, a, picked ? -1 : q.dim(0), k.dim(0), k.dim(2));
  a.attention_batch = std::move(t);
}

static Tensors attention_batch_plan(const Tensors& in, const OpAttrs&) { return {Tensor::alloc(DType::F32, in[0]->shape)}; }

static void attention_batch_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs& a) {
  const Tensor &q = *in[0], &k = *in[1], &v = *in[2];
  const int64_t nh = q.dim(1), hd = q.dim(2), nkv = k.dim(1), cap = k.dim(2);
  if (q.dim(0) == 0 || nh == 0 || hd == 0) return;
  // Checked by parse, also when a plan replay patched them (Plan::replay parses them again).
  const std::vector<BatchSeq>& seqs = a.attention_batch.seqs;
  const size_t es = dtype_size(k.dtype);
  const size_t slot_bytes = size_t(nkv * cap * hd) * es;
  // q rows [i0, i1) of sequence b, at layout rows lrow(i) of it: one group of items.
  const int32_t* rows = in.size() > 3 && in[3] ? in[3]->data<int32_t>() : nullptr;
  const int64_t total = seqs.back().row1;
  const auto lrow = [&](int64_t i) { return rows ? int64_t(rows[i]) : i; };
  std::vector<std::vector<int64_t>> lo, hi;
  std::vector<SeqItems> items;
  lo.reserve(seqs.size());
  hi.reserve(seqs.size());
  size_t b = 0;
  for (int64_t i0 = 0; i0 < q.dim(0);) {
    const int64_t r = lrow(i0);
    if (r < 0 || r >= total)
      throw Error(DVL_ERR_RANGE, "attention_batch: rows[" + std::to_string(i0) + "] = " + std::to_string(r) + " is outside the layout's " +
                                     std::to_string(total) + " rows");
    if (r < seqs[b].row0 || r >= seqs[b].row1) {
      size_t nb = b + 1;
      while (nb < seqs.size() && r >= seqs[nb].row1) ++nb;
      if (nb == seqs.size() || r < seqs[nb].row0)
        throw Error(DVL_ERR_RANGE, "attention_batch: rows must list each sequence's rows after the previous sequence's (rows[" +
                                       std::to_string(i0) + "] = " + std::to_string(r) + ")");
      b = nb;
    }
    const BatchSeq& s = seqs[b];
    const int64_t kvLen = s.pos0 + (s.row1 - s.row0);
    int64_t i1 = i0;
    lo.emplace_back();
    hi.emplace_back();
    for (; i1 < q.dim(0); ++i1) {
      const int64_t ri = lrow(i1);
      if (ri < s.row0 || ri >= s.row1) break;
      const int64_t p = s.pos0 + ri - s.row0;
      lo.back().push_back(0);
      hi.back().push_back(s.mask == MaskKind::Causal  ? p + 1
                          : s.mask == MaskKind::Block ? std::min(kvLen, (p / s.bs + 1) * s.bs)
                                                      : kvLen);
    }
    AttnArgs A = base_args(ctx, q, k, a.attention_batch.has_scale, a.attention_batch.scale);
    A.q = q.data<float>() + i0 * nh * hd;
    A.o = out[0]->data<float>() + i0 * nh * hd;
    A.k = static_cast<const char*>(k.raw()) + size_t(s.slot) * slot_bytes;
    A.v = static_cast<const char*>(v.raw()) + size_t(s.slot) * slot_bytes;
    A.lo = lo.back().data();
    A.hi = hi.back().data();
    A.bf16 = a.attention_batch.bf16;
    items.push_back({A, i1 - i0});
    i0 = i1;
  }
  run_items(ctx, items);
}

void ops_register_attention(std::vector<OpDef>& t) {
  t.push_back({OpId::Attention, attention_plan, attention_run, attention_parse});
  t.push_back({OpId::AttentionBatch, attention_batch_plan, attention_batch_run, attention_batch_parse});
}

}  // namespace dvl
