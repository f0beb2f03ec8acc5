// io.cpp — load: read a tensor's bytes from a file by offset straight into its storage.
//
// Inputs: the destination tensor (any dtype). Attrs: path, offset, bytes, src ("f32"|"bf16"|
// "f16"|"i32"|...), parsed once into LoadAttrs (csrc/core/op_attrs.h). Same dtype → pread into storage; otherwise read in chunks and convert.
// A bf16p destination (dtype.h) is filled panel by panel from chunks of the file's rows, on
// all the queue's threads, the same way.
// A q8 destination is quantised row by row (rows of its last dim, dtype.h's rule) from chunks
// of about 4 MiB of the file, on all the queue's threads: the full-precision tensor is never
// held, so loading a checkpoint as q8 peaks at the q8 weights plus one chunk.
// The safetensors header is parsed and checked in TypeScript (lib/weights); this op re-checks
// only what guards memory (byte count against the tensor, short reads).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "ops.h"

namespace dvl {

static bool dst_block_ok(DType d) { return d == DType::Q8 || d == DType::BF16P || d == DType::Q8P; }

static void load_parse(const Tensors& in, OpAttrs& a) {
  op_need_inputs("load", in, 1, 1);
  DType src;
  if (!dtype_parse(a.gets("src", ""), &src) || dtype_is_block(src))
    op_fail(DVL_ERR_DTYPE, "load", "unknown source dtype '" + a.gets("src", "") + "'", in);
  if (a.gets("path", "").empty()) op_fail(DVL_ERR_ARG, "load", "missing path", in);
  double bytes = a.need("load", "bytes"), offset = a.need("load", "offset");
  if (offset < 0 || bytes < 0) op_fail(DVL_ERR_RANGE, "load", "negative offset or byte count", in);
  int64_t n = in[0]->numel();
  if (int64_t(bytes) != n * int64_t(dtype_size(src)))
    op_fail(DVL_ERR_SHAPE, "load", "byte count " + std::to_string(int64_t(bytes)) + " does not match " +
                                       std::to_string(n) + " elements of " + dtype_name(src), in);
  DType dst = in[0]->dtype;
  bool float_ok = (src == DType::F32 || src == DType::BF16 || src == DType::F16) &&
                  (dst == DType::F32 || dst == DType::BF16 || dst == DType::F16 || dst_block_ok(dst));
  if (src != dst && !float_ok)
    op_fail(DVL_ERR_DTYPE, "load", std::string("cannot convert ") + dtype_name(src) + " to " + dtype_name(dst), in);
  a.load = LoadAttrs{a.gets("path", ""), src, int64_t(offset), int64_t(bytes)};
}

static Tensors load_plan(const Tensors&, const OpAttrs&) { return {}; }

InputFile::InputFile(const std::string& path) : path_(path) {
  fd_ = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw Error(DVL_ERR_IO, "load: cannot open " + path + ": " + std::strerror(errno));
}

InputFile::~InputFile() { close(fd_); }

void InputFile::read_exact(void* dst, size_t bytes, long offset) const {
  char* p = static_cast<char*>(dst);
  while (bytes > 0) {
    size_t chunk = bytes < (size_t(1) << 30) ? bytes : (size_t(1) << 30);
    ssize_t r = pread(fd_, p, chunk, offset);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw Error(DVL_ERR_IO, "load: reading " + path_ + ": " + std::strerror(errno));
    }
    if (r == 0) throw Error(DVL_ERR_IO, "load: " + path_ + " ended early (truncated file?) at byte " + std::to_string(offset));
    p += r;
    bytes -= size_t(r);
    offset += r;
  }
}

// q8 and q8p: each row quantised (dtype.h's rule) straight into place, or (q8p) into a row
// buffer and then into its panel.
static void load_q8(OpContext& ctx, const InputFile& file, Tensor& t, DType src, off_t offset) {
  const int64_t K = t.dim(-1), R = K ? t.numel() / K : 0;
  const bool panels = t.dtype == DType::Q8P;
  const size_t es = dtype_size(src), row_in = size_t(K) * es, row_out = size_t(q8_row_bytes(K));
  if (R == 0) return;
  // q8p: whole panels per chunk, and threads take whole panels (rows of one panel share bytes).
  int64_t chunk = row_in >= (size_t(4) << 20) ? 1 : int64_t((size_t(4) << 20) / row_in);
  if (panels) chunk = (chunk + 15) / 16 * 16;
  std::vector<char> raw(size_t(chunk < R ? chunk : R) * row_in);
  for (int64_t r0 = 0; r0 < R; r0 += chunk) {
    const int64_t n = R - r0 < chunk ? R - r0 : chunk;
    file.read_exact(raw.data(), size_t(n) * row_in, offset + off_t(size_t(r0) * row_in));
    ctx.pool.parallel_for(n, panels ? 16 : 1, [&](int64_t b, int64_t e) {
      std::vector<float> f(static_cast<size_t>(K));
      std::vector<uint8_t> qrow(panels ? row_out : 0);
      for (int64_t r = b; r < e; ++r) {
        const char* p = raw.data() + size_t(r) * row_in;
        const float* row = f.data();
        if (src == DType::F32) std::memcpy(f.data(), p, row_in);
        else if (src == DType::BF16) ctx.k.cvt_bf16_to_f32(reinterpret_cast<const uint16_t*>(p), f.data(), K);
        else ctx.k.cvt_f16_to_f32(reinterpret_cast<const uint16_t*>(p), f.data(), K);
        if (panels) {
          ctx.k.quantize_rows_q8(row, 1, K, qrow.data());
          q8p_put_row(t.data<uint8_t>(), K, r0 + r, qrow.data());
        } else {
          ctx.k.quantize_rows_q8(row, 1, K, t.data<uint8_t>() + size_t(r0 + r) * row_out);
        }
      }
    });
  }
}

