// basic.cpp — embedding gather, elementwise add/mul/scale, dtype conversion.
//
// embedding: ids i32 [T], table f32|bf16|f16|q8|bf16p|q8p [V, H] → f32 [T, H]. An id outside [0, V) fails
//            the op with DVL_RANGE naming the id and its position (checked at run time: the
//            ids may be written by an earlier op still in the queue).
// add, mul:  f32 a [.., N] with f32 b of the same shape, or b [N] broadcast over the rows.
// scale:     f32 x * attr s.
// convert:   any float dtype → attr dtype (f32|bf16|f16), round to nearest even; to or from
//            q8 (rows of the last dim quantised by dtype.h's rule, or dequantised exactly); to
//            or from bf16p / q8p (a matrix rounded to bf16 or quantised, laid out in panels; or
//            read back exactly).
// empty:     no inputs; attrs dtype, shape → a new zero-filled tensor (allocated at plan time,
//            so a loader can read file bytes straight into it).
#include <string>
#include <vector>

#include "ops.h"

namespace dvl {

void row_to_f32(const OpContext& ctx, const Tensor& t, int64_t r, int64_t K, float* dst) {
  switch (t.dtype) {
    case DType::F32: std::memcpy(dst, t.data<float>() + r * K, size_t(K) * 4); break;
    case DType::BF16: ctx.k.cvt_bf16_to_f32(t.data<uint16_t>() + r * K, dst, K); break;
    case DType::F16: ctx.k.cvt_f16_to_f32(t.data<uint16_t>() + r * K, dst, K); break;
    case DType::Q8: ctx.k.dequantize_rows_q8(t.data<uint8_t>() + r * q8_row_bytes(K), 1, K, dst); break;
    case DType::Q8P: {
      // The row gathered back into the plain q8 layout first: on the stack up to 16 KiB (K ≤ 15 k;
      // an embedding calls this once per token), else the heap. (Not a thread_local buffer: its
      // destructor would need glibc 2.18's __cxa_thread_atexit_impl, above the addon's floor.)
      const size_t n = static_cast<size_t>(q8_row_bytes(K));
      uint8_t small[16384];
      std::vector<uint8_t> big(n > sizeof small ? n : 0);
      uint8_t* row = n > sizeof small ? big.data() : small;
      q8p_get_row(t.data<uint8_t>(), K, r, row);
      ctx.k.dequantize_rows_q8(row, 1, K, dst);
      break;
    }
    case DType::BF16P: {
      const uint16_t* q = t.data<uint16_t>() + bf16p_index(K, r, 0);
      for (int64_t k = 0; k < K; ++k) dst[k] = bf16_to_f32(q[bf16p_k_offset(k)]);
      break;
    }
    default: throw Error(DVL_ERR_DTYPE, std::string("row_to_f32: ") + dtype_name(t.dtype) + " is not a float dtype");
  }
}

static Tensors embedding_plan(const Tensors& in, const OpAttrs&) {
  op_need_inputs("embedding", in, 2, 2);
  op_need_dtype("embedding", in, 0, {DType::I32});
  op_need_dtype("embedding", in, 1, {DType::F32, DType::BF16, DType::F16, DType::Q8, DType::BF16P, DType::Q8P});
  op_need_rank("embedding", in, 1, 2);
  if (in[0]->rank() != 1) op_fail(DVL_ERR_SHAPE, "embedding", "ids must be rank 1", in);
  return {Tensor::alloc(DType::F32, {in[0]->dim(0), in[1]->dim(1)})};
}

static void embedding_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs&) {
  const int32_t* ids = in[0]->data<int32_t>();
  const Tensor& tab = *in[1];
  int64_t T = in[0]->dim(0), V = tab.dim(0), H = tab.dim(1);
  for (int64_t t = 0; t < T; ++t)
    if (ids[t] < 0 || ids[t] >= V)
      throw Error(DVL_ERR_RANGE, "embedding: id " + std::to_string(ids[t]) + " at position " + std::to_string(t) +
                                     " is outside the table's " + std::to_string(V) + " rows");
  float* y = out[0]->data<float>();
  ctx.pool.parallel_for(T, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      int64_t row = ids[t];
      float* dst = y + t * H;
      row_to_f32(ctx, tab, row, H, dst);
    }
  });
}

static Tensors binary_plan(const char* op, const Tensors& in) {
  op_need_inputs(op, in, 2, 2);
  op_need_dtype(op, in, 0, {DType::F32});
  op_need_dtype(op, in, 1, {DType::F32});
  const Tensor &a = *in[0], &b = *in[1];
  bool same = a.shape == b.shape;
  bool bcast = b.rank() == 1 && a.rank() >= 1 && b.dim(0) == a.dim(-1);
  if (!same && !bcast) op_fail(DVL_ERR_SHAPE, op, "b must have a's shape or be [" + std::to_string(a.rank() ? a.dim(-1) : 0) + "]", in);
  return {Tensor::alloc(DType::F32, a.shape)};
}

