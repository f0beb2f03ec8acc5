// shape.cpp — ops that move rows and columns without arithmetic.
//
// reshape:     x (any dtype); attr shape (one entry may be −1: inferred) → a new Tensor over
//              the SAME storage (no copy; writes through either are seen by both). A q8 x
//              must keep its last dim.
// gather_rows: x [R, ...] (any dtype), idx i32 [n] → [n, ...], row i = x[idx[i]].
// scatter_rows: dst f32 [R, ...] in place, src f32 [n, ...], idx i32 [n]: dst[idx[i]] = src[i],
//              in order i = 0..n−1 (a repeated index keeps the last row).
// slice_cols:  x [.., C] (f32|bf16|f16|i32); attrs start, len → [.., len].
// concat_rows: a [Ra, ...], b [Rb, ...] of one dtype and equal trailing dims → [Ra + Rb, ...].
//              Block layouts too, where rows are whole byte runs: q8 matrices (each row its
//              own bytes) and the panel layouts bf16p / q8p when Ra is a multiple of their 16-row
//              panel (the panels of a, then those of b: a fused q|k|v weight built at load).
// Index checks of gather/scatter run on the queue thread (idx may come from an earlier op)
// and fail with DVL_RANGE naming the index position and value.
#include <algorithm>
#include <string>

#include "ops.h"

namespace dvl {

static void reshape_parse(const Tensors& in, OpAttrs& a) {
  op_need_inputs("reshape", in, 1, 1);
  const std::vector<double>* sv = a.geta("shape");
  if (!sv) op_fail(DVL_ERR_ARG, "reshape", "missing shape", in);
  std::vector<int64_t> shape;
  int infer = -1;
  int64_t known = 1;
  for (double d : *sv) {
    if (d == -1 && infer < 0) {
      infer = int(shape.size());
      shape.push_back(-1);
      continue;
    }
    if (!(d >= 0) || d != double(int64_t(d)) || d > 9e15)
      op_fail(DVL_ERR_SHAPE, "reshape", "shape entries must be non-negative integers (one may be -1)", in);
    shape.push_back(int64_t(d));
    known *= int64_t(d);
  }
  const int64_t n = in[0]->numel();
  if (infer >= 0) {
    if (known == 0 || n % known) op_fail(DVL_ERR_SHAPE, "reshape", "cannot infer the -1 entry of " + shape_str(shape), in);
    shape[infer] = n / known;
    known = n;
  }
  if (known != n)
    op_fail(DVL_ERR_SHAPE, "reshape", "shape " + shape_str(shape) + " holds " + std::to_string(known) + " elements, x has " + std::to_string(n), in);
  // q8 rows are stored one by one (dtype.h): any shape with the same row length K is the same bytes.
  if (in[0]->dtype == DType::Q8 && (shape.empty() || shape.back() != in[0]->dim(-1)))
    op_fail(DVL_ERR_DTYPE, "reshape", "a q8 tensor keeps its last dim (the row length it was quantised with)", in);
  if ((in[0]->dtype == DType::BF16P || in[0]->dtype == DType::Q8P) && shape != in[0]->shape)
    op_fail(DVL_ERR_DTYPE, "reshape", std::string("a ") + dtype_name(in[0]->dtype) + " tensor keeps its shape [N, K] (its panels are laid out for it)", in);
  a.shape.shape = std::move(shape);
}

static Tensors reshape_plan(const Tensors& in, const OpAttrs& a) {
  auto t = std::make_shared<Tensor>();
  t->dtype = in[0]->dtype;
  t->shape = a.shape.shape;
  t->storage = in[0]->storage;
  return {t};
}

static void nothing_run(OpContext&, const Tensors&, const Tensors&, const OpAttrs&) {}

// narrow_rows: x [R, ...] (any dtype but block-quantized), attrs start, len → a view [len, ...] of
// rows start..start+len-1 over the SAME memory (no copy), like reshape. The view keeps x's
// storage alive. x must have its memory already: a placeholder of a plan being recorded has
// none (use gather_rows there).
static void narrow_rows_parse(const Tensors& in, OpAttrs& a) {
  const char* op = "narrow_rows";
  op_need_inputs(op, in, 1, 1);
  const Tensor& x = *in[0];
  if (dtype_is_block(x.dtype)) op_fail(DVL_ERR_DTYPE, op, std::string(dtype_name(x.dtype)) + " tensors (a block layout) cannot be narrowed", in);
  if (x.rank() < 1) op_fail(DVL_ERR_SHAPE, op, "x must have rank >= 1", in);
  const int64_t start = a.needi(op, "start"), len = a.needi(op, "len");
  if (start < 0 || len < 0 || start + len > x.dim(0))
    op_fail(DVL_ERR_RANGE, op, "rows " + std::to_string(start) + ".." + std::to_string(start + len) + " outside the " + std::to_string(x.dim(0)) + " rows", in);
  if (!x.storage->data && x.nbytes())
    op_fail(DVL_ERR_ARG, op, "x is a placeholder of a plan being recorded (no memory to view); use gather_rows", in);
  a.slice = SliceAttrs{start, len};
}

static Tensors narrow_rows_plan(const Tensors& in, const OpAttrs& a) {
  return {view_rows(*in[0], a.slice.start, a.slice.len)};
}

// Bytes of one dim-0 row.
static size_t row_bytes(const Tensor& t) {
  size_t b = dtype_size(t.dtype);
  for (int i = 1; i < t.rank(); ++i) b *= size_t(t.shape[i]);
  return b;
}

static void check_idx(const char* op, const int32_t* idx, int64_t n, int64_t R) {
  for (int64_t i = 0; i < n; ++i)
    if (idx[i] < 0 || idx[i] >= R)
      throw Error(DVL_ERR_RANGE, std::string(op) + ": idx[" + std::to_string(i) + "] = " + std::to_string(idx[i]) +
                                     " is outside the " + std::to_string(R) + " rows");
}

static Tensors gather_rows_plan(const Tensors& in, const OpAttrs&) {
  op_need_inputs("gather_rows", in, 2, 2);
  op_need_dtype("gather_rows", in, 0, {DType::F32, DType::BF16, DType::F16, DType::I32, DType::U8});
  op_need_dtype("gather_rows", in, 1, {DType::I32});
  op_need_rank("gather_rows", in, 1, 1);
  if (in[0]->rank() < 1) op_fail(DVL_ERR_SHAPE, "gather_rows", "x must have rank >= 1", in);
  std::vector<int64_t> shape = in[0]->shape;
  shape[0] = in[1]->dim(0);
  return {Tensor::alloc(in[0]->dtype, shape)};
}

static void gather_rows_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs&) {
  const int32_t* idx = in[1]->data<int32_t>();
  const int64_t n = in[1]->dim(0);
  check_idx("gather_rows", idx, n, in[0]->dim(0));
  const size_t rb = row_bytes(*in[0]);
  const char* x = static_cast<const char*>(in[0]->raw());
  char* y = static_cast<char*>(out[0]->raw());
  ctx.pool.parallel_for(n, 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) std::memcpy(y + size_t(i) * rb, x + size_t(idx[i]) * rb, rb);
  });
}

