// bilinear.cpp — resize_bilinear: a feature map resized with bilinear interpolation, the
// anyres_max downsample of the SigLIP route (docs §3.5 step 7).
//
// Legend: h, w input rows/cols; oh, ow output rows/cols; C channels.
//   x f32 [h, w, C] → y f32 [oh, ow, C]   (attrs height = oh, width = ow)
// Semantics of torch.nn.functional.interpolate(mode="bilinear", size=(oh, ow),
// align_corners=False), no antialias, for f32 input: per axis, scale = in/out (f32),
// src = max(scale·(dst + 0.5) − 0.5, 0) (f32), i0 = floor(src), i1 = min(i0 + 1, in − 1),
// λ1 = src − i0, λ0 = 1 − λ1; y = Σ λy·λx·x over the four neighbours. The index maths is in
// f32 like PyTorch's CPU kernel, so the sampled positions match it bit for bit; channels are
// the contiguous inner dim, so each output row is four scaled row-vector adds.
// NaN in a neighbour with weight 0 still propagates (0·NaN), as in PyTorch.
#include <cmath>
#include <string>
#include <vector>

#include "ops.h"

namespace dvl {

static const char* kOp = "resize_bilinear";

static void resize_bilinear_parse(const Tensors& in, OpAttrs& a) {
  op_need_inputs(kOp, in, 1, 1);
  op_need_dtype(kOp, in, 0, {DType::F32});
  op_need_rank(kOp, in, 0, 3);
  const int64_t oh = a.needi(kOp, "height"), ow = a.needi(kOp, "width");
  if (oh < 1 || ow < 1) op_fail(DVL_ERR_RANGE, kOp, "height and width must be >= 1, got " + std::to_string(oh) + "×" + std::to_string(ow), in);
  if (in[0]->dim(0) < 1 || in[0]->dim(1) < 1) op_fail(DVL_ERR_SHAPE, kOp, "x must have at least one row and one column", in);
  a.size = SizeAttrs{ow, oh};
}

static Tensors resize_bilinear_plan(const Tensors& in, const OpAttrs& a) {
  return {Tensor::alloc(DType::F32, {a.size.height, a.size.width, in[0]->dim(2)})};
}

struct Tap {
  int64_t i0, i1;
  float l0, l1;
};

// One axis of area_pixel_compute_source_index + compute_indices_weights_linear (f32 maths).
static std::vector<Tap> taps(int64_t in, int64_t out) {
  std::vector<Tap> t(static_cast<size_t>(out));
  const float scale = float(in) / float(out);
  for (int64_t d = 0; d < out; ++d) {
    float src = scale * (float(d) + 0.5f) - 0.5f;
    if (src < 0) src = 0;
    int64_t i0 = int64_t(src);
    if (i0 > in - 1) i0 = in - 1;
    const int64_t i1 = i0 < in - 1 ? i0 + 1 : i0;
    float l1 = src - float(i0);
    if (l1 < 0) l1 = 0;
    if (l1 > 1) l1 = 1;
    t[size_t(d)] = {i0, i1, 1.0f - l1, l1};
  }
  return t;
}

static void resize_bilinear_run(OpContext& ctx, const Tensors& in, const Tensors& out, const OpAttrs&) {
  const Tensor& x = *in[0];
  const int64_t h = x.dim(0), w = x.dim(1), C = x.dim(2), oh = out[0]->dim(0), ow = out[0]->dim(1);
  const std::vector<Tap> ty = taps(h, oh), tx = taps(w, ow);
  const float* src = x.data<float>();
  float* y = out[0]->data<float>();
  ctx.pool.parallel_for(oh * ow, 1, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const Tap &a = ty[size_t(r / ow)], &c = tx[size_t(r % ow)];
      const float* p00 = src + (a.i0 * w + c.i0) * C;
      const float* p01 = src + (a.i0 * w + c.i1) * C;
      const float* p10 = src + (a.i1 * w + c.i0) * C;
      const float* p11 = src + (a.i1 * w + c.i1) * C;
      float* yr = y + r * C;
      // PyTorch's order: λy0·(λx0·p00 + λx1·p01) + λy1·(λx0·p10 + λx1·p11).
      for (int64_t k = 0; k < C; ++k)
        yr[k] = a.l0 * (c.l0 * p00[k] + c.l1 * p01[k]) + a.l1 * (c.l0 * p10[k] + c.l1 * p11[k]);
    }
  });
}

void ops_register_bilinear(std::vector<OpDef>& t) { t.push_back({OpId::ResizeBilinear, resize_bilinear_plan, resize_bilinear_run, resize_bilinear_parse}); }

}  // namespace dvl
