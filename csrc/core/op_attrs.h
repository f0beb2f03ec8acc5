// op_attrs.h — an op's attributes, typed: parsed once from the JS attribute object and shared by
// the plan, the CPU run and the CUDA run.
//
// The JS layer copies an op's attribute object into string-keyed Attrs (attrs.h). The op's
// parse step (OpDef::parse, csrc/cpu/ops/ops.h) then validates them — with the inputs, since
// most limits are shapes — and fills its family's struct below, once, on the JS thread: when
// the op is enqueued or recorded, and again at each plan replay for an op whose attributes the
// replay patches (Plan::replay). plan(), run() and the CUDA plugin read the struct and compare
// no strings. Header-only: the CUDA plugin (not linked against the engine) receives an OpAttrs
// through backend.h, so changing this layout bumps DVL_BACKEND_API_VERSION.
//
// Typed so far: attention and attention_batch (the attention family). The other families still
// read their string-keyed attributes (the Attrs base) in plan and run; each moves here in turn.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "attrs.h"

namespace dvl {

// Which keys a query row sees (csrc/cpu/ops/attention.cpp has the ranges). The values are the
// CUDA kernel's mask codes (csrc/cuda/ops_attention.cu), which reads them as ints.
enum class MaskKind : int32_t { Full = 0, Causal = 1, Block = 2, Segments = 3 };

// attention: q [Tq, nh, hd] at absolute positions qPos0.., over keys 0..kvLen−1 of the cache.
struct AttentionAttrs {
  MaskKind mask = MaskKind::Full;
  int64_t kvLen = 0;
  int64_t qPos0 = 0;
  int64_t blockSize = 1;           // MaskKind::Block only
  std::vector<int64_t> segments;   // MaskKind::Segments only: cu_seqlens [0, ..., kvLen]
  bool has_scale = false;          // else 1/sqrt(hd)
  double scale = 1;
};

// One sequence of a batched pass (attention_batch, kv_cache_append_batch), from attr seqs:
// its rows [row0, row1) of q / x, its cache slot, the absolute position of row0, its mask
// (Causal, Block or Full) and the block size of a block mask.
struct BatchSeq {
  int64_t row0, row1, slot, pos0;
  MaskKind mask;
  int64_t bs;
};

// attention_batch: the sequences, and the softmax scale shared by all of them.
struct AttentionBatchAttrs {
  std::vector<BatchSeq> seqs;
  bool has_scale = false;
  double scale = 1;
};

// The attributes of one op: the string-keyed ones as given (the base: families not typed yet
// read them), and the typed struct of the op's family, filled by its parse step (the others
// stay default).
struct OpAttrs : Attrs {
  OpAttrs() = default;
  explicit OpAttrs(Attrs raw) : Attrs(std::move(raw)) {}

  AttentionAttrs attention;             // attention
  AttentionBatchAttrs attention_batch;  // attention_batch
};

}  // namespace dvl