static Tensors scatter_rows_plan(const Tensors& in, const OpAttrs&) {
  op_need_inputs("scatter_rows", in, 3, 3);
  op_need_dtype("scatter_rows", in, 0, {DType::F32});
  op_need_dtype("scatter_rows", in, 1, {DType::F32});
  op_need_dtype("scatter_rows", in, 2, {DType::I32});
  op_need_rank("scatter_rows", in, 2, 1);
  const Tensor &d = *in[0], &s = *in[1];
  if (d.rank() < 1 || s.rank() != d.rank() || row_bytes(d) != row_bytes(s) ||
      !std::equal(d.shape.begin() + 1, d.shape.end(), s.shape.begin() + 1))
    op_fail(DVL_ERR_SHAPE, "scatter_rows", "src rows must have dst's trailing dims", in);
  if (s.dim(0) != in[2]->dim(0)) op_fail(DVL_ERR_SHAPE, "scatter_rows", "idx must have one entry per src row", in);
  return {};
}

static void scatter_rows_run(OpContext&, const Tensors& in, const Tensors&, const OpAttrs&) {
  const int32_t* idx = in[2]->data<int32_t>();
  const int64_t n = in[2]->dim(0);
  check_idx("scatter_rows", idx, n, in[0]->dim(0));
  const size_t rb = row_bytes(*in[0]);
  char* d = static_cast<char*>(in[0]->raw());
  const char* s = static_cast<const char*>(in[1]->raw());
  // Serial on purpose: repeated indices must resolve in order (n is a handful of rows).
  for (int64_t i = 0; i < n; ++i) std::memmove(d + size_t(idx[i]) * rb, s + size_t(i) * rb, rb);
}

