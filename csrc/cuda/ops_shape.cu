// ops_shape.cu — ops that move rows and columns (csrc/cpu/ops/shape.cpp, basic.cpp, kv_cache.cpp):
//   embedding:    ids i32 [T], table f32|bf16|f16 [V, H] → f32 [T, H] (exact widening)
//   reshape:      the CPU op returns a view of the same storage; here the engine hands a
//                 separate output, so the bytes are copied (nothing when it is the same memory)
//   gather_rows:  x [R, ...] (f32|bf16|f16|i32|u8), idx i32 [n] → y[i] = x[idx[i]]
//   scatter_rows: dst f32 [R, ...] in place, src f32 [n, ...], idx i32 [n]; in order i = 0..n−1
//                 (a repeated index keeps the last row: only the last src row of each
//                 target is copied, so the result is the CPU op's)
//   slice_cols:   x [.., C] (f32|bf16|f16|i32); attrs start, len → [.., len]
//   concat_rows:  a [Ra, ...], b [Rb, ...] → [Ra + Rb, ...] (two device copies)
//   kv_cache_append: cache f32|bf16|f16 [nkv, cap, hd] in place, x f32 [T, nkv, hd], attr pos0:
//                 cache[g, pos0 + t] = round(x[t, g]) (nearest even, as the CPU op)
// Index checks: ids / idx are read back to the host (a small copy and a stream sync: they may
// have been written by an earlier op on the stream) and an out-of-range entry fails with
// DVL_RANGE and the CPU op's message, before anything is written.
#include <string>
#include <vector>

#include "dtype.cuh"
#include "plugin.h"

namespace dvl_cuda {

using dvl::DType;
using dvl::Tensor;

// Reads n i32 from the device (ordered after the stream's pending work).
static bool read_idx(const OpCall& c, const Tensor& t, std::vector<int32_t>& out) {
  out.resize(size_t(numel(t)));
  if (out.empty()) return true;
  cudaError_t e = cudaMemcpyAsync(out.data(), t.storage->data, out.size() * 4, cudaMemcpyDeviceToHost, c.stream);
  if (e == cudaSuccess) e = cudaStreamSynchronize(c.stream);
  if (e != cudaSuccess) {
    fail_cuda(c.err, e, "reading indices back");
    return false;
  }
  return true;
}

static bool check_idx(const OpCall& c, const std::vector<int32_t>& idx, int64_t R) {
  for (size_t i = 0; i < idx.size(); ++i)
    if (idx[i] < 0 || idx[i] >= R) {
      fail(c.err, "DVL_RANGE", "%s: idx[%zu] = %d is outside the %lld rows", c.op, i, idx[i], (long long)R);
      return false;
    }
  return true;
}

static size_t row_bytes(const Tensor& t) {
  size_t b = dvl::dtype_size(t.dtype);
  for (size_t i = 1; i < t.shape.size(); ++i) b *= size_t(t.shape[i]);
  return b;
}

static dvl_status d2d(const OpCall& c, void* dst, const void* src, size_t bytes) {
  if (!bytes || dst == src) return 0;
  cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c.stream);
  return e == cudaSuccess ? 0 : fail_cuda(c.err, e, c.op);
}

// ---- embedding --------------------------------------------------------------------------------

__global__ void embedding_kernel(const int32_t* __restrict__ ids, const void* __restrict__ tab, int dt, float* __restrict__ y,
                                 int64_t T, int64_t H) {
  const int64_t n = T * H;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / H, h = i % H;
    y[i] = d_load(tab, dt, int64_t(ids[t]) * H + h);
  }
}

static dvl_status embedding_run(const OpCall& c) {
  if (!check_io(c, 2, 2, 1)) return 1;
  const Tensor &ids = *c.in[0], &tab = *c.in[1], &y = *c.out[0];
  if (!need_dtype(c, ids, kI32, "ids") || !need_dtype(c, tab, kFloats, "table") || !need_dtype(c, y, kF32, "y")) return 1;
  if (ids.shape.size() != 1 || tab.shape.size() != 2 || y.shape != std::vector<int64_t>{ids.shape[0], tab.shape[1]})
    return fail(c.err, "DVL_SHAPE", "cuda embedding: ids [T], table [V, H], y [T, H]");
  const int64_t T = ids.shape[0], V = tab.shape[0], H = tab.shape[1];
  std::vector<int32_t> h;
  if (!read_idx(c, ids, h)) return 1;
  for (size_t t = 0; t < h.size(); ++t)
    if (h[t] < 0 || h[t] >= V)
      return fail(c.err, "DVL_RANGE", "embedding: id %d at position %zu is outside the table's %lld rows", h[t], t, (long long)V);
  if (T * H == 0) return 0;
  embedding_kernel<<<grid_for(T * H, 256), 256, 0, c.stream>>>(dptr<const int32_t>(ids), tab.storage->data, int(tab.dtype),
                                                               dptr<float>(y), T, H);
  return check_launch(c, "embedding_kernel");
}