static void load_bf16p(OpContext& ctx, const InputFile& file, Tensor& t, DType src, off_t offset) {
  const int64_t N = t.dim(0), K = t.dim(1), Kp = bf16p_k_padded(K);
  const size_t es = dtype_size(src), row_in = size_t(K) * es;
  if (N == 0 || K == 0) return;
  // Whole panels per chunk, about 4 MiB of the file.
  int64_t chunk = int64_t((size_t(4) << 20) / (row_in * kBf16pRows)) * kBf16pRows;
  if (chunk < kBf16pRows) chunk = kBf16pRows;
  std::vector<char> raw(size_t(chunk < N ? chunk : N) * row_in);
  uint16_t* dst = t.data<uint16_t>();
  for (int64_t r0 = 0; r0 < N; r0 += chunk) {
    const int64_t n = N - r0 < chunk ? N - r0 : chunk;
    file.read_exact(raw.data(), size_t(n) * row_in, offset + off_t(size_t(r0) * row_in));
    ctx.pool.parallel_for(bf16p_panels(n), 1, [&](int64_t p0, int64_t p1) {
      // A panel's rows as bf16, each padded to Kp, then written pair by pair: the 16 rows' pair
      // j are one contiguous 64-byte line of the panel (dtype.h), so the writes stream.
      std::vector<uint16_t> h(size_t(kBf16pRows) * size_t(Kp));
      std::vector<float> f(src == DType::F16 ? static_cast<size_t>(K) : 0);
      for (int64_t pnl = p0; pnl < p1; ++pnl) {
        const int64_t rows = n - pnl * kBf16pRows < kBf16pRows ? n - pnl * kBf16pRows : kBf16pRows;
        std::fill(h.begin(), h.end(), uint16_t(0));
        for (int64_t i = 0; i < rows; ++i) {
          const char* p = raw.data() + size_t(pnl * kBf16pRows + i) * row_in;
          uint16_t* hr = h.data() + i * Kp;
          if (src == DType::BF16) std::memcpy(hr, p, row_in);
          else if (src == DType::F32) ctx.k.cvt_f32_to_bf16(reinterpret_cast<const float*>(p), hr, K);
          else {
            ctx.k.cvt_f16_to_f32(reinterpret_cast<const uint16_t*>(p), f.data(), K);
            ctx.k.cvt_f32_to_bf16(f.data(), hr, K);
          }
        }
        uint32_t* q = reinterpret_cast<uint32_t*>(dst + ((r0 / kBf16pRows) + pnl) * kBf16pRows * Kp);
        for (int64_t j = 0; j < Kp / 2; ++j)
          for (int64_t i = 0; i < kBf16pRows; ++i) std::memcpy(q + j * kBf16pRows + i, h.data() + i * Kp + 2 * j, 4);
      }
    });
  }
}

static void load_run(OpContext& ctx, const Tensors& in, const Tensors&, const OpAttrs& a) {
  const DType src = a.load.src;
  const off_t offset = off_t(a.load.offset);
  const size_t bytes = size_t(a.load.bytes);
  Tensor& t = *in[0];
  InputFile file(a.load.path);
  if (!t.on_cuda() && t.storage) t.storage->advise_huge_pages();  // written whole, streamed every forward (see empty)
  if (src == t.dtype) {
    file.read_exact(t.raw(), bytes, offset);
    return;
  }
  if (t.dtype == DType::Q8 || t.dtype == DType::Q8P) return load_q8(ctx, file, t, src, offset);
  if (t.dtype == DType::BF16P) return load_bf16p(ctx, file, t, src, offset);
  // Convert through f32 in 1 MiB chunks (only small tensors such as norms and biases take
  // this path in practice, or a whole checkpoint when the user asks for another dtype).
  int64_t n = t.numel();
  size_t es = dtype_size(src);
  const int64_t chunk = (1 << 20) / 4;
  std::vector<char> raw(static_cast<size_t>(chunk) * es);
  std::vector<float> f(static_cast<size_t>(chunk));
  for (int64_t i = 0; i < n; i += chunk) {
    int64_t m = (n - i) < chunk ? (n - i) : chunk;
    file.read_exact(raw.data(), size_t(m) * es, offset + off_t(i * es));
    const float* fs = f.data();
    if (src == DType::F32) fs = reinterpret_cast<const float*>(raw.data());
    else if (src == DType::BF16) ctx.k.cvt_bf16_to_f32(reinterpret_cast<const uint16_t*>(raw.data()), f.data(), m);
    else ctx.k.cvt_f16_to_f32(reinterpret_cast<const uint16_t*>(raw.data()), f.data(), m);
    if (t.dtype == DType::F32) std::memcpy(t.data<float>() + i, fs, size_t(m) * 4);
    else if (t.dtype == DType::BF16) ctx.k.cvt_f32_to_bf16(fs, t.data<uint16_t>() + i, m);
    else ctx.k.cvt_f32_to_f16(fs, t.data<uint16_t>() + i, m);
  }
}

void ops_register_io(std::vector<OpDef>& t) { t.push_back({OpId::Load, load_plan, load_run, load_parse}); }

}  // namespace dvl
