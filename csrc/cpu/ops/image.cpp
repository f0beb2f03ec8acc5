// image.cpp — image_resize: Pillow's BICUBIC resize, bit for bit (docs §3.1 step 2, §3.5).
//
// image_resize: img u8 [H, W, C] (C = 1..4, interleaved) + attrs width w, height h
//               → u8 [h, w, C].
//
// Why bit-exact: the reference feeds the vision tower with `PIL.Image.resize(..., BICUBIC)`
// output, and a one-level difference in a pixel moves the normalised input by 1/255/std ≈ 0.015.
// This file reimplements Pillow's separable resampler from its algorithm (libImaging
// Resample.c, 8-bit path) — no code copied. The facts that matter for exactness:
//
//  * Per axis (in → out): scale = in/out (float64); the kernel is widened by
//    filterscale = max(scale, 1) (antialias when shrinking), so support = 2·filterscale and each
//    output reads at most ksize = 2·ceil(support) + 1 inputs.
//  * Output i is centred at c = (i + 0.5)·scale; its taps run from
//    lo = max(0, trunc(c − support + 0.5)) to hi = min(in, trunc(c + support + 0.5)) (exclusive),
//    tap j weighs K((j − c + 0.5)/filterscale) with the Keys cubic K (a = −0.5), summed in order
//    and divided by that sum (float64), then turned into fixed point with 22 fractional bits
//    (32 − 8 − 2: 8 bits of pixel, 2 of headroom for negative lobes), rounding half away from 0.
//  * A pixel is 2^21 + Σ u8·k in int32 (never overflows: Σ|k| < 1.3·2^22), then >> 22
//    (arithmetic) and clamped to 0..255.
//  * Horizontal pass first over only the input rows the vertical pass reads, into a u8
//    intermediate (so the rounding happens twice), then the vertical pass. An axis whose size
//    does not change is skipped entirely (not run through the identity kernel).
//
// The passes' arithmetic is the ISA level's kernels (kernels_generic.inc: 16 values per vector;
// integer sums, so every level gives the same bytes). The plain TypeScript twin is
// lib/image/resample.ts; test/ops/image.test.ts checks the op at every level present against
// it and against Pillow's own output (test/fixtures/images, written by scripts/fixtures/pillow.py).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "ops.h"