// ---- reshape / concat_rows / slice_cols -----------------------------------------------------------

static dvl_status reshape_run(const OpCall& c) {
  if (!check_io(c, 1, 1, 1)) return 1;
  const Tensor &x = *c.in[0], &y = *c.out[0];
  if (x.dtype != y.dtype || numel(x) != numel(y)) return fail(c.err, "DVL_SHAPE", "cuda reshape: y must hold x's elements and dtype");
  return d2d(c, y.storage->data, x.storage->data, size_t(numel(x)) * dvl::dtype_size(x.dtype));
}

static dvl_status concat_rows_run(const OpCall& c) {
  if (!check_io(c, 2, 2, 1)) return 1;
  const Tensor &a = *c.in[0], &b = *c.in[1], &y = *c.out[0];
  if (a.dtype != b.dtype || y.dtype != a.dtype || a.dtype == DType::Q8) return fail(c.err, "DVL_DTYPE", "cuda concat_rows: one dtype");
  if (a.shape.empty() || b.shape.size() != a.shape.size() || y.shape.size() != a.shape.size() || row_bytes(a) != row_bytes(b) ||
      row_bytes(y) != row_bytes(a) || y.shape[0] != a.shape[0] + b.shape[0])
    return fail(c.err, "DVL_SHAPE", "cuda concat_rows: a and b must have equal trailing dims");
  const size_t na = size_t(numel(a)) * dvl::dtype_size(a.dtype), nb = size_t(numel(b)) * dvl::dtype_size(b.dtype);
  if (d2d(c, y.storage->data, a.storage->data, na)) return 1;
  return d2d(c, static_cast<char*>(y.storage->data) + na, b.storage->data, nb);
}

static dvl_status slice_cols_run(const OpCall& c) {
  if (!check_io(c, 1, 1, 1)) return 1;
  const Tensor &x = *c.in[0], &y = *c.out[0];
  if (!need_dtype(c, x, kFloats | kI32, "x") || y.dtype != x.dtype) return fail(c.err, "DVL_DTYPE", "cuda slice_cols: f32|bf16|f16|i32");
  const int64_t start = c.attrs.slice.start, len = c.attrs.slice.len;
  if (x.shape.empty() || y.shape.size() != x.shape.size() || y.shape.back() != len || start < 0 || start + len > x.shape.back() ||
      rows_of(y) != rows_of(x))
    return fail(c.err, "DVL_SHAPE", "cuda slice_cols: columns out of range or y not [.., len]");
  const int64_t R = rows_of(x), C = x.shape.back();
  const size_t es = dvl::dtype_size(x.dtype);
  if (!R || !len) return 0;
  // One strided 2-D copy: R rows of len elements, source pitch C, destination pitch len.
  cudaError_t e = cudaMemcpy2DAsync(y.storage->data, size_t(len) * es, static_cast<const char*>(x.storage->data) + size_t(start) * es,
                                    size_t(C) * es, size_t(len) * es, size_t(R), cudaMemcpyDeviceToDevice, c.stream);
  return e == cudaSuccess ? 0 : fail_cuda(c.err, e, "cuda slice_cols: copy");
}

// ---- gather_rows / scatter_rows --------------------------------------------------------------------

// Copies rows of rb bytes: y row i ← x row idx[i] (gather) or y row idx[i] ← x row i (scatter),
// for i in [0, n). Bytes move in 4-byte words when rb is a multiple of 4, else byte by byte.
template <bool SCATTER, class W>
__global__ void rows_kernel(const W* __restrict__ x, W* __restrict__ y, const int32_t* __restrict__ idx, int64_t n, int64_t rw) {
  const int64_t tot = n * rw;
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < tot; k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = k / rw, w = k % rw;
    if (SCATTER) y[int64_t(idx[i]) * rw + w] = x[i * rw + w];
    else y[i * rw + w] = x[int64_t(idx[i]) * rw + w];
  }
}