template <bool MUL>
static void binary_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs&) {
  const float* a = in[0]->data<float>();
  const float* b = in[1]->data<float>();
  float* y = out[0]->data<float>();
  int64_t n = in[0]->numel();
  int64_t nb = in[1]->numel();
  ctx.pool.parallel_for(n, 4096, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) {
      float bv = b[nb == n ? i : i % nb];
      y[i] = MUL ? a[i] * bv : a[i] + bv;
    }
  });
}

static Tensors add_plan(const Tensors& in, const OpAttrs&) { return binary_plan("add", in); }
static Tensors mul_plan(const Tensors& in, const OpAttrs&) { return binary_plan("mul", in); }

static void scale_parse(const Tensors& in, OpAttrs& a) {
  op_need_inputs("scale", in, 1, 1);
  op_need_dtype("scale", in, 0, {DType::F32});
  a.scale = a.need("scale", "s");
}

static Tensors scale_plan(const Tensors& in, const OpAttrs&) { return {Tensor::alloc(DType::F32, in[0]->shape)}; }

static void scale_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs& a) {
  float s = float(a.scale);
  const float* x = in[0]->data<float>();
  float* y = out[0]->data<float>();
  ctx.pool.parallel_for(in[0]->numel(), 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = x[i] * s;
  });
}

static void convert_parse(const Tensors& in, OpAttrs& a) {
  op_need_inputs("convert", in, 1, 1);
  op_need_dtype("convert", in, 0, {DType::F32, DType::BF16, DType::F16, DType::Q8, DType::BF16P, DType::Q8P});
  DType to;
  if (!dtype_parse(a.gets("dtype", ""), &to) || (to != DType::F32 && to != DType::BF16 && to != DType::F16 && !dtype_is_block(to)))
    op_fail(DVL_ERR_DTYPE, "convert", "attribute dtype must be f32, bf16, f16, q8, bf16p or q8p, got '" + a.gets("dtype", "") + "'", in);
  if (to == DType::Q8 && in[0]->rank() < 1) op_fail(DVL_ERR_SHAPE, "convert", "q8 needs rank ≥ 1 (rows of the last dim)", in);
  if ((to == DType::BF16P || to == DType::Q8P) && in[0]->rank() != 2)
    op_fail(DVL_ERR_SHAPE, "convert", std::string(dtype_name(to)) + " holds a matrix [N, K] (rank 2)", in);
  a.convert_to = to;
}

static Tensors convert_plan(const Tensors& in, const OpAttrs& a) { return {Tensor::alloc(a.convert_to, in[0]->shape)}; }

// Conversions to or from a block type (q8, bf16p), row by row (a row = the last dim).
static void convert_rows_run(OpContext& ctx, const Tensor& x, const Tensor& y) {
  const int64_t K = x.dim(-1), R = K ? x.numel() / K : 0;
  if (x.dtype == y.dtype) {
    std::memcpy(y.raw(), x.raw(), x.nbytes());
    return;
  }
  // bf16p padding must be zero (a pair's second value times a zero activation is read); an
  // output inside a recorded plan's arena starts NaN-poisoned.
  if (y.dtype == DType::BF16P || y.dtype == DType::Q8P) std::memset(y.raw(), 0, y.nbytes());
  // q8 ↔ q8p is a re-layout of the same bytes (dequantising and quantising again could move a
  // scale up by one bf16 step).
  if ((x.dtype == DType::Q8 && y.dtype == DType::Q8P) || (x.dtype == DType::Q8P && y.dtype == DType::Q8)) {
    const size_t rb = size_t(q8_row_bytes(K));
    for (int64_t r = 0; r < R; ++r) {
      if (y.dtype == DType::Q8P) q8p_put_row(y.data<uint8_t>(), K, r, x.data<uint8_t>() + size_t(r) * rb);
      else q8p_get_row(x.data<uint8_t>(), K, r, y.data<uint8_t>() + size_t(r) * rb);
    }
    return;
  }
  ctx.pool.parallel_for(R, 16, [&](int64_t b, int64_t e) {
    std::vector<float> f(static_cast<size_t>(K));
    std::vector<uint16_t> h(y.dtype == DType::BF16P ? static_cast<size_t>(K) : 0);
    std::vector<uint8_t> qrow(y.dtype == DType::Q8P ? static_cast<size_t>(q8_row_bytes(K)) : 0);
    for (int64_t r = b; r < e; ++r) {
      row_to_f32(ctx, x, r, K, f.data());
      switch (y.dtype) {
        case DType::Q8P:
          ctx.k.quantize_rows_q8(f.data(), 1, K, qrow.data());
          q8p_put_row(y.data<uint8_t>(), K, r, qrow.data());
          break;
        case DType::BF16P:
          ctx.k.cvt_f32_to_bf16(f.data(), h.data(), K);
          bf16p_put_rows(y.data<uint16_t>(), K, r, 1, h.data());
          break;
        case DType::Q8: ctx.k.quantize_rows_q8(f.data(), 1, K, y.data<uint8_t>() + r * q8_row_bytes(K)); break;
        case DType::F32: std::memcpy(y.data<float>() + r * K, f.data(), size_t(K) * 4); break;
        case DType::BF16: ctx.k.cvt_f32_to_bf16(f.data(), y.data<uint16_t>() + r * K, K); break;
        default: ctx.k.cvt_f32_to_f16(f.data(), y.data<uint16_t>() + r * K, K); break;
      }
    }
  });
}

