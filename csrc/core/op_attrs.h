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
// Every op with attributes has its struct here; no plan() or run() reads a string key (the Attrs
// base keeps the attributes as given: parse reads them, and a plan replay patches them).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "attrs.h"
#include "dtype.h"

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
  bool rows_kernel = false;        // attr rowKernel (tests): the row-layout kernel at every head dim
  bool bf16 = false;               // attr bf16: products in bf16 where the level has vdpbf16ps
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
  bool bf16 = false;  // attr bf16, as attention's
};

// rms_norm, layer_norm: the variance epsilon.
struct NormAttrs {
  double eps = 0;
};

// rope_cos_sin: the base and the rotary dims (even).
struct RopeAttrs {
  double theta = 1e4;
  int64_t dim = 2;
};

// kv_cache_append: x's rows go to positions pos0..; kv_cache_append_batch: the sequences.
struct KvAppendAttrs {
  int64_t pos0 = 0;
  std::vector<BatchSeq> seqs;
};

// slice_cols: columns [start, start + len) of the last dim; narrow_rows: rows of dim 0.
struct SliceAttrs {
  int64_t start = 0, len = 0;
};

// confidence_remask (csrc/cpu/ops/sample.cpp has the meaning of each): the sampling settings
// (topK, topP, seed, counters matter when temperature > 0), then the remasking rule.
struct RemaskAttrs {
  double temperature = 0;
  int64_t topK = 0;
  double topP = 1;
  double seed = 0;
  std::vector<double> counters;  // one per row when sampling
  bool raw = false;              // confidence 'raw' (else 'modified')
  int64_t k = 0;                 // schedule entry: how many to reveal (static)
  bool dynamic = false;          // mode 'dynamic' (else 'static')
  double threshold = 0.85;       // dynamic mode's confidence threshold
};

// load: bytes [offset, offset + bytes) of the file at path, of dtype src.
struct LoadAttrs {
  std::string path;
  DType src = DType::F32;
  int64_t offset = 0, bytes = 0;
};

// empty: the dtype and shape to allocate; reshape: the new shape, its -1 entry resolved.
struct ShapeAttrs {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
};

// image_resize, resize_bilinear: the output size.
struct SizeAttrs {
  int64_t width = 0, height = 0;
};

// patch_rows: the patch geometry, the per-channel normalisation and the rounding of the values
// (0 none, 1 bf16, 2 f16: the tower's cast of its input to the weight dtype).
struct PatchAttrs {
  int64_t patch = 14, merge = 2, temporal = 2;
  double mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
  int round = 0;
  bool bf16_out = false;  // attr dtype 'bf16': the rows stored as bf16 (needs round 'bf16')
};

// The probes: stream_read (repeat), compute_peak (kind 'f' f32 | 'b' bf16 | 'q' q8, iters),
// kernel_probe (dot, else axpy with alpha).
struct ProbeAttrs {
  int64_t repeat = 1;
  char kind = 0;
  int64_t iters = 1;
  bool dot = false;
  double alpha = 0;
};

// The attributes of one op: the string-keyed ones as given (the base: families not typed yet
// read them), and the typed struct of the op's family, filled by its parse step (the others
// stay default).
struct OpAttrs : Attrs {
  OpAttrs() = default;
  explicit OpAttrs(Attrs raw) : Attrs(std::move(raw)) {}

  AttentionAttrs attention;             // attention
  AttentionBatchAttrs attention_batch;  // attention_batch
  NormAttrs norm;                       // rms_norm, layer_norm
  RopeAttrs rope;                       // rope_cos_sin
  int64_t heads = 0;                    // qkv_rope_split: query heads,
  int64_t kv_heads = 0;                 //   key/value heads (GQA),
  bool kv_rows = false;                 //   K and V [R, nkv, hd] (text) instead of [nkv, R, hd]
  KvAppendAttrs kv;                     // kv_cache_append, kv_cache_append_batch
  double scale = 1;                     // scale: the factor s
  DType convert_to = DType::F32;        // convert: the target dtype
  SliceAttrs slice;                     // slice_cols, narrow_rows
  RemaskAttrs remask;                   // confidence_remask
  LoadAttrs load;                       // load
  ShapeAttrs shape;                     // empty, reshape
  SizeAttrs size;                       // image_resize, resize_bilinear
  PatchAttrs patch;                     // patch_rows
  ProbeAttrs probe;                     // stream_read, compute_peak, kernel_probe
};

}  // namespace dvl
