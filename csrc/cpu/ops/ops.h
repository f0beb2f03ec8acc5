// ops.h — the op table: each op validates and allocates on the JS thread (plan), then
// computes on the queue thread (run).
//
// parse() and plan() run synchronously inside the JS call, so a shape, dtype or attribute
// mistake throws at the call site with the op and shapes named; run() only sees inputs and
// attributes they accepted. Ops that write into an input (kv_cache_append, load) return no
// outputs from plan(). Attributes: OpAttrs (csrc/core/op_attrs.h), parsed once by parse().
#pragma once
#include <string>
#include <vector>

#include "../../core/attrs.h"
#include "../../core/op_attrs.h"
#include "../../core/error.h"
#include "../../core/ops.h"
#include "../../core/queue.h"
#include "../../core/tensor.h"
#include "../kernels.h"

namespace dvl {

using Tensors = std::vector<TensorP>;

struct OpDef {
  OpId id;
  // Sizes the outputs; may assume parse() accepted `in` and `a`.
  Tensors (*plan)(const Tensors& in, const OpAttrs& a);
  void (*run)(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs& a);
  // The family's parse step: validates the inputs and the string-keyed attributes, in the order
  // plan() used to (so the first error reported is the same), and fills the family's typed
  // struct in `a`. Null for ops without attributes (their plan validates the inputs).
  void (*parse_into)(const Tensors& in, OpAttrs& a) = nullptr;

  const char* name() const { return op_name(id); }
  // The op's attributes parsed once: plan, the CPU run and the CUDA run all take the result.
  OpAttrs parse(const Tensors& in, Attrs raw) const {
    OpAttrs a(std::move(raw));
    if (parse_into) parse_into(in, a);
    return a;
  }
};

// The CPU op of an id (every OpId has one), or of a JS name (null when unknown).
const OpDef& op_find(OpId id);
const OpDef* op_find(const std::string& name);
std::vector<std::string> op_names();

// Registration: each op file defines one function that appends its ops.
void ops_register_basic(std::vector<OpDef>& t);   // embedding, add, mul, scale, convert, copy
void ops_register_matmul(std::vector<OpDef>& t);  // matmul
void ops_register_io(std::vector<OpDef>& t);      // load (file bytes → tensor)
void ops_register_norm(std::vector<OpDef>& t);    // rms_norm, layer_norm             (norm.cpp)
void ops_register_rope(std::vector<OpDef>& t);    // rope_cos_sin, rope               (rope.cpp)
void ops_register_act(std::vector<OpDef>& t);     // silu, swiglu, gelu, gelu_tanh, softmax (act.cpp)
void ops_register_attention(std::vector<OpDef>& t);  // attention                     (attention.cpp)
void ops_register_kv(std::vector<OpDef>& t);      // kv_cache_append                  (kv_cache.cpp)
void ops_register_shape(std::vector<OpDef>& t);   // reshape, gather_rows, scatter_rows, slice_cols, concat_rows (shape.cpp)
void ops_register_sample(std::vector<OpDef>& t);  // confidence_remask                (sample.cpp)
void ops_register_probe(std::vector<OpDef>& t);   // stream_read (bandwidth probe)    (probe.cpp)
void ops_register_image(std::vector<OpDef>& t);   // image_resize (Pillow bicubic)    (image.cpp)
void ops_register_bilinear(std::vector<OpDef>& t);  // resize_bilinear (anyres downsample) (bilinear.cpp)

// ---- helpers for plan() ---------------------------------------------------------------------

[[noreturn]] void op_fail(const char* code, const std::string& op, const std::string& what, const Tensors& in);
void op_need_inputs(const std::string& op, const Tensors& in, size_t min, size_t max);
void op_need_dtype(const std::string& op, const Tensors& in, size_t i, std::initializer_list<DType> ok);
void op_need_rank(const std::string& op, const Tensors& in, size_t i, int rank);
// Leading dims product of t (all but the last).
int64_t rows_of(const Tensor& t);
// Row r (of K values) of an f32|bf16|f16|q8 tensor, widened to f32 (q8: dequantised) into dst.
void row_to_f32(const OpContext& ctx, const Tensor& t, int64_t r, int64_t K, float* dst);

// Reads attr seqs (6 numbers per sequence) and checks them against T rows and S cache slots of
// capacity cap; fails naming `op` and the sequence.
std::vector<BatchSeq> batch_seqs(const char* op, const Tensors& in, const Attrs& a, int64_t T, int64_t S, int64_t cap);
// n f32 values into a KV cache (f32|bf16|f16) at element offset `at`, rounded to nearest even as
// every cache write rounds them (kv_cache.cpp; the q|k|v split's stores in rope.cpp).
void kv_store_row(const OpContext& ctx, const float* src, Tensor& cache, int64_t at, int64_t n);

// A file opened for reading (closed with the object); read_exact preads until `bytes` are in
// dst. Failures, including a file that ends early, are Error(DVL_IO) naming the path. (io.cpp)
class InputFile {
 public:
  explicit InputFile(const std::string& path);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  void read_exact(void* dst, size_t bytes, long offset) const;

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace dvl