template <bool SCATTER>
static dvl_status rows_launch(const OpCall& c, const void* x, void* y, const int32_t* idx, int64_t n, size_t rb) {
  if (!n || !rb) return 0;
  if (rb % 4 == 0) {
    const int64_t rw = int64_t(rb / 4);
    rows_kernel<SCATTER, uint32_t><<<grid_for(n * rw, 256), 256, 0, c.stream>>>(static_cast<const uint32_t*>(x), static_cast<uint32_t*>(y),
                                                                                 idx, n, rw);
  } else {
    rows_kernel<SCATTER, uint8_t><<<grid_for(n * int64_t(rb), 256), 256, 0, c.stream>>>(static_cast<const uint8_t*>(x),
                                                                                        static_cast<uint8_t*>(y), idx, n, int64_t(rb));
  }
  return check_launch(c, "rows_kernel");
}

static dvl_status gather_rows_run(const OpCall& c) {
  if (!check_io(c, 2, 2, 1)) return 1;
  const Tensor &x = *c.in[0], &idx = *c.in[1], &y = *c.out[0];
  if (!need_dtype(c, x, kFloats | kI32 | kU8, "x") || !need_dtype(c, idx, kI32, "idx") || y.dtype != x.dtype) return 1;
  if (x.shape.empty() || idx.shape.size() != 1 || y.shape.size() != x.shape.size() || y.shape[0] != idx.shape[0] ||
      row_bytes(y) != row_bytes(x))
    return fail(c.err, "DVL_SHAPE", "cuda gather_rows: x [R, ...], idx [n], y [n, ...]");
  std::vector<int32_t> h;
  if (!read_idx(c, idx, h) || !check_idx(c, h, x.shape[0])) return 1;
  return rows_launch<false>(c, x.storage->data, y.storage->data, dptr<const int32_t>(idx), idx.shape[0], row_bytes(x));
}

static dvl_status scatter_rows_run(const OpCall& c) {
  if (!check_io(c, 3, 3, 0)) return 1;
  const Tensor &d = *c.in[0], &s = *c.in[1], &idx = *c.in[2];
  if (!need_dtype(c, d, kF32, "dst") || !need_dtype(c, s, kF32, "src") || !need_dtype(c, idx, kI32, "idx")) return 1;
  if (d.shape.empty() || s.shape.size() != d.shape.size() || row_bytes(d) != row_bytes(s) || idx.shape.size() != 1 ||
      idx.shape[0] != s.shape[0])
    return fail(c.err, "DVL_SHAPE", "cuda scatter_rows: src rows must have dst's trailing dims, one idx per src row");
  std::vector<int32_t> h;
  if (!read_idx(c, idx, h) || !check_idx(c, h, d.shape[0])) return 1;
  // The CPU op copies in order, so a repeated index keeps the last src row. With the indices on
  // the host already, the rows whose index repeats later are dropped and the rest (distinct
  // targets) go in one launch; the kept list is uploaded through a small device buffer.
  std::vector<int32_t> src_of, dst_of;
  for (size_t i = 0; i < h.size(); ++i) {  // n is a handful of rows: quadratic is fine
    bool later = false;
    for (size_t j = i + 1; j < h.size() && !later; ++j) later = h[j] == h[i];
    if (!later) {
      src_of.push_back(int32_t(i));
      dst_of.push_back(h[i]);
    }
  }
  const size_t rb = row_bytes(d);
  if (!rb || src_of.empty()) return 0;
  if (src_of.size() == h.size()) return rows_launch<true>(c, s.storage->data, d.storage->data, dptr<const int32_t>(idx), idx.shape[0], rb);
  // Repeats: copy the kept rows one by one (rare; n is small).
  for (size_t k = 0; k < src_of.size(); ++k)
    if (d2d(c, static_cast<char*>(d.storage->data) + size_t(dst_of[k]) * rb,
            static_cast<const char*>(s.storage->data) + size_t(src_of[k]) * rb, rb))
      return 1;
  return 0;
}

// ---- kv_cache_append --------------------------------------------------------------------------------

__global__ void kv_append_kernel(void* __restrict__ cache, int dt, const float* __restrict__ x, int64_t T, int64_t nkv, int64_t cap,
                                 int64_t hd, int64_t pos0) {
  const int64_t n = T * nkv * hd;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = i % hd, r = i / hd, t = r / nkv, g = r % nkv;
    d_store(cache, dt, (g * cap + pos0 + t) * hd + d, x[i]);
  }
}