namespace dvl {

// ---- coefficients ---------------------------------------------------------------------------

static constexpr int kPrecisionBits = kResampleBits;  // 32 − 8 − 2 (kernels.h)

// Keys cubic convolution kernel with a = −0.5 (Catmull-Rom), in the Horner form whose float64
// rounding Pillow's weights come from.
static inline double bicubic_kernel(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

// One axis of the resample: output i reads inputs lo[i] .. lo[i]+n[i]-1 with fixed-point
// weights k[i·ksize .. i·ksize + n[i]-1].
struct ResampleAxis {
  int ksize = 0;
  std::vector<int> lo, n;
  std::vector<int32_t> k;
};

static ResampleAxis resample_axis_init(int in_size, int out_size) {
  ResampleAxis ax;
  // Pillow takes the source box as float32 (0, in) and divides in float64.
  double scale = double(float(in_size) - 0.0f) / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  double support = 2.0 * filterscale;
  ax.ksize = int(std::ceil(support)) * 2 + 1;
  ax.lo.resize(out_size);
  ax.n.resize(out_size);
  ax.k.assign(size_t(out_size) * ax.ksize, 0);
  std::vector<double> w(ax.ksize);
  for (int i = 0; i < out_size; ++i) {
    double center = (i + 0.5) * scale;
    double inv = 1.0 / filterscale;
    int lo = int(center - support + 0.5);  // C truncation, as Pillow rounds
    if (lo < 0) lo = 0;
    int hi = int(center + support + 0.5);
    if (hi > in_size) hi = in_size;
    int n = hi - lo;
    double sum = 0.0;
    for (int j = 0; j < n; ++j) {
      w[j] = bicubic_kernel((j + lo - center + 0.5) * inv);
      sum += w[j];
    }
    int32_t* kk = &ax.k[size_t(i) * ax.ksize];
    for (int j = 0; j < n; ++j) {
      double v = sum != 0.0 ? w[j] / sum : w[j];
      kk[j] = v < 0 ? int32_t(-0.5 + v * (1 << kPrecisionBits)) : int32_t(0.5 + v * (1 << kPrecisionBits));
    }
    ax.lo[i] = lo;
    ax.n[i] = n;
  }
  return ax;
}

// ---- passes (the level's kernels do the arithmetic; here only the split over threads) ----------

// Horizontal: rows [row0, row0 + rows) of src [*, W, C] → dst [rows, w, C], 16 rows at a time;
// thread tid transposes into slots + tid·W·C·16 (the queue's scratch: no allocation per call).
static void resample_horizontal(OpContext& ctx, const uint8_t* src, int W, int C, int row0, int rows,
                                const ResampleAxis& ax, uint8_t* dst, int w, uint8_t* slots) {
  const int64_t blocks = (rows + 15) / 16;
  auto run = [&](int tid, int nth) {
    uint8_t* slot = slots + size_t(tid) * W * C * 16;
    for (int64_t blk = blocks * tid / nth; blk < blocks * (tid + 1) / nth; ++blk) {
      const int64_t r = blk * 16;
      const int n = int(rows - r < 16 ? rows - r : 16);
      ctx.k.resample_h_rows(src + (size_t(row0) + r) * W * C, W, C, n, ax.lo.data(), ax.n.data(), ax.k.data(), ax.ksize, w,
                            dst + size_t(r) * w * C, slot);
    }
  };
  if (blocks < 2) run(0, 1);
  else ctx.pool.run(run);
}

// Vertical: src [*, w, C] → dst [h, w, C]; tap rows are ax.lo[y] - row0 .. in src.
static void resample_vertical(OpContext& ctx, const uint8_t* src, int w, int C, int row0, const ResampleAxis& ax,
                              uint8_t* dst, int h) {
  const int64_t rowlen = int64_t(w) * C;
  ctx.pool.parallel_for(h, 4, [&](int64_t b, int64_t e) {
    for (int64_t y = b; y < e; ++y)
      ctx.k.resample_v_row(src + size_t(ax.lo[y] - row0) * rowlen, rowlen, &ax.k[size_t(y) * ax.ksize], ax.n[y], rowlen,
                           dst + size_t(y) * rowlen);
  });
}

// ---- op -------------------------------------------------------------------------------------

// Outputs larger than this per side are refused (Pillow's own limit is memory; ours guards the
// int arithmetic of the passes and catches a swapped or garbage attribute early).
static constexpr int64_t kMaxSide = 1 << 15;

static void image_resize_parse(const Tensors& in, OpAttrs& a) {
  const char* op = "image_resize";
  op_need_inputs(op, in, 1, 1);
  op_need_dtype(op, in, 0, {DType::U8});
  op_need_rank(op, in, 0, 3);
  const Tensor& x = *in[0];
  if (x.dim(0) < 1 || x.dim(1) < 1) op_fail(DVL_ERR_SHAPE, op, "image must be at least 1×1", in);
  if (x.dim(2) < 1 || x.dim(2) > 4) op_fail(DVL_ERR_SHAPE, op, "image must have 1..4 interleaved channels [H, W, C]", in);
  if (x.dim(0) > kMaxSide || x.dim(1) > kMaxSide)
    op_fail(DVL_ERR_SHAPE, op, "image sides must be ≤ " + std::to_string(kMaxSide), in);
  int64_t w = a.needi(op, "width"), h = a.needi(op, "height");
  if (w < 1 || h < 1 || w > kMaxSide || h > kMaxSide)
    op_fail(DVL_ERR_RANGE, op,
            "width and height must be integers in 1.." + std::to_string(kMaxSide) + ", got " + std::to_string(w) + "×" +
                std::to_string(h),
            in);
  a.size = SizeAttrs{w, h};
}

static Tensors image_resize_plan(const Tensors& in, const OpAttrs& a) {
  return {Tensor::alloc(DType::U8, {a.size.height, a.size.width, in[0]->dim(2)})};
}

// Below this many multiply-adds (both passes) a resize runs on the calling thread alone: a
// 200×150 → 224×224 picture (≈ 1.3 M) took 92 µs on one thread and as long on two, and as a
// request's first op it met workers still waking (125 µs with idle gaps; 245 in a request's
// op profile), while the tower after it does split.
static constexpr double kResizeSerialMacs = double(1 << 22);

static void image_resize_run(OpContext& ctx_in, const Tensors& in, const Tensors& out, const OpAttrs&) {
  const Tensor& x = *in[0];
  const int H = int(x.dim(0)), W = int(x.dim(1)), C = int(x.dim(2));
  const int h = int(out[0]->dim(0)), w = int(out[0]->dim(1));
  // Each output reads ≈ 2·support·max(scale, 1) + 1 inputs per pass it runs.
  const auto taps = [](int in_size, int out_size) { return 2.0 * 2.0 * std::max(1.0, double(in_size) / out_size) + 1.0; };
  const double macs = double(C) * (double(H) * w * taps(W, w) + double(h) * w * taps(H, h));
  static ThreadPool one_thread(1);  // no workers: run() calls the function in place
  OpContext ctx = macs < kResizeSerialMacs ? ctx_in.on(one_thread) : ctx_in;
  const uint8_t* src = x.data<uint8_t>();
  uint8_t* dst = out[0]->data<uint8_t>();
  const bool need_h = w != W, need_v = h != H;
  if (!need_h && !need_v) {
    std::memcpy(dst, src, size_t(H) * W * C);
    return;
  }
  // One scratch piece: the horizontal pass's output when both passes run, then a transposition
  // slot per thread. (A fresh vector here faulted in every page each call: 0.3 ms for a picture.)
  Scratch local;  // only used by contexts without a queue
  Scratch& scratch = ctx.scratch ? *ctx.scratch : local;
  ResampleAxis vert;
  int row0 = 0, row1 = H;
  if (need_v) {
    vert = resample_axis_init(H, h);
    // Only the input rows some output row reads go through the horizontal pass.
    row0 = vert.lo[0], row1 = vert.lo[h - 1] + vert.n[h - 1];
  }
  const size_t tmp_bytes = need_h && need_v ? (size_t(row1 - row0) * w * C + 63) / 64 * 64 : 0;
  const size_t slot_bytes = need_h ? size_t(W) * C * 16 : 0;
  uint8_t* base = static_cast<uint8_t*>(scratch.get(tmp_bytes + slot_bytes * size_t(ctx.pool.size()) + 64));
  if (!need_v) {
    resample_horizontal(ctx, src, W, C, 0, H, resample_axis_init(W, w), dst, w, base);
    return;
  }
  if (!need_h) {
    resample_vertical(ctx, src, W, C, 0, vert, dst, h);
    return;
  }
  resample_horizontal(ctx, src, W, C, row0, row1 - row0, resample_axis_init(W, w), base, w, base + tmp_bytes);
  resample_vertical(ctx, base, w, C, row0, vert, dst, h);
}

// patch_rows: img u8 [H, W, 3] + attrs patch ps, merge m, temporal tps, mean[3], std[3], round
// ('none' | 'bf16' | 'f16') → f32 [(H/ps)·(W/ps), 3·tps·ps·ps], the Qwen2-VL pixel_values rows
// (docs §3.2): merge units row-major, the m×m patches of a unit in order, inside a row (c, tp,
// py, px) with the tps frames equal; each value float32((float32(v·(1/255)) − mean_c) / std_c) as
// the processor computes it, then rounded (nearest even) to the tower's weight dtype. The same
// bits as lib/image/qwen2vl.ts patchRows + the tower's rounding: every value is a function of
// one byte and channel, so a 256-entry table per channel holds them all. Attr dtype 'bf16'
// (with round 'bf16'): the same values stored as bf16 — half the bytes, and what a bf16
// product reads without rounding them again (matmul's bf16 activations).
static void patch_rows_parse(const Tensors& in, OpAttrs& a) {
  const char* op = "patch_rows";
  op_need_inputs(op, in, 1, 1);
  op_need_dtype(op, in, 0, {DType::U8});
  op_need_rank(op, in, 0, 3);
  PatchAttrs p;
  p.patch = a.needi(op, "patch");
  p.merge = a.needi(op, "merge");
  p.temporal = a.needi(op, "temporal");
  if (p.patch < 1 || p.patch > 64 || p.merge < 1 || p.merge > 8 || p.temporal < 1 || p.temporal > 8)
    op_fail(DVL_ERR_RANGE, op, "patch 1..64, merge 1..8 and temporal 1..8 are supported", in);
  const Tensor& x = *in[0];
  if (x.dim(2) != 3) op_fail(DVL_ERR_SHAPE, op, "image must be RGB [H, W, 3]", in);
  const int64_t unit = p.patch * p.merge;
  if (x.dim(0) < unit || x.dim(1) < unit || x.dim(0) % unit || x.dim(1) % unit)
    op_fail(DVL_ERR_SHAPE, op, "image sides must be positive multiples of patch·merge = " + std::to_string(unit), in);
  // The rows hold 4·tps bytes per input byte: bound them before anything is allocated.
  const double values = double(x.dim(0)) * double(x.dim(1)) * 3.0 * double(p.temporal);
  if (values > double(int64_t(1) << 32))
    op_fail(DVL_ERR_RANGE, op, "the rows would hold " + std::to_string(int64_t(values)) + " values, above the 2^32 this op makes", in);
  const std::vector<double>* mean = a.geta("mean");
  const std::vector<double>* sd = a.geta("std");
  if (!mean || !sd || mean->size() != 3 || sd->size() != 3) op_fail(DVL_ERR_ARG, op, "attrs mean and std must hold 3 numbers each", in);
  for (int c = 0; c < 3; ++c) {
    if (!std::isfinite((*mean)[c]) || !std::isfinite((*sd)[c]) || float((*sd)[c]) == 0.f)
      op_fail(DVL_ERR_ARG, op, "mean must be finite and std finite and non-zero", in);
    p.mean[c] = (*mean)[c];
    p.std[c] = (*sd)[c];
  }
  const std::string r = a.gets("round", "none");
  if (r != "none" && r != "bf16" && r != "f16") op_fail(DVL_ERR_ARG, op, "round must be 'none', 'bf16' or 'f16', got '" + r + "'", in);
  p.round = r == "bf16" ? 1 : r == "f16" ? 2 : 0;
  const std::string dt = a.gets("dtype", "f32");
  if (dt != "f32" && dt != "bf16") op_fail(DVL_ERR_ARG, op, "dtype must be 'f32' or 'bf16', got '" + dt + "'", in);
  p.bf16_out = dt == "bf16";
  if (p.bf16_out && p.round != 1) op_fail(DVL_ERR_ARG, op, "dtype 'bf16' needs round 'bf16' (the values must be bf16 values)", in);
  a.patch = p;
}

static Tensors patch_rows_plan(const Tensors& in, const OpAttrs& a) {
  const PatchAttrs& p = a.patch;
  return {Tensor::alloc(p.bf16_out ? DType::BF16 : DType::F32,
                        {(in[0]->dim(0) / p.patch) * (in[0]->dim(1) / p.patch), 3 * p.temporal * p.patch * p.patch})};
}

// The rows of patch_rows with values of type V (float, or bf16 bits) from per-channel tables.
template <class V>
static void patch_rows_fill(OpContext& ctx, const PatchAttrs& p, const uint8_t* img, int64_t W, int64_t R, const V (&lut)[3][256], V* y) {
  const int64_t ps = p.patch, m = p.merge, tps = p.temporal;
  const int64_t gw = W / ps, D = 3 * tps * ps * ps, frame = ps * ps;
  if (ps == 14 && tps == 2) {
    // Qwen2-VL / Qwen2.5-VL's patches (14 px, 2 frames) with the sizes known to the compiler:
    // one pass over each patch's 14 source rows (42 interleaved bytes each), every value
    // looked up once and stored to both frames — where the general loop below walks each
    // channel's bytes apart and copies the first frame into the second. Same values.
    constexpr int64_t P = 14, F = P * P;
    ctx.pool.parallel_for(R, 16, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t u = r / (m * m), k = r % (m * m);
        const int64_t y0 = ((u / (gw / m)) * m + k / m) * P, x0 = ((u % (gw / m)) * m + k % m) * P;
        V* row = y + r * D;
        for (int64_t py = 0; py < P; ++py) {
          const uint8_t* src = img + ((y0 + py) * W + x0) * 3;
          V v[3][P];
          for (int64_t px = 0; px < P; ++px) {
            v[0][px] = lut[0][src[3 * px]];
            v[1][px] = lut[1][src[3 * px + 1]];
            v[2][px] = lut[2][src[3 * px + 2]];
          }
          for (int c = 0; c < 3; ++c) {
            std::memcpy(row + (2 * c) * F + py * P, v[c], sizeof v[c]);
            std::memcpy(row + (2 * c + 1) * F + py * P, v[c], sizeof v[c]);
          }
        }
      }
    });
    return;
  }
  ctx.pool.parallel_for(R, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      // Row r: merge unit u (row-major over the unit grid), patch k of its m×m.
      const int64_t u = r / (m * m), k = r % (m * m);
      const int64_t y0 = ((u / (gw / m)) * m + k / m) * ps, x0 = ((u % (gw / m)) * m + k % m) * ps;
      V* row = y + r * D;
      for (int c = 0; c < 3; ++c) {
        V* f0 = row + c * tps * frame;
        for (int64_t py = 0; py < ps; ++py) {
          const uint8_t* src = img + ((y0 + py) * W + x0) * 3 + c;
          for (int64_t px = 0; px < ps; ++px) f0[py * ps + px] = lut[c][src[px * 3]];
        }
        for (int64_t tp = 1; tp < tps; ++tp) std::memcpy(f0 + tp * frame, f0, sizeof(V) * size_t(frame));
      }
    }
  });
}