static void convert_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs&) {
  const Tensor &x = *in[0], &y = *out[0];
  if (dtype_is_block(x.dtype) || dtype_is_block(y.dtype)) return convert_rows_run(ctx, x, y);
  int64_t n = x.numel();
  ctx.pool.parallel_for(n, 16384, [&](int64_t b, int64_t e) {
    int64_t c = e - b;
    if (x.dtype == y.dtype) {
      std::memcpy(static_cast<char*>(y.raw()) + b * dtype_size(y.dtype),
                  static_cast<const char*>(x.raw()) + b * dtype_size(x.dtype), c * dtype_size(x.dtype));
      return;
    }
    // Via f32 in a small stack buffer.
    float buf[1024];
    for (int64_t s = b; s < e; s += 1024) {
      int64_t m = (e - s) < 1024 ? (e - s) : 1024;
      const float* src = buf;
      if (x.dtype == DType::F32) src = x.data<float>() + s;
      else if (x.dtype == DType::BF16) ctx.k.cvt_bf16_to_f32(x.data<uint16_t>() + s, buf, m);
      else ctx.k.cvt_f16_to_f32(x.data<uint16_t>() + s, buf, m);
      if (y.dtype == DType::F32) std::memcpy(y.data<float>() + s, src, m * 4);
      else if (y.dtype == DType::BF16) ctx.k.cvt_f32_to_bf16(src, y.data<uint16_t>() + s, m);
      else ctx.k.cvt_f32_to_f16(src, y.data<uint16_t>() + s, m);
    }
  });
}

static void empty_parse(const Tensors& in, OpAttrs& a) {
  op_need_inputs("empty", in, 0, 0);
  DType dt;
  if (!dtype_parse(a.gets("dtype", ""), &dt))
    op_fail(DVL_ERR_DTYPE, "empty", "unknown dtype '" + a.gets("dtype", "") + "'", in);
  const std::vector<double>* sv = a.geta("shape");
  if (!sv) op_fail(DVL_ERR_ARG, "empty", "missing shape", in);
  std::vector<int64_t> shape;
  for (double d : *sv) {
    if (!(d >= 0) || d != double(int64_t(d)) || d > 9e15) op_fail(DVL_ERR_SHAPE, "empty", "shape entries must be non-negative integers", in);
    shape.push_back(int64_t(d));
  }
  a.shape = ShapeAttrs{dt, std::move(shape)};
}

static Tensors empty_plan(const Tensors&, const OpAttrs& a) {
  // An empty tensor is filled later, piece by piece (a KV cache) or whole (the loader, which
  // asks for huge pages itself): small pages keep its resident size to what is written.
  TensorP t = Tensor::alloc(a.shape.dtype, a.shape.shape);
  if (!t->on_cuda() && t->storage) t->storage->advise_small_pages();
  return {t};
}

static void empty_run(OpContext&, const Tensors&, const Tensors&, const OpAttrs&) {}

void ops_register_basic(std::vector<OpDef>& t) {
  t.push_back({OpId::Empty, empty_plan, empty_run, empty_parse});
  t.push_back({OpId::Embedding, embedding_plan, embedding_run});
  t.push_back({OpId::Add, add_plan, binary_run<false>});
  t.push_back({OpId::Mul, mul_plan, binary_run<true>});
  t.push_back({OpId::Scale, scale_plan, scale_run, scale_parse});
  t.push_back({OpId::Convert, convert_plan, convert_run, convert_parse});
}

}  // namespace dvl
