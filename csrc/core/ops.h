// ops.h — the op set by identity: one enum, one name table. The N-API layer turns the JS op name
// into an OpId once, when an op is enqueued or recorded; from there on the CPU op table
// (csrc/cpu/ops/registry.cpp), the plan (plan.cpp), the CUDA queue (csrc/cuda/host/cuda_queue.cpp)
// and the CUDA plugin's table (csrc/cuda/ops_basic.cu, through backend.h) all key on the id and
// never compare names. Header-only, so the plugin (not linked against the engine) shares it.
//
// The ids cross the plugin boundary as ints: changing the order or the list bumps
// DVL_BACKEND_API_VERSION (backend.h). New ops go at the end.
#pragma once
#include <cstdint>
#include <cstring>

namespace dvl {

// X(Id, "js name", family): family is the csrc/cpu/ops file that implements it.
#define DVL_OP_LIST(X)                                   \
  X(Empty, "empty", basic)                               \
  X(Embedding, "embedding", basic)                       \
  X(Add, "add", basic)                                   \
  X(Mul, "mul", basic)                                   \
  X(Scale, "scale", basic)                               \
  X(Convert, "convert", basic)                           \
  X(Matmul, "matmul", matmul)                            \
  X(Load, "load", io)                                    \
  X(RmsNorm, "rms_norm", norm)                           \
  X(LayerNorm, "layer_norm", norm)                       \
  X(RopeCosSin, "rope_cos_sin", rope)                    \
  X(Rope, "rope", rope)                                  \
  X(QkvRopeSplit, "qkv_rope_split", rope)                \
  X(Silu, "silu", act)                                   \
  X(Swiglu, "swiglu", act)                               \
  X(Gelu, "gelu", act)                                   \
  X(GeluTanh, "gelu_tanh", act)                          \
  X(Softmax, "softmax", act)                             \
  X(Attention, "attention", attention)                   \
  X(AttentionBatch, "attention_batch", attention)        \
  X(KvCacheAppend, "kv_cache_append", kv_cache)          \
  X(KvCacheAppendBatch, "kv_cache_append_batch", kv_cache) \
  X(Reshape, "reshape", shape)                           \
  X(NarrowRows, "narrow_rows", shape)                    \
  X(GatherRows, "gather_rows", shape)                    \
  X(ScatterRows, "scatter_rows", shape)                  \
  X(SliceCols, "slice_cols", shape)                      \
  X(ConcatRows, "concat_rows", shape)                    \
  X(ConfidenceRemask, "confidence_remask", sample)       \
  X(StreamRead, "stream_read", probe)                    \
  X(KernelProbe, "kernel_probe", probe)                  \
  X(ComputePeak, "compute_peak", probe)                  \
  X(ImageResize, "image_resize", image)                  \
  X(ResizeBilinear, "resize_bilinear", bilinear)         \
  X(PatchRows, "patch_rows", image)

enum class OpId : int32_t {
#define DVL_OP_ENUM(id, name, family) id,
  DVL_OP_LIST(DVL_OP_ENUM)
#undef DVL_OP_ENUM
};

#define DVL_OP_COUNT_ONE(id, name, family) +1
constexpr int kOpCount = 0 DVL_OP_LIST(DVL_OP_COUNT_ONE);
#undef DVL_OP_COUNT_ONE

// The op's JS name ("attention"); "?" for a value outside the enum.
inline const char* op_name(OpId id) {
  static const char* const names[] = {
#define DVL_OP_NAME(id, name, family) name,
      DVL_OP_LIST(DVL_OP_NAME)
#undef DVL_OP_NAME
  };
  const int i = int(id);
  return i >= 0 && i < kOpCount ? names[i] : "?";
}

// The id of a JS op name; false for an unknown name.
inline bool op_lookup(const char* name, OpId* out) {
  for (int i = 0; i < kOpCount; ++i)
    if (std::strcmp(name, op_name(OpId(i))) == 0) {
      *out = OpId(i);
      return true;
    }
  return false;
}

// Ops with nothing to run: `empty` allocates (in a plan: scratch), `reshape` and `narrow_rows`
// are views of their input's storage.
inline bool op_is_view_or_alloc(OpId id) { return id == OpId::Empty || id == OpId::Reshape || id == OpId::NarrowRows; }

}  // namespace dvl