static void slice_cols_parse(const Tensors& in, OpAttrs& a) {
  op_need_inputs("slice_cols", in, 1, 1);
  op_need_dtype("slice_cols", in, 0, {DType::F32, DType::BF16, DType::F16, DType::I32});
  if (in[0]->rank() < 1) op_fail(DVL_ERR_SHAPE, "slice_cols", "x must have rank >= 1", in);
  const int64_t start = a.needi("slice_cols", "start"), len = a.needi("slice_cols", "len"), C = in[0]->dim(-1);
  if (start < 0 || len < 0 || start + len > C)
    op_fail(DVL_ERR_RANGE, "slice_cols", "columns " + std::to_string(start) + " .. " + std::to_string(start + len) +
                                             " are not within the " + std::to_string(C) + " columns", in);
  a.slice = SliceAttrs{start, len};
}

static Tensors slice_cols_plan(const Tensors& in, const OpAttrs& a) {
  std::vector<int64_t> shape = in[0]->shape;
  shape.back() = a.slice.len;
  return {Tensor::alloc(in[0]->dtype, shape)};
}

static void slice_cols_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs& a) {
  const size_t es = dtype_size(in[0]->dtype);
  const int64_t R = rows_of(*in[0]), C = in[0]->dim(-1), start = a.slice.start, len = a.slice.len;
  const char* x = static_cast<const char*>(in[0]->raw());
  char* y = static_cast<char*>(out[0]->raw());
  if (len == 0) return;
  ctx.pool.parallel_for(R, 64, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) std::memcpy(y + size_t(r * len) * es, x + size_t(r * C + start) * es, size_t(len) * es);
  });
}

static Tensors concat_rows_plan(const Tensors& in, const OpAttrs&) {
  op_need_inputs("concat_rows", in, 2, 2);
  const Tensor &a = *in[0], &b = *in[1];
  if (a.dtype != b.dtype) op_fail(DVL_ERR_DTYPE, "concat_rows", "a and b must have the same dtype", in);
  if (a.rank() < 1 || a.rank() != b.rank() || !std::equal(a.shape.begin() + 1, a.shape.end(), b.shape.begin() + 1))
    op_fail(DVL_ERR_SHAPE, "concat_rows", "a and b must have equal trailing dims", in);
  if (dtype_is_block(a.dtype)) {
    const std::string name = dtype_name(a.dtype);
    if (a.rank() < 2) op_fail(DVL_ERR_SHAPE, "concat_rows", name + " tensors must be matrices [rows, K]", in);
    if (a.dtype != DType::Q8 && a.dim(0) % kBf16pRows != 0)
      op_fail(DVL_ERR_SHAPE, "concat_rows", name + ": a's rows (" + std::to_string(a.dim(0)) + ") must fill whole panels of " + std::to_string(kBf16pRows), in);
  }
  std::vector<int64_t> shape = a.shape;
  shape[0] += b.dim(0);
  return {Tensor::alloc(a.dtype, shape)};
}

static void concat_rows_run(OpContext&, const Tensors& in, const Tensors& out, const OpAttrs&) {
  char* y = static_cast<char*>(out[0]->raw());
  const size_t na = in[0]->nbytes(), nb = in[1]->nbytes();
  if (na) std::memcpy(y, in[0]->raw(), na);
  if (nb) std::memcpy(y + na, in[1]->raw(), nb);
}

void ops_register_shape(std::vector<OpDef>& t) {
  t.push_back({OpId::Reshape, reshape_plan, nothing_run, reshape_parse});
  t.push_back({OpId::NarrowRows, narrow_rows_plan, nothing_run, narrow_rows_parse});
  t.push_back({OpId::GatherRows, gather_rows_plan, gather_rows_run});
  t.push_back({OpId::ScatterRows, scatter_rows_plan, scatter_rows_run});
  t.push_back({OpId::SliceCols, slice_cols_plan, slice_cols_run, slice_cols_parse});
  t.push_back({OpId::ConcatRows, concat_rows_plan, concat_rows_run});
}

}  // namespace dvl