static void patch_rows_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs& a) {
  const PatchAttrs& p = a.patch;
  float lut[3][256];
  uint16_t lut16[3][256];
  for (int c = 0; c < 3; ++c) {
    const float mean = float(p.mean[c]), sd = float(p.std[c]);
    for (int v = 0; v < 256; ++v) {
      const float y = (float(double(v) * (1.0 / 255.0)) - mean) / sd;
      lut[c][v] = p.round == 1 ? bf16_to_f32(f32_to_bf16(y)) : p.round == 2 ? f16_to_f32(f32_to_f16(y)) : y;
      lut16[c][v] = f32_to_bf16(y);
    }
  }
  const uint8_t* img = in[0]->data<uint8_t>();
  const int64_t W = in[0]->dim(1), R = out[0]->dim(0);
  if (p.bf16_out) patch_rows_fill<uint16_t>(ctx, p, img, W, R, lut16, out[0]->data<uint16_t>());
  else patch_rows_fill<float>(ctx, p, img, W, R, lut, out[0]->data<float>());
}

void ops_register_image(std::vector<OpDef>& t) {
  t.push_back({OpId::ImageResize, image_resize_plan, image_resize_run, image_resize_parse});
  t.push_back({OpId::PatchRows, patch_rows_plan, patch_rows_run, patch_rows_parse});
}

}  // namespace dvl