static dvl_status kv_append_run(const OpCall& c) {
  if (!check_io(c, 2, 2, 0)) return 1;
  const Tensor &cache = *c.in[0], &x = *c.in[1];
  if (!need_dtype(c, cache, kFloats, "cache") || !need_dtype(c, x, kF32, "x")) return 1;
  if (cache.shape.size() != 3 || x.shape.size() != 3 || x.shape[1] != cache.shape[0] || x.shape[2] != cache.shape[2])
    return fail(c.err, "DVL_SHAPE", "cuda kv_cache_append: x must be [T, nkv, hd] with the cache's nkv and hd");
  const int64_t pos0 = c.attrs.kv.pos0, T = x.shape[0], nkv = cache.shape[0], cap = cache.shape[1], hd = cache.shape[2];
  if (pos0 < 0 || pos0 + T > cap) return fail(c.err, "DVL_RANGE", "cuda kv_cache_append: positions do not fit the cache");
  const int64_t n = T * nkv * hd;
  if (!n) return 0;
  kv_append_kernel<<<grid_for(n, 256), 256, 0, c.stream>>>(cache.storage->data, int(cache.dtype), dptr<const float>(x), T, nkv, cap, hd,
                                                           pos0);
  return check_launch(c, "kv_append_kernel");
}

// kv_cache_append_batch (csrc/cpu/ops/kv_cache.cpp): per sequence of attr seqs, the
// kv_cache_append kernel on its rows of x and its slot of the [S, nkv, cap, hd] cache.
static dvl_status kv_append_batch_run(const OpCall& c) {
  if (!check_io(c, 2, 2, 0)) return 1;
  const Tensor &cache = *c.in[0], &x = *c.in[1];
  if (!need_dtype(c, cache, kFloats, "cache") || !need_dtype(c, x, kF32, "x")) return 1;
  if (cache.shape.size() != 4 || x.shape.size() != 3 || x.shape[1] != cache.shape[1] || x.shape[2] != cache.shape[3])
    return fail(c.err, "DVL_SHAPE", "cuda kv_cache_append_batch: x must be [T, nkv, hd] with the cache's nkv and hd");
  const std::vector<dvl::BatchSeq>& seqs = c.attrs.kv.seqs;  // parsed by the CPU op
  if (seqs.empty()) return fail(c.err, "DVL_ARG", "cuda kv_cache_append_batch: no sequences (attr seqs)");
  const int64_t S = cache.shape[0], nkv = cache.shape[1], cap = cache.shape[2], hd = cache.shape[3], T = x.shape[0];
  const size_t slot_elems = size_t(nkv * cap * hd), es = cache.dtype == DType::F32 ? 4 : 2;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const int64_t row0 = seqs[i].row0, row1 = seqs[i].row1, slot = seqs[i].slot, pos0 = seqs[i].pos0;
    if (row0 < 0 || row1 <= row0 || row1 > T || slot < 0 || slot >= S || pos0 < 0 || pos0 + (row1 - row0) > cap)
      return fail(c.err, "DVL_RANGE", "cuda kv_cache_append_batch: sequence %d has a bad layout", int(i));
    const int64_t n = (row1 - row0) * nkv * hd;
    void* base = static_cast<char*>(cache.storage->data) + size_t(slot) * slot_elems * es;
    kv_append_kernel<<<grid_for(n, 256), 256, 0, c.stream>>>(base, int(cache.dtype), dptr<const float>(x) + row0 * nkv * hd, row1 - row0, nkv,
                                                             cap, hd, pos0);
    if (dvl_status st = check_launch(c, "kv_append_kernel")) return st;
  }
  return 0;
}

void register_shape(std::vector<OpEntry>& t) {
  t.push_back({dvl::OpId::KvCacheAppendBatch, kFloats, kv_append_batch_run});
  t.push_back({dvl::OpId::Embedding, kI32, embedding_run});
  t.push_back({dvl::OpId::Reshape, kFloats | kI32 | kU8, reshape_run});
  t.push_back({dvl::OpId::GatherRows, kFloats | kI32 | kU8, gather_rows_run});
  t.push_back({dvl::OpId::ScatterRows, kF32, scatter_rows_run});
  t.push_back({dvl::OpId::SliceCols, kFloats | kI32, slice_cols_run});
  t.push_back({dvl::OpId::ConcatRows, kFloats | kI32 | kU8, concat_rows_run});
  t.push_back({dvl::OpId::KvCacheAppend, kFloats, kv_append_run});
}

}  // namespace dvl_cuda
